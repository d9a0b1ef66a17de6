//! `bpfnet daemon`.
use std::path::PathBuf;

use anyhow::Context as _;
use bpfnet::{daemon, datapath::DEFAULT_PIN_DIR};
use tracing_subscriber::EnvFilter;

#[derive(clap::Args)]
pub struct Args {
    /// Bridge whose container veths bpfnet serves (repeatable). A missing bridge is
    /// created; docker0 gets 172.17.0.1/16.
    #[arg(long = "bridge", value_name = "NAME", default_value = "docker0")]
    bridges: Vec<String>,
    /// Interface where published ports are reached from outside (repeatable; default:
    /// the device of the default route).
    #[arg(long = "uplink", value_name = "IFACE")]
    uplinks: Vec<String>,
    /// Directory for pinned maps and links (bpffs is mounted when absent).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_PIN_DIR)]
    pin_dir: PathBuf,
    /// Directory for the persisted desired state.
    #[arg(long, value_name = "DIR", default_value = "/var/lib/bpfnet")]
    state_dir: PathBuf,
    /// Do not follow the Docker Engine API.
    #[arg(long)]
    no_docker: bool,
}

pub fn run(args: Args, socket: PathBuf) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("BPFNET_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cfg = daemon::Config {
        bridges: args.bridges,
        uplinks: args.uplinks,
        socket,
        pin_dir: args.pin_dir,
        state_dir: args.state_dir,
        follow_docker: !args.no_docker,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(daemon::run(cfg))?;
    Ok(())
}
