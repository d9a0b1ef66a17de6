//! Endpoints, networks and host-local access end to end, on a host with the raw-table
//! notrack rule and FORWARD DROP: containers of one network talk through the fast path,
//! networks are isolated, spoofed sources are dropped, host processes reach published
//! ports at 127.0.0.1 and the host address, and a pipework-style LAN endpoint works.
use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    process::Command,
};

use bpfnet_tests::{
    daemon::{Daemon, cli, cli_ok, counter, ls},
    echo::{EchoServer, IO_TIMEOUT, tcp_roundtrip, udp_roundtrip},
    netns::Netns,
    require_root,
    scratch::Scratch,
    topo::{HOST_IP, Topology, harden_firewall},
    unique,
};

fn addr(ip: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::from((ip, port))
}

fn mac(ns: &Netns, dev: &str) -> String {
    ns.mac(dev)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Whether a TCP connection from `ns`, bound to source address `from`, reaches `to`.
fn tcp_from(ns: &Netns, from: [u8; 4], to: SocketAddr) -> bool {
    let from = SocketAddr::from((from, 0));
    ns.run(move || connect_from(from, to).is_some())
}

/// connect() from a chosen local address (std has no bind-before-connect).
fn connect_from(from: SocketAddr, to: SocketAddr) -> Option<TcpStream> {
    use std::os::fd::FromRawFd as _;
    let (SocketAddr::V4(from), SocketAddr::V4(to)) = (from, to) else {
        return None;
    };
    let sa = |a: std::net::SocketAddrV4| libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(a.ip().octets()),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: plain socket calls on a fresh fd owned by the returned TcpStream.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        let s = TcpStream::from_raw_fd(fd);
        let len = std::mem::size_of::<libc::sockaddr_in>() as u32;
        let f = sa(from);
        if libc::bind(fd, (&raw const f).cast(), len) != 0 {
            return None;
        }
        let tv = libc::timeval {
            tv_sec: 2,
            tv_usec: 0,
        };
        let tvl = std::mem::size_of::<libc::timeval>() as u32;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDTIMEO,
            (&raw const tv).cast(),
            tvl,
        );
        let t = sa(to);
        if libc::connect(fd, (&raw const t).cast(), len) != 0 {
            return None;
        }
        Some(s)
    }
}

#[test]
fn endpoints_networks_and_host_local_access() {
    if !require_root() {
        return;
    }
    let t = Topology::new("ep");
    t.harden_host_firewall();
    let (h, k2) = (&t.host, &t.container2);
    // A second network, br1 (172.18.0.0/16), with container3; container2 is on both.
    let k3 = Netns::new(&format!("{}-ctr3", unique("ep")));
    h.ip(&["link", "add", "br1", "type", "bridge"]);
    h.ip(&["addr", "add", "172.18.0.1/16", "dev", "br1"]);
    h.ip(&["link", "set", "br1", "up"]);
    h.ip(&[
        "link", "add", "vd3", "type", "veth", "peer", "name", "eth0", "netns", &k3.name,
    ]);
    h.ip(&["link", "set", "vd3", "master", "br1", "up"]);
    k3.ip(&["addr", "add", "172.18.0.3/16", "dev", "eth0"]);
    k3.ip(&["link", "set", "eth0", "up"]);
    k3.ip(&["route", "add", "default", "via", "172.18.0.1"]);
    h.ip(&[
        "link", "add", "vc2", "type", "veth", "peer", "name", "eth1", "netns", &k2.name,
    ]);
    h.ip(&["link", "set", "vc2", "master", "br1", "up"]);
    k2.ip(&["addr", "add", "172.18.0.5/16", "dev", "eth1"]);
    k2.ip(&["link", "set", "eth1", "up"]);
    let _d = t.start_daemon_with(&["--bridge", "br1"]);
    let sock = &t.files.socket;

    // container2's MAC given; container's learned from the bridge after some traffic.
    let ping = |ns: &Netns, ip: &str| {
        Command::new("ip")
            .args(["netns", "exec", &ns.name, "ping", "-c", "1", "-W", "2", ip])
            .output()
            .expect("ping runs")
            .status
            .success()
    };
    assert!(
        ping(&t.container, "172.17.0.1"),
        "container reaches its gateway"
    );
    cli_ok(
        sock,
        &[
            "endpoint",
            "add",
            "--bridge",
            "br0",
            "--veth",
            "vc0",
            "--ip",
            "172.17.0.4/16",
        ],
    );
    for (veth, bridge, ip, ns, dev) in [
        ("vc1", "br0", "172.17.0.5/16", k2, "eth0"),
        ("vc2", "br1", "172.18.0.5/16", k2, "eth1"),
        ("vd3", "br1", "172.18.0.3/16", &k3, "eth0"),
    ] {
        let m = mac(ns, dev);
        cli_ok(
            sock,
            &[
                "endpoint", "add", "--bridge", bridge, "--veth", veth, "--ip", ip, "--mac", &m,
            ],
        );
    }
    let eps = ls(sock)["endpoints"].clone();
    assert_eq!(eps.as_array().map(Vec::len), Some(4), "{eps}");
    assert_eq!(
        eps[0]["mac"],
        serde_json::Value::String(mac(&t.container, "eth0")),
        "learned MAC"
    );
    let out = cli(
        sock,
        &[
            "endpoint",
            "add",
            "--bridge",
            "br0",
            "--veth",
            "vc0",
            "--ip",
            "172.17.0.4/16",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "a duplicate endpoint is refused"
    );

    // One network: the fast path, TCP and UDP.
    let _e2 = EchoServer::start(k2, 7000);
    let before = counter(sock, "forward-local");
    assert_eq!(
        tcp_roundtrip(&t.container, addr([172, 17, 0, 5], 7000), b"a").expect("TCP on br0"),
        b"7000:a"
    );
    assert_eq!(
        udp_roundtrip(&t.container, addr([172, 17, 0, 5], 7000), b"b").expect("UDP on br0"),
        b"7000:b"
    );
    let fast = counter(sock, "forward-local") - before;
    assert!(
        fast >= 6,
        "container traffic took the redirect path ({fast} packets)"
    );

    // Two networks: isolated; the container on both reaches both.
    let _e3 = EchoServer::start(&k3, 7000);
    let dropped = counter(sock, "drop-isolation");
    assert!(
        tcp_roundtrip(&t.container, addr([172, 18, 0, 3], 7000), b"x").is_err(),
        "br0 must not reach br1"
    );
    assert!(
        counter(sock, "drop-isolation") > dropped,
        "isolation drop counted"
    );
    assert_eq!(
        tcp_roundtrip(k2, addr([172, 18, 0, 3], 7000), b"c").expect("container on both networks"),
        b"7000:c"
    );

    // A spoofed source address is dropped.
    t.container
        .ip(&["addr", "add", "172.17.0.99/16", "dev", "eth0"]);
    let spoofs = counter(sock, "drop-spoof");
    assert!(
        !tcp_from(&t.container, [172, 17, 0, 99], addr([172, 17, 0, 5], 7000)),
        "spoofed source must not connect"
    );
    assert!(counter(sock, "drop-spoof") > spoofs, "spoof drop counted");

    // Host processes: 127.0.0.1 and the host address, TCP and UDP; the peer is what they dialed.
    let _e1 = EchoServer::start(&t.container, 8038);
    cli_ok(sock, &["publish", "8038:172.17.0.4:8038"]);
    cli_ok(sock, &["publish", "8038:172.17.0.4:8038/udp"]);
    cli_ok(sock, &["publish", "127.0.0.1:8040:172.17.0.4:8038"]);
    for to in [
        addr([127, 0, 0, 1], 8038),
        SocketAddr::from((HOST_IP, 8038)),
        addr([127, 0, 0, 1], 8040),
    ] {
        assert_eq!(
            tcp_roundtrip(h, to, b"local").unwrap_or_else(|e| panic!("host → {to}: {e}")),
            b"8038:local"
        );
    }
    for to in [
        addr([127, 0, 0, 1], 8038),
        SocketAddr::from((HOST_IP, 8038)),
    ] {
        assert_eq!(
            udp_roundtrip(h, to, b"u").unwrap_or_else(|e| panic!("host UDP → {to}: {e}")),
            b"8038:u"
        );
    }
    let peer = h.run(|| {
        let mut s =
            TcpStream::connect_timeout(&addr([127, 0, 0, 1], 8038), IO_TIMEOUT).expect("connect");
        s.write_all(b"p").expect("send");
        let mut b = [0u8; 5];
        s.read_exact(&mut b).expect("echo prefix");
        s.peer_addr().expect("peer address")
    });
    assert_eq!(
        peer,
        addr([127, 0, 0, 1], 8038),
        "getpeername shows the dialed address"
    );
    assert!(
        tcp_roundtrip(&t.client, SocketAddr::from((HOST_IP, 8040)), b"x").is_err(),
        "a 127.0.0.1-bound publish is not reachable from outside"
    );
    assert_eq!(
        tcp_roundtrip(&t.client, SocketAddr::from((HOST_IP, 8038)), b"o")
            .expect("wildcard publish from outside"),
        b"8038:o"
    );

    let out = cli(sock, &["endpoint", "del", "--ip", "172.17.0.99"]);
    assert_eq!(out.status.code(), Some(2), "not an endpoint");
    cli_ok(sock, &["endpoint", "del", "--ip", "172.17.0.4"]);
    assert_eq!(ls(sock)["endpoints"].as_array().map(Vec::len), Some(3));
}

#[test]
fn lan_bridge_endpoint_pipework_style() {
    if !require_root() {
        return;
    }
    // host: brlan (203.0.113.1/24) enslaves lan0, whose other end is a LAN peer
    // (203.0.113.2); a container on brlan has a LAN address, 203.0.113.50.
    let id = unique("lan");
    let (host, peer, ctr) = (
        Netns::new(&format!("{id}-host")),
        Netns::new(&format!("{id}-peer")),
        Netns::new(&format!("{id}-ctr")),
    );
    let files = Scratch::new("lan");
    harden_firewall(&host);
    host.ip(&["link", "add", "brlan", "type", "bridge"]);
    host.ip(&["addr", "add", "203.0.113.1/24", "dev", "brlan"]);
    host.ip(&["link", "set", "brlan", "up"]);
    host.ip(&[
        "link", "add", "lan0", "type", "veth", "peer", "name", "eth0", "netns", &peer.name,
    ]);
    host.ip(&["link", "set", "lan0", "master", "brlan", "up"]);
    peer.ip(&["addr", "add", "203.0.113.2/24", "dev", "eth0"]);
    peer.ip(&["link", "set", "eth0", "up"]);
    host.ip(&[
        "link", "add", "vl0", "type", "veth", "peer", "name", "eth0", "netns", &ctr.name,
    ]);
    host.ip(&["link", "set", "vl0", "master", "brlan", "up"]);
    ctr.ip(&["addr", "add", "203.0.113.50/24", "dev", "eth0"]);
    ctr.ip(&["link", "set", "eth0", "up"]);
    let mut args = files.daemon_args();
    args.extend(["--bridge", "brlan", "--uplink", "lan0", "--no-docker"].map(String::from));
    let _d = Daemon::start(&host.path(), &files.socket, &args);
    let m = mac(&ctr, "eth0");
    cli_ok(
        &files.socket,
        &[
            "endpoint",
            "add",
            "--bridge",
            "brlan",
            "--veth",
            "vl0",
            "--ip",
            "203.0.113.50/24",
            "--mac",
            &m,
        ],
    );

    let _e = EchoServer::start(&ctr, 7000);
    assert_eq!(
        tcp_roundtrip(&peer, addr([203, 0, 113, 50], 7000), b"lan")
            .expect("LAN peer reaches the container"),
        b"7000:lan"
    );
    assert_eq!(
        udp_roundtrip(&peer, addr([203, 0, 113, 50], 7000), b"u").expect("UDP from the LAN"),
        b"7000:u"
    );
    let _p = EchoServer::start(&peer, 7001);
    assert_eq!(
        tcp_roundtrip(&ctr, addr([203, 0, 113, 2], 7001), b"out")
            .expect("container reaches the LAN peer"),
        b"7001:out"
    );
    ctr.ip(&["addr", "add", "203.0.113.99/24", "dev", "eth0"]);
    let spoofs = counter(&files.socket, "drop-spoof");
    assert!(
        !tcp_from(&ctr, [203, 0, 113, 99], addr([203, 0, 113, 2], 7001)),
        "a spoofed LAN address must not connect"
    );
    assert!(
        counter(&files.socket, "drop-spoof") > spoofs,
        "spoof drop counted"
    );
}
