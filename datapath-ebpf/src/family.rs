//! What differs between IPv4 and IPv6 for the family-generic datapath: its maps, its
//! header layout and checksums, its route and socket lookups. Implemented on the address
//! types themselves (`u32`, `Ip6`), so a function generic over a packet's family infers
//! it from the packet (`Packet<A>`, `CtKey<A>`).
use aya_ebpf::{
    bindings::{BPF_F_PSEUDO_HDR, bpf_fib_lookup as FibParams, bpf_sock_tuple},
    maps::{HashMap, LruHashMap},
    programs::TcContext,
};
use common::{
    Addr, Backend, Be16, Be32, ClusterRoute, CtKey, CtValue, Endpoint, FragKey, FragKey6,
    FragPorts, Ip6, Network, PORT_ENFORCE, PORT_V6, Port, PublishedKey, Reason,
};

use crate::{
    csum::{self, replace16},
    hdr::{IP_CSUM, IP_DST, IP_SRC, IP_TTL, IPV6_DST, IPV6_NEXT, IPV6_SRC},
    maps::{self, Scratch, Work},
    packet::Packet,
    parse::{ETH_P_IP, ETH_P_IPV6, read, write},
};

pub(crate) const AF_INET: u8 = 2;
pub(crate) const AF_INET6: u8 = 10;

pub(crate) trait Family: Addr {
    /// `AF_INET` or `AF_INET6`, for route lookups.
    const AF: u8;
    /// The ethertype of this family's packets.
    const ETH_P: u16;
    /// Where the source and destination addresses lie in the IP header.
    const SRC_OFF: usize;
    const DST_OFF: usize;
    /// Whether the family has a cluster (nodes, prefixes, the VXLAN underlay): IPv4.
    const CLUSTER: bool;

    /// Answered flows and flows not answered yet (see `ct`).
    fn ct() -> &'static LruHashMap<CtKey<Self>, CtValue<Self>>;
    fn ct_new() -> &'static LruHashMap<CtKey<Self>, CtValue<Self>>;
    /// Per container address: its masqueraded flows, the flows it originated (`quota`).
    fn snat_use() -> &'static HashMap<Self, u64>;
    fn ct_use() -> &'static HashMap<Self, u64>;
    fn published() -> &'static HashMap<PublishedKey<Self>, Backend<Self>>;
    /// This family's part of the CPU's scratch space.
    fn work(s: &mut Scratch) -> &mut Work<Self>;

    fn endpoint(ip: &Self) -> Option<Endpoint>;
    /// The endpoints of this family (`endpoints_v1`, `endpoints6_v1`).
    fn endpoints() -> &'static HashMap<Self, Endpoint>;
    /// Record in `port` that an endpoint address `ip` of this family is bound to it.
    fn bind_port(port: &mut Port, ip: &Self);
    fn network_of(ip: &Self) -> Option<Network>;
    /// The cluster prefix that holds `ip` (`cluster_v1`, `cluster6_v1`).
    fn cluster_of(ip: &Self) -> Option<ClusterRoute>;
    fn is_host(ip: &Self) -> bool;
    /// A loopback address (never legitimately off a wire).
    fn is_loopback(ip: &Self) -> bool;
    /// Record that `ip`, a source from outside, completed a handshake at `now_ns`
    /// (`flood`: `xdp_uplink` judges IPv4 only, so an IPv6 source records nothing).
    fn prove(ip: &Self, now_ns: u64);
    /// A multicast or broadcast address (for many receivers, not one neighbour).
    fn is_group(ip: &Self) -> bool;
    /// The answers host sockets' unconnected datagrams expect (`host_udp_v1`,
    /// `host_udp6_v1`), recorded by the sendmsg socket programs.
    fn host_udp() -> &'static LruHashMap<CtKey<Self>, u8>;

    /// Fill a route lookup's addresses from `t`; read the source it preferred.
    fn fib_set(fib: &mut FibParams, t: &CtKey<Self>);
    fn fib_src(fib: &FibParams) -> Self;
    /// After a route lookup toward `dst`: whether its next hop is `hop` (an IPv4
    /// address, network order; `CLUSTER_ON_LINK`: `dst` itself, reached onto a link; 0:
    /// none). The cluster is IPv4: for IPv6, never.
    fn fib_via_is(fib: &FibParams, hop: Be32, dst: &Self) -> bool;
    /// Fill a socket lookup's tuple from `t`; its size.
    fn sock_tuple(tuple: &mut bpf_sock_tuple, t: &CtKey<Self>) -> u32;

    /// Write address `new` over `old` in the header (`src`: the source), with the IPv4
    /// header checksum (IPv6 has none).
    fn set_addr(
        ctx: &TcContext,
        p: &Packet<Self>,
        src: bool,
        old: &Self,
        new: &Self,
    ) -> Result<(), Reason>;
    /// Fix the L4 checksum at `off` for the pseudo-header's address change.
    fn l4_addr_csum(
        ctx: &TcContext,
        off: usize,
        old: &Self,
        new: &Self,
        flags: u64,
    ) -> Result<(), Reason>;
    /// Whether ICMP's checksum covers the pseudo-header (`ICMPv6`'s does).
    const ICMP_PSEUDO: bool;
    /// The TTL (hop limit) one less, with the IPv4 header checksum.
    fn decrement_ttl(ctx: &TcContext, p: &Packet<Self>) -> Result<(), Reason>;

    /// A fragmented datagram's key in this family's fragment map (`frag`).
    type FragKey: Copy + 'static;
    fn frags() -> &'static LruHashMap<Self::FragKey, FragPorts>;
    fn frag_key(p: &Packet<Self>) -> Self::FragKey;

    /// Whether the path's stages run behind BPF-to-BPF calls (`stage!`): IPv6's 40-byte
    /// tuples would take the whole path past the 512-byte stack inlined, where each
    /// call's frame holds only its stage's. IPv4's stay inlined (no call per packet).
    const STAGED: bool;
    /// Whether a routed network of this family takes every packet from outside (Docker's
    /// `gateway_mode_ipv4=routed`), not only those to ports published at its containers'
    /// own addresses (IPv6's routed global prefixes).
    const ROUTED_OPEN: bool;
}

impl Family for u32 {
    const AF: u8 = AF_INET;
    const ETH_P: u16 = ETH_P_IP;
    const SRC_OFF: usize = IP_SRC;
    const DST_OFF: usize = IP_DST;
    const CLUSTER: bool = true;
    const ICMP_PSEUDO: bool = false;
    const ROUTED_OPEN: bool = true;
    const STAGED: bool = false;

    #[inline(always)]
    fn ct() -> &'static LruHashMap<CtKey<Self>, CtValue<Self>> {
        &maps::CT
    }
    #[inline(always)]
    fn ct_new() -> &'static LruHashMap<CtKey<Self>, CtValue<Self>> {
        &maps::CT_NEW
    }
    #[inline(always)]
    fn snat_use() -> &'static HashMap<Self, u64> {
        &maps::SNAT_USE
    }
    #[inline(always)]
    fn ct_use() -> &'static HashMap<Self, u64> {
        &maps::CT_USE
    }
    #[inline(always)]
    fn published() -> &'static HashMap<PublishedKey<Self>, Backend<Self>> {
        &maps::PUBLISHED
    }
    #[inline(always)]
    fn work(s: &mut Scratch) -> &mut Work<Self> {
        &mut s.v4
    }
    #[inline(always)]
    fn endpoint(ip: &Self) -> Option<Endpoint> {
        maps::endpoint(*ip)
    }
    #[inline(always)]
    fn endpoints() -> &'static HashMap<Self, Endpoint> {
        &maps::ENDPOINTS
    }
    /// The port is enforced, and remembers this address (checked without a lookup).
    #[inline(always)]
    fn bind_port(port: &mut Port, ip: &Self) {
        port.ip = Be32::from_raw(*ip);
        port.flags |= PORT_ENFORCE;
    }
    #[inline(always)]
    fn network_of(ip: &Self) -> Option<Network> {
        maps::network_of(*ip)
    }
    #[inline(always)]
    fn cluster_of(ip: &Self) -> Option<ClusterRoute> {
        maps::cluster_of(*ip)
    }
    #[inline(always)]
    fn is_host(ip: &Self) -> bool {
        maps::is_host(*ip)
    }
    #[inline(always)]
    fn is_loopback(ip: &Self) -> bool {
        ip.to_ne_bytes()[0] == 127
    }
    #[inline(always)]
    fn prove(ip: &Self, now_ns: u64) {
        crate::flood::prove(*ip, now_ns);
    }
    #[inline(always)]
    fn is_group(ip: &Self) -> bool {
        // 224.0.0.0/4, or the limited broadcast 255.255.255.255.
        ip.to_ne_bytes()[0] & 0xf0 == 0xe0 || *ip == u32::MAX
    }
    #[inline(always)]
    fn host_udp() -> &'static LruHashMap<CtKey<Self>, u8> {
        &maps::HOST_UDP
    }
    #[inline(always)]
    fn fib_set(fib: &mut FibParams, t: &CtKey<Self>) {
        fib.__bindgen_anon_3.ipv4_src = t.src_ip;
        fib.__bindgen_anon_4.ipv4_dst = t.dst_ip;
    }
    #[inline(always)]
    fn fib_src(fib: &FibParams) -> Self {
        // SAFETY: reading the union member an IPv4 lookup wrote.
        unsafe { fib.__bindgen_anon_3.ipv4_src }
    }
    #[inline(always)]
    fn fib_via_is(fib: &FibParams, hop: Be32, dst: &Self) -> bool {
        // SAFETY: reading the union member an IPv4 lookup wrote: the route's gateway,
        // or the destination left as it was for a route onto a link.
        let via = unsafe { fib.__bindgen_anon_4.ipv4_dst };
        let want = if hop == common::CLUSTER_ON_LINK {
            *dst
        } else {
            hop.raw()
        };
        hop != Be32::ZERO && via == want
    }
    #[inline(always)]
    fn sock_tuple(tuple: &mut bpf_sock_tuple, t: &CtKey<Self>) -> u32 {
        // SAFETY: writing the IPv4 member of the union, passed with its size.
        unsafe {
            let v4 = &mut tuple.__bindgen_anon_1.ipv4;
            v4.saddr = t.src_ip;
            v4.daddr = t.dst_ip;
            v4.sport = t.src_port.raw();
            v4.dport = t.dst_port.raw();
        }
        12
    }
    #[inline(always)]
    fn set_addr(
        ctx: &TcContext,
        p: &Packet<Self>,
        src: bool,
        old: &Self,
        new: &Self,
    ) -> Result<(), Reason> {
        let field = if src { Self::SRC_OFF } else { Self::DST_OFF };
        let check: u16 = read(ctx, p.l3_off() + IP_CSUM).ok_or(Reason::DropRewrite)?;
        write(ctx, p.l3_off() + field, *new).ok_or(Reason::DropRewrite)?;
        let check = csum::replace32(check, *old, *new);
        write(ctx, p.l3_off() + IP_CSUM, check).ok_or(Reason::DropRewrite)
    }
    #[inline(always)]
    fn l4_addr_csum(
        ctx: &TcContext,
        off: usize,
        old: &Self,
        new: &Self,
        flags: u64,
    ) -> Result<(), Reason> {
        let flags = u64::from(BPF_F_PSEUDO_HDR) | flags | 4;
        ctx.l4_csum_replace(off, u64::from(*old), u64::from(*new), flags)
            .map_err(|_| Reason::DropRewrite)
    }
    #[inline(always)]
    fn decrement_ttl(ctx: &TcContext, p: &Packet<Self>) -> Result<(), Reason> {
        // TTL and protocol share a 16-bit word of the header checksum, which follows.
        let off = p.l3_off() + IP_TTL;
        let [ttl, proto, c0, c1]: [u8; 4] = read(ctx, off).ok_or(Reason::DropRewrite)?;
        let new = [ttl - 1, proto];
        let check = replace16(
            u16::from_ne_bytes([c0, c1]),
            u16::from_ne_bytes([ttl, proto]),
            u16::from_ne_bytes(new),
        );
        let [n0, n1] = check.to_ne_bytes();
        write(ctx, off, [new[0], new[1], n0, n1]).ok_or(Reason::DropRewrite)
    }
    type FragKey = FragKey;
    #[inline(always)]
    fn frags() -> &'static LruHashMap<FragKey, FragPorts> {
        &maps::FRAGS
    }
    #[inline(always)]
    fn frag_key(p: &Packet<Self>) -> FragKey {
        FragKey::new(
            Be32::from_raw(p.src_ip),
            Be32::from_raw(p.dst_ip),
            Be16::from_raw(p.ip_id),
            p.proto,
        )
    }
}

impl Family for Ip6 {
    const AF: u8 = AF_INET6;
    const ETH_P: u16 = ETH_P_IPV6;
    const SRC_OFF: usize = IPV6_SRC;
    const DST_OFF: usize = IPV6_DST;
    const CLUSTER: bool = false;
    const ICMP_PSEUDO: bool = true;
    const ROUTED_OPEN: bool = false;
    const STAGED: bool = true;

    #[inline(always)]
    fn ct() -> &'static LruHashMap<CtKey<Self>, CtValue<Self>> {
        &maps::CT6
    }
    #[inline(always)]
    fn ct_new() -> &'static LruHashMap<CtKey<Self>, CtValue<Self>> {
        &maps::CT6_NEW
    }
    #[inline(always)]
    fn snat_use() -> &'static HashMap<Self, u64> {
        &maps::SNAT6_USE
    }
    #[inline(always)]
    fn ct_use() -> &'static HashMap<Self, u64> {
        &maps::CT6_USE
    }
    #[inline(always)]
    fn published() -> &'static HashMap<PublishedKey<Self>, Backend<Self>> {
        &maps::PUBLISHED6
    }
    #[inline(always)]
    fn work(s: &mut Scratch) -> &mut Work<Self> {
        &mut s.v6
    }
    #[inline(always)]
    fn endpoint(ip: &Self) -> Option<Endpoint> {
        maps::endpoint6(ip)
    }
    #[inline(always)]
    fn endpoints() -> &'static HashMap<Self, Endpoint> {
        &maps::ENDPOINTS6
    }
    /// Its IPv6 addresses are known: a source not among them is spoofed.
    #[inline(always)]
    fn bind_port(port: &mut Port, _: &Self) {
        port.flags |= PORT_V6;
    }
    #[inline(always)]
    fn network_of(ip: &Self) -> Option<Network> {
        maps::network6_of(ip)
    }
    #[inline(always)]
    fn cluster_of(ip: &Self) -> Option<ClusterRoute> {
        maps::cluster6_of(ip)
    }
    #[inline(always)]
    fn is_host(ip: &Self) -> bool {
        maps::is_host6(ip)
    }
    #[inline(always)]
    fn is_loopback(ip: &Self) -> bool {
        ip.same(&Ip6::LOOPBACK)
    }
    #[inline(always)]
    fn prove(_: &Self, _: u64) {}
    #[inline(always)]
    fn is_group(ip: &Self) -> bool {
        ip.is_multicast()
    }
    #[inline(always)]
    fn host_udp() -> &'static LruHashMap<CtKey<Self>, u8> {
        &maps::HOST_UDP6
    }
    #[inline(always)]
    fn fib_set(fib: &mut FibParams, t: &CtKey<Self>) {
        fib.__bindgen_anon_3.ipv6_src = t.src_ip.words;
        fib.__bindgen_anon_4.ipv6_dst = t.dst_ip.words;
    }
    #[inline(always)]
    fn fib_src(fib: &FibParams) -> Self {
        // SAFETY: reading the union member an IPv6 lookup wrote.
        Ip6 {
            words: unsafe { fib.__bindgen_anon_3.ipv6_src },
        }
    }
    #[inline(always)]
    fn fib_via_is(_: &FibParams, _: Be32, _: &Self) -> bool {
        false
    }
    #[inline(always)]
    fn sock_tuple(tuple: &mut bpf_sock_tuple, t: &CtKey<Self>) -> u32 {
        // SAFETY: writing the IPv6 member of the union, passed with its size.
        unsafe {
            let v6 = &mut tuple.__bindgen_anon_1.ipv6;
            v6.saddr = t.src_ip.words;
            v6.daddr = t.dst_ip.words;
            v6.sport = t.src_port.raw();
            v6.dport = t.dst_port.raw();
        }
        36
    }
    #[inline(always)]
    fn set_addr(
        ctx: &TcContext,
        p: &Packet<Self>,
        src: bool,
        _old: &Self,
        new: &Self,
    ) -> Result<(), Reason> {
        let field = if src { Self::SRC_OFF } else { Self::DST_OFF };
        write(ctx, p.l3_off() + field, *new).ok_or(Reason::DropRewrite)
    }
    #[inline(always)]
    fn l4_addr_csum(
        ctx: &TcContext,
        off: usize,
        old: &Self,
        new: &Self,
        flags: u64,
    ) -> Result<(), Reason> {
        // One sum of the difference, then one fix with it (a replace of 16 bytes is four
        // helper calls).
        let diff = csum::diff128(&old.words, &new.words);
        let flags = u64::from(BPF_F_PSEUDO_HDR) | csum::ipv6_flag() | flags;
        ctx.l4_csum_replace(off, 0, u64::from(diff), flags)
            .map_err(|_| Reason::DropRewrite)
    }
    #[inline(always)]
    fn decrement_ttl(ctx: &TcContext, p: &Packet<Self>) -> Result<(), Reason> {
        // Next header and hop limit (a one-byte access at a packet offset the verifier
        // follows less well).
        let off = p.l3_off() + IPV6_NEXT;
        let [next, hop]: [u8; 2] = read(ctx, off).ok_or(Reason::DropRewrite)?;
        write(ctx, off, [next, hop - 1]).ok_or(Reason::DropRewrite)
    }
    type FragKey = FragKey6;
    #[inline(always)]
    fn frags() -> &'static LruHashMap<FragKey6, FragPorts> {
        &maps::FRAGS6
    }
    #[inline(always)]
    fn frag_key(p: &Packet<Self>) -> FragKey6 {
        FragKey6::new(p.src_ip, p.dst_ip, Be32::from_raw(p.frag_id), p.proto)
    }
}

/// `f`, behind a call of its own.
#[inline(never)]
pub(crate) fn called<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// One stage of a family-generic path for family `$a`: the expression itself (inlined)
/// for IPv4, behind a call of its own for IPv6 (`Family::STAGED`).
macro_rules! stage {
    ($a:ty, $e:expr) => {
        if <$a as $crate::family::Family>::STAGED {
            $crate::family::called(|| $e)
        } else {
            $e
        }
    };
}
pub(crate) use stage;
