//! IPv6 frames for `BPF_PROG_TEST_RUN` and checks of what comes out, written independently
//! of the datapath (whole-packet RFC 1071 sums over the IPv6 pseudo-header).
use crate::packet::{ETH_HLEN, checksum, ether};

pub type Addr6 = ([u8; 16], u16);

const IPV6_HLEN: usize = 40;
pub const NEXT_TCP: u8 = 6;
pub const NEXT_UDP: u8 = 17;
pub const NEXT_ICMPV6: u8 = 58;

/// The sum of `l4` (checksum field included) over the IPv6 pseudo-header.
fn l4_sum(next: u8, src: &[u8; 16], dst: &[u8; 16], l4: &[u8]) -> u16 {
    let len = (l4.len() as u32).to_be_bytes();
    checksum(&[src, dst, &len, &[0, 0, 0, next], l4])
}

/// Ethernet (the builder's MACs) + IPv6 (hop limit `hops`) around `l4`, whose checksum
/// at `csum_off` is filled in.
pub fn frame6(
    next: u8,
    (src, dst): ([u8; 16], [u8; 16]),
    hops: u8,
    l4: Vec<u8>,
    csum_off: usize,
) -> Vec<u8> {
    let mut l4 = l4;
    l4[csum_off..csum_off + 2].copy_from_slice(&[0, 0]);
    let c = l4_sum(next, &src, &dst, &l4);
    l4[csum_off..csum_off + 2].copy_from_slice(&c.to_be_bytes());
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    h.extend_from_slice(&[next, hops]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend_from_slice(&l4);
    ether(0x86dd, &h)
}

/// A TCP segment with `flags` and sequence number `seq` (acknowledging nothing).
pub fn tcp6(src: Addr6, dst: Addr6, flags: u8, seq: u32) -> Vec<u8> {
    tcp6_seq(src, dst, flags, (seq, 0))
}

/// A TCP segment with `flags`, sequence and acknowledgment numbers.
pub fn tcp6_seq(src: Addr6, dst: Addr6, flags: u8, (seq, ack): (u32, u32)) -> Vec<u8> {
    let mut l4 = Vec::new();
    l4.extend_from_slice(&src.1.to_be_bytes());
    l4.extend_from_slice(&dst.1.to_be_bytes());
    l4.extend_from_slice(&seq.to_be_bytes());
    l4.extend_from_slice(&ack.to_be_bytes());
    l4.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    frame6(NEXT_TCP, (src.0, dst.0), 64, l4, 16)
}

/// A UDP datagram carrying `payload`.
pub fn udp6(src: Addr6, dst: Addr6, payload: &[u8]) -> Vec<u8> {
    let mut l4 = Vec::new();
    l4.extend_from_slice(&src.1.to_be_bytes());
    l4.extend_from_slice(&dst.1.to_be_bytes());
    l4.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    l4.extend_from_slice(&[0, 0]);
    l4.extend_from_slice(payload);
    frame6(NEXT_UDP, (src.0, dst.0), 64, l4, 6)
}

/// An `ICMPv6` echo request (or reply) with identifier `id`.
pub fn echo6(src: [u8; 16], dst: [u8; 16], id: u16, request: bool) -> Vec<u8> {
    let kind = if request { 128 } else { 129 };
    let mut l4 = vec![kind, 0, 0, 0];
    l4.extend_from_slice(&id.to_be_bytes());
    l4.extend_from_slice(&[0, 1, 0xab, 0xcd]);
    frame6(NEXT_ICMPV6, (src, dst), 64, l4, 2)
}

/// An `ICMPv6` error of `kind` (1 unreachable, 2 packet too big with `mtu`, 3 time
/// exceeded) from `src` to `dst`, quoting the IPv6 packet of frame `quoted` (as much of it
/// as RFC 4443's 1280 bytes allow).
pub fn icmp6_error(src: [u8; 16], dst: [u8; 16], kind: u8, mtu: u32, quoted: &[u8]) -> Vec<u8> {
    let mut l4 = vec![kind, 0, 0, 0];
    l4.extend_from_slice(&mtu.to_be_bytes());
    let q = &quoted[ETH_HLEN..];
    l4.extend_from_slice(&q[..q.len().min(1280 - IPV6_HLEN - 8)]);
    frame6(NEXT_ICMPV6, (src, dst), 64, l4, 2)
}

/// A UDP datagram of `payload` in two fragments (identification `id`): the first holds
/// the UDP header and `first` bytes of payload (8 + `first` a multiple of 8), the second
/// the rest. The UDP checksum covers the whole datagram.
pub fn udp6_fragments(
    src: Addr6,
    dst: Addr6,
    payload: &[u8],
    first: usize,
    id: u32,
) -> [Vec<u8>; 2] {
    assert!((8 + first).is_multiple_of(8) && first < payload.len());
    let mut udp = Vec::new();
    udp.extend_from_slice(&src.1.to_be_bytes());
    udp.extend_from_slice(&dst.1.to_be_bytes());
    udp.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    let c = l4_sum(NEXT_UDP, &src.0, &dst.0, &udp);
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    let (a, b) = udp.split_at(8 + first);
    let piece = |bytes: &[u8], offset: usize, more: bool| {
        let mut h = vec![0x60, 0, 0, 0];
        h.extend_from_slice(&((8 + bytes.len()) as u16).to_be_bytes());
        h.extend_from_slice(&[44, 64]);
        h.extend_from_slice(&src.0);
        h.extend_from_slice(&dst.0);
        h.extend_from_slice(&[NEXT_UDP, 0]);
        h.extend_from_slice(&(((offset / 8) as u16) << 3 | u16::from(more)).to_be_bytes());
        h.extend_from_slice(&id.to_be_bytes());
        h.extend_from_slice(bytes);
        ether(0x86dd, &h)
    };
    [piece(a, 0, true), piece(b, a.len(), false)]
}

/// Whether the UDP datagram carried by fragment frames `frags` (in order, each with one
/// fragment header) has a valid checksum between `src` and `dst`.
pub fn fragments_checksum_ok(src: &[u8; 16], dst: &[u8; 16], frags: &[&[u8]]) -> bool {
    let udp: Vec<u8> = frags
        .iter()
        .flat_map(|f| f[ETH_HLEN + IPV6_HLEN + 8..].iter().copied())
        .collect();
    l4_sum(NEXT_UDP, src, dst, &udp) == 0
}

/// A read-only view of an Ethernet/IPv6 frame without extension headers.
pub struct View6<'a>(pub &'a [u8]);

impl View6<'_> {
    fn addr(&self, off: usize) -> [u8; 16] {
        self.0[ETH_HLEN + off..ETH_HLEN + off + 16]
            .try_into()
            .expect("16 bytes")
    }
    fn l4(&self) -> &[u8] {
        let len = usize::from(u16::from_be_bytes([
            self.0[ETH_HLEN + 4],
            self.0[ETH_HLEN + 5],
        ]));
        &self.0[ETH_HLEN + IPV6_HLEN..ETH_HLEN + IPV6_HLEN + len]
    }
    pub fn next(&self) -> u8 {
        self.0[ETH_HLEN + 6]
    }
    pub fn hop_limit(&self) -> u8 {
        self.0[ETH_HLEN + 7]
    }
    pub fn dst_mac(&self) -> [u8; 6] {
        self.0[0..6].try_into().expect("6 bytes")
    }
    /// Source address and port (`ICMPv6` echo: the identifier).
    pub fn src(&self) -> Addr6 {
        let l4 = self.l4();
        let port = if self.next() == NEXT_ICMPV6 {
            u16::from_be_bytes([l4[4], l4[5]])
        } else {
            u16::from_be_bytes([l4[0], l4[1]])
        };
        (self.addr(8), port)
    }
    pub fn dst(&self) -> Addr6 {
        let l4 = self.l4();
        let port = if self.next() == NEXT_ICMPV6 {
            u16::from_be_bytes([l4[4], l4[5]])
        } else {
            u16::from_be_bytes([l4[2], l4[3]])
        };
        (self.addr(24), port)
    }
    /// An `ICMPv6` error's quoted packet: its source and destination with their ports.
    pub fn quoted(&self) -> (Addr6, Addr6) {
        let q = &self.l4()[8..];
        let addr = |off: usize| -> [u8; 16] { q[off..off + 16].try_into().expect("16 bytes") };
        let port = |off: usize| u16::from_be_bytes([q[IPV6_HLEN + off], q[IPV6_HLEN + off + 1]]);
        ((addr(8), port(0)), (addr(24), port(2)))
    }

    /// Check the L4 checksum (TCP, UDP, `ICMPv6`: all over the pseudo-header) from scratch.
    pub fn verify_checksum(&self) -> Result<(), String> {
        match l4_sum(self.next(), &self.addr(8), &self.addr(24), self.l4()) {
            0 => Ok(()),
            c => Err(format!(
                "bad checksum of next header {} (residue {c:#06x})",
                self.next()
            )),
        }
    }
}
