//! Incremental checksum updates for an address and port rewrite (RFC 1624, done by the
//! kernel helpers so CHECKSUM_PARTIAL/GSO packets stay right).
use aya_ebpf::{
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR},
    programs::TcContext,
};
use common::{PROTO_ICMP, PROTO_TCP, PROTO_UDP, Reason};

use crate::parse::{Frag, Packet};

/// The IPv4 header checksum's offset in the header.
pub const IP_CSUM: usize = 10;

/// The L4 checksum to fix: offset, extra helper flags, whether it covers the IP
/// addresses (pseudo-header). None: a later fragment or a UDP datagram without one.
#[inline(always)]
fn l4_csum(ctx: &TcContext, p: &Packet) -> Result<Option<(usize, u64, bool)>, Reason> {
    if p.frag == Frag::Later {
        return Ok(None);
    }
    match p.proto {
        PROTO_TCP => Ok(Some((p.l4_off + 16, 0, true))),
        PROTO_ICMP => Ok(Some((p.l4_off + 2, 0, false))),
        PROTO_UDP => {
            let off = p.l4_off + 6;
            let csum: u16 = ctx.load(off).map_err(|_| Reason::DropRewrite)?;
            // UDP checksum 0 means "none": keep it 0, and never let an update produce 0.
            Ok((csum != 0).then_some((off, u64::from(BPF_F_MARK_MANGLED_0), true)))
        }
        // Other protocols: only the IPv4 header's sum covers what NAT changes.
        _ => Ok(None),
    }
}

/// Fix the L3 and L4 checksums for an address change `old_ip → new_ip` and a port change
/// `old_port → new_port` (all raw network-order values). Call before storing the bytes.
#[inline(always)]
pub fn update(
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
    if old_ip != new_ip {
        ctx.l3_csum_replace(p.l3_off + IP_CSUM, u64::from(old_ip), u64::from(new_ip), 4)
            .map_err(|_| Reason::DropRewrite)?;
    }
    Ok(())
}
