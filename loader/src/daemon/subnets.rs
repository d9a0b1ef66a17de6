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
use tracing::warn;

use super::{Daemon, Prefix};
use crate::{cluster::Ipv4Net, datapath::sync::sync, endpoint::Ipv4Cidr};

impl Daemon {
    pub(super) async fn sync_subnets(&mut self) {
        match self.nl.prefixes().await {
            Ok(prefixes) => self.sync_subnets_from(&prefixes),
            Err(e) => warn!(error = %e, "cannot list subnets"),
        }
    }

    /// `subnets_v1` and `subnets6_v1` from the host's address `prefixes`.
    pub(super) fn sync_subnets_from(&mut self, prefixes: &[Prefix]) {
        // A bridge an uplink is a port of carries a LAN: its peers are on that wire.
        let lans: Vec<u32> = self.links.uplinks().filter_map(|l| l.controller).collect();
        let mut want: BTreeMap<(u32, u32), Network> = BTreeMap::new();
        let mut want6: BTreeMap<(u32, Ip6), Network> = BTreeMap::new();
        for &(ifindex, addr, len) in prefixes {
            if !self.links.is_bridge(ifindex) {
                continue;
            }
            let Some(name) = self.links.get(ifindex).map(|l| l.name.as_str()) else {
                continue;
            };
            let mut flags = self.docker_net_flags.get(name).copied().unwrap_or(0);
            if self.routed_bridges.iter().any(|r| r == name) {
                flags |= NET_ROUTED;
            }
            if lans.contains(&ifindex) {
                flags |= NET_LAN;
            }
            let network = Network {
                bridge: ifindex,
                flags,
            };
            match addr {
                IpAddr::V4(addr) => {
                    let net = Ipv4Net::new(addr, len);
                    let first = net.map_or(addr, |n| n.addr);
                    want.insert((u32::from(len), Be32::from(first).raw()), network);
                    for edge in net.and_then(|n| n.edges()).into_iter().flatten() {
                        want.insert((32, Be32::from(edge).raw()), edge_of(network));
                    }
                }
                IpAddr::V6(addr) if !addr.is_unicast_link_local() && !addr.is_multicast() => {
                    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
                    let net = Ipv6Addr::from(u128::from(addr) & mask);
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
        super::report("subnets", sync(&mut self.dp.maps.subnets, &want));
        super::report("IPv6 subnets", sync(&mut self.dp.maps.subnets6, &want6));
        let mut local: BTreeMap<String, Vec<Ipv4Cidr>> = BTreeMap::new();
        for bridge in self.cluster.bridges() {
            let prefixes = prefixes
                .iter()
                .filter(|&&(i, _, _)| self.links.get(i).is_some_and(|l| l.name == bridge))
                .filter_map(|&(_, addr, len)| match addr {
                    IpAddr::V4(addr) => Some(Ipv4Cidr { addr, len }),
                    IpAddr::V6(_) => None,
                });
            local.entry(bridge.to_owned()).or_default().extend(prefixes);
        }
        if local != self.cluster.local {
            self.cluster.local = local;
            self.sync_cluster();
        }
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
/// unique local prefix (fc00::/7), routed for a global one, unless Docker's
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
