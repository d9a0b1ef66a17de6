//! Link, IPv4 address, IPv4 route and neighbour change notifications.
use futures::{Stream, StreamExt as _, future};
use rtnetlink::{
    MulticastGroup,
    packet_core::NetlinkPayload,
    packet_route::{AddressFamily, RouteNetlinkMessage},
};

use super::{Link, NetlinkError};

/// A change the daemon reacts to.
#[derive(Debug)]
pub enum Change {
    /// A link appeared or changed (e.g. was enslaved to a bridge).
    LinkNew(Link),
    /// A link was removed.
    LinkDel { index: u32 },
    /// An address (either family) was added or removed somewhere.
    Addresses,
    /// An IPv4 route changed: next hops flows remember may be stale, and the routes to
    /// the cluster CIDR may be others.
    Routes,
    /// A neighbour changed: next hops flows remember may be stale.
    Neighbours,
}

/// Subscribe to link, IPv4 and IPv6 address, IPv4 route and neighbour notifications.
pub fn monitor() -> Result<impl Stream<Item = Change> + Unpin, NetlinkError> {
    let (conn, _handle, messages) = rtnetlink::new_multicast_connection(&[
        MulticastGroup::Link,
        MulticastGroup::Ipv4Ifaddr,
        MulticastGroup::Ipv6Ifaddr,
        MulticastGroup::Ipv4Route,
        MulticastGroup::Neigh,
    ])?;
    tokio::spawn(conn);
    Ok(messages.filter_map(|(msg, _)| {
        future::ready(match msg.payload {
            // Bridge port notifications (AF_BRIDGE) carry the port's bridge state but no
            // link kind: they say nothing about whether the link is a veth.
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(m))
                if m.header.interface_family == AddressFamily::Unspec =>
            {
                Link::from_message(&m).map(Change::LinkNew)
            }
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(m)) => {
                Some(Change::LinkDel {
                    index: m.header.index,
                })
            }
            NetlinkPayload::InnerMessage(
                RouteNetlinkMessage::NewAddress(_) | RouteNetlinkMessage::DelAddress(_),
            ) => Some(Change::Addresses),
            NetlinkPayload::InnerMessage(
                RouteNetlinkMessage::NewRoute(_) | RouteNetlinkMessage::DelRoute(_),
            ) => Some(Change::Routes),
            NetlinkPayload::InnerMessage(
                RouteNetlinkMessage::NewNeighbour(_) | RouteNetlinkMessage::DelNeighbour(_),
            ) => Some(Change::Neighbours),
            _ => None,
        })
    }))
}
