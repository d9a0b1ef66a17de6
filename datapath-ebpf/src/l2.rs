//! What a container's frame says at layer 2: anti-spoofing against its registered
//! endpoints, and the fast path between endpoints of one network.
use aya_ebpf::{
    helpers::generated::{bpf_redirect, bpf_redirect_peer},
    programs::TcContext,
};
use common::{Endpoint, PORT_ENFORCE, Port, Reason};

use crate::{
    maps::{ENDPOINTS, PORTS},
    parse::Packet,
    stats::{TC_ACT_REDIRECT, count},
};

const ETH_P_ARP: u16 = 0x0806;

/// The frame's Ethernet addresses and the bridge port it came in by.
pub struct L2 {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub ingress: u32,
    pub port: Option<Port>,
}

impl L2 {
    /// Frames sent to the bridge's own MAC are routed by the host; others are switched.
    /// Without port information everything counts as routed.
    pub fn routed(&self) -> bool {
        self.port.is_none_or(|p| p.bridge_mac == self.dst_mac)
    }

    pub fn network(&self) -> Option<u32> {
        self.port.map(|p| p.network)
    }

    fn enforced(&self) -> bool {
        self.port.is_some_and(|p| p.flags & PORT_ENFORCE != 0)
    }
}

#[inline(always)]
pub fn read(ctx: &TcContext) -> Option<L2> {
    let macs: [[u8; 6]; 2] = ctx.load(0).ok()?;
    // SAFETY: ctx is the __sk_buff this program was called with.
    let ingress = unsafe { (*ctx.skb.skb).ingress_ifindex };
    // SAFETY: plain lookup, value copied out.
    let port = unsafe { PORTS.get(ingress) }.copied();
    Some(L2 {
        dst_mac: macs[0],
        src_mac: macs[1],
        ingress,
        port,
    })
}

#[inline(always)]
fn owns(l2: &L2, ip: u32, mac: [u8; 6]) -> bool {
    // SAFETY: plain lookup, value copied out.
    let ep: Option<Endpoint> = unsafe { ENDPOINTS.get(ip) }.copied();
    ep.is_some_and(|ep| ep.ifindex == l2.ingress && ep.mac == mac && l2.src_mac == mac)
}

/// An IPv4 packet from an enforced port must come from one of its endpoints.
#[inline(always)]
pub fn spoofed_ip(l2: &L2, p: &Packet) -> bool {
    l2.enforced() && !owns(l2, p.src_ip, l2.src_mac)
}

/// An ARP packet from an enforced port must announce one of its endpoints (address
/// probes, with sender address 0, only its MAC).
#[inline(always)]
pub fn spoofed_arp(ctx: &TcContext, l2: &L2) -> bool {
    if !l2.enforced() {
        return false;
    }
    let Ok(proto) = ctx.load::<u16>(12) else {
        return false;
    };
    if u16::from_be(proto) != ETH_P_ARP {
        return false;
    }
    let (Ok(sha), Ok(spa)) = (ctx.load::<[u8; 6]>(22), ctx.load::<u32>(28)) else {
        return true;
    };
    if spa == 0 {
        return sha != l2.src_mac;
    }
    !owns(l2, spa, sha)
}

/// A frame for endpoint `ip` at `dst_mac` goes straight into its namespace when `net`
/// (the sender's network, None from an uplink) allows it.
#[inline(always)]
pub fn to_endpoint(
    ctx: &TcContext,
    ip: u32,
    dst_mac: [u8; 6],
    net: Option<u32>,
    from: u32,
) -> Option<i32> {
    // SAFETY: plain lookup, value copied out.
    let ep: Endpoint = unsafe { ENDPOINTS.get(ip) }.copied()?;
    if net.is_some_and(|n| n != ep.network) || ep.mac != dst_mac || ep.ifindex == from {
        return None;
    }
    // SAFETY: helper call with plain integer arguments.
    let ret = unsafe { bpf_redirect_peer(ep.ifindex, 0) };
    if ret != TC_ACT_REDIRECT {
        return None;
    }
    count(ctx, Reason::ForwardLocal);
    Some(ret as i32)
}

/// A switched unicast frame: straight to an endpoint of the same network, else out of
/// the bridge's own transmit path (which forwards by its FDB without the bridge
/// netfilter hooks, so a FORWARD DROP policy does not cut the network in two).
/// Broadcast and multicast stay with the bridge.
#[inline(always)]
pub fn forward_switched(ctx: &TcContext, l2: &L2, p: &Packet) -> i32 {
    let Some(network) = l2.network() else {
        return crate::stats::verdict(ctx, Reason::Pass);
    };
    if let Some(v) = to_endpoint(ctx, p.dst_ip, l2.dst_mac, Some(network), l2.ingress) {
        return v;
    }
    if l2.dst_mac[0] & 1 != 0 {
        return crate::stats::verdict(ctx, Reason::Pass);
    }
    // SAFETY: helper call with plain integer arguments.
    let ret = unsafe { bpf_redirect(network, 0) };
    count(ctx, Reason::ForwardBridge);
    ret as i32
}
