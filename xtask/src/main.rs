//! `cargo xtask setup|build|run|test|bench|dist`: the project's commands.
mod cmd;
mod dist;
mod pins;
mod setup;
mod test;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "bpfnet's build, run and test commands")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install every prerequisite (idempotent): the pinned nightly with rust-src, LLVM,
    /// bpf-linker and cargo-deb (replaced when what is installed differs from its pin),
    /// test tools, bpffs.
    Setup {
        /// Only compare what is installed with the pins, and fail when one differs.
        #[arg(long)]
        check: bool,
    },
    /// Build the `bpfnet` binary (release) with the datapath embedded.
    Build,
    /// Build and run `bpfnet daemon` (as root); extra arguments go to the daemon.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Formatting, lints, unit tests and the privileged datapath and end-to-end tests.
    Test,
    /// The Debian package (release build, systemd unit, completions, man pages):
    /// target/debian/bpfnet_<version>-1_<arch>.deb.
    Dist,
    /// Measure bpfnet against Docker's iptables datapath and the no-NAT limit (root);
    /// writes bench/report.md, bench/results/<date>.json and bench/plots/.
    Bench {
        /// Tiny durations, one repetition: checks the machinery only.
        #[arg(long)]
        quick: bool,
        /// Output directory (default: the workspace's bench/).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Where single-flow tests' client and server run: same, split or none.
        #[arg(long, default_value = "same")]
        pin: String,
        /// Only measure what each datapath program costs per packet, and against the
        /// floor (`bench/floor-ebpf`), and print it.
        #[arg(long)]
        cost_only: bool,
        /// Only each program's verification (instructions, load time), its section of
        /// the report replaced.
        #[arg(long, conflicts_with = "cost_only")]
        verifier_only: bool,
        /// Only the "Across hosts" section, printed (not written to the report).
        #[arg(long, conflicts_with_all = ["cost_only", "verifier_only"])]
        cross_host_only: bool,
        /// With --cost-only: only the tests whose name contains this.
        #[arg(long, requires = "cost_only")]
        only: Option<String>,
    },
}

/// The workspace root (xtask lives one level below it).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits inside the workspace")
        .to_path_buf()
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Setup { check: true } => setup::check(),
        Command::Setup { check: false } => setup::run(),
        Command::Build => build(),
        Command::Run { args } => {
            build()?;
            let bin = root().join("target/release/bpfnet");
            let mut full = vec!["daemon".to_string()];
            full.extend(args);
            cmd::exec(&bin, &full)
        }
        Command::Test => test::run(),
        Command::Dist => dist::run().map(drop),
        Command::Bench {
            quick,
            out,
            pin,
            cost_only,
            verifier_only,
            cross_host_only,
            only,
        } => {
            let mut extra = vec!["--pin".to_string(), pin];
            if cost_only {
                extra.push("--cost-only".into());
            }
            if verifier_only {
                extra.push("--verifier-only".into());
            }
            if cross_host_only {
                extra.push("--cross-host-only".into());
            }
            if let Some(only) = only {
                extra.extend(["--only".to_string(), only]);
            }
            bench(quick, out, &extra)
        }
    }
}

/// The bench drives the release build of bpfnet; `extra` goes to the bench.
pub fn bench(quick: bool, out: Option<PathBuf>, extra: &[String]) -> Result<()> {
    build()?;
    let out = out.unwrap_or_else(|| root().join("bench"));
    let out = out.display().to_string();
    let mut args = vec![
        "run",
        "--release",
        "--package",
        "bpfnet-bench",
        "--",
        "--out",
        &out,
    ];
    if quick {
        args.push("--quick");
    }
    args.extend(extra.iter().map(String::as_str));
    let mut c = cmd::command("cargo", &args);
    c.env("BPFNET_BIN", root().join("target/release/bpfnet"));
    cmd::status(c, &format!("bench{}", if quick { " --quick" } else { "" }))
}

fn build() -> Result<()> {
    setup::ensure()?;
    cmd::run("cargo", &["build", "--release", "--package", "bpfnet"])
}
