//! IPv6 header parsing, IPv4's being `parse.rs`: the header chain walked to its
//! upper-layer header (`walk`) and the packet summary made of it (`parse6`, `packet`).
//! The chain is walked whole, as RA-Guard evasion hides the upper layer behind
//! extension headers or in fragments (RFC 7113): a first fragment must hold the whole
//! chain (RFC 7112), and a chain longer than bpfnet walks is refused, not guessed at.
use aya_ebpf::programs::TcContext;
use common::{Be16, Ip6, Reason};

use crate::{
    hdr::{IPV6_HLEN, Ipv6Hdr},
    maps::endpoint6,
    packet::{Frag, Icmp, Packet},
    parse::{self, ETH_P_IPV6, Frame as _, l3_proto, read, read_pulled},
};

const NEXT_HOP_BY_HOP: u8 = 0;
const NEXT_ROUTING: u8 = 43;
const NEXT_FRAGMENT: u8 = 44;
const NEXT_DEST_OPTS: u8 = 60;
pub(crate) const NEXT_ICMPV6: u8 = 58;

/// Extension headers walked before the upper-layer header; more is refused.
const MAX_EXT_HEADERS: usize = 6;

/// `ICMPv6` types of neighbour discovery (RFC 4861).
pub(crate) const ICMPV6_ROUTER_SOLICIT: u8 = 133;
pub(crate) const ICMPV6_ROUTER_ADVERT: u8 = 134;
pub(crate) const ICMPV6_NEIGH_SOLICIT: u8 = 135;
pub(crate) const ICMPV6_NEIGH_ADVERT: u8 = 136;
pub(crate) const ICMPV6_REDIRECT: u8 = 137;

/// What an IPv6 header chain says, walked to its upper-layer header.
pub(crate) struct Chain {
    pub src: Ip6,
    pub dst: Ip6,
    pub hop_limit: u8,
    /// Where the IPv6 payload ends in the frame.
    pub end: usize,
    /// The upper-layer protocol, and where its header starts.
    pub next: u8,
    pub l4_off: usize,
    /// A fragment header was walked (`Frag::Later`: the upper layer is not here), and
    /// its identification (network order).
    pub frag: Frag,
    pub frag_id: u32,
    /// `ICMPv6` type of a message whose header is here (0 otherwise).
    pub icmp: u8,
}

/// The summary of an IPv6 packet off an uplink for the family-generic path, or why it
/// is dropped (`Pass`: not IPv6). A neighbour advertisement for a local endpoint's
/// address is `drop-neigh-spoof`: from outside it would take the endpoint's traffic.
#[inline(always)]
pub(crate) fn parse6(ctx: &TcContext, l3_off: usize) -> Result<&'static mut Packet<Ip6>, Reason> {
    if l3_proto(ctx, l3_off) != Some(ETH_P_IPV6) {
        return Err(Reason::Pass);
    }
    let chain = walk(ctx, l3_off)?;
    if chain.icmp == ICMPV6_NEIGH_ADVERT {
        // Type, code, checksum, flags and reserved: 8 bytes; the target: 16.
        let target = read::<Ip6, _>(ctx, chain.l4_off + 8).ok_or(Reason::DropMalformed)?;
        if endpoint6(&target).is_some() {
            return Err(Reason::DropNeighSpoof);
        }
    }
    packet(ctx, l3_off, &chain)
}

/// The summary of the packet whose chain is `c`, its L4 header read.
#[inline(always)]
pub(crate) fn packet(
    ctx: &TcContext,
    l3_off: usize,
    c: &Chain,
) -> Result<&'static mut Packet<Ip6>, Reason> {
    // The summary keeps offsets in a byte: a longer chain of extension headers is not
    // translated. A chain that runs past the payload (into the frame's padding) is
    // malformed: its upper layer is not the packet's.
    if c.l4_off > usize::from(u8::MAX) || c.l4_off > c.end {
        return Err(Reason::DropMalformed);
    }
    let p = &mut crate::maps::scratch_or(Reason::DropMalformed)?.v6.pkt;
    *p = Packet {
        l3: l3_off as u8,
        l4: c.l4_off as u8,
        ip_end: c.end as u32,
        src_ip: c.src,
        dst_ip: c.dst,
        proto: c.next,
        src_port: Be16::ZERO,
        dst_port: Be16::ZERO,
        tcp_flags: 0,
        tcp_seq: 0,
        tcp_ack: 0,
        tcp_win: 0,
        tcp_hlen: 0,
        payload_len: 0,
        ip_id: 0,
        frag_id: c.frag_id,
        ttl: c.hop_limit,
        df: true,
        frag: c.frag,
        icmp: Icmp::No,
    };
    if c.frag != Frag::Later {
        parse::l4(ctx, p, c.end - c.l4_off)?;
    }
    Ok(p)
}

/// Walk the header chain from `l3_off` to the upper-layer header.
#[inline(always)]
pub(crate) fn walk(ctx: &TcContext, l3_off: usize) -> Result<Chain, Reason> {
    let Some(fixed) = read_pulled::<Ipv6Hdr, _>(ctx, l3_off) else {
        return Err(Reason::DropMalformed);
    };
    if fixed.ver >> 4 != 6 {
        return Err(Reason::DropMalformed);
    }
    let payload = usize::from(u16::from_be(fixed.payload_len));
    let frame = (ctx.len() as usize).saturating_sub(l3_off + IPV6_HLEN);
    // Payload length 0 is how BIG TCP GSO packets say "see skb->len"; nothing else may.
    let payload = if payload == 0 && ctx.is_gso() {
        frame
    } else if payload == 0 || payload > frame {
        return Err(Reason::DropMalformed);
    } else {
        payload
    };
    if matches!(
        fixed.next,
        NEXT_HOP_BY_HOP | NEXT_ROUTING | NEXT_FRAGMENT | NEXT_DEST_OPTS
    ) {
        // The chain is read in place below: make its headers linear first, as far as a
        // chain the summary can hold reaches (pulling in the loop would leave the
        // verifier offsets it cannot follow).
        let want = (l3_off + usize::from(u8::MAX) + 8).min(ctx.len() as usize);
        ctx.pull(want as u32);
    }
    let mut c = Chain {
        src: fixed.src,
        dst: fixed.dst,
        hop_limit: fixed.hop_limit,
        end: l3_off + IPV6_HLEN + payload,
        next: fixed.next,
        l4_off: l3_off + IPV6_HLEN,
        frag: Frag::None,
        frag_id: 0,
        icmp: 0,
    };
    // Each extension header, then the upper-layer header: one more step than headers.
    for _ in 0..=MAX_EXT_HEADERS {
        let off = c.l4_off;
        match c.next {
            NEXT_HOP_BY_HOP | NEXT_ROUTING | NEXT_DEST_OPTS => {
                let Some([nh, len]) = read::<[u8; 2], _>(ctx, off) else {
                    return Err(Reason::DropMalformed);
                };
                c.next = nh;
                c.l4_off = off + (usize::from(len) + 1) * 8;
            }
            NEXT_FRAGMENT => {
                let Some([nh, _, hi, lo, id @ ..]) = read::<[u8; 8], _>(ctx, off) else {
                    return Err(Reason::DropMalformed);
                };
                c.next = nh;
                c.l4_off = off + 8;
                c.frag_id = u32::from_ne_bytes(id);
                if u16::from_be_bytes([hi, lo]) & 0xfff8 != 0 {
                    // A later fragment: its first fragment was judged with the chain.
                    c.frag = Frag::Later;
                    return Ok(c);
                }
                c.frag = Frag::First;
            }
            NEXT_ICMPV6 => {
                // Type and code: a one-byte read at a variable offset compiles to a
                // bounds check the verifier cannot follow (`ptr >= end`).
                let Some([kind, _code]) = read::<[u8; 2], _>(ctx, off) else {
                    // The chain does not end in this (first) fragment.
                    return Err(Reason::DropMalformed);
                };
                c.icmp = kind;
                return Ok(c);
            }
            // The upper layer (or no next header).
            _ => return Ok(c),
        }
    }
    Err(Reason::DropMalformed)
}
