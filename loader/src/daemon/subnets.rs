//! `subnets_v1`: each managed bridge's IPv4 subnets, which the datapath needs for
//! isolation, the inbound policy and binding a new veth's address.
use std::{collections::BTreeMap, net::Ipv4Addr};

use common::{NET_LAN, NET_ROUTED, Network};
use tracing::warn;

use super::{Daemon, Prefix};
use crate::datapath::sync::sync;

impl Daemon {
    pub(super) async fn sync_subnets(&mut self) {
        match self.nl.ipv4_prefixes().await {
            Ok(prefixes) => self.sync_subnets_from(&prefixes),
            Err(e) => warn!(error = %e, "cannot list subnets"),
        }
    }

    /// `subnets_v1` from the host's address `prefixes`.
    pub(super) fn sync_subnets_from(&mut self, prefixes: &[Prefix]) {
        // A bridge an uplink is a port of carries a LAN: its peers are on that wire.
        let lans: Vec<u32> = self.links.uplinks().filter_map(|l| l.controller).collect();
        let mut want: BTreeMap<(u32, u32), Network> = BTreeMap::new();
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
        super::report("subnets", sync(&mut self.dp.maps.subnets, &want));
    }
}
