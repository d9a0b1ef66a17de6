//! IPv6 end to end: dual-stack containers on a bridge with the daemon as their only
//! firewall (the host forwards and accepts everything). Their IPv6 is switched between
//! them and reaches the host, under the same anti-spoofing as IPv4; neighbour discovery
//! cannot poison a cache and router advertisements never leave a container.
use std::{
    collections::BTreeSet,
    io::ErrorKind,
    net::{IpAddr, SocketAddr},
    thread,
    time::Duration,
};

use bpfnet_tests::{
    daemon::{cli_ok, counter, ct_table_len, evict_reply_and_await_repair},
    echo::{EchoServer, WhoamiServer, assert_fails, tcp_connect, tcp_roundtrip, udp_roundtrip},
    netns::Netns,
    packet::{
        IPV6_ALL_NODES, ipv6_icmp, ipv6_multicast_mac, link_local, nd_option, neighbour,
        router_advert,
    },
    packet6::tcp6,
    raw::{send_frames6, send_l2},
    require_root,
    topo::{BRIDGE, HOST_IP, HOST_IP6, SERVER_IP6, Topology, harden_firewall6},
    wait_for,
};
use common::{Ip6, Reason, names};

const GATEWAY: &str = "fd00:17::1";
const C1: &str = "fd00:17::4";
const C2: &str = "fd00:17::5";
/// TCP's SYN flag.
const TCP_SYN: u8 = 0x02;
const WAIT: Duration = Duration::from_secs(10);

/// The topology's bridge and containers get IPv6 addresses of `fd00:17::/64` too.
fn dual_stack(t: &Topology) {
    for (ns, dev, addr) in [
        (&t.host, BRIDGE, GATEWAY),
        (&t.container, "eth0", C1),
        (&t.container2, "eth0", C2),
    ] {
        ns.ip(&[
            "-6",
            "addr",
            "add",
            &format!("{addr}/64"),
            "dev",
            dev,
            "nodad",
        ]);
    }
}

/// The uplink carries IPv6 too: the host `2001:db8:1::1/64`, the client on the LAN
/// `2001:db8:1::2/64`. The host's firewall drops forwarded IPv6 and tells conntrack to stay
/// out (what Docker users run into with ip6tables), so only bpfnet's verdicts forward.
fn ipv6_uplink(t: &Topology) {
    t.host.ip(&[
        "-6",
        "addr",
        "add",
        "2001:db8:1::1/64",
        "dev",
        "up0",
        "nodad",
    ]);
    t.client.ip(&[
        "-6",
        "addr",
        "add",
        "2001:db8:1::2/64",
        "dev",
        "eth0",
        "nodad",
    ]);
    harden_firewall6(&t.host);
}

/// Register both containers with their IPv4 and IPv6 (`v6`: their IPv6 CIDRs).
fn register(t: &Topology, v6: [&str; 2]) {
    let macs = [t.container.mac("eth0"), t.container2.mac("eth0")];
    for (i, (veth, v4)) in [("vc0", "172.17.0.4/16"), ("vc1", "172.17.0.5/16")]
        .into_iter()
        .enumerate()
    {
        cli_ok(
            &t.files.socket,
            &[
                "endpoint",
                "add",
                "--bridge",
                BRIDGE,
                "--veth",
                veth,
                "--ip",
                v4,
                "--ip",
                v6[i],
                "--mac",
                &mac_str(macs[i]),
            ],
        );
    }
}

fn v6(addr: &str, port: u16) -> SocketAddr {
    SocketAddr::new(addr.parse().expect("IPv6 address"), port)
}

/// The peer a whoami server reported.
fn seen(reply: std::io::Result<Vec<u8>>) -> String {
    String::from_utf8_lossy(&reply.expect("whoami answered")).into_owned()
}

/// Whether one ping from `ns` to `addr` (with `extra` options) is answered.
fn pings(ns: &Netns, addr: &str, extra: &[&str]) -> bool {
    let mut args = vec!["ping", "-6", "-n", "-c1", "-W1"];
    args.extend_from_slice(extra);
    args.push(addr);
    ns.output(&args).contains(" 1 received")
}

fn mac_str(mac: [u8; 6]) -> String {
    let hex: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
    hex.join(":")
}

/// The MAC the host's neighbour cache gives `addr` on the bridge ("" when none).
fn host_neighbour(t: &Topology, addr: &str) -> String {
    t.host
        .output(&["ip", "-6", "neigh", "show", addr, "dev", BRIDGE])
        .split_whitespace()
        .skip_while(|w| *w != "lladdr")
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

/// Registered dual-stack containers reach each other and the host over IPv6. One that
/// advertises its neighbour's address as its own would take the host's traffic for it:
/// without bpfnet the host's cache takes the lie (the control); with bpfnet it keeps the
/// neighbour's MAC and every advertisement is counted as dropped. Nor can it send from
/// an address it was not given.
#[test]
fn dual_stack_containers_cannot_claim_a_neighbours_ipv6_address() {
    if !require_root() {
        return;
    }
    let t = Topology::new("v6nd");
    dual_stack(&t);
    let (mac1, mac2) = (t.container.mac("eth0"), t.container2.mac("eth0"));
    let c2: std::net::Ipv6Addr = C2.parse().expect("address");
    let lie = ipv6_icmp(
        (mac1, ipv6_multicast_mac(IPV6_ALL_NODES)),
        (link_local(mac1), IPV6_ALL_NODES),
        &[],
        &neighbour(136, c2.octets(), &[nd_option(2, &mac1)]),
    );
    let resolved = |mac: [u8; 6]| {
        wait_for("the host to ping the neighbour", WAIT, || {
            pings(&t.host, C2, &[])
        });
        assert_eq!(host_neighbour(&t, C2), mac_str(mac), "the host's entry");
    };
    resolved(mac2);
    send_l2(&t.container, "eth0", &lie).expect("advertisement sent");
    wait_for(
        "control: without bpfnet the host believes the advertisement",
        WAIT,
        || host_neighbour(&t, C2) == mac_str(mac1),
    );
    t.host.ip(&["-6", "neigh", "flush", "dev", BRIDGE]);

    let _d = t.start_daemon();
    let sock = &t.files.socket;
    for (veth, v4, v6, mac) in [
        ("vc0", "172.17.0.4/16", C1, mac1),
        ("vc1", "172.17.0.5/16", C2, mac2),
    ] {
        cli_ok(
            sock,
            &[
                "endpoint",
                "add",
                "--bridge",
                BRIDGE,
                "--veth",
                veth,
                "--ip",
                v4,
                "--ip",
                &format!("{v6}/64"),
                "--mac",
                &mac_str(mac),
            ],
        );
    }
    let listed = cli_ok(sock, &["ls"]);
    assert!(listed.contains("172.17.0.4/16 fd00:17::4/64"), "{listed}");
    wait_for("the container to ping its neighbour", WAIT, || {
        pings(&t.container, C2, &[])
    });
    wait_for("the container to ping the host", WAIT, || {
        pings(&t.container, GATEWAY, &[])
    });
    resolved(mac2);
    let dropped = counter(sock, Reason::DropNeighSpoof);
    for _ in 0..5 {
        send_l2(&t.container, "eth0", &lie).expect("advertisement sent");
        thread::sleep(Duration::from_millis(100));
    }
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        host_neighbour(&t, C2),
        mac_str(mac2),
        "the host's entry survives the advertisements"
    );
    assert_eq!(counter(sock, Reason::DropNeighSpoof), dropped + 5);

    // An address of its subnet it was not given.
    t.container.ip(&[
        "-6",
        "addr",
        "add",
        "fd00:17::44/64",
        "dev",
        "eth0",
        "nodad",
    ]);
    let spoofed = counter(sock, Reason::DropSpoof);
    assert!(!pings(&t.container, C2, &["-I", "fd00:17::44"]));
    assert!(
        counter(sock, Reason::DropSpoof) > spoofed,
        "the echo counted"
    );
    assert!(
        pings(&t.container, C2, &["-I", C1]),
        "its own address still works"
    );
}

/// A veth nobody registered binds the first IPv6 address it sends from (in its
/// network's subnet) and may send from no other; IPv4 binds on its own.
#[test]
fn an_unregistered_container_binds_its_first_ipv6_address() {
    if !require_root() {
        return;
    }
    let t = Topology::new("v6bind");
    dual_stack(&t);
    let _d = t.start_daemon();
    let sock = &t.files.socket;
    let learned = counter(sock, Reason::EndpointLearned);
    wait_for("the containers to ping each other", WAIT, || {
        pings(&t.container, C2, &[])
    });
    assert!(
        counter(sock, Reason::EndpointLearned) >= learned + 2,
        "both containers bound"
    );
    t.container.ip(&[
        "-6",
        "addr",
        "add",
        "fd00:17::44/64",
        "dev",
        "eth0",
        "nodad",
    ]);
    let spoofed = counter(sock, Reason::DropSpoof);
    assert!(!pings(&t.container, C2, &["-I", "fd00:17::44"]));
    assert!(
        counter(sock, Reason::DropSpoof) > spoofed,
        "the echo counted"
    );
    let ping4 = t
        .container
        .output(&["ping", "-n", "-c1", "-W2", "172.17.0.5"]);
    assert!(ping4.contains(" 1 received"), "IPv4 still binds: {ping4}");
}

/// A container that sends IPv6 router advertisements would become its neighbours' and
/// the host's default router (CVE-2020-13401). Without bpfnet the bridge delivers one
/// and both take the route and an address from its prefix (the control: the frame is
/// one a node accepts); with bpfnet neither does, and the drop is counted.
#[test]
fn a_container_cannot_advertise_itself_as_an_ipv6_router() {
    if !require_root() {
        return;
    }
    let t = Topology::new("ra");
    let victims = [(&t.container2, "eth0"), (&t.host, "br0")];
    for (ns, dev) in victims {
        ns.exec(&[
            "sysctl",
            "-qw",
            &format!("net.ipv6.conf.{dev}.forwarding=0"),
        ]);
        ns.exec(&["sysctl", "-qw", &format!("net.ipv6.conf.{dev}.accept_ra=2")]);
    }
    let prefix = [
        0x20, 0x01, 0x0d, 0xb8, 0, 0x5a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let router = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xba, 0xd0];
    let frame = ipv6_icmp(
        (t.container.mac("eth0"), ipv6_multicast_mac(IPV6_ALL_NODES)),
        (router, IPV6_ALL_NODES),
        &[],
        &router_advert(prefix),
    );
    let routed_by_it = |ns: &Netns, dev: &str| {
        let routes = ns.output(&["ip", "-6", "route", "show", "default", "dev", dev]);
        let addrs = ns.output(&["ip", "-6", "addr", "show", "dev", dev]);
        routes.contains("fe80::bad0") || addrs.contains("2001:db8:5a:")
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        send_l2(&t.container, "eth0", &frame).expect("advertisement sent");
        if victims.iter().all(|(ns, dev)| routed_by_it(ns, dev)) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "control: without bpfnet the neighbour and the host did not take the advertisement"
        );
        thread::sleep(Duration::from_millis(200));
    }
    for (ns, dev) in victims {
        ns.ip(&["-6", "route", "flush", "default", "dev", dev]);
        ns.ip(&["-6", "addr", "flush", "dev", dev, "scope", "global"]);
        assert!(
            !routed_by_it(ns, dev),
            "{}: the control's route and address gone",
            ns.name
        );
    }

    let _d = t.start_daemon();
    let sock = &t.files.socket;
    let dropped = counter(sock, Reason::DropRouterAdvert);
    for _ in 0..5 {
        send_l2(&t.container, "eth0", &frame).expect("advertisement sent");
        thread::sleep(Duration::from_millis(200));
    }
    for (ns, dev) in victims {
        assert!(
            !routed_by_it(ns, dev),
            "{}: routes through the container after its advertisement",
            ns.name
        );
    }
    assert!(
        counter(sock, Reason::DropRouterAdvert) >= dropped + 5,
        "every advertisement dropped and counted"
    );
}

/// NAT66 end to end through a host whose ip6tables drops forwarding: a ULA container
/// reaches a server on the LAN masqueraded to the uplink's address; a port published on
/// every host IPv6 address (`[::]:PORT`) reaches the container over TCP and UDP with the
/// client's own address preserved; the container's own address is closed to the LAN.
#[test]
fn a_ula_network_is_masqueraded_and_published_through_a_hardened_host() {
    if !require_root() {
        return;
    }
    let t = Topology::new("nat66");
    dual_stack(&t);
    ipv6_uplink(&t);
    t.container
        .ip(&["-6", "route", "add", "default", "via", GATEWAY]);
    let _d = t.start_daemon();
    let sock = &t.files.socket;
    register(&t, [&format!("{C1}/64"), &format!("{C2}/64")]);
    cli_ok(sock, &["publish", &format!("[::]:8038:[{C1}]:8038")]);
    cli_ok(sock, &["publish", &format!("[::]:8038:[{C1}]:8038/udp")]);
    let _outside = WhoamiServer::start6(&t.client, 9000);
    let _inside = WhoamiServer::start6(&t.container, 8038);
    let mut out = String::new();
    wait_for("the container to reach the LAN server", WAIT, || {
        out = tcp_roundtrip(&t.container, v6("2001:db8:1::2", 9000), b"x")
            .map(|r| String::from_utf8_lossy(&r).into_owned())
            .unwrap_or_default();
        !out.is_empty()
    });
    assert!(
        out.starts_with("[2001:db8:1::1]:"),
        "masqueraded to the uplink's address, the server saw `{out}`"
    );
    let flows = cli_ok(sock, &["conntrack"]);
    assert!(
        flows.contains("[fd00:17::4]:") && flows.contains("-> [2001:db8:1::2]:9000"),
        "`bpfnet conntrack` lists the IPv6 flow: {flows}"
    );
    let host = v6("2001:db8:1::1", 8038);
    let tcp = seen(tcp_roundtrip(&t.client, host, b"x"));
    assert!(
        tcp.starts_with("[2001:db8:1::2]:"),
        "TCP: the client's own address, saw `{tcp}`"
    );
    let udp = seen(udp_roundtrip(&t.client, host, b"x"));
    assert!(
        udp.starts_with("[2001:db8:1::2]:"),
        "UDP: the client's own address, saw `{udp}`"
    );
    t.client
        .ip(&["-6", "route", "add", "fd00:17::/64", "via", "2001:db8:1::1"]);
    let inbound = counter(sock, Reason::DropInbound);
    assert_fails(
        "the ULA container straight",
        tcp_roundtrip(&t.client, v6(C1, 8038), b"x"),
        ErrorKind::TimedOut,
    );
    assert!(counter(sock, Reason::DropInbound) > inbound, "counted");
    t.assert_no_checksum_errors();
}

/// A routed global prefix carved out of the LAN's /64 (Docker's `fixed-cidr-v6`): the LAN
/// finds its containers by neighbour discovery, which bpfnet answers as the NDP proxy
/// (nothing set by hand), and reaches them at their own addresses on published ports
/// only; their own traffic leaves unmasqueraded.
#[test]
fn a_routed_global_network_is_reached_from_the_lan_at_published_ports_only() {
    if !require_root() {
        return;
    }
    let t = Topology::new("rt6");
    ipv6_uplink(&t);
    let (gw, c1) = ("2001:db8:1:0:1::1", "2001:db8:1:0:1::4");
    t.host.ip(&[
        "-6",
        "addr",
        "add",
        &format!("{gw}/80"),
        "dev",
        BRIDGE,
        "nodad",
    ]);
    t.container.ip(&[
        "-6",
        "addr",
        "add",
        &format!("{c1}/80"),
        "dev",
        "eth0",
        "nodad",
    ]);
    t.container
        .ip(&["-6", "route", "add", "default", "via", gw]);
    let _d = t.start_daemon();
    let sock = &t.files.socket;
    register(&t, [&format!("{c1}/80"), "2001:db8:1:0:1::5/80"]);
    cli_ok(sock, &["publish", &format!("8443:[{c1}]:8443")]);
    let _open = WhoamiServer::start6(&t.container, 8443);
    let _closed = WhoamiServer::start6(&t.container, 2222);
    let _outside = WhoamiServer::start6(&t.client, 9000);
    let mut reply = String::new();
    wait_for("the LAN to reach the published port", WAIT, || {
        reply = tcp_roundtrip(&t.client, v6(c1, 8443), b"x")
            .map(|r| String::from_utf8_lossy(&r).into_owned())
            .unwrap_or_default();
        !reply.is_empty()
    });
    assert!(
        reply.starts_with("[2001:db8:1::2]:"),
        "the client's own address, saw `{reply}`"
    );
    let inbound = counter(sock, Reason::DropInbound);
    assert_fails(
        "an unpublished port",
        tcp_roundtrip(&t.client, v6(c1, 2222), b"x"),
        ErrorKind::TimedOut,
    );
    assert!(counter(sock, Reason::DropInbound) > inbound, "counted");
    let out = seen(tcp_roundtrip(&t.container, v6("2001:db8:1::2", 9000), b"x"));
    assert!(
        out.starts_with(&format!("[{c1}]:")),
        "not masqueraded, the server saw `{out}`"
    );
    let proxies = t.host.output(&["ip", "-6", "neigh", "show", "proxy"]);
    assert!(proxies.contains(c1), "the NDP proxy entry: {proxies}");
}

/// The host's NDP proxy entries, as (address, device).
fn ndp_proxies(host: &Netns) -> BTreeSet<(String, String)> {
    host.output(&["ip", "-6", "neigh", "show", "proxy"])
        .lines()
        .filter_map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
            [addr, "dev", dev, ..] => Some((addr.to_string(), dev.to_string())),
            _ => None,
        })
        .collect()
}

/// bpfnet's NDP proxy entries follow the routed networks' endpoints: with two uplinks,
/// a container address in a routed (global) prefix gets one entry on each; an address
/// of a NAT66 (unique local) prefix of the same bridge gets none; the entries go when
/// their endpoint goes, and only its own.
#[test]
fn ndp_proxy_entries_are_one_per_uplink_none_for_a_ula_prefix_and_go_with_their_endpoint() {
    if !require_root() {
        return;
    }
    let t = Topology::new("ndpx");
    ipv6_uplink(&t);
    // A second uplink, to a wire of its own.
    let lan2 = Netns::new(&format!("{}-lan2", t.host.name));
    t.host.ip(&[
        "link", "add", "up1", "type", "veth", "peer", "name", "eth0", "netns", &lan2.name,
    ]);
    t.host.ip(&["link", "set", "up1", "up"]);
    lan2.ip(&["link", "set", "eth0", "up"]);
    let (c1, c2, ula) = ("2001:db8:1:0:1::4", "2001:db8:1:0:1::5", "fd00:17::6");
    for (ns, dev, cidr) in [
        (&t.host, BRIDGE, "2001:db8:1:0:1::1/80"),
        (&t.host, BRIDGE, "fd00:17::1/64"),
        (&t.container, "eth0", "2001:db8:1:0:1::4/80"),
        (&t.container2, "eth0", "2001:db8:1:0:1::5/80"),
        (&t.container2, "eth0", "fd00:17::6/64"),
    ] {
        ns.ip(&["-6", "addr", "add", cidr, "dev", dev, "nodad"]);
    }
    let _d = t.start_daemon_with(&["--uplink", "up1"]);
    let sock = &t.files.socket;
    let mac = mac_str(t.container2.mac("eth0"));
    register(&t, [&format!("{c1}/80"), &format!("{c2}/80")]);
    cli_ok(sock, &["endpoint", "del", "--ip", c2]);
    cli_ok(
        sock,
        &[
            "endpoint",
            "add",
            "--bridge",
            BRIDGE,
            "--veth",
            "vc1",
            "--ip",
            "172.17.0.5/16",
            "--ip",
            &format!("{c2}/80"),
            "--ip",
            &format!("{ula}/64"),
            "--mac",
            &mac,
        ],
    );
    let entry = |addr: &str, dev: &str| (addr.to_string(), dev.to_string());
    let every = BTreeSet::from([
        entry(c1, "up0"),
        entry(c1, "up1"),
        entry(c2, "up0"),
        entry(c2, "up1"),
    ]);
    await_proxies(
        &t.host,
        &every,
        "one entry per uplink for each routed address, none for the ULA one",
    );
    cli_ok(sock, &["endpoint", "del", "--ip", c1]);
    let rest = BTreeSet::from([entry(c2, "up0"), entry(c2, "up1")]);
    await_proxies(
        &t.host,
        &rest,
        "container 1's entries gone with it, no other",
    );
    cli_ok(sock, &["endpoint", "del", "--ip", c2]);
    await_proxies(
        &t.host,
        &BTreeSet::new(),
        "every entry gone with its endpoint",
    );
}

/// `--cleanup` mirrors setup: it removes the NDP proxy entries and the bridge bpfnet
/// made (a missing `--bridge` it created) and nothing of the same kinds it did not
/// make: a proxy entry, a bridge and a route set by hand stay.
#[test]
fn cleanup_removes_the_ndp_proxies_and_the_bridge_bpfnet_made_and_nothing_else() {
    if !require_root() {
        return;
    }
    let t = Topology::new("tdn");
    ipv6_uplink(&t);
    let c1 = "2001:db8:1:0:1::4";
    for (ns, dev, cidr) in [
        (&t.host, BRIDGE, "2001:db8:1:0:1::1/80"),
        (&t.container, "eth0", "2001:db8:1:0:1::4/80"),
    ] {
        ns.ip(&["-6", "addr", "add", cidr, "dev", dev, "nodad"]);
    }
    // The user's own: a proxy entry outside the routed prefix, a bridge, a route.
    let (mine, made) = ("2001:db8:1::99", "bpfnet-mk0");
    t.host
        .ip(&["-6", "neigh", "add", "proxy", mine, "dev", "up0"]);
    t.host.ip(&["link", "add", "userbr0", "type", "bridge"]);
    t.host
        .ip(&["route", "add", "198.51.100.0/24", "dev", "up0"]);
    let daemon = t.start_daemon_with(&["--bridge", made]);
    register(&t, [&format!("{c1}/80"), "2001:db8:1:0:1::5/80"]);
    let entry = |addr: &str| (addr.to_string(), "up0".to_string());
    await_proxies(
        &t.host,
        &BTreeSet::from([entry(mine), entry(c1), entry("2001:db8:1:0:1::5")]),
        "bpfnet's entries beside the user's",
    );
    let link = t.host.output(&["ip", "link", "show", made]);
    assert!(link.contains("alias bpfnet"), "created and marked: {link}");
    drop(daemon);

    let out = bpfnet_tests::daemon::cleanup(&t.host.path(), &t.files.socket, &t.files.pin_dir);
    assert!(out.status.success(), "bpfnet daemon --cleanup: {out:?}");
    assert_eq!(
        ndp_proxies(&t.host),
        BTreeSet::from([entry(mine)]),
        "bpfnet's proxy entries gone, the user's kept"
    );
    let links = t.host.output(&["ip", "-br", "link", "show"]);
    assert!(!links.contains(made), "bpfnet's bridge gone: {links}");
    for kept in ["userbr0", BRIDGE] {
        assert!(
            links.contains(kept),
            "the user's bridge {kept} kept: {links}"
        );
    }
    let route = t.host.output(&["ip", "route", "show", "198.51.100.0/24"]);
    assert!(!route.trim().is_empty(), "the user's route kept");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!("removed the NDP proxy entry {c1} on up0"))
            && said.contains(&format!("removed the device {made}")),
        "what it removed is reported: {said}"
    );
}

/// Poll the host's NDP proxy entries until they are `want` (`what` names it).
fn await_proxies(host: &Netns, want: &BTreeSet<(String, String)>, what: &str) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let have = ndp_proxies(host);
        if have == *want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: the NDP proxy entries are {have:?}, expected {want:?}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// Host sockets reach IPv6 publishes without a proxy: `[::1]:PORT` and a host IPv6
/// address lead to the container, and a dual-stack socket dialing
/// `::ffff:127.0.0.1:PORT` reaches the IPv4 publish of that port; each sees the address
/// it dialed as its peer.
#[test]
fn host_sockets_reach_ipv6_and_v4_mapped_publishes() {
    if !require_root() {
        return;
    }
    let t = Topology::new("sock6");
    dual_stack(&t);
    ipv6_uplink(&t);
    let _d = t.start_daemon();
    let sock = &t.files.socket;
    register(&t, [&format!("{C1}/64"), &format!("{C2}/64")]);
    cli_ok(sock, &["publish", &format!("[::]:8038:[{C1}]:8038")]);
    cli_ok(sock, &["publish", "8039:172.17.0.4:8038"]);
    let _inside = WhoamiServer::start6(&t.container, 8038);
    for dialed in [
        "[::1]:8038",
        "[2001:db8:1::1]:8038",
        "[::ffff:127.0.0.1]:8039",
    ] {
        let to: SocketAddr = dialed.parse().expect("address");
        let (reply, peer) = t.host.run(move || {
            let mut s = std::net::TcpStream::connect_timeout(&to, Duration::from_secs(3))
                .unwrap_or_else(|e| panic!("connect {to}: {e}"));
            let peer = s.peer_addr().expect("peer");
            use std::io::{Read as _, Write as _};
            s.write_all(b"x").expect("send");
            s.shutdown(std::net::Shutdown::Write).expect("shutdown");
            let mut out = String::new();
            s.read_to_string(&mut out).expect("reply");
            (out, peer)
        });
        assert_eq!(peer, to, "{dialed}: the peer is the address dialed");
        assert!(!reply.is_empty(), "{dialed}: the container answered");
    }
}

/// Path MTU discovery across NAT66: the router to the server has a 1280-byte link, so
/// it answers the container's full-size segments with packet-too-big, addressed to the
/// masquerading host; bpfnet translates it through its quote to the container, which
/// lowers its path MTU, and the transfer completes.
#[test]
fn path_mtu_discovery_works_across_nat66() {
    if !require_root() {
        return;
    }
    let t = Topology::new("pmtu6");
    dual_stack(&t);
    ipv6_uplink(&t);
    t.container
        .ip(&["-6", "route", "add", "default", "via", GATEWAY]);
    // The server's network behind the client, over a link of IPv6's minimum MTU.
    t.client.ip(&[
        "-6",
        "addr",
        "add",
        "2001:db8:2::1/64",
        "dev",
        "eth1",
        "nodad",
    ]);
    t.client.ip(&["link", "set", "eth1", "mtu", "1280"]);
    t.client
        .exec(&["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
    t.server.ip(&[
        "-6",
        "addr",
        "add",
        "2001:db8:2::9/64",
        "dev",
        "eth0",
        "nodad",
    ]);
    t.server
        .ip(&["-6", "route", "add", "default", "via", "2001:db8:2::1"]);
    t.host.ip(&[
        "-6",
        "route",
        "add",
        "2001:db8:2::/64",
        "via",
        "2001:db8:1::2",
    ]);
    let _d = t.start_daemon();
    register(&t, [&format!("{C1}/64"), &format!("{C2}/64")]);
    const SIZE: usize = 200_000;
    let sink = t.server.spawn(|| {
        use std::io::{Read as _, Write as _};
        let l = std::net::TcpListener::bind("[::]:9100").expect("bind the sink");
        l.set_nonblocking(false).expect("blocking");
        let (mut c, _) = l.accept().expect("accept");
        c.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut got = Vec::new();
        let _unused: Result<_, _> = c.read_to_end(&mut got);
        let _unused: Result<_, _> = c.write_all(got.len().to_string().as_bytes());
        got.len()
    });
    thread::sleep(Duration::from_millis(300));
    let errors = counter(&t.files.socket, Reason::IcmpError);
    // On a thread of its own, bounded: a black hole (no translated packet-too-big)
    // stalls the transfer for good.
    let transfer = t.container.spawn(|| {
        use std::io::{Read as _, Write as _};
        let to = v6("2001:db8:2::9", 9100);
        let mut s = std::net::TcpStream::connect_timeout(&to, Duration::from_secs(5))
            .expect("connect to the sink");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        s.write_all(&vec![0x5a; SIZE]).expect("send");
        s.shutdown(std::net::Shutdown::Write).expect("shutdown");
        let mut ack = String::new();
        s.read_to_string(&mut ack).expect("the sink's count");
        ack
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !transfer.is_finished() {
        assert!(
            std::time::Instant::now() < deadline,
            "the transfer stalled: no packet-too-big reached the container"
        );
        thread::sleep(Duration::from_millis(100));
    }
    let sent = transfer.join().expect("the transfer");
    assert_eq!(sink.join().expect("sink"), SIZE, "every byte arrived");
    assert_eq!(sent, SIZE.to_string());
    assert!(
        counter(&t.files.socket, Reason::IcmpError) > errors,
        "the packet-too-big was translated to the container"
    );
}

/// Replies to the host's own IPv6 traffic are the host's, even when a publish covers the
/// port they come back to: a connection, a connected datagram socket, and an unconnected
/// one (sendto/recvfrom), whose answers only the sendmsg6 socket program's record tells
/// apart from a client of the publish; and an unconnected dual-stack socket sending to a
/// v4-mapped address, whose answers come back over IPv4 (recorded by sendmsg4, which
/// the kernel runs for it).
#[test]
fn host_ipv6_traffic_from_ports_inside_a_published_range_works() {
    if !require_root() {
        return;
    }
    let t = Topology::new("hostrng6");
    t.add_ipv6();
    let _d = t.start_daemon();
    let sock = &t.files.socket;
    t.host
        .exec(&["sysctl", "-qw", "net.ipv4.ip_local_port_range=40000 40099"]);
    for spec in [
        format!("[::]:40000-40099:[{C1}]:40000-40099"),
        format!("[::]:40000-40099:[{C1}]:40000-40099/udp"),
        "40000-40099:172.17.0.4:40000-40099/udp".to_string(),
    ] {
        cli_ok(sock, &["publish", &spec]);
    }
    let _w = WhoamiServer::start6(&t.server, 9000);
    let server = SocketAddr::new(SERVER_IP6.into(), 9000);
    let mapped: SocketAddr = "[::ffff:198.51.100.2]:9000".parse().expect("address");
    let in_range = |what: &str, i: usize, reply: std::io::Result<Vec<u8>>| {
        let reply = reply.unwrap_or_else(|e| panic!("{what} {i}: {e}"));
        let seen = WhoamiServer::seen(&reply);
        let host: IpAddr = if what.contains("v4-mapped") {
            HOST_IP.into()
        } else {
            HOST_IP6.into()
        };
        assert_eq!(
            seen.ip().to_canonical(),
            host,
            "{what}: the host's own address"
        );
        assert!(
            (40000..40100).contains(&seen.port()),
            "{what}: from a port inside the published range: {seen}"
        );
    };
    let host_socket = counter(sock, Reason::HostSocket);
    for i in 0..10 {
        in_range("connection", i, tcp_roundtrip(&t.host, server, b"x"));
        let connected = t.host.run(move || {
            let s = std::net::UdpSocket::bind("[::]:0")?;
            s.connect(server)?;
            s.set_read_timeout(Some(Duration::from_secs(3)))?;
            s.send(b"q")?;
            let mut buf = [0u8; 64];
            s.recv(&mut buf).map(|n| buf[..n].to_vec())
        });
        in_range("connected datagram", i, connected);
        in_range(
            "unconnected datagram",
            i,
            udp_roundtrip(&t.host, server, b"u"),
        );
        let v4 = udp_roundtrip(&t.host, mapped, b"m");
        in_range("unconnected datagram to a v4-mapped address", i, v4);
    }
    assert!(
        counter(sock, Reason::HostSocket) >= host_socket + 30,
        "the host's replies were recognised as its own: {} then {}",
        host_socket,
        counter(sock, Reason::HostSocket)
    );
}

/// An IPv6 flow whose reply entry LRU eviction took keeps its tuple, as an IPv4 one
/// does: the sweeper rebuilds the reply entry from the forward one, and the masqueraded
/// connection goes on.
#[test]
fn an_ipv6_flow_that_lost_its_reply_entry_is_repaired() {
    if !require_root() {
        return;
    }
    let t = Topology::new("repair6");
    t.add_ipv6();
    let _d = t.start_daemon_with(&["--ct-sweep-interval", "1"]);
    let _e = EchoServer::start6(&t.server, 9000);
    let server = SocketAddr::new(SERVER_IP6.into(), 9000);
    let mut live = tcp_connect(&t.container, server).expect("connect through NAT66");
    use std::io::{Read as _, Write as _};
    let mut greeting = [0u8; 5];
    live.read_exact(&mut greeting)
        .expect("the echo server's greeting");
    assert_eq!(&greeting, b"9000:");
    let echo = |s: &mut std::net::TcpStream, msg: &[u8]| {
        s.write_all(msg).expect("send on the connection");
        let mut back = vec![0u8; msg.len()];
        s.read_exact(&mut back).expect("echo on the connection");
        assert_eq!(back, msg);
    };
    echo(&mut live, b"before");
    evict_reply_and_await_repair::<Ip6>(&t.files.pin_dir, names::CT6, 9000);
    echo(&mut live, b"after the repair");
}

/// A random-source IPv6 SYN flood against a published port fills only the table of new
/// flows, as an IPv4 one does, though the container answers every SYN: an established
/// connection keeps working.
#[test]
fn an_ipv6_syn_flood_leaves_established_connections_working() {
    if !require_root() {
        return;
    }
    let t = Topology::new("flood6");
    t.add_ipv6();
    // The flood's sources lie outside; replies to them die at the client.
    t.client
        .ip(&["-6", "route", "add", "blackhole", "2001:db8:ffff::/48"]);
    let _d = t.start_daemon_with(&["--ct6-entries", "256"]);
    let sock = &t.files.socket;
    let _e = EchoServer::start6(&t.container, 8038);
    cli_ok(sock, &["publish", &format!("[::]:8038:[{C1}]:8038")]);
    let host = SocketAddr::new(HOST_IP6.into(), 8038);
    let mut live = tcp_connect(&t.client, host).expect("connect");
    use std::io::{Read as _, Write as _};
    let mut greeting = [0u8; 5];
    live.read_exact(&mut greeting)
        .expect("the echo server's greeting");
    let created = counter(sock, Reason::DnatNew);
    // 20,000 SYNs from random sources of 2001:db8:ffff::/48 and random ports.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let frames: Vec<Vec<u8>> = (0..20_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut src = [0u8; 16];
            src[..6].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0xff, 0xff]);
            src[8..].copy_from_slice(&x.to_be_bytes());
            let port = 1024 + (x >> 48) as u16 % 60000;
            tcp6((src, port), (HOST_IP6.octets(), 8038), TCP_SYN, x as u32)
        })
        .collect();
    let sent = send_frames6(&t.client, frames).expect("raw IPv6 socket");
    assert!(sent >= 19_000, "the flood went out ({sent} of 20000)");
    let flooded = counter(sock, Reason::DnatNew) - created;
    assert!(
        flooded >= 5_000,
        "the flood reached the datapath ({flooded} flows created)"
    );
    let entries = |table| ct_table_len::<Ip6>(&t.files.pin_dir, table);
    let (answered, unanswered) = (entries(names::CT6), entries(names::CT6_NEW));
    assert!(
        answered <= 4 && unanswered >= 32,
        "the flood fills the new-flow table only: {answered} answered entries (the live \
         connection's two), {unanswered} new"
    );
    let msg = b"after the flood";
    live.write_all(msg).expect("send on the connection");
    let mut back = vec![0u8; msg.len()];
    live.read_exact(&mut back)
        .expect("echo on the connection after the flood");
    assert_eq!(back, msg);
}

/// An IPv6-only endpoint (`endpoint add` with IPv6 addresses alone, as Docker's
/// `--ipv4=false` networks give): its published port and its egress work over IPv6, and
/// it may send no IPv4 at all, not even from the address its namespace still has.
#[test]
fn an_ipv6_only_endpoint_works_over_ipv6_and_sends_no_ipv4() {
    if !require_root() {
        return;
    }
    let t = Topology::new("v6only");
    t.add_ipv6();
    let _d = t.start_daemon();
    let sock = &t.files.socket;
    let mac = mac_str(t.container.mac("eth0"));
    let v6 = format!("{C1}/64");
    cli_ok(
        sock,
        &[
            "endpoint", "add", "--bridge", BRIDGE, "--veth", "vc0", "--ip", &v6, "--mac", &mac,
        ],
    );
    let listed = cli_ok(sock, &["ls"]);
    assert!(
        listed.contains(&v6) && !listed.contains("172.17.0.4/16"),
        "registered by its IPv6 address alone: {listed}"
    );
    cli_ok(sock, &["publish", &format!("[::]:8038:[{C1}]:8038")]);
    let _inside = WhoamiServer::start6(&t.container, 8038);
    let _outside = WhoamiServer::start6(&t.server, 9000);
    let _outside4 = WhoamiServer::start(&t.server, 9004);
    let host = SocketAddr::new(HOST_IP6.into(), 8038);
    let inbound = seen(tcp_roundtrip(&t.client, host, b"x"));
    assert!(
        inbound.starts_with("[2001:db8:1::2]:"),
        "published over IPv6, the client's address kept: {inbound}"
    );
    let out = seen(tcp_roundtrip(
        &t.container,
        SocketAddr::new(SERVER_IP6.into(), 9000),
        b"x",
    ));
    assert!(out.starts_with("[2001:db8:1::1]:"), "masqueraded: {out}");
    let spoofs = counter(sock, Reason::DropSpoof);
    let v4 = tcp_roundtrip(
        &t.container,
        "198.51.100.2:9004".parse().expect("address"),
        b"x",
    );
    assert!(v4.is_err(), "no IPv4 leaves an IPv6-only endpoint");
    assert!(
        counter(sock, Reason::DropSpoof) > spoofs,
        "its IPv4 (its ARP first) is dropped as spoofed"
    );
}

/// Hairpin over IPv6, on a host whose ip6tables drops what it forwards (bridged frames
/// included) and keeps conntrack out: a container reaches a published port at the
/// host's IPv6 address and at its gateway's, whether the backend is another container
/// or itself.
#[test]
fn ipv6_hairpin_reaches_own_and_other_published_ports() {
    if !require_root() {
        return;
    }
    let t = Topology::new("hairpin6");
    t.add_ipv6();
    t.host
        .exec(&["sysctl", "-qw", "net.bridge.bridge-nf-call-ip6tables=1"]);
    harden_firewall6(&t.host);
    let _d = t.start_daemon();
    let _e = EchoServer::start6(&t.container, 8038);
    cli_ok(
        &t.files.socket,
        &["publish", &format!("[::]:8038:[{C1}]:8038")],
    );
    for (who, ns) in [
        ("another container", &t.container2),
        ("the backend itself", &t.container),
    ] {
        for to in [HOST_IP6.to_string(), GATEWAY.to_string()] {
            let to = v6(&to, 8038);
            let got =
                tcp_roundtrip(ns, to, b"hairpin").unwrap_or_else(|e| panic!("{who} → {to}: {e}"));
            assert_eq!(got, b"8038:hairpin", "{who} → {to}");
        }
    }
}

/// Two IPv6 networks on one permissive host (the host forwards everything): without
/// bpfnet a container reaches the other network's container (the control); with it,
/// neither reaches the other, in either direction, and each drop is counted; a
/// container on both networks reaches both.
#[test]
fn ipv6_networks_are_isolated_end_to_end() {
    if !require_root() {
        return;
    }
    let t = Topology::new("iso6");
    t.add_ipv6();
    let c3 = t.add_second_network();
    for (ns, dev, cidr) in [
        (&t.host, "br1", "fd00:18::1/64"),
        (&c3, "eth0", "fd00:18::3/64"),
        (&t.container2, "eth1", "fd00:18::5/64"),
    ] {
        ns.ip(&["-6", "addr", "add", cidr, "dev", dev, "nodad"]);
    }
    c3.ip(&["-6", "route", "add", "default", "via", "fd00:18::1"]);
    t.host
        .exec(&["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
    let _w1 = WhoamiServer::start6(&t.container, 8038);
    let _w3 = WhoamiServer::start6(&c3, 8038);
    let (to_c1, to_c3) = (v6(C1, 8038), v6("fd00:18::3", 8038));
    tcp_roundtrip(&t.container, to_c3, b"x").expect("the control: routed without bpfnet");
    let _d = t.start_daemon_with(&["--bridge", "br1"]);
    let sock = &t.files.socket;
    let isolated = counter(sock, Reason::DropIsolation);
    let timed_out = ErrorKind::TimedOut;
    assert_fails(
        "C1 → C3",
        tcp_roundtrip(&t.container, to_c3, b"x"),
        timed_out,
    );
    assert_fails("C3 → C1", tcp_roundtrip(&c3, to_c1, b"x"), timed_out);
    assert!(
        counter(sock, Reason::DropIsolation) >= isolated + 2,
        "both directions' drops are counted"
    );
    for to in [to_c1, to_c3] {
        tcp_roundtrip(&t.container2, to, b"x")
            .unwrap_or_else(|e| panic!("the container on both networks → {to}: {e}"));
    }
}
