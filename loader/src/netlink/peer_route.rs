//! The kernel routes bpfnet installs to the cluster's peer prefixes, so the host's own
//! processes reach other nodes' containers (the datapath routes the containers' packets
//! itself): `PREFIX via NODE dev UNDERLAY proto 98` for a host-gw peer, `PREFIX dev
//! bpfnet-vxlan src GATEWAY proto 98` for a VXLAN one. Marked with
//! bpfnet's protocol (as its neighbour entries are), so it finds and removes exactly
//! its own.
use std::net::Ipv4Addr;

use rtnetlink::{
    RouteMessageBuilder,
    packet_route::route::{RouteMessage, RouteProtocol, RouteScope},
};

use super::{Hop, Netlink, NetlinkError, Route4, neigh::PROTOCOL, req};

/// An IPv4 route of the main table to a prefix through a gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PeerRoute {
    /// The prefix's network address and length.
    pub prefix: (Ipv4Addr, u8),
    /// The gateway (a peer node's underlay address); None: a route without one.
    pub gateway: Option<Ipv4Addr>,
    /// The output device.
    pub ifindex: u32,
    /// The preferred source address; None: the kernel's choice.
    pub src: Option<Ipv4Addr>,
}

/// A route of the main table as listed, and whether it is bpfnet's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListedRoute {
    pub route: PeerRoute,
    pub ours: bool,
}

impl From<&Route4> for ListedRoute {
    fn from(r: &Route4) -> Self {
        Self {
            route: PeerRoute {
                prefix: (r.dst, r.len),
                gateway: match r.hop {
                    Hop::Gateway(g) => Some(g),
                    Hop::OnLink | Hop::Many => None,
                },
                ifindex: r.oif.unwrap_or(0),
                src: r.src,
            },
            ours: r.ours,
        }
    }
}

fn message(r: &PeerRoute) -> RouteMessage {
    let mut b = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(r.prefix.0, r.prefix.1)
        .output_interface(r.ifindex)
        .protocol(RouteProtocol::Other(PROTOCOL));
    b = match r.gateway {
        Some(gw) => b.gateway(gw),
        // Straight out of the device (the tunnel's), as `ip route` makes it.
        None => b.scope(RouteScope::Link),
    };
    if let Some(src) = r.src {
        b = b.pref_source(src);
    }
    b.build()
}

impl Netlink {
    /// Every IPv4 route of the main table (`routes4`), as bpfnet's own routes are
    /// judged beside them.
    pub async fn routes(&self) -> Result<Vec<ListedRoute>, NetlinkError> {
        Ok(self
            .routes4()
            .await?
            .iter()
            .map(ListedRoute::from)
            .collect())
    }

    /// Install `r` as bpfnet's, replacing a route of bpfnet's to the same prefix.
    pub async fn set_peer_route(&self, r: &PeerRoute) -> Result<(), NetlinkError> {
        let (net, len) = r.prefix;
        self.handle
            .route()
            .add(message(r))
            .replace()
            .execute()
            .await
            .map_err(req(format!("route {net}/{len}")))
    }

    /// Remove bpfnet's route `r`.
    pub async fn del_peer_route(&self, r: &PeerRoute) -> Result<(), NetlinkError> {
        let (net, len) = r.prefix;
        self.handle
            .route()
            .del(message(r))
            .execute()
            .await
            .map_err(req(format!("delete route {net}/{len}")))
    }
}
