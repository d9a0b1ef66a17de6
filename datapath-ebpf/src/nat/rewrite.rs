//! Translation: address and port rewrites, with their checksum updates.
use aya_ebpf::programs::TcContext;
use common::{Addr, CtKey, PROTO_TCP, PROTO_UDP, Reason};

use crate::{
    csum,
    family::Family,
    hdr::{ICMP_ID, L4_DST_PORT},
    parse::{Frag, Icmp, Packet, write},
};

/// Where the source (or destination) port lives; None when the packet has none here.
#[inline(always)]
fn port_off<A: Addr>(p: &Packet<A>, src: bool) -> Option<usize> {
    if p.frag == Frag::Later {
        return None;
    }
    match (p.proto, p.icmp) {
        (_, Icmp::EchoRequest | Icmp::EchoReply) if p.proto == A::PROTO_ICMP => {
            Some(p.l4_off() + ICMP_ID)
        }
        (PROTO_TCP | PROTO_UDP, _) => Some(p.l4_off() + if src { 0 } else { L4_DST_PORT }),
        _ => None,
    }
}

#[inline(always)]
fn store_port<A: Addr>(ctx: &TcContext, p: &Packet<A>, src: bool, port: u16) -> Result<(), Reason> {
    match port_off(p, src) {
        Some(off) => write(ctx, off, port).ok_or(Reason::DropRewrite),
        None => Ok(()),
    }
}

/// Rewrite the destination to `ip:port` (network order).
#[inline(always)]
pub(crate) fn rewrite_dst<A: Family>(
    ctx: &TcContext,
    p: &mut Packet<A>,
    ip: A,
    port: u16,
) -> Result<(), Reason> {
    csum::update_l4(ctx, p, &p.dst_ip, &ip, p.dst_port, port)?;
    if !ip.same(&p.dst_ip) {
        A::set_addr(ctx, p, false, &p.dst_ip, &ip)?;
    }
    if port != p.dst_port {
        store_port(ctx, p, false, port)?;
    }
    p.dst_ip = ip;
    p.dst_port = port;
    Ok(())
}

/// Rewrite the source to `ip:port` (network order).
#[inline(always)]
pub(crate) fn rewrite_src<A: Family>(
    ctx: &TcContext,
    p: &mut Packet<A>,
    ip: A,
    port: u16,
) -> Result<(), Reason> {
    csum::update_l4(ctx, p, &p.src_ip, &ip, p.src_port, port)?;
    if !ip.same(&p.src_ip) {
        A::set_addr(ctx, p, true, &p.src_ip, &ip)?;
    }
    if port != p.src_port {
        store_port(ctx, p, true, port)?;
    }
    p.src_ip = ip;
    p.src_port = port;
    Ok(())
}

/// Make the packet leave with tuple `to`.
#[inline(always)]
pub(crate) fn apply<A: Family>(
    ctx: &TcContext,
    p: &mut Packet<A>,
    to: &CtKey<A>,
) -> Result<(), Reason> {
    if !to.src_ip.same(&p.src_ip) || to.src_port != p.src_port {
        rewrite_src(ctx, p, to.src_ip, to.src_port)?;
    }
    if !to.dst_ip.same(&p.dst_ip) || to.dst_port != p.dst_port {
        rewrite_dst(ctx, p, to.dst_ip, to.dst_port)?;
    }
    Ok(())
}
