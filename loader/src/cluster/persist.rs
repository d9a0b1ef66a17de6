//! This node's last-known place in the cluster, `{state_dir}/cluster.json`: what a
//! daemon restarted while etcd is unreachable comes back with.
use std::{fs, io, path::Path};

use serde::{Deserialize, Serialize};

use super::{ClusterConfig, ClusterError, Ipv4Net, Ipv6Net, Node};

/// The file's name under the state directory.
pub const STATE_FILE: &str = "cluster.json";

/// The leases this node last held (0: none), revoked once a new session holds new ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Leases {
    /// The liveness lease (`{prefix}/nodes/NAME`).
    pub(crate) liveness: i64,
    /// The reservation lease (`{prefix}/subnets/...`).
    pub(crate) reservation: i64,
}

/// What the file holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Persisted {
    /// The cluster config this node joined with.
    pub(crate) config: ClusterConfig,
    /// This node's subnet.
    #[serde(with = "super::net")]
    pub(crate) subnet: Ipv4Net,
    /// This node's IPv6 prefix (dual stack; none in a file from before).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "super::net6::opt"
    )]
    pub(crate) subnet6: Option<Ipv6Net>,
    /// The last peer list sent.
    #[serde(default)]
    pub(crate) peers: Vec<Node>,
    /// The leases of the last session.
    #[serde(default)]
    pub(crate) leases: Leases,
}

impl Persisted {
    /// The file under `dir`, if there is one.
    pub(crate) fn load(dir: &Path) -> Result<Option<Self>, ClusterError> {
        let path = dir.join(STATE_FILE);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| ClusterError::PersistParse { path, source }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(ClusterError::Persist {
                what: "read",
                path,
                source,
            }),
        }
    }

    /// Written atomically (`state::save_json`): a crash leaves the old file or the new
    /// one, never a torn one.
    pub(crate) fn save(&self, dir: &Path) -> Result<(), ClusterError> {
        let path = dir.join(STATE_FILE);
        crate::state::save_json(dir, STATE_FILE, self).map_err(|source| ClusterError::Persist {
            what: "write",
            path,
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Mode;

    #[test]
    fn round_trips_and_missing_is_none() {
        let dir = std::env::temp_dir().join(format!("bpfnet-cluster-test-{}", std::process::id()));
        let _unused: Result<_, _> = fs::remove_dir_all(&dir);
        assert_eq!(Persisted::load(&dir).expect("missing file loads"), None);
        let config = ClusterConfig::new("10.244.0.0/16".parse().expect("net"), 24, Mode::Vxlan);
        let p = Persisted {
            config: config.clone(),
            subnet: "10.244.3.0/24".parse().expect("net"),
            subnet6: Some("fd00:10:244:3::/64".parse().expect("net")),
            peers: vec![Node {
                name: "n2".into(),
                subnet: "10.244.4.0/24".parse().expect("net"),
                underlay: "192.0.2.4".parse().expect("addr"),
                mode: Mode::Vxlan,
                vni: 1,
                alive: true,
                last_seen: 1_700_000_000,
                mac: Some("02:00:00:00:00:04".parse().expect("mac")),
                incarnation: 9,
                subnet6: None,
            }],
            leases: Leases {
                liveness: 7,
                reservation: 8,
            },
        };
        p.save(&dir).expect("saves");
        assert_eq!(Persisted::load(&dir).expect("loads"), Some(p));
        fs::write(dir.join(STATE_FILE), b"{").expect("write");
        let e = Persisted::load(&dir).expect_err("a torn file is an error");
        assert!(e.to_string().contains("not valid cluster state"), "{e}");
        fs::remove_dir_all(&dir).expect("cleanup");
    }
}
