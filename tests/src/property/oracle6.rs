//! An independent reading of an IPv6 frame for the property tests: its header chain
//! walked as RFC 8200 writes it (with bpfnet's documented limits: six extension headers,
//! an upper-layer header within 255 bytes of the frame's start, a payload length of 0
//! only for GSO), its class, tuple and named drop, and what each hook must do with it.
use std::fmt;

use bpfnet::datapath::Hook::{self, FromContainer as OUT, FromUplink as IN};
use common::{Be16, CtKey, Ip6, PROTO_TCP, PROTO_UDP, Reason};

pub use super::oracle::be16;
use super::{
    frames6::{
        ICMPV6_ECHO, ICMPV6_ECHOREPLY, IPV6_HLEN, ND_NA, ND_RA, ND_REDIRECT, ND_RS, NEXT_DEST_OPTS,
        NEXT_FRAGMENT, NEXT_HOP_BY_HOP, NEXT_ICMPV6, NEXT_ROUTING, l4_sum,
    },
    oracle::Class,
};
use crate::{
    fixture::CONTAINER_MAC,
    packet::{ETH_HLEN, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN},
    tables6::{C1_6, R1},
};

/// Extension headers bpfnet walks before the upper-layer header.
const MAX_EXT_HEADERS: usize = 6;

/// The addresses, ports (or `ICMPv6` echo identifier, as `CtKey` holds it) and next header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tuple6 {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
}

impl Tuple6 {
    #[must_use]
    pub fn reversed(self) -> Self {
        Tuple6 {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
            ..self
        }
    }

    /// The CT key a packet with this tuple is looked up by.
    pub fn key(&self) -> CtKey<Ip6> {
        CtKey::new(
            Ip6::from_octets(self.src),
            Ip6::from_octets(self.dst),
            Be16::new(self.sport),
            Be16::new(self.dport),
            self.proto,
        )
    }
}

impl fmt::Display for Tuple6 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (s, d) = (
            std::net::Ipv6Addr::from(self.src),
            std::net::Ipv6Addr::from(self.dst),
        );
        write!(
            f,
            "[{s}]:{} -> [{d}]:{} next {}",
            self.sport, self.dport, self.proto
        )
    }
}

pub struct Parsed6 {
    pub class: Class,
    /// Why the frame is in its class.
    pub what: &'static str,
    /// The drop of a chain bpfnet cannot walk (before any other check, on both hooks).
    pub walk_drop: Option<Reason>,
    /// The drop of an upper-layer header that does not fit (once the packet is judged).
    pub l4_drop: Option<Reason>,
    /// The tuple of a well-formed packet that carries its upper-layer header.
    pub tuple: Option<Tuple6>,
    pub icmp: Option<u8>,
    /// A fragment header was walked.
    pub frag: bool,
    /// Extension headers before the upper layer.
    pub exts: usize,
    /// A neighbour advertisement's target.
    pub na_target: Option<[u8; 16]>,
    /// A neighbour advertisement too short for its target.
    pub na_short: bool,
}

impl Parsed6 {
    fn is(mut self, class: Class, what: &'static str) -> Self {
        self.class = class;
        self.what = what;
        self
    }

    fn bad_chain(self, what: &'static str) -> Self {
        Parsed6 {
            walk_drop: Some(Reason::DropMalformed),
            ..self.is(Class::Malformed, what)
        }
    }

    fn bad_l4(self, reason: Reason, what: &'static str) -> Self {
        Parsed6 {
            l4_drop: Some(reason),
            ..self.is(Class::Malformed, what)
        }
    }

    /// The named drop `hook` must count for this frame in the fixture (`tables6::setup6`,
    /// frames from a container from its MAC), or None when the frame is well-formed or
    /// another check may come first.
    pub fn drop_on(&self, hook: Hook, f: &[u8]) -> Option<Reason> {
        if self.class == Class::NotIp || self.walk_drop.is_some() {
            return self.walk_drop;
        }
        let icmp = self.icmp.unwrap_or(0);
        match hook {
            IN => {
                if self.na_short {
                    return Some(Reason::DropMalformed);
                }
                if let Some(t) = self.na_target {
                    return [C1_6, R1]
                        .contains(&t)
                        .then_some(Reason::DropNeighSpoof)
                        .or(self.l4_drop);
                }
                self.l4_drop
            }
            OUT => {
                if icmp == ND_RA || icmp == ND_REDIRECT {
                    return Some(Reason::DropRouterAdvert);
                }
                if (ND_RS..=ND_REDIRECT).contains(&icmp) {
                    return self.frag.then_some(Reason::DropRouterAdvert);
                }
                // Routed or switched, a packet of the port's own address to a unicast
                // address off the link is judged whole.
                let h = &f[ETH_HLEN..];
                let (src, dst) = (addr(&h[8..]), addr(&h[24..]));
                let judged = f[6..12] == CONTAINER_MAC
                    && [C1_6, R1].contains(&src)
                    && dst[0] != 0xff
                    && dst[..2] != [0xfe, 0x80];
                judged.then_some(self.l4_drop).flatten()
            }
            _ => None,
        }
    }
}

fn addr(b: &[u8]) -> [u8; 16] {
    b[..16].try_into().expect("16 bytes")
}

/// Read IPv6 frame `f`.
pub fn parse6(f: &[u8]) -> Parsed6 {
    let p = Parsed6 {
        class: Class::NotIp,
        what: "not IPv6",
        walk_drop: None,
        l4_drop: None,
        tuple: None,
        icmp: None,
        frag: false,
        exts: 0,
        na_target: None,
        na_short: false,
    };
    if f.len() < ETH_HLEN || be16(&f[12..]) != 0x86dd {
        return p;
    }
    let h = &f[ETH_HLEN..];
    if h.len() < IPV6_HLEN {
        return p.bad_chain("IPv6 header past the frame");
    }
    if h[0] >> 4 != 6 {
        return p.bad_chain("IP version other than 6");
    }
    let payload = usize::from(be16(&h[4..]));
    if payload == 0 {
        return p.bad_chain("payload length 0 (not GSO)");
    }
    if payload > h.len() - IPV6_HLEN {
        return p.bad_chain("payload length past the frame");
    }
    let end = IPV6_HLEN + payload;
    let (src, dst) = (addr(&h[8..]), addr(&h[24..]));
    let mut p = p;
    let (mut next, mut off) = (h[6], IPV6_HLEN);
    let (mut walked, mut later) = (false, false);
    for _ in 0..=MAX_EXT_HEADERS {
        match next {
            NEXT_HOP_BY_HOP | NEXT_ROUTING | NEXT_DEST_OPTS => {
                let Some(b) = h.get(off..off + 2) else {
                    return p.bad_chain("extension header past the frame");
                };
                next = b[0];
                off += (usize::from(b[1]) + 1) * 8;
                p.exts += 1;
            }
            NEXT_FRAGMENT => {
                let Some(b) = h.get(off..off + 8) else {
                    return p.bad_chain("fragment header past the frame");
                };
                next = b[0];
                off += 8;
                p.exts += 1;
                p.frag = true;
                if be16(&b[2..]) & 0xfff8 != 0 {
                    later = true;
                    walked = true;
                    break;
                }
            }
            NEXT_ICMPV6 => {
                let Some(b) = h.get(off..off + 2) else {
                    return p.bad_chain("ICMPv6 type past the frame");
                };
                p.icmp = Some(b[0]);
                walked = true;
                break;
            }
            _ => {
                walked = true;
                break;
            }
        }
    }
    if !walked {
        return p.bad_chain("more than six extension headers");
    }
    if p.icmp == Some(ND_NA) {
        let Some(t) = h.get(off + 8..off + 24) else {
            // `from_uplink6` reads the target first; a container's is judged later.
            p.na_short = true;
            return p.is(
                Class::Malformed,
                "neighbour advertisement's target past the frame",
            );
        };
        p.na_target = Some(addr(t));
    }
    if ETH_HLEN + off > usize::from(u8::MAX) {
        return p.bad_l4(Reason::DropMalformed, "upper layer past 255 bytes");
    }
    if off > end {
        return p.bad_l4(Reason::DropMalformed, "extension headers past the payload");
    }
    if later {
        return p.is(Class::NotFirst, "later fragment");
    }
    let l4 = &h[off..end];
    let tuple = |sport, dport| {
        Some(Tuple6 {
            src,
            dst,
            proto: next,
            sport,
            dport,
        })
    };
    match next {
        PROTO_TCP => {
            if l4.len() < 20 {
                return p.bad_l4(Reason::DropTruncated, "TCP header past the packet");
            }
            let doff = usize::from(l4[12] >> 4) * 4;
            if doff < 20 || doff > l4.len() {
                return p.bad_l4(Reason::DropMalformed, "TCP data offset outside the segment");
            }
            p.tuple = tuple(be16(l4), be16(&l4[2..]));
            if l4[13] & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN) == TCP_SYN {
                p.is(Class::First, "TCP SYN")
            } else {
                p.is(Class::NotFirst, "TCP segment other than a SYN")
            }
        }
        PROTO_UDP | NEXT_ICMPV6 if l4.len() < 8 => {
            p.bad_l4(Reason::DropTruncated, "L4 header past the packet")
        }
        PROTO_UDP => {
            p.tuple = tuple(be16(l4), be16(&l4[2..]));
            p.is(Class::First, "UDP")
        }
        NEXT_ICMPV6 => {
            let id = be16(&l4[4..]);
            p.tuple = match l4[0] {
                ICMPV6_ECHO => tuple(id, 0),
                ICMPV6_ECHOREPLY => tuple(0, id),
                _ => tuple(0, 0),
            };
            match l4[0] {
                ICMPV6_ECHOREPLY => p.is(Class::NotFirst, "ICMPv6 echo reply"),
                1..=4 => p.is(Class::NotFirst, "ICMPv6 error"),
                ND_RS..=ND_REDIRECT => p.is(Class::First, "neighbour or router discovery"),
                _ => p.is(Class::First, "ICMPv6 other than an error or echo reply"),
            }
        }
        _ => {
            p.tuple = tuple(0, 0);
            p.is(Class::First, "another upper layer")
        }
    }
}

/// The upper layer's checksum of IPv6 frame `f` without extension headers, recomputed
/// from scratch over the pseudo-header.
pub fn sums6(f: &[u8]) -> Result<(), String> {
    let h = &f[ETH_HLEN..];
    let next = h[6];
    if ![PROTO_TCP, PROTO_UDP, NEXT_ICMPV6].contains(&next) {
        return Ok(());
    }
    let end = IPV6_HLEN + usize::from(be16(&h[4..]));
    match l4_sum(next, &addr(&h[8..]), &addr(&h[24..]), &h[IPV6_HLEN..end]) {
        0 => Ok(()),
        c => Err(format!(
            "bad checksum of next header {next} (residue {c:#06x})"
        )),
    }
}
