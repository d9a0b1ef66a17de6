//! Delivery of a packet: straight into a known endpoint's namespace, or by route lookup
//! to whatever device leads to its destination. A packet from an L3 device (a tunnel, a
//! VPN) gets an Ethernet header on its way; one sent to an L3 device loses it in the
//! kernel's redirect.
use core::{mem::size_of, ptr};

use aya_ebpf::{
    EbpfContext,
    bindings::{
        BPF_FIB_LKUP_RET_FRAG_NEEDED, BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS,
        BPF_FIB_LOOKUP_SRC, bpf_check_mtu_flags::BPF_MTU_CHK_SEGS,
        bpf_check_mtu_ret::BPF_MTU_CHK_RET_SUCCESS, bpf_fib_lookup as FibParams, bpf_redir_neigh,
        bpf_redir_neigh__bindgen_ty_1,
    },
    helpers::generated::{
        bpf_check_mtu, bpf_fib_lookup, bpf_redirect, bpf_redirect_neigh, bpf_redirect_peer,
        bpf_skb_change_head,
    },
    programs::TcContext,
};
use common::{Addr, Be32, CLUSTER_VXLAN, CtKey, CtValue, Endpoint, Reason};

use crate::{
    cluster::{self, VXLAN_MACS},
    family::{Family, stage},
    maps::{port, scratch},
    parse::{ETH_HLEN, Frame as _, Packet, write},
    stats::{TC_ACT_REDIRECT, count, verdict},
    tunnel::set_tunnel,
};

const AF_INET: u8 = 2;

/// Where the routing table sends a tuple.
pub(crate) struct Route<A = u32> {
    pub ifindex: u32,
    /// Preferred source address on that route (network order), when asked for; zero
    /// when there is none.
    pub src_ip: A,
    /// MACs to write (destination, source), when `resolved`.
    pub macs: [[u8; 6]; 2],
    /// The neighbour is known. (Not an Option: the compiler copies an unset payload,
    /// which the verifier refuses to read.)
    pub resolved: bool,
    /// The cluster node the packet is sent to instead of its own destination (its
    /// underlay IPv4; 0: none).
    pub via: Be32,
    /// The VXLAN key to send it with (0: not into a tunnel).
    pub vni: u32,
}

/// Route lookup for tuple `t` arriving on this packet's ingress device; `want_src` asks
/// the kernel for the source address it would pick. A destination in another node's
/// cluster prefix goes to that node: by the route to its underlay address (host-gw), or
/// into the VXLAN tunnel to it.
#[inline(always)]
pub(crate) fn route<A: Family>(ctx: &TcContext, t: &CtKey<A>, want_src: bool) -> Option<Route<A>> {
    let node = cluster::node_of(&t.dst_ip);
    let tunnel = node.filter(|c| c.kind == CLUSTER_VXLAN);
    if let Some(c) = tunnel.filter(|_| !want_src) {
        return Some(Route {
            ifindex: c.ifindex,
            src_ip: A::ZERO,
            macs: VXLAN_MACS,
            resolved: true,
            via: c.node,
            vni: c.vni,
        });
    }
    let via = node.map_or(Be32::ZERO, |c| c.node);
    // The lookup's parameter block is the scratch space: without it (`maps::scratch_or`),
    // no route.
    let fib = &mut scratch()?.fib;
    // SAFETY: an all-zero bpf_fib_lookup is a valid value of this plain C struct.
    *fib = unsafe { core::mem::zeroed() };
    fib.family = A::AF;
    fib.l4_protocol = t.proto;
    fib.sport = t.src_port;
    fib.dport = t.dst_port;
    A::fib_set(fib, t);
    // Into the tunnel, the source is the one the host's own route to the prefix prefers
    // (bpfnet's, from this node's gateway in the prefix's network), which the peer
    // answers through the tunnel; otherwise the route to the node's underlay address.
    // The node's underlay address is IPv4 whatever the packet's family (an IPv6
    // prefix's node too, into the tunnel as well: the host has no IPv6 route to it):
    // this is an IPv4 lookup of it.
    if via != Be32::ZERO && (tunnel.is_none() || A::AF != AF_INET) {
        if A::AF != AF_INET {
            fib.family = AF_INET;
            fib.__bindgen_anon_3.ipv6_src = [0; 4];
            fib.__bindgen_anon_4.ipv6_dst = [0; 4];
        }
        fib.__bindgen_anon_4.ipv4_dst = via.raw();
    }
    // SAFETY: ctx.as_ptr() is the __sk_buff this program was called with.
    fib.ifindex = unsafe { (*ctx.skb.skb).ingress_ifindex };
    // tot_len stays 0: with it set, GSO packets get FRAG_NEEDED answers.
    let flags = if want_src { BPF_FIB_LOOKUP_SRC } else { 0 };
    // SAFETY: fib is a properly sized, writable bpf_fib_lookup.
    let ret = unsafe { bpf_fib_lookup(ctx.as_ptr(), fib, size_of::<FibParams>() as i32, flags) };
    let resolved = match ret as u32 {
        // FRAG_NEEDED: the route is there, the packet too big for it (see `fits`).
        BPF_FIB_LKUP_RET_SUCCESS | BPF_FIB_LKUP_RET_FRAG_NEEDED => true,
        BPF_FIB_LKUP_RET_NO_NEIGH => false,
        _ => return None,
    };
    // An IPv6 packet's node lookup was IPv4's: it chose no IPv6 source.
    let src_ip = if via != Be32::ZERO && A::AF != AF_INET {
        A::ZERO
    } else {
        A::fib_src(fib)
    };
    if let Some(c) = tunnel {
        return Some(Route {
            ifindex: c.ifindex,
            src_ip,
            macs: VXLAN_MACS,
            resolved: true,
            via,
            vni: c.vni,
        });
    }
    Some(Route {
        ifindex: fib.ifindex,
        src_ip,
        macs: [fib.dmac, fib.smac],
        resolved,
        via,
        vni: 0,
    })
}

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

/// Where a (translated) packet goes next. A struct with every field set rather than an
/// enum: the compiler copies an enum's unset payload, which the verifier refuses to read.
#[derive(Clone, Copy)]
pub(crate) struct Next {
    /// Straight into the namespace of the endpoint that owns its destination
    /// (`bpf_redirect_peer` on the host-side veth `ifindex`), rather than out of device
    /// `ifindex` by route.
    pub peer: bool,
    pub ifindex: u32,
    /// Destination and source MAC (a peer's source is filled in only for packets from
    /// an L3 device).
    pub macs: [[u8; 6]; 2],
    /// The route's neighbour is known (always, for a peer).
    pub resolved: bool,
    /// As `Route::via` and `Route::vni`.
    pub via: Be32,
    pub vni: u32,
}

impl Next {
    #[inline(always)]
    pub(crate) fn peer(ep: &Endpoint) -> Self {
        Self {
            peer: true,
            ifindex: ep.ifindex,
            macs: [ep.mac, [0; 6]],
            resolved: true,
            via: Be32::ZERO,
            vni: 0,
        }
    }

    #[inline(always)]
    pub(crate) fn route<A: Addr>(r: &Route<A>) -> Self {
        Self {
            peer: false,
            ifindex: r.ifindex,
            macs: r.macs,
            resolved: r.resolved,
            via: r.via,
            vni: r.vni,
        }
    }
}

/// The endpoint that owns tuple `t`'s destination, else the route toward it.
#[inline(always)]
pub(crate) fn next_hop<A: Family>(ctx: &TcContext, t: &CtKey<A>) -> Option<Next> {
    if let Some(ep) = A::endpoint(&t.dst_ip) {
        return Some(Next::peer(&ep));
    }
    route(ctx, t, false).map(|r| Next::route(&r))
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

/// Device `ifindex`'s MTU.
#[inline(always)]
pub(crate) fn device_mtu(ctx: &TcContext, ifindex: u32) -> u32 {
    // A length of 1 always fits: only the MTU written back matters.
    let mut len = 1u32;
    // SAFETY: helper on this program's context; it writes the device's MTU to `len`.
    unsafe { bpf_check_mtu(ctx.as_ptr(), ifindex, &raw mut len, 0, 0) };
    len
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
    match crate::hop::next(ctx, &crate::ct::key_of(p), flow) {
        Some((next, _)) => send(ctx, p, &next),
        None => verdict(ctx, Reason::DropNoRoute),
    }
}
