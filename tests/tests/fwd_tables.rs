//! `BPF_PROG_TEST_RUN` for `from_container`'s layer-2 decisions: the fast path between
//! endpoints of a network, isolation between networks and anti-spoofing for every
//! protocol and ethertype, the binding of a new veth's address; a LAN wire that carries
//! every LAN host but no endpoint's address, and a loopback publish that a wire never
//! reaches.
use aya::maps::lpm_trie::Key;
use bpfnet::datapath::Hook;
use bpfnet_tests::{
    fixture::{Fixture, TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT, XDP_DROP, XDP_PASS, with_fixture},
    packet::{
        IpOpts, TCP_SYN, arp, ether, icmp_error, icmp_timestamp, ip_proto, ipv6_udp, link_local,
        tcp, tcp_with, udp,
    },
    require_root,
};
use common::{
    Backend, Be16, Be32, EP_LEARNED, Endpoint, IFACE_BRIDGE, IFACE_LAN_SHIFT, IFACE_UPLINK,
    NET_LAN, Network, PORT_ENFORCE, PROTO_TCP, Port, PublishedKey, Reason,
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
    let e = Endpoint::new(ifindex, network, mac, 0);
    fx.dp
        .maps
        .endpoints
        .insert(Be32::from_bytes(ip), e, 0)
        .expect("endpoint");
}

fn port(fx: &mut Fixture, flags: u32) {
    let p = Port {
        network: NET_A,
        flags,
        bridge_mac: BRIDGE_MAC,
        mac: C1_MAC,
        ip: Be32::ZERO,
    };
    let veth = fx.bridge;
    fx.dp.maps.ports.insert(veth, p, 0).expect("port");
}

fn subnet(fx: &mut Fixture, net: [u8; 4], bridge: u32) {
    let key = Key::new(16, Be32::from_bytes(net));
    let n = Network { bridge, flags: 0 };
    fx.dp.maps.subnets.insert(&key, n, 0).expect("subnet");
}

/// Make the fixture's uplink the LAN wire of `bridge` (as the daemon records a managed
/// bridge's port that is an uplink), or an uplink of no LAN.
fn lan_wire(fx: &mut Fixture, bridge: Option<u32>) {
    let role = IFACE_UPLINK | bridge.map_or(0, |b| b << IFACE_LAN_SHIFT);
    let uplink = fx.uplink;
    fx.dp
        .maps
        .ifaces
        .insert(uplink, role, 0)
        .expect("uplink role");
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
        subnet(fx, [172, 17, 0, 0], NET_A);
        subnet(fx, [172, 18, 0, 0], NET_B);

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
        // The port now records its endpoint (C1 at C1_MAC), so C1's packets are checked
        // without the endpoint map: another MAC, or another address, is still a spoof.
        let veth = fx.bridge;
        let mut recorded = fx.dp.maps.ports.get(&veth, 0).expect("the port");
        recorded.ip = Be32::from_bytes(C1);
        fx.dp
            .maps
            .ports
            .insert(veth, recorded, 0)
            .expect("port records C1");
        let mut wrong_mac = to_mac(tcp((C1, 40005), (C2, 80), TCP_SYN, b""), C2_MAC);
        wrong_mac[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x99]);
        expect(
            fx,
            "source MAC not the recorded endpoint's",
            &wrong_mac,
            TC_ACT_SHOT,
            &[DropSpoof],
        );
        expect(
            fx,
            "source address not the recorded endpoint's",
            &tcp(([172, 17, 0, 98], 40006), (C2, 80), TCP_SYN, b""),
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

        // Every protocol and ethertype: anti-spoofing and isolation first.
        for (name, frame) in [
            ("GRE", ip_proto(C1, C3, 47, &[0; 8])),
            ("ICMP timestamp", icmp_timestamp(C1, C3, 9)),
            ("raw IP protocol 253", ip_proto(C1, C3, 253, b"x")),
        ] {
            expect(
                fx,
                &format!("{name} routed into another network"),
                &frame,
                TC_ACT_SHOT,
                &[DropIsolation],
            );
        }
        for (name, frame) in [
            ("GRE", ip_proto([172, 17, 0, 99], C2, 47, &[0; 8])),
            ("ICMP timestamp", icmp_timestamp([172, 17, 0, 99], C2, 9)),
            (
                "raw IP protocol 253",
                ip_proto([172, 17, 0, 99], C2, 253, b"x"),
            ),
        ] {
            expect(
                fx,
                &format!("{name} from a spoofed source"),
                &frame,
                TC_ACT_SHOT,
                &[DropSpoof],
            );
        }
        let later = tcp_with(
            (C1, 40006),
            (C3, 80),
            0,
            b"",
            IpOpts {
                options: 0,
                frag_off: 0x0010,
            },
        );
        expect(
            fx,
            "a later fragment routed into another network",
            &later,
            TC_ACT_SHOT,
            &[DropIsolation],
        );
        let v6 = ipv6_udp(link_local(C1_MAC), [0x20; 16]);
        expect(
            fx,
            "IPv6 routed out of the network",
            &v6,
            TC_ACT_SHOT,
            &[DropIpv6],
        );
        expect(
            fx,
            "IPv6 switched within the network, past the bridge's netfilter hooks",
            &to_mac(v6.clone(), C2_MAC),
            TC_ACT_REDIRECT,
            &[ForwardBridge],
        );
        let mut v6_spoof = to_mac(v6, C2_MAC);
        v6_spoof[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x99]);
        expect(
            fx,
            "IPv6 from another MAC",
            &v6_spoof,
            TC_ACT_SHOT,
            &[DropSpoof],
        );
        let mut lldp = to_mac(ether(0x88cc, &[0; 32]), C2_MAC);
        expect(
            fx,
            "another ethertype, switched",
            &lldp,
            TC_ACT_OK,
            &[PassOther],
        );
        lldp[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x99]);
        expect(
            fx,
            "another ethertype from another MAC",
            &lldp,
            TC_ACT_SHOT,
            &[DropSpoof],
        );

        // A port with no endpoint yet binds its first address, then is enforced.
        port(fx, 0);
        let mac = [0x02, 0, 0, 0, 0, 0x02];
        let first = to_mac(
            tcp(([172, 17, 0, 99], 40005), (C2, 80), TCP_SYN, b""),
            C2_MAC,
        );
        expect(
            fx,
            "a port without endpoints binds its first address",
            &first,
            TC_ACT_REDIRECT,
            &[EndpointLearned, ForwardLocal],
        );
        let learned = fx
            .dp
            .maps
            .endpoints
            .get(&Be32::from_bytes([172, 17, 0, 99]), 0)
            .expect("the learned endpoint");
        assert_eq!(
            (learned.ifindex, learned.mac, learned.flags),
            (me, mac, EP_LEARNED),
            "bound to this veth and MAC"
        );
        let second = to_mac(
            tcp(([172, 17, 0, 98], 40005), (C2, 80), TCP_SYN, b""),
            C2_MAC,
        );
        expect(
            fx,
            "then the port is enforced",
            &second,
            TC_ACT_SHOT,
            &[DropSpoof],
        );
        fx.dp
            .maps
            .endpoints
            .remove(&Be32::from_bytes([172, 17, 0, 99]))
            .expect("unbind");
        port(fx, 0);
        expect(
            fx,
            "a port without endpoints cannot claim another endpoint's address",
            &to_mac(tcp((C2, 40005), (C1, 80), TCP_SYN, b""), C1_MAC),
            TC_ACT_SHOT,
            &[DropSpoof],
        );
        expect(
            fx,
            "nor an address outside its network",
            &tcp(([10, 9, 9, 9], 40005), ([192, 0, 2, 2], 80), TCP_SYN, b""),
            TC_ACT_SHOT,
            &[DropUnbound],
        );
        fx.dp.maps.ports.remove(&me).expect("port removed");
        expect(
            fx,
            "a veth whose port is unknown sends nothing",
            &tcp((C1, 40007), ([192, 0, 2, 2], 80), TCP_SYN, b""),
            TC_ACT_SHOT,
            &[DropUnbound],
        );
    });
}

/// A LAN wire (issue 27): every LAN host's frames for an endpoint go straight to it, and
/// no frame off the wire may claim a local endpoint's address, by ARP or as its IP source,
/// whatever it is and wherever it goes; `xdp_uplink` drops such a packet early for the
/// same reason.
#[test]
fn a_lan_wire_carries_every_lan_host_but_no_endpoints_address() {
    if !require_root() {
        return;
    }
    with_fixture("lanwire", 1024, |fx| {
        const CTR: [u8; 4] = [203, 0, 113, 50];
        const HOST: [u8; 4] = [203, 0, 113, 1];
        const LAN1: ([u8; 4], [u8; 6]) = ([203, 0, 113, 2], [0x02, 0, 0, 0, 0xa0, 0x02]);
        const LAN2: ([u8; 4], [u8; 6]) = ([203, 0, 113, 3], [0x02, 0, 0, 0, 0xa0, 0x03]);
        let me = fx.bridge;
        ep(fx, CTR, me, NET_A, C1_MAC);
        ep(fx, C2, 4242, NET_A, C2_MAC);
        let key = Key::new(24, Be32::from_bytes([203, 0, 113, 0]));
        let lan = Network {
            bridge: NET_A,
            flags: NET_LAN,
        };
        fx.dp.maps.subnets.insert(&key, lan, 0).expect("LAN subnet");
        lan_wire(fx, Some(NET_A));
        let from = |f: Vec<u8>, mac: [u8; 6]| {
            let mut f = f;
            f[6..12].copy_from_slice(&mac);
            f
        };
        let mut wire = |name: &str, frame: &[u8], verdict: u32, counted: &[Reason]| {
            let (v, _) = fx.run_counted(name, Hook::FromUplink, frame, counted);
            assert_eq!(v, verdict, "{name}: verdict");
        };
        for (ip, mac) in [LAN1, LAN2] {
            wire(
                &format!("ARP from LAN host {ip:?}"),
                &arp(mac, ip, CTR),
                TC_ACT_OK,
                &[Pass],
            );
            let u = from(
                to_mac(udp((ip, 5000), (CTR, 7000), b"q", true), C1_MAC),
                mac,
            );
            wire(
                &format!("UDP from LAN host {ip:?} to the endpoint: straight to it"),
                &u,
                TC_ACT_REDIRECT,
                &[ForwardLocal],
            );
        }
        // The LAN's hosts arrive on its own wire only: on another uplink, their source
        // is forged (as the kernel's reverse-path filter judges it).
        let lan_host = from(
            to_mac(udp((LAN1.0, 5001), (CTR, 7000), b"q", true), C1_MAC),
            LAN1.1,
        );
        lan_wire(fx, None);
        let (v, _) = fx.run_counted(
            "a LAN host's datagram on another uplink",
            Hook::FromUplink,
            &lan_host,
            &[DropSpoof],
        );
        assert_eq!(v, TC_ACT_SHOT, "a LAN host's datagram on another uplink");
        assert_eq!(
            fx.run_xdp(&lan_host),
            XDP_DROP,
            "xdp_uplink drops a LAN host's packet off another uplink"
        );
        lan_wire(fx, Some(NET_A));
        assert_eq!(
            fx.run_xdp(&lan_host),
            XDP_PASS,
            "xdp_uplink passes a LAN host's packet on its own wire"
        );
        let mut wire = |name: &str, frame: &[u8], verdict: u32, counted: &[Reason]| {
            let (v, _) = fx.run_counted(name, Hook::FromUplink, frame, counted);
            assert_eq!(v, verdict, "{name}: verdict");
        };
        wire(
            "the same datagram on the LAN's wire",
            &lan_host,
            TC_ACT_REDIRECT,
            &[ForwardLocal],
        );
        let (_, attacker) = LAN2;
        wire(
            "ARP claiming the endpoint's address",
            &arp(attacker, CTR, CTR),
            TC_ACT_SHOT,
            &[DropSpoof],
        );
        wire(
            "ARP claiming another endpoint's address",
            &arp(attacker, C2, HOST),
            TC_ACT_SHOT,
            &[DropSpoof],
        );
        wire(
            "ARP probe (sender 0.0.0.0)",
            &arp(attacker, [0; 4], CTR),
            TC_ACT_OK,
            &[Pass],
        );
        let to_host = from(udp((CTR, 5353), (HOST, 9), b"x", true), attacker);
        let quoted = udp((HOST, 9), (CTR, 5353), b"x", true);
        for (name, frame) in [
            (
                "UDP from the endpoint's address to the host",
                to_host.clone(),
            ),
            (
                "TCP from the endpoint's address to another endpoint",
                from(
                    to_mac(tcp((CTR, 40000), (C2, 80), TCP_SYN, b""), C2_MAC),
                    attacker,
                ),
            ),
            (
                "TCP from the endpoint's address out through the host",
                from(
                    tcp((CTR, 40001), ([198, 51, 100, 2], 80), TCP_SYN, b""),
                    attacker,
                ),
            ),
            (
                "an ICMP error from the endpoint's address",
                from(icmp_error(CTR, HOST, 3, 3, 0, &quoted), attacker),
            ),
            (
                "a later fragment from the endpoint's address",
                from(
                    tcp_with(
                        (CTR, 40002),
                        (HOST, 80),
                        0,
                        b"",
                        IpOpts {
                            options: 0,
                            frag_off: 0x0010,
                        },
                    ),
                    attacker,
                ),
            ),
        ] {
            wire(name, &frame, TC_ACT_SHOT, &[DropSpoof]);
        }
        let before = fx.stats();
        assert_eq!(
            fx.run_xdp(&to_host),
            XDP_DROP,
            "xdp_uplink drops a packet from the endpoint's address"
        );
        let moved: Vec<Reason> = fx
            .stats()
            .iter()
            .zip(&before)
            .filter(|((_, a), (_, b))| a.packets != b.packets)
            .map(|((r, _), _)| *r)
            .collect();
        assert_eq!(moved, [DropSpoof], "xdp_uplink counts it as drop-spoof");
    });
}

#[test]
fn loopback_publish_is_not_reachable_off_the_wire() {
    if !require_root() {
        return;
    }
    with_fixture("lo", 1024, |fx| {
        let key = PublishedKey::new(Be32::from_bytes([127, 0, 0, 1]), Be16::new(8040), PROTO_TCP);
        let b = Backend::new(Be32::from_bytes([172, 17, 0, 4]), Be16::new(8038));
        fx.dp.maps.published.insert(key, b, 0).expect("publish");
        let lo = Be32::from_bytes([127, 0, 0, 1]);
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
