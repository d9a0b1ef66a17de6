//! Address and port rewrites, with their checksum updates.
use aya_ebpf::programs::TcContext;

use crate::{
    csum,
    parse::{ETH_HLEN, Packet},
};

const IP_SRC_OFF: usize = ETH_HLEN + 12;
const IP_DST_OFF: usize = ETH_HLEN + 16;

/// Rewrite the destination to `ip:port` (network order).
#[inline(always)]
pub fn rewrite_dst(ctx: &TcContext, p: &mut Packet, ip: u32, port: u16) -> Result<(), ()> {
    csum::update(ctx, p, p.dst_ip, ip, p.dst_port, port)?;
    ctx.store(IP_DST_OFF, &ip, 0).map_err(|_| ())?;
    if port != p.dst_port {
        ctx.store(p.l4_off + 2, &port, 0).map_err(|_| ())?;
    }
    p.dst_ip = ip;
    p.dst_port = port;
    Ok(())
}

/// Rewrite the source to `ip:port` (network order).
#[inline(always)]
pub fn rewrite_src(ctx: &TcContext, p: &mut Packet, ip: u32, port: u16) -> Result<(), ()> {
    csum::update(ctx, p, p.src_ip, ip, p.src_port, port)?;
    ctx.store(IP_SRC_OFF, &ip, 0).map_err(|_| ())?;
    if port != p.src_port {
        ctx.store(p.l4_off, &port, 0).map_err(|_| ())?;
    }
    p.src_ip = ip;
    p.src_port = port;
    Ok(())
}
