//! The main routing table's IPv4 routes, one dump for every reader: which next hop the
//! host's own route to a prefix names (the cluster's routed prefixes), and which
//! routes are bpfnet's own (`peer_route.rs`).
use std::net::Ipv4Addr;

use futures::TryStreamExt as _;
use rtnetlink::{
    RouteMessageBuilder,
    packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteProtocol, RouteType},
};

use super::{Netlink, NetlinkError, neigh::PROTOCOL, req};

/// One route of the main table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route4 {
    pub dst: Ipv4Addr,
    pub len: u8,
    pub hop: Hop,
    /// The interface it leaves by (None: several, or not said).
    pub oif: Option<u32>,
    /// The source address it prefers (None: the kernel's choice).
    pub src: Option<Ipv4Addr>,
    /// A unicast route (not a blackhole, unreachable, local... one).
    pub unicast: bool,
    /// bpfnet's own (its protocol, as its neighbour entries have).
    pub ours: bool,
}

/// Where a route sends its packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hop {
    /// Through a gateway.
    Gateway(Ipv4Addr),
    /// Straight onto a link: each destination is its own next hop.
    OnLink,
    /// Several next hops (multipath): no one of them is the route's.
    Many,
}

impl Netlink {
    /// The main table's IPv4 routes.
    pub async fn routes4(&self) -> Result<Vec<Route4>, NetlinkError> {
        let msgs: Vec<_> = self
            .handle
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute()
            .try_collect()
            .await
            .map_err(req("IPv4 route dump"))?;
        Ok(msgs
            .iter()
            .filter(|m| {
                let table = m.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Table(t) => Some(*t),
                    _ => None,
                });
                table.unwrap_or(u32::from(m.header.table)) == u32::from(RouteHeader::RT_TABLE_MAIN)
            })
            .map(|m| {
                let mut dst = Ipv4Addr::UNSPECIFIED;
                let mut hop = Hop::OnLink;
                let mut oif = None;
                let mut src = None;
                for a in &m.attributes {
                    match a {
                        RouteAttribute::Oif(i) => oif = Some(*i),
                        RouteAttribute::PrefSource(RouteAddress::Inet(s)) => src = Some(*s),
                        RouteAttribute::Destination(RouteAddress::Inet(d)) => dst = *d,
                        RouteAttribute::Gateway(RouteAddress::Inet(g)) => hop = Hop::Gateway(*g),
                        RouteAttribute::MultiPath(_) => hop = Hop::Many,
                        _ => {}
                    }
                }
                Route4 {
                    dst,
                    len: m.header.destination_prefix_length,
                    hop,
                    oif,
                    src,
                    unicast: m.header.kind == RouteType::Unicast,
                    ours: m.header.protocol == RouteProtocol::Other(PROTOCOL),
                }
            })
            .collect())
    }
}
