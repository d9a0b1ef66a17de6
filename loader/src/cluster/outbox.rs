//! What a member sends the daemon, each `Joined` and `Peers` also persisted first.
use std::path::PathBuf;

use tokio::sync::mpsc::Sender;
use tracing::{info, warn};

use super::{
    ClusterConfig, ClusterEvent, Conflict, Ipv4Net, Ipv6Net, Node,
    persist::{Leases, Persisted},
};

/// The receiver of the events is gone: the member stops.
#[derive(Debug)]
pub(crate) struct Gone;

/// The event channel and the persisted state behind it.
pub(crate) struct Outbox {
    tx: Sender<ClusterEvent>,
    dir: PathBuf,
    state: Option<Persisted>,
    connected: Option<bool>,
    joins: u64,
}

impl Outbox {
    /// Events go to `tx`; the state is persisted under `dir`.
    pub(crate) fn new(tx: Sender<ClusterEvent>, dir: PathBuf) -> Self {
        Self {
            tx,
            dir,
            state: None,
            connected: None,
            joins: 0,
        }
    }

    /// A sender whose `closed()` tells when the receiver is gone.
    pub(crate) fn sender(&self) -> Sender<ClusterEvent> {
        self.tx.clone()
    }

    async fn send(&self, event: ClusterEvent) -> Result<(), Gone> {
        self.tx.send(event).await.map_err(|_| Gone)
    }

    /// Send the persisted place and peers, if there is a valid file.
    pub(crate) async fn replay(&mut self) -> Result<(), Gone> {
        let p = match Persisted::load(&self.dir) {
            Ok(Some(p)) => p,
            Ok(None) => return Ok(()),
            Err(e) => {
                warn!(error = %e, "ignoring the persisted cluster state");
                return Ok(());
            }
        };
        if p.config.validate().is_err()
            || !p.config.is_node_subnet(&p.subnet)
            || p.subnet6.is_some_and(|s| !p.config.is_node_subnet6(&s))
        {
            warn!(subnet = %p.subnet, config = %p.config, "ignoring the persisted cluster state: not a valid place");
            return Ok(());
        }
        info!(subnet = %p.subnet, peers = p.peers.len(), "cluster: starting from the persisted state");
        self.send(ClusterEvent::Joined {
            config: p.config.clone(),
            subnet: p.subnet,
            subnet6: p.subnet6,
        })
        .await?;
        self.send(ClusterEvent::Peers(p.peers.clone())).await?;
        self.state = Some(p);
        Ok(())
    }

    /// The leases the last session (or run) held.
    pub(crate) fn leases(&self) -> Leases {
        self.state.as_ref().map(|s| s.leases).unwrap_or_default()
    }

    /// The config the node last joined with.
    pub(crate) fn config(&self) -> Option<&ClusterConfig> {
        self.state.as_ref().map(|s| &s.config)
    }

    /// How many times `joined` was called.
    pub(crate) fn joins(&self) -> u64 {
        self.joins
    }

    /// This node (re)joined: persist and send its place.
    pub(crate) async fn joined(
        &mut self,
        config: ClusterConfig,
        subnet: Ipv4Net,
        subnet6: Option<Ipv6Net>,
        leases: Leases,
    ) -> Result<(), Gone> {
        self.joins += 1;
        // The last peers stay persisted until the listing that follows replaces them.
        let peers = self.state.take().map(|s| s.peers).unwrap_or_default();
        self.state = Some(Persisted {
            config: config.clone(),
            subnet,
            subnet6,
            peers,
            leases,
        });
        self.save();
        self.send(ClusterEvent::Joined {
            config,
            subnet,
            subnet6,
        })
        .await
    }

    /// Persist and send the peer list.
    pub(crate) async fn peers(&mut self, peers: Vec<Node>) -> Result<(), Gone> {
        if let Some(s) = &mut self.state {
            s.peers.clone_from(&peers);
        }
        self.save();
        self.send(ClusterEvent::Peers(peers)).await
    }

    /// Send the node entries not believed (not persisted: judged anew at each listing).
    pub(crate) async fn conflicts(&mut self, conflicts: Vec<Conflict>) -> Result<(), Gone> {
        self.send(ClusterEvent::Conflicts(conflicts)).await
    }

    /// Send whether etcd is reachable, when that changed.
    pub(crate) async fn connected(&mut self, up: bool) -> Result<(), Gone> {
        if self.connected == Some(up) {
            return Ok(());
        }
        self.connected = Some(up);
        self.send(ClusterEvent::Connected(up)).await
    }

    fn save(&self) {
        if let Some(s) = &self.state
            && let Err(e) = s.save(&self.dir)
        {
            warn!(error = %e, "cannot persist the cluster state");
        }
    }
}
