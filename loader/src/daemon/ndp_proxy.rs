//! bpfnet as the NDP proxy of routed IPv6 networks: the LAN asks for a container's
//! address on an uplink when the container's prefix is carved out of the uplink's own
//! (Docker's `fixed-cidr-v6` from the host's /64). The kernel answers for the addresses
//! it has proxy entries for on a device with `proxy_ndp`: one entry per container
//! address in a routed IPv6 subnet and uplink, kept in step with the endpoints, with no
//! ndppd and no `proxy_ndp` set by hand.
use std::{collections::BTreeSet, net::Ipv6Addr};

use common::NET_ROUTED;
use tracing::{debug, warn};

use super::Daemon;
use crate::{
    cluster::{Ipv6Net, net6},
    datapath::{Maps, batch::entries_or_each},
    netlink::{Netlink, enable_proxy_ndp},
};

/// Whether `a` lies in one of the `routed` subnets.
fn inside(routed: &[Ipv6Net], a: &Ipv6Addr) -> bool {
    routed.iter().any(|n| n.contains(a))
}

/// The proxy entries wanted: each of the containers' addresses `addrs` that lies in a
/// `routed` subnet, on every uplink.
fn want(routed: &[Ipv6Net], addrs: &[Ipv6Addr], uplinks: &[u32]) -> BTreeSet<(u32, Ipv6Addr)> {
    let addrs: Vec<&Ipv6Addr> = addrs.iter().filter(|a| inside(routed, a)).collect();
    uplinks
        .iter()
        .flat_map(|&i| addrs.iter().map(move |&&a| (i, a)))
        .collect()
}

impl Daemon {
    /// The NDP proxies part's turn in `reconcile`.
    pub(super) async fn sync_ndp_proxies(&mut self) {
        let uplinks: Vec<(u32, String)> = self
            .host
            .links
            .uplinks()
            .map(|l| (l.index, l.name.clone()))
            .collect();
        self.parts
            .ndp_proxies
            .reconcile(&self.nl, &self.dp.maps, &uplinks)
            .await;
    }
}

/// The NDP proxies part: owns bpfnet's proxy entries on the uplinks.
#[derive(Debug, Default)]
pub(super) struct NdpProxies {
    /// The entries in place (None: not looked at yet).
    in_place: Option<BTreeSet<(u32, Ipv6Addr)>>,
}

impl NdpProxies {
    /// Make the proxy entries on `uplinks` (index, name) match the routed networks'
    /// endpoints, as `maps` hold them (after any change; the netlink work happens only
    /// when the wanted set differs from what is in place).
    pub(super) async fn reconcile(&mut self, nl: &Netlink, maps: &Maps, uplinks: &[(u32, String)]) {
        let routed: Vec<Ipv6Net> = maps
            .subnets6
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, n)| n.flags & NET_ROUTED != 0)
            .filter_map(|(k, _)| {
                net6::network(k.data().octets().into(), u8::try_from(k.prefix_len()).ok()?)
            })
            .collect();
        let addrs: Vec<Ipv6Addr> = entries_or_each(&maps.endpoints6)
            .into_iter()
            .map(|(ip, _)| Ipv6Addr::from(ip.octets()))
            .filter(|a| inside(&routed, a))
            .collect();
        let indexes: Vec<u32> = uplinks.iter().map(|(i, _)| *i).collect();
        let want = want(&routed, &addrs, &indexes);
        let have = match &self.in_place {
            Some(have) if *have == want => return,
            Some(have) => have.clone(),
            // The first time: whatever an earlier run left inside the routed subnets.
            None => match nl.ndp_proxies().await {
                Ok(all) => all
                    .into_iter()
                    .filter(|(_, a)| inside(&routed, a))
                    .collect(),
                Err(e) => {
                    warn!(error = %e, "cannot list proxy neighbours");
                    BTreeSet::new()
                }
            },
        };
        for (_, name) in uplinks {
            if !addrs.is_empty()
                && let Err(e) = enable_proxy_ndp(name)
            {
                warn!(uplink = %name, error = %e, "cannot enable proxy_ndp");
            }
        }
        for &(ifindex, addr) in want.difference(&have) {
            match nl.add_ndp_proxy(ifindex, addr).await {
                Ok(()) => debug!(%addr, ifindex, "NDP proxy added"),
                Err(e) => warn!(%addr, ifindex, error = %e, "cannot add NDP proxy"),
            }
        }
        for &(ifindex, addr) in have.difference(&want) {
            match nl.del_ndp_proxy(ifindex, addr).await {
                Ok(()) => debug!(%addr, ifindex, "NDP proxy removed"),
                Err(e) => debug!(%addr, ifindex, error = %e, "cannot remove NDP proxy"),
            }
        }
        self.in_place = Some(want);
    }

    /// List the entries in place again at the next reconcile.
    pub(super) fn forget(&mut self) {
        self.in_place = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Ipv6Addr {
        s.parse().expect("an IPv6 address in the test")
    }

    #[test]
    fn each_container_address_in_a_routed_subnet_is_proxied_on_every_uplink() {
        let routed = [net6::network(a("2001:db8:1:2::"), 64).expect("a prefix")];
        let addrs = [a("2001:db8:1:2::4"), a("fd00::4"), a("2001:db8:1:3::4")];
        let want = want(&routed, &addrs, &[2, 5]);
        assert_eq!(
            want,
            BTreeSet::from([(2, a("2001:db8:1:2::4")), (5, a("2001:db8:1:2::4"))]),
            "only the address inside the routed subnet"
        );
        assert!(
            super::want(&[], &addrs, &[2]).is_empty(),
            "no routed subnet"
        );
    }
}
