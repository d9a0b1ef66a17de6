//! Incremental checksum updates (RFC 1624). The L4 checksum goes through the kernel
//! helpers, which keep `CHECKSUM_PARTIAL/COMPLETE` and GSO packets right; the IPv4 header
//! checksum, which no offload touches, is computed here on the raw words as stored
//! (one's-complement sums do not depend on byte order), and written in place with the
//! field it covers: a header that stays valid leaves `skb->csum` valid too.
use aya_ebpf::{bindings::BPF_F_MARK_MANGLED_0, programs::TcContext};
use common::{PROTO_TCP, PROTO_UDP, Reason};

use crate::{
    family::Family,
    hdr::{ICMP_CSUM, TCP_CSUM, UDP_CSUM},
    parse::{Frag, Packet, read},
};

/// Fold a 32-bit one's-complement sum and complement it.
#[inline(always)]
pub(crate) fn fold(mut s: u32) -> u16 {
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    !(s as u16)
}

/// Checksum `check` after the 16-bit word it covers changes from `old` to `new` (all
/// raw, as stored).
#[inline(always)]
pub(crate) fn replace16(check: u16, old: u16, new: u16) -> u16 {
    fold(u32::from(!check) + u32::from(!old) + u32::from(new))
}

/// Checksum `check` after the 32-bit field it covers changes from `old` to `new`.
#[inline(always)]
pub(crate) fn replace32(check: u16, old: u32, new: u32) -> u16 {
    let s = u32::from(!check)
        + u32::from(!(old as u16))
        + u32::from(!((old >> 16) as u16))
        + (new & 0xffff)
        + (new >> 16);
    fold(s)
}

/// The one's-complement sum (unfolded, as `bpf_csum_diff` gives it) that turns a sum
/// over the 16 bytes `old` into one over `new`: computed here, with no helper call.
#[inline(always)]
pub(crate) fn diff128(old: &[u32; 4], new: &[u32; 4]) -> u32 {
    let mut s = 0u64;
    for i in 0..4 {
        s += u64::from(!old[i]) + u64::from(new[i]);
    }
    s = (s & 0xffff_ffff) + (s >> 32);
    s = (s & 0xffff_ffff) + (s >> 32);
    s as u32
}

/// `BPF_F_IPV6` where the kernel has it (6.16 on), set by the loader: without it a
/// pseudo-header fix of an IPv6 packet whose `skb->csum` is `CHECKSUM_COMPLETE` also
/// moves `skb->csum`, which the address change (inside the IPv6 header it covers) had
/// already balanced, and the receiver logs a checksum fault.
#[unsafe(no_mangle)]
static CSUM_IPV6_FLAG: u64 = 0;

#[inline(always)]
pub(crate) fn ipv6_flag() -> u64 {
    // SAFETY: a read of a constant the loader may set before loading; volatile so the
    // compiler does not fold its initial value in.
    unsafe { core::ptr::read_volatile(&raw const CSUM_IPV6_FLAG) }
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
pub(crate) fn update_l4<A: Family>(
    ctx: &TcContext,
    p: &Packet<A>,
    old_ip: &A,
    new_ip: &A,
    old_port: u16,
    new_port: u16,
) -> Result<(), Reason> {
    if let Some((off, extra, pseudo)) = l4_csum(ctx, p)? {
        if pseudo && !old_ip.same(new_ip) {
            A::l4_addr_csum(ctx, off, old_ip, new_ip, extra)?;
        }
        if old_port != new_port {
            ctx.l4_csum_replace(off, u64::from(old_port), u64::from(new_port), extra | 2)
                .map_err(|_| Reason::DropRewrite)?;
        }
    }
    Ok(())
}
