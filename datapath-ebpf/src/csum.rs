//! Incremental checksum updates (RFC 1624). The L4 checksum goes through the kernel
//! helpers, which keep CHECKSUM_PARTIAL/COMPLETE and GSO packets right; the IPv4 header
//! checksum, which no offload touches, is computed here on the raw words as stored
//! (one's-complement sums do not depend on byte order), and written in place with the
//! field it covers: a header that stays valid leaves `skb->csum` valid too.
use aya_ebpf::{
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR},
    programs::TcContext,
};
use common::{PROTO_ICMP, PROTO_TCP, PROTO_UDP, Reason};

use crate::parse::{Frag, Packet, read, write};

/// The IPv4 header checksum's offset in the header.
pub const IP_CSUM: usize = 10;

/// Fold a 32-bit one's-complement sum and complement it.
#[inline(always)]
pub fn fold(mut s: u32) -> u16 {
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    !(s as u16)
}

/// Checksum `check` after the 16-bit word it covers changes from `old` to `new` (all
/// raw, as stored).
#[inline(always)]
pub fn replace16(check: u16, old: u16, new: u16) -> u16 {
    fold(u32::from(!check) + u32::from(!old) + u32::from(new))
}

/// Checksum `check` after the 32-bit field it covers changes from `old` to `new`.
#[inline(always)]
pub fn replace32(check: u16, old: u32, new: u32) -> u16 {
    let s = u32::from(!check)
        + u32::from(!(old as u16))
        + u32::from(!((old >> 16) as u16))
        + (new & 0xffff)
        + (new >> 16);
    fold(s)
}

/// Write IPv4 address `new` over `old` at `field` (12: source, 16: destination) of
/// `p`'s header, with the header checksum.
#[inline(always)]
pub fn set_ip_addr(
    ctx: &TcContext,
    p: &Packet,
    field: usize,
    old: u32,
    new: u32,
) -> Result<(), Reason> {
    let check: u16 = read(ctx, p.l3_off() + IP_CSUM).ok_or(Reason::DropRewrite)?;
    write(ctx, p.l3_off() + field, new).ok_or(Reason::DropRewrite)?;
    write(ctx, p.l3_off() + IP_CSUM, replace32(check, old, new)).ok_or(Reason::DropRewrite)
}

/// The L4 checksum to fix: offset, extra helper flags, whether it covers the IP
/// addresses (pseudo-header). None: a later fragment or a UDP datagram without one.
#[inline(always)]
fn l4_csum(ctx: &TcContext, p: &Packet) -> Result<Option<(usize, u64, bool)>, Reason> {
    if p.frag == Frag::Later {
        return Ok(None);
    }
    match p.proto {
        PROTO_TCP => Ok(Some((p.l4_off() + 16, 0, true))),
        PROTO_ICMP => Ok(Some((p.l4_off() + 2, 0, false))),
        PROTO_UDP => {
            let off = p.l4_off() + 6;
            let csum: u16 = read(ctx, off).ok_or(Reason::DropRewrite)?;
            // UDP checksum 0 means "none": keep it 0, and never let an update produce 0.
            Ok((csum != 0).then_some((off, u64::from(BPF_F_MARK_MANGLED_0), true)))
        }
        // Other protocols: only the IPv4 header's sum covers what NAT changes.
        _ => Ok(None),
    }
}

/// Fix the L4 checksum for an address change `old_ip → new_ip` and a port change
/// `old_port → new_port` (all raw network-order values). Call before storing the bytes;
/// the IPv4 header is `set_ip_addr`'s.
#[inline(always)]
pub fn update_l4(
    ctx: &TcContext,
    p: &Packet,
    old_ip: u32,
    new_ip: u32,
    old_port: u16,
    new_port: u16,
) -> Result<(), Reason> {
    if let Some((off, extra, pseudo)) = l4_csum(ctx, p)? {
        if pseudo && old_ip != new_ip {
            let flags = u64::from(BPF_F_PSEUDO_HDR) | extra | 4;
            ctx.l4_csum_replace(off, u64::from(old_ip), u64::from(new_ip), flags)
                .map_err(|_| Reason::DropRewrite)?;
        }
        if old_port != new_port {
            ctx.l4_csum_replace(off, u64::from(old_port), u64::from(new_port), extra | 2)
                .map_err(|_| Reason::DropRewrite)?;
        }
    }
    Ok(())
}
