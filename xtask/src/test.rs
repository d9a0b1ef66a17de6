//! `cargo xtask test`: everything CI runs, in order from cheapest to slowest.
use std::path::Path;

use anyhow::{Result, bail};

use crate::{
    cmd::{self, is_root},
    root, setup,
};

/// Where a skipped test records itself (`bpfnet_tests::SKIPPED_LOG_ENV`; xtask does not
/// depend on the tests crate).
const SKIPPED_LOG_ENV: &str = "BPFNET_SKIPPED_LOG";

pub(crate) fn run() -> Result<()> {
    setup::ensure()?;
    let nightly = format!("+{}", crate::pins::NIGHTLY);
    cmd::run("cargo", &[&nightly, "fmt", "--all", "--", "--check"])?;
    cmd::run(
        "cargo",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    // Every test that skips itself (`bpfnet_tests::require_root`) adds a line here; the
    // count is told at the end, whatever the outcome.
    let skipped = root().join("target/test-skipped.log");
    if let Err(e) = std::fs::remove_file(&skipped)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        bail!("cannot remove {}: {e}", skipped.display());
    }
    let outcome = tests(&skipped);
    report_skipped(&skipped);
    outcome
}

/// What `cargo xtask test` prints last: how many tests skipped themselves, and which.
fn report_skipped(log: &Path) {
    let lines = std::fs::read_to_string(log).unwrap_or_default();
    let skipped: Vec<&str> = lines.lines().filter(|l| !l.trim().is_empty()).collect();
    if skipped.is_empty() {
        eprintln!("xtask: 0 tests skipped");
        return;
    }
    eprintln!(
        "xtask: {} tests SKIPPED (passed without testing anything; listed in {}):",
        skipped.len(),
        log.display()
    );
    for s in skipped {
        eprintln!("  {s}");
    }
}

/// The unit, privileged and end-to-end tests and the bench smoke, each test process
/// told where to record a skip.
fn tests(skipped: &Path) -> Result<()> {
    // Unprivileged unit tests: parsers, state, layouts.
    let mut c = cmd::command(
        "cargo",
        &[
            "test",
            "--no-fail-fast",
            "--workspace",
            "--exclude",
            "bpfnet-tests",
            "--exclude",
            "datapath-ebpf",
            "--exclude",
            "floor-ebpf",
        ],
    );
    c.env(SKIPPED_LOG_ENV, skipped);
    cmd::status(c, "cargo test --workspace (unit tests)")?;
    if !is_root() {
        bail!("the datapath and end-to-end tests need root: run `cargo xtask test` as root");
    }
    cmd::run("cargo", &["build", "--package", "bpfnet"])?;
    // The package's tests install this .deb; its release build is the bench smoke's too.
    let deb = crate::dist::run()?;
    // Namespaces, pins, daemons and dockerds of earlier runs that were killed.
    cmd::run(
        "cargo",
        &[
            "run",
            "--quiet",
            "--package",
            "bpfnet-tests",
            "--bin",
            "sweep-leftovers",
        ],
    )?;
    let bin = root().join("target/debug/bpfnet");
    let mut c = cmd::command(
        "cargo",
        &["test", "--no-fail-fast", "--package", "bpfnet-tests"],
    );
    c.env("BPFNET_BIN", &bin)
        .env("BPFNET_DEB", &deb)
        .env(SKIPPED_LOG_ENV, skipped);
    cmd::status(
        c,
        "cargo test --package bpfnet-tests (root: BPF_PROG_TEST_RUN, netns end to end)",
    )?;
    // The end-to-end tests again with every daemon running `--xdp=generic`: the early
    // drop in XDP must change no outcome.
    let mut c = cmd::command(
        "cargo",
        &[
            "test",
            "--no-fail-fast",
            "--package",
            "bpfnet-tests",
            "--test",
            "*_e2e",
        ],
    );
    c.env("BPFNET_BIN", &bin)
        .env("BPFNET_TEST_XDP", "generic")
        .env(SKIPPED_LOG_ENV, skipped);
    cmd::status(
        c,
        "cargo test --package bpfnet-tests --test '*_e2e' with BPFNET_TEST_XDP=generic",
    )?;
    bench_smoke()
}

/// The bench machinery must not rot and the datapath must carry its traffic: a --quick
/// run into a scratch directory has to succeed (it fails on any failed measurement),
/// write its report, and every test and mode in its results JSON must have a value
/// that is neither zero nor NaN (`bpfnet-bench --check` reads it back, typed).
fn bench_smoke() -> Result<()> {
    let out = std::env::temp_dir().join(format!("bpfnet-bench-smoke-{}", std::process::id()));
    let _unused: Result<_, _> = std::fs::remove_dir_all(&out);
    crate::bench(true, Some(out.clone()), &[])?;
    let report = std::fs::read_to_string(out.join("report.md"))?;
    let complete = [
        "TCP stream client→container",
        "egress connection rate",
        "| 100 |",
    ]
    .iter()
    .all(|row| report.contains(row))
        && out.join("plots/ratios.svg").exists()
        && out.join("plots/scaling.svg").exists();
    if !complete {
        bail!("bench --quick did not write a complete report:\n{report}");
    }
    let results: Vec<_> = std::fs::read_dir(out.join("results"))?
        .map(|e| e.map(|e| e.path().display().to_string()))
        .collect::<Result<_, _>>()?;
    if results.is_empty() {
        bail!("bench --quick wrote no results JSON in {}", out.display());
    }
    for json in &results {
        cmd::run(
            "cargo",
            &[
                "run",
                "--release",
                "--quiet",
                "--package",
                "bpfnet-bench",
                "--",
                "--check",
                json,
            ],
        )?;
    }
    let _unused: Result<_, _> = std::fs::remove_dir_all(&out);
    Ok(())
}
