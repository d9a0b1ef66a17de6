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

use common::{
    Be32, CLUSTER_HOST_GW, CLUSTER_NODE, CLUSTER_ON_LINK, CLUSTER_ROUTED, CLUSTER_VXLAN,
    ClusterRoute, Ip6,
};
use tracing::{info, warn};

use super::{
    Daemon,
    peer_neigh::{Seen, seen},
};
use crate::{
    api::{ClusterRouteLine, NetworkListing, NodeListing, RouteKind, ThisNode},
    cluster::{ClusterConfig, ClusterEvent, Conflict, Ipv4Net, Ipv6Net, Mode, Node, net, net6},
    datapath::{Datapath, sync::sync},
    endpoint::Ipv4Cidr,
    netlink::{Hop, Route4},
};

/// What the daemon knows of its cluster.
#[derive(Debug, Default)]
pub(super) struct Cluster {
    /// `--cluster-cidr`: container prefixes the network routes to each host.
    pub cidr: Option<Ipv4Cidr>,
    /// The main table's routes that cover or lie inside `cidr` (not the default
    /// route): the next hops its sources are admitted from.
    pub cidr_routes: Vec<Route4>,
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
    /// This node's IPv6 prefix, once known (dual stack).
    pub own6: Option<Ipv6Net>,
    /// The other nodes, as last seen (kept while etcd is unreachable).
    pub nodes: Vec<Node>,
    /// The node entries not believed, as last judged.
    pub conflicts: Vec<Conflict>,
    /// Whether a peer list came since start (the persisted one counts).
    pub listed: bool,
    /// Whether etcd answers now.
    pub connected: bool,
}

impl Network {
    pub(super) fn new(bridge: String, prefix: String) -> Self {
        Self {
            bridge,
            prefix,
            joined: None,
            own6: None,
            nodes: Vec::new(),
            conflicts: Vec::new(),
            listed: false,
            connected: false,
        }
    }
}

/// A prefix as `cluster_v1` keys it: (length, address).
pub(super) type Key = (u32, Be32);

fn key(c: &Ipv4Cidr) -> Key {
    let n = c.net();
    (u32::from(n.prefix_len()), Be32::from(n.network()))
}

/// A prefix as `cluster6_v1` keys it: (length, address).
pub(super) type Key6 = (u32, Ip6);

/// What `cluster_v1` and `cluster6_v1` hold.
pub(super) type Routes = (BTreeMap<Key, ClusterRoute>, BTreeMap<Key6, ClusterRoute>);

fn key6(n: &Ipv6Net) -> Key6 {
    (u32::from(n.prefix_len()), Ip6::from(n.addr()))
}

fn node_key(ip: Ipv4Addr) -> Key {
    (32, Be32::from(ip))
}

/// `Ipv4Net` (etcd's) as `Ipv4Cidr` (the daemon's).
pub(super) fn cidr(n: &Ipv4Net) -> Ipv4Cidr {
    Ipv4Cidr::from(*n)
}

/// The first address of prefix `c`: its gateway.
pub(super) fn gateway_of(c: &Ipv4Cidr) -> Ipv4Addr {
    Ipv4Addr::from(key(c).1.get().wrapping_add(1))
}

fn route(kind: u32, node: Ipv4Addr, vni: u32, ifindex: u32) -> ClusterRoute {
    ClusterRoute {
        node: Be32::from(node),
        vni,
        kind,
        ifindex,
    }
}

/// A route's next hop as `ClusterRoute::node` of a routed prefix holds it.
fn hop_of(r: &Route4) -> Be32 {
    match r.hop {
        Hop::Gateway(g) => Be32::from(g),
        Hop::OnLink => CLUSTER_ON_LINK,
        Hop::Many => Be32::ZERO,
    }
}

/// Whether `inner` lies within `outer` (or is it).
fn within(inner: (Ipv4Addr, u8), outer: (Ipv4Addr, u8)) -> bool {
    net::network(outer.0, outer.1)
        .zip(net::network(inner.0, inner.1))
        .is_some_and(|(o, i)| o.contains(&i))
}

/// The routes of `routes` that matter to cluster CIDR `c`: not the default route, nor
/// one onto a bridge of this host (`local`: its own containers' prefix, which never
/// comes from outside), and covering `c` or inside it.
pub(super) fn cidr_routes(c: &Ipv4Cidr, routes: &[Route4], local: &[u32]) -> Vec<Route4> {
    let c = (c.addr(), c.prefix_len());
    routes
        .iter()
        .filter(|r| r.unicast && r.oif.is_none_or(|i| !local.contains(&i)))
        .filter(|r| r.len > 0 && (within(c, (r.dst, r.len)) || within((r.dst, r.len), c)))
        .copied()
        .collect()
}

/// The routed entries of cluster CIDR `c`, by the host's routes to it (`cidr_routes`):
/// `c` itself with the next hop of the most specific route that covers it (none: 0,
/// its sources refused), and each route inside it with its own.
fn routed_hops(c: &Ipv4Cidr, routes: &[Route4]) -> Vec<(Key, Be32)> {
    let covering = routes
        .iter()
        .filter(|r| within((c.addr(), c.prefix_len()), (r.dst, r.len)))
        .max_by_key(|r| r.len);
    let inside = routes
        .iter()
        .filter(|r| r.len > c.prefix_len())
        .filter_map(|r| Some((key(&Ipv4Cidr::new(r.dst, r.len)?), hop_of(r))));
    std::iter::once((key(c), covering.map_or(Be32::ZERO, hop_of)))
        .chain(inside)
        .collect()
}

impl Cluster {
    /// The bridges whose containers are the cluster's.
    pub(super) fn bridges(&self) -> impl Iterator<Item = &str> {
        self.static_bridge
            .iter()
            .map(String::as_str)
            .chain(self.networks.iter().map(|n| n.bridge.as_str()))
    }

    /// Whether `bridge` waits for an etcd network's node prefix before it is created.
    pub(super) fn awaits_prefix(&self, bridge: &str) -> bool {
        self.networks.iter().any(|n| n.bridge == bridge)
    }

    /// Every entry `cluster_v1` should hold. A node's own prefix is its bridge's.
    pub(super) fn routes(&self) -> BTreeMap<Key, ClusterRoute> {
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
        let routed = self
            .cidr
            .iter()
            .flat_map(|c| routed_hops(c, &self.cidr_routes));
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
        // A routed source only from the next hop the host's route to it names; what
        // holds a prefix of its own (a peer, a bridge here) keeps its entry.
        for (k, hop) in routed {
            let r = want.entry(k).or_insert(route(CLUSTER_ROUTED, none, 0, 0));
            if r.kind == CLUSTER_ROUTED && r.vni == 0 {
                r.node = hop;
            }
        }
        want
    }

    /// What `bpfnet status` says of the cluster CIDR: a warning when no route more
    /// specific than the default leads to it.
    pub(super) fn cidr_warning(&self) -> Option<String> {
        let c = self.cidr.as_ref()?;
        self.cidr_routes.is_empty().then(|| {
            format!(
                "cluster CIDR {c} has no route more specific than the default; routed sources from it are refused"
            )
        })
    }

    /// Every entry `cluster6_v1` should hold (dual stack): each etcd network's IPv6
    /// CIDR (which holds this node's own prefix) and every other node's IPv6 prefix, to
    /// its IPv4 underlay address. Nodes have no IPv6 entries: the underlay is IPv4.
    pub(super) fn routes6(&self) -> BTreeMap<Key6, ClusterRoute> {
        let mut want = BTreeMap::new();
        for net in &self.networks {
            let Some((cfg, _)) = &net.joined else {
                continue;
            };
            let Some(cidr6) = cfg.cidr6 else {
                continue;
            };
            want.insert(
                key6(&cidr6),
                route(CLUSTER_ROUTED, Ipv4Addr::UNSPECIFIED, cfg.vni, 0),
            );
            let (kind, ifindex) = match cfg.mode {
                Mode::HostGw => (CLUSTER_HOST_GW, 0),
                Mode::Vxlan => (CLUSTER_VXLAN, self.vxlan),
            };
            for (n, s6) in net.nodes.iter().filter_map(|n| Some((n, n.subnet6?))) {
                if net.own6.is_some_and(|o| net6::overlaps(&o, &s6)) || !cfg.is_node_subnet6(&s6) {
                    continue;
                }
                want.insert(key6(&s6), route(kind, n.underlay, cfg.vni, ifindex));
            }
        }
        want
    }

    /// `cluster_v1`'s entries, as `bpfnet ls` shows them.
    pub(super) fn route_lines(&self) -> Vec<ClusterRouteLine> {
        self.routes()
            .iter()
            .filter_map(|(&(len, net), r)| {
                let len = u8::try_from(len).map_or(32, |l| l.min(32));
                let prefix = Ipv4Cidr::new(Ipv4Addr::from(net), len)?;
                Some((prefix, r))
            })
            .map(|(prefix, r)| ClusterRouteLine {
                prefix,
                kind: RouteKind::of(r.kind),
                node: (r.node != Be32::ZERO && r.node != CLUSTER_ON_LINK)
                    .then(|| Ipv4Addr::from(r.node)),
                vni: r.vni,
            })
            .collect()
    }

    /// What `bpfnet node ls` shows.
    pub(super) fn listing(&self) -> NodeListing {
        let networks = self
            .networks
            .iter()
            .map(|net| NetworkListing {
                bridge: net.bridge.clone(),
                prefix: net.prefix.clone(),
                this: net.joined.as_ref().zip(self.name.as_ref()).map(
                    |((cfg, own), (name, underlay))| ThisNode {
                        name: name.clone(),
                        subnet: own.net(),
                        underlay: *underlay,
                        mode: cfg.mode,
                        vni: cfg.vni,
                        gateway: gateway_of(own),
                        subnet6: net.own6,
                        gateway6: net.own6.map(|s| net6::gateway(&s)),
                    },
                ),
                nodes: net.nodes.clone(),
                conflicts: net.conflicts.clone(),
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

/// The cluster routes part: owns `cluster_v1` and `cluster6_v1`.
#[derive(Debug, Default)]
pub(super) struct ClusterMaps {
    /// The routes last written in full (None: none yet, or a write failed).
    applied: Option<Routes>,
}

impl ClusterMaps {
    /// Write `want` unless it is what was last written in full; whether an entry
    /// changed.
    pub(super) fn reconcile(&mut self, dp: &mut Datapath, want: Routes) -> bool {
        if self.applied.as_ref() == Some(&want) {
            return false;
        }
        let synced = sync(&mut dp.maps.cluster, &want.0);
        let mut changed = synced.written + synced.removed > 0;
        let mut clean = synced.errors.is_empty();
        super::report("cluster", synced);
        let synced = sync(&mut dp.maps.cluster6, &want.1);
        changed |= synced.written + synced.removed > 0;
        clean &= synced.errors.is_empty();
        super::report("IPv6 cluster", synced);
        self.applied = clean.then_some(want);
        changed
    }

    /// Write the maps again at the next reconcile, whatever it wants.
    pub(super) fn forget(&mut self) {
        self.applied = None;
    }
}

impl Daemon {
    pub(super) fn node_listing(&self) -> NodeListing {
        self.cluster.listing()
    }

    /// Read again the host's routes to the cluster CIDR (`--cluster-cidr`).
    pub(super) async fn refresh_cidr_routes(&mut self) {
        let Some(c) = self.cluster.cidr else {
            return;
        };
        match self.nl.routes4().await {
            Ok(all) => {
                let bridges: Vec<u32> = self.host.links.bridges().map(|l| l.index).collect();
                let routes = cidr_routes(&c, &all, &bridges);
                if routes != self.cluster.cidr_routes {
                    info!(cidr = %c, routes = ?routes, "routes to the cluster CIDR");
                    self.cluster.cidr_routes = routes;
                }
            }
            Err(e) => warn!(error = %e, "cannot read the routes to the cluster CIDR"),
        }
    }

    /// Make `cluster_v1` and `cluster6_v1` hold the cluster's routes; flows'
    /// remembered hops are looked up again when any changed.
    pub(super) fn sync_cluster(&mut self) {
        let want = (self.cluster.routes(), self.cluster.routes6());
        self.stale.hops |= self.parts.cluster_maps.reconcile(&mut self.dp, want);
    }

    /// Note what etcd (or the persisted view of it) says of network `index`; `reconcile`
    /// acts on it (a node prefix's gateway addresses and VXLAN device: `cluster_setup`).
    pub(super) fn on_cluster(&mut self, index: usize, event: ClusterEvent) {
        let Some(net) = self.cluster.networks.get_mut(index) else {
            return;
        };
        match event {
            ClusterEvent::Joined {
                config,
                subnet,
                subnet6,
            } => {
                let own = cidr(&subnet);
                info!(bridge = %net.bridge, subnet = %own, ?subnet6, mode = %config.mode, vni = config.vni, "cluster node prefix");
                net.joined = Some((config, own));
                net.own6 = subnet6;
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
                // What flows remember of a node that registered anew may be its old
                // interface's.
                self.stale.hops |= renewed;
            }
            ClusterEvent::Conflicts(conflicts) => net.conflicts = conflicts,
            ClusterEvent::Connected(up) => {
                if up != net.connected {
                    if up {
                        info!(prefix = %net.prefix, "etcd reachable");
                    } else {
                        warn!(prefix = %net.prefix, "etcd unreachable: keeping the last-known peers");
                    }
                }
                net.connected = up;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(dst: [u8; 4], len: u8, hop: Hop) -> Route4 {
        Route4 {
            dst: Ipv4Addr::from(dst),
            len,
            hop,
            oif: Some(2),
            src: None,
            unicast: true,
            ours: false,
        }
    }

    fn cidr16() -> Ipv4Cidr {
        "10.244.0.0/16".parse().expect("cidr")
    }

    #[test]
    fn a_cidr_reached_by_the_default_route_alone_admits_nothing() {
        let gw = Hop::Gateway(Ipv4Addr::new(192, 0, 2, 254));
        let all = [
            r([0, 0, 0, 0], 0, gw),
            r([192, 0, 2, 0], 24, Hop::OnLink),
            // This host's own bridge, inside the CIDR.
            Route4 {
                oif: Some(7),
                ..r([10, 244, 9, 0], 24, Hop::OnLink)
            },
        ];
        let routes = cidr_routes(&cidr16(), &all, &[7]);
        assert!(routes.is_empty(), "{routes:?}");
        assert_eq!(
            routed_hops(&cidr16(), &routes),
            [(key(&cidr16()), Be32::ZERO)]
        );
        let c = Cluster {
            cidr: Some(cidr16()),
            ..Default::default()
        };
        assert!(
            c.cidr_warning()
                .is_some_and(|w| w.contains("10.244.0.0/16"))
        );
    }

    #[test]
    fn each_route_to_the_cidr_names_its_next_hop() {
        let via = |d: u8| Hop::Gateway(Ipv4Addr::new(192, 0, 2, d));
        let all = [
            r([0, 0, 0, 0], 0, via(254)),
            r([10, 0, 0, 0], 8, via(253)),
            r([10, 244, 1, 0], 24, via(1)),
            r([10, 244, 2, 0], 24, Hop::OnLink),
            r([10, 244, 3, 0], 24, Hop::Many),
            r([172, 16, 0, 0], 12, via(9)),
        ];
        let routes = cidr_routes(&cidr16(), &all, &[7]);
        assert_eq!(routes.len(), 4, "{routes:?}");
        let hops = routed_hops(&cidr16(), &routes);
        let at = |s: &str| key(&s.parse().expect("cidr"));
        let be = |d: u8| Be32::from(Ipv4Addr::new(192, 0, 2, d));
        assert_eq!(
            hops,
            [
                (at("10.244.0.0/16"), be(253)),
                (at("10.244.1.0/24"), be(1)),
                (at("10.244.2.0/24"), CLUSTER_ON_LINK),
                (at("10.244.3.0/24"), Be32::ZERO),
            ]
        );
        let c = Cluster {
            cidr: Some(cidr16()),
            cidr_routes: routes,
            ..Default::default()
        };
        assert_eq!(c.cidr_warning(), None);
        let want = c.routes();
        assert_eq!(want[&at("10.244.1.0/24")].node, be(1));
        assert_eq!(want[&at("10.244.1.0/24")].kind, CLUSTER_ROUTED);
    }

    fn node(name: &str, i: u8, subnet6: Option<&str>) -> Node {
        Node {
            name: name.into(),
            subnet: format!("10.244.{i}.0/24").parse().expect("net"),
            underlay: Ipv4Addr::new(192, 0, 2, i),
            mode: Mode::Vxlan,
            vni: 7,
            alive: true,
            last_seen: 1,
            mac: None,
            incarnation: 1,
            subnet6: subnet6.map(|s| s.parse().expect("net")),
        }
    }

    #[test]
    fn ipv6_prefixes_go_to_their_nodes_ipv4_underlay_and_never_to_this_node() {
        let cfg = ClusterConfig {
            vni: 7,
            cidr6: Some("fd00:10:244::/48".parse().expect("net")),
            ..ClusterConfig::new("10.244.0.0/16".parse().expect("net"), 24, Mode::Vxlan)
        };
        let mut net = Network::new("br0".into(), "/bpfnet".into());
        net.joined = Some((cfg.clone(), cidr(&"10.244.1.0/24".parse().expect("net"))));
        net.own6 = Some("fd00:10:244:1::/64".parse().expect("net"));
        net.nodes = vec![
            node("h2", 2, Some("fd00:10:244:2::/64")),
            // Outside the IPv6 CIDR, or this node's own: no route.
            node("h3", 3, Some("fd00:99::/64")),
            node("h4", 4, Some("fd00:10:244:1::/64")),
            node("h5", 5, None),
        ];
        let c = Cluster {
            networks: vec![net],
            vxlan: 9,
            ..Cluster::default()
        };
        let want = c.routes6();
        let k = |s: &str| key6(&s.parse().expect("net"));
        assert_eq!(want.len(), 2, "{want:?}");
        assert_eq!(
            want[&k("fd00:10:244::/48")],
            route(CLUSTER_ROUTED, Ipv4Addr::UNSPECIFIED, 7, 0)
        );
        assert_eq!(
            want[&k("fd00:10:244:2::/64")],
            route(CLUSTER_VXLAN, Ipv4Addr::new(192, 0, 2, 2), 7, 9)
        );
        // An IPv4-only config has no IPv6 entries.
        let mut v4 = c;
        v4.networks[0].joined.as_mut().expect("joined").0.cidr6 = None;
        assert!(v4.routes6().is_empty());
    }
}
