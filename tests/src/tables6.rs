//! The IPv6 side of the NAT tables' host: a ULA network masqueraded (NAT66) and a routed
//! global one on the fixture's bridge port, and TCP and UDP 8038 published on every host
//! address.
use aya::maps::lpm_trie::Key;
use common::{
    Backend, Be16, Endpoint, Ip6, NET_ROUTED, Network, PORT_V6, PROTO_TCP, PROTO_UDP, PublishedKey,
};

use crate::{
    fixture::{CONTAINER_MAC, Fixture},
    tables::{PORTS, setup},
};

const fn addr(prefix: [u8; 6], last: u8) -> [u8; 16] {
    let mut a = [0u8; 16];
    let mut i = 0;
    while i < 6 {
        a[i] = prefix[i];
        i += 1;
    }
    a[15] = last;
    a
}
pub const ULA: [u8; 6] = [0xfd, 0, 0, 0x17, 0, 0];
pub const GLOBAL: [u8; 6] = [0x20, 0x01, 0x0d, 0xb8, 0, 0x42];
/// The host on its uplink, the outside server beyond the uplink's router, the router.
pub const HOST6: [u8; 16] = addr([0x20, 0x01, 0x0d, 0xb8, 0, 1], 1);
pub const SERVER6: [u8; 16] = addr([0x20, 0x01, 0x0d, 0xb8, 0, 2], 9);
pub const ROUTER6: [u8; 16] = addr([0x20, 0x01, 0x0d, 0xb8, 0, 1], 2);
/// The two networks' gateways (the host's addresses).
pub const ULA_GW: [u8; 16] = addr(ULA, 1);
pub const GLOBAL_GW: [u8; 16] = addr(GLOBAL, 1);
/// A container of the ULA (NAT66) network and one of the routed global network.
pub const C1_6: [u8; 16] = addr(ULA, 4);
pub const R1: [u8; 16] = addr(GLOBAL, 7);

/// An address of `prefix`'s /64 ending in `last`.
pub const fn in_prefix(prefix: [u8; 6], last: u8) -> [u8; 16] {
    addr(prefix, last)
}

/// `tables::setup`, then: the uplink's address and the two networks' gateways are the
/// host's; `fd00:0:0:17::/64` is a NAT network, `2001:db8:42::/64` a routed one, both on the
/// fixture's bridge port; TCP and UDP 8038 on every host address lead to C1's 8080, TCP
/// 8443 opens R1's own port 8443.
pub fn setup6(fx: &mut Fixture) {
    setup(fx, PORTS);
    let bridge = fx.bridge;
    let m = &mut fx.dp.maps;
    for a in [HOST6, ULA_GW, GLOBAL_GW] {
        m.host_ips6
            .insert(Ip6::from_octets(a), 0, 0)
            .expect("host address");
    }
    for (prefix, flags) in [(ULA, 0), (GLOBAL, NET_ROUTED)] {
        let key = Key::new(64, Ip6::from_octets(addr(prefix, 0)));
        let net = Network { bridge, flags };
        m.subnets6.insert(&key, net, 0).expect("subnet");
    }
    for a in [C1_6, R1] {
        let ep = Endpoint::new(bridge, bridge, CONTAINER_MAC, 0);
        m.endpoints6
            .insert(Ip6::from_octets(a), ep, 0)
            .expect("endpoint");
    }
    let mut port = m.ports.get(&bridge, 0).expect("port");
    port.flags |= PORT_V6;
    m.ports.insert(bridge, port, 0).expect("port");
    for (proto, host_port, backend, backend_port) in [
        (PROTO_TCP, 8038, C1_6, 8080),
        (PROTO_UDP, 8038, C1_6, 8080),
        (PROTO_TCP, 8443, R1, 8443),
    ] {
        let key = PublishedKey::new(Ip6::UNSPECIFIED, Be16::new(host_port), proto);
        let b = Backend::new(Ip6::from_octets(backend), Be16::new(backend_port));
        m.published6.insert(key, b, 0).expect("publish");
    }
}
