//! `cargo xtask setup|build|run|test`: the project's commands.
mod cmd;
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
    /// Install every prerequisite (idempotent): nightly rust-src, LLVM 22, bpf-linker,
    /// test tools, bpffs.
    Setup,
    /// Build the `bpfnet` binary (release) with the datapath embedded.
    Build,
    /// Build and run `bpfnet daemon` (as root); extra arguments go to the daemon.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Formatting, lints, unit tests and the privileged datapath and end-to-end tests.
    Test,
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
        Command::Setup => setup::run(),
        Command::Build => build(),
        Command::Run { args } => {
            build()?;
            let bin = root().join("target/release/bpfnet");
            let mut full = vec!["daemon".to_string()];
            full.extend(args);
            cmd::exec(&bin, &full)
        }
        Command::Test => test::run(),
    }
}

fn build() -> Result<()> {
    setup::ensure()?;
    cmd::run("cargo", &["build", "--release", "--package", "bpfnet"])
}
