//! The peers part: the peer nodes' neighbour entries (`peer_neigh.rs`) and the host's
//! routes to their prefixes (`peer_routes.rs`), brought in line together when what they
//! are computed from changed: the cluster's routes, the tunnelled peers, the peers'
//! registered MACs, the host's addresses; or when a peer registered anew or a device
//! their entries are on came or went.
use std::{mem::take, net::Ipv4Addr};

use super::{Daemon, Prefix, cluster::Routes};
use crate::{endpoint::Mac, netlink::PeerRoute};

/// The peers part's inputs.
#[derive(Debug, PartialEq)]
struct Inputs {
    routes: Routes,
    tunnelled: Vec<PeerRoute>,
    /// Every peer's underlay address and registered MAC.
    peers: Vec<(Ipv4Addr, Option<Mac>)>,
    prefixes: Vec<Prefix>,
}

/// The peers part's record.
#[derive(Debug, Default)]
pub(super) struct Peers {
    /// Its inputs when it last ran (None: never yet).
    applied: Option<Inputs>,
}

impl Peers {
    /// Bring the entries and routes in line again at the next reconcile.
    pub(super) fn forget(&mut self) {
        self.applied = None;
    }
}

impl Daemon {
    fn peer_inputs(&self) -> Inputs {
        let statics = self.cluster.peers.iter().map(|&(_, node)| (node, None));
        let nodes = self
            .cluster
            .networks
            .iter()
            .flat_map(|net| &net.nodes)
            .map(|n| (n.underlay, n.mac));
        Inputs {
            routes: (self.cluster.routes(), self.cluster.routes6()),
            tunnelled: self.tunnelled_peers(),
            peers: statics.chain(nodes).collect(),
            prefixes: self.host.prefixes.clone(),
        }
    }

    /// Bring the peers' neighbour entries and routes in line, unless nothing they
    /// depend on changed since the last time.
    pub(super) async fn sync_peers(&mut self) {
        let inputs = self.peer_inputs();
        let news = take(&mut self.stale.peer_links) || !self.cluster.seen.is_empty();
        if !news && self.parts.peers.applied.as_ref() == Some(&inputs) {
            return;
        }
        self.sync_peer_neighbours().await;
        self.sync_peer_routes().await;
        self.parts.peers.applied = Some(inputs);
    }
}
