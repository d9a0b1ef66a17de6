//! Frames for `BPF_PROG_TEST_RUN` and checks of what comes out, written independently of
//! the datapath (plain RFC 1071 sums over whole headers, no incremental updates).
pub const ETH_HLEN: usize = 14;
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

pub type Addr = ([u8; 4], u16);

/// RFC 1071 one's-complement sum, folded and inverted.
pub fn checksum(chunks: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut odd: Option<u8> = None;
    for chunk in chunks {
        for &b in *chunk {
            match odd.take() {
                Some(hi) => sum += u32::from(u16::from_be_bytes([hi, b])),
                None => odd = Some(b),
            }
        }
    }
    if let Some(hi) = odd {
        sum += u32::from(u16::from_be_bytes([hi, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// How to build the IPv4 header.
#[derive(Clone, Copy)]
pub struct IpOpts {
    /// Extra option bytes (multiple of 4) after the 20-byte header.
    pub options: usize,
    /// The `frag_off` field (flags + offset), host order.
    pub frag_off: u16,
}

impl Default for IpOpts {
    fn default() -> Self {
        Self {
            options: 0,
            frag_off: 0x4000, // DF
        }
    }
}

fn l4_csum(proto: u8, src: [u8; 4], dst: [u8; 4], l4: &[u8]) -> u16 {
    let len = (l4.len() as u16).to_be_bytes();
    checksum(&[&src, &dst, &[0, proto], &len, l4])
}

/// Ethernet + IPv4 around an L4 segment whose checksum field is filled here
/// (`l4_csum_off`, None = leave as given).
fn frame(
    proto: u8,
    src: [u8; 4],
    dst: [u8; 4],
    mut l4: Vec<u8>,
    csum_off: Option<usize>,
    ip: IpOpts,
) -> Vec<u8> {
    if let Some(off) = csum_off {
        let c = l4_csum(proto, src, dst, &l4);
        let c = if c == 0 && proto == 17 { 0xffff } else { c };
        l4[off..off + 2].copy_from_slice(&c.to_be_bytes());
    }
    let ihl = 20 + ip.options;
    let mut f = Vec::with_capacity(ETH_HLEN + ihl + l4.len());
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01]); // dst MAC
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x02]); // src MAC
    f.extend_from_slice(&[0x08, 0x00]);
    let tot = ((ihl + l4.len()) as u16).to_be_bytes();
    let mut h = vec![0x40 | (ihl / 4) as u8, 0, tot[0], tot[1], 0x12, 0x34];
    h.extend_from_slice(&ip.frag_off.to_be_bytes());
    h.extend_from_slice(&[64, proto, 0, 0]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend(std::iter::repeat_n(1u8, ip.options)); // NOP options
    let c = checksum(&[&h]);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&h);
    f.extend_from_slice(&l4);
    f
}

/// Ethernet + IPv4 (`ip`) around any L4 bytes; the TCP/UDP checksum at `csum_off` is
/// filled in over the pseudo-header and `l4` as given (None: `l4` is left as it is).
pub fn ipv4(
    proto: u8,
    src: [u8; 4],
    dst: [u8; 4],
    l4: Vec<u8>,
    csum_off: Option<usize>,
    ip: IpOpts,
) -> Vec<u8> {
    frame(proto, src, dst, l4, csum_off, ip)
}

pub fn tcp(src: Addr, dst: Addr, flags: u8, payload: &[u8]) -> Vec<u8> {
    tcp_with(src, dst, flags, payload, IpOpts::default())
}

pub fn tcp_with(src: Addr, dst: Addr, flags: u8, payload: &[u8], ip: IpOpts) -> Vec<u8> {
    tcp_full(src, dst, flags, (1000, 0), payload, ip)
}

/// A TCP segment with sequence and acknowledgement numbers `(seq, ack)`.
pub fn tcp_seq(src: Addr, dst: Addr, flags: u8, (seq, ack): (u32, u32), payload: &[u8]) -> Vec<u8> {
    tcp_full(src, dst, flags, (seq, ack), payload, IpOpts::default())
}

fn tcp_full(
    src: Addr,
    dst: Addr,
    flags: u8,
    (seq, ack): (u32, u32),
    payload: &[u8],
    ip: IpOpts,
) -> Vec<u8> {
    let mut l4 = Vec::new();
    l4.extend_from_slice(&src.1.to_be_bytes());
    l4.extend_from_slice(&dst.1.to_be_bytes());
    l4.extend_from_slice(&seq.to_be_bytes());
    l4.extend_from_slice(&ack.to_be_bytes());
    l4.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    l4.extend_from_slice(payload);
    frame(6, src.0, dst.0, l4, Some(16), ip)
}

/// A UDP datagram; `with_csum` false sends checksum 0 ("none").
pub fn udp(src: Addr, dst: Addr, payload: &[u8], with_csum: bool) -> Vec<u8> {
    udp_with(src, dst, payload, with_csum, IpOpts::default())
}

pub fn udp_with(src: Addr, dst: Addr, payload: &[u8], with_csum: bool, ip: IpOpts) -> Vec<u8> {
    let mut l4 = Vec::new();
    l4.extend_from_slice(&src.1.to_be_bytes());
    l4.extend_from_slice(&dst.1.to_be_bytes());
    l4.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    l4.extend_from_slice(&[0, 0]);
    l4.extend_from_slice(payload);
    frame(17, src.0, dst.0, l4, with_csum.then_some(6), ip)
}

/// ICMP checksum (no pseudo-header) written at bytes 2..4 of `msg`.
fn icmp_frame(src: [u8; 4], dst: [u8; 4], mut msg: Vec<u8>) -> Vec<u8> {
    let c = checksum(&[&msg]);
    msg[2..4].copy_from_slice(&c.to_be_bytes());
    frame(1, src, dst, msg, None, IpOpts::default())
}

/// An ICMP echo request (`request`) or reply with identifier `id`.
pub fn icmp_echo(src: [u8; 4], dst: [u8; 4], id: u16, request: bool) -> Vec<u8> {
    let mut msg = vec![if request { 8 } else { 0 }, 0, 0, 0];
    msg.extend_from_slice(&id.to_be_bytes());
    msg.extend_from_slice(&7u16.to_be_bytes()); // sequence
    msg.extend_from_slice(b"bpfnet ping");
    icmp_frame(src, dst, msg)
}

/// An ICMP error (`kind`/`code`, e.g. 3/4 fragmentation needed with `mtu`) quoting the
/// IP packet of `quoted_frame` (its first 28 bytes past Ethernet, as routers send).
pub fn icmp_error(
    src: [u8; 4],
    dst: [u8; 4],
    kind: u8,
    code: u8,
    mtu: u16,
    quoted_frame: &[u8],
) -> Vec<u8> {
    let mut msg = vec![kind, code, 0, 0, 0, 0];
    msg.extend_from_slice(&mtu.to_be_bytes());
    msg.extend_from_slice(&quoted_frame[ETH_HLEN..ETH_HLEN + 28]);
    icmp_frame(src, dst, msg)
}

/// An IPv4 packet of any protocol (GRE is 47) carrying `payload` as it is.
pub fn ip_proto(src: [u8; 4], dst: [u8; 4], proto: u8, payload: &[u8]) -> Vec<u8> {
    frame(proto, src, dst, payload.to_vec(), None, IpOpts::default())
}

/// An ICMP message other than echo or an error: a timestamp request (type 13).
pub fn icmp_timestamp(src: [u8; 4], dst: [u8; 4], id: u16) -> Vec<u8> {
    let mut msg = vec![13, 0, 0, 0];
    msg.extend_from_slice(&id.to_be_bytes());
    msg.extend_from_slice(&1u16.to_be_bytes());
    msg.extend_from_slice(&[0; 12]);
    icmp_frame(src, dst, msg)
}

/// A VXLAN datagram (UDP from port 49152 to 4789, no UDP checksum) from `outer_src` to
/// `outer_dst` with network identifier `vni`, carrying `inner` (an Ethernet frame from
/// this builder) addressed as the cluster's tunnel addresses its frames.
pub fn vxlan(outer_src: [u8; 4], outer_dst: [u8; 4], vni: u32, inner: &[u8]) -> Vec<u8> {
    let mut payload = vec![0x08, 0, 0, 0];
    payload.extend_from_slice(&(vni << 8).to_be_bytes());
    payload.extend_from_slice(&common::CLUSTER_VXLAN_MAC);
    payload.extend_from_slice(&common::CLUSTER_VXLAN_SRC_MAC);
    payload.extend_from_slice(&inner[12..]);
    udp(
        (outer_src, 49152),
        (outer_dst, common::CLUSTER_VXLAN_PORT),
        &payload,
        false,
    )
}

/// A frame of `ethertype` with the packet builder's MACs (dst 02:..:01, src 02:..:02)
/// and `payload`.
pub fn ether(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An IPv6 UDP packet from `src` to `dst` (only the fixed header is meaningful).
pub fn ipv6_udp(src: [u8; 16], dst: [u8; 16]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0, 0, 8, 17, 64];
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend_from_slice(&[0x13, 0x88, 0, 53, 0, 8, 0, 0]);
    ether(0x86dd, &h)
}

/// An ARP request from `sha`/`spa` asking for `tpa`, sent from `sha`.
pub fn arp(sha: [u8; 6], spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&sha);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f.extend_from_slice(&sha);
    f.extend_from_slice(&spa);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&tpa);
    f
}

/// A read-only view of an Ethernet/IPv4 frame.
pub struct View<'a>(pub &'a [u8]);

impl View<'_> {
    pub fn dst_mac(&self) -> [u8; 6] {
        self.0[0..6].try_into().expect("6 bytes")
    }
    pub fn src_mac(&self) -> [u8; 6] {
        self.0[6..12].try_into().expect("6 bytes")
    }
    fn ihl(&self) -> usize {
        usize::from(self.0[ETH_HLEN] & 0x0f) * 4
    }
    fn l4(&self) -> &[u8] {
        let tot = usize::from(u16::from_be_bytes([self.0[16], self.0[17]]));
        &self.0[ETH_HLEN + self.ihl()..ETH_HLEN + tot]
    }
    pub fn proto(&self) -> u8 {
        self.0[ETH_HLEN + 9]
    }
    pub fn src(&self) -> Addr {
        let ip = self.0[ETH_HLEN + 12..ETH_HLEN + 16]
            .try_into()
            .expect("4 bytes");
        (ip, u16::from_be_bytes([self.l4()[0], self.l4()[1]]))
    }
    pub fn dst(&self) -> Addr {
        let ip = self.0[ETH_HLEN + 16..ETH_HLEN + 20]
            .try_into()
            .expect("4 bytes");
        (ip, u16::from_be_bytes([self.l4()[2], self.l4()[3]]))
    }
    pub fn udp_csum(&self) -> u16 {
        u16::from_be_bytes([self.l4()[6], self.l4()[7]])
    }
    pub fn ip_id(&self) -> u16 {
        u16::from_be_bytes([self.0[ETH_HLEN + 4], self.0[ETH_HLEN + 5]])
    }
    fn ip_addrs(&self) -> ([u8; 4], [u8; 4]) {
        let h = &self.0[ETH_HLEN..];
        (
            h[12..16].try_into().expect("4 bytes"),
            h[16..20].try_into().expect("4 bytes"),
        )
    }
    /// Source and destination addresses (for packets without ports).
    pub fn addrs(&self) -> ([u8; 4], [u8; 4]) {
        self.ip_addrs()
    }
    /// ICMP type and the echo identifier field.
    pub fn icmp(&self) -> (u8, u16) {
        let l4 = self.l4();
        (l4[0], u16::from_be_bytes([l4[4], l4[5]]))
    }
    /// The quoted packet of an ICMP error: its addresses and ports, and whether its
    /// IPv4 header checksum holds.
    pub fn quoted(&self) -> (Addr, Addr, bool) {
        let q = &self.l4()[8..];
        let ihl = usize::from(q[0] & 0x0f) * 4;
        let ports = &q[ihl..];
        let src = (
            q[12..16].try_into().expect("4 bytes"),
            u16::from_be_bytes([ports[0], ports[1]]),
        );
        let dst = (
            q[16..20].try_into().expect("4 bytes"),
            u16::from_be_bytes([ports[2], ports[3]]),
        );
        (src, dst, checksum(&[&q[..ihl]]) == 0)
    }

    /// Check the IPv4 header checksum and the L4 checksum from scratch.
    pub fn verify_checksums(&self) -> Result<(), String> {
        let h = &self.0[ETH_HLEN..ETH_HLEN + self.ihl()];
        if checksum(&[h]) != 0 {
            return Err(format!(
                "bad IPv4 header checksum {:#06x}",
                u16::from_be_bytes([h[10], h[11]])
            ));
        }
        let (src, dst) = self.ip_addrs();
        let proto = self.proto();
        let l4 = self.l4();
        if proto == 1 {
            return match checksum(&[l4]) {
                0 => Ok(()),
                c => Err(format!("bad ICMP checksum (residue {c:#06x})")),
            };
        }
        if proto == 17 && self.udp_csum() == 0 {
            return Ok(());
        }
        let len = (l4.len() as u16).to_be_bytes();
        match checksum(&[&src, &dst, &[0, proto], &len, l4]) {
            0 => Ok(()),
            c => Err(format!("bad L4 checksum (residue {c:#06x})")),
        }
    }
}

/// An IPv6 extension header in front of the upper layer (`ipv6_icmp`).
#[derive(Clone, Copy)]
pub enum Ext {
    /// Destination options holding only padding.
    DestOpts,
    /// A fragment header: offset in 8-byte units, more fragments follow.
    Fragment { offset: u16, more: bool },
}

/// `ICMPv6`'s next-header number.
const NEXT_ICMPV6: u8 = 58;

impl Ext {
    /// The next-header number that names this header.
    fn number(&self) -> u8 {
        match self {
            Self::DestOpts => 60,
            Self::Fragment { .. } => 44,
        }
    }
}

/// Ethernet (from `src_mac` to the multicast MAC of `dst` or `dst_mac`) + IPv6 with hop
/// limit 255 (as neighbour discovery must have) from `src` to `dst`, the extension
/// headers `ext`, then the `ICMPv6` message `icmp` with its checksum filled in.
pub fn ipv6_icmp(
    (src_mac, dst_mac): ([u8; 6], [u8; 6]),
    (src, dst): ([u8; 16], [u8; 16]),
    ext: &[Ext],
    icmp: &[u8],
) -> Vec<u8> {
    let mut msg = icmp.to_vec();
    let len = (msg.len() as u32).to_be_bytes();
    let c = checksum(&[&src, &dst, &len, &[0, 0, 0, NEXT_ICMPV6], &msg]);
    msg[2..4].copy_from_slice(&c.to_be_bytes());
    let number = |e: Option<&Ext>| e.map_or(NEXT_ICMPV6, Ext::number);
    let mut chain = Vec::new();
    for (i, e) in ext.iter().enumerate() {
        let next = number(ext.get(i + 1));
        match *e {
            Ext::DestOpts => chain.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]),
            Ext::Fragment { offset, more } => {
                let field = (offset << 3) | u16::from(more);
                chain.extend_from_slice(&[next, 0]);
                chain.extend_from_slice(&field.to_be_bytes());
                chain.extend_from_slice(&0x1234_5678u32.to_be_bytes());
            }
        }
    }
    let first = number(ext.first());
    let payload_len = (chain.len() + msg.len()) as u16;
    let mut f = dst_mac.to_vec();
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&0x86ddu16.to_be_bytes());
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&payload_len.to_be_bytes());
    f.extend_from_slice(&[first, 255]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&chain);
    f.extend_from_slice(&msg);
    f
}

/// The Ethernet address IPv6 multicast group `group` goes to.
pub fn ipv6_multicast_mac(group: [u8; 16]) -> [u8; 6] {
    [0x33, 0x33, group[12], group[13], group[14], group[15]]
}

/// The link-local address the kernel derives from `mac` (modified EUI-64).
pub fn link_local(mac: [u8; 6]) -> [u8; 16] {
    [
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        mac[0] ^ 2,
        mac[1],
        mac[2],
        0xff,
        0xfe,
        mac[3],
        mac[4],
        mac[5],
    ]
}

/// The solicited-node multicast group of `ip` (`ff02::1:ffXX:XXXX`), where neighbour
/// solicitations for it go.
pub fn solicited_node(ip: [u8; 16]) -> [u8; 16] {
    let mut g = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 0];
    g[13..].copy_from_slice(&ip[13..]);
    g
}

/// A neighbour discovery option: `kind`, its length in units of 8 bytes, `body`.
pub fn nd_option(kind: u8, body: &[u8]) -> Vec<u8> {
    let len = (2 + body.len()).div_ceil(8);
    let mut o = vec![kind, len as u8];
    o.extend_from_slice(body);
    o.resize(len * 8, 0);
    o
}

/// A neighbour solicitation (135) for `target`, or an unsolicited advertisement (136,
/// override flag), with the options `opts` (checksum left to `ipv6_icmp`).
pub fn neighbour(kind: u8, target: [u8; 16], opts: &[Vec<u8>]) -> Vec<u8> {
    let flags = if kind == 136 { 0x20 } else { 0 };
    let mut m = icmpv6(kind, &[flags, 0, 0, 0]);
    m.extend_from_slice(&target);
    for o in opts {
        m.extend_from_slice(o);
    }
    m
}

/// All-nodes, link-local scope (`ff02::1`).
pub const IPV6_ALL_NODES: [u8; 16] = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

/// An `ICMPv6` router advertisement (checksum left to `ipv6_icmp`): a default router for
/// 30 minutes, announcing `prefix`/64 for address autoconfiguration.
pub fn router_advert(prefix: [u8; 16]) -> Vec<u8> {
    let mut m = vec![134, 0, 0, 0, 64, 0];
    m.extend_from_slice(&1800u16.to_be_bytes());
    m.extend_from_slice(&[0; 8]);
    // Prefix information: on-link and autonomous, valid and preferred for an hour.
    m.extend_from_slice(&[3, 4, 64, 0xc0]);
    m.extend_from_slice(&3600u32.to_be_bytes());
    m.extend_from_slice(&3600u32.to_be_bytes());
    m.extend_from_slice(&[0; 4]);
    m.extend_from_slice(&prefix);
    m
}

/// An `ICMPv6` message of `kind` with four bytes of body (an echo request's identifier
/// and sequence, a solicitation's reserved field).
pub fn icmpv6(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![kind, 0, 0, 0];
    m.extend_from_slice(body);
    m
}
