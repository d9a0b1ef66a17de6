//! The cluster config, written once by `bpfnet cluster init` and read by every node.
use std::{fmt, net::Ipv4Addr, str::FromStr};

use serde::{Deserialize, Serialize};

use super::{ClusterError, Ipv4Net, ParseError};

/// How packets reach a peer's subnet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Routed to the peer's underlay address directly (the peers share a link).
    HostGw,
    /// Encapsulated in VXLAN to the peer's underlay address.
    Vxlan,
}

impl FromStr for Mode {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "host-gw" => Ok(Self::HostGw),
            "vxlan" => Ok(Self::Vxlan),
            _ => Err(ParseError::Mode { value: s.into() }),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::HostGw => "host-gw",
            Self::Vxlan => "vxlan",
        })
    }
}

/// The cluster's shape, stored as JSON at `{prefix}/config`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterConfig {
    /// The network every node subnet is carved out of, e.g. 10.244.0.0/16.
    pub cidr: Ipv4Net,
    /// The prefix length of one node's subnet, e.g. 24.
    pub node_prefix: u8,
    /// How packets reach a peer.
    pub mode: Mode,
    /// The VXLAN network identifier (vxlan mode).
    #[serde(default = "default_vni")]
    pub vni: u32,
    /// Seconds a node stays listed after its last keepalive.
    #[serde(default = "default_lease_ttl")]
    pub lease_ttl: u64,
    /// Seconds a gone node's subnet stays reserved for it before it returns to the pool.
    #[serde(default = "default_reclaim_after")]
    pub reclaim_after: u64,
}

fn default_vni() -> u32 {
    ClusterConfig::DEFAULT_VNI
}

fn default_lease_ttl() -> u64 {
    ClusterConfig::DEFAULT_LEASE_TTL
}

fn default_reclaim_after() -> u64 {
    ClusterConfig::DEFAULT_RECLAIM_AFTER
}

/// The longest lease etcd grants, in seconds.
const MAX_TTL: u64 = 9_000_000_000;
/// The largest VXLAN network identifier (24 bits).
const MAX_VNI: u32 = (1 << 24) - 1;
/// The longest node prefix: a /31 or /32 leaves no room for a gateway and containers.
const MAX_NODE_PREFIX: u8 = 30;
/// Networks no cluster may use: "this" network, loopback, multicast and the reserved
/// range up to the broadcast address.
const FORBIDDEN: [(Ipv4Addr, u8); 3] = [
    (Ipv4Addr::new(0, 0, 0, 0), 8),
    (Ipv4Addr::new(127, 0, 0, 0), 8),
    (Ipv4Addr::new(224, 0, 0, 0), 3),
];

impl ClusterConfig {
    /// The VNI when none is given.
    pub const DEFAULT_VNI: u32 = 1;
    /// The liveness lease's TTL when none is given, in seconds.
    pub const DEFAULT_LEASE_TTL: u64 = 10;
    /// How long a gone node's subnet stays reserved when not given, in seconds (a day).
    pub const DEFAULT_RECLAIM_AFTER: u64 = 86_400;

    /// A config with the default VNI, lease TTL and reclaim delay.
    pub fn new(cidr: Ipv4Net, node_prefix: u8, mode: Mode) -> Self {
        Self {
            cidr,
            node_prefix,
            mode,
            vni: Self::DEFAULT_VNI,
            lease_ttl: Self::DEFAULT_LEASE_TTL,
            reclaim_after: Self::DEFAULT_RECLAIM_AFTER,
        }
    }

    /// Refuse values that cannot work.
    pub fn validate(&self) -> Result<(), ClusterError> {
        let invalid = |reason: String| Err(ClusterError::InvalidConfig { reason });
        let cidr = self.cidr;
        if cidr.len == 0 {
            return invalid(format!("the cluster CIDR {cidr} is every address"));
        }
        if let Some((a, l)) = FORBIDDEN
            .into_iter()
            .find(|&(a, l)| Ipv4Net { addr: a, len: l }.overlaps(&cidr))
        {
            return invalid(format!("the cluster CIDR {cidr} overlaps {a}/{l}"));
        }
        if self.node_prefix < cidr.len {
            return invalid(format!(
                "the node prefix /{} is shorter than the cluster CIDR {cidr}",
                self.node_prefix
            ));
        }
        if self.node_prefix > MAX_NODE_PREFIX {
            return invalid(format!(
                "the node prefix /{} is longer than /{MAX_NODE_PREFIX}",
                self.node_prefix
            ));
        }
        if !(1..=MAX_VNI).contains(&self.vni) {
            return invalid(format!("the VNI {} is not in 1..={MAX_VNI}", self.vni));
        }
        if !(1..=MAX_TTL).contains(&self.lease_ttl) {
            return invalid(format!(
                "the lease TTL {} s is not in 1..={MAX_TTL}",
                self.lease_ttl
            ));
        }
        if !(self.lease_ttl..=MAX_TTL).contains(&self.reclaim_after) {
            return invalid(format!(
                "reclaim-after {} s is not in {}..={MAX_TTL} (at least the lease TTL)",
                self.reclaim_after, self.lease_ttl
            ));
        }
        Ok(())
    }

    /// Whether `subnet` can be a node subnet of this cluster.
    pub fn is_node_subnet(&self, subnet: &Ipv4Net) -> bool {
        subnet.len == self.node_prefix && self.cidr.covers(subnet)
    }
}

impl fmt::Display for ClusterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} in /{} node subnets, {} (VNI {}), lease TTL {} s, reclaim after {} s",
            self.cidr, self.node_prefix, self.mode, self.vni, self.lease_ttl, self.reclaim_after
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ClusterConfig {
        ClusterConfig::new(
            "10.244.0.0/16".parse().expect("valid CIDR"),
            24,
            Mode::HostGw,
        )
    }

    #[test]
    fn json_has_the_documented_shape_and_defaults() {
        let json = serde_json::to_value(cfg()).expect("serializes");
        assert_eq!(
            json,
            serde_json::json!({"cidr": "10.244.0.0/16", "node_prefix": 24, "mode": "host-gw",
                "vni": 1, "lease_ttl": 10, "reclaim_after": 86400})
        );
        let short: ClusterConfig = serde_json::from_str(
            r#"{"cidr": "10.244.0.0/16", "node_prefix": 24, "mode": "host-gw"}"#,
        )
        .expect("defaults fill in");
        assert_eq!(short, cfg());
        assert_eq!("vxlan".parse::<Mode>(), Ok(Mode::Vxlan));
        assert_eq!(Mode::HostGw.to_string(), "host-gw");
        assert!("hostgw".parse::<Mode>().is_err());
    }

    #[test]
    fn validation_refuses_what_cannot_work() {
        cfg().validate().expect("the default config is valid");
        let bad = |f: fn(&mut ClusterConfig), want: &str| {
            let mut c = cfg();
            f(&mut c);
            let e = c.validate().expect_err(want);
            assert!(e.to_string().contains(want), "{e}, wanted {want}");
        };
        bad(|c| c.node_prefix = 15, "shorter than");
        bad(|c| c.node_prefix = 31, "longer than /30");
        bad(|c| c.vni = 0, "VNI 0");
        bad(|c| c.vni = 1 << 24, "VNI 16777216");
        bad(|c| c.lease_ttl = 0, "lease TTL");
        bad(|c| c.reclaim_after = 5, "reclaim-after 5");
        bad(
            |c| c.cidr = "127.0.0.0/16".parse().expect("net"),
            "overlaps 127.0.0.0/8",
        );
        bad(
            |c| c.cidr = "0.0.0.0/0".parse().expect("net"),
            "every address",
        );
        let mut c = cfg();
        c.node_prefix = 16;
        c.validate()
            .expect("one node subnet, the whole CIDR, is valid");
    }
}
