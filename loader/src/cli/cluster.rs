//! `bpfnet cluster init`: the cluster's config in etcd, written once.
use anyhow::Context as _;
use bpfnet::cluster::{self, ClusterConfig, DEFAULT_PREFIX, InitOutcome, Ipv4Net, Ipv6Net, Mode};

/// `bpfnet cluster`: the cluster's state in etcd.
#[derive(clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: ClusterCommand,
}

/// What `bpfnet cluster` does.
#[derive(clap::Subcommand)]
pub(crate) enum ClusterCommand {
    /// Write the cluster's config to etcd, once: run again with the same values, it
    /// changes nothing; with others, it refuses.
    Init(InitArgs),
}

/// `bpfnet cluster init`: the cluster config's values.
#[derive(clap::Args)]
pub(crate) struct InitArgs {
    /// etcd's client URLs (comma-separated).
    #[arg(
        long,
        value_name = "URL[,URL...]",
        value_delimiter = ',',
        required = true
    )]
    etcd: Vec<String>,
    #[command(flatten)]
    etcd_access: super::etcd_access::EtcdAccessArgs,
    /// Key prefix of the cluster in etcd.
    #[arg(long, value_name = "PREFIX", default_value = DEFAULT_PREFIX)]
    etcd_prefix: String,
    /// The network every node's subnet is carved out of, e.g. 10.244.0.0/16.
    #[arg(long, value_name = "CIDR", value_parser = cluster::net::parse)]
    cidr: Ipv4Net,
    /// Prefix length of one node's subnet, e.g. 24 (at least the CIDR's, at most 30).
    #[arg(long, value_name = "LEN", value_parser = clap::value_parser!(u8).range(1..=30))]
    node_prefix: u8,
    /// Dual stack: the IPv6 network every node's IPv6 prefix is carved out of, e.g.
    /// `fd00:10:244::/48` (a unique local one is NAT66'd to the outside, as on one host).
    #[arg(long, value_name = "CIDR", value_parser = cluster::net6::parse)]
    cidr6: Option<Ipv6Net>,
    /// Prefix length of one node's IPv6 prefix (with --cidr6; at most 120, and at most
    /// 24 bits longer than the IPv6 CIDR's).
    #[arg(long, value_name = "LEN", default_value_t = ClusterConfig::DEFAULT_NODE_PREFIX6,
          value_parser = clap::value_parser!(u8).range(1..=120))]
    node_prefix6: u8,
    /// How packets reach another node's subnet: `host-gw` (routed to its underlay
    /// address, the nodes share a link) or `vxlan` (encapsulated to it).
    #[arg(long, value_name = "MODE")]
    mode: Mode,
    /// VXLAN network identifier (1-16777215).
    #[arg(long, value_name = "N", default_value_t = ClusterConfig::DEFAULT_VNI)]
    vni: u32,
    /// Seconds a node stays listed after its last keepalive.
    #[arg(long, value_name = "SECS", default_value_t = ClusterConfig::DEFAULT_LEASE_TTL)]
    lease_ttl: u64,
    /// Seconds a gone node's subnet stays reserved for it before it returns to the pool.
    #[arg(long, value_name = "SECS", default_value_t = ClusterConfig::DEFAULT_RECLAIM_AFTER)]
    reclaim_after: u64,
}

/// Run a `bpfnet cluster` command on a runtime of its own.
pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        ClusterCommand::Init(args) => init(args),
    }
}

fn init(args: InitArgs) -> anyhow::Result<()> {
    let cfg = ClusterConfig {
        vni: args.vni,
        lease_ttl: args.lease_ttl,
        reclaim_after: args.reclaim_after,
        cidr6: args.cidr6,
        node_prefix6: args.node_prefix6,
        ..ClusterConfig::new(args.cidr, args.node_prefix, args.mode)
    };
    let access = args.etcd_access.access(args.etcd)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match rt.block_on(cluster::init(&access, &args.etcd_prefix, &cfg))? {
        InitOutcome::Created => println!("cluster config written"),
        InitOutcome::AlreadyTheSame => println!("cluster config already in place"),
    }
    Ok(())
}
