//! The route lookup (`bpf_fib_lookup`): where the routing table, or the cluster's node
//! for another host's prefix, sends a tuple, and the next hop a packet takes from it.
//! Below delivery (`fwd`), the remembered hop (`hop`) and the cluster's checks
//! (`cluster`), which all ask it.
use core::mem::size_of;

use aya_ebpf::{
    EbpfContext,
    bindings::{
        BPF_FIB_LKUP_RET_FRAG_NEEDED, BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS,
        BPF_FIB_LOOKUP_SRC, bpf_fib_lookup as FibParams,
    },
    helpers::generated::{bpf_check_mtu, bpf_fib_lookup},
    programs::TcContext,
};
use common::{
    Addr, Be32, CLUSTER_HOST_GW, CLUSTER_VXLAN, CLUSTER_VXLAN_MAC, CLUSTER_VXLAN_SRC_MAC,
    ClusterRoute, CtKey, Endpoint,
};

use crate::{
    family::{AF_INET, Family, stage},
    maps::scratch,
};

/// The MACs of a frame inside the tunnel: (destination, source).
pub(crate) const VXLAN_MACS: [[u8; 6]; 2] = [CLUSTER_VXLAN_MAC, CLUSTER_VXLAN_SRC_MAC];

/// Where a packet for `dst` goes instead of by its own route: the node that holds its
/// prefix (None: by its own route).
#[inline(always)]
pub(crate) fn node_of<A: Family>(dst: &A) -> Option<ClusterRoute> {
    // IPv6's lookup key (20 bytes) behind a call of its own: every route lookup asks.
    stage!(
        A,
        A::cluster_of(dst).filter(|c| c.kind == CLUSTER_HOST_GW || c.kind == CLUSTER_VXLAN)
    )
}

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
    let node = node_of(&t.dst_ip);
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
    fib.sport = t.src_port.raw();
    fib.dport = t.dst_port.raw();
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

/// Device `ifindex`'s MTU.
#[inline(always)]
pub(crate) fn device_mtu(ctx: &TcContext, ifindex: u32) -> u32 {
    // A length of 1 always fits: only the MTU written back matters.
    let mut len = 1u32;
    // SAFETY: helper on this program's context; it writes the device's MTU to `len`.
    unsafe { bpf_check_mtu(ctx.as_ptr(), ifindex, &raw mut len, 0, 0) };
    len
}
