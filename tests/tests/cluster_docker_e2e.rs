//! Docker on cluster nodes, for real: two hosts of an etcd cluster, host-gw and VXLAN
//! (FORWARD DROP, raw notrack), each with bpfnet in cluster mode on `docker0` and its own dockerd (Docker's
//! NAT off) whose `bip` is the node's gateway and prefix from `bpfnet node ls`. A
//! container on one host reaches a container on the other by its address, untranslated,
//! both ways; `docker run -p` on one host answers an outside client; a port published on
//! one host for a container on the other answers the outside client too.
use std::{
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    thread,
    time::{Duration, Instant},
};

use bpfnet_tests::{
    cluster::{Cluster, Host, UNDERLAY},
    daemon::{Daemon, cli_ok, ls},
    dockerd::{Dockerd, IMAGE, PAGE},
    echo::{WhoamiServer, tcp_roundtrip},
    netns::Netns,
    require_root, unique,
};

const PORT: u16 = 8080;
const BRIDGE: &str = "docker0";

/// One cluster node: bpfnet following its dockerd, whose docker0 is the node's prefix.
struct Node {
    // Declared first, dropped first: containers and dockerd go before bpfnet.
    docker: Dockerd,
    _daemon: Daemon,
    /// The node's gateway, its bridge's address.
    gateway: Ipv4Addr,
}

/// Start bpfnet on host `h` as cluster node `h{index}` of the etcd at `url`, with
/// `docker0` as its cluster bridge, then a dockerd whose `--bip` is what `bpfnet node
/// ls` says the node's gateway and prefix are.
fn start_node(h: &Host, url: &str, id: &str) -> Node {
    let docker_dir = std::env::temp_dir().join(format!("{id}-docker{}", h.index));
    let docker_host = format!(
        "unix://{}",
        PathBuf::from(&docker_dir).join("docker.sock").display()
    );
    let name = format!("h{}", h.index);
    let mut args = h.files.daemon_args();
    args.extend(
        [
            "--bridge",
            BRIDGE,
            "--uplink",
            UNDERLAY,
            "--underlay",
            UNDERLAY,
            "--etcd",
            url,
            "--node-name",
            &name,
        ]
        .map(String::from),
    );
    let daemon = Daemon::start_env(
        &h.ns.path(),
        &h.files.socket,
        &args,
        &[("DOCKER_HOST", &docker_host)],
    );
    let (gateway, len) = h.await_prefix_of(0, BRIDGE);
    let listed = h.network(0).this;
    assert_eq!(
        listed.as_ref().map(|t| t.gateway),
        Some(gateway),
        "node ls: {listed:?}"
    );
    let docker = Dockerd::start(&h.ns.path(), &docker_dir, &format!("{gateway}/{len}"));
    Node {
        docker,
        _daemon: daemon,
        gateway,
    }
}

/// `docker run -d --name NAME IMAGE ARGS...` on `d`; the container's address.
fn run(d: &Dockerd, name: &str, args: &[&str]) -> Ipv4Addr {
    let mut all = vec!["run", "-d", "--name", name];
    all.extend_from_slice(args);
    d.ok(&all);
    d.ip_of(name)
}

/// The address a whoami server at `to` saw a TCP connection from `ns` come from,
/// retried for a few seconds while Docker's veth and bpfnet's view of it settle.
fn seen_from(ns: &Netns, to: SocketAddr) -> Ipv4Addr {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match tcp_roundtrip(ns, to, b"who") {
            Ok(reply) => match WhoamiServer::seen(&reply) {
                SocketAddr::V4(a) => return *a.ip(),
                SocketAddr::V6(a) => panic!("an IPv4 connection seen from {a}"),
            },
            Err(e) => assert!(
                Instant::now() < deadline,
                "TCP from {} to {to}: {e}",
                ns.name
            ),
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// Whether `bpfnet ls` on `h` publishes a port starting with `spec`.
fn publishes(h: &Host, spec: &str) -> bool {
    ls(&h.files.socket)
        .published
        .iter()
        .any(|p| p.to_string().starts_with(spec))
}

#[test]
fn docker_containers_on_two_host_gw_nodes_reach_each_other_and_ports_published_across_hosts() {
    docker_on_two_nodes("dkgw", "host-gw");
}

#[test]
fn docker_containers_on_two_vxlan_nodes_reach_each_other_and_ports_published_across_hosts() {
    docker_on_two_nodes("dkvx", "vxlan");
}

/// Two nodes of a `mode` cluster with Docker on each: containers across hosts, `docker
/// run -p`, and a port published for the other host's container.
fn docker_on_two_nodes(tag: &str, mode: &str) {
    if !require_root() {
        return;
    }
    let id = unique(tag);
    let mut c = Cluster::new(tag, 2);
    let (_etcd_ns, etcd) = c.add_etcd(&[
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
    let nodes: Vec<Node> = c.hosts.iter().map(|h| start_node(h, &url, &id)).collect();
    for h in &c.hosts {
        h.await_peers(1);
    }

    // A container on each host, its namespace named for the test's sockets.
    let mut addrs = Vec::new();
    let mut namespaces = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        addrs.push(run(&n.docker, "app", &[IMAGE, "sleep", "3600"]));
        namespaces.push(n.docker.netns_of("app", &format!("{id}-app{i}")));
    }
    let _servers: Vec<_> = namespaces
        .iter()
        .map(|ns| WhoamiServer::start(ns, PORT))
        .collect();
    for (i, j) in [(0, 1), (1, 0)] {
        assert_ne!(addrs[i], addrs[j], "the nodes' prefixes differ");
        let seen = seen_from(&namespaces[i], SocketAddr::from((addrs[j], PORT)));
        assert_eq!(
            seen,
            addrs[i],
            "host {}'s container sees host {}'s by its own address",
            j + 1,
            i + 1
        );
    }

    // `docker run -p` on host 1, from a client outside the cluster.
    let outside = Netns::new(&format!("{id}-out"));
    c.plug_underlay(&outside, 200, "192.0.2.200/24");
    let host1 = &c.hosts[0];
    run(
        &nodes[0].docker,
        "web",
        &[
            "-p",
            "8038:8038",
            IMAGE,
            "httpd",
            "-f",
            "-p",
            "8038",
            "-h",
            "/www",
        ],
    );
    bpfnet_tests::wait_for("web's publish", Duration::from_secs(20), || {
        publishes(host1, "8038:")
    });
    let page = tcp_roundtrip(
        &outside,
        SocketAddr::from((host1.underlay_ip(), 8038)),
        b"GET / HTTP/1.0\r\n\r\n",
    )
    .expect("docker run -p on host 1 answers the outside client");
    assert!(
        String::from_utf8_lossy(&page).contains(PAGE),
        "the page: {}",
        String::from_utf8_lossy(&page)
    );

    // A port published on host 1 whose backend is host 2's Docker container.
    let spec = format!("8081:{}:{PORT}", addrs[1]);
    cli_ok(&host1.files.socket, &["publish", &spec]);
    let reply = tcp_roundtrip(
        &outside,
        SocketAddr::from((host1.underlay_ip(), 8081)),
        b"who",
    )
    .expect("host 1's port answers from host 2's container");
    // Host 1's address on the way there: its underlay's off the wire (host-gw), its
    // gateway's in the tunnel (VXLAN), so the answer comes back the same way.
    let host1_seen = if mode == "vxlan" {
        nodes[0].gateway
    } else {
        host1.underlay_ip()
    };
    assert_eq!(
        WhoamiServer::seen(&reply).ip(),
        std::net::IpAddr::from(host1_seen),
        "host 2's container sees host 1, which translates the answer back"
    );
    drop(namespaces);
    drop(nodes);
}
