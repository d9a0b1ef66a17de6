//! ICMP errors bpfnet answers itself, as the router it is: time-exceeded for a packet
//! from outside whose TTL ends at the host. The packet becomes the error in place: room
//! for a new IPv4 and ICMP header is made in front of it, the rest cut after its header
//! and 8 bytes, and the frame goes back out of the device it came in by (with its MACs
//! swapped, on an Ethernet device).
use aya_ebpf::{
    bindings::bpf_adj_room_mode::BPF_ADJ_ROOM_MAC,
    helpers::generated::{bpf_redirect, bpf_skb_change_tail},
    programs::TcContext,
};
use common::{PROTO_ICMP, Reason};

use crate::{
    csum::fold,
    parse::{ICMP_TIME_EXCEEDED, Packet},
    stats::{count, verdict},
};

/// The new IPv4 header and the ICMP header in front of the quoted packet.
const ROOM: usize = 20 + 8;
/// The most an IPv4 header and 8 bytes of payload can take.
const MAX_QUOTE: usize = 60 + 8;

/// The one's-complement sum of `len` bytes (even, at most an ICMP header and a quote)
/// at `off`.
#[inline(always)]
fn sum(ctx: &TcContext, off: usize, len: usize) -> Result<u32, Reason> {
    let mut s = 0u32;
    for i in 0..(8 + MAX_QUOTE) / 2 {
        if 2 * i >= len {
            break;
        }
        let w: [u8; 2] = ctx.load(off + 2 * i).map_err(|_| Reason::DropRewrite)?;
        s += u32::from(u16::from_be_bytes(w));
    }
    Ok(s)
}

/// Turn `p` (untranslated, arrived from outside with its TTL ending here) into the
/// time-exceeded error its sender gets from the host, and send it back.
#[inline(always)]
pub fn time_exceeded(ctx: &TcContext, p: &Packet) -> i32 {
    match build(ctx, p) {
        Ok(()) => {
            count(ctx, Reason::IcmpTimeExceeded);
            // SAFETY: ctx is the __sk_buff this program was called with.
            let ingress = unsafe { (*ctx.skb.skb).ingress_ifindex };
            // SAFETY: helper call with plain integer arguments.
            unsafe { bpf_redirect(ingress, 0) as i32 }
        }
        Err(reason) => verdict(ctx, reason),
    }
}

#[inline(always)]
fn build(ctx: &TcContext, p: &Packet) -> Result<(), Reason> {
    let l3 = p.l3_off();
    let ihl = p.l4_off() - l3;
    let quote = (ihl + 8).min(p.end() - l3);
    if !quote.is_multiple_of(2) || quote > MAX_QUOTE {
        return Err(Reason::DropTtl);
    }
    let macs: [[u8; 6]; 2] = if l3 != 0 {
        ctx.load(0).map_err(|_| Reason::DropRewrite)?
    } else {
        [[0; 6]; 2]
    };
    // On an L3 device the room goes in front of the packet (its "MAC header" is empty).
    ctx.adjust_room(ROOM as i32, BPF_ADJ_ROOM_MAC, 0)
        .map_err(|_| Reason::DropRewrite)?;
    // SAFETY: helper on this program's context; the new length keeps the quoted part.
    if unsafe { bpf_skb_change_tail(ctx.skb.skb, (l3 + ROOM + quote) as u32, 0) } != 0 {
        return Err(Reason::DropRewrite);
    }
    if l3 != 0 {
        // Back to the neighbour it came from.
        ctx.store(0, &[macs[1], macs[0]], 0)
            .map_err(|_| Reason::DropRewrite)?;
    }
    let tot = ((ROOM + quote) as u16).to_be_bytes();
    let mut ip = [0u8; 20];
    ip[..12].copy_from_slice(&[0x45, 0xc0, tot[0], tot[1], 0, 0, 0, 0, 64, PROTO_ICMP, 0, 0]);
    ip[12..16].copy_from_slice(&p.dst_ip.to_ne_bytes());
    ip[16..20].copy_from_slice(&p.src_ip.to_ne_bytes());
    ctx.store(l3, &ip, 0).map_err(|_| Reason::DropRewrite)?;
    let ip_sum = fold(sum(ctx, l3, 20)?);
    ctx.store(l3 + 10, &ip_sum.to_be_bytes(), 0)
        .map_err(|_| Reason::DropRewrite)?;
    let icmp = [ICMP_TIME_EXCEEDED, 0, 0, 0, 0, 0, 0, 0];
    ctx.store(l3 + 20, &icmp, 0)
        .map_err(|_| Reason::DropRewrite)?;
    let icmp_sum = fold(sum(ctx, l3 + 20, 8 + quote)?);
    ctx.store(l3 + 22, &icmp_sum.to_be_bytes(), 0)
        .map_err(|_| Reason::DropRewrite)
}
