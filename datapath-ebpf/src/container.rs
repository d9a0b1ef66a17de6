//! `from_container`: anti-spoofing, replies of published ports, the fast path between
//! endpoints of a network, isolation between networks, egress SNAT (masquerade),
//! hairpin to published ports, ICMP errors about any of them.
use aya_ebpf::programs::TcContext;
use common::{CT_DNAT, CT_SNAT, CtKey, Endpoint, IFACE_BRIDGE, IFACE_UPLINK, Reason};

use crate::{
    ct, frag,
    fwd::{self, Route},
    icmp,
    l2::{self, L2},
    maps::{ENDPOINTS, IFACES},
    nat,
    parse::{Frag, Icmp, Packet, parse},
    stats::{count, verdict},
    uplink::{is_host, published_from_wire},
};

#[inline(always)]
pub fn handle(ctx: &TcContext) -> i32 {
    let Some(l2) = l2::read(ctx) else {
        return verdict(ctx, Reason::Pass);
    };
    let mut p = match parse(ctx) {
        Ok(p) => p,
        Err(Reason::Pass) if l2::spoofed_arp(ctx, &l2) => return verdict(ctx, Reason::DropSpoof),
        Err(reason) => return verdict(ctx, reason),
    };
    if l2::spoofed_ip(&l2, &p) {
        return verdict(ctx, Reason::DropSpoof);
    }
    match p.icmp {
        Icmp::Error => return icmp::handle_error(ctx, &mut p),
        Icmp::Other => return verdict(ctx, Reason::Pass),
        _ => {}
    }
    let later = p.frag == Frag::Later;
    if later && frag::recall(&mut p) {
        count(ctx, Reason::FragmentTranslated);
    } else if later {
        // Ports unknown: pass what would not be masqueraded, drop what would.
        return match egress(ctx, &l2, &p) {
            Egress::Masquerade(_) if l2.routed() => verdict(ctx, Reason::DropFragment),
            Egress::OtherNetwork if l2.routed() => verdict(ctx, Reason::DropIsolation),
            _ => verdict(ctx, Reason::FragmentPassed),
        };
    }
    if let Some(to) = ct::lookup(ctx, &p) {
        return translate(ctx, &mut p, &to, None);
    }
    if !l2.routed() {
        return l2::forward_switched(ctx, &l2, &p);
    }
    if p.icmp == Icmp::EchoReply {
        return verdict(ctx, Reason::Pass);
    }
    if is_host(p.dst_ip) {
        return hairpin(ctx, &mut p);
    }
    let route = match egress(ctx, &l2, &p) {
        Egress::Masquerade(route) => route,
        Egress::OtherNetwork => return verdict(ctx, Reason::DropIsolation),
        Egress::Elsewhere => return verdict(ctx, Reason::Pass),
    };
    let mut to = ct::key_of(&p);
    to.src_ip = route.src_ip;
    match ct::create(ctx, &p, to, CT_SNAT, true) {
        Ok(to) => {
            count(ctx, Reason::SnatNew);
            translate(ctx, &mut p, &to, Some(&route))
        }
        Err(reason) => verdict(ctx, reason),
    }
}

/// Apply `to`, then send the packet out of `route` (known already) or wherever its new
/// destination lies.
#[inline(always)]
fn translate(ctx: &TcContext, p: &mut Packet, to: &CtKey, route: Option<&Route>) -> i32 {
    frag::remember(p);
    if nat::apply(ctx, p, to).is_err() {
        return verdict(ctx, Reason::DropRewrite);
    }
    match route {
        Some(r) => fwd::redirect(ctx, r),
        None => fwd::to_destination(ctx, p),
    }
}

/// Where a routed packet from a container is headed.
enum Egress {
    /// Out of an uplink: masqueraded with the source address that route prefers.
    Masquerade(Route),
    /// Into another managed network: isolation forbids it.
    OtherNetwork,
    /// The host's business (its own addresses, unmanaged devices, no route).
    Elsewhere,
}

#[inline(always)]
fn egress(ctx: &TcContext, l2: &L2, p: &Packet) -> Egress {
    // SAFETY: plain lookup, value copied out.
    let dst_ep: Option<Endpoint> = unsafe { ENDPOINTS.get(p.dst_ip) }.copied();
    if let (Some(ep), Some(net)) = (dst_ep, l2.network())
        && ep.network != net
    {
        return Egress::OtherNetwork;
    }
    let Some(r) = fwd::route(ctx, &ct::key_of(p), true) else {
        return Egress::Elsewhere;
    };
    // SAFETY: plain lookup of a u32.
    let role = unsafe { IFACES.get(r.ifindex) }.copied().unwrap_or(0);
    if role & IFACE_BRIDGE != 0 && l2.network().is_some_and(|n| n != r.ifindex) {
        Egress::OtherNetwork
    } else if role & IFACE_UPLINK != 0 && r.src_ip != 0 {
        Egress::Masquerade(r)
    } else {
        Egress::Elsewhere
    }
}

/// A container reaching a published port on a host address. A container reaching its
/// own published port also gets a new source (its bridge's address), or it would
/// receive a packet from itself.
#[inline(always)]
fn hairpin(ctx: &TcContext, p: &mut Packet) -> i32 {
    let Some(b) = published_from_wire(p.dst_ip, p.dst_port, p.proto) else {
        return verdict(ctx, Reason::Pass);
    };
    let mut to = ct::key_of(p);
    to.dst_ip = b.ip;
    to.dst_port = b.port;
    let own = b.ip == p.src_ip;
    if own {
        match fwd::route(ctx, &to, true) {
            Some(r) if r.src_ip != 0 => to.src_ip = r.src_ip,
            _ => return verdict(ctx, Reason::DropNoRoute),
        }
    }
    let flags = if own { CT_DNAT | CT_SNAT } else { CT_DNAT };
    match ct::create(ctx, p, to, flags, own) {
        Ok(to) => {
            count(ctx, Reason::DnatNew);
            translate(ctx, p, &to, None)
        }
        Err(reason) => verdict(ctx, reason),
    }
}
