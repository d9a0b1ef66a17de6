//! Nodes as their peers see them, read from `{prefix}/nodes/` and `{prefix}/subnets/`.
use std::{collections::BTreeMap, net::Ipv4Addr};

use etcd_client::{GetOptions, KeyValue};
use serde::{Deserialize, Serialize};
use tracing::warn;

use super::{
    ClusterConfig, ClusterError, Conflict, EtcdAccess, Ipv4Net, Ipv6Net, Mode,
    etcd::{call, connect},
    init::read_config,
    keys::{Keys, NodeRecord, SubnetRecord, valid_underlay},
    trust::{Entry, judge},
};
use crate::endpoint::Mac;

/// A node as a peer sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// Its name (unique in the cluster).
    pub name: String,
    /// Its node subnet: the containers behind it.
    #[serde(with = "super::net")]
    pub subnet: Ipv4Net,
    /// The address its peers reach it at (0.0.0.0 for a gone node, whose reservation
    /// does not record it).
    pub underlay: Ipv4Addr,
    /// The mode it runs.
    pub mode: Mode,
    /// The VNI it runs.
    pub vni: u32,
    /// Whether its liveness lease holds (false: gone, its subnet still reserved).
    pub alive: bool,
    /// When it was last seen running, in seconds since the epoch.
    pub last_seen: u64,
    /// The MAC of its underlay interface, when it has one and said so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<Mac>,
    /// Which start of its daemon registered it (0: not known).
    #[serde(default)]
    pub incarnation: u64,
    /// Its IPv6 prefix (dual stack): none in an IPv4-only cluster.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "super::net6::opt"
    )]
    pub subnet6: Option<Ipv6Net>,
}

impl Node {
    /// Whether the two are the same registration: everything but `last_seen` (a
    /// restart of the node's daemon, or a new underlay interface, is a change).
    pub fn same_registration(&self, other: &Self) -> bool {
        (
            &self.name,
            self.subnet,
            self.underlay,
            self.mode,
            self.vni,
            self.alive,
            self.mac,
            self.incarnation,
            self.subnet6,
        ) == (
            &other.name,
            other.subnet,
            other.underlay,
            other.mode,
            other.vni,
            other.alive,
            other.mac,
            other.incarnation,
            other.subnet6,
        )
    }

    /// The live node a `{prefix}/nodes/NAME` key describes, if it is a valid one for
    /// `cfg`; anything else is logged and skipped.
    pub(crate) fn from_kv(keys: &Keys, cfg: &ClusterConfig, kv: &KeyValue) -> Option<Self> {
        let key = String::from_utf8_lossy(kv.key());
        let Some(name) = keys.node_name(kv.key()) else {
            warn!(%key, "not a node key; skipped");
            return None;
        };
        let r: NodeRecord = match serde_json::from_slice(kv.value()) {
            Ok(r) => r,
            Err(e) => {
                warn!(%key, error = %e, "node with a bad value; skipped");
                return None;
            }
        };
        if !cfg.is_node_subnet(&r.subnet) {
            warn!(%key, subnet = %r.subnet, cidr = %cfg.cidr, "node subnet outside the cluster's; skipped");
            return None;
        }
        let subnet6 = match r.subnet6 {
            Some(s) if !cfg.is_node_subnet6(&s) => {
                // Its IPv4 subnet stays reachable; no IPv6 route to it.
                warn!(%key, subnet6 = %s, cidr6 = ?cfg.cidr6, "node IPv6 prefix outside the cluster's; ignored");
                None
            }
            s => s,
        };
        if !valid_underlay(r.underlay) {
            warn!(%key, underlay = %r.underlay, "node with an unusable underlay address; skipped");
            return None;
        }
        Some(Self {
            name: name.into(),
            subnet: r.subnet,
            underlay: r.underlay,
            mode: r.mode,
            vni: r.vni,
            alive: true,
            last_seen: r.last_seen,
            mac: r.mac,
            incarnation: r.incarnation,
            subnet6,
        })
    }
}

/// What etcd says of a cluster's nodes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EtcdNodes {
    /// The believed live nodes from `{prefix}/nodes/`, and the gone ones whose subnet is
    /// still reserved (`alive: false`, `last_seen` from the reservation), in subnet order.
    pub nodes: Vec<Node>,
    /// The live node entries not believed (`trust.rs`), by name.
    pub conflicts: Vec<Conflict>,
}

/// Every node of the cluster `etcd` holds under `prefix`, judged as a member judges
/// its peers (with no node of its own).
pub async fn nodes(etcd: &EtcdAccess, prefix: &str) -> Result<EtcdNodes, ClusterError> {
    let keys = Keys::new(prefix);
    let mut client = connect(etcd).await?;
    let cfg = read_config(&mut client, &keys).await?;
    let all = call(
        "list the nodes and reservations",
        client.get(keys.root(), Some(GetOptions::new().with_prefix())),
    )
    .await?;
    let mut entries = Vec::new();
    let mut reservations = BTreeMap::new();
    let mut reservations6 = BTreeMap::new();
    let mut last_seen = BTreeMap::new();
    for kv in all.kvs() {
        if keys.node_name(kv.key()).is_some() {
            if let Some(node) = Node::from_kv(&keys, &cfg, kv) {
                entries.push(Entry {
                    node,
                    created: kv.create_revision(),
                });
            }
            continue;
        }
        if let Some(subnet6) = keys.subnet6_of(kv.key()) {
            match serde_json::from_slice::<SubnetRecord>(kv.value()) {
                Ok(r) => {
                    reservations6.insert(subnet6, r.node);
                }
                Err(e) => warn!(%subnet6, error = %e, "reservation with a bad value; skipped"),
            }
            continue;
        }
        let Some(subnet) = keys.subnet_of(kv.key()) else {
            continue;
        };
        match serde_json::from_slice::<SubnetRecord>(kv.value()) {
            Ok(r) => {
                last_seen.insert(subnet, r.last_seen);
                reservations.insert(subnet, r.node);
            }
            Err(e) => warn!(%subnet, error = %e, "reservation with a bad value; skipped"),
        }
    }
    let (mut all, conflicts) = judge(None, &entries, &reservations, &reservations6);
    for (subnet, name) in reservations {
        if all.iter().any(|n| n.name == name && n.subnet == subnet) {
            continue;
        }
        // A gone node's IPv6 prefix, by its name (dual stack).
        let subnet6 = reservations6
            .iter()
            .find(|(_, n)| **n == name)
            .map(|(s, _)| *s);
        all.push(Node {
            name,
            subnet,
            underlay: Ipv4Addr::UNSPECIFIED,
            mode: cfg.mode,
            vni: cfg.vni,
            alive: false,
            last_seen: last_seen.get(&subnet).copied().unwrap_or(0),
            mac: None,
            incarnation: 0,
            subnet6,
        });
    }
    all.sort_by_key(|n| (n.subnet, n.name.clone()));
    Ok(EtcdNodes {
        nodes: all,
        conflicts,
    })
}
