//! `subnets_v1` and `subnets6_v1`: each managed bridge's subnets, which the datapath
//! needs for isolation, the inbound policy and binding a new veth's address. A
//! network's IPv6 subnet is the prefix of its bridge's own global or unique local
//! address (link-local ones say nothing of the network). Beside each subnet, a
//! host-length entry marks each address of it no endpoint may have (`NET_EDGE`).
use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv6Addr},
};

use common::{Be32, Ip6, NET_EDGE, NET_LAN, NET_NAT6, NET_ROUTED, NET_ROUTED6, Network};

use super::{Daemon, Prefix, links::Links};
use crate::{
    cluster::{net, net6},
    datapath::{Maps, sync::sync},
    endpoint::Ipv4Cidr,
};

/// What `subnets_v1` and `subnets6_v1` hold.
pub(super) type Want = (
    BTreeMap<(u32, Be32), Network>,
    BTreeMap<(u32, Ip6), Network>,
);

/// The subnets of the host's address `prefixes` that lie on a managed bridge of `nets`
/// (its ifindex → its network's `NET_*` flags), with the host-length entries of their
/// edges.
pub(super) fn want(prefixes: &[Prefix], nets: &BTreeMap<u32, u32>) -> Want {
    let mut want: BTreeMap<(u32, Be32), Network> = BTreeMap::new();
    let mut want6: BTreeMap<(u32, Ip6), Network> = BTreeMap::new();
    for &(ifindex, addr, len) in prefixes {
        let Some(&flags) = nets.get(&ifindex) else {
            continue;
        };
        let network = Network {
            bridge: ifindex,
            flags,
        };
        match addr {
            IpAddr::V4(addr) => {
                let net = net::network(addr, len);
                let first = net.map_or(addr, |n| n.addr());
                want.insert((u32::from(len), Be32::from(first)), network);
                for edge in net.and_then(|n| net::edges(&n)).into_iter().flatten() {
                    want.insert((32, Be32::from(edge)), edge_of(network));
                }
            }
            IpAddr::V6(addr) if !addr.is_unicast_link_local() && !addr.is_multicast() => {
                let net = net6::network(addr, len).map_or(addr, |n| n.network());
                let network = Network {
                    bridge: ifindex,
                    flags: ipv6_flags(flags, &net),
                };
                let key = Ip6::from(net);
                want6.insert((u32::from(len), key), network);
                if len < 127 {
                    // The subnet-router anycast address (RFC 4291 2.6.1).
                    want6.insert((128, key), edge_of(network));
                }
            }
            IpAddr::V6(_) => {}
        }
    }
    (want, want6)
}

/// What the subnets are sorted by besides addresses: the managed bridges present (by
/// index and name) and the bridges uplinks are ports of (LANs).
pub(super) type SortedBy = (Vec<(u32, String)>, Vec<u32>);

/// `SortedBy` as `links` stand.
pub(super) fn sorted_by(links: &Links) -> SortedBy {
    let bridges = links.bridges().map(|l| (l.index, l.name.clone()));
    let lans = links.uplinks().filter_map(|l| l.controller);
    (bridges.collect(), lans.collect())
}

/// The subnets part: owns `subnets_v1` and `subnets6_v1`, written from each address
/// dump (`Stale::addresses`).
#[derive(Debug, Default)]
pub(super) struct Subnets {
    /// The bridges and LANs the subnets were last sorted by (None: not yet).
    by: Option<SortedBy>,
}

impl Subnets {
    /// Whether the subnets were sorted by other bridges or LANs than `by`: the
    /// addresses must be read again. Notes `by` as the sorting of the next apply.
    pub(super) fn resort(&mut self, by: SortedBy) -> bool {
        let stale = self.by.as_ref() != Some(&by);
        self.by = Some(by);
        stale
    }

    /// Sort everything again at the next reconcile.
    pub(super) fn forget(&mut self) {
        self.by = None;
    }

    /// Make `subnets_v1` and `subnets6_v1` hold the subnets of `prefixes` on the
    /// managed bridges `nets`.
    pub(super) fn apply(maps: &mut Maps, prefixes: &[Prefix], nets: &BTreeMap<u32, u32>) {
        let (want, want6) = want(prefixes, nets);
        super::report("subnets", sync(&mut maps.subnets, &want));
        super::report("IPv6 subnets", sync(&mut maps.subnets6, &want6));
    }
}

impl Daemon {
    /// Each managed bridge's network flags: its Docker network's, routed
    /// (`--routed-bridge`), and LAN when an uplink is its port (its peers are on that
    /// wire).
    pub(super) fn nets(&self) -> BTreeMap<u32, u32> {
        let lans: Vec<u32> = self
            .host
            .links
            .uplinks()
            .filter_map(|l| l.controller)
            .collect();
        self.host
            .links
            .bridges()
            .map(|l| {
                let mut flags = self
                    .host
                    .docker_net_flags
                    .get(&l.name)
                    .copied()
                    .unwrap_or(0);
                if self.host.routed_bridges.contains(&l.name) {
                    flags |= NET_ROUTED;
                }
                if lans.contains(&l.index) {
                    flags |= NET_LAN;
                }
                (l.index, flags)
            })
            .collect()
    }

    /// The cluster bridges' IPv4 prefixes, from the host's address `prefixes`.
    pub(super) fn note_cluster_prefixes(&mut self, prefixes: &[Prefix]) {
        let mut local: BTreeMap<String, Vec<Ipv4Cidr>> = BTreeMap::new();
        for bridge in self.cluster.bridges() {
            let prefixes = prefixes
                .iter()
                .filter(|&&(i, _, _)| self.host.links.get(i).is_some_and(|l| l.name == bridge))
                .filter_map(|&(_, addr, len)| match addr {
                    IpAddr::V4(addr) => Ipv4Cidr::new(addr, len),
                    IpAddr::V6(_) => None,
                });
            local.entry(bridge.to_owned()).or_default().extend(prefixes);
        }
        self.cluster.local = local;
    }
}

/// The host-length entry of an address of `network`'s subnet that no endpoint may have
/// (`NET_EDGE`).
fn edge_of(network: Network) -> Network {
    Network {
        flags: network.flags | NET_EDGE,
        ..network
    }
}

/// The `NET_*` flags of a network's IPv6 subnet `net`, from the network's: NAT66 for a
/// unique local prefix (`fc00::/7`), routed for a global one, unless Docker's
/// `gateway_mode_ipv6` says otherwise; IPv4's routed mode is IPv4's own.
fn ipv6_flags(flags: u32, net: &Ipv6Addr) -> u32 {
    let routed = if flags & NET_NAT6 != 0 {
        false
    } else {
        flags & NET_ROUTED6 != 0 || !net.is_unique_local()
    };
    let base = flags & !(NET_ROUTED | NET_ROUTED6 | NET_NAT6);
    if routed { base | NET_ROUTED } else { base }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(ifindex: u32, addr: &str, len: u8) -> Prefix {
        (ifindex, addr.parse().expect("an address in the test"), len)
    }

    #[test]
    fn each_managed_bridge_gets_its_subnets_and_their_edges() {
        let prefixes = [
            p(3, "172.17.0.1", 16),
            p(3, "fd00:17::1", 64),
            p(3, "fe80::1", 64),
            // Not a managed bridge.
            p(2, "192.0.2.10", 24),
        ];
        let nets = BTreeMap::from([(3, NET_LAN)]);
        let (v4, v6) = want(&prefixes, &nets);
        let k = |a: [u8; 4], len| (len, Be32::from_bytes(a));
        let net = Network {
            bridge: 3,
            flags: NET_LAN,
        };
        assert_eq!(v4.get(&k([172, 17, 0, 0], 16)), Some(&net));
        assert_eq!(
            v4.get(&k([172, 17, 255, 255], 32)).map(|n| n.flags),
            Some(NET_LAN | NET_EDGE),
            "the broadcast address is an edge"
        );
        assert!(
            v4.keys().all(|&(_, a)| a.to_bytes()[0] == 172),
            "nothing of another interface: {v4:?}"
        );
        let ula = Ip6::from_octets("fd00:17::".parse::<Ipv6Addr>().expect("address").octets());
        assert_eq!(v6.get(&(64, ula)).map(|n| n.flags), Some(NET_LAN));
        assert_eq!(
            v6.get(&(128, ula)).map(|n| n.flags),
            Some(NET_LAN | NET_EDGE),
            "the subnet-router anycast address"
        );
        assert_eq!(v6.len(), 2, "no link-local subnet: {v6:?}");
    }

    #[test]
    fn an_ipv6_subnet_is_routed_when_global_and_natted_when_unique_local() {
        let ula: Ipv6Addr = "fd00:17::".parse().expect("address");
        let global: Ipv6Addr = "2001:db8:42::".parse().expect("address");
        assert_eq!(ipv6_flags(0, &ula), 0);
        assert_eq!(ipv6_flags(0, &global), NET_ROUTED);
        // IPv4's routed mode says nothing of IPv6; Docker's IPv6 mode overrides.
        assert_eq!(ipv6_flags(NET_ROUTED, &ula), 0);
        assert_eq!(ipv6_flags(NET_ROUTED6, &ula), NET_ROUTED);
        assert_eq!(ipv6_flags(NET_NAT6, &global), 0);
        assert_eq!(ipv6_flags(NET_LAN, &global), NET_LAN | NET_ROUTED);
    }
}
