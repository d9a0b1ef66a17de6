//! Ethernet / IPv4 / TCP|UDP|ICMP header parsing into a flat summary.
use aya_ebpf::programs::TcContext;
use common::{PROTO_ICMP, PROTO_TCP, PROTO_UDP, Reason};

pub const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const IP_MF: u16 = 0x2000;
const IP_OFFSET: u16 = 0x1fff;
pub const ICMP_ECHOREPLY: u8 = 0;
pub const ICMP_DEST_UNREACH: u8 = 3;
pub const ICMP_ECHO: u8 = 8;
pub const ICMP_TIME_EXCEEDED: u8 = 11;

/// Where a fragment sits in its datagram.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Frag {
    /// A whole datagram.
    None,
    /// The first fragment: carries the L4 header, more follow.
    First,
    /// A later fragment: no L4 header.
    Later,
}

/// What an ICMP packet is to NAT.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Icmp {
    /// Not ICMP.
    No,
    /// Echo request: the identifier stands in for the source port.
    EchoRequest,
    /// Echo reply: the identifier stands in for the destination port.
    EchoReply,
    /// Destination unreachable or time exceeded: translated through its embedded header.
    Error,
    /// Any other ICMP message: not translated.
    Other,
}

/// An IPv4 packet. Addresses, ports and the IP id in network order.
pub struct Packet {
    pub l4_off: usize,
    pub src_ip: u32,
    pub dst_ip: u32,
    pub proto: u8,
    /// TCP/UDP ports; for ICMP echo the identifier as source (request) or destination
    /// (reply) port and 0 for the other.
    pub src_port: u16,
    pub dst_port: u16,
    /// TCP flags byte (0 otherwise).
    pub tcp_flags: u8,
    pub ip_id: u16,
    pub frag: Frag,
    pub icmp: Icmp,
}

#[repr(C)]
pub struct Ipv4Hdr {
    pub ver_ihl: u8,
    pub tos: u8,
    pub tot_len: u16,
    pub id: u16,
    pub frag_off: u16,
    pub ttl: u8,
    pub proto: u8,
    pub check: u16,
    pub src: u32,
    pub dst: u32,
}

impl Ipv4Hdr {
    pub fn ihl(&self) -> usize {
        usize::from(self.ver_ihl & 0x0f) * 4
    }
}

/// The packet's summary, or the reason it is left alone (`Pass`: not IPv4 TCP/UDP/ICMP)
/// or dropped.
#[inline(always)]
pub fn parse(ctx: &TcContext) -> Result<Packet, Reason> {
    let eth_proto: u16 = ctx.load(12).map_err(|_| Reason::Pass)?;
    if u16::from_be(eth_proto) != ETH_P_IP {
        return Err(Reason::Pass);
    }
    let ip = ctx
        .load::<Ipv4Hdr>(ETH_HLEN)
        .map_err(|_| Reason::DropMalformed)?;
    let ihl = ip.ihl();
    let tot_len = usize::from(u16::from_be(ip.tot_len));
    let l3_len = (ctx.len() as usize).saturating_sub(ETH_HLEN);
    // tot_len 0 is how BIG TCP GSO packets say "see skb->len".
    if ip.ver_ihl >> 4 != 4 || ihl < 20 || (tot_len != 0 && (tot_len < ihl || tot_len > l3_len)) {
        return Err(Reason::DropMalformed);
    }
    if ip.proto != PROTO_TCP && ip.proto != PROTO_UDP && ip.proto != PROTO_ICMP {
        return Err(Reason::Pass);
    }
    let frag_off = u16::from_be(ip.frag_off);
    let mut pkt = Packet {
        l4_off: ETH_HLEN + ihl,
        src_ip: ip.src,
        dst_ip: ip.dst,
        proto: ip.proto,
        src_port: 0,
        dst_port: 0,
        tcp_flags: 0,
        ip_id: ip.id,
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
    l4(ctx, &mut pkt)?;
    Ok(pkt)
}

/// Fill the ports (or ICMP identifier) and flags from the L4 header.
#[inline(always)]
fn l4(ctx: &TcContext, p: &mut Packet) -> Result<(), Reason> {
    let off = p.l4_off;
    let min = match p.proto {
        PROTO_TCP => 20,
        PROTO_UDP => 8,
        _ => 8,
    };
    if ctx.load::<u8>(off + min - 1).is_err() {
        return Err(Reason::DropTruncated);
    }
    if p.proto == PROTO_ICMP {
        let kind: u8 = ctx.load(off).map_err(|_| Reason::DropTruncated)?;
        let id: u16 = ctx.load(off + 4).map_err(|_| Reason::DropTruncated)?;
        p.icmp = match kind {
            ICMP_ECHO => {
                p.src_port = id;
                Icmp::EchoRequest
            }
            ICMP_ECHOREPLY => {
                p.dst_port = id;
                Icmp::EchoReply
            }
            ICMP_DEST_UNREACH | ICMP_TIME_EXCEEDED => Icmp::Error,
            _ => Icmp::Other,
        };
        return Ok(());
    }
    let ports: [u16; 2] = ctx.load(off).map_err(|_| Reason::DropTruncated)?;
    p.src_port = ports[0];
    p.dst_port = ports[1];
    if p.proto == PROTO_TCP {
        p.tcp_flags = ctx.load::<u8>(off + 13).unwrap_or(0);
    }
    Ok(())
}
