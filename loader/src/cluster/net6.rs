//! IPv6 networks: the cluster's IPv6 CIDR and the node prefixes carved out of it, as
//! `ipnet::Ipv6Net` always normalized (host bits cleared), as [`super::net`] does IPv4.
use std::net::Ipv6Addr;

pub use ipnet::Ipv6Net;
use serde::{Deserialize as _, Deserializer, Serializer};

use super::ParseError;

/// The network `addr` belongs to at prefix length `len`; `None` when `len` > 128.
pub fn network(addr: Ipv6Addr, len: u8) -> Option<Ipv6Net> {
    Ipv6Net::new(addr, len).ok().map(|n| n.trunc())
}

/// `addr/len` of IPv6, normalized.
pub fn parse(s: &str) -> Result<Ipv6Net, ParseError> {
    let err = || ParseError::Net6 { value: s.into() };
    let (addr, len) = s.split_once('/').ok_or_else(err)?;
    let addr: Ipv6Addr = addr.parse().map_err(|_| err())?;
    let len: u8 = len.parse().map_err(|_| err())?;
    network(addr, len).ok_or_else(err)
}

/// Its first host address: a node prefix's gateway (the bridge's address).
pub fn gateway(net: &Ipv6Net) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(net.network()).wrapping_add(1))
}

/// Whether the two networks share an address (prefixes do when one holds the other).
pub fn overlaps(a: &Ipv6Net, b: &Ipv6Net) -> bool {
    a.contains(b) || b.contains(a)
}

/// Every subnet of prefix length `len` in `net`, lowest first; none when `len` is
/// shorter than its own or longer than 128. (A pool scans them in order: the config
/// keeps `len` less its own small.)
pub fn subnets(net: &Ipv6Net, len: u8) -> impl Iterator<Item = Ipv6Net> + use<> {
    net.trunc().subnets(len).into_iter().flatten()
}

/// `#[serde(with = "net6::opt")]`: an optional network, written as `addr/len`, read
/// normalized.
pub mod opt {
    use serde::{Deserialize as _, Deserializer, Serializer};

    use super::Ipv6Net;

    pub fn serialize<S: Serializer>(net: &Option<Ipv6Net>, s: S) -> Result<S::Ok, S::Error> {
        match net {
            Some(n) => s.serialize_some(&n.to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Ipv6Net>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| super::parse(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// `#[serde(with = "net6")]`: written as `addr/len`, read normalized.
pub fn serialize<S: Serializer>(net: &Ipv6Net, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(net)
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Ipv6Net, D::Error> {
    parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv6Net {
        parse(s).expect("valid network")
    }

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Wire {
        #[serde(default, skip_serializing_if = "Option::is_none", with = "super::opt")]
        net: Option<Ipv6Net>,
    }

    #[test]
    fn parses_normalized_prints_and_refuses_ipv4() {
        let n = net("fd00:10:244:3::7/64");
        assert_eq!(n.to_string(), "fd00:10:244:3::/64");
        assert_eq!(
            gateway(&n),
            "fd00:10:244:3::1".parse::<Ipv6Addr>().expect("ip")
        );
        for bad in ["fd00::", "fd00::/129", "10.244.0.0/16", "x/8"] {
            let e = parse(bad).expect_err(bad);
            assert!(e.to_string().contains("IPv6 network"), "{e}");
        }
        let json = serde_json::to_string(&Wire { net: Some(n) }).expect("serializes");
        assert_eq!(json, r#"{"net":"fd00:10:244:3::/64"}"#);
        let read = |s: &str| serde_json::from_str::<Wire>(s).map(|w| w.net);
        assert_eq!(
            read(r#"{"net":"fd00:10:244:3::7/64"}"#).expect("parses"),
            Some(n),
            "read normalized"
        );
        assert_eq!(read("{}").expect("absent"), None);
        assert_eq!(
            serde_json::to_string(&Wire { net: None }).expect("ok"),
            "{}"
        );
        let e = read(r#"{"net":"10.0.0.0/8"}"#).expect_err("IPv4");
        assert!(e.to_string().contains("IPv6 network"), "{e}");
    }

    #[test]
    fn subnets_contains_overlaps_and_covers() {
        let cidr = net("fd00:10:244::/48");
        let all: Vec<Ipv6Net> = subnets(&cidr, 64).take(3).collect();
        assert_eq!(
            all,
            [
                net("fd00:10:244::/64"),
                net("fd00:10:244:1::/64"),
                net("fd00:10:244:2::/64")
            ]
        );
        assert_eq!(subnets(&cidr, 64).count(), 1 << 16);
        assert_eq!(
            subnets(&cidr, 64).last(),
            Some(net("fd00:10:244:ffff::/64"))
        );
        assert_eq!(subnets(&cidr, 47).count(), 0);
        assert_eq!(subnets(&cidr, 129).count(), 0);
        assert!(cidr.contains(&net("fd00:10:244:5::/64")));
        assert!(!net("fd00:10:244:5::/64").contains(&cidr));
        assert!(overlaps(&cidr, &net("fd00:10::/32")));
        assert!(!overlaps(&cidr, &net("fd00:10:245::/48")));
        assert!(cidr.contains(&"fd00:10:244:ffff::9".parse::<Ipv6Addr>().expect("ip")));
        assert_eq!(subnets(&net("::/0"), 1).count(), 2);
    }
}
