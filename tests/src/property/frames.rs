//! Frame builders for the property tests: well-formed IPv4 frames of every kind from
//! and to the addresses that matter to each hook (first packets, follow-ups of a flow,
//! ICMP errors, fragments, ARP, other ethertypes) and the mutations a wire or an attacker
//! makes of them.
use bpfnet::datapath::Hook::{self, FromContainer as OUT, FromUplink as IN};
use common::{PROTO_ICMP, PROTO_TCP, PROTO_UDP};

use super::{
    oracle::{Tuple, be16},
    rng::Rng,
};
use crate::{
    fixture::{BRIDGE_MAC, CONTAINER_MAC, CONTAINERS},
    packet::{
        ETH_HLEN, IpOpts, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, arp, checksum, ether, ipv4, ipv6_udp,
    },
    tables::{BRIDGE_IP, C1, C2, HOST, PORTS, ROUTER},
};

// ---- addresses, ports, flags ----

/// The programs `BPF_PROG_TEST_RUN` can feed: it hands a TC program an Ethernet frame,
/// so `from_l3_uplink` is tested end to end (`uplinks_e2e`) instead.
pub const HOOKS: [Hook; 2] = [IN, OUT];

pub const TCP_PSH: u8 = 0x08;

pub const TCP_ECE_CWR: u8 = 0xc0;

pub const SYNS: [u8; 3] = [TCP_SYN, TCP_SYN | TCP_ECE_CWR, TCP_SYN | TCP_PSH];

pub const NOT_FIRST: [u8; 9] = [
    TCP_ACK,
    TCP_ACK | TCP_PSH,
    TCP_ACK | TCP_FIN,
    TCP_RST,
    TCP_RST | TCP_ACK,
    TCP_SYN | TCP_ACK,
    TCP_SYN | TCP_RST,
    TCP_FIN,
    0,
];

pub fn outside(rng: &mut Rng) -> [u8; 4] {
    match rng.below(10) {
        0 => ROUTER,
        1 => [192, 0, 2, 3 + rng.below(250) as u8],
        _ => [198, 51, 100, 1 + rng.below(254) as u8],
    }
}

pub fn any_ip(rng: &mut Rng) -> [u8; 4] {
    match rng.below(14) {
        0 => HOST,
        1 => BRIDGE_IP,
        2 => C1,
        3 => C2,
        4 => [172, 17, rng.u8(), rng.u8()],
        5 | 6 => outside(rng),
        7 => [127, 0, 0, 1],
        8 => [255; 4],
        9 => [172, 17, 255, 255],
        10 => [0; 4],
        11 => [224, 0, 0, rng.u8()],
        _ => [rng.u8(), rng.u8(), rng.u8(), rng.u8()],
    }
}

pub fn src_ip(rng: &mut Rng, hook: Hook) -> [u8; 4] {
    match (hook, rng.below(10)) {
        (_, 0 | 1) => any_ip(rng),
        (OUT, _) => rng.pick(&CONTAINERS),
        _ => outside(rng),
    }
}

pub fn dst_ip(rng: &mut Rng, hook: Hook) -> [u8; 4] {
    match (hook, rng.below(8)) {
        (_, 0 | 1) => any_ip(rng),
        (IN, 2..=4) => HOST,
        (IN, 5) => BRIDGE_IP,
        (OUT, 2..=4) => outside(rng),
        (OUT, 5) => rng.pick(&[HOST, BRIDGE_IP]),
        _ => rng.pick(&CONTAINERS),
    }
}

pub fn src_port(rng: &mut Rng) -> u16 {
    match rng.below(10) {
        0 | 1 => PORTS.0 + rng.below(1000) as u16,
        2 => 8080,
        3 => 0,
        _ => rng.u16(),
    }
}

pub fn dst_port(rng: &mut Rng) -> u16 {
    match rng.below(10) {
        0..=3 => 8038,
        4 => 8080,
        5 => PORTS.0 + rng.below(1000) as u16,
        6 => 0,
        _ => rng.u16(),
    }
}

pub fn any_flags(rng: &mut Rng) -> u8 {
    match rng.below(4) {
        0 => rng.pick(&SYNS),
        1 => rng.u8(),
        _ => rng.pick(&NOT_FIRST),
    }
}

/// Mostly small; sometimes past the uplink's MTU.
pub fn payload(rng: &mut Rng) -> Vec<u8> {
    let n = match rng.below(50) {
        0 => 1400 + rng.below(160),
        1..=4 => 64 + rng.below(448),
        _ => rng.below(64),
    };
    rng.bytes(n)
}

/// Which hook a packet from `ip` arrives by.
pub fn side(ip: [u8; 4]) -> Hook {
    if CONTAINERS.contains(&ip) { OUT } else { IN }
}

// ---- building frames ----

/// The IPv4 fields a frame is built with.
pub struct Ip {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub id: u16,
    pub ttl: u8,
    pub opts: IpOpts,
}

impl Ip {
    /// A header a flow's packet may have: a TTL that reaches further, sometimes options.
    pub fn new(rng: &mut Rng, src: [u8; 4], dst: [u8; 4]) -> Self {
        let opts = IpOpts {
            options: if rng.one_in(6) {
                4 * (1 + rng.below(10))
            } else {
                0
            },
            frag_off: if rng.one_in(2) { 0x4000 } else { 0 },
        };
        let ttl = 2 + rng.below(254) as u8;
        Ip {
            src,
            dst,
            id: rng.u16(),
            ttl,
            opts,
        }
    }

    /// Also TTLs that end at the host, and first fragments.
    pub fn any(rng: &mut Rng, src: [u8; 4], dst: [u8; 4]) -> Self {
        let mut ip = Self::new(rng, src, dst);
        if rng.one_in(20) {
            ip.ttl = rng.below(2) as u8;
        }
        if rng.one_in(12) {
            ip.opts.frag_off = 0x2000;
        }
        ip
    }

    pub fn build(&self, proto: u8, l4: Vec<u8>, csum_off: Option<usize>) -> Vec<u8> {
        let mut f = ipv4(proto, self.src, self.dst, l4, csum_off, self.opts);
        f[ETH_HLEN + 4..ETH_HLEN + 6].copy_from_slice(&self.id.to_be_bytes());
        f[ETH_HLEN + 8] = self.ttl;
        refill_ip_sum(&mut f);
        f
    }
}

pub fn refill_ip_sum(f: &mut [u8]) {
    let ihl = usize::from(f.get(ETH_HLEN).map_or(0, |b| b & 0x0f)) * 4;
    if ihl < 20 || f.len() < ETH_HLEN + ihl {
        return;
    }
    f[ETH_HLEN + 10..ETH_HLEN + 12].fill(0);
    let c = checksum(&[&f[ETH_HLEN..ETH_HLEN + ihl]]);
    f[ETH_HLEN + 10..ETH_HLEN + 12].copy_from_slice(&c.to_be_bytes());
}

/// A TCP segment: `opt_words` words of NOP options, then `body`.
pub fn tcp_frame(
    ip: &Ip,
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

pub fn tcp_opts(rng: &mut Rng) -> usize {
    if rng.one_in(8) { 1 + rng.below(10) } else { 0 }
}

/// A UDP datagram; `with_sum` false sends checksum 0 ("none").
pub fn udp_frame(ip: &Ip, ports: (u16, u16), body: &[u8], with_sum: bool) -> Vec<u8> {
    let mut l4 = Vec::with_capacity(8 + body.len());
    l4.extend_from_slice(&ports.0.to_be_bytes());
    l4.extend_from_slice(&ports.1.to_be_bytes());
    l4.extend_from_slice(&((8 + body.len()) as u16).to_be_bytes());
    l4.extend_from_slice(&[0, 0]);
    l4.extend_from_slice(body);
    ip.build(PROTO_UDP, l4, with_sum.then_some(6))
}

/// An ICMP message: type, code, the second word (`rest`), then `body`.
pub fn icmp_frame(ip: &Ip, kind: u8, code: u8, rest: [u8; 4], body: &[u8]) -> Vec<u8> {
    let mut msg = vec![kind, code, 0, 0];
    msg.extend_from_slice(&rest);
    msg.extend_from_slice(body);
    let c = checksum(&[&msg]);
    msg[2..4].copy_from_slice(&c.to_be_bytes());
    ip.build(PROTO_ICMP, msg, None)
}

pub fn echo_frame(ip: &Ip, request: bool, id: u16, seq: u16, body: &[u8]) -> Vec<u8> {
    let [a, b] = id.to_be_bytes();
    let [c, d] = seq.to_be_bytes();
    icmp_frame(ip, if request { 8 } else { 0 }, 0, [a, b, c, d], body)
}

/// Destination unreachable (fragmentation needed among them) or time exceeded, quoting
/// the IPv4 header and 8 bytes of `about`, as routers do (sometimes more).
pub fn error_frame(rng: &mut Rng, ip: &Ip, about: &[u8]) -> Vec<u8> {
    let (kind, code) = if rng.one_in(3) {
        (11, rng.below(2) as u8)
    } else {
        (3, rng.below(16) as u8)
    };
    let mtu = if code == 4 {
        576 + rng.below(1000) as u16
    } else {
        0
    };
    let [m0, m1] = mtu.to_be_bytes();
    let ihl = usize::from(about.get(ETH_HLEN).map_or(0, |b| b & 0x0f)) * 4;
    let end = (ETH_HLEN + ihl + 8 + rng.below(2) * rng.below(64)).min(about.len());
    icmp_frame(
        ip,
        kind,
        code,
        [0, 0, m0, m1],
        about.get(ETH_HLEN..end).unwrap_or(&[]),
    )
}

/// A fragment past the first: no L4 header, only the datagram's later bytes.
pub fn later_fragment(rng: &mut Rng, mut ip: Ip, proto: u8) -> Vec<u8> {
    ip.opts.frag_off = (1 + rng.below(0x1ffe) as u16) | if rng.one_in(2) { 0x2000 } else { 0 };
    let n = 8 * (1 + rng.below(8));
    ip.build(proto, rng.bytes(n), None)
}

/// Container frames come from an endpoint's MAC to the bridge's (routed), mostly; some
/// are switched, broadcast or spoofed.
pub fn set_macs(rng: &mut Rng, hook: Hook, f: &mut [u8]) {
    let dst = match (hook, rng.below(20)) {
        (OUT, 0) => [0xff; 6],
        (OUT, 1) => CONTAINER_MAC,
        (_, 2) => rng.mac(),
        _ => BRIDGE_MAC,
    };
    f[..6].copy_from_slice(&dst);
    let src = if rng.one_in(12) {
        rng.mac()
    } else {
        CONTAINER_MAC
    };
    f[6..12].copy_from_slice(&src);
}

/// A well-formed frame of any kind, from and to the addresses that matter to `hook`.
pub fn any_frame(rng: &mut Rng, hook: Hook) -> Vec<u8> {
    let (src, dst) = (src_ip(rng, hook), dst_ip(rng, hook));
    let ip = Ip::any(rng, src, dst);
    let body = payload(rng);
    let ports = (src_port(rng), dst_port(rng));
    let mut f = match rng.below(100) {
        0..=29 => {
            let seq_ack = (rng.u32(), rng.u32());
            let (flags, opts) = (any_flags(rng), tcp_opts(rng));
            tcp_frame(&ip, ports, seq_ack, flags, opts, &body)
        }
        30..=47 => udp_frame(&ip, ports, &body, !rng.one_in(5)),
        48..=57 => echo_frame(&ip, rng.one_in(2), rng.u16(), rng.u16(), &body),
        58..=65 => {
            let about_ip = Ip::new(rng, dst, src);
            let about = match rng.below(3) {
                0 => tcp_frame(
                    &about_ip,
                    (ports.1, ports.0),
                    (rng.u32(), 0),
                    TCP_SYN,
                    0,
                    &[],
                ),
                1 => udp_frame(&about_ip, (ports.1, ports.0), &[], true),
                _ => echo_frame(&about_ip, rng.one_in(2), rng.u16(), 1, &[]),
            };
            error_frame(rng, &ip, &about)
        }
        66..=69 => {
            let any = rng.u8();
            let kind = rng.pick(&[4, 5, 9, 10, 12, 13, 14, 17, 18, any]);
            icmp_frame(&ip, kind, rng.u8(), rng.u32().to_be_bytes(), &body)
        }
        70..=74 => {
            let any = rng.u8();
            ip.build(rng.pick(&[47, 50, 132, 4, 41, any]), body, None)
        }
        75..=80 => {
            let proto = rng.pick(&[PROTO_TCP, PROTO_UDP, PROTO_ICMP, 47]);
            later_fragment(rng, ip, proto)
        }
        81..=85 => {
            let sha = if rng.one_in(4) {
                rng.mac()
            } else {
                CONTAINER_MAC
            };
            return arp(sha, src, dst);
        }
        86..=89 => {
            let (a, b) = (rng.bytes(16), rng.bytes(16));
            ipv6_udp(a.try_into().expect("16"), b.try_into().expect("16"))
        }
        90..=92 => {
            let mut f = ether(rng.u16(), &body);
            pad(&mut f);
            f
        }
        _ => return first_packet(rng).2,
    };
    set_macs(rng, hook, &mut f);
    f
}

/// What the first packet of a flow is meant to meet.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// A published port, from outside.
    Dnat,
    /// Masquerade, from a container to outside.
    Snat,
    /// A published port on a host address, from a container.
    Hairpin,
}

/// A valid first packet of a flow that is to be translated.
pub fn first_packet(rng: &mut Rng) -> (Via, Hook, Vec<u8>) {
    let via = match rng.below(20) {
        0..=7 => Via::Dnat,
        8..=16 => Via::Snat,
        _ => Via::Hairpin,
    };
    let (hook, src, dst) = match via {
        Via::Dnat => (IN, outside(rng), rng.pick(&[HOST, BRIDGE_IP])),
        Via::Snat => (OUT, rng.pick(&CONTAINERS), outside(rng)),
        Via::Hairpin => (OUT, rng.pick(&CONTAINERS), rng.pick(&[HOST, BRIDGE_IP])),
    };
    let mut ip = Ip::new(rng, src, dst);
    if rng.one_in(10) {
        ip.opts.frag_off = 0x2000;
    }
    let body = rng.upto(48);
    let sport = 1 + rng.below(65_535) as u16;
    let dport = if via == Via::Snat {
        1 + rng.below(65_535) as u16
    } else {
        8038
    };
    let f = match (via, rng.below(10)) {
        (_, 0..=3) => {
            let (flags, opts) = (rng.pick(&SYNS), tcp_opts(rng));
            tcp_frame(&ip, (sport, dport), (rng.u32(), 0), flags, opts, &body)
        }
        (Via::Snat, 7) => echo_frame(&ip, true, rng.u16(), rng.u16(), &body),
        (Via::Snat, 8) => icmp_frame(&ip, 13, 0, rng.u32().to_be_bytes(), &[0; 12]),
        (Via::Snat, 9) => ip.build(47, body, None),
        _ => udp_frame(&ip, (sport, dport), &body, !rng.one_in(4)),
    };
    (via, hook, f)
}

/// A frame that is not a flow's first packet: a TCP segment other than a SYN, an echo
/// reply, an ICMP error, a later fragment, or not IPv4 at all.
pub fn not_first(rng: &mut Rng) -> (Hook, Vec<u8>) {
    let hook = rng.pick(&HOOKS);
    let (src, dst) = (src_ip(rng, hook), dst_ip(rng, hook));
    let ip = Ip::any(rng, src, dst);
    let body = payload(rng);
    let mut f = match rng.below(8) {
        0..=2 => {
            let ports = (src_port(rng), dst_port(rng));
            let (flags, opts) = (rng.pick(&NOT_FIRST), tcp_opts(rng));
            tcp_frame(&ip, ports, (rng.u32(), rng.u32()), flags, opts, &body)
        }
        3 => echo_frame(&ip, false, rng.u16(), rng.u16(), &body),
        4 | 5 => {
            let about_hook = rng.pick(&HOOKS);
            let about = any_frame(rng, about_hook);
            error_frame(rng, &ip, &about)
        }
        6 => {
            let proto = rng.pick(&[PROTO_TCP, PROTO_UDP, PROTO_ICMP, 47]);
            later_fragment(rng, ip, proto)
        }
        _ => match rng.below(3) {
            0 => return (hook, arp(rng.mac(), src, dst)),
            1 => ipv6_udp([0xfe; 16], [0xfd; 16]),
            _ => {
                let mut f = ether(rng.u16(), &body);
                pad(&mut f);
                f
            }
        },
    };
    set_macs(rng, hook, &mut f);
    (hook, f)
}

/// A packet of `flow` that is not a first packet, in either direction.
pub fn follow_up(rng: &mut Rng, flow: &Flow) -> (Hook, Vec<u8>) {
    let (hook, t) = if rng.one_in(2) {
        (side(flow.t_out.dst), flow.t_out.reversed())
    } else {
        (flow.hook, flow.t_in)
    };
    let ip = Ip::new(rng, t.src, t.dst);
    let body = rng.upto(32);
    let f = match rng.below(4) {
        0 | 1 if t.proto == PROTO_TCP => {
            let seq = flow.seq.wrapping_add(rng.below(3000) as u32);
            let flags = rng.pick(&NOT_FIRST);
            tcp_frame(&ip, (t.sport, t.dport), (seq, rng.u32()), flags, 0, &body)
        }
        0 | 1 if flow.icmp == Some(8) => {
            echo_frame(&ip, false, t.sport | t.dport, rng.u16(), &body)
        }
        0..=2 => error_frame(rng, &ip, &flow.out),
        _ => later_fragment(rng, ip, t.proto),
    };
    (hook, f)
}

/// Break `f` the ways a wire or an attacker does: flipped bytes, truncation anywhere,
/// header fields out of range, a tail past the IP total length, another ethertype.
pub fn mutate(rng: &mut Rng, f: &mut Vec<u8>) {
    for _ in 0..=rng.below(2) {
        let len = f.len();
        let ihl = usize::from(f.get(ETH_HLEN).map_or(5, |b| b & 0x0f)) * 4;
        let header = match rng.below(10) {
            0 | 1 => {
                let span = if rng.one_in(2) {
                    len.min(ETH_HLEN + 64)
                } else {
                    len
                };
                let i = rng.below(span);
                f[i] ^= 1 + rng.below(255) as u8;
                i >= ETH_HLEN && i < ETH_HLEN + ihl
            }
            2 => {
                f.truncate(ETH_HLEN + rng.below(len - ETH_HLEN + 1));
                false
            }
            3 if len > ETH_HLEN => {
                f[ETH_HLEN] = (f[ETH_HLEN] & 0xf0) | rng.below(16) as u8;
                true
            }
            4 if len >= ETH_HLEN + 4 => {
                let tot = match rng.below(5) {
                    0 => 0,
                    1 => rng.below(len - ETH_HLEN),
                    2 => ihl + rng.below(8),
                    3 => len - ETH_HLEN + 1 + rng.below(8),
                    _ => usize::from(rng.u16()),
                };
                f[ETH_HLEN + 2..ETH_HLEN + 4].copy_from_slice(&(tot as u16).to_be_bytes());
                true
            }
            5 if len > ETH_HLEN + ihl + 12 => {
                let at = ETH_HLEN + ihl + 12;
                f[at] = ((rng.below(16) as u8) << 4) | (f[at] & 0x0f);
                false
            }
            6 => {
                let n = 1 + rng.below(64);
                f.extend(rng.bytes(n));
                false
            }
            7 if len > ETH_HLEN + 9 => {
                if rng.one_in(2) {
                    f[ETH_HLEN] = ((rng.below(16) as u8) << 4) | (f[ETH_HLEN] & 0x0f);
                } else {
                    f[ETH_HLEN + 9] = rng.u8();
                }
                true
            }
            8 if len > ETH_HLEN + 8 => {
                let off = if rng.one_in(2) {
                    0
                } else {
                    1 + rng.below(0x1ffe) as u16
                };
                let flags = (rng.below(8) as u16) << 13;
                f[ETH_HLEN + 6..ETH_HLEN + 8].copy_from_slice(&(flags | off).to_be_bytes());
                true
            }
            _ => {
                let any = rng.u16();
                let t: u16 = rng.pick(&[0x86dd, 0x0806, 0x8100, any]);
                f[12..14].copy_from_slice(&t.to_be_bytes());
                false
            }
        };
        if header && rng.one_in(2) {
            refill_ip_sum(f);
        }
    }
    pad(f);
}

/// `BPF_PROG_TEST_RUN` refuses IPv4 and IPv6 frames shorter than their fixed header: pad
/// them with zeros, as Ethernet pads short frames.
pub fn pad(f: &mut Vec<u8>) {
    let min = match be16(&f[12..]) {
        0x0800 => ETH_HLEN + 20,
        0x86dd => ETH_HLEN + 40,
        _ => ETH_HLEN,
    };
    if f.len() < min {
        f.resize(min, 0);
    }
}

/// A translated flow: how its first packet arrived and how it left.
pub struct Flow {
    pub hook: Hook,
    pub t_in: Tuple,
    pub t_out: Tuple,
    pub seq: u32,
    pub icmp: Option<u8>,
    pub out: Vec<u8>,
}
