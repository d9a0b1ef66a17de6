//! `host_ips_v1`: the addresses that mean "this host" for wildcard publishes.
use std::collections::BTreeMap;

use tracing::warn;

use super::{Daemon, Prefix};
use crate::datapath::sync::sync;

impl Daemon {
    /// The host's addresses and the managed networks' subnets, from one address dump.
    pub(super) async fn sync_addresses(&mut self) {
        match self.nl.ipv4_prefixes().await {
            Ok(prefixes) => {
                self.sync_host_ips(&prefixes);
                self.sync_subnets_from(&prefixes);
            }
            Err(e) => warn!(error = %e, "cannot list host addresses"),
        }
    }

    fn sync_host_ips(&mut self, prefixes: &[Prefix]) {
        let want: BTreeMap<u32, u32> = prefixes
            .iter()
            .map(|(_, ip, _)| (u32::from_ne_bytes(ip.octets()), 0))
            .collect();
        super::report("host addresses", sync(&mut self.dp.maps.host_ips, &want));
    }
}
