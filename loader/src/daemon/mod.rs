//! `bpfnet daemon`: owns the datapath, keeps it in line with the host and the desired
//! state, and answers the control API. All state lives in one task; API connections
//! hand their requests to it over a channel.
mod cluster;
mod cluster_join;
mod cluster_setup;
mod desired;
mod docker;
mod docker_nat;
mod endpoints;
mod events;
mod flows;
mod forwarding;
mod host_ips;
mod icmp_limit;
mod interfaces;
mod links;
mod ndp_proxy;
mod notify;
mod peer_neigh;
mod peer_routes;
mod peers;
mod published;
mod reconcile;
mod status;
mod subnets;
mod sweeper;

use std::{collections::BTreeMap, fs, path::PathBuf, time::Duration};

use desired::Desired;
use events::Event;
use links::{Links, Uplinks};
use tracing::{debug, info, warn};

use crate::{
    api::{Listing, Request, Response, Stats, server::ServerError},
    conntrack::Timeouts,
    datapath::{Datapath, DatapathError, XdpMode, sync::Synced},
    netlink::{Netlink, NetlinkError},
    state::StateError,
};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Datapath(#[from] DatapathError),
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
    #[error("interface `{name}` is not a bridge")]
    NotABridge { name: String },
    #[error("cannot install signal handlers: {0}")]
    Signal(std::io::Error),
    #[error("no cgroup2 hierarchy for the socket programs: {0}")]
    Cgroup(std::io::Error),
    #[error("cannot read this network namespace's cookie: {0}")]
    NetnsCookie(std::io::Error),
    #[error("cannot write the datapath configuration: {0}")]
    Config(aya::maps::MapError),
    #[error("{0}")]
    EtcdRefused(crate::cluster::ClusterError),
}

/// An IPv4 address configured on an interface: (ifindex, address, prefix length).
/// An address on an interface: (ifindex, address, prefix length).
type Prefix = (u32, std::net::IpAddr, u8);

/// What `bpfnet daemon` was told.
#[derive(Clone, Debug)]
pub struct Config {
    pub bridges: Vec<String>,
    /// Bridges whose networks are routed (no NAT, no inbound policy).
    pub routed_bridges: Vec<String>,
    /// Empty: every Ethernet interface but the managed bridges and their ports.
    pub uplinks: Vec<String>,
    pub socket: PathBuf,
    pub pin_dir: PathBuf,
    pub state_dir: PathBuf,
    pub follow_docker: bool,
    /// How often the Docker containers are listed again, healing missed events, and
    /// every part applies in full, repairing what was changed by hand.
    pub docker_resync: Duration,
    /// SNAT source ports, inclusive, host order.
    pub snat_ports: (u16, u16),
    pub ct_entries: crate::datapath::CtEntries,
    /// `--ct-per-endpoint`: the flows one container may originate (0: no limit).
    pub ct_per_endpoint: u32,
    pub timeouts: Timeouts,
    pub sweep_interval: Duration,
    /// cgroup2 directory for the socket programs (None: the mounted root).
    pub cgroup: Option<PathBuf>,
    /// `--xdp`: early drop on Ethernet uplinks, in this mode.
    pub xdp: Option<XdpMode>,
    /// `--cluster-cidr`: container prefixes the network routes to each host.
    pub cluster_cidr: Option<crate::endpoint::Ipv4Cidr>,
    /// `--peer`: static host-gw peers (their prefix, their underlay address).
    pub peers: Vec<(crate::endpoint::Ipv4Cidr, std::net::Ipv4Addr)>,
    /// `--etcd`: the cluster to join.
    pub etcd: Option<EtcdJoin>,
    /// `--underlay`: the interface other nodes reach this one at.
    pub underlay: Option<String>,
    /// `--metrics`: where to serve Prometheus metrics (`GET /metrics`); None: nowhere.
    pub metrics: Option<std::net::SocketAddr>,
    /// How the datapath loads: its own logs' level, programs refused for tests.
    pub load: crate::datapath::LoadOptions,
}

/// Where and as whom the daemon joins an etcd cluster.
#[derive(Clone, Debug)]
pub struct EtcdJoin {
    /// Its endpoints, TLS files and user, checked.
    pub access: crate::cluster::EtcdAccess,
    /// The networks: (bridge, key prefix), the first bridge's first.
    pub networks: Vec<(String, String)>,
    pub node_name: String,
}

/// The daemon: its inputs (what was asked, the cluster, what it saw of the host), the
/// parts that bring the datapath and the host in line with them at each `reconcile`, and
/// the bookkeeping between two reconciles.
struct Daemon {
    dp: Datapath,
    nl: Netlink,
    /// What was asked for (publishes, endpoints) and what Docker runs, persisted.
    desired: Desired,
    /// The cluster's prefixes, static and from etcd, and what joining it set up.
    cluster: cluster::Cluster,
    /// What the daemon saw of the host.
    host: Host,
    /// Each owns its slice of the datapath (or of the host) and what it last applied.
    parts: Parts,
    /// What events made stale since the last reconcile.
    stale: reconcile::Stale,
    /// Problems with the host a user should fix.
    warnings: Vec<String>,
}

/// The daemon's observations of the host.
struct Host {
    /// The host's interfaces and what bpfnet attached to them.
    links: Links,
    /// The host's addresses, as last read.
    prefixes: Vec<Prefix>,
    /// Names of the bridges whose networks are routed (`--routed-bridge`).
    routed_bridges: Vec<String>,
    /// Docker networks' `NET_*` flags, by bridge name.
    docker_net_flags: BTreeMap<String, u32>,
    /// Whether Docker answers, and when it last did.
    docker_link: docker::DockerLink,
}

/// The parts, in the order `reconcile` runs them (the sweeper runs on its timer).
struct Parts {
    /// Attachments, each new container veth's port, `ifaces_v1`.
    interfaces: interfaces::Interfaces,
    /// `subnets_v1`, `subnets6_v1` (with `host_ips`, from each address dump).
    subnets: subnets::Subnets,
    /// The cluster's gateway addresses and VXLAN device.
    cluster_setup: cluster_setup::ClusterSetup,
    /// `published_v1`, `published6_v1`, and the flows of withdrawn publishes.
    publishes: published::Publishes,
    /// `endpoints_v1`, `endpoints6_v1`, `ports_v2`.
    endpoints: endpoints::Endpoints,
    /// `cluster_v1`, `cluster6_v1`.
    cluster_maps: cluster::ClusterMaps,
    /// The peer nodes' neighbour entries and routes.
    peers: peers::Peers,
    /// bpfnet's NDP proxy entries on the uplinks.
    ndp_proxies: ndp_proxy::NdpProxies,
    /// The flow tables' timeouts and its sweeps' record.
    sweeper: sweeper::Sweeper,
}

/// Whether etcd lets this node in: a refusal is the daemon's error; an unreachable etcd
/// is only logged (the member keeps trying, from the persisted peers). Returns the
/// warning plain HTTP (or TLS without a client identity) deserves.
async fn check_etcd(etcd: &EtcdJoin) -> Result<Option<String>, DaemonError> {
    let prefix = etcd
        .networks
        .first()
        .map_or(crate::cluster::DEFAULT_PREFIX, |(_, p)| p.as_str());
    match crate::cluster::probe(&etcd.access, prefix).await {
        Ok(()) => {}
        Err(e) if e.is_refusal() => return Err(DaemonError::EtcdRefused(e)),
        Err(e) => {
            warn!(error = %e, "etcd not reachable at start: starting from the persisted cluster state");
        }
    }
    let weakness = etcd.access.weakness();
    if let Some(w) = &weakness {
        warn!("{w}");
    }
    Ok(weakness)
}

/// Run the daemon until SIGTERM or SIGINT. The datapath stays in place when it exits.
pub async fn run(cfg: Config) -> Result<(), DaemonError> {
    // Before anything changes: a taken port, or an etcd that refuses this node's
    // certificate or password, is the daemon's error, not a half start.
    let etcd_weakness = match &cfg.etcd {
        Some(etcd) => check_etcd(etcd).await?,
        None => None,
    };
    let metrics = match cfg.metrics {
        Some(addr) => Some(crate::metrics::bind(addr).await?),
        None => None,
    };
    forwarding::enable();
    // Subscribe before the first dump so no change falls between the two.
    let changes = crate::netlink::monitor()?;
    let mut d = Daemon::start(&cfg, etcd_weakness).await?;
    d.reconcile().await;
    let mut events = events::Events::open(&mut d, &cfg, changes, metrics).await?;
    info!(socket = %cfg.socket.display(), pin_dir = %cfg.pin_dir.display(), "bpfnet daemon ready");
    notify::ready();
    while let Some(event) = events.next().await {
        match event {
            Event::Call(req, reply) => {
                let response = d.handle(req).await;
                d.reconcile().await;
                let _unused: Result<_, _> = reply.send(response);
                continue;
            }
            Event::Netlink(change) => d.on_change(change),
            Event::Docker(update) => d.on_docker(update),
            Event::Cluster(net, event) => d.on_cluster(net, event),
            Event::Sweep => {
                let took = d.parts.sweeper.sweep(&mut d.dp);
                events.sweep_in(d.parts.sweeper.due(&d.dp, cfg.sweep_interval, took));
            }
            Event::Repair => d.forget_applied(),
        }
        d.reconcile().await;
    }
    info!("bpfnet daemon stopping; the datapath stays attached");
    notify::stopping();
    let _unused: Result<_, _> = fs::remove_file(&cfg.socket);
    Ok(())
}

impl Daemon {
    /// Load and configure the datapath, attach the socket programs and every link's
    /// program, with the persisted desired state; the parts apply it at the first
    /// reconcile.
    async fn start(cfg: &Config, warning: Option<String>) -> Result<Self, DaemonError> {
        let nl = Netlink::connect()?;
        let mut dp = Datapath::load_with(&cfg.pin_dir, cfg.ct_entries, &cfg.load)?;
        if let Some(logger) = dp.take_logger() {
            info!(level = cfg.load.log.name(), "datapath logs on");
            tokio::spawn(crate::datapath::log::forward(logger));
        }
        configure(&mut dp, cfg)?;
        let uplinks = if cfg.uplinks.is_empty() {
            Uplinks::Every
        } else {
            Uplinks::Named(cfg.uplinks.iter().cloned().collect())
        };
        let mut links = Links::new(cfg.bridges.iter().cloned(), uplinks);
        if let Some(underlay) = &cfg.underlay {
            links.add_uplink(underlay);
        }
        let mut d = Daemon {
            dp,
            nl,
            desired: Desired::load(cfg.state_dir.clone())?,
            cluster: cluster::Cluster {
                cidr: cfg.cluster_cidr,
                peers: cfg.peers.clone(),
                static_bridge: cfg.bridges.first().cloned(),
                networks: cfg
                    .etcd
                    .iter()
                    .flat_map(|e| e.networks.iter().cloned())
                    .map(|(bridge, prefix)| cluster::Network::new(bridge, prefix))
                    .collect(),
                ..Default::default()
            },
            host: Host {
                links,
                prefixes: Vec::new(),
                routed_bridges: cfg.routed_bridges.clone(),
                docker_net_flags: BTreeMap::new(),
                docker_link: docker::DockerLink::new(cfg.follow_docker),
            },
            parts: Parts {
                interfaces: interfaces::Interfaces::default(),
                subnets: subnets::Subnets::default(),
                publishes: published::Publishes::default(),
                endpoints: endpoints::Endpoints::default(),
                cluster_setup: cluster_setup::ClusterSetup::default(),
                cluster_maps: cluster::ClusterMaps::default(),
                peers: peers::Peers::default(),
                ndp_proxies: ndp_proxy::NdpProxies::default(),
                sweeper: sweeper::Sweeper::new(cfg.timeouts),
            },
            stale: reconcile::Stale::all(),
            warnings: warning.into_iter().collect(),
        };
        if cfg.follow_docker
            && let Some(w) = docker_nat::check()
        {
            warn!("{w}");
            d.warnings.push(w);
        }
        let cgroup = match &cfg.cgroup {
            Some(p) => p.clone(),
            None => crate::datapath::cgroup2_root().map_err(DaemonError::Cgroup)?,
        };
        d.dp.attach_sockets(&cgroup)?;
        // The Docker networks of the persisted state are managed from the first attach,
        // so a restart never leaves their veths without a program.
        d.adopt_docker_bridges();
        d.setup_links(&cfg.bridges).await?;
        Ok(d)
    }
    async fn handle(&mut self, req: Request) -> Response {
        let result = match req {
            Request::Publish { spec } => self.publish(spec).await,
            Request::Unpublish { spec } => self.unpublish(spec).await,
            Request::List => return Response::Listing(self.listing()),
            Request::Conntrack => {
                return Response::Conntrack {
                    flows: self.parts.sweeper.flows(&self.dp),
                };
            }
            Request::ConntrackFlush => {
                let removed = flows::flush(&mut self.dp.maps);
                info!(removed, "conntrack flushed");
                Ok(())
            }
            Request::Stats => return Response::Stats(self.stats()),
            Request::EndpointAdd {
                bridge,
                veth,
                ip,
                ip6,
                mac,
            } => self.add_endpoint(bridge, veth, ip, ip6, mac).await,
            Request::EndpointDel { ip } => self.del_endpoint(ip),
            Request::Nodes => return Response::Nodes(self.node_listing()),
            Request::Status => {
                self.recheck_docker_nat().await;
                return Response::Status(self.status());
            }
            Request::Metrics => return Response::Metrics(Box::new(self.metrics())),
            // The server hands monitor clients to the monitor's task, never here.
            Request::Monitor { .. } => {
                return Response::Error {
                    message: "a monitor stream is served by the control socket".into(),
                };
            }
        };
        result.map_or_else(Response::from, |()| Response::Ok)
    }

    fn listing(&self) -> Listing {
        Listing {
            published: self.accepted_publishes().0,
            endpoints: self.desired.endpoints.clone(),
            docker: self.docker_listing(),
            conflicts: self.parts.publishes.conflicts.clone(),
            warnings: self.warnings.clone(),
            bridges: self.host.links.bridges().map(|l| l.name.clone()).collect(),
            uplinks: self.host.links.uplinks().map(|l| l.name.clone()).collect(),
            attached: self.attached(),
            cluster: self.cluster.route_lines(),
        }
    }

    fn stats(&self) -> Stats {
        Stats {
            counters: self.stats_counters(),
            ct_entries: flows::count(&self.dp.maps),
            ct_swept: self.parts.sweeper.swept,
            last_sweep: self.parts.sweeper.last,
        }
    }
}

/// Log every error of a map sync: each is a difference between the datapath and the
/// desired state that the next sync retries.
fn report(map: &str, synced: Synced) {
    for e in &synced.errors {
        warn!(map, error = %e, "map differs from the desired state");
    }
    debug!(
        map,
        written = synced.written,
        removed = synced.removed,
        "map synced"
    );
}

/// The datapath's configuration: SNAT ports and hash key, this namespace's cookie, the
/// XDP mode, each container's share of the flow tables, the ICMP rate and the in-kernel
/// sweep's timeouts.
fn configure(dp: &mut Datapath, cfg: &Config) -> Result<(), DaemonError> {
    // The SNAT hash key survives restarts, so flows keep their port sequence.
    let hash_seed = match dp.maps.config.get(&0, 0) {
        Ok(c) if c.hash_seed != 0 => c.hash_seed,
        _ => random_seed(),
    };
    let dp_cfg = common::Config {
        snat_port_min: cfg.snat_ports.0,
        snat_port_max: cfg.snat_ports.1,
        hash_seed,
        netns_cookie: crate::netlink::netns_cookie().map_err(DaemonError::NetnsCookie)?,
    };
    dp.maps
        .config
        .set(0, dp_cfg, 0)
        .map_err(DaemonError::Config)?;
    dp.set_xdp(cfg.xdp).map_err(DaemonError::Config)?;
    dp.maps
        .ct_share
        .set(0, cfg.ct_per_endpoint, 0)
        .map_err(DaemonError::Config)?;
    dp.maps
        .icmp_limit
        .set(0, icmp_limit::read(), 0)
        .map_err(DaemonError::Config)?;
    if let Err(e) = dp.set_sweep_timeouts(common::CtTimeouts::from(&cfg.timeouts)) {
        warn!(error = %e, "the sweep will run from userspace");
    }
    Ok(())
}

/// A non-zero random u32 from the kernel.
fn random_seed() -> u32 {
    let mut b = [0u8; 4];
    let n = rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty());
    let seed = if n == Ok(4) { u32::from_ne_bytes(b) } else { 0 };
    if seed == 0 {
        // Never 0, which means "not chosen yet"; time is a poor but harmless fallback.
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.subsec_nanos() | 1)
    } else {
        seed
    }
}
