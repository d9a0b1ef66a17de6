//! IPv6: the header chain walked to the upper layer (`walk`, `parse6`), and what a
//! container's IPv6 frame must pass before the family-generic path routes it.
//!
//! Anti-spoofing, as for IPv4: a frame's source address must be one its port's endpoint
//! owns (registered, or bound from the port's first IPv6 packet when it lies in the
//! network's IPv6 subnet), or the link-local address the kernel derives from its MAC;
//! `::` only switched (duplicate address detection, MLD). Neighbour discovery may not
//! poison a neighbour's cache: an advertisement names only an address its sender owns,
//! and every link-layer address option names the sender's own MAC.
//!
//! The router's own messages are the host's to send: a container's router advertisement
//! or redirect would make its neighbours (and a host that accepts advertisements on the
//! bridge) route their IPv6 through it (CVE-2020-13401). The header chain is walked to
//! the upper-layer header, as RA-Guard evasion hides it behind extension headers or in
//! fragments (RFC 7113): neighbour discovery must not come fragmented (RFC 6980), a first
//! fragment must hold the whole chain (RFC 7112), and a chain longer than bpfnet walks is
//! refused, not guessed at.
use aya_ebpf::programs::TcContext;
use common::{Ip6, PORT_V6, Reason};

use crate::{
    container,
    family::stage,
    l2::{self, L2},
    maps::endpoint6,
    parse::{
        self, ETH_HLEN, ETH_P_IPV6, Frag, Frame as _, Icmp, Packet, l3_proto, read, read_pulled,
    },
    stats::verdict,
};

const IPV6_HLEN: usize = 40;
const NEXT_HOP_BY_HOP: u8 = 0;
const NEXT_ROUTING: u8 = 43;
const NEXT_FRAGMENT: u8 = 44;
const NEXT_DEST_OPTS: u8 = 60;
const NEXT_ICMPV6: u8 = 58;
/// Extension headers walked before the upper-layer header; more is refused.
const MAX_EXT_HEADERS: usize = 6;

const ICMPV6_ROUTER_SOLICIT: u8 = 133;
const ICMPV6_ROUTER_ADVERT: u8 = 134;
const ICMPV6_NEIGH_SOLICIT: u8 = 135;
const ICMPV6_NEIGH_ADVERT: u8 = 136;
const ICMPV6_REDIRECT: u8 = 137;
/// Neighbour discovery options naming a link-layer address (RFC 4861 4.6.1).
const ND_OPT_SOURCE_LL: u8 = 1;
const ND_OPT_TARGET_LL: u8 = 2;
/// Options walked in a solicitation or advertisement (real ones carry one or two);
/// more is refused.
const MAX_ND_OPTS: usize = 4;

/// What an IPv6 header chain says, walked to its upper-layer header.
pub struct Chain {
    pub src: Ip6,
    pub dst: Ip6,
    pub hop_limit: u8,
    /// Where the IPv6 payload ends in the frame.
    pub end: usize,
    /// The upper-layer protocol, and where its header starts.
    pub next: u8,
    pub l4_off: usize,
    /// A fragment header was walked (`Frag::Later`: the upper layer is not here), and
    /// its identification (network order).
    pub frag: Frag,
    pub frag_id: u32,
    /// ICMPv6 type of a message whose header is here (0 otherwise).
    pub icmp: u8,
}

/// `from_container`'s verdict on an IPv6 frame: the router's messages and neighbour
/// discovery checked, the source checked; switched within its network, passed to the
/// host when addressed to it, else routed by the family-generic path.
#[inline(always)]
pub fn from_container(ctx: &TcContext, l2: &mut L2) -> i32 {
    // Each half behind a call of its own: together they would not fit the stack.
    match stage!(Ip6, admit(ctx, l2)) {
        Ok(p) => container::ip(ctx, l2, p),
        Err(v) => v,
    }
}

/// The checks a container's IPv6 frame must pass; a routed one's summary, or the
/// verdict.
#[inline(always)]
fn admit(ctx: &TcContext, l2: &mut L2) -> Result<&'static mut Packet<Ip6>, i32> {
    let chain = match walk(ctx, ETH_HLEN).and_then(|c| guard(&c).map(|()| c)) {
        Ok(c) => c,
        Err(reason) => return Err(verdict(ctx, reason)),
    };
    let checked = l2
        .check_mac()
        .and_then(|()| check_source(ctx, l2, &chain.src).map_err(|r| neighbour_claim(&chain, r)))
        .and_then(|()| check_neighbour(ctx, l2, &chain));
    if let Err(reason) = checked {
        return Err(verdict(ctx, reason));
    }
    if !l2.routed() {
        return switched(ctx, l2, &chain);
    }
    if chain.dst.is_link_local() || chain.dst.is_multicast() {
        // For the host on this link (neighbour discovery, MLD): left to its stack. A
        // packet for one of the host's global or unique local addresses goes on, as
        // IPv4's does, so a published port there is reached by hairpin.
        return Err(verdict(ctx, Reason::Pass));
    }
    if chain.src.is_link_local() {
        // A link-local address does not leave its link: never routed, nor masqueraded.
        return Err(verdict(ctx, Reason::DropIpv6));
    }
    packet(ctx, ETH_HLEN, &chain).map_err(|reason| verdict(ctx, reason))
}

/// A switched frame: multicast flooded, the link's own traffic (neighbour discovery,
/// link-local addresses) forwarded as it is, past the bridge's netfilter hooks as IPv4
/// is, both under the network's ICC policy and isolation (`container::switched`). Any
/// other unicast, in whatever Ethernet frame, takes the generic path (Ok: its
/// summary), which looks its flow up first (a neighbour answering a hairpin flow is
/// translated back) and then judges it alike.
#[inline(always)]
fn switched(ctx: &TcContext, l2: &L2, c: &Chain) -> Result<&'static mut Packet<Ip6>, i32> {
    let link = c.dst.is_multicast()
        || c.icmp >= ICMPV6_ROUTER_SOLICIT && c.icmp <= ICMPV6_REDIRECT
        || c.src.is_link_local()
        || c.dst.is_link_local()
        || c.src.is_unspecified();
    if !link {
        return packet(ctx, ETH_HLEN, c).map_err(|reason| verdict(ctx, reason));
    }
    let own = container::own_flags(l2, &c.src);
    if let Some(v) = container::switched(ctx, l2, &c.dst, own) {
        return Err(v);
    }
    if l2.dst_mac[0] & 1 != 0 {
        return Err(l2::flood(ctx, l2));
    }
    Err(l2::forward_switched(ctx, l2, &c.dst))
}

/// The summary of an IPv6 packet off an uplink for the family-generic path, or why it
/// is dropped (`Pass`: not IPv6). A neighbour advertisement for a local endpoint's
/// address is `drop-neigh-spoof`: from outside it would take the endpoint's traffic.
#[inline(always)]
pub fn parse6(ctx: &TcContext, l3_off: usize) -> Result<&'static mut Packet<Ip6>, Reason> {
    if l3_proto(ctx, l3_off) != Some(ETH_P_IPV6) {
        return Err(Reason::Pass);
    }
    let chain = walk(ctx, l3_off)?;
    if chain.icmp == ICMPV6_NEIGH_ADVERT {
        // Type, code, checksum, flags and reserved: 8 bytes; the target: 16.
        let target = read::<Ip6, _>(ctx, chain.l4_off + 8).ok_or(Reason::DropMalformed)?;
        if endpoint6(&target).is_some() {
            return Err(Reason::DropNeighSpoof);
        }
    }
    packet(ctx, l3_off, &chain)
}

/// The summary of the packet whose chain is `c`, its L4 header read.
#[inline(always)]
fn packet(ctx: &TcContext, l3_off: usize, c: &Chain) -> Result<&'static mut Packet<Ip6>, Reason> {
    // The summary keeps offsets in a byte: a longer chain of extension headers is not
    // translated. A chain that runs past the payload (into the frame's padding) is
    // malformed: its upper layer is not the packet's.
    if c.l4_off > usize::from(u8::MAX) || c.l4_off > c.end {
        return Err(Reason::DropMalformed);
    }
    let p = &mut crate::maps::scratch().ok_or(Reason::DropMalformed)?.v6.pkt;
    *p = Packet {
        l3: l3_off as u8,
        l4: c.l4_off as u8,
        ip_end: c.end as u32,
        src_ip: c.src,
        dst_ip: c.dst,
        proto: c.next,
        src_port: 0,
        dst_port: 0,
        tcp_flags: 0,
        tcp_seq: 0,
        tcp_ack: 0,
        tcp_win: 0,
        tcp_hlen: 0,
        payload_len: 0,
        ip_id: 0,
        frag_id: c.frag_id,
        ttl: c.hop_limit,
        df: true,
        frag: c.frag,
        icmp: Icmp::No,
    };
    if c.frag != Frag::Later {
        parse::l4(ctx, p, c.end - c.l4_off)?;
    }
    Ok(p)
}

/// Walk the header chain from `l3_off` to the upper-layer header.
#[inline(always)]
pub fn walk(ctx: &TcContext, l3_off: usize) -> Result<Chain, Reason> {
    let Some(fixed) = read_pulled::<Fixed, _>(ctx, l3_off) else {
        return Err(Reason::DropMalformed);
    };
    if fixed.ver >> 4 != 6 {
        return Err(Reason::DropMalformed);
    }
    let payload = usize::from(u16::from_be(fixed.payload_len));
    let frame = (ctx.len() as usize).saturating_sub(l3_off + IPV6_HLEN);
    // Payload length 0 is how BIG TCP GSO packets say "see skb->len"; nothing else may.
    let payload = if payload == 0 && ctx.is_gso() {
        frame
    } else if payload == 0 || payload > frame {
        return Err(Reason::DropMalformed);
    } else {
        payload
    };
    if matches!(
        fixed.next,
        NEXT_HOP_BY_HOP | NEXT_ROUTING | NEXT_FRAGMENT | NEXT_DEST_OPTS
    ) {
        // The chain is read in place below: make its headers linear first, as far as a
        // chain the summary can hold reaches (pulling in the loop would leave the
        // verifier offsets it cannot follow).
        let want = (l3_off + usize::from(u8::MAX) + 8).min(ctx.len() as usize);
        ctx.pull(want as u32);
    }
    let mut c = Chain {
        src: fixed.src,
        dst: fixed.dst,
        hop_limit: fixed.hop_limit,
        end: l3_off + IPV6_HLEN + payload,
        next: fixed.next,
        l4_off: l3_off + IPV6_HLEN,
        frag: Frag::None,
        frag_id: 0,
        icmp: 0,
    };
    // Each extension header, then the upper-layer header: one more step than headers.
    for _ in 0..=MAX_EXT_HEADERS {
        let off = c.l4_off;
        match c.next {
            NEXT_HOP_BY_HOP | NEXT_ROUTING | NEXT_DEST_OPTS => {
                let Some([nh, len]) = read::<[u8; 2], _>(ctx, off) else {
                    return Err(Reason::DropMalformed);
                };
                c.next = nh;
                c.l4_off = off + (usize::from(len) + 1) * 8;
            }
            NEXT_FRAGMENT => {
                let Some([nh, _, hi, lo, id @ ..]) = read::<[u8; 8], _>(ctx, off) else {
                    return Err(Reason::DropMalformed);
                };
                c.next = nh;
                c.l4_off = off + 8;
                c.frag_id = u32::from_ne_bytes(id);
                if u16::from_be_bytes([hi, lo]) & 0xfff8 != 0 {
                    // A later fragment: its first fragment was judged with the chain.
                    c.frag = Frag::Later;
                    return Ok(c);
                }
                c.frag = Frag::First;
            }
            NEXT_ICMPV6 => {
                // Type and code: a one-byte read at a variable offset compiles to a
                // bounds check the verifier cannot follow (`ptr >= end`).
                let Some([kind, _code]) = read::<[u8; 2], _>(ctx, off) else {
                    // The chain does not end in this (first) fragment.
                    return Err(Reason::DropMalformed);
                };
                c.icmp = kind;
                return Ok(c);
            }
            // The upper layer (or no next header).
            _ => return Ok(c),
        }
    }
    Err(Reason::DropMalformed)
}

/// What only a router may say, from a container: a router advertisement or redirect,
/// neighbour discovery in fragments.
#[inline(always)]
fn guard(c: &Chain) -> Result<(), Reason> {
    match c.icmp {
        ICMPV6_ROUTER_ADVERT | ICMPV6_REDIRECT => Err(Reason::DropRouterAdvert),
        ICMPV6_ROUTER_SOLICIT..=ICMPV6_REDIRECT if c.frag != Frag::None => {
            Err(Reason::DropRouterAdvert)
        }
        _ => Ok(()),
    }
}

/// The fixed IPv6 header.
#[derive(Clone, Copy)]
#[repr(C)]
struct Fixed {
    ver: u8,
    _class_flow: [u8; 3],
    payload_len: u16,
    next: u8,
    hop_limit: u8,
    src: Ip6,
    dst: Ip6,
}

/// Whether the frame's sender owns `ip`: the link-local address of its MAC, or an
/// address its port's endpoint has (registered or bound) with that MAC.
#[inline(always)]
fn owns(l2: &L2, ip: &Ip6) -> bool {
    if ip.same(&Ip6::link_local_of(l2.src_mac)) {
        return true;
    }
    endpoint6(ip).is_some_and(|ep| ep.ifindex == l2.ingress && ep.mac == l2.src_mac)
}

/// An IPv6 source must be the sender's own (bound now if the port has no IPv6 address
/// yet and this one lies in its network's IPv6 subnet, is no host's nor another
/// endpoint's: `l2::bind`). `::` may only be switched.
#[inline(always)]
fn check_source(ctx: &TcContext, l2: &mut L2, src: &Ip6) -> Result<(), Reason> {
    if src.is_unspecified() {
        return if l2.routed() {
            Err(Reason::DropSpoof)
        } else {
            Ok(())
        };
    }
    if owns(l2, src) {
        return Ok(());
    }
    if src.is_multicast() || src.is_link_local() || endpoint6(src).is_some() {
        // Never a source; another interface's link-local; another port's address.
        return Err(Reason::DropSpoof);
    }
    if l2.port.flags & PORT_V6 != 0 {
        // Its addresses are known, and this is none of them.
        return Err(Reason::DropSpoof);
    }
    l2::bind(ctx, l2, src)
}

/// A solicitation or advertisement from a source its sender may not claim would put
/// that address in its neighbours' caches with the sender's MAC: a neighbour spoof.
#[inline(always)]
fn neighbour_claim(c: &Chain, reason: Reason) -> Reason {
    let nd = c.icmp == ICMPV6_NEIGH_SOLICIT || c.icmp == ICMPV6_NEIGH_ADVERT;
    if nd && reason == Reason::DropSpoof {
        Reason::DropNeighSpoof
    } else {
        reason
    }
}

/// A neighbour advertisement names only an address its sender owns, and neighbour
/// discovery's link-layer address options only the sender's MAC.
#[inline(always)]
fn check_neighbour(ctx: &TcContext, l2: &L2, c: &Chain) -> Result<(), Reason> {
    if c.next != NEXT_ICMPV6 || (c.icmp != ICMPV6_NEIGH_SOLICIT && c.icmp != ICMPV6_NEIGH_ADVERT) {
        return Ok(());
    }
    // Type, code, checksum, flags or reserved: 8 bytes; the target: 16.
    let Some(target) = read::<Ip6, _>(ctx, c.l4_off + 8) else {
        return Err(Reason::DropMalformed);
    };
    if c.icmp == ICMPV6_NEIGH_ADVERT && !owns(l2, &target) {
        return Err(Reason::DropNeighSpoof);
    }
    let mut off = c.l4_off + 24;
    for _ in 0..MAX_ND_OPTS {
        if off >= c.end {
            return Ok(());
        }
        let Some([kind, len, mac @ ..]) = read::<[u8; 8], _>(ctx, off) else {
            return Err(Reason::DropMalformed);
        };
        if len == 0 {
            // RFC 4861 4.6: a node discards such a packet.
            return Err(Reason::DropMalformed);
        }
        if (kind == ND_OPT_SOURCE_LL || kind == ND_OPT_TARGET_LL) && mac != l2.src_mac {
            return Err(Reason::DropNeighSpoof);
        }
        off += usize::from(len) * 8;
    }
    if off >= c.end {
        Ok(())
    } else {
        Err(Reason::DropMalformed)
    }
}
