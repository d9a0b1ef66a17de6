//! `bpfnet monitor` end to end: real packets dropped or translated by the datapath show
//! up with their reason, interface and tuples; filters narrow them; a flood is held to
//! the rate asked for, and what was held back is counted.
use std::{process::Command, time::Duration};

use bpfnet_tests::{
    daemon::{cli_ok, counter},
    echo::{EchoServer, tcp_connect},
    monitor::Monitor,
    packet::udp,
    raw::send_frame,
    require_root,
    topo::{CONTAINER_IP, HOST_IP, Topology},
};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(15);

fn before(e: &Value) -> &Value {
    &e["before"]
}

/// A datagram from the first network to the second is dropped for isolation, and the
/// monitor names the reason, the container's veth and the tuple; a filter on another
/// address sees nothing of it, one on its reason sees it.
#[test]
fn an_isolation_drop_shows_its_reason_interface_and_tuple() {
    if !require_root() {
        return;
    }
    let t = Topology::new("monis");
    let k3 = t.add_second_network();
    let _d = t.start_daemon_with(&["--bridge", "br1"]);
    t.register_endpoints(&k3);
    let sock = &t.files.socket;
    let all = Monitor::start(sock, &[]);
    let drops_only = Monitor::start(sock, &["--type", "drop", "--reason", "drop-isolation"]);
    let elsewhere = Monitor::start(sock, &["--ip", "203.0.113.9"]);
    let isolated = counter(sock, "drop-isolation");
    let cross = udp(
        ([172, 17, 0, 4], 40000),
        ([172, 18, 0, 3], 7777),
        b"x",
        true,
    );
    let send = || send_frame(&t.container, &cross).expect("send across networks");
    let is_ours = |e: &Value| e["reason"] == "drop-isolation" && before(e)["dport"] == 7777;
    let e = all
        .await_event(WAIT, send, is_ours)
        .expect("the isolation drop reaches the monitor");
    assert_eq!(e["kind"], "drop");
    assert_eq!(
        e["iface"], "vc0",
        "seen on the sending container's veth: {e}"
    );
    assert_eq!(e["hook"], "from-container");
    let b = before(&e);
    assert_eq!(b["proto"], "udp");
    assert_eq!(b["src"], CONTAINER_IP.to_string());
    assert_eq!(b["sport"], 40000);
    assert_eq!(b["dst"], "172.18.0.3");
    assert!(e["after"].is_null(), "a drop translates nothing: {e}");
    assert!(e["ct"].is_null(), "a drop has no flow: {e}");
    assert!(e["time_ns"].as_u64().unwrap_or(0) > 1_700_000_000 * 1_000_000_000);
    assert!(
        counter(sock, "drop-isolation") > isolated,
        "and it is counted"
    );
    let seen = drops_only
        .await_event(WAIT, send, is_ours)
        .expect("a reason filter passes its own reason");
    assert_eq!(seen["reason"], "drop-isolation");
    let stray: Vec<Value> = elsewhere
        .collect(Duration::from_millis(500))
        .into_iter()
        .filter(|r| r["record"] == "event")
        .collect();
    assert!(
        stray.is_empty(),
        "an address filter passes nothing else: {stray:?}"
    );
    // The other kind is not sent to a drop-only monitor.
    let traces: Vec<Value> = drops_only
        .collect(Duration::from_millis(300))
        .into_iter()
        .filter(|r| r["record"] == "event" && r["kind"] != "drop")
        .collect();
    assert!(
        traces.is_empty(),
        "--type drop passes drops only: {traces:?}"
    );
}

/// A connection to a published port: the monitor shows its first packet as `dnat-new`
/// on the uplink, with the tuple before (the host's address) and after (the container's)
/// and the flow `new`; the answer is `ct-reply`.
#[test]
fn a_published_port_traces_its_translation() {
    if !require_root() {
        return;
    }
    let t = Topology::new("montr");
    let _d = t.start_daemon();
    let sock = &t.files.socket;
    let _e = EchoServer::start(&t.container, 8038);
    cli_ok(sock, &["publish", "8038:172.17.0.4:8038"]);
    let mon = Monitor::start(sock, &["--type", "trace", "--port", "8038"]);
    let mut conns = Vec::new();
    let connect = || {
        conns.push(tcp_connect(&t.client, Topology::host_addr(8038)).expect("connect"));
    };
    let e = mon
        .await_event(WAIT, connect, |e| e["reason"] == "dnat-new")
        .expect("the new flow reaches the monitor");
    assert_eq!(e["kind"], "trace");
    assert_eq!(e["hook"], "from-uplink");
    assert_eq!(e["iface"], "up0");
    assert_eq!(e["ct"], "new");
    assert_eq!(e["tcp_flags"], "S");
    let (b, a) = (before(&e), &e["after"]);
    assert_eq!(b["dst"], HOST_IP.to_string());
    assert_eq!(b["dport"], 8038);
    assert_eq!(a["dst"], CONTAINER_IP.to_string(), "after DNAT: {e}");
    assert_eq!(a["dport"], 8038);
    assert_eq!(a["src"], b["src"], "the client's address is kept");
    let reply = mon
        .await_event(WAIT, || {}, |e| e["reason"] == "ct-reply")
        .expect("the container's answer is traced too");
    assert_eq!(reply["iface"], "vc0");
    assert_eq!(reply["ct"], "reply");
    assert_eq!(
        reply["after"]["src"],
        HOST_IP.to_string(),
        "the answer leaves as the published address: {reply}"
    );
}

/// A flood of packets into a managed network that no publish opens: every one is
/// dropped and counted, but the monitor gets at most the rate it asked for (per CPU per
/// second), and says how many the limit held back.
#[test]
fn a_flood_is_rate_limited_and_what_was_held_back_is_counted() {
    if !require_root() {
        return;
    }
    let t = Topology::new("monfl");
    let _d = t.start_daemon();
    let sock = &t.files.socket;
    const RATE: u64 = 20;
    let mon = Monitor::start(sock, &["--type", "drop", "--rate", &RATE.to_string()]);
    // Subscribed once the first probe's drop arrives.
    let probe = udp(([192, 0, 2, 2], 5), ([172, 17, 0, 4], 9), b"p", true);
    mon.await_event(
        WAIT,
        || send_frame(&t.client, &probe).expect("probe"),
        |_| true,
    )
    .expect("the monitor is subscribed");
    let dropped = counter(sock, "drop-inbound") + counter(sock, "drop-flood");
    let start = std::time::Instant::now();
    let flood = Command::new("ip")
        .args(["netns", "exec", &t.client.name])
        .args(["hping3", "-q", "-S", "-p", "9", "-c", "5000", "-i", "u100"])
        .arg(CONTAINER_IP.to_string())
        .output()
        .expect("hping3 runs (`cargo xtask setup` installs it)");
    assert!(
        flood.status.success() || flood.status.code() == Some(1),
        "hping3: {}",
        String::from_utf8_lossy(&flood.stderr)
    );
    let records = mon.collect(Duration::from_millis(2500));
    let secs = start.elapsed().as_secs() + 1;
    let flooded = counter(sock, "drop-inbound") + counter(sock, "drop-flood") - dropped;
    assert!(
        flooded >= 4_500,
        "the flood was dropped and counted: {flooded}"
    );
    let events = records.iter().filter(|r| r["record"] == "event").count() as u64;
    let cpus = possible_cpus();
    assert!(
        events <= RATE * cpus * (secs + 1),
        "{events} events in {secs} s exceed {RATE}/s on each of {cpus} CPUs"
    );
    assert!(
        events > 0,
        "the flood's drops are reported, within the rate"
    );
    let held = records
        .iter()
        .filter(|r| r["record"] == "lost")
        .filter_map(|r| r["rate_limited"].as_u64())
        .max()
        .unwrap_or(0);
    assert!(
        held + events >= flooded * 9 / 10,
        "what the rate limit held back is counted: {held} held + {events} sent of {flooded}"
    );
}

/// `--count N` ends the monitor after N events.
#[test]
fn count_ends_the_monitor() {
    if !require_root() {
        return;
    }
    let t = Topology::new("moncn");
    let _d = t.start_daemon();
    let sock = &t.files.socket;
    let mut mon = Monitor::start(sock, &["--count", "1", "--reason", "drop-inbound"]);
    let probe = udp(([192, 0, 2, 2], 5), ([172, 17, 0, 4], 9), b"p", true);
    for _ in 0..50 {
        send_frame(&t.client, &probe).expect("probe");
        std::thread::sleep(Duration::from_millis(100));
        if let Some(status) = mon.exited() {
            assert!(status.success(), "monitor --count exits cleanly: {status}");
            return;
        }
    }
    panic!("monitor --count 1 did not exit after its event");
}

/// An unknown reason is refused before anything is asked of the daemon.
#[test]
fn an_unknown_reason_is_a_clear_error() {
    if !require_root() {
        return;
    }
    let out = bpfnet_tests::daemon::cli(
        std::path::Path::new("/nonexistent.sock"),
        &["monitor", "--reason", "drop-everything"],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown reason `drop-everything`"), "{err}");
}

fn possible_cpus() -> u64 {
    // "0-1", "0", "0-3,5"...
    let s = std::fs::read_to_string("/sys/devices/system/cpu/possible").unwrap_or_default();
    s.trim()
        .split(',')
        .map(|r| match r.split_once('-') {
            Some((a, b)) => b.parse::<u64>().unwrap_or(0) - a.parse::<u64>().unwrap_or(0) + 1,
            None => 1,
        })
        .sum::<u64>()
        .max(1)
}
