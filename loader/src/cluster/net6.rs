//! IPv6 networks: the cluster's IPv6 CIDR and the node prefixes carved out of it.
use std::{fmt, net::Ipv6Addr, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::ParseError;

/// An IPv6 network, `addr/len`, its address normalized (host bits cleared).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv6Net {
    /// The network address (its host bits are zero).
    pub addr: Ipv6Addr,
    /// The prefix length, 0..=128.
    pub len: u8,
}

impl Ipv6Net {
    /// The network `addr` belongs to at prefix length `len`; `None` when `len` > 128.
    pub fn new(addr: Ipv6Addr, len: u8) -> Option<Self> {
        (len <= 128).then(|| Self {
            addr: Ipv6Addr::from(u128::from(addr) & mask(len)),
            len,
        })
    }

    fn first(&self) -> u128 {
        u128::from(self.addr)
    }

    fn last(&self) -> u128 {
        self.first() | !mask(self.len)
    }

    /// Its first host address: a node prefix's gateway (the bridge's address).
    pub fn gateway(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.first().wrapping_add(1))
    }

    /// Whether `ip` lies in this network.
    pub fn contains(&self, ip: Ipv6Addr) -> bool {
        u128::from(ip) & mask(self.len) == self.first()
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
    /// is shorter than this network's or longer than 128. (A pool scans them in order:
    /// the config keeps `len - self.len` small enough to count them in a u128.)
    pub fn subnets(&self, len: u8) -> impl Iterator<Item = Self> + use<> {
        let bits = len.checked_sub(self.len).filter(|_| len <= 128);
        let count = bits
            .and_then(|b| 1u128.checked_shl(u32::from(b)))
            .unwrap_or(0);
        let base = self.first();
        let shift = 128 - u32::from(len.min(128));
        (0..count).map(move |i| Self {
            addr: Ipv6Addr::from(base | i.checked_shl(shift).unwrap_or(0)),
            len,
        })
    }
}

/// The netmask of a prefix length (0..=128) as a number.
fn mask(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

impl FromStr for Ipv6Net {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseError::Net6 { value: s.into() };
        let (addr, len) = s.split_once('/').ok_or_else(err)?;
        let addr: Ipv6Addr = addr.parse().map_err(|_| err())?;
        let len: u8 = len.parse().map_err(|_| err())?;
        Self::new(addr, len).ok_or_else(err)
    }
}

impl fmt::Display for Ipv6Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl Serialize for Ipv6Net {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ipv6Net {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv6Net {
        s.parse().expect("valid network")
    }

    #[test]
    fn parses_normalized_prints_and_refuses_ipv4() {
        let n = net("fd00:10:244:3::7/64");
        assert_eq!(n.to_string(), "fd00:10:244:3::/64");
        assert_eq!(
            n.gateway(),
            "fd00:10:244:3::1".parse::<Ipv6Addr>().expect("ip")
        );
        for bad in ["fd00::", "fd00::/129", "10.244.0.0/16", "x/8"] {
            let e = bad.parse::<Ipv6Net>().expect_err(bad);
            assert!(e.to_string().contains("IPv6 network"), "{e}");
        }
        let json = serde_json::to_string(&n).expect("serializes");
        assert_eq!(json, "\"fd00:10:244:3::/64\"");
        assert_eq!(serde_json::from_str::<Ipv6Net>(&json).expect("parses"), n);
    }

    #[test]
    fn subnets_contains_overlaps_and_covers() {
        let cidr = net("fd00:10:244::/48");
        let all: Vec<Ipv6Net> = cidr.subnets(64).take(3).collect();
        assert_eq!(
            all,
            [
                net("fd00:10:244::/64"),
                net("fd00:10:244:1::/64"),
                net("fd00:10:244:2::/64")
            ]
        );
        assert_eq!(cidr.subnets(64).count(), 1 << 16);
        assert_eq!(cidr.subnets(64).last(), Some(net("fd00:10:244:ffff::/64")));
        assert_eq!(cidr.subnets(47).count(), 0);
        assert_eq!(cidr.subnets(129).count(), 0);
        assert!(cidr.covers(&net("fd00:10:244:5::/64")));
        assert!(!net("fd00:10:244:5::/64").covers(&cidr));
        assert!(cidr.overlaps(&net("fd00:10::/32")));
        assert!(!cidr.overlaps(&net("fd00:10:245::/48")));
        assert!(cidr.contains("fd00:10:244:ffff::9".parse().expect("ip")));
        assert_eq!(net("::/0").subnets(1).count(), 2);
    }
}
