//! `host_ips_v1`: the addresses that mean "this host" for wildcard publishes.
use std::collections::BTreeSet;

use tracing::{debug, warn};

use super::Daemon;

impl Daemon {
    pub(super) async fn sync_host_ips(&mut self) {
        let want: BTreeSet<u32> = match self.nl.ipv4_addrs().await {
            Ok(addrs) => addrs
                .iter()
                .map(|ip| u32::from_ne_bytes(ip.octets()))
                .collect(),
            Err(e) => return warn!(error = %e, "cannot list host addresses"),
        };
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
