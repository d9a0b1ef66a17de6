//! Translation: address and port rewrites, with their checksum updates.
use aya_ebpf::programs::TcContext;
use common::{CtKey, PROTO_ICMP, PROTO_TCP, PROTO_UDP, Reason};

use crate::{
    csum,
    parse::{Frag, Icmp, Packet, write},
};

/// The IPv4 addresses' offsets in the header.
const IP_SRC: usize = 12;
const IP_DST: usize = 16;

/// Where the source (or destination) port lives; None when the packet has none here.
#[inline(always)]
fn port_off(p: &Packet, src: bool) -> Option<usize> {
    if p.frag == Frag::Later {
        return None;
    }
    match (p.proto, p.icmp) {
        (PROTO_ICMP, Icmp::EchoRequest | Icmp::EchoReply) => Some(p.l4_off() + 4),
        (PROTO_TCP | PROTO_UDP, _) => Some(p.l4_off() + if src { 0 } else { 2 }),
        _ => None,
    }
}

#[inline(always)]
fn store_port(ctx: &TcContext, p: &Packet, src: bool, port: u16) -> Result<(), Reason> {
    match port_off(p, src) {
        Some(off) => write(ctx, off, port).ok_or(Reason::DropRewrite),
        None => Ok(()),
    }
}

/// Rewrite the destination to `ip:port` (network order).
#[inline(always)]
pub fn rewrite_dst(ctx: &TcContext, p: &mut Packet, ip: u32, port: u16) -> Result<(), Reason> {
    csum::update_l4(ctx, p, p.dst_ip, ip, p.dst_port, port)?;
    if ip != p.dst_ip {
        csum::set_ip_addr(ctx, p, IP_DST, p.dst_ip, ip)?;
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
pub fn rewrite_src(ctx: &TcContext, p: &mut Packet, ip: u32, port: u16) -> Result<(), Reason> {
    csum::update_l4(ctx, p, p.src_ip, ip, p.src_port, port)?;
    if ip != p.src_ip {
        csum::set_ip_addr(ctx, p, IP_SRC, p.src_ip, ip)?;
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
pub fn apply(ctx: &TcContext, p: &mut Packet, to: &CtKey) -> Result<(), Reason> {
    if to.src_ip != p.src_ip || to.src_port != p.src_port {
        rewrite_src(ctx, p, to.src_ip, to.src_port)?;
    }
    if to.dst_ip != p.dst_ip || to.dst_port != p.dst_port {
        rewrite_dst(ctx, p, to.dst_ip, to.dst_port)?;
    }
    Ok(())
}
