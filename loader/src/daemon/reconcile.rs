//! One level-triggered reconcile, run after every event (netlink, Docker, API, cluster,
//! timer): events only record what they saw (the inputs, and which observations of the
//! host are stale); `reconcile` reads the stale ones again and lets each part bring its
//! slice of the datapath and the host in line. A part whose inputs equal those of its
//! last clean apply skips its work, so an event that changes nothing costs little.
use std::mem::take;

use super::{Daemon, interfaces, subnets};

/// Observations of the host an event made stale: reconcile reads them again.
#[derive(Debug, Default)]
pub(super) struct Stale {
    /// The host's addresses (one dump serves `host_ips`, the subnets and the peers).
    pub addresses: bool,
    /// The main table's routes to the cluster CIDR.
    pub routes: bool,
    /// A device the peers' neighbour entries are on came or went.
    pub peer_links: bool,
    /// The next hops flows remember (any netlink change, a peer registered anew, an
    /// endpoint or a cluster route changed): bumped once, at the end.
    pub hops: bool,
}

impl Stale {
    /// Everything, as at start.
    pub(super) fn all() -> Self {
        Self {
            addresses: true,
            routes: true,
            peer_links: true,
            hops: false,
        }
    }
}

impl Daemon {
    /// Make every part apply in full at the next reconcile, and read the host's
    /// addresses and routes again: what was changed by hand (a map entry removed, a
    /// route or proxy entry deleted) is repaired, not only what an event changed.
    pub(super) fn forget_applied(&mut self) {
        self.stale.addresses = true;
        self.stale.routes = true;
        self.stale.peer_links = true;
        self.parts.interfaces.forget();
        self.parts.subnets.forget();
        self.parts.publishes.forget();
        self.parts.endpoints.forget();
        self.parts.cluster_setup.forget();
        self.parts.cluster_maps.forget();
        self.parts.peers.forget();
        self.parts.ndp_proxies.forget();
    }

    /// Bring every part in line with the inputs as they stand now. In dependency
    /// order: the links (which programs, which bridges), then what the addresses say
    /// (host addresses, subnets, the cluster bridges' prefixes), the cluster's setup on
    /// the host (gateway addresses, VXLAN device), the publishes, the endpoints, the
    /// cluster's routes, the peers' neighbours and routes, and last the NDP proxies,
    /// which read the maps the others wrote.
    pub(super) async fn reconcile(&mut self) {
        // Docker's networks in use are managed bridges.
        self.adopt_docker_bridges();
        self.apply_links();
        // The subnets sort the addresses by bridge and LAN: read them again when those
        // changed too.
        if self
            .parts
            .subnets
            .resort(subnets::sorted_by(&self.host.links))
        {
            self.stale.addresses = true;
        }
        if take(&mut self.stale.addresses) {
            self.sync_addresses().await;
        }
        self.setup_cluster().await;
        if take(&mut self.stale.routes) {
            self.refresh_cidr_routes().await;
        }
        self.sync_published();
        self.sync_endpoints();
        self.sync_cluster();
        self.sync_peers().await;
        self.sync_ndp_proxies().await;
        if take(&mut self.stale.hops) {
            interfaces::bump_route_gen(&mut self.dp.maps);
        }
    }
}
