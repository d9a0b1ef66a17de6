//! `BPF_PROG_TEST_RUN` for `from_container`'s IPv6: anti-spoofing of sources (registered,
//! bound from the first packet, the MAC's link-local, `::` only switched), neighbour
//! discovery that cannot poison a neighbour's cache, and router advertisements, however
//! wrapped, that never leave a container; off the wire, no claim on an endpoint's address.
use aya::maps::lpm_trie::Key;
use bpfnet::datapath::Hook;
use bpfnet_tests::{
    fixture::{Fixture, TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT, with_fixture},
    packet::{
        ETH_HLEN, Ext, IPV6_ALL_NODES, icmpv6, ipv6_icmp, ipv6_multicast_mac, ipv6_udp, link_local,
        nd_option, neighbour, router_advert, solicited_node, udp,
    },
    require_root,
};
use common::{Be32, EP_LEARNED, Endpoint, Ip6, Network, PORT_ENFORCE, PORT_V6, Port, Reason};

const BRIDGE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01]; // frames' destination: routed
const C1_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02]; // the port under test's endpoint
const C2_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x05]; // a neighbour on another port
const C1_V4: [u8; 4] = [172, 17, 0, 9]; // not one of the fixture's registered ones
/// The neighbour's host-side veth (not the port under test).
const C2_PORT: u32 = 7;

const fn v6(last: u8) -> [u8; 16] {
    [0xfd, 0, 0, 0xa, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, last]
}
const C1: [u8; 16] = v6(4);
const C2: [u8; 16] = v6(5);
/// In the network's subnet, nobody's.
const FREE: [u8; 16] = v6(9);
/// The host's address on the network (the gateway).
const GATEWAY: [u8; 16] = v6(1);
/// Outside every managed subnet.
const OUTSIDE: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

use Reason::*;

/// The port under test (the fixture's veth) on network A with `flags`; A's IPv6
/// subnet `fd00:0:0:a::/64` and IPv4 172.17.0.0/16; the neighbour's address registered on
/// its own port.
fn network(fx: &mut Fixture, flags: u32) {
    let net_a = net_a(fx);
    let m = &mut fx.dp.maps;
    let port = Port {
        network: net_a,
        flags,
        bridge_mac: BRIDGE_MAC,
        mac: if flags == 0 { [0; 6] } else { C1_MAC },
        ip: Be32::ZERO,
    };
    m.ports.insert(fx.bridge, port, 0).expect("port");
    let net = Network {
        bridge: net_a,
        flags: 0,
    };
    let prefix = Key::new(64, Ip6::from_octets(v6(0)));
    m.subnets6.insert(&prefix, net, 0).expect("subnet6");
    let v4 = Key::new(16, Be32::from_bytes([172, 17, 0, 0]));
    m.subnets.insert(&v4, net, 0).expect("subnet");
    m.host_ips6
        .insert(Ip6::from_octets(GATEWAY), 0, 0)
        .expect("host address");
    endpoint6(fx, C2, C2_PORT, C2_MAC);
}

/// Network A: a real device (the fixture's uplink end), so a frame flooded to it can be.
fn net_a(fx: &Fixture) -> u32 {
    fx.uplink
}

fn endpoint6(fx: &mut Fixture, ip: [u8; 16], ifindex: u32, mac: [u8; 6]) {
    let e = Endpoint::new(ifindex, net_a(fx), mac, 0);
    fx.dp
        .maps
        .endpoints6
        .insert(Ip6::from_octets(ip), e, 0)
        .expect("endpoint6");
}

/// A UDP datagram from `src` at `src_mac` to `dst` at `dst_mac`.
fn datagram(src_mac: [u8; 6], src: [u8; 16], dst_mac: [u8; 6], dst: [u8; 16]) -> Vec<u8> {
    let mut f = ipv6_udp(src, dst);
    f[0..6].copy_from_slice(&dst_mac);
    f[6..12].copy_from_slice(&src_mac);
    f
}

fn expect(fx: &mut Fixture, name: &str, frame: &[u8], verdict: u32, counted: &[Reason]) {
    let (v, out) = fx.run_counted(name, Hook::FromContainer, frame, counted);
    assert_eq!(v, verdict, "{name}: verdict");
    if verdict != TC_ACT_SHOT {
        assert_eq!(out, frame, "{name}: frame untouched");
    }
}

/// A registered container may send only from its own IPv6 addresses (and its MAC's
/// link-local one), and may not advertise or claim a neighbour's address or MAC.
#[test]
fn ipv6_sources_and_neighbour_discovery_are_the_senders_own() {
    if !require_root() {
        return;
    }
    with_fixture("v6spoof", 1024, |fx| {
        network(fx, PORT_ENFORCE | PORT_V6);
        let me = fx.bridge;
        endpoint6(fx, C1, me, C1_MAC);
        let ll = link_local(C1_MAC);
        let lladdr = |kind: u8, mac: [u8; 6]| nd_option(kind, &mac);
        let nd = |src: [u8; 16], dst: [u8; 16], msg: Vec<u8>| {
            ipv6_icmp((C1_MAC, ipv6_multicast_mac(dst)), (src, dst), &[], &msg)
        };
        let na = |target: [u8; 16], opts: &[Vec<u8>]| {
            nd(ll, IPV6_ALL_NODES, neighbour(136, target, opts))
        };
        let ns = |src: [u8; 16], target: [u8; 16], opts: &[Vec<u8>]| {
            nd(src, solicited_node(target), neighbour(135, target, opts))
        };
        let nonce = nd_option(14, &[1, 2, 3, 4, 5, 6]);
        let cases: Vec<(&str, Vec<u8>, u32, Reason)> = vec![
            (
                "its own address, switched",
                datagram(C1_MAC, C1, C2_MAC, C2),
                TC_ACT_REDIRECT,
                ForwardLocal,
            ),
            (
                "its MAC's link-local address",
                datagram(C1_MAC, ll, C2_MAC, C2),
                TC_ACT_REDIRECT,
                ForwardLocal,
            ),
            (
                "its own address, routed where no route leads: left to the host",
                datagram(C1_MAC, C1, BRIDGE_MAC, OUTSIDE),
                TC_ACT_OK,
                Pass,
            ),
            (
                "its link-local address, routed",
                datagram(C1_MAC, ll, BRIDGE_MAC, OUTSIDE),
                TC_ACT_SHOT,
                DropIpv6,
            ),
            (
                "its own address to the host's",
                datagram(C1_MAC, C1, BRIDGE_MAC, GATEWAY),
                TC_ACT_OK,
                Pass,
            ),
            (
                "its link-local address to the host's",
                datagram(C1_MAC, ll, BRIDGE_MAC, link_local(BRIDGE_MAC)),
                TC_ACT_OK,
                Pass,
            ),
            (
                "a neighbour's address to the host's",
                datagram(C1_MAC, C2, BRIDGE_MAC, GATEWAY),
                TC_ACT_SHOT,
                DropSpoof,
            ),
            (
                "a neighbour's address",
                datagram(C1_MAC, C2, C2_MAC, C2),
                TC_ACT_SHOT,
                DropSpoof,
            ),
            (
                "a free address of its subnet (its addresses are known)",
                datagram(C1_MAC, FREE, C2_MAC, C2),
                TC_ACT_SHOT,
                DropSpoof,
            ),
            (
                "an address outside its network",
                datagram(C1_MAC, OUTSIDE, C2_MAC, C2),
                TC_ACT_SHOT,
                DropSpoof,
            ),
            (
                "another MAC's link-local address",
                datagram(C1_MAC, link_local(C2_MAC), C2_MAC, C2),
                TC_ACT_SHOT,
                DropSpoof,
            ),
            (
                "a multicast source",
                datagram(C1_MAC, IPV6_ALL_NODES, C2_MAC, C2),
                TC_ACT_SHOT,
                DropSpoof,
            ),
            (
                "its own address from another MAC",
                datagram(C2_MAC, C1, C2_MAC, C2),
                TC_ACT_SHOT,
                DropSpoof,
            ),
            (
                "duplicate address detection from ::",
                ns([0; 16], C1, &[]),
                TC_ACT_REDIRECT,
                ForwardBridge,
            ),
            (
                ":: routed",
                datagram(C1_MAC, [0; 16], BRIDGE_MAC, OUTSIDE),
                TC_ACT_SHOT,
                DropSpoof,
            ),
            (
                "a solicitation naming its MAC",
                ns(ll, C2, &[lladdr(1, C1_MAC)]),
                TC_ACT_REDIRECT,
                ForwardBridge,
            ),
            (
                "a solicitation naming a neighbour's MAC",
                ns(ll, C2, &[lladdr(1, C2_MAC)]),
                TC_ACT_SHOT,
                DropNeighSpoof,
            ),
            (
                "an advertisement of its own address",
                na(C1, &[lladdr(2, C1_MAC)]),
                TC_ACT_REDIRECT,
                ForwardBridge,
            ),
            (
                "an advertisement of its link-local address, behind a nonce",
                na(ll, &[nonce.clone(), lladdr(2, C1_MAC)]),
                TC_ACT_REDIRECT,
                ForwardBridge,
            ),
            (
                "an advertisement of a neighbour's address",
                na(C2, &[lladdr(2, C1_MAC)]),
                TC_ACT_SHOT,
                DropNeighSpoof,
            ),
            (
                "an advertisement of the gateway's link-local address",
                na(link_local(BRIDGE_MAC), &[]),
                TC_ACT_SHOT,
                DropNeighSpoof,
            ),
            (
                "an advertisement of its address at a neighbour's MAC",
                na(C1, &[lladdr(2, C2_MAC)]),
                TC_ACT_SHOT,
                DropNeighSpoof,
            ),
            (
                "a neighbour's MAC hidden behind three options",
                na(
                    C1,
                    &[
                        nonce.clone(),
                        nonce.clone(),
                        nonce.clone(),
                        lladdr(2, C2_MAC),
                    ],
                ),
                TC_ACT_SHOT,
                DropNeighSpoof,
            ),
            (
                "more options than bpfnet walks",
                na(
                    C1,
                    &[
                        nonce.clone(),
                        nonce.clone(),
                        nonce.clone(),
                        nonce.clone(),
                        nonce,
                    ],
                ),
                TC_ACT_SHOT,
                DropMalformed,
            ),
            (
                "an option of length zero",
                na(C1, &[vec![2, 0, 0, 0, 0, 0, 0, 0]]),
                TC_ACT_SHOT,
                DropMalformed,
            ),
            (
                "an advertisement cut before its target",
                na(C1, &[])[..ETH_HLEN + 40 + 12].to_vec(),
                TC_ACT_SHOT,
                DropMalformed,
            ),
        ];
        for (name, frame, verdict, reason) in cases {
            expect(fx, name, &frame, verdict, &[reason]);
        }
    });
}

/// A veth nobody registered binds the first IPv6 address it sends from, when that lies
/// in its network's IPv6 subnet and is nobody's; from then on it may send from no other.
/// Its IPv4 address is still bound from its first IPv4 packet, and the other way round.
#[test]
fn a_new_veths_first_ipv6_source_binds_it() {
    if !require_root() {
        return;
    }
    with_fixture("v6bind", 1024, |fx| {
        network(fx, 0);
        let me = fx.bridge;
        expect(
            fx,
            "an address outside its network",
            &datagram(C1_MAC, OUTSIDE, C2_MAC, C2),
            TC_ACT_SHOT,
            &[DropUnbound],
        );
        expect(
            fx,
            "a neighbour's address",
            &datagram(C1_MAC, C2, C2_MAC, C2),
            TC_ACT_SHOT,
            &[DropSpoof],
        );
        expect(
            fx,
            "its first address",
            &datagram(C1_MAC, C1, C2_MAC, C2),
            TC_ACT_REDIRECT,
            &[EndpointLearned, ForwardLocal],
        );
        let bound = fx
            .dp
            .maps
            .endpoints6
            .get(&Ip6::from_octets(C1), 0)
            .expect("bound");
        assert_eq!(
            (bound.ifindex, bound.network, bound.mac, bound.flags),
            (me, net_a(fx), C1_MAC, EP_LEARNED)
        );
        let port = fx.dp.maps.ports.get(&me, 0).expect("port");
        assert_eq!((port.flags, port.mac), (PORT_V6, C1_MAC));
        expect(
            fx,
            "its address again",
            &datagram(C1_MAC, C1, C2_MAC, C2),
            TC_ACT_REDIRECT,
            &[ForwardLocal],
        );
        expect(
            fx,
            "a second free address",
            &datagram(C1_MAC, FREE, C2_MAC, C2),
            TC_ACT_SHOT,
            &[DropSpoof],
        );
        expect(
            fx,
            "its address from another MAC",
            &datagram(C2_MAC, C1, C2_MAC, C2),
            TC_ACT_SHOT,
            &[DropSpoof],
        );
        // IPv4 binds on its own: the port's IPv4 address was not known.
        let mut v4 = udp((C1_V4, 5000), ([172, 17, 0, 5], 53), b"x", true);
        v4[0..6].copy_from_slice(&C2_MAC);
        v4[6..12].copy_from_slice(&C1_MAC);
        expect(
            fx,
            "its first IPv4 packet",
            &v4,
            TC_ACT_REDIRECT,
            &[EndpointLearned, ForwardBridge],
        );
        let port = fx.dp.maps.ports.get(&me, 0).expect("port");
        assert_eq!(port.flags, PORT_V6 | PORT_ENFORCE);
    });
}

/// A container's IPv6 router advertisement or redirect is dropped however it is
/// wrapped (behind extension headers, in a first fragment), and so is fragmented
/// neighbour discovery or a header chain bpfnet cannot walk to its end; the rest of a
/// network's IPv6 (solicitations, echo, later fragments) is still switched.
#[test]
fn router_advertisements_from_containers_are_dropped_however_wrapped() {
    if !require_root() {
        return;
    }
    with_fixture("ra", 1024, |fx| {
        network(fx, PORT_ENFORCE | PORT_V6);
        let link_local = link_local(C1_MAC);
        let group = IPV6_ALL_NODES;
        let ra = router_advert([0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let send = |ext: &[Ext], msg: &[u8]| {
            ipv6_icmp(
                (C1_MAC, ipv6_multicast_mac(group)),
                (link_local, group),
                ext,
                msg,
            )
        };
        let first = Ext::Fragment {
            offset: 0,
            more: true,
        };
        let opts = |n: usize| vec![Ext::DestOpts; n];
        let solicit = icmpv6(135, &[0; 20]);
        let cases: Vec<(&str, Vec<u8>, u32, Reason)> = vec![
            (
                "a router advertisement",
                send(&[], &ra),
                TC_ACT_SHOT,
                DropRouterAdvert,
            ),
            (
                "a router advertisement behind two destination options",
                send(&opts(2), &ra),
                TC_ACT_SHOT,
                DropRouterAdvert,
            ),
            (
                "a router advertisement in a first fragment",
                send(&[first], &ra),
                TC_ACT_SHOT,
                DropRouterAdvert,
            ),
            (
                "a redirect",
                send(&[], &icmpv6(137, &[0; 36])),
                TC_ACT_SHOT,
                DropRouterAdvert,
            ),
            (
                "a neighbour solicitation in a fragment",
                send(&[first], &solicit),
                TC_ACT_SHOT,
                DropRouterAdvert,
            ),
            (
                "a router advertisement behind six extension headers",
                send(&[opts(5), vec![first]].concat(), &ra),
                TC_ACT_SHOT,
                DropRouterAdvert,
            ),
            (
                "a chain longer than bpfnet walks",
                send(&opts(7), &ra),
                TC_ACT_SHOT,
                DropMalformed,
            ),
            (
                "a chain cut short",
                send(&opts(1), &ra)[..ETH_HLEN + 40 + 4].to_vec(),
                TC_ACT_SHOT,
                DropMalformed,
            ),
            (
                "a neighbour solicitation",
                send(&[], &solicit),
                TC_ACT_REDIRECT,
                ForwardBridge,
            ),
            (
                "a router solicitation",
                send(&[], &icmpv6(133, &[0; 4])),
                TC_ACT_REDIRECT,
                ForwardBridge,
            ),
            (
                "an echo request in a first fragment",
                send(&[first], &icmpv6(128, &[0, 1, 0, 1])),
                TC_ACT_REDIRECT,
                ForwardBridge,
            ),
            (
                "a later fragment",
                send(
                    &[Ext::Fragment {
                        offset: 100,
                        more: false,
                    }],
                    &ra,
                ),
                TC_ACT_REDIRECT,
                ForwardBridge,
            ),
        ];
        for (name, frame, verdict, reason) in cases {
            expect(fx, name, &frame, verdict, &[reason]);
        }
    });
}

/// Off the wire (issue 27: a LAN bridged to an uplink), no one may claim a local
/// endpoint's IPv6 address: an advertisement for it is `drop-neigh-spoof`, a packet from
/// it `drop-spoof`; a LAN host's own are left alone.
#[test]
fn a_neighbour_off_the_wire_cannot_claim_an_endpoints_ipv6_address() {
    if !require_root() {
        return;
    }
    with_fixture("v6wire", 1024, |fx| {
        network(fx, PORT_ENFORCE | PORT_V6);
        const LAN_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xa0, 0x02];
        let ll = link_local(LAN_MAC);
        let na = |target: [u8; 16]| {
            let msg = neighbour(136, target, &[nd_option(2, &LAN_MAC)]);
            ipv6_icmp(
                (LAN_MAC, ipv6_multicast_mac(IPV6_ALL_NODES)),
                (ll, IPV6_ALL_NODES),
                &[],
                &msg,
            )
        };
        let cases: Vec<(&str, Vec<u8>, u32, Reason)> = vec![
            (
                "a LAN host's advertisement of its own address",
                na(ll),
                TC_ACT_OK,
                Pass,
            ),
            (
                "an advertisement of a free address",
                na(FREE),
                TC_ACT_OK,
                Pass,
            ),
            (
                "an advertisement of an endpoint's address",
                na(C2),
                TC_ACT_SHOT,
                DropNeighSpoof,
            ),
            (
                "a datagram from an endpoint's address",
                datagram(LAN_MAC, C2, BRIDGE_MAC, GATEWAY),
                TC_ACT_SHOT,
                DropSpoof,
            ),
            (
                "a datagram from a LAN host's address to the host's",
                datagram(LAN_MAC, ll, BRIDGE_MAC, link_local(BRIDGE_MAC)),
                TC_ACT_OK,
                Pass,
            ),
        ];
        for (name, frame, verdict, reason) in cases {
            let (v, _) = fx.run_counted(name, Hook::FromUplink, &frame, &[reason]);
            assert_eq!(v, verdict, "{name}: verdict");
        }
    });
}

/// Off the wire, no source inside a managed IPv6 prefix (issue 28): a NAT66 unique local
/// one and a routed global one are both the host's networks, so a packet from outside
/// claiming an address in them, anyone's or no one's, is `drop-spoof`; the same packets
/// from an outside address take their usual way.
#[test]
fn a_managed_ipv6_prefix_never_sends_from_outside() {
    if !require_root() {
        return;
    }
    with_fixture("v6src", 1024, |fx| {
        network(fx, PORT_ENFORCE | PORT_V6);
        const ROUTED: [u8; 16] = [
            0x20, 0x01, 0x0d, 0xb8, 0, 0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        let at = |last: u8| {
            let mut a = ROUTED;
            a[15] = last;
            a
        };
        let routed = Network {
            bridge: net_a(fx),
            flags: common::NET_ROUTED,
        };
        fx.dp
            .maps
            .subnets6
            .insert(&Key::new(64, Ip6::from_octets(ROUTED)), routed, 0)
            .expect("routed subnet6");
        let host: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        fx.dp
            .maps
            .host_ips6
            .insert(Ip6::from_octets(host), 0, 0)
            .expect("host address");
        let outside: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5];
        const WIRE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
        let cases: Vec<(&str, Vec<u8>, u32, Reason)> = vec![
            (
                "a datagram from a free unique local (NAT66) address to the host",
                datagram(WIRE_MAC, FREE, BRIDGE_MAC, host),
                TC_ACT_SHOT,
                DropSpoof,
            ),
            (
                "a datagram from a free routed address to the host",
                datagram(WIRE_MAC, at(9), BRIDGE_MAC, host),
                TC_ACT_SHOT,
                DropSpoof,
            ),
            (
                "a datagram from a routed address to a routed one",
                datagram(WIRE_MAC, at(9), BRIDGE_MAC, at(7)),
                TC_ACT_SHOT,
                DropSpoof,
            ),
            (
                "a datagram from outside to the host",
                datagram(WIRE_MAC, outside, BRIDGE_MAC, host),
                TC_ACT_OK,
                Pass,
            ),
            (
                "a datagram from outside to a routed address (the inbound policy)",
                datagram(WIRE_MAC, outside, BRIDGE_MAC, at(7)),
                TC_ACT_SHOT,
                DropInbound,
            ),
        ];
        for (name, frame, verdict, reason) in cases {
            let (v, _) = fx.run_counted(name, Hook::FromUplink, &frame, &[reason]);
            assert_eq!(v, verdict, "{name}: verdict");
        }
        assert!(
            fx.dp
                .maps
                .ct6
                .iter()
                .chain(fx.dp.maps.ct6_new.iter())
                .next()
                .is_none(),
            "no IPv6 flow from a forged source"
        );
    });
}
