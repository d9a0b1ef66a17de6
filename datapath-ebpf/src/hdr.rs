//! The wire headers the datapath reads and writes, as `#[repr(C)]` structs laid out as
//! on the wire: a field's offset is `offset_of!` of its struct, never a number.
//! Multi-byte fields hold the bytes as they sit in the packet (network order).
use core::mem::{offset_of, size_of};

use common::{Be32, Ip6};

/// An IPv4 header without options.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct Ipv4Hdr {
    pub ver_ihl: u8,
    pub tos: u8,
    pub tot_len: u16,
    pub id: u16,
    pub frag_off: u16,
    pub ttl: u8,
    pub proto: u8,
    pub check: u16,
    pub src: Be32,
    pub dst: Be32,
}

impl Ipv4Hdr {
    /// The header's length in bytes, options included.
    #[inline(always)]
    pub(crate) fn ihl(&self) -> usize {
        usize::from(self.ver_ihl & 0x0f) * 4
    }
}

/// The IPv6 header.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct Ipv6Hdr {
    /// Version (high 4 bits) and the traffic class's high bits.
    pub ver: u8,
    /// The rest of the traffic class, and the flow label.
    pub class_flow: [u8; 3],
    pub payload_len: u16,
    pub next: u8,
    pub hop_limit: u8,
    pub src: Ip6,
    pub dst: Ip6,
}

/// The TCP header without options.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct TcpHdr {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    /// Data offset, reserved bits and flags.
    pub off_flags: u16,
    pub window: u16,
    pub check: u16,
    pub urg: u16,
}

/// The UDP header.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct UdpHdr {
    pub src_port: u16,
    pub dst_port: u16,
    pub len: u16,
    pub check: u16,
}

/// The ICMP and `ICMPv6` header: type, code, checksum, and the word that holds an echo's
/// identifier and sequence number (unused by the errors bpfnet reads and makes).
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct IcmpHdr {
    pub kind: u8,
    pub code: u8,
    pub check: u16,
    pub id: u16,
    pub seq: u16,
}

const _: () = {
    assert!(size_of::<Ipv4Hdr>() == 20);
    assert!(size_of::<Ipv6Hdr>() == 40);
    assert!(size_of::<TcpHdr>() == 20);
    assert!(size_of::<UdpHdr>() == 8);
    assert!(size_of::<IcmpHdr>() == 8);
};

/// The IPv4 header without options.
pub(crate) const IP_HLEN: usize = size_of::<Ipv4Hdr>();
/// TTL, followed by the protocol (one 16-bit word of the header checksum).
pub(crate) const IP_TTL: usize = offset_of!(Ipv4Hdr, ttl);
pub(crate) const IP_CSUM: usize = offset_of!(Ipv4Hdr, check);
pub(crate) const IP_SRC: usize = offset_of!(Ipv4Hdr, src);
pub(crate) const IP_DST: usize = offset_of!(Ipv4Hdr, dst);

pub(crate) const IPV6_HLEN: usize = size_of::<Ipv6Hdr>();
/// Next header, followed by the hop limit.
pub(crate) const IPV6_NEXT: usize = offset_of!(Ipv6Hdr, next);
pub(crate) const IPV6_SRC: usize = offset_of!(Ipv6Hdr, src);
pub(crate) const IPV6_DST: usize = offset_of!(Ipv6Hdr, dst);

/// The TCP header without options: where they start.
pub(crate) const TCP_HLEN: usize = size_of::<TcpHdr>();
pub(crate) const TCP_CSUM: usize = offset_of!(TcpHdr, check);
/// TCP's and UDP's ports sit alike, the source first.
pub(crate) const L4_DST_PORT: usize = offset_of!(UdpHdr, dst_port);
pub(crate) const UDP_CSUM: usize = offset_of!(UdpHdr, check);

pub(crate) const ICMP_HLEN: usize = size_of::<IcmpHdr>();
pub(crate) const ICMP_CSUM: usize = offset_of!(IcmpHdr, check);
/// An echo's identifier, which stands in for a port.
pub(crate) const ICMP_ID: usize = offset_of!(IcmpHdr, id);
