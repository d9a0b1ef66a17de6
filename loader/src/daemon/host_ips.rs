//! `host_ips_v1` and `host_ips6_v1`: the addresses that mean "this host" for wildcard
//! publishes, and where a container's IPv6 may go while bpfnet does not route it.
use std::{collections::BTreeMap, net::IpAddr};

use common::{Be32, Ip6};
use tracing::warn;

use super::{Daemon, Prefix, subnets::Subnets};
use crate::datapath::{Maps, sync::sync};

impl Daemon {
    /// The host's addresses and the managed networks' subnets, from one address dump.
    pub(super) async fn sync_addresses(&mut self) {
        match self.nl.prefixes().await {
            Ok(prefixes) => {
                apply(&mut self.dp.maps, &prefixes);
                let nets = self.nets();
                Subnets::apply(&mut self.dp.maps, &prefixes, &nets);
                self.note_cluster_prefixes(&prefixes);
                self.host.prefixes = prefixes;
            }
            Err(e) => {
                warn!(error = %e, "cannot list host addresses");
                // Read again at the next reconcile.
                self.stale.addresses = true;
            }
        }
    }
}

/// The host addresses part (stateless: written from each address dump): make
/// `host_ips_v1` and `host_ips6_v1` hold the addresses of `prefixes`.
pub(super) fn apply(maps: &mut Maps, prefixes: &[Prefix]) {
    let mut want: BTreeMap<Be32, u32> = BTreeMap::new();
    let mut want6: BTreeMap<Ip6, u32> = BTreeMap::new();
    for (_, ip, _) in prefixes {
        match ip {
            IpAddr::V4(ip) => want.insert(Be32::from(*ip), 0),
            IpAddr::V6(ip) => want6.insert(Ip6::from(*ip), 0),
        };
    }
    super::report("host addresses", sync(&mut maps.host_ips, &want));
    super::report("host IPv6 addresses", sync(&mut maps.host_ips6, &want6));
}
