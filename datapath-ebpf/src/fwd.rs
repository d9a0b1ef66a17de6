//! Delivery of a packet: straight into a known endpoint's namespace, or by route lookup
//! to whatever device leads to its destination. A packet from an L3 device (a tunnel, a
//! VPN) gets an Ethernet header on its way; one sent to an L3 device loses it in the
//! kernel's redirect.
use core::{mem::size_of, ptr};

use aya_ebpf::{
    EbpfContext,
    bindings::{
        bpf_check_mtu_flags::BPF_MTU_CHK_SEGS, bpf_check_mtu_ret::BPF_MTU_CHK_RET_SUCCESS,
        bpf_redir_neigh, bpf_redir_neigh__bindgen_ty_1,
    },
    helpers::generated::{
        bpf_check_mtu, bpf_redirect, bpf_redirect_neigh, bpf_redirect_peer, bpf_skb_change_head,
    },
    programs::TcContext,
};
use common::{Addr, Be32, CtValue, Reason};

use crate::{
    cluster, ct,
    family::{AF_INET, Family, stage},
    fib::Next,
    hop,
    maps::port,
    packet::Packet,
    parse::{ETH_HLEN, Frame as _, write},
    stats::{TC_ACT_REDIRECT, count, verdict},
    tunnel::set_tunnel,
};

/// Send the packet out of `next`'s device; the kernel resolves the neighbour when the
/// lookup could not.
#[inline(always)]
fn redirect(ctx: &TcContext, next: &Next) -> i32 {
    let ret = if next.resolved {
        if write(ctx, 0, next.macs).is_none() {
            return verdict(ctx, Reason::DropRewrite);
        }
        // SAFETY: helper call with plain integer arguments.
        unsafe { bpf_redirect(next.ifindex, 0) }
    } else if next.via != Be32::ZERO {
        // A cluster node: its neighbour entry is the underlay address's, not the
        // packet's destination's (which has no route).
        let mut nh = bpf_redir_neigh {
            nh_family: u32::from(AF_INET),
            __bindgen_anon_1: bpf_redir_neigh__bindgen_ty_1 {
                ipv4_nh: next.via.raw(),
            },
        };
        // SAFETY: the neighbour's address, passed with its size.
        unsafe {
            bpf_redirect_neigh(
                next.ifindex,
                &raw mut nh,
                size_of::<bpf_redir_neigh>() as i32,
                0,
            )
        }
    } else {
        // SAFETY: a null neighbour means "look it up from the route"; plen 0 goes with it.
        unsafe { bpf_redirect_neigh(next.ifindex, ptr::null_mut(), 0, 0) }
    };
    count(ctx, Reason::RedirectRoute);
    ret as i32
}

/// Whether the packet (each segment of a GSO packet) fits device `ifindex`'s MTU. The
/// IP length is what counts, not the frame's: a device without link-layer header (a
/// tunnel) takes a full-MTU packet from a container's Ethernet frame.
#[inline(always)]
pub(crate) fn fits<A: Addr>(ctx: &TcContext, p: &Packet<A>, ifindex: u32) -> bool {
    // A GSO packet's segments are measured by the kernel (IP length 0 asks for that,
    // and the segment check takes no other input).
    let (mut len, flags) = if ctx.is_gso() {
        (0u32, u64::from(BPF_MTU_CHK_SEGS))
    } else {
        (p.ip_len(), 0)
    };
    // SAFETY: helper on this program's context; it reads the IP length from `len` and
    // writes the device's MTU back to it.
    let ret = unsafe { bpf_check_mtu(ctx.as_ptr(), ifindex, &raw mut len, 0, flags) };
    ret == i64::from(BPF_MTU_CHK_RET_SUCCESS)
}

/// Whether the packet fits a device of `mtu` (when known: a remembered hop's), else
/// device `ifindex` as the kernel measures it. GSO packets always ask the kernel.
#[inline(always)]
pub(crate) fn fits_mtu<A: Addr>(
    ctx: &TcContext,
    p: &Packet<A>,
    ifindex: u32,
    mtu: Option<u32>,
) -> bool {
    match mtu {
        Some(mtu) if !ctx.is_gso() => p.ip_len() <= mtu,
        _ => fits(ctx, p, ifindex),
    }
}

/// One routing hop: the TTL goes down by one (a packet whose TTL ends here is dropped,
/// counted), then the packet is sent to `next`.
#[inline(always)]
pub(crate) fn send<A: Family>(ctx: &TcContext, p: &Packet<A>, next: &Next) -> i32 {
    if p.ttl <= 1 {
        return verdict(ctx, Reason::DropTtl);
    }
    if A::decrement_ttl(ctx, p).is_err() || (p.l3_off() == 0 && push_eth::<A>(ctx).is_err()) {
        return verdict(ctx, Reason::DropRewrite);
    }
    if !next.peer {
        // Into the tunnel: the MSS clamped to the tunnel's MTU, the key set; for IPv6,
        // each behind a call of its own (the key's 44 bytes do not fit beside its path).
        if next.vni != 0 {
            if let Err(reason) = stage!(A, cluster::clamp_mss(ctx, p, next.ifindex)) {
                return verdict(ctx, reason);
            }
            if stage!(A, set_tunnel(ctx, next.via, next.vni)).is_err() {
                return verdict(ctx, Reason::DropRewrite);
            }
        }
        if !next.resolved && next.via != Be32::ZERO && A::AF != AF_INET {
            // The kernel resolves an IPv6 packet's next hop only as an IPv6 address:
            // an IPv6 prefix's node waits for its (IPv4) neighbour entry, which the
            // daemon keeps resolved (`peer_neigh`).
            return verdict(ctx, Reason::DropNoRoute);
        }
        return redirect(ctx, next);
    }
    let macs_set = if p.l3_off() == 0 {
        // The container sees its gateway (the bridge) as the sender.
        let gateway = port(next.ifindex).map_or([0; 6], |port| port.bridge_mac);
        write(ctx, 0, [next.macs[0], gateway])
    } else {
        write(ctx, 0, next.macs[0])
    };
    if macs_set.is_some() {
        // SAFETY: helper call with plain integer arguments.
        let ret = unsafe { bpf_redirect_peer(next.ifindex, 0) };
        if ret == TC_ACT_REDIRECT {
            count(ctx, Reason::RedirectPeer);
            return ret as i32;
        }
    }
    verdict(ctx, Reason::DropRewrite)
}

/// Put an Ethernet header (zeroed MACs, the family's ethertype) in front of a packet
/// from an L3 device, which every later step (a veth peer, the neighbour output, another
/// redirect) expects; the caller writes the MACs.
#[inline(always)]
fn push_eth<A: Family>(ctx: &TcContext) -> Result<(), Reason> {
    // SAFETY: helper on this program's context; the new bytes are zeroed by the kernel.
    if unsafe { bpf_skb_change_head(ctx.skb.skb, ETH_HLEN as u32, 0) } != 0 {
        return Err(Reason::DropRewrite);
    }
    write(ctx, 12, A::ETH_P.to_be()).ok_or(Reason::DropRewrite)
}

/// Send the (translated) packet to the endpoint that owns its destination, else by
/// route; `flow`, the packet's flow entry, remembers where.
#[inline(always)]
pub(crate) fn to_destination<A: Family>(
    ctx: &TcContext,
    p: &Packet<A>,
    flow: Option<&mut CtValue<A>>,
) -> i32 {
    match hop::next(ctx, &ct::key_of(p), flow) {
        Some((next, _)) => send(ctx, p, &next),
        None => verdict(ctx, Reason::DropNoRoute),
    }
}
