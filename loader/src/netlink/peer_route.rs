//! The kernel routes bpfnet installs to the cluster's peer prefixes, so the host's own
//! processes reach other nodes' containers (the datapath routes the containers' packets
//! itself): `PREFIX via NODE dev UNDERLAY proto 98` for a host-gw peer, `PREFIX dev
//! bpfnet-vxlan src GATEWAY proto 98` for a VXLAN one. Marked with
//! bpfnet's protocol (as its neighbour entries are), so it finds and removes exactly
//! its own.
use std::net::Ipv4Addr;

use futures::TryStreamExt as _;
use rtnetlink::{
    RouteMessageBuilder,
    packet_route::route::{
        RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
    },
};

use super::{Netlink, NetlinkError, neigh::PROTOCOL, req};

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

impl ListedRoute {
    fn from_message(m: &RouteMessage) -> Option<Self> {
        if m.header.table != RouteHeader::RT_TABLE_MAIN {
            return None;
        }
        let mut dst = Ipv4Addr::UNSPECIFIED;
        let mut gateway = None;
        let mut ifindex = 0;
        let mut src = None;
        for a in &m.attributes {
            match a {
                RouteAttribute::Destination(RouteAddress::Inet(ip)) => dst = *ip,
                RouteAttribute::Gateway(RouteAddress::Inet(ip)) => gateway = Some(*ip),
                RouteAttribute::Oif(i) => ifindex = *i,
                RouteAttribute::PrefSource(RouteAddress::Inet(ip)) => src = Some(*ip),
                _ => {}
            }
        }
        Some(Self {
            route: PeerRoute {
                prefix: (dst, m.header.destination_prefix_length),
                gateway,
                ifindex,
                src,
            },
            ours: m.header.protocol == RouteProtocol::Other(PROTOCOL),
        })
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
    /// Every IPv4 route of the main table.
    pub async fn routes(&self) -> Result<Vec<ListedRoute>, NetlinkError> {
        let msgs: Vec<RouteMessage> = self
            .handle
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute()
            .try_collect()
            .await
            .map_err(req("route dump"))?;
        Ok(msgs.iter().filter_map(ListedRoute::from_message).collect())
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
