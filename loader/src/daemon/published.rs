//! Published ports: the desired list in `State`, its entries in `published_v1`.
use std::collections::BTreeMap;

use common::{Backend, CT_DNAT, PublishedKey};
use tracing::{debug, info, warn};

use super::Daemon;
use crate::{datapath::sync::sync, spec::PublishSpec};

impl Daemon {
    /// The publishes to install, manual ones first, and the Docker ones left out because
    /// an earlier one holds their port.
    pub(super) fn accepted_publishes(&self) -> (Vec<PublishSpec>, Vec<String>) {
        let mut accepted = self.state.published.clone();
        let mut conflicts = Vec::new();
        let mut containers: Vec<_> = self.state.docker.values().collect();
        containers.sort_by(|a, b| a.name.cmp(&b.name));
        for c in containers {
            for spec in &c.publishes {
                match accepted.iter().find(|a| a.conflicts_with(spec)) {
                    Some(holder) => conflicts.push(format!(
                        "`{spec}` of container {} conflicts with published `{holder}`",
                        c.name
                    )),
                    None => accepted.push(*spec),
                }
            }
        }
        (accepted, conflicts)
    }

    pub(super) fn publish(&mut self, spec: PublishSpec) -> Result<(), String> {
        if let Some(other) = self
            .accepted_publishes()
            .0
            .iter()
            .find(|p| p.conflicts_with(&spec))
        {
            return Err(format!("`{spec}` conflicts with published `{other}`"));
        }
        let map = &mut self.dp.maps.published;
        let mut done = Vec::new();
        for (k, b) in spec.entries() {
            if let Err(e) = map.insert(k, b, 0) {
                for k in &done {
                    let _ = map.remove(k);
                }
                return Err(format!("cannot publish `{spec}`: {e}"));
            }
            done.push(k);
        }
        self.state.published.push(spec);
        if let Err(e) = self.state.save(&self.state_dir) {
            self.state.published.pop();
            for k in &done {
                let _ = self.dp.maps.published.remove(k);
            }
            return Err(e.to_string());
        }
        info!(%spec, "published");
        Ok(())
    }

    pub(super) fn unpublish(&mut self, spec: PublishSpec) -> Result<(), String> {
        let Some(pos) = self.state.published.iter().position(|p| *p == spec) else {
            return Err(format!("`{spec}` is not published (see `bpfnet ls`)"));
        };
        self.state.published.remove(pos);
        if let Err(e) = self.state.save(&self.state_dir) {
            self.state.published.insert(pos, spec);
            return Err(e.to_string());
        }
        for (k, _) in spec.entries() {
            if let Err(e) = self.dp.maps.published.remove(&k) {
                warn!(%spec, error = %e, "published entry was already gone");
            }
        }
        self.forget_flows(&spec);
        info!(%spec, "unpublished");
        Ok(())
    }

    /// Drop the tracked flows of an unpublished port, so its established flows stop
    /// too (what Docker does with conntrack when a port is unmapped).
    pub(super) fn forget_flows(&mut self, spec: &PublishSpec) {
        let host_ip = spec.host_ip.map(|ip| u32::from_ne_bytes(ip.octets()));
        let backend = u32::from_ne_bytes(spec.container_ip.octets());
        let doomed: Vec<_> = self
            .entries()
            .filter(|(k, v)| {
                let port = u16::from_be(k.dst_port);
                v.flags & CT_DNAT != 0
                    && !v.is_reply()
                    && v.dst_ip == backend
                    && k.proto == spec.proto.number()
                    && (spec.host_ports.start..=spec.host_ports.end).contains(&port)
                    && host_ip.is_none_or(|ip| ip == k.dst_ip)
            })
            .flat_map(|(k, v)| [k, k.twin(&v)])
            .collect();
        self.remove_ct(&doomed);
    }

    /// Make `published_v1` hold exactly the accepted publishes' entries (the map
    /// survives restarts; this also repairs whatever changed while no daemon ran).
    pub(super) fn sync_published(&mut self) {
        let (accepted, conflicts) = self.accepted_publishes();
        for c in &conflicts {
            if !self.conflicts.contains(c) {
                warn!("{c}; not installed");
            }
        }
        self.conflicts = conflicts;
        let want: BTreeMap<PublishedKey, Backend> =
            accepted.iter().flat_map(PublishSpec::entries).collect();
        super::report("published ports", sync(&mut self.dp.maps.published, &want));
        debug!(
            publishes = accepted.len(),
            entries = want.len(),
            "published ports synced"
        );
    }
}
