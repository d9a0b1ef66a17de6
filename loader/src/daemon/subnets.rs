//! `subnets_v1`: each managed bridge's IPv4 subnets, which the datapath needs for
//! isolation, the inbound policy and binding a new veth's address.
use std::{collections::BTreeMap, net::Ipv4Addr};

use aya::maps::lpm_trie::Key;
use common::{NET_LAN, NET_ROUTED, Network};
use tracing::{debug, warn};

use super::{Daemon, Prefix};

impl Daemon {
    pub(super) async fn sync_subnets(&mut self) {
        match self.nl.ipv4_prefixes().await {
            Ok(prefixes) => self.sync_subnets_from(&prefixes).await,
            Err(e) => warn!(error = %e, "cannot list subnets"),
        }
    }

    /// `subnets_v1` from the host's address `prefixes`.
    pub(super) async fn sync_subnets_from(&mut self, prefixes: &[Prefix]) {
        let links = match self.nl.links().await {
            Ok(l) => l,
            Err(e) => return warn!(error = %e, "cannot list links for the subnets"),
        };
        // A bridge an uplink is a port of carries a LAN: its peers are on that wire.
        let lans: Vec<u32> = links
            .iter()
            .filter(|l| self.uplinks.contains_key(&l.index))
            .filter_map(|l| l.controller)
            .collect();
        let mut want: BTreeMap<(u32, u32), Network> = BTreeMap::new();
        for &(ifindex, addr, len) in prefixes {
            let Some(name) = self.bridges.get(&ifindex) else {
                continue;
            };
            let mut flags = self.docker_net_flags.get(name).copied().unwrap_or(0);
            if self.routed_bridges.contains(name) {
                flags |= NET_ROUTED;
            }
            if lans.contains(&ifindex) {
                flags |= NET_LAN;
            }
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            let net = Ipv4Addr::from(u32::from(addr) & mask);
            want.insert(
                (u32::from(len), u32::from_ne_bytes(net.octets())),
                Network {
                    bridge: ifindex,
                    flags,
                },
            );
        }
        let map = &mut self.dp.maps.subnets;
        let have: Vec<(u32, u32)> = map
            .keys()
            .filter_map(Result::ok)
            .map(|k| (k.prefix_len(), k.data()))
            .collect();
        for (len, net) in have.iter().filter(|k| !want.contains_key(k)) {
            if let Err(e) = map.remove(&Key::new(*len, *net)) {
                warn!(error = %e, "cannot remove a subnet");
            }
        }
        for ((len, net), network) in &want {
            if let Err(e) = map.insert(&Key::new(*len, *net), network, 0) {
                warn!(error = %e, "cannot record a subnet");
            }
        }
        debug!(count = want.len(), "managed subnets synced");
    }
}
