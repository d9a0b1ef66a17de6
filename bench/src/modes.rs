//! The datapaths compared: `wire` (a veth straight between the two namespaces of each
//! test, no host in between: the physical limit of the topology), `direct` (routed
//! through the host to the container, no NAT), `iptables` (Docker's exact rules for
//! `-p`), `bpfnet`. Each mode carries both families: a test over IPv6 takes the same
//! path as its IPv4 twin (Docker's ip6tables rules in `iptables` mode, NAT66 in `bpfnet`
//! mode, the bridge's ULA prefix `fd00:17::/64`).
use std::{
    fs,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    process::Command,
};

use bpfnet_tests::{
    daemon::{Daemon, cli_ok},
    netns::Netns,
    topo::{CONTAINER_IP, CONTAINER_IP6, HOST_IP, HOST_IP6, SERVER_IP, SERVER_IP6, Topology},
};
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Mode {
    Wire,
    Direct,
    Iptables,
    Bpfnet,
    /// bpfnet with `--xdp=generic` (XDP on the veth uplink, ahead of the same TC programs).
    BpfnetXdp,
}

pub(crate) const ALL: [Mode; 5] = [
    Mode::Wire,
    Mode::Direct,
    Mode::Iptables,
    Mode::Bpfnet,
    Mode::BpfnetXdp,
];

/// The address family a test runs over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Family {
    V4,
    V6,
}

impl Family {
    /// What a test's name gets over this family.
    pub(crate) fn suffix(self) -> &'static str {
        match self {
            Self::V4 => "",
            Self::V6 => " (IPv6)",
        }
    }

    /// `v4` or `v6`, whichever is this family's.
    fn pick(self, v4: impl Into<IpAddr>, v6: impl Into<IpAddr>) -> IpAddr {
        match self {
            Self::V4 => v4.into(),
            Self::V6 => v6.into(),
        }
    }
}

/// The wires' addresses: client↔container, container↔server, container2↔container,
/// one /30 each (the first address of each pair is the first namespace's), and one /64
/// each for IPv6.
const WIRE_CLIENT: [Ipv4Addr; 2] = [Ipv4Addr::new(203, 0, 113, 1), Ipv4Addr::new(203, 0, 113, 2)];
const WIRE_SERVER: [Ipv4Addr; 2] = [Ipv4Addr::new(203, 0, 113, 5), Ipv4Addr::new(203, 0, 113, 6)];
const WIRE_PEER: [Ipv4Addr; 2] = [
    Ipv4Addr::new(203, 0, 113, 9),
    Ipv4Addr::new(203, 0, 113, 10),
];

const WIRE6_CLIENT: [Ipv6Addr; 2] = wire6(0xf1);
const WIRE6_SERVER: [Ipv6Addr; 2] = wire6(0xf2);
const WIRE6_PEER: [Ipv6Addr; 2] = wire6(0xf3);

/// `2001:db8:NET::1` and `::2`.
const fn wire6(net: u16) -> [Ipv6Addr; 2] {
    [
        Ipv6Addr::new(0x2001, 0xdb8, net, 0, 0, 0, 0, 1),
        Ipv6Addr::new(0x2001, 0xdb8, net, 0, 0, 0, 0, 2),
    ]
}

/// The `wire` mode's veths, in place for the whole run: connected routes only, so the
/// other modes' traffic never takes them.
pub(crate) fn lay_wires(t: &Topology) {
    type Pair<'a> = (&'a Netns, &'a str, &'a Netns, &'a str);
    let pairs: [(Pair, [Ipv4Addr; 2], [Ipv6Addr; 2]); 3] = [
        (
            (&t.client, "wire0", &t.container, "wire0"),
            WIRE_CLIENT,
            WIRE6_CLIENT,
        ),
        (
            (&t.container, "wire1", &t.server, "wire0"),
            WIRE_SERVER,
            WIRE6_SERVER,
        ),
        (
            (&t.container2, "wire0", &t.container, "wire2"),
            WIRE_PEER,
            WIRE6_PEER,
        ),
    ];
    for ((a, a_dev, b, b_dev), ips, ips6) in pairs {
        a.ip(&[
            "link", "add", a_dev, "type", "veth", "peer", "name", b_dev, "netns", &b.name,
        ]);
        for (i, (ns, dev)) in [(a, a_dev), (b, b_dev)].into_iter().enumerate() {
            ns.ip(&["addr", "add", &format!("{}/30", ips[i]), "dev", dev]);
            let v6 = format!("{}/64", ips6[i]);
            ns.ip(&["-6", "addr", "add", &v6, "dev", dev, "nodad"]);
            ns.ip(&["link", "set", dev, "up"]);
        }
    }
}

/// Ports the container serves: the load tool's echo and iperf3.
pub(crate) const ECHO: u16 = 8038;
pub(crate) const IPERF: u16 = 5201;

impl Mode {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Wire => "wire",
            Self::Direct => "direct",
            Self::Iptables => "iptables",
            Self::Bpfnet => "bpfnet",
            Self::BpfnetXdp => "bpfnet+xdp",
        }
    }

    /// Where a client outside the host reaches the container's `port` over `f`.
    pub(crate) fn target(self, f: Family, port: u16) -> SocketAddr {
        let ip = match self {
            Self::Wire => f.pick(WIRE_CLIENT[1], WIRE6_CLIENT[1]),
            Self::Direct => f.pick(CONTAINER_IP, CONTAINER_IP6),
            _ => f.pick(HOST_IP, HOST_IP6),
        };
        SocketAddr::new(ip, port)
    }

    /// Where the container reaches the server's `port` over `f`.
    pub(crate) fn server(self, f: Family, port: u16) -> SocketAddr {
        let ip = match self {
            Self::Wire => f.pick(WIRE_SERVER[1], WIRE6_SERVER[1]),
            _ => f.pick(SERVER_IP, SERVER_IP6),
        };
        SocketAddr::new(ip, port)
    }

    /// Where container2 reaches the container's `port` over `f`.
    pub(crate) fn neighbour(self, f: Family, port: u16) -> SocketAddr {
        let ip = match self {
            Self::Wire => f.pick(WIRE_PEER[1], WIRE6_PEER[1]),
            _ => f.pick(CONTAINER_IP, CONTAINER_IP6),
        };
        SocketAddr::new(ip, port)
    }

    /// Configure the host; the daemon (bpfnet mode) lives as long as the guard.
    pub(crate) fn setup(self, t: &Topology) -> Option<Daemon> {
        t.host.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        t.host
            .exec(&["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
        match self {
            Self::Wire => None,
            Self::Direct => {
                for (ns, prefix, via) in DIRECT_ROUTES {
                    ns(t).ip(&["route", "add", prefix, "via", via]);
                }
                None
            }
            Self::Iptables => {
                for f in [Family::V4, Family::V6] {
                    iptables_restore(t, f, &docker_rules(f, &[ECHO, IPERF], 0), false);
                }
                None
            }
            Self::Bpfnet => Some(bpfnet(t, &[])),
            Self::BpfnetXdp => Some(bpfnet(t, &["--xdp=generic"])),
        }
    }

    /// Undo `setup` (after the daemon is dropped): the next mode starts clean.
    pub(crate) fn teardown(self, t: &Topology) {
        match self {
            Self::Wire => {}
            Self::Direct => {
                for (ns, prefix, _) in DIRECT_ROUTES {
                    ns(t).ip(&["route", "del", prefix]);
                }
            }
            Self::Iptables => flush_iptables(t),
            // The datapath outlives the daemon: removing its pins detaches it.
            Self::Bpfnet | Self::BpfnetXdp => {
                let _unused: Result<_, _> = fs::remove_dir_all(&t.files.pin_dir);
                let _unused: Result<_, _> = fs::remove_dir_all(&t.files.state_dir);
            }
        }
    }
}

/// `direct` mode's routes to the containers' networks, through the host: in the
/// client, and in the server (whose default route goes the other way).
type NsOf = fn(&Topology) -> &Netns;
const DIRECT_ROUTES: [(NsOf, &str, &str); 4] = [
    (|t| &t.client, "172.17.0.0/16", "192.0.2.1"),
    (|t| &t.server, "172.17.0.0/16", "198.51.100.1"),
    (|t| &t.client, "fd00:17::/64", "2001:db8:1::1"),
    (|t| &t.server, "fd00:17::/64", "2001:db8:2::1"),
];

/// The daemon with `extra` arguments, publishing the echo (TCP and UDP) and iperf3
/// ports of the container over both families and registering both containers'
/// endpoints with their IPv4 and IPv6 addresses.
pub(crate) fn bpfnet(t: &Topology, extra: &[&str]) -> Daemon {
    let d = t.start_daemon_with(extra);
    let sock = &t.files.socket;
    for spec in [
        "8038:172.17.0.4:8038",
        "8038:172.17.0.4:8038/udp",
        "5201:172.17.0.4:5201",
        "[::]:8038:[fd00:17::4]:8038",
        "[::]:8038:[fd00:17::4]:8038/udp",
        "[::]:5201:[fd00:17::4]:5201",
    ] {
        cli_ok(sock, &["publish", spec]);
    }
    for (veth, ips, ns) in [
        ("vc0", ["172.17.0.4/16", "fd00:17::4/64"], &t.container),
        ("vc1", ["172.17.0.5/16", "fd00:17::5/64"], &t.container2),
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
                "endpoint", "add", "--bridge", "br0", "--veth", veth, "--ip", ips[0], "--ip",
                ips[1], "--mac", &mac,
            ],
        );
    }
    d
}

/// Docker's rule set (iptables: true, and ip6tables: true for IPv6) for a container at
/// 172.17.0.4 and `fd00:17::4` on br0 publishing `ports` (TCP and UDP), after `filler`
/// published ports of other containers, the way `docker run -p` writes it for family `f`.
pub(crate) fn docker_rules(f: Family, ports: &[u16], filler: usize) -> String {
    let (subnet, loopback, ip, other, len) = match f {
        Family::V4 => (
            "172.17.0.0/16",
            "127.0.0.0/8",
            "172.17.0.4",
            "172.17.200.9",
            32,
        ),
        Family::V6 => (
            "fd00:17::/64",
            "::1/128",
            "fd00:17::4",
            "fd00:17::200:9",
            128,
        ),
    };
    let mut nat = format!(
        "*nat\n:DOCKER - [0:0]\n\
         -A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER\n\
         -A OUTPUT ! -d {loopback} -m addrtype --dst-type LOCAL -j DOCKER\n\
         -A POSTROUTING -s {subnet} ! -o br0 -j MASQUERADE\n\
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
        let to = match f {
            Family::V4 => format!("{ip}:{port}"),
            Family::V6 => format!("[{ip}]:{port}"),
        };
        nat.push_str(&format!(
            "-A POSTROUTING -s {ip}/{len} -d {ip}/{len} -p {proto} --dport {port} -j MASQUERADE\n\
             -A DOCKER ! -i br0 -p {proto} --dport {port} -j DNAT --to-destination {to}\n"
        ));
        filter.push_str(&format!(
            "-A DOCKER -d {ip}/{len} ! -i br0 -o br0 -p {proto} --dport {port} -j ACCEPT\n"
        ));
    };
    for i in 0..filler {
        rule(other, 20000 + i as u16, "tcp");
    }
    for &p in ports {
        rule(ip, p, "tcp");
        rule(ip, p, "udp");
    }
    format!("{nat}COMMIT\n{filter}COMMIT\n")
}

/// The firewall's command for family `f`, and what it suffixes.
fn iptables(f: Family) -> &'static str {
    match f {
        Family::V4 => "iptables",
        Family::V6 => "ip6tables",
    }
}

/// Load a rule set for family `f` into the host namespace (`--noflush` adds to what is
/// there).
pub(crate) fn iptables_restore(t: &Topology, f: Family, rules: &str, noflush: bool) {
    use std::io::Write as _;
    let restore = format!("{}-restore", iptables(f));
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &t.host.name, &restore, "-w"]);
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
    assert!(child.wait().is_ok_and(|s| s.success()), "{restore} failed");
}

/// Both families' rules gone, forwarding accepted.
pub(crate) fn flush_iptables(t: &Topology) {
    for cmd in [Family::V4, Family::V6].map(iptables) {
        for table in ["nat", "filter"] {
            t.host.exec(&[cmd, "-w", "-t", table, "-F"]);
            t.host.exec(&[cmd, "-w", "-t", table, "-X"]);
        }
        t.host.exec(&[cmd, "-w", "-P", "FORWARD", "ACCEPT"]);
    }
}
