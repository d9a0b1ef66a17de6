//! The cluster setup part: what joining a network asks of the host, brought in line at
//! each reconcile. Each joined network's bridge has the first address of this node's
//! prefix (IPv4, and IPv6 when dual-stack; the bridge created when missing), and a
//! `vxlan` network has bpfnet's VXLAN device, served as an uplink, with `to_tunnel` on
//! its way out. `plan` is pure; `cluster_join.rs` carries the steps out.
use std::net::IpAddr;

use super::{Daemon, Prefix, cluster::gateway_of, links::Links};
use crate::{
    cluster::{Ipv6Net, Mode, net6},
    endpoint::Ipv4Cidr,
};

/// What one joined network asks of the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Joined {
    pub bridge: String,
    /// This node's prefix.
    pub own: Ipv4Cidr,
    /// This node's IPv6 prefix, on a dual-stack network.
    pub own6: Option<Ipv6Net>,
    /// Whether the network's mode is `vxlan`.
    pub vxlan: bool,
}

/// One thing to do on the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// Give `bridge` the first address of `own`, creating the bridge when missing.
    Gateway { bridge: String, own: Ipv4Cidr },
    /// Give `bridge` the first address of `own6`.
    Gateway6 { bridge: String, own6: Ipv6Net },
    /// Create the VXLAN device (anew when bound elsewhere), serve it as an uplink and
    /// send the host's packets into it.
    Vxlan,
    /// Send the host's packets into the VXLAN device `index` (`to_tunnel`).
    IntoTunnel { index: u32 },
}

/// The steps that make the host hold what the `joined` networks ask, as `links` and the
/// host's address `prefixes` show it; `vxlan` and `to_tunnel`: the VXLAN device set up,
/// and the one `to_tunnel` is attached to (0: none).
pub(super) fn plan(
    joined: &[Joined],
    links: &Links,
    prefixes: &[Prefix],
    vxlan: u32,
    to_tunnel: u32,
) -> Vec<Step> {
    let has = |bridge: &str, addr: IpAddr, len: u8| {
        links.by_name(bridge).is_some_and(|l| {
            prefixes
                .iter()
                .any(|&(i, a, l2)| i == l.index && a == addr && l2 == len)
        })
    };
    let mut steps = Vec::new();
    for j in joined {
        if !has(
            &j.bridge,
            IpAddr::V4(gateway_of(&j.own)),
            j.own.prefix_len(),
        ) {
            steps.push(Step::Gateway {
                bridge: j.bridge.clone(),
                own: j.own,
            });
        }
        if let Some(own6) = j.own6
            && !has(
                &j.bridge,
                IpAddr::V6(net6::gateway(&own6)),
                own6.prefix_len(),
            )
        {
            steps.push(Step::Gateway6 {
                bridge: j.bridge.clone(),
                own6,
            });
        }
    }
    if joined.iter().any(|j| j.vxlan) {
        if vxlan == 0 || links.get(vxlan).is_none() {
            steps.push(Step::Vxlan);
        } else if to_tunnel != vxlan {
            steps.push(Step::IntoTunnel { index: vxlan });
        }
    }
    steps
}

/// The cluster setup part's record.
#[derive(Debug, Default)]
pub(super) struct ClusterSetup {
    /// The steps last tried (None: none yet): the same steps are not tried again until
    /// something changes them (a failure is not retried at every event; the repair
    /// timer retries it).
    tried: Option<Vec<Step>>,
}

impl ClusterSetup {
    /// Whether `steps` are to be carried out now; notes them as tried.
    fn due(&mut self, steps: &[Step]) -> bool {
        if self.tried.as_deref() == Some(steps) {
            return false;
        }
        self.tried = Some(steps.to_vec());
        !steps.is_empty()
    }

    /// Carry out whatever is planned at the next reconcile.
    pub(super) fn forget(&mut self) {
        self.tried = None;
    }
}

impl Daemon {
    /// The networks joined so far.
    fn joined(&self) -> Vec<Joined> {
        self.cluster
            .networks
            .iter()
            .filter_map(|net| {
                let (config, own) = net.joined.as_ref()?;
                Some(Joined {
                    bridge: net.bridge.clone(),
                    own: *own,
                    own6: net.own6,
                    vxlan: config.mode == Mode::Vxlan,
                })
            })
            .collect()
    }

    /// The cluster setup part's turn in `reconcile`.
    pub(super) async fn setup_cluster(&mut self) {
        let steps = plan(
            &self.joined(),
            &self.host.links,
            &self.host.prefixes,
            self.cluster.vxlan,
            self.cluster.to_tunnel,
        );
        if !self.parts.cluster_setup.due(&steps) {
            return;
        }
        for step in steps {
            match step {
                Step::Gateway { bridge, own } => self.set_cluster_gateway(&bridge, own).await,
                Step::Gateway6 { bridge, own6 } => {
                    self.set_cluster_gateway6(&bridge, own6).await;
                }
                Step::Vxlan => self.ensure_vxlan().await,
                Step::IntoTunnel { index } => self.host_into_tunnel(index).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        daemon::links::Uplinks,
        netlink::{Layer, Link},
    };

    fn link(index: u32, name: &str, is_bridge: bool) -> Link {
        Link {
            index,
            name: name.into(),
            controller: None,
            is_veth: false,
            is_bridge,
            layer: Layer::Ether,
            mac: Some([2, 0, 0, 0, 0, 1]),
        }
    }

    fn links(all: Vec<Link>) -> Links {
        let mut links = Links::new(["cbr0".to_owned()], Uplinks::Every);
        links.replace_all(all);
        links
    }

    fn joined(vxlan: bool, own6: Option<&str>) -> Joined {
        Joined {
            bridge: "cbr0".into(),
            own: Ipv4Cidr::new([10, 244, 1, 0].into(), 24).expect("a /24"),
            own6: own6.map(|s| s.parse().expect("an IPv6 prefix in the test")),
            vxlan,
        }
    }

    fn p(ifindex: u32, addr: &str, len: u8) -> Prefix {
        (ifindex, addr.parse().expect("an address in the test"), len)
    }

    #[test]
    fn a_missing_bridge_or_gateway_address_is_set_up() {
        let j = [joined(false, Some("fd00:244:1::/64"))];
        let gateway = Step::Gateway {
            bridge: "cbr0".into(),
            own: j[0].own,
        };
        let gateway6 = Step::Gateway6 {
            bridge: "cbr0".into(),
            own6: j[0].own6.expect("dual-stack"),
        };
        assert_eq!(
            plan(&j, &links(vec![]), &[], 0, 0),
            [gateway.clone(), gateway6.clone()],
            "no bridge yet"
        );
        let with_bridge = links(vec![link(7, "cbr0", true)]);
        // Another address of the bridge, or the gateway on another interface, is not it.
        let others = [p(7, "10.244.1.1", 16), p(2, "fd00:244:1::1", 64)];
        assert_eq!(
            plan(&j, &with_bridge, &others, 0, 0),
            [gateway, gateway6],
            "neither gateway address"
        );
        let both = [p(7, "10.244.1.1", 24), p(7, "fd00:244:1::1", 64)];
        assert_eq!(plan(&j, &with_bridge, &both, 0, 0), [], "all in place");
        assert_eq!(plan(&[], &with_bridge, &[], 0, 0), [], "nothing joined");
    }

    #[test]
    fn a_vxlan_network_has_its_device_and_the_hosts_way_into_it() {
        let j = [joined(true, None)];
        let host = links(vec![link(7, "cbr0", true), link(9, "bpfnet-vxlan", false)]);
        let gw = [p(7, "10.244.1.1", 24)];
        assert_eq!(plan(&j, &host, &gw, 0, 0), [Step::Vxlan], "no device yet");
        assert_eq!(
            plan(&j, &host, &gw, 8, 8),
            [Step::Vxlan],
            "the device set up is gone: made anew"
        );
        assert_eq!(
            plan(&j, &host, &gw, 9, 0),
            [Step::IntoTunnel { index: 9 }],
            "the device without to_tunnel"
        );
        assert_eq!(plan(&j, &host, &gw, 9, 9), [], "all in place");
        assert_eq!(
            plan(&[joined(false, None)], &host, &gw, 0, 0),
            [],
            "a host-gw network has no device"
        );
    }

    #[test]
    fn the_same_steps_are_tried_once_until_something_changes() {
        let mut part = ClusterSetup::default();
        let steps = [Step::Vxlan];
        assert!(part.due(&steps), "first time");
        assert!(!part.due(&steps), "tried already");
        assert!(!part.due(&[]), "nothing to do");
        assert!(part.due(&steps), "wanted again after a change");
        part.forget();
        assert!(part.due(&steps), "the repair timer tries again");
    }
}
