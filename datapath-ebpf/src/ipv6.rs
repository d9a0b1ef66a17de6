//! IPv6 from containers, which bpfnet switches within a network but does not route yet:
//! routed, it may only reach the host itself (its own addresses, link-local ones:
//! neighbour and router discovery with the gateway, the host's services).
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
use aya_ebpf::{bindings::BPF_NOEXIST, programs::TcContext};
use common::{EP_LEARNED, Endpoint, Ip6, PORT_V6, Reason};

use crate::{
    l2::{self, L2},
    maps::{ENDPOINTS6, PORTS, endpoint6, is_host6, network6_of},
    parse::{ETH_HLEN, read},
    stats::{count, verdict},
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

/// What the header chain says: the addresses, and the ICMPv6 message it ends in, if any.
struct Chain {
    src: Ip6,
    dst: Ip6,
    /// Where the IPv6 payload ends in the frame.
    end: usize,
    /// ICMPv6 type (0: not ICMPv6, or a later fragment) and where the message starts.
    icmp: u8,
    icmp_off: usize,
}

/// `from_container`'s verdict on an IPv6 frame.
#[inline(always)]
pub fn from_container(ctx: &TcContext, l2: &mut L2) -> i32 {
    let chain = match walk(ctx) {
        Ok(c) => c,
        Err(reason) => return verdict(ctx, reason),
    };
    if let Err(reason) = l2.check_mac() {
        return verdict(ctx, reason);
    }
    if let Err(reason) = check_source(ctx, l2, &chain.src) {
        return verdict(ctx, reason);
    }
    if let Err(reason) = check_neighbour(ctx, l2, &chain) {
        return verdict(ctx, reason);
    }
    if l2.routed() && (chain.dst.is_link_local() || is_host6(&chain.dst)) {
        // For the host itself: left to its stack.
        return verdict(ctx, Reason::Pass);
    }
    l2::other(ctx, l2, Reason::DropIpv6)
}

/// Walk the header chain to the upper layer, refusing what a router alone may say.
#[inline(always)]
fn walk(ctx: &TcContext) -> Result<Chain, Reason> {
    let Some([ver, ..]) = read::<[u8; 2], _>(ctx, ETH_HLEN) else {
        return Err(Reason::DropMalformed);
    };
    if ver >> 4 != 6 {
        return Err(Reason::DropMalformed);
    }
    let Some([len_hi, len_lo, mut next, _hop_limit]) = read::<[u8; 4], _>(ctx, ETH_HLEN + 4) else {
        return Err(Reason::DropMalformed);
    };
    let Some([src, dst]) = read::<[Ip6; 2], _>(ctx, ETH_HLEN + 8) else {
        return Err(Reason::DropMalformed);
    };
    let mut chain = Chain {
        src,
        dst,
        end: ETH_HLEN + IPV6_HLEN + usize::from(u16::from_be_bytes([len_hi, len_lo])),
        icmp: 0,
        icmp_off: 0,
    };
    let mut off = ETH_HLEN + IPV6_HLEN;
    let mut fragmented = false;
    // Each extension header, then the upper-layer header: one more step than headers.
    for _ in 0..=MAX_EXT_HEADERS {
        match next {
            NEXT_HOP_BY_HOP | NEXT_ROUTING | NEXT_DEST_OPTS => {
                let Some([nh, len]) = read::<[u8; 2], _>(ctx, off) else {
                    return Err(Reason::DropMalformed);
                };
                next = nh;
                off += (usize::from(len) + 1) * 8;
            }
            NEXT_FRAGMENT => {
                let Some([nh, _, hi, lo]) = read::<[u8; 4], _>(ctx, off) else {
                    return Err(Reason::DropMalformed);
                };
                if u16::from_be_bytes([hi, lo]) & 0xfff8 != 0 {
                    // A later fragment: its first fragment was judged with the chain.
                    return Ok(chain);
                }
                fragmented = true;
                next = nh;
                off += 8;
            }
            NEXT_ICMPV6 => {
                // Type and code: a one-byte read at a variable offset compiles to a
                // bounds check the verifier cannot follow (`ptr >= end`).
                let Some([kind, _code]) = read::<[u8; 2], _>(ctx, off) else {
                    // The chain does not end in this (first) fragment.
                    return Err(Reason::DropMalformed);
                };
                return match kind {
                    ICMPV6_ROUTER_ADVERT | ICMPV6_REDIRECT => Err(Reason::DropRouterAdvert),
                    ICMPV6_ROUTER_SOLICIT..=ICMPV6_REDIRECT if fragmented => {
                        Err(Reason::DropRouterAdvert)
                    }
                    _ => {
                        chain.icmp = kind;
                        chain.icmp_off = off;
                        Ok(chain)
                    }
                };
            }
            // The upper layer (or no next header): nothing a router says.
            _ => return Ok(chain),
        }
    }
    Err(Reason::DropMalformed)
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
/// yet and this one lies in its network's IPv6 subnet, unowned). `::` may only be
/// switched.
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
    if bind(ctx, l2, src) {
        Ok(())
    } else {
        Err(Reason::DropUnbound)
    }
}

/// Bind `ip` to the port `l2` came in by, as `l2::bind` does for IPv4; the port's IPv6
/// addresses are known from then on.
#[inline(always)]
fn bind(ctx: &TcContext, l2: &mut L2, ip: &Ip6) -> bool {
    let port = l2.port;
    if network6_of(ip).is_none_or(|n| n.bridge != port.network) {
        return false;
    }
    let ep = Endpoint {
        ifindex: l2.ingress,
        network: port.network,
        mac: l2.src_mac,
        flags: EP_LEARNED,
        _pad: 0,
    };
    if ENDPOINTS6.insert(ip, ep, u64::from(BPF_NOEXIST)).is_err() {
        return false;
    }
    if let Some(p) = PORTS.get_ptr_mut(l2.ingress) {
        // SAFETY: a valid map value pointer. The MAC is the port's already when it is
        // enforced for IPv4 (`check_mac`).
        unsafe {
            (*p).mac = l2.src_mac;
            (*p).flags |= PORT_V6;
        }
    }
    l2.port.mac = l2.src_mac;
    l2.port.flags |= PORT_V6;
    count(ctx, Reason::EndpointLearned);
    true
}

/// A neighbour advertisement names only an address its sender owns, and neighbour
/// discovery's link-layer address options only the sender's MAC.
#[inline(always)]
fn check_neighbour(ctx: &TcContext, l2: &L2, c: &Chain) -> Result<(), Reason> {
    if c.icmp != ICMPV6_NEIGH_SOLICIT && c.icmp != ICMPV6_NEIGH_ADVERT {
        return Ok(());
    }
    // Type, code, checksum, flags or reserved: 8 bytes; the target: 16.
    let Some(target) = read::<Ip6, _>(ctx, c.icmp_off + 8) else {
        return Err(Reason::DropMalformed);
    };
    if c.icmp == ICMPV6_NEIGH_ADVERT && !owns(l2, &target) {
        return Err(Reason::DropNeighSpoof);
    }
    let mut off = c.icmp_off + 24;
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
