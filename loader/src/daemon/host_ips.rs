//! `host_ips_v1`: the addresses that mean "this host" for wildcard publishes.
use std::collections::BTreeSet;

use tracing::{debug, warn};

use super::{Daemon, Prefix};

impl Daemon {
    /// The host's addresses and the managed networks' subnets, from one address dump.
    pub(super) async fn sync_addresses(&mut self) {
        match self.nl.ipv4_prefixes().await {
            Ok(prefixes) => {
                self.sync_host_ips(&prefixes);
                self.sync_subnets_from(&prefixes).await;
            }
            Err(e) => warn!(error = %e, "cannot list host addresses"),
        }
    }

    fn sync_host_ips(&mut self, prefixes: &[Prefix]) {
        let want: BTreeSet<u32> = prefixes
            .iter()
            .map(|(_, ip, _)| u32::from_ne_bytes(ip.octets()))
            .collect();
        let map = &mut self.dp.maps.host_ips;
        let have: BTreeSet<u32> = map.keys().filter_map(Result::ok).collect();
        for ip in have.difference(&want) {
            if let Err(e) = map.remove(ip) {
                warn!(error = %e, "cannot remove a host address");
            }
        }
        for ip in want.difference(&have) {
            if let Err(e) = map.insert(ip, 0, 0) {
                warn!(error = %e, "cannot add a host address");
            }
        }
        debug!(count = want.len(), "host addresses synced");
    }
}
