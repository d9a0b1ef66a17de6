//! Published ports end to end: real TCP and UDP through the eBPF DNAT, from a client
//! namespace through the host's uplink to a container namespace on a bridge.
use std::{
    io::{ErrorKind, Read as _, Write as _},
    net::{SocketAddr, UdpSocket},
    path::Path,
    thread,
    time::Duration,
};

use bpfnet_tests::{
    daemon::{cli, cli_ok, counter, ls},
    echo::{EchoServer, IO_TIMEOUT, assert_fails, tcp_connect, tcp_roundtrip, udp_roundtrip},
    packet::{TCP_ACK, TCP_RST, TCP_SYN, tcp_seq},
    raw::send_frame,
    require_root,
    topo::{CLIENT_IP, CONTAINER_IP, HOST_IP, SERVER_IP, Topology},
};
use common::Reason;

/// `bpfnet ls`'s publishes, as the CLI writes them.
fn published(sock: &Path) -> Vec<String> {
    ls(sock).published.iter().map(ToString::to_string).collect()
}

fn publish_roundtrips(t: &Topology) {
    let _d = t.start_daemon();
    let _e1 = EchoServer::start(&t.container, 8038);
    let _e2 = EchoServer::start(&t.container, 8039);
    let host = Topology::host_addr;

    // Nothing listens on the host's 8038: its stack answers with a reset.
    assert_fails(
        "192.0.2.1:8038 before anything is published",
        tcp_roundtrip(&t.client, host(8038), b"x"),
        ErrorKind::ConnectionRefused,
    );

    cli_ok(&t.files.socket, &["publish", "8038:172.17.0.4:8038"]);
    cli_ok(&t.files.socket, &["publish", "8038:172.17.0.4:8038/udp"]);
    assert_eq!(
        tcp_roundtrip(&t.client, host(8038), b"hello tcp").expect("TCP through DNAT"),
        b"8038:hello tcp"
    );
    assert_eq!(
        udp_roundtrip(&t.client, host(8038), b"hello udp").expect("UDP through DNAT"),
        b"8038:hello udp"
    );

    // A second published range, bound to the uplink address, shifted onto other ports.
    cli_ok(
        &t.files.socket,
        &["publish", "192.0.2.1:9000-9001:172.17.0.4:8038-8039"],
    );
    cli_ok(
        &t.files.socket,
        &["publish", "192.0.2.1:9000-9001:172.17.0.4:8038-8039/udp"],
    );
    assert_eq!(
        tcp_roundtrip(&t.client, host(9001), b"r").expect("TCP to range end"),
        b"8039:r"
    );
    assert_eq!(
        tcp_roundtrip(&t.client, host(9000), b"r").expect("TCP to range start"),
        b"8038:r"
    );
    assert_eq!(
        udp_roundtrip(&t.client, host(9001), b"u").expect("UDP to range end"),
        b"8039:u"
    );

    assert_eq!(
        published(&t.files.socket),
        [
            "8038:172.17.0.4:8038/tcp",
            "8038:172.17.0.4:8038/udp",
            "192.0.2.1:9000-9001:172.17.0.4:8038-8039/tcp",
            "192.0.2.1:9000-9001:172.17.0.4:8038-8039/udp"
        ]
    );

    cli_ok(&t.files.socket, &["unpublish", "8038:172.17.0.4:8038"]);
    cli_ok(&t.files.socket, &["unpublish", "8038:172.17.0.4:8038/udp"]);
    assert_fails(
        "TCP to 8038 after unpublish reaches the host, where nothing listens",
        tcp_roundtrip(&t.client, host(8038), b"x"),
        ErrorKind::ConnectionRefused,
    );
    assert_fails(
        "UDP to 8038 after unpublish",
        udp_roundtrip(&t.client, host(8038), b"x"),
        ErrorKind::TimedOut,
    );
    assert_eq!(
        tcp_roundtrip(&t.client, host(9000), b"still").expect("other publish intact"),
        b"8038:still"
    );
    t.assert_no_checksum_errors();
}

#[test]
fn published_ports_carry_tcp_and_udp() {
    if !require_root() {
        return;
    }
    publish_roundtrips(&Topology::new("pub"));
}

#[test]
fn published_ports_work_with_notrack_and_forward_drop() {
    if !require_root() {
        return;
    }
    let t = Topology::new("fw");
    t.harden_host_firewall();
    // The policy bites: plain routed forwarding to the container is dropped.
    t.client
        .ip(&["route", "add", "172.17.0.0/16", "via", "192.0.2.1"]);
    let _e = EchoServer::start(&t.container, 7000);
    assert_fails(
        "routed to the container through FORWARD DROP",
        tcp_roundtrip(&t.client, SocketAddr::from((CONTAINER_IP, 7000)), b"x"),
        ErrorKind::TimedOut,
    );
    publish_roundtrips(&t);
}

/// The flows of a port go with it: the same sockets that talked through the publish get
/// nowhere once it is withdrawn.
#[test]
fn unpublish_forgets_the_ports_flows() {
    if !require_root() {
        return;
    }
    let t = Topology::new("unp");
    let _d = t.start_daemon();
    let _e = EchoServer::start(&t.container, 8038);
    let sock = &t.files.socket;
    cli_ok(sock, &["publish", "8038:172.17.0.4:8038"]);
    cli_ok(sock, &["publish", "8038:172.17.0.4:8038/udp"]);
    let to = Topology::host_addr(8038);
    let mut tcp = tcp_connect(&t.client, to).expect("connect through DNAT");
    let udp = t.client.run(move || {
        let s = UdpSocket::bind("0.0.0.0:0").expect("bind");
        // Connected, so an ICMP error from the host shows as ConnectionRefused.
        s.connect(to).expect("connect UDP");
        s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        s
    });
    let mut buf = [0u8; 64];
    tcp.write_all(b"a").expect("send");
    tcp.read_exact(&mut buf[..6])
        .expect("echo before unpublish");
    assert_eq!(&buf[..6], b"8038:a");
    udp.send(b"b").expect("send");
    let n = udp.recv(&mut buf).expect("UDP echo before unpublish");
    assert_eq!(&buf[..n], b"8038:b");
    assert!(
        conntrack_has(sock, 8038),
        "the port's flows are tracked before unpublish"
    );

    cli_ok(sock, &["unpublish", "8038:172.17.0.4:8038"]);
    cli_ok(sock, &["unpublish", "8038:172.17.0.4:8038/udp"]);
    assert!(
        !conntrack_has(sock, 8038),
        "no flow of the port is left after unpublish"
    );
    // The next segment has no flow and no publish: the host's stack resets it.
    tcp.write_all(b"c").expect("send after unpublish");
    let r = tcp.read(&mut buf);
    assert_fails(
        "the established TCP connection after unpublish",
        r,
        ErrorKind::ConnectionReset,
    );
    udp.send(b"d").expect("send after unpublish");
    assert_fails(
        "the UDP socket after unpublish",
        udp.recv(&mut buf),
        ErrorKind::ConnectionRefused,
    );
}

/// A UDP datagram larger than the MTU crosses both NATs as fragments: in through the
/// published port and back, out through SNAT and back. Later fragments carry no ports;
/// they follow the first by IP id.
#[test]
fn fragmented_udp_crosses_dnat_and_snat() {
    if !require_root() {
        return;
    }
    static BIG: [u8; 4000] = [0x42; 4000];
    let t = Topology::new("frag");
    let _d = t.start_daemon();
    let _e = EchoServer::start(&t.container, 8038);
    let _s = EchoServer::start(&t.server, 7000);
    cli_ok(&t.files.socket, &["publish", "8038:172.17.0.4:8038/udp"]);
    let before = counter(&t.files.socket, Reason::FragmentTranslated);
    for (what, from, to, port) in [
        ("through DNAT", &t.client, Topology::host_addr(8038), 8038),
        (
            "through SNAT",
            &t.container,
            SocketAddr::from((SERVER_IP, 7000)),
            7000,
        ),
    ] {
        let reply = udp_roundtrip(from, to, &BIG).unwrap_or_else(|e| panic!("{what}: {e}"));
        let mut want = format!("{port}:").into_bytes();
        want.extend_from_slice(&BIG);
        assert!(
            reply == want,
            "{what}: the whole datagram came back ({} bytes)",
            reply.len()
        );
    }
    // Two directions each way, two later fragments per 4000-byte datagram.
    let translated = counter(&t.files.socket, Reason::FragmentTranslated) - before;
    assert!(
        translated >= 8,
        "later fragments followed their first ({translated})"
    );
    t.assert_no_checksum_errors();
}

/// Whether `conntrack --json` lists a flow whose original destination port is `port`.
fn conntrack_has(sock: &Path, port: u16) -> bool {
    bpfnet_tests::daemon::conntrack(sock)
        .iter()
        .any(|f| f.original.dst_port == port)
}

#[test]
fn cli_rejects_bad_input_with_exit_code_2_and_changes_nothing() {
    if !require_root() {
        return;
    }
    let t = Topology::new("cli");
    let _d = t.start_daemon();
    cli_ok(&t.files.socket, &["publish", "8038:172.17.0.4:8038"]);
    for (args, want) in [
        (vec!["publish", "8038:172.17.0.4"], "expected [HOSTIP:]"),
        (vec!["publish", "0:172.17.0.4:80"], "host port `0`"),
        (
            vec!["publish", "8038:172.17.0.5:80"],
            "conflicts with published `8038:172.17.0.4:8038/tcp`",
        ),
        (
            vec!["publish", "192.0.2.1:8030-8040:172.17.0.5:80-90"],
            "conflicts",
        ),
        (
            vec!["unpublish", "8039:172.17.0.4:8038"],
            "is not published",
        ),
    ] {
        let out = cli(&t.files.socket, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?} should exit 2, stderr: {err}"
        );
        assert!(
            err.contains(want),
            "{args:?}: stderr `{err}` should contain `{want}`"
        );
        assert_eq!(
            err.trim().lines().count(),
            1,
            "{args:?}: error should be one line: {err}"
        );
    }
    assert_eq!(published(&t.files.socket), ["8038:172.17.0.4:8038/tcp"]);

    // A full map is a clear error that changes nothing: 65,535 UDP ports plus the TCP
    // one fill published_v1 (65,536 entries).
    cli_ok(
        &t.files.socket,
        &["publish", "1-65535:172.17.0.4:1-65535/udp"],
    );
    let out = cli(&t.files.socket, &["publish", "9999:172.17.0.4:80"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "publish into a full map should exit 2: {err}"
    );
    assert!(
        err.contains("cannot publish `9999:172.17.0.4:80/tcp`"),
        "{err}"
    );
    assert_eq!(
        published(&t.files.socket),
        ["8038:172.17.0.4:8038/tcp", "1-65535:172.17.0.4:1-65535/udp"]
    );
    cli_ok(
        &t.files.socket,
        &["unpublish", "1-65535:172.17.0.4:1-65535/udp"],
    );
    cli_ok(&t.files.socket, &["publish", "9999:172.17.0.4:80"]);

    let gone = t.files.socket.with_file_name("nobody.sock");
    let out = cli(&gone, &["ls"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "unreachable daemon should exit 2: {err}"
    );
    assert!(err.contains("cannot reach the bpfnet daemon"), "{err}");
}

/// Issue 28's measured attack, end to end: an off-path host that knows only a published
/// connection's client address and port forges a SYN-ACK in the client's direction, then
/// a RST in the sequence it forged. Both are `drop-tcp-window`, and the live connection
/// keeps carrying bytes.
#[test]
fn a_live_published_connection_survives_a_forged_syn_ack_and_rst() {
    if !require_root() {
        return;
    }
    let t = Topology::new("synack");
    let _d = t.start_daemon();
    let _e = EchoServer::start(&t.container, 8038);
    cli_ok(&t.files.socket, &["publish", "8038:172.17.0.4:8038"]);
    let mut live = tcp_connect(&t.client, Topology::host_addr(8038)).expect("connect through DNAT");
    let port = live.local_addr().expect("local address").port();
    let mut prefix = [0u8; 5];
    live.read_exact(&mut prefix).expect("echo prefix");
    echo_once(&mut live, b"first");
    let dropped = counter(&t.files.socket, Reason::DropTcpWindow);
    let forged = 0x5eed_0000u32;
    for (flags, seq) in [(TCP_SYN | TCP_ACK, forged), (TCP_RST, forged + 1)] {
        let frame = tcp_seq(
            (CLIENT_IP.octets(), port),
            (HOST_IP.octets(), 8038),
            flags,
            (seq, 0),
            b"",
        );
        send_frame(&t.client, &frame).expect("send a forged segment");
    }
    thread::sleep(Duration::from_millis(200));
    assert_eq!(
        counter(&t.files.socket, Reason::DropTcpWindow),
        dropped + 2,
        "the forged SYN-ACK and RST are dropped, counted"
    );
    for i in 0..20 {
        echo_once(&mut live, format!("still alive {i}").as_bytes());
    }
}

/// Send `msg` on an echo connection and read it back.
fn echo_once(s: &mut std::net::TcpStream, msg: &[u8]) {
    s.write_all(msg).expect("send on the connection");
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back).expect("echo on the connection");
    assert_eq!(back, msg);
}
