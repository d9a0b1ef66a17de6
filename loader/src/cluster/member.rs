//! A node's membership, run by the daemon as a long-lived task: join, stay alive, follow
//! the peers, and fail static while etcd is away.
use std::{
    collections::hash_map::RandomState,
    hash::{BuildHasher as _, Hasher as _},
    net::Ipv4Addr,
    path::PathBuf,
    time::Duration,
};

use tokio::sync::mpsc::Sender;
use tracing::{debug, error, warn};

use super::{
    ClusterConfig, ClusterError, Conflict, EtcdAccess, Ipv4Net, Ipv6Net, Node, NodeProblem,
    keys::{valid_name, valid_underlay},
    outbox::Outbox,
    session::{Stop, serve},
};
use crate::endpoint::Mac;

/// The first wait before another try after a failure; it doubles up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// The longest wait between two tries.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What a node joins the cluster with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinOptions {
    /// How to reach etcd: its client URLs, TLS and user.
    pub etcd: EtcdAccess,
    /// The cluster's key prefix (e.g. `/bpfnet`).
    pub prefix: String,
    /// This node's name, unique in the cluster (a host name's characters).
    pub name: String,
    /// The address peers reach this node at.
    pub underlay: Ipv4Addr,
    /// The MAC of the interface that has it (none: not an Ethernet interface): a peer
    /// whose neighbour entry names another MAC resolves it again.
    pub mac: Option<Mac>,
    /// Different on each start of the node ([`incarnation`]): its peers see a restart
    /// as a new registration even when nothing else in it changed.
    pub incarnation: u64,
    /// Where `cluster.json`, the last-known place and peers, is kept.
    pub state_dir: PathBuf,
}

impl JoinOptions {
    /// Refuse a name or underlay address no node can have.
    pub fn validate(&self) -> Result<(), ClusterError> {
        let problem = if self.etcd.endpoints().is_empty() {
            NodeProblem::NoEndpoint
        } else if !valid_name(&self.name) {
            NodeProblem::Name {
                name: self.name.clone(),
            }
        } else if !valid_underlay(self.underlay) {
            NodeProblem::Underlay {
                underlay: self.underlay,
            }
        } else {
            return Ok(());
        };
        Err(ClusterError::InvalidNode { problem })
    }
}

/// A new [`JoinOptions::incarnation`]: random, never 0 (which a record from before
/// bpfnet recorded one reads as).
pub fn incarnation() -> u64 {
    // RandomState's keys come from the OS's randomness.
    RandomState::new().build_hasher().finish().max(1)
}

/// What a member tells the daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterEvent {
    /// This node's place: sent first from the persisted file (if any) at start, then
    /// again each time it (re)joins through etcd.
    Joined {
        /// The cluster's config.
        config: ClusterConfig,
        /// This node's subnet.
        subnet: Ipv4Net,
        /// This node's IPv6 prefix (dual stack), none when the cluster has no `cidr6`.
        subnet6: Option<Ipv6Net>,
    },
    /// The full current peer list (never this node): sent from the persisted file at
    /// start, then after each (re)join's listing and each change etcd reports. Never
    /// sent because etcd went away: the last list stands while it is (fail static).
    Peers(Vec<Node>),
    /// The node entries not believed (`trust.rs`), sent after each listing and each
    /// change; like `Peers`, kept while etcd is away.
    Conflicts(Vec<Conflict>),
    /// Whether etcd is reachable now (and serves this node); sent when that changes.
    Connected(bool),
}

/// Be a member of the cluster until `tx`'s receiver is dropped: send the persisted place
/// and peers (if any) first, then connect (retrying with a backoff up to 5 s, forever),
/// wait for the cluster config, reserve a subnet, register this node under a liveness
/// lease, keep both leases alive and follow the other nodes. When etcd becomes
/// unreachable, or refuses this node (a revoked certificate, a changed password), it
/// sends `Connected(false)` and keeps the last peers until it has joined again and
/// listed the nodes anew.
///
/// A member stopped (its task aborted or its receiver dropped) leaves nothing behind on
/// purpose: its peers keep their route to it until its liveness lease expires, so a
/// daemon restart, during which its containers keep running, does not cut them off.
pub async fn run(opts: JoinOptions, tx: Sender<ClusterEvent>) {
    if let Err(e) = opts.validate() {
        error!(error = %e, "not joining the cluster");
        return;
    }
    let mut out = Outbox::new(tx, opts.state_dir.clone());
    if out.replay().await.is_err() {
        return;
    }
    let closed = out.sender();
    let mut backoff = FIRST_BACKOFF;
    let mut last_error = String::new();
    loop {
        let joins = out.joins();
        let error = tokio::select! {
            () = closed.closed() => return,
            stop = serve(&opts, &mut out) => match stop {
                Stop::Gone => return,
                Stop::Failed(e) => e,
            },
        };
        if out.joins() != joins {
            backoff = FIRST_BACKOFF;
        }
        // A refusal (a revoked certificate, a changed password) fails static too: the
        // last peers stand while it is retried.
        if (error.is_unreachable() || error.is_refusal()) && out.connected(false).await.is_err() {
            return;
        }
        let text = error.to_string();
        if text == last_error {
            debug!(
                error = text,
                "cluster: still failing; retrying in {backoff:?}"
            );
        } else if error.is_refusal() {
            error!(
                error = text,
                "cluster: etcd refuses this node; keeping the last-known peers, retrying in {backoff:?}"
            );
        } else {
            warn!(error = text, "cluster: retrying in {backoff:?}");
        }
        last_error = text;
        tokio::select! {
            () = closed.closed() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
