//! Applying `Links` to the host: bridges created when missing, programs attached and
//! detached as interfaces appear, change and go, stale pinned links removed, and
//! `ifaces_v1` holding the role of every managed interface.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
};

use common::{IFACE_BRIDGE, IFACE_LAN_SHIFT, IFACE_TUNNEL_GUARD, IFACE_UPLINK};
use tracing::{info, warn};

use super::{
    Daemon, DaemonError,
    endpoints::Bridge,
    links::{Action, Links},
};
use crate::{
    datapath::{Datapath, DatapathError, Hook, Maps, sync::sync},
    netlink::{Change, Link},
};

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
        self.host.links.replace_all(links);
        for name in self.host.links.missing_uplinks() {
            warn!(uplink = %name, "uplink does not exist yet; attaching when it appears");
        }
        self.apply_links();
        Interfaces::prune(&self.dp, &self.host.links);
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
                self.host.links.upsert(link);
            }
            Change::LinkDel { index } => {
                self.stale.peer_links |= peers_link(index);
                self.host.links.remove(index);
            }
            Change::Addresses => self.stale.addresses = true,
            Change::Routes => self.stale.routes = true,
            Change::Neighbours => {}
        }
    }

    /// Carry out what `Links` plans (the interfaces part does it).
    pub(super) fn apply_links(&mut self) {
        let bridges: BTreeMap<u32, Bridge> = self
            .host
            .links
            .bridges()
            .map(|l| (l.index, self.bridge(l.index)))
            .collect();
        let tunnel = self.cluster.vxlan != 0;
        self.parts
            .interfaces
            .reconcile(&mut self.dp, &mut self.host.links, &bridges, tunnel);
    }
}

/// The interfaces part: carries out the attach and detach actions `Links` plans, records
/// each new container veth's port, removes pins an earlier run left, and owns
/// `ifaces_v1`.
#[derive(Debug, Default)]
pub(super) struct Interfaces {
    /// The interface roles last written in full to `ifaces_v1` (None: none yet, or a
    /// write failed).
    applied: Option<BTreeMap<u32, u32>>,
}

impl Interfaces {
    /// Carry out what `links` plans and bring `ifaces_v1` in line. `bridges`: what a
    /// port of each managed bridge takes from it; `tunnel`: whether bpfnet's VXLAN
    /// device exists. A failed detach leaves the pin for the next start to prune; a
    /// failed attach is retried at the next reconcile.
    pub(super) fn reconcile(
        &mut self,
        dp: &mut Datapath,
        links: &mut Links,
        bridges: &BTreeMap<u32, Bridge>,
        tunnel: bool,
    ) {
        for action in &links.plan() {
            match action {
                Action::Attach { hook, index, name } => {
                    if *hook == Hook::FromContainer {
                        known_port(&mut dp.maps, links, bridges, *index);
                        super::forwarding::refuse_router_advertisements(name);
                    }
                    match dp.attach(*hook, name, *index) {
                        Ok(()) => links.done(action),
                        Err(e) => warn!(error = %e, "interface left without its bpfnet program"),
                    }
                }
                Action::Detach { hook, index } => {
                    if let Err(e) = dp.detach(*hook, *index) {
                        warn!(error = %e, ifindex = index, program = hook.program(), "cannot remove pinned link");
                    }
                    links.done(action);
                }
            }
        }
        self.sync_roles(&mut dp.maps, links, tunnel);
    }

    /// Write `ifaces_v1` again at the next reconcile, whatever its inputs.
    pub(super) fn forget(&mut self) {
        self.applied = None;
    }

    /// `ifaces_v1` holds exactly `roles`; nothing is done when they are those last
    /// written.
    fn sync_roles(&mut self, maps: &mut Maps, links: &Links, tunnel: bool) {
        let want = roles(links, tunnel);
        if self.applied.as_ref() == Some(&want) {
            return;
        }
        for bridge in links.bridges() {
            super::forwarding::refuse_router_advertisements(&bridge.name);
        }
        let synced = sync(&mut maps.ifaces, &want);
        let clean = synced.errors.is_empty();
        super::report("interface roles", synced);
        self.applied = clean.then_some(want);
    }

    /// Remove pinned links left by an earlier run for interfaces no longer served.
    pub(super) fn prune(dp: &Datapath, links: &Links) {
        // The VXLAN device's way out keeps its program across a restart.
        let tunnel = links
            .by_name(super::cluster_join::VXLAN_DEVICE)
            .map(|l| (Hook::ToTunnel, l.index));
        let live: BTreeSet<(Hook, u32)> = links.attachments().chain(tunnel).collect();
        match dp.attachments() {
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
                    if let Err(e) = dp.detach(a.hook, a.ifindex) {
                        warn!(error = %e, ifindex = a.ifindex, "cannot remove pinned link");
                    }
                }
            }
            Err(e) => warn!(error = %e, "cannot list pinned links"),
        }
    }

    /// `to_tunnel` on the VXLAN device `index`'s way out.
    pub(super) fn attach_to_tunnel(dp: &mut Datapath, index: u32) -> Result<(), DatapathError> {
        dp.attach(Hook::ToTunnel, super::cluster_join::VXLAN_DEVICE, index)
    }
}

/// Flows look their next hop up again (see `hop.rs` in the datapath); `reconcile` does
/// it once for all a round changed (`Stale::hops`).
pub(super) fn bump_route_gen(maps: &mut Maps) {
    if let Err(e) = maps.bump_route_gen() {
        warn!(error = %e, "cannot bump the route generation: flows may keep a stale next hop");
    }
}

/// Fail closed: a container veth's port is known (and so enforced) before its program
/// runs. NOEXIST: a port kept from an earlier run keeps its binding.
fn known_port(maps: &mut Maps, links: &Links, bridges: &BTreeMap<u32, Bridge>, veth: u32) {
    let Some(bridge) = links.get(veth).and_then(|l| l.controller) else {
        return;
    };
    let taken = bridges.get(&bridge).copied().unwrap_or_default();
    let port = super::endpoints::port(bridge, taken, None);
    if let Err(e) = maps.ports.insert(veth, port, NOEXIST)
        && !matches!(&e, aya::maps::MapError::SyscallError(s) if s.io_error.raw_os_error() == Some(rustix::io::Errno::EXIST.raw_os_error()))
    {
        warn!(ifindex = veth, error = %e, "cannot record the bridge port");
    }
}

/// What `ifaces_v1` holds: the role of every managed interface, and each LAN wire's
/// bridge (its LAN hosts arrive only there). `tunnel`: bpfnet's VXLAN device exists, so
/// every uplink guards it (a datagram on another than the underlay fails the way back
/// to its node).
pub(super) fn roles(links: &Links, tunnel: bool) -> BTreeMap<u32, u32> {
    // An ifindex past what the value holds records none: its LAN is refused, not
    // another's let in.
    let lan_bridge = |l: &Link| {
        l.controller
            .filter(|c| links.is_bridge(*c) && c >> (32 - IFACE_LAN_SHIFT) == 0)
            .map_or(0, |c| c << IFACE_LAN_SHIFT)
    };
    let guard = if tunnel { IFACE_TUNNEL_GUARD } else { 0 };
    links
        .uplinks()
        .map(|l| (l.index, IFACE_UPLINK | guard | lan_bridge(l)))
        .chain(links.bridges().map(|l| (l.index, IFACE_BRIDGE)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{daemon::links::Uplinks, netlink::Layer};

    fn link(index: u32, name: &str, controller: Option<u32>, is_bridge: bool) -> Link {
        Link {
            index,
            name: name.into(),
            controller,
            is_veth: false,
            is_bridge,
            layer: Layer::Ether,
            mac: Some([2, 0, 0, 0, 0, 1]),
        }
    }

    #[test]
    fn each_managed_interface_has_its_role_and_a_lan_wire_its_bridge() {
        let mut links = Links::new(["docker0".to_owned(), "br-lan".to_owned()], Uplinks::Every);
        links.replace_all(vec![
            link(2, "eth0", None, false),
            link(3, "docker0", None, true),
            link(5, "br-lan", None, true),
            // The LAN's wire: an uplink enslaved to a managed bridge.
            link(6, "eth1", Some(5), false),
        ]);
        // An uplink has its role once it carries its program; a bridge has it at once.
        assert_eq!(
            roles(&links, false),
            BTreeMap::from([(3, IFACE_BRIDGE), (5, IFACE_BRIDGE)]),
            "nothing attached yet"
        );
        for action in links.plan() {
            links.done(&action);
        }
        let roles = roles(&links, false);
        assert_eq!(
            roles,
            BTreeMap::from([
                (2, IFACE_UPLINK),
                (3, IFACE_BRIDGE),
                (5, IFACE_BRIDGE),
                (6, IFACE_UPLINK | (5 << IFACE_LAN_SHIFT)),
            ])
        );
        let guarded: BTreeMap<u32, u32> = roles
            .iter()
            .map(|(&i, &r)| {
                let guard = if r & IFACE_UPLINK != 0 {
                    IFACE_TUNNEL_GUARD
                } else {
                    0
                };
                (i, r | guard)
            })
            .collect();
        assert_eq!(
            super::roles(&links, true),
            guarded,
            "with a VXLAN device every uplink guards it, no bridge does"
        );
    }
}
