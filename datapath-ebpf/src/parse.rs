//! Ethernet / IPv4 header parsing into a flat summary, for every IP protocol; the ports
//! (or ICMP echo identifier) and TCP sequence fields where the protocol has them.
use core::mem::size_of;

use aya_ebpf::{
    helpers::generated::{bpf_skb_load_bytes, bpf_skb_pull_data, bpf_xdp_load_bytes},
    programs::{TcContext, XdpContext},
};
use common::{
    Addr, Be16, PROTO_TCP, PROTO_UDP, Reason,
    monitor::{HOOK_TC, HOOK_XDP},
};

use crate::{
    hdr::Ipv4Hdr,
    packet::{Frag, Icmp, Packet},
};

pub(crate) const ETH_HLEN: usize = 14;
pub(crate) const ETH_P_IP: u16 = 0x0800;
pub(crate) const ETH_P_ARP: u16 = 0x0806;
/// An Ethernet ARP packet's sender hardware address (after the hardware and protocol
/// types, their lengths and the operation: 8 bytes) and sender protocol address.
pub(crate) const ARP_SHA: usize = ETH_HLEN + 8;
pub(crate) const ARP_SPA: usize = ARP_SHA + 6;
pub(crate) const ETH_P_IPV6: u16 = 0x86dd;
const IP_DF: u16 = 0x4000;
const IP_MF: u16 = 0x2000;
const IP_OFFSET: u16 = 0x1fff;
pub(crate) const ICMP_ECHOREPLY: u8 = 0;
pub(crate) const ICMP_DEST_UNREACH: u8 = 3;
pub(crate) const ICMP_ECHO: u8 = 8;
pub(crate) const ICMP_TIME_EXCEEDED: u8 = 11;
/// `ICMPv6` errors are types 1-4 (unreachable, too big, time exceeded, parameter problem).
pub(crate) const ICMPV6_ERROR_MAX: u8 = 4;
pub(crate) const ICMPV6_ECHO: u8 = 128;
pub(crate) const ICMPV6_ECHOREPLY: u8 = 129;

/// What the parser needs of a program's packet: TC's socket buffer or XDP's frame.
pub(crate) trait Frame {
    /// Where the linear data starts and ends.
    fn data(&self) -> usize;
    fn data_end(&self) -> usize;
    /// The whole packet's length (linear data and fragments).
    fn len(&self) -> u32;
    /// Make the first `n` bytes linear (a no-op where they always are).
    fn pull(&self, n: u32);
    /// Whether the packet is a GSO packet (several segments in one).
    fn is_gso(&self) -> bool;
    /// The network protocol of a frame without a link-layer header (host order).
    fn l3_proto(&self) -> u16;
    /// The interface the program runs on.
    fn ifindex(&self) -> u32;
    /// The program's `HOOK_*`.
    fn hook(&self) -> u8;
    /// Copy the packet's first `n` bytes to `dst` (a helper's copy: the bytes need not be
    /// linear); false when the packet is shorter.
    fn load(&self, dst: *mut u8, n: u32) -> bool;
}

impl Frame for TcContext {
    #[inline(always)]
    fn data(&self) -> usize {
        TcContext::data(self)
    }
    #[inline(always)]
    fn data_end(&self) -> usize {
        TcContext::data_end(self)
    }
    #[inline(always)]
    fn len(&self) -> u32 {
        TcContext::len(self)
    }
    #[inline(always)]
    fn pull(&self, n: u32) {
        // SAFETY: helper on this program's context; a failure leaves the next read to fail.
        unsafe { bpf_skb_pull_data(self.skb.skb, n) };
    }
    #[inline(always)]
    fn is_gso(&self) -> bool {
        // SAFETY: ctx is the __sk_buff this program was called with.
        unsafe { (*self.skb.skb).gso_size != 0 }
    }
    #[inline(always)]
    fn l3_proto(&self) -> u16 {
        // SAFETY: as above.
        u16::from_be(unsafe { (*self.skb.skb).protocol } as u16)
    }
    #[inline(always)]
    fn ifindex(&self) -> u32 {
        // SAFETY: as above.
        unsafe { (*self.skb.skb).ifindex }
    }
    #[inline(always)]
    fn hook(&self) -> u8 {
        HOOK_TC
    }
    #[inline(always)]
    fn load(&self, dst: *mut u8, n: u32) -> bool {
        // SAFETY: `dst` holds `n` bytes (the caller's promise); the helper checks the
        // packet's length.
        unsafe { bpf_skb_load_bytes(self.skb.skb.cast(), 0, dst.cast(), n) == 0 }
    }
}

/// XDP sees one linear frame (generic XDP linearizes; native drivers give one buffer to
/// programs without multi-buffer support), never a GSO packet, always with its
/// link-layer header.
impl Frame for XdpContext {
    #[inline(always)]
    fn data(&self) -> usize {
        XdpContext::data(self)
    }
    #[inline(always)]
    fn data_end(&self) -> usize {
        XdpContext::data_end(self)
    }
    #[inline(always)]
    fn len(&self) -> u32 {
        (XdpContext::data_end(self) - XdpContext::data(self)) as u32
    }
    #[inline(always)]
    fn pull(&self, _: u32) {}
    #[inline(always)]
    fn is_gso(&self) -> bool {
        false
    }
    #[inline(always)]
    fn l3_proto(&self) -> u16 {
        ETH_P_IP
    }
    #[inline(always)]
    fn ifindex(&self) -> u32 {
        // SAFETY: ctx is the xdp_md this program was called with.
        unsafe { (*self.ctx).ingress_ifindex }
    }
    #[inline(always)]
    fn hook(&self) -> u8 {
        HOOK_XDP
    }
    #[inline(always)]
    fn load(&self, dst: *mut u8, n: u32) -> bool {
        // SAFETY: as for the TC context.
        unsafe { bpf_xdp_load_bytes(self.ctx.cast(), 0, dst.cast(), n) == 0 }
    }
}

/// A `T` at `off` in the packet's linear data, read in place (direct packet access: no
/// helper call); None when it does not lie there.
#[inline(always)]
pub(crate) fn read<T: Copy, C: Frame>(ctx: &C, off: usize) -> Option<T> {
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + off + size_of::<T>() > end {
        return None;
    }
    // SAFETY: the verifier-checked bounds above keep the read inside the packet; the
    // BPF target loads at any alignment.
    Some(unsafe { *((start + off) as *const T) })
}

/// Write `v` at `off` in the packet's linear data in place; None when it does not lie
/// there. (The verifier makes a cloned packet's data private before the program runs.)
#[inline(always)]
pub(crate) fn write<T: Copy, C: Frame>(ctx: &C, off: usize, v: T) -> Option<()> {
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + off + size_of::<T>() > end {
        return None;
    }
    // SAFETY: bounds checked above, as for `read`.
    unsafe { *((start + off) as *mut T) = v };
    Some(())
}

/// `read`, pulling the packet's first `off + size_of::<T>()` bytes into the linear data
/// first when they are not there yet (headers of a packet built in pieces; every pointer
/// into the packet is invalid afterwards). Only what is needed is pulled: more would copy
/// payload.
#[inline(always)]
pub(crate) fn read_pulled<T: Copy, C: Frame>(ctx: &C, off: usize) -> Option<T> {
    if let Some(v) = read(ctx, off) {
        return Some(v);
    }
    let want = off + size_of::<T>();
    if want > ctx.len() as usize {
        return None;
    }
    ctx.pull(want as u32);
    read(ctx, off)
}

/// The frame's network protocol (host order): its ethertype, or the skb's protocol on an
/// L3 device (`l3_off` 0), which has no link-layer header.
#[inline(always)]
pub(crate) fn l3_proto<C: Frame>(ctx: &C, l3_off: usize) -> Option<u16> {
    if l3_off == 0 {
        Some(ctx.l3_proto())
    } else {
        read::<u16, _>(ctx, 12).map(u16::from_be)
    }
}

/// The IPv4 packet's summary (in this CPU's scratch space: the stack is short), or the
/// reason it is left alone (`Pass`: not IPv4) or dropped. `l3_off`: `ETH_HLEN` for an Ethernet device, 0 for an L3 device (whose
/// protocol is the skb's, there being no ethertype).
#[inline(always)]
pub(crate) fn parse<C: Frame>(ctx: &C, l3_off: usize) -> Result<&'static mut Packet, Reason> {
    if l3_proto(ctx, l3_off) != Some(ETH_P_IP) {
        return Err(Reason::Pass);
    }
    let ip: Ipv4Hdr = read_pulled(ctx, l3_off).ok_or(Reason::DropMalformed)?;
    let ihl = ip.ihl();
    let tot_len = usize::from(u16::from_be(ip.tot_len));
    let l3_len = (ctx.len() as usize).saturating_sub(l3_off);
    // tot_len 0 is how BIG TCP GSO packets say "see skb->len"; nothing else may.
    let gso = ctx.is_gso();
    let bad_len = if tot_len == 0 {
        !gso
    } else {
        tot_len < ihl || tot_len > l3_len
    };
    if ip.ver_ihl >> 4 != 4 || ihl < 20 || bad_len {
        return Err(Reason::DropMalformed);
    }
    let frag_off = u16::from_be(ip.frag_off);
    let l3 = if tot_len != 0 { tot_len } else { l3_len };
    let pkt = &mut crate::maps::scratch_or(Reason::DropMalformed)?.v4.pkt;
    *pkt = Packet {
        l3: l3_off as u8,
        l4: (l3_off + ihl) as u8,
        ip_end: (l3_off + l3) as u32,
        src_ip: ip.src,
        dst_ip: ip.dst,
        proto: ip.proto,
        src_port: Be16::ZERO,
        dst_port: Be16::ZERO,
        tcp_flags: 0,
        tcp_seq: 0,
        tcp_ack: 0,
        tcp_win: 0,
        tcp_hlen: 0,
        payload_len: 0,
        ip_id: ip.id,
        frag_id: 0,
        ttl: ip.ttl,
        df: frag_off & IP_DF != 0,
        frag: Frag::None,
        icmp: Icmp::No,
    };
    if frag_off & IP_OFFSET != 0 {
        pkt.frag = Frag::Later;
        return Ok(pkt);
    }
    if frag_off & IP_MF != 0 {
        pkt.frag = Frag::First;
    }
    l4(ctx, pkt, l3 - ihl)?;
    Ok(pkt)
}

/// What ICMP message `kind` of family `A` is to NAT.
#[inline(always)]
fn icmp_class<A: Addr>(kind: u8) -> Icmp {
    if A::PROTO_ICMP == common::PROTO_ICMP {
        match kind {
            ICMP_ECHO => Icmp::EchoRequest,
            ICMP_ECHOREPLY => Icmp::EchoReply,
            ICMP_DEST_UNREACH | ICMP_TIME_EXCEEDED => Icmp::Error,
            _ => Icmp::Other,
        }
    } else {
        match kind {
            ICMPV6_ECHO => Icmp::EchoRequest,
            ICMPV6_ECHOREPLY => Icmp::EchoReply,
            1..=ICMPV6_ERROR_MAX => Icmp::Error,
            _ => Icmp::Other,
        }
    }
}

/// Fill the ports (or ICMP identifier), flags and sequence fields from the L4 header of
/// `l4_len` bytes.
#[inline(always)]
pub(crate) fn l4<A: Addr, C: Frame>(
    ctx: &C,
    p: &mut Packet<A>,
    l4_len: usize,
) -> Result<(), Reason> {
    let off = p.l4_off();
    let min = match p.proto {
        PROTO_TCP => 20,
        PROTO_UDP => 8,
        p if p == A::PROTO_ICMP => 8,
        _ => return Ok(()),
    };
    // The header must fit the IP packet, not merely the frame (padding is not a header).
    if l4_len < min {
        return Err(Reason::DropTruncated);
    }
    if p.proto == A::PROTO_ICMP {
        let [kind, _, _, _, id0, id1]: [u8; 6] =
            read_pulled(ctx, off).ok_or(Reason::DropTruncated)?;
        let id = Be16::from_bytes([id0, id1]);
        p.icmp = icmp_class::<A>(kind);
        match p.icmp {
            Icmp::EchoRequest => p.src_port = id,
            Icmp::EchoReply => p.dst_port = id,
            _ => {}
        }
        return Ok(());
    }
    if p.proto == PROTO_UDP {
        let ports: [Be16; 2] = read_pulled(ctx, off).ok_or(Reason::DropTruncated)?;
        p.src_port = ports[0];
        p.dst_port = ports[1];
    } else {
        let h: TcpFixed = read_pulled(ctx, off).ok_or(Reason::DropTruncated)?;
        p.src_port = h.ports[0];
        p.dst_port = h.ports[1];
        let hlen = usize::from(h.doff >> 4) * 4;
        if hlen < 20 || hlen > l4_len {
            return Err(Reason::DropMalformed);
        }
        p.tcp_seq = u32::from_be(h.seq);
        p.tcp_ack = u32::from_be(h.ack);
        p.tcp_flags = h.flags;
        p.tcp_win = u16::from_be(h.win);
        p.tcp_hlen = hlen as u16;
        p.payload_len = (l4_len - hlen) as u32;
    }
    Ok(())
}

/// The TCP header up to the window.
#[derive(Clone, Copy)]
#[repr(C)]
struct TcpFixed {
    ports: [Be16; 2],
    seq: u32,
    ack: u32,
    doff: u8,
    flags: u8,
    win: u16,
}
