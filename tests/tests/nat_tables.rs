//! `BPF_PROG_TEST_RUN` for SNAT, reverse SNAT, TCP state, ICMP echo and ICMP errors,
//! fragments, hairpin, SNAT port exhaustion and a full CT map. Each step checks the
//! verdict, the rewritten headers (checksums recomputed from scratch), the counters
//! that moved and the CT entries.
use Hook::{FromContainer as OUT, FromUplink as IN};
use Reason::*;
use bpfnet::datapath::Hook;
use bpfnet_tests::{
    fixture::{
        CLIENT_MAC, CONTAINER_MAC, Fixture, TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT, with_fixture,
    },
    packet::{IpOpts, TCP_ACK, TCP_SYN, View, icmp_echo, icmp_error, tcp, tcp_seq, udp, udp_with},
    require_root,
    tables::{
        BRIDGE_IP, C1, C2, HOST, PORTS, ROUTER, SERVER, entries, flow_state, ip, set_ports, setup,
        snat_port, step,
    },
};
use common::{
    Be16, CT_DNAT, CT_ORIG_LOCAL, CT_REPLY_LOCAL, CT_SIDE_VETH, CT_SNAT, PROTO_TCP, Reason,
    TcpState,
    ct::{TCP_FIN, TCP_RST},
};

#[test]
fn snat_tcp_udp_and_tcp_state() {
    if !require_root() {
        return;
    }
    with_fixture("snat", 4096, |fx| {
        setup(fx, PORTS);
        let (c, s) = ((C1, 40000), (SERVER, 80));
        let out = step(
            fx,
            "SYN out",
            OUT,
            &tcp(c, s, TCP_SYN, b""),
            TC_ACT_REDIRECT,
            &[SnatNew, RedirectRoute],
        );
        let p = snat_port("SYN out", &out, HOST);
        assert_eq!(View(&out).dst(), s, "destination kept");
        assert_eq!(View(&out).dst_mac(), CLIENT_MAC, "routed to the gateway");

        let back = step(
            fx,
            "SYN-ACK in",
            IN,
            &tcp_seq(s, (HOST, p), TCP_SYN | TCP_ACK, (5000, 1001), b""),
            TC_ACT_REDIRECT,
            &[CtReply, RedirectPeer],
        );
        assert_eq!(
            (View(&back).src(), View(&back).dst()),
            (s, c),
            "reply back to the container"
        );
        assert_eq!(View(&back).dst_mac(), CONTAINER_MAC);

        let out = step(
            fx,
            "ACK out",
            OUT,
            &tcp(c, s, TCP_ACK, b"GET"),
            TC_ACT_REDIRECT,
            &[CtForward, RedirectRoute],
        );
        assert_eq!(View(&out).src(), (HOST, p), "same flow, same port");
        assert_eq!(flow_state(fx, (c, s, PROTO_TCP)), TcpState::Established);
        step(
            fx,
            "FIN out",
            OUT,
            &tcp(c, s, TCP_ACK | TCP_FIN, b""),
            TC_ACT_REDIRECT,
            &[CtForward, RedirectRoute],
        );
        assert_eq!(flow_state(fx, (c, s, PROTO_TCP)), TcpState::Closing);
        step(
            fx,
            "FIN in",
            IN,
            &tcp(s, (HOST, p), TCP_ACK | TCP_FIN, b""),
            TC_ACT_REDIRECT,
            &[CtReply, RedirectPeer],
        );
        assert_eq!(flow_state(fx, (c, s, PROTO_TCP)), TcpState::TimeWait);
        step(
            fx,
            "SYN reuses the tuple",
            OUT,
            &tcp(c, s, TCP_SYN, b""),
            TC_ACT_REDIRECT,
            &[CtForward, RedirectRoute],
        );
        assert_eq!(
            flow_state(fx, (c, s, PROTO_TCP)),
            TcpState::SynSent,
            "a new SYN starts afresh"
        );
        // A blind RST: the server has sent nothing on the new connection, so only a RST
        // that acknowledges the SYN exactly is the server's.
        step(
            fx,
            "blind RST in",
            IN,
            &tcp_seq(s, (HOST, p), TCP_RST | TCP_ACK, (777, 4242), b""),
            TC_ACT_SHOT,
            &[DropTcpWindow],
        );
        assert_eq!(
            flow_state(fx, (c, s, PROTO_TCP)),
            TcpState::SynSent,
            "the blind RST changed nothing"
        );
        step(
            fx,
            "RST in, acknowledging the SYN",
            IN,
            &tcp_seq(s, (HOST, p), TCP_RST | TCP_ACK, (0, 1001), b""),
            TC_ACT_REDIRECT,
            &[CtReply, RedirectPeer],
        );
        assert_eq!(flow_state(fx, (c, s, PROTO_TCP)), TcpState::Closed);

        let (cu, su) = ((C1, 5000), (SERVER, 53));
        let out = step(
            fx,
            "UDP out",
            OUT,
            &udp(cu, su, b"q", true),
            TC_ACT_REDIRECT,
            &[SnatNew, RedirectRoute],
        );
        let pu = snat_port("UDP out", &out, HOST);
        let back = step(
            fx,
            "UDP in",
            IN,
            &udp(su, (HOST, pu), b"a", true),
            TC_ACT_REDIRECT,
            &[CtReply, RedirectPeer],
        );
        assert_eq!(View(&back).dst(), cu);
        // traceroute: a router's time-exceeded about the masqueraded datagram.
        let ttl = icmp_error(ROUTER, HOST, 11, 0, 0, &out);
        let back = step(
            fx,
            "time exceeded in",
            IN,
            &ttl,
            TC_ACT_REDIRECT,
            &[IcmpError, RedirectPeer],
        );
        assert_eq!(View(&back).addrs(), (ROUTER, C1));
        let (qs, qd, q_ok) = View(&back).quoted();
        assert_eq!(
            (qs, qd, q_ok),
            (cu, su, true),
            "quoted datagram as the container sent it"
        );

        let out = step(
            fx,
            "second container, same destination",
            OUT,
            &tcp((C2, 40000), s, TCP_SYN, b""),
            TC_ACT_REDIRECT,
            &[SnatNew, RedirectRoute],
        );
        assert_ne!(
            snat_port("second container", &out, HOST),
            p,
            "distinct tuples"
        );

        step(
            fx,
            "stray reply to the host passes",
            IN,
            &tcp(s, (HOST, 7), TCP_ACK, b""),
            TC_ACT_OK,
            &[Pass],
        );
        step(
            fx,
            "to the host itself passes",
            OUT,
            &tcp(c, (HOST, 22), TCP_SYN, b""),
            TC_ACT_OK,
            &[Pass],
        );
        step(
            fx,
            "to another container passes (bridged)",
            OUT,
            &tcp(c, (C2, 22), TCP_SYN, b""),
            TC_ACT_OK,
            &[Pass],
        );
        let orig = entries(fx)
            .iter()
            .filter(|(_, v)| v.flags & CT_SNAT != 0)
            .count();
        assert_eq!(orig, 6, "three SNAT flows, two entries each");
    });
}

#[test]
fn icmp_echo_errors_and_fragments() {
    if !require_root() {
        return;
    }
    with_fixture("icmp", 4096, |fx| {
        setup(fx, PORTS);
        let out = step(
            fx,
            "echo request out",
            OUT,
            &icmp_echo(C1, SERVER, 0x1234, true),
            TC_ACT_REDIRECT,
            &[SnatNew, RedirectRoute],
        );
        let v = View(&out);
        assert_eq!(v.addrs(), (HOST, SERVER));
        let (kind, id) = v.icmp();
        assert_eq!(kind, 8);
        assert!(
            (PORTS.0..=PORTS.1).contains(&id),
            "echo id {id} from the SNAT range"
        );
        let back = step(
            fx,
            "echo reply in",
            IN,
            &icmp_echo(SERVER, HOST, id, false),
            TC_ACT_REDIRECT,
            &[CtReply, RedirectPeer],
        );
        assert_eq!(View(&back).addrs(), (SERVER, C1));
        assert_eq!(View(&back).icmp(), (0, 0x1234), "identifier restored");

        // A router behind the host says the masqueraded TCP flow needs fragmentation.
        let (c, s) = ((C1, 40000), (SERVER, 443));
        let out = step(
            fx,
            "TCP out",
            OUT,
            &tcp(c, s, TCP_SYN, b""),
            TC_ACT_REDIRECT,
            &[SnatNew, RedirectRoute],
        );
        let p = snat_port("TCP out", &out, HOST);
        let err = icmp_error(ROUTER, HOST, 3, 4, 1280, &out);
        let back = step(
            fx,
            "frag-needed in",
            IN,
            &err,
            TC_ACT_REDIRECT,
            &[IcmpError, RedirectPeer],
        );
        let v = View(&back);
        assert_eq!(
            v.addrs(),
            (ROUTER, C1),
            "error goes to the container, from the router"
        );
        let (qs, qd, q_ok) = v.quoted();
        assert_eq!((qs, qd), (c, s), "quoted packet is the container's own");
        assert!(q_ok, "quoted IPv4 header checksum");
        assert_eq!(
            &back[14 + 20 + 6..14 + 20 + 8],
            &1280u16.to_be_bytes(),
            "MTU kept"
        );
        step(
            fx,
            "error about no flow passes",
            IN,
            &icmp_error(
                ROUTER,
                HOST,
                3,
                4,
                1280,
                &tcp((HOST, p + 1), s, TCP_ACK, b""),
            ),
            TC_ACT_OK,
            &[Pass],
        );

        // A backend answers a published UDP port with "port unreachable".
        let client = (ROUTER, 5555);
        let dnat = step(
            fx,
            "UDP to published port",
            IN,
            &udp(client, (HOST, 8038), b"x", true),
            TC_ACT_REDIRECT,
            &[DnatNew, RedirectPeer],
        );
        assert_eq!(View(&dnat).dst(), (C1, 8080));
        let unreach = icmp_error(C1, ROUTER, 3, 3, 0, &dnat);
        let out = step(
            fx,
            "port unreachable out",
            OUT,
            &unreach,
            TC_ACT_REDIRECT,
            &[IcmpError, RedirectRoute],
        );
        let v = View(&out);
        assert_eq!(
            v.addrs(),
            (HOST, ROUTER),
            "the backend now speaks as the host"
        );
        let (qs, qd, q_ok) = v.quoted();
        assert_eq!(
            (qs, qd),
            (client, (HOST, 8038)),
            "quoted as the client sent it"
        );
        assert!(q_ok, "quoted IPv4 header checksum");

        // Fragments of a masqueraded datagram.
        let first_opts = IpOpts {
            options: 0,
            frag_off: 0x2000,
        };
        let first = udp_with((C1, 6000), (SERVER, 53), &[7; 64], true, first_opts);
        let out = step(
            fx,
            "first fragment out",
            OUT,
            &first,
            TC_ACT_REDIRECT,
            &[SnatNew, RedirectRoute],
        );
        let pf = snat_port("first fragment", &out, HOST);
        let mut later = udp_with(
            (C1, 6000),
            (SERVER, 53),
            &[7; 64],
            true,
            IpOpts {
                options: 0,
                frag_off: 0x0009,
            },
        );
        later.truncate(14 + 20 + 40);
        later[16..18].copy_from_slice(&60u16.to_be_bytes());
        later[24..26].copy_from_slice(&[0, 0]);
        let c = bpfnet_tests::packet::checksum(&[&later[14..34]]);
        later[24..26].copy_from_slice(&c.to_be_bytes());
        let (v, out2) = fx.run_counted(
            "later fragment out",
            OUT,
            &later,
            &[FragmentTranslated, CtForward, RedirectRoute],
        );
        assert_eq!(v, TC_ACT_REDIRECT, "later fragment verdict");
        assert_eq!(
            View(&out2).addrs(),
            (HOST, SERVER),
            "later fragment masqueraded"
        );
        assert_eq!(
            &out2[34..],
            &later[34..],
            "later fragment payload untouched"
        );
        assert_eq!(
            bpfnet_tests::packet::checksum(&[&out2[14..34]]),
            0,
            "later fragment IP checksum"
        );
        // The reassembled datagram's answer comes back to the port the first fragment took.
        let back = step(
            fx,
            "reply to the fragmented datagram",
            IN,
            &udp((SERVER, 53), (HOST, pf), b"answer", true),
            TC_ACT_REDIRECT,
            &[CtReply, RedirectPeer],
        );
        assert_eq!(
            (View(&back).src(), View(&back).dst()),
            ((SERVER, 53), (C1, 6000)),
            "the reply to the fragments' flow reaches their sender"
        );
        let mut stray = later.clone();
        stray[18..20].copy_from_slice(&0x9999u16.to_be_bytes());
        let (v, _) = fx.run_counted("unknown later fragment out", OUT, &stray, &[DropFragment]);
        assert_eq!(v, TC_ACT_SHOT);
        // From outside (a container's address off the wire would be a spoof).
        let mut to_host = stray.clone();
        to_host[26..30].copy_from_slice(&SERVER);
        to_host[30..34].copy_from_slice(&HOST);
        let (v, _) = fx.run_counted(
            "unknown later fragment to the host",
            IN,
            &to_host,
            &[FragmentPassed],
        );
        assert_eq!(v, TC_ACT_OK);
    });
}

#[test]
fn hairpin_exhaustion_and_full_ct() {
    if !require_root() {
        return;
    }
    with_fixture("hair", 4096, |fx| {
        setup(fx, PORTS);
        let out = step(
            fx,
            "hairpin to another container",
            OUT,
            &tcp((C2, 41000), (HOST, 8038), TCP_SYN, b""),
            TC_ACT_REDIRECT,
            &[DnatNew, RedirectPeer],
        );
        assert_eq!(
            (View(&out).src(), View(&out).dst()),
            ((C2, 41000), (C1, 8080))
        );
        assert_eq!(View(&out).dst_mac(), CONTAINER_MAC);
        let back = step(
            fx,
            "its reply",
            OUT,
            &tcp_seq(
                (C1, 8080),
                (C2, 41000),
                TCP_SYN | TCP_ACK,
                (5000, 1001),
                b"",
            ),
            TC_ACT_REDIRECT,
            &[CtReply, RedirectPeer],
        );
        assert_eq!(
            (View(&back).src(), View(&back).dst()),
            ((HOST, 8038), (C2, 41000))
        );

        let out = step(
            fx,
            "hairpin to its own port",
            OUT,
            &tcp((C1, 41001), (BRIDGE_IP, 8038), TCP_SYN, b""),
            TC_ACT_REDIRECT,
            &[DnatNew, RedirectPeer],
        );
        // Masqueraded to the bridge's address, keeping its port as MASQUERADE does.
        assert_eq!(View(&out).src(), (BRIDGE_IP, 41001), "own hairpin source");
        let hp = 41001;
        assert_eq!(View(&out).dst(), (C1, 8080));
        let back = step(
            fx,
            "own hairpin reply",
            OUT,
            &tcp_seq(
                (C1, 8080),
                (BRIDGE_IP, hp),
                TCP_SYN | TCP_ACK,
                (5000, 1001),
                b"",
            ),
            TC_ACT_REDIRECT,
            &[CtReply, RedirectPeer],
        );
        assert_eq!(
            (View(&back).src(), View(&back).dst()),
            ((BRIDGE_IP, 8038), (C1, 41001))
        );
        let flags = entries(fx)
            .into_iter()
            .find(|(k, _)| k.src_port == Be16::new(41001))
            .map(|(_, v)| v.flags);
        assert_eq!(
            flags,
            Some(CT_DNAT | CT_SNAT | CT_ORIG_LOCAL | CT_REPLY_LOCAL | CT_SIDE_VETH),
            "hairpin to its own port: both ends a local endpoint, begun at its veth"
        );

        // Four source ports, three containers: a container takes at most half of them.
        const C3: [u8; 4] = [172, 17, 0, 6];
        fx.managed(&[C1, C2, C3]);
        set_ports(fx, (PORTS.0, PORTS.0 + 3));
        let syn = |c: [u8; 4], sport: u16, seq: u32| {
            tcp_seq((c, sport), (SERVER, 25), TCP_SYN, (seq, 0), b"")
        };
        for (c, sport) in [(C1, 50000), (C1, 50001), (C2, 50000), (C2, 50001)] {
            step(
                fx,
                "within the range",
                OUT,
                &syn(c, sport, 1000),
                TC_ACT_REDIRECT,
                &[SnatNew, RedirectRoute],
            );
        }
        step(
            fx,
            "a container holding half the ports gets no more",
            OUT,
            &syn(C1, 50002, 1000),
            TC_ACT_SHOT,
            &[DropSnatQuota],
        );
        step(
            fx,
            "ports exhausted for a third container",
            OUT,
            &syn(C3, 50000, 1000),
            TC_ACT_SHOT,
            &[DropSnatPorts],
        );
        let snat_port_of = |fx: &Fixture, c: [u8; 4], sport: u16| {
            entries(fx)
                .into_iter()
                .find(|(k, _)| k.src_ip == ip(c) && k.src_port == Be16::new(sport))
                .map(|(k, v)| k.translated(&v).src_port.get())
                .expect("the flow's SNAT port")
        };
        // C1's first flow: the server closes first, so it is the server that waits in
        // TIME_WAIT, and it takes a new SYN on that tuple only beyond what it has seen.
        let p0 = snat_port_of(fx, C1, 50000);
        for (name, hook, frame) in [
            (
                "answered",
                IN,
                tcp_seq((SERVER, 25), (HOST, p0), TCP_SYN | TCP_ACK, (0, 1001), b""),
            ),
            (
                "the server closes first",
                IN,
                tcp_seq((SERVER, 25), (HOST, p0), TCP_ACK | TCP_FIN, (1, 1001), b""),
            ),
            (
                "the container closes",
                OUT,
                tcp_seq((C1, 50000), (SERVER, 25), TCP_ACK | TCP_FIN, (1001, 2), b""),
            ),
        ] {
            let seen = if hook == IN { CtReply } else { CtForward };
            let out = if hook == IN {
                RedirectPeer
            } else {
                RedirectRoute
            };
            step(fx, name, hook, &frame, TC_ACT_REDIRECT, &[seen, out]);
        }
        step(
            fx,
            "a SYN the server's TIME_WAIT would refuse does not get the tuple",
            OUT,
            &syn(C3, 50000, 500),
            TC_ACT_SHOT,
            &[DropSnatPorts],
        );
        let out = step(
            fx,
            "a SYN beyond what the server has seen takes it over",
            OUT,
            &syn(C3, 50000, 5000),
            TC_ACT_REDIRECT,
            &[SnatNew, RedirectRoute],
        );
        assert_eq!(View(&out).src(), (HOST, p0), "took over the finished tuple");
        // C2's first flow is reset by the server (acknowledging its SYN): reusable at once.
        let p1 = snat_port_of(fx, C2, 50000);
        step(
            fx,
            "reset by the server",
            IN,
            &tcp_seq((SERVER, 25), (HOST, p1), TCP_RST | TCP_ACK, (0, 1001), b""),
            TC_ACT_REDIRECT,
            &[CtReply, RedirectPeer],
        );
        let out = step(
            fx,
            "a reset flow's port is reused",
            OUT,
            &syn(C3, 50001, 7),
            TC_ACT_REDIRECT,
            &[SnatNew, RedirectRoute],
        );
        assert_eq!(
            View(&out).src(),
            (HOST, p1),
            "took over the reset flow's port"
        );
        let stale = entries(fx)
            .iter()
            .any(|(k, _)| k.src_ip == ip(C2) && k.src_port == Be16::new(50000));
        assert!(!stale, "the reset flow's forward entry is gone");
        step(
            fx,
            "another destination has ports of its own",
            OUT,
            &tcp((C1, 50002), (SERVER, 26), TCP_SYN, b""),
            TC_ACT_REDIRECT,
            &[SnatNew, RedirectRoute],
        );
    });

    // A CT map of 16 entries under 40 flows: LRU evicts, every packet is still served.
    with_fixture("full", 16, |fx| {
        setup(fx, PORTS);
        for sport in 0..40u16 {
            let out = step(
                fx,
                "flow into a full CT map",
                IN,
                &tcp((ROUTER, 30000 + sport), (HOST, 8038), TCP_SYN, b""),
                TC_ACT_REDIRECT,
                &[DnatNew, RedirectPeer],
            );
            assert_eq!(View(&out).dst(), (C1, 8080));
        }
        // The newest flows evicted the oldest: the first flow's entries are gone.
        let first_flow_kept = fx
            .dp
            .maps
            .ct
            .keys()
            .filter_map(Result::ok)
            .any(|k| k.src_port == Be16::new(30000) || k.dst_port == Be16::new(30000));
        assert!(!first_flow_kept, "LRU evicted the oldest flow");
        let last = step(
            fx,
            "newest flow still tracked",
            IN,
            &tcp((ROUTER, 30039), (HOST, 8038), TCP_ACK, b""),
            TC_ACT_REDIRECT,
            &[CtForward, RedirectPeer],
        );
        assert_eq!(View(&last).dst(), (C1, 8080));
    });
}
