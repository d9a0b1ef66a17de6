//! `from_uplink`: DNAT of traffic to published ports, reverse SNAT of replies to
//! container egress, ICMP errors about either, and the inbound policy: a managed
//! network's addresses are reachable from outside only through those. Both families
//! take the same path (`ip`). A managed network's address never comes from outside, as
//! the kernel's reverse-path filter judges it: an untracked packet from a local
//! endpoint's address or any address of a managed network (a LAN's hosts on its own
//! wire excepted), from a cluster prefix not by the way it is reached, or an ARP
//! announcing an endpoint, is `drop-spoof` (on a LAN wire its sender would pass as the
//! container to the host and its neighbours), as is a tracked one from another side
//! than its flow's (`ct::lookup`).
use aya_ebpf::programs::TcContext;
use common::{
    CtKey, CtValue, IFACE_LAN_SHIFT, Ip6, NET_INTERNAL, NET_LAN, NET_ROUTED, Network, Reason, jump,
};

use crate::{
    cluster,
    ct::{self, From},
    datapath_log,
    family::{Family, stage},
    frag, fwd,
    icmp::{self, Quote},
    l2, log,
    maps::{JUMP, iface_role},
    nat::{self, New},
    packet::{Frag, Icmp, Packet},
    parse::{ETH_P_ARP, ETH_P_IPV6, l3_proto, parse},
    parse6::parse6,
    stats::{count, count_flow, verdict},
    time_exceeded::TimeExceeded,
    tunnel,
};

/// `l3_off`: `ETH_HLEN` on an Ethernet uplink, 0 on an L3 one (a tunnel, a VPN).
#[inline(always)]
pub(crate) fn handle(ctx: &TcContext, l3_off: usize) -> i32 {
    let proto = l3_proto(ctx, l3_off);
    if proto == Some(ETH_P_ARP) && l3_off != 0 {
        return l2::arp_from_wire(ctx);
    }
    if proto == Some(ETH_P_IPV6) {
        let slot = if l3_off == 0 {
            jump::FROM_L3_UPLINK6
        } else {
            jump::FROM_UPLINK6
        };
        // SAFETY: a tail call into the IPv6 program with this program's context; it
        // returns only when the slot is empty, and then IPv6 is left to the host.
        unsafe { JUMP.tail_call(ctx, slot) };
        return verdict(ctx, Reason::Pass);
    }
    match parse(ctx, l3_off) {
        Ok(p) => ip(ctx, p),
        Err(reason) => {
            if reason.is_drop() {
                datapath_log!(log::parse_failed(ctx, reason));
            }
            verdict(ctx, reason)
        }
    }
}

/// `from_uplink6` and `from_l3_uplink6`: an IPv6 packet (the IPv4 programs tail-call
/// them).
#[inline(always)]
pub(crate) fn handle6(ctx: &TcContext, l3_off: usize) -> i32 {
    match parse6(ctx, l3_off) {
        Ok(p) => ip::<Ip6>(ctx, p),
        Err(reason) => verdict(ctx, reason),
    }
}

/// Whether `p`'s source is one no packet from outside has: a managed network's
/// (`managed_source`), or a cluster prefix's not come the way it is reached
/// (`cluster::source_ok`). Checked for packets the flow table does not know (a flow's
/// first packet, the host's own traffic), as the subnets are.
#[inline(always)]
fn forged<A: Family>(ctx: &TcContext, p: &Packet<A>) -> bool {
    // SAFETY: the __sk_buff this program was called with.
    let ingress = unsafe { (*ctx.skb.skb).ingress_ifindex };
    // IPv6's reverse-path lookup behind a call of its own (`stage!`), for its stack.
    managed_source(&p.src_ip, ingress) || !stage!(A, cluster::source_ok(ctx, p))
}

/// Whether `src`, arrived on interface `ingress`, belongs to a managed network, which
/// never sends from outside: a local endpoint's address, or any address of a managed
/// network but a LAN's arriving on that LAN's own wire (its bridge's port, recorded in
/// `ifaces_v1`). Shared with `xdp_uplink`'s early drop.
#[inline(always)]
pub(crate) fn managed_source<A: Family>(src: &A, ingress: u32) -> bool {
    if A::endpoint(src).is_some() {
        return true;
    }
    A::network_of(src).is_some_and(|n| {
        n.flags & NET_LAN == 0 || iface_role(ingress) >> IFACE_LAN_SHIFT != n.bridge
    })
}

#[inline(always)]
fn ip<A: Quote + TimeExceeded>(ctx: &TcContext, p: &mut Packet<A>) -> i32 {
    if A::CLUSTER && cluster::is_tunnel(ctx, p) {
        // The outer packet of the cluster's tunnel, for the VXLAN device to open: only
        // from a node, by the way back to it (forged otherwise). Not tracked.
        return if cluster::tunnel_source_ok(ctx, p) {
            verdict(ctx, Reason::Pass)
        } else {
            verdict(ctx, Reason::DropTunnelSource)
        };
    }
    if p.icmp == Icmp::Error {
        if forged(ctx, p) {
            return verdict(ctx, Reason::DropSpoof);
        }
        return match icmp::handle_error(ctx, p, From::Uplink) {
            Some(v) => v,
            None => stage!(A, inbound(ctx, p, Reason::Pass)),
        };
    }
    if p.frag == Frag::Later {
        if !frag::recall(p) {
            if forged(ctx, p) {
                return verdict(ctx, Reason::DropSpoof);
            }
            let other = if A::is_host(&p.dst_ip) {
                Reason::FragmentPassed
            } else {
                Reason::Pass
            };
            return stage!(A, inbound(ctx, p, other));
        }
        count(ctx, Reason::FragmentTranslated);
    }
    let (to, flow) = match stage!(A, ct::lookup(ctx, p, From::Uplink)) {
        // It would be forwarded: its TTL ends here, and its sender learns so.
        Ok(Some(_)) if p.ttl <= 1 => return stage!(A, A::time_exceeded(ctx, p)),
        Ok(Some(hit)) => {
            datapath_log!(log::tracked(ctx, p, &hit.to));
            (hit.to, hit.entry)
        }
        Ok(None) => {
            if forged(ctx, p) {
                return verdict(ctx, Reason::DropSpoof);
            }
            if let Some(v) = stage!(A, lan(ctx, p)) {
                return v;
            }
            match stage!(A, nat::dnat(ctx, p)) {
                Ok(New::Flow(to)) => {
                    datapath_log!(log::dnat(ctx, p.proto, p.dst_port, to.dst_port));
                    count_flow(ctx, Reason::DnatNew, &to);
                    (to, None)
                }
                Ok(New::None) => return stage!(A, inbound(ctx, p, Reason::Pass)),
                Err(Reason::DropTtl) => return stage!(A, A::time_exceeded(ctx, p)),
                Err(reason) => return verdict(ctx, reason),
            }
        }
        Err(reason) => return verdict(ctx, reason),
    };
    stage!(A, deliver(ctx, p, &to, flow))
}

/// Send a tracked or newly translated packet on as `to`.
#[inline(always)]
fn deliver<A: Family>(
    ctx: &TcContext,
    p: &mut Packet<A>,
    to: &CtKey<A>,
    flow: Option<&'static mut CtValue<A>>,
) -> i32 {
    frag::remember(p);
    if nat::apply(ctx, p, to).is_err() {
        return verdict(ctx, Reason::DropRewrite);
    }
    fwd::to_destination(ctx, p, flow)
}

/// An untracked frame on an uplink bridged to a LAN network (pipework style), for a
/// registered endpoint of that network: straight to it. (Checked only once the flow
/// table has no entry: tracked traffic pays no subnet lookup.)
#[inline(always)]
fn lan<A: Family>(ctx: &TcContext, p: &Packet<A>) -> Option<i32> {
    if p.l3_off() == 0 || A::network_of(&p.dst_ip).is_none_or(|n| n.flags & NET_LAN == 0) {
        return None;
    }
    let dst_mac = crate::parse::read::<[u8; 6], _>(ctx, 0)?;
    l2::to_endpoint(ctx, &p.dst_ip, dst_mac, None, 0)
}

/// A packet that is neither a tracked flow nor a published port: into a routed network
/// it is forwarded (past the host's firewall, like the rest of bpfnet's traffic) when
/// the family's routed networks are open, else only to a port published at the
/// container's own address, as a new tracked flow; into any other managed network but
/// a LAN it is dropped; elsewhere, and to the host's own address admitted from the
/// cluster, it is `otherwise`. The judgement and what follows it are stages of their
/// own (`stage!`): for IPv6, a cluster source's route lookup and a new flow's 40-byte
/// tuples would not fit one frame beside the program's.
#[inline(always)]
fn inbound<A: Family>(ctx: &TcContext, p: &Packet<A>, otherwise: Reason) -> i32 {
    match stage!(A, inbound_way(ctx, p, otherwise)) {
        Inbound::Track => stage!(
            A,
            match nat::track(ctx, p, From::Uplink) {
                Ok(_) => fwd::to_destination(ctx, p, None),
                Err(reason) => verdict(ctx, reason),
            }
        ),
        Inbound::Forward => stage!(A, fwd::to_destination(ctx, p, None)),
        Inbound::Verdict(reason) => verdict(ctx, reason),
    }
}

/// What `inbound` does with a packet.
enum Inbound {
    /// A new tracked flow, then to its destination.
    Track,
    /// To its destination, untracked (an open routed network).
    Forward,
    /// This verdict.
    Verdict(Reason),
}

#[inline(always)]
fn inbound_way<A: Family>(ctx: &TcContext, p: &Packet<A>, otherwise: Reason) -> Inbound {
    let Some(n) = A::network_of(&p.dst_ip) else {
        return Inbound::Verdict(otherwise);
    };
    if n.flags & NET_INTERNAL == 0 {
        match from_cluster(ctx, p) {
            // The host's own address there (its bridge's, the source of the host's
            // packets into the tunnel): the host's stack answers.
            Ok(true) if A::is_host(&p.dst_ip) => return Inbound::Verdict(otherwise),
            Ok(true) => return Inbound::Track,
            Ok(false) => {}
            Err(reason) => return Inbound::Verdict(reason),
        }
    }
    match inbound_drop(&n) {
        Some(reason) => Inbound::Verdict(reason),
        None if n.flags & NET_ROUTED == 0 => Inbound::Verdict(otherwise),
        None if A::ROUTED_OPEN => Inbound::Forward,
        None if nat::published_at_own(p) => Inbound::Track,
        None => Inbound::Verdict(Reason::DropInbound),
    }
}

/// Whether `p` comes from the cluster to a local container of the same network (see
/// `cluster::admits`); Err: it claims a cluster source but came out of the tunnel from
/// the wrong node or with the wrong key, or off the wire not by its reverse path
/// (spoofed). The cluster's segments are Ethernet.
#[inline(always)]
fn from_cluster<A: Family>(ctx: &TcContext, p: &Packet<A>) -> Result<bool, Reason> {
    let Some(s) = A::cluster_of(&p.src_ip).filter(|_| p.l3_off() != 0) else {
        return Ok(false);
    };
    let tunnel = tunnel::tunnel_of(ctx);
    let admitted = cluster::admits(&p.src_ip, &p.dst_ip, tunnel);
    match tunnel {
        // The tunnel carries only the cluster's own: another node's prefix from the
        // wrong node, or with another network's key, is forged.
        Some(_) if !admitted => Err(Reason::DropSpoof),
        Some(_) => Ok(true),
        None if !admitted => Ok(false),
        None if !cluster::reverse_path_ok(ctx, p, &s) => Err(Reason::DropSpoof),
        None => Ok(true),
    }
}

/// Why a packet from outside into network `n` that is neither a tracked flow nor a
/// published port is dropped (an internal network takes none, a NAT network only
/// published ports); None where it may go on (a routed network, a LAN). Shared with
/// `xdp_uplink`'s early drop.
#[inline(always)]
pub(crate) fn inbound_drop(n: &Network) -> Option<Reason> {
    if n.flags & NET_INTERNAL != 0 {
        Some(Reason::DropInternal)
    } else if n.flags & (NET_ROUTED | NET_LAN) != 0 {
        None
    } else {
        Some(Reason::DropInbound)
    }
}
