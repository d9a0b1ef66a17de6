//! Every interface, as Docker does it: egress is masqueraded on whichever interface the
//! route picks (one added after the daemon started included), published ports answer
//! on every local address, route changes are followed per packet, an interface deleted
//! and recreated is served again, and guarded by the inbound policy from its first
//! packet; `--uplink` narrows the set and follows the name.
use std::{
    io::{ErrorKind, Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket},
    path::Path,
    thread,
    time::Duration,
};

use bpfnet::api::Program;
use bpfnet_tests::{
    daemon::{Daemon, cli_ok, counter, ls},
    echo::{EchoServer, WhoamiServer, assert_fails, tcp_connect, tcp_roundtrip},
    netns::Netns,
    require_root,
    topo::{BRIDGE, CONTAINER_IP, HOST_IP, SERVER_IP, Topology},
    tun::TunLink,
    wait_for,
};
use common::Reason;

/// The second uplink, added later: `up1` (203.0.113.1/24) in the host to `eth0`
/// (203.0.113.2/24) in `lan2`, which routes everything back through the host.
const UP1: &str = "up1";
const UP1_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const LAN2_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);

fn wire_up1(host: &Netns, lan2: &Netns) {
    host.ip(&[
        "link", "add", UP1, "type", "veth", "peer", "name", "eth0", "netns", &lan2.name,
    ]);
    host.ip(&["addr", "add", "203.0.113.1/24", "dev", UP1]);
    host.ip(&["link", "set", UP1, "up"]);
    lan2.ip(&["addr", "add", "203.0.113.2/24", "dev", "eth0"]);
    lan2.ip(&["link", "set", "eth0", "up"]);
    lan2.ip(&["route", "replace", "default", "via", "203.0.113.1"]);
    for (ns, dev) in [(host, UP1), (lan2, "eth0")] {
        ns.exec(&["ethtool", "-K", dev, "tx", "off", "rx", "off"]);
    }
}

/// The daemon on the topology's bridge, with `uplinks` (none: every interface).
fn daemon(t: &Topology, uplinks: &[&str]) -> Daemon {
    let mut args = t.files.daemon_args();
    args.extend(["--bridge", BRIDGE, "--no-docker"].map(String::from));
    for u in uplinks {
        args.extend(["--uplink".to_string(), u.to_string()]);
    }
    Daemon::start(&t.host.path(), &t.files.socket, &args)
}

/// Poll `ls` until its uplinks are `want`.
fn wait_uplinks(socket: &Path, want: &[&str]) {
    wait_for(
        &format!("uplinks {want:?}"),
        Duration::from_secs(10),
        || ls(socket).uplinks == want,
    );
}

/// The address a whoami server at `to` saw the container's connection come from.
fn seen_from_container(t: &Topology, to: SocketAddr) -> Ipv4Addr {
    let reply = tcp_roundtrip(&t.container, to, b"who").expect("container reaches the server");
    let seen = WhoamiServer::seen(&reply);
    match seen.ip() {
        std::net::IpAddr::V4(ip) => ip,
        other @ std::net::IpAddr::V6(_) => panic!("an IPv6 peer {other}"),
    }
}

fn echo_ok(ns: &Netns, to: SocketAddr) {
    assert_eq!(
        tcp_roundtrip(ns, to, b"hi").unwrap_or_else(|e| panic!("published {to}: {e}")),
        b"8080:hi",
        "published port at {to} from {}",
        ns.name
    );
}

#[test]
fn every_interface_masquerades_and_publishes_including_later_ones() {
    if !require_root() {
        return;
    }
    let t = Topology::new("upe");
    let lan2 = Netns::new(&format!("{}-lan2", t.host.name));
    let _d = daemon(&t, &[]);
    wait_uplinks(&t.files.socket, &["up0"]);
    let _echo = EchoServer::start(&t.container, 8080);
    cli_ok(&t.files.socket, &["publish", "8080:172.17.0.4:8080"]);
    let _who = WhoamiServer::start(&t.server, 9000);
    let _who2 = WhoamiServer::start(&lan2, 9000);
    let server = SocketAddr::from((SERVER_IP, 9000));
    assert_eq!(
        seen_from_container(&t, server),
        HOST_IP,
        "masqueraded on up0"
    );

    // An interface that appears after the daemon started is served.
    wire_up1(&t.host, &lan2);
    wait_uplinks(&t.files.socket, &["up0", UP1]);
    assert_eq!(
        seen_from_container(&t, SocketAddr::from((LAN2_IP, 9000))),
        UP1_IP,
        "egress through the new interface leaves with its address"
    );
    echo_ok(&lan2, SocketAddr::from((UP1_IP, 8080)));
    // Every local address, whichever interface the packet came in by.
    echo_ok(&lan2, SocketAddr::from((HOST_IP, 8080)));

    // A route change is followed from the next packet: the server's address now lies
    // behind up1 (lan2 answers for it), and egress is masqueraded there.
    lan2.ip(&["addr", "add", "198.51.100.2/32", "dev", "lo"]);
    t.host
        .ip(&["route", "add", "198.51.100.2/32", "via", "203.0.113.2"]);
    assert_eq!(
        seen_from_container(&t, server),
        UP1_IP,
        "after the route change"
    );
    t.host.ip(&["route", "del", "198.51.100.2/32"]);
    assert_eq!(
        seen_from_container(&t, server),
        HOST_IP,
        "route change undone"
    );

    // Deleted and recreated (a new ifindex): served again.
    t.host.ip(&["link", "del", UP1]);
    wait_uplinks(&t.files.socket, &["up0"]);
    wire_up1(&t.host, &lan2);
    wait_uplinks(&t.files.socket, &["up0", UP1]);
    echo_ok(&lan2, SocketAddr::from((UP1_IP, 8080)));
    assert_eq!(
        seen_from_container(&t, SocketAddr::from((LAN2_IP, 9000))),
        UP1_IP,
        "egress through the recreated interface"
    );
    t.assert_no_checksum_errors();
}

#[test]
fn uplink_narrows_the_set_and_follows_its_name() {
    if !require_root() {
        return;
    }
    let t = Topology::new("upn");
    let lan2 = Netns::new(&format!("{}-lan2", t.host.name));
    // up1 does not exist yet: the daemon starts and waits for it.
    let _d = daemon(&t, &[UP1]);
    wait_uplinks(&t.files.socket, &[]);
    let _echo = EchoServer::start(&t.container, 8080);
    cli_ok(&t.files.socket, &["publish", "8080:172.17.0.4:8080"]);
    wire_up1(&t.host, &lan2);
    wait_uplinks(&t.files.socket, &[UP1]);
    echo_ok(&lan2, SocketAddr::from((UP1_IP, 8080)));

    // up0 is not an uplink: nothing is published there (the host itself answers the
    // SYN, and has no listener), and egress through it is not masqueraded.
    assert_fails(
        "published port through an interface left out",
        tcp_roundtrip(&t.client, Topology::host_addr(8080), b"hi"),
        ErrorKind::ConnectionRefused,
    );
    let _who = WhoamiServer::start(&t.server, 9000);
    assert_eq!(
        seen_from_container(&t, SocketAddr::from((SERVER_IP, 9000))),
        CONTAINER_IP,
        "egress through an interface left out keeps the container's address"
    );

    // Renamed away, it is left; recreated under the name, it is served again.
    t.host.ip(&["link", "set", UP1, "down"]);
    t.host.ip(&["link", "set", UP1, "name", "old1"]);
    wait_uplinks(&t.files.socket, &[]);
    t.host.ip(&["link", "del", "old1"]);
    wire_up1(&t.host, &lan2);
    wait_uplinks(&t.files.socket, &[UP1]);
    echo_ok(&lan2, SocketAddr::from((UP1_IP, 8080)));
}

/// An interface that appears after the start gets the inbound policy at once: a
/// connection routed from it to an unpublished container port, and a datagram claiming
/// another container's address as its source, are dropped and counted, where the same
/// host without bpfnet lets both in.
#[test]
fn a_later_interface_gets_the_inbound_policy() {
    if !require_root() {
        return;
    }
    let t = Topology::new("upa");
    let lan2 = Netns::new(&format!("{}-lan2", t.host.name));
    t.host.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    // lan2 claims container2's address too.
    lan2.ip(&["addr", "add", "172.17.0.5/32", "dev", "lo"]);
    let (listener, udp) = t.container.run(|| {
        let l = TcpListener::bind("0.0.0.0:7000").expect("bind");
        l.set_nonblocking(true).expect("nonblocking");
        let u = UdpSocket::bind("0.0.0.0:7001").expect("bind");
        u.set_read_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
        (l, u)
    });
    let target = SocketAddr::from((CONTAINER_IP, 7000));
    let spoof = move || {
        let s = UdpSocket::bind("172.17.0.5:0").expect("bind the spoofed source");
        s.send_to(b"spoof", SocketAddr::from((CONTAINER_IP, 7001)))
            .expect("send");
    };
    let mut buf = [0u8; 16];
    // The precondition: without bpfnet both get through.
    wire_up1(&t.host, &lan2);
    tcp_connect(&lan2, target).expect("without bpfnet the probe gets through");
    thread::sleep(Duration::from_millis(100));
    listener.accept().expect("the probe arrived");
    lan2.run(spoof);
    udp.recv_from(&mut buf)
        .expect("without bpfnet the spoofed datagram arrives");
    t.host.ip(&["link", "del", UP1]);

    let _d = daemon(&t, &[]);
    wire_up1(&t.host, &lan2);
    wait_uplinks(&t.files.socket, &["up0", UP1]);
    let inbound = counter(&t.files.socket, Reason::DropInbound);
    assert_fails(
        "a routed connection through the later interface",
        tcp_connect(&lan2, target),
        ErrorKind::TimedOut,
    );
    lan2.run(spoof);
    assert!(
        udp.recv_from(&mut buf).is_err(),
        "a datagram spoofing container2's address must not arrive"
    );
    assert_eq!(
        listener.accept().map(|_| ()).map_err(|e| e.kind()),
        Err(ErrorKind::WouldBlock),
        "no connection arrived in the container"
    );
    assert!(
        counter(&t.files.socket, Reason::DropInbound) >= inbound + 2,
        "the probes are counted as drop-inbound"
    );
}

/// A VPN's tunnel (tun0 here; `WireGuard`'s wg0 is the same kind of device: no link-layer
/// header) that comes up after the daemon is an uplink like any other: egress through it
/// is masqueraded with its address, published ports answer on it (on its address and on
/// the host's others), a megabyte crosses each way, a probe whose TTL ends at the host
/// is answered time-exceeded back through the tunnel, and a routed probe to an
/// unpublished container port is dropped by the inbound policy.
#[test]
fn a_tunnel_is_an_uplink_too() {
    if !require_root() {
        return;
    }
    let t = Topology::new("upt");
    let vpn = Netns::new(&format!("{}-vpn", t.host.name));
    t.host.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    let _d = daemon(&t, &[]);
    wait_uplinks(&t.files.socket, &["up0"]);
    let _echo = EchoServer::start(&t.container, 8080);
    cli_ok(&t.files.socket, &["publish", "8080:172.17.0.4:8080"]);
    let _who = WhoamiServer::start(&vpn, 9000);

    let _tunnel = TunLink::new(
        (&t.host, "tun0", "203.0.113.1/24"),
        (&vpn, "tun0", "203.0.113.2/24"),
    );
    vpn.ip(&["route", "replace", "default", "dev", "tun0"]);
    wait_uplinks(&t.files.socket, &["up0", "tun0"]);

    assert_eq!(
        seen_from_container(&t, SocketAddr::from((LAN2_IP, 9000))),
        UP1_IP,
        "egress through the tunnel leaves with its address"
    );
    echo_ok(&vpn, SocketAddr::from((UP1_IP, 8080)));
    echo_ok(&vpn, SocketAddr::from((HOST_IP, 8080)));
    static MEGABYTE: [u8; 1 << 20] = [0x5a; 1 << 20];
    let reply = tcp_roundtrip(&vpn, SocketAddr::from((UP1_IP, 8080)), &MEGABYTE)
        .expect("a megabyte through the tunnel and the publish");
    assert_eq!(
        reply.len(),
        5 + MEGABYTE.len(),
        "the whole megabyte came back"
    );
    assert!(reply[5..].iter().all(|&b| b == 0x5a), "unchanged");

    let before = counter(&t.files.socket, Reason::IcmpTimeExceeded);
    let probe = vpn.output(&[
        "hping3",
        "-S",
        "-p",
        "8080",
        "-c",
        "1",
        "-t",
        "1",
        "203.0.113.1",
    ]);
    assert!(
        probe.contains("TTL 0 during transit from ip=203.0.113.1"),
        "the host answers time-exceeded through the tunnel: {probe}"
    );
    assert!(
        counter(&t.files.socket, Reason::IcmpTimeExceeded) > before,
        "counted"
    );

    let inbound = counter(&t.files.socket, Reason::DropInbound);
    let _listener = t
        .container
        .run(|| TcpListener::bind("0.0.0.0:7000").expect("bind"));
    assert_fails(
        "a routed connection through the tunnel to an unpublished port",
        tcp_connect(&vpn, SocketAddr::from((CONTAINER_IP, 7000))),
        ErrorKind::TimedOut,
    );
    assert!(
        counter(&t.files.socket, Reason::DropInbound) > inbound,
        "the probe is counted as drop-inbound"
    );
}

/// `a_tunnel_is_an_uplink_too` over IPv6 (`from_l3_uplink6`, which no VXLAN device runs:
/// its frames have an Ethernet header): a ULA container's egress through the tunnel is
/// masqueraded with the tunnel's IPv6 address (NAT66), a port published on `[::]`
/// answers on it, a megabyte crosses each way, a datagram whose hop limit ends at the
/// host is answered time-exceeded back through the tunnel, and a routed probe to an
/// unpublished container port is `drop-inbound`.
#[test]
fn an_ipv6_tunnel_is_an_uplink_too() {
    if !require_root() {
        return;
    }
    let t = Topology::new("upt6");
    let vpn = Netns::new(&format!("{}-vpn", t.host.name));
    for (ns, dev, cidr) in [
        (&t.host, BRIDGE, "fd00:17::1/64"),
        (&t.container, "eth0", "fd00:17::4/64"),
    ] {
        ns.ip(&["-6", "addr", "add", cidr, "dev", dev, "nodad"]);
    }
    t.container
        .ip(&["-6", "route", "add", "default", "via", "fd00:17::1"]);
    let sock = &t.files.socket;
    let _d = daemon(&t, &[]);
    wait_uplinks(sock, &["up0"]);
    let mac = t
        .container
        .mac("eth0")
        .map(|b| format!("{b:02x}"))
        .join(":");
    cli_ok(
        sock,
        &[
            "endpoint",
            "add",
            "--bridge",
            BRIDGE,
            "--veth",
            "vc0",
            "--ip",
            "172.17.0.4/16",
            "--ip",
            "fd00:17::4/64",
            "--mac",
            &mac,
        ],
    );
    let _echo = EchoServer::start6(&t.container, 8080);
    cli_ok(sock, &["publish", "[::]:8080:[fd00:17::4]:8080"]);
    cli_ok(sock, &["publish", "[::]:8080:[fd00:17::4]:8080/udp"]);
    let _who = WhoamiServer::start6(&vpn, 9000);

    let _tunnel = TunLink::new(
        (&t.host, "tun0", "2001:db8:9::1/64"),
        (&vpn, "tun0", "2001:db8:9::2/64"),
    );
    vpn.ip(&["-6", "route", "replace", "default", "dev", "tun0"]);
    wait_uplinks(sock, &["up0", "tun0"]);
    let hooks = ls(sock).attached;
    assert!(
        hooks.contains(&("tun0".into(), Program::FromL3Uplink)),
        "the tunnel carries the L3 uplink's program: {hooks:?}"
    );
    let v6 = |addr: &str, port: u16| SocketAddr::new(addr.parse().expect("IPv6"), port);

    let mut seen = None;
    wait_for("the container's egress through the tunnel", WAIT6, || {
        seen = tcp_roundtrip(&t.container, v6("2001:db8:9::2", 9000), b"who")
            .ok()
            .map(|r| WhoamiServer::seen(&r).ip());
        seen.is_some()
    });
    assert_eq!(
        seen,
        Some("2001:db8:9::1".parse().expect("IPv6")),
        "egress through the tunnel leaves with its IPv6 address"
    );
    echo_ok(&vpn, v6("2001:db8:9::1", 8080));
    static MEGABYTE: [u8; 1 << 20] = [0x5a; 1 << 20];
    let reply = tcp_roundtrip(&vpn, v6("2001:db8:9::1", 8080), &MEGABYTE)
        .expect("a megabyte through the tunnel and the IPv6 publish");
    assert_eq!(
        reply.len(),
        5 + MEGABYTE.len(),
        "the whole megabyte came back"
    );
    assert!(reply[5..].iter().all(|&b| b == 0x5a), "unchanged");

    let before = counter(sock, Reason::IcmpTimeExceeded);
    let answered = icmp6_time_exceeded_in(&vpn);
    vpn.run(|| {
        let s = UdpSocket::bind("[::]:0").expect("bind");
        rustix::net::sockopt::set_ipv6_unicast_hops(&s, Some(1)).expect("IPV6_UNICAST_HOPS");
        s.send_to(b"x", "[2001:db8:9::1]:8080").expect("send");
    });
    wait_for(
        "the time-exceeded error back through the tunnel",
        WAIT6,
        || icmp6_time_exceeded_in(&vpn) > answered,
    );
    assert!(counter(sock, Reason::IcmpTimeExceeded) > before, "counted");

    let inbound = counter(sock, Reason::DropInbound);
    let _listener = t
        .container
        .run(|| TcpListener::bind("[::]:7000").expect("bind"));
    assert_fails(
        "a routed IPv6 connection through the tunnel to an unpublished port",
        tcp_connect(&vpn, v6("fd00:17::4", 7000)),
        ErrorKind::TimedOut,
    );
    assert!(
        counter(sock, Reason::DropInbound) > inbound,
        "the probe is counted as drop-inbound"
    );
    t.assert_no_checksum_errors();
}

const WAIT6: Duration = Duration::from_secs(10);

/// `Icmp6InTimeExcds` of namespace `ns` (`/proc/net/snmp6`).
fn icmp6_time_exceeded_in(ns: &Netns) -> u64 {
    let text = ns.output(&["cat", "/proc/net/snmp6"]);
    text.lines()
        .find_map(|l| l.strip_prefix("Icmp6InTimeExcds"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("Icmp6InTimeExcds in {}'s snmp6:\n{text}", ns.name))
}

/// An open connection's packets follow a route change: its flow remembers its next hop,
/// and the change makes that stale. The container's connection to the server is
/// established through up0; once 198.51.100.2 is routed through up1, the flow's next
/// segment reaches lan2 (which owns that address too and knows no such connection, so
/// it answers with a reset) instead of the server (which would echo it).
#[test]
fn an_open_flow_follows_a_route_change() {
    if !require_root() {
        return;
    }
    let t = Topology::new("uprc");
    let lan2 = Netns::new(&format!("{}-lan2", t.host.name));
    wire_up1(&t.host, &lan2);
    lan2.ip(&["addr", "add", "198.51.100.2/32", "dev", "lo"]);
    let _d = daemon(&t, &[]);
    wait_uplinks(&t.files.socket, &["up0", UP1]);
    let _echo = EchoServer::start(&t.server, 9000);
    let mut s = tcp_connect(&t.container, SocketAddr::from((SERVER_IP, 9000)))
        .expect("the container reaches the server");
    let mut buf = [0u8; 16];
    s.write_all(b"a").expect("send");
    let mut got = Vec::new();
    while got.len() < 6 {
        let n = s.read(&mut buf).expect("the server echoes");
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, b"9000:a", "through up0");

    t.host
        .ip(&["route", "add", "198.51.100.2/32", "via", "203.0.113.2"]);
    thread::sleep(Duration::from_millis(200));
    s.write_all(b"b").expect("send");
    let after = s.read(&mut buf);
    assert_eq!(
        after.map_err(|e| e.kind()),
        Err(ErrorKind::ConnectionReset),
        "the segment took the new route to lan2, which reset it (an echo means it took the old one)"
    );
}
