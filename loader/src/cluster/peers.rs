//! The peer list a member keeps from its listing of `{prefix}/nodes/` and
//! `{prefix}/subnets/` and the watch that follows both: every change of either judges
//! the entries again (`trust.rs`).
use std::{collections::BTreeMap, net::Ipv4Addr};

use etcd_client::{Event, EventType, KeyValue};
use tracing::{debug, warn};

use super::{
    ClusterConfig, Ipv4Net, Ipv6Net, Node,
    keys::{Keys, SubnetRecord},
    trust::{Conflict, Entry, Me, judge},
};

/// Every believed live node but this one, by name, and the entries not believed.
#[derive(Debug)]
pub(crate) struct PeerSet {
    keys: Keys,
    cfg: ClusterConfig,
    me: String,
    own: Ipv4Net,
    underlay: Ipv4Addr,
    /// Its IPv6 prefix (dual stack).
    own6: Option<Ipv6Net>,
    /// Every valid node entry, by name (this node's too).
    entries: BTreeMap<String, Entry>,
    /// Every reservation: subnet → the node it names.
    reservations: BTreeMap<Ipv4Net, String>,
    /// Every IPv6 reservation: prefix → the node it names.
    reservations6: BTreeMap<Ipv6Net, String>,
    peers: Vec<Node>,
    conflicts: Vec<Conflict>,
}

/// What a change did to the lists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Changed {
    pub(crate) peers: bool,
    pub(crate) conflicts: bool,
}

impl PeerSet {
    /// An empty set for node `me`, whose subnet is `own` (and IPv6 prefix `own6`) and
    /// underlay address `underlay`.
    pub(crate) fn new(
        keys: Keys,
        cfg: ClusterConfig,
        me: String,
        own: Ipv4Net,
        underlay: Ipv4Addr,
        own6: Option<Ipv6Net>,
    ) -> Self {
        Self {
            keys,
            cfg,
            me,
            own,
            underlay,
            own6,
            entries: BTreeMap::new(),
            reservations: BTreeMap::new(),
            reservations6: BTreeMap::new(),
            peers: Vec::new(),
            conflicts: Vec::new(),
        }
    }

    /// The believed peers, by name.
    pub(crate) fn list(&self) -> Vec<Node> {
        self.peers.clone()
    }

    /// The node entries not believed, by name.
    pub(crate) fn conflicts(&self) -> Vec<Conflict> {
        self.conflicts.clone()
    }

    /// One watch event, not judged yet.
    pub(crate) fn apply(&mut self, event: &Event) {
        let Some(kv) = event.kv() else {
            return;
        };
        match event.event_type() {
            EventType::Put => self.put(kv),
            EventType::Delete => self.delete(kv.key()),
        }
    }

    /// A node or reservation key's (new) value, not judged yet; other keys are ignored.
    pub(crate) fn put(&mut self, kv: &KeyValue) {
        if let Some(name) = self.keys.node_name(kv.key()) {
            match Node::from_kv(&self.keys, &self.cfg, kv) {
                Some(node) => {
                    let created = kv.create_revision();
                    self.entries.insert(name.into(), Entry { node, created });
                }
                // No longer a usable node: no route to it either.
                None => {
                    self.entries.remove(name);
                }
            }
        } else if let Some(subnet6) = self.keys.subnet6_of(kv.key()) {
            match serde_json::from_slice::<SubnetRecord>(kv.value()) {
                Ok(r) => {
                    self.reservations6.insert(subnet6, r.node);
                }
                Err(e) => {
                    warn!(%subnet6, error = %e, "reservation with a bad value; its node is not believed");
                    self.reservations6.remove(&subnet6);
                }
            }
        } else if let Some(subnet) = self.keys.subnet_of(kv.key()) {
            match serde_json::from_slice::<SubnetRecord>(kv.value()) {
                Ok(r) => {
                    self.reservations.insert(subnet, r.node);
                }
                Err(e) => {
                    warn!(%subnet, error = %e, "reservation with a bad value; its node is not believed");
                    self.reservations.remove(&subnet);
                }
            }
        } else {
            debug!(key = %String::from_utf8_lossy(kv.key()), "neither a node nor a reservation; ignored");
        }
    }

    /// A key's deletion, not judged yet.
    fn delete(&mut self, key: &[u8]) {
        if let Some(name) = self.keys.node_name(key) {
            self.entries.remove(name);
        } else if let Some(subnet6) = self.keys.subnet6_of(key) {
            self.reservations6.remove(&subnet6);
        } else if let Some(subnet) = self.keys.subnet_of(key) {
            self.reservations.remove(&subnet);
        }
    }

    /// Judge the entries again: what changed (a refreshed `last_seen` alone is no
    /// change; a node that registered again after a restart is).
    pub(crate) fn judge(&mut self) -> Changed {
        let me = Me {
            name: &self.me,
            subnet: self.own,
            underlay: self.underlay,
            subnet6: self.own6,
        };
        let entries: Vec<Entry> = self.entries.values().cloned().collect();
        let (peers, conflicts) = judge(Some(me), &entries, &self.reservations, &self.reservations6);
        let same = peers.len() == self.peers.len()
            && peers
                .iter()
                .zip(&self.peers)
                .all(|(a, b)| a.same_registration(b));
        for c in conflicts.iter().filter(|c| !self.conflicts.contains(c)) {
            warn!(node = c.name, subnet = %c.subnet, underlay = %c.underlay, reason = %c.reason, "node entry not believed");
        }
        let changed = Changed {
            peers: !same,
            conflicts: conflicts != self.conflicts,
        };
        self.peers = peers;
        self.conflicts = conflicts;
        changed
    }
}
