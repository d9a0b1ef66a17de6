#![no_std]
//! What the bench and the floor program share: the next hop a flow is redirected to.
//! The program lives in main.rs; this library also lets the bench name the crate as a
//! dependency, so its embedded object is rebuilt when the floor changes.

/// Where a flow's packets go: out of `ifindex`, with these Ethernet addresses. The value
/// of the floor's flow and route maps.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hop {
    pub ifindex: u32,
    /// Destination then source MAC, as the Ethernet header holds them.
    pub macs: [u8; 12],
}

impl Hop {
    /// The bytes of the map value, as the program reads it (native order).
    pub fn to_bytes(&self) -> [u8; 16] {
        let mut b = [0; 16];
        b[..4].copy_from_slice(&self.ifindex.to_ne_bytes());
        b[4..].copy_from_slice(&self.macs);
        b
    }
}

const _: () = assert!(size_of::<Hop>() == 16);
