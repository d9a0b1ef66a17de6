//! Registered endpoints: the desired list in `State`, their entries in `endpoints_v1`,
//! and `ports_v2` for every attached container veth.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
};

use common::{EP_LEARNED, Endpoint, PORT_ENFORCE, Port};
use tracing::{info, warn};

use super::Daemon;
use crate::{
    datapath::sync::sync,
    endpoint::{EndpointSpec, Ipv4Cidr, Mac},
};

impl Daemon {
    pub(super) async fn add_endpoint(
        &mut self,
        bridge: String,
        veth: String,
        ip: Ipv4Cidr,
        mac: Option<Mac>,
    ) -> Result<(), String> {
        let Some(br_index) = self
            .links
            .by_name(&bridge)
            .map(|l| l.index)
            .filter(|&i| self.links.is_bridge(i))
        else {
            return Err(format!(
                "bridge `{bridge}` is not managed by bpfnet (see `bpfnet ls`)"
            ));
        };
        let Some((veth_index, veth_bridge)) = self
            .links
            .veths()
            .find(|(l, _)| l.name == veth)
            .map(|(l, b)| (l.index, b))
        else {
            return Err(format!(
                "`{veth}` is not a container veth on a managed bridge"
            ));
        };
        if veth_bridge != br_index {
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
        let veths: BTreeMap<&str, (u32, u32)> = self
            .links
            .veths()
            .map(|(l, bridge)| (l.name.as_str(), (l.index, bridge)))
            .collect();
        let mut want_eps = BTreeMap::new();
        for e in &self.all_endpoints() {
            match veths.get(e.veth.as_str()) {
                Some(&(ifindex, network)) => {
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
        // Bindings learned from a veth's first packet stay while nothing claims them.
        let claimed: BTreeSet<u32> = want_eps.values().map(|ep| ep.ifindex).collect();
        let attached: BTreeSet<u32> = veths.values().map(|&(i, _)| i).collect();
        let learned: BTreeMap<u32, Endpoint> = self
            .dp
            .maps
            .endpoints
            .iter()
            .filter_map(Result::ok)
            .filter(|(ip, ep)| {
                ep.flags & EP_LEARNED != 0
                    && attached.contains(&ep.ifindex)
                    && !claimed.contains(&ep.ifindex)
                    && !want_eps.contains_key(ip)
            })
            .collect();
        let mut want_ports = BTreeMap::new();
        for &(veth, bridge) in veths.values() {
            let mac = want_eps
                .values()
                .chain(learned.values())
                .find(|ep| ep.ifindex == veth)
                .map(|ep| ep.mac);
            want_ports.insert(veth, self.port(bridge, mac));
        }
        want_eps.extend(learned);
        let maps = &mut self.dp.maps;
        super::report("endpoints", sync(&mut maps.endpoints, &want_eps));
        super::report("bridge ports", sync(&mut maps.ports, &want_ports));
    }

    /// The `ports_v2` entry of a veth on `bridge` whose endpoints use `mac` (None: not
    /// known yet, so its first packet binds it).
    pub(super) fn port(&self, bridge: u32, mac: Option<[u8; 6]>) -> Port {
        Port {
            network: bridge,
            flags: if mac.is_some() { PORT_ENFORCE } else { 0 },
            bridge_mac: self.links.bridge_mac(bridge).unwrap_or_default(),
            mac: mac.unwrap_or_default(),
            _pad: [0; 4],
        }
    }
}
