//! BPF_PROG_TEST_RUN for SNAT, reverse SNAT, TCP state, ICMP echo and ICMP errors,
//! fragments, hairpin, SNAT port exhaustion and a full CT map. Each step checks the
//! verdict, the rewritten headers (checksums recomputed from scratch), the counters
//! that moved and the CT entries.
use bpfnet::{conntrack, datapath::Hook};
use bpfnet_tests::{
    fixture::{
        BACKEND_MAC, CLIENT_MAC, Fixture, TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT, with_fixture,
    },
    packet::{Addr, IpOpts, TCP_ACK, TCP_SYN, View, icmp_echo, icmp_error, tcp, udp, udp_with},
    require_root,
};
use common::{
    Backend, CT_DNAT, CT_SNAT, Config, IFACE_UPLINK, PROTO_TCP, PROTO_UDP, PublishedKey, Reason,
    TcpState,
    ct::{TCP_FIN, TCP_RST},
};

const HOST: [u8; 4] = [192, 0, 2, 1];
const ROUTER: [u8; 4] = [192, 0, 2, 2];
const BRIDGE_IP: [u8; 4] = [172, 17, 0, 1];
const C1: [u8; 4] = [172, 17, 0, 4];
const C2: [u8; 4] = [172, 17, 0, 5];
const SERVER: [u8; 4] = [198, 51, 100, 2];
const PORTS: (u16, u16) = (61000, 61999);

use Hook::{FromContainer as OUT, FromUplink as IN};
use Reason::*;

fn ip(a: [u8; 4]) -> u32 {
    u32::from_ne_bytes(a)
}

fn setup(fx: &mut Fixture, ports: (u16, u16)) {
    let m = &mut fx.dp.maps;
    m.ifaces
        .insert(fx.uplink, IFACE_UPLINK, 0)
        .expect("uplink role");
    m.host_ips.insert(ip(HOST), 0, 0).expect("host ip");
    m.host_ips.insert(ip(BRIDGE_IP), 0, 0).expect("bridge ip");
    set_ports(fx, ports);
    let key = PublishedKey {
        host_ip: 0,
        port: 8038u16.to_be(),
        proto: PROTO_TCP,
        _pad: 0,
    };
    let backend = Backend {
        ip: ip(C1),
        port: 8080u16.to_be(),
        _pad: 0,
    };
    fx.dp
        .maps
        .published
        .insert(key, backend, 0)
        .expect("publish");
    let udp_key = PublishedKey {
        proto: PROTO_UDP,
        ..key
    };
    fx.dp
        .maps
        .published
        .insert(udp_key, backend, 0)
        .expect("publish udp");
}

fn set_ports(fx: &mut Fixture, (min, max): (u16, u16)) {
    let cfg = Config {
        snat_port_min: min,
        snat_port_max: max,
        ..Config::default()
    };
    fx.dp.maps.config.set(0, cfg, 0).expect("config");
}

/// Run, require `verdict`, valid checksums and the counters; return the output frame.
fn step(
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
        && let Err(e) = View(&out).verify_checksums()
    {
        panic!("{name}: {e}");
    }
    out
}

fn snat_port(name: &str, out: &[u8], from: [u8; 4]) -> u16 {
    let (src, port) = View(out).src();
    assert_eq!(src, from, "{name}: masqueraded source address");
    assert!(
        (PORTS.0..=PORTS.1).contains(&port),
        "{name}: source port {port} outside {PORTS:?}"
    );
    port
}

fn flow_state(fx: &Fixture, orig: (Addr, Addr, u8)) -> TcpState {
    let flows = conntrack::flows(fx.dp.maps.ct.iter().filter_map(Result::ok));
    let f = flows
        .iter()
        .find(|f| {
            let t = conntrack::Tuple::from(&f.key);
            (
                t.src.octets(),
                t.src_port,
                t.dst.octets(),
                t.dst_port,
                f.key.proto,
            ) == (orig.0.0, orig.0.1, orig.1.0, orig.1.1, orig.2)
        })
        .unwrap_or_else(|| panic!("no flow {orig:?}"));
    assert!(f.reply.is_some(), "flow {orig:?} has its reply entry");
    f.tcp_state()
}

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
            &tcp(s, (HOST, p), TCP_SYN | TCP_ACK, b""),
            TC_ACT_REDIRECT,
            &[CtReply, RedirectRoute],
        );
        assert_eq!(
            (View(&back).src(), View(&back).dst()),
            (s, c),
            "reply back to the container"
        );
        assert_eq!(View(&back).dst_mac(), BACKEND_MAC);

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
            &[CtReply, RedirectRoute],
        );
        assert_eq!(flow_state(fx, (c, s, PROTO_TCP)), TcpState::Closed);
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
        step(
            fx,
            "RST in",
            IN,
            &tcp(s, (HOST, p), TCP_RST, b""),
            TC_ACT_REDIRECT,
            &[CtReply, RedirectRoute],
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
            &[CtReply, RedirectRoute],
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
            &[IcmpError, RedirectRoute],
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
        let orig = fx
            .dp
            .maps
            .ct
            .iter()
            .filter_map(Result::ok)
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
            &[CtReply, RedirectRoute],
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
            &[IcmpError, RedirectRoute],
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
            &[DnatNew, RedirectRoute],
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
            &[CtReply, RedirectRoute],
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
        let mut to_host = stray.clone();
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
            &[DnatNew, RedirectRoute],
        );
        assert_eq!(
            (View(&out).src(), View(&out).dst()),
            ((C2, 41000), (C1, 8080))
        );
        assert_eq!(View(&out).dst_mac(), BACKEND_MAC);
        let back = step(
            fx,
            "its reply",
            OUT,
            &tcp((C1, 8080), (C2, 41000), TCP_SYN | TCP_ACK, b""),
            TC_ACT_REDIRECT,
            &[CtReply, RedirectRoute],
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
            &[DnatNew, RedirectRoute],
        );
        let hp = snat_port("own hairpin", &out, BRIDGE_IP);
        assert_eq!(View(&out).dst(), (C1, 8080));
        let back = step(
            fx,
            "own hairpin reply",
            OUT,
            &tcp((C1, 8080), (BRIDGE_IP, hp), TCP_SYN | TCP_ACK, b""),
            TC_ACT_REDIRECT,
            &[CtReply, RedirectRoute],
        );
        assert_eq!(
            (View(&back).src(), View(&back).dst()),
            ((BRIDGE_IP, 8038), (C1, 41001))
        );
        let flags = fx
            .dp
            .maps
            .ct
            .iter()
            .filter_map(Result::ok)
            .find(|(k, _)| k.src_port == 41001u16.to_be())
            .map(|(_, v)| v.flags);
        assert_eq!(flags, Some(CT_DNAT | CT_SNAT));

        // Two source ports for everything: the third flow to one destination has none.
        set_ports(fx, (PORTS.0, PORTS.0 + 1));
        for sport in [50000, 50001] {
            step(
                fx,
                "within two ports",
                OUT,
                &tcp((C1, sport), (SERVER, 25), TCP_SYN, b""),
                TC_ACT_REDIRECT,
                &[SnatNew, RedirectRoute],
            );
        }
        step(
            fx,
            "ports exhausted",
            OUT,
            &tcp((C1, 50002), (SERVER, 25), TCP_SYN, b""),
            TC_ACT_SHOT,
            &[DropSnatPorts],
        );
        // Both sides close the first flow: its port is free again for a new one.
        let first = fx
            .dp
            .maps
            .ct
            .iter()
            .filter_map(Result::ok)
            .find(|(k, _)| k.src_port == 50000u16.to_be())
            .map(|(k, v)| k.translated(&v).src_port)
            .expect("the first flow's SNAT port");
        let p = u16::from_be(first);
        step(
            fx,
            "first flow FIN out",
            OUT,
            &tcp((C1, 50000), (SERVER, 25), TCP_ACK | TCP_FIN, b""),
            TC_ACT_REDIRECT,
            &[CtForward, RedirectRoute],
        );
        step(
            fx,
            "first flow FIN in",
            IN,
            &tcp((SERVER, 25), (HOST, p), TCP_ACK | TCP_FIN, b""),
            TC_ACT_REDIRECT,
            &[CtReply, RedirectRoute],
        );
        let out = step(
            fx,
            "a closed flow's port is reused",
            OUT,
            &tcp((C1, 50003), (SERVER, 25), TCP_SYN, b""),
            TC_ACT_REDIRECT,
            &[SnatNew, RedirectRoute],
        );
        assert_eq!(
            View(&out).src(),
            (HOST, p),
            "took over the closed flow's port"
        );
        let stale = fx
            .dp
            .maps
            .ct
            .iter()
            .filter_map(Result::ok)
            .any(|(k, _)| k.src_port == 50000u16.to_be());
        assert!(!stale, "the closed flow's forward entry is gone");
        step(
            fx,
            "another destination reuses them",
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
                &[DnatNew, RedirectRoute],
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
            .any(|k| k.src_port == 30000u16.to_be() || k.dst_port == 30000u16.to_be());
        assert!(!first_flow_kept, "LRU evicted the oldest flow");
        let last = step(
            fx,
            "newest flow still tracked",
            IN,
            &tcp((ROUTER, 30039), (HOST, 8038), TCP_ACK, b""),
            TC_ACT_REDIRECT,
            &[CtForward, RedirectRoute],
        );
        assert_eq!(View(&last).dst(), (C1, 8080));
    });
}
