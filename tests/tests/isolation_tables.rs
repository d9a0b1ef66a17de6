//! `BPF_PROG_TEST_RUN` for `from_container`'s network policies on every kind of frame:
//! `enable_icc=false`, isolation between networks and `--internal` meet a packet by its
//! IP destination, whatever carries it. Link-local IPv6 between containers, a unicast
//! address in a broadcast or multicast frame, a neighbour's address sent to the
//! gateway's MAC (which the host would forward back onto the bridge), a later fragment,
//! a hairpin to a published port across an internal network's edge: each gets the
//! verdict of a plain frame to the neighbour. Every attack runs on a network with the
//! policy and, as its control, on one without.
use Reason::*;
use aya::maps::lpm_trie::Key;
use bpfnet::datapath::Hook;
use bpfnet_tests::{
    fixture::{Fixture, TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT, with_fixture},
    packet::{
        IPV6_ALL_NODES, IpOpts, TCP_SYN, icmp_echo, icmpv6, ipv6_icmp, ipv6_multicast_mac,
        link_local, nd_option, neighbour, solicited_node, tcp, udp, udp_with,
    },
    packet6::{echo6, tcp6, udp6, udp6_fragments},
    require_root,
};
use common::{
    Backend, Be16, Be32, Endpoint, IFACE_UPLINK, Ip6, NET_INTERNAL, NET_NO_ICC, NET_ROUTED,
    Network, PORT_ENFORCE, PORT_NO_ICC, PORT_V6, PROTO_TCP, Port, PublishedKey, Reason,
};

const BRIDGE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01]; // the gateway's: routed
const C1_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02]; // the sender's (the builders')
const C2_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x05]; // its neighbour's
const BROADCAST: [u8; 6] = [0xff; 6];
const MULTICAST: [u8; 6] = [0x01, 0, 0x5e, 0, 0, 0xfb];
const C1: [u8; 4] = [172, 17, 0, 4];
const C2: [u8; 4] = [172, 17, 0, 5];
const GATEWAY: [u8; 4] = [172, 17, 0, 1];
const HOST: [u8; 4] = [192, 0, 2, 1];
const SERVER: [u8; 4] = [198, 51, 100, 2];
/// On network B.
const C3: [u8; 4] = [172, 18, 0, 3];
const NET_B: u32 = 200;
/// The neighbours' host-side veths (not the port under test).
const C2_PORT: u32 = 4242;
const C3_PORT: u32 = 4343;

const fn v6(net: u8, last: u8) -> [u8; 16] {
    [0xfd, 0, 0, net, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, last]
}
const C1_6: [u8; 16] = v6(0xa, 4);
const C2_6: [u8; 16] = v6(0xa, 5);
const GATEWAY6: [u8; 16] = v6(0xa, 1);
const C3_6: [u8; 16] = v6(0xb, 3);
const OUTSIDE6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const ALL_ROUTERS: [u8; 16] = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

/// A verdict and the counters it moves.
type Outcome = (u32, &'static [Reason]);

/// Network A (the port under test's, with `flags`; its bridge a real device, the
/// fixture's uplink end, so a frame flooded to it can be) beside network B; the
/// sender C1 and its neighbour C2 on A, C3 on B, in both families; the gateway's
/// addresses are the host's.
fn networks(fx: &mut Fixture, flags: u32) {
    let a = fx.uplink;
    let me = fx.bridge;
    let m = &mut fx.dp.maps;
    let no_icc = if flags & NET_NO_ICC != 0 {
        PORT_NO_ICC
    } else {
        0
    };
    let port = Port {
        network: a,
        flags: PORT_ENFORCE | PORT_V6 | no_icc,
        bridge_mac: BRIDGE_MAC,
        mac: C1_MAC,
        ip: Be32::from_bytes(C1),
    };
    m.ports.insert(me, port, 0).expect("port");
    for (net, bridge, flags) in [(0xa, a, flags), (0xb, NET_B, 0)] {
        let n = Network { bridge, flags };
        let v4 = Key::new(16, Be32::from_bytes([172, 7 + net, 0, 0]));
        m.subnets.insert(&v4, n, 0).expect("subnet");
        let prefix = Key::new(64, Ip6::from_octets(v6(net, 0)));
        m.subnets6.insert(&prefix, n, 0).expect("subnet6");
    }
    for (ip, ip6, ifindex, network, mac) in [
        (C1, C1_6, me, a, C1_MAC),
        (C2, C2_6, C2_PORT, a, C2_MAC),
        (C3, C3_6, C3_PORT, NET_B, [0x02, 0, 0, 0, 0, 0x33]),
    ] {
        let ep = Endpoint::new(ifindex, network, mac, 0);
        m.endpoints
            .insert(Be32::from_bytes(ip), ep, 0)
            .expect("endpoint");
        m.endpoints6
            .insert(Ip6::from_octets(ip6), ep, 0)
            .expect("endpoint6");
    }
    for ip in [GATEWAY, HOST] {
        m.host_ips
            .insert(Be32::from_bytes(ip), 0, 0)
            .expect("host address");
    }
    m.host_ips6
        .insert(Ip6::from_octets(GATEWAY6), 0, 0)
        .expect("host address");
    m.ifaces
        .insert(fx.uplink, IFACE_UPLINK, 0)
        .expect("uplink role");
}

/// Publish TCP port 8038 on every host address, to `backend`:8080 (either family).
fn publish(fx: &mut Fixture, backend: [u8; 4], backend6: [u8; 16]) {
    let m = &mut fx.dp.maps;
    let key = PublishedKey::new(Be32::ZERO, Be16::new(8038), PROTO_TCP);
    let b = Backend::new(Be32::from_bytes(backend), Be16::new(8080));
    m.published.insert(key, b, 0).expect("publish");
    let key6 = PublishedKey::new(Ip6::UNSPECIFIED, Be16::new(8038), PROTO_TCP);
    let b6 = Backend::new(Ip6::from_octets(backend6), Be16::new(8080));
    m.published6.insert(key6, b6, 0).expect("publish6");
}

fn to_mac(mut f: Vec<u8>, mac: [u8; 6]) -> Vec<u8> {
    f[0..6].copy_from_slice(&mac);
    f
}

fn expect(fx: &mut Fixture, hook: Hook, name: &str, frame: &[u8], (verdict, counted): Outcome) {
    let (v, out) = fx.run_counted(name, hook, frame, counted);
    assert_eq!(v, verdict, "{name}: verdict");
    if verdict != TC_ACT_SHOT && !counted.contains(&RedirectRoute) {
        assert_eq!(out, frame, "{name}: frame untouched");
    }
}

/// Run every case on network A with `flags` and then, as the control, without them.
fn attacks_and_controls(
    tag: &str,
    flags: u32,
    cases: impl Fn() -> Vec<(&'static str, Vec<u8>, Outcome, Outcome)> + Send + 'static,
) {
    if !require_root() {
        return;
    }
    with_fixture(tag, 1024, move |fx| {
        for (policy, flags) in [("with the policy", flags), ("control", 0)] {
            networks(fx, flags);
            for (name, frame, attack, control) in cases() {
                let want = if flags == 0 { control } else { attack };
                let name = format!("{name} ({policy})");
                expect(fx, Hook::FromContainer, &name, &frame, want);
            }
        }
    });
}

const DROP_ICC: Outcome = (TC_ACT_SHOT, &[DropIcc]);
const ISOLATED: Outcome = (TC_ACT_SHOT, &[DropIsolation]);
const HOST_ONLY: Outcome = (TC_ACT_REDIRECT, &[IccHostOnly]);
const PASS: Outcome = (TC_ACT_OK, &[Pass]);
const FLOODED: Outcome = (TC_ACT_REDIRECT, &[ForwardBridge]);
const LATER: IpOpts = IpOpts {
    options: 0,
    frag_off: 0x0010,
};

/// IPv4 on a network without ICC: whatever Ethernet frame carries a packet for a
/// neighbour, switched or sent to the gateway's MAC, it is `drop-icc`; a broadcast or
/// multicast reaches only the host. Another network's address is `drop-isolation` in
/// any frame.
#[test]
fn icc_false_holds_for_every_ipv4_frame() {
    attacks_and_controls("icc4", NET_NO_ICC, || {
        let syn = || tcp((C1, 40000), (C2, 80), TCP_SYN, b"");
        let datagram = |dst| udp((C1, 5353), (dst, 5353), b"payload", true);
        vec![
            (
                "unicast to the neighbour",
                to_mac(syn(), C2_MAC),
                DROP_ICC,
                (TC_ACT_REDIRECT, &[ForwardLocal]),
            ),
            (
                "the neighbour's address in a broadcast frame",
                to_mac(datagram(C2), BROADCAST),
                DROP_ICC,
                PASS,
            ),
            (
                "the neighbour's address in a multicast frame",
                to_mac(syn(), MULTICAST),
                DROP_ICC,
                PASS,
            ),
            (
                "the neighbour's address sent to the gateway's MAC",
                syn(),
                DROP_ICC,
                PASS,
            ),
            (
                "an echo request to the neighbour by way of the gateway",
                icmp_echo(C1, C2, 7, true),
                DROP_ICC,
                PASS,
            ),
            (
                "a later fragment to the neighbour, switched",
                to_mac(udp_with((C1, 5353), (C2, 5353), b"x", true, LATER), C2_MAC),
                DROP_ICC,
                (TC_ACT_OK, &[FragmentPassed]),
            ),
            (
                "a later fragment to the neighbour by way of the gateway",
                udp_with((C1, 5353), (C2, 5353), b"x", true, LATER),
                DROP_ICC,
                (TC_ACT_OK, &[FragmentPassed]),
            ),
            (
                "a broadcast datagram",
                to_mac(datagram([255, 255, 255, 255]), BROADCAST),
                HOST_ONLY,
                PASS,
            ),
            (
                "a multicast datagram",
                to_mac(datagram([224, 0, 0, 251]), MULTICAST),
                HOST_ONLY,
                PASS,
            ),
            (
                "the gateway's address in a broadcast frame",
                to_mac(datagram(GATEWAY), BROADCAST),
                HOST_ONLY,
                PASS,
            ),
            (
                "another network's address in a broadcast frame",
                to_mac(datagram(C3), BROADCAST),
                ISOLATED,
                ISOLATED,
            ),
            (
                "another network's address sent to the gateway's MAC",
                tcp((C1, 40001), (C3, 80), TCP_SYN, b""),
                ISOLATED,
                ISOLATED,
            ),
        ]
    });
}

/// IPv6 on a network without ICC: link-local unicast between containers (neighbour
/// discovery included: no IP reaches a neighbour, as Docker's ip6tables rule has it),
/// a neighbour's address in a multicast frame or sent to the gateway's MAC, later
/// fragments: `drop-icc`. The network's multicast (solicitations, router solicitation,
/// duplicate address detection) reaches the host alone, which still answers it.
#[test]
fn icc_false_holds_for_every_ipv6_frame() {
    attacks_and_controls("icc6", NET_NO_ICC, || {
        let (ll1, ll2) = (link_local(C1_MAC), link_local(C2_MAC));
        let nd = |src, dst, mac, msg: Vec<u8>| ipv6_icmp((C1_MAC, mac), (src, dst), &[], &msg);
        let ns = |src, target| {
            let group = solicited_node(target);
            let opts = [nd_option(1, &C1_MAC)];
            nd(
                src,
                group,
                ipv6_multicast_mac(group),
                neighbour(135, target, &opts),
            )
        };
        let later = |dst, mac| {
            let [_, later] = udp6_fragments((C1_6, 5353), (dst, 5353), &[7; 64], 40, 9);
            to_mac(later, mac)
        };
        let bridged = (TC_ACT_REDIRECT, &[ForwardBridge][..]);
        vec![
            (
                "UDP between link-local addresses",
                to_mac(udp6((ll1, 5353), (ll2, 5353), b"payload"), C2_MAC),
                DROP_ICC,
                bridged,
            ),
            (
                "an echo request to the neighbour's link-local address",
                to_mac(echo6(ll1, ll2, 7, true), C2_MAC),
                DROP_ICC,
                bridged,
            ),
            (
                "a unicast neighbour solicitation to the neighbour",
                nd(ll1, ll2, C2_MAC, neighbour(135, ll2, &[])),
                DROP_ICC,
                bridged,
            ),
            (
                "the neighbour's link-local address in a multicast frame",
                to_mac(udp6((ll1, 5353), (ll2, 5353), b"x"), MULTICAST),
                DROP_ICC,
                FLOODED,
            ),
            (
                "the neighbour's global address in a multicast frame",
                to_mac(
                    tcp6((C1_6, 40000), (C2_6, 80), TCP_SYN, 1),
                    [0x33, 0x33, 0, 0, 0, 1],
                ),
                DROP_ICC,
                PASS,
            ),
            (
                "the neighbour's address sent to the gateway's MAC",
                tcp6((C1_6, 40000), (C2_6, 80), TCP_SYN, 1),
                DROP_ICC,
                PASS,
            ),
            (
                "a later fragment to the neighbour, switched",
                later(C2_6, C2_MAC),
                DROP_ICC,
                (TC_ACT_OK, &[FragmentPassed]),
            ),
            (
                "a later fragment to the neighbour by way of the gateway",
                later(C2_6, BRIDGE_MAC),
                DROP_ICC,
                (TC_ACT_OK, &[FragmentPassed]),
            ),
            (
                "a solicitation for the neighbour's address",
                ns(ll1, C2_6),
                HOST_ONLY,
                FLOODED,
            ),
            (
                "a solicitation for the gateway's address",
                ns(ll1, GATEWAY6),
                HOST_ONLY,
                FLOODED,
            ),
            (
                "duplicate address detection",
                ns([0; 16], C1_6),
                HOST_ONLY,
                FLOODED,
            ),
            (
                "a router solicitation",
                nd(
                    ll1,
                    ALL_ROUTERS,
                    ipv6_multicast_mac(ALL_ROUTERS),
                    icmpv6(133, &[0; 4]),
                ),
                HOST_ONLY,
                FLOODED,
            ),
            (
                "a datagram to all nodes",
                to_mac(
                    udp6((ll1, 5353), (IPV6_ALL_NODES, 5353), b"x"),
                    [0x33, 0x33, 0, 0, 0, 1],
                ),
                HOST_ONLY,
                FLOODED,
            ),
            (
                "another network's address in a multicast frame",
                to_mac(
                    udp6((C1_6, 5353), (C3_6, 5353), b"x"),
                    [0x33, 0x33, 0, 0, 0, 1],
                ),
                ISOLATED,
                ISOLATED,
            ),
            (
                "another network's address sent to the gateway's MAC",
                tcp6((C1_6, 40001), (C3_6, 80), TCP_SYN, 1),
                ISOLATED,
                ISOLATED,
            ),
        ]
    });
}

/// `--internal` on a routed network: a later fragment, which carries no ports and so
/// skips the flow checks, is `drop-internal` as its first fragment is, out of the
/// network (from its containers) and into it (off the uplink), in both families.
#[test]
fn internal_holds_for_fragments_of_a_routed_network() {
    if !require_root() {
        return;
    }
    with_fixture("intfrag", 1024, |fx| {
        for (policy, flags) in [
            ("internal", NET_ROUTED | NET_INTERNAL),
            ("control", NET_ROUTED),
        ] {
            networks(fx, flags);
            let internal = flags & NET_INTERNAL != 0;
            let pick = |attack: Outcome, control: Outcome| if internal { attack } else { control };
            let dropped: Outcome = (TC_ACT_SHOT, &[DropInternal]);
            let [first6, later6] = udp6_fragments((C1_6, 5353), (OUTSIDE6, 5353), &[7; 64], 40, 11);
            let [in_first6, in_later6] =
                udp6_fragments((OUTSIDE6, 5353), (C1_6, 5353), &[7; 64], 40, 12);
            let first4 = udp_with(
                (C1, 5353),
                (SERVER, 5353),
                &[7; 64],
                true,
                IpOpts {
                    options: 0,
                    frag_off: 0x2000,
                },
            );
            let later4 = udp_with((C1, 5353), (SERVER, 5353), b"x", true, LATER);
            for (name, hook, frame, control) in [
                (
                    "an IPv6 first fragment out",
                    Hook::FromContainer,
                    first6,
                    (TC_ACT_OK, &[Pass][..]),
                ),
                (
                    "an IPv6 later fragment out",
                    Hook::FromContainer,
                    later6,
                    (TC_ACT_OK, &[FragmentPassed][..]),
                ),
                (
                    "an IPv4 later fragment out",
                    Hook::FromContainer,
                    later4,
                    (TC_ACT_OK, &[FragmentPassed][..]),
                ),
                (
                    "an IPv4 first fragment out",
                    Hook::FromContainer,
                    first4,
                    (TC_ACT_REDIRECT, &[RedirectRoute][..]),
                ),
                (
                    "an IPv6 first fragment in",
                    Hook::FromUplink,
                    in_first6,
                    (TC_ACT_SHOT, &[DropInbound][..]),
                ),
                (
                    "an IPv6 later fragment in",
                    Hook::FromUplink,
                    in_later6,
                    (TC_ACT_SHOT, &[DropInbound][..]),
                ),
            ] {
                let name = format!("{name} ({policy})");
                expect(fx, hook, &name, &frame, pick(dropped, control));
            }
        }
    });
}

/// `--internal` holds for hairpin: a container of an internal network reaching a port
/// published to another network's container by a host address, or any container
/// reaching one published to an internal network's, is `drop-internal`; the same
/// hairpin between networks that are not internal is translated.
#[test]
fn internal_holds_for_hairpin_to_published_ports() {
    if !require_root() {
        return;
    }
    with_fixture("hairpin", 1024, |fx| {
        let translated: Outcome = (TC_ACT_REDIRECT, &[DnatNew, RedirectPeer]);
        let dropped: Outcome = (TC_ACT_SHOT, &[DropInternal]);
        let mut sport = 41000;
        for (policy, own, theirs, want) in [
            ("from an internal network", NET_INTERNAL, 0, dropped),
            ("into an internal network", 0, NET_INTERNAL, dropped),
            ("control", 0, 0, translated),
        ] {
            networks(fx, own);
            let b = Key::new(16, Be32::from_bytes([172, 18, 0, 0]));
            let n = Network {
                bridge: NET_B,
                flags: theirs,
            };
            fx.dp.maps.subnets.insert(&b, n, 0).expect("subnet B");
            let b6 = Key::new(64, Ip6::from_octets(v6(0xb, 0)));
            fx.dp.maps.subnets6.insert(&b6, n, 0).expect("subnet6 B");
            publish(fx, C3, C3_6);
            sport += 1;
            for (name, frame) in [
                (
                    "a host address's published port",
                    tcp((C1, sport), (HOST, 8038), TCP_SYN, b""),
                ),
                (
                    "the gateway's published port",
                    tcp((C1, sport + 100), (GATEWAY, 8038), TCP_SYN, b""),
                ),
                (
                    "the IPv6 gateway's published port",
                    tcp6((C1_6, sport), (GATEWAY6, 8038), TCP_SYN, 1),
                ),
            ] {
                let name = format!("{name} ({policy})");
                let (v, out) = fx.run_counted(&name, Hook::FromContainer, &frame, want.1);
                assert_eq!(v, want.0, "{name}: verdict");
                if v == TC_ACT_REDIRECT {
                    assert_ne!(out, frame, "{name}: translated");
                }
            }
        }
    });
}
