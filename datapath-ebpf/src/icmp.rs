//! ICMP errors (destination unreachable, incl. fragmentation needed, and time exceeded)
//! about a translated flow: the embedded header is translated back the way its packet
//! was, and the outer header is pointed at the endpoint that sent that packet.
use aya_ebpf::programs::TcContext;
use common::{CtKey, PROTO_ICMP, PROTO_TCP, PROTO_UDP, Reason};

use crate::{
    ct, fwd, nat,
    parse::{ICMP_ECHO, ICMP_ECHOREPLY, Icmp, Ipv4Hdr, Packet},
    stats::{count, verdict},
};

/// Offsets inside the quoted packet.
struct Quoted {
    /// Its IPv4 header.
    ip_off: usize,
    /// Its ports (or echo identifier), None when they are not rewritten here.
    src_port_off: Option<usize>,
    dst_port_off: Option<usize>,
    tuple: CtKey,
}

#[inline(always)]
fn quoted(ctx: &TcContext, p: &Packet) -> Option<Quoted> {
    let ip_off = p.l4_off() + 8;
    let ip: Ipv4Hdr = ctx.load(ip_off).ok()?;
    let l4 = ip_off + ip.ihl();
    // The quoted header and its first 8 bytes must lie inside the error itself.
    if ip.ihl() < 20 || l4 + 8 > p.end() {
        return None;
    }
    let mut q = Quoted {
        ip_off,
        src_port_off: None,
        dst_port_off: None,
        tuple: CtKey {
            src_ip: ip.src,
            dst_ip: ip.dst,
            src_port: 0,
            dst_port: 0,
            proto: ip.proto,
            _pad: [0; 3],
        },
    };
    match ip.proto {
        PROTO_TCP | PROTO_UDP => {
            let ports: [u16; 2] = ctx.load(l4).ok()?;
            q.tuple.src_port = ports[0];
            q.tuple.dst_port = ports[1];
            q.src_port_off = Some(l4);
            q.dst_port_off = Some(l4 + 2);
        }
        PROTO_ICMP => {
            let kind: u8 = ctx.load(l4).ok()?;
            let id: u16 = ctx.load(l4 + 4).ok()?;
            match kind {
                ICMP_ECHO => {
                    q.tuple.src_port = id;
                    q.src_port_off = Some(l4 + 4);
                }
                ICMP_ECHOREPLY => {
                    q.tuple.dst_port = id;
                    q.dst_port_off = Some(l4 + 4);
                }
                _ => return None,
            }
        }
        _ => return None,
    }
    Some(q)
}

/// Replace a 4- or 2-byte field of the quoted packet, keeping the ICMP checksum right.
#[inline(always)]
fn replace(
    ctx: &TcContext,
    icmp_csum: usize,
    off: usize,
    old: u32,
    new: u32,
    size: u64,
) -> Result<(), Reason> {
    if old == new {
        return Ok(());
    }
    ctx.l4_csum_replace(icmp_csum, u64::from(old), u64::from(new), size)
        .map_err(|_| Reason::DropRewrite)?;
    if size == 4 {
        ctx.store(off, &new, 0).map_err(|_| Reason::DropRewrite)
    } else {
        ctx.store(off, &(new as u16), 0)
            .map_err(|_| Reason::DropRewrite)
    }
}

/// Replace an address of the quoted IPv4 header: its own checksum, the ICMP checksum
/// (which covers both the address and that checksum) and the bytes.
#[inline(always)]
fn replace_addr(
    ctx: &TcContext,
    icmp_csum: usize,
    ip_off: usize,
    off: usize,
    old: u32,
    new: u32,
) -> Result<(), Reason> {
    if old == new {
        return Ok(());
    }
    let csum_off = ip_off + 10;
    let old_csum: u16 = ctx.load(csum_off).map_err(|_| Reason::DropRewrite)?;
    ctx.l3_csum_replace(csum_off, u64::from(old), u64::from(new), 4)
        .map_err(|_| Reason::DropRewrite)?;
    let new_csum: u16 = ctx.load(csum_off).map_err(|_| Reason::DropRewrite)?;
    ctx.l4_csum_replace(icmp_csum, u64::from(old_csum), u64::from(new_csum), 2)
        .map_err(|_| Reason::DropRewrite)?;
    replace(ctx, icmp_csum, off, old, new, 4)
}

/// Who sent an ICMP error, which bounds what it may quote.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum From {
    /// A container: it can only report a packet it received itself.
    Container,
    /// The outside: the flow's peer or a router on its path.
    Uplink,
}

/// An ICMP error about a translated flow: translated and delivered. None: it quotes no
/// flow bpfnet translates (the caller decides). An error whose sender or addressee does
/// not match the packet it quotes is forged, and dropped.
#[inline(always)]
pub fn handle_error(ctx: &TcContext, p: &mut Packet, from: From) -> Option<i32> {
    if p.icmp != Icmp::Error {
        return None;
    }
    let q = quoted(ctx, p)?;
    // The quoted packet travelled as the reverse of the flow entry we need.
    let to = ct::peek(&q.tuple.reversed())?;
    // It is addressed to whoever sent the quoted packet, and a container reports only
    // packets that were sent to it.
    if p.dst_ip != q.tuple.src_ip || (from == From::Container && p.src_ip != q.tuple.dst_ip) {
        return Some(verdict(ctx, Reason::DropIcmpForged));
    }
    if rewrite(ctx, p, &q, &to.reversed()).is_err() {
        return Some(verdict(ctx, Reason::DropRewrite));
    }
    count(ctx, Reason::IcmpError);
    Some(fwd::to_destination(ctx, p, None))
}

#[inline(always)]
fn rewrite(ctx: &TcContext, p: &mut Packet, q: &Quoted, new: &CtKey) -> Result<(), Reason> {
    let icmp_csum = p.l4_off() + 2;
    let old = &q.tuple;
    replace_addr(
        ctx,
        icmp_csum,
        q.ip_off,
        q.ip_off + 12,
        old.src_ip,
        new.src_ip,
    )?;
    replace_addr(
        ctx,
        icmp_csum,
        q.ip_off,
        q.ip_off + 16,
        old.dst_ip,
        new.dst_ip,
    )?;
    if let Some(off) = q.src_port_off {
        replace(
            ctx,
            icmp_csum,
            off,
            u32::from(old.src_port),
            u32::from(new.src_port),
            2,
        )?;
    }
    if let Some(off) = q.dst_port_off {
        replace(
            ctx,
            icmp_csum,
            off,
            u32::from(old.dst_port),
            u32::from(new.dst_port),
            2,
        )?;
    }
    // The error goes to whoever sent the quoted packet; if the quoted packet's
    // destination itself answered, it now speaks with that destination's new address.
    if p.src_ip == old.dst_ip {
        nat::rewrite_src(ctx, p, new.dst_ip, p.src_port)?;
    }
    nat::rewrite_dst(ctx, p, new.src_ip, p.dst_port)
}
