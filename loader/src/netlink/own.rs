//! What bpfnet made in the network namespace, found by its marks, and its removal: the
//! mirror of the daemon's setup for `--cleanup`. bpfnet marks what it makes: routes,
//! neighbour and proxy entries and addresses with its protocol (98), bridges with the alias
//! [`BRIDGE_ALIAS`], and its VXLAN device is [`VXLAN_DEVICE`]. Nothing unmarked is
//! touched; every failure is collected, one does not stop the rest.
use rtnetlink::packet_route::{
    address::{AddressAttribute, AddressMessage, AddressProtocol},
    link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage},
};

use super::{Netlink, NetlinkError, ifname, neigh::PROTOCOL, req};

/// The VXLAN device of `vxlan` networks (one for all: the VNI tells them apart), which
/// bpfnet alone creates.
pub const VXLAN_DEVICE: &str = "bpfnet-vxlan";
/// The alias (`ip link show` prints it) of a bridge bpfnet created.
pub const BRIDGE_ALIAS: &str = "bpfnet";

/// What a host teardown removed, what it left on purpose, and what it could not remove.
#[derive(Debug, Default)]
pub struct HostTeardown {
    /// Each removed object, described for the user (`route to peer prefix 10.244.2.0/24`).
    pub removed: Vec<String>,
    /// bpfnet's bridges kept because interfaces are still attached to them.
    pub kept: Vec<String>,
    pub errors: Vec<NetlinkError>,
}

impl HostTeardown {
    fn record(&mut self, what: String, result: Result<(), NetlinkError>) {
        match result {
            Ok(()) => self.removed.push(what),
            Err(e) => self.errors.push(e),
        }
    }

    /// A listing that failed: nothing of its kind is removed.
    fn listed<T>(&mut self, result: Result<Vec<T>, NetlinkError>) -> Vec<T> {
        result.unwrap_or_else(|e| {
            self.errors.push(e);
            Vec::new()
        })
    }
}

/// Which of `links` bpfnet may remove (its VXLAN device, its bridges without ports) and
/// which of its bridges it keeps (some interface is still attached): (index, name).
fn own_links(links: &[LinkMessage]) -> (Vec<(u32, String)>, Vec<String>) {
    let (mut remove, mut kept) = (Vec::new(), Vec::new());
    for m in links {
        let (mut name, mut alias, mut bridge) = (None, None, false);
        for a in &m.attributes {
            match a {
                LinkAttribute::IfName(n) => name = Some(n.as_str()),
                LinkAttribute::IfAlias(a) => alias = Some(a.as_str()),
                LinkAttribute::LinkInfo(infos) => {
                    bridge |= infos
                        .iter()
                        .any(|i| matches!(i, LinkInfo::Kind(InfoKind::Bridge)));
                }
                _ => {}
            }
        }
        let Some(name) = name else { continue };
        let index = m.header.index;
        if name == VXLAN_DEVICE {
            remove.push((index, name.to_owned()));
        } else if bridge && alias == Some(BRIDGE_ALIAS) {
            let ported = links.iter().any(|p| {
                p.attributes
                    .iter()
                    .any(|a| matches!(a, LinkAttribute::Controller(c) if *c == index))
            });
            if ported {
                kept.push(name.to_owned());
            } else {
                remove.push((index, name.to_owned()));
            }
        }
    }
    (remove, kept)
}

/// The addresses bpfnet gave interfaces (marked with its protocol): a cluster network's
/// gateway on its bridge, whoever created the bridge.
fn own_addresses(msgs: Vec<AddressMessage>) -> Vec<AddressMessage> {
    let ours = AddressAttribute::Protocol(AddressProtocol::from(PROTOCOL));
    msgs.into_iter()
        .filter(|m| m.attributes.contains(&ours))
        .collect()
}

/// `ADDR/LEN on DEV`, for the user.
fn describe(m: &AddressMessage, dev: &str) -> String {
    let addr = m.attributes.iter().find_map(|a| match a {
        AddressAttribute::Address(ip) => Some(ip.to_string()),
        _ => None,
    });
    let addr = addr.unwrap_or_else(|| "?".into());
    format!("address {addr}/{} on {dev}", m.header.prefix_len)
}

impl Netlink {
    /// Mark link `index` as a bridge bpfnet created (`ip link set DEV alias bpfnet`).
    pub(super) async fn mark_own_bridge(&self, index: u32) -> Result<(), NetlinkError> {
        let mut msg = rtnetlink::LinkUnspec::new_with_index(index).build();
        msg.attributes
            .push(LinkAttribute::IfAlias(BRIDGE_ALIAS.into()));
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(req(format!("mark bridge {index} as bpfnet's")))
    }

    /// Remove what the daemon made in this namespace, in the reverse order of setup:
    /// proxy and neighbour entries, routes, addresses, then the VXLAN device and the
    /// bridges.
    pub async fn teardown_host(&self) -> HostTeardown {
        let mut t = HostTeardown::default();
        let dev = |i: u32| ifname(i).unwrap_or_else(|| i.to_string());
        let proxies = self.proxies(true).await;
        for (ifindex, addr) in t.listed(proxies) {
            let r = self.del_ndp_proxy(ifindex, addr).await;
            t.record(format!("NDP proxy entry {addr} on {}", dev(ifindex)), r);
        }
        let neighbours = self.neighbours().await;
        for n in t.listed(neighbours).into_iter().filter(|n| n.ours) {
            let r = self.del_neighbour(n.ifindex, n.addr).await;
            t.record(
                format!(
                    "neighbour entry of peer node {} on {}",
                    n.addr,
                    dev(n.ifindex)
                ),
                r,
            );
        }
        let routes = self.routes().await;
        for r in t.listed(routes).into_iter().filter(|r| r.ours) {
            let (net, len) = r.route.prefix;
            let result = self.del_peer_route(&r.route).await;
            t.record(format!("route to peer prefix {net}/{len}"), result);
        }
        let addresses = self.address_messages().await;
        for m in own_addresses(t.listed(addresses)) {
            let what = describe(&m, &dev(m.header.index));
            let r = self.handle.address().del(m).execute().await;
            t.record(what.clone(), r.map_err(req(format!("remove the {what}"))));
        }
        let links = self.link_messages().await;
        let (remove, kept) = own_links(&t.listed(links));
        for (index, name) in remove {
            let r = self.delete_link(index).await;
            t.record(format!("device {name}"), r);
        }
        t.kept = kept;
        t
    }
}

#[cfg(test)]
mod tests {
    use rtnetlink::packet_route::link::LinkMessage;

    use super::*;

    fn link(
        index: u32,
        name: &str,
        bridge: bool,
        alias: Option<&str>,
        controller: Option<u32>,
    ) -> LinkMessage {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.attributes.push(LinkAttribute::IfName(name.into()));
        if bridge {
            m.attributes
                .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                    InfoKind::Bridge,
                )]));
        }
        if let Some(a) = alias {
            m.attributes.push(LinkAttribute::IfAlias(a.into()));
        }
        if let Some(c) = controller {
            m.attributes.push(LinkAttribute::Controller(c));
        }
        m
    }

    fn address(index: u32, ip: &str, proto: Option<u8>) -> AddressMessage {
        let mut m = AddressMessage::default();
        m.header.index = index;
        m.header.prefix_len = 24;
        m.attributes
            .push(AddressAttribute::Address(ip.parse().expect("address")));
        if let Some(p) = proto {
            m.attributes
                .push(AddressAttribute::Protocol(AddressProtocol::from(p)));
        }
        m
    }

    #[test]
    fn only_addresses_marked_with_bpfnets_protocol_are_its_to_remove() {
        let msgs = vec![
            address(2, "10.244.1.1", Some(PROTOCOL)),
            address(2, "192.168.1.1", None),
            address(3, "10.0.0.1", Some(3)),
            address(4, "fd00:1::1", Some(PROTOCOL)),
        ];
        let ours: Vec<String> = own_addresses(msgs)
            .iter()
            .map(|m| describe(m, &m.header.index.to_string()))
            .collect();
        assert_eq!(
            ours,
            ["address 10.244.1.1/24 on 2", "address fd00:1::1/24 on 4"],
            "the marked ones, nothing the user or the kernel added"
        );
    }

    #[test]
    fn only_the_vxlan_device_and_marked_bridges_without_ports_are_bpfnets_to_remove() {
        let links = [
            link(1, "lo", false, None, None),
            link(2, "docker0", true, None, None),
            link(3, "br-made", true, Some(BRIDGE_ALIAS), None),
            link(4, "br-used", true, Some(BRIDGE_ALIAS), None),
            link(5, "veth1", false, None, Some(4)),
            link(6, VXLAN_DEVICE, false, None, None),
            link(7, "br-other", true, Some("someone else's"), None),
            link(8, "eth1", false, Some(BRIDGE_ALIAS), None),
        ];
        let (remove, kept) = own_links(&links);
        assert_eq!(
            remove,
            [(3, "br-made".to_owned()), (6, VXLAN_DEVICE.to_owned())],
            "the marked bridge without ports and the VXLAN device, nothing unmarked"
        );
        assert_eq!(kept, ["br-used"], "a marked bridge with a port stays");
    }
}
