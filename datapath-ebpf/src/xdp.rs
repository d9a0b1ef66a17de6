//! `xdp_uplink` (`bpfnet daemon --xdp`): on an Ethernet uplink, before the kernel builds
//! a socket buffer (native XDP) or before TC (generic XDP), drop what `from_uplink` would
//! drop anyway, without touching any state: malformed frames, untracked packets from a
//! managed network's address (`uplink::managed_source`), packets into a managed network
//! that are neither a tracked flow nor a published port, and new flows from outside
//! beyond the new-flow budget, shared fairly among source prefixes (`flood`). Everything
//! else passes untouched to `from_uplink`, which translates it. A packet is counted once,
//! by the program that decides its fate.
use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use common::Reason;

use crate::{
    ct, flood,
    maps::{cluster_of, network_of},
    nat,
    packet::{Frag, Icmp, Packet},
    parse::{ETH_HLEN, parse},
    stats::count,
    uplink::{inbound_drop, managed_source},
};

#[inline(always)]
pub(crate) fn gate(ctx: &XdpContext) -> u32 {
    match drop_reason(ctx) {
        None => xdp_action::XDP_PASS,
        Some(reason) => {
            count(ctx, reason);
            xdp_action::XDP_DROP
        }
    }
}

/// Why `from_uplink` would drop this frame before creating any state, if it would.
#[inline(always)]
fn drop_reason(ctx: &XdpContext) -> Option<Reason> {
    let p = match parse(ctx, ETH_HLEN) {
        Ok(p) => p,
        Err(reason) => return reason.is_drop().then_some(reason),
    };
    // ICMP errors and later fragments are judged by what they belong to: TC's.
    if p.icmp == Icmp::Error || p.frag == Frag::Later || ct::entry(&ct::key_of(p)).is_some() {
        return None;
    }
    // SAFETY: the xdp_md this program was called with.
    let ingress = unsafe { (*ctx.ctx).ingress_ifindex };
    if managed_source(&p.src_ip, ingress) {
        // A managed network's address never comes from outside (a LAN's on its wire).
        return Some(Reason::DropSpoof);
    }
    // Into a managed network: what `from_uplink` drops unless it opens a flow. Elsewhere
    // (the host's addresses): only first packets count against the budget.
    let drop = match network_of(p.dst_ip) {
        // A cluster source's packet is judged by TC, which alone sees a tunnel's key.
        Some(_) if cluster_of(p.src_ip).is_some() => return None,
        Some(n) => match inbound_drop(&n) {
            Some(reason) => Some(reason),
            None => return None,
        },
        None => None,
    };
    if !opens_flow(p) {
        return drop;
    }
    flood::over_budget(p.src_ip).then_some(Reason::DropFlood)
}

/// Whether `from_uplink` may create a flow for this untracked packet: a first packet to a
/// published port.
#[inline(always)]
fn opens_flow(p: &Packet) -> bool {
    p.may_start_flow() && nat::published_from_wire(p).is_some()
}
