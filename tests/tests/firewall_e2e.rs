//! The datapath as the only firewall, end to end, on a permissive host (FORWARD ACCEPT,
//! which is what a host with Docker's iptables off has): attacks from outside and from
//! containers, with real packets, and what must still work under them.
use std::{
    io::{ErrorKind, Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    process::Command,
    thread,
    time::Duration,
};

use bpfnet::api::flow::FlowState;
use bpfnet_tests::{
    daemon::{cli_ok, counter, ct_table_len, evict_reply_and_await_repair},
    echo::{
        EchoServer, IO_TIMEOUT, WhoamiServer, assert_fails, tcp_connect, tcp_connect_from,
        tcp_roundtrip, udp_roundtrip,
    },
    packet::{TCP_RST, icmp_error, icmp_timestamp, ip_proto, tcp_seq, udp},
    raw::{Receiver, next_seq, send_frame},
    require_root,
    topo::{CONTAINER_IP, HOST_IP, SERVER_IP, Topology},
};
use common::{Be32, Reason};

fn addr(ip: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::from((ip, port))
}

fn server(port: u16) -> SocketAddr {
    SocketAddr::from((SERVER_IP, port))
}

/// Send `msg` on an echo connection and read it back.
fn echo_once(s: &mut TcpStream, msg: &[u8]) {
    s.write_all(msg).expect("send on the connection");
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back).expect("echo on the connection");
    assert_eq!(back, msg);
}

/// A neighbour that routes 172.17.0.0/16 through the host reaches container ports
/// without bpfnet; with it, nothing but published ports gets in.
#[test]
fn a_routed_probe_never_reaches_unpublished_container_ports() {
    if !require_root() {
        return;
    }
    let t = Topology::new("probe");
    t.host.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    t.client
        .ip(&["route", "add", "172.17.0.0/16", "via", "192.0.2.1"]);
    let listener = t.container.run(|| {
        let l = TcpListener::bind("0.0.0.0:7000").expect("bind");
        l.set_nonblocking(true).expect("nonblocking");
        l
    });
    let target = SocketAddr::from((CONTAINER_IP, 7000));
    // The precondition: a permissive host forwards the probe.
    tcp_connect(&t.client, target).expect("without bpfnet the probe gets through");
    thread::sleep(Duration::from_millis(100));
    listener.accept().expect("the probe arrived");

    let _d = t.start_daemon();
    let inbound = counter(&t.files.socket, Reason::DropInbound);
    assert_fails(
        "a routed connection to an unpublished container port",
        tcp_connect(&t.client, target),
        ErrorKind::TimedOut,
    );
    let udp_in = t.container.run(|| {
        let s = UdpSocket::bind("0.0.0.0:7001").expect("bind");
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
        s
    });
    t.client.run(move || {
        let s = UdpSocket::bind("0.0.0.0:0").expect("bind");
        s.send_to(b"probe", addr([172, 17, 0, 4], 7001))
            .expect("send");
    });
    let mut buf = [0u8; 16];
    assert!(
        udp_in.recv_from(&mut buf).is_err(),
        "no routed datagram reaches the container"
    );
    assert_eq!(
        listener.accept().map(|_| ()).map_err(|e| e.kind()),
        Err(ErrorKind::WouldBlock),
        "nothing arrived in the container"
    );
    assert!(
        counter(&t.files.socket, Reason::DropInbound) >= inbound + 2,
        "the probes are counted as drop-inbound"
    );
}

/// Replies to the host's own connections are the host's, even when a publish covers the
/// port they come back to.
#[test]
fn host_connections_from_ports_inside_a_published_range_work() {
    if !require_root() {
        return;
    }
    let t = Topology::new("hostrng");
    let _d = t.start_daemon();
    t.host
        .exec(&["sysctl", "-qw", "net.ipv4.ip_local_port_range=40000 40099"]);
    cli_ok(
        &t.files.socket,
        &["publish", "40000-40099:172.17.0.4:40000-40099"],
    );
    cli_ok(
        &t.files.socket,
        &["publish", "40000-40099:172.17.0.4:40000-40099/udp"],
    );
    let _w = WhoamiServer::start(&t.server, 9000);
    for i in 0..10 {
        let seen = tcp_roundtrip(&t.host, server(9000), b"x")
            .unwrap_or_else(|e| panic!("host connection {i}: {e}"));
        let seen = WhoamiServer::seen(&seen);
        assert_eq!(seen.ip(), HOST_IP, "the host's own address");
        assert!(
            (40000..40100).contains(&seen.port()),
            "from a port inside the published range: {seen}"
        );
        let reply = t.host.run(|| {
            // A resolver-style connected socket.
            let s = UdpSocket::bind("0.0.0.0:0").expect("bind");
            s.connect(server(9000)).expect("connect");
            s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
            s.send(b"q").expect("send");
            let mut buf = [0u8; 64];
            s.recv(&mut buf).map(|n| buf[..n].to_vec())
        });
        reply.unwrap_or_else(|e| panic!("host datagram {i}: {e}"));
        // An unconnected socket (sendto/recvfrom), whose port is no one's tuple.
        let seen = udp_roundtrip(&t.host, server(9000), b"u")
            .unwrap_or_else(|e| panic!("host datagram {i} from an unconnected socket: {e}"));
        let seen = WhoamiServer::seen(&seen);
        assert!(
            (40000..40100).contains(&seen.port()),
            "from a port inside the published range: {seen}"
        );
    }
    assert!(
        counter(&t.files.socket, Reason::HostSocket) >= 20,
        "the host's replies were recognised as its own"
    );
}

/// A RST with a guessed sequence number neither closes a live connection nor frees its
/// tuple for another container.
#[test]
fn a_blind_rst_neither_closes_a_connection_nor_frees_its_tuple() {
    if !require_root() {
        return;
    }
    let t = Topology::new("blindrst");
    let _d = t.start_daemon();
    let _e = EchoServer::start(&t.server, 9000);
    let mut live = tcp_connect(&t.container, server(9000)).expect("connect through SNAT");
    let port = live.local_addr().expect("local address").port();
    let mut prefix = [0u8; 5];
    live.read_exact(&mut prefix).expect("echo prefix");
    // The server's sequence number, as its next segment shows it.
    let capture = next_seq(&t.server, "eth0", 9000, Duration::from_secs(3));
    thread::sleep(Duration::from_millis(200));
    echo_once(&mut live, b"first");
    let seq = capture
        .join()
        .expect("capture thread")
        .expect("a segment from the server");
    let dropped = counter(&t.files.socket, Reason::DropTcpWindow);
    for off in [0x4000_0000u32, 0x8000_0000, 0xc000_0000, 10_000_000] {
        let rst = tcp_seq(
            ([198, 51, 100, 2], 9000),
            (HOST_IP.octets(), port),
            TCP_RST,
            (seq.wrapping_add(off), 0),
            b"",
        );
        send_frame(&t.server, &rst).expect("send a blind RST");
    }
    thread::sleep(Duration::from_millis(200));
    assert_eq!(
        counter(&t.files.socket, Reason::DropTcpWindow),
        dropped + 4,
        "every blind RST is dropped, counted"
    );
    echo_once(&mut live, b"still alive");
    // Another container asks for the same source port to the same server: had the RSTs
    // closed the live flow, it would be handed that flow's tuple.
    let from = addr([172, 17, 0, 5], port);
    let mut second = t
        .container2
        .run(move || tcp_connect_from(from, server(9000)))
        .expect("second container connects");
    echo_once_prefixed(&mut second, b"second");
    let flows = bpfnet_tests::daemon::conntrack(&t.files.socket);
    let translated: Vec<u16> = flows
        .iter()
        .filter(|f| f.original.dst_port == 9000 && f.state == FlowState::Established)
        .map(|f| f.translated.src_port)
        .collect();
    assert_eq!(translated.len(), 2, "two live flows: {flows:?}");
    assert_ne!(translated[0], translated[1], "distinct tuples");
    echo_once(&mut live, b"after all");
}

fn echo_once_prefixed(s: &mut TcpStream, msg: &[u8]) {
    let mut prefix = [0u8; 5];
    s.read_exact(&mut prefix).expect("echo prefix");
    echo_once(s, msg);
}

/// GRE, ICMP timestamps and raw IP never cross networks, spoofed or not, and a forged
/// ICMP error never reaches another network's flow.
#[test]
fn other_protocols_and_forged_icmp_errors_never_cross_networks() {
    if !require_root() {
        return;
    }
    let t = Topology::new("xproto");
    let k3 = t.add_second_network();
    let _d = t.start_daemon_with(&["--bridge", "br1"]);
    t.register_endpoints(&k3);
    let sock = &t.files.socket;
    let receivers = [47u8, 1, 253].map(|proto| Receiver::open(&k3, proto));
    let isolated = counter(sock, Reason::DropIsolation);
    for frame in [
        ip_proto([172, 17, 0, 4], [172, 18, 0, 3], 47, &[0; 8]),
        icmp_timestamp([172, 17, 0, 4], [172, 18, 0, 3], 7),
        ip_proto([172, 17, 0, 4], [172, 18, 0, 3], 253, b"x"),
    ] {
        send_frame(&t.container, &frame).expect("send across networks");
    }
    for r in &receivers {
        assert_eq!(
            r.sources(Duration::from_millis(300)),
            Vec::<std::net::Ipv4Addr>::new(),
            "nothing crossed into br1"
        );
    }
    assert!(
        counter(sock, Reason::DropIsolation) >= isolated + 3,
        "each protocol's isolation drop is counted"
    );
    // Spoofed, within one network: container claims 172.17.0.77 toward container2.
    let gre2 = Receiver::open(&t.container2, 47);
    let spoofs = counter(sock, Reason::DropSpoof);
    send_frame(
        &t.container,
        &ip_proto([172, 17, 0, 77], [172, 17, 0, 5], 47, &[0; 8]),
    )
    .expect("send spoofed GRE");
    assert!(
        gre2.sources(Duration::from_millis(300)).is_empty(),
        "spoofed GRE dropped"
    );
    assert!(
        counter(sock, Reason::DropSpoof) > spoofs,
        "spoof drop counted"
    );

    // container3 talks to the server through SNAT; container forges an error about it.
    let _w = WhoamiServer::start(&t.server, 53);
    let victim = k3.run(|| {
        let s = UdpSocket::bind("0.0.0.0:5000").expect("bind");
        s.connect(server(53)).expect("connect");
        s.set_read_timeout(Some(Duration::from_millis(700)))
            .expect("timeout");
        s.send(b"q").expect("send");
        let mut buf = [0u8; 64];
        s.recv(&mut buf).expect("the server's answer");
        s
    });
    let forged = counter(sock, Reason::DropIcmpForged);
    // "Port unreachable" about the victim's datagram as it left the host (its SNAT port is
    // its own, 5000), addressed to the host so that it would be translated into the victim.
    let victims_datagram = udp(
        (HOST_IP.octets(), 5000),
        ([198, 51, 100, 2], 53),
        b"q",
        true,
    );
    send_frame(
        &t.container,
        &icmp_error(
            [172, 17, 0, 4],
            HOST_IP.octets(),
            3,
            3,
            0,
            &victims_datagram,
        ),
    )
    .expect("send a forged error");
    thread::sleep(Duration::from_millis(200));
    victim.send(b"again").expect("send");
    let mut buf = [0u8; 64];
    assert!(
        victim.recv(&mut buf).is_ok(),
        "the victim's flow is untouched (no ConnectionRefused)"
    );
    assert!(
        counter(sock, Reason::DropIcmpForged) > forged,
        "the forgery is counted"
    );
}

/// A random-source SYN flood against a published port fills only the table of new flows,
/// though the container answers every SYN (a spoofer never completes the handshake): an
/// established connection keeps working.
#[test]
fn a_syn_flood_leaves_established_connections_working() {
    if !require_root() {
        return;
    }
    let t = Topology::new("flood");
    // Replies to the flood's random sources die at the client instead of looping.
    t.client.ip(&["route", "del", "default"]);
    t.client.ip(&["route", "add", "blackhole", "default"]);
    let _d = t.start_daemon_with(&["--ct-entries", "256"]);
    let _e = EchoServer::start(&t.container, 8038);
    cli_ok(&t.files.socket, &["publish", "8038:172.17.0.4:8038"]);
    let mut live = tcp_connect(&t.client, Topology::host_addr(8038)).expect("connect");
    echo_once_prefixed(&mut live, b"before");
    let created = counter(&t.files.socket, Reason::DnatNew);
    let cut = counter(&t.files.socket, Reason::DropFlood);
    let flood = Command::new("ip")
        .args(["netns", "exec", &t.client.name])
        .args(["hping3", "-q", "-S", "--rand-source", "-p", "8038"])
        .args(["-c", "20000", "-i", "u50", "192.0.2.1"])
        .output()
        .expect("hping3 runs (`cargo xtask setup` installs it)");
    assert!(
        flood.status.success() || flood.status.code() == Some(1),
        "hping3: {}",
        String::from_utf8_lossy(&flood.stderr)
    );
    // Flows created or, with --xdp, first packets cut off beyond the new-flow budget.
    let flooded = counter(&t.files.socket, Reason::DnatNew) - created
        + (counter(&t.files.socket, Reason::DropFlood) - cut);
    assert!(
        flooded >= 5_000,
        "the flood reached the datapath ({flooded} flows created or cut off)"
    );
    let entries = |table| ct_table_len::<Be32>(&t.files.pin_dir, table);
    let (answered, unanswered) = (entries(common::names::CT), entries(common::names::CT_NEW));
    assert!(
        answered <= 4 && unanswered >= 32,
        "the flood fills the new-flow table only: {answered} answered entries (the live \
         connection's two), {unanswered} new"
    );
    echo_once(&mut live, b"after the flood");
}

/// A veth nobody registered binds the address of its first packet, then is enforced.
#[test]
fn a_new_veth_binds_its_first_address_and_is_enforced() {
    if !require_root() {
        return;
    }
    let t = Topology::new("bind");
    let _d = t.start_daemon();
    let sock = &t.files.socket;
    let learned = counter(sock, Reason::EndpointLearned);
    let _w = WhoamiServer::start(&t.server, 9000);
    tcp_roundtrip(&t.container, server(9000), b"x").expect("a fresh container's first flow");
    assert!(
        counter(sock, Reason::EndpointLearned) > learned,
        "its address was bound"
    );
    t.container
        .ip(&["addr", "add", "172.17.0.99/16", "dev", "eth0"]);
    let spoofs = counter(sock, Reason::DropSpoof);
    let from = addr([172, 17, 0, 99], 0);
    let r = t.container.run(move || {
        let s = UdpSocket::bind(from)?;
        s.set_read_timeout(Some(Duration::from_secs(1)))?;
        s.send_to(b"spoof", server(9000))?;
        let mut buf = [0u8; 64];
        s.recv_from(&mut buf).map(|_| ())
    });
    assert!(
        r.is_err(),
        "a second address on the bound veth gets nowhere"
    );
    assert!(
        counter(sock, Reason::DropSpoof) > spoofs,
        "spoof drop counted"
    );
}

/// A routed network (Docker's `gateway_mode_ipv4=routed)`: reachable from outside without
/// a publish, and its traffic leaves with the container's own address.
#[test]
fn a_routed_network_is_reached_directly_and_not_masqueraded() {
    if !require_root() {
        return;
    }
    let t = Topology::new("routed");
    t.client
        .ip(&["route", "add", "172.17.0.0/16", "via", "192.0.2.1"]);
    t.server
        .ip(&["route", "add", "172.17.0.0/16", "via", "198.51.100.1"]);
    let _d = t.start_daemon_with(&["--routed-bridge", "br0"]);
    let _e = EchoServer::start(&t.container, 7000);
    assert_eq!(
        tcp_roundtrip(&t.client, addr([172, 17, 0, 4], 7000), b"in").expect("routed in"),
        b"7000:in"
    );
    let _w = WhoamiServer::start(&t.server, 9000);
    let seen = tcp_roundtrip(&t.container, server(9000), b"out").expect("routed out");
    assert!(
        String::from_utf8_lossy(&seen).starts_with("172.17.0.4:"),
        "not masqueraded: the server saw {}",
        String::from_utf8_lossy(&seen)
    );
}

/// A probe to a published port whose TTL ends at the host is answered time-exceeded by
/// the host, as the router it is (traceroute to a published port shows it).
#[test]
fn a_published_port_answers_time_exceeded_like_a_router() {
    if !require_root() {
        return;
    }
    let t = Topology::new("ttl");
    let _d = t.start_daemon();
    let _e = EchoServer::start(&t.container, 8038);
    cli_ok(&t.files.socket, &["publish", "8038:172.17.0.4:8038"]);
    let before = counter(&t.files.socket, Reason::IcmpTimeExceeded);
    // hping3: `cargo xtask setup` installs it.
    let said = t.client.output(&[
        "hping3",
        "-S",
        "-p",
        "8038",
        "-c",
        "1",
        "-t",
        "1",
        "192.0.2.1",
    ]);
    assert!(
        said.contains("TTL 0 during transit from ip=192.0.2.1"),
        "the host answers time-exceeded: {said}"
    );
    assert!(
        counter(&t.files.socket, Reason::IcmpTimeExceeded) > before,
        "counted"
    );
    assert_eq!(
        tcp_roundtrip(&t.client, Topology::host_addr(8038), b"ok").expect("a normal TTL"),
        b"8038:ok"
    );
}

/// A flow whose reply entry LRU eviction took keeps its tuple: the sweeper rebuilds the
/// reply entry from the forward one, and the connection goes on.
#[test]
fn a_flow_that_lost_its_reply_entry_is_repaired() {
    if !require_root() {
        return;
    }
    let t = Topology::new("repair");
    let _d = t.start_daemon_with(&["--ct-sweep-interval", "1"]);
    let _e = EchoServer::start(&t.server, 9000);
    let mut live = tcp_connect(&t.container, server(9000)).expect("connect through SNAT");
    echo_once_prefixed(&mut live, b"before");
    evict_reply_and_await_repair::<Be32>(&t.files.pin_dir, common::names::CT, 9000);
    echo_once(&mut live, b"after the repair");
}

/// Issue 28's measured attack: a datagram forged off the wire with another network's
/// container as its source, sent to a published UDP port, had the service's answer
/// delivered into that other network, isolation crossed through a published service. The
/// containers are not registered (each is bound by its first packet), so the forged
/// address is no endpoint yet: its network's subnet alone gives it away. The forged
/// datagrams are `drop-spoof` and nothing reaches the other network; the client's own
/// datagram to the same port is answered.
#[test]
fn a_datagram_forged_from_another_networks_container_gets_no_answer_into_it() {
    if !require_root() {
        return;
    }
    let t = Topology::new("srcfwd");
    let k3 = t.add_second_network();
    let _echo = EchoServer::start(&t.container, 7053);
    let victim = k3.run(|| {
        let s = UdpSocket::bind("0.0.0.0:5353").expect("bind");
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
        s
    });
    let _d = t.start_daemon_with(&["--bridge", "br1"]);
    let sock = &t.files.socket;
    cli_ok(sock, &["publish", "8053:172.17.0.4:7053/udp"]);
    let answer = udp_roundtrip(&t.client, Topology::host_addr(8053), b"real")
        .expect("the client's own datagram is answered");
    assert_eq!(answer, b"7053:real", "the published service echoes");
    let spoof = counter(sock, Reason::DropSpoof);
    let forged = udp(
        ([172, 18, 0, 3], 5353),
        (HOST_IP.octets(), 8053),
        b"forged",
        true,
    );
    for _ in 0..3 {
        send_frame(&t.client, &forged).expect("send the forged datagram");
    }
    let mut buf = [0u8; 64];
    let got = victim.recv_from(&mut buf);
    assert!(
        got.is_err(),
        "the other network's container received the service's answer: {got:?}"
    );
    assert!(
        counter(sock, Reason::DropSpoof) >= spoof + 3,
        "the forged datagrams are counted as drop-spoof"
    );
}
