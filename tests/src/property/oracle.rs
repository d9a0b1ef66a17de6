//! An independent reading of a frame, as the RFCs write it, for the property tests:
//! its class (malformed, first packet of a flow or not), tuple and checksums, and what
//! `xdp_uplink` must do with it.
use std::{
    collections::HashSet,
    fmt::{self, Write as _},
    net::Ipv4Addr,
};

use common::{Be16, CtKey, PROTO_ICMP, PROTO_TCP, PROTO_UDP, Reason};

use crate::{
    packet::{ETH_HLEN, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, View, checksum},
    tables::{BRIDGE_IP, HOST},
};

/// What a frame may do to connection tracking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    NotIp,
    /// The datapath must reject it: a bad IPv4 version, IHL or total length, an L4 header
    /// that does not fit in the packet, a TCP data offset outside the segment.
    Malformed,
    /// Well-formed, and not a flow's first packet.
    NotFirst,
    /// May start a flow.
    First,
}

/// The addresses, ports (or ICMP echo identifier, as `CtKey` holds it) and protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tuple {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
}

impl Tuple {
    #[must_use]
    pub fn reversed(self) -> Self {
        Tuple {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
            ..self
        }
    }
}

impl fmt::Display for Tuple {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (s, d) = (Ipv4Addr::from(self.src), Ipv4Addr::from(self.dst));
        write!(
            f,
            "{s}:{} -> {d}:{} proto {}",
            self.sport, self.dport, self.proto
        )
    }
}

/// Which datagram a fragment belongs to, as the datapath remembers first fragments.
pub type FragId = ([u8; 4], [u8; 4], u16, u8);

pub struct Parsed {
    pub class: Class,
    /// Why the frame is in its class.
    pub what: &'static str,
    /// The tuple of a well-formed packet that carries its L4 header.
    pub tuple: Option<Tuple>,
    pub icmp: Option<u8>,
    pub seq: u32,
    /// The tuple an ICMP error quotes.
    pub quoted: Option<Tuple>,
    /// A first fragment: its later ones may be translated with its ports.
    pub first_frag: Option<FragId>,
    /// A fragment past the first (no L4 header).
    pub later: bool,
    /// The TCP flags byte (0 otherwise).
    pub tcp_flags: u8,
    /// The named drop the datapath counts for a malformed frame.
    pub drop: Option<Reason>,
}

impl Parsed {
    #[must_use]
    pub fn is(mut self, class: Class, what: &'static str) -> Self {
        self.class = class;
        self.what = what;
        self
    }

    /// Malformed, dropped as `reason`.
    #[must_use]
    pub fn bad(self, reason: Reason, what: &'static str) -> Self {
        Parsed {
            drop: Some(reason),
            ..self.is(Class::Malformed, what)
        }
    }
}

pub fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

pub fn ip4(b: &[u8]) -> [u8; 4] {
    [b[0], b[1], b[2], b[3]]
}

/// Read `f` as the RFCs do; `firsts` are the first fragments run so far. Total length 0
/// is read as the datapath reads it (BIG TCP: "see the frame's length").
pub fn parse(f: &[u8], firsts: &HashSet<FragId>) -> Parsed {
    let p = Parsed {
        class: Class::NotIp,
        what: "not IPv4",
        tuple: None,
        icmp: None,
        seq: 0,
        quoted: None,
        first_frag: None,
        later: false,
        tcp_flags: 0,
        drop: None,
    };
    if f.len() < ETH_HLEN || be16(&f[12..]) != 0x0800 {
        return p;
    }
    let h = &f[ETH_HLEN..];
    if h.len() < 20 {
        return p.bad(Reason::DropMalformed, "IPv4 header past the frame");
    }
    let (src, dst, proto, id, frag) = (
        ip4(&h[12..]),
        ip4(&h[16..]),
        h[9],
        be16(&h[4..]),
        be16(&h[6..]),
    );
    let mut p = p;
    if frag & 0x3fff == 0x2000 {
        p.first_frag = Some((src, dst, id, proto));
    }
    let ihl = usize::from(h[0] & 0x0f) * 4;
    let tot = usize::from(be16(&h[2..]));
    let len = if tot == 0 { h.len() } else { tot };
    if h[0] >> 4 != 4 {
        return p.bad(Reason::DropMalformed, "IP version other than 4");
    }
    if ihl < 20 {
        return p.bad(Reason::DropMalformed, "IHL below 5");
    }
    if len > h.len() {
        return p.bad(Reason::DropMalformed, "total length past the frame");
    }
    if len < ihl {
        return p.bad(Reason::DropMalformed, "total length inside the IPv4 header");
    }
    if frag & 0x1fff != 0 {
        p.later = true;
        return if firsts.contains(&(src, dst, id, proto)) {
            p.is(Class::First, "later fragment of a first fragment seen")
        } else {
            p.is(Class::NotFirst, "later fragment")
        };
    }
    let l4 = &h[ihl..len];
    let tuple = |sport, dport| {
        Some(Tuple {
            src,
            dst,
            proto,
            sport,
            dport,
        })
    };
    match proto {
        PROTO_TCP => {
            if l4.len() < 20 {
                return p.bad(Reason::DropTruncated, "TCP header past the packet");
            }
            let doff = usize::from(l4[12] >> 4) * 4;
            if doff < 20 || doff > l4.len() {
                return p.bad(Reason::DropMalformed, "TCP data offset outside the segment");
            }
            p.tuple = tuple(be16(l4), be16(&l4[2..]));
            p.seq = u32::from_be_bytes([l4[4], l4[5], l4[6], l4[7]]);
            p.tcp_flags = l4[13];
            if l4[13] & (TCP_SYN | TCP_ACK | TCP_RST) == TCP_SYN {
                p.is(Class::First, "TCP SYN")
            } else {
                p.is(Class::NotFirst, "TCP segment other than a SYN")
            }
        }
        PROTO_UDP | PROTO_ICMP if l4.len() < 8 => {
            p.bad(Reason::DropTruncated, "L4 header past the packet")
        }
        PROTO_UDP => {
            p.tuple = tuple(be16(l4), be16(&l4[2..]));
            p.is(Class::First, "UDP")
        }
        PROTO_ICMP => {
            let id = be16(&l4[4..]);
            p.icmp = Some(l4[0]);
            p.tuple = match l4[0] {
                8 => tuple(id, 0),
                0 => tuple(0, id),
                _ => tuple(0, 0),
            };
            match l4[0] {
                0 => p.is(Class::NotFirst, "ICMP echo reply"),
                3 | 11 => {
                    p.quoted = quoted(&l4[8..]);
                    p.is(Class::NotFirst, "ICMP error")
                }
                _ => p.is(Class::First, "ICMP other than an error or echo reply"),
            }
        }
        _ => {
            p.tuple = tuple(0, 0);
            p.is(Class::First, "another IP protocol")
        }
    }
}

/// The tuple of the packet an ICMP error quotes (its IPv4 header and first L4 bytes).
pub fn quoted(q: &[u8]) -> Option<Tuple> {
    let ihl = usize::from(q.first()? & 0x0f) * 4;
    if q.len() < 20 || q[0] >> 4 != 4 || ihl < 20 {
        return None;
    }
    let l4 = q.get(ihl..)?;
    let proto = q[9];
    let (sport, dport) = match proto {
        PROTO_TCP | PROTO_UDP => (be16(l4.get(..2)?), be16(l4.get(2..4)?)),
        PROTO_ICMP => match l4.first()? {
            8 => (be16(l4.get(4..6)?), 0),
            0 => (0, be16(l4.get(4..6)?)),
            _ => (0, 0),
        },
        _ => (0, 0),
    };
    Some(Tuple {
        src: ip4(&q[12..]),
        dst: ip4(&q[16..]),
        proto,
        sport,
        dport,
    })
}

/// What `xdp_uplink` must do with uplink frame `f` in the fixture (`tables::setup`: the
/// managed network 172.17.0.0/16, NAT mode; host addresses `HOST` and `BRIDGE_IP`; TCP
/// and UDP 8038 published on every host address; no new-flow budget): the drop it must
/// count, or None to pass the frame to TC untouched. `tracked`: CT holds the frame's
/// tuple. XDP sees no GSO packet, so an IPv4 total length of 0 is malformed there.
pub fn xdp_expect(f: &[u8], p: &Parsed, tracked: bool) -> Option<Reason> {
    if p.class == Class::NotIp {
        return None;
    }
    let h = &f[ETH_HLEN..];
    if h.len() < 20 || be16(&h[2..]) == 0 {
        return Some(Reason::DropMalformed);
    }
    if p.class == Class::Malformed {
        return p.drop;
    }
    // Later fragments and ICMP errors are judged by what they belong to, in TC.
    if p.later || matches!(p.icmp, Some(3 | 11)) || tracked {
        return None;
    }
    let t = p.tuple?;
    if in_managed(t.src) {
        return Some(Reason::DropSpoof);
    }
    // Into the managed network only a first packet to a published port.
    let syn =
        t.proto != PROTO_TCP || p.tcp_flags & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN) == TCP_SYN;
    let published = [PROTO_TCP, PROTO_UDP].contains(&t.proto)
        && [HOST, BRIDGE_IP].contains(&t.dst)
        && t.dport == 8038;
    (in_managed(t.dst) && !(syn && published)).then_some(Reason::DropInbound)
}

/// In the fixture's managed network, 172.17.0.0/16.
pub fn in_managed(ip: [u8; 4]) -> bool {
    ip[..2] == [172, 17]
}

/// Every checksum of a well-formed IPv4 frame, recomputed from scratch: the header's,
/// the L4's (`View::verify_checksums`) and, in an ICMP error, the quoted header's.
pub fn sums(f: &[u8]) -> Result<(), String> {
    let h = &f[ETH_HLEN..];
    let ihl = usize::from(h[0] & 0x0f) * 4;
    if checksum(&[&h[..ihl]]) != 0 {
        return Err("bad IPv4 header checksum".into());
    }
    let (proto, tot) = (h[9], usize::from(be16(&h[2..])));
    if be16(&h[6..]) & 0x1fff != 0 || ![PROTO_TCP, PROTO_UDP, PROTO_ICMP].contains(&proto) {
        return Ok(());
    }
    let len = if tot == 0 { h.len() } else { tot };
    let l4 = &h[ihl..len];
    if tot != 0 {
        View(f).verify_checksums()?;
    } else if proto == PROTO_ICMP || !(proto == PROTO_UDP && be16(&l4[6..]) == 0) {
        let n = (l4.len() as u16).to_be_bytes();
        let c = match proto {
            PROTO_ICMP => checksum(&[l4]),
            _ => checksum(&[&h[12..16], &h[16..20], &[0, proto], &n, l4]),
        };
        if c != 0 {
            return Err(format!("bad L4 checksum (residue {c:#06x})"));
        }
    }
    if proto == PROTO_ICMP && matches!(l4[0], 3 | 11) {
        let q = &l4[8..];
        let qihl = usize::from(q.first().map_or(0, |b| b & 0x0f)) * 4;
        if qihl >= 20 && q.len() >= qihl && checksum(&[&q[..qihl]]) != 0 {
            return Err("bad checksum of the quoted IPv4 header".into());
        }
    }
    Ok(())
}

pub fn hex(b: &[u8]) -> String {
    b.iter().fold(String::new(), |mut s, x| {
        let _unused: fmt::Result = write!(s, "{x:02x}");
        s
    })
}

/// The TCP payload length of IPv4 frame `f` (a well-formed first packet).
pub fn syn_data(f: &[u8]) -> u32 {
    let ip = &f[ETH_HLEN..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(be16(&ip[2..4]));
    let doff = usize::from(ip[ihl + 12] >> 4) * 4;
    (total - ihl - doff) as u32
}

/// The CT key of a packet with tuple `t`, as the datapath looks it up.
pub fn ct_key(t: &Tuple) -> CtKey {
    CtKey::new(
        u32::from_ne_bytes(t.src),
        u32::from_ne_bytes(t.dst),
        Be16::new(t.sport),
        Be16::new(t.dport),
        t.proto,
    )
}

pub fn key_tuple(k: &CtKey) -> Tuple {
    Tuple {
        src: k.src_ip.to_ne_bytes(),
        dst: k.dst_ip.to_ne_bytes(),
        proto: k.proto,
        sport: k.src_port.get(),
        dport: k.dst_port.get(),
    }
}
