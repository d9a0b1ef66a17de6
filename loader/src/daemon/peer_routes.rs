//! Kernel routes to the peers' prefixes, for the host's own processes: the datapath
//! sends the containers' packets to another node itself (`cluster_v1`), but a socket
//! of the host is routed by the kernel, which knows no route to a peer's prefix. Each
//! host-gw peer on a directly connected prefix gets `PREFIX via NODE dev DEV proto 98`
//! (flannel's host-gw route), each VXLAN peer `PREFIX dev bpfnet-vxlan src GATEWAY proto
//! 98`: `to_tunnel` gives those packets their key, and their source, this node's
//! gateway in its own prefix, makes the answer come back through the tunnel. A route
//! goes when its peer does, and at `--cleanup`. A route to the same prefix that is not
//! bpfnet's is left alone.
use std::{collections::BTreeSet, net::Ipv4Addr};

use common::CLUSTER_HOST_GW;
use tracing::{debug, warn};

use super::{Daemon, cluster::gateway_of, peer_neigh::on_link};
use crate::{
    cluster::Mode,
    netlink::{ListedRoute, PeerRoute},
};

/// What to change: routes to install (or replace), and bpfnet's to remove.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Plan {
    pub set: Vec<PeerRoute>,
    pub remove: Vec<PeerRoute>,
}

/// The changes that make `have` hold `want`: a wanted route is installed unless bpfnet's
/// is there as wanted or someone else's holds the prefix; bpfnet's routes to prefixes no
/// longer wanted are removed.
pub(super) fn plan(want: &BTreeSet<PeerRoute>, have: &[ListedRoute]) -> Plan {
    let mut p = Plan::default();
    for w in want {
        match have.iter().find(|h| h.route.prefix == w.prefix) {
            Some(h) if !h.ours || h.route == *w => {}
            _ => p.set.push(*w),
        }
    }
    p.remove = have
        .iter()
        .filter(|h| h.ours && !want.iter().any(|w| w.prefix == h.route.prefix))
        .map(|h| h.route)
        .collect();
    p
}

impl Daemon {
    /// Bring bpfnet's routes to the peers' prefixes in line with `cluster_v1`: at start,
    /// after each change of the peers, and when addresses or a peer's device change.
    pub(super) async fn sync_peer_routes(&mut self) {
        let routes = self.cluster.routes();
        let peers: Vec<((Ipv4Addr, u8), Ipv4Addr)> = routes
            .iter()
            .filter(|(_, r)| r.kind == CLUSTER_HOST_GW)
            .filter_map(|(&(len, net), r)| {
                let prefix = (Ipv4Addr::from(net), u8::try_from(len).ok()?);
                Some((prefix, Ipv4Addr::from(r.node)))
            })
            .collect();
        let tunnelled = self.tunnelled_peers();
        let have = match self.nl.routes().await {
            Ok(have) => have,
            Err(e) => {
                warn!(error = %e, "cannot list the routes: the peers' routes left as they are");
                return;
            }
        };
        if peers.is_empty() && tunnelled.is_empty() && !have.iter().any(|h| h.ours) {
            return;
        }
        let prefixes = match self.nl.prefixes().await {
            Ok(p) => p,
            Err(e) => {
                warn!(error = %e, "cannot read the addresses: the peers' routes left as they are");
                return;
            }
        };
        let want: BTreeSet<PeerRoute> = peers
            .into_iter()
            .filter_map(|(prefix, node)| {
                Some(PeerRoute {
                    prefix,
                    gateway: Some(node),
                    ifindex: on_link(node, &prefixes)?,
                    src: None,
                })
            })
            .chain(tunnelled)
            .collect();
        let p = plan(&want, &have);
        for r in &p.set {
            debug!(route = ?r, "route to a peer's prefix");
            if let Err(e) = self.nl.set_peer_route(r).await {
                warn!(error = %e, "the host cannot reach a peer's containers");
            }
        }
        for r in &p.remove {
            debug!(route = ?r, "route to a prefix no longer a peer's removed");
            if let Err(e) = self.nl.del_peer_route(r).await {
                warn!(error = %e, "cannot remove the route to a former peer's prefix");
            }
        }
    }
}

impl Daemon {
    /// The routes into the tunnel: each VXLAN peer's prefix through the VXLAN device
    /// (while `to_tunnel` is on it), from this node's gateway in that network.
    pub(super) fn tunnelled_peers(&self) -> Vec<PeerRoute> {
        let ifindex = self.cluster.to_tunnel;
        if ifindex == 0 || ifindex != self.cluster.vxlan {
            return Vec::new();
        }
        let mut out = Vec::new();
        for net in &self.cluster.networks {
            let Some((_, own)) = net.joined.as_ref().filter(|(c, _)| c.mode == Mode::Vxlan) else {
                continue;
            };
            let src = gateway_of(own);
            let own = own.net();
            for n in net.nodes.iter().filter(|n| n.subnet != own) {
                out.push(PeerRoute {
                    prefix: (n.subnet.addr(), n.subnet.prefix_len()),
                    gateway: None,
                    ifindex,
                    src: Some(src),
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(net: [u8; 4], gw: u8) -> PeerRoute {
        PeerRoute {
            prefix: (Ipv4Addr::from(net), 24),
            gateway: Some(Ipv4Addr::new(192, 0, 2, gw)),
            ifindex: 3,
            src: None,
        }
    }

    fn listed(route: PeerRoute, ours: bool) -> ListedRoute {
        ListedRoute { route, ours }
    }

    #[test]
    fn a_peer_gets_its_route_and_keeps_it_while_it_stays() {
        let a = route([10, 244, 2, 0], 2);
        let want = BTreeSet::from([a]);
        assert_eq!(plan(&want, &[]).set, [a]);
        assert_eq!(plan(&want, &[listed(a, true)]), Plan::default());
        // Moved to another underlay address: bpfnet's route is replaced.
        let moved = route([10, 244, 2, 0], 9);
        assert_eq!(plan(&want, &[listed(moved, true)]).set, [a]);
        assert_eq!(plan(&want, &[listed(moved, true)]).remove, []);
    }

    #[test]
    fn only_bpfnets_routes_are_replaced_or_removed() {
        let a = route([10, 244, 2, 0], 2);
        let theirs = listed(route([10, 244, 2, 0], 7), false);
        assert_eq!(plan(&BTreeSet::from([a]), &[theirs]), Plan::default());
        let gone = route([10, 244, 3, 0], 3);
        let other = listed(route([10, 244, 4, 0], 4), false);
        let p = plan(&BTreeSet::new(), &[listed(gone, true), other]);
        assert_eq!(p.remove, [gone]);
        assert!(p.set.is_empty());
    }
}
