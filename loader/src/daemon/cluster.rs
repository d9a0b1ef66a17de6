//! `cluster_v1`: the cluster's prefixes, from the static flags (`--cluster-cidr`,
//! `--peer`) and from etcd (each cluster network's CIDR, every other node's prefix and
//! underlay address). Between two addresses of one cluster network nothing is
//! translated; the datapath sends a packet for another node's prefix straight to that
//! node. Each etcd network (its own key prefix, CIDR and VNI) has a bridge of its own
//! here; two networks stay isolated across hosts as two bridges are on one.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
};

use common::{CLUSTER_HOST_GW, CLUSTER_NODE, CLUSTER_ROUTED, CLUSTER_VXLAN, ClusterRoute};
use tracing::{info, warn};

use super::{
    Daemon,
    peer_neigh::{Seen, seen},
};
use crate::{
    api::{ClusterRouteLine, NetworkListing, NodeListing, ThisNode},
    cluster::{ClusterConfig, ClusterEvent, Ipv4Net, Mode, Node},
    datapath::sync::sync,
    endpoint::Ipv4Cidr,
};

/// What the daemon knows of its cluster.
#[derive(Debug, Default)]
pub(super) struct Cluster {
    /// `--cluster-cidr`: container prefixes the network routes to each host.
    pub cidr: Option<Ipv4Cidr>,
    /// `--peer SUBNET=UNDERLAY_IP`: static host-gw peers.
    pub peers: Vec<(Ipv4Cidr, Ipv4Addr)>,
    /// The bridge whose containers the static peers reach: the first `--bridge`.
    pub static_bridge: Option<String>,
    /// The etcd networks, one per bridge.
    pub networks: Vec<Network>,
    /// Each cluster bridge's IPv4 prefixes: its containers are the cluster's.
    pub local: BTreeMap<String, Vec<Ipv4Cidr>>,
    /// The VXLAN device's ifindex (0: none).
    pub vxlan: u32,
    /// The ifindex `to_tunnel` is attached to (0: none).
    pub to_tunnel: u32,
    /// This node's name and underlay address, once it joins through etcd.
    pub name: Option<(String, Ipv4Addr)>,
    /// The underlay interface's ifindex (0: not known).
    pub underlay: u32,
    /// How the peers' registrations changed since their neighbour entries were last
    /// looked at, by underlay address (`peer_neigh.rs`).
    pub seen: BTreeMap<Ipv4Addr, Seen>,
    /// The devices the peers' neighbour entries are on.
    pub neighbour_links: BTreeSet<u32>,
}

/// One etcd network: a key prefix in etcd, a bridge here.
#[derive(Debug)]
pub(super) struct Network {
    pub bridge: String,
    pub prefix: String,
    /// The network's config and this node's prefix, once known (from the persisted
    /// file first, then from etcd).
    pub joined: Option<(ClusterConfig, Ipv4Cidr)>,
    /// The other nodes, as last seen (kept while etcd is unreachable).
    pub nodes: Vec<Node>,
    /// Whether a peer list came since start (the persisted one counts).
    pub listed: bool,
    /// Whether etcd answers now.
    pub connected: bool,
}

impl Network {
    pub fn new(bridge: String, prefix: String) -> Self {
        Self {
            bridge,
            prefix,
            joined: None,
            nodes: Vec::new(),
            listed: false,
            connected: false,
        }
    }
}

/// A prefix as `cluster_v1` keys it: (length, address in network order).
type Key = (u32, u32);

fn key(c: &Ipv4Cidr) -> Key {
    let net = Ipv4Net::new(c.addr, c.len).map_or(c.addr, |n| n.addr);
    (u32::from(c.len), u32::from(net).to_be())
}

fn node_key(ip: Ipv4Addr) -> Key {
    (32, u32::from(ip).to_be())
}

/// `Ipv4Net` (etcd's) as `Ipv4Cidr` (the daemon's).
pub(super) fn cidr(n: &Ipv4Net) -> Ipv4Cidr {
    Ipv4Cidr {
        addr: n.addr,
        len: n.len,
    }
}

/// The first address of prefix `c`: its gateway.
pub(super) fn gateway_of(c: &Ipv4Cidr) -> Ipv4Addr {
    Ipv4Addr::from(u32::from_be(key(c).1).wrapping_add(1))
}

fn route(kind: u32, node: Ipv4Addr, vni: u32, ifindex: u32) -> ClusterRoute {
    ClusterRoute {
        node: u32::from(node).to_be(),
        vni,
        kind,
        ifindex,
    }
}

impl Cluster {
    /// The bridges whose containers are the cluster's.
    pub fn bridges(&self) -> impl Iterator<Item = &str> {
        self.static_bridge
            .iter()
            .map(String::as_str)
            .chain(self.networks.iter().map(|n| n.bridge.as_str()))
    }

    /// Whether `bridge` waits for an etcd network's node prefix before it is created.
    pub fn awaits_prefix(&self, bridge: &str) -> bool {
        self.networks.iter().any(|n| n.bridge == bridge)
    }

    /// Every entry `cluster_v1` should hold. A node's own prefix is its bridge's.
    pub fn routes(&self) -> BTreeMap<Key, ClusterRoute> {
        let mut want = BTreeMap::new();
        let none = Ipv4Addr::UNSPECIFIED;
        let local = |want: &mut BTreeMap<_, _>, bridge: &str, vni| {
            for l in self.local.get(bridge).into_iter().flatten() {
                want.insert(key(l), route(CLUSTER_ROUTED, none, vni, 0));
            }
        };
        if let Some(c) = &self.cidr {
            want.insert(key(c), route(CLUSTER_ROUTED, none, 0, 0));
        }
        if let Some(bridge) = self
            .static_bridge
            .as_deref()
            .filter(|_| !self.peers.is_empty())
        {
            local(&mut want, bridge, 0);
        }
        for (subnet, node) in &self.peers {
            want.insert(key(subnet), route(CLUSTER_HOST_GW, *node, 0, 0));
            want.insert(node_key(*node), route(CLUSTER_NODE, *node, 0, 0));
        }
        for net in &self.networks {
            let Some((cfg, own)) = &net.joined else {
                continue;
            };
            want.insert(
                key(&cidr(&cfg.cidr)),
                route(CLUSTER_ROUTED, none, cfg.vni, 0),
            );
            local(&mut want, &net.bridge, cfg.vni);
            let (kind, ifindex) = match cfg.mode {
                Mode::HostGw => (CLUSTER_HOST_GW, 0),
                Mode::Vxlan => (CLUSTER_VXLAN, self.vxlan),
            };
            for n in net
                .nodes
                .iter()
                .filter(|n| key(&cidr(&n.subnet)) != key(own))
            {
                want.insert(
                    key(&cidr(&n.subnet)),
                    route(kind, n.underlay, cfg.vni, ifindex),
                );
                want.insert(node_key(n.underlay), route(CLUSTER_NODE, n.underlay, 0, 0));
            }
        }
        want
    }

    /// `cluster_v1`'s entries, as `bpfnet ls` shows them.
    pub fn route_lines(&self) -> Vec<ClusterRouteLine> {
        self.routes()
            .iter()
            .map(|(&(len, net), r)| ClusterRouteLine {
                prefix: Ipv4Cidr {
                    addr: Ipv4Addr::from(u32::from_be(net)),
                    len: u8::try_from(len).unwrap_or(32),
                },
                kind: match r.kind {
                    CLUSTER_HOST_GW => "host-gw",
                    CLUSTER_VXLAN => "vxlan",
                    CLUSTER_NODE => "node",
                    _ => "routed",
                }
                .into(),
                node: (r.node != 0).then(|| Ipv4Addr::from(u32::from_be(r.node))),
                vni: r.vni,
            })
            .collect()
    }

    /// What `bpfnet node ls` shows.
    pub fn listing(&self) -> NodeListing {
        let networks = self
            .networks
            .iter()
            .map(|net| NetworkListing {
                bridge: net.bridge.clone(),
                prefix: net.prefix.clone(),
                this: net.joined.as_ref().zip(self.name.as_ref()).map(
                    |((cfg, own), (name, underlay))| ThisNode {
                        name: name.clone(),
                        subnet: Ipv4Net::new(own.addr, own.len).unwrap_or(cfg.cidr),
                        underlay: *underlay,
                        mode: cfg.mode,
                        vni: cfg.vni,
                        gateway: gateway_of(own),
                    },
                ),
                nodes: net.nodes.clone(),
                etcd_connected: net.connected,
            })
            .collect();
        NodeListing {
            networks,
            cluster_cidr: self.cidr,
            static_peers: self.peers.clone(),
        }
    }
}

impl Daemon {
    pub(super) fn node_listing(&self) -> NodeListing {
        self.cluster.listing()
    }

    /// Make `cluster_v1` hold the cluster's routes; flows' remembered hops are
    /// looked up again when any changed.
    pub(super) fn sync_cluster(&mut self) {
        let want = self.cluster.routes();
        let synced = sync(&mut self.dp.maps.cluster, &want);
        let changed = synced.written + synced.removed > 0;
        super::report("cluster", synced);
        if changed {
            self.bump_route_gen();
        }
    }

    /// What etcd (or the persisted view of it) says of network `index`.
    pub(super) async fn on_cluster(&mut self, index: usize, event: ClusterEvent) {
        let Some(net) = self.cluster.networks.get_mut(index) else {
            return;
        };
        match event {
            ClusterEvent::Joined { config, subnet } => {
                let own = cidr(&subnet);
                info!(bridge = %net.bridge, subnet = %own, mode = %config.mode, vni = config.vni, "cluster node prefix");
                let vxlan = config.mode == Mode::Vxlan;
                net.joined = Some((config, own));
                let bridge = net.bridge.clone();
                self.set_cluster_gateway(&bridge, own).await;
                if vxlan {
                    self.ensure_vxlan().await;
                }
                self.sync_peer_routes().await;
            }
            ClusterEvent::Peers(nodes) => {
                info!(bridge = %net.bridge, peers = nodes.len(), "cluster peers");
                let marks = seen(net.listed.then_some(net.nodes.as_slice()), &nodes);
                net.nodes = nodes;
                net.listed = true;
                let renewed = marks.values().any(|s| *s == Seen::Renewed);
                for (addr, s) in marks {
                    let mark = self.cluster.seen.entry(addr).or_insert(s);
                    *mark = (*mark).max(s);
                }
                self.sync_cluster();
                if renewed {
                    // What flows remember of a node that registered anew may be its old
                    // interface's.
                    self.bump_route_gen();
                }
                self.sync_peer_neighbours().await;
                return self.sync_peer_routes().await;
            }
            ClusterEvent::Connected(up) => {
                if up != net.connected {
                    if up {
                        info!(prefix = %net.prefix, "etcd reachable");
                    } else {
                        warn!(prefix = %net.prefix, "etcd unreachable: keeping the last-known peers");
                    }
                }
                net.connected = up;
                return;
            }
        }
        self.sync_cluster();
    }
}
