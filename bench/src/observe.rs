//! What seeing the datapath costs: the fast path with nothing watching, with a
//! `bpfnet monitor` attached (drops and traces, its default rate), and with the
//! datapath's own logs at `debug`. Same interleaved rounds; per-packet program cost from
//! the kernel's run-time statistics.
use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, Result};
use bpfnet_tests::{daemon::bin, topo::Topology};

use crate::{
    Plan, cost, load, median,
    modes::{self, ECHO, Family, Mode},
    or_failed,
    pin::Pin,
    report::Row,
};

/// The modes, as the report names them.
pub(crate) const MODES: [&str; 4] = ["off", "monitor drops", "monitor", "log debug"];

/// (test, unit, higher is better) of each value a round measures.
const TESTS: [(&str, &str, bool); 4] = [
    ("TCP connection rate (4 clients)", "conns/s", true),
    ("TCP request/response", "trans/s", true),
    ("from_uplink per packet (TCP RR)", "ns", false),
    ("from_container per packet (TCP RR)", "ns", false),
];

/// A `bpfnet monitor` printing everything it gets to nowhere.
struct Watching(Child);

impl Drop for Watching {
    fn drop(&mut self) {
        let _unused: Result<_, _> = self.0.kill();
        let _unused: Result<_, _> = self.0.wait();
    }
}

fn round(t: &Topology, mode: &str, dur: Duration, pin: Pin) -> Result<Vec<f64>> {
    let extra: &[&str] = match mode {
        "log debug" => &["--datapath-log", "debug"],
        _ => &[],
    };
    let daemon = modes::bpfnet(t, extra);
    let kinds: Option<&[&str]> = match mode {
        "monitor drops" => Some(&["--type", "drop"]),
        "monitor" => Some(&[]),
        _ => None,
    };
    let watching = match kinds {
        Some(kinds) => Some(Watching(
            Command::new(bin())
                .arg("--socket")
                .arg(&t.files.socket)
                .args(["monitor", "--json"])
                .args(kinds)
                .stdout(Stdio::null())
                .spawn()
                .context("bpfnet monitor starts")?,
        )),
        None => None,
    };
    // The monitor subscribed before anything is measured.
    std::thread::sleep(Duration::from_millis(300));
    let values = (|| {
        let target = Mode::Bpfnet.target(Family::V4, ECHO);
        let conns = load::conn_rate(&t.client, target, 4, dur)?.per_sec;
        let _stats = cost::start()?;
        let before = cost::snapshot()?;
        load::pin_servers(pin.server());
        let rr = load::tcp_rr(&t.client, target, dur, pin.client());
        load::pin_servers(None);
        let rr = rr?.per_sec;
        let costs = cost::between(&before, &cost::snapshot()?);
        let ns = |p: &str| costs.get(p).map_or(f64::NAN, |c| c.ns_per_run);
        Ok(vec![conns, rr, ns("from_uplink"), ns("from_container")])
    })();
    drop(watching);
    drop(daemon);
    Mode::Bpfnet.teardown(t);
    values
}

pub(crate) fn rows(t: &Topology, plan: &Plan, pin: Pin, failures: &mut Vec<String>) -> Vec<Row> {
    let dur = Duration::from_secs_f64(plan.secs);
    let mut samples: Vec<Vec<Vec<f64>>> = MODES.iter().map(|_| Vec::new()).collect();
    for rep in 0..plan.reps {
        for (m, mode) in MODES.iter().enumerate() {
            eprintln!(
                "[bench] observability round {} of {}: {mode}",
                rep + 1,
                plan.reps
            );
            let v = or_failed(
                round(t, mode, dur, pin),
                &format!("observability: {mode}"),
                vec![f64::NAN; TESTS.len()],
                failures,
            );
            eprintln!("[bench]   {mode} = {v:?}");
            samples[m].push(v);
        }
    }
    TESTS
        .iter()
        .enumerate()
        .map(|(k, (test, unit, higher))| Row {
            test: test.to_string(),
            unit: unit.to_string(),
            higher_is_better: *higher,
            values: MODES
                .iter()
                .zip(&samples)
                .map(|(mode, runs)| {
                    (
                        mode.to_string(),
                        median(runs.iter().map(|r| r[k]).collect()),
                    )
                })
                .collect(),
        })
        .collect()
}
