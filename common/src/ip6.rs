//! IPv6 addresses as the datapath keeps them.

/// An IPv6 address as it sits in the packet (network order), held in four words so the
/// datapath compares, copies and hashes it a word at a time (a byte array's `==` is a
/// `memcmp` the BPF target has no inline expansion for). Key of `endpoints6_v1`.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, bytemuck::Pod, bytemuck::Zeroable,
)]
pub struct Ip6 {
    /// The address's bytes 4i..4i+4, network order.
    pub words: [u32; 4],
}

impl Ip6 {
    pub const UNSPECIFIED: Ip6 = Ip6 { words: [0; 4] };
    pub const LOOPBACK: Ip6 = Ip6::from_octets([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);

    pub const fn from_octets(o: [u8; 16]) -> Self {
        const fn word(o: &[u8; 16], i: usize) -> u32 {
            u32::from_ne_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]])
        }
        Ip6 {
            words: [word(&o, 0), word(&o, 4), word(&o, 8), word(&o, 12)],
        }
    }

    pub fn octets(&self) -> [u8; 16] {
        let mut o = [0u8; 16];
        let mut i = 0;
        while i < 4 {
            let b = self.words[i].to_ne_bytes();
            o[4 * i] = b[0];
            o[4 * i + 1] = b[1];
            o[4 * i + 2] = b[2];
            o[4 * i + 3] = b[3];
            i += 1;
        }
        o
    }

    /// Equality without a branch per word (what the datapath uses).
    #[inline(always)]
    pub fn same(&self, other: &Ip6) -> bool {
        let a = self.words;
        let b = other.words;
        (a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3]) == 0
    }

    /// `::`, the source of duplicate address detection and of MLD reports before an
    /// interface has an address.
    #[inline(always)]
    pub fn is_unspecified(&self) -> bool {
        self.same(&Self::UNSPECIFIED)
    }

    /// The first two bytes, as they are written (`0xfe80` for link-local).
    #[inline(always)]
    fn head(&self) -> u16 {
        let b = self.words[0].to_ne_bytes();
        u16::from_be_bytes([b[0], b[1]])
    }

    /// `ff00::/8`.
    #[inline(always)]
    pub fn is_multicast(&self) -> bool {
        self.head() >> 8 == 0xff
    }

    /// `fe80::/10`.
    #[inline(always)]
    pub fn is_link_local(&self) -> bool {
        self.head() & 0xffc0 == 0xfe80
    }

    /// The link-local address the kernel derives from `mac` (modified EUI-64, RFC 4291
    /// appendix A), `fe80::` followed by the MAC with `ff:fe` in its middle and the
    /// universal/local bit flipped: what a container's interface has unless it was told
    /// to generate another.
    pub const fn link_local_of(mac: [u8; 6]) -> Self {
        Self::from_octets([
            0xfe,
            0x80,
            0,
            0,
            0,
            0,
            0,
            0,
            mac[0] ^ 0x02,
            mac[1],
            mac[2],
            0xff,
            0xfe,
            mac[3],
            mac[4],
            mac[5],
        ])
    }
}

#[cfg(feature = "user")]
impl From<core::net::Ipv6Addr> for Ip6 {
    fn from(ip: core::net::Ipv6Addr) -> Self {
        Self::from_octets(ip.octets())
    }
}

#[cfg(feature = "user")]
impl From<Ip6> for core::net::Ipv6Addr {
    fn from(ip: Ip6) -> Self {
        Self::from(ip.octets())
    }
}

crate::pod::aya_pod!(Ip6);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octets_round_trip_and_classify() {
        let o = [0xfd, 0, 0xbe, 0xef, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4];
        let a = Ip6::from_octets(o);
        assert_eq!(a.octets(), o);
        assert!(!a.is_link_local() && !a.is_multicast() && !a.is_unspecified());
        assert!(Ip6::UNSPECIFIED.is_unspecified());
        let mut ll = [0u8; 16];
        ll[0] = 0xfe;
        ll[1] = 0xbf; // fe80::/10 reaches febf
        assert!(Ip6::from_octets(ll).is_link_local());
        ll[1] = 0xc0; // site-local, not link-local
        assert!(!Ip6::from_octets(ll).is_link_local());
        let mut mc = [0u8; 16];
        mc[0] = 0xff;
        mc[1] = 0x02;
        assert!(Ip6::from_octets(mc).is_multicast());
        assert!(a.same(&a) && !a.same(&Ip6::UNSPECIFIED));
    }

    #[test]
    fn link_local_follows_modified_eui64() {
        // What the kernel gives a veth whose MAC is 02:42:ac:11:00:04.
        let ll = Ip6::link_local_of([0x02, 0x42, 0xac, 0x11, 0x00, 0x04]);
        let want: core::net::Ipv6Addr = "fe80::42:acff:fe11:4".parse().expect("address");
        assert_eq!(ll.octets(), want.octets());
        assert!(ll.is_link_local());
    }

    #[cfg(feature = "user")]
    #[test]
    fn converts_from_and_to_std() {
        let ip: core::net::Ipv6Addr = "fd00:beef::4".parse().expect("address");
        let a = Ip6::from(ip);
        assert_eq!(a.octets(), ip.octets());
        assert_eq!(core::net::Ipv6Addr::from(a), ip);
    }
}
