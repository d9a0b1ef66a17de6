//! Delivery of a packet: straight into a known endpoint's namespace, or by route lookup
//! to whatever device leads to its destination.
use core::{mem::size_of, ptr};

use aya_ebpf::{
    EbpfContext,
    bindings::{
        BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS, BPF_FIB_LOOKUP_SRC,
        bpf_fib_lookup as FibParams,
    },
    helpers::generated::{bpf_fib_lookup, bpf_redirect, bpf_redirect_neigh, bpf_redirect_peer},
    programs::TcContext,
};
use common::{CtKey, Reason};

use crate::{
    maps::{ENDPOINTS, scratch},
    parse::Packet,
    stats::{TC_ACT_REDIRECT, count, verdict},
};

const AF_INET: u8 = 2;

/// Where the routing table sends a tuple.
pub struct Route {
    pub ifindex: u32,
    /// Preferred source address on that route (network order), when asked for.
    pub src_ip: u32,
    /// MACs to write; None when the neighbour is not resolved yet.
    macs: Option<[[u8; 6]; 2]>,
}

/// Route lookup for tuple `t` arriving on this packet's ingress device; `want_src` asks
/// the kernel for the source address it would pick.
#[inline(always)]
pub fn route(ctx: &TcContext, t: &CtKey, want_src: bool) -> Option<Route> {
    let fib = &mut scratch()?.fib;
    // SAFETY: an all-zero bpf_fib_lookup is a valid value of this plain C struct.
    *fib = unsafe { core::mem::zeroed() };
    fib.family = AF_INET;
    fib.l4_protocol = t.proto;
    fib.sport = t.src_port;
    fib.dport = t.dst_port;
    fib.__bindgen_anon_3.ipv4_src = t.src_ip;
    fib.__bindgen_anon_4.ipv4_dst = t.dst_ip;
    // SAFETY: ctx.as_ptr() is the __sk_buff this program was called with.
    fib.ifindex = unsafe { (*ctx.skb.skb).ingress_ifindex };
    // tot_len stays 0: with it set, GSO packets get FRAG_NEEDED answers.
    let flags = if want_src { BPF_FIB_LOOKUP_SRC } else { 0 };
    // SAFETY: fib is a properly sized, writable bpf_fib_lookup.
    let ret = unsafe { bpf_fib_lookup(ctx.as_ptr(), fib, size_of::<FibParams>() as i32, flags) };
    let macs = match ret as u32 {
        BPF_FIB_LKUP_RET_SUCCESS => Some([fib.dmac, fib.smac]),
        BPF_FIB_LKUP_RET_NO_NEIGH => None,
        _ => return None,
    };
    Some(Route {
        ifindex: fib.ifindex,
        // SAFETY: reading the union member the IPv4 lookup wrote.
        src_ip: unsafe { fib.__bindgen_anon_3.ipv4_src },
        macs,
    })
}

/// Send the packet out of `r`'s device; the kernel resolves the neighbour when the
/// lookup could not.
#[inline(always)]
pub fn redirect(ctx: &TcContext, r: &Route) -> i32 {
    let ret = match r.macs {
        Some(macs) => {
            if ctx.store(0, &macs, 0).is_err() {
                return verdict(ctx, Reason::DropRewrite);
            }
            // SAFETY: helper call with plain integer arguments.
            unsafe { bpf_redirect(r.ifindex, 0) }
        }
        // SAFETY: a null neighbour means "look it up from the route"; plen 0 goes with it.
        None => unsafe { bpf_redirect_neigh(r.ifindex, ptr::null_mut(), 0, 0) },
    };
    count(ctx, Reason::RedirectRoute);
    ret as i32
}

/// Route the (translated) packet and send it on its way.
#[inline(always)]
pub fn by_route(ctx: &TcContext, p: &Packet) -> i32 {
    match route(ctx, &crate::ct::key_of(p), false) {
        Some(r) => redirect(ctx, &r),
        None => verdict(ctx, Reason::DropNoRoute),
    }
}

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
