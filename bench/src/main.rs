//! `cargo xtask bench`: the network-namespace topology of the tests, every test in each
//! mode (`direct`, `iptables`, `bpfnet`) one after the other in one run, and the scaling
//! with the number of published ports. Writes results/<date>.json, report.md and plots.
mod iperf;
mod load;
mod modes;
mod report;

use std::{
    collections::BTreeMap,
    fs,
    net::SocketAddr,
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Result, ensure};
use bpfnet_tests::{daemon::cli_ok, topo::Topology};
use clap::Parser;
use modes::{ECHO, IPERF, Mode};
use report::{Report, Row, ScaleRow};

#[derive(Parser)]
struct Args {
    /// Tiny durations and one repetition: checks the machinery, measures nothing.
    #[arg(long)]
    quick: bool,
    /// Where report.md, results/ and plots/ go.
    #[arg(long, default_value = "bench")]
    out: PathBuf,
}

const SERVER_IPERF: u16 = 5202;
const SERVER_ECHO: u16 = 9100;

struct Plan {
    reps: usize,
    secs: f64,
    scale: Vec<usize>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// One measurement per mode: a value per metric.
type Measure<'a> = Box<dyn Fn(&Topology, Mode) -> Vec<f64> + 'a>;
/// A metric: test name, unit, whether higher is better.
type Metric = (&'static str, &'static str, bool);

fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(bpfnet_tests::require_root(), "the bench needs root");
    let plan = if args.quick {
        Plan {
            reps: 1,
            secs: 0.3,
            scale: vec![1, 100],
        }
    } else {
        Plan {
            reps: 3,
            secs: 5.0,
            scale: vec![1, 100, 1000, 10_000],
        }
    };
    let dur = Duration::from_secs_f64(plan.secs);
    let t = Topology::with_default_offloads("bench");
    // Connection-rate runs churn through ephemeral ports: reuse TIME_WAIT ones, as a busy
    // client would, and widen the range, or 28k ports each reusable only after a second
    // would cap the load tool itself near 14k connections/s in every mode.
    for ns in [&t.client, &t.container, &t.container2] {
        ns.exec(&["sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1"]);
        ns.exec(&["sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65000"]);
    }
    let _echo = load::Servers::start(&t.container, ECHO);
    let _srv_echo = load::Servers::start(&t.server, SERVER_ECHO);
    let _iperf = iperf::Server::start(&t.container, IPERF);
    let _srv_iperf = iperf::Server::start(&t.server, SERVER_IPERF);
    let server = |p| SocketAddr::from((bpfnet_tests::topo::SERVER_IP, p));

    // (test, unit, higher is better) per metric of each measure.
    let tests: Vec<(Vec<Metric>, Measure)> = vec![
        (
            vec![("TCP stream client→container", "Gbit/s", true)],
            Box::new(move |t, m| vec![iperf::stream(&t.client, m.target(IPERF), plan.secs, false)]),
        ),
        (
            vec![("TCP stream container→client", "Gbit/s", true)],
            Box::new(move |t, m| vec![iperf::stream(&t.client, m.target(IPERF), plan.secs, true)]),
        ),
        (
            vec![
                ("TCP request/response", "trans/s", true),
                ("TCP RR p50", "µs", false),
                ("TCP RR p99", "µs", false),
            ],
            Box::new(move |t, m| {
                let r = load::tcp_rr(&t.client, m.target(ECHO), dur);
                vec![r.per_sec, r.p50_us, r.p99_us]
            }),
        ),
        (
            vec![
                ("TCP connection rate (4 clients)", "conns/s", true),
                ("TCP connect+RR p99", "µs", false),
            ],
            Box::new(move |t, m| {
                let r = load::conn_rate(&t.client, m.target(ECHO), 4, dur);
                vec![r.per_sec, r.p99_us]
            }),
        ),
        (
            vec![("UDP request/response", "trans/s", true)],
            Box::new(move |t, m| vec![load::udp_rr(&t.client, m.target(ECHO), dur).per_sec]),
        ),
        (
            vec![("egress stream container→server", "Gbit/s", true)],
            Box::new(move |t, _| {
                vec![iperf::stream(
                    &t.container,
                    server(SERVER_IPERF),
                    plan.secs,
                    false,
                )]
            }),
        ),
        (
            vec![("egress connection rate (4 clients)", "conns/s", true)],
            Box::new(move |t, _| {
                vec![load::conn_rate(&t.container, server(SERVER_ECHO), 4, dur).per_sec]
            }),
        ),
        (
            vec![("container→container stream", "Gbit/s", true)],
            Box::new(move |t, _| {
                vec![iperf::stream(
                    &t.container2,
                    SocketAddr::from((bpfnet_tests::topo::CONTAINER_IP, IPERF)),
                    plan.secs,
                    false,
                )]
            }),
        ),
    ];

    let mut samples: Vec<BTreeMap<&str, Vec<Vec<f64>>>> =
        tests.iter().map(|_| BTreeMap::new()).collect();
    // Rounds of the three modes, so drift on a shared machine hits all of them alike.
    for rep in 0..plan.reps {
        for mode in modes::ALL {
            eprintln!(
                "[bench] round {} of {}: {}",
                rep + 1,
                plan.reps,
                mode.name()
            );
            let daemon = mode.setup(&t);
            for (i, (names, f)) in tests.iter().enumerate() {
                let v = f(&t, mode);
                eprintln!("[bench]   {}: {} = {:?}", mode.name(), names[0].0, v);
                samples[i].entry(mode.name()).or_default().push(v);
            }
            drop(daemon);
            mode.teardown(&t);
        }
    }
    let mut rows = Vec::new();
    for (i, (names, _)) in tests.iter().enumerate() {
        for (k, (test, unit, higher)) in names.iter().enumerate() {
            let values = samples[i]
                .iter()
                .map(|(m, runs)| (m.to_string(), median(runs.iter().map(|r| r[k]).collect())))
                .collect();
            rows.push(Row {
                test: test.to_string(),
                unit: unit.to_string(),
                higher_is_better: *higher,
                values,
            });
        }
    }

    let scaling = plan.scale.iter().map(|&n| scale(&t, n, dur)).collect();
    let report = Report {
        date: today(),
        machine: machine(),
        quick: args.quick,
        repetitions: plan.reps,
        seconds_per_run: plan.secs,
        rows,
        scaling,
    };
    report::write(&args.out, &report)?;
    eprintln!(
        "[bench] report written to {}",
        args.out.join("report.md").display()
    );
    Ok(())
}

/// N published ports before the measured one, in iptables and in bpfnet.
fn scale(t: &Topology, n: usize, dur: Duration) -> ScaleRow {
    eprintln!("[bench] scaling: {n} published ports");
    let target = SocketAddr::from((bpfnet_tests::topo::HOST_IP, ECHO));
    t.host.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    let rules = modes::docker_rules(&[ECHO], n - 1);
    let start = Instant::now();
    modes::iptables_restore(t, &rules, false);
    let iptables_install_ms = start.elapsed().as_secs_f64() * 1e3;
    let iptables_cps = load::conn_rate(&t.client, target, 4, dur).per_sec;
    modes::flush_iptables(t);

    let daemon = t.start_daemon();
    let start = Instant::now();
    if n > 1 {
        let last = 20000 + n - 2;
        let spec = format!("20000-{last}:172.17.200.9:20000-{last}");
        cli_ok(&t.files.socket, &["publish", &spec]);
    }
    cli_ok(&t.files.socket, &["publish", "8038:172.17.0.4:8038"]);
    let bpfnet_install_ms = start.elapsed().as_secs_f64() * 1e3;
    let bpfnet_cps = load::conn_rate(&t.client, target, 4, dur).per_sec;
    drop(daemon);
    Mode::Bpfnet.teardown(t);
    ScaleRow {
        published: n,
        iptables_install_ms,
        bpfnet_install_ms,
        iptables_conns_per_s: iptables_cps,
        bpfnet_conns_per_s: bpfnet_cps,
    }
}

fn today() -> String {
    let out = Command::new("date").args(["-u", "+%Y-%m-%d"]).output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn machine() -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let run = |c: &str, a: &[&str]| {
        Command::new(c)
            .args(a)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    m.insert("kernel".into(), run("uname", &["-r"]));
    m.insert("cpus".into(), run("nproc", &[]));
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("?")
        .trim();
    m.insert("cpu".into(), cpu.to_string());
    let virt = run("systemd-detect-virt", &[]);
    m.insert(
        "virtualization".into(),
        if virt.is_empty() {
            "unknown".into()
        } else {
            virt
        },
    );
    m
}
