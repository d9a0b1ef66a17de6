//! Container egress end to end: TCP, UDP and ping through SNAT to a server behind the
//! host, 1,000 parallel connections, path MTU discovery through a translated ICMP
//! frag-needed, hairpin to published ports, and the CT listing and sweeper. Each runs
//! on a plain host and on one with the raw-table notrack rule and FORWARD DROP.
use std::{
    collections::BTreeSet,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use bpfnet_tests::{
    daemon::cli_ok,
    echo::{EchoServer, IO_TIMEOUT, WhoamiServer, tcp_roundtrip, udp_roundtrip},
    require_root,
    topo::{HOST_IP, SERVER_IP, Topology},
};

fn server(port: u16) -> SocketAddr {
    SocketAddr::from((SERVER_IP, port))
}

/// `ip:port` as the server saw it; must be the host's address and a SNAT port.
fn assert_masqueraded(what: &str, reply: &[u8]) -> u16 {
    let seen: SocketAddr = String::from_utf8_lossy(reply)
        .parse()
        .unwrap_or_else(|e| panic!("{what}: server answered {reply:?}: {e}"));
    assert_eq!(
        seen.ip(),
        HOST_IP,
        "{what}: the server should see the host's address"
    );
    assert!(
        (61000..=65535).contains(&seen.port()),
        "{what}: port {} not from the SNAT range",
        seen.port()
    );
    seen.port()
}

fn conntrack(t: &Topology) -> Vec<serde_json::Value> {
    let out = cli_ok(&t.files.socket, &["conntrack", "--json"]);
    serde_json::from_str::<serde_json::Value>(&out)
        .expect("conntrack --json is JSON")
        .as_array()
        .expect("a list of flows")
        .clone()
}

fn egress(t: &Topology) {
    let _w = WhoamiServer::start(&t.server, 9000);
    let tcp = tcp_roundtrip(&t.container, server(9000), b"hi").expect("TCP through SNAT");
    assert_masqueraded("TCP", &tcp);
    let udp = udp_roundtrip(&t.container, server(9000), b"hi").expect("UDP through SNAT");
    assert_masqueraded("UDP", &udp);
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
        .find(|f| f["proto"] == "icmp")
        .unwrap_or_else(|| panic!("an ICMP flow in {flows:?}"));
    assert_eq!(icmp["original"]["src"], "172.17.0.4");
    assert_eq!(icmp["translated"]["src"], "192.0.2.1");
    assert_eq!(icmp["nat"], "snat");
    assert!(
        icmp["reply_packets"].as_u64() >= Some(2),
        "echo replies counted: {icmp}"
    );
    let tcp = flows
        .iter()
        .find(|f| f["proto"] == "tcp" && f["original"]["dst_port"] == 9000)
        .unwrap_or_else(|| panic!("the TCP flow in {flows:?}"));
    assert!(
        ["closing", "closed"].contains(&tcp["state"].as_str().unwrap_or_default()),
        "finished TCP flow: {tcp}"
    );
}

/// 1,000 connections open at once; the server must see 1,000 distinct sources.
fn thousand_connections(t: &Topology) {
    const N: usize = 1000;
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
    let mut clients: Vec<TcpStream> = t.container.run(|| {
        (0..N)
            .map(|i| {
                let mut s = TcpStream::connect_timeout(&server(9100), Duration::from_secs(10))
                    .unwrap_or_else(|e| panic!("connection {i}: {e}"));
                s.write_all(b"q").expect("request");
                s
            })
            .collect()
    });
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

fn all(tag: &str, hardened: bool) {
    let t = Topology::new(tag);
    if hardened {
        t.harden_host_firewall();
    }
    let _d = t.start_daemon();
    egress(&t);
    hairpin(&t);
    thousand_connections(&t);
    path_mtu(&t);
}

#[test]
fn egress_hairpin_and_pmtu() {
    if !require_root() {
        return;
    }
    all("eg", false);
}

#[test]
fn egress_hairpin_and_pmtu_with_notrack_and_forward_drop() {
    if !require_root() {
        return;
    }
    all("egfw", true);
}

#[test]
fn flows_expire_with_the_sweeper_and_flush() {
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
    let ct = aya::maps::MapData::from_pin(t.files.pin_dir.join("ct_v1")).expect("pinned CT map");
    assert_eq!(
        ct.info().expect("map info").max_entries(),
        4096,
        "--ct-entries sizes the CT map"
    );
    let _w = WhoamiServer::start(&t.server, 9000);
    udp_roundtrip(&t.container, server(9000), b"x").expect("UDP through SNAT");
    assert!(
        conntrack(&t).iter().any(|f| f["proto"] == "udp"),
        "UDP flow listed"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while conntrack(&t).iter().any(|f| f["proto"] == "udp") {
        assert!(
            Instant::now() < deadline,
            "the UDP flow should expire after 2 s"
        );
        thread::sleep(Duration::from_millis(200));
    }
    let stats: serde_json::Value =
        serde_json::from_str(&cli_ok(&t.files.socket, &["stats", "--json"])).expect("stats JSON");
    assert!(
        stats["ct_swept"].as_u64() >= Some(2),
        "sweeper counted: {stats}"
    );
    let snat = stats["counters"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["reason"] == "snat-new"))
        .expect("snat-new counter");
    assert!(snat["packets"].as_u64() >= Some(1), "{snat}");

    let tcp = tcp_roundtrip(&t.container, server(9000), b"x").expect("TCP through SNAT");
    assert_masqueraded("TCP", &tcp);
    assert!(!conntrack(&t).is_empty(), "flows before flush");
    cli_ok(&t.files.socket, &["conntrack", "flush"]);
    assert!(conntrack(&t).is_empty(), "no flows after flush");
}
