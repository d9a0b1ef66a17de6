//! `bpfnet daemon --xdp` end to end (generic XDP on the topology's veth uplink): what
//! bpfnet would drop is dropped before `from_uplink` runs, a flood of first packets
//! beyond the new-flow budget is cut off early while real connections still get in, and
//! the program comes and goes with the flag across restarts. (Every other end-to-end
//! test also runs with `--xdp=generic` in `cargo xtask test`: `BPFNET_TEST_XDP`.)
use std::{
    io::ErrorKind,
    net::{SocketAddr, TcpListener},
    path::Path,
    process::{Command, Stdio},
    thread,
    time::Duration,
};

use aya::{
    programs::{
        links::{FdLink, PinnedLink},
        loaded_programs,
    },
    sys::{Stats, enable_stats},
};
use bpfnet_tests::{
    daemon::{Daemon, cli_ok, counter},
    echo::{EchoServer, assert_fails, tcp_connect, tcp_roundtrip},
    require_root,
    topo::{CONTAINER_IP, Topology, UPLINK},
};
use common::Reason;

/// The program id behind link `name@ifindex` pinned under `pin_dir`, if one is pinned.
fn pinned_program(pin_dir: &Path, name: &str, ifindex: u32) -> Option<u32> {
    let path = pin_dir.join("links").join(format!("{name}@{ifindex}"));
    let link = PinnedLink::from_pin(&path).ok()?;
    let info = FdLink::from(link).info().expect("pinned link info");
    Some(info.program_id())
}

/// How many times program `id` ran (statistics must be on).
fn runs(id: u32) -> u64 {
    loaded_programs()
        .filter_map(Result::ok)
        .find(|p| p.id() == id)
        .unwrap_or_else(|| panic!("program {id} is loaded"))
        .run_count()
}

fn start_xdp(t: &Topology, extra: &[&str]) -> Daemon {
    let mut args = vec!["--xdp=generic"];
    args.extend_from_slice(extra);
    t.start_daemon_with(&args)
}

fn xdp_shown(t: &Topology) -> bool {
    t.host
        .output(&["ip", "-d", "link", "show", UPLINK])
        .contains("xdpgeneric")
}

#[test]
fn probes_die_in_xdp_while_published_traffic_passes_to_tc() {
    if !require_root() {
        return;
    }
    let t = Topology::new("xdp");
    t.harden_host_firewall();
    t.host.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    t.client
        .ip(&["route", "add", "172.17.0.0/16", "via", "192.0.2.1"]);
    let _echo = EchoServer::start(&t.container, 8080);
    let _probe_target = t.container.run(|| {
        let l = TcpListener::bind("0.0.0.0:7000").expect("bind");
        l.set_nonblocking(true).expect("nonblocking");
        l
    });
    let d = start_xdp(&t, &[]);
    cli_ok(&t.files.socket, &["publish", "8080:172.17.0.4:8080"]);
    let uplink = t.host.ifindex(UPLINK);
    let pins = &t.files.pin_dir;
    let xdp = pinned_program(pins, "xdp_uplink", uplink).expect("xdp_uplink pinned on the uplink");
    let tc = pinned_program(pins, "from_uplink", uplink).expect("from_uplink pinned on the uplink");
    assert!(xdp_shown(&t), "the uplink shows generic XDP");
    let ls = cli_ok(&t.files.socket, &["ls"]);
    assert!(
        ls.contains("xdp_uplink"),
        "`bpfnet ls` names the XDP program: {ls}"
    );

    let _stats = enable_stats(Stats::RunTime).expect("BPF statistics on");
    // Published traffic passes XDP and is translated by TC.
    let reply = tcp_roundtrip(&t.client, Topology::host_addr(8080), b"through xdp")
        .expect("the publish answers with --xdp");
    assert_eq!(reply, b"8080:through xdp");

    // Routed probes of an unpublished container port: dropped in XDP, never seen by TC.
    let inbound = counter(&t.files.socket, Reason::DropInbound);
    let (xdp0, tc0) = (runs(xdp), runs(tc));
    const PROBES: u64 = 40;
    let target = SocketAddr::from((CONTAINER_IP, 7000));
    let probes = t.client.run(move || {
        (0..PROBES)
            .map(|i| {
                let s = std::net::UdpSocket::bind("0.0.0.0:0").expect("bind");
                s.send_to(format!("probe {i}").as_bytes(), target)
                    .expect("send");
            })
            .count()
    });
    assert_eq!(probes as u64, PROBES);
    assert_fails(
        "a routed connection to an unpublished container port",
        tcp_connect(&t.client, target),
        ErrorKind::TimedOut,
    );
    let dropped = counter(&t.files.socket, Reason::DropInbound) - inbound;
    let (xdp_ran, tc_ran) = (runs(xdp) - xdp0, runs(tc) - tc0);
    assert!(
        dropped > PROBES,
        "every probe and the SYNs counted drop-inbound: {dropped}"
    );
    assert!(xdp_ran >= dropped, "xdp_uplink judged them: {xdp_ran} runs");
    assert!(
        tc_ran < PROBES / 4,
        "from_uplink never saw the dropped probes: {tc_ran} runs (ARP at most)"
    );

    // Without --xdp the program leaves the uplink; with it, it comes back.
    drop(d);
    let d = t.start_daemon();
    if std::env::var_os("BPFNET_TEST_XDP").is_none() {
        assert!(
            pinned_program(pins, "xdp_uplink", uplink).is_none(),
            "a daemon without --xdp removes xdp_uplink"
        );
        assert!(!xdp_shown(&t), "the uplink no longer shows XDP");
    }
    let reply = tcp_roundtrip(&t.client, Topology::host_addr(8080), b"after")
        .expect("the publish answers after the restart");
    assert_eq!(reply, b"8080:after");
    drop(d);
    let _d = start_xdp(&t, &[]);
    assert!(pinned_program(pins, "xdp_uplink", uplink).is_some());
    assert!(xdp_shown(&t), "XDP back on the uplink");
    t.assert_no_checksum_errors();
}

#[test]
fn a_flood_of_first_packets_beyond_the_budget_is_cut_off_early() {
    if !require_root() {
        return;
    }
    let t = Topology::new("xflood");
    t.harden_host_firewall();
    // Replies to the flood's random sources die at the client instead of looping.
    t.client.ip(&["route", "del", "default"]);
    t.client.ip(&["route", "add", "blackhole", "default"]);
    let _echo = EchoServer::start(&t.container, 8080);
    // 1,024 CT entries: a new-flow table of 256, a budget of 256 / CPUs a second each.
    let _d = start_xdp(&t, &["--ct-entries", "1024"]);
    cli_ok(&t.files.socket, &["publish", "8080:172.17.0.4:8080"]);
    let before = counter(&t.files.socket, Reason::DropFlood);
    const FLOOD: u64 = 3000;
    // Spoofed SYNs from random sources, at about 10,000 a second (bounded: 3,000).
    t.client.output(&[
        "hping3",
        "-q",
        "-S",
        "-p",
        "8080",
        "--rand-source",
        "-c",
        &FLOOD.to_string(),
        "-i",
        "u100",
        "192.0.2.1",
    ]);
    let flood = counter(&t.files.socket, Reason::DropFlood) - before;
    assert!(
        flood >= FLOOD / 2,
        "most of a flood far beyond the budget is dropped early: {flood} of {FLOOD}"
    );
    let created = counter(&t.files.socket, Reason::DnatNew);
    assert!(
        created <= 512,
        "at most a second or two of budget became flows: {created}"
    );
    // The next second's budget lets a real client in.
    thread::sleep(Duration::from_millis(1100));
    let reply = tcp_roundtrip(&t.client, Topology::host_addr(8080), b"real")
        .expect("a real connection after the flood");
    assert_eq!(reply, b"8080:real");
}

/// During a random-source SYN flood far beyond the new-flow budget, a client whose /24
/// completed a handshake before keeps connecting: the flood spends only the unproven
/// sources' pool (`drop-flood`), the proven prefix has its own.
#[test]
fn a_client_that_completed_a_handshake_connects_during_a_flood() {
    if !require_root() {
        return;
    }
    let t = Topology::new("xproven");
    t.harden_host_firewall();
    // Replies to the flood's random sources die at the client instead of looping.
    t.client.ip(&["route", "del", "default"]);
    t.client.ip(&["route", "add", "blackhole", "default"]);
    let _echo = EchoServer::start(&t.container, 8080);
    // 1,024 CT entries: a budget of 256 / CPUs a second, half of it for unproven sources.
    let _d = start_xdp(&t, &["--ct-entries", "1024"]);
    cli_ok(&t.files.socket, &["publish", "8080:172.17.0.4:8080"]);
    // The client's handshake proves its /24.
    let reply = tcp_roundtrip(&t.client, Topology::host_addr(8080), b"first")
        .expect("a connection before the flood");
    assert_eq!(reply, b"8080:first");
    let before = counter(&t.files.socket, Reason::DropFlood);
    // Spoofed SYNs from random sources at about 10,000 a second for 4 s (bounded: 40,000).
    let mut flood = Command::new("ip")
        .args(["netns", "exec", &t.client.name])
        .args(["hping3", "-q", "-S", "-p", "8080", "--rand-source"])
        .args(["-c", "40000", "-i", "u100", "192.0.2.1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("hping3 runs (`cargo xtask setup` installs it)");
    thread::sleep(Duration::from_millis(500));
    let during: Vec<_> = (0..5)
        .map(|_| tcp_roundtrip(&t.client, Topology::host_addr(8080), b"during"))
        .collect();
    let cut = counter(&t.files.socket, Reason::DropFlood) - before;
    let still_flooding = flood.try_wait().ok().flatten().is_none();
    let _unused: Result<_, _> = flood.kill();
    let _unused: Result<_, _> = flood.wait();
    assert!(still_flooding, "the connections were made during the flood");
    assert!(
        cut >= 1_000,
        "the flood is cut off beyond the budget: {cut} drop-flood"
    );
    for (i, r) in during.into_iter().enumerate() {
        let reply = r.unwrap_or_else(|e| panic!("connection {i} during the flood: {e}"));
        assert_eq!(reply, b"8080:during");
    }
}
