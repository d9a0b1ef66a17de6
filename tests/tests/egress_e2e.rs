//! Container egress end to end: TCP, UDP and ping through SNAT to a server behind the
//! host, 1,000 parallel connections, path MTU discovery through a translated ICMP
//! frag-needed, hairpin to published ports, and the CT listing and sweeper. Each runs
//! on a plain host and on one with the raw-table notrack rule and FORWARD DROP.
use std::{
    collections::BTreeSet,
    io::{Read as _, Write as _},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    process::Command,
    thread,
    time::Duration,
};

use bpfnet::{
    api::flow::{FlowState, Nat, Proto},
    conntrack::FlowInfo,
};
use bpfnet_tests::{
    daemon::{cli_ok, counter},
    echo::{EchoServer, IO_TIMEOUT, WhoamiServer, tcp_connect, tcp_roundtrip, udp_roundtrip},
    require_root,
    topo::{HOST_IP, SERVER_IP, Topology},
};
use common::Reason;

fn server(port: u16) -> SocketAddr {
    SocketAddr::from((SERVER_IP, port))
}

/// `ip:port` as the server saw it; must be the host's address and a SNAT port.
fn assert_masqueraded(what: &str, reply: &[u8]) -> u16 {
    let seen = WhoamiServer::seen(reply);
    assert_eq!(
        seen.ip(),
        HOST_IP,
        "{what}: the server should see the host's address"
    );
    assert!(
        (1024..=65535).contains(&seen.port()),
        "{what}: port {} not from the SNAT range",
        seen.port()
    );
    seen.port()
}

fn conntrack(t: &Topology) -> Vec<FlowInfo> {
    bpfnet_tests::daemon::conntrack(&t.files.socket)
}

fn egress(t: &Topology) {
    let _w = WhoamiServer::start(&t.server, 9000);
    let tcp = tcp_roundtrip(&t.container, server(9000), b"hi").expect("TCP through SNAT");
    assert_masqueraded("TCP", &tcp);
    let udp = udp_roundtrip(&t.container, server(9000), b"hi").expect("UDP through SNAT");
    assert_masqueraded("UDP", &udp);
    // A free source port is kept, as MASQUERADE keeps it.
    let kept = t.container.run(|| {
        let s = UdpSocket::bind("0.0.0.0:40123").expect("bind 40123");
        s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        s.send_to(b"k", server(9000)).expect("send");
        let mut buf = [0u8; 64];
        let (n, _) = s.recv_from(&mut buf).expect("reply");
        buf[..n].to_vec()
    });
    assert_eq!(
        assert_masqueraded("UDP from port 40123", &kept),
        40123,
        "the container's own source port is kept"
    );
    let ping = Command::new("ip")
        .args([
            "netns",
            "exec",
            &t.container.name,
            "ping",
            "-c",
            "2",
            "-W",
            "2",
            "198.51.100.2",
        ])
        .output()
        .expect("ping runs");
    assert!(
        ping.status.success(),
        "ping through SNAT: {}",
        String::from_utf8_lossy(&ping.stdout)
    );

    let flows = conntrack(t);
    let icmp = flows
        .iter()
        .find(|f| f.proto == Proto::Icmp)
        .unwrap_or_else(|| panic!("an ICMP flow in {flows:?}"));
    assert_eq!(icmp.original.src, IpAddr::from([172, 17, 0, 4]));
    assert_eq!(icmp.translated.src, IpAddr::from([192, 0, 2, 1]));
    assert_eq!(icmp.nat, Nat::Snat);
    assert!(icmp.reply_packets >= 2, "echo replies counted: {icmp:?}");
    let tcp = flows
        .iter()
        .find(|f| f.proto == Proto::Tcp && f.original.dst_port == 9000)
        .unwrap_or_else(|| panic!("the TCP flow in {flows:?}"));
    assert!(
        [FlowState::Closing, FlowState::TimeWait].contains(&tcp.state),
        "finished TCP flow: {tcp:?}"
    );
}

/// 1,000 connections open at once; the server must see 1,000 distinct sources.
fn thousand_connections(t: &Topology) {
    const N: usize = 1000;
    const THREADS: usize = 8;
    let listener = t
        .server
        .run(|| TcpListener::bind("0.0.0.0:9100").expect("bind"));
    let accept = thread::spawn(move || {
        let mut conns = Vec::new();
        let mut peers = BTreeSet::new();
        while conns.len() < N {
            let (mut c, peer) = listener.accept().expect("accept");
            c.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
            let mut b = [0u8; 1];
            c.read_exact(&mut b).expect("request byte");
            peers.insert(peer);
            conns.push(c);
        }
        for c in &mut conns {
            c.write_all(b"k").expect("answer");
        }
        peers
    });
    // Connected from several threads at once, so SNAT allocates on every CPU together.
    let connectors: Vec<_> = (0..THREADS)
        .map(|th| {
            t.container.spawn(move || {
                (0..N / THREADS)
                    .map(|i| {
                        let mut s =
                            TcpStream::connect_timeout(&server(9100), Duration::from_secs(10))
                                .unwrap_or_else(|e| panic!("connection {th}/{i}: {e}"));
                        s.write_all(b"q").expect("request");
                        s
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut clients: Vec<TcpStream> = connectors
        .into_iter()
        .flat_map(|c| c.join().expect("connecting thread"))
        .collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut b = [0u8; 1];
        c.read_exact(&mut b)
            .unwrap_or_else(|e| panic!("answer {i}: {e}"));
    }
    let peers = accept.join().expect("server thread");
    assert_eq!(peers.len(), N, "distinct source tuples at the server");
    assert!(peers.iter().all(|p| p.ip() == HOST_IP), "all masqueraded");
}

/// The router's link to the server takes 1280 bytes while both ends speak 1500 (so the
/// handshake's MSS does not help): only a translated frag-needed lets the container's
/// full-size segments through.
fn path_mtu(t: &Topology) {
    t.client.ip(&["link", "set", "eth1", "mtu", "1280"]);
    const SIZE: usize = 4 << 20;
    let listener = t
        .server
        .run(|| TcpListener::bind("0.0.0.0:9200").expect("bind"));
    let sink = thread::spawn(move || {
        let (mut c, _) = listener.accept().expect("accept");
        c.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let mut buf = Vec::new();
        c.read_to_end(&mut buf).expect("receive the transfer");
        buf.len()
    });
    t.container.run(|| {
        let mut s = TcpStream::connect_timeout(&server(9200), IO_TIMEOUT).expect("connect");
        s.set_write_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        s.write_all(&vec![0x5a; SIZE])
            .expect("send across the small-MTU path");
    });
    assert_eq!(
        sink.join().expect("sink"),
        SIZE,
        "the whole transfer arrived"
    );
    let route = Command::new("ip")
        .args(["-n", &t.container.name, "route", "get", "198.51.100.2"])
        .output()
        .expect("ip route get");
    let route = String::from_utf8_lossy(&route.stdout);
    assert!(
        route.contains("mtu 1280"),
        "the container learned the path MTU: {route}"
    );
}

fn hairpin(t: &Topology) {
    let _e = EchoServer::start(&t.container, 8038);
    cli_ok(&t.files.socket, &["publish", "8038:172.17.0.4:8038"]);
    let via_host = Topology::host_addr(8038);
    let via_bridge = SocketAddr::from(([172, 17, 0, 1], 8038));
    for (who, ns) in [
        ("another container", &t.container2),
        ("the backend itself", &t.container),
    ] {
        for to in [via_host, via_bridge] {
            let got =
                tcp_roundtrip(ns, to, b"hairpin").unwrap_or_else(|e| panic!("{who} → {to}: {e}"));
            assert_eq!(got, b"8038:hairpin", "{who} → {to}");
        }
    }
}

/// `check` on a fresh topology with a daemon, on a plain host or a hardened one.
fn run(tag: &str, hardened: bool, check: fn(&Topology)) {
    if !require_root() {
        return;
    }
    let t = Topology::new(tag);
    if hardened {
        t.harden_host_firewall();
    }
    let _d = t.start_daemon();
    check(&t);
    t.assert_no_checksum_errors();
}

/// One test on a plain host, one on a host with the raw-table notrack rule and FORWARD DROP.
macro_rules! on_both_hosts {
    ($plain:ident, $hardened:ident, $tag:literal, $check:path) => {
        #[test]
        fn $plain() {
            run($tag, false, $check);
        }

        #[test]
        fn $hardened() {
            run(concat!($tag, "fw"), true, $check);
        }
    };
}

on_both_hosts!(
    egress_tcp_udp_and_ping_are_masqueraded,
    egress_tcp_udp_and_ping_are_masqueraded_with_notrack_and_forward_drop,
    "eg",
    egress
);
on_both_hosts!(
    hairpin_reaches_own_and_other_published_ports,
    hairpin_reaches_own_and_other_published_ports_with_notrack_and_forward_drop,
    "hp",
    hairpin
);
on_both_hosts!(
    thousand_concurrent_egress_connections_get_distinct_tuples,
    thousand_concurrent_egress_connections_get_distinct_tuples_with_notrack_and_forward_drop,
    "k",
    thousand_connections
);
on_both_hosts!(
    path_mtu_is_learned_through_a_translated_frag_needed,
    path_mtu_is_learned_through_a_translated_frag_needed_with_notrack_and_forward_drop,
    "mtu",
    path_mtu
);

/// traceroute through SNAT: probes with small TTLs die at a router beyond the host,
/// whose time-exceeded error, quoting the masqueraded probe, is translated back to the
/// container (ping matches it to its probe by the quoted identifier).
#[test]
fn traceroute_sees_the_router_beyond_snat() {
    if !require_root() {
        return;
    }
    let t = Topology::new("trc");
    let _d = t.start_daemon();
    let before = counter(&t.files.socket, Reason::IcmpError);
    let hops: Vec<String> = (1..=3)
        .map(|ttl| {
            let out = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &t.container.name,
                    "ping",
                    "-n",
                    "-c",
                    "1",
                    "-W",
                    "2",
                ])
                .args(["-t", &ttl.to_string(), "198.51.100.2"])
                .output()
                .expect("ping runs");
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
        .collect();
    assert!(
        hops.iter()
            .any(|h| h.contains("From 192.0.2.2") && h.contains("Time to live exceeded")),
        "the router's time-exceeded reaches the container: {hops:#?}"
    );
    assert!(
        hops.iter().any(|h| h.contains("1 received")),
        "a probe with enough TTL reaches the server: {hops:#?}"
    );
    assert!(
        counter(&t.files.socket, Reason::IcmpError) > before,
        "the error was translated by bpfnet"
    );
}

/// The sweeper removes an idle UDP flow after its 2 s timeout and nothing else: a UDP
/// flow that keeps talking keeps its SNAT port across many sweeps, and an idle but
/// established TCP connection keeps working.
#[test]
fn sweeper_removes_only_expired_flows() {
    if !require_root() {
        return;
    }
    let t = Topology::new("swp");
    let _d = t.start_daemon_with(&[
        "--ct-timeouts",
        "udp=2,icmp=2",
        "--ct-sweep-interval",
        "1",
        "--ct-entries",
        "4096",
    ]);
    let ct = aya::maps::MapData::from_pin(t.files.pin_dir.join(common::names::CT))
        .expect("pinned CT map");
    assert_eq!(
        ct.info().expect("map info").max_entries(),
        4096,
        "--ct-entries sizes the CT map"
    );
    let _w = WhoamiServer::start(&t.server, 9000);
    let _e = EchoServer::start(&t.server, 9001);
    let mut established = tcp_connect(&t.container, server(9001)).expect("TCP through SNAT");
    let mut prefix = [0u8; 5];
    established.read_exact(&mut prefix).expect("echo prefix");

    // One datagram, then silence: due after 2 s.
    let idle = udp_roundtrip(&t.container, server(9000), b"x").expect("UDP through SNAT");
    let idle_port = assert_masqueraded("idle UDP", &idle);
    assert!(
        conntrack(&t)
            .iter()
            .any(|f| f.translated.src_port == idle_port),
        "the idle UDP flow is listed"
    );
    // A datagram every 400 ms for 5 s (five sweeps, more than two timeouts).
    let live = t.container.run(|| {
        let s = UdpSocket::bind("0.0.0.0:0").expect("bind");
        s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        let mut seen = BTreeSet::new();
        let mut buf = [0u8; 64];
        for _ in 0..13 {
            s.send_to(b"live", server(9000)).expect("send");
            let (n, _) = s.recv_from(&mut buf).expect("reply on the live flow");
            seen.insert(assert_masqueraded("live UDP", &buf[..n]));
            thread::sleep(Duration::from_millis(400));
        }
        seen
    });
    assert_eq!(
        live.len(),
        1,
        "the live UDP flow kept one SNAT port across the sweeps: {live:?}"
    );
    let flows = conntrack(&t);
    assert!(
        !flows.iter().any(|f| f.translated.src_port == idle_port),
        "the idle UDP flow expired: {flows:?}"
    );
    let live_port = *live.first().expect("a port");
    assert!(
        flows.iter().any(|f| f.translated.src_port == live_port),
        "the live UDP flow is still listed: {flows:?}"
    );
    assert!(
        flows
            .iter()
            .any(|f| f.original.dst_port == 9001 && f.state == FlowState::Established),
        "the idle established TCP flow is still listed: {flows:?}"
    );
    echo_once(&mut established, b"still here");
    let stats = bpfnet_tests::daemon::stats(&t.files.socket);
    assert!(
        stats.ct_swept >= 2,
        "the sweeper counted the idle flow's two entries: {stats:?}"
    );
    t.assert_no_checksum_errors();
}

#[test]
fn conntrack_flush_removes_every_flow() {
    if !require_root() {
        return;
    }
    let t = Topology::new("fl");
    let _d = t.start_daemon();
    let _w = WhoamiServer::start(&t.server, 9000);
    let tcp = tcp_roundtrip(&t.container, server(9000), b"x").expect("TCP through SNAT");
    assert_masqueraded("TCP", &tcp);
    udp_roundtrip(&t.container, server(9000), b"x").expect("UDP through SNAT");
    assert!(conntrack(&t).len() >= 2, "flows before flush");
    cli_ok(&t.files.socket, &["conntrack", "flush"]);
    assert_eq!(conntrack(&t), [], "no flows after flush");
}

/// Send `msg` on an echo connection and read it back.
fn echo_once(s: &mut TcpStream, msg: &[u8]) {
    s.write_all(msg).expect("send on the connection");
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back).expect("echo on the connection");
    assert_eq!(back, msg);
}

/// SNAT skips a port a host socket holds: with a UDP socket of the host's bound to the
/// masquerade address and port 40124, a container's datagram from its own port 40124
/// leaves from another port (the control: from the free port 40125 it keeps its own),
/// and the server's datagram to the held port still reaches the host's socket, not the
/// container.
#[test]
fn snat_skips_a_port_a_host_socket_holds() {
    if !require_root() {
        return;
    }
    let t = Topology::new("held");
    let _d = t.start_daemon();
    let _w = WhoamiServer::start(&t.server, 9000);
    let held = t.host.run(|| {
        let s = UdpSocket::bind((HOST_IP, 40124)).expect("the host binds 192.0.2.1:40124");
        s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        s
    });
    let from_port = |port: u16| {
        t.container.run(move || {
            let s = UdpSocket::bind(("0.0.0.0", port)).expect("the container binds its port");
            s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
            s.send_to(b"p", server(9000)).expect("send");
            let mut buf = [0u8; 64];
            let (n, _) = s.recv_from(&mut buf).expect("the whoami answer");
            buf[..n].to_vec()
        })
    };
    assert_eq!(
        assert_masqueraded("UDP from the free port 40125", &from_port(40125)),
        40125,
        "a free port is kept (the control)"
    );
    let got = assert_masqueraded("UDP from the held port 40124", &from_port(40124));
    assert_ne!(
        got, 40124,
        "SNAT gave the container the port the host's socket holds"
    );
    // The server answers the held port: the host's socket gets it.
    t.server.run(|| {
        let s = UdpSocket::bind("0.0.0.0:0").expect("bind");
        s.send_to(b"for the host", (HOST_IP, 40124)).expect("send");
    });
    let mut buf = [0u8; 64];
    let (n, from) = held
        .recv_from(&mut buf)
        .expect("the host's socket receives the server's datagram to its port");
    assert_eq!(
        (&buf[..n], from.ip()),
        (&b"for the host"[..], IpAddr::from(SERVER_IP)),
        "the host's socket reads the server's datagram"
    );
}
