//! Published ports: the desired list in `State`, its entries in `published_v1`.
use std::collections::BTreeMap;

use common::{Backend, CT_DNAT, PublishedKey};
use tracing::{debug, info, warn};

use super::Daemon;
use crate::{api::ApiError, datapath::sync::sync, spec::PublishSpec};

impl Daemon {
    /// The publishes to install, manual ones first, and the Docker ones left out because
    /// an earlier one holds their port.
    pub(super) fn accepted_publishes(&self) -> (Vec<PublishSpec>, Vec<String>) {
        let mut accepted = self.desired.published.clone();
        let mut conflicts = Vec::new();
        let mut containers: Vec<_> = self.desired.docker.values().collect();
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

    pub(super) fn publish(&mut self, spec: PublishSpec) -> Result<(), ApiError> {
        if let Some(holder) = self
            .accepted_publishes()
            .0
            .iter()
            .find(|p| p.conflicts_with(&spec))
        {
            return Err(ApiError::Conflict {
                spec: spec.to_string(),
                holder: holder.to_string(),
            });
        }
        self.desired.update(|s| {
            s.published.push(spec);
            Ok(())
        })?;
        let errors = self.sync_published();
        if !errors.is_empty() {
            // Not in the datapath: not published at all.
            self.desired.update(|s| {
                s.published.retain(|p| *p != spec);
                Ok(())
            })?;
            self.sync_published();
            return Err(ApiError::Datapath {
                what: format!("publish `{spec}`"),
                errors,
            });
        }
        info!(%spec, "published");
        Ok(())
    }

    pub(super) fn unpublish(&mut self, spec: PublishSpec) -> Result<(), ApiError> {
        self.desired.update(|s| {
            let pos =
                s.published
                    .iter()
                    .position(|p| *p == spec)
                    .ok_or_else(|| ApiError::NotFound {
                        what: format!("`{spec}`"),
                        expected: "published",
                    })?;
            s.published.remove(pos);
            Ok(())
        })?;
        let errors = self.sync_published();
        self.forget_flows(&spec);
        if !errors.is_empty() {
            return Err(ApiError::Datapath {
                what: format!("unpublish `{spec}`"),
                errors,
            });
        }
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
            .into_iter()
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
    /// Returns the failures, each also logged.
    pub(super) fn sync_published(&mut self) -> Vec<String> {
        let (accepted, conflicts) = self.accepted_publishes();
        for c in &conflicts {
            if !self.conflicts.contains(c) {
                warn!("{c}; not installed");
            }
        }
        self.conflicts = conflicts;
        let want: BTreeMap<PublishedKey, Backend> =
            accepted.iter().flat_map(PublishSpec::entries).collect();
        let synced = sync(&mut self.dp.maps.published, &want);
        let errors = synced.errors.iter().map(ToString::to_string).collect();
        super::report("published ports", synced);
        debug!(
            publishes = accepted.len(),
            entries = want.len(),
            "published ports synced"
        );
        errors
    }
}
