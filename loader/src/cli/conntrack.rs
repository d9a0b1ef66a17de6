//! `bpfnet conntrack [--json]` and `bpfnet conntrack flush`.
use std::path::Path;

use anyhow::bail;
use bpfnet::api::{Request, Response, client};

#[derive(clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    action: Option<Action>,
    /// Print JSON for scripts instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Forget every tracked flow (established connections through NAT break).
    Flush,
}

pub(crate) fn run(args: Args, socket: &Path) -> anyhow::Result<()> {
    if let Some(Action::Flush) = args.action {
        client::call(socket, &Request::ConntrackFlush)?;
        return Ok(());
    }
    let Response::Conntrack { flows } = client::call(socket, &Request::Conntrack)? else {
        bail!("the daemon answered `conntrack` with something else than flows");
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&flows)?);
        return Ok(());
    }
    println!(
        "{:<5} {:<46} {:<46} {:<9} {:<12} {:>8} {:>10} {:>10}",
        "PROTO", "ORIGINAL", "TRANSLATED", "NAT", "STATE", "EXPIRES", "PKTS", "REPLY PKTS"
    );
    for f in &flows {
        println!(
            "{:<5} {:<46} {:<46} {:<9} {:<12} {:>7}s {:>10} {:>10}",
            f.proto,
            f.original.to_string(),
            f.translated.to_string(),
            f.nat,
            f.state,
            f.expires_in_s,
            f.packets,
            f.reply_packets
        );
    }
    Ok(())
}
