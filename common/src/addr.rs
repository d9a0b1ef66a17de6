//! What the datapath's family-generic types need of an address.
use core::{fmt::Debug, hash::Hash};

use crate::{Be32, Ip6};

/// The /24 of IPv4 address `ip` (host bits 0): the prefix one host's
/// addresses share, which the datapath's per-source budgets and limits key on.
#[inline(always)]
pub fn prefix24(ip: Be32) -> Be32 {
    Be32::from_raw(ip.raw() & u32::from_ne_bytes([255, 255, 255, 0]))
}

/// An address family's address as the datapath keeps it: `Be32` for IPv4
/// and `Ip6` for IPv6. Flows, publishes and their maps are generic over it, so the two
/// families share one code path.
pub trait Addr: Copy + Eq + Ord + Hash + Debug + bytemuck::Pod + 'static {
    /// The all-zero address (`0.0.0.0`, `::`): a wildcard or "none".
    const ZERO: Self;
    /// Its size in bytes.
    const LEN: usize;
    /// This family's ICMP protocol number (ICMP 1, `ICMPv6` 58).
    const PROTO_ICMP: u8;

    /// Its size in 32-bit words, each as stored (`word(i)`, i < WORDS).
    const WORDS: usize;

    /// Equality, compiled without a byte loop.
    fn same(&self, other: &Self) -> bool;

    /// Its `i`th 32-bit word, as stored.
    fn word(&self, i: usize) -> u32;

    /// As the standard library's address.
    fn to_ip(&self) -> core::net::IpAddr;
}

impl Addr for Be32 {
    const ZERO: Self = Be32::ZERO;
    const LEN: usize = 4;
    const PROTO_ICMP: u8 = crate::PROTO_ICMP;

    const WORDS: usize = 1;

    #[inline(always)]
    fn same(&self, other: &Self) -> bool {
        *self == *other
    }

    #[inline(always)]
    fn word(&self, _: usize) -> u32 {
        self.raw()
    }

    fn to_ip(&self) -> core::net::IpAddr {
        core::net::Ipv4Addr::from(self.to_bytes()).into()
    }
}

impl Addr for Ip6 {
    const ZERO: Self = Ip6::UNSPECIFIED;
    const LEN: usize = 16;
    const PROTO_ICMP: u8 = crate::PROTO_ICMPV6;

    const WORDS: usize = 4;

    #[inline(always)]
    fn same(&self, other: &Self) -> bool {
        Ip6::same(self, other)
    }

    #[inline(always)]
    fn word(&self, i: usize) -> u32 {
        self.words[i & 3]
    }

    fn to_ip(&self) -> core::net::IpAddr {
        core::net::Ipv6Addr::from(self.octets()).into()
    }
}
