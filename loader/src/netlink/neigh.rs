//! IPv4 neighbour entries of the cluster's peer nodes. bpfnet makes them *managed*
//! (`ip neigh replace ADDR dev DEV managed`): the kernel resolves such an entry at once
//! and keeps it resolved, which the datapath needs because `bpf_fib_lookup` and
//! `bpf_redirect` never make the kernel resolve or confirm a neighbour by themselves.
use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt as _;
use rtnetlink::packet_route::{
    AddressFamily,
    neighbour::{
        NeighbourAddress, NeighbourAttribute, NeighbourExtFlags, NeighbourFlags, NeighbourMessage,
        NeighbourState,
    },
    route::RouteProtocol,
};

use super::{Netlink, NetlinkError, req};

/// The protocol bpfnet marks its entries with (`ip -d neigh` shows `proto 98`):
/// unassigned in iproute2's and FRR's lists.
pub(super) const PROTOCOL: u8 = 98;

/// An IPv4 neighbour entry, as far as bpfnet cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Neighbour {
    pub ifindex: u32,
    pub addr: Ipv4Addr,
    /// The link-layer address it holds (none while unresolved, or on a device without).
    pub mac: Option<[u8; 6]>,
    /// Set by hand (`nud permanent`): the kernel never resolves it again by itself.
    pub permanent: bool,
    /// Kept resolved by the kernel.
    pub managed: bool,
    /// Made by bpfnet, and still managed (an entry someone pinned since is theirs).
    pub ours: bool,
}

impl Neighbour {
    fn from_message(m: &NeighbourMessage) -> Option<Self> {
        let mut marked = false;
        let mut n = Self {
            ifindex: m.header.ifindex,
            addr: Ipv4Addr::UNSPECIFIED,
            mac: None,
            permanent: m.header.state == NeighbourState::Permanent,
            managed: false,
            ours: false,
        };
        for a in &m.attributes {
            match a {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => n.addr = *ip,
                NeighbourAttribute::LinkLayerAddress(mac) => n.mac = mac.as_slice().try_into().ok(),
                NeighbourAttribute::ExtFlags(f) => {
                    n.managed = f.contains(NeighbourExtFlags::Managed);
                }
                NeighbourAttribute::Protocol(p) => marked = *p == RouteProtocol::Other(PROTOCOL),
                _ => {}
            }
        }
        n.ours = marked && n.managed;
        (!n.addr.is_unspecified()).then_some(n)
    }
}

impl Netlink {
    /// Every IPv4 neighbour entry (proxies aside).
    pub async fn neighbours(&self) -> Result<Vec<Neighbour>, NetlinkError> {
        let msgs = self
            .neighbour_dump(AddressFamily::Inet, false, "neighbour dump")
            .await?;
        Ok(msgs.iter().filter_map(Neighbour::from_message).collect())
    }

    /// Every neighbour entry of `family`, or with `proxies` every proxy entry.
    pub(super) async fn neighbour_dump(
        &self,
        family: AddressFamily,
        proxies: bool,
        what: &'static str,
    ) -> Result<Vec<NeighbourMessage>, NetlinkError> {
        let mut get = self.handle.neighbours().get();
        if proxies {
            get = get.proxies();
        }
        get.set_address_family(family)
            .execute()
            .try_collect()
            .await
            .map_err(req(what))
    }

    /// Make the entry for `addr` on `ifindex` a managed one of bpfnet's, created when
    /// missing. The kernel resolves it at once when it holds no address (an existing
    /// one, a permanent one's too, is kept and probed).
    pub async fn manage_neighbour(&self, ifindex: u32, addr: Ipv4Addr) -> Result<(), NetlinkError> {
        let mut add = self
            .handle
            .neighbours()
            .add(ifindex, IpAddr::V4(addr))
            // Not the request's default, permanent: the kernel refuses a managed one.
            .state(NeighbourState::None)
            .replace();
        let attrs = &mut add.message_mut().attributes;
        attrs.push(NeighbourAttribute::ExtFlags(NeighbourExtFlags::Managed));
        attrs.push(NeighbourAttribute::Protocol(RouteProtocol::Other(PROTOCOL)));
        add.execute()
            .await
            .map_err(req(format!("manage neighbour {addr} on {ifindex}")))
    }

    /// Remove the entry for `addr` on `ifindex`, whatever its state.
    pub async fn del_neighbour(&self, ifindex: u32, addr: Ipv4Addr) -> Result<(), NetlinkError> {
        let mut msg = NeighbourMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.ifindex = ifindex;
        msg.header.flags = NeighbourFlags::empty();
        msg.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(
                addr,
            )));
        self.handle
            .neighbours()
            .del(msg)
            .execute()
            .await
            .map_err(req(format!("delete neighbour {addr} on {ifindex}")))
    }
}
