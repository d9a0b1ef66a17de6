//! Published ports end to end: real TCP and UDP through the eBPF DNAT, from a client
//! namespace through the host's uplink to a container namespace on a bridge.
use std::net::SocketAddr;

use bpfnet_tests::{
    daemon::{cli, cli_ok, ls},
    echo::{EchoServer, tcp_roundtrip, udp_roundtrip},
    require_root,
    topo::{CONTAINER_IP, Topology},
};

fn publish_roundtrips(t: &Topology) {
    let _d = t.start_daemon();
    let _e1 = EchoServer::start(&t.container, 8038);
    let _e2 = EchoServer::start(&t.container, 8039);
    let host = Topology::host_addr;

    assert!(
        tcp_roundtrip(&t.client, host(8038), b"x").is_err(),
        "nothing is published yet, so 192.0.2.1:8038 must not reach the container"
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
        ls(&t.files.socket)["published"],
        serde_json::json!([
            "8038:172.17.0.4:8038/tcp",
            "8038:172.17.0.4:8038/udp",
            "192.0.2.1:9000-9001:172.17.0.4:8038-8039/tcp",
            "192.0.2.1:9000-9001:172.17.0.4:8038-8039/udp"
        ])
    );

    cli_ok(&t.files.socket, &["unpublish", "8038:172.17.0.4:8038"]);
    cli_ok(&t.files.socket, &["unpublish", "8038:172.17.0.4:8038/udp"]);
    assert!(
        tcp_roundtrip(&t.client, host(8038), b"x").is_err(),
        "TCP must fail after unpublish"
    );
    assert!(
        udp_roundtrip(&t.client, host(8038), b"x").is_err(),
        "UDP must fail after unpublish"
    );
    assert_eq!(
        tcp_roundtrip(&t.client, host(9000), b"still").expect("other publish intact"),
        b"8038:still"
    );
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
    assert!(
        tcp_roundtrip(&t.client, SocketAddr::from((CONTAINER_IP, 7000)), b"x").is_err(),
        "FORWARD DROP should stop routed traffic to the container"
    );
    publish_roundtrips(&t);
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
    assert_eq!(
        ls(&t.files.socket)["published"],
        serde_json::json!(["8038:172.17.0.4:8038/tcp"])
    );

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
        ls(&t.files.socket)["published"],
        serde_json::json!(["8038:172.17.0.4:8038/tcp", "1-65535:172.17.0.4:1-65535/udp"])
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
