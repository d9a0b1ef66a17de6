//! `bpfnet daemon`.
use std::{
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, bail};
use bpfnet::{
    conntrack::Timeouts,
    daemon,
    datapath::{DEFAULT_PIN_DIR, XdpMode, log::DatapathLog, teardown::teardown},
    endpoint::Ipv4Cidr,
    flags::{EtcdNetwork, IfName, Peer, SnatPorts},
    netlink::{HostTeardown, Netlink},
};
use common::CT_DEFAULT_ENTRIES;
use tracing_subscriber::EnvFilter;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Bridge whose container veths bpfnet serves (repeatable). A missing bridge is
    /// created; docker0 gets 172.17.0.1/16.
    #[arg(long = "bridge", value_name = "NAME", default_value = "docker0")]
    bridges: Vec<IfName>,
    /// Narrow the uplinks to these interfaces (repeatable), followed by name as they
    /// come and go. Default: every Ethernet interface but the managed bridges and
    /// ports of bridges, as Docker masquerades on every interface but the container's
    /// bridge and publishes on every local address; interfaces added later included. A
    /// managed bridge's port that is no veth is its LAN wire, an uplink; a veth used as
    /// one must be named here. An uplink is never a container's port.
    #[arg(long = "uplink", value_name = "IFACE")]
    uplinks: Vec<IfName>,
    /// Directory for pinned maps and links (bpffs is mounted when absent).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_PIN_DIR)]
    pin_dir: PathBuf,
    /// Directory for the persisted desired state.
    #[arg(long, value_name = "DIR", default_value = "/var/lib/bpfnet")]
    state_dir: PathBuf,
    /// Do not follow the Docker Engine API.
    #[arg(long)]
    no_docker: bool,
    /// Seconds between two full listings of Docker's containers, besides its event
    /// stream: whatever a missed event left is healed by the next one. Also how often
    /// the datapath's maps are written again in full, repairing entries changed by hand.
    #[arg(long, value_name = "SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    docker_resync: u64,
    /// Managed bridge whose network is routed, not `NATed` (repeatable): no masquerade,
    /// and reachable from outside without a publish, like Docker's
    /// `com.docker.network.bridge.gateway_mode_ipv4=routed`.
    #[arg(long = "routed-bridge", value_name = "NAME")]
    routed_bridges: Vec<IfName>,
    /// Source ports for masqueraded egress (START-END). A flow keeps its own source port
    /// when it lies in the range and is free.
    #[arg(long, value_name = "RANGE", default_value = "1024-65535")]
    snat_ports: SnatPorts,
    /// Size of the IPv4 connection-tracking map (two entries per flow).
    #[arg(long, value_name = "N", default_value_t = CT_DEFAULT_ENTRIES,
          value_parser = clap::value_parser!(u32).range(16..=1 << 26))]
    ct_entries: u32,
    /// Size of the IPv6 connection-tracking map (two entries per flow).
    #[arg(long, value_name = "N", default_value_t = CT_DEFAULT_ENTRIES,
          value_parser = clap::value_parser!(u32).range(16..=1 << 26))]
    ct6_entries: u32,
    /// The flows one container may originate, in either family's tables, so no container
    /// can fill them for the others (`drop-ct-quota`; 0: no limit). Default: an eighth
    /// of the smaller `--ct-entries`, a quarter of the flows its main table holds. Flows
    /// from outside to a container's published ports do not count.
    #[arg(long, value_name = "N")]
    ct_per_endpoint: Option<u32>,
    /// Idle timeouts overriding the defaults, e.g. `udp=30,closed=5` (names: syn,
    /// established, closing, `time_wait`, closed, udp, icmp; seconds).
    #[arg(long, value_name = "NAME=SECS,...")]
    ct_timeouts: Option<Timeouts>,
    /// Seconds between two sweeps of expired flows.
    #[arg(long, value_name = "SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    ct_sweep_interval: u64,
    /// cgroup2 directory for the host-local socket programs (default: the root of the
    /// mounted cgroup2 hierarchy, mounted under /run/bpfnet when there is none).
    #[arg(long, value_name = "DIR")]
    cgroup: Option<PathBuf>,
    /// Do not run: remove everything bpfnet put in the kernel (every pinned link, so
    /// each program leaves its interface and cgroup; every pinned map; the pin
    /// directory; bpfnet's own cgroup2 mount) and what it made in the namespace (NDP
    /// proxy entries, the peers' neighbour entries and routes, the VXLAN device, the
    /// bridges it created that have no ports left) and exit, reporting every failure.
    /// Refused while a daemon answers on the socket. The persisted state stays, and
    /// whatever bpfnet did not make.
    #[arg(long)]
    cleanup: bool,
    /// Drop early, in XDP on every Ethernet uplink, what bpfnet would drop anyway
    /// (malformed frames, packets into a managed network that are neither a tracked flow
    /// nor a published port) and new flows from outside beyond what the new-flow table
    /// holds in a second (`drop-flood`; half of it reserved for source /24s that
    /// completed a TCP handshake, one /24 at most a quarter of the rest). MODE: `auto` (the driver's native hook where it
    /// has one, generic otherwise), `native` or `generic`.
    #[arg(long, value_name = "MODE", num_args = 0..=1, default_missing_value = "auto",
          require_equals = true)]
    xdp: Option<XdpMode>,
    /// Container prefixes of other hosts that the network routes to each host (a cloud
    /// VPC's route table): no NAT between them and the local networks inside it, and
    /// routed access from it to local containers allowed, whatever the inbound policy
    /// and the host's firewall say.
    #[arg(long, value_name = "CIDR")]
    cluster_cidr: Option<Ipv4Cidr>,
    /// A host on a shared segment whose containers' prefix is SUBNET (repeatable):
    /// their packets go straight to `UNDERLAY_IP`, untranslated (host-gw), with no
    /// kernel route.
    #[arg(long = "peer", value_name = "SUBNET=UNDERLAY_IP")]
    peers: Vec<Peer>,
    /// Join the cluster kept in these etcd endpoints (comma-separated URLs; `bpfnet
    /// cluster init` writes its config): claim a node prefix for the first `--bridge`
    /// (created if missing), announce it, and route to every other node's.
    #[arg(long, value_name = "URL[,URL...]", value_delimiter = ',')]
    etcd: Vec<String>,
    #[command(flatten)]
    etcd_access: super::etcd_access::EtcdAccessArgs,
    /// Key prefix in etcd of the cluster network of the first `--bridge`.
    #[arg(long, value_name = "PREFIX", default_value = bpfnet::cluster::DEFAULT_PREFIX,
          requires = "etcd")]
    etcd_prefix: String,
    /// Another cluster network (repeatable), written by `bpfnet cluster init
    /// --etcd-prefix PREFIX` with a VNI of its own, on BRIDGE here (created if missing,
    /// managed): isolated from the others across hosts, as two bridges are on one.
    #[arg(long = "etcd-network", value_name = "BRIDGE=PREFIX", requires = "etcd")]
    etcd_networks: Vec<EtcdNetwork>,
    /// This node's name in the cluster (default: the host name).
    #[arg(long, value_name = "NAME", requires = "etcd")]
    node_name: Option<String>,
    /// The interface whose IPv4 address the other nodes reach this one at (default:
    /// the first uplink with an IPv4 address).
    #[arg(long, value_name = "IFACE")]
    underlay: Option<IfName>,
    /// The datapath's own logs (parse failures, flow table decisions, NAT choices) at
    /// this level and above, under the log target `datapath`; also set by a
    /// `datapath=LEVEL` directive in `BPFNET_LOG`. Off by default, and then free: the
    /// verifier removes the log statements from the loaded programs.
    #[arg(long, value_name = "LEVEL")]
    datapath_log: Option<DatapathLog>,
    /// Serve Prometheus metrics at `http://ADDR:PORT/metrics` (e.g. `127.0.0.1:9443`;
    /// `[::1]:9443` for IPv6). Off by default. Unauthenticated: bind it where only the
    /// scraper reaches.
    #[arg(long, value_name = "ADDR:PORT")]
    metrics: Option<std::net::SocketAddr>,
    /// Tests only: load as if the kernel had refused this program (repeatable;
    /// `monitor-events` refuses the packet programs while they carry monitor events).
    #[arg(long, value_name = "PROGRAM", hide = true)]
    test_refuse_program: Vec<String>,
}

pub(crate) fn run(args: Args, socket: PathBuf) -> anyhow::Result<()> {
    if args.cleanup {
        return cleanup(&args.pin_dir, &socket);
    }
    let filter = std::env::var("BPFNET_LOG").unwrap_or_else(|_| "info".into());
    let datapath_log = args
        .datapath_log
        .or_else(|| DatapathLog::from_filter(&filter))
        .unwrap_or_default();
    // The flag wins over the variable's directive (the later directive for a target
    // wins).
    let filter = match args.datapath_log {
        Some(level) => format!("{filter},datapath={}", level.name()),
        None => filter,
    };
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
    // Every etcd file is read and checked before anything changes.
    let etcd_access = if args.etcd.is_empty() {
        None
    } else {
        Some(args.etcd_access.access(args.etcd.clone())?)
    };
    let first_bridge = args
        .bridges
        .first()
        .map_or_else(String::new, ToString::to_string);
    let bridges = args
        .bridges
        .iter()
        .chain(args.etcd_networks.iter().map(|n| &n.bridge))
        .map(ToString::to_string)
        .collect();
    let cfg = daemon::Config {
        bridges,
        routed_bridges: args.routed_bridges.into_iter().map(String::from).collect(),
        uplinks: args.uplinks.into_iter().map(String::from).collect(),
        socket,
        pin_dir: args.pin_dir,
        state_dir: args.state_dir,
        follow_docker: !args.no_docker,
        docker_resync: Duration::from_secs(args.docker_resync),
        snat_ports: (args.snat_ports.0.start, args.snat_ports.0.end),
        ct_entries: bpfnet::datapath::CtEntries {
            ipv4: args.ct_entries,
            ipv6: args.ct6_entries,
        },
        ct_per_endpoint: args
            .ct_per_endpoint
            .unwrap_or(args.ct_entries.min(args.ct6_entries) / 8),
        timeouts: args.ct_timeouts.unwrap_or_default(),
        sweep_interval: Duration::from_secs(args.ct_sweep_interval),
        cgroup: args.cgroup,
        xdp: args.xdp,
        cluster_cidr: args.cluster_cidr,
        peers: args.peers.iter().map(|p| (p.subnet, p.underlay)).collect(),
        etcd: etcd_access.map(|access| daemon::EtcdJoin {
            access,
            networks: std::iter::once((first_bridge, args.etcd_prefix))
                .chain(
                    args.etcd_networks
                        .into_iter()
                        .map(|n| (n.bridge.into(), n.prefix)),
                )
                .collect(),
            node_name: args.node_name.unwrap_or_else(host_name),
        }),
        underlay: args.underlay.map(String::from),
        metrics: args.metrics,
        load: bpfnet::datapath::LoadOptions {
            log: datapath_log,
            refuse: args.test_refuse_program,
        },
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(daemon::run(cfg))?;
    Ok(())
}

/// This host's name (the kernel's node name).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// What the daemon made in the namespace (`Netlink::teardown_host`).
fn teardown_host() -> anyhow::Result<HostTeardown> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async { Ok(Netlink::connect()?.teardown_host().await) })
}

/// `--cleanup`: the datapath's way out, the mirror of setup: the pins (links, then
/// maps), then what the daemon made in the namespace; every failure is reported.
fn cleanup(pin_dir: &Path, socket: &Path) -> anyhow::Result<()> {
    if UnixStream::connect(socket).is_ok() {
        bail!(
            "a bpfnet daemon answers on {}; stop it first",
            socket.display()
        );
    }
    let t = teardown(pin_dir);
    for link in &t.links {
        println!("detached {link}");
    }
    println!(
        "removed {} pinned maps and {}",
        t.maps.len(),
        pin_dir.display()
    );
    for m in &t.unmounted {
        println!("unmounted {}", m.display());
    }
    let mut errors: Vec<String> = t.errors.iter().map(ToString::to_string).collect();
    match teardown_host() {
        Ok(h) => {
            for what in &h.removed {
                println!("removed the {what}");
            }
            for bridge in &h.kept {
                println!(
                    "kept bridge {bridge}, which bpfnet created: interfaces are attached to it"
                );
            }
            errors.extend(h.errors.iter().map(ToString::to_string));
        }
        Err(e) => errors.push(format!("{e:#}")),
    }
    match std::fs::remove_file(socket) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            errors.push(format!("cannot remove `{}`: {e}", socket.display()));
        }
        _ => {}
    }
    if errors.is_empty() {
        return Ok(());
    }
    for e in &errors {
        eprintln!("bpfnet: {e}");
    }
    bail!("cleanup incomplete: {} failures", errors.len())
}
