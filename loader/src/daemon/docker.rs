//! Applying what the Docker watcher learns: containers' endpoints and published ports
//! join the manual ones, and Docker's bridge networks become managed networks.
use std::{
    collections::{BTreeMap, BTreeSet},
    time::SystemTime,
};

use tracing::{info, warn};

use super::Daemon;
use crate::{
    docker::watch::{Learned, Update},
    endpoint::EndpointSpec,
    state::DockerContainer,
};

/// The daemon's link to Docker, as the watcher's updates tell it.
#[derive(Debug, Default)]
pub(super) struct DockerLink {
    /// Whether Docker is followed at all (no `--no-docker`).
    pub followed: bool,
    /// Whether the engine answers; None until the watcher says.
    pub connected: Option<bool>,
    /// Why it does not.
    pub error: Option<String>,
    /// When it last answered, with a list or an event.
    pub last_contact: Option<SystemTime>,
    /// When its whole container list was last applied.
    pub last_resync: Option<SystemTime>,
}

impl DockerLink {
    pub(super) fn new(followed: bool) -> Self {
        Self {
            followed,
            ..Self::default()
        }
    }

    /// Note what `update` says of the link; false when it says nothing else (the engine
    /// is unreachable).
    fn heard(&mut self, update: &Update) -> bool {
        let now = SystemTime::now();
        match update {
            Update::Unreachable { error } => {
                self.connected = Some(false);
                self.error = Some(error.clone());
                return false;
            }
            Update::Snapshot(_) => self.last_resync = Some(now),
            Update::Upsert(_) | Update::Gone { .. } => {}
        }
        self.connected = Some(true);
        self.error = None;
        self.last_contact = Some(now);
        true
    }
}

fn container(l: &Learned) -> DockerContainer {
    let endpoints = l
        .net
        .attachments
        .iter()
        .zip(&l.wires)
        .filter_map(|(a, w)| {
            Some(EndpointSpec {
                bridge: w.bridge.clone(),
                veth: w.veth.clone()?,
                ip: a.ip,
                ip6: a.ip6.into_iter().collect(),
                mac: a.mac,
            })
        })
        .collect();
    DockerContainer {
        name: l.net.name.clone(),
        publishes: l.net.publishes.clone(),
        endpoints,
    }
}

impl Daemon {
    /// Note what Docker reports in the desired state; `reconcile` acts on it.
    pub(super) fn on_docker(&mut self, update: Update) {
        if !self.host.docker_link.heard(&update) {
            return;
        }
        let before = self.desired.docker.clone();
        let learned: Vec<&Learned> = match &update {
            Update::Snapshot(all) => all.iter().collect(),
            Update::Upsert(l) => vec![l],
            Update::Gone { .. } | Update::Unreachable { .. } => Vec::new(),
        };
        for w in learned.iter().flat_map(|l| &l.wires) {
            if self.host.docker_net_flags.insert(w.bridge.clone(), w.flags) != Some(w.flags) {
                info!(bridge = %w.bridge, flags = w.flags, "Docker network options");
            }
        }
        let persisted = self.desired.follow(|s| match update {
            Update::Snapshot(all) => {
                s.docker = all
                    .iter()
                    .map(|l| (l.net.id.clone(), container(l)))
                    .collect();
                if before != s.docker {
                    info!(containers = all.len(), "Docker containers reconciled");
                }
            }
            Update::Upsert(l) => {
                info!(container = %l.net.name, "Docker container updated");
                s.docker.insert(l.net.id.clone(), container(&l));
            }
            Update::Gone { id } => {
                if let Some(c) = s.docker.remove(&id) {
                    info!(container = %c.name, "Docker container stopped");
                }
            }
            Update::Unreachable { .. } => {}
        });
        if let Err(e) = persisted {
            warn!(error = %e, "cannot persist Docker state; applied all the same");
        }
        if before != self.desired.docker {
            // Its networks' bridges and addresses may be new: read them again.
            self.stale.addresses = true;
        }
    }

    /// Docker's bridge networks in use become managed networks.
    pub(super) fn adopt_docker_bridges(&mut self) {
        let wanted: BTreeSet<String> = self
            .desired
            .docker
            .values()
            .flat_map(|c| c.endpoints.iter().map(|e| e.bridge.clone()))
            .collect();
        for name in wanted {
            if self.host.links.manage_bridge(&name) {
                info!(bridge = %name, "managing Docker network bridge");
            }
        }
    }

    /// Every endpoint to install: manual ones, then Docker's.
    pub(super) fn all_endpoints(&self) -> Vec<EndpointSpec> {
        self.desired
            .endpoints
            .iter()
            .cloned()
            .chain(
                self.desired
                    .docker
                    .values()
                    .flat_map(|c| c.endpoints.clone()),
            )
            .collect()
    }

    pub(super) fn docker_listing(&self) -> Vec<crate::api::DockerListing> {
        let by_name: BTreeMap<_, _> = self
            .desired
            .docker
            .iter()
            .map(|(id, c)| (&c.name, (id, c)))
            .collect();
        by_name
            .into_values()
            .map(|(id, c)| crate::api::DockerListing {
                id: id[..id.len().min(12)].to_string(),
                name: c.name.clone(),
                publishes: c.publishes.clone(),
                endpoints: c.endpoints.clone(),
            })
            .collect()
    }
}
