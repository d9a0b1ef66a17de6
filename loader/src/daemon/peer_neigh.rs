//! The peer nodes' neighbour entries. The datapath reaches a host-gw peer by the
//! kernel's neighbour entry for its underlay address (`bpf_fib_lookup`), and lets a
//! packet from a peer's prefix in only when that entry names the frame's sender
//! (`cluster::reverse_path_ok`); neither makes the kernel resolve or confirm an entry.
//! So each peer on a directly connected prefix gets a managed entry, which the kernel
//! resolves at once and keeps resolved, a node that never sent to a peer included. When
//! a peer registers anew (its daemon restarted, its interface rebuilt, it came back
//! after its lease expired), an entry naming another MAC than the one it registered, or
//! any unpinned entry when it registered none, is removed and resolved again.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv4Addr},
};

use tracing::{debug, info, warn};

use super::Daemon;
use crate::{
    cluster::{Node, net},
    endpoint::Mac,
    netlink::Neighbour,
};

/// How a peer's registration stands since its neighbour entry was last looked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Seen {
    /// Unchanged.
    Steady,
    /// First heard of since this daemon started: its entry may predate it.
    First,
    /// Registered anew: joined, came back, restarted or got a new interface.
    Renewed,
}

/// How each node of `now` stands against `before`, the previous list (None: there was
/// none since start).
pub(super) fn seen(before: Option<&[Node]>, now: &[Node]) -> BTreeMap<Ipv4Addr, Seen> {
    now.iter()
        .map(|n| {
            let s = match before {
                None => Seen::First,
                Some(b) if b.iter().any(|o| o.same_registration(n)) => Seen::Steady,
                Some(_) => Seen::Renewed,
            };
            (n.underlay, s)
        })
        .collect()
}

/// A peer's entry as wanted: on device `ifindex`, for `mac` when the peer said which.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Want {
    pub ifindex: u32,
    pub mac: Option<[u8; 6]>,
    pub seen: Seen,
}

/// What to do to one entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Fix {
    /// Make it a managed entry of ours (created if missing).
    Manage { ifindex: u32, addr: Ipv4Addr },
    /// Remove it, holding `old`, and make it a managed one, resolved anew.
    Renew {
        ifindex: u32,
        addr: Ipv4Addr,
        old: Option<[u8; 6]>,
    },
    /// Remove an entry of ours no peer needs any more.
    Forget { ifindex: u32, addr: Ipv4Addr },
}

/// The fixes that make `have` hold what `want` asks. An entry pinned by hand stays,
/// unless the peer's registration says it names another MAC; someone else's managed
/// entry stays too.
pub(super) fn plan(want: &BTreeMap<Ipv4Addr, Want>, have: &[Neighbour]) -> Vec<Fix> {
    let mut fixes = Vec::new();
    for (&addr, w) in want {
        let ifindex = w.ifindex;
        let Some(e) = have.iter().find(|n| n.addr == addr && n.ifindex == ifindex) else {
            fixes.push(Fix::Manage { ifindex, addr });
            continue;
        };
        let other_mac = matches!((w.mac, e.mac), (Some(a), Some(b)) if a != b);
        let stale = w.seen != Seen::Steady && other_mac;
        let unknown = w.seen == Seen::Renewed && w.mac.is_none() && !e.permanent;
        if stale || unknown {
            fixes.push(Fix::Renew {
                ifindex,
                addr,
                old: e.mac,
            });
        } else if !e.permanent && !e.managed {
            fixes.push(Fix::Manage { ifindex, addr });
        }
    }
    for e in have.iter().filter(|e| e.ours) {
        if want.get(&e.addr).is_none_or(|w| w.ifindex != e.ifindex) {
            fixes.push(Fix::Forget {
                ifindex: e.ifindex,
                addr: e.addr,
            });
        }
    }
    fixes
}

/// The device of the directly connected prefix `addr` lies in (the longest), from
/// `prefixes` (ifindex, address, length); None when it is reached through a router.
pub(super) fn on_link(addr: Ipv4Addr, prefixes: &[(u32, IpAddr, u8)]) -> Option<u32> {
    prefixes
        .iter()
        .filter_map(|&(i, a, len)| match a {
            IpAddr::V4(a) if len < 32 && a != addr => net::network(a, len)
                .filter(|net| net.contains(&addr))
                .map(|_| (len, i)),
            _ => None,
        })
        .max()
        .map(|(_, i)| i)
}

impl Daemon {
    /// Bring the peers' neighbour entries in line (see the module's comment): at start,
    /// after each change of the peers, and when addresses or a peer's device change.
    pub(super) async fn sync_peer_neighbours(&mut self) {
        let marks = std::mem::take(&mut self.cluster.seen);
        let mut peers: BTreeMap<Ipv4Addr, Option<[u8; 6]>> = BTreeMap::new();
        for (_, node) in &self.cluster.peers {
            peers.entry(*node).or_default();
        }
        for n in self.cluster.networks.iter().flat_map(|net| &net.nodes) {
            let mac = peers.entry(n.underlay).or_default();
            *mac = mac.or(n.mac.map(|m| m.0));
        }
        if peers.is_empty() && self.cluster.neighbour_links.is_empty() {
            return;
        }
        let prefixes = match self.nl.prefixes().await {
            Ok(p) => p,
            Err(e) => {
                warn!(error = %e, "cannot read the addresses: peers' neighbours left as they are");
                // The news stays for the next try.
                self.cluster.seen = marks;
                return;
            }
        };
        let want: BTreeMap<Ipv4Addr, Want> = peers
            .into_iter()
            .filter_map(|(addr, mac)| {
                let seen = marks.get(&addr).copied().unwrap_or(Seen::Steady);
                let ifindex = on_link(addr, &prefixes)?;
                Some((addr, Want { ifindex, mac, seen }))
            })
            .collect();
        let have = match self.nl.neighbours().await {
            Ok(have) => have,
            Err(e) => {
                warn!(error = %e, "cannot list the neighbours: peers' neighbours left as they are");
                self.cluster.seen = marks;
                return;
            }
        };
        for fix in plan(&want, &have) {
            self.apply(fix, &want).await;
        }
        self.cluster.neighbour_links = want.values().map(|w| w.ifindex).collect::<BTreeSet<_>>();
    }

    async fn apply(&self, fix: Fix, want: &BTreeMap<Ipv4Addr, Want>) {
        let mac = |m: Option<[u8; 6]>| m.map(|m| Mac(m).to_string());
        let result = match fix {
            Fix::Manage { ifindex, addr } => {
                debug!(%addr, ifindex, "peer node's neighbour managed");
                self.nl.manage_neighbour(ifindex, addr).await
            }
            Fix::Renew { ifindex, addr, old } => {
                let registered = want.get(&addr).and_then(|w| w.mac);
                info!(%addr, ifindex, old = ?mac(old), registered = ?mac(registered), "peer node registered anew: its neighbour is resolved again");
                if let Err(e) = self.nl.del_neighbour(ifindex, addr).await {
                    debug!(%addr, error = %e, "cannot remove the peer's neighbour entry");
                }
                self.nl.manage_neighbour(ifindex, addr).await
            }
            Fix::Forget { ifindex, addr } => {
                debug!(%addr, ifindex, "neighbour of a node no longer a peer removed");
                self.nl.del_neighbour(ifindex, addr).await
            }
        };
        if let Err(e) = result {
            warn!(error = %e, "a peer node's neighbour entry is not as wanted");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Mode;

    const A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 3);
    const OLD: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const NEW: [u8; 6] = [2, 0, 0, 0, 0, 2];

    fn entry(mac: Option<[u8; 6]>, permanent: bool, managed: bool, ours: bool) -> Neighbour {
        Neighbour {
            ifindex: 7,
            addr: A,
            mac,
            permanent,
            managed,
            ours,
        }
    }

    fn want(mac: Option<[u8; 6]>, seen: Seen) -> BTreeMap<Ipv4Addr, Want> {
        BTreeMap::from([(
            A,
            Want {
                ifindex: 7,
                mac,
                seen,
            },
        )])
    }

    const MANAGE: Fix = Fix::Manage {
        ifindex: 7,
        addr: A,
    };
    fn renew(old: Option<[u8; 6]>) -> Fix {
        Fix::Renew {
            ifindex: 7,
            addr: A,
            old,
        }
    }

    #[test]
    fn a_peer_gets_a_managed_entry_and_keeps_it_while_it_stays_the_same() {
        for seen in [Seen::Steady, Seen::First, Seen::Renewed] {
            assert_eq!(plan(&want(Some(NEW), seen), &[]), [MANAGE], "{seen:?}");
        }
        let unmanaged = entry(Some(NEW), false, false, false);
        assert_eq!(plan(&want(Some(NEW), Seen::Steady), &[unmanaged]), [MANAGE]);
        let ours = entry(Some(NEW), false, true, true);
        for seen in [Seen::Steady, Seen::First, Seen::Renewed] {
            let w = want(Some(NEW), seen);
            assert_eq!(plan(&w, std::slice::from_ref(&ours)), [], "{seen:?}");
        }
        // Someone else's managed entry, or an operator's that agrees, stays.
        let theirs = entry(Some(NEW), false, true, false);
        let pinned = entry(Some(NEW), true, false, false);
        assert_eq!(plan(&want(Some(NEW), Seen::Renewed), &[theirs, pinned]), []);
    }

    #[test]
    fn an_entry_naming_another_mac_than_the_peer_registered_is_resolved_again() {
        for (permanent, managed) in [(false, true), (false, false), (true, false)] {
            let old = entry(Some(OLD), permanent, managed, managed);
            for seen in [Seen::First, Seen::Renewed] {
                let w = want(Some(NEW), seen);
                assert_eq!(plan(&w, std::slice::from_ref(&old)), [renew(Some(OLD))]);
            }
            // Only when the registration is news: never a loop of removals.
            let w = want(Some(NEW), Seen::Steady);
            let expect = if permanent || managed {
                vec![]
            } else {
                vec![MANAGE]
            };
            assert_eq!(plan(&w, &[old]), expect);
        }
    }

    #[test]
    fn a_peer_that_registered_no_mac_is_resolved_again_when_it_registers_anew() {
        let stale = entry(Some(OLD), false, true, true);
        let w = want(None, Seen::Renewed);
        assert_eq!(plan(&w, std::slice::from_ref(&stale)), [renew(Some(OLD))]);
        assert_eq!(plan(&want(None, Seen::First), &[stale]), []);
        // A pinned entry cannot be told stale without the peer's MAC.
        assert_eq!(plan(&w, &[entry(Some(OLD), true, false, false)]), []);
    }

    #[test]
    fn only_our_entries_of_nodes_no_longer_peers_are_removed() {
        let forget = Fix::Forget {
            ifindex: 7,
            addr: A,
        };
        let none = BTreeMap::new();
        assert_eq!(
            plan(&none, &[entry(Some(OLD), false, true, true)]),
            [forget]
        );
        assert_eq!(plan(&none, &[entry(Some(OLD), false, true, false)]), []);
        assert_eq!(plan(&none, &[entry(Some(OLD), false, false, false)]), []);
        // Ours on another device than the peer is now reached by.
        let mut moved = want(Some(NEW), Seen::Steady);
        moved.get_mut(&A).expect("wanted").ifindex = 8;
        let fixes = plan(&moved, &[entry(Some(NEW), false, true, true)]);
        assert_eq!(
            fixes,
            [
                Fix::Manage {
                    ifindex: 8,
                    addr: A
                },
                forget
            ]
        );
    }

    fn node(name: &str, last: u8, incarnation: u64) -> Node {
        Node {
            name: name.into(),
            subnet: format!("10.244.{last}.0/24").parse().expect("net"),
            underlay: Ipv4Addr::new(192, 0, 2, last),
            mode: Mode::HostGw,
            vni: 0,
            alive: true,
            last_seen: 1,
            mac: Some(Mac(NEW)),
            incarnation,
            subnet6: None,
        }
    }

    #[test]
    fn a_restart_or_a_return_is_a_renewal_a_refresh_is_not() {
        let before = [node("h2", 2, 5), node("h3", 3, 6)];
        let ip = |last| Ipv4Addr::new(192, 0, 2, last);
        let first = seen(None, &before);
        assert_eq!(
            first,
            BTreeMap::from([(ip(2), Seen::First), (ip(3), Seen::First)])
        );
        let mut refreshed = before.clone();
        refreshed[0].last_seen = 99;
        let mut now = vec![refreshed[0].clone(), node("h3", 3, 7), node("h4", 4, 1)];
        assert_eq!(
            seen(Some(&before), &now),
            BTreeMap::from([
                (ip(2), Seen::Steady),
                (ip(3), Seen::Renewed),
                (ip(4), Seen::Renewed)
            ])
        );
        now[1].incarnation = 6;
        now[1].mac = Some(Mac(OLD));
        assert_eq!(seen(Some(&before), &now)[&ip(3)], Seen::Renewed);
        assert_eq!(on_link(ip(3), &[(4, IpAddr::V4(ip(1)), 24)]), Some(4));
        let routed = [(4, IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)), 24)];
        assert_eq!(on_link(ip(3), &routed), None);
    }
}
