//! The summary of an IP packet of either family that every path reads (`Packet`): its
//! addresses, ports, TCP fields and offsets, written once by the parsers (`parse`,
//! `parse6`) into the scratch space (`maps::Scratch`).
use common::{
    Addr, Be16, PROTO_TCP, PROTO_UDP,
    ct::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN},
};

/// Where a fragment sits in its datagram.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Frag {
    /// A whole datagram.
    None,
    /// The first fragment: carries the L4 header, more follow.
    First,
    /// A later fragment: no L4 header.
    Later,
}

/// What an ICMP packet is to NAT.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Icmp {
    /// Not ICMP.
    No,
    /// Echo request: the identifier stands in for the source port.
    EchoRequest,
    /// Echo reply: the identifier stands in for the destination port.
    EchoReply,
    /// Destination unreachable or time exceeded: translated through its embedded header.
    Error,
    /// Any other ICMP message: tracked by addresses only.
    Other,
}

/// An IP packet of either family (`A`: `u32` for IPv4, `Ip6`). Addresses and the IP id
/// in network order, as the ports' type says.
pub(crate) struct Packet<A = u32> {
    /// Where the IP header starts (`l3_off()`). Offsets are kept narrow: the summary
    /// lives in scratch space, and a u8 bounds a packet offset for the verifier.
    pub(crate) l3: u8,
    /// Where the L4 header starts (`l4_off()`: at most 14 + 60 for IPv4; IPv6 extension
    /// headers that end later are refused).
    pub(crate) l4: u8,
    /// Where the IP packet ends in the frame (`end()`; BIG TCP packets exceed 64 KiB).
    pub(crate) ip_end: u32,
    pub src_ip: A,
    pub dst_ip: A,
    pub proto: u8,
    /// TCP/UDP ports; for ICMP echo the identifier as source (request) or destination
    /// (reply) port and 0 for the other.
    pub src_port: Be16,
    pub dst_port: Be16,
    /// TCP flags byte (0 otherwise).
    pub tcp_flags: u8,
    /// TCP sequence and acknowledgement numbers, window (unscaled), host order.
    pub tcp_seq: u32,
    pub tcp_ack: u32,
    pub tcp_win: u16,
    /// TCP header length in bytes (0 otherwise).
    pub tcp_hlen: u16,
    /// Bytes after the L4 header (TCP), host order.
    pub payload_len: u32,
    /// IPv4's identification (0 for IPv6).
    pub ip_id: u16,
    /// IPv6's fragment identification, network order (0 otherwise).
    pub frag_id: u32,
    /// TTL or hop limit.
    pub ttl: u8,
    /// The don't-fragment bit (always set for IPv6, which routers never fragment).
    pub df: bool,
    pub frag: Frag,
    pub icmp: Icmp,
}

impl<A: Addr> Packet<A> {
    /// Where the IP header starts: `ETH_HLEN` on Ethernet devices, 0 on L3 devices
    /// (tunnels, VPNs), whose frames carry no link-layer header.
    #[inline(always)]
    pub(crate) fn l3_off(&self) -> usize {
        usize::from(self.l3)
    }

    #[inline(always)]
    pub(crate) fn l4_off(&self) -> usize {
        usize::from(self.l4)
    }

    /// Where the IPv4 packet ends in the frame (what follows is padding, not packet).
    #[inline(always)]
    pub(crate) fn end(&self) -> usize {
        self.ip_end as usize
    }

    /// The IPv4 packet's length (of all its segments, for a GSO packet).
    #[inline(always)]
    pub(crate) fn ip_len(&self) -> u32 {
        self.ip_end - u32::from(self.l3)
    }

    /// Whether the protocol has ports (or an echo identifier) that NAT rewrites.
    #[inline(always)]
    pub(crate) fn has_ports(&self) -> bool {
        match self.proto {
            PROTO_TCP | PROTO_UDP => true,
            p if p == A::PROTO_ICMP => matches!(self.icmp, Icmp::EchoRequest | Icmp::EchoReply),
            _ => false,
        }
    }

    /// A bare TCP SYN (no ACK, RST or FIN): the only packet that may start a TCP flow.
    #[inline(always)]
    pub(crate) fn is_syn(&self) -> bool {
        self.proto == PROTO_TCP
            && self.tcp_flags & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN) == TCP_SYN
    }

    /// May this packet start a flow: a TCP SYN, any UDP datagram, an ICMP echo request,
    /// the first packet of another protocol; never a reply-like packet, nor a later
    /// fragment (whose ports are only remembered).
    #[inline(always)]
    pub(crate) fn may_start_flow(&self) -> bool {
        if self.frag == Frag::Later {
            return false;
        }
        match self.proto {
            PROTO_TCP => self.is_syn(),
            p if p == A::PROTO_ICMP => !matches!(self.icmp, Icmp::EchoReply | Icmp::Error),
            _ => true,
        }
    }
}
