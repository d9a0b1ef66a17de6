//! IPv6 frame builders for the property tests: TCP, UDP, `ICMPv6` (echo, errors quoting a
//! packet, neighbour and router discovery) and other upper layers, behind chains of
//! extension headers (hop-by-hop, routing, destination options, fragment), from and to
//! the addresses that matter to each hook (NAT66 and routed networks, the host, outside,
//! link-local, multicast); first packets of NAT66 flows; and the mutations a wire or an
//! attacker makes of them.
use bpfnet::datapath::Hook::{self, FromContainer as OUT, FromUplink as IN};
use common::{PROTO_TCP, PROTO_UDP};

use super::{
    frames::{NOT_FIRST, SYNS, pad},
    oracle6::{Tuple6, be16},
    rng::Rng,
};
use crate::{
    fixture::{BRIDGE_MAC, CONTAINER_MAC},
    packet::{ETH_HLEN, checksum, ether},
    tables6::{C1_6, GLOBAL, GLOBAL_GW, HOST6, R1, ROUTER6, SERVER6, ULA, ULA_GW, in_prefix},
};

pub const IPV6_HLEN: usize = 40;
pub const NEXT_HOP_BY_HOP: u8 = 0;
pub const NEXT_ROUTING: u8 = 43;
pub const NEXT_FRAGMENT: u8 = 44;
pub const NEXT_DEST_OPTS: u8 = 60;
pub const NEXT_ICMPV6: u8 = 58;
pub const ICMPV6_ECHO: u8 = 128;
pub const ICMPV6_ECHOREPLY: u8 = 129;
pub const ND_RS: u8 = 133;
pub const ND_RA: u8 = 134;
pub const ND_NS: u8 = 135;
pub const ND_NA: u8 = 136;
pub const ND_REDIRECT: u8 = 137;

/// An extension header.
#[derive(Clone, Copy, Debug)]
pub enum Ext {
    /// Hop-by-hop or destination options (`next`: 0 or 60) of `(units + 1) * 8` bytes,
    /// or a routing header (43) with no segments left.
    Opts { next: u8, units: u8 },
    /// A fragment header: offset in 8-byte units, more fragments, identification.
    Fragment { offset: u16, more: bool, id: u32 },
}

impl Ext {
    fn kind(self) -> u8 {
        match self {
            Ext::Opts { next, .. } => next,
            Ext::Fragment { .. } => NEXT_FRAGMENT,
        }
    }

    fn bytes(self, next: u8) -> Vec<u8> {
        match self {
            Ext::Opts {
                next: NEXT_ROUTING,
                units,
            } => {
                let mut b = vec![next, units, 253, 0];
                b.resize((usize::from(units) + 1) * 8, 0);
                b
            }
            Ext::Opts { units, .. } => {
                // PadN over the options area.
                let len = (usize::from(units) + 1) * 8;
                let mut b = vec![next, units, 1, (len - 4) as u8];
                b.resize(len, 0);
                b
            }
            Ext::Fragment { offset, more, id } => {
                let mut b = vec![next, 0];
                b.extend_from_slice(&(offset << 3 | u16::from(more)).to_be_bytes());
                b.extend_from_slice(&id.to_be_bytes());
                b
            }
        }
    }
}

/// The IPv6 fields a frame is built with.
#[derive(Clone, Debug)]
pub struct Ip6 {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub hops: u8,
    pub exts: Vec<Ext>,
}

impl Ip6 {
    /// A header a flow's packet may have: no extension headers, a hop limit that reaches
    /// further.
    pub fn new(rng: &mut Rng, src: [u8; 16], dst: [u8; 16]) -> Self {
        Ip6 {
            src,
            dst,
            hops: 2 + rng.below(254) as u8,
            exts: Vec::new(),
        }
    }

    /// Also hop limits that end at the host, and chains of extension headers (up to
    /// eight: bpfnet walks six), first fragments among them.
    pub fn any(rng: &mut Rng, src: [u8; 16], dst: [u8; 16]) -> Self {
        let mut ip = Self::new(rng, src, dst);
        if rng.one_in(20) {
            ip.hops = rng.below(2) as u8;
        }
        if rng.one_in(3) {
            let most = if rng.one_in(8) { 8 } else { 3 };
            let n = 1 + rng.below(most);
            ip.exts = (0..n).map(|_| any_ext(rng, false)).collect();
        }
        if rng.one_in(10) {
            ip.exts.push(Ext::Fragment {
                offset: 0,
                more: true,
                id: rng.u32(),
            });
        }
        ip
    }

    /// Ethernet (the builder's MACs) + this header and its chain around `l4` of upper
    /// layer `next`, whose checksum at `csum_off` is filled in over the pseudo-header.
    pub fn build(&self, next: u8, mut l4: Vec<u8>, csum_off: Option<usize>) -> Vec<u8> {
        if let Some(at) = csum_off.filter(|at| at + 2 <= l4.len()) {
            l4[at..at + 2].fill(0);
            let c = l4_sum(next, &self.src, &self.dst, &l4);
            l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
        }
        let mut chain = Vec::new();
        for (i, e) in self.exts.iter().enumerate() {
            let after = self.exts.get(i + 1).map_or(next, |n| n.kind());
            chain.extend(e.bytes(after));
        }
        let first = self.exts.first().map_or(next, |e| e.kind());
        let mut h = vec![0x60, 0, 0, 0];
        h.extend_from_slice(&((chain.len() + l4.len()) as u16).to_be_bytes());
        h.extend_from_slice(&[first, self.hops]);
        h.extend_from_slice(&self.src);
        h.extend_from_slice(&self.dst);
        h.extend(chain);
        h.extend(l4);
        ether(0x86dd, &h)
    }
}

/// The sum of `l4` (checksum field included) over the IPv6 pseudo-header.
pub fn l4_sum(next: u8, src: &[u8; 16], dst: &[u8; 16], l4: &[u8]) -> u16 {
    let len = (l4.len() as u32).to_be_bytes();
    checksum(&[src, dst, &len, &[0, 0, 0, next], l4])
}

fn any_ext(rng: &mut Rng, later: bool) -> Ext {
    match rng.below(4) {
        0 => Ext::Fragment {
            offset: if later {
                1 + rng.below(0x1ffe) as u16
            } else {
                0
            },
            more: rng.one_in(2),
            id: rng.u32(),
        },
        k => Ext::Opts {
            next: [NEXT_HOP_BY_HOP, NEXT_ROUTING, NEXT_DEST_OPTS][k - 1],
            units: if rng.one_in(4) { rng.below(4) as u8 } else { 0 },
        },
    }
}

// ---- addresses ----

/// An address beyond the uplink's router (`2001:db8:2::/64` mostly) or beside it.
pub fn outside6(rng: &mut Rng) -> [u8; 16] {
    match rng.below(10) {
        0 => ROUTER6,
        1 => SERVER6,
        2 => in_prefix([0x20, 0x01, 0x0d, 0xb8, 0, 1], 3 + rng.below(250) as u8),
        _ => in_prefix([0x20, 0x01, 0x0d, 0xb8, 0, 2], rng.u8()),
    }
}

fn link_local(rng: &mut Rng) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[0] = 0xfe;
    a[1] = 0x80;
    a[8..].iter_mut().for_each(|b| *b = rng.u8());
    a
}

/// `ff02::1`, or a solicited-node multicast address.
fn multicast(rng: &mut Rng) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[0] = 0xff;
    a[1] = 0x02;
    if rng.one_in(2) {
        a[15] = 1;
    } else {
        a[11] = 1;
        a[12] = 0xff;
        a[13..].iter_mut().for_each(|b| *b = rng.u8());
    }
    a
}

pub fn any_ip6(rng: &mut Rng) -> [u8; 16] {
    match rng.below(14) {
        0 => HOST6,
        1 => rng.pick(&[ULA_GW, GLOBAL_GW]),
        2 => C1_6,
        3 => R1,
        4 => in_prefix(rng.pick(&[ULA, GLOBAL]), rng.u8()),
        5 | 6 => outside6(rng),
        7 => link_local(rng),
        8 => multicast(rng),
        9 => [0; 16],
        10 => {
            let mut a = [0; 16];
            a[15] = 1;
            a
        }
        _ => {
            let mut a = [0; 16];
            for b in &mut a {
                *b = rng.u8();
            }
            a
        }
    }
}

fn src6(rng: &mut Rng, hook: Hook) -> [u8; 16] {
    match (hook, rng.below(10)) {
        (_, 0 | 1) => any_ip6(rng),
        (OUT, _) => rng.pick(&[C1_6, R1]),
        _ => outside6(rng),
    }
}

fn dst6(rng: &mut Rng, hook: Hook) -> [u8; 16] {
    match (hook, rng.below(8)) {
        (_, 0 | 1) => any_ip6(rng),
        (IN, 2..=4) => HOST6,
        (IN, 5) => R1,
        (OUT, 2..=4) => outside6(rng),
        (OUT, 5) => rng.pick(&[HOST6, ULA_GW, GLOBAL_GW]),
        _ => rng.pick(&[C1_6, R1]),
    }
}

fn port(rng: &mut Rng) -> u16 {
    match rng.below(10) {
        0..=3 => 8038,
        4 => 8080,
        5 => 8443,
        6 => 0,
        _ => rng.u16(),
    }
}

/// Which hook a packet from `ip` arrives by.
pub fn side6(ip: [u8; 16]) -> Hook {
    if [C1_6, R1].contains(&ip) { OUT } else { IN }
}

// ---- upper layers ----

/// A TCP segment: `opt_words` words of NOP options, then `body`.
pub fn tcp6_frame(
    ip: &Ip6,
    ports: (u16, u16),
    seq_ack: (u32, u32),
    flags: u8,
    opt_words: usize,
    body: &[u8],
) -> Vec<u8> {
    let mut l4 = Vec::with_capacity(20 + 4 * opt_words + body.len());
    l4.extend_from_slice(&ports.0.to_be_bytes());
    l4.extend_from_slice(&ports.1.to_be_bytes());
    l4.extend_from_slice(&seq_ack.0.to_be_bytes());
    l4.extend_from_slice(&seq_ack.1.to_be_bytes());
    l4.extend_from_slice(&[((5 + opt_words) as u8) << 4, flags, 0xff, 0xff, 0, 0, 0, 0]);
    l4.extend(std::iter::repeat_n(1u8, 4 * opt_words));
    l4.extend_from_slice(body);
    ip.build(PROTO_TCP, l4, Some(16))
}

pub fn udp6_frame(ip: &Ip6, ports: (u16, u16), body: &[u8]) -> Vec<u8> {
    let mut l4 = Vec::with_capacity(8 + body.len());
    l4.extend_from_slice(&ports.0.to_be_bytes());
    l4.extend_from_slice(&ports.1.to_be_bytes());
    l4.extend_from_slice(&((8 + body.len()) as u16).to_be_bytes());
    l4.extend_from_slice(&[0, 0]);
    l4.extend_from_slice(body);
    ip.build(PROTO_UDP, l4, Some(6))
}

/// An `ICMPv6` message: type, code, the second word (`rest`), then `body`.
pub fn icmp6_frame(ip: &Ip6, kind: u8, code: u8, rest: [u8; 4], body: &[u8]) -> Vec<u8> {
    let mut l4 = vec![kind, code, 0, 0];
    l4.extend_from_slice(&rest);
    l4.extend_from_slice(body);
    ip.build(NEXT_ICMPV6, l4, Some(2))
}

pub fn echo6_frame(ip: &Ip6, request: bool, id: u16, seq: u16, body: &[u8]) -> Vec<u8> {
    let [a, b] = id.to_be_bytes();
    let [c, d] = seq.to_be_bytes();
    let kind = if request {
        ICMPV6_ECHO
    } else {
        ICMPV6_ECHOREPLY
    };
    icmp6_frame(ip, kind, 0, [a, b, c, d], body)
}

/// Unreachable, packet too big, time exceeded or parameter problem, quoting the IPv6
/// header and 8 bytes of `about`'s payload (sometimes more).
pub fn error6_frame(rng: &mut Rng, ip: &Ip6, about: &[u8]) -> Vec<u8> {
    let kind = 1 + rng.below(4) as u8;
    let rest = if kind == 2 {
        (1280 + rng.below(200) as u32).to_be_bytes()
    } else {
        [0; 4]
    };
    let end = (ETH_HLEN + IPV6_HLEN + 8 + rng.below(2) * rng.below(64)).min(about.len());
    let q = about.get(ETH_HLEN..end).unwrap_or(&[]);
    icmp6_frame(ip, kind, rng.below(4) as u8, rest, q)
}

/// Neighbour or router discovery: a solicitation or advertisement for `target` with a
/// link-layer address option naming `mac`, a router solicitation, advertisement or a
/// redirect.
pub fn nd_frame(rng: &mut Rng, ip: &Ip6, target: [u8; 16], mac: [u8; 6]) -> Vec<u8> {
    let kind = rng.pick(&[ND_NS, ND_NS, ND_NA, ND_NA, ND_RS, ND_RA, ND_REDIRECT]);
    let mut body = Vec::new();
    let (rest, opt) = match kind {
        ND_NS => {
            body.extend_from_slice(&target);
            ([0; 4], 1)
        }
        ND_NA => {
            body.extend_from_slice(&target);
            ([0x60, 0, 0, 0], 2)
        }
        ND_RA => {
            body.extend_from_slice(&[0; 8]);
            ([64, 0, 0x07, 0x08], 1)
        }
        ND_REDIRECT => {
            body.extend_from_slice(&target);
            body.extend_from_slice(&target);
            ([0; 4], 2)
        }
        _ => ([0; 4], 1),
    };
    if !rng.one_in(4) {
        body.extend_from_slice(&[opt, 1]);
        body.extend_from_slice(&mac);
    }
    let mut ip = ip.clone();
    ip.hops = 255;
    icmp6_frame(&ip, kind, 0, rest, &body)
}

/// A fragment past the first: no upper-layer header, only the datagram's later bytes.
pub fn later_fragment6(rng: &mut Rng, mut ip: Ip6, next: u8) -> Vec<u8> {
    ip.exts.retain(|e| matches!(e, Ext::Opts { .. }));
    ip.exts.push(Ext::Fragment {
        offset: 1 + rng.below(0x1ffe) as u16,
        more: rng.one_in(2),
        id: rng.u32(),
    });
    let n = 8 * (1 + rng.below(8));
    ip.build(next, rng.bytes(n), None)
}

/// Container frames come from an endpoint's MAC to the bridge's (routed), some to a
/// multicast MAC (neighbour discovery).
fn set_macs6(rng: &mut Rng, f: &mut [u8]) {
    let dst = if rng.one_in(10) {
        [0x33, 0x33, 0, 0, 0, 1]
    } else {
        BRIDGE_MAC
    };
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&CONTAINER_MAC);
}

/// A well-formed IPv6 frame of any kind, from and to the addresses that matter to `hook`.
pub fn any_frame6(rng: &mut Rng, hook: Hook) -> Vec<u8> {
    let (src, dst) = (src6(rng, hook), dst6(rng, hook));
    let ip = Ip6::any(rng, src, dst);
    let most = if rng.one_in(20) { 1400 } else { 64 };
    let body = rng.upto(most);
    let ports = (port(rng), port(rng));
    let mut f = match rng.below(100) {
        0..=29 => {
            #[expect(
                clippy::same_functions_in_if_condition,
                reason = "each condition draws afresh"
            )]
            let flags = if rng.one_in(3) {
                rng.pick(&SYNS)
            } else if rng.one_in(3) {
                rng.u8()
            } else {
                rng.pick(&NOT_FIRST)
            };
            let opts = if rng.one_in(8) { 1 + rng.below(10) } else { 0 };
            tcp6_frame(&ip, ports, (rng.u32(), rng.u32()), flags, opts, &body)
        }
        30..=47 => udp6_frame(&ip, ports, &body),
        48..=57 => echo6_frame(&ip, rng.one_in(2), rng.u16(), rng.u16(), &body),
        58..=65 => {
            let about = udp6_frame(&Ip6::new(rng, dst, src), (ports.1, ports.0), &[]);
            error6_frame(rng, &ip, &about)
        }
        66..=77 => {
            let target = if rng.one_in(2) { src } else { any_ip6(rng) };
            let mac = if rng.one_in(4) {
                [2, rng.u8(), rng.u8(), rng.u8(), rng.u8(), rng.u8()]
            } else {
                CONTAINER_MAC
            };
            nd_frame(rng, &ip, target, mac)
        }
        78..=81 => {
            let any = rng.u8();
            ip.build(rng.pick(&[47, 50, 59, 4, 41, any]), body, None)
        }
        82..=89 => {
            let next = rng.pick(&[PROTO_TCP, PROTO_UDP, NEXT_ICMPV6, 47]);
            later_fragment6(rng, ip, next)
        }
        _ => return first_packet6(rng).2,
    };
    if hook == OUT {
        set_macs6(rng, &mut f);
    }
    f
}

/// What the first packet of an IPv6 flow is meant to meet.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Via6 {
    /// A published port on a host address, from outside, to the ULA container.
    Dnat66,
    /// NAT66 masquerade, from the ULA container to outside.
    Snat66,
    /// The routed global network's container to outside, untranslated.
    Routed,
}

/// A valid first packet of a flow: to be translated (NAT66) or routed.
pub fn first_packet6(rng: &mut Rng) -> (Via6, Hook, Vec<u8>) {
    let via = match rng.below(20) {
        0..=7 => Via6::Dnat66,
        8..=16 => Via6::Snat66,
        _ => Via6::Routed,
    };
    let (hook, src, dst) = match via {
        Via6::Dnat66 => (IN, outside6(rng), HOST6),
        Via6::Snat66 => (OUT, C1_6, outside6(rng)),
        Via6::Routed => (OUT, R1, outside6(rng)),
    };
    let ip = Ip6::new(rng, src, dst);
    let body = rng.upto(48);
    let sport = 1 + rng.below(65_535) as u16;
    let dport = if via == Via6::Dnat66 {
        8038
    } else {
        1 + rng.below(65_535) as u16
    };
    let mut f = match (via, rng.below(10)) {
        (_, 0..=4) => {
            let flags = rng.pick(&SYNS);
            tcp6_frame(&ip, (sport, dport), (rng.u32(), 0), flags, 0, &body)
        }
        (Via6::Snat66 | Via6::Routed, 8 | 9) => echo6_frame(&ip, true, rng.u16(), rng.u16(), &body),
        _ => udp6_frame(&ip, (sport, dport), &body),
    };
    if hook == OUT {
        f[..6].copy_from_slice(&BRIDGE_MAC);
        f[6..12].copy_from_slice(&CONTAINER_MAC);
    }
    (via, hook, f)
}

/// A packet of the flow `t_in` (as it arrived by `hook`) left as `t_out`, that is not a
/// first packet, in either direction.
pub fn follow_up6(rng: &mut Rng, hook: Hook, t_in: Tuple6, t_out: Tuple6) -> (Hook, Vec<u8>) {
    let (hook, t) = if rng.one_in(2) {
        (side6(t_out.dst), t_out.reversed())
    } else {
        (hook, t_in)
    };
    let ip = Ip6::new(rng, t.src, t.dst);
    let body = rng.upto(32);
    let mut f = match (t.proto, rng.below(4)) {
        (PROTO_TCP, 0 | 1) => {
            let flags = rng.pick(&NOT_FIRST);
            tcp6_frame(
                &ip,
                (t.sport, t.dport),
                (rng.u32(), rng.u32()),
                flags,
                0,
                &body,
            )
        }
        (NEXT_ICMPV6, 0 | 1) => echo6_frame(&ip, false, t.sport | t.dport, rng.u16(), &body),
        (_, 0..=2) => {
            let about = udp6_frame(&Ip6::new(rng, t.dst, t.src), (t.dport, t.sport), &[]);
            error6_frame(rng, &ip, &about)
        }
        _ => later_fragment6(rng, ip, t.proto),
    };
    if hook == OUT {
        f[..6].copy_from_slice(&BRIDGE_MAC);
        f[6..12].copy_from_slice(&CONTAINER_MAC);
    }
    (hook, f)
}

/// Break IPv6 frame `f`: flipped bytes, truncation anywhere, a payload length out of
/// range, another version, next header or extension header length, a tail past the
/// payload.
pub fn mutate6(rng: &mut Rng, f: &mut Vec<u8>) {
    let ip = ETH_HLEN;
    for _ in 0..=rng.below(2) {
        let len = f.len();
        match rng.below(8) {
            0 | 1 => {
                let span = len.min(ETH_HLEN + IPV6_HLEN + 64);
                let i = rng.below(span);
                f[i] ^= 1 + rng.below(255) as u8;
            }
            2 => f.truncate(ETH_HLEN + rng.below(len - ETH_HLEN + 1)),
            3 if len >= ip + 6 => {
                let pl = match rng.below(4) {
                    0 => 0,
                    1 => rng.below(len.saturating_sub(ip + IPV6_HLEN) + 1),
                    2 => len.saturating_sub(ip + IPV6_HLEN) + 1 + rng.below(8),
                    _ => usize::from(rng.u16()),
                };
                f[ip + 4..ip + 6].copy_from_slice(&(pl as u16).to_be_bytes());
            }
            4 if len > ip => f[ip] = ((rng.below(16) as u8) << 4) | (f[ip] & 0x0f),
            5 if len > ip + 6 => {
                let any = rng.u8();
                f[ip + 6] = rng.pick(&[
                    NEXT_HOP_BY_HOP,
                    NEXT_ROUTING,
                    NEXT_FRAGMENT,
                    NEXT_DEST_OPTS,
                    NEXT_ICMPV6,
                    PROTO_TCP,
                    any,
                ]);
            }
            6 if len > ip + IPV6_HLEN + 1 => f[ip + IPV6_HLEN + 1] = rng.u8(),
            _ => {
                let n = 1 + rng.below(64);
                f.extend(rng.bytes(n));
            }
        }
    }
    pad(f);
}

/// The upper-layer length of IPv6 frame `f` without extension headers (for a SYN: the
/// data it carries after its TCP header).
pub fn syn_data6(f: &[u8]) -> u32 {
    let pl = usize::from(be16(&f[ETH_HLEN + 4..]));
    let doff = usize::from(f[ETH_HLEN + IPV6_HLEN + 12] >> 4) * 4;
    (pl - doff) as u32
}
