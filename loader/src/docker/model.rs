//! From Docker's inspect answers to what bpfnet installs: a running container's
//! addresses on each network and its published ports.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bollard::models::{ContainerInspectResponse, PortBinding};

use crate::{
    endpoint::{Ipv4Cidr, Ipv6Cidr, Mac},
    spec::{PortRange, Proto, PublishSpec},
};

/// A container's attachment to one Docker network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    pub network_id: String,
    pub network: String,
    /// Its IPv4 address (none on an IPv6-only network, `--ipv4=false`).
    pub ip: Option<Ipv4Cidr>,
    /// Its global (or unique local) IPv6 address on a `--ipv6` network.
    pub ip6: Option<Ipv6Cidr>,
    pub mac: Mac,
}

/// What bpfnet needs of a running container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerNet {
    pub id: String,
    pub name: String,
    /// Its network namespace (`NetworkSettings.SandboxKey`).
    pub sandbox: Option<String>,
    /// Sorted by network name.
    pub attachments: Vec<Attachment>,
    /// Sorted.
    pub publishes: Vec<PublishSpec>,
}

/// The network Docker's port mapping targets: the default bridge when attached,
/// else the first network by name (what `docker run --network X -p` gives).
fn primary(attachments: &[Attachment]) -> Option<&Attachment> {
    attachments
        .iter()
        .find(|a| a.network == "bridge")
        .or_else(|| attachments.first())
}

/// An endpoint's IPv6 address, when Docker gave it one (it writes "" and 0 otherwise).
fn ipv6(addr: Option<&str>, len: Option<i64>) -> Option<Ipv6Cidr> {
    let addr: Ipv6Addr = addr?.parse().ok()?;
    format!("{addr}/{}", len?).parse().ok()
}

/// An endpoint's IPv4 address, when Docker gave it one (it writes "" and 0 on an
/// IPv6-only network).
fn ipv4(addr: Option<&str>, len: Option<i64>) -> Option<Ipv4Cidr> {
    let addr: Ipv4Addr = addr?.parse().ok()?;
    format!("{addr}/{}", len?).parse().ok()
}

/// A running container's networking (its attachments with an address of either
/// family); None when it is not running.
pub fn container_net(c: &ContainerInspectResponse) -> Option<ContainerNet> {
    if !c.state.as_ref()?.running? {
        return None;
    }
    let settings = c.network_settings.as_ref()?;
    let mut attachments: Vec<Attachment> = settings
        .networks
        .iter()
        .flatten()
        .filter_map(|(name, ep)| {
            let ip = ipv4(ep.ip_address.as_deref(), ep.ip_prefix_len);
            let ip6 = ipv6(ep.global_ipv6_address.as_deref(), ep.global_ipv6_prefix_len);
            if ip.is_none() && ip6.is_none() {
                return None;
            }
            Some(Attachment {
                network_id: ep.network_id.clone()?,
                network: name.clone(),
                ip,
                ip6,
                mac: ep.mac_address.as_deref()?.parse().ok()?,
            })
        })
        .collect();
    attachments.sort_by(|a, b| a.network.cmp(&b.network));
    let mut publishes: Vec<PublishSpec> = match primary(&attachments) {
        Some(target) => settings
            .ports
            .iter()
            .flatten()
            .flat_map(|(port, bindings)| {
                bindings
                    .iter()
                    .flatten()
                    .filter_map(move |b| publish(target, port, b))
            })
            .collect(),
        None => Vec::new(),
    };
    publishes.sort();
    publishes.dedup();
    Some(ContainerNet {
        id: c.id.clone()?,
        name: c
            .name
            .as_deref()
            .unwrap_or_default()
            .trim_start_matches('/')
            .into(),
        sandbox: settings.sandbox_key.clone().filter(|s| !s.is_empty()),
        attachments,
        publishes,
    })
}

/// One binding of `"8038/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8038"}]` to the
/// container's address on `target`: an IPv4 binding (`0.0.0.0`, none, an IPv4 address)
/// to its IPv4 address, an IPv6 one (`::`, an IPv6 address) to its IPv6 address, left
/// out when it has no address of that family there (as Docker without its userland
/// proxy leaves it).
fn publish(target: &Attachment, port: &str, b: &PortBinding) -> Option<PublishSpec> {
    let (cport, proto) = port.split_once('/').unwrap_or((port, "tcp"));
    let proto = match proto {
        "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        _ => return None,
    };
    let host_ip = match b.host_ip.as_deref().unwrap_or("") {
        "" => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        ip => ip.parse::<IpAddr>().ok()?,
    };
    let container_ip = match host_ip {
        IpAddr::V4(_) => IpAddr::V4(target.ip?.addr()),
        IpAddr::V6(_) => IpAddr::V6(target.ip6?.addr()),
    };
    let host_port = PortRange::parse(b.host_port.as_deref()?)?;
    let container_ports = PortRange::parse(cport)?;
    (host_port.count() == container_ports.count()).then_some(PublishSpec {
        // `0.0.0.0` and `::`: every host address of the family.
        host_ip: Some(host_ip).filter(|ip| !ip.is_unspecified()),
        host_ports: host_port,
        container_ip,
        container_ports,
        proto,
    })
}

/// The `NET_*` flags of a Docker bridge network, from its inspect answer: `--internal`,
/// and the options `gateway_mode_ipv4=routed` and `gateway_mode_ipv6=nat|routed` (Docker
/// 27+), `enable_icc=false` (on the
/// default bridge, daemon.json's `"icc": false`) and `enable_ip_masquerade=false` (user
/// networks only).
pub fn network_flags(
    internal: Option<bool>,
    options: Option<&std::collections::HashMap<String, String>>,
) -> u32 {
    let opt = |name: &str, value: &str| {
        options
            .and_then(|o| o.get(&format!("com.docker.network.bridge.{name}")))
            .is_some_and(|v| v == value)
    };
    let mut flags = 0;
    if internal == Some(true) {
        flags |= common::NET_INTERNAL;
    }
    if opt("gateway_mode_ipv4", "routed") {
        flags |= common::NET_ROUTED;
    }
    if opt("gateway_mode_ipv6", "routed") {
        flags |= common::NET_ROUTED6;
    }
    if opt("gateway_mode_ipv6", "nat") {
        flags |= common::NET_NAT6;
    }
    if opt("enable_icc", "false") {
        flags |= common::NET_NO_ICC;
    }
    // On the default bridge the option mirrors dockerd's own `ip-masq`, which bpfnet
    // asks to be off so that bpfnet masquerades: there it is not the user's wish.
    if opt("enable_ip_masquerade", "false") && !opt("default_bridge", "true") {
        flags |= common::NET_NO_MASQ;
    }
    flags
}

/// The Linux bridge behind a Docker bridge network.
pub fn bridge_name(
    network_id: &str,
    options: Option<&std::collections::HashMap<String, String>>,
) -> String {
    options
        .and_then(|o| o.get("com.docker.network.bridge.name"))
        .cloned()
        .unwrap_or_else(|| format!("br-{}", &network_id[..network_id.len().min(12)]))
}

#[cfg(test)]
mod tests;
