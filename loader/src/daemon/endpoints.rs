//! Registered endpoints: the desired list in `State`, their entries in `endpoints_v1`,
//! and `ports_v2` for every attached container veth.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
};

use common::{EP_LEARNED, Endpoint, PORT_ENFORCE, Port};
use tracing::{info, warn};

use super::Daemon;
use crate::endpoint::{EndpointSpec, Ipv4Cidr, Mac};

impl Daemon {
    pub(super) async fn add_endpoint(
        &mut self,
        bridge: String,
        veth: String,
        ip: Ipv4Cidr,
        mac: Option<Mac>,
    ) -> Result<(), String> {
        let Some(&br_index) = self
            .bridges
            .iter()
            .find(|(_, n)| **n == bridge)
            .map(|(i, _)| i)
        else {
            return Err(format!(
                "bridge `{bridge}` is not managed by bpfnet (see `bpfnet ls`)"
            ));
        };
        let Some((&veth_index, _)) = self.veths.iter().find(|(_, n)| **n == veth) else {
            return Err(format!(
                "`{veth}` is not a container veth on a managed bridge"
            ));
        };
        if self.veth_bridges.get(&veth_index) != Some(&br_index) {
            return Err(format!("`{veth}` is not a port of bridge `{bridge}`"));
        }
        if let Some(other) = self
            .all_endpoints()
            .into_iter()
            .find(|e| e.ip.addr == ip.addr)
        {
            return Err(format!(
                "{} is already the endpoint on `{}`",
                ip.addr, other.veth
            ));
        }
        let mac = match mac {
            Some(m) => m,
            None => self.learn_mac(&veth, veth_index).await?,
        };
        self.state.endpoints.push(EndpointSpec {
            bridge,
            veth,
            ip,
            mac,
        });
        if let Err(e) = self.state.save(&self.state_dir) {
            self.state.endpoints.pop();
            return Err(e.to_string());
        }
        self.sync_endpoints();
        info!(ip = %ip, %mac, "endpoint added");
        Ok(())
    }

    async fn learn_mac(&self, veth: &str, index: u32) -> Result<Mac, String> {
        let macs = self
            .nl
            .learned_macs(index)
            .await
            .map_err(|e| e.to_string())?;
        match macs.as_slice() {
            [one] => Ok(Mac(*one)),
            [] => Err(format!("no MAC learned on `{veth}` yet; pass --mac")),
            _ => Err(format!("several MACs learned on `{veth}`; pass --mac")),
        }
    }

    pub(super) fn del_endpoint(&mut self, ip: Ipv4Addr) -> Result<(), String> {
        let Some(pos) = self.state.endpoints.iter().position(|e| e.ip.addr == ip) else {
            return Err(format!(
                "{ip} is not a registered endpoint (see `bpfnet ls`)"
            ));
        };
        let gone = self.state.endpoints.remove(pos);
        if let Err(e) = self.state.save(&self.state_dir) {
            self.state.endpoints.insert(pos, gone);
            return Err(e.to_string());
        }
        self.sync_endpoints();
        info!(%ip, "endpoint removed");
        Ok(())
    }

    /// Make `endpoints_v1` and `ports_v2` match the registered endpoints and the veths
    /// attached now (a veth may come and go with its container; its name is the link).
    /// Bindings the datapath learned from a veth's first packet stay while their veth is
    /// attached and nothing registered claims that veth or address.
    pub(super) fn sync_endpoints(&mut self) {
        let by_name: BTreeMap<&str, u32> =
            self.veths.iter().map(|(i, n)| (n.as_str(), *i)).collect();
        let mut want_eps = BTreeMap::new();
        for e in &self.all_endpoints() {
            match by_name.get(e.veth.as_str()) {
                Some(&ifindex) => {
                    let network = self.veth_bridges.get(&ifindex).copied().unwrap_or(0);
                    let ep = Endpoint {
                        ifindex,
                        network,
                        mac: e.mac.0,
                        flags: 0,
                        _pad: 0,
                    };
                    want_eps.insert(u32::from_ne_bytes(e.ip.addr.octets()), ep);
                }
                None => {
                    warn!(veth = %e.veth, ip = %e.ip, "endpoint's veth is absent; waiting for it")
                }
            }
        }
        let claimed: BTreeSet<u32> = want_eps.values().map(|ep| ep.ifindex).collect();
        let maps = &mut self.dp.maps;
        let have: Vec<(u32, Endpoint)> = maps.endpoints.iter().filter_map(Result::ok).collect();
        let mut learned = BTreeMap::new();
        for (ip, ep) in have {
            let keep = ep.flags & EP_LEARNED != 0
                && self.veths.contains_key(&ep.ifindex)
                && !claimed.contains(&ep.ifindex)
                && !want_eps.contains_key(&ip);
            if keep {
                learned.insert(ip, ep);
            } else if want_eps.get(&ip) != Some(&ep)
                && let Err(e) = maps.endpoints.remove(&ip)
            {
                warn!(error = %e, "cannot remove an endpoint");
            }
        }
        for (ip, ep) in &want_eps {
            if let Err(e) = maps.endpoints.insert(ip, ep, 0) {
                warn!(error = %e, "cannot install an endpoint");
            }
        }
        let mut want_ports = BTreeMap::new();
        for (&veth, &bridge) in &self.veth_bridges {
            let mac = want_eps
                .values()
                .chain(learned.values())
                .find(|ep| ep.ifindex == veth)
                .map(|ep| ep.mac);
            want_ports.insert(veth, self.port(bridge, mac));
        }
        let maps = &mut self.dp.maps;
        let have: Vec<u32> = maps.ports.keys().filter_map(Result::ok).collect();
        for i in have.iter().filter(|i| !want_ports.contains_key(i)) {
            if let Err(e) = maps.ports.remove(i) {
                warn!(error = %e, "cannot remove a bridge port");
            }
        }
        for (i, port) in &want_ports {
            if let Err(e) = maps.ports.insert(i, port, 0) {
                warn!(error = %e, "cannot record a bridge port");
            }
        }
    }

    /// The `ports_v2` entry of a veth on `bridge` whose endpoints use `mac` (None: not
    /// known yet, so its first packet binds it).
    pub(super) fn port(&self, bridge: u32, mac: Option<[u8; 6]>) -> Port {
        Port {
            network: bridge,
            flags: if mac.is_some() { PORT_ENFORCE } else { 0 },
            bridge_mac: self.bridge_macs.get(&bridge).copied().unwrap_or_default(),
            mac: mac.unwrap_or_default(),
            _pad: [0; 4],
        }
    }
}
