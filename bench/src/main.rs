//! `cargo xtask bench`: the network-namespace topology of the tests, every test in each
//! mode (`wire`, `direct`, `iptables`, `bpfnet`) one after the other in one run, what
//! each datapath program costs per packet in every test, and the scaling with the number
//! of published ports. Writes results/<date>.json, report.md and plots, and exits
//! non-zero if any measurement failed or measured zero.
mod against_floor;
mod cost;
mod crosshost;
mod crowd;
mod ctscale;
mod early_drop;
mod floor;
mod iperf;
mod load;
mod modes;
mod observe;
mod pin;
mod report;
mod verifier;

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use bpfnet_tests::{daemon::cli_ok, topo::Topology};
use clap::Parser;
use modes::{ECHO, Family, IPERF, Mode};
use pin::Pin;
use report::{Report, Row, ScaleRow};

#[derive(Parser)]
struct Args {
    /// Tiny durations and one repetition: checks the machinery, measures nothing.
    #[arg(long)]
    quick: bool,
    /// Where report.md, results/ and plots/ go.
    #[arg(long, default_value = "bench")]
    out: PathBuf,
    /// Measure nothing: check that a results JSON has every test and mode measured,
    /// no failure and no value zero or NaN.
    #[arg(long, value_name = "RESULTS_JSON")]
    check: Option<PathBuf>,
    /// Where the client and the server of single-flow tests run.
    #[arg(long, value_enum, default_value = "same")]
    pin: Pin,
    /// Only the per-program cost pass and the floor beside it, printed (for profiling the
    /// datapath).
    #[arg(long)]
    cost_only: bool,
    /// Only the rows across hosts, printed.
    #[arg(long, conflicts_with = "cost_only")]
    cross_host_only: bool,
    /// Only the observability rows (nothing watching, a monitor, datapath logs), printed.
    #[arg(long, conflicts_with_all = ["cost_only", "cross_host_only"])]
    observe_only: bool,
    /// Only each program's verification (instructions, load time): printed, and its
    /// section of OUT/report.md replaced.
    #[arg(long, conflicts_with_all = ["cost_only", "cross_host_only", "observe_only"])]
    verifier_only: bool,
    /// Only the tests whose name contains this (with `--cost-only`: profile one path).
    #[arg(long, requires = "cost_only")]
    only: Option<String>,
}

const SERVER_IPERF: u16 = 5202;
const SERVER_ECHO: u16 = 9100;

struct Plan {
    reps: usize,
    secs: f64,
    scale: Vec<usize>,
    /// Flows live in the CT table and endpoints registered, for the scale rows.
    ct_flows: Vec<(usize, usize)>,
    /// Datagrams in each early-drop burst.
    drop_probes: u64,
}

/// The median; a failed (NaN) or zero round is never outvoted by the others.
fn median(mut v: Vec<f64>) -> f64 {
    if let Some(bad) = v.iter().find(|x| !report::measured(**x)) {
        return *bad;
    }
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// `r`'s value, or `failed` with the error printed and kept for the report.
fn or_failed<T>(r: Result<T>, what: &str, failed: T, failures: &mut Vec<String>) -> T {
    r.unwrap_or_else(|e| {
        let failure = format!("{what}: {e:#}");
        eprintln!("[bench]   FAILED {failure}");
        failures.push(failure);
        failed
    })
}

/// One measurement per mode: a value per metric.
type Measure<'a> = Box<dyn Fn(&Topology, Mode) -> Result<Vec<f64>> + 'a>;
/// A metric: test name, unit, whether higher is better.
type Metric = (String, &'static str, bool);

/// Every test over family `f`: (test, unit, higher is better) per metric of each measure.
fn measures(f: Family, plan: &Plan, pin: Pin) -> Vec<(Vec<Metric>, Measure<'static>)> {
    let (secs, dur) = (plan.secs, Duration::from_secs_f64(plan.secs));
    let metrics = |m: &[(&str, &'static str, bool)]| -> Vec<Metric> {
        m.iter()
            .map(|&(name, unit, higher)| (format!("{name}{}", f.suffix()), unit, higher))
            .collect()
    };
    vec![
        (
            metrics(&[("TCP stream client→container", "Gbit/s", true)]),
            Box::new(move |t, m| {
                iperf::stream(&t.client, m.target(f, IPERF), secs, false, pin).map(|g| vec![g])
            }),
        ),
        (
            metrics(&[("TCP stream container→client", "Gbit/s", true)]),
            Box::new(move |t, m| {
                iperf::stream(&t.client, m.target(f, IPERF), secs, true, pin).map(|g| vec![g])
            }),
        ),
        (
            metrics(&[
                ("TCP request/response", "trans/s", true),
                ("TCP RR p50", "µs", false),
                ("TCP RR p99", "µs", false),
            ]),
            Box::new(move |t, m| {
                load::pin_servers(pin.server());
                let r = load::tcp_rr(&t.client, m.target(f, ECHO), dur, pin.client())?;
                Ok(vec![r.per_sec, r.p50_us, r.p99_us])
            }),
        ),
        (
            metrics(&[
                ("TCP connection rate (4 clients)", "conns/s", true),
                ("TCP connect+RR p99", "µs", false),
            ]),
            Box::new(move |t, m| {
                load::pin_servers(None);
                let r = load::conn_rate(&t.client, m.target(f, ECHO), 4, dur)?;
                Ok(vec![r.per_sec, r.p99_us])
            }),
        ),
        (
            metrics(&[("UDP request/response", "trans/s", true)]),
            Box::new(move |t, m| {
                load::pin_servers(pin.server());
                load::udp_rr(&t.client, m.target(f, ECHO), dur, pin.client())
                    .map(|r| vec![r.per_sec])
            }),
        ),
        (
            metrics(&[("egress stream container→server", "Gbit/s", true)]),
            Box::new(move |t, m| {
                let to = m.server(f, SERVER_IPERF);
                iperf::stream(&t.container, to, secs, false, pin).map(|g| vec![g])
            }),
        ),
        (
            metrics(&[("egress connection rate (4 clients)", "conns/s", true)]),
            Box::new(move |t, m| {
                load::pin_servers(None);
                load::conn_rate(&t.container, m.server(f, SERVER_ECHO), 4, dur)
                    .map(|r| vec![r.per_sec])
            }),
        ),
        (
            metrics(&[("container→container stream", "Gbit/s", true)]),
            Box::new(move |t, m| {
                iperf::stream(&t.container2, m.neighbour(f, IPERF), secs, false, pin)
                    .map(|g| vec![g])
            }),
        ),
    ]
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(results) = &args.check {
        return check(results);
    }
    ensure!(bpfnet_tests::require_root(), "the bench needs root");
    let plan = if args.quick {
        Plan {
            reps: 1,
            secs: 0.3,
            scale: vec![1, 100],
            ct_flows: vec![(10_000, 100)],
            drop_probes: 5_000,
        }
    } else {
        Plan {
            reps: 3,
            secs: 5.0,
            scale: vec![1, 100, 1000, 10_000],
            ct_flows: vec![(1_000, 0), (1_000_000, 10_000)],
            drop_probes: 200_000,
        }
    };
    let dur = Duration::from_secs_f64(plan.secs);
    if args.verifier_only {
        let rows = verifier::rows()?;
        let kernel = machine().get("kernel").cloned().unwrap_or_default();
        let when = format!(
            "Measured {} on kernel {kernel} by `cargo xtask bench --verifier-only`.",
            today()
        );
        let section = verifier::markdown(&rows, Some(&when));
        eprintln!("{section}");
        let path = args.out.join("report.md");
        let old = fs::read_to_string(&path).unwrap_or_default();
        fs::write(&path, verifier::splice(&old, &section))?;
        ensure!(
            rows.iter().all(verifier::VerifierRow::within_budget),
            "a program is over its verification budget"
        );
        return Ok(());
    }
    // No test may turn the kernel's run-time statistics on under the timed rounds.
    let _bpf_stats = bpfnet_tests::bpf_stats::shared();
    if args.cross_host_only {
        let mut failures = Vec::new();
        let x = crosshost::CrossHost::new()?;
        let rows = crosshost::rows(&x, &plan, args.pin, &mut failures);
        let r = Report {
            cross_host: rows,
            ..Report::empty()
        };
        eprintln!("{}", report::cross_host_markdown(&r)?);
        ensure!(
            failures.is_empty(),
            "{} measurements failed",
            failures.len()
        );
        return Ok(());
    }
    let t = Topology::with_default_offloads("bench");
    t.add_ipv6();
    // Connection-rate runs churn through ephemeral ports: reuse TIME_WAIT ones, as a busy
    // client would, and widen the range, or 28k ports each reusable only after a second
    // would cap the load tool itself near 14k connections/s in every mode.
    for ns in [&t.client, &t.container, &t.container2] {
        // (IPv6 shares IPv4's TCP settings.)
        ns.exec(&["sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1"]);
        ns.exec(&["sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65000"]);
    }
    let _echo = [Ipv4Addr::UNSPECIFIED.into(), Ipv6Addr::UNSPECIFIED.into()]
        .map(|any| load::Servers::start(&t.container, any, ECHO));
    if args.observe_only {
        let mut failures = Vec::new();
        modes::lay_wires(&t);
        let r = Report {
            observe: observe::rows(&t, &plan, args.pin, &mut failures),
            ..Report::empty()
        };
        eprintln!("{}", report::observe_markdown(&r)?);
        ensure!(
            failures.is_empty(),
            "{} measurements failed",
            failures.len()
        );
        return Ok(());
    }

    let _srv_echo = [Ipv4Addr::UNSPECIFIED.into(), Ipv6Addr::UNSPECIFIED.into()]
        .map(|any| load::Servers::start(&t.server, any, SERVER_ECHO));
    let _iperf = iperf::Server::start(&t.container, IPERF);
    let _srv_iperf = iperf::Server::start(&t.server, SERVER_IPERF);
    modes::lay_wires(&t);
    let pin = args.pin;

    let mut tests = measures(Family::V4, &plan, pin);
    tests.extend(measures(Family::V6, &plan, pin));

    if let Some(only) = &args.only {
        tests.retain(|(names, _)| names[0].0.contains(only.as_str()));
    }
    let mut failures = Vec::new();
    if args.cost_only {
        let costs = program_costs(&t, &tests, &mut failures);
        let order = tests.iter().map(|(names, _)| names[0].0.as_str());
        eprintln!("{}", report::costs_markdown(order.clone(), &costs)?);
        eprintln!("{}", against_floor::markdown(order, &costs)?);
        ensure!(
            failures.is_empty(),
            "{} measurements failed",
            failures.len()
        );
        return Ok(());
    }
    let mut samples: Vec<BTreeMap<&str, Vec<Vec<f64>>>> =
        tests.iter().map(|_| BTreeMap::new()).collect();
    // Rounds of every mode, so drift on a shared machine hits all of them alike.
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
                let what = format!("{}: {}", mode.name(), names[0].0);
                let v = or_failed(
                    f(&t, mode),
                    &what,
                    vec![f64::NAN; names.len()],
                    &mut failures,
                );
                eprintln!("[bench]   {what} = {v:?}");
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
                test: test.clone(),
                unit: unit.to_string(),
                higher_is_better: *higher,
                values,
            });
        }
    }

    let costs = program_costs(&t, &tests, &mut failures);
    let early_drop = early_drop_rows(&t, plan.reps, plan.drop_probes, &mut failures);
    let scaling = plan
        .scale
        .iter()
        .map(|&n| scale(&t, n, dur, &mut failures))
        .collect();
    let cross_host = match crosshost::CrossHost::new() {
        Ok(x) => crosshost::rows(&x, &plan, pin, &mut failures),
        Err(e) => {
            failures.push(format!("across hosts: {e:#}"));
            Vec::new()
        }
    };
    let observe = observe::rows(&t, &plan, pin, &mut failures);
    // Last: taking down thousands of veths keeps the kernel busy for a while after.
    let ct_scale = plan
        .ct_flows
        .iter()
        .filter_map(|&(n, eps)| {
            eprintln!("[bench] at scale: {n} flows live, {eps} more endpoints");
            let row = ctscale::measure(&t, n, eps, dur, pin);
            or_failed(
                row.map(Some),
                &format!("at scale: {n} flows, {eps} endpoints"),
                None,
                &mut failures,
            )
        })
        .collect();
    let verifier = or_failed(verifier::rows(), "verification", Vec::new(), &mut failures);
    let report = Report {
        verifier,
        date: today(),
        machine: machine(),
        quick: args.quick,
        repetitions: plan.reps,
        seconds_per_run: plan.secs,
        pin: pin.name().to_string(),
        rows,
        costs,
        early_drop,
        ct_scale,
        scaling,
        cross_host,
        observe,
        failures,
    };
    report::write(&args.out, &report)?;
    let md = args.out.join("report.md");
    eprintln!("[bench] report written to {}", md.display());
    let problems = report.problems();
    for p in &problems {
        eprintln!("[bench] FAILED {p}");
    }
    ensure!(
        problems.is_empty(),
        "{} measurements failed, {} values are missing, zero or NaN (listed above and in {})",
        report.failures.len(),
        problems.len() - report.failures.len(),
        md.display()
    );
    Ok(())
}

/// `--check`: a results JSON read back has every value measured.
fn check(results: &Path) -> Result<()> {
    let json = fs::read(results).with_context(|| format!("cannot read {}", results.display()))?;
    let report: Report = serde_json::from_slice(&json)
        .with_context(|| format!("{} is not a bench results file", results.display()))?;
    let problems = report.problems();
    if !problems.is_empty() {
        bail!("{}:\n  {}", results.display(), problems.join("\n  "));
    }
    eprintln!(
        "[bench] {}: {} tests and {} scaling rows, all measured",
        results.display(),
        report.rows.len(),
        report.scaling.len()
    );
    Ok(())
}

/// Bursts of probes bpfnet drops, dropped by TC (`bpfnet`) and by XDP (`bpfnet+xdp`),
/// in interleaved rounds: the medians per mode.
fn early_drop_rows(
    t: &Topology,
    reps: usize,
    probes: u64,
    failures: &mut Vec<String>,
) -> Vec<early_drop::DropRow> {
    let modes = [Mode::Bpfnet, Mode::BpfnetXdp];
    let mut runs: BTreeMap<&str, Vec<early_drop::DropRow>> = BTreeMap::new();
    for rep in 0..reps {
        for mode in modes {
            let what = format!("early drop, round {}: {}", rep + 1, mode.name());
            eprintln!("[bench] {what}");
            let row = early_drop::measure(t, mode, probes).map(Some);
            if let Some(r) = or_failed(row, &what, None, failures) {
                eprintln!(
                    "[bench]   {:.0} ns/probe, {:.0} probes/s",
                    r.ns_per_probe, r.probes_per_s
                );
                runs.entry(mode.name()).or_default().push(r);
            }
        }
    }
    modes
        .iter()
        .filter_map(|m| {
            let rs = runs.get(m.name())?;
            let med = |f: fn(&early_drop::DropRow) -> f64| median(rs.iter().map(f).collect());
            Some(early_drop::DropRow {
                mode: m.name().to_string(),
                probes,
                dropped: med(|r| r.dropped as f64) as u64,
                ns_per_probe: med(|r| r.ns_per_probe),
                probes_per_s: med(|r| r.probes_per_s),
            })
        })
        .collect()
}

/// Each test once more in `bpfnet` mode, then once more in `direct` mode with the floor
/// attached (`floor.rs`), with the kernel's run-time statistics on: nanoseconds per run
/// of each datapath program, and of the floor, that the test's packets ran.
fn program_costs(
    t: &Topology,
    tests: &[(Vec<Metric>, Measure)],
    failures: &mut Vec<String>,
) -> BTreeMap<String, BTreeMap<String, cost::Cost>> {
    eprintln!("[bench] program costs (bpf_stats)");
    let mut out = BTreeMap::new();
    let Some(_collecting) = or_failed(cost::start().map(Some), "program costs", None, failures)
    else {
        return out;
    };
    // The programs are told by id, not by name: other bpfnet instances on the machine
    // (tests, another bench) run programs of the same names.
    let daemon = Mode::Bpfnet.setup(t);
    let ids = cost::linked(&t.files.pin_dir.join("links"));
    costs_in(t, tests, Mode::Bpfnet, ids, failures, &mut out);
    drop(daemon);
    Mode::Bpfnet.teardown(t);

    let _no_daemon = Mode::Direct.setup(t);
    let floor = floor::attach(t);
    let ids = match &floor {
        Ok(floor) => floor.ids(),
        Err(e) => Err(anyhow!("{e:#}")),
    };
    costs_in(t, tests, Mode::Direct, ids, failures, &mut out);
    drop(floor);
    Mode::Direct.teardown(t);
    out
}

/// Each test in `mode`, set up: what the programs in `ids` cost, added to each test's
/// costs in `out`.
fn costs_in(
    t: &Topology,
    tests: &[(Vec<Metric>, Measure)],
    mode: Mode,
    ids: Result<BTreeSet<u32>>,
    failures: &mut Vec<String>,
    out: &mut BTreeMap<String, BTreeMap<String, cost::Cost>>,
) {
    let what = format!("program costs: {}", mode.name());
    let Some(ids) = or_failed(ids.map(Some), &what, None, failures) else {
        return;
    };
    for (names, f) in tests {
        let what = format!("{what}: {}", names[0].0);
        let costs = cost::snapshot_of(&ids).and_then(|before| {
            f(t, mode)?;
            Ok(cost::between(&before, &cost::snapshot_of(&ids)?))
        });
        let costs = or_failed(costs, &what, BTreeMap::new(), failures);
        eprintln!("[bench]   {what} = {costs:?}");
        out.entry(names[0].0.clone()).or_default().extend(costs);
    }
}

/// N published ports before the measured one, in iptables and in bpfnet.
fn scale(t: &Topology, n: usize, dur: Duration, failures: &mut Vec<String>) -> ScaleRow {
    eprintln!("[bench] scaling: {n} published ports");
    let target = SocketAddr::from((bpfnet_tests::topo::HOST_IP, ECHO));
    t.host.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    let rules = modes::docker_rules(Family::V4, &[ECHO], n - 1);
    let start = Instant::now();
    modes::iptables_restore(t, Family::V4, &rules, false);
    let iptables_install_ms = start.elapsed().as_secs_f64() * 1e3;
    let iptables_cps = or_failed(
        load::conn_rate(&t.client, target, 4, dur).map(|r| r.per_sec),
        &format!("scaling N={n}: iptables"),
        f64::NAN,
        failures,
    );
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
    let bpfnet_cps = or_failed(
        load::conn_rate(&t.client, target, 4, dur).map(|r| r.per_sec),
        &format!("scaling N={n}: bpfnet"),
        f64::NAN,
        failures,
    );
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
