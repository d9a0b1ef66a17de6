//! What a container's frame says at layer 2: anti-spoofing against its endpoints for
//! every ethertype, the binding of a new veth's endpoint from its first packet, and the
//! fast path between endpoints of one network.
use aya_ebpf::{
    bindings::{BPF_F_INGRESS, BPF_NOEXIST},
    helpers::generated::{bpf_clone_redirect, bpf_redirect, bpf_redirect_peer},
    programs::TcContext,
};
use common::{Be32, EP_LEARNED, Endpoint, NET_EDGE, PORT_ENFORCE, PORT_V6, Port, Reason};

/// `bpf_map_update_elem`'s answer when `BPF_NOEXIST` finds the key taken.
const EEXIST: i32 = 17;

use crate::{
    family::Family,
    maps::{PORTS, bump_route_gen, endpoint, port},
    packet::Packet,
    parse::{ARP_SHA, ARP_SPA},
    stats::{TC_ACT_REDIRECT, count, verdict},
};

const NO_PORT: Port = Port {
    network: 0,
    flags: 0,
    bridge_mac: [0; 6],
    mac: [0; 6],
    ip: Be32::ZERO,
};

/// The frame's Ethernet header and the bridge port it came in by.
pub(crate) struct L2 {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    /// Host order.
    pub ethertype: u16,
    pub ingress: u32,
    /// The port, zeroed when `known` is false (an Option's unset bytes would be read by
    /// the compiler's spills, which the verifier refuses).
    pub port: Port,
    pub known: bool,
}

impl L2 {
    /// Frames sent to the bridge's own MAC are routed by the host; others are switched.
    /// Without port information everything counts as routed.
    pub(crate) fn routed(&self) -> bool {
        !self.known || self.port.bridge_mac == self.dst_mac
    }

    pub(crate) fn network(&self) -> Option<u32> {
        self.known.then_some(self.port.network)
    }

    fn enforced(&self) -> bool {
        self.known && self.port.flags & PORT_ENFORCE != 0
    }

    /// The frame comes in by a known port, from the MAC its endpoints use once one of
    /// them is known (for either family).
    /// Before then, any MAC but the bridge's own (its link-local address, which the
    /// kernel derives from the MAC, is the host's).
    #[inline(always)]
    pub(crate) fn check_mac(&self) -> Result<(), Reason> {
        if !self.known {
            return Err(Reason::DropUnbound);
        }
        let mac = if self.port.flags & (PORT_ENFORCE | PORT_V6) != 0 {
            self.port.mac == self.src_mac
        } else {
            self.port.bridge_mac != self.src_mac
        };
        if mac { Ok(()) } else { Err(Reason::DropSpoof) }
    }
}

#[derive(Clone, Copy)]
#[repr(C)]
struct EthHdr {
    dst: [u8; 6],
    src: [u8; 6],
    ethertype: u16,
}

#[inline(always)]
pub(crate) fn read(ctx: &TcContext) -> Option<L2> {
    let hdr: EthHdr = crate::parse::read(ctx, 0)?;
    // SAFETY: ctx is the __sk_buff this program was called with.
    let ingress = unsafe { (*ctx.skb.skb).ingress_ifindex };
    let known = port(ingress);
    Some(L2 {
        dst_mac: hdr.dst,
        src_mac: hdr.src,
        ethertype: u16::from_be(hdr.ethertype),
        ingress,
        port: known.unwrap_or(NO_PORT),
        known: known.is_some(),
    })
}

#[inline(always)]
fn owns(l2: &L2, ip: u32, mac: [u8; 6]) -> bool {
    if l2.src_mac != mac {
        return false;
    }
    // The port's own endpoint, as the daemon (or `bind`) recorded it with the port.
    if ip != 0 && l2.port.ip.raw() == ip && l2.port.mac == mac {
        return true;
    }
    endpoint(ip).is_some_and(|ep| ep.ifindex == l2.ingress && ep.mac == mac)
}

/// Bind `ip` (of either family) to the port `l2` came in by: its first packet names
/// its endpoint, when the address lies in the port's network and is one a container may
/// have; the port's addresses of that family are known from then on. The daemon
/// replaces the binding with what Docker (or `endpoint add`) says once it knows.
///
/// A claim of a host address (the gateway's among them), of a subnet's network or
/// broadcast address, of another endpoint's, or from the bridge's own MAC is
/// `DropSpoof`, and binds nothing: the neighbours would take the sender for that
/// address. An address outside the port's network is `DropUnbound`.
#[inline(always)]
pub(crate) fn bind<A: Family>(ctx: &TcContext, l2: &mut L2, ip: &A) -> Result<(), Reason> {
    if !l2.known {
        return Err(Reason::DropUnbound);
    }
    if A::is_host(ip) {
        return Err(Reason::DropSpoof);
    }
    let port = l2.port;
    let Some(net) = A::network_of(ip).filter(|n| n.bridge == port.network) else {
        return Err(Reason::DropUnbound);
    };
    if net.flags & NET_EDGE != 0 || l2.src_mac == port.bridge_mac {
        return Err(Reason::DropSpoof);
    }
    let ep = Endpoint::new(l2.ingress, port.network, l2.src_mac, EP_LEARNED);
    if let Err(e) = A::endpoints().insert(ip, ep, u64::from(BPF_NOEXIST)) {
        // Taken meanwhile by another endpoint; else the map is full.
        return Err(if e == -EEXIST {
            Reason::DropSpoof
        } else {
            Reason::DropUnbound
        });
    }
    // The MAC is the port's already when it is enforced for the other family
    // (`check_mac`).
    l2.port.mac = l2.src_mac;
    A::bind_port(&mut l2.port, ip);
    if let Some(p) = PORTS.get_ptr_mut(l2.ingress) {
        // SAFETY: a valid map value pointer.
        unsafe {
            (*p).mac = l2.src_mac;
            A::bind_port(&mut *p, ip);
        }
    }
    // Flows toward the address may remember a route to it: it is a peer now.
    bump_route_gen();
    count(ctx, Reason::EndpointLearned);
    Ok(())
}

/// An IPv4 packet must come from an endpoint of its port (bound now if the port has
/// none yet). Source 0.0.0.0 (DHCP) may only be switched.
#[inline(always)]
pub(crate) fn check_ip_source(ctx: &TcContext, l2: &mut L2, p: &Packet) -> Result<(), Reason> {
    if !l2.known {
        return Err(Reason::DropUnbound);
    }
    if l2.enforced() {
        return if owns(l2, p.src_ip, l2.src_mac) {
            Ok(())
        } else {
            Err(Reason::DropSpoof)
        };
    }
    if p.src_ip == 0 && !l2.routed() {
        return Ok(());
    }
    if endpoint(p.src_ip).is_some() {
        // Another port's address.
        return Err(Reason::DropSpoof);
    }
    bind(ctx, l2, &p.src_ip)
}

/// An ARP packet must announce one of its port's endpoints (address probes, with sender
/// address 0, only its MAC). From a port with no IPv4 endpoint yet, the address it
/// announces is a claim: bound as its first IP packet's would be, or refused.
#[inline(always)]
pub(crate) fn arp(ctx: &TcContext, l2: &mut L2) -> i32 {
    let (Ok(sha), Ok(spa)) = (ctx.load::<[u8; 6]>(ARP_SHA), ctx.load::<u32>(ARP_SPA)) else {
        return verdict(ctx, Reason::DropMalformed);
    };
    if sha != l2.src_mac || !l2.known {
        return verdict(ctx, Reason::DropSpoof);
    }
    if let Err(reason) = l2.check_mac() {
        return verdict(ctx, reason);
    }
    let claim = if spa == 0 {
        Ok(())
    } else if l2.enforced() {
        if owns(l2, spa, sha) {
            Ok(())
        } else {
            Err(Reason::DropSpoof)
        }
    } else if endpoint(spa).is_some() {
        Err(Reason::DropSpoof)
    } else {
        bind(ctx, l2, &spa)
    };
    match claim {
        Ok(()) => verdict(ctx, Reason::Pass),
        Err(reason) => verdict(ctx, reason),
    }
}

/// An ARP packet off a wire may not announce a local endpoint's address (it would take
/// the endpoint's traffic from the host and the bridge's other ports).
#[inline(always)]
pub(crate) fn arp_from_wire(ctx: &TcContext) -> i32 {
    let Ok(spa) = ctx.load::<u32>(ARP_SPA) else {
        return verdict(ctx, Reason::DropMalformed);
    };
    if spa != 0 && endpoint(spa).is_some() {
        return verdict(ctx, Reason::DropSpoof);
    }
    verdict(ctx, Reason::Pass)
}

/// A frame of any other ethertype: from its port's endpoint MAC, and only switched
/// within its network; routed, it is `routed_drop`.
#[inline(always)]
pub(crate) fn other(ctx: &TcContext, l2: &L2, routed_drop: Reason) -> i32 {
    if let Err(reason) = l2.check_mac() {
        return verdict(ctx, reason);
    }
    if l2.routed() {
        return verdict(ctx, routed_drop);
    }
    verdict(ctx, Reason::PassOther)
}

/// A switched IPv6 multicast frame (neighbour discovery, MLD): a copy to the bridge's
/// own transmit path, which floods it to the ports past the bridge netfilter hooks (an
/// ip6tables `FORWARD DROP` would otherwise cut neighbour discovery between
/// containers), and the frame itself into the bridge's own stack, for the host (the
/// gateway). Nothing takes the bridge's forwarding path, so no port gets it twice.
#[inline(always)]
pub(crate) fn flood(ctx: &TcContext, l2: &L2) -> i32 {
    let Some(network) = l2.network() else {
        return verdict(ctx, Reason::Pass);
    };
    // SAFETY: helper calls with this program's context and plain integer arguments.
    unsafe {
        if bpf_clone_redirect(ctx.skb.skb, network, 0) != 0 {
            return verdict(ctx, Reason::Pass);
        }
        count(ctx, Reason::ForwardBridge);
        bpf_redirect(network, u64::from(BPF_F_INGRESS)) as i32
    }
}

/// A broadcast or multicast frame for the host alone, into the bridge's own stack (not
/// its forwarding path): a network without inter-container communication gives its
/// containers' group frames to its gateway only.
#[inline(always)]
pub(crate) fn to_host(ctx: &TcContext, l2: &L2) -> i32 {
    let Some(network) = l2.network() else {
        return verdict(ctx, Reason::DropUnbound);
    };
    count(ctx, Reason::IccHostOnly);
    // SAFETY: helper call with plain integer arguments.
    unsafe { bpf_redirect(network, u64::from(BPF_F_INGRESS)) as i32 }
}

/// A frame for endpoint `ip` at `dst_mac` goes straight into its namespace when `net`
/// (the sender's network, None from an uplink) allows it.
#[inline(always)]
pub(crate) fn to_endpoint<A: Family>(
    ctx: &TcContext,
    ip: &A,
    dst_mac: [u8; 6],
    net: Option<u32>,
    from: u32,
) -> Option<i32> {
    let ep = A::endpoint(ip)?;
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
pub(crate) fn forward_switched<A: Family>(ctx: &TcContext, l2: &L2, dst: &A) -> i32 {
    let Some(network) = l2.network() else {
        return verdict(ctx, Reason::Pass);
    };
    if let Some(v) = to_endpoint(ctx, dst, l2.dst_mac, Some(network), l2.ingress) {
        return v;
    }
    if l2.dst_mac[0] & 1 != 0 {
        return verdict(ctx, Reason::Pass);
    }
    // SAFETY: helper call with plain integer arguments.
    let ret = unsafe { bpf_redirect(network, 0) };
    count(ctx, Reason::ForwardBridge);
    ret as i32
}
