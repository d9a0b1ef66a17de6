//! Values of the daemon's flags, each parsed (and refused) where it is read.
use std::{fmt, str::FromStr};

use crate::spec::PortRange;

/// The source ports masqueraded egress may use: START-END within 1024-65535.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnatPorts(pub PortRange);

impl FromStr for SnatPorts {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        PortRange::parse(s)
            .filter(|r| r.start >= 1024)
            .map(Self)
            .ok_or_else(|| format!("`{s}` is not a port range START-END within 1024-65535"))
    }
}

/// A network interface name as the kernel accepts it: 1-15 bytes, no `/`, `:` or
/// whitespace, not `.` or `..`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct IfName(String);

impl FromStr for IfName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let ok = (1..libc::IF_NAMESIZE).contains(&s.len())
            && s != "."
            && s != ".."
            && !s.chars().any(|c| c == '/' || c == ':' || c.is_whitespace());
        if ok {
            Ok(Self(s.to_string()))
        } else {
            Err(format!(
                "`{s}` is not an interface name (1-15 characters, no `/`, `:` or spaces)"
            ))
        }
    }
}

impl fmt::Display for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<IfName> for String {
    fn from(n: IfName) -> String {
        n.0
    }
}

/// `--peer SUBNET=UNDERLAY_IP`: a host whose containers' prefix is SUBNET, reached at
/// `UNDERLAY_IP` on a shared segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    pub subnet: crate::endpoint::Ipv4Cidr,
    pub underlay: std::net::Ipv4Addr,
}

impl FromStr for Peer {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let err = || format!("`{s}` is not SUBNET=UNDERLAY_IP (e.g. 10.244.2.0/24=192.0.2.2)");
        let (subnet, underlay) = s.split_once('=').ok_or_else(err)?;
        let subnet = subnet.parse().map_err(|_| err())?;
        let underlay: std::net::Ipv4Addr = underlay.parse().map_err(|_| err())?;
        if underlay.is_unspecified() || underlay.is_multicast() || underlay.is_broadcast() {
            return Err(err());
        }
        Ok(Self { subnet, underlay })
    }
}

/// `--etcd-network BRIDGE=PREFIX`: a cluster network in etcd served on a bridge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdNetwork {
    pub bridge: IfName,
    pub prefix: String,
}

impl FromStr for EtcdNetwork {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let err = || format!("`{s}` is not BRIDGE=PREFIX (e.g. br-blue=/bpfnet/blue)");
        let (bridge, prefix) = s.split_once('=').ok_or_else(err)?;
        if !prefix.starts_with('/') || prefix.len() < 2 {
            return Err(err());
        }
        Ok(Self {
            bridge: bridge.parse().map_err(|_| err())?,
            prefix: prefix.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snat_ports_and_interface_names_parse_or_say_why_not() {
        assert_eq!(
            "20000-30000"
                .parse::<SnatPorts>()
                .map(|p| (p.0.start, p.0.end)),
            Ok((20000, 30000))
        );
        for bad in ["80-90", "30000-20000", "1023", "x-y", ""] {
            assert!(bad.parse::<SnatPorts>().is_err(), "{bad}");
        }
        assert_eq!(
            "docker0".parse::<IfName>().map(String::from),
            Ok("docker0".into())
        );
        for bad in ["", "a-very-long-name0", "eth0/1", "a b", "..", "eth0:1"] {
            let err = bad.parse::<IfName>().expect_err(bad);
            assert!(err.contains("interface name"), "{err}");
        }
    }

    #[test]
    fn an_etcd_network_is_a_bridge_and_a_key_prefix() {
        let n: EtcdNetwork = "br-blue=/bpfnet/blue".parse().expect("network");
        assert_eq!(
            (String::from(n.bridge), n.prefix.as_str()),
            ("br-blue".into(), "/bpfnet/blue")
        );
        for bad in [
            "br-blue",
            "br-blue=",
            "br-blue=blue",
            "=/blue",
            "a very long bridge=/x",
            "br=/",
        ] {
            let err = bad.parse::<EtcdNetwork>().expect_err(bad);
            assert!(err.contains("BRIDGE=PREFIX"), "{err}");
        }
    }

    #[test]
    fn a_peer_is_a_subnet_and_an_underlay_address() {
        let p: Peer = "10.244.2.0/24=192.0.2.2".parse().expect("peer");
        assert_eq!(p.subnet.to_string(), "10.244.2.0/24");
        assert_eq!(p.underlay, std::net::Ipv4Addr::new(192, 0, 2, 2));
        for bad in [
            "10.244.2.0/24",
            "10.244.2.0/24=",
            "=192.0.2.2",
            "10.244.2.0/24=0.0.0.0",
            "x=y",
        ] {
            let err = bad.parse::<Peer>().expect_err(bad);
            assert!(err.contains("SUBNET=UNDERLAY_IP"), "{err}");
        }
    }
}
