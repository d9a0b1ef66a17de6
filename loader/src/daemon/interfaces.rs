//! Applying `Links` to the host: bridges created when missing, programs attached and
//! detached as interfaces appear, change and go, stale pinned links removed, and
//! `ifaces_v1` holding the role of every managed interface.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
};

use common::{IFACE_BRIDGE, IFACE_LAN_SHIFT, IFACE_TUNNEL_GUARD, IFACE_UPLINK};
use tracing::{info, warn};

use super::{Daemon, DaemonError, links::Action};
use crate::{
    datapath::Hook,
    netlink::{Change, Link},
};

/// What the subnets are sorted by: the managed bridges (index, name), the LANs' bridges.
pub(super) type SubnetInputs = (Vec<(u32, String)>, Vec<u32>);

/// `BPF_NOEXIST`: create, never replace.
const NOEXIST: u64 = 1;

/// Docker's default bridge and the address it gets when bpfnet creates it.
const DOCKER0: &str = "docker0";
const DOCKER0_ADDR: (Ipv4Addr, u8) = (Ipv4Addr::new(172, 17, 0, 1), 16);

impl Daemon {
    /// Create the configured bridges that are missing, learn every link, attach what
    /// each should carry and remove pinned links an earlier run left elsewhere.
    pub(super) async fn setup_links(&mut self, bridges: &[String]) -> Result<(), DaemonError> {
        let mut links = self.nl.links().await?;
        let mut created = false;
        for name in bridges {
            match links.iter().find(|l| &l.name == name) {
                Some(l) if !l.is_bridge => {
                    return Err(DaemonError::NotABridge { name: name.clone() });
                }
                Some(_) => {}
                None if self.cluster.awaits_prefix(name) => {
                    // Created with its address once the node's prefix is known.
                    info!(bridge = %name, "the cluster's bridge waits for the node's prefix");
                }
                None => {
                    let addr = (name == DOCKER0).then_some(DOCKER0_ADDR);
                    info!(bridge = %name, ?addr, "creating missing bridge");
                    self.nl.create_bridge(name, addr).await?;
                    created = true;
                }
            }
        }
        if created {
            links = self.nl.links().await?;
        }
        self.links.replace_all(links);
        for name in self.links.missing_uplinks() {
            warn!(uplink = %name, "uplink does not exist yet; attaching when it appears");
        }
        self.apply_links();
        self.prune_stale_links();
        Ok(())
    }

    /// Note a link, address, route or neighbour notification; `reconcile` acts on it.
    /// Each makes the next hops flows remember stale.
    pub(super) fn on_change(&mut self, change: Change) {
        self.stale.hops = true;
        // A device going down takes its neighbour entries with it.
        let peers_link = |index| self.cluster.neighbour_links.contains(&index);
        match change {
            Change::LinkNew(link) => {
                self.stale.peer_links |= peers_link(link.index);
                self.links.upsert(link);
            }
            Change::LinkDel { index } => {
                self.stale.peer_links |= peers_link(index);
                self.links.remove(index);
            }
            Change::Addresses => self.stale.addresses = true,
            Change::Routes => self.stale.routes = true,
            Change::Neighbours => {}
        }
    }

    /// What `subnets_v1` depends on besides addresses: the managed bridges present (by
    /// index and name) and the bridges uplinks are ports of (LANs).
    pub(super) fn subnet_inputs(&self) -> SubnetInputs {
        let bridges = self.links.bridges().map(|l| (l.index, l.name.clone()));
        let lans = self.links.uplinks().filter_map(|l| l.controller);
        (bridges.collect(), lans.collect())
    }

    /// Flows look their next hop up again (see `hop.rs` in the datapath); `reconcile`
    /// does it once for all a round changed (`Stale::hops`).
    pub(super) fn bump_route_gen(&mut self) {
        if let Err(e) = self.dp.maps.bump_route_gen() {
            warn!(error = %e, "cannot bump the route generation: flows may keep a stale next hop");
        }
    }

    /// Carry out what `Links` plans. A failed detach leaves the pin for the next start
    /// to prune; a failed attach is retried on the next change of any link.
    pub(super) fn apply_links(&mut self) {
        let plan = self.links.plan();
        for action in &plan {
            match action {
                Action::Attach { hook, index, name } => {
                    if *hook == Hook::FromContainer {
                        self.known_port(*index);
                        super::forwarding::refuse_router_advertisements(name);
                    }
                    match self.dp.attach(*hook, name, *index) {
                        Ok(()) => self.links.done(action),
                        Err(e) => warn!(error = %e, "interface left without its bpfnet program"),
                    }
                }
                Action::Detach { hook, index } => {
                    if let Err(e) = self.dp.detach(*hook, *index) {
                        warn!(error = %e, ifindex = index, program = hook.program(), "cannot remove pinned link");
                    }
                    self.links.done(action);
                }
            }
        }
        self.sync_ifaces();
    }

    /// Fail closed: a container veth's port is known (and so enforced) before its
    /// program runs. NOEXIST: a port kept from an earlier run keeps its binding.
    fn known_port(&mut self, veth: u32) {
        let Some(bridge) = self.links.get(veth).and_then(|l| l.controller) else {
            return;
        };
        let port = super::endpoints::port(bridge, self.bridge(bridge), None);
        if let Err(e) = self.dp.maps.ports.insert(veth, port, NOEXIST)
            && !matches!(&e, aya::maps::MapError::SyscallError(s) if s.io_error.raw_os_error() == Some(rustix::io::Errno::EXIST.raw_os_error()))
        {
            warn!(ifindex = veth, error = %e, "cannot record the bridge port");
        }
    }

    /// `ifaces_v1` holds exactly the roles of the managed interfaces, and each LAN wire's
    /// bridge (its LAN hosts arrive only there). Nothing is done when the roles are those
    /// last written.
    fn sync_ifaces(&mut self) {
        // An ifindex past what the value holds records none: its LAN is refused, not
        // another's let in.
        let lan_bridge = |l: &Link| {
            l.controller
                .filter(|c| self.links.is_bridge(*c) && c >> (32 - IFACE_LAN_SHIFT) == 0)
                .map_or(0, |c| c << IFACE_LAN_SHIFT)
        };
        // bpfnet's VXLAN device: every uplink guards it (a datagram on another than the
        // underlay fails the way back to its node).
        let guard = if self.cluster.vxlan != 0 {
            IFACE_TUNNEL_GUARD
        } else {
            0
        };
        let want: BTreeMap<u32, u32> = self
            .links
            .uplinks()
            .map(|l| (l.index, IFACE_UPLINK | guard | lan_bridge(l)))
            .chain(self.links.bridges().map(|l| (l.index, IFACE_BRIDGE)))
            .collect();
        if self.ifaces_applied.as_ref() == Some(&want) {
            return;
        }
        for bridge in self.links.bridges() {
            super::forwarding::refuse_router_advertisements(&bridge.name);
        }
        let synced = crate::datapath::sync::sync(&mut self.dp.maps.ifaces, &want);
        let clean = synced.errors.is_empty();
        super::report("interface roles", synced);
        self.ifaces_applied = clean.then_some(want);
    }

    /// Remove pinned links left by an earlier run for interfaces no longer served.
    fn prune_stale_links(&self) {
        // The VXLAN device's way out keeps its program across a restart.
        let tunnel = self
            .links
            .by_name(super::cluster_join::VXLAN_DEVICE)
            .map(|l| (Hook::ToTunnel, l.index));
        let live: BTreeSet<(Hook, u32)> = self.links.attachments().chain(tunnel).collect();
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
                    if let Err(e) = self.dp.detach(a.hook, a.ifindex) {
                        warn!(error = %e, ifindex = a.ifindex, "cannot remove pinned link");
                    }
                }
            }
            Err(e) => warn!(error = %e, "cannot list pinned links"),
        }
    }
}
