//! Joining etcd networks: one control-plane task per network, the bridge given the
//! first address of the node's prefix, the VXLAN device of a `vxlan` network.
use std::{
    net::{IpAddr, Ipv4Addr},
    path::Path,
};

use common::{CLUSTER_VXLAN_MAC, CLUSTER_VXLAN_PORT};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::{Daemon, cluster::gateway_of, interfaces::Interfaces};
pub(super) use crate::netlink::VXLAN_DEVICE;
use crate::{
    cluster::{ClusterEvent, Ipv6Net, JoinOptions, net6},
    endpoint::{Ipv4Cidr, Mac},
    netlink::Layer,
};
/// What VXLAN adds to each packet: outer IPv4 (20), UDP (8), VXLAN (8) and the inner
/// Ethernet header (14).
const VXLAN_OVERHEAD: u32 = 50;

impl Daemon {
    /// Start following every etcd network: their events arrive on `tx`'s receiver,
    /// tagged with the network's index. The underlay address is `underlay`'s first
    /// IPv4 address, else the first uplink's.
    pub(super) async fn join_cluster(
        &mut self,
        etcd: &super::EtcdJoin,
        underlay: Option<&str>,
        state_dir: &Path,
        tx: mpsc::Sender<(usize, ClusterEvent)>,
    ) {
        let Some((address, index)) = self.underlay_address(underlay).await else {
            warn!(
                ?underlay,
                "no IPv4 address to reach this node at: not joining the cluster"
            );
            return;
        };
        // Peers compare it with their neighbour entry for the address.
        let mac = self
            .host
            .links
            .get(index)
            .filter(|l| l.layer == Layer::Ether)
            .and_then(|l| l.mac)
            .filter(|m| *m != [0; 6])
            .map(Mac);
        info!(node = %etcd.node_name, underlay = %address, mac = ?mac.map(|m| m.to_string()), "joining the cluster");
        self.cluster.name = Some((etcd.node_name.clone(), address));
        self.cluster.underlay = index;
        let incarnation = crate::cluster::incarnation();
        for (i, net) in self.cluster.networks.iter().enumerate() {
            let opts = JoinOptions {
                etcd: etcd.access.clone(),
                prefix: net.prefix.clone(),
                name: etcd.node_name.clone(),
                underlay: address,
                mac,
                incarnation,
                // Each network persists its own view.
                state_dir: state_dir.join("cluster").join(&net.bridge),
            };
            let (net_tx, mut net_rx) = mpsc::channel(16);
            tokio::spawn(crate::cluster::run(opts, net_tx));
            let tx = tx.clone();
            tokio::spawn(async move {
                while let Some(event) = net_rx.recv().await {
                    if tx.send((i, event)).await.is_err() {
                        break;
                    }
                }
            });
        }
    }

    /// The IPv4 address other nodes reach this one at, and its interface.
    async fn underlay_address(&self, underlay: Option<&str>) -> Option<(Ipv4Addr, u32)> {
        let prefixes = self.nl.prefixes().await.ok()?;
        let candidates: Vec<u32> = match underlay {
            Some(name) => vec![self.nl.link_by_name(name).await.ok()??.index],
            None => self.host.links.uplinks().map(|l| l.index).collect(),
        };
        candidates.iter().find_map(|&i| {
            prefixes.iter().find_map(|&(index, a, _)| match a {
                IpAddr::V4(a) if index == i && !a.is_loopback() => Some((a, i)),
                _ => None,
            })
        })
    }

    /// Give `bridge` the first address of this node's prefix `own`, creating the
    /// bridge when it is missing; its other addresses stay.
    pub(super) async fn set_cluster_gateway(&mut self, bridge: &str, own: Ipv4Cidr) {
        let gateway = gateway_of(&own);
        let len = own.prefix_len();
        let result = match self.nl.link_by_name(bridge).await {
            Ok(Some(link)) => match self.nl.prefixes().await {
                Ok(p)
                    if p.iter()
                        .any(|&(i, a, l)| i == link.index && a == gateway && l == len) =>
                {
                    return;
                }
                Ok(_) => self.nl.add_address(&link, gateway, len).await,
                Err(e) => Err(e),
            },
            Ok(None) => {
                info!(%bridge, %gateway, "creating the cluster network's bridge");
                self.nl
                    .create_bridge(bridge, Some((gateway, len)))
                    .await
                    .map(drop)
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => info!(%bridge, %gateway, len, "cluster gateway address set"),
            Err(e) => warn!(%bridge, error = %e, "cannot give the cluster's bridge its address"),
        }
    }

    /// Give `bridge` (created by `set_cluster_gateway`) the first address of this
    /// node's IPv6 prefix `own6`, as a dual-stack network's bridge has on one host.
    pub(super) async fn set_cluster_gateway6(&mut self, bridge: &str, own6: Ipv6Net) {
        let gateway = net6::gateway(&own6);
        let result = match self.nl.link_by_name(bridge).await {
            Ok(Some(link)) => match self.nl.prefixes().await {
                Ok(p)
                    if p.iter().any(|&(i, a, l)| {
                        i == link.index && a == IpAddr::V6(gateway) && l == own6.prefix_len()
                    }) =>
                {
                    return;
                }
                Ok(_) => self.nl.add_address(&link, gateway, own6.prefix_len()).await,
                Err(e) => Err(e),
            },
            Ok(None) => {
                warn!(%bridge, "no cluster bridge for the IPv6 gateway");
                return;
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                info!(%bridge, %gateway, len = own6.prefix_len(), "cluster IPv6 gateway address set");
            }
            Err(e) => {
                warn!(%bridge, error = %e, "cannot give the cluster's bridge its IPv6 address");
            }
        }
    }

    /// The VXLAN device, created when missing (collect-metadata, the underlay's MTU
    /// less VXLAN's overhead, bound to the underlay address and interface this node
    /// registered), served as an uplink: packets out of the tunnel enter by it. A device
    /// bound otherwise (left by an earlier start on another underlay) is made anew.
    pub(super) async fn ensure_vxlan(&mut self) {
        let underlay = self
            .cluster
            .name
            .as_ref()
            .map(|(_, address)| (*address, self.cluster.underlay));
        let existing = match self.nl.link_by_name(VXLAN_DEVICE).await {
            Ok(Some(link)) => match (underlay, self.nl.vxlan_binding(link.index).await) {
                (Some((address, index)), Ok(bound)) if bound != (Some(address), Some(index)) => {
                    info!(device = VXLAN_DEVICE, ?bound, underlay = %address, index, "the VXLAN device is bound elsewhere: making it anew");
                    match self.nl.delete_link(link.index).await {
                        Ok(()) => {
                            // Not attached to again: it is gone.
                            self.host.links.remove(link.index);
                            Ok(None)
                        }
                        Err(e) => Err(e),
                    }
                }
                _ => Ok(Some(link)),
            },
            other => other,
        };
        let link = match existing {
            Ok(Some(link)) => Ok(link),
            Ok(None) => {
                let Some(underlay) = underlay else {
                    warn!("no underlay address: no VXLAN device");
                    return;
                };
                let mtu = match self.nl.mtu(self.cluster.underlay).await {
                    Ok(Some(mtu)) => mtu,
                    _ => 1500,
                };
                let mtu = mtu.saturating_sub(VXLAN_OVERHEAD);
                info!(
                    device = VXLAN_DEVICE,
                    mtu, "creating the cluster's VXLAN device"
                );
                self.nl
                    .create_vxlan(
                        VXLAN_DEVICE,
                        CLUSTER_VXLAN_PORT,
                        CLUSTER_VXLAN_MAC,
                        mtu,
                        underlay,
                    )
                    .await
            }
            Err(e) => Err(e),
        };
        match link {
            Ok(link) => {
                self.cluster.vxlan = link.index;
                self.host.links.add_uplink(VXLAN_DEVICE);
                let index = link.index;
                self.host.links.upsert(link);
                self.apply_links();
                self.host_into_tunnel(index).await;
            }
            Err(e) => warn!(error = %e, "no VXLAN device: VXLAN peers are unreachable"),
        }
    }

    /// The host's own packets into the tunnel: `to_tunnel` on the VXLAN device's way
    /// out gives them their key and MACs, so no neighbour is resolved there (ARP off).
    pub(super) async fn host_into_tunnel(&mut self, index: u32) {
        if let Err(e) = self.nl.no_arp(index).await {
            warn!(error = %e, "the host's packets into the tunnel wait for ARP: it cannot reach other nodes' containers");
        }
        match Interfaces::attach_to_tunnel(&mut self.dp, index) {
            Ok(()) => self.cluster.to_tunnel = index,
            Err(e) => {
                warn!(error = %e, "the host's packets into the tunnel get no key: it cannot reach other nodes' containers");
            }
        }
    }
}
