//! IPv4 networks: the cluster CIDR and the node subnets carved out of it, as
//! `ipnet::Ipv4Net` always normalized (host bits cleared): `10.244.3.7/24` is read as
//! `10.244.3.0/24` from the command line, etcd and the state file alike. What bpfnet adds
//! to ipnet: that normalization, its own parse error, a network's edges and its subnets
//! as a possibly empty list.
use std::net::Ipv4Addr;

pub use ipnet::Ipv4Net;
use serde::{Deserialize as _, Deserializer, Serializer};

use super::ParseError;

/// The network `addr` belongs to at prefix length `len`; `None` when `len` > 32.
pub fn network(addr: Ipv4Addr, len: u8) -> Option<Ipv4Net> {
    Ipv4Net::new(addr, len).ok().map(|n| n.trunc())
}

/// `a.b.c.d/len`, normalized.
pub fn parse(s: &str) -> Result<Ipv4Net, ParseError> {
    let err = || ParseError::Net { value: s.into() };
    let (addr, len) = s.split_once('/').ok_or_else(err)?;
    let addr: Ipv4Addr = addr.parse().map_err(|_| err())?;
    let len: u8 = len.parse().map_err(|_| err())?;
    network(addr, len).ok_or_else(err)
}

/// Its network and broadcast addresses, which no host on it may have (none in a /31 or
/// /32, whose every address is a host's: RFC 3021).
pub fn edges(net: &Ipv4Net) -> Option<[Ipv4Addr; 2]> {
    (net.prefix_len() < 31).then(|| [net.network(), net.broadcast()])
}

/// Whether the two networks share an address (prefixes do when one holds the other).
pub fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(b) || b.contains(a)
}

/// Every subnet of prefix length `len` in `net`, lowest first; none when `len` is
/// shorter than its own or longer than 32.
pub fn subnets(net: &Ipv4Net, len: u8) -> impl Iterator<Item = Ipv4Net> + use<> {
    net.trunc().subnets(len).into_iter().flatten()
}

/// `#[serde(with = "net")]`: written as `a.b.c.d/len`, read normalized.
pub fn serialize<S: Serializer>(net: &Ipv4Net, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(net)
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Ipv4Net, D::Error> {
    parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        parse(s).expect("valid network")
    }

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Wire(#[serde(with = "super")] Ipv4Net);

    #[test]
    fn parses_normalized_and_prints() {
        let n = net("10.244.3.7/24");
        assert_eq!(
            (n.addr(), n.prefix_len()),
            (Ipv4Addr::new(10, 244, 3, 0), 24)
        );
        assert_eq!(n.to_string(), "10.244.3.0/24");
        assert_eq!(net("1.2.3.4/0").to_string(), "0.0.0.0/0");
        assert_eq!(net("1.2.3.4/32").to_string(), "1.2.3.4/32");
        for bad in [
            "10.244.0.0",
            "10.244.0.0/33",
            "10.244.0.0/",
            "x/8",
            "10.244/16",
        ] {
            let e = parse(bad).expect_err(bad);
            assert!(e.to_string().contains("IPv4 network"), "{e}");
        }
        let json = serde_json::to_string(&Wire(n)).expect("serializes");
        assert_eq!(json, "\"10.244.3.0/24\"");
        assert_eq!(
            serde_json::from_str::<Wire>("\"10.244.3.7/24\"").expect("parses"),
            Wire(n),
            "read normalized"
        );
        let e = serde_json::from_str::<Wire>("\"10.244.3.0/33\"").expect_err("too long");
        assert!(e.to_string().contains("IPv4 network"), "{e}");
    }

    #[test]
    fn edges_are_the_network_and_broadcast_addresses_of_a_subnet_with_hosts() {
        let ip = |s: &str| s.parse::<Ipv4Addr>().expect("address");
        assert_eq!(
            edges(&net("172.17.0.0/16")),
            Some([ip("172.17.0.0"), ip("172.17.255.255")])
        );
        assert_eq!(
            edges(&net("10.1.2.8/30")),
            Some([ip("10.1.2.8"), ip("10.1.2.11")])
        );
        assert_eq!(edges(&net("10.1.2.8/31")), None);
        assert_eq!(edges(&net("10.1.2.8/32")), None);
    }

    #[test]
    fn contains_overlaps_and_covers() {
        let cidr = net("10.244.0.0/16");
        assert!(cidr.contains(&Ipv4Addr::new(10, 244, 255, 255)));
        assert!(!cidr.contains(&Ipv4Addr::new(10, 245, 0, 0)));
        assert!(overlaps(&cidr, &net("10.244.3.0/24")));
        assert!(overlaps(&net("10.244.3.0/24"), &cidr));
        assert!(!overlaps(&net("10.244.3.0/24"), &net("10.244.4.0/24")));
        assert!(overlaps(&net("10.244.3.0/24"), &net("10.244.3.128/25")));
        assert!(cidr.contains(&net("10.244.3.0/24")));
        assert!(!net("10.244.3.0/24").contains(&cidr));
        assert!(!cidr.contains(&net("10.0.0.0/8")));
        assert!(net("0.0.0.0/0").contains(&cidr));
    }

    #[test]
    fn subnets_are_enumerated_lowest_first_and_disjoint() {
        let all: Vec<Ipv4Net> = subnets(&net("10.244.0.0/20"), 26).collect();
        assert_eq!(all.len(), 64);
        assert_eq!(all[0], net("10.244.0.0/26"));
        assert_eq!(all[1], net("10.244.0.64/26"));
        assert_eq!(all[63], net("10.244.15.192/26"));
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert!(!overlaps(a, b), "{a} and {b}");
            }
        }
        assert_eq!(subnets(&net("10.0.0.0/8"), 8).count(), 1);
        assert_eq!(subnets(&net("10.0.0.0/8"), 7).count(), 0);
        assert_eq!(subnets(&net("10.0.0.0/8"), 33).count(), 0);
        assert_eq!(
            subnets(&net("255.255.255.0/24"), 32).last(),
            Some(net("255.255.255.255/32"))
        );
        assert_eq!(subnets(&net("0.0.0.0/0"), 1).count(), 2);
    }
}
