//! `bpfnet stats [--json]`: verdict and drop counters by reason.
use std::path::Path;

use anyhow::bail;
use bpfnet::api::{Request, Response, client};

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Print JSON for scripts instead of a table.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: Args, socket: &Path) -> anyhow::Result<()> {
    let Response::Stats(s) = client::call(socket, &Request::Stats)? else {
        bail!("the daemon answered `stats` with something else than counters");
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    println!("{:<22} {:>14} {:>16}", "REASON", "PACKETS", "BYTES");
    for c in &s.counters {
        let name = if c.drop {
            format!("{} (drop)", c.reason.name())
        } else {
            c.reason.name().to_owned()
        };
        println!("{name:<22} {:>14} {:>16}", c.packets, c.bytes);
    }
    println!("ct entries {}   swept {}", s.ct_entries, s.ct_swept);
    if let Some(w) = s.last_sweep {
        println!(
            "last sweep: {} entries read, {} removed, {:.1} ms{}",
            w.entries,
            w.removed,
            w.micros as f64 / 1e3,
            if w.walked {
                " (with the repair walk)"
            } else {
                ""
            }
        );
    }
    Ok(())
}
