//! A new veth nobody registered cannot claim the gateway's address end to end: its
//! gratuitous ARP and its first packet from that address are dropped (`drop-spoof`) and
//! bind nothing (nor do its claims of the subnet's network and broadcast addresses or
//! another host address), so the registered neighbour's ARP cache keeps the bridge's MAC for its
//! gateway and the host still reaches that neighbour; the same veth claiming a free
//! address is learned and works. A learned binding of the gateway's address that an
//! older datapath left is dropped by the daemon, and `endpoint add` refuses such an
//! address.
use std::{
    net::Ipv4Addr,
    thread,
    time::{Duration, Instant},
};

use aya::maps::{HashMap, Map, MapData};
use bpfnet_tests::{
    daemon::{cli, cli_ok, counter, pinned_endpoints, pinned_ports},
    lan::{mac_string, neighbour_mac, pings},
    netns::Netns,
    packet::{arp, udp},
    raw::send_l2,
    require_root,
    topo::{BRIDGE, BRIDGE_IP, CONTAINER_IP, HOST_IP, Topology},
};
use common::{Be32, EP_LEARNED, Endpoint, Reason};

/// The new veth on the host's side.
const NEW_VETH: &str = "vc9";
const FREE: Ipv4Addr = Ipv4Addr::new(172, 17, 0, 66);

/// Plug a fresh namespace into br0 on `NEW_VETH`, its eth0 up without an address, and
/// wait until the daemon has made the veth a bridge port (with no endpoint).
fn plug_new_veth(t: &Topology) -> Netns {
    let ns = Netns::new(&format!("{}-new", t.host.name));
    t.host.ip(&[
        "link", "add", NEW_VETH, "type", "veth", "peer", "name", "eth0", "netns", &ns.name,
    ]);
    t.host
        .ip(&["link", "set", NEW_VETH, "master", BRIDGE, "up"]);
    ns.ip(&["link", "set", "eth0", "address", "02:00:00:00:0a:09"]);
    ns.ip(&["link", "set", "eth0", "up"]);
    let veth = t.host.ifindex(NEW_VETH);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pinned_ports(&t.files.pin_dir).contains(&veth) {
        assert!(
            Instant::now() < deadline,
            "the daemon makes {NEW_VETH} a bridge port"
        );
        thread::sleep(Duration::from_millis(50));
    }
    ns
}

/// Which endpoints the datapath has bound to `ifindex`, with their flags.
fn bound_to(t: &Topology, ifindex: u32) -> Vec<(Ipv4Addr, u8)> {
    pinned_endpoints(&t.files.pin_dir)
        .into_iter()
        .filter(|(_, ep)| ep.ifindex == ifindex)
        .map(|(ip, ep)| (ip, ep.flags))
        .collect()
}

#[test]
fn a_new_veth_cannot_claim_the_gateways_address() {
    if !require_root() {
        return;
    }
    let t = Topology::new("claim");
    // A bridge's MAC follows its ports' unless set: the new port must not change it.
    t.host
        .ip(&["link", "set", BRIDGE, "address", "02:00:00:00:0b:01"]);
    let _d = t.start_daemon();
    let sock = &t.files.socket;
    let k1 = &t.container;
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
            &mac_string(k1, "eth0"),
        ],
    );
    let bridge_mac = Some(mac_string(&t.host, BRIDGE));
    assert!(pings(k1, BRIDGE_IP), "the container reaches its gateway");
    assert_eq!(
        neighbour_mac(k1, BRIDGE_IP, "eth0"),
        bridge_mac,
        "the container's ARP cache maps its gateway to the bridge"
    );
    let attacker = plug_new_veth(&t);
    let veth = t.host.ifindex(NEW_VETH);
    let mac = attacker.mac("eth0");
    // Past the neighbour entry's lock time (1 s), when an ARP may replace it.
    thread::sleep(Duration::from_millis(1100));

    // The attack: a gratuitous ARP for the gateway's address, then a datagram from it
    // to the neighbour (switched, as a first packet that would bind it).
    let gw = BRIDGE_IP.octets();
    let spoofs = counter(sock, Reason::DropSpoof);
    let garp = send_l2(&attacker, "eth0", &arp(mac, gw, gw));
    let mut datagram = udp((gw, 5353), (CONTAINER_IP.octets(), 9), b"x", true);
    datagram[0..6].copy_from_slice(&k1.mac("eth0"));
    datagram[6..12].copy_from_slice(&mac);
    let first = send_l2(&attacker, "eth0", &datagram);
    let garp_again = send_l2(&attacker, "eth0", &arp(mac, gw, gw));
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        neighbour_mac(k1, BRIDGE_IP, "eth0"),
        bridge_mac,
        "the neighbour keeps the bridge's MAC for its gateway ({garp:?}, {first:?}, {garp_again:?})"
    );
    assert!(
        counter(sock, Reason::DropSpoof) >= spoofs + 3,
        "each claim is counted as drop-spoof"
    );
    assert_eq!(bound_to(&t, veth), vec![], "no claim bound the new veth");
    // Nor may it claim the subnet's network or broadcast address (the daemon marks
    // them), or another of the host's addresses.
    for ip in [
        Ipv4Addr::new(172, 17, 0, 0),
        Ipv4Addr::new(172, 17, 255, 255),
        HOST_IP,
    ] {
        let spoofs = counter(sock, Reason::DropSpoof);
        let claim = send_l2(&attacker, "eth0", &arp(mac, ip.octets(), ip.octets()));
        assert!(
            counter(sock, Reason::DropSpoof) > spoofs,
            "a gratuitous ARP for {ip} is counted as drop-spoof ({claim:?})"
        );
        assert_eq!(bound_to(&t, veth), vec![], "{ip} is not bound");
    }
    assert!(
        pings(&t.host, CONTAINER_IP),
        "the host still reaches the neighbour"
    );
    assert!(
        pings(k1, BRIDGE_IP),
        "the neighbour still reaches its gateway"
    );

    // Control: the same veth claiming a free address is learned and works.
    let learned = counter(sock, Reason::EndpointLearned);
    let free = FREE.octets();
    send_l2(&attacker, "eth0", &arp(mac, free, free)).expect("a gratuitous ARP for a free address");
    let deadline = Instant::now() + Duration::from_secs(2);
    while bound_to(&t, veth).is_empty() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        bound_to(&t, veth),
        vec![(FREE, EP_LEARNED)],
        "the free address is learned for the new veth"
    );
    assert!(
        counter(sock, Reason::EndpointLearned) > learned,
        "endpoint-learned counted"
    );
    attacker.ip(&["addr", "add", "172.17.0.66/16", "dev", "eth0"]);
    assert!(
        pings(&attacker, CONTAINER_IP),
        "the new veth's container reaches the neighbour from its free address"
    );
    assert!(
        pings(&t.host, FREE),
        "the host reaches the new veth's container"
    );
    assert_eq!(
        neighbour_mac(k1, BRIDGE_IP, "eth0"),
        bridge_mac,
        "the neighbour's gateway is still the bridge"
    );

    // Nor is such an address registered for it.
    for ip in ["172.17.0.1/16", "172.17.255.255/16"] {
        let out = cli(
            sock,
            &[
                "endpoint",
                "add",
                "--bridge",
                BRIDGE,
                "--veth",
                NEW_VETH,
                "--ip",
                ip,
                "--mac",
                &mac_string(&attacker, "eth0"),
            ],
        );
        assert_eq!(
            out.status.code(),
            Some(2),
            "`endpoint add --ip {ip}` is refused: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // A binding of the gateway's address learned before this check (an older datapath
    // left it) goes at the daemon's next pass over the endpoints; the free one stays.
    let stale = Endpoint::new(veth, t.host.ifindex(BRIDGE), mac, EP_LEARNED);
    insert_endpoint(&t, BRIDGE_IP, stale);
    assert_eq!(bound_to(&t, veth).len(), 2, "the stale binding is in place");
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
            "--mac",
            &mac_string(&t.container2, "eth0"),
        ],
    );
    assert_eq!(
        bound_to(&t, veth),
        vec![(FREE, EP_LEARNED)],
        "the daemon drops the learned binding of the gateway's address, keeps the free one"
    );
}

/// Write `ep` for `ip` into the daemon's pinned `endpoints_v1`, as a datapath would.
fn insert_endpoint(t: &Topology, ip: Ipv4Addr, ep: Endpoint) {
    let pin = t.files.pin_dir.join("endpoints_v1");
    let map = MapData::from_pin(&pin).unwrap_or_else(|e| panic!("{}: {e}", pin.display()));
    let mut map: HashMap<MapData, Be32, Endpoint> =
        HashMap::try_from(Map::HashMap(map)).expect("endpoints_v1 is a hash map");
    map.insert(Be32::from(ip), ep, 0)
        .expect("insert an endpoint");
}
