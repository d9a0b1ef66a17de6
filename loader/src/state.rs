//! The daemon's desired state, persisted atomically so a restart rebuilds it exactly.
use std::{
    collections::BTreeMap,
    fs,
    io::{self, Write as _},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::{endpoint::EndpointSpec, spec::PublishSpec};

const FILE: &str = "state.json";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read `{path}`: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("`{path}` is not valid bpfnet state: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("cannot write `{path}`: {source}")]
    Write { path: PathBuf, source: io::Error },
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Manual publishes, in the order they were made.
    #[serde(default)]
    pub published: Vec<PublishSpec>,
    /// Endpoints registered with `bpfnet endpoint add`.
    #[serde(default)]
    pub endpoints: Vec<EndpointSpec>,
    /// What Docker's running containers asked for, by container id (kept so a restart
    /// while Docker is away changes nothing).
    #[serde(default)]
    pub docker: BTreeMap<String, DockerContainer>,
}

/// A Docker container's share of the datapath.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerContainer {
    pub name: String,
    pub publishes: Vec<PublishSpec>,
    pub endpoints: Vec<EndpointSpec>,
}

impl State {
    /// Load the state under `dir`; a missing file is an empty state.
    pub fn load(dir: &Path) -> Result<Self, StateError> {
        let path = dir.join(FILE);
        match fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|source| StateError::Parse { path, source })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(StateError::Read { path, source }),
        }
    }

    /// Written atomically (`save_json`).
    pub fn save(&self, dir: &Path) -> Result<(), StateError> {
        save_json(dir, FILE, self).map_err(|source| StateError::Write {
            path: dir.join(FILE),
            source,
        })
    }
}

/// Write `value` as JSON to `dir/name`: to a temporary file, fsync, rename over the old
/// one, fsync the directory, so a crash leaves the old file or the new one, never a
/// torn one.
pub(crate) fn save_json<T: Serialize>(dir: &Path, name: &str, value: &T) -> io::Result<()> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    fs::create_dir_all(dir)?;
    // One write of the whole text: serde writes token by token, a system call each on
    // an unbuffered file.
    let mut text = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    text.push(b'\n');
    let mut f = fs::File::create(&tmp)?;
    f.write_all(&text)?;
    f.sync_all()?;
    fs::rename(&tmp, &path)?;
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_the_file_and_missing_is_empty() {
        let dir = std::env::temp_dir().join(format!("bpfnet-state-test-{}", std::process::id()));
        let _unused: Result<_, _> = fs::remove_dir_all(&dir);
        assert_eq!(
            State::load(&dir).expect("missing state loads"),
            State::default()
        );
        let state = State {
            published: vec![
                "8038:172.17.0.4:8038".parse().expect("valid spec"),
                "127.0.0.1:53:172.17.0.5:53/udp"
                    .parse()
                    .expect("valid spec"),
            ],
            endpoints: vec![EndpointSpec {
                bridge: "br0".into(),
                veth: "veth1".into(),
                ip: Some("172.17.0.4/16".parse().expect("valid CIDR")),
                ip6: vec!["fd00:beef::4/64".parse().expect("valid CIDR")],
                mac: "02:42:ac:11:00:04".parse().expect("valid MAC"),
            }],
            docker: BTreeMap::from([(
                "dd1beacffeae".into(),
                DockerContainer {
                    name: "web".into(),
                    publishes: vec!["8038:172.17.0.2:8038".parse().expect("valid spec")],
                    endpoints: vec![],
                },
            )]),
        };
        state.save(&dir).expect("state saves");
        assert_eq!(State::load(&dir).expect("saved state loads"), state);
        // A file written before endpoints had IPv6 addresses.
        let old = br#"{"published": [], "endpoints": [{"bridge": "br0", "veth": "v1",
            "ip": "172.17.0.4/16", "mac": "02:42:ac:11:00:04"}]}"#;
        fs::write(dir.join(FILE), old).expect("write");
        let loaded = State::load(&dir).expect("an older state loads");
        assert_eq!(loaded.endpoints[0].ip6, vec![]);
        fs::write(dir.join(FILE), b"{\"published\": [\"80:nope:80\"]}").expect("write");
        let err = State::load(&dir).expect_err("a bad spec in the file is an error");
        assert!(err.to_string().contains("not valid bpfnet state"), "{err}");
        fs::remove_dir_all(&dir).expect("cleanup");
    }
}
