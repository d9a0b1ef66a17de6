//! `xdp_uplink` (`bpfnet daemon --xdp`): on an Ethernet uplink, before the kernel builds
//! a socket buffer (native XDP) or before TC (generic XDP), drop what `from_uplink` would
//! drop anyway, without touching any state: malformed frames, untracked packets from a
//! managed network's address (`uplink::managed_source`), packets into a managed network that are neither a tracked
//! flow nor a published port, and new flows from outside beyond the new-flow budget. Everything else passes untouched to `from_uplink`,
//! which translates it. A packet is counted once, by the program that decides its fate.
use aya_ebpf::{
    bindings::xdp_action, helpers::generated::bpf_ktime_get_coarse_ns, macros::map,
    maps::PerCpuArray, programs::XdpContext,
};
use common::Reason;

use crate::{
    ct,
    maps::{FLOOD_BUDGET, cluster_of, network_of},
    nat,
    parse::{ETH_HLEN, Frag, Icmp, Packet, parse},
    stats::count,
    uplink::{inbound_drop, managed_source},
};

/// One CPU's count of first packets in the current one-second window.
#[repr(C)]
pub struct Window {
    start_ns: u64,
    count: u64,
}

#[map(name = "flood_window")]
static WINDOW: PerCpuArray<Window> = PerCpuArray::with_max_entries(1, 0);

const SECOND_NS: u64 = 1_000_000_000;

#[inline(always)]
pub fn gate(ctx: &XdpContext) -> u32 {
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
    over_budget().then_some(Reason::DropFlood)
}

/// Whether `from_uplink` may create a flow for this untracked packet: a first packet to a
/// published port.
#[inline(always)]
fn opens_flow(p: &Packet) -> bool {
    p.may_start_flow() && nat::published_from_wire(p).is_some()
}

/// Count a first packet against this CPU's budget for the current second; whether it is
/// beyond it. The budget keeps the new-flow table holding at least a second of new flows,
/// so a flood of spoofed first packets cannot evict a real handshake within its RTT.
#[inline(always)]
fn over_budget() -> bool {
    let budget = u64::from(FLOOD_BUDGET.get(0).copied().unwrap_or(0));
    let Some(w) = WINDOW.get_ptr_mut(0) else {
        return false;
    };
    if budget == 0 {
        return false;
    }
    // SAFETY: this CPU's slot, written only by this program while it runs here; the helper
    // takes no arguments.
    unsafe {
        let now = bpf_ktime_get_coarse_ns();
        if now.wrapping_sub((*w).start_ns) >= SECOND_NS {
            (*w).start_ns = now;
            (*w).count = 0;
        }
        (*w).count += 1;
        (*w).count > budget
    }
}
