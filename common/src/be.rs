//! Network-order (big-endian) integers: the one place bytes change order.
//!
//! A map field that holds a value as it sits in the packet is a `Be16` or `Be32`, not a
//! plain integer with "network order" in a comment. Both are `#[repr(transparent)]` over
//! the integer, so a map's layout is the same as with the plain integer; the datapath
//! stores and compares the wire value as it is (`from_raw`, `raw`: no swap), and
//! userspace converts through `new`/`get` or the address conversions below.

/// A 16-bit value in network order (a port, an IP identification).
#[repr(transparent)]
#[derive(
    Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, bytemuck::Pod, bytemuck::Zeroable,
)]
pub struct Be16(u16);

/// A 32-bit value in network order (an IPv4 address, a fragment identification).
#[repr(transparent)]
#[derive(
    Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, bytemuck::Pod, bytemuck::Zeroable,
)]
pub struct Be32(u32);

macro_rules! be {
    ($be:ident, $int:ty) => {
        impl $be {
            /// Zero, in either order.
            pub const ZERO: Self = Self(0);

            /// `v`, given in host order.
            #[inline(always)]
            pub const fn new(v: $int) -> Self {
                Self(v.to_be())
            }

            /// The value in host order.
            #[inline(always)]
            pub const fn get(self) -> $int {
                <$int>::from_be(self.0)
            }

            /// The value as read from a packet or a map into an integer without a swap
            /// (what the datapath loads and stores).
            #[inline(always)]
            pub const fn from_raw(raw: $int) -> Self {
                Self(raw)
            }

            /// The integer as it is stored (network order, unswapped).
            #[inline(always)]
            pub const fn raw(self) -> $int {
                self.0
            }

            /// The bytes, as on the wire.
            #[inline(always)]
            pub const fn to_bytes(self) -> [u8; core::mem::size_of::<$int>()] {
                self.0.to_ne_bytes()
            }

            /// From bytes as on the wire.
            #[inline(always)]
            pub const fn from_bytes(b: [u8; core::mem::size_of::<$int>()]) -> Self {
                Self(<$int>::from_ne_bytes(b))
            }
        }

        impl core::fmt::Debug for $be {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                write!(f, "{}", self.get())
            }
        }
    };
}
be!(Be16, u16);
be!(Be32, u32);

#[cfg(feature = "user")]
impl From<core::net::Ipv4Addr> for Be32 {
    fn from(ip: core::net::Ipv4Addr) -> Self {
        Self::from_bytes(ip.octets())
    }
}

#[cfg(feature = "user")]
impl From<Be32> for core::net::Ipv4Addr {
    fn from(ip: Be32) -> Self {
        Self::from(ip.to_bytes())
    }
}

crate::pod::aya_pod!(Be16, Be32);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_wire_orders_round_trip() {
        let p = Be16::new(8080);
        assert_eq!(p.get(), 8080);
        assert_eq!(p.to_bytes(), [0x1f, 0x90]);
        assert_eq!(Be16::from_bytes([0x1f, 0x90]), p);
        assert_eq!(Be16::from_raw(p.raw()), p);
        let a = Be32::new(0xc000_0201);
        assert_eq!(a.to_bytes(), [192, 0, 2, 1]);
        assert_eq!(a.get(), 0xc000_0201);
        assert_eq!(Be32::from_bytes([192, 0, 2, 1]), a);
        assert_eq!(Be32::ZERO.raw(), 0);
        assert_eq!(size_of::<Be16>(), 2);
        assert_eq!(size_of::<Be32>(), 4);
    }

    #[test]
    fn debug_shows_host_order() {
        struct W([u8; 16], usize);
        impl core::fmt::Write for W {
            fn write_str(&mut self, s: &str) -> core::fmt::Result {
                self.0[self.1..self.1 + s.len()].copy_from_slice(s.as_bytes());
                self.1 += s.len();
                Ok(())
            }
        }
        let mut w = W([0; 16], 0);
        core::fmt::write(&mut w, format_args!("{:?}", Be16::new(443))).expect("write");
        assert_eq!(&w.0[..w.1], b"443");
    }

    #[cfg(feature = "user")]
    #[test]
    fn ipv4_converts_in_network_order() {
        let ip = core::net::Ipv4Addr::new(172, 17, 0, 4);
        let be = Be32::from(ip);
        assert_eq!(be.to_bytes(), [172, 17, 0, 4]);
        assert_eq!(be.get(), u32::from(ip));
        assert_eq!(core::net::Ipv4Addr::from(be), ip);
    }
}
