//! IPv4 networks: the cluster CIDR and the node subnets carved out of it.
use std::{fmt, net::Ipv4Addr, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::ParseError;

/// An IPv4 network, `a.b.c.d/len`, its address normalized (host bits cleared).
///
/// Unlike [`crate::endpoint::Ipv4Cidr`], which is one container's address with the
/// length of its network, this is a network: `10.244.3.7/24` parses as `10.244.3.0/24`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Net {
    /// The network address (its host bits are zero).
    pub addr: Ipv4Addr,
    /// The prefix length, 0..=32.
    pub len: u8,
}

impl Ipv4Net {
    /// The network `addr` belongs to at prefix length `len`; `None` when `len` > 32.
    pub fn new(addr: Ipv4Addr, len: u8) -> Option<Self> {
        (len <= 32).then(|| Self {
            addr: Ipv4Addr::from(u32::from(addr) & mask(len)),
            len,
        })
    }

    /// Its first address (the network address) as a number.
    fn first(&self) -> u32 {
        u32::from(self.addr)
    }

    /// Its last address (the broadcast address) as a number.
    fn last(&self) -> u32 {
        self.first() | !mask(self.len)
    }

    /// Its network and broadcast addresses, which no host on it may have (none in a /31
    /// or /32, whose every address is a host's: RFC 3021).
    pub fn edges(&self) -> Option<[Ipv4Addr; 2]> {
        (self.len < 31).then(|| [self.addr, Ipv4Addr::from(self.last())])
    }

    /// Whether `ip` lies in this network.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.len) == self.first()
    }

    /// Whether the two networks share an address.
    pub fn overlaps(&self, other: &Self) -> bool {
        self.first() <= other.last() && other.first() <= self.last()
    }

    /// Whether `other` lies entirely in this network.
    pub fn covers(&self, other: &Self) -> bool {
        other.len >= self.len && self.contains(other.addr)
    }

    /// Every subnet of prefix length `len` in this network, lowest first; none when `len`
    /// is shorter than this network's or longer than 32.
    pub fn subnets(&self, len: u8) -> impl Iterator<Item = Self> + use<> {
        let count = if (self.len..=32).contains(&len) {
            1u64 << (len - self.len)
        } else {
            0
        };
        let (base, step) = (
            u64::from(self.first()),
            1u64 << (32 - u32::from(len.min(32))),
        );
        (0..count).map(move |i| Self {
            // At most the last address of a /0: the sum fits in 32 bits.
            addr: Ipv4Addr::from((base + i * step) as u32),
            len,
        })
    }
}

/// The netmask of a prefix length (0..=32) as a number.
fn mask(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

impl FromStr for Ipv4Net {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseError::Net { value: s.into() };
        let (addr, len) = s.split_once('/').ok_or_else(err)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| err())?;
        let len: u8 = len.parse().map_err(|_| err())?;
        Self::new(addr, len).ok_or_else(err)
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl Serialize for Ipv4Net {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ipv4Net {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().expect("valid network")
    }

    #[test]
    fn parses_normalized_and_prints() {
        let n = net("10.244.3.7/24");
        assert_eq!((n.addr, n.len), (Ipv4Addr::new(10, 244, 3, 0), 24));
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
            let e = bad.parse::<Ipv4Net>().expect_err(bad);
            assert!(e.to_string().contains("IPv4 network"), "{e}");
        }
        let json = serde_json::to_string(&n).expect("serializes");
        assert_eq!(json, "\"10.244.3.0/24\"");
        assert_eq!(serde_json::from_str::<Ipv4Net>(&json).expect("parses"), n);
    }

    #[test]
    fn edges_are_the_network_and_broadcast_addresses_of_a_subnet_with_hosts() {
        let ip = |s: &str| s.parse::<Ipv4Addr>().expect("address");
        assert_eq!(
            net("172.17.0.0/16").edges(),
            Some([ip("172.17.0.0"), ip("172.17.255.255")])
        );
        assert_eq!(
            net("10.1.2.8/30").edges(),
            Some([ip("10.1.2.8"), ip("10.1.2.11")])
        );
        assert_eq!(net("10.1.2.8/31").edges(), None);
        assert_eq!(net("10.1.2.8/32").edges(), None);
    }

    #[test]
    fn contains_overlaps_and_covers() {
        let cidr = net("10.244.0.0/16");
        assert!(cidr.contains(Ipv4Addr::new(10, 244, 255, 255)));
        assert!(!cidr.contains(Ipv4Addr::new(10, 245, 0, 0)));
        assert!(cidr.overlaps(&net("10.244.3.0/24")));
        assert!(net("10.244.3.0/24").overlaps(&cidr));
        assert!(!net("10.244.3.0/24").overlaps(&net("10.244.4.0/24")));
        assert!(net("10.244.3.0/24").overlaps(&net("10.244.3.128/25")));
        assert!(cidr.covers(&net("10.244.3.0/24")));
        assert!(!net("10.244.3.0/24").covers(&cidr));
        assert!(!cidr.covers(&net("10.0.0.0/8")));
        assert!(net("0.0.0.0/0").covers(&cidr));
    }

    #[test]
    fn subnets_are_enumerated_lowest_first_and_disjoint() {
        let all: Vec<Ipv4Net> = net("10.244.0.0/20").subnets(26).collect();
        assert_eq!(all.len(), 64);
        assert_eq!(all[0], net("10.244.0.0/26"));
        assert_eq!(all[1], net("10.244.0.64/26"));
        assert_eq!(all[63], net("10.244.15.192/26"));
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert!(!a.overlaps(b), "{a} and {b}");
            }
        }
        assert_eq!(net("10.0.0.0/8").subnets(8).count(), 1);
        assert_eq!(net("10.0.0.0/8").subnets(7).count(), 0);
        assert_eq!(
            net("255.255.255.0/24").subnets(32).last(),
            Some(net("255.255.255.255/32"))
        );
        assert_eq!(net("0.0.0.0/0").subnets(1).count(), 2);
    }
}
