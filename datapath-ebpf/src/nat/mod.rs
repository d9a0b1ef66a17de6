//! NAT: which flows are translated and how. DNAT of published ports, SNAT (masquerade)
//! of container egress with its port allocation, hairpin; the rewrite itself is in
//! `rewrite`. Only a flow's first packet creates a translation (a TCP SYN, a UDP
//! datagram, an ICMP echo request), never a tuple a host socket holds.
mod ports;
mod rewrite;

use aya_ebpf::programs::TcContext;
use common::{Backend, Be16, CT_DNAT, CT_SNAT, CtKey, NET_INTERNAL, Network, PublishedKey, Reason};
pub(crate) use rewrite::{apply, rewrite_dst, rewrite_src};

use crate::{
    ct::{self, From},
    family::Family,
    fib,
    hostsock::{self, Holder},
    packet::Packet,
    stats::{count, count_flow},
};

/// The backend of `ip:port`, bound to that address or to every host address.
#[inline(always)]
pub(crate) fn published<A: Family>(ip: A, port: Be16, proto: u8) -> Option<Backend<A>> {
    if proto == A::PROTO_ICMP {
        return None;
    }
    let mut key = PublishedKey::new(ip, port, proto);
    // SAFETY: plain lookups of Pod values, copied out.
    if let Some(b) = unsafe { A::published().get(key) } {
        return Some(*b);
    }
    if !A::is_host(&ip) {
        return None;
    }
    key.host_ip = A::ZERO;
    unsafe { A::published().get(key) }.copied()
}

/// `published` for a packet off a wire (uplink or container). Loopback addresses never
/// legitimately come from one: a frame to 127.x (`::1`) must not reach a loopback-bound
/// publish, which is for host sockets only.
#[inline(always)]
pub(crate) fn published_from_wire<A: Family>(p: &Packet<A>) -> Option<Backend<A>> {
    if A::is_loopback(&p.dst_ip) {
        return None;
    }
    published(p.dst_ip, p.dst_port, p.proto)
}

/// Whether `p` is for a port published at its destination's own address (on a routed
/// network, `PORT:[CONTAINER]:PORT` opens the container's port without translation).
#[inline(always)]
pub(crate) fn published_at_own<A: Family>(p: &Packet<A>) -> bool {
    if p.proto == A::PROTO_ICMP {
        return false;
    }
    let key = PublishedKey::new(A::ZERO, p.dst_port, p.proto);
    // SAFETY: plain lookup of a Pod value, copied out.
    unsafe { A::published().get(key) }.is_some_and(|b| b.ip.same(&p.dst_ip) && b.port == p.dst_port)
}

/// The outcome of asking NAT about a packet without a flow.
pub(crate) enum New<A = u32> {
    /// Translate to this tuple (a flow was created).
    Flow(CtKey<A>),
    /// Not NAT's: no publish covers it, or it is not a flow's first packet.
    None,
}

/// DNAT for a packet from outside to a published port. A packet that cannot start a
/// flow, or whose tuple a host connection holds, is not translated. A new flow is for
/// the caller to count (`dnat-new`).
#[inline(always)]
pub(crate) fn dnat<A: Family>(ctx: &TcContext, p: &Packet<A>) -> Result<New<A>, Reason> {
    let Some(b) = published_from_wire(p) else {
        return Ok(New::None);
    };
    if !p.may_start_flow() || A::network_of(&b.ip).is_some_and(|n| n.flags & NET_INTERNAL != 0) {
        // An internal network publishes nothing.
        return Ok(New::None);
    }
    if p.ttl <= 1 {
        // It could not be forwarded; no state for it.
        return Err(Reason::DropTtl);
    }
    let key = ct::key_of(p);
    if hostsock::holds(ctx, &key, Holder::Connection) || hostsock::answers_host_datagram(&key) {
        count(ctx, Reason::HostSocket);
        return Ok(New::None);
    }
    let mut to = key;
    to.dst_ip = b.ip;
    to.dst_port = b.port;
    let mut flags = CT_DNAT;
    if fib::node_of(&b.ip).is_some() {
        // A container on another node: it sees this node's address, which its node
        // lets in and which brings the answer back here to be translated.
        match fib::route(ctx, &to, true) {
            Some(r) if !r.src_ip.same(&A::ZERO) => to.src_ip = r.src_ip,
            _ => return Err(Reason::DropNoRoute),
        }
        flags |= CT_SNAT;
    }
    ct::stage(ctx, p, From::Uplink, flags, &to.dst_ip)?;
    ct::create(p, &to)?;
    // Counted by the caller, with the tuple: a reference to `to` here would be one to
    // the caller's stack, where it is returned, and the verifier refuses a stage
    // returning a stack pointer.
    Ok(New::Flow(to))
}

/// A container of network `from` reaching a published port on a host address. A
/// container reaching its own published port is also `SNATed` to the address its route
/// to itself prefers (its bridge's), or it would receive a packet from itself. Nothing
/// crosses an internal network's edge this way either.
#[inline(always)]
pub(crate) fn hairpin<A: Family>(
    ctx: &TcContext,
    p: &Packet<A>,
    from: &Network,
) -> Result<New<A>, Reason> {
    let Some(b) = published_from_wire(p) else {
        return Ok(New::None);
    };
    let to = A::network_of(&b.ip);
    let within = to.is_some_and(|n| n.bridge == from.bridge);
    let internal = from.flags | to.map_or(0, |n| n.flags);
    if !within && internal & NET_INTERNAL != 0 {
        return Err(Reason::DropInternal);
    }
    if !p.may_start_flow() {
        return Err(Reason::DropNoFlow);
    }
    let mut to = ct::key_of(p);
    to.dst_ip = b.ip;
    to.dst_port = b.port;
    let own = b.ip.same(&p.src_ip);
    let flags = if own {
        match fib::route(ctx, &to, true) {
            Some(r) if !r.src_ip.same(&A::ZERO) => to.src_ip = r.src_ip,
            _ => return Err(Reason::DropNoRoute),
        }
        CT_DNAT | CT_SNAT
    } else {
        CT_DNAT
    };
    ct::stage(ctx, p, From::Container, flags, &to.dst_ip)?;
    ct::create(p, &to)?;
    count_flow(ctx, Reason::DnatNew, &to);
    Ok(New::Flow(to))
}

/// Track the first packet of a flow that leaves untranslated (a container's in a network
/// without masquerade, or one let in from `from` the uplink), so its replies come in as
/// a tracked flow's.
#[inline(always)]
pub(crate) fn track<A: Family>(
    ctx: &TcContext,
    p: &Packet<A>,
    from: From,
) -> Result<CtKey<A>, Reason> {
    if !p.may_start_flow() {
        return Err(Reason::DropNoFlow);
    }
    let to = ct::key_of(p);
    ct::stage(ctx, p, from, 0, &p.dst_ip)?;
    ct::create(p, &to)?;
    Ok(to)
}

/// Masquerade the first packet of a container's egress flow to `src_ip`, with a source
/// port (or echo identifier) no other flow and no host socket holds toward that
/// destination: the flow's own when free, as MASQUERADE does.
#[inline(always)]
pub(crate) fn snat<A: Family>(
    ctx: &TcContext,
    p: &Packet<A>,
    src_ip: A,
) -> Result<CtKey<A>, Reason> {
    if !p.may_start_flow() {
        return Err(Reason::DropNoFlow);
    }
    let (to, repaired) = ports::allocate(ctx, p, src_ip)?;
    if !repaired {
        count_flow(ctx, Reason::SnatNew, &to);
    }
    Ok(to)
}
