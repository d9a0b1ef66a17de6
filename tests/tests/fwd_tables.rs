//! BPF_PROG_TEST_RUN for `from_container`'s layer-2 decisions: the fast path between
//! endpoints of a network, isolation between networks, anti-spoofing (IPv4 and ARP),
//! and a loopback publish that a wire never reaches.
use bpfnet::datapath::Hook;
use bpfnet_tests::{
    fixture::{Fixture, TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT, with_fixture},
    packet::{TCP_SYN, arp, tcp, udp},
    require_root,
};
use common::{
    Backend, Endpoint, IFACE_BRIDGE, PORT_ENFORCE, PROTO_TCP, Port, PublishedKey, Reason,
};

const BRIDGE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01]; // frames' destination: routed
const C1_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02]; // frames' source
const C2_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x05];
const C1: [u8; 4] = [172, 17, 0, 4];
const C2: [u8; 4] = [172, 17, 0, 5];
const C3: [u8; 4] = [172, 18, 0, 3];
const NET_A: u32 = 100;
const NET_B: u32 = 200;

use Reason::*;

fn ep(fx: &mut Fixture, ip: [u8; 4], ifindex: u32, network: u32, mac: [u8; 6]) {
    let e = Endpoint {
        ifindex,
        network,
        mac,
        flags: 0,
        _pad: 0,
    };
    fx.dp
        .maps
        .endpoints
        .insert(u32::from_ne_bytes(ip), e, 0)
        .expect("endpoint");
}

fn port(fx: &mut Fixture, flags: u32) {
    let p = Port {
        network: NET_A,
        flags,
        bridge_mac: BRIDGE_MAC,
        mac: C1_MAC,
        _pad: [0; 4],
    };
    let veth = fx.bridge;
    fx.dp.maps.ports.insert(veth, p, 0).expect("port");
}

fn to_mac(mut f: Vec<u8>, mac: [u8; 6]) -> Vec<u8> {
    f[0..6].copy_from_slice(&mac);
    f
}

fn expect(fx: &mut Fixture, name: &str, frame: &[u8], verdict: u32, counted: &[Reason]) {
    let (v, out) = fx.run_counted(name, Hook::FromContainer, frame, counted);
    assert_eq!(v, verdict, "{name}: verdict");
    if verdict != TC_ACT_SHOT {
        assert_eq!(out, frame, "{name}: frame untouched");
    }
}

#[test]
fn forwarding_isolation_and_spoofing() {
    if !require_root() {
        return;
    }
    with_fixture("fwd", 1024, |fx| {
        let me = fx.bridge;
        ep(fx, C1, me, NET_A, C1_MAC);
        ep(fx, C2, 4242, NET_A, C2_MAC);
        ep(fx, C3, 4343, NET_B, [0x02, 0, 0, 0, 0, 0x33]);
        port(fx, PORT_ENFORCE);

        let l2 = to_mac(tcp((C1, 40000), (C2, 80), TCP_SYN, b""), C2_MAC);
        expect(
            fx,
            "switched to an endpoint of the network",
            &l2,
            TC_ACT_REDIRECT,
            &[ForwardLocal],
        );
        let other = to_mac(
            tcp((C1, 40000), ([172, 17, 0, 77], 80), TCP_SYN, b""),
            [0x02, 0, 0, 0, 0, 0x77],
        );
        expect(
            fx,
            "switched to an unknown host: out of the bridge's transmit path",
            &other,
            TC_ACT_REDIRECT,
            &[ForwardBridge],
        );
        let bcast = to_mac(
            udp((C1, 68), ([255, 255, 255, 255], 67), b"", true),
            [0xff; 6],
        );
        expect(
            fx,
            "broadcast stays with the bridge",
            &bcast,
            TC_ACT_OK,
            &[Pass],
        );
        let u = to_mac(udp((C1, 5000), (C2, 53), b"q", true), C2_MAC);
        expect(
            fx,
            "UDP switched to an endpoint",
            &u,
            TC_ACT_REDIRECT,
            &[ForwardLocal],
        );

        let routed = tcp((C1, 40001), (C3, 80), TCP_SYN, b"");
        expect(
            fx,
            "routed to an endpoint of another network",
            &routed,
            TC_ACT_SHOT,
            &[DropIsolation],
        );
        // Pretend the uplink side is another managed bridge: its subnet is off limits.
        let uplink = fx.uplink;
        fx.dp
            .maps
            .ifaces
            .insert(uplink, IFACE_BRIDGE, 0)
            .expect("role");
        let routed = tcp((C1, 40002), ([192, 0, 2, 2], 80), TCP_SYN, b"");
        expect(
            fx,
            "routed into another bridge's subnet",
            &routed,
            TC_ACT_SHOT,
            &[DropIsolation],
        );
        fx.dp.maps.ifaces.remove(&uplink).expect("role removed");

        let spoof = tcp(([172, 17, 0, 99], 40003), (C2, 80), TCP_SYN, b"");
        expect(
            fx,
            "source address not the endpoint's",
            &spoof,
            TC_ACT_SHOT,
            &[DropSpoof],
        );
        let mut wrong_mac = to_mac(tcp((C1, 40004), (C2, 80), TCP_SYN, b""), C2_MAC);
        wrong_mac[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x99]);
        expect(
            fx,
            "source MAC not the endpoint's",
            &wrong_mac,
            TC_ACT_SHOT,
            &[DropSpoof],
        );
        expect(
            fx,
            "ARP from the endpoint",
            &arp(C1_MAC, C1, C2),
            TC_ACT_OK,
            &[Pass],
        );
        expect(
            fx,
            "ARP claiming another address",
            &arp(C1_MAC, C2, C1),
            TC_ACT_SHOT,
            &[DropSpoof],
        );
        expect(
            fx,
            "ARP probe (sender 0.0.0.0)",
            &arp(C1_MAC, [0; 4], C1),
            TC_ACT_OK,
            &[Pass],
        );

        port(fx, 0);
        let unenforced = to_mac(
            tcp(([172, 17, 0, 99], 40005), (C2, 80), TCP_SYN, b""),
            C2_MAC,
        );
        expect(
            fx,
            "a port without endpoints is not policed",
            &unenforced,
            TC_ACT_REDIRECT,
            &[ForwardLocal],
        );
    });
}

#[test]
fn loopback_publish_is_not_reachable_off_the_wire() {
    if !require_root() {
        return;
    }
    with_fixture("lo", 1024, |fx| {
        let key = PublishedKey {
            host_ip: u32::from_ne_bytes([127, 0, 0, 1]),
            port: 8040u16.to_be(),
            proto: PROTO_TCP,
            _pad: 0,
        };
        let b = Backend {
            ip: u32::from_ne_bytes([172, 17, 0, 4]),
            port: 8038u16.to_be(),
            _pad: 0,
        };
        fx.dp.maps.published.insert(key, b, 0).expect("publish");
        let lo = u32::from_ne_bytes([127, 0, 0, 1]);
        fx.dp.maps.host_ips.insert(lo, 0, 0).expect("host ip");
        let f = tcp(
            ([192, 0, 2, 2], 40000),
            ([127, 0, 0, 1], 8040),
            TCP_SYN,
            b"",
        );
        let (v, out) = fx.run_counted(
            "to 127.0.0.1 from the uplink",
            Hook::FromUplink,
            &f,
            &[Pass],
        );
        assert_eq!((v, out), (TC_ACT_OK, f.clone()), "not translated");
        let f = tcp(
            ([172, 17, 0, 5], 40000),
            ([127, 0, 0, 1], 8040),
            TCP_SYN,
            b"",
        );
        let (v, _) = fx.run_counted(
            "to 127.0.0.1 from a container",
            Hook::FromContainer,
            &f,
            &[Pass],
        );
        assert_eq!(v, TC_ACT_OK, "not translated");
    });
}
