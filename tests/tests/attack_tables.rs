//! `BPF_PROG_TEST_RUN`, one case per attack on the datapath-as-firewall: packets that are
//! not the first of their flow, that come from the wrong side, that spoof, that clash,
//! that flood. Each asserts the verdict and the named counter, and that no state was
//! created where none may be.
use std::net::{SocketAddr, UdpSocket};

use Hook::{FromContainer as OUT, FromUplink as IN};
use Reason::*;
use aya::maps::lpm_trie::Key;
use bpfnet::datapath::Hook;
use bpfnet_tests::{
    fixture::{Fixture, TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT, XDP_DROP, with_fixture},
    packet::{Addr, TCP_ACK, TCP_SYN, View, icmp_error, tcp, tcp_seq, udp},
    require_root,
    tables::{
        C1, C2, HOST, PORTS, SERVER, entries, flow_state, set_icmp_limit, setup, snat_port, step,
    },
};
use common::{
    Be16, Be32, CLUSTER_HOST_GW, CLUSTER_NODE, CLUSTER_ROUTED, CT_SNAT, ClusterRoute, CtKey,
    IcmpLimit, PROTO_TCP, Reason, TcpState, ct::TCP_RST,
};

const ATTACKER: [u8; 4] = [198, 51, 100, 66];

/// A TCP flow from container `c` to `s` through SNAT (SYN seq 1000), answered by the
/// server (SYN-ACK seq 5000): its SNAT port.
fn answered_snat(fx: &mut Fixture, c: Addr, s: Addr) -> u16 {
    let out = step(
        fx,
        "SYN out",
        OUT,
        &tcp_seq(c, s, TCP_SYN, (1000, 0), b""),
        TC_ACT_REDIRECT,
        &[SnatNew, RedirectRoute],
    );
    let p = snat_port("SYN out", &out, HOST);
    step(
        fx,
        "SYN-ACK in",
        IN,
        &tcp_seq(s, (HOST, p), TCP_SYN | TCP_ACK, (5000, 1001), b""),
        TC_ACT_REDIRECT,
        &[CtReply, RedirectPeer],
    );
    step(
        fx,
        "the handshake's last ACK out",
        OUT,
        &tcp_seq(c, s, TCP_ACK, (1001, 5001), b""),
        TC_ACT_REDIRECT,
        &[CtForward, RedirectRoute],
    );
    p
}

/// No CT entry mentions `port` (either way, any table).
fn untracked(fx: &Fixture, port: u16) -> bool {
    let p = Be16::new(port);
    !entries(fx)
        .iter()
        .any(|(k, _)| k.src_port == p || k.dst_port == p)
}

#[test]
fn packets_that_are_not_a_flows_first_create_nothing() {
    if !require_root() {
        return;
    }
    with_fixture("first", 4096, |fx| {
        setup(fx, PORTS);
        // A SYN-ACK or a bare ACK to a published port is a reply to some host
        // connection, never the start of a published flow.
        for (name, flags) in [("SYN-ACK", TCP_SYN | TCP_ACK), ("bare ACK", TCP_ACK)] {
            step(
                fx,
                &format!("{name} to a published port"),
                IN,
                &tcp((SERVER, 443), (HOST, 8038), flags, b""),
                TC_ACT_OK,
                &[Pass],
            );
        }
        assert!(untracked(fx, 443), "no flow from a SYN-ACK or bare ACK");
        // A container's reply-like packet with no flow is dropped, never masqueraded.
        for (name, flags) in [("SYN-ACK", TCP_SYN | TCP_ACK), ("ACK", TCP_ACK)] {
            step(
                fx,
                &format!("untracked {name} from a container"),
                OUT,
                &tcp((C1, 8080), (ATTACKER, 40000), flags, b""),
                TC_ACT_SHOT,
                &[DropNoFlow],
            );
        }
        assert!(
            untracked(fx, 40000),
            "nothing masqueraded for an unsolicited reply"
        );
    });
}

#[test]
fn the_inbound_policy_keeps_unpublished_container_ports_unreachable() {
    if !require_root() {
        return;
    }
    with_fixture("inbound", 4096, |fx| {
        setup(fx, PORTS);
        // A neighbour routing 172.17.0.0/16 through the host probes container ports.
        for port in [22, 8080] {
            step(
                fx,
                "a routed SYN to a container address",
                IN,
                &tcp((ATTACKER, 40000), (C1, port), TCP_SYN, b""),
                TC_ACT_SHOT,
                &[DropInbound],
            );
        }
        step(
            fx,
            "UDP to a container address",
            IN,
            &udp((ATTACKER, 40000), (C2, 53), b"q", true),
            TC_ACT_SHOT,
            &[DropInbound],
        );
        let quoted = tcp((C1, 8080), (ATTACKER, 40000), TCP_SYN | TCP_ACK, b"");
        step(
            fx,
            "an ICMP error about no flow, to a container",
            IN,
            &icmp_error(ATTACKER, C1, 3, 3, 0, &quoted),
            TC_ACT_SHOT,
            &[DropInbound],
        );
        assert!(untracked(fx, 40000), "no flow from a probe");
        // The published port itself works.
        step(
            fx,
            "a SYN to the published port",
            IN,
            &tcp((ATTACKER, 40001), (HOST, 8038), TCP_SYN, b""),
            TC_ACT_REDIRECT,
            &[DnatNew, RedirectPeer],
        );
    });
}

#[test]
fn a_host_connection_inside_a_published_range_stays_the_hosts() {
    if !require_root() {
        return;
    }
    with_fixture("hostsock", 4096, |fx| {
        setup(fx, PORTS);
        // The host's resolver: a connected UDP socket on a port the UDP publish covers.
        let sock = UdpSocket::bind(SocketAddr::from((HOST, 8038))).expect("bind the host's socket");
        sock.connect(SocketAddr::from((SERVER, 53)))
            .expect("connect");
        step(
            fx,
            "the DNS answer to the host's socket",
            IN,
            &udp((SERVER, 53), (HOST, 8038), b"answer", true),
            TC_ACT_OK,
            &[HostSocket, Pass],
        );
        assert!(untracked(fx, 53), "no DNAT flow for the host's own reply");
        // Another peer still reaches the published port.
        step(
            fx,
            "a datagram from elsewhere to the published port",
            IN,
            &udp((ATTACKER, 5353), (HOST, 8038), b"q", true),
            TC_ACT_REDIRECT,
            &[DnatNew, RedirectPeer],
        );
    });
}

#[test]
fn a_blind_rst_cannot_close_a_flow_nor_free_its_tuple() {
    if !require_root() {
        return;
    }
    with_fixture("rst", 4096, |fx| {
        setup(fx, PORTS);
        set_two_ports(fx);
        let (c, s) = ((C1, 40000), (SERVER, 443));
        let p = answered_snat(fx, c, s);
        step(
            fx,
            "data out",
            OUT,
            &tcp_seq(c, s, TCP_ACK, (1001, 5001), b"hello"),
            TC_ACT_REDIRECT,
            &[CtForward, RedirectRoute],
        );
        for seq in [
            200_000,
            5001 + 70_000,
            5001u32.wrapping_sub(70_000),
            0x8000_0000,
        ] {
            step(
                fx,
                "a RST outside the server's window",
                IN,
                &tcp_seq(s, (HOST, p), TCP_RST, (seq, 0), b""),
                TC_ACT_SHOT,
                &[DropTcpWindow],
            );
        }
        // The flow is alive: its tuple is not handed to another container.
        let out = step(
            fx,
            "a second container to the same server",
            OUT,
            &tcp((C2, 40000), s, TCP_SYN, b""),
            TC_ACT_REDIRECT,
            &[SnatNew, RedirectRoute],
        );
        assert_ne!(snat_port("second", &out, HOST), p, "the live tuple is kept");
        step(
            fx,
            "the live flow goes on",
            IN,
            &tcp_seq(s, (HOST, p), TCP_ACK, (5001, 1006), b"world"),
            TC_ACT_REDIRECT,
            &[CtReply, RedirectPeer],
        );
        // An in-window RST is the server's: accepted.
        step(
            fx,
            "the server's own RST",
            IN,
            &tcp_seq(s, (HOST, p), TCP_RST, (5006, 0), b""),
            TC_ACT_REDIRECT,
            &[CtReply, RedirectPeer],
        );
    });
}

/// Only two source ports, so a tuple given away would show.
fn set_two_ports(fx: &mut Fixture) {
    bpfnet_tests::tables::set_ports(fx, (PORTS.0, PORTS.0 + 1));
}

#[test]
fn a_forged_icmp_error_never_crosses_into_another_flow() {
    if !require_root() {
        return;
    }
    with_fixture("icmpforge", 4096, |fx| {
        setup(fx, PORTS);
        // C1 talks to the server through SNAT.
        let out = step(
            fx,
            "C1's flow",
            OUT,
            &udp((C1, 5000), (SERVER, 53), b"q", true),
            TC_ACT_REDIRECT,
            &[SnatNew, RedirectRoute],
        );
        let p = snat_port("C1's flow", &out, HOST);
        // C2 forges an error quoting the server's reply to C1, as if C2 had received it.
        let reply_to_c1 = udp((SERVER, 53), (C1, 5000), b"a", true);
        step(
            fx,
            "C2 quoting a packet it never received",
            OUT,
            &icmp_error(C2, SERVER, 3, 3, 0, &reply_to_c1),
            TC_ACT_SHOT,
            &[DropIcmpForged],
        );
        // From outside: an error about C1's flow addressed to someone else.
        let to_server = udp((HOST, p), (SERVER, 53), b"q", true);
        step(
            fx,
            "an error not addressed to the flow's sender",
            IN,
            &icmp_error(ATTACKER, [192, 0, 2, 99], 3, 3, 0, &to_server),
            TC_ACT_SHOT,
            &[DropIcmpForged],
        );
        // The real thing is translated into C1's flow only.
        let back = step(
            fx,
            "a router's error about C1's datagram",
            IN,
            &icmp_error(ATTACKER, HOST, 3, 3, 0, &to_server),
            TC_ACT_REDIRECT,
            &[IcmpError, RedirectPeer],
        );
        assert_eq!(View(&back).addrs(), (ATTACKER, C1));
    });
}

#[test]
fn a_lost_half_is_repaired_and_a_clashing_dnat_is_refused() {
    if !require_root() {
        return;
    }
    with_fixture("halves", 4096, |fx| {
        setup(fx, PORTS);
        let (c, s) = ((C1, 5000), (SERVER, 53));
        let out = step(
            fx,
            "UDP out",
            OUT,
            &udp(c, s, b"q", true),
            TC_ACT_REDIRECT,
            &[SnatNew, RedirectRoute],
        );
        let p = snat_port("UDP out", &out, HOST);
        step(
            fx,
            "answer",
            IN,
            &udp(s, (HOST, p), b"a", true),
            TC_ACT_REDIRECT,
            &[CtReply, RedirectPeer],
        );
        step(
            fx,
            "the container speaks again: an exchange, in the main table",
            OUT,
            &udp(c, s, b"q1", true),
            TC_ACT_REDIRECT,
            &[CtForward, RedirectRoute],
        );
        // LRU takes the forward half only.
        let fwd = CtKey::new(
            u32::from_ne_bytes(C1),
            u32::from_ne_bytes(SERVER),
            Be16::new(5000),
            Be16::new(53),
            17,
        );
        fx.dp.maps.ct.remove(&fwd).expect("evict the forward half");
        let out = step(
            fx,
            "next datagram",
            OUT,
            &udp(c, s, b"q2", true),
            TC_ACT_REDIRECT,
            &[CtRepaired, RedirectRoute],
        );
        assert_eq!(View(&out).src(), (HOST, p), "repaired onto the same tuple");

        // A flow whose reply tuple is C1:8080 ↔ the attacker's port exists (C1 dialed
        // out from port 8080); a DNAT that would reuse that tuple is refused.
        let egress = tcp_seq((C1, 8080), (ATTACKER, 40000), TCP_SYN, (1, 0), b"");
        step(
            fx,
            "C1 dials out from its port 8080",
            OUT,
            &egress,
            TC_ACT_REDIRECT,
            &[SnatNew, RedirectRoute],
        );
        step(
            fx,
            "a DNAT whose reply tuple a flow holds",
            IN,
            &tcp((ATTACKER, 40000), (HOST, 8038), TCP_SYN, b""),
            TC_ACT_SHOT,
            &[DropCtClash],
        );
        let snat_flows = entries(fx)
            .iter()
            .filter(|(k, v)| v.flags & CT_SNAT != 0 && k.proto == PROTO_TCP)
            .count();
        assert_eq!(snat_flows, 2, "the existing flow is intact");
    });
}

#[test]
fn ttl_and_mtu_are_a_routers() {
    if !require_root() {
        return;
    }
    with_fixture("ttl", 4096, |fx| {
        setup(fx, PORTS);
        let mut expiring = tcp((C1, 40000), (SERVER, 443), TCP_SYN, b"");
        set_ttl(&mut expiring, 1);
        step(
            fx,
            "a container's packet whose TTL ends here goes to the kernel untranslated",
            OUT,
            &expiring,
            TC_ACT_OK,
            &[TtlExpired],
        );
        let mut expiring = tcp((ATTACKER, 40000), (HOST, 8038), TCP_SYN, b"");
        set_ttl(&mut expiring, 1);
        let answer = step(
            fx,
            "from outside, answered time-exceeded",
            IN,
            &expiring,
            TC_ACT_REDIRECT,
            &[IcmpTimeExceeded],
        );
        let v = View(&answer);
        assert_eq!(v.addrs(), (HOST, ATTACKER), "from the host to the sender");
        assert_eq!(answer[14 + 20], 11, "ICMP time exceeded");
        assert_eq!(
            v.quoted(),
            ((ATTACKER, 40000), (HOST, 8038), true),
            "quoting the packet as it was sent"
        );
        assert_eq!(
            &answer[6..12],
            &expiring[0..6],
            "sent back to the neighbour"
        );
        assert!(untracked(fx, 40000), "no flow for a packet that expired");
        let out = step(
            fx,
            "a forwarded packet loses one TTL",
            IN,
            &tcp((ATTACKER, 40001), (HOST, 8038), TCP_SYN, b""),
            TC_ACT_REDIRECT,
            &[DnatNew, RedirectPeer],
        );
        assert_eq!(
            out[14 + 8],
            63,
            "TTL 64 → 63 (the checksum is verified by step)"
        );
    });
}

fn set_ttl(frame: &mut [u8], ttl: u8) {
    frame[14 + 8] = ttl;
    frame[14 + 10..14 + 12].copy_from_slice(&[0, 0]);
    let c = bpfnet_tests::packet::checksum(&[&frame[14..34]]);
    frame[14 + 10..14 + 12].copy_from_slice(&c.to_be_bytes());
}

/// A probe from `src` to a published port whose TTL ends at the host.
fn expiring(src: [u8; 4], port: u16) -> Vec<u8> {
    let mut frame = tcp((src, port), (HOST, 8038), TCP_SYN, b"");
    set_ttl(&mut frame, 1);
    frame
}

/// TTL-1 probes with a forged source draw time-exceeded errors as the kernel sends its
/// own: the burst of six per destination /24, then nothing (`drop-icmp-ratelimit`,
/// the probe dropped); another /24 still gets its error, and over all destinations
/// the global bucket (`icmp_msgs_burst`) ends the errors too.
#[test]
fn time_exceeded_errors_are_rate_limited_per_destination_and_overall() {
    if !require_root() {
        return;
    }
    with_fixture("icmprl", 4096, |fx| {
        setup(fx, PORTS);
        // A minute per error: no refill while the test runs.
        let limit = IcmpLimit {
            interval4_ms: 60_000,
            ..IcmpLimit::default()
        };
        set_icmp_limit(fx, limit);
        for i in 0..20u8 {
            // One host's /24, its low byte varied as a forger would.
            let src = [198, 51, 100, 60 + i];
            let (want, reason) = if i < 6 {
                (TC_ACT_REDIRECT, IcmpTimeExceeded)
            } else {
                (TC_ACT_SHOT, DropIcmpRatelimit)
            };
            step(
                fx,
                &format!("probe {i} from 198.51.100.0/24"),
                IN,
                &expiring(src, 40000 + u16::from(i)),
                want,
                &[reason],
            );
        }
        step(
            fx,
            "control: a probe from another /24 gets its error",
            IN,
            &expiring([203, 0, 113, 5], 41000),
            TC_ACT_REDIRECT,
            &[IcmpTimeExceeded],
        );
        // Overall: no per-destination limit, a global burst of three, no refill.
        set_icmp_limit(
            fx,
            IcmpLimit {
                interval4_ms: 0,
                msgs_per_sec: 0,
                msgs_burst: 3,
                ..IcmpLimit::default()
            },
        );
        for i in 0..8u8 {
            let (want, reason) = if i < 3 {
                (TC_ACT_REDIRECT, IcmpTimeExceeded)
            } else {
                (TC_ACT_SHOT, DropIcmpRatelimit)
            };
            let src = [203, 0, 113, 100 + i];
            step(
                fx,
                &format!("probe {i}, no limit per destination"),
                IN,
                &expiring(src, 42000 + u16::from(i)),
                want,
                &[reason],
            );
        }
        let off = IcmpLimit {
            flags: 0,
            ..IcmpLimit::default()
        };
        set_icmp_limit(fx, off);
        step(
            fx,
            "control: with the rate mask naming no time exceeded, no limit",
            IN,
            &expiring([198, 51, 100, 99], 43000),
            TC_ACT_REDIRECT,
            &[IcmpTimeExceeded],
        );
    });
}

#[test]
fn an_oversize_frame_gets_frag_needed_not_silence() {
    if !require_root() {
        return;
    }
    with_fixture("mtu", 4096, |fx| {
        setup(fx, PORTS);
        fx.set_uplink_mtu(1280);
        let big = tcp((C1, 40000), (SERVER, 443), TCP_SYN, &[0x5a; 1400]);
        step(
            fx,
            "too big, don't-fragment: untranslated to the kernel, which answers",
            OUT,
            &big,
            TC_ACT_OK,
            &[FragNeeded],
        );
        assert!(
            untracked(fx, 40000),
            "no flow for a packet that did not leave"
        );
        let mut no_df = big.clone();
        no_df[14 + 6] = 0;
        no_df[14 + 10..14 + 12].copy_from_slice(&[0, 0]);
        let c = bpfnet_tests::packet::checksum(&[&no_df[14..34]]);
        no_df[14 + 10..14 + 12].copy_from_slice(&c.to_be_bytes());
        step(
            fx,
            "too big, fragmenting allowed",
            OUT,
            &no_df,
            TC_ACT_SHOT,
            &[DropMtu],
        );
        step(
            fx,
            "a packet that fits",
            OUT,
            &tcp((C1, 40001), (SERVER, 443), TCP_SYN, &[0x5a; 1000]),
            TC_ACT_REDIRECT,
            &[SnatNew, RedirectRoute],
        );
    });
}

#[test]
fn a_syn_flood_cannot_evict_established_flows() {
    if !require_root() {
        return;
    }
    // 64 entries: the new-flow table holds 16; the flood is 500 SYNs.
    with_fixture("flood", 64, |fx| {
        setup(fx, PORTS);
        let (c, s) = ((C1, 40000), (SERVER, 443));
        let p = answered_snat(fx, c, s);
        // The backend answers every SYN: the flood's flows are answered, never
        // acknowledged (a spoofer does not see the SYN-ACK).
        for i in 0..500u32 {
            // Sources where the fixture routes (the server's network), so the answers leave.
            let src = ([198, 51, 100, 3 + (i % 250) as u8], 1024 + i as u16);
            let (v, _) = fx.run(IN, &tcp(src, (HOST, 8038), TCP_SYN, b""));
            assert_eq!(v, TC_ACT_REDIRECT, "flood SYN {i} is served (DNAT)");
            let syn_ack = tcp_seq((C1, 8080), src, TCP_SYN | TCP_ACK, (7000, 1001), b"");
            let (v, _) = fx.run(OUT, &syn_ack);
            assert_eq!(v, TC_ACT_REDIRECT, "the backend's SYN-ACK {i} goes out");
        }
        step(
            fx,
            "the established flow survives the flood",
            IN,
            &tcp_seq(s, (HOST, p), TCP_ACK, (5001, 1001), b"data"),
            TC_ACT_REDIRECT,
            &[CtReply, RedirectPeer],
        );
    });
}

/// A datagram from a container that only looks like an ICMP error: its payload starts
/// with the header of a packet of the container's own flow, where an ICMP error would
/// quote it. It is a new UDP flow, masqueraded with its payload untouched, never
/// translated as an error (the ICMP-error path once read every packet's bytes after
/// its first 8 of L4 header as a quoted header, whatever its protocol).
#[test]
fn a_datagram_that_mimics_an_icmp_error_is_only_a_datagram() {
    if !require_root() {
        return;
    }
    with_fixture("icmpmimic", 4096, |fx| {
        setup(fx, PORTS);
        step(
            fx,
            "C1's flow",
            OUT,
            &udp((C1, 5000), (SERVER, 53), b"q", true),
            TC_ACT_REDIRECT,
            &[SnatNew, RedirectRoute],
        );
        // What an error about the server's reply to C1 would quote, after 8 bytes of
        // UDP header instead of 8 of ICMP header.
        let quoted = udp((SERVER, 53), (C1, 5000), b"a", true)[14..].to_vec();
        let out = step(
            fx,
            "a datagram carrying that as its payload",
            OUT,
            &udp((C1, 5001), (SERVER, 53), &quoted, true),
            TC_ACT_REDIRECT,
            &[SnatNew, RedirectRoute],
        );
        assert_eq!(
            View(&out).addrs(),
            (HOST, SERVER),
            "masqueraded as a datagram"
        );
        assert_eq!(&out[14 + 20 + 8..], &quoted[..], "its payload untouched");
    });
}

/// Off the wire nobody speaks for a container inside its flows (issue 27: anyone on a LAN
/// bridged to an uplink knows its address): a packet of the container's side of a
/// masqueraded flow, or of a published port's backend side, is `drop-spoof` and changes
/// nothing; the real flows go on.
#[test]
fn a_containers_side_of_a_flow_is_forged_off_the_wire() {
    if !require_root() {
        return;
    }
    with_fixture("inject", 4096, |fx| {
        setup(fx, PORTS);
        let (c, s) = ((C1, 40000), (SERVER, 443));
        answered_snat(fx, c, s);
        let dns = ((C2, 5353), (SERVER, 53));
        step(
            fx,
            "a datagram out",
            OUT,
            &udp(dns.0, dns.1, b"q", true),
            TC_ACT_REDIRECT,
            &[SnatNew, RedirectRoute],
        );
        let client = (ATTACKER, 40001);
        step(
            fx,
            "a SYN to the published port",
            IN,
            &tcp_seq(client, (HOST, 8038), TCP_SYN, (7000, 0), b""),
            TC_ACT_REDIRECT,
            &[DnatNew, RedirectPeer],
        );
        let backend = (C1, 8080);
        let before = entries(fx);
        for (name, frame) in [
            (
                "the container's data in its masqueraded flow",
                tcp_seq(c, s, TCP_ACK, (1001, 5001), b"forged"),
            ),
            (
                "the container's RST in its masqueraded flow",
                tcp_seq(c, s, TCP_RST | TCP_ACK, (1001, 5001), b""),
            ),
            (
                "a datagram in a container's masqueraded flow",
                udp(dns.0, dns.1, b"forged", true),
            ),
            (
                "the backend's SYN-ACK to the published port's client",
                tcp_seq(backend, client, TCP_SYN | TCP_ACK, (9000, 7001), b""),
            ),
        ] {
            step(
                fx,
                &format!("{name}, off the wire"),
                IN,
                &frame,
                TC_ACT_SHOT,
                &[DropSpoof],
            );
        }
        assert_eq!(entries(fx), before, "the forged packets changed no flow");
        step(
            fx,
            "the container's own data",
            OUT,
            &tcp_seq(c, s, TCP_ACK, (1001, 5001), b"real"),
            TC_ACT_REDIRECT,
            &[CtForward, RedirectRoute],
        );
        step(
            fx,
            "the backend's own SYN-ACK",
            OUT,
            &tcp_seq(backend, client, TCP_SYN | TCP_ACK, (9000, 7001), b""),
            TC_ACT_REDIRECT,
            &[CtReply, RedirectRoute],
        );
    });
}

// ---- off-path TCP segments (netfilter's `tcp_in_window`) ----

/// A published-port flow from `client` to TCP 8038 (SYN seq 1000), answered by C1:8080
/// (SYN-ACK seq 5000) and acknowledged: established, in the main table.
fn established_dnat(fx: &mut Fixture, client: Addr) {
    let published = (HOST, 8038);
    step(
        fx,
        "SYN in",
        IN,
        &tcp_seq(client, published, TCP_SYN, (1000, 0), b""),
        TC_ACT_REDIRECT,
        &[DnatNew, RedirectPeer],
    );
    step(
        fx,
        "the backend's SYN-ACK",
        OUT,
        &tcp_seq((C1, 8080), client, TCP_SYN | TCP_ACK, (5000, 1001), b""),
        TC_ACT_REDIRECT,
        &[CtReply, RedirectRoute],
    );
    step(
        fx,
        "the handshake's last ACK",
        IN,
        &tcp_seq(client, published, TCP_ACK, (1001, 5001), b""),
        TC_ACT_REDIRECT,
        &[CtForward, RedirectPeer],
    );
    assert_eq!(
        flow_state(fx, (client, published, PROTO_TCP)),
        TcpState::Established
    );
}

/// The two packets of the off-path attack on the established flow `from` → `to`, off
/// the wire: a SYN-ACK in `from`'s direction with a sequence of the attacker's choosing,
/// then a RST inside it. Both must be `drop-tcp-window` and leave every entry as it was.
fn forge_syn_ack_then_rst(fx: &mut Fixture, from: Addr, to: Addr) {
    let before = entries(fx);
    let forged = 900_000_000;
    step(
        fx,
        "a forged SYN-ACK in the originator's direction",
        IN,
        &tcp_seq(from, to, TCP_SYN | TCP_ACK, (forged, 0), b""),
        TC_ACT_SHOT,
        &[DropTcpWindow],
    );
    step(
        fx,
        "a RST in the forged sequence",
        IN,
        &tcp_seq(from, to, TCP_RST, (forged + 1, 0), b""),
        TC_ACT_SHOT,
        &[DropTcpWindow],
    );
    assert_eq!(entries(fx), before, "both entries byte-identical");
}

/// The measured attack of issue 28: an off-path host that knows only the client's address
/// and port forges a SYN-ACK in the client's direction (which once restarted the
/// client's sequence tracking), then a RST inside the sequence it forged. Both are
/// `drop-tcp-window`, the flow is untouched and goes on; the client's own RST (the
/// control) still closes it.
#[test]
fn a_forged_syn_ack_then_rst_cannot_reset_a_published_flow() {
    if !require_root() {
        return;
    }
    with_fixture("synack", 4096, |fx| {
        setup(fx, PORTS);
        let (client, published) = ((SERVER, 40000), (HOST, 8038));
        established_dnat(fx, client);
        step(
            fx,
            "the client's data",
            IN,
            &tcp_seq(client, published, TCP_ACK, (1001, 5001), b"hello"),
            TC_ACT_REDIRECT,
            &[CtForward, RedirectPeer],
        );
        forge_syn_ack_then_rst(fx, client, published);
        assert_eq!(
            flow_state(fx, (client, published, PROTO_TCP)),
            TcpState::Established
        );
        step(
            fx,
            "the client's next data still goes through",
            IN,
            &tcp_seq(client, published, TCP_ACK, (1006, 5001), b"more"),
            TC_ACT_REDIRECT,
            &[CtForward, RedirectPeer],
        );
        step(
            fx,
            "the client's own RST",
            IN,
            &tcp_seq(client, published, TCP_RST, (1010, 0), b""),
            TC_ACT_REDIRECT,
            &[CtForward, RedirectPeer],
        );
        assert_eq!(
            flow_state(fx, (client, published, PROTO_TCP)),
            TcpState::Closed,
            "an in-window RST closes the flow"
        );
    });
}

/// The forward entry's sequence end, of the flow whose forward key starts at `client`.
fn seq_end_of(fx: &Fixture, client: Addr) -> u32 {
    let (ip, port) = (u32::from_ne_bytes(client.0), Be16::new(client.1));
    entries(fx)
        .iter()
        .find(|(k, _)| k.src_ip == ip && k.src_port == port)
        .map_or_else(|| panic!("no entry from {client:?}"), |(_, v)| v.seq_end)
}

/// A bare ACK far ahead of the client's sequence passes (dropping data would cost the
/// fast path a second lookup) but teaches the tracking nothing, so the RST that follows
/// it is still out of window. The control: a segment inside the window does move it, and
/// a RST beyond the old window but inside the new one is accepted.
#[test]
fn a_segment_far_ahead_does_not_widen_the_window_for_a_forged_rst() {
    if !require_root() {
        return;
    }
    with_fixture("ahead", 4096, |fx| {
        setup(fx, PORTS);
        let (client, published) = ((SERVER, 40001), (HOST, 8038));
        established_dnat(fx, client);
        let far = 1001 + 10_000_000;
        step(
            fx,
            "a bare ACK far ahead",
            IN,
            &tcp_seq(client, published, TCP_ACK, (far, 5001), b"x"),
            TC_ACT_REDIRECT,
            &[CtForward, RedirectPeer],
        );
        assert_eq!(seq_end_of(fx, client), 1001, "nothing learned");
        step(
            fx,
            "a RST where the forged ACK pointed",
            IN,
            &tcp_seq(client, published, TCP_RST, (far + 1, 0), b""),
            TC_ACT_SHOT,
            &[DropTcpWindow],
        );
        assert_eq!(
            flow_state(fx, (client, published, PROTO_TCP)),
            TcpState::Established
        );
        // Control: in-window data moves the window forward.
        let near = 1001 + 40_000;
        step(
            fx,
            "the client's data inside the window",
            IN,
            &tcp_seq(client, published, TCP_ACK, (near, 5001), b"hello"),
            TC_ACT_REDIRECT,
            &[CtForward, RedirectPeer],
        );
        assert_eq!(seq_end_of(fx, client), near + 5, "learned");
        step(
            fx,
            "a RST beyond the old window, inside the new one",
            IN,
            &tcp_seq(client, published, TCP_RST, (near + 5 + 40_000, 0), b""),
            TC_ACT_REDIRECT,
            &[CtForward, RedirectPeer],
        );
        assert_eq!(
            flow_state(fx, (client, published, PROTO_TCP)),
            TcpState::Closed
        );
    });
}

/// A SYN-ACK is valid only as the answer to the flow's SYN, from the answering side:
/// acknowledging anything but the SYN's end, coming from the originator's side, or
/// sent again with another sequence number, it is `drop-tcp-window` and the flow stays
/// as it was. The control: the real answer, and its identical retransmission, pass.
#[test]
fn a_syn_ack_counts_only_as_the_answer_to_the_flows_syn() {
    if !require_root() {
        return;
    }
    with_fixture("answer", 4096, |fx| {
        setup(fx, PORTS);
        let (c, s) = ((C1, 40002), (SERVER, 443));
        let out = step(
            fx,
            "SYN out",
            OUT,
            &tcp_seq(c, s, TCP_SYN, (1000, 0), b""),
            TC_ACT_REDIRECT,
            &[SnatNew, RedirectRoute],
        );
        let p = snat_port("SYN out", &out, HOST);
        let before = entries(fx);
        for ack in [0, 1000, 1002, 1001 + 65_536] {
            step(
                fx,
                &format!("a SYN-ACK acknowledging {ack}"),
                IN,
                &tcp_seq(s, (HOST, p), TCP_SYN | TCP_ACK, (7000, ack), b""),
                TC_ACT_SHOT,
                &[DropTcpWindow],
            );
        }
        step(
            fx,
            "a SYN-ACK from the originator's side",
            OUT,
            &tcp_seq(c, s, TCP_SYN | TCP_ACK, (1000, 5001), b""),
            TC_ACT_SHOT,
            &[DropTcpWindow],
        );
        assert_eq!(entries(fx), before, "both entries byte-identical");
        assert_eq!(flow_state(fx, (c, s, PROTO_TCP)), TcpState::SynSent);
        step(
            fx,
            "the server's SYN-ACK",
            IN,
            &tcp_seq(s, (HOST, p), TCP_SYN | TCP_ACK, (5000, 1001), b""),
            TC_ACT_REDIRECT,
            &[CtReply, RedirectPeer],
        );
        step(
            fx,
            "a second SYN-ACK with another sequence",
            IN,
            &tcp_seq(s, (HOST, p), TCP_SYN | TCP_ACK, (9000, 1001), b""),
            TC_ACT_SHOT,
            &[DropTcpWindow],
        );
        step(
            fx,
            "the SYN-ACK sent again",
            IN,
            &tcp_seq(s, (HOST, p), TCP_SYN | TCP_ACK, (5000, 1001), b""),
            TC_ACT_REDIRECT,
            &[CtReply, RedirectPeer],
        );
        step(
            fx,
            "the handshake's last ACK",
            OUT,
            &tcp_seq(c, s, TCP_ACK, (1001, 5001), b""),
            TC_ACT_REDIRECT,
            &[CtForward, RedirectRoute],
        );
        assert_eq!(flow_state(fx, (c, s, PROTO_TCP)), TcpState::Established);
    });
}

/// The same attack on a cluster flow: a container of another node's prefix (host-gw,
/// behind 192.0.2.2) connects to C1 untranslated, past the inbound policy; a host
/// spoofing it forges a SYN-ACK and a RST in the forged sequence: both
/// `drop-tcp-window`, the flow goes on; the control: the peer's own RST closes it.
#[test]
fn a_forged_syn_ack_then_rst_cannot_reset_a_cluster_flow() {
    if !require_root() {
        return;
    }
    with_fixture("cluster", 4096, |fx| {
        setup(fx, PORTS);
        bpfnet_tests::netns::sh(&["ip", "route", "add", "10.244.1.0/24", "via", "192.0.2.2"]);
        let route = |kind, node: [u8; 4]| ClusterRoute {
            node: Be32::from_bytes(node),
            vni: 0,
            kind,
            ifindex: 0,
        };
        let m = &mut fx.dp.maps;
        for (prefix, len, r) in [
            ([172, 17, 0, 0], 16, route(CLUSTER_ROUTED, [0; 4])),
            ([10, 244, 1, 0], 24, route(CLUSTER_HOST_GW, [192, 0, 2, 2])),
            ([192, 0, 2, 2], 32, route(CLUSTER_NODE, [192, 0, 2, 2])),
        ] {
            let key = Key::new(len, u32::from_ne_bytes(prefix));
            m.cluster.insert(&key, r, 0).expect("cluster route");
        }
        let (peer, server) = (([10, 244, 1, 5], 40000), (C1, 8080));
        let (v, _) = fx.run(IN, &tcp_seq(peer, server, TCP_SYN, (1000, 0), b""));
        assert_eq!(v, TC_ACT_REDIRECT, "the cluster peer's SYN is admitted");
        let (v, _) = fx.run(
            OUT,
            &tcp_seq(server, peer, TCP_SYN | TCP_ACK, (5000, 1001), b""),
        );
        assert_eq!(v, TC_ACT_REDIRECT, "C1's SYN-ACK goes to the peer's node");
        step(
            fx,
            "the handshake's last ACK",
            IN,
            &tcp_seq(peer, server, TCP_ACK, (1001, 5001), b""),
            TC_ACT_REDIRECT,
            &[CtForward, RedirectPeer],
        );
        assert_eq!(
            flow_state(fx, (peer, server, PROTO_TCP)),
            TcpState::Established
        );
        forge_syn_ack_then_rst(fx, peer, server);
        step(
            fx,
            "the peer's data goes on",
            IN,
            &tcp_seq(peer, server, TCP_ACK, (1001, 5001), b"hello"),
            TC_ACT_REDIRECT,
            &[CtForward, RedirectPeer],
        );
        step(
            fx,
            "the peer's own RST",
            IN,
            &tcp_seq(peer, server, TCP_RST, (1006, 0), b""),
            TC_ACT_REDIRECT,
            &[CtForward, RedirectPeer],
        );
        assert_eq!(flow_state(fx, (peer, server, PROTO_TCP)), TcpState::Closed);
    });
}

/// Whether some CT entry has `src` as its key's source (any table, any direction).
fn flow_from(fx: &Fixture, src: [u8; 4]) -> bool {
    entries(fx)
        .iter()
        .any(|(k, _)| k.src_ip == u32::from_ne_bytes(src))
}

/// A managed network's addresses never come from outside (issue 28, as the kernel's
/// reverse-path filter would judge them): a datagram forged off the wire with another
/// network's container as its source, to a published UDP port, would have the service's
/// answer delivered into that network. It, and one from a bridge address no container
/// holds, or from the bridge's own, is `drop-spoof` and creates no flow, at `from_uplink`
/// and at `xdp_uplink` alike; the same datagram from a real outside source is served.
#[test]
fn a_managed_networks_source_off_the_wire_is_forged() {
    if !require_root() {
        return;
    }
    with_fixture("srcnet", 4096, |fx| {
        setup(fx, PORTS);
        for (name, src) in [
            ("another network's container (C2)", C2),
            ("a bridge address no container holds", [172, 17, 9, 9]),
            ("the bridge's own address", [172, 17, 0, 1]),
        ] {
            let frame = udp((src, 5353), (HOST, 8038), b"forged", true);
            let (v, out) = fx.run_counted(
                &format!("a datagram from {name} to the published UDP port"),
                IN,
                &frame,
                &[DropSpoof],
            );
            assert_eq!(v, TC_ACT_SHOT, "{name}: dropped");
            assert_eq!(out, frame, "{name}: not translated");
            assert!(!flow_from(fx, src), "{name}: no flow, so no answer");
            let xdp = fx.run_xdp_counted(&format!("{name}, at xdp_uplink"), &frame, &[DropSpoof]);
            assert_eq!(xdp, XDP_DROP, "{name}: xdp_uplink drops it");
        }
        step(
            fx,
            "the same datagram from an outside source",
            IN,
            &udp((ATTACKER, 5353), (HOST, 8038), b"q", true),
            TC_ACT_REDIRECT,
            &[DnatNew, RedirectPeer],
        );
        assert!(flow_from(fx, ATTACKER), "the outside source's flow exists");
    });
}

/// A flow remembers the side each of its directions arrives from: an answer to a
/// container's egress comes off an uplink, never from a container's veth (here an address
/// that moved onto a veth, a container now claiming the server's address), so there it is
/// `drop-spoof` and is not translated into the flow's container; from the uplink it is.
#[test]
fn a_flows_answer_from_the_wrong_side_is_forged() {
    if !require_root() {
        return;
    }
    with_fixture("side", 4096, |fx| {
        setup(fx, PORTS);
        let (c, s) = ((C1, 5353), (SERVER, 53));
        let out = step(
            fx,
            "a datagram out",
            OUT,
            &udp(c, s, b"q", true),
            TC_ACT_REDIRECT,
            &[SnatNew, RedirectRoute],
        );
        let p = snat_port("a datagram out", &out, HOST);
        // The veth now owns the server's address (registered on the fixture's port).
        let ep = common::Endpoint::new(
            fx.bridge,
            fx.bridge,
            bpfnet_tests::fixture::CONTAINER_MAC,
            0,
        );
        fx.dp
            .maps
            .endpoints
            .insert(u32::from_ne_bytes(SERVER), ep, 0)
            .expect("endpoint");
        let answer = udp(s, (HOST, p), b"answer", true);
        let before = entries(fx);
        let (v, got) = fx.run_counted(
            "the answer from a container's veth",
            OUT,
            &answer,
            &[DropSpoof],
        );
        assert_eq!(
            v, TC_ACT_SHOT,
            "the answer from a container's veth: dropped"
        );
        assert_eq!(got, answer, "not translated");
        assert_eq!(entries(fx), before, "the flow is left as it was");
        fx.dp
            .maps
            .endpoints
            .remove(&u32::from_ne_bytes(SERVER))
            .expect("remove endpoint");
        let back = step(
            fx,
            "the answer off the uplink",
            IN,
            &answer,
            TC_ACT_REDIRECT,
            &[CtReply, RedirectPeer],
        );
        assert_eq!(View(&back).dst(), c, "translated back to the container");
    });
}

const PEER_GW: [u8; 4] = [10, 244, 2, 7];
const PEER_VXLAN: [u8; 4] = [10, 244, 1, 5];

/// The cluster of the fixture: the local bridge's prefix, a host-gw peer's prefix behind
/// the router (192.0.2.2, whose MAC every test frame carries as its source) and a VXLAN
/// peer's prefix, all of one network.
fn cluster(fx: &mut Fixture) {
    use aya::maps::lpm_trie::Key;
    use common::{CLUSTER_HOST_GW, CLUSTER_ROUTED, CLUSTER_VXLAN, ClusterRoute};
    let node = Be32::from_bytes(bpfnet_tests::tables::ROUTER);
    let uplink = fx.uplink;
    for (net, len, kind, node, ifindex) in [
        ([172, 17, 0, 0], 16, CLUSTER_ROUTED, Be32::ZERO, 0),
        ([10, 244, 2, 0], 24, CLUSTER_HOST_GW, node, 0),
        ([10, 244, 1, 0], 24, CLUSTER_VXLAN, node, uplink),
    ] {
        let r = ClusterRoute {
            node,
            vni: 1,
            kind,
            ifindex,
        };
        fx.dp
            .maps
            .cluster
            .insert(&Key::new(len, u32::from_ne_bytes(net)), r, 0)
            .expect("cluster prefix");
    }
}

/// A cluster source passes only by the cluster's own checks (issue 28): off the plain
/// uplink, a host-gw peer's prefix only by its strict reverse path (the frame from the
/// peer's node), a VXLAN peer's never (it comes out of the tunnel); a forged one is
/// `drop-spoof` to a container and to a published port alike, and creates nothing. The
/// peer's real packets pass.
#[test]
fn a_cluster_source_off_the_wire_passes_only_by_its_reverse_path() {
    if !require_root() {
        return;
    }
    with_fixture("srccl", 4096, |fx| {
        setup(fx, PORTS);
        cluster(fx);
        let from_mac = |mut f: Vec<u8>, mac: [u8; 6]| {
            f[6..12].copy_from_slice(&mac);
            f
        };
        let other = bpfnet_tests::fixture::OTHER_MAC;
        for (name, frame) in [
            (
                "a host-gw peer's source from another MAC, to a container",
                from_mac(tcp((PEER_GW, 40000), (C1, 80), TCP_SYN, b""), other),
            ),
            (
                "a host-gw peer's source from another MAC, to the published port",
                from_mac(udp((PEER_GW, 40001), (HOST, 8038), b"q", true), other),
            ),
            (
                "a VXLAN peer's source off the plain wire, to a container",
                tcp((PEER_VXLAN, 40002), (C1, 80), TCP_SYN, b""),
            ),
            (
                "a VXLAN peer's source off the plain wire, to the published port",
                udp((PEER_VXLAN, 40003), (HOST, 8038), b"q", true),
            ),
        ] {
            step(fx, name, IN, &frame, TC_ACT_SHOT, &[DropSpoof]);
        }
        assert!(
            !flow_from(fx, PEER_GW) && !flow_from(fx, PEER_VXLAN),
            "no flow from a forged cluster source"
        );
        step(
            fx,
            "the host-gw peer's own SYN to a container",
            IN,
            &tcp((PEER_GW, 40000), (C1, 80), TCP_SYN, b""),
            TC_ACT_REDIRECT,
            &[RedirectPeer],
        );
        step(
            fx,
            "the host-gw peer's own datagram to the published port",
            IN,
            &udp((PEER_GW, 40001), (HOST, 8038), b"q", true),
            TC_ACT_REDIRECT,
            &[DnatNew, RedirectPeer],
        );
    });
}

/// A container's flow toward a VXLAN peer is answered out of the tunnel only: its answer
/// off the plain uplink is `drop-spoof`, not translated nor delivered. The same flow
/// toward a host-gw peer, answered off the wire, is the control.
#[test]
fn a_tunnel_flows_answer_off_the_plain_wire_is_forged() {
    if !require_root() {
        return;
    }
    with_fixture("sidetun", 4096, |fx| {
        setup(fx, PORTS);
        cluster(fx);
        for (name, peer, answered) in [
            ("a VXLAN peer", PEER_VXLAN, false),
            ("a host-gw peer", PEER_GW, true),
        ] {
            let (c, s) = ((C1, 40000), (peer, 80));
            step(
                fx,
                &format!("a SYN to {name}"),
                OUT,
                &tcp_seq(c, s, TCP_SYN, (1000, 0), b""),
                TC_ACT_REDIRECT,
                &[RedirectRoute],
            );
            let answer = tcp_seq(s, c, TCP_SYN | TCP_ACK, (5000, 1001), b"");
            let name = format!("{name}'s SYN-ACK off the plain uplink");
            if answered {
                step(
                    fx,
                    &name,
                    IN,
                    &answer,
                    TC_ACT_REDIRECT,
                    &[CtReply, RedirectPeer],
                );
            } else {
                let before = entries(fx);
                step(fx, &name, IN, &answer, TC_ACT_SHOT, &[DropSpoof]);
                assert_eq!(entries(fx), before, "{name}: the flow is left as it was");
            }
        }
    });
}

/// A cluster entry in the fixture's `cluster_v1`.
fn cluster_entry(fx: &mut Fixture, net: [u8; 4], len: u32, r: ClusterRoute) {
    fx.dp
        .maps
        .cluster
        .insert(&Key::new(len, u32::from_ne_bytes(net)), r, 0)
        .expect("cluster entry");
}

/// A node's own address (`CLUSTER_NODE`) in the fixture's cluster.
fn node_entry(fx: &mut Fixture, node: [u8; 4]) {
    let r = ClusterRoute {
        node: Be32::from_bytes(node),
        vni: 0,
        kind: CLUSTER_NODE,
        ifindex: 0,
    };
    cluster_entry(fx, node, 32, r);
}

/// A VXLAN datagram to the host is admitted on the underlay only from a registered
/// node, by the way back to it: the node on the uplink's segment, from its own MAC,
/// passes; the same datagram from another MAC (a host spoofing the node's address), from
/// an address that is no node's (on the segment or behind the router), from a node whose
/// route leaves by another device, or from a node whose neighbour is not known is
/// `drop-tunnel-source`. The control: the same datagram from a non-node to another
/// port is the host's, passed, and so is any VXLAN datagram while bpfnet has no VXLAN
/// device (the uplink does not guard the tunnel: the port is another overlay's). XDP
/// leaves the judgement to TC (it passes the forged datagram, counting nothing).
#[test]
fn a_vxlan_datagram_is_admitted_on_the_underlay_only_from_a_node_by_its_way_back() {
    use bpfnet_tests::{
        fixture::{OTHER_MAC, XDP_PASS},
        packet::vxlan,
    };
    use common::{IFACE_TUNNEL_GUARD, IFACE_UPLINK};
    if !require_root() {
        return;
    }
    with_fixture("vxsrc", 4096, |fx| {
        setup(fx, PORTS);
        cluster(fx);
        let node = bpfnet_tests::tables::ROUTER;
        // A node whose route leaves by the bridge side, one on the segment without a
        // neighbour entry.
        let (elsewhere, unresolved) = ([172, 17, 0, 9], [192, 0, 2, 3]);
        for n in [node, elsewhere, unresolved] {
            node_entry(fx, n);
        }
        let inner = tcp((PEER_VXLAN, 40000), (C1, 80), TCP_SYN, b"");
        let from_mac = |mut f: Vec<u8>, mac: [u8; 6]| {
            f[6..12].copy_from_slice(&mac);
            f
        };
        let real = vxlan(node, HOST, 1, &inner);
        // Without bpfnet's VXLAN device the port is someone else's overlay: not judged.
        step(
            fx,
            "a non-node's VXLAN datagram while bpfnet has no VXLAN device",
            IN,
            &vxlan([192, 0, 2, 77], HOST, 1, &inner),
            TC_ACT_OK,
            &[Pass],
        );
        fx.dp
            .maps
            .ifaces
            .insert(fx.uplink, IFACE_UPLINK | IFACE_TUNNEL_GUARD, 0)
            .expect("the uplink guards the tunnel");
        step(
            fx,
            "the node's own VXLAN datagram",
            IN,
            &real,
            TC_ACT_OK,
            &[Pass],
        );
        let outsider = [192, 0, 2, 77];
        for (name, frame) in [
            (
                "the node's address from another MAC",
                from_mac(real.clone(), OTHER_MAC),
            ),
            (
                "an address on the segment that is no node's",
                vxlan(outsider, HOST, 1, &inner),
            ),
            (
                "an address behind the router that is no node's",
                vxlan(ATTACKER, HOST, 1, &inner),
            ),
            (
                "a node whose way back leaves by another device",
                vxlan(elsewhere, HOST, 1, &inner),
            ),
            (
                "a node whose neighbour is not known",
                vxlan(unresolved, HOST, 1, &inner),
            ),
        ] {
            step(fx, name, IN, &frame, TC_ACT_SHOT, &[DropTunnelSource]);
        }
        let xdp = fx.run_xdp_counted(
            "a forged VXLAN datagram through XDP",
            &from_mac(real.clone(), OTHER_MAC),
            &[],
        );
        assert_eq!(xdp, XDP_PASS, "XDP leaves the outer source to TC");
        step(
            fx,
            "the non-node's datagram to another port",
            IN,
            &udp((outsider, 49152), (HOST, 4790), b"q", true),
            TC_ACT_OK,
            &[Pass],
        );
    });
}

/// A routed cluster prefix's source is admitted only from the next hop the host's own
/// route to the prefix names (`ClusterRoute::node`): with the route's gateway (the
/// router, whose MAC the frame carries) the SYN to a container passes; the same SYN,
/// from the same MAC by the same route, is `drop-spoof` when the entry names another
/// gateway, when it names none (a prefix reached by the default route alone) and when it
/// says the prefix is on the link (each source its own next hop). None creates a flow.
#[test]
fn a_routed_cluster_source_is_admitted_only_from_its_routes_next_hop() {
    if !require_root() {
        return;
    }
    with_fixture("routedhop", 4096, |fx| {
        setup(fx, PORTS);
        cluster(fx);
        // The fixture routes 198.51.100.0/24 through the router, 192.0.2.2.
        let source = [198, 51, 100, 9];
        let syn = tcp((source, 40000), (C1, 80), TCP_SYN, b"");
        let entry = |node: Be32| ClusterRoute {
            node,
            vni: 1,
            kind: CLUSTER_ROUTED,
            ifindex: 0,
        };
        for (name, node) in [
            ("another gateway", Be32::from_bytes([192, 0, 2, 9])),
            ("no gateway", Be32::ZERO),
            ("the link", common::CLUSTER_ON_LINK),
        ] {
            cluster_entry(fx, [198, 51, 100, 0], 24, entry(node));
            step(
                fx,
                &format!("a routed source whose entry names {name}"),
                IN,
                &syn,
                TC_ACT_SHOT,
                &[DropSpoof],
            );
            assert!(!flow_from(fx, source), "{name}: no flow");
        }
        let router = Be32::from_bytes(bpfnet_tests::tables::ROUTER);
        cluster_entry(fx, [198, 51, 100, 0], 24, entry(router));
        step(
            fx,
            "a routed source by its route's gateway",
            IN,
            &syn,
            TC_ACT_REDIRECT,
            &[RedirectPeer],
        );
    });
}
