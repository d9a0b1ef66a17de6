//! What `endpoints_v1`, `endpoints6_v1` and `ports_v2` should hold: a pure function of
//! the registered endpoints, the container veths attached now, their bridges, and the
//! bindings the datapath learned from a veth's first packet.
use std::collections::{BTreeMap, BTreeSet};

use common::{Be32, Endpoint, Ip6, PORT_ENFORCE, PORT_NO_ICC, PORT_V6, Port};

use crate::endpoint::EndpointSpec;

/// A container veth attached now: its ifindex and its bridge's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::daemon) struct Veth {
    pub index: u32,
    pub bridge: u32,
}

/// What a port's entry takes from its bridge.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(in crate::daemon) struct Bridge {
    pub mac: [u8; 6],
    /// Its network refuses traffic between its containers (`NET_NO_ICC`).
    pub no_icc: bool,
}

/// The maps' wanted entries.
#[derive(Debug, Default, PartialEq, Eq)]
pub(in crate::daemon) struct Want {
    pub ports: BTreeMap<u32, Port>,
    pub eps: BTreeMap<Be32, Endpoint>,
    pub eps6: BTreeMap<Ip6, Endpoint>,
    /// Registered endpoints whose veth is absent, waiting for it.
    pub waiting: Vec<EndpointSpec>,
}

/// What a bridge port's endpoint is known by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(in crate::daemon) struct Owner {
    mac: [u8; 6],
    /// Its IPv4, when known.
    ip: Option<Be32>,
    /// Whether every address it may send from is known (`PORT_ENFORCE`): its IPv4 one,
    /// or all of them when registered.
    enforce: bool,
    /// Whether its IPv6 addresses are known (registered, or one bound by the datapath).
    v6: bool,
}

/// The maps' entries for `specs` (manual endpoints first, then Docker's) on `veths` (by
/// name), with the bindings the datapath learned (`learned`, `learned6`: the learned
/// entries the maps hold whose address a container may have). A learned binding stays
/// while its veth is attached and nothing registered claims that veth or address.
pub(in crate::daemon) fn want(
    specs: &[EndpointSpec],
    veths: &BTreeMap<String, Veth>,
    bridges: &BTreeMap<u32, Bridge>,
    learned: &BTreeMap<Be32, Endpoint>,
    learned6: &BTreeMap<Ip6, Endpoint>,
) -> Want {
    let mut out = Want::default();
    // Veths with a registered endpoint: registration names all their addresses.
    let mut claimed: BTreeMap<u32, [u8; 6]> = BTreeMap::new();
    for e in specs {
        match veths.get(e.veth.as_str()) {
            Some(&Veth {
                index: ifindex,
                bridge: network,
            }) => {
                let ep = Endpoint::new(ifindex, network, e.mac.0, 0);
                if let Some(c) = e.ip {
                    out.eps.insert(Be32::from(c.addr()), ep);
                }
                for c in &e.ip6 {
                    out.eps6.insert(Ip6::from(c.addr()), ep);
                }
                claimed.entry(ifindex).or_insert(e.mac.0);
            }
            None => out.waiting.push(e.clone()),
        }
    }
    let attached: BTreeSet<u32> = veths.values().map(|v| v.index).collect();
    let unclaimed =
        |ep: &Endpoint| attached.contains(&ep.ifindex) && !claimed.contains_key(&ep.ifindex);
    let learned: BTreeMap<Be32, Endpoint> = learned
        .iter()
        .filter(|(ip, ep)| unclaimed(ep) && !out.eps.contains_key(ip))
        .map(|(&ip, &ep)| (ip, ep))
        .collect();
    let learned6: BTreeMap<Ip6, Endpoint> = learned6
        .iter()
        .filter(|(ip, ep)| unclaimed(ep) && !out.eps6.contains_key(ip))
        .map(|(&ip, &ep)| (ip, ep))
        .collect();
    // Each veth's owner: its first endpoint's IPv4 (by address, registered before
    // learned) and MAC; its IPv6 addresses are known when registered or learned. A
    // registered endpoint names every address: its veth sends no IPv4 but its own,
    // none at all when it has no IPv4.
    let mut owners: BTreeMap<u32, Owner> = BTreeMap::new();
    for (&ip, ep) in out.eps.iter().chain(learned.iter()) {
        owners.entry(ep.ifindex).or_insert(Owner {
            mac: ep.mac,
            ip: Some(ip),
            enforce: true,
            v6: false,
        });
    }
    for (&ifindex, &mac) in &claimed {
        let o = owners.entry(ifindex).or_insert(Owner {
            mac,
            ..Owner::default()
        });
        (o.enforce, o.v6) = (true, true);
    }
    for ep in learned6.values() {
        owners
            .entry(ep.ifindex)
            .or_insert(Owner {
                mac: ep.mac,
                ..Owner::default()
            })
            .v6 = true;
    }
    for v in veths.values() {
        let bridge = bridges.get(&v.bridge).copied().unwrap_or_default();
        out.ports.insert(
            v.index,
            port(v.bridge, bridge, owners.get(&v.index).copied()),
        );
    }
    out.eps.extend(learned);
    out.eps6.extend(learned6);
    out
}

/// The `ports_v2` entry of a veth on bridge `network` whose endpoint is `owner` (None:
/// not known yet, so its first packet of each family binds it), with its network's ICC
/// policy.
pub(in crate::daemon) fn port(network: u32, bridge: Bridge, owner: Option<Owner>) -> Port {
    let o = owner.unwrap_or_default();
    let mut flags = 0;
    if o.enforce {
        flags |= PORT_ENFORCE;
    }
    if o.v6 {
        flags |= PORT_V6;
    }
    if bridge.no_icc {
        // Its link-local and unspecified sources lie in no subnet.
        flags |= PORT_NO_ICC;
    }
    Port {
        network,
        flags,
        bridge_mac: bridge.mac,
        mac: o.mac,
        ip: o.ip.unwrap_or(Be32::ZERO),
    }
}

#[cfg(test)]
mod tests {
    use common::EP_LEARNED;

    use super::*;
    use crate::endpoint::Mac;

    const BR: u32 = 3;
    const BR_MAC: [u8; 6] = [2, 0, 0, 0, 0, 3];

    fn spec(veth: &str, ip: &str, ip6: &[&str], mac: u8) -> EndpointSpec {
        EndpointSpec {
            bridge: "br0".into(),
            veth: veth.into(),
            ip: (!ip.is_empty()).then(|| ip.parse().expect("an IPv4 CIDR in the test")),
            ip6: ip6
                .iter()
                .map(|s| s.parse().expect("an IPv6 CIDR in the test"))
                .collect(),
            mac: Mac([2, 0, 0, 0, 1, mac]),
        }
    }

    fn veths(list: &[(&str, u32)]) -> BTreeMap<String, Veth> {
        list.iter()
            .map(|&(n, index)| (n.to_string(), Veth { index, bridge: BR }))
            .collect()
    }

    fn bridges(no_icc: bool) -> BTreeMap<u32, Bridge> {
        BTreeMap::from([(
            BR,
            Bridge {
                mac: BR_MAC,
                no_icc,
            },
        )])
    }

    fn v4(s: &str) -> Be32 {
        let a: std::net::Ipv4Addr = s.parse().expect("an IPv4 address in the test");
        Be32::from(a)
    }

    fn v6(s: &str) -> Ip6 {
        let a: std::net::Ipv6Addr = s.parse().expect("an IPv6 address in the test");
        Ip6::from(a)
    }

    fn learned_on(ifindex: u32, mac: u8) -> Endpoint {
        Endpoint::new(ifindex, BR, [2, 0, 0, 0, 9, mac], EP_LEARNED)
    }

    #[test]
    fn a_registered_endpoint_names_every_address_of_its_veth() {
        let specs = [spec("veth1", "172.17.0.4/16", &["fd00::4/64"], 4)];
        let w = want(
            &specs,
            &veths(&[("veth1", 11), ("veth2", 12)]),
            &bridges(false),
            &BTreeMap::new(),
            &BTreeMap::new(),
        );
        let ep = w.eps[&v4("172.17.0.4")];
        assert_eq!((ep.ifindex, ep.network, ep.flags), (11, BR, 0));
        assert_eq!(w.eps6[&v6("fd00::4")], ep, "one entry per address");
        let p = w.ports[&11];
        assert_eq!(p.flags, PORT_ENFORCE | PORT_V6, "every address is known");
        assert_eq!(
            (p.ip, p.mac, p.bridge_mac),
            (v4("172.17.0.4"), [2, 0, 0, 0, 1, 4], BR_MAC)
        );
        // A veth nobody registered binds its first packet's addresses.
        let free = w.ports[&12];
        assert_eq!((free.flags, free.ip, free.mac), (0, Be32::ZERO, [0; 6]));
        assert!(w.waiting.is_empty());
    }

    #[test]
    fn an_endpoint_without_its_veth_waits_and_installs_nothing() {
        let specs = [spec("gone", "172.17.0.5/16", &[], 5)];
        let w = want(
            &specs,
            &veths(&[]),
            &bridges(false),
            &BTreeMap::new(),
            &BTreeMap::new(),
        );
        assert!(w.eps.is_empty() && w.ports.is_empty(), "{w:?}");
        assert_eq!(w.waiting, specs);
    }

    #[test]
    fn an_ipv6_only_endpoint_enforces_with_no_ipv4() {
        let specs = [spec("veth1", "", &["fd00::4/64"], 4)];
        let w = want(
            &specs,
            &veths(&[("veth1", 11)]),
            &bridges(true),
            &BTreeMap::new(),
            &BTreeMap::new(),
        );
        let p = w.ports[&11];
        assert_eq!(p.flags, PORT_ENFORCE | PORT_V6 | PORT_NO_ICC);
        assert_eq!(p.ip, Be32::ZERO, "it may send no IPv4 at all");
        assert!(w.eps.is_empty());
    }

    #[test]
    fn learned_bindings_stay_only_while_unclaimed_and_attached() {
        let learned = BTreeMap::from([
            // On a veth nobody registered: kept, and its port knows it.
            (v4("172.17.0.7"), learned_on(12, 7)),
            // On a registered endpoint's veth: it names all its addresses.
            (v4("172.17.0.8"), learned_on(11, 8)),
            // On a veth gone.
            (v4("172.17.0.9"), learned_on(19, 9)),
            // An address a registered endpoint claims.
            (v4("172.17.0.4"), learned_on(12, 4)),
        ]);
        let learned6 = BTreeMap::from([(v6("fd00::7"), learned_on(12, 7))]);
        let specs = [spec("veth1", "172.17.0.4/16", &[], 4)];
        let w = want(
            &specs,
            &veths(&[("veth1", 11), ("veth2", 12)]),
            &bridges(false),
            &learned,
            &learned6,
        );
        assert_eq!(
            w.eps.keys().copied().collect::<Vec<_>>(),
            vec![v4("172.17.0.4"), v4("172.17.0.7")]
        );
        assert_eq!(
            w.eps[&v4("172.17.0.4")].ifindex,
            11,
            "the registration wins"
        );
        assert_eq!(w.eps6.len(), 1);
        let p = w.ports[&12];
        assert_eq!(p.flags, PORT_ENFORCE | PORT_V6);
        assert_eq!((p.ip, p.mac), (v4("172.17.0.7"), [2, 0, 0, 0, 9, 7]));
    }
}
