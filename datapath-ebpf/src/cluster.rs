//! The cluster (`cluster_v1`): other hosts' container prefixes and the nodes' own
//! addresses. Between two addresses of one cluster network nothing is translated: a
//! container's packet for another node's prefix goes to that node's underlay address
//! (host-gw) or into a VXLAN tunnel to it, tracked, and on the receiving node a packet
//! from a prefix of the same network (or from a node) to a local container starts a
//! tracked flow past the inbound policy. A prefix of another network is isolated as a
//! local bridge of another network is. Dual stack: an IPv6 prefix (`cluster6_v1`) is
//! judged the same way, its node's underlay (and so the tunnel's outer header) IPv4.
use aya_ebpf::programs::TcContext;
use common::{
    Be16, Be32, CLUSTER_NODE, CLUSTER_ROUTED, CLUSTER_VXLAN, CLUSTER_VXLAN_PORT,
    CLUSTER_VXLAN_SRC_MAC, ClusterRoute, IFACE_TUNNEL_GUARD, PROTO_TCP, PROTO_UDP, Reason,
    ct::TCP_SYN,
};

use crate::{
    ct,
    family::Family,
    fib::{self, VXLAN_MACS, node_of},
    hdr::{Ipv4Hdr, TCP_CSUM, TCP_HLEN},
    maps::{iface_role, scratch},
    packet::Packet,
    parse::{ETH_HLEN, ETH_P_IP, l3_proto, read, read_pulled, write},
    stats::{TC_ACT_OK, verdict},
    tunnel::{set_tunnel, tunnel_of},
};

/// Whether a container's packet from `src` to `dst` crosses the cluster: Some(true)
/// when both are prefixes of one network (untranslated, tracked); Some(false) when
/// `dst` is a cluster prefix `src` may not reach (isolation: another network, or a
/// sender outside the cluster); None when `dst` is not a cluster prefix (a node's own
/// address is the host's, reached as any host is).
#[inline(always)]
pub(crate) fn crossing<A: Family>(src: &A, dst: &A) -> Option<bool> {
    let d = A::cluster_of(dst).filter(|c| c.kind != CLUSTER_NODE)?;
    Some(A::cluster_of(src).is_some_and(|s| s.kind != CLUSTER_NODE && s.vni == d.vni))
}

/// Whether an untracked packet from `src` may start a flow to the local container
/// `dst`: `dst` is a cluster prefix and `src` a prefix of the same network or a node
/// (its host, or a port it publishes for a container here). `tunnel`: the VXLAN key
/// the packet arrived with (its remote node in host order, its VNI), None when it did
/// not come out of a tunnel; a prefix behind a tunnel comes only out of the tunnel
/// from its own node with its network's key, a host-gw prefix only from the wire. A
/// node's own address is no shortcut around the tunnel's checks: out of a tunnel it
/// comes only from that node itself, with the key of `dst`'s network.
#[inline(always)]
pub(crate) fn admits<A: Family>(src: &A, dst: &A, tunnel: Option<(u32, u32)>) -> bool {
    let Some(d) = A::cluster_of(dst).filter(|c| c.kind != CLUSTER_NODE) else {
        return false;
    };
    let Some(s) = A::cluster_of(src) else {
        return false;
    };
    if s.kind == CLUSTER_NODE {
        return tunnel.is_none_or(|(node, vni)| {
            s.node != Be32::ZERO && node == s.node.get() && vni == d.vni
        });
    }
    if s.vni != d.vni {
        return false;
    }
    match tunnel {
        Some((node, vni)) => s.kind == CLUSTER_VXLAN && node == s.node.get() && vni == s.vni,
        None => s.kind != CLUSTER_VXLAN,
    }
}

/// Whether `p`, from an uplink, came the way its source is reached when that source is
/// a cluster prefix (a node's own address is a host's, judged as any host's): out of the
/// tunnel, only a tunnel prefix from its own node with its network's key; off the wire,
/// any other prefix by the strict reverse path (`reverse_path_ok`). The cluster's
/// segments are Ethernet: from an L3 uplink, never. True for every other source.
#[inline(always)]
pub(crate) fn source_ok<A: Family>(ctx: &TcContext, p: &Packet<A>) -> bool {
    let Some(s) = A::cluster_of(&p.src_ip).filter(|c| c.kind != CLUSTER_NODE) else {
        return true;
    };
    if p.l3_off() == 0 {
        return false;
    }
    match tunnel_of(ctx) {
        Some((node, vni)) => s.kind == CLUSTER_VXLAN && node == s.node.get() && vni == s.vni,
        None => s.kind != CLUSTER_VXLAN && reverse_path_ok(ctx, p, &s),
    }
}

/// Whether `p` is a datagram for this host's VXLAN tunnel: UDP to the tunnel's port, at
/// one of the host's addresses, on an uplink that guards the tunnel (bpfnet's VXLAN
/// device exists: `IFACE_TUNNEL_GUARD`; without it VXLAN is someone else's). A later
/// fragment carries no port: the kernel reassembles it only with a first one, which is
/// judged.
#[inline(always)]
pub(crate) fn is_tunnel<A: Family>(ctx: &TcContext, p: &Packet<A>) -> bool {
    p.proto == PROTO_UDP
        && p.dst_port == Be16::new(CLUSTER_VXLAN_PORT)
        && A::is_host(&p.dst_ip)
        // SAFETY: the __sk_buff this program was called with.
        && iface_role(unsafe { (*ctx.skb.skb).ingress_ifindex }) & IFACE_TUNNEL_GUARD != 0
}

/// Whether the VXLAN datagram `p`, on the underlay, comes from a member: its outer
/// source is a registered node's own address (`CLUSTER_NODE`), and it came the way
/// back to that node leads (`reverse_path_ok`: the route to it leaves by the device
/// it came in on, the frame's sender is its neighbour). VXLAN carries no flow: judged
/// for every datagram, one prefix lookup, and the route lookup only for a node's.
/// IPv6 has no nodes: never.
#[inline(always)]
pub(crate) fn tunnel_source_ok<A: Family>(ctx: &TcContext, p: &Packet<A>) -> bool {
    A::cluster_of(&p.src_ip)
        .filter(|s| s.kind == CLUSTER_NODE)
        .is_some_and(|s| reverse_path_ok(ctx, p, &s))
}

/// Whether a packet off the wire from `s` (the cluster entry of its source) came the way
/// its source is reached (strict reverse path): the route back to its source (through
/// the node of its prefix, or the network's router) leaves by the device it came in on,
/// and the frame's sender is that route's neighbour (an L3 device has none: its one
/// peer). A routed prefix's source, besides, only by the next hop the host's own route
/// to the prefix names (`ClusterRoute::node`), so a prefix reached by the default
/// route alone admits nothing. A host on the segment that forges a cluster source
/// fails here; an unknown neighbour fails closed.
#[inline(always)]
pub(crate) fn reverse_path_ok<A: Family>(ctx: &TcContext, p: &Packet<A>, s: &ClusterRoute) -> bool {
    let mut back = ct::key_of(p).reversed();
    back.src_ip = A::ZERO;
    let Some(r) = fib::route(ctx, &back, false) else {
        return false;
    };
    // SAFETY: the __sk_buff this program was called with.
    let ingress = unsafe { (*ctx.skb.skb).ingress_ifindex };
    if r.ifindex != ingress {
        return false;
    }
    if s.kind == CLUSTER_ROUTED {
        // The lookup's answer is still in the scratch space: its next hop.
        let Some(fib) = scratch().map(|s| &s.fib) else {
            return false;
        };
        if !A::fib_via_is(fib, s.node, &p.src_ip) {
            return false;
        }
    }
    if p.l3_off() == 0 {
        return true;
    }
    let sender = read::<[u8; 6], _>(ctx, 6);
    r.resolved && sender == Some(r.macs[0])
}

/// Lower a TCP SYN's maximum segment size to what fits a device of `mtu` (the
/// tunnel's: the underlay's less VXLAN's 50 bytes), so neither end of a connection
/// across the tunnel sends segments it cannot carry. The option is looked for first
/// after the header, where every common stack puts it. `DropRewrite` when the option
/// could not be written after its checksum was (the segment would carry a wrong one).
#[inline(always)]
pub(crate) fn clamp_mss<A: Family>(
    ctx: &TcContext,
    p: &Packet<A>,
    ifindex: u32,
) -> Result<(), Reason> {
    if p.proto != PROTO_TCP || p.tcp_flags & TCP_SYN == 0 || p.tcp_hlen < 24 {
        return Ok(());
    }
    let off = p.l4_off() + TCP_HLEN;
    let Ok(opt) = ctx.load::<[u8; 4]>(off) else {
        return Ok(());
    };
    // Kind 2, length 4: the maximum segment size, network order.
    if opt[0] != 2 || opt[1] != 4 {
        return Ok(());
    }
    // Less the IP and TCP headers: 40 bytes for IPv4, 60 for IPv6.
    let headers = if A::AF == crate::family::AF_INET6 {
        60
    } else {
        40
    };
    let max =
        u16::try_from(fib::device_mtu(ctx, ifindex).saturating_sub(headers)).unwrap_or(u16::MAX);
    if u16::from_be_bytes([opt[2], opt[3]]) <= max {
        return Ok(());
    }
    let (old, new) = (u16::from_ne_bytes([opt[2], opt[3]]), max.to_be());
    // The checksum first (a no-op on a packet whose checksum the NIC completes); when
    // it cannot be updated, the segment goes unclamped.
    if ctx
        .l4_csum_replace(p.l4_off() + TCP_CSUM, u64::from(old), u64::from(new), 2)
        .is_err()
    {
        return Ok(());
    }
    ctx.store(off + 2, &new, 0).map_err(|_| Reason::DropRewrite)
}

/// `to_tunnel`, a frame leaving by the cluster's VXLAN device. The datapath's own carry
/// their key and the tunnel's inner MACs already (the source MAC says so) and pass
/// untouched. The host's own IPv4 packet, which bpfnet's route to a peer's prefix sends
/// here (`daemon/peer_routes.rs`), gets the key of the node whose prefix holds its
/// destination and the inner MACs every node accepts (the kernel's frame has the
/// device's own MAC as source, which the receiving node's driver drops as a loop). From
/// a host address only: a packet the host forwards into the tunnel is `drop-spoof`, one
/// for no tunnel prefix `drop-no-route` (the driver would drop it keyless). Other
/// protocols leave as the kernel sent them (without a key: the driver drops them).
#[inline(always)]
pub(crate) fn host_into_tunnel(ctx: &TcContext) -> i32 {
    if read::<[u8; 6], _>(ctx, 6) == Some(CLUSTER_VXLAN_SRC_MAC) {
        return TC_ACT_OK;
    }
    if l3_proto(ctx, ETH_HLEN) != Some(ETH_P_IP) {
        return verdict(ctx, Reason::Pass);
    }
    let Some(ip) = read_pulled::<Ipv4Hdr, _>(ctx, ETH_HLEN) else {
        return verdict(ctx, Reason::DropMalformed);
    };
    if !u32::is_host(&ip.src) {
        return verdict(ctx, Reason::DropSpoof);
    }
    let Some(c) = node_of(&ip.dst).filter(|c| c.kind == CLUSTER_VXLAN) else {
        return verdict(ctx, Reason::DropNoRoute);
    };
    if set_tunnel(ctx, c.node, c.vni).is_err() || write(ctx, 0, VXLAN_MACS).is_none() {
        return verdict(ctx, Reason::DropRewrite);
    }
    crate::log::host_into_tunnel(ctx, c.node, c.vni);
    verdict(ctx, Reason::Pass)
}
