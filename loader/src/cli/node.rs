//! `bpfnet node ls [--json] [--etcd URL,...]`: the cluster's nodes, their prefixes,
//! underlay addresses, mode, liveness and when they were last seen; from the daemon,
//! or straight from etcd (every reserved prefix, gone nodes included).
use std::{
    path::Path,
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, bail};
use bpfnet::{
    api::{NetworkListing, NodeListing, Request, Response, client},
    cluster::{self, DEFAULT_PREFIX, Node},
};

#[derive(clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: NodeCommand,
}

#[derive(clap::Subcommand)]
enum NodeCommand {
    /// List the nodes.
    Ls(LsArgs),
}

#[derive(clap::Args)]
struct LsArgs {
    /// Print JSON for scripts instead of a table.
    #[arg(long)]
    json: bool,
    /// Read the nodes from these etcd endpoints instead of asking the daemon.
    #[arg(long, value_name = "URL[,URL...]", value_delimiter = ',')]
    etcd: Vec<String>,
    #[command(flatten)]
    etcd_access: super::etcd_access::EtcdAccessArgs,
    /// Key prefix of the cluster in etcd.
    #[arg(long, value_name = "PREFIX", default_value = DEFAULT_PREFIX)]
    etcd_prefix: String,
}

pub(crate) fn run(args: Args, socket: &Path) -> anyhow::Result<()> {
    let NodeCommand::Ls(args) = args.command;
    let listing = if args.etcd.is_empty() {
        let Response::Nodes(l) = client::call(socket, &Request::Nodes)? else {
            bail!("the daemon answered `node ls` with something else than nodes");
        };
        l
    } else {
        let access = args.etcd_access.access(args.etcd.clone())?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let listed = rt.block_on(cluster::nodes(&access, &args.etcd_prefix))?;
        NodeListing {
            networks: vec![NetworkListing {
                bridge: String::new(),
                prefix: args.etcd_prefix.clone(),
                this: None,
                nodes: listed.nodes,
                conflicts: listed.conflicts,
                etcd_connected: true,
            }],
            ..NodeListing::default()
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&listing)?);
        return Ok(());
    }
    print_table(&listing);
    Ok(())
}

fn print_table(l: &NodeListing) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if let Some(c) = &l.cluster_cidr {
        println!("CLUSTER {c} (routed by the network)");
    }
    if !l.static_peers.is_empty() {
        println!("STATIC PEERS (--peer, host-gw)");
        for (subnet, underlay) in &l.static_peers {
            println!("  {subnet} via {underlay}");
        }
    }
    for net in &l.networks {
        print_network(net, now);
    }
}

fn print_network(net: &NetworkListing, now: u64) {
    let etcd = if net.etcd_connected {
        "etcd reachable"
    } else {
        "etcd unreachable: keeping the last-known peers"
    };
    println!("NETWORK {} ({etcd})", net.prefix);
    if let Some(t) = &net.this {
        println!(
            "  this node: {} {} at {} ({}, vni {}), bridge {} holds {}/{}",
            t.name,
            t.subnet,
            t.underlay,
            t.mode,
            t.vni,
            net.bridge,
            t.gateway,
            t.subnet.prefix_len()
        );
        println!(
            "  Docker: a network on that bridge: docker network create -o \\
             com.docker.network.bridge.name={} --subnet {} --gateway {} NAME",
            net.bridge, t.subnet, t.gateway
        );
        println!(
            "  or, for the default network, \"bip\": \"{}/{}\" in /etc/docker/daemon.json with \
             bpfnet's --bridge docker0",
            t.gateway,
            t.subnet.prefix_len()
        );
        if let Some((s6, g6)) = t.subnet6.zip(t.gateway6) {
            println!(
                "  IPv6: {s6}, bridge {} holds {g6}/{}; Docker: add --ipv6 --subnet {s6} \
                 --gateway {g6} to the network, or \"ipv6\": true, \"fixed-cidr-v6\": \"{s6}\" \
                 in daemon.json",
                net.bridge,
                s6.prefix_len()
            );
        }
    }
    println!(
        "  {:<20} {:<18} {:<16} {:<8} {:<6} {:<14} SUBNET6",
        "NAME", "SUBNET", "UNDERLAY", "MODE", "STATE", "LAST SEEN"
    );
    for n in &net.nodes {
        println!("  {}", node_line(n, now));
    }
    if !net.conflicts.is_empty() {
        println!("  CONFLICTS (node entries not believed: no route, no tunnel admission)");
        for c in &net.conflicts {
            println!(
                "  {:<20} {:<18} {:<16} {}",
                c.name,
                c.subnet.to_string(),
                c.underlay.to_string(),
                c.reason
            );
        }
    }
}

fn node_line(n: &Node, now: u64) -> String {
    let seen = if n.last_seen == 0 {
        "-".to_string()
    } else {
        format!("{} s ago", now.saturating_sub(n.last_seen))
    };
    format!(
        "{:<20} {:<18} {:<16} {:<8} {:<6} {seen:<14} {}",
        n.name,
        n.subnet.to_string(),
        n.underlay.to_string(),
        n.mode.to_string(),
        if n.alive { "alive" } else { "gone" },
        n.subnet6.map_or_else(|| "-".to_string(), |s| s.to_string()),
    )
}
