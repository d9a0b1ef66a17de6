//! Property tests (issue #11): generated and mutated frames, seeded and reproducible, at
//! least 1,000,000 of them through both hooks in two shards that run in parallel. Every
//! frame gets a documented verdict; a drop moves exactly one drop counter; a rewritten
//! frame's checksums verify from scratch; batches of malformed and non-initial frames
//! create no CT entry; the reply to a translated first packet, and an ICMP error about
//! it, come back with exactly the original tuple reversed. Violations are collected, then
//! reported with the seed (`BPFNET_PROPTEST_SEED` replays it), the hook and the frame.
use std::{
    collections::{BTreeMap, HashSet},
    fmt,
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use Hook::{FromContainer as OUT, FromUplink as IN};
use bpfnet::datapath::Hook;
use bpfnet_tests::{
    fixture::{
        BRIDGE_MAC, CONTAINER_MAC, CONTAINERS, Fixture, TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT,
        XDP_DROP, XDP_MAX_FRAME, XDP_PASS, with_fixture,
    },
    packet::{
        ETH_HLEN, IpOpts, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, View, arp, checksum, ether, ipv4,
        ipv6_udp,
    },
    require_root,
    tables::{BRIDGE_IP, C1, C2, HOST, PORTS, ROUTER, entries, setup},
};
use common::{CT_REPLY, CtKey, CtValue, PROTO_ICMP, PROTO_TCP, PROTO_UDP, Reason};

/// The programs BPF_PROG_TEST_RUN can feed: it hands a TC program an Ethernet frame,
/// so `from_l3_uplink` is tested end to end (`uplinks_e2e`) instead.
const HOOKS: [Hook; 2] = [IN, OUT];

const DEFAULT_SEED: u64 = 0x6270_666e_6574_0011;
/// Frames over both shards; `BPFNET_PROPTEST_FRAMES` overrides it.
const DEFAULT_FRAMES: u64 = 1_000_000;
/// Per round: flows started, frames in the no-new-flow batch, frames of any kind.
const SEEDS: usize = 16;
const BATCH: usize = 400;
const MIXED: usize = 400;
/// Every this many rounds the counters are read around each frame, not once a round.
const EXACT_EVERY: u64 = 16;
const TCP_PSH: u8 = 0x08;
const TCP_ECE_CWR: u8 = 0xc0;
const SYNS: [u8; 3] = [TCP_SYN, TCP_SYN | TCP_ECE_CWR, TCP_SYN | TCP_PSH];
const NOT_FIRST: [u8; 9] = [
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

#[test]
fn generated_and_mutated_frames_keep_every_property_shard1() {
    shard(1, "prop1");
}

#[test]
fn generated_and_mutated_frames_keep_every_property_shard2() {
    shard(2, "prop2");
}

fn shard(n: u64, tag: &'static str) {
    if !require_root() {
        return;
    }
    let seed = env_u64("BPFNET_PROPTEST_SEED", DEFAULT_SEED);
    let frames = env_u64("BPFNET_PROPTEST_FRAMES", DEFAULT_FRAMES).div_ceil(2);
    with_fixture(tag, 65_536, move |fx| {
        setup(fx, PORTS);
        let start = Instant::now();
        let mut r = Runner::new(fx, seed, n);
        while r.frames < frames {
            r.round();
        }
        r.finish(start.elapsed());
    });
}

fn env_u64(name: &str, default: u64) -> u64 {
    let Ok(s) = std::env::var(name) else {
        return default;
    };
    let s = s.trim();
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    }
    .unwrap_or_else(|e| panic!("{name}={s}: {e} (a decimal or 0x-prefixed hex number)"))
}

/// SplitMix64: tiny, seedable, and its stream never changes with a dependency update.
struct Rng(u64);

impl Rng {
    fn word(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.word() % n as u64) as usize
    }
    fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
    fn u8(&mut self) -> u8 {
        self.word() as u8
    }
    fn u16(&mut self) -> u16 {
        self.word() as u16
    }
    fn u32(&mut self) -> u32 {
        self.word() as u32
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.u8()).collect()
    }
    /// Fewer than `n` random bytes.
    fn upto(&mut self, n: usize) -> Vec<u8> {
        let len = self.below(n);
        self.bytes(len)
    }
    fn mac(&mut self) -> [u8; 6] {
        let mut m = [0; 6];
        m.iter_mut().for_each(|b| *b = self.u8());
        m
    }
}

// ---- addresses, ports, flags ----

fn outside(rng: &mut Rng) -> [u8; 4] {
    match rng.below(10) {
        0 => ROUTER,
        1 => [192, 0, 2, 3 + rng.below(250) as u8],
        _ => [198, 51, 100, 1 + rng.below(254) as u8],
    }
}

fn any_ip(rng: &mut Rng) -> [u8; 4] {
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

fn src_ip(rng: &mut Rng, hook: Hook) -> [u8; 4] {
    match (hook, rng.below(10)) {
        (_, 0 | 1) => any_ip(rng),
        (OUT, _) => rng.pick(&CONTAINERS),
        _ => outside(rng),
    }
}

fn dst_ip(rng: &mut Rng, hook: Hook) -> [u8; 4] {
    match (hook, rng.below(8)) {
        (_, 0 | 1) => any_ip(rng),
        (IN, 2..=4) => HOST,
        (IN, 5) => BRIDGE_IP,
        (OUT, 2..=4) => outside(rng),
        (OUT, 5) => rng.pick(&[HOST, BRIDGE_IP]),
        _ => rng.pick(&CONTAINERS),
    }
}

fn src_port(rng: &mut Rng) -> u16 {
    match rng.below(10) {
        0 | 1 => PORTS.0 + rng.below(1000) as u16,
        2 => 8080,
        3 => 0,
        _ => rng.u16(),
    }
}

fn dst_port(rng: &mut Rng) -> u16 {
    match rng.below(10) {
        0..=3 => 8038,
        4 => 8080,
        5 => PORTS.0 + rng.below(1000) as u16,
        6 => 0,
        _ => rng.u16(),
    }
}

fn any_flags(rng: &mut Rng) -> u8 {
    match rng.below(4) {
        0 => rng.pick(&SYNS),
        1 => rng.u8(),
        _ => rng.pick(&NOT_FIRST),
    }
}

/// Mostly small; sometimes past the uplink's MTU.
fn payload(rng: &mut Rng) -> Vec<u8> {
    let n = match rng.below(50) {
        0 => 1400 + rng.below(160),
        1..=4 => 64 + rng.below(448),
        _ => rng.below(64),
    };
    rng.bytes(n)
}

/// Which hook a packet from `ip` arrives by.
fn side(ip: [u8; 4]) -> Hook {
    if CONTAINERS.contains(&ip) { OUT } else { IN }
}

// ---- building frames ----

/// The IPv4 fields a frame is built with.
struct Ip {
    src: [u8; 4],
    dst: [u8; 4],
    id: u16,
    ttl: u8,
    opts: IpOpts,
}

impl Ip {
    /// A header a flow's packet may have: a TTL that reaches further, sometimes options.
    fn new(rng: &mut Rng, src: [u8; 4], dst: [u8; 4]) -> Self {
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
    fn any(rng: &mut Rng, src: [u8; 4], dst: [u8; 4]) -> Self {
        let mut ip = Self::new(rng, src, dst);
        if rng.one_in(20) {
            ip.ttl = rng.below(2) as u8;
        }
        if rng.one_in(12) {
            ip.opts.frag_off = 0x2000;
        }
        ip
    }

    fn build(&self, proto: u8, l4: Vec<u8>, csum_off: Option<usize>) -> Vec<u8> {
        let mut f = ipv4(proto, self.src, self.dst, l4, csum_off, self.opts);
        f[ETH_HLEN + 4..ETH_HLEN + 6].copy_from_slice(&self.id.to_be_bytes());
        f[ETH_HLEN + 8] = self.ttl;
        refill_ip_sum(&mut f);
        f
    }
}

fn refill_ip_sum(f: &mut [u8]) {
    let ihl = usize::from(f.get(ETH_HLEN).map_or(0, |b| b & 0x0f)) * 4;
    if ihl < 20 || f.len() < ETH_HLEN + ihl {
        return;
    }
    f[ETH_HLEN + 10..ETH_HLEN + 12].fill(0);
    let c = checksum(&[&f[ETH_HLEN..ETH_HLEN + ihl]]);
    f[ETH_HLEN + 10..ETH_HLEN + 12].copy_from_slice(&c.to_be_bytes());
}

/// A TCP segment: `opt_words` words of NOP options, then `body`.
fn tcp_frame(
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

fn tcp_opts(rng: &mut Rng) -> usize {
    if rng.one_in(8) { 1 + rng.below(10) } else { 0 }
}

/// A UDP datagram; `with_sum` false sends checksum 0 ("none").
fn udp_frame(ip: &Ip, ports: (u16, u16), body: &[u8], with_sum: bool) -> Vec<u8> {
    let mut l4 = Vec::with_capacity(8 + body.len());
    l4.extend_from_slice(&ports.0.to_be_bytes());
    l4.extend_from_slice(&ports.1.to_be_bytes());
    l4.extend_from_slice(&((8 + body.len()) as u16).to_be_bytes());
    l4.extend_from_slice(&[0, 0]);
    l4.extend_from_slice(body);
    ip.build(PROTO_UDP, l4, with_sum.then_some(6))
}

/// An ICMP message: type, code, the second word (`rest`), then `body`.
fn icmp_frame(ip: &Ip, kind: u8, code: u8, rest: [u8; 4], body: &[u8]) -> Vec<u8> {
    let mut msg = vec![kind, code, 0, 0];
    msg.extend_from_slice(&rest);
    msg.extend_from_slice(body);
    let c = checksum(&[&msg]);
    msg[2..4].copy_from_slice(&c.to_be_bytes());
    ip.build(PROTO_ICMP, msg, None)
}

fn echo_frame(ip: &Ip, request: bool, id: u16, seq: u16, body: &[u8]) -> Vec<u8> {
    let [a, b] = id.to_be_bytes();
    let [c, d] = seq.to_be_bytes();
    icmp_frame(ip, if request { 8 } else { 0 }, 0, [a, b, c, d], body)
}

/// Destination unreachable (fragmentation needed among them) or time exceeded, quoting
/// the IPv4 header and 8 bytes of `about`, as routers do (sometimes more).
fn error_frame(rng: &mut Rng, ip: &Ip, about: &[u8]) -> Vec<u8> {
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
fn later_fragment(rng: &mut Rng, mut ip: Ip, proto: u8) -> Vec<u8> {
    ip.opts.frag_off = (1 + rng.below(0x1ffe) as u16) | if rng.one_in(2) { 0x2000 } else { 0 };
    let n = 8 * (1 + rng.below(8));
    ip.build(proto, rng.bytes(n), None)
}

/// Container frames come from an endpoint's MAC to the bridge's (routed), mostly; some
/// are switched, broadcast or spoofed.
fn set_macs(rng: &mut Rng, hook: Hook, f: &mut [u8]) {
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
fn any_frame(rng: &mut Rng, hook: Hook) -> Vec<u8> {
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
enum Via {
    /// A published port, from outside.
    Dnat,
    /// Masquerade, from a container to outside.
    Snat,
    /// A published port on a host address, from a container.
    Hairpin,
}

/// A valid first packet of a flow that is to be translated.
fn first_packet(rng: &mut Rng) -> (Via, Hook, Vec<u8>) {
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
fn not_first(rng: &mut Rng) -> (Hook, Vec<u8>) {
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
fn follow_up(rng: &mut Rng, flow: &Flow) -> (Hook, Vec<u8>) {
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
fn mutate(rng: &mut Rng, f: &mut Vec<u8>) {
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

/// BPF_PROG_TEST_RUN refuses IPv4 and IPv6 frames shorter than their fixed header: pad
/// them with zeros, as Ethernet pads short frames.
fn pad(f: &mut Vec<u8>) {
    let min = match be16(&f[12..]) {
        0x0800 => ETH_HLEN + 20,
        0x86dd => ETH_HLEN + 40,
        _ => ETH_HLEN,
    };
    if f.len() < min {
        f.resize(min, 0);
    }
}

// ---- an independent reading of a frame ----

/// What a frame may do to connection tracking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
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
struct Tuple {
    src: [u8; 4],
    dst: [u8; 4],
    proto: u8,
    sport: u16,
    dport: u16,
}

impl Tuple {
    fn reversed(self) -> Self {
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
type FragId = ([u8; 4], [u8; 4], u16, u8);

struct Parsed {
    class: Class,
    /// Why the frame is in its class.
    what: &'static str,
    /// The tuple of a well-formed packet that carries its L4 header.
    tuple: Option<Tuple>,
    icmp: Option<u8>,
    seq: u32,
    /// The tuple an ICMP error quotes.
    quoted: Option<Tuple>,
    /// A first fragment: its later ones may be translated with its ports.
    first_frag: Option<FragId>,
    /// A fragment past the first (no L4 header).
    later: bool,
    /// The TCP flags byte (0 otherwise).
    tcp_flags: u8,
    /// The named drop the datapath counts for a malformed frame.
    drop: Option<Reason>,
}

impl Parsed {
    fn is(mut self, class: Class, what: &'static str) -> Self {
        self.class = class;
        self.what = what;
        self
    }

    /// Malformed, dropped as `reason`.
    fn bad(self, reason: Reason, what: &'static str) -> Self {
        Parsed {
            drop: Some(reason),
            ..self.is(Class::Malformed, what)
        }
    }
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

fn ip4(b: &[u8]) -> [u8; 4] {
    [b[0], b[1], b[2], b[3]]
}

/// Read `f` as the RFCs do; `firsts` are the first fragments run so far. Total length 0
/// is read as the datapath reads it (BIG TCP: "see the frame's length").
fn parse(f: &[u8], firsts: &HashSet<FragId>) -> Parsed {
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
fn quoted(q: &[u8]) -> Option<Tuple> {
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
fn xdp_expect(f: &[u8], p: &Parsed, tracked: bool) -> Option<Reason> {
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
fn in_managed(ip: [u8; 4]) -> bool {
    ip[..2] == [172, 17]
}

/// Every checksum of a well-formed IPv4 frame, recomputed from scratch: the header's,
/// the L4's (`View::verify_checksums`) and, in an ICMP error, the quoted header's.
fn sums(f: &[u8]) -> Result<(), String> {
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

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

// ---- running frames and checking the properties ----

/// A translated flow: how its first packet arrived and how it left.
struct Flow {
    hook: Hook,
    t_in: Tuple,
    t_out: Tuple,
    seq: u32,
    icmp: Option<u8>,
    out: Vec<u8>,
}

const VERDICTS: &str = "no verdict outside OK, SHOT and REDIRECT";
const DROPS: &str = "a drop moves exactly one drop counter, any other verdict none";
const SUMS: &str = "a rewritten frame's checksums verify from scratch";
const NOT_IP: &str = "only IPv4 frames are rewritten past their Ethernet header";
const NO_FLOW: &str = "no CT entry from a malformed or non-initial packet";
const IDENTITY: &str = "translate then reverse-translate is the identity";
const XDP_SUBSET: &str = "xdp_uplink drops only what from_uplink drops, for the same reason";
const XDP_ORACLE: &str = "xdp_uplink drops exactly what from_uplink drops before any state \
     (malformed, truncated, a managed source, untracked into the managed network), counted \
     under its named reason, and passes the rest";
const FORGED: &str = "a forged uplink source (a managed network's address) never creates a flow";
const ICMP_BACK: &str = "an ICMP error about a translated flow comes back with the original tuple";

#[derive(Default)]
struct Tally {
    hooks: [u64; 2],
    /// Frames of the no-new-flow batches, by class.
    batch: BTreeMap<&'static str, u64>,
    sums_checked: u64,
    /// Rewritten, but malformed or with bad sums on the way in: nothing to expect.
    unchecked: u64,
    identity: [u64; 3],
    untranslated: u64,
    errors_back: u64,
    exact: u64,
    /// Uplink frames `xdp_uplink` dropped early.
    xdp_drops: u64,
    /// Uplink frames the oracle expects `xdp_uplink` to drop, by reason.
    xdp_reasons: BTreeMap<&'static str, u64>,
    /// First packets off the uplink from a managed network's address, checked to create no
    /// flow.
    forged: u64,
}

struct Runner<'a> {
    fx: &'a mut Fixture,
    rng: Rng,
    seed: u64,
    shard: u64,
    round: u64,
    frames: u64,
    /// The counters after the last frame, in a round that checks them frame by frame.
    exact: Option<Vec<(Reason, common::Counter)>>,
    /// Drops this round: frames and bytes.
    shot: (u64, u64),
    firsts: HashSet<FragId>,
    tally: Tally,
    /// Per property: how many violations, and the first few.
    findings: BTreeMap<String, (u64, Vec<String>)>,
}

impl<'a> Runner<'a> {
    fn new(fx: &'a mut Fixture, seed: u64, shard: u64) -> Self {
        Runner {
            fx,
            rng: Rng(seed ^ shard.wrapping_mul(0xd1b5_4a32_d192_ed03)),
            seed,
            shard,
            round: 0,
            frames: 0,
            exact: None,
            shot: (0, 0),
            firsts: HashSet::new(),
            tally: Tally::default(),
            findings: BTreeMap::new(),
        }
    }

    fn parse(&self, f: &[u8]) -> Parsed {
        parse(f, &self.firsts)
    }

    fn finding(&mut self, property: &str, hook: Hook, frame: &[u8], want: &str, got: &str) {
        self.finding_at(self.frames, property, hook, frame, want, got);
    }

    /// A violation by the `n`th frame (counted from 1).
    fn finding_at(&mut self, n: u64, property: &str, hook: Hook, f: &[u8], want: &str, got: &str) {
        let text = format!(
            "round {} frame {n}, {hook:?}, frame {}: expected {want}; got {got}",
            self.round,
            hex(f)
        );
        self.note(property, text);
    }

    fn note(&mut self, property: &str, text: String) {
        let (n, examples) = self.findings.entry(property.to_string()).or_default();
        *n += 1;
        if examples.len() < 3 {
            examples.push(text);
        }
    }

    /// One round: flows started (each checked against its reply), a batch of frames that
    /// may create no CT entry, then frames of any kind; CT flushed before, drop counters
    /// compared after.
    fn round(&mut self) {
        flush(self.fx);
        let before = self.fx.stats();
        self.exact = self
            .round
            .is_multiple_of(EXACT_EVERY)
            .then(|| before.clone());
        self.shot = (0, 0);
        let flows: Vec<Flow> = (0..SEEDS).filter_map(|_| self.start_flow()).collect();

        let ct = snapshot(self.fx);
        let (mut batch, mut later) = (Vec::new(), Vec::new());
        for _ in 0..BATCH {
            let (hook, mut f) = match self.rng.below(10) {
                0..=3 if !flows.is_empty() => {
                    let i = self.rng.below(flows.len());
                    follow_up(&mut self.rng, &flows[i])
                }
                0..=5 => not_first(&mut self.rng),
                _ => {
                    let hook = self.rng.pick(&HOOKS);
                    (hook, any_frame(&mut self.rng, hook))
                }
            };
            if self.rng.one_in(2) {
                mutate(&mut self.rng, &mut f);
            }
            let p = self.parse(&f);
            if p.class == Class::First {
                later.push((hook, f));
                continue;
            }
            *self.tally.batch.entry(p.what).or_default() += 1;
            self.run(hook, &f, &p);
            batch.push((hook, f, self.frames));
        }
        self.no_new_flow(&ct, &batch);

        for (hook, f) in later {
            let p = self.parse(&f);
            self.run(hook, &f, &p);
        }
        for _ in 0..MIXED {
            let hook = self.rng.pick(&HOOKS);
            let mut f = any_frame(&mut self.rng, hook);
            if self.rng.one_in(2) {
                mutate(&mut self.rng, &mut f);
            }
            let p = self.parse(&f);
            self.run(hook, &f, &p);
        }
        self.drop_totals(&before);
        self.round += 1;
    }

    /// Run one frame; check its verdict, the sums of what it became and, in an exact
    /// round, the counters it moved.
    fn run(&mut self, hook: Hook, frame: &[u8], p: &Parsed) -> (u32, Vec<u8>) {
        if let Some(id) = p.first_frag {
            self.firsts.insert(id);
        }
        // `--xdp` runs `xdp_uplink` first on the uplink: it must drop a subset of what
        // `from_uplink` drops (same state, same reason), and pass the rest untouched.
        let forged = forged_key(hook, p);
        let had_flow = forged.is_some_and(|(key, _)| self.has_flow(&key));
        let on_xdp = hook == IN && frame.len() <= XDP_MAX_FRAME;
        let xdp_want = on_xdp.then(|| {
            let tracked = p.tuple.is_some_and(|t| self.has_flow(&ct_key(&t)));
            xdp_expect(frame, p, tracked)
        });
        let xdp = on_xdp.then(|| self.fx.run_xdp(frame));
        let (v, out) = self.fx.run(hook, frame);
        self.frames += 1;
        match (xdp, xdp_want) {
            (Some(x), Some(want)) if x != want.map_or(XDP_PASS, |_| XDP_DROP) => {
                let want = want.map_or("XDP_PASS".into(), |r| format!("XDP_DROP ({})", r.name()));
                let got = format!("verdict {x} ({})", p.what);
                self.finding(XDP_ORACLE, hook, frame, &want, &got);
            }
            (Some(XDP_DROP), _) if v != TC_ACT_SHOT => {
                let got = format!("XDP_DROP, from_uplink's verdict {v}");
                self.finding(XDP_SUBSET, hook, frame, "a drop by both", &got);
            }
            _ => {}
        }
        let xdp_dropped = xdp == Some(XDP_DROP);
        if let Some(r) = xdp_want.flatten() {
            *self.tally.xdp_reasons.entry(r.name()).or_default() += 1;
        }
        if xdp_dropped {
            self.tally.xdp_drops += 1;
            // Counted by each program.
            self.shot.0 += 1;
            self.shot.1 += frame.len() as u64;
        }
        self.tally.hooks[usize::from(hook == OUT)] += 1;
        if let Some((key, t)) = forged {
            self.tally.forged += 1;
            if !had_flow && self.has_flow(&key) {
                self.finding(
                    FORGED,
                    hook,
                    frame,
                    "no new CT entry",
                    &format!("a flow {t}"),
                );
            }
        }
        if ![TC_ACT_OK, TC_ACT_SHOT, TC_ACT_REDIRECT].contains(&v) {
            self.finding(VERDICTS, hook, frame, "0, 2 or 7", &v.to_string());
        }
        if v == TC_ACT_SHOT {
            self.shot.0 += 1;
            self.shot.1 += frame.len() as u64;
        } else if out.get(ETH_HLEN..) != frame.get(ETH_HLEN..) {
            self.rewritten(hook, frame, p, &out);
        }
        if let Some(before) = self.exact.take() {
            let after = self.fx.stats();
            self.tally.exact += 1;
            let moved: Vec<String> = after
                .iter()
                .zip(&before)
                .filter(|(a, b)| a.1.packets != b.1.packets)
                .map(|(a, b)| format!("{} +{}", a.0.name(), a.1.packets - b.1.packets))
                .collect();
            let drops: u64 = after
                .iter()
                .zip(&before)
                .filter(|(a, _)| a.0.is_drop())
                .map(|(a, b)| a.1.packets - b.1.packets)
                .sum();
            let reason = xdp_want.flatten().filter(|_| xdp_dropped);
            if let Some(r) = reason
                && moved != [format!("{} +2", r.name())]
            {
                let want = format!("{} +2 (xdp_uplink and from_uplink)", r.name());
                let got = format!("counters {moved:?}");
                self.finding(XDP_ORACLE, hook, frame, &want, &got);
            } else if xdp_dropped && (moved.len() != 1 || drops != 2) {
                let got = format!("counters {moved:?}");
                self.finding(XDP_SUBSET, hook, frame, "one drop counter +2", &got);
            } else if !xdp_dropped && drops != u64::from(v == TC_ACT_SHOT) {
                let want = if v == TC_ACT_SHOT {
                    "one drop counter"
                } else {
                    "no drop counter"
                };
                let got = format!("verdict {v}, counters {moved:?}");
                self.finding(DROPS, hook, frame, want, &got);
            }
            self.exact = Some(after);
        }
        (v, out)
    }

    fn has_flow(&self, key: &CtKey) -> bool {
        let m = &self.fx.dp.maps;
        m.ct.get(key, 0).is_ok() || m.ct_new.get(key, 0).is_ok()
    }

    fn rewritten(&mut self, hook: Hook, frame: &[u8], p: &Parsed, out: &[u8]) {
        match p.class {
            Class::NotIp => self.finding(NOT_IP, hook, frame, "the frame unchanged", &hex(out)),
            Class::Malformed => self.tally.unchecked += 1,
            _ if sums(frame).is_err() => self.tally.unchecked += 1,
            _ => {
                self.tally.sums_checked += 1;
                let q = self.parse(out);
                let r = if matches!(q.class, Class::Malformed | Class::NotIp) {
                    Err(format!("a malformed frame ({})", q.what))
                } else {
                    sums(out)
                };
                if let Err(e) = r {
                    self.finding(
                        SUMS,
                        hook,
                        frame,
                        "valid sums",
                        &format!("{e}: {}", hex(out)),
                    );
                }
            }
        }
    }

    /// Drops counted this round against the frames that got SHOT: as many, as many bytes.
    fn drop_totals(&mut self, before: &[(Reason, common::Counter)]) {
        let after = self.fx.stats();
        let (mut packets, mut bytes) = (0, 0);
        for (a, b) in after.iter().zip(before).filter(|(a, _)| a.0.is_drop()) {
            packets += a.1.packets - b.1.packets;
            bytes += a.1.bytes - b.1.bytes;
        }
        if (packets, bytes) != self.shot {
            let text = format!(
                "round {}: {} frames ({} bytes) got SHOT, drop counters moved by {packets} \
                 packets ({bytes} bytes)",
                self.round, self.shot.0, self.shot.1
            );
            self.note(DROPS, text);
        }
    }

    /// No entry of either CT table that was not there before the batch.
    /// No flow in either CT table that was not there before the batch. If there is one,
    /// the batch is replayed from the same CT state, a frame at a time, to name the
    /// frames that create one.
    fn no_new_flow(&mut self, before: &Snapshot, batch: &[(Hook, Vec<u8>, u64)]) {
        let mut known: HashSet<CtKey> = before.iter().flatten().map(|(k, _)| *k).collect();
        if new_flows(self.fx, &known).is_empty() {
            return;
        }
        restore(self.fx, before);
        let mut named = false;
        for (hook, f, n) in batch {
            let (v, _) = self.fx.run(*hook, f);
            if v == TC_ACT_SHOT {
                self.shot.0 += 1;
                self.shot.1 += f.len() as u64;
            }
            let new = new_flows(self.fx, &known);
            if let Some(t) = new.first() {
                named = true;
                let what = self.parse(f).what;
                let got = format!("a new flow {t}");
                let property = format!("{NO_FLOW} ({what})");
                self.finding_at(*n, &property, *hook, f, "no new CT entry", &got);
                known.extend(ct_keys(self.fx));
            }
        }
        if !named {
            let text = format!(
                "round {}: the batch created flows, its replay none",
                self.round
            );
            self.note(NO_FLOW, text);
        }
        if self.exact.is_some() {
            self.exact = Some(self.fx.stats());
        }
    }

    /// Run a valid first packet; when it is translated, an ICMP error about it and the
    /// reply to it must come back with the original tuple, reversed.
    fn start_flow(&mut self) -> Option<Flow> {
        let (via, hook, frame) = first_packet(&mut self.rng);
        let p = self.parse(&frame);
        assert!(
            p.class == Class::First && sums(&frame).is_ok(),
            "the generator made a first packet that is not one (a test bug): {}",
            hex(&frame)
        );
        let (v, out) = self.run(hook, &frame, &p);
        let t_out = self.parse(&out).tuple;
        let (Some(t_in), Some(t_out)) = (p.tuple, t_out) else {
            self.tally.untranslated += 1;
            return None;
        };
        if v != TC_ACT_REDIRECT || t_in == t_out {
            self.tally.untranslated += 1;
            return None;
        }
        self.tally.identity[via as usize] += 1;
        let flow = Flow {
            hook,
            t_in,
            t_out,
            seq: p.seq,
            icmp: p.icmp,
            out,
        };
        if self.rng.one_in(2) {
            self.error_comes_back(&flow, &frame);
        }
        self.reply_comes_back(&flow, &frame);
        Some(flow)
    }

    fn reply_comes_back(&mut self, flow: &Flow, first: &[u8]) {
        let rng = &mut self.rng;
        let t = flow.t_out.reversed();
        let ip = Ip::new(rng, t.src, t.dst);
        let body = rng.upto(48);
        let reply = match (t.proto, flow.icmp) {
            (PROTO_TCP, _) => {
                // The SYN-ACK acknowledges all the SYN occupies, its data too.
                let seq_ack = (rng.u32(), flow.seq.wrapping_add(1 + syn_data(first)));
                tcp_frame(
                    &ip,
                    (t.sport, t.dport),
                    seq_ack,
                    TCP_SYN | TCP_ACK,
                    0,
                    &body,
                )
            }
            (PROTO_UDP, _) => udp_frame(&ip, (t.sport, t.dport), &body, rng.one_in(2)),
            (PROTO_ICMP, Some(8)) => echo_frame(&ip, false, t.dport, rng.u16(), &body),
            (PROTO_ICMP, _) => icmp_frame(&ip, 14, 0, [0; 4], &[0; 12]),
            (proto, _) => ip.build(proto, body, None),
        };
        let hook = side(t.src);
        let p = self.parse(&reply);
        let (v, back) = self.run(hook, &reply, &p);
        let want = flow.t_in.reversed();
        let got = self.parse(&back).tuple;
        let valid = if got.is_some() {
            sums(&back)
        } else {
            Err("malformed".into())
        };
        if v != TC_ACT_REDIRECT || got != Some(want) || valid.is_err() {
            let want = format!(
                "verdict 7, {want}, valid sums (first packet {} left as {})",
                hex(first),
                hex(&flow.out)
            );
            let got = format!("verdict {v}, {got:?}, {valid:?}: {}", hex(&back));
            self.finding(IDENTITY, hook, &reply, &want, &got);
        }
    }

    /// An error from the translated packet's destination (or a router on the way to
    /// it) quoting the packet as it left.
    fn error_comes_back(&mut self, flow: &Flow, first: &[u8]) {
        let echo = flow.icmp == Some(8);
        if !echo && ![PROTO_TCP, PROTO_UDP].contains(&flow.t_in.proto) {
            return;
        }
        let rng = &mut self.rng;
        let sender = if side(flow.t_out.dst) == OUT || rng.one_in(2) {
            flow.t_out.dst
        } else {
            ROUTER
        };
        let ip = Ip::new(rng, sender, flow.t_out.src);
        let err = error_frame(rng, &ip, &flow.out);
        let hook = side(sender);
        let p = self.parse(&err);
        let (v, back) = self.run(hook, &err, &p);
        self.tally.errors_back += 1;
        let from = if sender == flow.t_out.dst {
            flow.t_in.dst
        } else {
            sender
        };
        let want = (Some((from, flow.t_in.src)), Some(flow.t_in));
        let q = self.parse(&back);
        let got = (q.tuple.map(|t| (t.src, t.dst)), q.quoted);
        let valid = if q.class == Class::NotFirst {
            sums(&back)
        } else {
            Err(q.what.into())
        };
        if v != TC_ACT_REDIRECT || got != want || valid.is_err() {
            let want = format!(
                "verdict 7, from {} to {}, quoting {}, valid sums (first packet {})",
                Ipv4Addr::from(from),
                Ipv4Addr::from(flow.t_in.src),
                flow.t_in,
                hex(first)
            );
            let got = format!("verdict {v}, {got:?}, {valid:?}: {}", hex(&back));
            self.finding(ICMP_BACK, hook, &err, &want, &got);
        }
    }

    fn finish(self, took: Duration) {
        let t = &self.tally;
        eprintln!(
            "shard {} (seed {:#x}): {} frames ({} from_uplink, {} from_container) in {took:.1?}, \
             {} rounds; {} with exact counters; sums checked on {} rewritten frames ({} rewritten \
             from bad input, not checked); flows translated and reversed: {} DNAT, {} SNAT, {} \
             hairpin ({} ICMP errors), {} first packets not translated; {} uplink frames \
             dropped early by xdp_uplink (expected: {:?}); {} first packets from a managed source off the \
             uplink; no-new-flow batches: {:?}",
            self.shard,
            self.seed,
            self.frames,
            t.hooks[0],
            t.hooks[1],
            self.round,
            t.exact,
            t.sums_checked,
            t.unchecked,
            t.identity[Via::Dnat as usize],
            t.identity[Via::Snat as usize],
            t.identity[Via::Hairpin as usize],
            t.errors_back,
            t.untranslated,
            t.xdp_drops,
            t.xdp_reasons,
            t.forged,
            t.batch
        );
        if !self.findings.is_empty() {
            let mut report = String::new();
            for (property, (n, examples)) in &self.findings {
                report.push_str(&format!("\n- {property}: {n} violation(s)"));
                for e in examples {
                    report.push_str(&format!("\n    {e}"));
                }
            }
            panic!(
                "shard {} with BPFNET_PROPTEST_SEED={:#x}: properties violated:{report}",
                self.shard, self.seed
            );
        }
        assert!(
            t.identity.iter().all(|&n| n > 0)
                && t.errors_back > 0
                && t.xdp_drops > 0
                && t.forged > 0,
            "the generator translated too little to test the identity (a test bug)"
        );
        let named = [
            Reason::DropMalformed,
            Reason::DropTruncated,
            Reason::DropSpoof,
            Reason::DropInbound,
        ];
        assert!(
            named.iter().all(|r| t.xdp_reasons.contains_key(r.name())),
            "the generator made too few frames xdp_uplink must drop (a test bug): {:?}",
            t.xdp_reasons
        );
    }
}

/// The TCP payload length of IPv4 frame `f` (a well-formed first packet).
fn syn_data(f: &[u8]) -> u32 {
    let ip = &f[ETH_HLEN..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(be16(&ip[2..4]));
    let doff = usize::from(ip[ihl + 12] >> 4) * 4;
    (total - ihl - doff) as u32
}

/// The CT key a first packet off the uplink would create when its source lies in the
/// fixture's managed network (172.17.0.0/16: its containers, free addresses, the
/// bridge's): such a packet is forged and must create none.
fn forged_key(hook: Hook, p: &Parsed) -> Option<(CtKey, Tuple)> {
    let t = p.tuple.filter(|t| in_managed(t.src))?;
    if hook != IN || p.class != Class::First {
        return None;
    }
    Some((ct_key(&t), t))
}

/// The CT key of a packet with tuple `t`, as the datapath looks it up.
fn ct_key(t: &Tuple) -> CtKey {
    CtKey {
        src_ip: u32::from_ne_bytes(t.src),
        dst_ip: u32::from_ne_bytes(t.dst),
        src_port: t.sport.to_be(),
        dst_port: t.dport.to_be(),
        proto: t.proto,
        _pad: [0; 3],
    }
}

fn key_tuple(k: &CtKey) -> Tuple {
    Tuple {
        src: k.src_ip.to_ne_bytes(),
        dst: k.dst_ip.to_ne_bytes(),
        proto: k.proto,
        sport: u16::from_be(k.src_port),
        dport: u16::from_be(k.dst_port),
    }
}

/// The entries of both CT tables: main, new.
type Snapshot = [Vec<(CtKey, CtValue)>; 2];

fn snapshot(fx: &Fixture) -> Snapshot {
    let m = &fx.dp.maps;
    [&m.ct, &m.ct_new].map(|map| map.iter().filter_map(Result::ok).collect())
}

fn restore(fx: &mut Fixture, s: &Snapshot) {
    flush(fx);
    let m = &mut fx.dp.maps;
    for (map, entries) in [&mut m.ct, &mut m.ct_new].into_iter().zip(s) {
        for (k, v) in entries {
            map.insert(k, v, 0).expect("restore a CT entry");
        }
    }
}

/// The original tuples of flows whose forward entry is not among `known`.
fn new_flows(fx: &Fixture, known: &HashSet<CtKey>) -> Vec<Tuple> {
    entries(fx)
        .iter()
        .filter(|(k, v)| v.flags & CT_REPLY == 0 && !known.contains(k))
        .map(|(k, _)| key_tuple(k))
        .collect()
}

fn ct_keys(fx: &Fixture) -> HashSet<CtKey> {
    entries(fx).into_iter().map(|(k, _)| k).collect()
}

/// Empty both CT tables.
fn flush(fx: &mut Fixture) {
    let m = &mut fx.dp.maps;
    for map in [&mut m.ct, &mut m.ct_new] {
        let keys: Vec<CtKey> = map.keys().filter_map(Result::ok).collect();
        for k in keys {
            map.remove(&k).expect("remove a CT entry");
        }
    }
}

const OUT_OF_WINDOW: &str = "a segment out of window never changes a flow";

/// Established flows (DNAT in, SNAT out, each through its whole handshake) take seeded
/// random TCP segments in either direction, any flags and payload, whose sequence and
/// acknowledgment numbers lie far outside both directions' windows: every one leaves
/// both CT entries byte-identical (dropped as `drop-tcp-window`, or passed untaught).
#[test]
fn a_segment_out_of_window_never_changes_a_flow() {
    if !require_root() {
        return;
    }
    let seed = env_u64("BPFNET_PROPTEST_SEED", DEFAULT_SEED);
    with_fixture("propwin", 4096, move |fx| {
        setup(fx, PORTS);
        let mut rng = Rng(seed ^ 0x7763_705f_7769_6e64);
        let mut findings: Vec<String> = Vec::new();
        let mut checked = 0u64;
        const ALL: [u8; 10] = [
            TCP_ACK,
            TCP_ACK | TCP_PSH,
            TCP_ACK | TCP_FIN,
            TCP_FIN,
            TCP_RST,
            TCP_RST | TCP_ACK,
            TCP_SYN,
            TCP_SYN | TCP_ACK,
            TCP_SYN | TCP_RST,
            TCP_SYN | TCP_FIN,
        ];
        for round in 0..40u16 {
            flush(fx);
            // (hook, tuple) of each direction, as packets reach the datapath.
            let dnat = rng.one_in(2);
            let (fwd, rev) = if dnat {
                let client = (outside(&mut rng), 20_000 + round);
                ((IN, client, (HOST, 8038)), (OUT, (C1, 8080), client))
            } else {
                let server = (outside(&mut rng), 443);
                ((OUT, (C2, 20_000 + round), server), (IN, server, (HOST, 0)))
            };
            let (c_isn, s_isn) = (rng.u32(), rng.u32());
            let ip = |rng: &mut Rng, s: [u8; 4], d: [u8; 4]| Ip::new(rng, s, d);
            let f = ip(&mut rng, fwd.1.0, fwd.2.0);
            let syn = tcp_frame(&f, (fwd.1.1, fwd.2.1), (c_isn, 0), TCP_SYN, 0, &[]);
            let (v, out) = fx.run(fwd.0, &syn);
            assert_eq!(v, TC_ACT_REDIRECT, "round {round}: the SYN is translated");
            // The SNAT port the server answers to.
            let rev = if dnat {
                rev
            } else {
                let l4 = ETH_HLEN + usize::from(out[ETH_HLEN] & 0x0f) * 4;
                let port = u16::from_be_bytes([out[l4], out[l4 + 1]]);
                (rev.0, rev.1, (HOST, port))
            };
            let r = ip(&mut rng, rev.1.0, rev.2.0);
            let syn_ack = (s_isn, c_isn.wrapping_add(1));
            let answer = tcp_frame(&r, (rev.1.1, rev.2.1), syn_ack, TCP_SYN | TCP_ACK, 0, &[]);
            let (v, _) = fx.run(rev.0, &answer);
            assert_eq!(v, TC_ACT_REDIRECT, "round {round}: the SYN-ACK is tracked");
            let acked = (c_isn.wrapping_add(1), s_isn.wrapping_add(1));
            let last = tcp_frame(&f, (fwd.1.1, fwd.2.1), acked, TCP_ACK, 0, &[]);
            let (v, _) = fx.run(fwd.0, &last);
            assert_eq!(v, TC_ACT_REDIRECT, "round {round}: the last ACK is tracked");
            let before = snapshot(fx);
            assert_eq!(before[0].len(), 2, "round {round}: established, main table");
            for _ in 0..200 {
                let (hook, t, isn, peer_isn) = if rng.one_in(2) {
                    (fwd.0, (fwd.1, fwd.2), c_isn, s_isn)
                } else {
                    (rev.0, (rev.1, rev.2), s_isn, c_isn)
                };
                // At least 2^24 from anything either side sent or acknowledged.
                let far = |rng: &mut Rng, base: u32| {
                    base.wrapping_add(0x0100_0000 + rng.below(0xfe00_0000) as u32)
                };
                let seq = far(&mut rng, isn);
                let ack = far(&mut rng, peer_isn);
                let flags = rng.pick(&ALL);
                let body = rng.upto(32);
                let ip = Ip::new(&mut rng, t.0.0, t.1.0);
                let frame = tcp_frame(&ip, (t.0.1, t.1.1), (seq, ack), flags, 0, &body);
                let (v, _) = fx.run(hook, &frame);
                checked += 1;
                if snapshot(fx) != before {
                    findings.push(format!(
                        "round {round}, {hook:?}, flags {flags:#04x}, verdict {v}: {}",
                        hex(&frame)
                    ));
                    restore(fx, &before);
                }
            }
        }
        eprintln!("{checked} segments out of window (seed {seed:#x})");
        assert!(
            findings.is_empty(),
            "{OUT_OF_WINDOW} (BPFNET_PROPTEST_SEED={seed:#x}): {} violation(s), first: {:?}",
            findings.len(),
            &findings[..findings.len().min(3)]
        );
    });
}
