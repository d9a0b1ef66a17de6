//! `bpfnet ls [--json]`.
use std::path::Path;

use anyhow::bail;
use bpfnet::{
    api::{Request, Response, client},
    spec::Bracketed,
};

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Print JSON for scripts instead of a table.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: Args, socket: &Path) -> anyhow::Result<()> {
    let Response::Listing(l) = client::call(socket, &Request::List)? else {
        bail!("the daemon answered `ls` with something else than a listing");
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&l)?);
        return Ok(());
    }
    println!("PUBLISHED");
    if l.published.is_empty() {
        println!("  (none)");
    }
    for p in &l.published {
        let host = p
            .host_ip
            .map_or("*".to_string(), |ip| Bracketed(ip).to_string());
        println!(
            "  {host}:{}/{} -> {}:{}",
            p.host_ports,
            p.proto,
            Bracketed(p.container_ip),
            p.container_ports
        );
    }
    println!("ENDPOINTS");
    if l.endpoints.is_empty() {
        println!("  (none)");
    }
    for e in &l.endpoints {
        println!(
            "  {:<18} {}  {} on {}",
            e.addresses(),
            e.mac,
            e.veth,
            e.bridge
        );
    }
    println!("DOCKER");
    if l.docker.is_empty() {
        println!("  (none)");
    }
    for c in &l.docker {
        let ports: Vec<String> = c.publishes.iter().map(ToString::to_string).collect();
        let ips: Vec<String> = c
            .endpoints
            .iter()
            .map(|e| format!("{} on {}", e.addresses(), e.bridge))
            .collect();
        println!(
            "  {:<20} {:<12} {}  {}",
            c.name,
            c.id,
            ips.join(", "),
            ports.join(" ")
        );
    }
    for c in &l.conflicts {
        println!("CONFLICT  {c}");
    }
    for w in &l.warnings {
        println!("WARNING   {w}");
    }
    println!("BRIDGES   {}", l.bridges.join(" "));
    println!("UPLINKS   {}", l.uplinks.join(" "));
    println!("ATTACHED");
    for (iface, prog) in &l.attached {
        println!("  {iface:<16} {prog}");
    }
    if !l.cluster.is_empty() {
        println!("CLUSTER");
    }
    for r in &l.cluster {
        let node = r.node.map_or(String::new(), |n| format!(" via {n}"));
        println!(
            "  {:<18} {}{node} (vni {})",
            r.prefix.to_string(),
            r.kind.name(),
            r.vni
        );
    }
    Ok(())
}
