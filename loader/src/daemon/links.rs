//! The host's interfaces and which program each should carry: uplinks get `from_uplink`
//! (`from_l3_uplink` when their packets carry no link-layer header: `WireGuard`, tun,
//! tunnels), a managed bridge's LAN wire among them; its other veths, the containers',
//! get `from_container`. Pure bookkeeping over what netlink reported; the daemon applies
//! the difference (see `interfaces.rs`).
use std::collections::{BTreeMap, BTreeSet};

use crate::{
    datapath::Hook,
    netlink::{Layer, Link},
};

/// Which interfaces are uplinks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Uplinks {
    /// Every Ethernet or L3 (tunnel, VPN) interface of the host that is not a managed
    /// bridge, a container veth or a port of another bridge: Docker masquerades on every
    /// interface but the container's bridge and DNATs on every local address.
    Every,
    /// Only these names (`--uplink`), whenever an interface carries one.
    Named(BTreeSet<String>),
}

/// The host's links, the bridges bpfnet manages, and what is attached where.
#[derive(Debug)]
pub(super) struct Links {
    /// Every link of the namespace as last reported, by ifindex.
    all: BTreeMap<u32, Link>,
    /// Names of the managed bridges (configured, and Docker's networks in use).
    bridge_names: BTreeSet<String>,
    uplinks: Uplinks,
    /// Programs attached now: ifindex → hook.
    attached: BTreeMap<u32, Hook>,
}

/// A change of attachments that brings the links in line with what they should carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Action {
    Attach {
        hook: Hook,
        index: u32,
        name: String,
    },
    Detach {
        hook: Hook,
        index: u32,
    },
}

impl Links {
    pub(super) fn new(bridges: impl IntoIterator<Item = String>, uplinks: Uplinks) -> Self {
        Self {
            all: BTreeMap::new(),
            bridge_names: bridges.into_iter().collect(),
            uplinks,
            attached: BTreeMap::new(),
        }
    }

    /// Replace the known links with a full dump.
    pub(super) fn replace_all(&mut self, links: Vec<Link>) {
        self.all = links.into_iter().map(|l| (l.index, l)).collect();
    }

    /// A link appeared or changed (renamed, enslaved, released, its MAC changed).
    pub(super) fn upsert(&mut self, link: Link) {
        self.all.insert(link.index, link);
    }

    /// A link was removed.
    pub(super) fn remove(&mut self, index: u32) -> Option<Link> {
        self.all.remove(&index)
    }

    /// Serve interface `name` as an uplink too when the uplinks are narrowed by name
    /// (every uplink is served otherwise).
    pub(super) fn add_uplink(&mut self, name: &str) {
        if let Uplinks::Named(names) = &mut self.uplinks {
            names.insert(name.to_string());
        }
    }

    /// Manage bridge `name` from now on; true if it was not managed already.
    pub(super) fn manage_bridge(&mut self, name: &str) -> bool {
        self.bridge_names.insert(name.to_string())
    }

    pub(super) fn get(&self, index: u32) -> Option<&Link> {
        self.all.get(&index)
    }

    pub(super) fn by_name(&self, name: &str) -> Option<&Link> {
        self.all.values().find(|l| l.name == name)
    }

    /// The managed bridges present now.
    pub(super) fn bridges(&self) -> impl Iterator<Item = &Link> {
        self.all.values().filter(|l| self.is_bridge(l.index))
    }

    pub(super) fn is_bridge(&self, index: u32) -> bool {
        self.all
            .get(&index)
            .is_some_and(|l| l.is_bridge && self.bridge_names.contains(&l.name))
    }

    /// The MAC of managed bridge `index` (a bridge's follows its ports until set by hand).
    pub(super) fn bridge_mac(&self, index: u32) -> Option<[u8; 6]> {
        self.all.get(&index).and_then(|l| l.mac)
    }

    /// Container veths with `from_container` attached, with their bridge's ifindex.
    pub(super) fn veths(&self) -> impl Iterator<Item = (&Link, u32)> {
        self.attached_with(Hook::FromContainer)
            .filter_map(|l| Some((l, l.controller?)))
    }

    /// Interfaces with an uplink program attached.
    pub(super) fn uplinks(&self) -> impl Iterator<Item = &Link> {
        self.attached_where(Hook::is_uplink)
    }

    fn attached_with(&self, hook: Hook) -> impl Iterator<Item = &Link> {
        self.attached_where(move |h| h == hook)
    }

    fn attached_where(&self, which: impl Fn(Hook) -> bool) -> impl Iterator<Item = &Link> {
        self.attached
            .iter()
            .filter(move |(_, h)| which(**h))
            .filter_map(|(i, _)| self.all.get(i))
    }

    /// The program `link` should carry. An uplink is decided first: a port of a managed
    /// bridge that is an uplink (its LAN wire) is never a container's, whatever its kind.
    pub(super) fn want(&self, link: &Link) -> Option<Hook> {
        let port_of_managed = link.controller.is_some_and(|c| self.is_bridge(c));
        if self.is_uplink(link, port_of_managed) {
            return Some(match link.layer {
                Layer::Ip => Hook::FromL3Uplink,
                Layer::Ether | Layer::Other => Hook::FromUplink,
            });
        }
        (link.is_veth && port_of_managed).then_some(Hook::FromContainer)
    }

    /// Whether `link` is an uplink: named by `--uplink` (a veth too), or, serving every
    /// interface, an Ethernet or L3 one that is no managed bridge and either a port of no
    /// bridge or a managed bridge's port that is no veth (that network's LAN wire; a
    /// veth there is a container's).
    fn is_uplink(&self, link: &Link, port_of_managed: bool) -> bool {
        match &self.uplinks {
            Uplinks::Named(names) => names.contains(&link.name),
            Uplinks::Every => {
                link.layer != Layer::Other
                    && !self.is_bridge(link.index)
                    && match link.controller {
                        None => true,
                        Some(_) => port_of_managed && !link.is_veth,
                    }
            }
        }
    }

    /// What to attach and detach so every link carries what it should; links gone
    /// lose their attachment too.
    pub(super) fn plan(&self) -> Vec<Action> {
        let mut out = Vec::new();
        for (&index, &hook) in &self.attached {
            if self.all.get(&index).and_then(|l| self.want(l)) != Some(hook) {
                out.push(Action::Detach { hook, index });
            }
        }
        for link in self.all.values() {
            if let Some(hook) = self.want(link)
                && self.attached.get(&link.index) != Some(&hook)
            {
                out.push(Action::Attach {
                    hook,
                    index: link.index,
                    name: link.name.clone(),
                });
            }
        }
        out
    }

    /// Record that `action` was carried out.
    pub(super) fn done(&mut self, action: &Action) {
        match *action {
            Action::Attach { hook, index, .. } => {
                self.attached.insert(index, hook);
            }
            Action::Detach { index, .. } => {
                self.attached.remove(&index);
            }
        }
    }

    /// Uplinks named by `--uplink` that no interface carries now.
    pub(super) fn missing_uplinks(&self) -> Vec<&str> {
        match &self.uplinks {
            Uplinks::Every => Vec::new(),
            Uplinks::Named(names) => names
                .iter()
                .filter(|n| self.by_name(n).is_none())
                .map(String::as_str)
                .collect(),
        }
    }

    /// Every (hook, ifindex) attached now.
    pub(super) fn attachments(&self) -> impl Iterator<Item = (Hook, u32)> + '_ {
        self.attached.iter().map(|(&i, &h)| (h, i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(index: u32, name: &str) -> Link {
        Link {
            index,
            name: name.into(),
            controller: None,
            is_veth: false,
            is_bridge: false,
            layer: Layer::Ether,
            mac: Some([2, 0, 0, 0, 0, index as u8]),
        }
    }

    fn host() -> Vec<Link> {
        let lo = Link {
            layer: Layer::Other,
            ..link(1, "lo")
        };
        let eth0 = link(2, "eth0");
        let docker0 = Link {
            is_bridge: true,
            ..link(3, "docker0")
        };
        let veth = Link {
            is_veth: true,
            controller: Some(3),
            ..link(4, "veth1")
        };
        let lan = Link {
            is_bridge: true,
            ..link(5, "br-lan")
        };
        let vm = Link {
            controller: Some(5),
            ..link(6, "tap0")
        };
        let wg = Link {
            layer: Layer::Ip,
            mac: None,
            ..link(7, "wg0")
        };
        let eth1 = link(8, "eth1");
        vec![lo, eth0, docker0, veth, lan, vm, wg, eth1]
    }

    fn apply(links: &mut Links) -> Vec<Action> {
        let plan = links.plan();
        for a in &plan {
            links.done(a);
        }
        plan
    }

    fn detach(hook: Hook, index: u32) -> Action {
        Action::Detach { hook, index }
    }

    fn attach(hook: Hook, index: u32, name: &str) -> Action {
        Action::Attach {
            hook,
            index,
            name: name.into(),
        }
    }

    #[test]
    fn every_interface_but_loopback_bridges_and_their_ports_is_an_uplink() {
        let mut links = Links::new(["docker0".to_string()], Uplinks::Every);
        links.replace_all(host());
        assert_eq!(
            apply(&mut links),
            vec![
                attach(Hook::FromUplink, 2, "eth0"),
                attach(Hook::FromContainer, 4, "veth1"),
                attach(Hook::FromUplink, 5, "br-lan"),
                attach(Hook::FromL3Uplink, 7, "wg0"),
                attach(Hook::FromUplink, 8, "eth1"),
            ]
        );
        assert_eq!(
            links.uplinks().map(|l| l.name.as_str()).collect::<Vec<_>>(),
            ["eth0", "br-lan", "wg0", "eth1"]
        );
        assert_eq!(links.plan(), vec![], "nothing left to do");
        // An interface added later is followed; one removed loses its attachment.
        links.upsert(link(9, "eth2"));
        links.remove(8);
        assert_eq!(
            apply(&mut links),
            vec![
                detach(Hook::FromUplink, 8),
                attach(Hook::FromUplink, 9, "eth2"),
            ]
        );
        // A bridge that becomes managed stops being an uplink; its ports become
        // container veths only if they are veths.
        assert!(links.manage_bridge("br-lan"));
        assert_eq!(
            apply(&mut links),
            vec![
                detach(Hook::FromUplink, 5),
                attach(Hook::FromUplink, 6, "tap0"),
            ]
        );
        assert_eq!(
            links.veths().map(|(l, b)| (l.index, b)).collect::<Vec<_>>(),
            vec![(4, 3)]
        );
    }

    #[test]
    fn named_uplinks_follow_the_name() {
        let names = BTreeSet::from(["eth1".to_string()]);
        let mut links = Links::new(["docker0".to_string()], Uplinks::Named(names));
        links.replace_all(host());
        assert_eq!(
            apply(&mut links),
            vec![
                attach(Hook::FromContainer, 4, "veth1"),
                attach(Hook::FromUplink, 8, "eth1"),
            ]
        );
        // Deleted and recreated (a new ifindex), then renamed away.
        links.remove(8);
        links.upsert(link(10, "eth1"));
        assert_eq!(
            apply(&mut links),
            vec![
                detach(Hook::FromUplink, 8),
                attach(Hook::FromUplink, 10, "eth1"),
            ]
        );
        links.upsert(link(10, "backup"));
        assert_eq!(apply(&mut links), vec![detach(Hook::FromUplink, 10)]);
        assert_eq!(links.uplinks().count(), 0);
    }

    /// Issue 27: a LAN wire named with `--uplink` is an uplink even when it is a veth,
    /// as a port of a managed bridge from the start or enslaved to one later, and never
    /// becomes a container's port.
    #[test]
    fn a_named_uplink_on_a_managed_bridge_is_never_a_container_veth() {
        let names = BTreeSet::from(["lan0".to_string()]);
        let mut links = Links::new(["brlan".to_string()], Uplinks::Named(names));
        let brlan = Link {
            is_bridge: true,
            ..link(20, "brlan")
        };
        let veth = |index, name, controller| Link {
            is_veth: true,
            controller,
            ..link(index, name)
        };
        links.replace_all(vec![
            brlan,
            veth(21, "lan0", Some(20)),
            veth(22, "vl0", Some(20)),
        ]);
        assert_eq!(
            apply(&mut links),
            vec![
                attach(Hook::FromUplink, 21, "lan0"),
                attach(Hook::FromContainer, 22, "vl0"),
            ]
        );
        assert_eq!(
            links.veths().map(|(l, b)| (l.index, b)).collect::<Vec<_>>(),
            vec![(22, 20)],
            "the uplink is no container veth"
        );
        // Gone, back unenslaved under a new ifindex, then enslaved: an uplink throughout.
        links.remove(21);
        links.upsert(veth(23, "lan0", None));
        assert_eq!(
            apply(&mut links),
            vec![
                detach(Hook::FromUplink, 21),
                attach(Hook::FromUplink, 23, "lan0"),
            ]
        );
        links.upsert(veth(23, "lan0", Some(20)));
        assert_eq!(apply(&mut links), vec![], "enslaving changes nothing");
        assert_eq!(
            links
                .uplinks()
                .map(|l| (l.index, l.controller))
                .collect::<Vec<_>>(),
            vec![(23, Some(20))],
            "the uplink is brlan's LAN wire"
        );
        assert_eq!(links.veths().count(), 1);
    }

    /// Serving every interface, a managed bridge's port that is no veth is its LAN wire
    /// (an uplink, whenever it is enslaved); a veth there is a container's.
    #[test]
    fn every_uplink_finds_a_managed_bridges_lan_wire_by_its_kind() {
        let mut links = Links::new(["brlan".to_string()], Uplinks::Every);
        let brlan = Link {
            is_bridge: true,
            ..link(20, "brlan")
        };
        let vl0 = Link {
            is_veth: true,
            controller: Some(20),
            ..link(22, "vl0")
        };
        links.replace_all(vec![brlan, link(21, "lan0"), vl0]);
        assert_eq!(
            apply(&mut links),
            vec![
                attach(Hook::FromUplink, 21, "lan0"),
                attach(Hook::FromContainer, 22, "vl0"),
            ]
        );
        links.upsert(Link {
            controller: Some(20),
            ..link(21, "lan0")
        });
        assert_eq!(apply(&mut links), vec![], "enslaving changes nothing");
        assert_eq!(
            links.veths().map(|(l, _)| l.index).collect::<Vec<_>>(),
            vec![22]
        );
    }

    #[test]
    fn a_veth_released_from_its_bridge_is_detached() {
        let mut links = Links::new(["docker0".to_string()], Uplinks::Named(BTreeSet::new()));
        links.replace_all(host());
        apply(&mut links);
        links.upsert(Link {
            is_veth: true,
            ..link(4, "veth1")
        });
        assert_eq!(apply(&mut links), vec![detach(Hook::FromContainer, 4)]);
    }
}
