//! Docker end to end: a real dockerd (Docker's NAT off) next to bpfnet on a host with
//! the raw-table notrack rule and FORWARD DROP. `docker run -p` ports are reachable from
//! outside and from the host's 127.0.0.1, follow the container across stop and restart,
//! custom networks are isolated from each other, egress is masqueraded, and a bpfnet
//! restart keeps it all.
use std::{
    io::ErrorKind,
    net::SocketAddr,
    path::Path,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use bpfnet::api::Listing;
use bpfnet_tests::{
    daemon::{Daemon, bin, cli_ok, counter, live_bpf_ids, ls, pinned_links},
    dockerd::{Dockerd, IMAGE, PAGE},
    echo::{WhoamiServer, assert_fails, tcp_roundtrip},
    lossy_events::LossyEvents,
    netns::Netns,
    require_root,
    scratch::Scratch,
    topo::{forward_policy, harden_firewall, harden_firewall6, wire_server, wire_uplink},
    unique, wait_for,
};
use common::Reason;

const GET: &[u8] = b"GET / HTTP/1.0\r\n\r\n";

/// Poll `ls --json` until `pred` holds.
fn wait_ls(socket: &Path, what: &str, pred: impl Fn(&Listing) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let l = ls(socket);
        if pred(&l) {
            return;
        }
        assert!(Instant::now() < deadline, "waiting for {what}; ls is {l:?}");
        thread::sleep(Duration::from_millis(100));
    }
}

fn published(l: &Listing) -> Vec<String> {
    l.published.iter().map(ToString::to_string).collect()
}

/// `docker run -d --name web -p 8038:8038` serving the page, once bpfnet publishes it.
fn run_web(docker: &Dockerd, sock: &Path) {
    docker.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        "8038:8038",
        IMAGE,
        "httpd",
        "-f",
        "-p",
        "8038",
        "-h",
        "/www",
    ]);
    wait_ls(sock, "web's publish", |l| {
        published(l).iter().any(|p| p.starts_with("8038:"))
    });
}

/// `docker run -d --name NAME --network NET --ip IP` serving the page on port 80.
fn serve_on(docker: &Dockerd, name: &str, net: &str, ip: &str) {
    docker.ok(&[
        "run",
        "-d",
        "--name",
        name,
        "--network",
        net,
        "--ip",
        ip,
        IMAGE,
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/www",
    ]);
}

fn http_ok(ns: &Netns, to: SocketAddr) -> bool {
    tcp_roundtrip(ns, to, GET).is_ok_and(|r| String::from_utf8_lossy(&r).contains(PAGE))
}

/// `nc` from inside a container: its output when it connected, else what it said.
fn nc_from(
    d: &Dockerd,
    container: &str,
    ip: &str,
    port: &str,
    send: &str,
) -> Result<String, String> {
    let script = format!("printf '{send}' | nc -w 3 {ip} {port}");
    let out = d.docker(&["exec", container, "sh", "-c", &script]);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// host (uplink up0, 192.0.2.1; notrack, FORWARD DROP) — client/router (192.0.2.2,
/// 198.51.100.1) — server (198.51.100.2).
fn hosts(tag: &str) -> (String, Netns, Netns, Netns) {
    let id = unique(tag);
    let (host, client, server) = (
        Netns::new(&format!("{id}-host")),
        Netns::new(&format!("{id}-cli")),
        Netns::new(&format!("{id}-srv")),
    );
    wire_uplink(&host, &client);
    wire_server(&client, &server);
    harden_firewall(&host);
    (id, host, client, server)
}

/// A hardened host with a dockerd (Docker's NAT off) and bpfnet following it.
struct DockerHost {
    host: Netns,
    client: Netns,
    server: Netns,
    files: Scratch,
    docker: Dockerd,
}

impl DockerHost {
    fn new(tag: &str) -> Self {
        let (id, host, client, server) = hosts(tag);
        let files = Scratch::new(tag);
        let docker_dir = std::env::temp_dir().join(format!("{id}-docker"));
        let docker = Dockerd::start(&host.path(), &docker_dir, "172.17.0.1/16");
        Self {
            host,
            client,
            server,
            files,
            docker,
        }
    }

    fn start_bpfnet(&self) -> Daemon {
        let mut args = self.files.daemon_args();
        args.extend(["--uplink", "up0"].map(String::from));
        let host = self.docker.host();
        Daemon::start_env(
            &self.host.path(),
            &self.files.socket,
            &args,
            &[("DOCKER_HOST", &host)],
        )
    }
}

/// `docker run -p` is reachable from outside and from the host's 127.0.0.1; a clashing
/// Docker publish is reported and not installed; `docker stop` closes the port in the
/// datapath; a restart at a new address re-points it; a bpfnet crash keeps it.
#[test]
fn docker_run_p_is_published_and_follows_the_container() {
    if !require_root() {
        return;
    }
    let d = DockerHost::new("dk");
    let (docker, client, sock) = (&d.docker, &d.client, &d.files.socket);
    let daemon = d.start_bpfnet();
    let outside = SocketAddr::from(([192, 0, 2, 1], 8038));
    let local = SocketAddr::from(([127, 0, 0, 1], 8038));

    run_web(docker, sock);
    assert!(
        http_ok(client, outside),
        "docker run -p 8038:8038 reachable through the uplink"
    );
    assert!(http_ok(&d.host, local), "reachable at the host's 127.0.0.1");

    // A signal that does not stop it (a config reload) and a pause leave a running
    // container published.
    docker.ok(&["kill", "-s", "HUP", "web"]);
    docker.ok(&["pause", "web"]);
    thread::sleep(Duration::from_millis(700));
    assert!(
        published(&ls(sock)).iter().any(|p| p.starts_with("8038:")),
        "still published after SIGHUP and pause"
    );
    docker.ok(&["unpause", "web"]);
    assert!(
        http_ok(client, outside),
        "reachable after SIGHUP, pause and unpause"
    );

    // A Docker publish that collides with a manual one is reported, not installed: the
    // port keeps leading where `bpfnet publish` sent it.
    cli_ok(sock, &["publish", "8040:172.17.0.200:80"]);
    docker.ok(&[
        "run", "-d", "--name", "clash", "-p", "8040:80", IMAGE, "httpd", "-f", "-p", "80", "-h",
        "/www",
    ]);
    wait_ls(sock, "the conflict to be reported", |l| {
        l.conflicts
            .iter()
            .any(|c| c.container == "clash" && c.holder.to_string() == "8040:172.17.0.200:80/tcp")
    });
    let on_8040: Vec<String> = published(&ls(sock))
        .into_iter()
        .filter(|p| p.starts_with("8040:"))
        .collect();
    assert_eq!(
        on_8040,
        ["8040:172.17.0.200:80/tcp"],
        "the manual publish stays"
    );
    assert_fails(
        "8040 leads to the manual publish's absent backend, not to the clashing container",
        tcp_roundtrip(client, SocketAddr::from(([192, 0, 2, 1], 8040)), GET),
        ErrorKind::TimedOut,
    );
    docker.ok(&["rm", "-f", "clash"]);
    cli_ok(sock, &["unpublish", "8040:172.17.0.200:80"]);

    // docker stop removes the publish; a restart with a new address re-points it.
    let first = published(&ls(sock));
    docker.ok(&["stop", "-t", "1", "web"]);
    wait_ls(sock, "the publish to go", |l| {
        !published(l).iter().any(|p| p.starts_with("8038:"))
    });
    // Closed in the datapath: the host's own stack answers, nothing listens there.
    assert_fails(
        "a stopped container's port",
        tcp_roundtrip(client, outside, GET),
        ErrorKind::ConnectionRefused,
    );
    docker.ok(&["run", "-d", "--name", "filler", IMAGE, "sleep", "1000"]);
    docker.ok(&["start", "web"]);
    wait_ls(sock, "the publish to return", |l| {
        published(l).iter().any(|p| p.starts_with("8038:"))
    });
    let second = published(&ls(sock));
    assert_ne!(
        first, second,
        "web came back at another address: {first:?} / {second:?}"
    );
    assert!(
        http_ok(client, outside),
        "the publish follows the container"
    );

    // A bpfnet crash and restart while the container runs keeps its traffic.
    daemon.kill9();
    assert!(
        http_ok(client, outside),
        "published port works with no daemon"
    );
    let _daemon = d.start_bpfnet();
    assert_eq!(
        published(&ls(sock)),
        second,
        "same publishes after the restart"
    );
    assert!(http_ok(client, outside), "published port after the restart");
}

/// Containers are masqueraded on egress; custom networks are open within and, on a
/// permissive host, isolated from each other by bpfnet alone.
#[test]
fn docker_networks_are_isolated_and_egress_is_masqueraded() {
    if !require_root() {
        return;
    }
    let d = DockerHost::new("dkn");
    let (docker, sock) = (&d.docker, &d.files.socket);
    let _daemon = d.start_bpfnet();
    run_web(docker, sock);
    let _w = WhoamiServer::start(&d.server, 9000);
    let seen = nc_from(docker, "web", "198.51.100.2", "9000", "x").expect("nc through SNAT");
    assert!(
        seen.starts_with("192.0.2.1:"),
        "the server sees the host's address, saw `{seen}`"
    );

    // Custom networks: isolated from each other, open within.
    docker.ok(&["network", "create", "--subnet", "172.30.0.0/24", "net1"]);
    docker.ok(&["network", "create", "--subnet", "172.31.0.0/24", "net2"]);
    for (name, net, ip) in [
        ("a1", "net1", "172.30.0.10"),
        ("a2", "net1", "172.30.0.11"),
        ("b1", "net2", "172.31.0.10"),
    ] {
        serve_on(docker, name, net, ip);
    }
    wait_ls(sock, "the custom networks' endpoints", |l| {
        l.bridges.len() == 3 && l.docker.iter().filter(|c| !c.endpoints.is_empty()).count() == 4
    });
    let get = "GET / HTTP/1.0\\r\\n\\r\\n";
    let page = |from: &str, ip: &str| {
        nc_from(docker, from, ip, "80", get).is_ok_and(|out| out.contains(PAGE))
    };
    assert!(page("a2", "172.30.0.10"), "a2 reaches a1 on net1");
    // Docker's embedded DNS (127.0.0.11 inside the container) keeps answering names.
    let dns = docker.docker(&["exec", "a2", "nslookup", "a1"]);
    let said = String::from_utf8_lossy(&dns.stdout);
    assert!(
        dns.status.success() && said.contains("172.30.0.10"),
        "embedded DNS resolves a1: {said} {}",
        String::from_utf8_lossy(&dns.stderr)
    );
    // On a permissive host only bpfnet's isolation stands between the networks.
    forward_policy(&d.host, "ACCEPT");
    let isolated = counter(sock, Reason::DropIsolation);
    let across = nc_from(docker, "b1", "172.30.0.10", "80", get);
    assert!(across.is_err(), "b1 on net2 must not reach a1: {across:?}");
    assert!(
        counter(sock, Reason::DropIsolation) > isolated,
        "the isolation drop is counted"
    );
    forward_policy(&d.host, "DROP");
}

/// A network created with Docker's `gateway_mode_ipv4=routed` option is reached from
/// outside at the container's own address, through FORWARD DROP, and its containers'
/// traffic leaves with their own address.
#[test]
fn a_docker_routed_network_is_reached_directly() {
    if !require_root() {
        return;
    }
    let d = DockerHost::new("dkr");
    let (docker, sock) = (&d.docker, &d.files.socket);
    let _daemon = d.start_bpfnet();
    docker.ok(&[
        "network",
        "create",
        "--subnet",
        "172.29.0.0/24",
        "-o",
        "com.docker.network.bridge.gateway_mode_ipv4=routed",
        "rnet",
    ]);
    serve_on(docker, "r1", "rnet", "172.29.0.10");
    wait_ls(sock, "the routed network's endpoint", |l| {
        l.bridges.len() == 2
    });
    d.client
        .ip(&["route", "add", "172.29.0.0/24", "via", "192.0.2.1"]);
    d.server
        .ip(&["route", "add", "172.29.0.0/24", "via", "198.51.100.1"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !http_ok(&d.client, SocketAddr::from(([172, 29, 0, 10], 80))) {
        assert!(
            Instant::now() < deadline,
            "the routed container is reachable at its own address"
        );
        thread::sleep(Duration::from_millis(200));
    }
    let _w = WhoamiServer::start(&d.server, 9000);
    let seen = nc_from(docker, "r1", "198.51.100.2", "9000", "x").expect("nc from r1");
    assert!(
        seen.starts_with("172.29.0.10:"),
        "not masqueraded: the server saw `{seen}`"
    );
}

/// The uplink carries IPv6 too (the host `2001:db8:1::1`, the client `2001:db8:1::2`), and
/// ip6tables drops what the host forwards and tells conntrack to stay out.
fn ipv6_uplink(d: &DockerHost) {
    for (ns, cidr, dev) in [
        (&d.host, "2001:db8:1::1/64", "up0"),
        (&d.client, "2001:db8:1::2/64", "eth0"),
    ] {
        ns.ip(&["-6", "addr", "add", cidr, "dev", dev, "nodad"]);
    }
    harden_firewall6(&d.host);
}

/// A `--ipv6` Docker network is dual stack under bpfnet: its containers' IPv6 addresses
/// are registered from Docker (so anti-spoofing knows them), and their IPv6 is switched
/// between them and reaches the host.
#[test]
fn a_docker_ipv6_network_is_dual_stack() {
    if !require_root() {
        return;
    }
    let d = DockerHost::new("dk6");
    let (docker, sock) = (&d.docker, &d.files.socket);
    ipv6_uplink(&d);
    let _daemon = d.start_bpfnet();
    docker.ok(&[
        "network",
        "create",
        "--ipv6",
        "--subnet",
        "172.28.0.0/24",
        "--subnet",
        "fd00:28::/64",
        "net6",
    ]);
    for (name, ip, ip6, publish) in [
        ("s1", "172.28.0.10", "fd00:28::10", "8080:80"),
        ("s2", "172.28.0.11", "fd00:28::11", "8081:80"),
    ] {
        docker.ok(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "net6",
            "--ip",
            ip,
            "--ip6",
            ip6,
            "-p",
            publish,
            IMAGE,
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
            "/www",
        ]);
    }
    wait_ls(sock, "both containers' IPv6 addresses and publishes", |l| {
        let v6 = l
            .docker
            .iter()
            .flat_map(|c| &c.endpoints)
            .flat_map(|e| &e.ip6)
            .filter(|a| a.to_string().starts_with("fd00:28::1"))
            .count();
        let published = published(l);
        v6 == 2 && published.iter().any(|p| p.contains("[fd00:28::10]:80"))
    });
    let get = "GET / HTTP/1.0\\r\\n\\r\\n";
    wait_for(
        "s2 to fetch s1's page over IPv6",
        Duration::from_secs(10),
        || nc_from(docker, "s2", "fd00:28::10", "80", get).is_ok_and(|out| out.contains(PAGE)),
    );
    let s1: SocketAddr = "[fd00:28::10]:80".parse().expect("address");
    wait_for(
        "the host to fetch s1's page over IPv6",
        Duration::from_secs(10),
        || http_ok(&d.host, s1),
    );
    // `-p 8080:80` is published on both families, as Docker publishes it.
    for to in ["[2001:db8:1::1]:8080", "192.0.2.1:8080"] {
        let to: SocketAddr = to.parse().expect("address");
        wait_for(
            &format!("the client to reach {to}"),
            Duration::from_secs(10),
            || http_ok(&d.client, to),
        );
    }
}

/// Docker's network options, enforced by bpfnet on a permissive host: `--internal`
/// (nothing routed out, even by a container that adds itself a default route),
/// `enable_icc=false` (containers of the network cannot reach each other, egress still
/// works) and `enable_ip_masquerade=false` (egress leaves with the container's address).
#[test]
fn docker_network_options_internal_icc_and_masquerade() {
    if !require_root() {
        return;
    }
    let d = DockerHost::new("dko");
    forward_policy(&d.host, "ACCEPT");
    let (docker, sock) = (&d.docker, &d.files.socket);
    let _daemon = d.start_bpfnet();
    let _w = WhoamiServer::start(&d.server, 9000);
    for (name, subnet, opt) in [
        ("inet", "172.28.0.0/24", "--internal"),
        (
            "noicc",
            "172.27.0.0/24",
            "-o=com.docker.network.bridge.enable_icc=false",
        ),
        (
            "nomasq",
            "172.26.0.0/24",
            "-o=com.docker.network.bridge.enable_ip_masquerade=false",
        ),
    ] {
        docker.ok(&["network", "create", "--subnet", subnet, opt, name]);
    }
    for (name, net, ip) in [
        ("i1", "inet", "172.28.0.10"),
        ("c1", "noicc", "172.27.0.10"),
        ("c2", "noicc", "172.27.0.11"),
        ("m1", "nomasq", "172.26.0.10"),
    ] {
        serve_on(docker, name, net, ip);
    }
    wait_ls(sock, "the three networks", |l| l.bridges.len() == 4);
    thread::sleep(Duration::from_millis(500));

    // Internal: the container gives itself a way out; bpfnet still refuses it.
    let pid = docker.ok(&["inspect", "-f", "{{.State.Pid}}", "i1"]);
    let route = Command::new("nsenter")
        .args([
            "-t",
            &pid,
            "-n",
            "ip",
            "route",
            "replace",
            "default",
            "via",
            "172.28.0.1",
        ])
        .output()
        .expect("nsenter runs");
    assert!(route.status.success(), "a default route in i1: {route:?}");
    let internal = counter(sock, Reason::DropInternal);
    let out = nc_from(docker, "i1", "198.51.100.2", "9000", "x");
    assert!(
        out.is_err(),
        "an internal container reaches nothing outside: {out:?}"
    );
    assert!(
        counter(sock, Reason::DropInternal) > internal,
        "the internal drop is counted"
    );

    // No inter-container communication, but egress.
    let get = "GET / HTTP/1.0\\r\\n\\r\\n";
    let icc = counter(sock, Reason::DropIcc);
    let across = nc_from(docker, "c1", "172.27.0.11", "80", get);
    assert!(across.is_err(), "c1 must not reach c2: {across:?}");
    assert!(
        counter(sock, Reason::DropIcc) > icc,
        "the icc drop is counted"
    );
    let seen = nc_from(docker, "c1", "198.51.100.2", "9000", "x").expect("c1's egress");
    assert!(seen.starts_with("192.0.2.1:"), "masqueraded: {seen}");

    // host_binding_ipv4: `-p` without an address binds the network's default address.
    docker.ok(&[
        "network",
        "create",
        "--subnet",
        "172.25.0.0/24",
        "-o=com.docker.network.bridge.host_binding_ipv4=192.0.2.1",
        "bound",
    ]);
    docker.ok(&[
        "run",
        "-d",
        "--name",
        "b1",
        "--network",
        "bound",
        "-p",
        "8041:80",
        IMAGE,
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/www",
    ]);
    wait_ls(sock, "b1's publish", |l| {
        published(l).iter().any(|p| p.contains("8041:"))
    });
    let specs = published(&ls(sock));
    assert!(
        specs.iter().any(|p| p.starts_with("192.0.2.1:8041:")),
        "bound to the network's host_binding_ipv4: {specs:?}"
    );
    assert!(
        http_ok(&d.client, SocketAddr::from(([192, 0, 2, 1], 8041))),
        "reachable at that address"
    );

    // Masquerade off: the server sees the container's own address.
    d.client
        .ip(&["route", "add", "172.26.0.0/24", "via", "192.0.2.1"]);
    d.server
        .ip(&["route", "add", "172.26.0.0/24", "via", "198.51.100.1"]);
    let seen = nc_from(docker, "m1", "198.51.100.2", "9000", "x").expect("m1's egress");
    assert!(
        seen.starts_with("172.26.0.10:"),
        "not masqueraded: the server saw `{seen}`"
    );

    // driver.mtu: the network's containers get it, and a megabyte crosses the publish
    // and the masquerade in segments that fit it.
    docker.ok(&[
        "network",
        "create",
        "--subnet",
        "172.24.0.0/24",
        "-o=com.docker.network.driver.mtu=1400",
        "small",
    ]);
    docker.ok(&[
        "run",
        "-d",
        "--name",
        "s1",
        "--network",
        "small",
        "-p",
        "8042:80",
        IMAGE,
        "sh",
        "-c",
        "head -c 1000000 /dev/zero > /www/big && httpd -f -p 80 -h /www",
    ]);
    assert_eq!(
        docker.ok(&["exec", "s1", "cat", "/sys/class/net/eth0/mtu"]),
        "1400"
    );
    wait_ls(sock, "s1's publish", |l| {
        published(l).iter().any(|p| p.contains("8042:"))
    });
    let big = tcp_roundtrip(
        &d.client,
        SocketAddr::from(([192, 0, 2, 1], 8042)),
        b"GET /big HTTP/1.0\r\n\r\n",
    )
    .expect("a megabyte through the publish");
    assert!(big.len() > 1_000_000, "{} bytes arrived", big.len());
    let _sink = d.server.spawn(|| {
        let l = std::net::TcpListener::bind("0.0.0.0:9002").expect("bind 9002");
        let (mut s, _) = l.accept().expect("accept");
        #[expect(
            clippy::large_stack_arrays,
            reason = "a test thread's one megabyte of zeros"
        )]
        std::io::Write::write_all(&mut s, &[0u8; 1_000_000]).expect("send a megabyte");
    });
    thread::sleep(Duration::from_millis(200));
    let out = docker.ok(&[
        "exec",
        "s1",
        "sh",
        "-c",
        "nc -w 3 198.51.100.2 9002 </dev/null | wc -c",
    ]);
    assert_eq!(out, "1000000", "a megabyte through the masquerade");
}

/// Run `args` (host binaries) in container `name`'s network namespace.
fn in_netns_of(docker: &Dockerd, name: &str, args: &[&str]) -> std::process::Output {
    let pid = docker.ok(&["inspect", "-f", "{{.State.Pid}}", name]);
    Command::new("nsenter")
        .args(["-t", &pid, "-n"])
        .args(args)
        .output()
        .expect("nsenter runs")
}

/// Echo requests container `name` has received over IPv4 (`Icmp` `InEchos`) or IPv6
/// (`Icmp6InEchos`).
fn echoes_received(docker: &Dockerd, name: &str, v6: bool) -> u64 {
    let file = if v6 {
        "/proc/net/snmp6"
    } else {
        "/proc/net/snmp"
    };
    let out = in_netns_of(docker, name, &["cat", file]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let found = if v6 {
        text.lines()
            .find_map(|l| l.strip_prefix("Icmp6InEchos"))
            .map(str::trim)
            .map(str::to_owned)
    } else {
        let mut icmp = text.lines().filter(|l| l.starts_with("Icmp:"));
        icmp.next().zip(icmp.next()).and_then(|(names, values)| {
            let i = names.split_whitespace().position(|n| n == "InEchos")?;
            values.split_whitespace().nth(i).map(str::to_owned)
        })
    };
    found
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no echo count in {name}'s {file}: {text}"))
}

/// `enable_icc=false` against the frames that used to slip past it, with a control on
/// a network with ICC: echo requests to a neighbour by way of the gateway (a host
/// route in the container, which the host would forward back onto the bridge: the
/// host forwards here), and to a neighbour's link-local IPv6 address (its MAC known
/// statically, as neighbour discovery between them no longer works), never reach the
/// neighbour, and `drop-icc` counts them; on the network with ICC both arrive.
#[test]
fn icc_false_holds_by_way_of_the_gateway_and_for_link_local() {
    if !require_root() {
        return;
    }
    let d = DockerHost::new("dkicc");
    forward_policy(&d.host, "ACCEPT");
    let (docker, sock) = (&d.docker, &d.files.socket);
    let _daemon = d.start_bpfnet();
    for (name, v4, v6, opt) in [
        (
            "noicc",
            "172.27.0.0/24",
            "fd00:27::/64",
            "-o=com.docker.network.bridge.enable_icc=false",
        ),
        (
            "withicc",
            "172.23.0.0/24",
            "fd00:23::/64",
            "-o=com.docker.network.bridge.enable_icc=true",
        ),
    ] {
        docker.ok(&[
            "network", "create", "--ipv6", "--subnet", v4, "--subnet", v6, opt, name,
        ]);
    }
    for (name, net, ip) in [
        ("c1", "noicc", "172.27.0.10"),
        ("c2", "noicc", "172.27.0.11"),
        ("d1", "withicc", "172.23.0.10"),
        ("d2", "withicc", "172.23.0.11"),
    ] {
        serve_on(docker, name, net, ip);
    }
    wait_ls(sock, "the two networks", |l| l.bridges.len() == 3);
    let get = "GET / HTTP/1.0\\r\\n\\r\\n";
    wait_for("d1 to reach d2", Duration::from_secs(10), || {
        nc_from(docker, "d1", "172.23.0.11", "80", get).is_ok_and(|out| out.contains(PAGE))
    });

    // By way of the gateway: each first container routes to its neighbour through it.
    for (from, to, addr, gateway) in [
        ("c1", "c2", "172.27.0.11", "172.27.0.1"),
        ("d1", "d2", "172.23.0.11", "172.23.0.1"),
    ] {
        let route = in_netns_of(
            docker,
            from,
            &["ip", "route", "replace", addr, "via", gateway],
        );
        assert!(
            route.status.success(),
            "a route via the gateway in {from}: {route:?}"
        );
        let (icc, seen) = (
            counter(sock, Reason::DropIcc),
            echoes_received(docker, to, false),
        );
        let ping = in_netns_of(docker, from, &["ping", "-c", "2", "-W", "1", addr]);
        let arrived = echoes_received(docker, to, false) - seen;
        if from == "c1" {
            assert_eq!(
                arrived, 0,
                "c1's echo requests must not reach c2 by way of the gateway"
            );
            assert!(!ping.status.success(), "c1 must not reach c2: {ping:?}");
            assert!(
                counter(sock, Reason::DropIcc) >= icc + 2,
                "both requests are counted"
            );
        } else {
            // The first may wait on the host's neighbour resolution of d2.
            assert!(
                arrived > 0,
                "d1's echo requests reach d2 by way of the gateway"
            );
            assert!(ping.status.success(), "d1 reaches d2: {ping:?}");
        }
    }

    // Link-local IPv6: echo requests to the neighbour's fe80:: address.
    let link_local = |name: &str| {
        let show = [
            "ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "link",
        ];
        let out = in_netns_of(docker, name, &show);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let addr = text
            .split_whitespace()
            .skip_while(|w| *w != "inet6")
            .nth(1)
            .and_then(|a| a.split('/').next())
            .unwrap_or_else(|| panic!("{name}'s link-local address in `{text}`"));
        let mac = docker.ok(&["exec", name, "cat", "/sys/class/net/eth0/address"]);
        (addr.to_owned(), mac)
    };
    for (from, to) in [("c1", "c2"), ("d1", "d2")] {
        let (addr, mac) = link_local(to);
        let neigh = [
            "ip",
            "-6",
            "neigh",
            "replace",
            &addr,
            "lladdr",
            &mac,
            "dev",
            "eth0",
            "nud",
            "permanent",
        ];
        let neigh = in_netns_of(docker, from, &neigh);
        assert!(neigh.status.success(), "{to}'s MAC in {from}: {neigh:?}");
        let (icc, seen) = (
            counter(sock, Reason::DropIcc),
            echoes_received(docker, to, true),
        );
        let ping = in_netns_of(
            docker,
            from,
            &["ping", "-6", "-c", "2", "-W", "1", &format!("{addr}%eth0")],
        );
        let arrived = echoes_received(docker, to, true) - seen;
        if from == "c1" {
            assert_eq!(arrived, 0, "c1's echo requests must not reach c2's {addr}");
            assert!(
                !ping.status.success(),
                "c1 must not reach c2's {addr}: {ping:?}"
            );
            assert!(
                counter(sock, Reason::DropIcc) >= icc + 2,
                "both requests are counted"
            );
        } else {
            assert!(arrived > 0, "d1's echo requests reach d2's {addr}");
            assert!(ping.status.success(), "d1 reaches d2's {addr}: {ping:?}");
        }
    }
}

#[test]
fn docker_absent_or_restarting_never_drops_the_datapath() {
    if !require_root() {
        return;
    }
    let (id, host, client, _server) = hosts("dka");
    // Leftovers of Docker's own NAT make bpfnet warn.
    host.exec(&["iptables", "-t", "nat", "-N", "DOCKER"]);
    host.exec(&[
        "iptables",
        "-t",
        "nat",
        "-A",
        "DOCKER",
        "-p",
        "tcp",
        "--dport",
        "1",
        "-j",
        "DNAT",
        "--to-destination",
        "203.0.113.9:1",
    ]);
    let files = Scratch::new("dka");
    let docker_dir = std::env::temp_dir().join(format!("{id}-docker"));
    let _unused: Result<_, _> = std::fs::remove_dir_all(&docker_dir);
    let docker_host = format!("unix://{}", docker_dir.join("docker.sock").display());
    let mut args = files.daemon_args();
    args.extend(["--uplink", "up0"].map(String::from));
    let _daemon = Daemon::start_env(
        &host.path(),
        &files.socket,
        &args,
        &[("DOCKER_HOST", &docker_host)],
    );
    let sock = &files.socket;
    let l = ls(sock);
    assert_eq!(l.docker, [], "no Docker yet");
    assert!(
        l.warnings
            .first()
            .is_some_and(|w| w.contains("\"iptables\": false")),
        "Docker's NAT rules are reported: {:?}",
        l.warnings
    );

    // Docker appears later: bpfnet finds it.
    let mut docker = Dockerd::start_with(&host.path(), &docker_dir, "172.17.0.1/16", true);
    run_web(&docker, sock);
    let outside = SocketAddr::from(([192, 0, 2, 1], 8038));
    assert!(http_ok(&client, outside), "published once Docker came up");

    // dockerd goes away (its socket with it); the container lives on (live restore)
    // and so does bpfnet's state for it.
    docker.stop();
    thread::sleep(Duration::from_millis(500));
    assert!(
        published(&ls(sock)).iter().any(|p| p.starts_with("8038:")),
        "publish kept while Docker is gone"
    );
    assert!(
        http_ok(&client, outside),
        "traffic flows while Docker is gone"
    );

    // dockerd returns: bpfnet reconnects and reconciles with what it says.
    docker.respawn();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !http_ok(&client, outside) {
        assert!(
            Instant::now() < deadline,
            "published port after Docker's return"
        );
        thread::sleep(Duration::from_millis(200));
    }
    // bpfnet follows the returned engine again: a container started now gets its port.
    docker.ok(&[
        "run", "-d", "--name", "web2", "-p", "8039:80", IMAGE, "httpd", "-f", "-p", "80", "-h",
        "/www",
    ]);
    wait_ls(sock, "web2's publish after Docker's return", |l| {
        published(l).iter().any(|p| p.starts_with("8039:"))
    });
    assert!(
        http_ok(&client, SocketAddr::from(([192, 0, 2, 1], 8039))),
        "a container started after Docker's return is published"
    );
}

/// `bpfnet daemon --cleanup` on a host with a published container: refused while the
/// daemon runs; afterwards no link or program bpfnet attached is left in the kernel
/// (interfaces and the root cgroup alike) and no pin, the port is no longer bpfnet's,
/// and Docker's own networking serves it again once its iptables is back on.
#[test]
fn cleanup_hands_the_host_back_to_docker() {
    if !require_root() {
        return;
    }
    let mut d = DockerHost::new("dkc");
    // A plain host, where Docker's own NAT works.
    forward_policy(&d.host, "ACCEPT");
    d.host.exec(&["iptables", "-t", "raw", "-F", "PREROUTING"]);
    let sock = d.files.socket.clone();
    let daemon = d.start_bpfnet();
    run_web(&d.docker, &sock);
    let outside = SocketAddr::from(([192, 0, 2, 1], 8038));
    assert!(http_ok(&d.client, outside), "published by bpfnet");

    let cleanup = || {
        Command::new(bin())
            .arg("--socket")
            .arg(&sock)
            .args(["daemon", "--cleanup", "--pin-dir"])
            .arg(&d.files.pin_dir)
            .output()
            .expect("bpfnet daemon --cleanup runs")
    };
    let refused = cleanup();
    assert!(
        !refused.status.success()
            && String::from_utf8_lossy(&refused.stderr).contains("stop it first"),
        "cleanup under a running daemon: {refused:?}"
    );
    let pinned = pinned_links(&d.files.pin_dir);
    // Eight socket programs on the cgroup (four per family), from_uplink on up0,
    // from_container on web's veth (and xdp_uplink on up0 with --xdp).
    let want = 10 + usize::from(bpfnet_tests::daemon::xdp_on());
    assert_eq!(pinned.len(), want, "pinned links: {pinned:?}");
    drop(daemon);
    assert!(
        http_ok(&d.client, outside),
        "the datapath outlives the daemon"
    );

    let out = cleanup();
    assert!(out.status.success(), "cleanup: {out:?}");
    assert!(!d.files.pin_dir.exists(), "the pin directory is gone");
    // The kernel frees programs after a grace period (and those a program array held
    // after the array goes): give it a moment.
    let gone = || {
        let (links, progs) = live_bpf_ids();
        pinned
            .iter()
            .all(|(link, prog)| !links.contains(link) && !progs.contains(prog))
    };
    wait_for(
        "bpfnet's links and programs to leave the kernel",
        Duration::from_secs(5),
        gone,
    );
    assert!(
        !http_ok(&d.client, outside),
        "with bpfnet gone and Docker's NAT off, nothing publishes the port"
    );

    d.docker.respawn_with_own_nat();
    d.docker.ok(&["start", "web"]);
    wait_for(
        "Docker's own NAT to publish the port",
        Duration::from_secs(10),
        || http_ok(&d.client, outside),
    );
}

/// Reconciliation is level-triggered: with the event stream losing events (a proxy
/// between bpfnet and dockerd swallows them), `docker stop` and `docker start` still
/// reach the datapath through the periodic listing of containers.
#[test]
fn docker_resync_heals_missed_events() {
    if !require_root() {
        return;
    }
    let d = DockerHost::new("dkrs");
    let proxy = LossyEvents::start(&d.docker.socket, d.files.socket.with_extension("docker"));
    let mut args = d.files.daemon_args();
    args.extend(["--uplink", "up0", "--docker-resync", "2"].map(String::from));
    let sock = &d.files.socket;
    let _daemon = Daemon::start_env(
        &d.host.path(),
        sock,
        &args,
        &[("DOCKER_HOST", &proxy.host())],
    );
    run_web(&d.docker, sock);
    let outside = SocketAddr::from(([192, 0, 2, 1], 8038));
    assert!(
        http_ok(&d.client, outside),
        "published through the proxy's events"
    );

    proxy.set_losing(true);
    d.docker.ok(&["stop", "web"]);
    wait_ls(sock, "web's publish gone without its events", |l| {
        !published(l).iter().any(|p| p.starts_with("8038:"))
    });
    assert_fails(
        "a stopped container's port",
        tcp_roundtrip(&d.client, outside, GET),
        ErrorKind::ConnectionRefused,
    );
    d.docker.ok(&["start", "web"]);
    wait_ls(sock, "web's publish back without its events", |l| {
        published(l).iter().any(|p| p.starts_with("8038:"))
    });
    assert!(http_ok(&d.client, outside), "published again by the resync");
    assert!(
        proxy.swallowed() >= 2,
        "the stop and start events were lost ({} swallowed)",
        proxy.swallowed()
    );
}
