//! The peer list a member keeps from its listing of `{prefix}/nodes/` and the watch that
//! follows it.
use std::collections::BTreeMap;

use etcd_client::{Event, EventType, KeyValue};
use tracing::{error, warn};

use super::{ClusterConfig, Ipv4Net, Ipv6Net, Node, keys::Keys};

/// Every valid live node but this one, by name.
#[derive(Debug)]
pub(crate) struct PeerSet {
    keys: Keys,
    cfg: ClusterConfig,
    me: String,
    own: Ipv4Net,
    own6: Option<Ipv6Net>,
    nodes: BTreeMap<String, Node>,
}

impl PeerSet {
    /// An empty set for node `me`, whose subnet is `own` (and IPv6 prefix `own6`).
    pub(crate) fn new(
        keys: Keys,
        cfg: ClusterConfig,
        me: String,
        own: Ipv4Net,
        own6: Option<Ipv6Net>,
    ) -> Self {
        Self {
            keys,
            cfg,
            me,
            own,
            own6,
            nodes: BTreeMap::new(),
        }
    }

    /// The peers, by name.
    pub(crate) fn list(&self) -> Vec<Node> {
        self.nodes.values().cloned().collect()
    }

    /// One watch event; whether the peer list changed (a refreshed `last_seen` alone is
    /// no change; a node that registered again after a restart is).
    pub(crate) fn apply(&mut self, event: &Event) -> bool {
        let Some(kv) = event.kv() else {
            return false;
        };
        match event.event_type() {
            EventType::Put => self.put(kv),
            EventType::Delete => self.delete(kv.key()),
        }
    }

    /// A node key's (new) value; whether the peer list changed.
    pub(crate) fn put(&mut self, kv: &KeyValue) -> bool {
        let Some(name) = self.keys.node_name(kv.key()) else {
            warn!(key = %String::from_utf8_lossy(kv.key()), "not a node key; skipped");
            return false;
        };
        if name == self.me {
            return false;
        }
        let Some(node) = Node::from_kv(&self.keys, &self.cfg, kv) else {
            // No longer a usable node: no route to it either.
            return self.delete(kv.key());
        };
        if node.subnet.overlaps(&self.own)
            || node
                .subnet6
                .zip(self.own6)
                .is_some_and(|(s, o)| s.overlaps(&o))
        {
            error!(peer = name, subnet = %node.subnet, "a peer claims this node's subnet; skipped");
            return self.delete(kv.key());
        }
        if let Some(other) = self
            .nodes
            .values()
            .find(|o| o.name != node.name && o.subnet.overlaps(&node.subnet))
        {
            warn!(peer = name, other = other.name, subnet = %node.subnet, "two peers share a subnet");
        }
        match self.nodes.get_mut(name) {
            Some(old) if old.same_registration(&node) => {
                old.last_seen = node.last_seen;
                false
            }
            _ => {
                self.nodes.insert(name.into(), node);
                true
            }
        }
    }

    /// A node key's deletion; whether the peer list changed.
    fn delete(&mut self, key: &[u8]) -> bool {
        self.keys
            .node_name(key)
            .is_some_and(|name| self.nodes.remove(name).is_some())
    }
}
