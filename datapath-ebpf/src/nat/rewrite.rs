//! Translation: address and port rewrites, with their checksum updates.
use aya_ebpf::{bindings::BPF_F_MARK_MANGLED_0, programs::TcContext};
use common::{Addr, Be16, CtKey, PROTO_TCP, PROTO_UDP, Reason};

use crate::{
    family::Family,
    hdr::{ICMP_CSUM, ICMP_ID, L4_DST_PORT, TCP_CSUM, UDP_CSUM},
    packet::{Frag, Icmp, Packet},
    parse::{read, write},
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
fn store_port<A: Addr>(
    ctx: &TcContext,
    p: &Packet<A>,
    src: bool,
    port: Be16,
) -> Result<(), Reason> {
    match port_off(p, src) {
        Some(off) => write(ctx, off, port).ok_or(Reason::DropRewrite),
        None => Ok(()),
    }
}

/// The L4 checksum to fix: offset, extra helper flags, whether it covers the IP
/// addresses (pseudo-header). None: a later fragment or a UDP datagram without one.
#[inline(always)]
fn l4_csum<A: Family>(
    ctx: &TcContext,
    p: &Packet<A>,
) -> Result<Option<(usize, u64, bool)>, Reason> {
    if p.frag == Frag::Later {
        return Ok(None);
    }
    match p.proto {
        PROTO_TCP => Ok(Some((p.l4_off() + TCP_CSUM, 0, true))),
        // ICMPv6's sum covers the pseudo-header, ICMP's does not.
        proto if proto == A::PROTO_ICMP => Ok(Some((p.l4_off() + ICMP_CSUM, 0, A::ICMP_PSEUDO))),
        PROTO_UDP => {
            let off = p.l4_off() + UDP_CSUM;
            let csum: u16 = read(ctx, off).ok_or(Reason::DropRewrite)?;
            // UDP checksum 0 means "none": keep it 0, and never let an update produce 0.
            Ok((csum != 0).then_some((off, u64::from(BPF_F_MARK_MANGLED_0), true)))
        }
        // Other protocols: only the IPv4 header's sum covers what NAT changes (nothing,
        // in IPv6).
        _ => Ok(None),
    }
}

/// Fix the L4 checksum for an address change `old_ip → new_ip` and a port change
/// `old_port → new_port` (all raw network-order values). Call before storing the bytes;
/// the IPv4 header is `Family::set_addr`'s.
#[inline(always)]
fn update_l4<A: Family>(
    ctx: &TcContext,
    p: &Packet<A>,
    old_ip: &A,
    new_ip: &A,
    old_port: Be16,
    new_port: Be16,
) -> Result<(), Reason> {
    if let Some((off, extra, pseudo)) = l4_csum(ctx, p)? {
        if pseudo && !old_ip.same(new_ip) {
            A::l4_addr_csum(ctx, off, old_ip, new_ip, extra)?;
        }
        if old_port != new_port {
            ctx.l4_csum_replace(
                off,
                u64::from(old_port.raw()),
                u64::from(new_port.raw()),
                extra | 2,
            )
            .map_err(|_| Reason::DropRewrite)?;
        }
    }
    Ok(())
}

/// Rewrite the destination to `ip:port`.
#[inline(always)]
pub(crate) fn rewrite_dst<A: Family>(
    ctx: &TcContext,
    p: &mut Packet<A>,
    ip: A,
    port: Be16,
) -> Result<(), Reason> {
    update_l4(ctx, p, &p.dst_ip, &ip, p.dst_port, port)?;
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

/// Rewrite the source to `ip:port`.
#[inline(always)]
pub(crate) fn rewrite_src<A: Family>(
    ctx: &TcContext,
    p: &mut Packet<A>,
    ip: A,
    port: Be16,
) -> Result<(), Reason> {
    update_l4(ctx, p, &p.src_ip, &ip, p.src_port, port)?;
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
