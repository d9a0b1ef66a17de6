//! Mapping tests against inspect answers recorded from dockerd 20.10 (API 1.41).
use bollard::models::{ContainerInspectResponse, NetworkInspect, PortBinding};

use super::*;

fn container(json: &str) -> ContainerInspectResponse {
    let mut all: Vec<ContainerInspectResponse> =
        serde_json::from_str(json).expect("recorded inspect parses");
    all.remove(0)
}

fn network(json: &str) -> NetworkInspect {
    let mut all: Vec<NetworkInspect> = serde_json::from_str(json).expect("recorded network parses");
    all.remove(0)
}

fn specs(c: &ContainerNet) -> Vec<String> {
    c.publishes.iter().map(ToString::to_string).collect()
}

#[test]
fn a_container_on_two_networks_with_tcp_and_localhost_udp_ports() {
    let c = container_net(&container(include_str!("../fixtures/web.json"))).expect("running");
    assert_eq!(c.name, "web");
    assert!(
        c.sandbox.as_deref().is_some_and(|s| s.contains("/netns/")),
        "{:?}",
        c.sandbox
    );
    let nets: Vec<(&str, String, String)> = c
        .attachments
        .iter()
        .map(|a| (a.network.as_str(), cidr(a), a.mac.to_string()))
        .collect();
    assert_eq!(
        nets,
        [
            ("bridge", "172.17.0.2/16".into(), "02:42:ac:11:00:02".into()),
            ("net1", "172.30.0.3/24".into(), "02:42:ac:1e:00:03".into()),
        ]
    );
    // Published to the default bridge's address, whatever other networks it joined.
    assert_eq!(
        specs(&c),
        [
            "8038:172.17.0.2:8038/tcp",
            "127.0.0.1:9090:172.17.0.2:9090/udp"
        ]
    );
}

#[test]
fn ranges_arrive_as_single_ports_and_host_ips_are_kept() {
    let c = container_net(&container(include_str!("../fixtures/rng.json"))).expect("running");
    assert_eq!(
        specs(&c),
        [
            "8000:172.17.0.3:80/tcp",
            "8001:172.17.0.3:81/tcp",
            "127.0.0.1:5353:172.17.0.3:53/udp"
        ]
    );
}

/// `web.json` with each port also bound on IPv6 (`::`, `::1`) as a dockerd with
/// `--ipv6` writes it, and one more port bound on an IPv6 host address only.
fn web_with_ipv6_bindings() -> ContainerInspectResponse {
    let mut inspect = container(include_str!("../fixtures/web.json"));
    let ports = inspect
        .network_settings
        .as_mut()
        .and_then(|s| s.ports.as_mut())
        .expect("web.json has port bindings");
    let binding = |ip: &str, port: &str| PortBinding {
        host_ip: Some(ip.into()),
        host_port: Some(port.into()),
    };
    for (port, ip) in [("8038/tcp", "::"), ("9090/udp", "::1")] {
        let bindings = ports
            .get_mut(port)
            .and_then(Option::as_mut)
            .unwrap_or_else(|| panic!("web.json binds {port}"));
        bindings.push(binding(ip, &port[..4]));
    }
    ports.insert("53/udp".into(), Some(vec![binding("2001:db8::1", "5353")]));
    inspect
}

/// An attachment's IPv4 address as text ("" when it has none).
fn cidr(a: &Attachment) -> String {
    a.ip.map(|c| c.to_string()).unwrap_or_default()
}

#[test]
fn an_ipv6_only_network_gives_an_attachment_without_ipv4_and_only_its_ipv6_publishes() {
    let mut inspect = web_with_ipv6_bindings();
    with_ipv6(&mut inspect, "bridge", "fd00:beef::2");
    // `--ipv4=false`: Docker writes no IPv4 address.
    let ep = inspect
        .network_settings
        .as_mut()
        .and_then(|s| s.networks.as_mut())
        .and_then(|n| n.get_mut("bridge"))
        .expect("on bridge");
    (ep.ip_address, ep.ip_prefix_len) = (Some(String::new()), Some(0));
    let c = container_net(&inspect).expect("running");
    let bridge = &c.attachments[0];
    assert_eq!(bridge.network, "bridge");
    assert_eq!(bridge.ip, None, "no IPv4 on an IPv6-only network");
    assert_eq!(
        bridge.ip6.map(|c| c.to_string()).as_deref(),
        Some("fd00:beef::2/64")
    );
    assert_eq!(
        specs(&c),
        [
            "8038:[fd00:beef::2]:8038/tcp",
            "[::1]:9090:[fd00:beef::2]:9090/udp",
            "[2001:db8::1]:5353:[fd00:beef::2]:53/udp",
        ],
        "IPv4 bindings have nowhere to lead"
    );
}

/// Gives the container `ip6` on network `name`, as Docker reports a `--ipv6` network's.
fn with_ipv6(inspect: &mut ContainerInspectResponse, name: &str, ip6: &str) {
    let ep = inspect
        .network_settings
        .as_mut()
        .and_then(|s| s.networks.as_mut())
        .and_then(|n| n.get_mut(name))
        .unwrap_or_else(|| panic!("the container is on {name}"));
    ep.global_ipv6_address = Some(ip6.into());
    ep.global_ipv6_prefix_len = Some(64);
}

#[test]
fn ipv6_bindings_publish_to_the_primary_networks_ipv6_address() {
    let mut inspect = web_with_ipv6_bindings();
    with_ipv6(&mut inspect, "bridge", "fd00:beef::2");
    with_ipv6(&mut inspect, "net1", "fd00:cafe::3");
    let c = container_net(&inspect).expect("running");
    assert_eq!(
        specs(&c),
        [
            "8038:172.17.0.2:8038/tcp",
            "8038:[fd00:beef::2]:8038/tcp",
            "127.0.0.1:9090:172.17.0.2:9090/udp",
            "[::1]:9090:[fd00:beef::2]:9090/udp",
            "[2001:db8::1]:5353:[fd00:beef::2]:53/udp",
        ],
        "`::` is every host IPv6 address; IPv4 bindings stay IPv4"
    );
}

#[test]
fn ipv6_bindings_of_a_container_without_ipv6_on_its_primary_network_are_left_out() {
    let mut inspect = web_with_ipv6_bindings();
    // An IPv6 address elsewhere is not where Docker's mapping leads.
    with_ipv6(&mut inspect, "net1", "fd00:cafe::3");
    let c = container_net(&inspect).expect("running");
    assert_eq!(
        specs(&c),
        [
            "8038:172.17.0.2:8038/tcp",
            "127.0.0.1:9090:172.17.0.2:9090/udp"
        ]
    );
}

#[test]
fn a_custom_network_only_container_publishes_nothing_and_gets_its_address() {
    let c = container_net(&container(include_str!("../fixtures/n1.json"))).expect("running");
    assert!(c.publishes.is_empty());
    assert_eq!(c.attachments.len(), 1);
    assert_eq!(c.attachments[0].network, "net1");
    assert_eq!(cidr(&c.attachments[0]), "172.30.0.2/24");
}

#[test]
fn a_stopped_container_is_nothing() {
    let mut inspect = container(include_str!("../fixtures/web.json"));
    if let Some(s) = inspect.state.as_mut() {
        s.running = Some(false);
    }
    assert_eq!(container_net(&inspect), None);
}

#[test]
fn bridges_of_docker_networks() {
    let default = network(include_str!("../fixtures/bridge.json"));
    let id = default.id.clone().expect("id");
    assert_eq!(bridge_name(&id, default.options.as_ref()), "docker0");
    let custom = network(include_str!("../fixtures/net1.json"));
    let id = custom.id.clone().expect("id");
    assert_eq!(
        bridge_name(&id, custom.options.as_ref()),
        format!("br-{}", &id[..12])
    );
}

#[test]
fn network_options_become_flags() {
    use common::{NET_INTERNAL, NET_NO_ICC, NET_NO_MASQ, NET_ROUTED};
    let opts = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (format!("com.docker.network.bridge.{k}"), v.to_string()))
            .collect::<std::collections::HashMap<_, _>>()
    };
    assert_eq!(network_flags(None, None), 0);
    assert_eq!(network_flags(Some(true), None), NET_INTERNAL);
    assert_eq!(
        network_flags(None, Some(&opts(&[("gateway_mode_ipv4", "routed")]))),
        NET_ROUTED
    );
    assert_eq!(
        network_flags(None, Some(&opts(&[("gateway_mode_ipv6", "routed")]))),
        common::NET_ROUTED6
    );
    assert_eq!(
        network_flags(None, Some(&opts(&[("gateway_mode_ipv6", "nat")]))),
        common::NET_NAT6
    );
    assert_eq!(
        network_flags(None, Some(&opts(&[("gateway_mode_ipv4", "nat")]))),
        0
    );
    assert_eq!(
        network_flags(
            Some(false),
            Some(&opts(&[
                ("enable_icc", "false"),
                ("enable_ip_masquerade", "false")
            ]))
        ),
        NET_NO_ICC | NET_NO_MASQ
    );
    assert_eq!(
        network_flags(None, Some(&opts(&[("enable_icc", "true")]))),
        0
    );
    let default = network(include_str!("../fixtures/bridge.json"));
    assert_eq!(
        network_flags(default.internal, default.options.as_ref()),
        0,
        "the recorded default bridge: icc on; its masquerade off is dockerd's ip-masq, not a wish"
    );
}
