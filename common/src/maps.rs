//! Keys and values of the configuration maps the daemon fills.

/// Key of `published_v1`: a published host port.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublishedKey {
    /// Host IPv4 address, network order; 0 means every address in `host_ips_v1`.
    pub host_ip: u32,
    /// Host port, network order.
    pub port: u16,
    /// `PROTO_TCP` or `PROTO_UDP`.
    pub proto: u8,
    pub _pad: u8,
}

/// Value of `published_v1`: where a published port leads.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Backend {
    /// Backend (container) IPv4 address, network order.
    pub ip: u32,
    /// Backend port, network order.
    pub port: u16,
    pub _pad: u16,
}

/// Value of `endpoints_v1` (key: container IPv4, network order): a container whose
/// host-side veth is known, so traffic can be handed straight to its namespace.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// Host-side veth ifindex, host order.
    pub ifindex: u32,
    /// The container's MAC address, wire order.
    pub mac: [u8; 6],
    /// Network id (one per managed bridge), host order.
    pub network: u16,
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain #[repr(C)] integers with explicit padding fields, no implicit padding.
    unsafe impl aya::Pod for super::PublishedKey {}
    unsafe impl aya::Pod for super::Backend {}
    unsafe impl aya::Pod for super::Endpoint {}
}

#[cfg(test)]
mod tests {
    use core::mem::{offset_of, size_of};

    use super::*;

    #[test]
    fn layouts_match_the_datapath() {
        assert_eq!(size_of::<PublishedKey>(), 8);
        assert_eq!(offset_of!(PublishedKey, port), 4);
        assert_eq!(offset_of!(PublishedKey, proto), 6);
        assert_eq!(size_of::<Backend>(), 8);
        assert_eq!(offset_of!(Backend, port), 4);
        assert_eq!(size_of::<Endpoint>(), 12);
        assert_eq!(offset_of!(Endpoint, mac), 4);
        assert_eq!(offset_of!(Endpoint, network), 10);
    }
}
