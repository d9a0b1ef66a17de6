//! `from_container`: anti-spoofing and isolation first, for every ethertype and IP
//! protocol; then replies of published ports, the fast path between endpoints of a
//! network, egress SNAT (masquerade), hairpin to published ports, ICMP errors about any
//! of them. A veth is enforced from the moment it is attached: until its endpoint is
//! known it may send nothing routed, and its first IPv4 packet (or ARP announcement)
//! binds its address, unless that is an address no container may have.
use aya_ebpf::programs::TcContext;
use common::{
    Addr, CtKey, CtValue, IFACE_BRIDGE, IFACE_UPLINK, Ip6, NET_INTERNAL, NET_NO_MASQ, NET_ROUTED,
    Network, Reason, jump,
};

use crate::{
    cluster,
    ct::{self, From},
    datapath_log,
    family::{Family, stage},
    fib::{self, Next, Route},
    frag, fwd, guard6, hop,
    icmp::{self, Quote},
    isolation,
    l2::{self, L2},
    log,
    maps::{JUMP, iface_role, scratch_or},
    nat::{self, New},
    packet::{Frag, Icmp, Packet},
    parse::{ETH_HLEN, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, l3_proto, parse},
    stats::{count, verdict},
};

#[inline(always)]
pub(crate) fn handle(ctx: &TcContext) -> i32 {
    // IPv6 leaves before its port is looked up: `from_container6` looks it up itself.
    if l3_proto(ctx, ETH_HLEN) == Some(ETH_P_IPV6) {
        // SAFETY: a tail call into `from_container6` with this program's context; it
        // returns only when the slot is empty, and then IPv6 is refused.
        unsafe { JUMP.tail_call(ctx, jump::FROM_CONTAINER6) };
        return verdict(ctx, Reason::DropIpv6);
    }
    let Some(mut l2) = l2::read(ctx) else {
        return verdict(ctx, Reason::DropMalformed);
    };
    match l2.ethertype {
        ETH_P_IP => {}
        ETH_P_ARP => return l2::arp(ctx, &mut l2),
        _ => return l2::other(ctx, &l2, Reason::DropUnbound),
    }
    let p = match parse(ctx, ETH_HLEN) {
        Ok(p) => p,
        Err(reason) => {
            if reason.is_drop() {
                datapath_log!(log::parse_failed(ctx, reason));
            }
            return verdict(ctx, reason);
        }
    };
    if let Err(reason) = l2::check_ip_source(ctx, &mut l2, p) {
        return verdict(ctx, reason);
    }
    ip(ctx, &l2, p)
}

/// `from_container6`: an IPv6 frame (the IPv4 program tail-calls it).
#[inline(always)]
pub(crate) fn handle6(ctx: &TcContext) -> i32 {
    let Some(mut l2) = l2::read(ctx) else {
        return verdict(ctx, Reason::DropMalformed);
    };
    // Each half behind a call of its own: together they would not fit the stack.
    match stage!(Ip6, guard6::admit(ctx, &mut l2)) {
        Ok(p) => ip(ctx, &l2, p),
        Err(v) => v,
    }
}

/// An IP packet of either family whose source checked out: tracked flows, then a new
/// flow's first packet.
#[inline(always)]
pub(crate) fn ip<A: Quote>(ctx: &TcContext, l2: &L2, p: &mut Packet<A>) -> i32 {
    if p.ttl <= 1 && l2.routed() {
        // It cannot be forwarded: the kernel answers time-exceeded, quoting it as sent.
        return verdict(ctx, Reason::TtlExpired);
    }
    if p.icmp == Icmp::Error
        && let Some(v) = icmp::handle_error(ctx, p, From::Container)
    {
        return v;
    }
    if p.frag == Frag::Later {
        if !frag::recall(p) {
            return stage!(A, unknown_fragment(ctx, l2, p));
        }
        count(ctx, Reason::FragmentTranslated);
    }
    let flow = match stage!(A, tracked(ctx, p)) {
        Ok(Some(flow)) => {
            if let Ok(to) = out::<A>() {
                datapath_log!(log::tracked(ctx, p, to));
            }
            flow
        }
        Ok(None) => match stage!(A, first(ctx, l2, p)) {
            Ok(Start::Flow) => None,
            // Its own stage too: a new flow's staging fills a frame of its own.
            Ok(Start::Track) => match stage!(A, track(ctx, p)) {
                Ok(()) => None,
                Err(reason) => return verdict(ctx, reason),
            },
            // Its own stage: the port search's callback adds to its stack.
            Ok(Start::Masquerade(src)) => match stage!(A, masquerade(ctx, p, src)) {
                Ok(()) => {
                    if let Ok(to) = out::<A>() {
                        datapath_log!(log::snat(ctx, p.proto, p.src_port, to.src_port));
                    }
                    None
                }
                Err(reason) => return verdict(ctx, reason),
            },
            Err(verdict) => return verdict,
        },
        Err(reason) => return verdict(ctx, reason),
    };
    stage!(A, translate(ctx, p, flow))
}

/// The tuple the packet leaves with, between the stages that find it and `translate`:
/// in scratch space, so no stage's frame (nor the caller's) holds a 40-byte IPv6 tuple
/// across a call.
#[inline(always)]
fn out<A: Family>() -> Result<&'static mut CtKey<A>, Reason> {
    scratch_or(Reason::DropMalformed).map(|s| &mut A::work(s).out)
}

/// A tracked packet's flow entry (None inside: it has just moved tables), its tuple in
/// `out`; Ok(None): not tracked.
#[inline(always)]
#[expect(
    clippy::option_option,
    reason = "tracked, and the entry may have just moved tables: two distinct absences"
)]
fn tracked<A: Family>(
    ctx: &TcContext,
    p: &Packet<A>,
) -> Result<Option<Option<&'static mut CtValue<A>>>, Reason> {
    match ct::lookup(ctx, p, From::Container)? {
        Some(hit) => {
            *out()? = hit.to;
            Ok(Some(hit.entry))
        }
        None => Ok(None),
    }
}

/// Masquerade `p`'s new flow to `src`, its tuple in `out`.
#[inline(always)]
fn masquerade<A: Family>(ctx: &TcContext, p: &Packet<A>, src: A) -> Result<(), Reason> {
    *out()? = nat::snat(ctx, p, src)?;
    Ok(())
}

/// What a container's untracked packet starts.
enum Start<A> {
    /// A flow (hairpin, tracked egress), created; its tuple in `out`.
    Flow,
    /// Egress to masquerade with this source address (no flow yet).
    Masquerade(A),
    /// Egress to track untranslated (no flow yet).
    Track,
}

/// An untracked packet: what it starts (a new flow, a masquerade), or the verdict it
/// gets instead (switched, routed as it is, dropped, passed).
#[inline(always)]
fn first<A: Family>(ctx: &TcContext, l2: &L2, p: &Packet<A>) -> Result<Start<A>, i32> {
    let own = isolation::own_flags(l2, &p.src_ip);
    if !l2.routed() {
        return Err(isolation::switched(ctx, l2, &p.dst_ip, own)
            .unwrap_or_else(|| l2::forward_switched(ctx, l2, &p.dst_ip)));
    }
    let to_host = A::is_host(&p.dst_ip);
    if own & NET_INTERNAL != 0 && !to_host {
        // An internal network talks only within itself (and to its gateway, the host).
        return Err(verdict(ctx, Reason::DropInternal));
    }
    if to_host {
        let from = Network {
            bridge: l2.port.network,
            flags: own,
        };
        return match nat::hairpin(ctx, p, &from) {
            Ok(New::Flow(to)) => out()
                .map(|o| *o = to)
                .map(|()| Start::Flow)
                .map_err(|r| verdict(ctx, r)),
            Ok(New::None) => Err(verdict(ctx, Reason::Pass)),
            Err(reason) => Err(verdict(ctx, reason)),
        };
    }
    let (route, way) = match egress(ctx, l2, p, own) {
        Egress::Out(route, way) => (route, way),
        Egress::OtherNetwork => return Err(verdict(ctx, Reason::DropIsolation)),
        Egress::OwnNetwork => return Err(isolation::via_gateway(ctx, own, Reason::Pass)),
        Egress::Elsewhere => return Err(verdict(ctx, Reason::Pass)),
    };
    if !fwd::fits(ctx, p, route.ifindex) {
        return Err(too_big(ctx, p));
    }
    match way {
        Way::Masquerade => Ok(Start::Masquerade(route.src_ip)),
        Way::Routed if A::ROUTED_OPEN => Err(fwd::send(ctx, p, &Next::route(&route))),
        // A routed network open only at its published ports: its egress is tracked, so
        // the inbound policy lets the replies in.
        Way::Track | Way::Routed => Ok(Start::Track),
    }
}

/// Track `p`'s new flow untranslated, its tuple in `out` (the route is looked up again
/// for it by `translate`).
#[inline(always)]
fn track<A: Family>(ctx: &TcContext, p: &Packet<A>) -> Result<(), Reason> {
    *out()? = nat::track(ctx, p, From::Container)?;
    Ok(())
}

/// A later fragment whose first was not translated here: its ports are unknown, so it
/// passes only where it would not have been translated.
#[inline(always)]
fn unknown_fragment<A: Family>(ctx: &TcContext, l2: &L2, p: &Packet<A>) -> i32 {
    let own = isolation::own_flags(l2, &p.src_ip);
    if !l2.routed() {
        return isolation::switched(ctx, l2, &p.dst_ip, own)
            .unwrap_or_else(|| verdict(ctx, Reason::FragmentPassed));
    }
    if own & NET_INTERNAL != 0 && !A::is_host(&p.dst_ip) {
        return verdict(ctx, Reason::DropInternal);
    }
    match egress(ctx, l2, p, own) {
        Egress::Out(_, Way::Masquerade) => verdict(ctx, Reason::DropFragment),
        Egress::OtherNetwork => verdict(ctx, Reason::DropIsolation),
        Egress::OwnNetwork => isolation::via_gateway(ctx, own, Reason::FragmentPassed),
        Egress::Out(..) | Egress::Elsewhere => verdict(ctx, Reason::FragmentPassed),
    }
}

/// Send the packet as `out` (its flow's entry, when known, remembers where). A packet
/// too big for the device it would leave by is left untranslated, to the kernel, which
/// answers it.
#[inline(always)]
fn translate<A: Family>(
    ctx: &TcContext,
    p: &mut Packet<A>,
    flow: Option<&'static mut CtValue<A>>,
) -> i32 {
    let Ok(to) = out::<A>() else {
        return verdict(ctx, Reason::DropMalformed);
    };
    let to: &CtKey<A> = to;
    let Some((next, mtu)) = hop::next(ctx, to, flow) else {
        return verdict(ctx, Reason::DropNoRoute);
    };
    if !next.peer && !fwd::fits_mtu(ctx, p, next.ifindex, mtu) {
        return too_big(ctx, p);
    }
    frag::remember(p);
    if nat::apply(ctx, p, to).is_err() {
        return verdict(ctx, Reason::DropRewrite);
    }
    fwd::send(ctx, p, &next)
}

/// An untranslated packet too big for its way out: with don't-fragment set the kernel
/// answers fragmentation-needed (path MTU discovery); bpfnet does not fragment.
#[inline(always)]
fn too_big<A: Addr>(ctx: &TcContext, p: &Packet<A>) -> i32 {
    if p.df {
        verdict(ctx, Reason::FragNeeded)
    } else {
        verdict(ctx, Reason::DropMtu)
    }
}

/// Where a routed packet from a container is headed.
enum Egress<A> {
    /// Out of an uplink, by `Route`, the `Way` its network leaves.
    Out(Route<A>, Way),
    /// Into another managed network: isolation forbids it.
    OtherNetwork,
    /// To a neighbour in the sender's own network, by way of the host.
    OwnNetwork,
    /// The host's business (its own addresses, unmanaged devices, no route).
    Elsewhere,
}

/// How a network's traffic leaves by an uplink.
enum Way {
    /// Masqueraded with the source address the route prefers.
    Masquerade,
    /// A routed network: forwarded as it is.
    Routed,
    /// A network without masquerade: tracked, not translated, so the inbound policy lets
    /// only its replies in.
    Track,
}

/// Where routed packet `p` goes; `own`: the `NET_*` flags of the sender's network.
#[inline(always)]
fn egress<A: Family>(ctx: &TcContext, l2: &L2, p: &Packet<A>, own: u32) -> Egress<A> {
    let net = l2.network();
    let other = |n: u32| net.is_some_and(|mine| mine != n);
    if A::network_of(&p.dst_ip).is_some_and(|n| other(n.bridge))
        || A::endpoint(&p.dst_ip).is_some_and(|ep| other(ep.network))
    {
        return Egress::OtherNetwork;
    }
    let mine = |n: u32| net.is_some_and(|mine| mine == n);
    if !A::is_host(&p.dst_ip)
        && (A::network_of(&p.dst_ip).is_some_and(|n| mine(n.bridge))
            || A::endpoint(&p.dst_ip).is_some_and(|ep| mine(ep.network)))
    {
        return Egress::OwnNetwork;
    }
    let cross = cluster::crossing(&p.src_ip, &p.dst_ip);
    if cross == Some(false) {
        return Egress::OtherNetwork;
    }
    // Within the cluster the source stays the container's: no source is asked for (a
    // tunnel prefix's route is then the tunnel's own, whatever the host's table holds).
    let Some(r) = fib::route(ctx, &ct::key_of(p), cross != Some(true)) else {
        return Egress::Elsewhere;
    };
    if cross == Some(true) {
        // Within the cluster network: untranslated, tracked so its replies come in.
        return Egress::Out(r, Way::Track);
    }
    let role = iface_role(r.ifindex);
    if role & IFACE_BRIDGE != 0 && other(r.ifindex) {
        Egress::OtherNetwork
    } else if role & IFACE_UPLINK != 0 && !r.src_ip.same(&A::ZERO) {
        let way = if own & NET_ROUTED != 0 {
            Way::Routed
        } else if own & NET_NO_MASQ != 0 {
            Way::Track
        } else {
            Way::Masquerade
        };
        Egress::Out(r, way)
    } else {
        Egress::Elsewhere
    }
}
