//! Dual stack across hosts, end to end: an etcd cluster initialised with `--cidr6` gives
//! each node an IPv6 prefix beside its IPv4 subnet; IPv6 TCP and UDP between containers
//! of different hosts arrive untranslated, by host-gw and through the VXLAN tunnel (IPv4
//! outside, IPv6 inside), next to IPv4. A source outside the cluster cannot start a flow
//! to a container's IPv6 address, and a forged IPv6 cluster source is refused off the
//! wire and out of the tunnel.
use std::{
    io::{ErrorKind, Read as _, Write as _},
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream},
};

use bpfnet_tests::{
    cluster::{Cluster, Host, UNDERLAY, send_vxlan},
    daemon::{Daemon, cli_ok, counter},
    echo::{IO_TIMEOUT, Server, WhoamiServer, assert_fails, tcp_roundtrip, udp_roundtrip},
    etcd::EtcdServer,
    netns::Netns,
    packet6, require_root,
};
use common::Reason;

/// The IPv4 whoami port, and the IPv6 one (a server on `[::]` takes IPv4 too).
const PORT: u16 = 8080;
const PORT6: u16 = 8086;
/// The VXLAN device's MAC on every node (`common::CLUSTER_VXLAN_MAC`).
const VXLAN_MAC: &str = "02:62:70:66:6e:01";

/// `Udp6InDatagrams` of namespace `ns` (`/proc/net/snmp6`): datagrams delivered to a
/// socket.
fn udp6_in_datagrams(ns: &Netns) -> u64 {
    let text = ns.output(&["cat", "/proc/net/snmp6"]);
    text.lines()
        .find_map(|l| l.strip_prefix("Udp6InDatagrams"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("Udp6InDatagrams in {}'s snmp6:\n{text}", ns.name))
}

/// Two dual-stack hosts of an etcd cluster, a served container on each.
struct Dual {
    daemons: Vec<Daemon>,
    _servers: Vec<Server>,
    addrs: Vec<Ipv4Addr>,
    addrs6: Vec<Ipv6Addr>,
    _etcd: EtcdServer,
    _etcd_ns: Netns,
    c: Cluster,
}

fn dual(tag: &str, mode: &str) -> Dual {
    let mut c = Cluster::new(tag, 2);
    let (etcd_ns, etcd) = c.add_etcd(&[
        "--cidr",
        "10.244.0.0/16",
        "--node-prefix",
        "24",
        "--cidr6",
        "fd00:10:244::/48",
        "--mode",
        mode,
        "--lease-ttl",
        "3",
    ]);
    let url = etcd.url();
    let daemons: Vec<Daemon> = c.hosts.iter().map(|h| h.join(&url, &[])).collect();
    let (mut addrs, mut addrs6, mut servers) = (Vec::new(), Vec::new(), Vec::new());
    for h in &mut c.hosts {
        let (ip, ip6, served) = add_dual_container(h);
        addrs.push(ip);
        addrs6.push(ip6);
        servers.extend(served);
    }
    for h in &c.hosts {
        h.await_peers(1);
    }
    Dual {
        daemons,
        _servers: servers,
        addrs,
        addrs6,
        _etcd: etcd,
        _etcd_ns: etcd_ns,
        c,
    }
}

/// A container on `h` at the second address of each of its node's prefixes, serving
/// whoami on both families.
fn add_dual_container(h: &mut Host) -> (Ipv4Addr, Ipv6Addr, [Server; 2]) {
    let (gateway, len) = h.await_prefix();
    let (gateway6, len6) = h.await_prefix6();
    let ip = Ipv4Addr::from(u32::from(gateway) + 1);
    let ip6 = Ipv6Addr::from(u128::from(gateway6) + 1);
    h.add_container(ip, len, gateway);
    h.add_ipv6(h.containers.len() - 1, ip6, len6, gateway6);
    let ns = h.containers.last().expect("just added");
    (
        ip,
        ip6,
        [
            WhoamiServer::start(ns, PORT),
            WhoamiServer::start6(ns, PORT6),
        ],
    )
}

/// TCP and UDP from `from` to `to`, both seen from `from_ip` itself.
fn assert_reaches_untranslated(from: &Netns, from_ip: std::net::IpAddr, to: SocketAddr) {
    let tcp = tcp_roundtrip(from, to, b"who").unwrap_or_else(|e| panic!("TCP -> {to}: {e}"));
    assert_eq!(
        WhoamiServer::seen(&tcp).ip(),
        from_ip,
        "TCP {from_ip} -> {to} arrives untranslated"
    );
    let udp = udp_roundtrip(from, to, b"who").unwrap_or_else(|e| panic!("UDP -> {to}: {e}"));
    assert_eq!(
        WhoamiServer::seen(&udp).ip(),
        from_ip,
        "UDP {from_ip} -> {to} arrives untranslated"
    );
}

/// Both containers reach each other over IPv6 and IPv4, untranslated, both ways.
fn assert_dual_stack_both_ways(d: &Dual) {
    for (i, j) in [(0, 1), (1, 0)] {
        let from = &d.c.hosts[i].containers[0];
        assert_reaches_untranslated(
            from,
            d.addrs6[i].into(),
            SocketAddr::from((d.addrs6[j], PORT6)),
        );
        assert_reaches_untranslated(
            from,
            d.addrs[i].into(),
            SocketAddr::from((d.addrs[j], PORT)),
        );
    }
}

/// A TCP connection from `ns` to `to` that must time out, without a segment reaching
/// `victim_host`'s container (its TCP `InSegs`: neighbour discovery's own IPv6 traffic
/// goes on meanwhile), and with `reason` counted by its daemon.
fn assert_refused(ns: &Netns, to: SocketAddr, victim_host: &Host, reason: Reason, what: &str) {
    let victim = &victim_host.containers[0];
    let before = counter(&victim_host.files.socket, reason);
    let received = victim.snmp("Tcp", "InSegs");
    let r = tcp_roundtrip(ns, to, b"who");
    assert_fails(what, r, ErrorKind::TimedOut);
    assert_eq!(
        victim.snmp("Tcp", "InSegs"),
        received,
        "{what}: no segment reached the container"
    );
    assert!(
        counter(&victim_host.files.socket, reason) > before,
        "{what}: counted as {}",
        reason.name()
    );
}

/// A host on the segment outside the cluster (192.0.2.200) that sends IPv6 from `src` to
/// the cluster's IPv6 CIDR straight at `via`'s underlay MAC (no node answers neighbour
/// discovery for a container on the wire).
fn wire_sender(d: &Dual, src: Ipv6Addr, to: Ipv6Addr, via: &Host) -> Netns {
    let ns = Netns::new(&format!("{}-o6", d.c.hosts[0].ns.name));
    d.c.plug_underlay(&ns, 200, "192.0.2.200/24");
    ns.ip(&[
        "-6",
        "addr",
        "add",
        &format!("{src}/128"),
        "dev",
        UNDERLAY,
        "nodad",
    ]);
    ns.ip(&[
        "-6",
        "route",
        "add",
        "fd00:10:244::/48",
        "dev",
        UNDERLAY,
        "src",
        &src.to_string(),
    ]);
    let mac: Vec<String> = via
        .ns
        .mac(UNDERLAY)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    ns.ip(&[
        "-6",
        "neigh",
        "add",
        &to.to_string(),
        "lladdr",
        &mac.join(":"),
        "dev",
        UNDERLAY,
    ]);
    ns
}

#[test]
fn a_dual_stack_cluster_in_host_gw_mode_carries_ipv6_untranslated_and_refuses_outsiders() {
    if !require_root() {
        return;
    }
    let mut d = dual("gw6", "host-gw");
    let listing = cli_ok(&d.c.hosts[0].files.socket, &["node", "ls"]);
    assert!(
        listing.contains("fixed-cidr-v6") && listing.contains("fd00:10:244:"),
        "node ls tells the IPv6 prefix and what Docker needs: {listing}"
    );
    assert_dual_stack_both_ways(&d);
    let to = SocketAddr::from((d.addrs6[0], PORT6));

    // Egress to the outside stays NAT66, as on one host: a server on the segment sees
    // host 1's own IPv6 address, not the container's.
    let host1_v6: Ipv6Addr = "2001:db8:ff::1".parse().expect("address");
    let h1 = &d.c.hosts[0];
    h1.ns.ip(&[
        "-6",
        "addr",
        "add",
        "2001:db8:ff::1/64",
        "dev",
        UNDERLAY,
        "nodad",
    ]);
    let web = Netns::new(&format!("{}-w6", h1.ns.name));
    d.c.plug_underlay(&web, 201, "192.0.2.201/24");
    web.ip(&[
        "-6",
        "addr",
        "add",
        "2001:db8:ff::201/64",
        "dev",
        UNDERLAY,
        "nodad",
    ]);
    let _web_server = WhoamiServer::start6(&web, PORT6);
    let outside_server = SocketAddr::from((
        "2001:db8:ff::201".parse::<Ipv6Addr>().expect("address"),
        PORT6,
    ));
    let reply = tcp_roundtrip(&h1.containers[0], outside_server, b"who")
        .expect("a container reaches an IPv6 server outside the cluster");
    assert_eq!(
        WhoamiServer::seen(&reply).ip(),
        std::net::IpAddr::V6(host1_v6),
        "masqueraded to the node's own IPv6 address (NAT66)"
    );
    drop(web);

    // A host on the wire outside the cluster's IPv6 prefixes starts no flow.
    let outside: Ipv6Addr = "2001:db8:ff::200".parse().expect("address");
    let out = wire_sender(&d, outside, d.addrs6[0], &d.c.hosts[0]);
    assert_refused(
        &out,
        to,
        &d.c.hosts[0],
        Reason::DropInbound,
        "IPv6 TCP from outside the cluster",
    );
    drop(out);

    // The same host claiming an address of host 2's IPv6 prefix, whose packets come
    // only from host 2 (the control: host 2's container got through above).
    let forged = Ipv6Addr::from(u128::from(d.addrs6[1]) + 97);
    let forger = wire_sender(&d, forged, d.addrs6[0], &d.c.hosts[0]);
    assert_refused(
        &forger,
        to,
        &d.c.hosts[0],
        Reason::DropSpoof,
        "IPv6 TCP from a forged cluster source off the wire",
    );
    drop(forger);
    assert_dual_stack_both_ways(&d);
    drop(d.daemons.drain(..));
}

/// A large request, so full-size IPv6 segments cross the tunnel.
static BULK: [u8; 300_000] = [0x5a; 300_000];

#[test]
fn a_dual_stack_cluster_in_vxlan_mode_tunnels_ipv6_and_refuses_a_forged_ipv6_tunnel() {
    if !require_root() {
        return;
    }
    let mut d = dual("vx6", "vxlan");
    assert_dual_stack_both_ways(&d);
    // Full-size IPv6 segments fit the tunnel: the SYNs' MSS is lowered by IPv6's 60
    // bytes of headers.
    let to = SocketAddr::from((d.addrs6[1], PORT6));
    let reply = d.c.hosts[0].containers[0]
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
        .expect("a bulk IPv6 request across the tunnel");
    assert_eq!(WhoamiServer::seen(&reply).ip(), d.addrs6[0]);

    // A host on the segment sends VXLAN to host 1 with an inner source in host 2's IPv6
    // prefix (the control: host 2's own tunnel got through above): refused at the
    // underlay, its outer source no node's.
    let forged = Ipv6Addr::from(u128::from(d.addrs6[1]) + 97);
    let forger = d.c.add_host().index;
    let f = &d.c.hosts[usize::from(forger) - 1].ns;
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
    f.ip(&[
        "-6",
        "addr",
        "add",
        &format!("{forged}/128"),
        "dev",
        "vxf",
        "nodad",
    ]);
    f.ip(&["link", "set", "vxf", "up"]);
    let victim = d.addrs6[0].to_string();
    f.ip(&[
        "-6",
        "route",
        "add",
        &format!("{victim}/128"),
        "dev",
        "vxf",
        "src",
        &forged.to_string(),
    ]);
    f.ip(&[
        "-6", "neigh", "add", &victim, "lladdr", VXLAN_MAC, "dev", "vxf",
    ]);
    assert_refused(
        f,
        SocketAddr::from((d.addrs6[0], PORT6)),
        &d.c.hosts[0],
        Reason::DropTunnelSource,
        "IPv6 TCP out of a forged tunnel",
    );

    // Host 2 itself, with another network's VNI: its own IPv6 prefix is refused inside
    // the tunnel (`drop-spoof`); the same datagram with the network's VNI arrives.
    let host1 = &d.c.hosts[0];
    let (host2, node2) = (&d.c.hosts[1].ns, d.c.hosts[1].underlay_ip());
    let vni = host1.nodes().this.expect("a VNI").vni;
    let datagram = |port: u16| {
        packet6::udp6(
            (forged.octets(), port),
            (d.addrs6[0].octets(), PORT6),
            b"who",
        )
    };
    let container = &host1.containers[0];
    let spoof = counter(&host1.files.socket, Reason::DropSpoof);
    let received = udp6_in_datagrams(container);
    for _ in 0..3 {
        send_vxlan(host2, node2, host1, vni + 1, &datagram(40001));
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(
        udp6_in_datagrams(container),
        received,
        "an IPv6 datagram with a wrong VNI reached the container"
    );
    let moved = counter(&host1.files.socket, Reason::DropSpoof) - spoof;
    assert!(moved >= 3, "a wrong VNI counted as drop-spoof: {moved}");
    send_vxlan(host2, node2, host1, vni, &datagram(40002));
    bpfnet_tests::wait_for(
        "the datagram with the network's VNI in the container",
        std::time::Duration::from_secs(5),
        || udp6_in_datagrams(container) > received,
    );
    drop(d.daemons.drain(..));
}
