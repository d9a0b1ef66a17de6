//! `cargo xtask test`: everything CI runs, in order from cheapest to slowest.
use anyhow::{Result, bail};

use crate::{
    cmd::{self, is_root},
    root, setup,
};

pub fn run() -> Result<()> {
    setup::ensure()?;
    cmd::run("cargo", &["+nightly", "fmt", "--all", "--", "--check"])?;
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
    // Unprivileged unit tests: parsers, state, layouts.
    cmd::run(
        "cargo",
        &[
            "test",
            "--workspace",
            "--exclude",
            "bpfnet-tests",
            "--exclude",
            "datapath-ebpf",
        ],
    )?;
    if !is_root() {
        bail!("the datapath and end-to-end tests need root: run `cargo xtask test` as root");
    }
    cmd::run("cargo", &["build", "--package", "bpfnet"])?;
    let bin = root().join("target/debug/bpfnet");
    let mut c = cmd::command("cargo", &["test", "--package", "bpfnet-tests"]);
    c.env("BPFNET_BIN", &bin);
    cmd::status(
        c,
        "cargo test --package bpfnet-tests (root: BPF_PROG_TEST_RUN, netns end to end)",
    )
}
