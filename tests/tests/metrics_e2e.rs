//! Operability end to end: the daemon's Prometheus endpoint (`--metrics`) counts real
//! flows, drops by reason and interface, the flow tables' fill and the programs' run
//! time; `bpfnet status` says what is attached, how full the maps are and what is wrong,
//! with its exit status.
use std::{
    collections::BTreeMap,
    io::{ErrorKind, Read as _, Write as _},
    net::{SocketAddr, TcpStream, UdpSocket},
    time::Duration,
};

use bpfnet_tests::{
    bpf_stats,
    daemon::{Daemon, cli, cli_ok, status, xdp_on},
    echo::{EchoServer, IO_TIMEOUT, tcp_connect, udp_roundtrip},
    netns::Netns,
    require_root,
    topo::{BRIDGE, CONTAINER_IP, Topology, UPLINK},
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
    // The flow tables are counted by the sweep, once a second here.
    let grown = ct_entries(&before) + 2.0 * FLOWS as f64;
    wait_for(
        "the sweep to count the new flows",
        Duration::from_secs(10),
        || ct_entries(&scrape(&t.host)) >= grown,
    );
    let after = scrape(&t.host);
    let grew = |series: &str| at(&after, series) - at(&before, series);

    let dnat = grew(r#"bpfnet_packets_total{reason="dnat-new",verdict="pass"}"#);
    assert!(
        dnat >= (FLOWS + UDP) as f64,
        "dnat-new counts every new flow: grew by {dnat}"
    );
    let forward = grew(r#"bpfnet_packets_total{reason="ct-forward",verdict="pass"}"#);
    assert!(
        forward >= 2.0 * FLOWS as f64,
        "ct-forward counts each connection's handshake ACK and data: grew by {forward}"
    );
    assert!(
        grew(r#"bpfnet_ct_flows_created_total{kind="dnat"}"#) >= (FLOWS + UDP) as f64,
        "flows created"
    );
    let inbound = grew(r#"bpfnet_packets_total{reason="drop-inbound",verdict="drop"}"#);
    assert!(
        inbound >= PROBES as f64,
        "every probe counted as drop-inbound: {inbound}"
    );
    let on_uplink =
        grew(r#"bpfnet_drops_by_interface_total{interface="up0",reason="drop-inbound"}"#);
    assert!(
        on_uplink >= PROBES as f64,
        "the probes' drops are counted against up0: {on_uplink}"
    );
    assert!(
        ct_entries(&after) >= ct_entries(&before) + 2.0 * FLOWS as f64,
        "two flow-table entries per open connection"
    );
    assert!(
        ct_fill(&after) > ct_fill(&before),
        "the fill ratio rose: {} then {}",
        ct_fill(&before),
        ct_fill(&after)
    );
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
        (UPLINK, "from_uplink"),
        ("vc0", "from_container"),
        ("vc1", "from_container"),
    ] {
        assert!(
            s.attached
                .contains(&(pair.0.to_string(), pair.1.to_string())),
            "{pair:?} attached: {:?}",
            s.attached
        );
    }
    let xdp = s
        .attached
        .contains(&(UPLINK.to_string(), "xdp_uplink".to_string()));
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
    assert!(
        ct.entries >= 2 * FLOWS as u64,
        "ct_v3 holds the open connections: {}",
        ct.entries
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

#[test]
fn status_warns_of_a_crowded_map_and_exits_1() {
    if !require_root() {
        return;
    }
    let t = Topology::new("crowd");
    let _d = t.start_daemon_with(&["--metrics", METRICS]);
    let sock = &t.files.socket;
    assert_eq!(status(sock).1, 0, "healthy at first");
    // 53,977 ports: 82% of published_v1's 65,536 entries (the metrics port, which the
    // socket programs would point at the container too, is below them).
    let range = "10000-63976:172.17.0.4:10000-63976";
    cli_ok(sock, &["publish", range]);
    let (s, code) = status(sock);
    assert_eq!(code, 1, "warnings exit 1: {:?}", s.warnings);
    let published = s
        .maps
        .iter()
        .find(|m| m.name == "published_v1")
        .expect("published_v1");
    assert_eq!(published.entries, 53_977);
    assert!(
        s.warnings
            .iter()
            .any(|w| w.starts_with("map published_v1 is 82% full")),
        "the crowded map is named: {:?}",
        s.warnings
    );
    let text = cli(sock, &["status"]);
    assert_eq!(text.status.code(), Some(1), "the text form exits 1 too");
    assert!(String::from_utf8_lossy(&text.stdout).contains("published_v1 is 82% full"));
    let m = scrape(&t.host);
    assert_eq!(at(&m, "bpfnet_warnings"), 1.0);
    assert_eq!(
        at(&m, r#"bpfnet_map_entries{map="published_v1"}"#),
        53_977.0
    );

    cli_ok(sock, &["unpublish", range]);
    let (s, code) = status(sock);
    assert_eq!(code, 0, "healthy again: {:?}", s.warnings);
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
        let start = std::time::Instant::now();
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
