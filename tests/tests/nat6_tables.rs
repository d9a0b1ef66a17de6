//! `BPF_PROG_TEST_RUN` for IPv6 on the family-generic path: NAT66 of a ULA network
//! (masquerade to the uplink's address, published ports, replies), a routed global
//! network open only at ports published at its containers' own addresses, and the
//! inbound policy. Each step checks the verdict, the rewritten headers (the checksum
//! over the pseudo-header recomputed from scratch) and the counters that moved.
use Hook::{FromContainer as OUT, FromUplink as IN};
use Reason::*;
use aya::maps::lpm_trie::Key;
use bpfnet::datapath::Hook;
use bpfnet_tests::{
    fixture::{
        CLIENT_MAC, CONTAINER_MAC, Fixture, TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT, with_fixture,
    },
    packet::{TCP_ACK, TCP_RST, TCP_SYN},
    packet6::{
        Addr6, View6, echo6, fragments_checksum_ok, icmp6_error, tcp6, tcp6_seq, udp6,
        udp6_fragments,
    },
    require_root,
    tables::{PORTS, set_icmp_limit},
    tables6::{C1_6 as C1, HOST6, R1, ROUTER6, SERVER6, in_prefix as addr, setup6},
};
use common::{IcmpLimit, Ip6, Network, Reason};

fn ip6(a: [u8; 16]) -> Ip6 {
    Ip6::from_octets(a)
}

/// Run, require `verdict`, a valid checksum, the hop limit spent by a forwarded packet
/// and the counters; return the output frame.
fn step6(
    fx: &mut Fixture,
    name: &str,
    hook: Hook,
    frame: &[u8],
    verdict: u32,
    counted: &[Reason],
) -> Vec<u8> {
    let (v, out) = fx.run_counted(name, hook, frame, counted);
    assert_eq!(v, verdict, "{name}: verdict");
    if verdict != TC_ACT_SHOT
        && let Err(e) = View6(&out).verify_checksum()
    {
        panic!("{name}: {e}");
    }
    if verdict == TC_ACT_REDIRECT {
        assert_eq!(View6(&out).hop_limit(), 63, "{name}: hop limit spent");
    }
    out
}

fn masqueraded(name: &str, out: &[u8]) -> u16 {
    let (src, port) = View6(out).src();
    assert_eq!(src, HOST6, "{name}: masqueraded to the uplink's address");
    assert!(
        (PORTS.0..=PORTS.1).contains(&port),
        "{name}: source port {port} outside {PORTS:?}"
    );
    port
}

#[test]
fn nat66_masquerades_a_ula_network_and_translates_the_replies() {
    if !require_root() {
        return;
    }
    with_fixture("nat66", 4096, |fx| {
        setup6(fx);
        let (c, s): (Addr6, Addr6) = ((C1, 40000), (SERVER6, 80));
        let out = step6(
            fx,
            "SYN out",
            OUT,
            &tcp6(c, s, TCP_SYN, 1000),
            TC_ACT_REDIRECT,
            &[SnatNew, RedirectRoute],
        );
        let p = masqueraded("SYN out", &out);
        assert_eq!(View6(&out).dst(), s, "destination kept");
        assert_eq!(
            View6(&out).dst_mac(),
            CLIENT_MAC,
            "routed to the uplink's router"
        );
        let back = step6(
            fx,
            "SYN-ACK in",
            IN,
            &tcp6_seq(s, (HOST6, p), TCP_SYN | TCP_ACK, (5000, 1001)),
            TC_ACT_REDIRECT,
            &[CtReply, RedirectPeer],
        );
        assert_eq!((View6(&back).src(), View6(&back).dst()), (s, c));
        assert_eq!(View6(&back).dst_mac(), CONTAINER_MAC);
        let out = step6(
            fx,
            "ACK out",
            OUT,
            &tcp6(c, s, TCP_ACK, 1001),
            TC_ACT_REDIRECT,
            &[CtForward, RedirectRoute],
        );
        assert_eq!(View6(&out).src(), (HOST6, p), "same flow, same port");

        let out = step6(
            fx,
            "UDP out",
            OUT,
            &udp6((C1, 5353), (SERVER6, 53), b"query"),
            TC_ACT_REDIRECT,
            &[SnatNew, RedirectRoute],
        );
        let up = masqueraded("UDP out", &out);
        let back = step6(
            fx,
            "UDP answer",
            IN,
            &udp6((SERVER6, 53), (HOST6, up), b"answer"),
            TC_ACT_REDIRECT,
            &[CtReply, RedirectPeer],
        );
        assert_eq!(View6(&back).dst(), (C1, 5353));

        // ICMPv6's checksum covers the pseudo-header: the rewrite must fix it.
        let out = step6(
            fx,
            "echo request out",
            OUT,
            &echo6(C1, SERVER6, 7, true),
            TC_ACT_REDIRECT,
            &[SnatNew, RedirectRoute],
        );
        let id = masqueraded("echo request out", &out);
        let back = step6(
            fx,
            "echo reply in",
            IN,
            &echo6(SERVER6, HOST6, id, false),
            TC_ACT_REDIRECT,
            &[CtReply, RedirectPeer],
        );
        assert_eq!(
            View6(&back).dst(),
            (C1, 7),
            "the container's own identifier"
        );

        step6(
            fx,
            "an ACK of no flow, to the host's address: the host's",
            IN,
            &tcp6(s, (HOST6, p + 1), TCP_ACK, 1),
            TC_ACT_OK,
            &[Pass],
        );
    });
}

#[test]
fn nat66_publishes_ports_and_keeps_a_ula_network_closed() {
    if !require_root() {
        return;
    }
    with_fixture("pub66", 4096, |fx| {
        setup6(fx);
        let client: Addr6 = (SERVER6, 5555);
        let inn = step6(
            fx,
            "SYN to the published port",
            IN,
            &tcp6(client, (HOST6, 8038), TCP_SYN, 1),
            TC_ACT_REDIRECT,
            &[DnatNew, RedirectPeer],
        );
        assert_eq!(View6(&inn).dst(), (C1, 8080));
        assert_eq!(View6(&inn).src(), client, "the client's address preserved");
        let out = step6(
            fx,
            "SYN-ACK from the container",
            OUT,
            &tcp6_seq((C1, 8080), client, TCP_SYN | TCP_ACK, (9, 2)),
            TC_ACT_REDIRECT,
            &[CtReply, RedirectRoute],
        );
        assert_eq!(
            View6(&out).src(),
            (HOST6, 8038),
            "answered from the published port"
        );
        let inn = step6(
            fx,
            "UDP to the published port",
            IN,
            &udp6(client, (HOST6, 8038), b"hi"),
            TC_ACT_REDIRECT,
            &[DnatNew, RedirectPeer],
        );
        assert_eq!(View6(&inn).dst(), (C1, 8080));
        step6(
            fx,
            "SYN straight to the ULA container",
            IN,
            &tcp6(client, (C1, 22), TCP_SYN, 1),
            TC_ACT_SHOT,
            &[DropInbound],
        );
        step6(
            fx,
            "SYN to a port nobody published",
            IN,
            &tcp6(client, (HOST6, 9999), TCP_SYN, 1),
            TC_ACT_OK,
            &[Pass],
        );
    });
}

#[test]
fn a_routed_global_network_is_open_only_at_its_published_ports() {
    if !require_root() {
        return;
    }
    with_fixture("route6", 4096, |fx| {
        setup6(fx);
        let client: Addr6 = (SERVER6, 5556);
        let inn = step6(
            fx,
            "SYN to a port published at the container's own address",
            IN,
            &tcp6(client, (R1, 8443), TCP_SYN, 1),
            TC_ACT_REDIRECT,
            &[RedirectPeer],
        );
        assert_eq!(
            (View6(&inn).src(), View6(&inn).dst()),
            (client, (R1, 8443)),
            "not translated"
        );
        let out = step6(
            fx,
            "its SYN-ACK",
            OUT,
            &tcp6_seq((R1, 8443), client, TCP_SYN | TCP_ACK, (9, 2)),
            TC_ACT_REDIRECT,
            &[CtReply, RedirectRoute],
        );
        assert_eq!(View6(&out).src(), (R1, 8443), "its own address");
        step6(
            fx,
            "SYN to an unpublished port",
            IN,
            &tcp6(client, (R1, 22), TCP_SYN, 1),
            TC_ACT_SHOT,
            &[DropInbound],
        );
        let out = step6(
            fx,
            "the container's own connection out",
            OUT,
            &tcp6((R1, 33000), (SERVER6, 443), TCP_SYN, 1),
            TC_ACT_REDIRECT,
            &[RedirectRoute],
        );
        assert_eq!(View6(&out).src(), (R1, 33000), "routed, not masqueraded");
        step6(
            fx,
            "its reply",
            IN,
            &tcp6_seq((SERVER6, 443), (R1, 33000), TCP_SYN | TCP_ACK, (7, 2)),
            TC_ACT_REDIRECT,
            &[CtReply, RedirectPeer],
        );
    });
}

/// `ICMPv6` errors about a masqueraded flow are translated through the packet they quote
/// (path MTU discovery across NAT66): packet-too-big from a router on the way reaches the
/// container with the quote pointing at its own tuple, both checksums right; one whose
/// addressee does not match what it quotes is a forgery.
#[test]
fn icmpv6_errors_are_translated_through_their_quote() {
    if !require_root() {
        return;
    }
    with_fixture("icmp66", 4096, |fx| {
        setup6(fx);
        let (c, s): (Addr6, Addr6) = ((C1, 40000), (SERVER6, 80));
        let out = step6(
            fx,
            "SYN out",
            OUT,
            &tcp6(c, s, TCP_SYN, 1000),
            TC_ACT_REDIRECT,
            &[SnatNew, RedirectRoute],
        );
        let p = masqueraded("SYN out", &out);
        let back = step6(
            fx,
            "packet too big from the router",
            IN,
            &icmp6_error(ROUTER6, HOST6, 2, 1280, &out),
            TC_ACT_REDIRECT,
            &[IcmpError, RedirectPeer],
        );
        assert_eq!(View6(&back).dst().0, C1, "to the container");
        assert_eq!(View6(&back).src().0, ROUTER6, "from the router");
        assert_eq!(View6(&back).quoted(), (c, s), "quoting its own packet");
        let unreachable = step6(
            fx,
            "port unreachable from the server itself",
            IN,
            &icmp6_error(SERVER6, HOST6, 1, 0, &out),
            TC_ACT_REDIRECT,
            &[IcmpError, RedirectPeer],
        );
        assert_eq!(View6(&unreachable).quoted(), (c, s));
        // Addressed elsewhere than where the quoted packet left from.
        let mut elsewhere = HOST6;
        elsewhere[15] = 0x99;
        let forged = icmp6_error(ROUTER6, elsewhere, 2, 1280, &out);
        step6(
            fx,
            "an error whose addressee is not the quote's sender",
            IN,
            &forged,
            TC_ACT_SHOT,
            &[DropIcmpForged],
        );
        assert_eq!(View6(&out).src(), (HOST6, p));
    });
}

/// Two IPv6 networks are isolated as IPv4 ones are: a container cannot route to the
/// other network's subnet nor to an endpoint registered on it.
#[test]
fn ipv6_networks_are_isolated_from_each_other() {
    if !require_root() {
        return;
    }
    with_fixture("iso66", 4096, |fx| {
        setup6(fx);
        // Network B: another bridge (the uplink's ifindex stands in), its own ULA prefix.
        let other = fx.uplink;
        let b = addr([0xfd, 0, 0, 0x18, 0, 0], 3);
        let key = Key::new(64, ip6(addr([0xfd, 0, 0, 0x18, 0, 0], 0)));
        let net = Network {
            bridge: other,
            flags: 0,
        };
        fx.dp.maps.subnets6.insert(&key, net, 0).expect("subnet B");
        step6(
            fx,
            "a SYN into the other network",
            OUT,
            &tcp6((C1, 40000), (b, 80), TCP_SYN, 1),
            TC_ACT_SHOT,
            &[DropIsolation],
        );
        step6(
            fx,
            "a datagram into the other network",
            OUT,
            &udp6((C1, 5353), (b, 53), b"x"),
            TC_ACT_SHOT,
            &[DropIsolation],
        );
    });
}

/// A masqueraded UDP datagram in IPv6 fragments: the first fragment creates the flow and
/// leaves with the translated address and port; the later one, which carries no ports,
/// follows its flow by the fragment identification, and the reassembled datagram's
/// checksum holds for the new addresses.
#[test]
fn ipv6_fragments_follow_their_first_fragment() {
    if !require_root() {
        return;
    }
    with_fixture("frag66", 4096, |fx| {
        setup6(fx);
        let payload: Vec<u8> = (0..200u8).collect();
        let [first, later] = udp6_fragments((C1, 5353), (SERVER6, 53), &payload, 96, 0x1234_5678);
        let out1 = step_frag(fx, "first fragment", &first, &[SnatNew, RedirectRoute]);
        let out2 = step_frag(
            fx,
            "later fragment",
            &later,
            &[FragmentTranslated, CtForward, RedirectRoute],
        );
        for out in [&out1, &out2] {
            assert_eq!(&out[14 + 8..14 + 24], &HOST6, "masqueraded");
        }
        let port = u16::from_be_bytes([out1[14 + 48], out1[14 + 49]]);
        assert!(
            (PORTS.0..=PORTS.1).contains(&port),
            "translated port {port}"
        );
        assert!(
            fragments_checksum_ok(&HOST6, &SERVER6, &[&out1, &out2]),
            "the reassembled datagram's checksum"
        );
        let [_, stray] = udp6_fragments((C1, 5353), (SERVER6, 53), &payload, 96, 0x0bad_0bad);
        step_frag(
            fx,
            "a later fragment of no known datagram",
            &stray,
            &[DropFragment],
        );
    });
}

/// Run a fragment from the container; the output frame.
fn step_frag(fx: &mut Fixture, name: &str, frame: &[u8], counted: &[Reason]) -> Vec<u8> {
    let (v, out) = fx.run_counted(name, OUT, frame, counted);
    let want = if counted.contains(&DropFragment) {
        TC_ACT_SHOT
    } else {
        TC_ACT_REDIRECT
    };
    assert_eq!(v, want, "{name}: verdict");
    out
}

/// A packet from outside whose hop limit ends at the host is answered, as a router
/// answers: `ICMPv6` time exceeded from the address it was sent to, quoting its header,
/// back out of the uplink it came in by (traceroute6 sees the host).
#[test]
fn a_hop_limit_ending_at_the_host_is_answered_with_time_exceeded() {
    if !require_root() {
        return;
    }
    with_fixture("hop66", 4096, |fx| {
        setup6(fx);
        let mut syn = tcp6((SERVER6, 5555), (HOST6, 8038), TCP_SYN, 1);
        syn[14 + 7] = 1;
        let (v, out) = fx.run_counted("SYN with hop limit 1", IN, &syn, &[IcmpTimeExceeded]);
        assert_eq!(v, TC_ACT_REDIRECT, "sent back");
        let view = View6(&out);
        assert_eq!(
            (view.next(), out[14 + 40], out[14 + 41]),
            (58, 3, 0),
            "time exceeded"
        );
        assert_eq!(
            &out[14 + 8..14 + 24],
            &HOST6,
            "from the address it was sent to"
        );
        assert_eq!(&out[14 + 24..14 + 40], &SERVER6, "to its sender");
        assert_eq!(
            &out[0..6],
            &syn[6..12],
            "back to the neighbour it came from"
        );
        assert_eq!(view.quoted(), ((SERVER6, 5555), (HOST6, 8038)), "its quote");
        if let Err(e) = view.verify_checksum() {
            panic!("{e}");
        }
        assert!(
            fx.dp.maps.ct6.keys().next().is_none() && fx.dp.maps.ct6_new.keys().next().is_none(),
            "no flow for it"
        );
    });
}

/// Hop-limit-1 probes from one forged /64 draw the kernel's burst of six errors, then
/// none (`drop-icmp-ratelimit`); a probe from another /64 still gets its error.
#[test]
fn time_exceeded_errors_are_rate_limited_per_destination_prefix() {
    if !require_root() {
        return;
    }
    with_fixture("icmprl6", 4096, |fx| {
        setup6(fx);
        // A minute per error: no refill while the test runs.
        set_icmp_limit(
            fx,
            IcmpLimit {
                interval6_ms: 60_000,
                ..IcmpLimit::default()
            },
        );
        let probe = |src: [u8; 16], port: u16| {
            let mut syn = tcp6((src, port), (HOST6, 8038), TCP_SYN, 1);
            syn[14 + 7] = 1;
            syn
        };
        for i in 0..20u8 {
            let mut src = SERVER6;
            src[15] = 10 + i;
            src[8] = i;
            let (want, reason) = if i < 6 {
                (TC_ACT_REDIRECT, IcmpTimeExceeded)
            } else {
                (TC_ACT_SHOT, DropIcmpRatelimit)
            };
            let name = format!("probe {i} from 2001:db8:2::/64");
            let (v, _) = fx.run_counted(&name, IN, &probe(src, 5000 + u16::from(i)), &[reason]);
            assert_eq!(v, want, "{name}: verdict");
        }
        let other = addr([0x20, 0x01, 0x0d, 0xb8, 0, 3], 9);
        let (v, _) = fx.run_counted(
            "control: a probe from another /64",
            IN,
            &probe(other, 6000),
            &[IcmpTimeExceeded],
        );
        assert_eq!(v, TC_ACT_REDIRECT, "control: its error is sent");
    });
}

/// What an attacker tries on IPv6 flows, refused as on IPv4's: a SYN-ACK or bare ACK to a
/// published port opens nothing; a container's unsolicited reply is never masqueraded; a
/// flow moves to the main table only with the handshake's last ACK, acknowledging the
/// answer (a guessed one leaves it where a flood's flows stay); a blind RST outside the
/// window changes nothing, the peer's own RST is accepted.
#[test]
fn ipv6_packets_outside_a_flow_change_nothing() {
    if !require_root() {
        return;
    }
    with_fixture("attack6", 4096, |fx| {
        setup6(fx);
        let client: Addr6 = (SERVER6, 40000);
        for (name, flags) in [("SYN-ACK", TCP_SYN | TCP_ACK), ("bare ACK", TCP_ACK)] {
            step6(
                fx,
                &format!("{name} to a published port"),
                IN,
                &tcp6(client, (HOST6, 8038), flags, 1),
                TC_ACT_OK,
                &[Pass],
            );
            step6(
                fx,
                &format!("untracked {name} from a container"),
                OUT,
                &tcp6((C1, 8080), (SERVER6, 40001), flags, 1),
                TC_ACT_SHOT,
                &[DropNoFlow],
            );
        }
        let tracked = |fx: &Fixture| {
            let main = fx.dp.maps.ct6.keys().filter_map(Result::ok).count();
            let new = fx.dp.maps.ct6_new.keys().filter_map(Result::ok).count();
            (main, new)
        };
        assert_eq!(
            tracked(fx),
            (0, 0),
            "no flow from packets that are no flow's first"
        );
        step6(
            fx,
            "SYN in",
            IN,
            &tcp6_seq(client, (HOST6, 8038), TCP_SYN, (1000, 0)),
            TC_ACT_REDIRECT,
            &[DnatNew, RedirectPeer],
        );
        step6(
            fx,
            "SYN-ACK out",
            OUT,
            &tcp6_seq((C1, 8080), client, TCP_SYN | TCP_ACK, (5000, 1001)),
            TC_ACT_REDIRECT,
            &[CtReply, RedirectRoute],
        );
        step6(
            fx,
            "an ACK with a guessed acknowledgment",
            IN,
            &tcp6_seq(client, (HOST6, 8038), TCP_ACK, (1001, 5001 + 100_000)),
            TC_ACT_REDIRECT,
            &[CtForward, RedirectPeer],
        );
        assert_eq!(
            tracked(fx),
            (0, 2),
            "answered, not acknowledged: a new flow still"
        );
        step6(
            fx,
            "the handshake's last ACK",
            IN,
            &tcp6_seq(client, (HOST6, 8038), TCP_ACK, (1001, 5001)),
            TC_ACT_REDIRECT,
            &[CtForward, RedirectPeer],
        );
        assert_eq!(tracked(fx), (2, 0), "an exchange: in the main table");
        // An off-path host spoofing the client does not know its sequence numbers.
        for seq in [
            200_000,
            1001 + 70_000,
            1001u32.wrapping_sub(70_000),
            0x8000_0000,
        ] {
            step6(
                fx,
                "a RST outside the client's window",
                IN,
                &tcp6_seq(client, (HOST6, 8038), TCP_RST, (seq, 0)),
                TC_ACT_SHOT,
                &[DropTcpWindow],
            );
        }
        assert_eq!(tracked(fx), (2, 0), "the flow lives on");
        step6(
            fx,
            "the client's own RST",
            IN,
            &tcp6_seq(client, (HOST6, 8038), TCP_RST, (1001, 0)),
            TC_ACT_REDIRECT,
            &[CtForward, RedirectPeer],
        );
    });
}

/// The two-packet attack of issue 28 on IPv6: a forged SYN-ACK in the client's direction
/// of an established published flow, then a RST in the forged sequence, and a bare ACK
/// far ahead before a RST there: all `drop-tcp-window` or passed untaught, the flow
/// goes on; the control: the client's own in-window RST closes it.
#[test]
fn ipv6_a_forged_syn_ack_then_rst_cannot_reset_a_published_flow() {
    if !require_root() {
        return;
    }
    with_fixture("synack6", 4096, |fx| {
        setup6(fx);
        let (client, published) = ((SERVER6, 40010), (HOST6, 8038));
        step6(
            fx,
            "SYN in",
            IN,
            &tcp6_seq(client, published, TCP_SYN, (1000, 0)),
            TC_ACT_REDIRECT,
            &[DnatNew, RedirectPeer],
        );
        step6(
            fx,
            "SYN-ACK out",
            OUT,
            &tcp6_seq((C1, 8080), client, TCP_SYN | TCP_ACK, (5000, 1001)),
            TC_ACT_REDIRECT,
            &[CtReply, RedirectRoute],
        );
        step6(
            fx,
            "the handshake's last ACK",
            IN,
            &tcp6_seq(client, published, TCP_ACK, (1001, 5001)),
            TC_ACT_REDIRECT,
            &[CtForward, RedirectPeer],
        );
        let entries = |fx: &Fixture| {
            let mut all: Vec<_> = fx.dp.maps.ct6.iter().filter_map(Result::ok).collect();
            all.sort_by_key(|(k, _)| *k);
            all
        };
        let before = entries(fx);
        let forged = 900_000_000;
        step6(
            fx,
            "a forged SYN-ACK in the client's direction",
            IN,
            &tcp6_seq(client, published, TCP_SYN | TCP_ACK, (forged, 0)),
            TC_ACT_SHOT,
            &[DropTcpWindow],
        );
        step6(
            fx,
            "a RST in the forged sequence",
            IN,
            &tcp6_seq(client, published, TCP_RST, (forged + 1, 0)),
            TC_ACT_SHOT,
            &[DropTcpWindow],
        );
        step6(
            fx,
            "a bare ACK far ahead passes",
            IN,
            &tcp6_seq(client, published, TCP_ACK, (1001 + 10_000_000, 5001)),
            TC_ACT_REDIRECT,
            &[CtForward, RedirectPeer],
        );
        step6(
            fx,
            "a RST where it pointed",
            IN,
            &tcp6_seq(client, published, TCP_RST, (1001 + 10_000_000, 0)),
            TC_ACT_SHOT,
            &[DropTcpWindow],
        );
        assert_eq!(entries(fx), before, "both entries byte-identical");
        step6(
            fx,
            "the client's next ACK still goes through",
            IN,
            &tcp6_seq(client, published, TCP_ACK, (1001, 5001)),
            TC_ACT_REDIRECT,
            &[CtForward, RedirectPeer],
        );
        step6(
            fx,
            "the client's own RST",
            IN,
            &tcp6_seq(client, published, TCP_RST, (1001, 0)),
            TC_ACT_REDIRECT,
            &[CtForward, RedirectPeer],
        );
        let rst_seen = entries(fx)
            .iter()
            .any(|(_, v)| v.tcp_seen & common::ct::TCP_RST != 0);
        assert!(rst_seen, "the in-window RST closes the flow");
    });
}
