//! `bpfnet status [--json]`: whether the datapath is healthy, on one screen.
use std::{
    collections::BTreeMap,
    path::Path,
    process::ExitCode,
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::bail;
use bpfnet::api::{DockerStatus, Request, Response, Status, client};

/// Exit code of a daemon that answers with warnings (2 is every error's, as elsewhere).
const EXIT_WARNINGS: u8 = 1;

#[derive(clap::Args)]
#[command(
    after_help = "Exit status: 0 healthy, 1 the daemon reports warnings (listed), \
                        2 no answer from the daemon or another error."
)]
pub(crate) struct Args {
    /// Print JSON for scripts instead of text.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: Args, socket: &Path) -> anyhow::Result<ExitCode> {
    let Response::Status(s) = client::call(socket, &Request::Status)? else {
        bail!("the daemon answered `status` with something else than a status");
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        print(&s);
    }
    Ok(if s.healthy() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_WARNINGS)
    })
}

/// How long ago Unix time `t` was, for a reader.
fn ago(t: u64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let s = now.saturating_sub(t);
    match s {
        0..120 => format!("{s} s ago"),
        120..7200 => format!("{} min ago", s / 60),
        _ => format!("{} h ago", s / 3600),
    }
}

fn docker_line(d: &DockerStatus) -> String {
    if !d.followed {
        return "not followed (--no-docker)".into();
    }
    let mut line = match (d.connected, &d.error) {
        (None, _) => "connecting".to_string(),
        (Some(true), _) => "connected".to_string(),
        (Some(false), Some(e)) => format!("unreachable ({e})"),
        (Some(false), None) => "unreachable".to_string(),
    };
    if let Some(t) = d.last_contact {
        line += &format!(", last answer {}", ago(t));
    }
    if let Some(t) = d.last_resync {
        line += &format!(", containers reconciled {}", ago(t));
    }
    line
}

fn print(s: &Status) {
    match s.warnings.len() {
        0 => println!("datapath:   healthy"),
        1 => println!("datapath:   1 warning"),
        n => println!("datapath:   {n} warnings"),
    }
    println!(
        "xdp:        {}",
        s.xdp.map_or("off".into(), |m| m.to_string())
    );
    println!("docker:     {}", docker_line(&s.docker));
    match (s.last_sweep_at, s.last_sweep) {
        (Some(at), Some(w)) => println!(
            "last sweep: {}: {} entries read, {} removed, {:.1} ms",
            ago(at),
            w.entries,
            w.removed,
            w.micros as f64 / 1e3
        ),
        _ => println!("last sweep: not yet"),
    }
    if !s.sweep_in_kernel {
        println!("sweep:      from userspace (the kernel refused ct_sweep)");
    }
    if !s.monitor_events {
        println!("monitor:    no events (the packet programs load only without them)");
    }
    let mut by_iface: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (iface, program) in &s.attached {
        by_iface.entry(iface).or_default().push(program.name());
    }
    println!("\n{:<16} PROGRAMS", "INTERFACE");
    for (iface, programs) in &by_iface {
        println!("{iface:<16} {}", programs.join(", "));
    }
    if !s.programs.is_empty() {
        println!(
            "\n{:<20} {:>14} {:>10}",
            "PROGRAM", "VERIFIED INSNS", "LOAD"
        );
        for p in &s.programs {
            let insns = p.verified_insns.map_or("?".into(), |n| n.to_string());
            println!(
                "{:<20} {insns:>14} {:>7.1} ms",
                p.name,
                p.load_micros as f64 / 1e3
            );
        }
    }
    let counted = match s.ct_counted_at {
        Some(t) => format!("flow tables counted by the sweep {}", ago(t)),
        None => "flow tables counted now".to_string(),
    };
    println!(
        "\n{:<16} {:>10} {:>10} {:>6}   ({counted})",
        "MAP", "ENTRIES", "MAX", "FILL"
    );
    for m in &s.maps {
        println!(
            "{:<16} {:>10} {:>10} {:>5.1}%",
            m.name,
            m.entries,
            m.max_entries,
            m.ratio() * 100.0
        );
    }
    if !s.warnings.is_empty() {
        println!("\nwarnings:");
        for w in &s.warnings {
            println!("  - {w}");
        }
    }
}
