//! Ethernet / IPv4 / TCP|UDP header parsing into a flat summary.
use aya_ebpf::programs::TcContext;
use common::{PROTO_TCP, PROTO_UDP, Reason};

pub const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const IP_OFFSET: u16 = 0x1fff;

/// Where a fragment sits in its datagram.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Frag {
    /// A whole datagram, or the first fragment (which carries the L4 header).
    WithPorts,
    /// A later fragment: no L4 header.
    Later,
}

/// An IPv4 TCP/UDP packet. Addresses and ports in network order.
pub struct Packet {
    pub l4_off: usize,
    pub src_ip: u32,
    pub dst_ip: u32,
    pub proto: u8,
    pub src_port: u16,
    pub dst_port: u16,
    /// TCP flags byte (0 for UDP).
    pub tcp_flags: u8,
    pub frag: Frag,
}

#[repr(C)]
struct Ipv4Hdr {
    ver_ihl: u8,
    tos: u8,
    tot_len: u16,
    id: u16,
    frag_off: u16,
    ttl: u8,
    proto: u8,
    check: u16,
    src: u32,
    dst: u32,
}

/// The packet's summary, or the reason it is left alone (`Pass`: not IPv4 TCP/UDP) or
/// dropped.
#[inline(always)]
pub fn parse(ctx: &TcContext) -> Result<Packet, Reason> {
    let Ok(eth_proto) = ctx.load::<u16>(12) else {
        return Err(Reason::Pass);
    };
    if u16::from_be(eth_proto) != ETH_P_IP {
        return Err(Reason::Pass);
    }
    let ip = ctx
        .load::<Ipv4Hdr>(ETH_HLEN)
        .map_err(|_| Reason::DropMalformed)?;
    let ihl = usize::from(ip.ver_ihl & 0x0f) * 4;
    let tot_len = usize::from(u16::from_be(ip.tot_len));
    let l3_len = (ctx.len() as usize).saturating_sub(ETH_HLEN);
    // tot_len 0 is how BIG TCP GSO packets say "see skb->len".
    if ip.ver_ihl >> 4 != 4 || ihl < 20 || (tot_len != 0 && (tot_len < ihl || tot_len > l3_len)) {
        return Err(Reason::DropMalformed);
    }
    if ip.proto != PROTO_TCP && ip.proto != PROTO_UDP {
        return Err(Reason::Pass);
    }
    let frag_off = u16::from_be(ip.frag_off);
    let l4_off = ETH_HLEN + ihl;
    let mut pkt = Packet {
        l4_off,
        src_ip: ip.src,
        dst_ip: ip.dst,
        proto: ip.proto,
        src_port: 0,
        dst_port: 0,
        tcp_flags: 0,
        frag: Frag::WithPorts,
    };
    if frag_off & IP_OFFSET != 0 {
        pkt.frag = Frag::Later;
        return Ok(pkt);
    }
    let ports = ctx
        .load::<[u16; 2]>(l4_off)
        .map_err(|_| Reason::DropTruncated)?;
    pkt.src_port = ports[0];
    pkt.dst_port = ports[1];
    let l4_min = if ip.proto == PROTO_TCP { 20 } else { 8 };
    if ctx.load::<u8>(l4_off + l4_min - 1).is_err() {
        return Err(Reason::DropTruncated);
    }
    if ip.proto == PROTO_TCP {
        pkt.tcp_flags = ctx.load::<u8>(l4_off + 13).unwrap_or(0);
    }
    Ok(pkt)
}
