//! Registered endpoints: the desired list in `State`, their entries in `endpoints_v1`,
//! and `ports_v2` for every attached container veth.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use common::{
    Be32, EP_LEARNED, Endpoint, Ip6, NET_NO_ICC, PORT_ENFORCE, PORT_NO_ICC, PORT_V6, Port,
};
use tracing::{debug, info};

use super::Daemon;
use crate::{
    api::ApiError,
    datapath::{batch::entries_or_each, sync::sync},
    endpoint::{EndpointSpec, Ipv4Cidr, Ipv6Cidr, Mac},
};

impl Daemon {
    pub(super) async fn add_endpoint(
        &mut self,
        bridge: String,
        veth: String,
        ip: Option<Ipv4Cidr>,
        ip6: Vec<Ipv6Cidr>,
        mac: Option<Mac>,
    ) -> Result<(), ApiError> {
        let Some(br_index) = self
            .links
            .by_name(&bridge)
            .map(|l| l.index)
            .filter(|&i| self.links.is_bridge(i))
        else {
            return Err(ApiError::NotFound {
                what: format!("bridge `{bridge}`"),
                expected: "managed by bpfnet",
            });
        };
        let Some((veth_index, veth_bridge)) = self
            .links
            .veths()
            .find(|(l, _)| l.name == veth)
            .map(|(l, b)| (l.index, b))
        else {
            return Err(ApiError::NotFound {
                what: format!("`{veth}`"),
                expected: "a container veth on a managed bridge",
            });
        };
        if veth_bridge != br_index {
            return Err(ApiError::Invalid {
                reason: format!("`{veth}` is not a port of bridge `{bridge}`"),
            });
        }
        let addrs: Vec<IpAddr> = ip
            .map(|c| IpAddr::V4(c.addr))
            .into_iter()
            .chain(ip6.iter().map(|c| IpAddr::V6(c.addr)))
            .collect();
        if addrs.is_empty() {
            return Err(ApiError::Invalid {
                reason: "an endpoint needs at least one address".into(),
            });
        }
        for (i, &addr) in addrs.iter().enumerate() {
            if addrs[..i].contains(&addr) {
                return Err(ApiError::Invalid {
                    reason: format!("{addr} is given twice"),
                });
            }
            let claimable = match addr {
                IpAddr::V4(a) => self.dp.maps.claimable(Be32::from(a).raw()),
                IpAddr::V6(a) => self.dp.maps.claimable6(Ip6::from(a)),
            };
            if !claimable {
                return Err(ApiError::Invalid {
                    reason: format!(
                        "{addr} is a host address or its subnet's network or broadcast \
                         address: no container may have it"
                    ),
                });
            }
            if let Some(other) = self.all_endpoints().into_iter().find(|e| e.has(addr)) {
                return Err(ApiError::Conflict {
                    spec: addr.to_string(),
                    holder: format!("endpoint on {}", other.veth),
                });
            }
        }
        let mac = match mac {
            Some(m) => m,
            None => self.learn_mac(&veth, veth_index).await?,
        };
        self.desired.update(|s| {
            s.endpoints.push(EndpointSpec {
                bridge,
                veth,
                ip,
                ip6,
                mac,
            });
            Ok(())
        })?;
        self.sync_endpoints();
        info!(ips = ?addrs, %mac, "endpoint added");
        Ok(())
    }

    async fn learn_mac(&self, veth: &str, index: u32) -> Result<Mac, ApiError> {
        let macs = self.nl.learned_macs(index).await?;
        let reason = match macs.as_slice() {
            [one] => return Ok(Mac(*one)),
            [] => format!("no MAC learned on `{veth}` yet; pass --mac"),
            _ => format!("several MACs learned on `{veth}`; pass --mac"),
        };
        Err(ApiError::Invalid { reason })
    }

    pub(super) fn del_endpoint(&mut self, ip: IpAddr) -> Result<(), ApiError> {
        self.desired.update(|s| {
            let pos =
                s.endpoints
                    .iter()
                    .position(|e| e.has(ip))
                    .ok_or_else(|| ApiError::NotFound {
                        what: ip.to_string(),
                        expected: "a registered endpoint",
                    })?;
            s.endpoints.remove(pos);
            Ok(())
        })?;
        self.sync_endpoints();
        info!(%ip, "endpoint removed");
        Ok(())
    }

    /// Make `endpoints_v1`, `endpoints6_v1` and `ports_v2` match the registered
    /// endpoints and the veths attached now (a veth may come and go with its container;
    /// its name is the link). Bindings the datapath learned from a veth's first packet
    /// stay while their veth is attached and nothing registered claims that veth or
    /// address.
    pub(super) fn sync_endpoints(&mut self) {
        let veths: BTreeMap<&str, (u32, u32)> = self
            .links
            .veths()
            .map(|(l, bridge)| (l.name.as_str(), (l.index, bridge)))
            .collect();
        let mut want_eps = BTreeMap::new();
        let mut want_eps6 = BTreeMap::new();
        // Veths with a registered endpoint: registration names all their addresses.
        let mut claimed: BTreeMap<u32, [u8; 6]> = BTreeMap::new();
        let mut waiting = 0usize;
        for e in &self.all_endpoints() {
            match veths.get(e.veth.as_str()) {
                Some(&(ifindex, network)) => {
                    let ep = Endpoint::new(ifindex, network, e.mac.0, 0);
                    if let Some(c) = e.ip {
                        want_eps.insert(Be32::from(c.addr).raw(), ep);
                    }
                    for c in &e.ip6 {
                        want_eps6.insert(Ip6::from(c.addr), ep);
                    }
                    claimed.entry(ifindex).or_insert(e.mac.0);
                }
                None => {
                    waiting += 1;
                    debug!(veth = %e.veth, ips = %e.addresses(), "endpoint's veth is absent; waiting for it");
                }
            }
        }
        if waiting > 0 {
            debug!(
                endpoints = waiting,
                "endpoints wait for their veth to appear"
            );
        }
        // Bindings learned from a veth's first packet stay while nothing claims them and
        // their address is one a container may have (the datapath refuses the others;
        // one bound before, or taken by the host since, goes).
        let attached: BTreeSet<u32> = veths.values().map(|&(i, _)| i).collect();
        let unclaimed = |ep: &Endpoint| {
            ep.flags & EP_LEARNED != 0
                && attached.contains(&ep.ifindex)
                && !claimed.contains_key(&ep.ifindex)
        };
        let maps = &self.dp.maps;
        let learned: BTreeMap<u32, Endpoint> = entries_or_each(&maps.endpoints)
            .into_iter()
            .filter(|(ip, ep)| unclaimed(ep) && !want_eps.contains_key(ip) && maps.claimable(*ip))
            .collect();
        let learned6: BTreeMap<Ip6, Endpoint> = entries_or_each(&maps.endpoints6)
            .into_iter()
            .filter(|(ip, ep)| unclaimed(ep) && !want_eps6.contains_key(ip) && maps.claimable6(*ip))
            .collect();
        // Each veth's owner: its first endpoint's IPv4 (by address, registered before
        // learned) and MAC; its IPv6 addresses are known when registered or learned. A
        // registered endpoint names every address: its veth sends no IPv4 but its own,
        // none at all when it has no IPv4.
        let mut owners: BTreeMap<u32, Owner> = BTreeMap::new();
        for (&ip, ep) in want_eps.iter().chain(learned.iter()) {
            owners.entry(ep.ifindex).or_insert(Owner {
                mac: ep.mac,
                ip: Some(Be32::from_raw(ip)),
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
        let mut want_ports = BTreeMap::new();
        for &(veth, bridge) in veths.values() {
            want_ports.insert(veth, self.port(bridge, owners.get(&veth).copied()));
        }
        want_eps.extend(learned);
        want_eps6.extend(learned6);
        let maps = &mut self.dp.maps;
        // Ports first: a port's recorded endpoint is trusted without `endpoints_v1`, so
        // it must never name an address that map no longer gives the port.
        super::report("bridge ports", sync(&mut maps.ports, &want_ports));
        let endpoints = sync(&mut maps.endpoints, &want_eps);
        let endpoints6 = sync(&mut maps.endpoints6, &want_eps6);
        let changed = endpoints.written + endpoints.removed > 0;
        super::report("endpoints", endpoints);
        super::report("IPv6 endpoints", endpoints6);
        if changed {
            // A flow may remember the endpoint's old veth, or a route to a new one.
            self.bump_route_gen();
        }
    }

    /// The `ports_v2` entry of a veth on `bridge` whose endpoint is `owner` (None: not
    /// known yet, so its first packet of each family binds it), with its network's ICC
    /// policy.
    pub(super) fn port(&self, bridge: u32, owner: Option<Owner>) -> Port {
        let o = owner.unwrap_or_default();
        let mut flags = 0;
        if o.enforce {
            flags |= PORT_ENFORCE;
        }
        if o.v6 {
            flags |= PORT_V6;
        }
        let net_flags = self
            .links
            .get(bridge)
            .and_then(|l| self.docker_net_flags.get(&l.name))
            .copied()
            .unwrap_or(0);
        if net_flags & NET_NO_ICC != 0 {
            // Its link-local and unspecified sources lie in no subnet.
            flags |= PORT_NO_ICC;
        }
        Port {
            network: bridge,
            flags,
            bridge_mac: self.links.bridge_mac(bridge).unwrap_or_default(),
            mac: o.mac,
            ip: o.ip.unwrap_or(Be32::ZERO),
        }
    }
}

/// What a bridge port's endpoint is known by.
#[derive(Clone, Copy, Default)]
pub(super) struct Owner {
    mac: [u8; 6],
    /// Its IPv4, when known.
    ip: Option<Be32>,
    /// Whether every address it may send from is known (`PORT_ENFORCE`): its IPv4 one,
    /// or all of them when registered.
    enforce: bool,
    /// Whether its IPv6 addresses are known (registered, or one bound by the datapath).
    v6: bool,
}
