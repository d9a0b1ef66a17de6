//! A program the kernel refuses: off the packet path, the datapath degrades and says so
//! (`ct_sweep` refused, flows are swept from userspace; monitor events refused, the
//! packet programs load without them); on it, the daemon stops with one line naming the
//! program and the verifier's reason, and the datapath attached before stays as it was.
//! The refusal is forced with the daemon's hidden `--test-refuse-program`.
use std::{path::Path, time::Duration};

use bpfnet_tests::{
    daemon::{cli, cli_ok, status},
    echo::{EchoServer, tcp_roundtrip, udp_roundtrip},
    require_root,
    topo::{CONTAINER_IP, Topology},
    wait_for,
};

/// Flows `bpfnet conntrack --json` lists.
fn flows(socket: &Path) -> usize {
    bpfnet_tests::daemon::conntrack(socket).len()
}

fn publish(t: &Topology) {
    cli_ok(
        &t.files.socket,
        &["publish", &format!("8080:{CONTAINER_IP}:8080")],
    );
    cli_ok(
        &t.files.socket,
        &["publish", &format!("8080:{CONTAINER_IP}:8080/udp")],
    );
}

#[test]
fn a_refused_sweep_leaves_traffic_flowing_swept_from_userspace_and_warned() {
    if !require_root() {
        return;
    }
    let t = Topology::new("dgsw");
    let _d = t.start_daemon_with(&[
        "--test-refuse-program",
        "ct_sweep",
        "--ct-timeouts",
        "udp=1",
        "--ct-sweep-interval",
        "1",
    ]);
    let sock = &t.files.socket;
    publish(&t);
    let _e = EchoServer::start(&t.container, 8080);
    assert_eq!(
        tcp_roundtrip(&t.client, Topology::host_addr(8080), b"tcp").expect("TCP through DNAT"),
        b"8080:tcp"
    );
    assert_eq!(
        udp_roundtrip(&t.client, Topology::host_addr(8080), b"udp").expect("UDP through DNAT"),
        b"8080:udp"
    );
    let (s, code) = status(sock);
    assert!(
        !s.sweep_in_kernel,
        "status says the sweep is not in the kernel"
    );
    assert!(
        s.warnings
            .iter()
            .any(|w| w.contains("ct_sweep") && w.contains("userspace")),
        "status warns that the kernel refused ct_sweep: {:?}",
        s.warnings
    );
    assert_eq!(code, 1, "a degraded datapath is not healthy");
    assert!(
        !s.programs.iter().any(|p| p.name == "ct_sweep"),
        "ct_sweep is not listed as loaded: {:?}",
        s.programs
    );
    let uplink = s
        .programs
        .iter()
        .find(|p| p.name == "from_uplink")
        .unwrap_or_else(|| panic!("from_uplink's verification is listed: {:?}", s.programs));
    assert!(
        uplink.verified_insns.is_some_and(|n| n > 1000),
        "from_uplink's verified instructions: {uplink:?}"
    );
    // The UDP flow (1 s timeout) goes, swept by the userspace walk.
    assert!(flows(sock) >= 1, "the UDP flow is tracked");
    wait_for(
        "the userspace sweep to remove the idle flows",
        Duration::from_secs(10),
        || {
            let (s, _) = status(sock);
            s.last_sweep.is_some_and(|w| w.walked && w.removed > 0)
        },
    );
    let text = cli(sock, &["status"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("sweep:      from userspace") && text.contains("ct_sweep"),
        "the text status says where flows are swept:\n{text}"
    );
    // Traffic still flows after the sweeps.
    assert_eq!(
        udp_roundtrip(&t.client, Topology::host_addr(8080), b"again").expect("UDP again"),
        b"8080:again"
    );
}

#[test]
fn packet_programs_refused_with_monitor_events_load_without_them() {
    if !require_root() {
        return;
    }
    let t = Topology::new("dgmo");
    let _d = t.start_daemon_with(&["--test-refuse-program", "monitor-events"]);
    publish(&t);
    let _e = EchoServer::start(&t.container, 8080);
    assert_eq!(
        tcp_roundtrip(&t.client, Topology::host_addr(8080), b"tcp").expect("TCP through DNAT"),
        b"8080:tcp"
    );
    let (s, code) = status(&t.files.socket);
    assert!(!s.monitor_events, "status says there are no monitor events");
    assert!(s.sweep_in_kernel, "the sweep still runs in the kernel");
    assert!(
        s.warnings.iter().any(|w| w.contains("monitor")),
        "status warns of the monitor: {:?}",
        s.warnings
    );
    assert_eq!(code, 1);
}

/// A packet program the kernel refuses stops the new daemon with one line naming it and
/// the reason; the datapath the previous daemon left attached still carries traffic.
#[test]
fn a_refused_packet_program_stops_the_daemon_and_leaves_the_datapath_as_it_was() {
    if !require_root() {
        return;
    }
    let t = Topology::new("dgpk");
    let d = t.start_daemon();
    publish(&t);
    let _e = EchoServer::start(&t.container, 8080);
    assert_eq!(
        tcp_roundtrip(&t.client, Topology::host_addr(8080), b"before").expect("TCP before"),
        b"8080:before"
    );
    d.kill9();
    for program in [
        "from_uplink",
        "from_container6",
        "xdp_uplink",
        "sock_connect4",
    ] {
        let (status, stderr) = t.daemon_exit(
            &["--test-refuse-program", program],
            &[("BPFNET_LOG", "off")],
        );
        assert_eq!(
            status.code(),
            Some(2),
            "{program} refused: the daemon exits 2: {stderr}"
        );
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "one line: {stderr}");
        assert!(
            lines[0].contains(&format!("program `{program}`"))
                && lines[0].contains("refused by --test-refuse-program"),
            "the line names the program and the verifier's reason: {stderr}"
        );
        assert_eq!(
            tcp_roundtrip(&t.client, Topology::host_addr(8080), b"after")
                .unwrap_or_else(|e| panic!("{program} refused: the old datapath still DNATs: {e}")),
            b"8080:after"
        );
    }
}
