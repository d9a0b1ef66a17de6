//! Operability end to end: the daemon's Prometheus endpoint (`--metrics`) counts real
//! flows, drops by reason and interface, the flow tables' fill and the programs' run
//! time; `bpfnet status` says what is attached, how full the maps are and what is wrong,
//! with its exit status.
use std::{
    collections::BTreeMap,
    io::{ErrorKind, Read as _, Write as _},
    net::{Ipv6Addr, SocketAddr, TcpStream, UdpSocket},
    time::{Duration, Instant},
};

use bpfnet::api::Program;
use bpfnet_tests::{
    bpf_stats,
    cluster::Cluster,
    daemon::{Daemon, cli, cli_ok, status, xdp_on},
    echo::{EchoServer, IO_TIMEOUT, WhoamiServer, tcp_connect, udp_roundtrip},
    netns::Netns,
    require_root,
    topo::{BRIDGE, CONTAINER_IP, SERVER_IP, Topology, UPLINK},
    wait_for,
};

/// Where the test daemons serve metrics: the loopback of the host's namespace.
const METRICS: &str = "127.0.0.1:9464";
/// An HTTP answer: status code and body.
struct Answer {
    code: u16,
    head: String,
    body: String,
}

/// Send `request` (a whole HTTP/1.1 request) from `ns` to the metrics address and read
/// the answer to its end (the server closes every connection).
fn http(ns: &Netns, request: String) -> Answer {
    http_within(ns, request, Duration::from_secs(15))
}

/// `http`, the answer read within `deadline`.
fn http_within(ns: &Netns, request: String, deadline: Duration) -> Answer {
    let addr: SocketAddr = METRICS.parse().expect("an address");
    let raw = ns.run(move || {
        let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("metrics connect");
        s.set_read_timeout(Some(deadline)).expect("timeout");
        s.write_all(request.as_bytes()).expect("send the request");
        let mut out = Vec::new();
        s.read_to_end(&mut out).expect("read the answer");
        String::from_utf8(out).expect("an answer in UTF-8")
    });
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("an HTTP answer has a head: {raw:?}"));
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("a status line: {head:?}"));
    Answer {
        code,
        head: head.to_string(),
        body: body.to_string(),
    }
}

fn get(ns: &Netns, path: &str) -> Answer {
    http(ns, format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n"))
}

/// A scrape: every sample by `name{labels}`. The text must be Prometheus exposition:
/// each line a HELP or TYPE comment or a sample `name{labels} value`, and each sampled
/// name described by both a HELP and a TYPE line first.
fn scrape(ns: &Netns) -> BTreeMap<String, f64> {
    let a = get(ns, "/metrics");
    assert_eq!(a.code, 200, "GET /metrics answers 200: {}", a.body);
    assert!(
        a.head.contains("Content-Type: text/plain; version=0.0.4"),
        "the Prometheus text format: {}",
        a.head
    );
    let (mut helped, mut typed) = (Vec::new(), Vec::new());
    let mut samples = BTreeMap::new();
    for line in a.body.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            helped.push(rest.split(' ').next().unwrap_or_default().to_string());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            assert!(
                ["counter", "gauge"].contains(&kind),
                "a counter or a gauge: {line}"
            );
            typed.push(name.to_string());
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("a sample line `name{{labels}} value`: {line:?}"));
        let name = series.split('{').next().unwrap_or_default();
        assert!(
            name.starts_with("bpfnet_")
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "a metric name: {line}"
        );
        if let Some(labels) = series.strip_prefix(name).filter(|l| !l.is_empty()) {
            assert!(
                labels.starts_with('{') && labels.ends_with('}'),
                "labels in braces: {line}"
            );
            let inner = labels[1..labels.len() - 1]
                .strip_suffix('"')
                .unwrap_or_else(|| panic!("a quoted last label value: {line}"));
            for pair in inner.split("\",") {
                let (k, v) = pair
                    .split_once("=\"")
                    .unwrap_or_else(|| panic!("label=\"value\": {line}"));
                assert!(!k.is_empty() && !v.contains('"'), "a label pair: {line}");
            }
        }
        assert!(
            helped.iter().any(|h| h == name) && typed.iter().any(|t| t == name),
            "{name} has HELP and TYPE lines before its samples"
        );
        let value: f64 = value
            .parse()
            .unwrap_or_else(|e| panic!("a sample value: {line}: {e}"));
        samples.insert(series.to_string(), value);
    }
    samples
}

/// Sample `series` (`name{labels}`) of a scrape, 0 when absent (a counter not yet
/// created, as Prometheus reads it).
fn at(s: &BTreeMap<String, f64>, series: &str) -> f64 {
    s.get(series).copied().unwrap_or(0.0)
}

fn ct_entries(s: &BTreeMap<String, f64>) -> f64 {
    at(s, r#"bpfnet_ct_entries{family="ipv4",table="main"}"#)
        + at(s, r#"bpfnet_ct_entries{family="ipv4",table="new"}"#)
}

fn ct_fill(s: &BTreeMap<String, f64>) -> f64 {
    at(s, r#"bpfnet_ct_fill_ratio{family="ipv4",table="main"}"#)
        + at(s, r#"bpfnet_ct_fill_ratio{family="ipv4",table="new"}"#)
}

/// The daemon's arguments for the topology, with `extra`, and Docker followed only when
/// `docker` is.
fn daemon_args(t: &Topology, docker: bool, extra: &[&str]) -> Vec<String> {
    let mut args = t.files.daemon_args();
    args.extend(["--bridge", BRIDGE, "--uplink", UPLINK].map(String::from));
    if !docker {
        args.push("--no-docker".into());
    }
    args.extend(extra.iter().map(ToString::to_string));
    args
}

#[test]
fn metrics_count_flows_drops_fill_and_program_time() {
    if !require_root() {
        return;
    }
    let _stats = bpf_stats::Enabled::enable();
    let t = Topology::new("met");
    t.host.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    // Probes routed straight at the container: the inbound policy's drop.
    t.client
        .ip(&["route", "add", "172.17.0.0/16", "via", "192.0.2.1"]);
    let _d = t.start_daemon_with(&["--metrics", METRICS, "--ct-sweep-interval", "1"]);
    let _e = EchoServer::start(&t.container, 8038);
    let sock = &t.files.socket;
    cli_ok(sock, &["publish", "8038:172.17.0.4:8038"]);
    cli_ok(sock, &["publish", "8038:172.17.0.4:8038/udp"]);

    assert_eq!(get(&t.host, "/").code, 404, "only /metrics is served");
    assert_eq!(get(&t.host, "/metrics/x").code, 404);
    let post = http(
        &t.host,
        "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n".into(),
    );
    assert_eq!(post.code, 405, "another method than GET: {}", post.body);
    assert!(post.head.contains("Allow: GET, HEAD"), "{}", post.head);
    let garbage = http(&t.host, "hello\r\n\r\n".into());
    assert_eq!(garbage.code, 400, "a malformed request line");

    let before = scrape(&t.host);
    const FLOWS: usize = 6;
    const UDP: usize = 3;
    const PROBES: usize = 4;
    let to = Topology::host_addr(8038);
    let open: Vec<TcpStream> = (0..FLOWS)
        .map(|_| {
            let mut s = tcp_connect(&t.client, to).expect("connect through DNAT");
            s.write_all(b"x").expect("send");
            let mut buf = [0u8; 6];
            s.read_exact(&mut buf).expect("the echo answers");
            assert_eq!(&buf, b"8038:x");
            s
        })
        .collect();
    for _ in 0..UDP {
        assert_eq!(
            udp_roundtrip(&t.client, to, b"u").expect("UDP through DNAT"),
            b"8038:u"
        );
    }
    t.client.run(|| {
        let s = UdpSocket::bind("0.0.0.0:0").expect("bind");
        for _ in 0..PROBES {
            s.send_to(b"probe", SocketAddr::from((CONTAINER_IP, 7001)))
                .expect("send a probe");
        }
    });
    // The flow tables are counted by the sweep, once a second here: two entries per
    // answered flow, TCP's and UDP's, and nothing else.
    let grown = ct_entries(&before) + 2.0 * (FLOWS + UDP) as f64;
    wait_for(
        "the sweep to count the new flows",
        Duration::from_secs(10),
        || ct_entries(&scrape(&t.host)) == grown,
    );
    let after = scrape(&t.host);
    let grew = |series: &str| at(&after, series) - at(&before, series);

    let dnat = grew(r#"bpfnet_packets_total{reason="dnat-new",verdict="pass"}"#);
    assert_eq!(
        dnat,
        (FLOWS + UDP) as f64,
        "dnat-new counts every new flow, once"
    );
    let forward = grew(r#"bpfnet_packets_total{reason="ct-forward",verdict="pass"}"#);
    assert!(
        forward >= 2.0 * FLOWS as f64,
        "ct-forward counts each connection's handshake ACK and data: grew by {forward}"
    );
    assert_eq!(
        grew(r#"bpfnet_ct_flows_created_total{kind="dnat"}"#),
        (FLOWS + UDP) as f64,
        "flows created"
    );
    assert_eq!(
        grew(r#"bpfnet_ct_flows_created_total{kind="snat"}"#),
        0.0,
        "none masqueraded"
    );
    let inbound = grew(r#"bpfnet_packets_total{reason="drop-inbound",verdict="drop"}"#);
    assert_eq!(
        inbound, PROBES as f64,
        "every probe counted as drop-inbound, once"
    );
    let on_uplink =
        grew(r#"bpfnet_drops_by_interface_total{interface="up0",reason="drop-inbound"}"#);
    assert_eq!(
        on_uplink, PROBES as f64,
        "the probes' drops are counted against up0"
    );
    let table = |m: &BTreeMap<String, f64>, t: &str| {
        at(
            m,
            &format!(r#"bpfnet_ct_entries{{family="ipv4",table="{t}"}}"#),
        )
    };
    assert_eq!(
        table(&after, "main") - table(&before, "main"),
        2.0 * FLOWS as f64,
        "two main-table entries per established connection"
    );
    assert_eq!(
        table(&after, "new") - table(&before, "new"),
        2.0 * UDP as f64,
        "two new-flow-table entries per one-datagram UDP exchange"
    );
    assert!(
        ct_fill(&after) > ct_fill(&before),
        "the fill ratio rose: {} then {}",
        ct_fill(&before),
        ct_fill(&after)
    );
    for t in ["main", "new"] {
        let capacity = at(
            &after,
            &format!(r#"bpfnet_ct_capacity{{family="ipv4",table="{t}"}}"#),
        );
        assert_eq!(
            at(
                &after,
                &format!(r#"bpfnet_ct_fill_ratio{{family="ipv4",table="{t}"}}"#)
            ),
            table(&after, t) / capacity,
            "the {t} table's fill is its entries over its size"
        );
    }
    assert_eq!(
        at(&after, r#"bpfnet_ct_capacity{family="ipv4",table="main"}"#),
        f64::from(common::CT_DEFAULT_ENTRIES)
    );
    assert_eq!(at(&after, "bpfnet_bpf_stats_enabled"), 1.0);
    for program in ["from_uplink", "from_container"] {
        let time = at(
            &after,
            &format!(r#"bpfnet_program_run_seconds_total{{program="{program}"}}"#),
        );
        let runs = at(
            &after,
            &format!(r#"bpfnet_program_runs_total{{program="{program}"}}"#),
        );
        assert!(
            time > 0.0 && runs > 0.0,
            "{program} ran and its time was counted: {time} s, {runs} runs"
        );
    }
    assert_eq!(
        at(&after, r#"bpfnet_publishes{source="cli"}"#),
        2.0,
        "two publishes by hand"
    );
    assert_eq!(at(&after, "bpfnet_warnings"), 0.0);
    assert!(
        !after.contains_key("bpfnet_docker_up"),
        "no Docker state without Docker"
    );

    let (s, code) = status(sock);
    assert_eq!(code, 0, "a healthy datapath exits 0: {:?}", s.warnings);
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    for pair in [
        (UPLINK, Program::FromUplink),
        ("vc0", Program::FromContainer),
        ("vc1", Program::FromContainer),
    ] {
        assert!(
            s.attached.contains(&(pair.0.to_string(), pair.1)),
            "{pair:?} attached: {:?}",
            s.attached
        );
    }
    let xdp = s
        .attached
        .contains(&(UPLINK.to_string(), Program::XdpUplink));
    assert_eq!(xdp, xdp_on(), "xdp_uplink on up0 exactly under --xdp");
    assert_eq!(s.xdp.is_some(), xdp_on());
    for name in [
        "ct_v3",
        "ct_new_v2",
        "ct6_v1",
        "ct6_new_v1",
        "snat_use_v2",
        "ct_use_v1",
        "endpoints_v1",
        "published_v1",
        "drops_v1",
    ] {
        let m = s
            .maps
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("map {name} in the status: {:?}", s.maps));
        assert!(m.max_entries > 0, "{name}'s size is known");
    }
    let ct = s.maps.iter().find(|m| m.name == "ct_v3").expect("ct_v3");
    assert_eq!(
        ct.entries as f64,
        at(&after, r#"bpfnet_ct_entries{family="ipv4",table="main"}"#),
        "ct_v3 holds the established connections, as the metrics say"
    );
    assert!(s.ct_counted_at.is_some(), "counted by the sweep");
    assert!(s.last_sweep.is_some() && s.last_sweep_at.is_some());
    assert!(!s.docker.followed);
    let text = cli(sock, &["status"]);
    assert_eq!(text.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("healthy"),
        "the text says healthy"
    );
    drop(open);
}

/// The crowded-map warning starts at 80% exactly: `published_v1` (65,536 entries) one
/// entry below it (52,428) is healthy; at it (52,429, the first count that is 80% of
/// the size or more) `status` warns and exits 1, and the metrics count the warning.
#[test]
fn status_warns_of_a_crowded_map_from_its_threshold_on_and_exits_1() {
    if !require_root() {
        return;
    }
    let t = Topology::new("crowd");
    let _d = t.start_daemon_with(&["--metrics", METRICS]);
    let sock = &t.files.socket;
    assert_eq!(status(sock).1, 0, "healthy at first");
    let size = 65_536u64;
    // 80% of 65,536 is 52,428.8: the first count at or above it.
    let first = 52_429u64;
    // One entry below: 52,428 ports (the metrics port, which the socket programs would
    // point at the container too, is below them).
    let below = format!(
        "10000-{}:172.17.0.4:10000-{}",
        10_000 + first - 2,
        10_000 + first - 2
    );
    cli_ok(sock, &["publish", &below]);
    let (s, code) = status(sock);
    let published = |s: &bpfnet::api::Status| {
        s.maps
            .iter()
            .find(|m| m.name == "published_v1")
            .expect("published_v1")
            .clone()
    };
    assert_eq!(published(&s).entries, first - 1);
    assert_eq!(u64::from(published(&s).max_entries), size);
    assert_eq!(
        code, 0,
        "just below the threshold, healthy: {:?}",
        s.warnings
    );
    assert_eq!(at(&scrape(&t.host), "bpfnet_warnings"), 0.0);
    // One more: at the threshold.
    let at_threshold = format!("{0}:172.17.0.4:{0}", 10_000 + first - 1);
    cli_ok(sock, &["publish", &at_threshold]);
    let (s, code) = status(sock);
    assert_eq!(published(&s).entries, first);
    assert_eq!(code, 1, "warnings exit 1: {:?}", s.warnings);
    assert_eq!(
        s.warnings,
        vec![format!(
            "map published_v1 is 80% full ({first} of {size} entries)"
        )],
        "the crowded map is named, and nothing else is wrong"
    );
    let text = cli(sock, &["status"]);
    assert_eq!(text.status.code(), Some(1), "the text form exits 1 too");
    assert!(String::from_utf8_lossy(&text.stdout).contains("published_v1 is 80% full"));
    let m = scrape(&t.host);
    assert_eq!(at(&m, "bpfnet_warnings"), 1.0);
    assert_eq!(
        at(&m, r#"bpfnet_map_entries{map="published_v1"}"#),
        first as f64
    );

    cli_ok(sock, &["unpublish", &at_threshold]);
    let (s, code) = status(sock);
    assert_eq!(code, 0, "below again, healthy again: {:?}", s.warnings);
    cli_ok(sock, &["unpublish", &below]);
}

/// Gauges of state the test sets up, each against its exact value: endpoints
/// registered by hand, masqueraded flows holding a port (IPv4 and IPv6), every IPv6
/// flow-table series (entries, capacity and fill of the main and new tables, with
/// answered and unanswered flows), and no cluster peers nor etcd without a cluster.
#[test]
fn metrics_gauges_count_endpoints_snat_ports_and_ipv6_flows_exactly() {
    if !require_root() {
        return;
    }
    let t = Topology::new("metx");
    t.add_ipv6();
    let _d = t.start_daemon_with(&["--metrics", METRICS, "--ct-sweep-interval", "1"]);
    let sock = &t.files.socket;
    let series = |family: &str, table: &str, name: &str| {
        format!(r#"bpfnet_{name}{{family="{family}",table="{table}"}}"#)
    };
    let first = scrape(&t.host);
    assert_eq!(at(&first, "bpfnet_endpoints"), 0.0, "none registered yet");
    assert_eq!(at(&first, "bpfnet_snat_ports_in_use"), 0.0);
    assert_eq!(at(&first, "bpfnet_cluster_peers"), 0.0, "no cluster");
    assert!(
        !first.keys().any(|k| k.starts_with("bpfnet_etcd_up")),
        "no etcd without a cluster"
    );
    for (veth, ip, ip6, ns) in [
        ("vc0", "172.17.0.4/16", "fd00:17::4/64", &t.container),
        ("vc1", "172.17.0.5/16", "fd00:17::5/64", &t.container2),
    ] {
        let mac = ns
            .mac("eth0")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":");
        cli_ok(
            sock,
            &[
                "endpoint", "add", "--bridge", BRIDGE, "--veth", veth, "--ip", ip, "--ip", ip6,
                "--mac", &mac,
            ],
        );
    }
    const SNAT4: usize = 3;
    const TCP4: usize = 2;
    const NAT66: usize = 2;
    const TCP6: usize = 3;
    const UNANSWERED6: usize = 2;
    let _w4 = WhoamiServer::start(&t.server, 9000);
    let _w6 = WhoamiServer::start6(&t.client, 9000);
    let _e4 = EchoServer::start(&t.server, 9002);
    let _e6 = EchoServer::start6(&t.client, 9002);
    // A socket that takes datagrams and never answers: its flows stay unanswered.
    let _mute = t
        .client
        .run(|| UdpSocket::bind("[2001:db8:1::2]:9001").expect("bind"));
    for _ in 0..SNAT4 {
        udp_roundtrip(&t.container, SocketAddr::from((SERVER_IP, 9000)), b"4")
            .expect("UDP through SNAT");
    }
    let lan6 = |port| SocketAddr::from((Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2), port));
    for _ in 0..NAT66 {
        udp_roundtrip(&t.container, lan6(9000), b"6").expect("UDP through NAT66");
    }
    // Connections held open: established, in the main tables.
    let open: Vec<TcpStream> = (0..TCP4)
        .map(|_| SocketAddr::from((SERVER_IP, 9002)))
        .chain((0..TCP6).map(|_| lan6(9002)))
        .map(|to| tcp_connect(&t.container, to).expect("connect out"))
        .collect();
    t.container.run(move || {
        for _ in 0..UNANSWERED6 {
            let s = UdpSocket::bind("[::]:0").expect("bind");
            s.send_to(b"n", lan6(9001)).expect("send");
        }
    });
    // A one-datagram UDP exchange stays in the new-flow table, as an unanswered one.
    let expected = [
        ("ipv4", "main", 2 * TCP4),
        ("ipv4", "new", 2 * SNAT4),
        ("ipv6", "main", 2 * TCP6),
        ("ipv6", "new", 2 * (NAT66 + UNANSWERED6)),
    ];
    let counted = |m: &BTreeMap<String, f64>| {
        expected
            .iter()
            .all(|(f, t, n)| at(m, &series(f, t, "ct_entries")) == *n as f64)
    };
    // Until the sweep has counted them all, or 10 s: then each series says what it has.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !counted(&scrape(&t.host)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let m = scrape(&t.host);
    let (s, _) = status(sock);
    for (family, table, n) in expected {
        let entries = at(&m, &series(family, table, "ct_entries"));
        assert_eq!(entries, n as f64, "{family} {table} entries");
        let name = match (family, table) {
            ("ipv4", "main") => "ct_v3",
            ("ipv4", "new") => "ct_new_v2",
            ("ipv6", "main") => "ct6_v1",
            _ => "ct6_new_v1",
        };
        let size = s
            .maps
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("{name} in the status"))
            .max_entries;
        assert!(size > 0, "{name}'s size is known");
        assert_eq!(
            at(&m, &series(family, table, "ct_capacity")),
            f64::from(size),
            "{family} {table} capacity is {name}'s size"
        );
        assert_eq!(
            at(&m, &series(family, table, "ct_fill_ratio")),
            n as f64 / f64::from(size),
            "{family} {table} fill"
        );
    }
    assert_eq!(
        at(&m, "bpfnet_endpoints"),
        2.0,
        "the two registered by hand"
    );
    let masqueraded = (SNAT4 + TCP4 + NAT66 + TCP6 + UNANSWERED6) as f64;
    assert_eq!(
        at(&m, "bpfnet_snat_ports_in_use"),
        masqueraded,
        "one port per masqueraded flow, IPv4 and IPv6, answered or not"
    );
    assert_eq!(
        at(&m, r#"bpfnet_ct_flows_created_total{kind="snat"}"#),
        masqueraded
    );
    assert_eq!(at(&m, "bpfnet_cluster_peers"), 0.0);
    drop(open);
}

#[test]
fn status_and_metrics_say_when_docker_is_unreachable() {
    if !require_root() {
        return;
    }
    let t = Topology::new("dkdown");
    let args = daemon_args(&t, true, &["--metrics", METRICS]);
    let nowhere = format!(
        "unix://{}",
        t.files.state_dir.join("no-docker.sock").display()
    );
    let _d = Daemon::start_env(
        &t.host.path(),
        &t.files.socket,
        &args,
        &[("DOCKER_HOST", nowhere.as_str())],
    );
    let sock = &t.files.socket;
    wait_for(
        "the daemon to find Docker unreachable",
        Duration::from_secs(10),
        || status(sock).0.docker.connected == Some(false),
    );
    let (s, code) = status(sock);
    assert!(s.docker.followed);
    assert!(s.docker.error.is_some(), "why Docker is unreachable");
    assert_eq!(code, 1, "an unreachable Docker is a warning");
    assert!(
        s.warnings
            .iter()
            .any(|w| w.starts_with("Docker is not reachable")),
        "{:?}",
        s.warnings
    );
    assert_eq!(at(&scrape(&t.host), "bpfnet_docker_up"), 0.0);
}

#[test]
fn a_taken_metrics_port_or_a_bad_address_is_a_daemon_error() {
    if !require_root() {
        return;
    }
    let t = Topology::new("mbind");
    let taken = t
        .host
        .run(|| std::net::TcpListener::bind(METRICS).expect("hold the port"));
    let (status, err) = t.daemon_exit(&["--metrics", METRICS], &[]);
    assert_eq!(status.code(), Some(2), "exit 2: {err}");
    assert!(
        err.contains(&format!("cannot serve metrics on {METRICS}")),
        "says why: {err}"
    );
    assert!(
        !t.files.pin_dir.join("links").exists(),
        "nothing was attached before the bind failed"
    );
    drop(taken);

    let bad = cli(&t.files.socket, &["daemon", "--metrics", "localhost"]);
    assert_eq!(bad.status.code(), Some(2), "a bad --metrics is refused");
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("--metrics"), "names the flag: {err}");
    let refused = tcp_connect(&t.host, METRICS.parse().expect("an address"));
    assert_eq!(
        refused.map(|_| ()).map_err(|e| e.kind()),
        Err(ErrorKind::ConnectionRefused),
        "nothing listens after the failed start"
    );
}

/// Clients that connect and send nothing, or a header byte a second, cannot keep a
/// scrape from being answered, and the server closes them once their head's deadline
/// passes. Control: they were all connected (the server's side of each is established)
/// and the endpoint answered before them.
#[test]
fn idle_and_slow_clients_leave_scrapes_answering() {
    const IDLE: usize = 64;
    const SLOW: usize = 16;
    if !require_root() {
        return;
    }
    let t = Topology::new("mslow");
    let _d = t.start_daemon_with(&["--metrics", METRICS]);
    scrape(&t.host);
    let addr: SocketAddr = METRICS.parse().expect("an address");
    let (idle, slow) = t.host.run(move || {
        let open = |n| {
            (0..n)
                .map(|_| TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect"))
                .collect::<Vec<_>>()
        };
        (open(IDLE), open(SLOW))
    });
    let established = t
        .host
        .output(&["ss", "-Htn", "state", "established", "( sport = :9464 )"]);
    let held = established.lines().count();
    assert!(
        held >= IDLE + SLOW,
        "control: the server holds every client's connection: {held}"
    );
    // A header byte a second on each slow client, until the server closes it.
    let slowloris = std::thread::spawn(move || {
        let head =
            b"GET /metrics HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        let mut cut = vec![None; SLOW];
        let start = Instant::now();
        for byte in head.iter().cycle() {
            for (i, mut s) in slow.iter().enumerate() {
                if cut[i].is_none() && s.write_all(&[*byte]).is_err() {
                    cut[i] = Some(start.elapsed());
                }
            }
            if cut.iter().all(Option::is_some) || start.elapsed() > Duration::from_secs(30) {
                return cut;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        cut
    });
    std::thread::sleep(Duration::from_secs(2));
    let a = http_within(
        &t.host,
        "GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n".into(),
        Duration::from_secs(5),
    );
    assert_eq!(a.code, 200, "a scrape answers beside idle and slow clients");
    for (i, mut s) in idle.into_iter().enumerate() {
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let mut buf = [0u8; 64];
        match s.read(&mut buf) {
            Ok(0) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            other => panic!("idle client {i}: closed by the server, not {other:?}"),
        }
    }
    let cut = slowloris.join().expect("the slow clients' thread");
    assert!(
        cut.iter().all(Option::is_some),
        "every slow client closed by the server: {cut:?}"
    );
}

/// A cluster of three nodes joined through etcd: each daemon's metrics count its two
/// peers, and say etcd answers for its network (one `bpfnet_etcd_up` series, 1); with
/// etcd stopped they say it does not (0) and keep the peers they knew; etcd back, 1
/// again. (Without a cluster: no peers, no series, in
/// `metrics_gauges_count_endpoints_snat_ports_and_ipv6_flows_exactly`.)
#[test]
fn cluster_metrics_count_peers_and_say_whether_etcd_answers() {
    if !require_root() {
        return;
    }
    let mut c = Cluster::new("metcl", 3);
    let (_etcd_ns, mut etcd) = c.add_etcd(&[
        "--cidr",
        "10.244.0.0/16",
        "--node-prefix",
        "24",
        "--mode",
        "host-gw",
        "--lease-ttl",
        "3",
    ]);
    let url = etcd.url();
    let _daemons: Vec<Daemon> = c
        .hosts
        .iter()
        .map(|h| h.join(&url, &["--metrics", METRICS]))
        .collect();
    for h in &c.hosts {
        h.await_peers(2);
    }
    let etcd_up = |m: &BTreeMap<String, f64>| -> Vec<f64> {
        m.iter()
            .filter(|(k, _)| k.starts_with("bpfnet_etcd_up{"))
            .map(|(_, v)| *v)
            .collect()
    };
    for h in &c.hosts {
        let m = scrape(&h.ns);
        assert_eq!(
            at(&m, "bpfnet_cluster_peers"),
            2.0,
            "{}: two peers",
            h.ns.name
        );
        assert_eq!(etcd_up(&m), vec![1.0], "{}: etcd answers", h.ns.name);
    }
    etcd.stop();
    let h1 = &c.hosts[0];
    let deadline = Instant::now() + Duration::from_secs(20);
    while etcd_up(&scrape(&h1.ns)) != vec![0.0] && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let m = scrape(&h1.ns);
    assert_eq!(etcd_up(&m), vec![0.0], "etcd down: it does not answer");
    assert_eq!(
        at(&m, "bpfnet_cluster_peers"),
        2.0,
        "the peers it knew are kept"
    );
    etcd.restart();
    wait_for("etcd to answer again", Duration::from_secs(20), || {
        etcd_up(&scrape(&h1.ns)) == vec![1.0]
    });
}
