//! Bridges, uplinks and container veths: which interfaces get which program.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
};

use common::{IFACE_BRIDGE, IFACE_UPLINK};

/// `BPF_NOEXIST`: create, never replace.
const NOEXIST: u64 = 1;
use tracing::{info, warn};

use super::{Config, Daemon, DaemonError};
use crate::{datapath::Hook, netlink::Link};

/// Docker's default bridge and the address it gets when bpfnet creates it.
const DOCKER0: &str = "docker0";
const DOCKER0_ADDR: (Ipv4Addr, u8) = (Ipv4Addr::new(172, 17, 0, 1), 16);

impl Daemon {
    pub(super) async fn setup_links(&mut self, cfg: &Config) -> Result<(), DaemonError> {
        for name in &cfg.bridges {
            let link = match self.nl.link_by_name(name).await? {
                Some(l) if !l.is_bridge => {
                    return Err(DaemonError::NotABridge { name: name.clone() });
                }
                Some(l) => l,
                None => {
                    let addr = (name == DOCKER0).then_some(DOCKER0_ADDR);
                    info!(bridge = %name, ?addr, "creating missing bridge");
                    self.nl.create_bridge(name, addr).await?
                }
            };
            if let Some(mac) = link.mac {
                self.bridge_macs.insert(link.index, mac);
            }
            self.bridges.insert(link.index, link.name);
        }
        let links = self.nl.links().await?;
        let uplinks: Vec<Link> = if cfg.uplinks.is_empty() {
            let devs = self.nl.default_route_devices().await?;
            let found: Vec<Link> = links
                .iter()
                .filter(|l| devs.contains(&l.index))
                .cloned()
                .collect();
            if found.is_empty() {
                return Err(DaemonError::NoDefaultRoute);
            }
            found
        } else {
            cfg.uplinks
                .iter()
                .map(|name| {
                    links
                        .iter()
                        .find(|l| &l.name == name)
                        .cloned()
                        .ok_or_else(|| DaemonError::NoUplink { name: name.clone() })
                })
                .collect::<Result<_, _>>()?
        };
        for up in uplinks {
            self.dp.attach(Hook::FromUplink, &up.name, up.index)?;
            self.uplinks.insert(up.index, up.name);
        }
        for link in links {
            self.on_link(link);
        }
        self.prune_stale_links();
        self.sync_ifaces();
        Ok(())
    }

    /// `ifaces_v1` holds exactly the roles of the managed interfaces.
    pub(super) fn sync_ifaces(&mut self) {
        let want: BTreeMap<u32, u32> = self
            .uplinks
            .keys()
            .map(|&i| (i, IFACE_UPLINK))
            .chain(self.bridges.keys().map(|&i| (i, IFACE_BRIDGE)))
            .collect();
        let map = &mut self.dp.maps.ifaces;
        let have: Vec<u32> = map.keys().filter_map(Result::ok).collect();
        for i in have.iter().filter(|i| !want.contains_key(i)) {
            let _ = map.remove(i);
        }
        for (i, role) in &want {
            if let Err(e) = map.insert(i, role, 0) {
                warn!(ifindex = i, error = %e, "cannot record the interface's role");
            }
        }
    }

    /// Attach `from_container` to a veth that is (now) a port of a managed bridge, and
    /// detach it from one that left.
    pub(super) fn on_link(&mut self, link: Link) {
        let wanted = link.is_veth
            && link
                .controller
                .is_some_and(|c| self.bridges.contains_key(&c));
        let attached = self.veths.contains_key(&link.index);
        if link.is_bridge
            && let Some(mac) = link.mac
            && self.bridges.contains_key(&link.index)
        {
            // A bridge's MAC follows its ports until one is set by hand.
            self.bridge_macs.insert(link.index, mac);
        }
        if wanted && !attached {
            // Fail closed: the port is known (and so enforced) before the program runs.
            if let Some(bridge) = link.controller {
                let port = self.port(bridge, None);
                // NOEXIST: a port kept from an earlier run keeps its endpoint's binding.
                let _ = self.dp.maps.ports.insert(link.index, port, NOEXIST);
            }
            match self.dp.attach(Hook::FromContainer, &link.name, link.index) {
                Ok(()) => {
                    self.veths.insert(link.index, link.name);
                }
                Err(e) => warn!(error = %e, "container veth left without bpfnet"),
            }
        } else if !wanted && attached {
            self.detach(Hook::FromContainer, link.index);
            self.veths.remove(&link.index);
        }
        match link.controller.filter(|_| wanted) {
            Some(bridge) => self.veth_bridges.insert(link.index, bridge),
            None => self.veth_bridges.remove(&link.index),
        };
    }

    pub(super) fn on_link_gone(&mut self, index: u32) {
        self.veth_bridges.remove(&index);
        if self.veths.remove(&index).is_some() {
            self.detach(Hook::FromContainer, index);
        }
        if let Some(name) = self.uplinks.remove(&index) {
            warn!(uplink = %name, "uplink removed; published ports no longer reach the host through it");
            self.detach(Hook::FromUplink, index);
        }
        if let Some(name) = self.bridges.remove(&index) {
            warn!(bridge = %name, "managed bridge removed");
        }
        self.sync_ifaces();
    }

    fn detach(&self, hook: Hook, index: u32) {
        if let Err(e) = self.dp.detach(hook, index) {
            warn!(error = %e, ifindex = index, program = hook.program(), "cannot remove pinned link");
        }
    }

    /// Remove pinned links left by an earlier run for interfaces no longer managed.
    fn prune_stale_links(&self) {
        let live: BTreeSet<(Hook, u32)> = self
            .uplinks
            .keys()
            .map(|&i| (Hook::FromUplink, i))
            .chain(self.veths.keys().map(|&i| (Hook::FromContainer, i)))
            .collect();
        match self.dp.attachments() {
            Ok(pinned) => {
                for a in pinned
                    .into_iter()
                    .filter(|a| !live.contains(&(a.hook, a.ifindex)))
                {
                    info!(
                        ifindex = a.ifindex,
                        program = a.hook.program(),
                        "removing stale link"
                    );
                    self.detach(a.hook, a.ifindex);
                }
            }
            Err(e) => warn!(error = %e, "cannot list pinned links"),
        }
    }
}
