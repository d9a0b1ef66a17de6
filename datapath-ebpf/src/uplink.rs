//! `from_uplink`: DNAT of traffic to published ports, reverse SNAT of replies to
//! container egress, ICMP errors about either, and the inbound policy: a managed
//! network's addresses are reachable from outside only through those.
use aya_ebpf::programs::TcContext;
use common::{NET_INTERNAL, NET_LAN, NET_ROUTED, Network, Reason};

use crate::{
    ct, frag, fwd,
    icmp::{self, From},
    l2,
    maps::{is_host, network_of},
    nat::{self, New},
    parse::{Frag, Icmp, Packet, parse},
    reply,
    stats::{count, verdict},
};

/// `l3_off`: `ETH_HLEN` on an Ethernet uplink, 0 on an L3 one (a tunnel, a VPN).
#[inline(always)]
pub fn handle(ctx: &TcContext, l3_off: usize) -> i32 {
    let p = match parse(ctx, l3_off) {
        Ok(p) => p,
        Err(reason) => return verdict(ctx, reason),
    };
    if p.icmp == Icmp::Error {
        return match icmp::handle_error(ctx, p, From::Uplink) {
            Some(v) => v,
            None => inbound(ctx, p, Reason::Pass),
        };
    }
    if p.frag == Frag::Later {
        if !frag::recall(p) {
            let other = if is_host(p.dst_ip) {
                Reason::FragmentPassed
            } else {
                Reason::Pass
            };
            return inbound(ctx, p, other);
        }
        count(ctx, Reason::FragmentTranslated);
    }
    let (to, flow) = match ct::lookup(ctx, p) {
        // It would be forwarded: its TTL ends here, and its sender learns so.
        Ok(Some(_)) if p.ttl <= 1 => return reply::time_exceeded(ctx, p),
        Ok(Some(hit)) => (hit.to, hit.entry),
        Ok(None) => {
            if let Some(v) = lan(ctx, p) {
                return v;
            }
            match nat::dnat(ctx, p) {
                Ok(New::Flow(to)) => (to, None),
                Ok(New::None) => return inbound(ctx, p, Reason::Pass),
                Err(Reason::DropTtl) => return reply::time_exceeded(ctx, p),
                Err(reason) => return verdict(ctx, reason),
            }
        }
        Err(reason) => return verdict(ctx, reason),
    };
    frag::remember(p);
    if nat::apply(ctx, p, &to).is_err() {
        return verdict(ctx, Reason::DropRewrite);
    }
    fwd::to_destination(ctx, p, flow)
}

/// An untracked frame on an uplink bridged to a LAN network (pipework style), for a
/// registered endpoint of that network: straight to it. (Checked only once the flow
/// table has no entry: tracked traffic pays no subnet lookup.)
#[inline(always)]
fn lan(ctx: &TcContext, p: &Packet) -> Option<i32> {
    if p.l3_off() == 0 || network_of(p.dst_ip).is_none_or(|n| n.flags & NET_LAN == 0) {
        return None;
    }
    let dst_mac = crate::parse::read::<[u8; 6], _>(ctx, 0)?;
    l2::to_endpoint(ctx, p.dst_ip, dst_mac, None, 0)
}

/// A packet that is neither a tracked flow nor a published port: into a routed network
/// it is forwarded (past the host's firewall, like the rest of bpfnet's traffic); into
/// any other managed network but a LAN it is dropped; elsewhere it is `otherwise`.
#[inline(always)]
fn inbound(ctx: &TcContext, p: &Packet, otherwise: Reason) -> i32 {
    match network_of(p.dst_ip) {
        Some(n) => match inbound_drop(&n) {
            Some(reason) => verdict(ctx, reason),
            None if n.flags & NET_ROUTED != 0 => fwd::to_destination(ctx, p, None),
            None => verdict(ctx, otherwise),
        },
        None => verdict(ctx, otherwise),
    }
}

/// Why a packet from outside into network `n` that is neither a tracked flow nor a
/// published port is dropped (an internal network takes none, a NAT network only
/// published ports); None where it may go on (a routed network, a LAN). Shared with
/// `xdp_uplink`'s early drop.
#[inline(always)]
pub fn inbound_drop(n: &Network) -> Option<Reason> {
    if n.flags & NET_INTERNAL != 0 {
        Some(Reason::DropInternal)
    } else if n.flags & (NET_ROUTED | NET_LAN) != 0 {
        None
    } else {
        Some(Reason::DropInbound)
    }
}
