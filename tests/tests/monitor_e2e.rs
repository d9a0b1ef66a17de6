//! `bpfnet monitor` end to end: real packets dropped or translated by the datapath show
//! up with their reason, interface and tuples; filters narrow them; a flood is held to
//! the rate asked for over all CPUs, and what was held back is counted; `--sample`
//! reports one in N; the datapath is told to report nothing once no client is left.
use std::{
    net::{IpAddr, SocketAddr, UdpSocket},
    process::{Child, Command, Stdio},
    time::Duration,
};

use bpfnet::api::{
    flow::Proto,
    monitor::{CtState, Event, Filter, Hook, Kind, Lost, Record, Tuple},
    reason,
};
use bpfnet_tests::{
    daemon::{cli_ok, counter},
    echo::{EchoServer, tcp_connect},
    monitor::{Monitor, datapath_config, online_cpus},
    packet::udp,
    raw::send_frame,
    require_root,
    topo::{CONTAINER_IP, HOST_IP, SERVER_IP, Topology},
    wait_for,
};
use common::Reason;

const WAIT: Duration = Duration::from_secs(15);
/// How long each CPU's flood runs.
const FLOOD: Duration = Duration::from_millis(3500);

fn before(e: &Event) -> &Tuple {
    e.packet
        .before
        .as_ref()
        .unwrap_or_else(|| panic!("a decoded tuple: {e:?}"))
}

fn after(e: &Event) -> &Tuple {
    e.after
        .as_ref()
        .unwrap_or_else(|| panic!("a translated tuple: {e:?}"))
}

fn events(records: Vec<Record>) -> Vec<Event> {
    records
        .into_iter()
        .filter_map(|r| match r {
            Record::Event(e) => Some(*e),
            Record::Lost(_) => None,
        })
        .collect()
}

fn losts(records: &[Record]) -> impl Iterator<Item = &Lost> {
    records.iter().filter_map(|r| match r {
        Record::Lost(l) => Some(l),
        Record::Event(_) => None,
    })
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
    let isolated = counter(sock, Reason::DropIsolation);
    let cross = udp(
        ([172, 17, 0, 4], 40000),
        ([172, 18, 0, 3], 7777),
        b"x",
        true,
    );
    let send = || send_frame(&t.container, &cross).expect("send across networks");
    let is_ours = |e: &Event| {
        e.reason == Reason::DropIsolation
            && e.packet
                .before
                .as_ref()
                .is_some_and(|b| b.dport == Some(7777))
    };
    let e = all
        .await_event(WAIT, send, is_ours)
        .expect("the isolation drop reaches the monitor");
    assert_eq!(e.kind, Kind::Drop);
    assert_eq!(
        e.iface, "vc0",
        "seen on the sending container's veth: {e:?}"
    );
    assert_eq!(e.hook, Hook::FromContainer);
    let b = before(&e);
    assert_eq!(b.proto, Proto::Udp);
    assert_eq!(b.src, CONTAINER_IP);
    assert_eq!(b.sport, Some(40000));
    assert_eq!(b.dst, IpAddr::from([172, 18, 0, 3]));
    assert!(e.after.is_none(), "a drop translates nothing: {e:?}");
    assert!(e.ct.is_none(), "a drop has no flow: {e:?}");
    assert!(e.time_ns > 1_700_000_000 * 1_000_000_000);
    assert!(
        counter(sock, Reason::DropIsolation) > isolated,
        "and it is counted"
    );
    let seen = drops_only
        .await_event(WAIT, send, is_ours)
        .expect("a reason filter passes its own reason");
    assert_eq!(seen.reason, Reason::DropIsolation);
    let stray = events(elsewhere.collect(Duration::from_millis(500)));
    assert!(
        stray.is_empty(),
        "an address filter passes nothing else: {stray:?}"
    );
    // The other kind is not sent to a drop-only monitor.
    let traces: Vec<Event> = events(drops_only.collect(Duration::from_millis(300)))
        .into_iter()
        .filter(|e| e.kind != Kind::Drop)
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
        .await_event(WAIT, connect, |e| e.reason == Reason::DnatNew)
        .expect("the new flow reaches the monitor");
    assert_eq!(e.kind, Kind::Trace);
    assert_eq!(e.hook, Hook::FromUplink);
    assert_eq!(e.iface, "up0");
    assert_eq!(e.ct, Some(CtState::New));
    assert_eq!(e.packet.tcp_flags.as_deref(), Some("S"));
    let (b, a) = (before(&e), after(&e));
    assert_eq!(b.dst, HOST_IP);
    assert_eq!(b.dport, Some(8038));
    assert_eq!(a.dst, CONTAINER_IP, "after DNAT: {e:?}");
    assert_eq!(a.dport, Some(8038));
    assert_eq!(a.src, b.src, "the client's address is kept");
    let reply = mon
        .await_event(WAIT, || {}, |e| e.reason == Reason::CtReply)
        .expect("the container's answer is traced too");
    assert_eq!(reply.iface, "vc0");
    assert_eq!(reply.ct, Some(CtState::Reply));
    assert_eq!(
        after(&reply).src,
        HOST_IP,
        "the answer leaves as the published address: {reply:?}"
    );
}

/// A flood of packets into a managed network that no publish opens, one flood pinned to
/// each CPU that runs programs: every packet is dropped and counted, but the monitor
/// gets at most the rate it asked for, a second, over all the CPUs together (a budget
/// per CPU would let through the rate times the CPUs), and says how many the limit
/// held back.
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
    let dropped = counter(sock, Reason::DropInbound) + counter(sock, Reason::DropFlood);
    let cpus = online_cpus();
    // A packet sent on a CPU is judged there (the veth hands it to that CPU's backlog).
    let floods: Vec<Child> = cpus
        .iter()
        .map(|cpu| {
            Command::new("ip")
                .args(["netns", "exec", &t.client.name])
                .args(["taskset", "-c", &cpu.to_string()])
                .args(["hping3", "-q", "-S", "-p", "9", "-i", "u200"])
                .arg(CONTAINER_IP.to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("hping3 runs (`cargo xtask setup` installs it)")
        })
        .collect();
    // Long enough for several windows, so that a budget per CPU shows.
    std::thread::sleep(FLOOD);
    for mut f in floods {
        let _unused: Result<_, _> = f.kill();
        let _unused: Result<_, _> = f.wait();
    }
    let records = mon.collect(Duration::from_millis(2500));
    let flooded = counter(sock, Reason::DropInbound) + counter(sock, Reason::DropFlood) - dropped;
    assert!(
        flooded >= 1_000 * cpus.len() as u64,
        "the floods were dropped and counted: {flooded}"
    );
    let held = losts(&records).map(|l| l.rate_limited).max().unwrap_or(0);
    let events = events(records);
    let times: Vec<u64> = events.iter().map(|e| e.time_ns).collect();
    let span = times.iter().max().unwrap_or(&0) - times.iter().min().unwrap_or(&0);
    // Windows are a second or more apart (by the coarse clock: a tick, under 20 ms,
    // behind the events' stamps); the first may have begun before the flood.
    let windows = span / 980_000_000 + 2;
    // A CPU's update of the shared window racing another's may be lost: at most an
    // event more per other CPU and window.
    let bound = (RATE + cpus.len() as u64 - 1) * windows;
    let n = events.len() as u64;
    assert!(
        n <= bound,
        "{n} events in {span} ns ({windows} windows) exceed {RATE} a second over all {} CPUs",
        cpus.len()
    );
    assert!(
        n >= RATE,
        "the flood's drops are reported, a window's worth at least: {n}"
    );
    assert!(
        held + n >= flooded * 9 / 10,
        "what the rate limit held back is counted: {held} held + {n} sent of {flooded}"
    );
}

/// `--sample N` with no rate limit: of a known number of packets, the monitor gets one
/// in N (sampling counts per CPU, so within one event per CPU of it), and the rest are
/// counted as sampled out, to the packet.
#[test]
fn sample_n_reports_one_in_n_and_counts_the_rest() {
    if !require_root() {
        return;
    }
    let t = Topology::new("monsm");
    let _d = t.start_daemon();
    let sock = &t.files.socket;
    let pins = &t.files.pin_dir;
    const N: u64 = 4;
    const SENT: u64 = 400;
    let reasons = [Reason::DropInbound, Reason::DropFlood];
    let args = [
        "--reason",
        reasons[0].name(),
        "--reason",
        reasons[1].name(),
        "--sample",
        "4",
        "--rate",
        "0",
    ];
    let mon = Monitor::start(sock, &args);
    wait_for("the monitor to subscribe", WAIT, || {
        let c = datapath_config(pins);
        c.reasons != 0 && u64::from(c.sample) == N && c.rate == 0
    });
    let dropped = || reasons.iter().map(|&r| counter(sock, r)).sum::<u64>();
    let before_drops = dropped();
    let probe = udp(([192, 0, 2, 2], 5), ([172, 17, 0, 4], 9), b"p", true);
    for _ in 0..SENT {
        send_frame(&t.client, &probe).expect("probe");
    }
    wait_for("every packet dropped", WAIT, || {
        dropped() - before_drops >= SENT
    });
    assert_eq!(
        dropped() - before_drops,
        SENT,
        "the packets sent, and nothing else, were dropped"
    );
    let seen = |records: &[Record]| {
        let events = records
            .iter()
            .filter(|r| matches!(r, Record::Event(_)))
            .count() as u64;
        let sampled_out = losts(records).map(|l| l.sampled_out).max().unwrap_or(0);
        (events, sampled_out)
    };
    let records = mon.records_until(WAIT, |r| {
        let (e, s) = seen(r);
        e + s >= SENT
    });
    let (events, sampled_out) = seen(&records);
    assert_eq!(
        events + sampled_out,
        SENT,
        "each packet reported or counted as sampled out: {events} + {sampled_out}"
    );
    let cpus = online_cpus().len() as u64;
    assert!(
        events.abs_diff(SENT / N) < cpus,
        "{events} events of {SENT} packets: one in {N}, within one per CPU ({cpus})"
    );
}

/// The datapath reports what the attached clients ask for, and nothing once the last
/// one is gone: the mask in `monitor` is their union while they are attached, shrinks
/// when one leaves and is 0 when none is left.
#[test]
fn the_report_mask_is_nothing_once_the_last_client_leaves() {
    if !require_root() {
        return;
    }
    let t = Topology::new("monmk");
    let _d = t.start_daemon();
    let sock = &t.files.socket;
    let pins = &t.files.pin_dir;
    let mask = |args: &[&str]| {
        let filter = match args {
            ["--reason", r] => Filter {
                reasons: vec![reason::parse(r).expect("a known reason")],
                ..Filter::default()
            },
            ["--type", "drop"] => Filter {
                kind: Some(Kind::Drop),
                ..Filter::default()
            },
            _ => unreachable!(),
        };
        filter.mask().expect("a mask")
    };
    assert_eq!(datapath_config(pins).reasons, 0, "no client, no reports");
    let one = ["--reason", "ct-forward"];
    let drops = ["--type", "drop"];
    let a = Monitor::start(sock, &one);
    let b = Monitor::start(sock, &drops);
    let both = mask(&one) | mask(&drops);
    wait_for("the union of both clients' reasons", WAIT, || {
        datapath_config(pins).reasons == both
    });
    drop(b);
    wait_for("the mask to shrink to the client left", WAIT, || {
        datapath_config(pins).reasons == mask(&one)
    });
    drop(a);
    wait_for("the mask to go back to nothing", WAIT, || {
        datapath_config(pins).reasons == 0
    });
}

/// Filters match the tuple after translation too: the first packet of a published
/// port's flow (host port 8039 to the container's 8038) passes `--ip` of the container
/// and `--port 8038`, which only its translated tuple holds; a container's masqueraded
/// datagram passes `--ip` of the host's address, which only its SNAT'd tuple holds.
#[test]
fn filters_match_the_translated_tuple() {
    if !require_root() {
        return;
    }
    let t = Topology::new("monxl");
    let _d = t.start_daemon();
    let sock = &t.files.socket;
    let _e = EchoServer::start(&t.container, 8038);
    cli_ok(sock, &["publish", "8039:172.17.0.4:8038"]);
    let container = CONTAINER_IP.to_string();
    let host = HOST_IP.to_string();
    let (container_ip, host_ip) = (IpAddr::from(CONTAINER_IP), IpAddr::from(HOST_IP));
    let by_ip = Monitor::start(sock, &["--reason", "dnat-new", "--ip", &container]);
    let by_port = Monitor::start(sock, &["--reason", "dnat-new", "--port", "8038"]);
    let snat = Monitor::start(sock, &["--reason", "snat-new", "--ip", &host]);
    let elsewhere = Monitor::start(sock, &["--reason", "dnat-new", "--port", "8040"]);
    let mut conns = Vec::new();
    let mut connect = || {
        conns.push(tcp_connect(&t.client, Topology::host_addr(8039)).expect("connect"));
    };
    for (name, mon) in [("--ip", &by_ip), ("--port", &by_port)] {
        let e = mon
            .await_event(WAIT, &mut connect, |e| e.reason == Reason::DnatNew)
            .unwrap_or_else(|| panic!("{name} passes the translated tuple"));
        let (b, a) = (before(&e), after(&e));
        assert_eq!(
            (b.dst, b.dport),
            (host_ip, Some(8039)),
            "before DNAT, neither the container's address nor its port: {e:?}"
        );
        assert_ne!(b.src, container_ip);
        assert_ne!(b.sport, Some(8038));
        assert_eq!(
            (a.dst, a.dport),
            (container_ip, Some(8038)),
            "after DNAT: {e:?}"
        );
    }
    let stray = events(elsewhere.collect(Duration::from_millis(300)));
    assert!(
        stray.is_empty(),
        "a port no tuple holds passes nothing: {stray:?}"
    );
    let out = || {
        t.container.run(|| {
            let s = UdpSocket::bind("0.0.0.0:0").expect("bind");
            s.send_to(b"out", SocketAddr::from((SERVER_IP, 9)))
                .expect("send out");
        });
    };
    let e = snat
        .await_event(WAIT, out, |e| e.reason == Reason::SnatNew)
        .expect("--ip of the host passes the masqueraded tuple");
    let (b, a) = (before(&e), after(&e));
    assert_eq!(b.src, container_ip, "before SNAT: {e:?}");
    assert_eq!(b.dst, SERVER_IP);
    assert_eq!(a.src, host_ip, "after SNAT: {e:?}");
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
