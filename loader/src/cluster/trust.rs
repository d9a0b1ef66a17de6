//! Which node entries are believed. A `{prefix}/nodes/NAME` entry is only a claim: it is
//! believed when the reservation of its subnet, `{prefix}/subnets/{subnet}`, names that
//! same node (and, dual stack, that of its IPv6 prefix, `{prefix}/subnets6/{prefix6}`), when it claims neither this node's subnet nor its underlay address, and
//! when no node registered earlier (its key created at a lower revision) already holds
//! its underlay address. Anything else is a conflict: ignored, and shown.
//!
//! etcd 3.4 records no writer of a key and no owner of a lease (any user allowed to
//! write a key may attach any lease to it), so who wrote an entry is not checkable
//! here: RBAC decides who may write which key, this decides which claims agree.
use std::{collections::BTreeMap, fmt, net::Ipv4Addr};

use serde::{Deserialize, Serialize};

use super::{Ipv4Net, Ipv6Net, Node, net, net6};

/// A live node entry as listed, with the revision its key was created at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) node: Node,
    /// The key's `create_revision`: the earlier registration wins an underlay address.
    pub(crate) created: i64,
}

/// This node, whose subnet and underlay address no other entry may claim.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Me<'a> {
    pub(crate) name: &'a str,
    pub(crate) subnet: Ipv4Net,
    pub(crate) underlay: Ipv4Addr,
    /// Its IPv6 prefix (dual stack).
    pub(crate) subnet6: Option<Ipv6Net>,
}

/// A node entry that is not believed, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    /// The name under `{prefix}/nodes/`.
    pub name: String,
    /// The subnet it claims.
    #[serde(with = "net")]
    pub subnet: Ipv4Net,
    /// The underlay address it claims.
    pub underlay: Ipv4Addr,
    /// The IPv6 prefix it claims (dual stack).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "net6::opt")]
    pub subnet6: Option<Ipv6Net>,
    /// Why it is not believed.
    pub reason: ConflictReason,
}

/// Why a node entry is not believed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum ConflictReason {
    /// No reservation holds its subnet.
    NotReserved,
    /// Its subnet's reservation names another node.
    ReservedFor {
        /// The node the reservation names.
        node: String,
    },
    /// No reservation holds its IPv6 prefix.
    NotReserved6,
    /// Its IPv6 prefix's reservation names another node.
    Reserved6For {
        /// The node the reservation names.
        node: String,
    },
    /// A node registered earlier holds its underlay address.
    UnderlayTaken {
        /// That node.
        node: String,
    },
    /// It claims this node's subnet.
    ThisNodesSubnet,
    /// It claims this node's underlay address.
    ThisNodesUnderlay,
}

impl fmt::Display for ConflictReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotReserved => write!(f, "its subnet is not reserved"),
            Self::ReservedFor { node } => write!(f, "its subnet is reserved for {node}"),
            Self::NotReserved6 => write!(f, "its IPv6 prefix is not reserved"),
            Self::Reserved6For { node } => write!(f, "its IPv6 prefix is reserved for {node}"),
            Self::UnderlayTaken { node } => write!(f, "its underlay address is {node}'s"),
            Self::ThisNodesSubnet => write!(f, "it claims this node's subnet"),
            Self::ThisNodesUnderlay => write!(f, "it claims this node's underlay address"),
        }
    }
}

/// The believed nodes (by name) and the conflicts (by name) among `entries`, given the
/// reservations (subnet → the node it is reserved for; `reservations6` for IPv6
/// prefixes). `me`'s own entry is neither.
pub(crate) fn judge(
    me: Option<Me<'_>>,
    entries: &[Entry],
    reservations: &BTreeMap<Ipv4Net, String>,
    reservations6: &BTreeMap<Ipv6Net, String>,
) -> (Vec<Node>, Vec<Conflict>) {
    let mut conflicts = Vec::new();
    let mut reserved: Vec<&Entry> = Vec::new();
    for e in entries {
        let n = &e.node;
        if me.is_some_and(|m| m.name == n.name) {
            continue;
        }
        let reason = match reservations.get(&n.subnet) {
            _ if me.is_some_and(|m| {
                net::overlaps(&m.subnet, &n.subnet)
                    || m.subnet6
                        .zip(n.subnet6)
                        .is_some_and(|(a, b)| net6::overlaps(&a, &b))
            }) =>
            {
                Some(ConflictReason::ThisNodesSubnet)
            }
            _ if me.is_some_and(|m| m.underlay == n.underlay) => {
                Some(ConflictReason::ThisNodesUnderlay)
            }
            None => Some(ConflictReason::NotReserved),
            Some(holder) if *holder != n.name => Some(ConflictReason::ReservedFor {
                node: holder.clone(),
            }),
            Some(_) => n.subnet6.and_then(|s6| match reservations6.get(&s6) {
                None => Some(ConflictReason::NotReserved6),
                Some(holder) if *holder != n.name => Some(ConflictReason::Reserved6For {
                    node: holder.clone(),
                }),
                Some(_) => None,
            }),
        };
        match reason {
            Some(reason) => conflicts.push(conflict(n, reason)),
            None => reserved.push(e),
        }
    }
    // The earlier registration keeps an underlay address.
    reserved.sort_by(|a, b| (a.created, &a.node.name).cmp(&(b.created, &b.node.name)));
    let mut by_underlay: BTreeMap<Ipv4Addr, &str> = BTreeMap::new();
    let mut believed = Vec::new();
    for e in reserved {
        let n = &e.node;
        if let Some(holder) = by_underlay.get(&n.underlay) {
            let node = (*holder).to_owned();
            conflicts.push(conflict(n, ConflictReason::UnderlayTaken { node }));
            continue;
        }
        by_underlay.insert(n.underlay, &n.name);
        believed.push(n.clone());
    }
    believed.sort_by(|a, b| a.name.cmp(&b.name));
    conflicts.sort_by(|a, b| a.name.cmp(&b.name));
    (believed, conflicts)
}

fn conflict(n: &Node, reason: ConflictReason) -> Conflict {
    Conflict {
        name: n.name.clone(),
        subnet: n.subnet,
        underlay: n.underlay,
        subnet6: n.subnet6,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Mode;

    fn net(s: &str) -> Ipv4Net {
        s.parse().expect("net")
    }

    fn entry(name: &str, subnet: &str, underlay: [u8; 4], created: i64) -> Entry {
        Entry {
            node: Node {
                name: name.into(),
                subnet: net(subnet),
                underlay: underlay.into(),
                mode: Mode::HostGw,
                vni: 1,
                alive: true,
                last_seen: 1,
                mac: None,
                incarnation: 1,
                subnet6: None,
            },
            created,
        }
    }

    fn reservations(pairs: &[(&str, &str)]) -> BTreeMap<Ipv4Net, String> {
        pairs
            .iter()
            .map(|(s, n)| (net(s), (*n).to_owned()))
            .collect()
    }

    fn names(nodes: &[Node]) -> Vec<&str> {
        nodes.iter().map(|n| n.name.as_str()).collect()
    }

    const ME: Me<'static> = Me {
        name: "me",
        subnet: Ipv4Net::new_assert(Ipv4Addr::new(10, 244, 0, 0), 24),
        underlay: Ipv4Addr::new(192, 0, 2, 1),
        subnet6: None,
    };

    #[test]
    fn a_node_whose_reservation_names_it_is_believed() {
        let entries = [entry("b", "10.244.1.0/24", [192, 0, 2, 2], 10)];
        let (believed, conflicts) = judge(
            Some(ME),
            &entries,
            &reservations(&[("10.244.1.0/24", "b")]),
            &BTreeMap::new(),
        );
        assert_eq!((names(&believed), conflicts), (vec!["b"], vec![]));
    }

    #[test]
    fn a_forged_entry_claiming_a_victims_subnet_and_underlay_is_a_conflict() {
        let entries = [
            entry("victim", "10.244.1.0/24", [192, 0, 2, 2], 10),
            // Registered earlier than the victim, with its subnet and underlay.
            entry("forger", "10.244.1.0/24", [192, 0, 2, 2], 5),
            entry("unreserved", "10.244.7.0/24", [192, 0, 2, 7], 6),
        ];
        let res = reservations(&[("10.244.1.0/24", "victim")]);
        let (believed, conflicts) = judge(Some(ME), &entries, &res, &BTreeMap::new());
        assert_eq!(names(&believed), ["victim"]);
        assert_eq!(
            conflicts
                .iter()
                .map(|c| (c.name.as_str(), c.reason.clone()))
                .collect::<Vec<_>>(),
            [
                (
                    "forger",
                    ConflictReason::ReservedFor {
                        node: "victim".into()
                    }
                ),
                ("unreserved", ConflictReason::NotReserved),
            ]
        );
    }

    #[test]
    fn an_underlay_address_stays_with_the_earlier_registration() {
        let entries = [
            entry("late", "10.244.2.0/24", [192, 0, 2, 2], 20),
            entry("early", "10.244.1.0/24", [192, 0, 2, 2], 10),
        ];
        let res = reservations(&[("10.244.1.0/24", "early"), ("10.244.2.0/24", "late")]);
        let (believed, conflicts) = judge(Some(ME), &entries, &res, &BTreeMap::new());
        assert_eq!(names(&believed), ["early"]);
        assert_eq!(
            conflicts[0].reason,
            ConflictReason::UnderlayTaken {
                node: "early".into()
            }
        );
    }

    #[test]
    fn no_entry_takes_this_nodes_subnet_or_underlay_and_its_own_is_skipped() {
        let entries = [
            entry("me", "10.244.0.0/24", [192, 0, 2, 1], 1),
            entry("thief", "10.244.0.0/24", [192, 0, 2, 9], 2),
            entry("twin", "10.244.3.0/24", [192, 0, 2, 1], 3),
        ];
        // Even a reservation naming them does not help.
        let res = reservations(&[("10.244.0.0/24", "thief"), ("10.244.3.0/24", "twin")]);
        let (believed, conflicts) = judge(Some(ME), &entries, &res, &BTreeMap::new());
        assert!(believed.is_empty(), "{believed:?}");
        assert_eq!(
            conflicts.iter().map(|c| &c.reason).collect::<Vec<_>>(),
            [
                &ConflictReason::ThisNodesSubnet,
                &ConflictReason::ThisNodesUnderlay
            ]
        );
        // Without a node of its own (`node ls --etcd`), the reserved entry is believed.
        let (believed, _) = judge(None, &entries, &res, &BTreeMap::new());
        assert_eq!(names(&believed), ["thief", "twin"]);
    }

    #[test]
    fn a_dual_stack_node_is_believed_only_when_its_ipv6_prefix_is_reserved_for_it_too() {
        let with6 = |name, subnet, underlay, six: &str| {
            let mut e = entry(name, subnet, underlay, 10);
            e.node.subnet6 = Some(six.parse().expect("net6"));
            e
        };
        let entries = [
            with6("b", "10.244.1.0/24", [192, 0, 2, 2], "fd00:244:1::/64"),
            with6("c", "10.244.2.0/24", [192, 0, 2, 3], "fd00:244:1::/64"),
            with6("d", "10.244.3.0/24", [192, 0, 2, 4], "fd00:244:3::/64"),
            with6("e", "10.244.4.0/24", [192, 0, 2, 5], "fd00:244:0::/64"),
        ];
        let res = reservations(&[
            ("10.244.1.0/24", "b"),
            ("10.244.2.0/24", "c"),
            ("10.244.3.0/24", "d"),
            ("10.244.4.0/24", "e"),
        ]);
        let res6: BTreeMap<Ipv6Net, String> = [("fd00:244:1::/64", "b"), ("fd00:244:0::/64", "e")]
            .iter()
            .map(|(s, n)| (s.parse().expect("net6"), (*n).to_owned()))
            .collect();
        let me = Me {
            subnet6: Some("fd00:244::/64".parse().expect("net6")),
            ..ME
        };
        let (believed, conflicts) = judge(Some(me), &entries, &res, &res6);
        assert_eq!(names(&believed), ["b"]);
        assert_eq!(
            conflicts
                .iter()
                .map(|c| (c.name.as_str(), c.reason.clone()))
                .collect::<Vec<_>>(),
            [
                ("c", ConflictReason::Reserved6For { node: "b".into() }),
                ("d", ConflictReason::NotReserved6),
                ("e", ConflictReason::ThisNodesSubnet),
            ]
        );
    }
}
