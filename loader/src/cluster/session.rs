//! One connected stretch of a membership: join, then keep the leases alive and follow
//! the peers until something fails.
use std::{convert::Infallible, time::Duration};

use etcd_client::{
    Client, Compare, CompareOp, GetOptions, LeaseKeepAliveResponse, LeaseKeepAliveStream,
    LeaseKeeper, LeaseTimeToLiveOptions, PutOptions, Txn, TxnOp, WatchOptions, WatchRequestSender,
    WatchResponse, WatchResponseStream,
};
use futures::StreamExt as _;
use tokio::time::{Instant, Interval, MissedTickBehavior, interval, interval_at};
use tracing::{debug, info, warn};

use super::{
    ClusterConfig, ClusterError, Ipv4Net, Ipv6Net, JoinOptions, StreamProblem,
    etcd::{call, classify, connect},
    init::read_config,
    keys::{Keys, NodeRecord, SubnetRecord, now, to_json},
    outbox::{Gone, Outbox},
    peers::PeerSet,
    persist::Leases,
    pool::{claim, claim6},
};

/// How often `last_seen` is refreshed in the node's keys.
const REFRESH: Duration = Duration::from_mins(1);
/// The shortest keepalive period.
const MIN_KEEPALIVE: Duration = Duration::from_millis(200);

/// Why a session ended.
pub(crate) enum Stop {
    /// The events' receiver is gone.
    Gone,
    /// Something failed; the member tries again.
    Failed(ClusterError),
}

impl From<ClusterError> for Stop {
    fn from(e: ClusterError) -> Self {
        Self::Failed(e)
    }
}

impl From<Gone> for Stop {
    fn from(_: Gone) -> Self {
        Self::Gone
    }
}

/// Run one session until it fails or the receiver is gone.
pub(crate) async fn serve(opts: &JoinOptions, out: &mut Outbox) -> Stop {
    match Box::pin(session(opts, out)).await {
        Ok(never) => match never {},
        Err(stop) => stop,
    }
}

async fn session(opts: &JoinOptions, out: &mut Outbox) -> Result<Infallible, Stop> {
    let keys = Keys::new(&opts.prefix);
    let mut client = connect(&opts.etcd).await?;
    let config = read_config(&mut client, &keys).await;
    // Any answer, "no config" too, says etcd is reachable; a refusal says it does not
    // serve this node.
    if !matches!(&config, Err(e) if e.is_unreachable() || e.is_refusal()) {
        out.connected(true).await?;
    }
    let cfg = config?;
    if out.config().is_some_and(|c| *c != cfg) {
        warn!(config = %cfg, "the cluster config in etcd changed");
    }
    let (subnets, leases) = join(&mut client, &keys, &cfg, opts, out.leases()).await?;
    let (subnet, subnet6) = subnets;
    info!(node = opts.name, %subnet, ?subnet6, underlay = %opts.underlay, "joined the cluster");
    out.joined(cfg.clone(), subnet, subnet6, leases).await?;
    follow(client, keys, cfg, opts, subnets, leases, out).await
}

/// Reserve a subnet and register this node, each under a new lease; revoke the previous
/// session's leases, which hold nothing any more.
async fn join(
    client: &mut Client,
    keys: &Keys,
    cfg: &ClusterConfig,
    opts: &JoinOptions,
    old: Leases,
) -> Result<(Subnets, Leases), ClusterError> {
    let node_key = keys.node(&opts.name);
    let current = call("read this node's key", client.get(node_key.clone(), None)).await?;
    let unchanged = match current.kvs().first() {
        None => Compare::create_revision(node_key.clone(), CompareOp::Equal, 0),
        Some(kv) => {
            // A key with our underlay is ours from before; another is a live namesake.
            if let Ok(r) = serde_json::from_slice::<NodeRecord>(kv.value())
                && r.underlay != opts.underlay
            {
                return Err(ClusterError::NameTaken {
                    name: opts.name.clone(),
                    underlay: r.underlay,
                });
            }
            Compare::mod_revision(node_key.clone(), CompareOp::Equal, kv.mod_revision())
        }
    };
    let leases = Leases {
        liveness: grant(client, cfg.lease_ttl).await?,
        reservation: grant(client, cfg.reclaim_after).await?,
    };
    let subnet = match register(client, cfg, opts, node_key, unchanged, leases).await {
        Ok(subnet) => subnet,
        Err(e) => {
            // Leases left empty by a refusal (a full pool, a race) would linger until
            // their TTL, one pair per try.
            if !e.is_unreachable() {
                for id in [leases.liveness, leases.reservation] {
                    revoke_if_empty(client, id).await;
                }
            }
            return Err(e);
        }
    };
    for id in [old.liveness, old.reservation] {
        if id != 0 && id != leases.liveness && id != leases.reservation {
            revoke_if_empty(client, id).await;
        }
    }
    Ok((subnet, leases))
}

/// This node's IPv4 subnet and IPv6 prefix (dual stack).
type Subnets = (Ipv4Net, Option<Ipv6Net>);

/// Claim a subnet (and, dual stack, an IPv6 prefix) on the reservation lease, then put the node key on the liveness lease
/// if it is `unchanged` since it was read.
async fn register(
    client: &mut Client,
    cfg: &ClusterConfig,
    opts: &JoinOptions,
    node_key: String,
    unchanged: Compare,
    leases: Leases,
) -> Result<Subnets, ClusterError> {
    let subnet = claim(client, &opts.prefix, cfg, &opts.name, leases.reservation).await?;
    let subnet6 = claim6(client, &opts.prefix, cfg, &opts.name, leases.reservation).await?;
    let record = node_record(cfg, opts, (subnet, subnet6))?;
    let txn = Txn::new().when([unchanged]).and_then([TxnOp::put(
        node_key,
        record,
        Some(PutOptions::new().with_lease(leases.liveness)),
    )]);
    if !call("register this node", client.txn(txn))
        .await?
        .succeeded()
    {
        return Err(ClusterError::Raced {
            what: "this node's key",
        });
    }
    Ok((subnet, subnet6))
}

async fn grant(client: &mut Client, ttl: u64) -> Result<i64, ClusterError> {
    let ttl = i64::try_from(ttl).unwrap_or(i64::MAX);
    Ok(call("grant a lease", client.lease_grant(ttl, None))
        .await?
        .id())
}

/// Revoke a lease if it still exists and holds no key (the lease ids of an earlier
/// session, from an etcd wiped since, could name another node's lease by chance).
async fn revoke_if_empty(client: &mut Client, id: i64) {
    let ttl = call(
        "read an unused lease",
        client.lease_time_to_live(id, Some(LeaseTimeToLiveOptions::new().with_keys())),
    )
    .await;
    match ttl {
        Ok(t) if t.ttl() > 0 && t.keys().is_empty() => {
            match call("revoke an unused lease", client.lease_revoke(id)).await {
                Ok(_) => debug!(lease = format!("{id:x}"), "revoked an unused lease"),
                Err(e) => debug!(error = %e, "cannot revoke an unused lease"),
            }
        }
        Ok(_) => {}
        Err(e) => debug!(error = %e, "cannot read an unused lease"),
    }
}

fn node_record(
    cfg: &ClusterConfig,
    opts: &JoinOptions,
    (subnet, subnet6): Subnets,
) -> Result<Vec<u8>, ClusterError> {
    to_json(
        "this node's record",
        &NodeRecord {
            subnet,
            subnet6,
            underlay: opts.underlay,
            mode: cfg.mode,
            vni: cfg.vni,
            last_seen: now(),
            mac: opts.mac,
            incarnation: opts.incarnation,
        },
    )
}

/// Keep both leases alive, list the nodes and follow them, until something fails.
async fn follow(
    mut client: Client,
    keys: Keys,
    cfg: ClusterConfig,
    opts: &JoinOptions,
    subnets: Subnets,
    leases: Leases,
    out: &mut Outbox,
) -> Result<Infallible, Stop> {
    let mut alive = Keepalive::start(&mut client, leases, &cfg).await?;
    // The request half stays open for as long as the watch runs.
    let (mut peers, (_requests, mut events)) =
        watch_peers(&mut client, &keys, &cfg, opts, subnets).await?;
    out.peers(peers.list()).await?;
    out.conflicts(peers.conflicts()).await?;
    let mut refresh = interval_at(Instant::now() + REFRESH, REFRESH);
    loop {
        tokio::select! {
            _ = alive.timer.tick() => alive.send().await?,
            ack = alive.live_acks.next() => alive.live_acked(ack)?,
            ack = alive.res_acks.next() => acked(ack, leases.reservation)?,
            resp = events.next() => on_watch(resp, &mut peers, out).await?,
            _ = refresh.tick() => {
                refresh_last_seen(&mut client, &keys, &cfg, opts, subnets, leases).await?;
            }
        }
    }
}

/// Both leases' keepalive streams, and when the liveness one was last answered.
struct Keepalive {
    live: LeaseKeeper,
    live_acks: LeaseKeepAliveStream,
    res: LeaseKeeper,
    res_acks: LeaseKeepAliveStream,
    timer: Interval,
    liveness: i64,
    ttl: Duration,
    heard: Instant,
}

impl Keepalive {
    /// Start both streams, ticking at a third of the shorter of the lease and reclaim
    /// times.
    async fn start(
        client: &mut Client,
        leases: Leases,
        cfg: &ClusterConfig,
    ) -> Result<Self, ClusterError> {
        let what = "start a lease keepalive";
        let (live, live_acks) = call(what, client.lease_keep_alive(leases.liveness)).await?;
        let (res, res_acks) = call(what, client.lease_keep_alive(leases.reservation)).await?;
        let shortest = cfg.lease_ttl.min(cfg.reclaim_after);
        let mut timer = interval((Duration::from_secs(shortest) / 3).max(MIN_KEEPALIVE));
        timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Ok(Self {
            live,
            live_acks,
            res,
            res_acks,
            timer,
            liveness: leases.liveness,
            ttl: Duration::from_secs(cfg.lease_ttl),
            heard: Instant::now(),
        })
    }

    /// Send both keepalives, unless the liveness lease went unanswered for its TTL.
    async fn send(&mut self) -> Result<(), ClusterError> {
        if self.heard.elapsed() > self.ttl {
            return Err(ClusterError::Stream {
                problem: StreamProblem::KeepaliveSilent { ttl: self.ttl },
            });
        }
        call("send a keepalive", self.live.keep_alive()).await?;
        call("send a keepalive", self.res.keep_alive()).await
    }

    fn live_acked(
        &mut self,
        ack: Option<Result<LeaseKeepAliveResponse, etcd_client::Error>>,
    ) -> Result<(), ClusterError> {
        acked(ack, self.liveness)?;
        self.heard = Instant::now();
        Ok(())
    }
}

/// Nodes and reservations at one revision, judged, then a watch on every change of
/// either from the next revision: a node is believed only while its reservation names
/// it.
async fn watch_peers(
    client: &mut Client,
    keys: &Keys,
    cfg: &ClusterConfig,
    opts: &JoinOptions,
    (subnet, subnet6): Subnets,
) -> Result<(PeerSet, (WatchRequestSender, WatchResponseStream)), ClusterError> {
    let listing = call(
        "list the nodes and reservations",
        client.get(keys.root(), Some(GetOptions::new().with_prefix())),
    )
    .await?;
    let revision = listing
        .header()
        .map_or(0, etcd_client::ResponseHeader::revision);
    let mut peers = PeerSet::new(
        keys.clone(),
        cfg.clone(),
        opts.name.clone(),
        subnet,
        opts.underlay,
        subnet6,
    );
    for kv in listing.kvs() {
        peers.put(kv);
    }
    peers.judge();
    let watch = WatchOptions::new()
        .with_prefix()
        .with_start_revision(revision + 1);
    let watch = call("watch the nodes", client.watch(keys.root(), Some(watch))).await?;
    Ok((peers, watch.split()))
}

/// One answer of the watch: its events applied, the peers and conflicts sent on when
/// they changed. The watch's end, error or cancellation fails the session.
async fn on_watch(
    resp: Option<Result<WatchResponse, etcd_client::Error>>,
    peers: &mut PeerSet,
    out: &mut Outbox,
) -> Result<(), Stop> {
    let resp = match resp {
        Some(Ok(r)) => r,
        Some(Err(e)) => return Err(classify("watch the nodes", e).into()),
        None => {
            return Err(ClusterError::Stream {
                problem: StreamProblem::WatchEnded,
            }
            .into());
        }
    };
    if resp.canceled() {
        return Err(ClusterError::Stream {
            problem: StreamProblem::WatchCanceled {
                reason: resp.cancel_reason().to_string(),
                compact_revision: resp.compact_revision(),
            },
        }
        .into());
    }
    for event in resp.events() {
        peers.apply(event);
    }
    let changed = peers.judge();
    if changed.peers {
        out.peers(peers.list()).await?;
    }
    if changed.conflicts {
        out.conflicts(peers.conflicts()).await?;
    }
    Ok(())
}

/// One keepalive answer: the lease must still exist.
fn acked(
    ack: Option<Result<LeaseKeepAliveResponse, etcd_client::Error>>,
    lease: i64,
) -> Result<(), ClusterError> {
    match ack {
        Some(Ok(r)) if r.ttl() > 0 => Ok(()),
        Some(Ok(_)) => Err(ClusterError::LeaseLost { lease }),
        Some(Err(e)) => Err(classify("keep a lease alive", e)),
        None => Err(ClusterError::Stream {
            problem: StreamProblem::KeepaliveEnded,
        }),
    }
}

/// Rewrite both keys with a new `last_seen`, each only while it is still on this
/// session's lease.
async fn refresh_last_seen(
    client: &mut Client,
    keys: &Keys,
    cfg: &ClusterConfig,
    opts: &JoinOptions,
    subnets: Subnets,
    leases: Leases,
) -> Result<(), ClusterError> {
    let reservation = to_json(
        "a subnet reservation",
        &SubnetRecord {
            node: opts.name.clone(),
            last_seen: now(),
        },
    )?;
    let mut writes = vec![
        (
            keys.node(&opts.name),
            node_record(cfg, opts, subnets)?,
            leases.liveness,
            "this node's key",
        ),
        (
            keys.subnet(&subnets.0),
            reservation.clone(),
            leases.reservation,
            "this node's reservation",
        ),
    ];
    if let Some(subnet6) = subnets.1 {
        writes.push((
            keys.subnet6(&subnet6),
            reservation,
            leases.reservation,
            "this node's IPv6 reservation",
        ));
    }
    for (key, value, lease, what) in writes {
        let txn = Txn::new()
            .when([Compare::lease(key.clone(), CompareOp::Equal, lease)])
            .and_then([TxnOp::put(
                key,
                value,
                Some(PutOptions::new().with_lease(lease)),
            )]);
        if !call("refresh last_seen", client.txn(txn))
            .await?
            .succeeded()
        {
            return Err(ClusterError::Raced { what });
        }
    }
    Ok(())
}
