//! The key layout in etcd and the JSON records stored under it.
use std::{
    net::Ipv4Addr,
    time::{SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

use super::{ClusterError, Ipv4Net, Ipv6Net, Mode, net, net6};
use crate::endpoint::Mac;

/// The keys of one cluster, under its prefix.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    /// The keys under `prefix` (a trailing `/` is dropped).
    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.trim_end_matches('/').into(),
        }
    }

    /// `{prefix}/`, the prefix of every key of the cluster.
    pub(crate) fn root(&self) -> String {
        format!("{}/", self.prefix)
    }

    /// `{prefix}/config`.
    pub(crate) fn config(&self) -> String {
        format!("{}/config", self.prefix)
    }

    /// `{prefix}/subnets/`, the prefix of every reservation.
    pub(crate) fn subnets(&self) -> String {
        format!("{}/subnets/", self.prefix)
    }

    /// `{prefix}/subnets/{a.b.c.d}-{len}`.
    pub(crate) fn subnet(&self, net: &Ipv4Net) -> String {
        format!("{}{}-{}", self.subnets(), net.addr(), net.prefix_len())
    }

    /// The subnet a reservation key names.
    pub(crate) fn subnet_of(&self, key: &[u8]) -> Option<Ipv4Net> {
        let rest = std::str::from_utf8(key)
            .ok()?
            .strip_prefix(&self.subnets())?;
        let (addr, len) = rest.split_once('-')?;
        let net = net::network(addr.parse().ok()?, len.parse().ok()?)?;
        // Only the canonical spelling: a key with host bits set is not ours.
        (net.addr().to_string() == addr).then_some(net)
    }

    /// `{prefix}/subnets6/`, the prefix of every IPv6 reservation.
    pub(crate) fn subnets6(&self) -> String {
        format!("{}/subnets6/", self.prefix)
    }

    /// `{prefix}/subnets6/{ipv6}-{len}`.
    pub(crate) fn subnet6(&self, net: &Ipv6Net) -> String {
        format!("{}{}-{}", self.subnets6(), net.addr(), net.prefix_len())
    }

    /// The IPv6 prefix a reservation key names.
    pub(crate) fn subnet6_of(&self, key: &[u8]) -> Option<Ipv6Net> {
        let rest = std::str::from_utf8(key)
            .ok()?
            .strip_prefix(&self.subnets6())?;
        let (addr, len) = rest.split_once('-')?;
        let net = net6::network(addr.parse().ok()?, len.parse().ok()?)?;
        // Only the canonical spelling: a key with host bits set is not ours.
        (net.addr().to_string() == addr).then_some(net)
    }

    /// `{prefix}/nodes/`, the prefix of every live node.
    pub(crate) fn nodes(&self) -> String {
        format!("{}/nodes/", self.prefix)
    }

    /// `{prefix}/nodes/{name}`.
    pub(crate) fn node(&self, name: &str) -> String {
        format!("{}{name}", self.nodes())
    }

    /// The node name a node key names.
    pub(crate) fn node_name<'k>(&self, key: &'k [u8]) -> Option<&'k str> {
        let name = std::str::from_utf8(key).ok()?.strip_prefix(&self.nodes())?;
        valid_name(name).then_some(name)
    }
}

/// Whether `name` may name a node: a host name's characters, 1 to 253 of them.
pub(crate) fn valid_name(name: &str) -> bool {
    (1..=253).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// Whether `ip` can be a node's underlay address.
pub(crate) fn valid_underlay(ip: Ipv4Addr) -> bool {
    !(ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() || ip.is_broadcast())
}

/// The value of a reservation, `{prefix}/subnets/...`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SubnetRecord {
    /// The node it is reserved for.
    pub(crate) node: String,
    /// When that node was last seen running, in seconds since the epoch.
    pub(crate) last_seen: u64,
}

/// The value of a live node, `{prefix}/nodes/{name}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct NodeRecord {
    /// Its subnet.
    #[serde(with = "net")]
    pub(crate) subnet: Ipv4Net,
    /// The address its peers reach it at.
    pub(crate) underlay: Ipv4Addr,
    /// The cluster mode it runs.
    pub(crate) mode: Mode,
    /// The VNI it runs.
    pub(crate) vni: u32,
    /// When it last refreshed this record, in seconds since the epoch.
    pub(crate) last_seen: u64,
    /// The MAC of its underlay interface (none: not an Ethernet interface, or a node
    /// from before bpfnet recorded it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) mac: Option<Mac>,
    /// Drawn anew each time its daemon starts (0: a node from before bpfnet recorded
    /// it), so its peers tell a restart from a refresh.
    #[serde(default)]
    pub(crate) incarnation: u64,
    /// Its IPv6 prefix (none: an IPv4-only cluster, or a node from before dual stack).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "net6::opt")]
    pub(crate) subnet6: Option<Ipv6Net>,
}

/// Seconds since the epoch.
pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `value` as JSON bytes.
pub(crate) fn to_json<T: Serialize>(
    what: &'static str,
    value: &T,
) -> Result<Vec<u8>, ClusterError> {
    serde_json::to_vec(value).map_err(|source| ClusterError::Encode { what, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_foreign_ones_are_refused() {
        let k = Keys::new("/bpfnet/");
        assert_eq!(k.config(), "/bpfnet/config");
        let net: Ipv4Net = "10.244.3.0/24".parse().expect("net");
        let key = k.subnet(&net);
        assert_eq!(key, "/bpfnet/subnets/10.244.3.0-24");
        assert_eq!(k.subnet_of(key.as_bytes()), Some(net));
        assert_eq!(k.subnet_of(b"/bpfnet/subnets/10.244.3.1-24"), None);
        assert_eq!(k.subnet_of(b"/bpfnet/subnets/10.244.3.0-33"), None);
        assert_eq!(k.subnet_of(b"/other/subnets/10.244.3.0-24"), None);
        assert_eq!(k.node("n1"), "/bpfnet/nodes/n1");
        assert_eq!(k.node_name(b"/bpfnet/nodes/n1"), Some("n1"));
        assert_eq!(k.node_name(b"/bpfnet/nodes/a/b"), None);
        assert_eq!(k.node_name(b"/bpfnet/nodes/"), None);
        let net6: Ipv6Net = "fd00:10:244:3::/64".parse().expect("net");
        let key6 = k.subnet6(&net6);
        assert_eq!(key6, "/bpfnet/subnets6/fd00:10:244:3::-64");
        assert_eq!(k.subnet6_of(key6.as_bytes()), Some(net6));
        assert_eq!(k.subnet6_of(b"/bpfnet/subnets6/fd00:10:244:3::1-64"), None);
        assert_eq!(k.subnet6_of(b"/bpfnet/subnets6/fd00:10:244:3:0::-64"), None);
        assert_eq!(k.subnet6_of(key.as_bytes()), None);
        assert_eq!(k.subnet_of(key6.as_bytes()), None);
        assert!(valid_name("node-1.example_x"));
        assert!(!valid_name("a b") && !valid_name(""));
    }

    #[test]
    fn a_node_record_carries_its_mac_and_incarnation_and_older_ones_still_read() {
        let old = r#"{"subnet": "10.244.3.0/24", "underlay": "192.0.2.3", "mode": "host-gw", "vni": 1, "last_seen": 5}"#;
        let r: NodeRecord = serde_json::from_str(old).expect("a record from before reads");
        assert_eq!((r.mac, r.incarnation, r.subnet6), (None, 0, None));
        let r = NodeRecord {
            mac: Some("02:00:00:00:00:03".parse().expect("mac")),
            incarnation: 77,
            ..r
        };
        let json = String::from_utf8(to_json("record", &r).expect("encodes")).expect("utf-8");
        assert!(
            json.contains(r#""mac":"02:00:00:00:00:03","incarnation":77"#),
            "{json}"
        );
        assert!(!json.contains("subnet6"), "{json}");
        assert_eq!(
            serde_json::from_str::<NodeRecord>(&json).expect("decodes"),
            r
        );
        let r = NodeRecord {
            subnet6: Some("fd00:10:244:3::/64".parse().expect("net")),
            ..r
        };
        let json = String::from_utf8(to_json("record", &r).expect("encodes")).expect("utf-8");
        assert!(json.contains(r#""subnet6":"fd00:10:244:3::/64""#), "{json}");
        assert_eq!(
            serde_json::from_str::<NodeRecord>(&json).expect("decodes"),
            r
        );
    }
}
