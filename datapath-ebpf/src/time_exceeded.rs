//! ICMP errors bpfnet answers itself, as the router it is: time-exceeded for a packet
//! from outside whose TTL ends at the host. The packet becomes the error in place: room
//! for a new IPv4 and ICMP header is made in front of it, the rest cut after its header
//! and 8 bytes, and the frame goes back out of the device it came in by (with its MACs
//! swapped, on an Ethernet device). Errors are rate-limited as the kernel's are (see
//! `ratelimit`); a packet whose error is withheld is dropped.
use aya_ebpf::{
    bindings::bpf_adj_room_mode::BPF_ADJ_ROOM_MAC,
    helpers::generated::{bpf_redirect, bpf_skb_change_tail},
    programs::TcContext,
};
use common::{Addr, Ip6, PROTO_ICMP, PROTO_ICMPV6, Reason};

use crate::{
    csum::fold,
    hdr::{ICMP_CSUM, ICMP_HLEN, IP_CSUM, IP_HLEN, IPV6_HLEN, IcmpHdr, Ipv4Hdr, Ipv6Hdr},
    packet::Packet,
    parse::ICMP_TIME_EXCEEDED,
    ratelimit,
    stats::{count, verdict},
};

/// The new IPv4 header and the ICMP header in front of the quoted packet.
const ROOM: usize = IP_HLEN + ICMP_HLEN;
/// What an error quotes after the packet's header: the first 8 bytes of its payload.
const QUOTED_PAYLOAD: usize = 8;
/// The most an IPv4 header (with options) and the quoted payload can take.
const MAX_QUOTE: usize = 60 + QUOTED_PAYLOAD;

/// The one's-complement sum of `len` bytes (even, at most an ICMP header and a quote)
/// at `off`.
#[inline(always)]
fn sum(ctx: &TcContext, off: usize, len: usize) -> Result<u32, Reason> {
    let mut s = 0u32;
    for i in 0..usize::midpoint(ICMP_HLEN, MAX_QUOTE) {
        if 2 * i >= len {
            break;
        }
        let w: [u8; 2] = ctx.load(off + 2 * i).map_err(|_| Reason::DropRewrite)?;
        s += u32::from(u16::from_be_bytes(w));
    }
    Ok(s)
}

/// The verdict on a packet from outside whose TTL ends at the host, per family: a trait
/// of this module's, not a part of `Family`, so `family` (below) imports nothing of it.
pub(crate) trait TimeExceeded: Addr {
    fn time_exceeded(ctx: &TcContext, p: &Packet<Self>) -> i32;
}

impl TimeExceeded for u32 {
    #[inline(always)]
    fn time_exceeded(ctx: &TcContext, p: &Packet<Self>) -> i32 {
        answer(ctx, p)
    }
}

impl TimeExceeded for Ip6 {
    #[inline(always)]
    fn time_exceeded(ctx: &TcContext, p: &Packet<Self>) -> i32 {
        answer6(ctx, p)
    }
}

/// Turn `p` (untranslated, arrived from outside with its TTL ending here) into the
/// time-exceeded error its sender gets from the host, and send it back.
#[inline(always)]
fn answer(ctx: &TcContext, p: &Packet) -> i32 {
    if !ratelimit::allow(p.src_ip) {
        return verdict(ctx, Reason::DropIcmpRatelimit);
    }
    send_back(ctx, build(ctx, p))
}

/// `answer` for IPv6: `ICMPv6` "hop limit exceeded in transit", quoting the IPv6
/// header and the 8 bytes after it.
#[inline(always)]
fn answer6(ctx: &TcContext, p: &Packet<Ip6>) -> i32 {
    if !ratelimit::allow6(&p.src_ip) {
        return verdict(ctx, Reason::DropIcmpRatelimit);
    }
    send_back(ctx, build6(ctx, p))
}

/// Count and send back an error that `built`, out of the device it came in by.
#[inline(always)]
fn send_back(ctx: &TcContext, built: Result<(), Reason>) -> i32 {
    match built {
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

/// Make the packet (network header at `l3`) into the frame of an error about it: `room`
/// bytes for the new headers in front of its first `quote` bytes, the rest cut, and
/// the Ethernet addresses (when there are any) swapped, back to the neighbour it came
/// from. On an L3 device the room goes in front of the packet (its "MAC header" is
/// empty).
#[inline(always)]
fn turn_around(ctx: &TcContext, l3: usize, room: usize, quote: usize) -> Result<(), Reason> {
    let macs: [[u8; 6]; 2] = if l3 != 0 {
        ctx.load(0).map_err(|_| Reason::DropRewrite)?
    } else {
        [[0; 6]; 2]
    };
    ctx.adjust_room(room as i32, BPF_ADJ_ROOM_MAC, 0)
        .map_err(|_| Reason::DropRewrite)?;
    // SAFETY: helper on this program's context; the new length keeps the quoted part.
    if unsafe { bpf_skb_change_tail(ctx.skb.skb, (l3 + room + quote) as u32, 0) } != 0 {
        return Err(Reason::DropRewrite);
    }
    if l3 != 0 {
        ctx.store(0, &[macs[1], macs[0]], 0)
            .map_err(|_| Reason::DropRewrite)?;
    }
    Ok(())
}

#[inline(always)]
fn build(ctx: &TcContext, p: &Packet) -> Result<(), Reason> {
    let l3 = p.l3_off();
    let ihl = p.l4_off() - l3;
    let quote = (ihl + QUOTED_PAYLOAD).min(p.end() - l3);
    if !quote.is_multiple_of(2) || quote > MAX_QUOTE {
        return Err(Reason::DropTtl);
    }
    turn_around(ctx, l3, ROOM, quote)?;
    // Version 4, no options; precedence "internetwork control", as the kernel's.
    let ip = Ipv4Hdr {
        ver_ihl: 0x45,
        tos: 0xc0,
        tot_len: ((ROOM + quote) as u16).to_be(),
        id: 0,
        frag_off: 0,
        ttl: 64,
        proto: PROTO_ICMP,
        check: 0,
        // From the address the packet was sent to, back to its sender.
        src: p.dst_ip,
        dst: p.src_ip,
    };
    ctx.store(l3, &ip, 0).map_err(|_| Reason::DropRewrite)?;
    let ip_sum = fold(sum(ctx, l3, IP_HLEN)?);
    ctx.store(l3 + IP_CSUM, &ip_sum.to_be_bytes(), 0)
        .map_err(|_| Reason::DropRewrite)?;
    let l4 = l3 + IP_HLEN;
    ctx.store(l4, &time_exceeded_hdr(ICMP_TIME_EXCEEDED), 0)
        .map_err(|_| Reason::DropRewrite)?;
    let icmp_sum = fold(sum(ctx, l4, ICMP_HLEN + quote)?);
    ctx.store(l4 + ICMP_CSUM, &icmp_sum.to_be_bytes(), 0)
        .map_err(|_| Reason::DropRewrite)
}

/// An ICMP (`ICMPv6`) time-exceeded header of type `kind`, code 0, its checksum 0 until
/// computed.
#[inline(always)]
fn time_exceeded_hdr(kind: u8) -> IcmpHdr {
    IcmpHdr {
        kind,
        code: 0,
        check: 0,
        id: 0,
        seq: 0,
    }
}

/// The new IPv6 header and the `ICMPv6` header in front of the quoted packet.
const ROOM6: usize = IPV6_HLEN + ICMP_HLEN;
/// The quote: the IPv6 header and 8 bytes.
const QUOTE6: usize = IPV6_HLEN + QUOTED_PAYLOAD;
/// `ICMPv6` time exceeded, code 0: hop limit exceeded in transit.
const ICMPV6_TIME_EXCEEDED: u8 = 3;

#[inline(always)]
fn build6(ctx: &TcContext, p: &Packet<Ip6>) -> Result<(), Reason> {
    let l3 = p.l3_off();
    let quote = QUOTE6.min(p.end() - l3);
    if !quote.is_multiple_of(2) {
        return Err(Reason::DropTtl);
    }
    turn_around(ctx, l3, ROOM6, quote)?;
    let len = (ICMP_HLEN + quote) as u16;
    let ip = Ipv6Hdr {
        // Version 6, traffic class and flow label 0.
        ver: 0x60,
        class_flow: [0; 3],
        payload_len: len.to_be(),
        next: PROTO_ICMPV6,
        hop_limit: 64,
        // From the address the packet was sent to, back to its sender.
        src: p.dst_ip,
        dst: p.src_ip,
    };
    ctx.store(l3, &ip, 0).map_err(|_| Reason::DropRewrite)?;
    let l4 = l3 + IPV6_HLEN;
    ctx.store(l4, &time_exceeded_hdr(ICMPV6_TIME_EXCEEDED), 0)
        .map_err(|_| Reason::DropRewrite)?;
    // The pseudo-header (both addresses, the length, the next header), then the message.
    let mut pseudo = u32::from(len) + u32::from(PROTO_ICMPV6);
    for a in [p.dst_ip, p.src_ip] {
        for w in a.words {
            let b = w.to_ne_bytes();
            pseudo += u32::from(u16::from_be_bytes([b[0], b[1]]));
            pseudo += u32::from(u16::from_be_bytes([b[2], b[3]]));
        }
    }
    let total = pseudo + sum(ctx, l4, ICMP_HLEN + quote)?;
    ctx.store(l4 + ICMP_CSUM, &fold(total).to_be_bytes(), 0)
        .map_err(|_| Reason::DropRewrite)
}
