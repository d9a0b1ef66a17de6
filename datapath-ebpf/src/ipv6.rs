//! IPv6 from containers, which bpfnet switches within a network but does not route yet:
//! the router's own messages are the host's to send. A container's router advertisement
//! or redirect would make its neighbours (and a host that accepts advertisements on the
//! bridge) route their IPv6 through it (CVE-2020-13401); it is dropped. The header chain
//! is walked to the upper-layer header, as RA-Guard evasion hides it behind extension
//! headers or in fragments (RFC 7113): neighbour discovery must not come fragmented
//! (RFC 6980), a first fragment must hold the whole chain (RFC 7112), and a chain longer
//! than bpfnet walks is refused, not guessed at.
use aya_ebpf::programs::TcContext;
use common::Reason;

use crate::parse::{ETH_HLEN, read};

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
const ICMPV6_REDIRECT: u8 = 137;

/// Why an IPv6 frame from a container is dropped before anything else looks at it;
/// None when it may go on (to the anti-spoofing of its MAC and switching).
#[inline(always)]
pub fn guard(ctx: &TcContext) -> Option<Reason> {
    let Some([ver, ..]) = read::<[u8; 1], _>(ctx, ETH_HLEN) else {
        return Some(Reason::DropMalformed);
    };
    if ver >> 4 != 6 {
        return Some(Reason::DropMalformed);
    }
    let Some(mut next) = read::<u8, _>(ctx, ETH_HLEN + 6) else {
        return Some(Reason::DropMalformed);
    };
    let mut off = ETH_HLEN + IPV6_HLEN;
    let mut fragmented = false;
    // Each extension header, then the upper-layer header: one more step than headers.
    for _ in 0..=MAX_EXT_HEADERS {
        match next {
            NEXT_HOP_BY_HOP | NEXT_ROUTING | NEXT_DEST_OPTS => {
                let Some([nh, len]) = read::<[u8; 2], _>(ctx, off) else {
                    return Some(Reason::DropMalformed);
                };
                next = nh;
                off += (usize::from(len) + 1) * 8;
            }
            NEXT_FRAGMENT => {
                let Some([nh, _, hi, lo]) = read::<[u8; 4], _>(ctx, off) else {
                    return Some(Reason::DropMalformed);
                };
                if u16::from_be_bytes([hi, lo]) & 0xfff8 != 0 {
                    // A later fragment: its first fragment was judged with the chain.
                    return None;
                }
                fragmented = true;
                next = nh;
                off += 8;
            }
            NEXT_ICMPV6 => return icmp(ctx, off, fragmented),
            // The upper layer (or no next header): nothing a router says.
            _ => return None,
        }
    }
    Some(Reason::DropMalformed)
}

/// The verdict on an ICMPv6 message at `off`.
#[inline(always)]
fn icmp(ctx: &TcContext, off: usize, fragmented: bool) -> Option<Reason> {
    // Type and code: a one-byte read at a variable offset compiles to a bounds check
    // the verifier cannot follow (`ptr >= end`).
    let Some([kind, _code]) = read::<[u8; 2], _>(ctx, off) else {
        // The chain does not end in this (first) fragment.
        return Some(Reason::DropMalformed);
    };
    match kind {
        ICMPV6_ROUTER_ADVERT | ICMPV6_REDIRECT => Some(Reason::DropRouterAdvert),
        ICMPV6_ROUTER_SOLICIT..=ICMPV6_REDIRECT if fragmented => Some(Reason::DropRouterAdvert),
        _ => None,
    }
}
