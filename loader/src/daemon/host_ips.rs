//! `host_ips_v1` and `host_ips6_v1`: the addresses that mean "this host" for wildcard
//! publishes, and where a container's IPv6 may go while bpfnet does not route it.
use std::{collections::BTreeMap, net::IpAddr};

use common::{Be32, Ip6};
use tracing::warn;

use super::{Daemon, Prefix};
use crate::datapath::sync::sync;

impl Daemon {
    /// The host's addresses and the managed networks' subnets, from one address dump.
    pub(super) async fn sync_addresses(&mut self) {
        match self.nl.prefixes().await {
            Ok(prefixes) => {
                self.sync_host_ips(&prefixes);
                self.sync_subnets_from(&prefixes);
                self.prefixes = prefixes;
            }
            Err(e) => {
                warn!(error = %e, "cannot list host addresses");
                // Read again at the next reconcile.
                self.stale.addresses = true;
            }
        }
    }

    fn sync_host_ips(&mut self, prefixes: &[Prefix]) {
        let mut want: BTreeMap<Be32, u32> = BTreeMap::new();
        let mut want6: BTreeMap<Ip6, u32> = BTreeMap::new();
        for (_, ip, _) in prefixes {
            match ip {
                IpAddr::V4(ip) => want.insert(Be32::from(*ip), 0),
                IpAddr::V6(ip) => want6.insert(Ip6::from(*ip), 0),
            };
        }
        let maps = &mut self.dp.maps;
        super::report("host addresses", sync(&mut maps.host_ips, &want));
        super::report("host IPv6 addresses", sync(&mut maps.host_ips6, &want6));
    }
}
