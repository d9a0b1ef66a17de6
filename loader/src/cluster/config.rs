//! The cluster config, written once by `bpfnet cluster init` and read by every node.
use std::{
    fmt,
    net::{Ipv4Addr, Ipv6Addr},
    str::FromStr,
};

use serde::{Deserialize, Serialize};

use super::{ClusterError, ConfigProblem, Ipv4Net, Ipv6Net, ParseError, net, net6};

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
    #[serde(with = "net")]
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
    /// The IPv6 network every node's IPv6 prefix is carved out of (dual stack), e.g.
    /// `fd00:10:244::/48`; none: the cluster is IPv4 only (a config from before has none).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "net6::opt")]
    pub cidr6: Option<Ipv6Net>,
    /// The prefix length of one node's IPv6 prefix (with `cidr6`), e.g. 64.
    #[serde(
        default = "default_node_prefix6",
        skip_serializing_if = "is_default_node_prefix6"
    )]
    pub node_prefix6: u8,
}

fn default_node_prefix6() -> u8 {
    ClusterConfig::DEFAULT_NODE_PREFIX6
}

fn is_default_node_prefix6(len: &u8) -> bool {
    *len == ClusterConfig::DEFAULT_NODE_PREFIX6
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
/// The longest IPv6 node prefix: room for a gateway and containers.
const MAX_NODE_PREFIX6: u8 = 120;
/// At most this many more bits in an IPv6 node prefix than in the IPv6 CIDR: the
/// pool scans its prefixes in order (a /48 in /64s is 16 bits).
const MAX_POOL_BITS6: u8 = 24;
/// IPv6 networks no cluster may use: unspecified and loopback, IPv4-mapped, link-local
/// and multicast.
const FORBIDDEN6: [(Ipv6Addr, u8); 4] = [
    (Ipv6Addr::UNSPECIFIED, 127),
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96),
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10),
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8),
];
/// Networks no cluster may use: "this" network, loopback, multicast and the reserved
/// range up to the broadcast address.
const FORBIDDEN: [(Ipv4Addr, u8); 3] = [
    (Ipv4Addr::UNSPECIFIED, 8),
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
    /// The IPv6 node prefix length when none is given (what Docker's
    /// `fixed-cidr-v6` and SLAAC expect of a LAN).
    pub const DEFAULT_NODE_PREFIX6: u8 = 64;

    /// A config with the default VNI, lease TTL and reclaim delay.
    pub fn new(cidr: Ipv4Net, node_prefix: u8, mode: Mode) -> Self {
        Self {
            cidr,
            node_prefix,
            mode,
            vni: Self::DEFAULT_VNI,
            lease_ttl: Self::DEFAULT_LEASE_TTL,
            reclaim_after: Self::DEFAULT_RECLAIM_AFTER,
            cidr6: None,
            node_prefix6: Self::DEFAULT_NODE_PREFIX6,
        }
    }

    /// Refuse values that cannot work.
    pub fn validate(&self) -> Result<(), ClusterError> {
        let invalid = |problem| Err(ClusterError::InvalidConfig { problem });
        let cidr = self.cidr;
        if cidr.prefix_len() == 0 {
            return invalid(ConfigProblem::EveryAddress { cidr });
        }
        if let Some((a, l)) = FORBIDDEN
            .into_iter()
            .find(|&(a, l)| net::network(a, l).is_some_and(|f| net::overlaps(&f, &cidr)))
        {
            return invalid(ConfigProblem::Overlaps {
                cidr,
                addr: a,
                len: l,
            });
        }
        if self.node_prefix < cidr.prefix_len() {
            return invalid(ConfigProblem::NodePrefixShort {
                node_prefix: self.node_prefix,
                cidr,
            });
        }
        if self.node_prefix > MAX_NODE_PREFIX {
            return invalid(ConfigProblem::NodePrefixLong {
                node_prefix: self.node_prefix,
                max: MAX_NODE_PREFIX,
            });
        }
        if !(1..=MAX_VNI).contains(&self.vni) {
            return invalid(ConfigProblem::Vni {
                vni: self.vni,
                max: MAX_VNI,
            });
        }
        if !(1..=MAX_TTL).contains(&self.lease_ttl) {
            return invalid(ConfigProblem::LeaseTtl {
                ttl: self.lease_ttl,
                max: MAX_TTL,
            });
        }
        if !(self.lease_ttl..=MAX_TTL).contains(&self.reclaim_after) {
            return invalid(ConfigProblem::ReclaimAfter {
                reclaim_after: self.reclaim_after,
                ttl: self.lease_ttl,
                max: MAX_TTL,
            });
        }
        self.validate6()
    }

    /// Refuse IPv6 values that cannot work (none given: nothing to refuse).
    fn validate6(&self) -> Result<(), ClusterError> {
        let invalid = |problem| Err(ClusterError::InvalidConfig { problem });
        let Some(cidr) = self.cidr6 else {
            return Ok(());
        };
        if cidr.prefix_len() == 0 {
            return invalid(ConfigProblem::EveryAddress6 { cidr });
        }
        if let Some((a, l)) = FORBIDDEN6
            .into_iter()
            .find(|&(a, l)| net6::network(a, l).is_some_and(|f| net6::overlaps(&f, &cidr)))
        {
            return invalid(ConfigProblem::Overlaps6 {
                cidr,
                addr: a,
                len: l,
            });
        }
        let len = self.node_prefix6;
        if len < cidr.prefix_len() {
            return invalid(ConfigProblem::NodePrefix6Short { len, cidr });
        }
        if len > MAX_NODE_PREFIX6 {
            return invalid(ConfigProblem::NodePrefix6Long {
                len,
                max: MAX_NODE_PREFIX6,
            });
        }
        if len - cidr.prefix_len() > MAX_POOL_BITS6 {
            return invalid(ConfigProblem::TooManyPrefixes6 {
                len,
                max_bits: MAX_POOL_BITS6,
                cidr,
            });
        }
        Ok(())
    }

    /// Whether `subnet` can be a node's IPv6 prefix in this cluster (never without
    /// `cidr6`).
    pub fn is_node_subnet6(&self, subnet: &Ipv6Net) -> bool {
        self.cidr6
            .is_some_and(|c| subnet.prefix_len() == self.node_prefix6 && c.contains(subnet))
    }

    /// Whether `subnet` can be a node subnet of this cluster.
    pub fn is_node_subnet(&self, subnet: &Ipv4Net) -> bool {
        subnet.prefix_len() == self.node_prefix && self.cidr.contains(subnet)
    }
}

impl fmt::Display for ClusterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} in /{} node subnets, {} (VNI {}), lease TTL {} s, reclaim after {} s",
            self.cidr, self.node_prefix, self.mode, self.vni, self.lease_ttl, self.reclaim_after
        )?;
        match self.cidr6 {
            Some(c6) => write!(f, ", IPv6 {c6} in /{} node prefixes", self.node_prefix6),
            None => Ok(()),
        }
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
    fn a_refusal_names_its_problem() {
        let mut c = cfg();
        c.vni = 0;
        assert!(
            matches!(
                c.validate(),
                Err(ClusterError::InvalidConfig {
                    problem: ConfigProblem::Vni { vni: 0, .. }
                })
            ),
            "VNI 0 is refused as such"
        );
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
        fn six(c: &mut ClusterConfig, s: &str) {
            c.cidr6 = Some(s.parse().expect("net"));
        }
        bad(|c| six(c, "::/0"), "every address");
        bad(|c| six(c, "fe80::/16"), "overlaps fe80::/10");
        bad(|c| six(c, "ff02::/16"), "overlaps ff00::/8");
        bad(|c| six(c, "::/64"), "overlaps ::/127");
        bad(
            |c| {
                six(c, "fd00:10:244::/48");
                c.node_prefix6 = 40;
            },
            "/40 is shorter than",
        );
        bad(
            |c| {
                six(c, "fd00:10:244::/48");
                c.node_prefix6 = 121;
            },
            "longer than /120",
        );
        bad(
            |c| {
                six(c, "fd00::/16");
                c.node_prefix6 = 64;
            },
            "more than 2^24",
        );
    }

    #[test]
    fn an_ipv6_cidr_is_optional_and_an_old_config_still_reads() {
        let old = r#"{"cidr": "10.244.0.0/16", "node_prefix": 24, "mode": "vxlan", "vni": 7}"#;
        let c: ClusterConfig = serde_json::from_str(old).expect("an IPv4-only config reads");
        assert_eq!((c.cidr6, c.node_prefix6), (None, 64));
        assert!(!c.is_node_subnet6(&"fd00::/64".parse().expect("net")));
        let dual = ClusterConfig {
            cidr6: Some("fd00:10:244::/48".parse().expect("net")),
            ..cfg()
        };
        dual.validate().expect("dual stack is valid");
        let json = serde_json::to_value(&dual).expect("serializes");
        assert_eq!(json["cidr6"], "fd00:10:244::/48");
        assert!(
            json.get("node_prefix6").is_none(),
            "the default is left out: {json}"
        );
        let back: ClusterConfig = serde_json::from_value(json).expect("reads back");
        assert_eq!(back, dual);
        assert!(dual.is_node_subnet6(&"fd00:10:244:7::/64".parse().expect("net")));
        assert!(!dual.is_node_subnet6(&"fd00:10:244:7::/80".parse().expect("net")));
        assert!(!dual.is_node_subnet6(&"fd00:10:245::/64".parse().expect("net")));
        let c: ClusterConfig = serde_json::from_str(
            r#"{"cidr": "10.244.0.0/16", "node_prefix": 24, "mode": "host-gw",
                "cidr6": "fd00:10:244::/48", "node_prefix6": 80}"#,
        )
        .expect("reads");
        assert_eq!(c.node_prefix6, 80);
        assert!(
            c.to_string()
                .ends_with("IPv6 fd00:10:244::/48 in /80 node prefixes")
        );
    }
}
