//! Delivery of a translated packet: straight into a known endpoint's namespace, or by
//! route lookup to whatever device leads to the destination.
use core::{mem::size_of, ptr};

use aya_ebpf::{
    EbpfContext,
    bindings::{BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS, bpf_fib_lookup as FibParams},
    helpers::generated::{bpf_fib_lookup, bpf_redirect, bpf_redirect_neigh, bpf_redirect_peer},
    programs::TcContext,
};
use common::Reason;

use crate::{
    maps::ENDPOINTS,
    parse::Packet,
    stats::{TC_ACT_REDIRECT, TC_ACT_SHOT, count},
};

const AF_INET: u8 = 2;

/// Hand the packet to the endpoint that owns `p.dst_ip`, else route it.
#[inline(always)]
pub fn to_destination(ctx: &TcContext, p: &Packet) -> i32 {
    // SAFETY: plain lookup of a Pod value.
    if let Some(ep) = unsafe { ENDPOINTS.get(p.dst_ip) }
        && ctx.store(0, &ep.mac, 0).is_ok()
    {
        // SAFETY: helper call with plain integer arguments.
        let ret = unsafe { bpf_redirect_peer(ep.ifindex, 0) };
        if ret == TC_ACT_REDIRECT {
            count(ctx, Reason::RedirectPeer);
            return ret as i32;
        }
    }
    by_route(ctx, p)
}

/// `bpf_fib_lookup` for the (already translated) packet, then redirect out of the
/// returned device; the kernel resolves the neighbour when the lookup could not.
#[inline(always)]
pub fn by_route(ctx: &TcContext, p: &Packet) -> i32 {
    // SAFETY: an all-zero bpf_fib_lookup is a valid value of this plain C struct.
    let mut fib: FibParams = unsafe { core::mem::zeroed() };
    fib.family = AF_INET;
    fib.l4_protocol = p.proto;
    fib.sport = p.src_port;
    fib.dport = p.dst_port;
    fib.__bindgen_anon_3.ipv4_src = p.src_ip;
    fib.__bindgen_anon_4.ipv4_dst = p.dst_ip;
    // SAFETY: ctx.as_ptr() is the __sk_buff this program was called with.
    fib.ifindex = unsafe { (*ctx.skb.skb).ingress_ifindex };
    // tot_len stays 0: with it set, GSO packets get FRAG_NEEDED answers.
    // SAFETY: fib is a properly sized, writable bpf_fib_lookup.
    let ret = unsafe { bpf_fib_lookup(ctx.as_ptr(), &mut fib, size_of::<FibParams>() as i32, 0) };
    let redirected = match ret as u32 {
        BPF_FIB_LKUP_RET_SUCCESS => {
            let macs = [fib.dmac, fib.smac];
            if ctx.store(0, &macs, 0).is_err() {
                return drop(ctx, Reason::DropRewrite);
            }
            // SAFETY: helper call with plain integer arguments.
            unsafe { bpf_redirect(fib.ifindex, 0) }
        }
        // SAFETY: a null neighbour means "look it up from the route"; plen 0 goes with it.
        BPF_FIB_LKUP_RET_NO_NEIGH => unsafe {
            bpf_redirect_neigh(fib.ifindex, ptr::null_mut(), 0, 0)
        },
        _ => return drop(ctx, Reason::DropNoRoute),
    };
    count(ctx, Reason::RedirectNeigh);
    redirected as i32
}

#[inline(always)]
fn drop(ctx: &TcContext, reason: Reason) -> i32 {
    count(ctx, reason);
    TC_ACT_SHOT
}
