//! The daemon's defaults and its link monitor: docker0 created, every Ethernet interface
//! an uplink, veths attached when they join the bridge and forgotten when they go.
use std::{
    net::SocketAddr,
    path::Path,
    thread,
    time::{Duration, Instant},
};

use bpfnet::api::Program;
use bpfnet_tests::{
    daemon::{Daemon, cli_ok, ls, pinned_endpoints, pinned_keys, remove_pinned},
    echo::{EchoServer, WhoamiServer, tcp_roundtrip},
    netns::Netns,
    require_root,
    scratch::Scratch,
    topo::{BRIDGE, Topology, UPLINK, VETH, plug, wire_uplink},
    unique, wait_for,
};
use common::{Backend, Be32, EP_LEARNED, Endpoint, PublishedKey};

fn attached(socket: &Path) -> Vec<(String, Program)> {
    ls(socket).attached
}

/// Poll `ls` until `attached` is `want` (the monitor reacts asynchronously).
fn wait_attached(socket: &Path, want: &[(&str, Program)]) {
    let want = bpfnet_tests::daemon::with_xdp(want);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = attached(socket);
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "attached is {got:?}, expected {want:?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// With no flags: docker0 created with 172.17.0.1/16, the host's one Ethernet interface
/// an uplink, IPv4 forwarding on; then veths attached as they join the bridge and
/// detached as they go.
#[test]
fn defaults_and_veths_that_come_and_go() {
    if !require_root() {
        return;
    }
    let id = unique("dfl");
    let (host, client, ctr) = (
        Netns::new(&format!("{id}-host")),
        Netns::new(&format!("{id}-cli")),
        Netns::new(&format!("{id}-ctr")),
    );
    let files = Scratch::new("dfl");
    wire_uplink(&host, &client);

    let mut args = files.daemon_args();
    args.push("--no-docker".into());
    let _d = Daemon::start(&host.path(), &files.socket, &args);
    let ls = ls(&files.socket);
    assert_eq!(ls.bridges, ["docker0"], "default bridge");
    assert_eq!(
        ls.uplinks,
        ["up0"],
        "every Ethernet interface but the bridge is an uplink"
    );
    let out = std::process::Command::new("ip")
        .args(["-n", &host.name, "-o", "addr", "show", "dev", "docker0"])
        .output()
        .expect("ip addr show");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("172.17.0.1/16"),
        "docker0 should be created with 172.17.0.1/16"
    );
    let forwarding = host
        .run(|| std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").expect("read ip_forward"));
    assert_eq!(forwarding.trim(), "1", "IPv4 forwarding switched on");

    // A container joins after the daemon started.
    plug(
        &host,
        ("docker0", "vd0"),
        &ctr,
        ("eth0", "172.17.0.9/16"),
        Some("172.17.0.1"),
    );
    wait_attached(
        &files.socket,
        &[
            ("up0", Program::FromUplink),
            ("vd0", Program::FromContainer),
        ],
    );
    let pin = files
        .pin_dir
        .join(format!("links/from_container@{}", host.ifindex("vd0")));
    assert!(pin.exists(), "{} should be pinned", pin.display());

    // Bridge port events (AF_BRIDGE link messages, which carry no link kind) must not
    // detach it: change the port, then add a second veth and wait for that to show,
    // by which time the port event has been handled too.
    host.exec(&["bridge", "link", "set", "dev", "vd0", "cost", "7"]);
    host.ip(&[
        "link", "add", "vd1", "type", "veth", "peer", "name", "vd1p", "netns", &ctr.name,
    ]);
    host.ip(&["link", "set", "vd1", "master", "docker0", "up"]);
    wait_attached(
        &files.socket,
        &[
            ("up0", Program::FromUplink),
            ("vd0", Program::FromContainer),
            ("vd1", Program::FromContainer),
        ],
    );
    host.ip(&["link", "del", "vd1"]);

    let _e = EchoServer::start(&ctr, 8080);
    cli_ok(&files.socket, &["publish", "8080:172.17.0.9:8080"]);
    assert_eq!(
        tcp_roundtrip(&client, Topology::host_addr(8080), b"late")
            .expect("late container reachable"),
        b"8080:late"
    );
    // Its egress is routed and masqueraded: the datapath knows the bridge's MAC, which
    // changed to follow the bridge's first port.
    let _w = WhoamiServer::start(&client, 9000);
    let seen = tcp_roundtrip(&ctr, SocketAddr::from(([192, 0, 2, 2], 9000)), b"who")
        .expect("the late container's egress");
    let seen = WhoamiServer::seen(&seen);
    assert_eq!(
        seen.ip(),
        Topology::host_addr(0).ip(),
        "masqueraded: the client saw {seen}"
    );

    // It leaves again: its link and pin go.
    host.ip(&["link", "del", "vd0"]);
    wait_attached(&files.socket, &[("up0", Program::FromUplink)]);
    assert!(!pin.exists(), "{} should be removed", pin.display());
}

/// Once the host forwards IPv6, an uplink keeps its router advertisements
/// (`accept_ra=2`, as before) but a managed bridge and its container veths take none
/// (`accept_ra=0`): an advertisement from a container never gives the host a route.
#[test]
fn a_managed_bridge_takes_no_router_advertisement_an_uplink_keeps_them() {
    if !require_root() {
        return;
    }
    let t = Topology::new("acra");
    t.host
        .exec(&["sysctl", "-qw", "net.ipv6.conf.all.forwarding=0"]);
    for dev in [BRIDGE, VETH, UPLINK] {
        t.host
            .exec(&["sysctl", "-qw", &format!("net.ipv6.conf.{dev}.accept_ra=1")]);
    }
    let accept_ra = |dev: &str| {
        t.host
            .output(&["sysctl", "-n", &format!("net.ipv6.conf.{dev}.accept_ra")])
            .trim()
            .to_string()
    };
    let _d = t.start_daemon_with(&[]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while accept_ra(BRIDGE) != "0" && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        accept_ra(BRIDGE),
        "0",
        "the managed bridge takes no advertisement"
    );
    assert_eq!(accept_ra(VETH), "0", "nor its container's veth");
    assert_eq!(
        accept_ra(UPLINK),
        "2",
        "control: the uplink keeps its advertisements while forwarding"
    );
}

/// A part skips when its inputs are those of its last clean apply, so an entry removed
/// by hand from a pinned map comes back only with a full reapply: the repair timer
/// (`--docker-resync`, here 1 s) forces one with no event to trigger it.
#[test]
fn entries_removed_by_hand_are_restored_by_the_periodic_repair() {
    if !require_root() {
        return;
    }
    let t = Topology::new("rpr");
    let _d = t.start_daemon_with(&["--docker-resync", "1"]);
    let (sock, pins) = (&t.files.socket, &t.files.pin_dir);
    let add = ["endpoint", "add", "--bridge", BRIDGE, "--veth", VETH];
    cli_ok(sock, &[&add[..], &["--ip", "172.17.0.4/16"]].concat());
    cli_ok(sock, &["publish", "8038:172.17.0.4:8038"]);

    let ep = Be32::from_bytes([172, 17, 0, 4]);
    // Registered, not a binding the datapath learned from the container's packets.
    let registered = || {
        pinned_endpoints(pins)
            .iter()
            .any(|(ip, e)| ip.octets() == [172, 17, 0, 4] && e.flags & EP_LEARNED == 0)
    };
    wait_for(
        "the endpoint in endpoints_v1",
        Duration::from_secs(5),
        registered,
    );
    remove_pinned::<Be32, Endpoint>(pins, "endpoints_v1", &ep);
    wait_for(
        "the endpoint removed by hand back in endpoints_v1",
        Duration::from_secs(10),
        registered,
    );

    let published = || pinned_keys::<PublishedKey, Backend>(pins, "published_v1");
    let entries = published();
    assert_eq!(entries.len(), 1, "one entry for the one publish");
    remove_pinned::<PublishedKey, Backend>(pins, "published_v1", &entries[0]);
    wait_for(
        "the published port removed by hand back in published_v1",
        Duration::from_secs(10),
        || published().len() == 1,
    );
}
