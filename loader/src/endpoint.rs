//! Endpoints registered by hand (`bpfnet endpoint add`): a container's address, MAC and
//! veth on a managed bridge, and the typed values the CLI parses into.
use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
};

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

/// A MAC address, written `02:42:ac:11:00:04`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("`{value}` is not a MAC address (six hex bytes, e.g. 02:42:ac:11:00:04)")]
    Mac { value: String },
    #[error("`{value}` is not an IPv4 address with a prefix length (e.g. 172.17.0.4/16)")]
    Cidr { value: String },
    #[error("`{value}` is not an IPv6 address with a prefix length (e.g. fd00:beef::4/64)")]
    Cidr6 { value: String },
    #[error(
        "`{value}` is not an IPv4 or IPv6 address with a prefix length (e.g. 172.17.0.4/16, fd00:beef::4/64)"
    )]
    AnyCidr { value: String },
}

impl FromStr for Mac {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseError::Mac { value: s.into() };
        let parts: Vec<&str> = s.split([':', '-']).collect();
        if parts.len() != 6 {
            return Err(err());
        }
        let mut mac = [0u8; 6];
        for (b, p) in mac.iter_mut().zip(parts) {
            if p.len() != 2 {
                return Err(err());
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| err())?;
        }
        if mac == [0; 6] || mac[0] & 1 != 0 {
            return Err(err()); // zero or multicast: never a container's own
        }
        Ok(Mac(mac))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// An IPv4 address with its prefix length (`ipnet::Ipv4Net`, host bits kept): a
/// container's own address, never unspecified, multicast, broadcast or loopback, and
/// never /0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Cidr(Ipv4Net);

impl Ipv4Cidr {
    /// `addr/len` unchecked but for `len` ≤ 32 (an address the host or etcd already holds).
    pub fn new(addr: Ipv4Addr, len: u8) -> Option<Self> {
        Ipv4Net::new(addr, len).ok().map(Self)
    }

    pub fn addr(&self) -> Ipv4Addr {
        self.0.addr()
    }

    pub fn prefix_len(&self) -> u8 {
        self.0.prefix_len()
    }

    /// The network it lies in (host bits cleared).
    pub fn net(&self) -> Ipv4Net {
        self.0.trunc()
    }
}

impl From<Ipv4Net> for Ipv4Cidr {
    fn from(n: Ipv4Net) -> Self {
        Self(n)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseError::Cidr { value: s.into() };
        let (addr, len) = s.split_once('/').ok_or_else(err)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| err())?;
        let len: u8 = len.parse().ok().filter(|&l| l > 0).ok_or_else(err)?;
        if addr.is_unspecified() || addr.is_multicast() || addr.is_broadcast() || addr.is_loopback()
        {
            return Err(err());
        }
        Self::new(addr, len).ok_or_else(err)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// An IPv6 address with its prefix length (`ipnet::Ipv6Net`, host bits kept): a
/// container's global, unique local or link-local address, never unspecified,
/// multicast, loopback or IPv4-mapped, and never /0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv6Cidr(Ipv6Net);

impl Ipv6Cidr {
    pub fn addr(&self) -> Ipv6Addr {
        self.0.addr()
    }

    pub fn prefix_len(&self) -> u8 {
        self.0.prefix_len()
    }
}

impl FromStr for Ipv6Cidr {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseError::Cidr6 { value: s.into() };
        let (addr, len) = s.split_once('/').ok_or_else(err)?;
        let addr: Ipv6Addr = addr.parse().map_err(|_| err())?;
        let len: u8 = len.parse().ok().filter(|&l| l > 0).ok_or_else(err)?;
        if addr.is_unspecified()
            || addr.is_multicast()
            || addr.is_loopback()
            || addr.to_ipv4_mapped().is_some()
        {
            return Err(err());
        }
        Ipv6Net::new(addr, len).map(Self).map_err(|_| err())
    }
}

impl fmt::Display for Ipv6Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// `--ip`: either family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpCidr {
    V4(Ipv4Cidr),
    V6(Ipv6Cidr),
}

impl FromStr for IpCidr {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(v4) = s.parse() {
            return Ok(Self::V4(v4));
        }
        if let Ok(v6) = s.parse() {
            return Ok(Self::V6(v6));
        }
        Err(ParseError::AnyCidr { value: s.into() })
    }
}

serde_as_string!(Mac);
serde_as_string!(Ipv4Cidr);
serde_as_string!(Ipv6Cidr);

/// A registered endpoint, as persisted and listed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointSpec {
    pub bridge: String,
    pub veth: String,
    /// Its IPv4 address (none on an IPv6-only network: it may send no IPv4 at all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<Ipv4Cidr>,
    /// Its IPv6 addresses (none: it may send IPv6 only from its MAC's link-local one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip6: Vec<Ipv6Cidr>,
    pub mac: Mac,
}

impl EndpointSpec {
    /// Whether `ip` is one of its addresses.
    pub fn has(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => self.ip.is_some_and(|c| c.addr() == v4),
            IpAddr::V6(v6) => self.ip6.iter().any(|c| c.addr() == v6),
        }
    }

    /// Its addresses, IPv4 first, space-separated.
    pub fn addresses(&self) -> String {
        let v4 = self.ip.iter().map(ToString::to_string);
        let v6 = self.ip6.iter().map(ToString::to_string);
        v4.chain(v6).collect::<Vec<_>>().join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_parse_and_print() {
        let m: Mac = "02:42:AC:11:00:04".parse().expect("valid MAC");
        assert_eq!(m.0, [0x02, 0x42, 0xac, 0x11, 0, 4]);
        assert_eq!(m.to_string(), "02:42:ac:11:00:04");
        assert_eq!("02-42-ac-11-00-04".parse::<Mac>(), Ok(m));
        for bad in [
            "",
            "02:42:ac:11:00",
            "02:42:ac:11:00:04:05",
            "2:42:ac:11:00:04",
            "zz:42:ac:11:00:04",
            "00:00:00:00:00:00",
            "01:00:5e:00:00:01",
        ] {
            assert!(bad.parse::<Mac>().is_err(), "`{bad}` should be rejected");
        }
    }

    #[test]
    fn cidrs_parse_and_print() {
        let c: Ipv4Cidr = "172.17.0.4/16".parse().expect("valid CIDR");
        assert_eq!(
            (c.addr(), c.prefix_len()),
            (Ipv4Addr::new(172, 17, 0, 4), 16)
        );
        assert_eq!(c.to_string(), "172.17.0.4/16");
        for bad in [
            "172.17.0.4",
            "172.17.0.4/",
            "172.17.0.4/0",
            "172.17.0.4/33",
            "x/16",
            "0.0.0.0/8",
            "127.0.0.1/8",
            "224.0.0.1/4",
        ] {
            let e = bad.parse::<Ipv4Cidr>().expect_err(bad);
            assert!(e.to_string().contains("prefix length"), "{e}");
        }
    }

    #[test]
    fn cidrs_keep_the_host_bits_and_know_their_network() {
        let c: Ipv4Cidr = "10.244.3.7/24".parse().expect("valid CIDR");
        assert_eq!(c.net().to_string(), "10.244.3.0/24");
        assert_eq!(c.to_string(), "10.244.3.7/24");
        assert_eq!(Ipv4Cidr::new(Ipv4Addr::new(10, 0, 0, 1), 33), None);
        let json = serde_json::to_string(&c).expect("serialize");
        assert_eq!(json, r#""10.244.3.7/24""#);
        assert_eq!(serde_json::from_str::<Ipv4Cidr>(&json).ok(), Some(c));
        assert!(serde_json::from_str::<Ipv4Cidr>(r#""10.244.3.7/0""#).is_err());
        let c6: Ipv6Cidr = "fd00:beef::4/64".parse().expect("valid CIDR");
        let json = serde_json::to_string(&c6).expect("serialize");
        assert_eq!(json, r#""fd00:beef::4/64""#);
        assert_eq!(serde_json::from_str::<Ipv6Cidr>(&json).ok(), Some(c6));
        // What the hand-written parser accepted and ipnet's own would not.
        assert!("172.17.0.4/016".parse::<Ipv4Cidr>().is_ok());
    }

    #[test]
    fn ipv6_cidrs_parse_and_either_family_is_an_ip() {
        let c: Ipv6Cidr = "fd00:beef::4/64".parse().expect("valid CIDR");
        assert_eq!(c.addr(), "fd00:beef::4".parse::<Ipv6Addr>().expect("addr"));
        assert_eq!(
            (c.prefix_len(), c.to_string().as_str()),
            (64, "fd00:beef::4/64")
        );
        assert!("fe80::42:acff:fe11:4/64".parse::<Ipv6Cidr>().is_ok());
        for bad in [
            "fd00::4",
            "fd00::4/0",
            "fd00::4/129",
            "::/64",
            "::1/128",
            "ff02::1/16",
            "::ffff:10.0.0.1/96",
            "172.17.0.4/16",
        ] {
            let e = bad.parse::<Ipv6Cidr>().expect_err(bad);
            assert!(e.to_string().contains("IPv6"), "{e}");
        }
        assert!(matches!("10.0.0.2/8".parse(), Ok(IpCidr::V4(_))));
        assert!(matches!("2001:db8::2/64".parse(), Ok(IpCidr::V6(_))));
        let e = "10.0.0.2".parse::<IpCidr>().expect_err("no length");
        assert!(e.to_string().contains("IPv4 or IPv6"), "{e}");
    }
}
