//! The `bpfnet` command: `daemon` runs the datapath; the others talk to it.
mod cli;

use std::{path::PathBuf, process::ExitCode};

use bpfnet::api::DEFAULT_SOCKET;
use clap::{Parser, Subcommand, error::ErrorKind};

#[derive(Parser)]
#[command(
    name = "bpfnet",
    version,
    about = "eBPF fast-path datapath for containers"
)]
struct Cli {
    /// Control socket of the daemon.
    #[arg(long, global = true, env = "BPFNET_SOCKET", default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load the datapath and serve the control API (run as root, next to dockerd).
    Daemon(Box<cli::daemon::Args>),
    /// Publish host ports to a container: [HOSTIP:]HOSTPORT[-END]:CONTAINERIP:CONTAINERPORT[-END][/tcp|/udp]
    /// (IPv6 in brackets: [::]:8038:[`fd00:beef::4`]:80)
    Publish(cli::publish::Args),
    /// Remove a publish made with `bpfnet publish` (same SPEC).
    Unpublish(cli::publish::Args),
    /// List published ports and the interfaces bpfnet is attached to.
    Ls(cli::ls::Args),
    /// List tracked flows (original and translated tuples, state, expiry, counters), or
    /// `flush` them.
    Conntrack(cli::conntrack::Args),
    /// Verdict and drop counters by reason.
    Stats(cli::stats::Args),
    /// Whether the datapath is healthy: programs attached, maps' fill, Docker's link,
    /// the last reconcile, warnings. Exit status 0 healthy, 1 warnings, 2 no answer.
    Status(cli::status::Args),
    /// Watch the datapath's drops and traces as they happen: reason, interface, tuple
    /// before and after translation, flow state (sampled and rate-limited in the
    /// datapath; what is left out is counted).
    Monitor(cli::monitor::Args),
    /// Register or forget a container endpoint by hand (non-Docker, pipework style).
    Endpoint(cli::endpoint::Args),
    /// A cluster of hosts in etcd: `cluster init` writes its config once.
    Cluster(cli::cluster::Args),
    /// The cluster's nodes: `node ls` lists them, their prefixes, underlay addresses,
    /// liveness and what to tell Docker.
    Node(cli::node::Args),
    /// Print the completion script for SHELL (bash, zsh, fish) on stdout.
    Completions(cli::completions::Args),
    /// Write the man pages into DIR (for packages).
    #[command(hide = true)]
    Man(cli::man::Args),
}

/// Exit code for every error: bad input, conflicts, an unreachable daemon.
const EXIT_ERROR: u8 = 2;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // A value that does not parse (a bad SPEC) gets the one-line error every other
        // failure gets; usage errors and --help keep clap's own output.
        Err(e) if e.kind() == ErrorKind::ValueValidation => {
            let msg = e.to_string();
            let line = msg.lines().next().unwrap_or_default();
            eprintln!("bpfnet: {}", line.trim_start_matches("error: "));
            return ExitCode::from(EXIT_ERROR);
        }
        Err(e) => e.exit(),
    };
    let result = match cli.command {
        Command::Daemon(args) => cli::daemon::run(*args, cli.socket),
        Command::Publish(args) => cli::publish::publish(args, &cli.socket),
        Command::Unpublish(args) => cli::publish::unpublish(args, &cli.socket),
        Command::Ls(args) => cli::ls::run(args, &cli.socket),
        Command::Conntrack(args) => cli::conntrack::run(args, &cli.socket),
        Command::Stats(args) => cli::stats::run(args, &cli.socket),
        Command::Status(args) => match cli::status::run(args, &cli.socket) {
            Ok(code) => return code,
            Err(e) => Err(e),
        },
        Command::Monitor(args) => cli::monitor::run(args, &cli.socket),
        Command::Endpoint(args) => cli::endpoint::run(args, &cli.socket),
        Command::Cluster(args) => cli::cluster::run(args),
        Command::Node(args) => cli::node::run(args, &cli.socket),
        Command::Completions(args) => {
            cli::completions::run(args, <Cli as clap::CommandFactory>::command())
        }
        Command::Man(args) => cli::man::run(args, <Cli as clap::CommandFactory>::command()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bpfnet: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}
