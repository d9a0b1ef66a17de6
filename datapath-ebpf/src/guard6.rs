//! A container's IPv6 frame, checked before the family-generic path routes it (IPv4's
//! checks are `l2.rs`'s); the header chain is `parse6`'s.
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
//! bridge) route their IPv6 through it (CVE-2020-13401). They are found behind any
//! extension headers (`parse6::walk`), and neighbour discovery must not come fragmented
//! (RFC 6980).
use aya_ebpf::programs::TcContext;
use common::{Ip6, PORT_V6, Reason};

use crate::{
    isolation,
    l2::{self, L2},
    maps::endpoint6,
    packet::{Frag, Packet},
    parse::{ETH_HLEN, read},
    parse6::{
        Chain, ICMPV6_NEIGH_ADVERT, ICMPV6_NEIGH_SOLICIT, ICMPV6_REDIRECT, ICMPV6_ROUTER_ADVERT,
        ICMPV6_ROUTER_SOLICIT, NEXT_ICMPV6, packet, walk,
    },
    stats::verdict,
};

/// Neighbour discovery options naming a link-layer address (RFC 4861 4.6.1).
const ND_OPT_SOURCE_LL: u8 = 1;
const ND_OPT_TARGET_LL: u8 = 2;

/// Options walked in a solicitation or advertisement (real ones carry one or two);
/// more is refused.
const MAX_ND_OPTS: usize = 4;

/// The checks a container's IPv6 frame must pass (the router's messages and neighbour
/// discovery, the source): a routed one's summary, for the family-generic path
/// (`container::ip`), or the verdict (switched within its network, passed to the host
/// when addressed to it, or dropped).
#[inline(always)]
pub(crate) fn admit(ctx: &TcContext, l2: &mut L2) -> Result<&'static mut Packet<Ip6>, i32> {
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
    let own = isolation::own_flags(l2, &c.src);
    if let Some(v) = isolation::switched(ctx, l2, &c.dst, own) {
        return Err(v);
    }
    if l2.dst_mac[0] & 1 != 0 {
        return Err(l2::flood(ctx, l2));
    }
    Err(l2::forward_switched(ctx, l2, &c.dst))
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
