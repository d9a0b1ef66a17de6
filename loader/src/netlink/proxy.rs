//! IPv6 proxy neighbour entries (`ip -6 neigh add proxy ADDR dev DEV`): with
//! `proxy_ndp` on, the kernel answers the device's neighbour solicitations for them.
use std::{
    fs,
    net::{IpAddr, Ipv6Addr},
};

use rtnetlink::packet_route::{
    AddressFamily,
    neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourFlags},
    route::RouteProtocol,
};

use super::{Netlink, NetlinkError, neigh::PROTOCOL, req};

impl Netlink {
    /// Every IPv6 proxy entry: (ifindex, address).
    pub async fn ndp_proxies(&self) -> Result<Vec<(u32, Ipv6Addr)>, NetlinkError> {
        self.proxies(false).await
    }

    /// The IPv6 proxy entries, all or only those marked as bpfnet's (`ours`):
    /// (ifindex, address).
    pub(super) async fn proxies(&self, ours: bool) -> Result<Vec<(u32, Ipv6Addr)>, NetlinkError> {
        let msgs = self
            .neighbour_dump(AddressFamily::Inet6, true, "proxy neighbour dump")
            .await?;
        let marked = |m: &&rtnetlink::packet_route::neighbour::NeighbourMessage| {
            m.attributes.iter().any(|a| {
                matches!(a, NeighbourAttribute::Protocol(p) if *p == RouteProtocol::Other(PROTOCOL))
            })
        };
        Ok(msgs
            .iter()
            .filter(|m| !ours || marked(m))
            .flat_map(|m| {
                m.attributes.iter().filter_map(move |a| match a {
                    NeighbourAttribute::Destination(NeighbourAddress::Inet6(ip)) => {
                        Some((m.header.ifindex, *ip))
                    }
                    _ => None,
                })
            })
            .collect())
    }

    /// Answer neighbour solicitations for `addr` on device `ifindex`; the entry is
    /// marked as bpfnet's (`--cleanup` removes it).
    pub async fn add_ndp_proxy(&self, ifindex: u32, addr: Ipv6Addr) -> Result<(), NetlinkError> {
        let mut add = self
            .handle
            .neighbours()
            .add(ifindex, IpAddr::V6(addr))
            .flags(NeighbourFlags::Proxy)
            .replace();
        add.message_mut()
            .attributes
            .push(NeighbourAttribute::Protocol(RouteProtocol::Other(PROTOCOL)));
        add.execute()
            .await
            .map_err(req(format!("add proxy {addr} on {ifindex}")))
    }

    pub async fn del_ndp_proxy(&self, ifindex: u32, addr: Ipv6Addr) -> Result<(), NetlinkError> {
        let mut add = self
            .handle
            .neighbours()
            .add(ifindex, IpAddr::V6(addr))
            .flags(NeighbourFlags::Proxy);
        let msg = add.message_mut().clone();
        self.handle
            .neighbours()
            .del(msg)
            .execute()
            .await
            .map_err(req(format!("delete proxy {addr} on {ifindex}")))
    }
}

/// Turn on `net.ipv6.conf.DEV.proxy_ndp` (this namespace's).
pub fn enable_proxy_ndp(dev: &str) -> std::io::Result<()> {
    let path = format!("/proc/sys/net/ipv6/conf/{dev}/proxy_ndp");
    if fs::read_to_string(&path).is_ok_and(|v| v.trim() == "1") {
        return Ok(());
    }
    fs::write(path, "1")
}
