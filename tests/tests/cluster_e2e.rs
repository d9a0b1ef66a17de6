//! Containers across hosts, end to end, on hosts with `FORWARD DROP` and raw notrack:
//! a network that routes each host's prefix (`--cluster-cidr`, the VPC case), static
//! host-gw peers (`--peer`), and, with etcd, a cluster that assembles itself. TCP, UDP
//! and ping between containers of different hosts arrive untranslated; other networks
//! stay isolated; a forged cluster source is refused.
use std::{
    io::{ErrorKind, Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket},
    process::Command,
    time::{Duration, Instant},
};

use bpfnet::api::RouteKind;
use bpfnet_tests::{
    cluster::{Cluster, Host, UNDERLAY, send_vxlan},
    daemon::{Daemon, cli, cli_ok, counter, ls},
    echo::{IO_TIMEOUT, Server, WhoamiServer, assert_fails, tcp_roundtrip, udp_roundtrip},
    etcd::EtcdServer,
    netns::Netns,
    packet, require_root,
    topo::{BRIDGE, add_bridge, plug},
};
use common::Reason;

const PORT: u16 = 8080;
/// A server of a host's own.
const HOST_PORT: u16 = 9100;

/// The address a whoami server at `to` saw a TCP connection from `ns` come from.
fn tcp_seen(ns: &Netns, to: Ipv4Addr) -> std::io::Result<Ipv4Addr> {
    let reply = tcp_roundtrip(ns, SocketAddr::from((to, PORT)), b"who")?;
    match WhoamiServer::seen(&reply) {
        SocketAddr::V4(a) => Ok(*a.ip()),
        SocketAddr::V6(a) => panic!("an IPv4 connection seen from {a}"),
    }
}

/// The address a whoami server at `to` saw a UDP datagram from `ns` come from.
fn udp_seen(ns: &Netns, to: Ipv4Addr) -> std::io::Result<Ipv4Addr> {
    let reply = udp_roundtrip(ns, SocketAddr::from((to, PORT)), b"who")?;
    match WhoamiServer::seen(&reply) {
        SocketAddr::V4(a) => Ok(*a.ip()),
        SocketAddr::V6(a) => panic!("an IPv4 datagram seen from {a}"),
    }
}

/// Whether two pings from `ns` to `to` are answered.
fn pings(ns: &Netns, to: Ipv4Addr) -> bool {
    Command::new("ip")
        .args(["netns", "exec", &ns.name, "ping", "-c", "2", "-W", "2"])
        .arg(to.to_string())
        .output()
        .expect("ping runs")
        .status
        .success()
}

/// TCP, UDP and ping from `from` (address `from_ip`) to `to_ip`, each arriving with the
/// sender's own address.
fn assert_reaches_untranslated(from: &Netns, from_ip: Ipv4Addr, to_ip: Ipv4Addr) {
    let tcp = tcp_seen(from, to_ip).unwrap_or_else(|e| panic!("TCP {from_ip} -> {to_ip}: {e}"));
    assert_eq!(
        tcp, from_ip,
        "TCP {from_ip} -> {to_ip} arrives untranslated"
    );
    let udp = udp_seen(from, to_ip).unwrap_or_else(|e| panic!("UDP {from_ip} -> {to_ip}: {e}"));
    assert_eq!(
        udp, from_ip,
        "UDP {from_ip} -> {to_ip} arrives untranslated"
    );
    assert!(pings(from, to_ip), "ping {from_ip} -> {to_ip}");
}

/// Two hosts with a container each (10.244.1.2, 10.244.2.2) on the switch.
fn two_hosts(tag: &str) -> Cluster {
    let mut c = Cluster::new(tag, 2);
    c.add_bridges();
    for h in &mut c.hosts {
        let i = h.index;
        h.add_container(
            Ipv4Addr::new(10, 244, i, 2),
            24,
            Ipv4Addr::new(10, 244, i, 1),
        );
    }
    c
}

const C1: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 2);
const C2: Ipv4Addr = Ipv4Addr::new(10, 244, 2, 2);

#[test]
fn a_routed_cluster_cidr_joins_containers_across_hosts_untranslated() {
    if !require_root() {
        return;
    }
    let mut c = two_hosts("vpc");
    c.add_router(&[("10.244.1.0/24", 1), ("10.244.2.0/24", 2)]);
    let _servers = [
        WhoamiServer::start(&c.hosts[0].containers[0], PORT),
        WhoamiServer::start(&c.hosts[1].containers[0], PORT),
    ];
    // The control: the router routes, but the hosts' FORWARD DROP stops it.
    assert_fails(
        "TCP across hosts before bpfnet",
        tcp_seen(&c.hosts[0].containers[0], C2),
        ErrorKind::TimedOut,
    );
    let _d: Vec<_> = c
        .hosts
        .iter()
        .map(|h| h.start_daemon(&["--cluster-cidr", "10.244.0.0/16"]))
        .collect();
    // The hosts reach the cluster CIDR by their default route alone: anyone behind the
    // router could claim it, so its sources are refused, and `status` says why.
    let host2 = &c.hosts[1].files.socket;
    let spoofed = counter(host2, Reason::DropSpoof);
    assert_fails(
        "TCP across hosts by the default route alone",
        tcp_seen(&c.hosts[0].containers[0], C2),
        ErrorKind::TimedOut,
    );
    assert!(
        counter(host2, Reason::DropSpoof) > spoofed,
        "a routed source by the default route counted as spoofed"
    );
    let warning = "cluster CIDR 10.244.0.0/16 has no route more specific than the default";
    assert!(status_warns(host2, warning), "status warns: {warning}");

    // The control: a route to the cluster CIDR through the router names it as the next
    // hop its sources come from (the daemons follow the route).
    for h in &c.hosts {
        h.ns.ip(&["route", "add", "10.244.0.0/16", "via", "192.0.2.254"]);
    }
    bpfnet_tests::wait_for("the warning gone", Duration::from_secs(5), || {
        !status_warns(host2, warning)
    });
    assert_reaches_untranslated(&c.hosts[0].containers[0], C1, C2);
    assert_reaches_untranslated(&c.hosts[1].containers[0], C2, C1);

    // A host on the segment that is not the route's next hop sends with host 1's
    // container as its source, straight to host 2: `drop-spoof`, nothing arrives.
    let out = outsider(&c);
    out.ip(&["route", "add", "10.244.2.0/24", "via", "192.0.2.2"]);
    let spoofed = counter(host2, Reason::DropSpoof);
    let received = c.hosts[1].containers[0].snmp("Ip", "InReceives");
    let forged = packet::udp((C1.octets(), 40000), (C2.octets(), PORT), b"who", true);
    for _ in 0..3 {
        bpfnet_tests::raw::send_frame(&out, &forged).expect("the forged datagram is sent");
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        c.hosts[1].containers[0].snmp("Ip", "InReceives"),
        received,
        "no routed source from another next hop reached the container"
    );
    assert!(
        counter(host2, Reason::DropSpoof) >= spoofed + 3,
        "a routed source from another next hop counted as spoofed"
    );
}

/// Whether `bpfnet status` of the daemon at `socket` warns `text`.
fn status_warns(socket: &std::path::Path, text: &str) -> bool {
    String::from_utf8_lossy(&cli(socket, &["status"]).stdout).contains(text)
}

#[test]
fn static_peers_join_containers_without_router_or_route_and_keep_others_out() {
    if !require_root() {
        return;
    }
    let mut c = two_hosts("peers");
    // A second, non-cluster network on host 2, and a host on the segment that forges a
    // cluster source.
    add_bridge(&c.hosts[1].ns, "br1", "172.18.0.1/16");
    let other = Netns::new(&format!("{}-other", c.hosts[1].ns.name));
    plug(
        &c.hosts[1].ns,
        ("br1", "vo0"),
        &other,
        ("eth0", "172.18.0.3/16"),
        Some("172.18.0.1"),
    );
    let forger = c.add_host();
    let forger_ns = forger.ns.name.clone();
    let forger_index = forger.index;
    let _servers = [
        WhoamiServer::start(&c.hosts[0].containers[0], PORT),
        WhoamiServer::start(&c.hosts[1].containers[0], PORT),
    ];
    let d1 = c.hosts[0].start_daemon(&["--peer", "10.244.2.0/24=192.0.2.2"]);
    let d2 = c.hosts[1].start_daemon(&["--peer", "10.244.1.0/24=192.0.2.1", "--bridge", "br1"]);
    assert_reaches_untranslated(&c.hosts[0].containers[0], C1, C2);
    assert_reaches_untranslated(&c.hosts[1].containers[0], C2, C1);
    // The hosts' only route to each other's prefix is bpfnet's own, for the host's
    // processes; the containers' packets never use it.
    let routes = c.hosts[0]
        .ns
        .output(&["ip", "route", "show", "10.244.2.0/24"]);
    assert_eq!(
        routes.trim(),
        "10.244.2.0/24 via 192.0.2.2 dev ul0 proto 98",
        "bpfnet's route to the static peer's prefix"
    );

    // Another network of host 2 is isolated from the cluster's.
    let isolation = counter(&c.hosts[1].files.socket, Reason::DropIsolation);
    assert_fails(
        "TCP from another network to a cluster container",
        tcp_seen(&other, C1),
        ErrorKind::TimedOut,
    );
    assert!(
        counter(&c.hosts[1].files.socket, Reason::DropIsolation) > isolation,
        "counted as isolation"
    );

    // A host on the segment claims host 1's prefix as its source: refused by host 2.
    let forger = &c.hosts[usize::from(forger_index) - 1].ns;
    assert_eq!(forger.name, forger_ns);
    forger.ip(&["addr", "add", "10.244.1.77/32", "dev", UNDERLAY]);
    forger.ip(&[
        "route",
        "add",
        "10.244.2.0/24",
        "via",
        "192.0.2.2",
        "src",
        "10.244.1.77",
    ]);
    let spoofed = counter(&c.hosts[1].files.socket, Reason::DropSpoof);
    let received = c.hosts[1].containers[0].snmp("Ip", "InReceives");
    assert_fails(
        "TCP from a forged cluster source",
        tcp_seen(forger, C2),
        ErrorKind::TimedOut,
    );
    assert_eq!(
        c.hosts[1].containers[0].snmp("Ip", "InReceives"),
        received,
        "no forged packet reached the container"
    );
    assert!(
        counter(&c.hosts[1].files.socket, Reason::DropSpoof) > spoofed,
        "counted as spoofed"
    );

    // Not even when host 2's own routing table names the forger as the way to host 1's
    // prefix (in place of bpfnet's own route to it): a `--peer` prefix comes only from
    // its node, the neighbour of its underlay address. Host 1's container still reaches
    // host 2's.
    c.hosts[1].ns.ip(&[
        "route",
        "replace",
        "10.244.1.0/24",
        "via",
        &format!("192.0.2.{forger_index}"),
    ]);
    let spoofed = counter(&c.hosts[1].files.socket, Reason::DropSpoof);
    let received = c.hosts[1].containers[0].snmp("Ip", "InReceives");
    assert_fails(
        "TCP from a forged peer source the kernel routes to",
        tcp_seen(forger, C2),
        ErrorKind::TimedOut,
    );
    assert_eq!(
        c.hosts[1].containers[0].snmp("Ip", "InReceives"),
        received,
        "no forged packet reached the container"
    );
    assert!(
        counter(&c.hosts[1].files.socket, Reason::DropSpoof) > spoofed,
        "counted as spoofed"
    );
    assert_reaches_untranslated(&c.hosts[0].containers[0], C1, C2);
    drop((d1, d2));
}

/// Three hosts joined through etcd, each with a container at the second address of
/// the prefix its daemon claimed, serving whoami.
struct EtcdCluster {
    _servers: Vec<Server>,
    daemons: Vec<Daemon>,
    /// Each host's container address.
    addrs: Vec<Ipv4Addr>,
    etcd: EtcdServer,
    _etcd_ns: Netns,
    c: Cluster,
}

fn etcd_cluster(tag: &str, mode: &str) -> EtcdCluster {
    let mut c = Cluster::new(tag, 3);
    let (etcd_ns, etcd) = c.add_etcd(&[
        "--cidr",
        "10.244.0.0/16",
        "--node-prefix",
        "24",
        "--mode",
        mode,
        "--lease-ttl",
        "3",
    ]);
    let url = etcd.url();
    let daemons: Vec<Daemon> = c.hosts.iter().map(|h| h.join(&url, &[])).collect();
    let mut addrs = Vec::new();
    let mut servers = Vec::new();
    for h in &mut c.hosts {
        let (ip, server) = add_served_container(h);
        servers.push(server);
        addrs.push(ip);
    }
    for h in &c.hosts {
        h.await_peers(2);
    }
    EtcdCluster {
        _servers: servers,
        daemons,
        addrs,
        etcd,
        _etcd_ns: etcd_ns,
        c,
    }
}

/// A container on `h` at the second address of the prefix its daemon claimed, serving
/// whoami.
fn add_served_container(h: &mut Host) -> (Ipv4Addr, Server) {
    let (gateway, len) = h.await_prefix();
    let ip = Ipv4Addr::from(u32::from(gateway) + 1);
    let ns = h.add_container(ip, len, gateway);
    (ip, WhoamiServer::start(ns, PORT))
}

/// Every container reaches every other host's, untranslated.
fn assert_all_reach_all(e: &EtcdCluster) {
    for (i, from) in e.c.hosts.iter().enumerate() {
        for (j, &to) in e.addrs.iter().enumerate() {
            if i != j {
                assert_reaches_untranslated(&from.containers[0], e.addrs[i], to);
            }
        }
    }
}

/// A client on the segment, outside the cluster (192.0.2.200).
fn outsider(c: &Cluster) -> Netns {
    let ns = Netns::new(&format!("{}-out", c.hosts[0].ns.name));
    c.plug_underlay(&ns, 200, "192.0.2.200/24");
    ns
}

#[test]
fn an_etcd_cluster_in_host_gw_mode_joins_containers_and_publishes_across_hosts() {
    if !require_root() {
        return;
    }
    let e = etcd_cluster("gw", "host-gw");
    assert_all_reach_all(&e);
    let routes = ls(&e.c.hosts[0].files.socket).cluster;
    assert_eq!(
        routes
            .iter()
            .filter(|r| r.kind == RouteKind::HostGw)
            .count(),
        2,
        "two peers' prefixes in {routes:?}"
    );

    // A port published on host 1 for the container on host 2.
    let spec = format!("8081:{}:{PORT}", e.addrs[1]);
    cli_ok(&e.c.hosts[0].files.socket, &["publish", &spec]);
    let out = outsider(&e.c);
    let reply = tcp_roundtrip(&out, SocketAddr::from(([192, 0, 2, 1], 8081)), b"who")
        .expect("the published port on host 1 answers from host 2's container");
    assert_eq!(
        WhoamiServer::seen(&reply).ip().to_string(),
        "192.0.2.1",
        "host 2's container sees host 1, which translates the answer back"
    );
}

/// bpfnet's kernel route on `h` to `prefix` (`ip route show PREFIX proto 98`).
fn peer_route(h: &Host, prefix: &str) -> String {
    h.ns.output(&["ip", "route", "show", prefix, "proto", "98"])
        .trim()
        .to_string()
}

/// The /24 of `ip`, as `ip route` prints it.
fn prefix24(ip: Ipv4Addr) -> String {
    let [a, b, c, _] = ip.octets();
    format!("{a}.{b}.{c}.0/24")
}

/// `bpfnet daemon --cleanup` in host `h`'s namespace, which must succeed: what it
/// printed.
fn cleanup(h: &Host) -> String {
    let out = bpfnet_tests::daemon::cleanup(&h.ns.path(), &h.files.socket, &h.files.pin_dir);
    assert!(out.status.success(), "bpfnet daemon --cleanup: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_host_reaches_containers_on_other_nodes_by_a_route_of_bpfnets_in_host_gw_mode() {
    if !require_root() {
        return;
    }
    let mut e = etcd_cluster("hgw", "host-gw");
    let (host1, host2) = (&e.c.hosts[0], &e.c.hosts[1]);
    let to2 = prefix24(e.addrs[1]);
    let to3 = prefix24(e.addrs[2]);
    for (prefix, node) in [
        (&to2, host2.underlay_ip()),
        (&to3, e.c.hosts[2].underlay_ip()),
    ] {
        assert_eq!(
            peer_route(host1, prefix),
            format!("{prefix} via {node} dev {UNDERLAY}"),
            "host 1 routes peer prefix {prefix} to its node"
        );
    }
    // Host 1's own process (not a container) reaches host 2's container, which sees
    // host 1's underlay address, untranslated, and the answer comes back.
    let seen = tcp_seen(&host1.ns, e.addrs[1]).expect("host 1 reaches host 2's container");
    assert_eq!(
        seen,
        host1.underlay_ip(),
        "the container sees host 1 itself"
    );
    assert!(
        pings(&host1.ns, e.addrs[1]),
        "host 1 pings host 2's container"
    );

    // Host 3 leaves (its daemon stops, its lease expires): its route leaves host 1.
    drop(e.daemons.remove(2));
    bpfnet_tests::wait_for("host 3's prefix unrouted", LEASE_TTL * 3, || {
        peer_route(&e.c.hosts[0], &to3).is_empty()
    });
    let left = e.c.hosts[0].ns.output(&["ip", "route", "show", &to3]);
    assert!(left.trim().is_empty(), "no route to a gone peer: {left}");
    assert_fails(
        "host 1 to host 3's container, no route left",
        tcp_seen(&e.c.hosts[0].ns, e.addrs[2]),
        ErrorKind::NetworkUnreachable,
    );
    // Host 2, a peer on the segment, has a managed neighbour entry of bpfnet's.
    let node2 = e.c.hosts[1].underlay_ip().to_string();
    let neigh = peer_neighbours(&e.c.hosts[0]);
    assert!(
        neigh.contains(&node2) && neigh.contains("managed"),
        "a managed neighbour entry for host 2: {neigh}"
    );
    // Host 1's daemon stops: its route stays (the host keeps reaching the cluster, as
    // the datapath does) until `--cleanup` removes it, and the neighbour entries.
    drop(e.daemons.remove(0));
    assert!(
        !peer_route(&e.c.hosts[0], &to2).is_empty(),
        "kept by a stopped daemon"
    );
    // The user's own address on the bridge stays; the gateway bpfnet gave it goes.
    let host1 = &e.c.hosts[0];
    host1
        .ns
        .ip(&["addr", "add", "198.51.100.1/24", "dev", BRIDGE]);
    let [a, b, c, _] = e.addrs[0].octets();
    let gateway = format!("{a}.{b}.{c}.1/24");
    let said = cleanup(host1);
    let left = host1.ns.output(&["ip", "route", "show", &to2]);
    assert!(
        left.trim().is_empty(),
        "--cleanup removes bpfnet's routes: {left}"
    );
    let neigh = peer_neighbours(host1);
    assert!(
        neigh.is_empty(),
        "--cleanup removes bpfnet's neighbour entries: {neigh}"
    );
    let addrs = host1
        .ns
        .output(&["ip", "-4", "-br", "addr", "show", "dev", BRIDGE]);
    assert!(
        !addrs.contains(&gateway) && addrs.contains("198.51.100.1/24"),
        "--cleanup removes the gateway {gateway} bpfnet gave {BRIDGE} (kept: it has \
         ports) and nothing else: {addrs}"
    );
    assert!(
        said.contains(&format!("removed the address {gateway} on {BRIDGE}")),
        "the removed address is reported: {said}"
    );
}

/// bpfnet's neighbour entries on `h` (`ip -d neigh show proto 98`).
fn peer_neighbours(h: &Host) -> String {
    h.ns.output(&["ip", "-d", "neigh", "show", "proto", "98"])
        .trim()
        .to_string()
}

#[test]
fn a_host_reaches_and_publishes_containers_on_other_nodes_through_the_tunnel_in_vxlan_mode() {
    if !require_root() {
        return;
    }
    let mut e = etcd_cluster("hvx", "vxlan");
    let host1 = &e.c.hosts[0];
    let gateway1 = Ipv4Addr::from(u32::from(e.addrs[0]) - 1);
    let to2 = prefix24(e.addrs[1]);
    let to3 = prefix24(e.addrs[2]);
    for prefix in [&to2, &to3] {
        assert_eq!(
            peer_route(host1, prefix),
            format!("{prefix} dev bpfnet-vxlan scope link src {gateway1}"),
            "host 1 routes peer prefix {prefix} into the tunnel"
        );
    }
    // Host 1's own process reaches host 2's container through the tunnel, from its
    // gateway address (in its own prefix, so the answer comes back through the tunnel),
    // untranslated.
    let seen = tcp_seen(&host1.ns, e.addrs[1]).expect("host 1 reaches host 2's container");
    assert_eq!(
        seen, gateway1,
        "the container sees host 1's gateway address"
    );
    assert!(
        pings(&host1.ns, e.addrs[1]),
        "host 1 pings host 2's container"
    );
    let to = SocketAddr::from((e.addrs[1], PORT));
    let reply = host1
        .ns
        .run(move || -> std::io::Result<Vec<u8>> {
            let mut s = TcpStream::connect_timeout(&to, IO_TIMEOUT)?;
            s.set_write_timeout(Some(IO_TIMEOUT))?;
            s.set_read_timeout(Some(IO_TIMEOUT))?;
            s.write_all(&BULK)?;
            s.shutdown(std::net::Shutdown::Write)?;
            let mut out = Vec::new();
            s.read_to_end(&mut out)?;
            Ok(out)
        })
        .expect("a bulk request from host 1 across the tunnel");
    assert_eq!(
        WhoamiServer::seen(&reply).ip().to_string(),
        gateway1.to_string()
    );

    // A port published on host 1 for host 2's container: translated to host 1's gateway
    // too, so the answer comes back through the tunnel to be translated.
    let spec = format!("8081:{}:{PORT}", e.addrs[1]);
    cli_ok(&host1.files.socket, &["publish", &spec]);
    let out = outsider(&e.c);
    let reply = tcp_roundtrip(&out, SocketAddr::from(([192, 0, 2, 1], 8081)), b"who")
        .expect("the published port on host 1 answers from host 2's container");
    assert_eq!(
        WhoamiServer::seen(&reply).ip().to_string(),
        gateway1.to_string(),
        "host 2's container sees host 1's gateway"
    );

    // Host 3 leaves: its route leaves host 1; `--cleanup` removes the rest.
    drop(e.daemons.remove(2));
    bpfnet_tests::wait_for("host 3's prefix unrouted", LEASE_TTL * 3, || {
        peer_route(&e.c.hosts[0], &to3).is_empty()
    });
    drop(e.daemons.remove(0));
    // A route of the user's, which is not bpfnet's to remove.
    let host1 = &e.c.hosts[0];
    host1
        .ns
        .ip(&["route", "add", "198.51.100.0/24", "dev", UNDERLAY]);
    let said = cleanup(host1);
    let left = host1.ns.output(&["ip", "route", "show", &to2]);
    assert!(
        left.trim().is_empty(),
        "--cleanup removes bpfnet's routes: {left}"
    );
    let links = host1.ns.output(&["ip", "-br", "link", "show"]);
    assert!(
        !links.contains("bpfnet-vxlan"),
        "--cleanup removes the VXLAN device: {links}"
    );
    assert!(
        said.contains("removed the device bpfnet-vxlan"),
        "and says so: {said}"
    );
    // The cluster's bridge bpfnet created still has the container: kept, and said.
    assert!(
        links.contains(BRIDGE) && said.contains(&format!("kept bridge {BRIDGE}")),
        "a bridge with a container stays: {said}"
    );
    let route = host1.ns.output(&["ip", "route", "show", "198.51.100.0/24"]);
    assert!(!route.trim().is_empty(), "the user's route stays");
}

/// A large request, so full-size segments cross the tunnel.
static BULK: [u8; 300_000] = [0x5a; 300_000];

#[test]
fn an_etcd_cluster_in_vxlan_mode_tunnels_containers_and_refuses_forged_tunnel_traffic() {
    if !require_root() {
        return;
    }
    let mut e = etcd_cluster("vx", "vxlan");
    assert_all_reach_all(&e);
    // The tunnel device is bound to the underlay address and interface.
    let dev = e.c.hosts[0]
        .ns
        .output(&["ip", "-d", "link", "show", "bpfnet-vxlan"]);
    assert!(
        dev.contains("local 192.0.2.1 ") && dev.contains(&format!("dev {UNDERLAY} ")),
        "bound to the underlay: {dev}"
    );
    assert!(
        dev.contains(" mtu 1450 "),
        "the underlay's MTU (1500) less VXLAN's 50 bytes: {dev}"
    );
    // Full-size segments fit the tunnel: the SYNs' MSS is lowered for it.
    let to = SocketAddr::from((e.addrs[1], PORT));
    let reply = e.c.hosts[0].containers[0]
        .run(move || -> std::io::Result<Vec<u8>> {
            let mut s = TcpStream::connect_timeout(&to, IO_TIMEOUT)?;
            // A stalled stream fails rather than hangs.
            s.set_write_timeout(Some(IO_TIMEOUT))?;
            s.set_read_timeout(Some(IO_TIMEOUT))?;
            s.write_all(&BULK)?;
            s.shutdown(std::net::Shutdown::Write)?;
            let mut out = Vec::new();
            s.read_to_end(&mut out)?;
            Ok(out)
        })
        .expect("a bulk request across the tunnel");
    assert_eq!(
        WhoamiServer::seen(&reply).ip().to_string(),
        e.addrs[0].to_string()
    );
    // A container reaches another node's gateway address through the tunnel, as it
    // reaches its underlay address (the host's own firewall decides: here it accepts).
    let gateway1 = Ipv4Addr::from(u32::from(e.addrs[0]) - 1);
    let _on_host1 = WhoamiServer::start(&e.c.hosts[0].ns, HOST_PORT);
    for to in [gateway1, e.c.hosts[0].underlay_ip()] {
        let reply = tcp_roundtrip(
            &e.c.hosts[1].containers[0],
            SocketAddr::from((to, HOST_PORT)),
            b"who",
        )
        .unwrap_or_else(|err| panic!("host 2's container reaches host 1 at {to}: {err}"));
        if to == gateway1 {
            assert_eq!(
                WhoamiServer::seen(&reply).ip().to_string(),
                e.addrs[1].to_string(),
                "host 1's gateway sees the container untranslated, through the tunnel"
            );
        }
    }

    // A host on the segment that is no member sends VXLAN to host 1 through a tunnel of
    // its own, claiming host 2's prefix: refused where the datagram arrives, its outer
    // source no node's.
    let forged_src = Ipv4Addr::from(u32::from(e.addrs[1]) + 75);
    let forger = e.c.add_host().index;
    let f = &e.c.hosts[usize::from(forger) - 1].ns;
    f.ip(&[
        "link",
        "add",
        "vxf",
        "type",
        "vxlan",
        "id",
        "1",
        "remote",
        "192.0.2.1",
        "local",
        &format!("192.0.2.{forger}"),
        "dstport",
        "4789",
    ]);
    f.ip(&["addr", "add", &format!("{forged_src}/32"), "dev", "vxf"]);
    f.ip(&["link", "set", "vxf", "up"]);
    let to = format!("{}/32", e.addrs[0]);
    f.ip(&[
        "route",
        "add",
        &to,
        "dev",
        "vxf",
        "src",
        &forged_src.to_string(),
    ]);
    let to = e.addrs[0].to_string();
    f.ip(&[
        "neigh",
        "add",
        &to,
        "lladdr",
        "02:62:70:66:6e:01",
        "dev",
        "vxf",
    ]);
    let host1 = &e.c.hosts[0];
    let refused = counter(&host1.files.socket, Reason::DropTunnelSource);
    let received = host1.containers[0].snmp("Ip", "InReceives");
    let r = tcp_seen(f, e.addrs[0]);
    assert_fails("TCP out of a forged tunnel", r, ErrorKind::TimedOut);
    assert_eq!(
        host1.containers[0].snmp("Ip", "InReceives"),
        received,
        "no forged packet reached the container"
    );
    assert!(
        counter(&host1.files.socket, Reason::DropTunnelSource) > refused,
        "refused at the underlay"
    );

    // The tunnel's own checks, one datagram each way (`send_vxlan`): the same forger
    // spoofing host 2's underlay address outside, with the network's VNI, host 2's
    // prefix or host 2's own address inside, is refused at the underlay (the frame is
    // not from host 2's MAC); host 2 itself sending the very same datagram is the control.
    let (node2, node3) = (e.c.hosts[1].underlay_ip(), e.c.hosts[2].underlay_ip());
    let vni = host1.nodes().this.expect("a VNI").vni;
    // Each check judges a flow's first datagram: every case has a source port of its own.
    let datagram_from = |src: Ipv4Addr, port: u16| {
        packet::udp(
            (src.octets(), port),
            (e.addrs[0].octets(), PORT),
            b"who",
            true,
        )
    };
    let datagram = |src: Ipv4Addr| datagram_from(src, 40000);
    let container = &host1.containers[0];
    // Datagrams the container's UDP received, answered or not; not every IPv4 packet:
    // the host unreachable a node sends back seconds after a datagram's answer to an
    // address of its prefix that nobody has is no forged datagram.
    let datagrams = || container.snmp("Udp", "InDatagrams") + container.snmp("Udp", "NoPorts");
    let refused_by = |reason: Reason, from: &Netns, outer: Ipv4Addr, vni: u32, inner: &[u8]| {
        let before = counter(&host1.files.socket, reason);
        let received = datagrams();
        for _ in 0..3 {
            send_vxlan(from, outer, host1, vni, inner);
        }
        std::thread::sleep(Duration::from_millis(500));
        let reached = datagrams() - received;
        let moved = counter(&host1.files.socket, reason) - before;
        (reached, moved)
    };
    let arrives = |from: &Netns, outer: Ipv4Addr, vni: u32, inner: &[u8]| {
        let received = datagrams();
        send_vxlan(from, outer, host1, vni, inner);
        bpfnet_tests::wait_for(
            "the datagram in the container",
            Duration::from_secs(5),
            || datagrams() > received,
        );
    };
    let host2 = &e.c.hosts[1].ns;
    for inner in [forged_src, node2] {
        let (reached, moved) =
            refused_by(Reason::DropTunnelSource, f, node2, vni, &datagram(inner));
        assert_eq!(
            reached, 0,
            "{inner} out of VXLAN spoofed as host 2 reached the container"
        );
        assert!(moved >= 3, "counted as drop-tunnel-source: {moved}");
        arrives(host2, node2, vni, &datagram(inner));
    }

    // Host 2 itself, with another network's VNI: neither its own prefix nor its own
    // address is admitted inside the tunnel (`drop-spoof`; a prefix's key is checked by
    // `cluster::source_ok` and `admits`, a node's by `admits` alone), as both arrive
    // with the right one (just above).
    for (inner, port) in [(forged_src, 40001), (node2, 40003)] {
        let (reached, moved) = refused_by(
            Reason::DropSpoof,
            host2,
            node2,
            vni + 1,
            &datagram_from(inner, port),
        );
        assert_eq!(reached, 0, "{inner} with a wrong VNI reached the container");
        assert!(
            moved >= 3,
            "{inner} with a wrong VNI counted as drop-spoof: {moved}"
        );
    }

    // Host 3, a member, claiming host 2's prefix or host 2's own address inside its own
    // tunnel: a prefix comes only from its node, a node's address only from itself.
    let host3 = &e.c.hosts[2].ns;
    for src in [forged_src, node2] {
        let inner = datagram_from(src, 40002);
        let (reached, moved) = refused_by(Reason::DropSpoof, host3, node3, vni, &inner);
        assert_eq!(
            reached, 0,
            "{src} out of host 3's tunnel reached the container"
        );
        assert!(
            moved >= 3,
            "{src} from host 3 counted as drop-spoof: {moved}"
        );
    }
    arrives(
        host3,
        node3,
        vni,
        &datagram(Ipv4Addr::from(u32::from(e.addrs[2]) + 75)),
    );

    // A VXLAN device bound otherwise (left by an earlier start on another underlay) is
    // made anew, bound to the underlay, when the daemon joins; the tunnel works again.
    let url = e.etcd.url();
    drop(e.daemons.remove(0));
    let h1 = &e.c.hosts[0].ns;
    h1.ip(&["link", "del", "bpfnet-vxlan"]);
    h1.ip(&[
        "link",
        "add",
        "bpfnet-vxlan",
        "type",
        "vxlan",
        "external",
        "dstport",
        "4789",
    ]);
    let d1 = e.c.hosts[0].join(&url, &[]);
    bpfnet_tests::wait_for(
        "the VXLAN device bound anew",
        Duration::from_secs(20),
        || {
            h1.output(&["ip", "-d", "link", "show", "bpfnet-vxlan"])
                .contains("local 192.0.2.1 ")
        },
    );
    e.c.hosts[0].await_peers(2);
    assert_reaches_untranslated(&e.c.hosts[1].containers[0], e.addrs[1], e.addrs[0]);
    assert_reaches_untranslated(&e.c.hosts[0].containers[0], e.addrs[0], e.addrs[1]);
    e.daemons.insert(0, d1);
    drop(e.daemons.drain(..));
}

/// The cluster's lease TTL in these tests (`--lease-ttl 3`).
const LEASE_TTL: Duration = Duration::from_secs(3);

/// Whether host `h`'s daemon routes anything to `node`.
fn routes_to(h: &Host, node: &str) -> bool {
    ls(&h.files.socket)
        .cluster
        .iter()
        .any(|r| r.node.is_some_and(|n| n.to_string() == node))
}

#[test]
fn a_lost_node_leaves_every_peer_within_the_lease_ttl_and_gets_its_prefix_back() {
    if !require_root() {
        return;
    }
    let mut e = etcd_cluster("loss", "host-gw");
    let prefix3 = e.c.hosts[2].await_prefix();
    // Host 3 is lost: its daemon dies and its namespace goes.
    let lost = Instant::now();
    drop(e.daemons.remove(2));
    drop(e.c.remove_host(3));
    for h in &e.c.hosts {
        bpfnet_tests::wait_for("host 3's routes gone", LEASE_TTL * 3, || {
            !routes_to(h, "192.0.2.3")
        });
    }
    let gone = lost.elapsed();
    eprintln!("host 3's routes left its peers {gone:?} after it was lost");
    assert!(
        gone <= LEASE_TTL + Duration::from_secs(2),
        "its peers dropped host 3 within the lease TTL (+2 s for etcd's expiry): {gone:?}"
    );
    // No way left to it, in the datapath or the kernel: the container's packet goes to
    // host 1's stack, which has no route and answers net unreachable (a datapath still
    // sending to the lost node times out; a kernel route left behind, host unreachable).
    let lost_prefix = prefix24(e.addrs[2]);
    for h in &e.c.hosts {
        bpfnet_tests::wait_for(
            "the kernel route to the lost node's prefix gone",
            Duration::from_secs(2),
            || peer_route(h, &lost_prefix).is_empty(),
        );
    }
    assert_fails(
        "TCP to the lost host's container",
        tcp_seen(&e.c.hosts[0].containers[0], e.addrs[2]),
        ErrorKind::NetworkUnreachable,
    );

    // It comes back, with a fresh state directory: etcd gives it its prefix again.
    let url = e.etcd.url();
    let h3 = e.c.add_host();
    assert_eq!(h3.index, 3);
    e.daemons.push(h3.join(&url, &[]));
    assert_eq!(h3.await_prefix(), prefix3, "the same prefix back");
    let (ip, _server) = add_served_container(h3);
    assert_eq!(ip, e.addrs[2]);
    e.c.hosts[0].await_peers(2);
    assert_reaches_untranslated(&e.c.hosts[0].containers[0], e.addrs[0], ip);
}

/// The source port of the probe flow a peer's container keeps to a rebuilt node.
const PROBE_PORT: u16 = 40_000;

/// How long after `since` a UDP datagram from `ns` (port `PROBE_PORT`: one flow
/// throughout) to `to` is first answered by `to`: one every 100 ms, None after `limit`.
/// Runs on a thread of its own.
fn udp_probe(
    ns: &Netns,
    to: Ipv4Addr,
    since: Instant,
    limit: Duration,
) -> std::thread::JoinHandle<Option<Duration>> {
    let to = SocketAddr::from((to, PORT));
    ns.spawn(move || {
        let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, PROBE_PORT)).expect("bind the probe port");
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("a read timeout");
        let mut buf = [0u8; 512];
        while since.elapsed() < limit {
            // A send fails while there is no route; the next one is tried anyway.
            let _unused: Result<_, _> = s.send_to(b"who", to);
            let next = Instant::now() + Duration::from_millis(100);
            while Instant::now() < next {
                match s.recv_from(&mut buf) {
                    Ok((_, from)) if from == to => return Some(since.elapsed()),
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }
        None
    })
}

/// How soon a peer's container must reach a node after it rejoins.
const REJOIN_REACH: Duration = Duration::from_secs(2);

/// Host 3 is rebuilt: its daemon killed, its namespace and underlay interface made anew
/// (a new MAC, the same underlay address), its daemon started again. Hosts 1 and 2
/// talked to it before, each keeping a UDP flow whose remembered hop holds the old MAC;
/// host 2's operator pinned host 3's old MAC (a permanent neighbour entry). Both
/// containers must reach host 3's within `REJOIN_REACH` of its registration appearing
/// in etcd, over that same flow.
fn a_rebuilt_node_is_reached_at_once(tag: &str, mode: &str) {
    let mut e = etcd_cluster(tag, mode);
    let (gateway, len) = e.c.hosts[2].await_prefix();
    let to = e.addrs[2];
    for (h, &from) in e.c.hosts[..2].iter().zip(&e.addrs) {
        assert_reaches_untranslated(&h.containers[0], from, to);
        let answered = udp_probe(&h.containers[0], to, Instant::now(), REJOIN_REACH).join();
        assert!(
            answered.expect("the probe").is_some(),
            "the probe flow {from}:{PROBE_PORT} -> {to} is answered before the rebuild"
        );
    }
    let old_mac = e.c.hosts[2].ns.mac(UNDERLAY);
    let old = old_mac.map(|b| format!("{b:02x}")).join(":");
    let node3 = e.c.hosts[2].underlay_ip().to_string();
    e.c.hosts[1].ns.ip(&[
        "neigh",
        "replace",
        &node3,
        "lladdr",
        &old,
        "dev",
        UNDERLAY,
        "nud",
        "permanent",
    ]);

    drop(e.daemons.remove(2));
    drop(e.c.remove_host(3));
    let url = e.etcd.url();
    let h3 = e.c.add_host();
    assert_eq!(h3.index, 3);
    assert_ne!(
        h3.ns.mac(UNDERLAY),
        old_mac,
        "the rebuilt host has a new MAC"
    );
    // Its bridge and container are there before it rejoins, as a rebuilt VM's are.
    add_bridge(&h3.ns, BRIDGE, &format!("{gateway}/{len}"));
    let c3 = h3.add_container(to, len, gateway);
    let _server = WhoamiServer::start(c3, PORT);
    let registered = e.etcd.next_put("/bpfnet/nodes/h3", Duration::from_secs(30));
    e.daemons.push(h3.join(&url, &[]));
    let rejoined = registered
        .join()
        .expect("the etcd watch")
        .expect("host 3 registers again within 30 s");
    let probes: Vec<_> = e.c.hosts[..2]
        .iter()
        .map(|h| udp_probe(&h.containers[0], to, rejoined, REJOIN_REACH))
        .collect();
    for (i, probe) in probes.into_iter().enumerate() {
        let reached = probe.join().expect("the probe");
        eprintln!(
            "{mode}: host {}'s container reached rebuilt host 3's {reached:?} after its registration",
            i + 1
        );
        assert!(
            reached.is_some(),
            "{mode}: host {}'s container reaches rebuilt host 3's within {REJOIN_REACH:?} of its registration (drop-spoof on host 3: {})",
            i + 1,
            counter(&e.c.hosts[2].files.socket, Reason::DropSpoof)
        );
    }
    for (h, &from) in e.c.hosts[..2].iter().zip(&e.addrs) {
        assert_reaches_untranslated(&h.containers[0], from, to);
        assert_reaches_untranslated(&e.c.hosts[2].containers[0], to, from);
    }
}

#[test]
fn a_rebuilt_node_with_a_new_mac_is_reached_at_once_in_host_gw_mode() {
    if !require_root() {
        return;
    }
    a_rebuilt_node_is_reached_at_once("regw", "host-gw");
}

#[test]
fn a_rebuilt_node_with_a_new_mac_is_reached_at_once_in_vxlan_mode() {
    if !require_root() {
        return;
    }
    a_rebuilt_node_is_reached_at_once("revx", "vxlan");
}

#[test]
fn with_etcd_down_traffic_flows_a_restarted_daemon_keeps_its_peers_and_etcd_back_brings_new_nodes()
{
    if !require_root() {
        return;
    }
    let mut e = etcd_cluster("down", "host-gw");
    e.etcd.stop();
    std::thread::sleep(LEASE_TTL * 2);
    let h1 = &e.c.hosts[0];
    let nodes = h1.nodes();
    assert!(!nodes.etcd_connected, "{nodes:?}");
    assert_reaches_untranslated(&h1.containers[0], e.addrs[0], e.addrs[1]);

    // Host 1's daemon restarts while etcd is down: it starts from what it knew.
    let url = e.etcd.url();
    drop(e.daemons.remove(0));
    e.daemons.insert(0, h1.join(&url, &[]));
    h1.await_peers(2);
    assert_reaches_untranslated(&h1.containers[0], e.addrs[0], e.addrs[1]);
    assert_reaches_untranslated(&e.c.hosts[1].containers[0], e.addrs[1], e.addrs[0]);

    // etcd comes back: a new node joins and the others learn it.
    e.etcd.restart();
    let h4 = e.c.add_host();
    e.daemons.push(h4.join(&url, &[]));
    let (ip4, _server) = add_served_container(h4);
    for h in &e.c.hosts {
        h.await_peers(3);
    }
    assert_reaches_untranslated(&e.c.hosts[0].containers[0], e.addrs[0], ip4);
}

#[test]
fn two_cluster_networks_over_vxlan_stay_isolated_across_hosts() {
    if !require_root() {
        return;
    }
    let mut c = Cluster::new("nets", 2);
    let (etcd_ns, etcd) = c.add_etcd(&[
        "--cidr",
        "10.244.0.0/16",
        "--node-prefix",
        "24",
        "--mode",
        "vxlan",
        "--vni",
        "1",
    ]);
    bpfnet_tests::cluster::cluster_init(
        &etcd_ns,
        &etcd,
        &[
            "--etcd-prefix",
            "/blue",
            "--cidr",
            "10.245.0.0/16",
            "--node-prefix",
            "24",
            "--mode",
            "vxlan",
            "--vni",
            "2",
        ],
    );
    let url = etcd.url();
    let _daemons: Vec<Daemon> = c
        .hosts
        .iter()
        .map(|h| h.join(&url, &["--etcd-network", "br1=/blue"]))
        .collect();
    let mut red = Vec::new();
    let mut blue = Vec::new();
    let mut servers = Vec::new();
    for h in &mut c.hosts {
        let (ip, server) = add_served_container(h);
        red.push(ip);
        servers.push(server);
        let (gateway, len) = h.await_prefix_of(1, "br1");
        let ip = Ipv4Addr::from(u32::from(gateway) + 1);
        let ns = h.add_container_to("br1", ip, len, gateway);
        servers.push(WhoamiServer::start(ns, PORT));
        blue.push(ip);
    }
    assert!(
        red[1].octets()[1] == 244 && blue[1].octets()[1] == 245,
        "{red:?} {blue:?}"
    );
    let (h1, h2) = (&c.hosts[0], &c.hosts[1]);
    assert_reaches_untranslated(&h1.containers[0], red[0], red[1]);
    assert_reaches_untranslated(&h1.containers[1], blue[0], blue[1]);
    assert_reaches_untranslated(&h2.containers[1], blue[1], blue[0]);
    let isolation = counter(&h1.files.socket, Reason::DropIsolation);
    assert_fails(
        "TCP from a red container to a blue one on another host",
        tcp_seen(&h1.containers[0], blue[1]),
        ErrorKind::TimedOut,
    );
    assert!(
        counter(&h1.files.socket, Reason::DropIsolation) > isolation,
        "counted as isolation"
    );
    drop(etcd_ns);
}
