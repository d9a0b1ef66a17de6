//! `BPF_PROG_TEST_RUN` for the claims a veth nobody registered may make: its first IPv4
//! packet or ARP announcement, its first IPv6 packet or neighbour discovery, names the
//! address it is bound to, unless that is an address no container may have (the host's,
//! the gateway's among them; a subnet's network, broadcast or subnet-router anycast
//! address; another endpoint's; the bridge's link-local or router address, or the
//! bridge's MAC). Each refused claim is counted and binds nothing, and a free address is
//! bound as before.
use aya::maps::lpm_trie::Key;
use bpfnet::datapath::Hook;
use bpfnet_tests::{
    fixture::{Fixture, TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT, with_fixture},
    packet::{
        IPV6_ALL_NODES, arp, ipv6_icmp, ipv6_multicast_mac, ipv6_udp, link_local, nd_option,
        neighbour, solicited_node, udp,
    },
    require_root,
};
use common::{
    Be32, EP_LEARNED, Endpoint, Ip6, NET_EDGE, Network, PORT_ENFORCE, PORT_V6, Port, Reason,
};

const BRIDGE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01]; // frames' destination: routed
const NEW_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02]; // the new veth's container
const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x05]; // a registered neighbour
/// The neighbour's host-side veth (not the port under test).
const PEER_PORT: u32 = 4242;

const GATEWAY: [u8; 4] = [172, 17, 0, 1];
const NETWORK: [u8; 4] = [172, 17, 0, 0];
const BROADCAST: [u8; 4] = [172, 17, 255, 255];
const PEER: [u8; 4] = [172, 17, 0, 5];
/// Another of the host's addresses (the uplink's), outside the network.
const HOST: [u8; 4] = [192, 0, 2, 1];
/// In the network, nobody's.
const FREE: [u8; 4] = [172, 17, 0, 77];

const fn v6(last: u8) -> [u8; 16] {
    [0xfd, 0, 0, 0xa, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, last]
}
const GATEWAY6: [u8; 16] = v6(1);
/// The subnet-router anycast address of `fd00:0:0:a::/64`.
const ANYCAST6: [u8; 16] = v6(0);
const PEER6: [u8; 16] = v6(5);
const FREE6: [u8; 16] = v6(9);
/// The router address Docker gives a bridge (`fe80::1`).
const ROUTER_LL: [u8; 16] = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

use Reason::*;

/// The network (the fixture's uplink end: a real device, so a frame flooded to it can
/// be), as the daemon writes it: 172.17.0.0/16 and `fd00:0:0:a::/64` with their edges, the
/// gateway's and the uplink's addresses as the host's (the bridge's link-local and
/// `fe80::1` too), the neighbour registered on its own port; the port under test with no
/// endpoint yet.
fn network(fx: &mut Fixture) {
    let net = Network {
        bridge: fx.uplink,
        flags: 0,
    };
    let edge = Network {
        flags: NET_EDGE,
        ..net
    };
    let m = &mut fx.dp.maps;
    let v4 = |len, a: [u8; 4]| Key::new(len, Be32::from_bytes(a));
    m.subnets.insert(&v4(16, NETWORK), net, 0).expect("subnet");
    for a in [NETWORK, BROADCAST] {
        m.subnets.insert(&v4(32, a), edge, 0).expect("edge");
    }
    let v6key = |len, a: [u8; 16]| Key::new(len, Ip6::from_octets(a));
    m.subnets6
        .insert(&v6key(64, v6(0)), net, 0)
        .expect("subnet6");
    m.subnets6
        .insert(&v6key(128, ANYCAST6), edge, 0)
        .expect("edge6");
    for a in [GATEWAY, HOST] {
        m.host_ips.insert(Be32::from_bytes(a), 0, 0).expect("host");
    }
    for a in [GATEWAY6, link_local(BRIDGE_MAC), ROUTER_LL] {
        m.host_ips6
            .insert(Ip6::from_octets(a), 0, 0)
            .expect("host6");
    }
    let old: Vec<Be32> = m.endpoints.keys().filter_map(Result::ok).collect();
    for ip in old {
        m.endpoints.remove(&ip).expect("remove endpoint");
    }
    let peer = Endpoint::new(PEER_PORT, fx.uplink, PEER_MAC, 0);
    m.endpoints
        .insert(Be32::from_bytes(PEER), peer, 0)
        .expect("peer");
    m.endpoints6
        .insert(Ip6::from_octets(PEER6), peer, 0)
        .expect("peer6");
    unbound(fx);
}

/// The port under test, with no endpoint known.
fn unbound(fx: &mut Fixture) {
    let port = Port {
        network: fx.uplink,
        flags: 0,
        bridge_mac: BRIDGE_MAC,
        mac: [0; 6],
        ip: Be32::ZERO,
    };
    let veth = fx.bridge;
    fx.dp.maps.ports.insert(veth, port, 0).expect("port");
}

fn from(mut f: Vec<u8>, src_mac: [u8; 6], dst_mac: [u8; 6]) -> Vec<u8> {
    f[0..6].copy_from_slice(&dst_mac);
    f[6..12].copy_from_slice(&src_mac);
    f
}

/// A gratuitous ARP (request for its own address) announcing `ip` at `mac`.
fn garp(mac: [u8; 6], ip: [u8; 4]) -> Vec<u8> {
    arp(mac, ip, ip)
}

/// What the endpoint maps hold for the port under test.
fn bound(fx: &Fixture) -> (Vec<[u8; 4]>, Vec<[u8; 16]>) {
    let me = fx.bridge;
    let m = &fx.dp.maps;
    let v4 = m
        .endpoints
        .iter()
        .filter_map(Result::ok)
        .filter(|(_, ep)| ep.ifindex == me)
        .map(|(ip, _)| ip.to_bytes())
        .collect();
    let v6 = m
        .endpoints6
        .iter()
        .filter_map(Result::ok)
        .filter(|(_, ep)| ep.ifindex == me)
        .map(|(ip, _)| ip.octets())
        .collect();
    (v4, v6)
}

/// Run `frame` from the port under test: `verdict`, exactly `counted`.
fn expect(fx: &mut Fixture, name: &str, frame: &[u8], verdict: u32, counted: &[Reason]) {
    let (v, _) = fx.run_counted(name, Hook::FromContainer, frame, counted);
    assert_eq!(v, verdict, "{name}: verdict");
}

/// A refused claim: dropped as `reason`, nothing bound, the port still unknown.
fn refused(fx: &mut Fixture, name: &str, frame: &[u8], reason: Reason) {
    expect(fx, name, frame, TC_ACT_SHOT, &[reason]);
    assert_eq!(bound(fx), (vec![], vec![]), "{name}: nothing bound");
    let port = fx.dp.maps.ports.get(&fx.bridge, 0).expect("port");
    assert_eq!(port.flags, 0, "{name}: the port still has no endpoint");
}

#[test]
fn a_new_veths_ipv4_claims_of_addresses_no_container_may_have_bind_nothing() {
    if !require_root() {
        return;
    }
    with_fixture("claim4", 1024, |fx| {
        network(fx);
        let datagram =
            |src: [u8; 4]| from(udp((src, 5000), (PEER, 53), b"x", true), NEW_MAC, PEER_MAC);
        for (what, ip) in [
            ("the gateway's address", GATEWAY),
            ("the network address", NETWORK),
            ("the broadcast address", BROADCAST),
            ("another endpoint's address", PEER),
            ("another host address", HOST),
        ] {
            refused(
                fx,
                &format!("first IPv4 packet from {what}"),
                &datagram(ip),
                DropSpoof,
            );
            refused(
                fx,
                &format!("gratuitous ARP for {what}"),
                &garp(NEW_MAC, ip),
                DropSpoof,
            );
        }
        refused(
            fx,
            "a free address from the bridge's MAC",
            &from(datagram(FREE), BRIDGE_MAC, PEER_MAC),
            DropSpoof,
        );
        refused(
            fx,
            "an ARP of a free address from the bridge's MAC",
            &garp(BRIDGE_MAC, FREE),
            DropSpoof,
        );
        expect(
            fx,
            "an address probe (sender 0) claims nothing",
            &garp(NEW_MAC, [0; 4]),
            TC_ACT_OK,
            &[Pass],
        );
        assert_eq!(bound(fx), (vec![], vec![]), "a probe binds nothing");

        // Controls: a free address is bound by the first IPv4 packet...
        expect(
            fx,
            "first IPv4 packet from a free address",
            &datagram(FREE),
            TC_ACT_REDIRECT,
            &[EndpointLearned, ForwardLocal],
        );
        let learned = fx
            .dp
            .maps
            .endpoints
            .get(&Be32::from_bytes(FREE), 0)
            .expect("the free address is learned");
        assert_eq!(
            (learned.ifindex, learned.mac, learned.flags),
            (fx.bridge, NEW_MAC, EP_LEARNED),
            "bound to the new veth and its MAC"
        );
        // ...after which the gateway's address is a spoof of a known port.
        expect(
            fx,
            "gratuitous ARP for the gateway once bound",
            &garp(NEW_MAC, GATEWAY),
            TC_ACT_SHOT,
            &[DropSpoof],
        );
        // ...and as well by the first ARP announcement.
        fx.dp
            .maps
            .endpoints
            .remove(&Be32::from_bytes(FREE))
            .expect("unbind");
        unbound(fx);
        expect(
            fx,
            "gratuitous ARP for a free address",
            &garp(NEW_MAC, FREE),
            TC_ACT_OK,
            &[EndpointLearned, Pass],
        );
        assert_eq!(bound(fx), (vec![FREE], vec![]), "the ARP bound it");
        let port = fx.dp.maps.ports.get(&fx.bridge, 0).expect("port");
        assert_eq!(
            (port.flags, port.ip, port.mac),
            (PORT_ENFORCE, Be32::from_bytes(FREE), NEW_MAC),
            "the port is enforced for the address its ARP announced"
        );
        expect(
            fx,
            "its first IPv4 packet from the address its ARP announced",
            &datagram(FREE),
            TC_ACT_REDIRECT,
            &[ForwardLocal],
        );
    });
}

#[test]
fn a_new_veths_ipv6_claims_of_addresses_no_container_may_have_bind_nothing() {
    if !require_root() {
        return;
    }
    with_fixture("claim6", 1024, |fx| {
        network(fx);
        let ll = link_local(NEW_MAC);
        let datagram = |mac: [u8; 6], src: [u8; 16]| from(ipv6_udp(src, PEER6), mac, PEER_MAC);
        let nd = |src: [u8; 16], dst: [u8; 16], msg: Vec<u8>| {
            ipv6_icmp((NEW_MAC, ipv6_multicast_mac(dst)), (src, dst), &[], &msg)
        };
        let na = |target: [u8; 16]| {
            nd(
                ll,
                IPV6_ALL_NODES,
                neighbour(136, target, &[nd_option(2, &NEW_MAC)]),
            )
        };
        let ns = |src: [u8; 16], target: [u8; 16], opts: &[Vec<u8>]| {
            nd(src, solicited_node(target), neighbour(135, target, opts))
        };
        let sll = [nd_option(1, &NEW_MAC)];
        let cases: Vec<(&str, Vec<u8>, Reason)> = vec![
            (
                "first IPv6 packet from the gateway's address",
                datagram(NEW_MAC, GATEWAY6),
                DropSpoof,
            ),
            (
                "first IPv6 packet from the subnet-router anycast address",
                datagram(NEW_MAC, ANYCAST6),
                DropSpoof,
            ),
            (
                "first IPv6 packet from the router's link-local fe80::1",
                datagram(NEW_MAC, ROUTER_LL),
                DropSpoof,
            ),
            (
                "first IPv6 packet from another endpoint's address",
                datagram(NEW_MAC, PEER6),
                DropSpoof,
            ),
            (
                "the bridge's link-local address from the bridge's MAC",
                datagram(BRIDGE_MAC, link_local(BRIDGE_MAC)),
                DropSpoof,
            ),
            (
                "an advertisement of the gateway's address",
                na(GATEWAY6),
                DropNeighSpoof,
            ),
            (
                "an advertisement of the router's link-local fe80::1",
                na(ROUTER_LL),
                DropNeighSpoof,
            ),
            (
                "an advertisement of the bridge's link-local address",
                na(link_local(BRIDGE_MAC)),
                DropNeighSpoof,
            ),
            (
                "an advertisement of another endpoint's address",
                na(PEER6),
                DropNeighSpoof,
            ),
            (
                "a solicitation from the gateway's address with its MAC",
                ns(GATEWAY6, PEER6, &sll),
                DropNeighSpoof,
            ),
            (
                "a solicitation from fe80::1 with its MAC",
                ns(ROUTER_LL, PEER6, &sll),
                DropNeighSpoof,
            ),
        ];
        for (name, frame, reason) in cases {
            refused(fx, name, &frame, reason);
        }
        // Duplicate address detection (from ::) and its MAC's link-local address claim
        // nothing, and pass.
        expect(
            fx,
            "duplicate address detection for a free address",
            &ns([0; 16], FREE6, &[]),
            TC_ACT_REDIRECT,
            &[ForwardBridge],
        );
        expect(
            fx,
            "a solicitation from its MAC's link-local address",
            &ns(ll, PEER6, &sll),
            TC_ACT_REDIRECT,
            &[ForwardBridge],
        );
        assert_eq!(bound(fx), (vec![], vec![]), "neither binds anything");

        // Control: a free address of the subnet is bound by the first packet.
        expect(
            fx,
            "first IPv6 packet from a free address",
            &datagram(NEW_MAC, FREE6),
            TC_ACT_REDIRECT,
            &[EndpointLearned, ForwardLocal],
        );
        assert_eq!(
            bound(fx),
            (vec![], vec![FREE6]),
            "the free address is bound"
        );
        let port = fx.dp.maps.ports.get(&fx.bridge, 0).expect("port");
        assert_eq!((port.flags, port.mac), (PORT_V6, NEW_MAC));
        expect(
            fx,
            "then an advertisement of its own address",
            &na(FREE6),
            TC_ACT_REDIRECT,
            &[ForwardBridge],
        );
    });
}
