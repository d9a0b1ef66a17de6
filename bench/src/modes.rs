//! The datapaths compared: `wire` (a veth straight between the two namespaces of each
//! test, no host in between: the physical limit of the topology), `direct` (routed
//! through the host to the container, no NAT), `iptables` (Docker's exact rules for
//! `-p`), `bpfnet`.
use std::{
    fs,
    net::{Ipv4Addr, SocketAddr},
    process::Command,
};

use bpfnet_tests::{
    daemon::{Daemon, cli_ok},
    netns::Netns,
    topo::{CONTAINER_IP, HOST_IP, SERVER_IP, Topology},
};
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Wire,
    Direct,
    Iptables,
    Bpfnet,
    /// bpfnet with `--xdp=generic` (XDP on the veth uplink, ahead of the same TC programs).
    BpfnetXdp,
}

pub const ALL: [Mode; 5] = [
    Mode::Wire,
    Mode::Direct,
    Mode::Iptables,
    Mode::Bpfnet,
    Mode::BpfnetXdp,
];

/// The wires' addresses: client↔container, container↔server, container2↔container,
/// one /30 each (the first address of each pair is the first namespace's).
const WIRE_CLIENT: [Ipv4Addr; 2] = [Ipv4Addr::new(203, 0, 113, 1), Ipv4Addr::new(203, 0, 113, 2)];
const WIRE_SERVER: [Ipv4Addr; 2] = [Ipv4Addr::new(203, 0, 113, 5), Ipv4Addr::new(203, 0, 113, 6)];
const WIRE_PEER: [Ipv4Addr; 2] = [
    Ipv4Addr::new(203, 0, 113, 9),
    Ipv4Addr::new(203, 0, 113, 10),
];

/// The `wire` mode's veths, in place for the whole run: connected /30 routes only, so
/// the other modes' traffic never takes them.
pub fn lay_wires(t: &Topology) {
    let pairs: [(&Netns, &str, &Netns, &str, [Ipv4Addr; 2]); 3] = [
        (&t.client, "wire0", &t.container, "wire0", WIRE_CLIENT),
        (&t.container, "wire1", &t.server, "wire0", WIRE_SERVER),
        (&t.container2, "wire0", &t.container, "wire2", WIRE_PEER),
    ];
    for (a, a_dev, b, b_dev, ips) in pairs {
        a.ip(&[
            "link", "add", a_dev, "type", "veth", "peer", "name", b_dev, "netns", &b.name,
        ]);
        for (ns, dev, ip) in [(a, a_dev, ips[0]), (b, b_dev, ips[1])] {
            ns.ip(&["addr", "add", &format!("{ip}/30"), "dev", dev]);
            ns.ip(&["link", "set", dev, "up"]);
        }
    }
}

/// Ports the container serves: the load tool's echo and iperf3.
pub const ECHO: u16 = 8038;
pub const IPERF: u16 = 5201;

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Self::Wire => "wire",
            Self::Direct => "direct",
            Self::Iptables => "iptables",
            Self::Bpfnet => "bpfnet",
            Self::BpfnetXdp => "bpfnet+xdp",
        }
    }

    /// Where a client outside the host reaches the container's `port`.
    pub fn target(self, port: u16) -> SocketAddr {
        match self {
            Self::Wire => SocketAddr::from((WIRE_CLIENT[1], port)),
            Self::Direct => SocketAddr::from((CONTAINER_IP, port)),
            _ => SocketAddr::from((HOST_IP, port)),
        }
    }

    /// Where the container reaches the server's `port`.
    pub fn server(self, port: u16) -> SocketAddr {
        match self {
            Self::Wire => SocketAddr::from((WIRE_SERVER[1], port)),
            _ => SocketAddr::from((SERVER_IP, port)),
        }
    }

    /// Where container2 reaches the container's `port`.
    pub fn neighbour(self, port: u16) -> SocketAddr {
        match self {
            Self::Wire => SocketAddr::from((WIRE_PEER[1], port)),
            _ => SocketAddr::from((CONTAINER_IP, port)),
        }
    }

    /// Configure the host; the daemon (bpfnet mode) lives as long as the guard.
    pub fn setup(self, t: &Topology) -> Option<Daemon> {
        t.host.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        match self {
            Self::Wire => None,
            Self::Direct => {
                t.client
                    .ip(&["route", "add", "172.17.0.0/16", "via", "192.0.2.1"]);
                t.server
                    .ip(&["route", "add", "172.17.0.0/16", "via", "198.51.100.1"]);
                None
            }
            Self::Iptables => {
                iptables_restore(t, &docker_rules(&[ECHO, IPERF], 0), false);
                None
            }
            Self::Bpfnet => Some(bpfnet(t, &[])),
            Self::BpfnetXdp => Some(bpfnet(t, &["--xdp=generic"])),
        }
    }

    /// Undo `setup` (after the daemon is dropped): the next mode starts clean.
    pub fn teardown(self, t: &Topology) {
        match self {
            Self::Wire => {}
            Self::Direct => {
                t.client.ip(&["route", "del", "172.17.0.0/16"]);
                t.server.ip(&["route", "del", "172.17.0.0/16"]);
            }
            Self::Iptables => flush_iptables(t),
            // The datapath outlives the daemon: removing its pins detaches it.
            Self::Bpfnet | Self::BpfnetXdp => {
                let _ = fs::remove_dir_all(&t.files.pin_dir);
                let _ = fs::remove_dir_all(&t.files.state_dir);
            }
        }
    }
}

/// The daemon with `extra` arguments, publishing the echo (TCP and UDP) and iperf3
/// ports of the container and registering both containers' endpoints.
pub fn bpfnet(t: &Topology, extra: &[&str]) -> Daemon {
    let d = t.start_daemon_with(extra);
    let sock = &t.files.socket;
    for spec in [
        "8038:172.17.0.4:8038",
        "8038:172.17.0.4:8038/udp",
        "5201:172.17.0.4:5201",
    ] {
        cli_ok(sock, &["publish", spec]);
    }
    for (veth, ip, ns) in [
        ("vc0", "172.17.0.4/16", &t.container),
        ("vc1", "172.17.0.5/16", &t.container2),
    ] {
        let mac = ns
            .mac("eth0")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":");
        cli_ok(
            sock,
            &[
                "endpoint", "add", "--bridge", "br0", "--veth", veth, "--ip", ip, "--mac", &mac,
            ],
        );
    }
    d
}

/// Docker's rule set (iptables: true) for a container at 172.17.0.4 on br0 publishing
/// `ports` (TCP and UDP), after `filler` published ports of other containers, the way
/// `docker run -p` writes it.
pub fn docker_rules(ports: &[u16], filler: usize) -> String {
    let mut nat = String::from(
        "*nat\n:DOCKER - [0:0]\n\
         -A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER\n\
         -A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER\n\
         -A POSTROUTING -s 172.17.0.0/16 ! -o br0 -j MASQUERADE\n\
         -A DOCKER -i br0 -j RETURN\n",
    );
    let mut filter = String::from(
        "*filter\n:DOCKER - [0:0]\n:DOCKER-USER - [0:0]\n\
         :DOCKER-ISOLATION-STAGE-1 - [0:0]\n:DOCKER-ISOLATION-STAGE-2 - [0:0]\n\
         -P FORWARD DROP\n\
         -A FORWARD -j DOCKER-USER\n-A FORWARD -j DOCKER-ISOLATION-STAGE-1\n\
         -A FORWARD -o br0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
         -A FORWARD -o br0 -j DOCKER\n-A FORWARD -i br0 ! -o br0 -j ACCEPT\n\
         -A FORWARD -i br0 -o br0 -j ACCEPT\n\
         -A DOCKER-ISOLATION-STAGE-1 -i br0 ! -o br0 -j DOCKER-ISOLATION-STAGE-2\n\
         -A DOCKER-ISOLATION-STAGE-1 -j RETURN\n\
         -A DOCKER-ISOLATION-STAGE-2 -o br0 -j DROP\n-A DOCKER-ISOLATION-STAGE-2 -j RETURN\n\
         -A DOCKER-USER -j RETURN\n",
    );
    let mut rule = |ip: &str, port: u16, proto: &str| {
        nat.push_str(&format!(
            "-A POSTROUTING -s {ip}/32 -d {ip}/32 -p {proto} --dport {port} -j MASQUERADE\n\
             -A DOCKER ! -i br0 -p {proto} --dport {port} -j DNAT --to-destination {ip}:{port}\n"
        ));
        filter.push_str(&format!(
            "-A DOCKER -d {ip}/32 ! -i br0 -o br0 -p {proto} --dport {port} -j ACCEPT\n"
        ));
    };
    for i in 0..filler {
        rule("172.17.200.9", 20000 + i as u16, "tcp");
    }
    for &p in ports {
        rule("172.17.0.4", p, "tcp");
        rule("172.17.0.4", p, "udp");
    }
    format!("{nat}COMMIT\n{filter}COMMIT\n")
}

/// Load a rule set into the host namespace (`--noflush` adds to what is there).
pub fn iptables_restore(t: &Topology, rules: &str, noflush: bool) {
    use std::io::Write as _;
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &t.host.name, "iptables-restore", "-w"]);
    if noflush {
        c.arg("--noflush");
    }
    let mut child = c
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("iptables-restore runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(rules.as_bytes())
        .expect("rules written");
    assert!(
        child.wait().is_ok_and(|s| s.success()),
        "iptables-restore failed"
    );
}

pub fn flush_iptables(t: &Topology) {
    for table in ["nat", "filter"] {
        t.host.exec(&["iptables", "-w", "-t", table, "-F"]);
        t.host.exec(&["iptables", "-w", "-t", table, "-X"]);
    }
    t.host.exec(&["iptables", "-w", "-P", "FORWARD", "ACCEPT"]);
}
