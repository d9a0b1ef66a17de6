//! Endpoints, networks and host-local access end to end, on a host with the raw-table
//! notrack rule and FORWARD DROP: containers of one network talk through the fast path,
//! networks are isolated, spoofed sources are dropped, host processes reach published
//! ports at 127.0.0.1 and the host address, and pipework-style LAN endpoints are reached by
//! every LAN host through one uplink, which never becomes an endpoint.
use std::{
    io::{self, ErrorKind, Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::Path,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use bpfnet::api::Program;
use bpfnet_tests::{
    daemon::{Daemon, cli, cli_ok, counter, ls, pinned_endpoints, pinned_ports},
    echo::{
        EchoServer, IO_TIMEOUT, Server, WhoamiServer, assert_fails, tcp_connect, tcp_connect_from,
        tcp_roundtrip, udp_roundtrip,
    },
    lan::{
        LAN_BRIDGE, LAN_CONTAINER_IP, LAN_HOST_IP, LAN_UPLINK, Lan, PEER_PORT, Wire, mac_string,
        neighbour_mac, pings,
    },
    netns::Netns,
    packet::{arp, udp},
    raw::{Receiver, send_frame, send_l2},
    require_root,
    topo::{BRIDGE, HOST_IP, Topology, forward_policy, plug},
};
use common::Reason;

fn addr(ip: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::from((ip, port))
}

/// A TCP connection from `ns`, bound to source address `from`, to `to`.
fn tcp_from(ns: &Netns, from: [u8; 4], to: SocketAddr) -> io::Result<()> {
    let (from, to) = (SocketAddr::from((from, 0)), to);
    ns.run(move || tcp_connect_from(from, to).map(drop))
}

/// Two networks on a hardened host (notrack, FORWARD DROP through bridge netfilter):
/// br0 (172.17.0.0/16) with container (.4) and container2 (.5), br1 (172.18.0.0/16) with
/// container3 (.3) and container2 again (.5); all four registered as endpoints, echo
/// servers on port 7000 in container2 and container3.
struct Networks {
    t: Topology,
    k3: Netns,
    _daemon: Daemon,
    _echo2: Server,
    _echo3: Server,
}

impl Networks {
    fn new(tag: &str) -> Self {
        let t = Topology::new(tag);
        t.harden_host_firewall();
        let k3 = t.add_second_network();
        let echo2 = EchoServer::start(&t.container2, 7000);
        let echo3 = EchoServer::start(&k3, 7000);
        let daemon = t.start_daemon_with(&["--bridge", "br1"]);
        t.register_endpoints(&k3);
        Self {
            t,
            k3,
            _daemon: daemon,
            _echo2: echo2,
            _echo3: echo3,
        }
    }

    fn sock(&self) -> &Path {
        &self.t.files.socket
    }
}

#[test]
fn endpoint_add_learns_the_mac_and_refuses_duplicates() {
    if !require_root() {
        return;
    }
    let t = Topology::new("epa");
    let _d = t.start_daemon();
    let sock = &t.files.socket;
    let ping = Command::new("ip")
        .args(["netns", "exec", &t.container.name])
        .args(["ping", "-c", "1", "-W", "2", "172.17.0.1"])
        .output()
        .expect("ping runs");
    assert!(ping.status.success(), "container reaches its gateway");
    let add = [
        "endpoint",
        "add",
        "--bridge",
        "br0",
        "--veth",
        "vc0",
        "--ip",
        "172.17.0.4/16",
    ];
    cli_ok(sock, &add);
    let eps = ls(sock).endpoints;
    assert_eq!(eps.len(), 1, "{eps:?}");
    assert_eq!(
        eps[0].mac.to_string(),
        mac_string(&t.container, "eth0"),
        "the MAC the bridge learned from the container's traffic"
    );
    let out = cli(sock, &add);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a duplicate endpoint is refused"
    );
    let out = cli(sock, &["endpoint", "del", "--ip", "172.17.0.99"]);
    assert_eq!(out.status.code(), Some(2), "not an endpoint");
    cli_ok(sock, &["endpoint", "del", "--ip", "172.17.0.4"]);
    assert_eq!(ls(sock).endpoints, []);
}

/// FORWARD DROP, seen through bridge netfilter, cuts two ports of one bridge apart;
/// with bpfnet the network's containers talk over the fast path.
#[test]
fn forward_drop_does_not_cut_a_network_in_two() {
    if !require_root() {
        return;
    }
    let t = Topology::new("fd");
    t.harden_host_firewall();
    let _e2 = EchoServer::start(&t.container2, 7000);
    assert_fails(
        "container → container2 on br0 before bpfnet, through FORWARD DROP",
        tcp_roundtrip(&t.container, addr([172, 17, 0, 5], 7000), b"a"),
        ErrorKind::TimedOut,
    );
    let d = t.start_daemon();
    // Unregistered containers: switched through the bridge's own transmit path.
    assert_eq!(
        tcp_roundtrip(&t.container, addr([172, 17, 0, 5], 7000), b"a").expect("TCP on br0"),
        b"7000:a"
    );
    drop(d);
    // Registered endpoints: straight into the peer's namespace.
    let n = Networks::new("fdep");
    let before = counter(n.sock(), Reason::ForwardLocal);
    assert_eq!(
        tcp_roundtrip(&n.t.container, addr([172, 17, 0, 5], 7000), b"a").expect("TCP on br0"),
        b"7000:a"
    );
    assert_eq!(
        udp_roundtrip(&n.t.container, addr([172, 17, 0, 5], 7000), b"b").expect("UDP on br0"),
        b"7000:b"
    );
    let fast = counter(n.sock(), Reason::ForwardLocal) - before;
    assert!(
        fast >= 6,
        "container traffic took the redirect path ({fast} packets)"
    );
}

/// On a permissive host (FORWARD ACCEPT) only bpfnet's verdict stands between networks.
#[test]
fn networks_are_isolated_on_a_permissive_host() {
    if !require_root() {
        return;
    }
    let n = Networks::new("iso");
    forward_policy(&n.t.host, "ACCEPT");
    let dropped = counter(n.sock(), Reason::DropIsolation);
    assert_fails(
        "br0 → br1",
        tcp_roundtrip(&n.t.container, addr([172, 18, 0, 3], 7000), b"x"),
        ErrorKind::TimedOut,
    );
    assert!(
        counter(n.sock(), Reason::DropIsolation) > dropped,
        "isolation drop counted"
    );
    assert_eq!(
        tcp_roundtrip(&n.t.container2, addr([172, 18, 0, 3], 7000), b"c")
            .expect("container on both networks"),
        b"7000:c"
    );
    assert_eq!(
        tcp_roundtrip(&n.k3, addr([172, 18, 0, 5], 7000), b"d").expect("within br1"),
        b"7000:d"
    );
}

#[test]
fn spoofed_sources_are_dropped_on_a_permissive_host() {
    if !require_root() {
        return;
    }
    let n = Networks::new("spf");
    forward_policy(&n.t.host, "ACCEPT");
    let (k1, k2) = (&n.t.container, &n.t.container2);
    k1.ip(&["addr", "add", "172.17.0.99/16", "dev", "eth0"]);
    // Static neighbours both ways: no ARP is needed, so the IPv4 check alone must stop
    // the spoofed connection (the ARP check has a case of its own below).
    k1.ip(&[
        "neigh",
        "replace",
        "172.17.0.5",
        "lladdr",
        &mac_string(k2, "eth0"),
        "dev",
        "eth0",
        "nud",
        "permanent",
    ]);
    k2.ip(&[
        "neigh",
        "replace",
        "172.17.0.99",
        "lladdr",
        &mac_string(k1, "eth0"),
        "dev",
        "eth0",
        "nud",
        "permanent",
    ]);
    let spoofs = counter(n.sock(), Reason::DropSpoof);
    assert_fails(
        "a connection from a spoofed source",
        tcp_from(k1, [172, 17, 0, 99], addr([172, 17, 0, 5], 7000)),
        ErrorKind::TimedOut,
    );
    assert!(
        counter(n.sock(), Reason::DropSpoof) > spoofs,
        "spoof drop counted"
    );

    // A gratuitous ARP claiming container2's address: the host's entry for it, which
    // such an ARP would update, keeps container2's MAC.
    n.t.host.exec(&["ping", "-c", "1", "-W", "2", "172.17.0.5"]);
    let spoofs = counter(n.sock(), Reason::DropSpoof);
    let spoofer = k1.mac("eth0");
    let claim = send_l2(k1, "eth0", &arp(spoofer, [172, 17, 0, 5], [172, 17, 0, 5]));
    let neigh = Command::new("ip")
        .args([
            "-n",
            &n.t.host.name,
            "neigh",
            "show",
            "172.17.0.5",
            "dev",
            "br0",
        ])
        .output()
        .expect("ip neigh");
    let neigh = String::from_utf8_lossy(&neigh.stdout);
    assert!(
        !neigh.contains(&mac_string(k1, "eth0")),
        "the host must not learn the spoofer's MAC for 172.17.0.5: {neigh} ({claim:?})"
    );
    assert!(
        counter(n.sock(), Reason::DropSpoof) > spoofs,
        "the ARP spoof is counted ({claim:?})"
    );
}

/// Host processes reach published ports at 127.0.0.1 and at the host address, TCP and
/// UDP; the peer they see (getpeername, the UDP reply's source) is what they dialed.
#[test]
fn host_processes_reach_published_ports_at_localhost_and_the_host_address() {
    if !require_root() {
        return;
    }
    let t = Topology::new("hl");
    t.harden_host_firewall();
    let _d = t.start_daemon();
    let (h, sock) = (&t.host, &t.files.socket);
    let _e1 = EchoServer::start(&t.container, 8038);
    cli_ok(sock, &["publish", "8038:172.17.0.4:8038"]);
    cli_ok(sock, &["publish", "8038:172.17.0.4:8038/udp"]);
    cli_ok(sock, &["publish", "127.0.0.1:8040:172.17.0.4:8038"]);
    for to in [
        addr([127, 0, 0, 1], 8038),
        SocketAddr::from((HOST_IP, 8038)),
        addr([127, 0, 0, 1], 8040),
    ] {
        assert_eq!(
            tcp_roundtrip(h, to, b"local").unwrap_or_else(|e| panic!("host → {to}: {e}")),
            b"8038:local"
        );
    }
    // udp_roundtrip requires the reply from the dialed address (recvmsg4).
    for to in [
        addr([127, 0, 0, 1], 8038),
        SocketAddr::from((HOST_IP, 8038)),
    ] {
        assert_eq!(
            udp_roundtrip(h, to, b"u").unwrap_or_else(|e| panic!("host UDP → {to}: {e}")),
            b"8038:u"
        );
    }
    let peer = h.run(|| {
        let mut s =
            TcpStream::connect_timeout(&addr([127, 0, 0, 1], 8038), IO_TIMEOUT).expect("connect");
        s.write_all(b"p").expect("send");
        let mut b = [0u8; 5];
        s.read_exact(&mut b).expect("echo prefix");
        s.peer_addr().expect("peer address")
    });
    assert_eq!(
        peer,
        addr([127, 0, 0, 1], 8038),
        "getpeername shows the dialed address"
    );
    assert_fails(
        "a 127.0.0.1-bound publish from outside reaches the host, where nothing listens",
        tcp_roundtrip(&t.client, SocketAddr::from((HOST_IP, 8040)), b"x"),
        ErrorKind::ConnectionRefused,
    );
    assert_eq!(
        tcp_roundtrip(&t.client, SocketAddr::from((HOST_IP, 8038)), b"o")
            .expect("wildcard publish from outside"),
        b"8038:o"
    );
}

/// The socket programs see every namespace; only the daemon's is pointed at backends: in
/// another namespace 127.0.0.1:8038 stays that namespace's own server.
#[test]
fn only_sockets_in_the_daemons_namespace_are_rewritten() {
    if !require_root() {
        return;
    }
    let t = Topology::new("nsr");
    let _d = t.start_daemon();
    let _e1 = EchoServer::start(&t.container, 8038);
    cli_ok(&t.files.socket, &["publish", "8038:172.17.0.4:8038"]);
    cli_ok(&t.files.socket, &["publish", "8038:172.17.0.4:8038/udp"]);
    assert_eq!(
        tcp_roundtrip(&t.host, addr([127, 0, 0, 1], 8038), b"h").expect("the daemon's namespace"),
        b"8038:h"
    );
    let _own = WhoamiServer::start(&t.client, 8038);
    for reply in [
        tcp_roundtrip(&t.client, addr([127, 0, 0, 1], 8038), b"x"),
        udp_roundtrip(&t.client, addr([127, 0, 0, 1], 8038), b"x"),
    ] {
        let reply = reply.expect("the client's own server on 127.0.0.1:8038");
        assert!(
            reply.starts_with(b"127.0.0.1:"),
            "another namespace's 127.0.0.1:8038 must stay its own, got {:?}",
            String::from_utf8_lossy(&reply)
        );
    }
}

/// An endpoint is kept across a daemon restart and follows its veth by name: when the
/// veth is deleted and created again (a new ifindex), the fast path and anti-spoofing
/// apply to the new one.
#[test]
fn endpoints_are_persisted_and_follow_their_veth_by_name() {
    if !require_root() {
        return;
    }
    let t = Topology::new("epf");
    let (h, k2) = (&t.host, &t.container2);
    let daemon = t.start_daemon();
    let sock = &t.files.socket;
    let m = mac_string(k2, "eth0");
    cli_ok(
        sock,
        &[
            "endpoint",
            "add",
            "--bridge",
            "br0",
            "--veth",
            "vc1",
            "--ip",
            "172.17.0.5/16",
            "--mac",
            &m,
        ],
    );
    let listed = ls(sock).endpoints;
    daemon.kill9();
    let _daemon = t.start_daemon();
    assert_eq!(ls(sock).endpoints, listed, "endpoints after a restart");

    // container2's veth goes and comes back under the same name, with a new ifindex.
    let old = h.ifindex("vc1");
    h.ip(&["link", "del", "vc1"]);
    plug(
        h,
        (BRIDGE, "vc1"),
        k2,
        ("eth0", "172.17.0.5/16"),
        Some("172.17.0.1"),
    );
    k2.ip(&["link", "set", "eth0", "address", &m]);
    assert_ne!(h.ifindex("vc1"), old, "a new veth");
    let new_pin = t
        .files
        .pin_dir
        .join(format!("links/from_container@{}", h.ifindex("vc1")));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !new_pin.exists() {
        assert!(Instant::now() < deadline, "the new vc1 is attached");
        thread::sleep(Duration::from_millis(50));
    }

    let _e = EchoServer::start(&t.container, 7000);
    let fast = counter(sock, Reason::ForwardLocal);
    assert_eq!(
        tcp_roundtrip(k2, addr([172, 17, 0, 4], 7000), b"back").expect("from the new veth"),
        b"7000:back"
    );
    assert!(
        counter(sock, Reason::ForwardLocal) > fast,
        "the fast path hands replies to the new veth"
    );
    k2.ip(&["addr", "add", "172.17.0.98/16", "dev", "eth0"]);
    let spoofs = counter(sock, Reason::DropSpoof);
    assert_fails(
        "a spoofed source on the new veth",
        tcp_from(k2, [172, 17, 0, 98], addr([172, 17, 0, 4], 7000)),
        ErrorKind::TimedOut,
    );
    assert!(
        counter(sock, Reason::DropSpoof) > spoofs,
        "anti-spoofing enforced on the new veth"
    );
}

/// Every LAN host and the container reach each other: TCP, UDP and ping, both ways.
fn assert_the_lan_and_the_container_reach_each_other(lan: &Lan) {
    let to = Lan::container_addr();
    for (i, peer) in lan.peers.iter().enumerate() {
        let ip = Lan::peer_ip(i);
        let tcp = tcp_roundtrip(peer, to, b"t")
            .unwrap_or_else(|e| panic!("LAN host {ip} → container, TCP: {e}"));
        assert_eq!(tcp, b"7000:t", "LAN host {ip} → container, TCP");
        let udp = udp_roundtrip(peer, to, b"u")
            .unwrap_or_else(|e| panic!("LAN host {ip} → container, UDP: {e}"));
        assert_eq!(udp, b"7000:u", "LAN host {ip} → container, UDP");
        assert!(
            pings(peer, LAN_CONTAINER_IP),
            "LAN host {ip} → container, ping"
        );
    }
    for i in 0..lan.peers.len() {
        let ip = Lan::peer_ip(i);
        let to = SocketAddr::from((ip, PEER_PORT));
        let tcp = tcp_roundtrip(&lan.container, to, b"t")
            .unwrap_or_else(|e| panic!("container → LAN host {ip}, TCP: {e}"));
        assert_eq!(tcp, b"7001:t", "container → LAN host {ip}, TCP");
        let udp = udp_roundtrip(&lan.container, to, b"u")
            .unwrap_or_else(|e| panic!("container → LAN host {ip}, UDP: {e}"));
        assert_eq!(udp, b"7001:u", "container → LAN host {ip}, UDP");
        assert!(pings(&lan.container, ip), "container → LAN host {ip}, ping");
    }
}

/// The LAN wire is an uplink and nothing else: it carries `from_uplink`, is no
/// container's bridge port, and no endpoint is bound to it; the registered container is
/// the only endpoint.
fn assert_the_wire_is_no_endpoint(lan: &Lan) {
    let programs = lan.programs_on(LAN_UPLINK);
    assert!(
        programs.contains(&Program::FromUplink) && !programs.contains(&Program::FromContainer),
        "lan0 carries from_uplink, not from_container: {programs:?}"
    );
    let wire = lan.host.ifindex(LAN_UPLINK);
    let pins = &lan.files.pin_dir;
    let eps = pinned_endpoints(pins);
    assert!(
        eps.iter().all(|(_, ep)| ep.ifindex != wire),
        "no endpoint may be bound to lan0 (ifindex {wire}): {eps:?}"
    );
    assert_eq!(
        eps.iter().map(|(ip, _)| *ip).collect::<Vec<_>>(),
        [LAN_CONTAINER_IP],
        "the registered container is the only endpoint: {eps:?}"
    );
    assert!(
        !pinned_ports(pins).contains(&wire),
        "lan0 (ifindex {wire}) is no container's bridge port"
    );
}

/// Three LAN hosts behind one switch reach a pipework-style container on the LAN bridge
/// through the same uplink port, and it reaches each of them; the uplink never becomes
/// an endpoint. The container still cannot take another LAN address, and a LAN host
/// cannot pass as the container (ARP or IP from its address: `drop-spoof`).
#[test]
fn every_lan_host_reaches_a_lan_endpoint_through_one_uplink() {
    if !require_root() {
        return;
    }
    let lan = Lan::new("lanmany", Wire::Named, 3);
    assert_the_lan_and_the_container_reach_each_other(&lan);
    assert_the_wire_is_no_endpoint(&lan);

    // Anti-spoofing on a permissive host, where only bpfnet's verdicts stand.
    forward_policy(&lan.host, "ACCEPT");
    let (sock, ctr) = (lan.sock(), &lan.container);
    ctr.ip(&["addr", "add", "203.0.113.99/24", "dev", "eth0"]);
    let spoofs = counter(sock, Reason::DropSpoof);
    assert_fails(
        "a connection from a LAN address the container was not given",
        tcp_from(
            ctr,
            [203, 0, 113, 99],
            SocketAddr::from((Lan::peer_ip(0), PEER_PORT)),
        ),
        ErrorKind::TimedOut,
    );
    assert!(
        counter(sock, Reason::DropSpoof) > spoofs,
        "the container's spoofed source is counted"
    );
    // Nor may it claim a LAN host's address by ARP: the host keeps that host's MAC.
    let victim = Lan::peer_ip(1);
    assert!(pings(&lan.host, victim), "the host reaches {victim}");
    let victim_mac = neighbour_mac(&lan.host, victim, LAN_BRIDGE);
    let spoofs = counter(sock, Reason::DropSpoof);
    let claim = send_l2(
        ctr,
        "eth0",
        &arp(ctr.mac("eth0"), victim.octets(), victim.octets()),
    );
    thread::sleep(Duration::from_millis(200));
    assert_eq!(
        neighbour_mac(&lan.host, victim, LAN_BRIDGE),
        victim_mac,
        "the host keeps {victim}'s MAC after the container's claim ({claim:?})"
    );
    assert!(
        counter(sock, Reason::DropSpoof) > spoofs,
        "the container's ARP claim is counted ({claim:?})"
    );

    // A LAN host cannot pass as the container, by ARP (sent to the host alone: the
    // other LAN hosts are the switch's to protect)...
    let attacker = &lan.peers[2];
    assert!(
        pings(&lan.host, LAN_CONTAINER_IP),
        "the host reaches the container"
    );
    let ctr_mac = Some(mac_string(ctr, "eth0"));
    let spoofs = counter(sock, Reason::DropSpoof);
    let ip = LAN_CONTAINER_IP.octets();
    let mut frame = arp(attacker.mac("eth0"), ip, ip);
    frame[..6].copy_from_slice(&lan.host.mac(LAN_BRIDGE));
    let claim = send_l2(attacker, "eth0", &frame);
    thread::sleep(Duration::from_millis(200));
    assert_eq!(
        neighbour_mac(&lan.host, LAN_CONTAINER_IP, LAN_BRIDGE),
        ctr_mac,
        "the host keeps the container's MAC after a LAN host's claim ({claim:?})"
    );
    assert!(
        counter(sock, Reason::DropSpoof) > spoofs,
        "the LAN host's ARP claim is counted ({claim:?})"
    );
    // ...or by IP: a datagram from the container's address does not reach the host.
    let seen = Receiver::open(&lan.host, 17);
    let spoofs = counter(sock, Reason::DropSpoof);
    send_frame(
        attacker,
        &udp((ip, 5353), (LAN_HOST_IP.octets(), 9), b"x", true),
    )
    .expect("the LAN host sends a datagram from the container's address");
    let sources = seen.sources(Duration::from_millis(500));
    assert!(
        !sources.contains(&LAN_CONTAINER_IP),
        "the host received a datagram from the container's address off the LAN: {sources:?}"
    );
    assert!(
        counter(sock, Reason::DropSpoof) > spoofs,
        "the LAN host's spoofed datagram is counted"
    );
    // The LAN works as before.
    assert_the_lan_and_the_container_reach_each_other(&lan);
    assert_the_wire_is_no_endpoint(&lan);
}

/// The uplink port appears, and is enslaved to the LAN bridge, while the daemon runs
/// (followed through rtnetlink): still an uplink, never an endpoint.
#[test]
fn a_lan_uplink_enslaved_after_start_is_never_an_endpoint() {
    if !require_root() {
        return;
    }
    let lan = Lan::new("lanlater", Wire::NamedLater, 3);
    assert_the_lan_and_the_container_reach_each_other(&lan);
    assert_the_wire_is_no_endpoint(&lan);
}

/// Without `--uplink`, a LAN bridge's port that is no veth (here a VXLAN device carrying
/// the LAN) is found as its uplink: never an endpoint.
#[test]
fn a_lan_uplink_found_without_naming_is_never_an_endpoint() {
    if !require_root() {
        return;
    }
    let lan = Lan::new("lanfound", Wire::Found, 3);
    assert_the_lan_and_the_container_reach_each_other(&lan);
    assert_the_wire_is_no_endpoint(&lan);
}

/// An open connection to a published port follows its endpoint to a new veth: the flow
/// remembers the endpoint's veth as its next hop, and the endpoint's change makes that
/// stale. The container's veth is deleted and plugged again under the same name, address
/// and MAC (a new ifindex) while the client's connection stays open; the next exchange
/// on it still gets its echo.
#[test]
fn an_open_flow_follows_its_endpoint_to_a_new_veth() {
    if !require_root() {
        return;
    }
    let t = Topology::new("epmv");
    let _d = t.start_daemon();
    let sock = &t.files.socket;
    let m = mac_string(&t.container, "eth0");
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
            "--mac",
            &m,
        ],
    );
    cli_ok(sock, &["publish", "8080:172.17.0.4:8080"]);
    let _e = EchoServer::start(&t.container, 8080);
    let mut s =
        tcp_connect(&t.client, Topology::host_addr(8080)).expect("the client reaches the publish");
    let echo = |s: &mut TcpStream, msg: &[u8], want: &[u8]| {
        s.write_all(msg).expect("send");
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        while got.len() < want.len() {
            let n = s.read(&mut buf).expect("the echo comes back");
            assert!(n > 0, "the connection stays open");
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, want);
    };
    echo(&mut s, b"a", b"8080:a");

    let old = t.host.ifindex("vc0");
    t.host.ip(&["link", "del", "vc0"]);
    plug(
        &t.host,
        (BRIDGE, "vc0"),
        &t.container,
        ("eth0", "172.17.0.4/16"),
        Some("172.17.0.1"),
    );
    t.container.ip(&["link", "set", "eth0", "address", &m]);
    let new = t.host.ifindex("vc0");
    assert_ne!(new, old, "a new veth");
    let pin = t.files.pin_dir.join(format!("links/from_container@{new}"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pin.exists() {
        assert!(Instant::now() < deadline, "the new vc0 is attached");
        thread::sleep(Duration::from_millis(50));
    }
    // The endpoint follows in the same pass of the daemon, just after the attach.
    thread::sleep(Duration::from_millis(300));
    echo(&mut s, b"b", b"b");
}
