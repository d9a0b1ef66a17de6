//! The end-to-end topology, each test with its own names, pins and state, all removed
//! on drop:
//!
//! ```text
//! server (198.51.100.2) — client/router (198.51.100.1, 192.0.2.2) — uplink up0 (192.0.2.1)
//!   host: bridge br0 172.17.0.1/16 — vc0: container (172.17.0.4), vc1: container2 (172.17.0.5)
//! ```
//!
//! [`Topology::add_ipv6`] gives every link IPv6 as well: the LAN `2001:db8:1::/64` (host `::1`,
//! client `::2`), the server's `2001:db8:2::/64` (client `::1`, server `::2`) and the bridge's ULA
//! `fd00:17::/64` (bridge `::1`, containers `::4` and `::5`).
use std::{
    fs::{self, File},
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    process::{Command, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

use crate::{
    daemon::{Daemon, bin},
    leftovers,
    netns::Netns,
    scratch::Scratch,
    unique,
};

pub const HOST_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
pub const BRIDGE_IP: Ipv4Addr = Ipv4Addr::new(172, 17, 0, 1);
pub const CONTAINER_IP: Ipv4Addr = Ipv4Addr::new(172, 17, 0, 4);
pub const CONTAINER2_IP: Ipv4Addr = Ipv4Addr::new(172, 17, 0, 5);
pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
pub const HOST_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
pub const CLIENT_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
pub const SERVER_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 2);
pub const CONTAINER_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x17, 0, 0, 0, 0, 0, 4);
pub const CONTAINER2_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x17, 0, 0, 0, 0, 0, 5);
pub const UPLINK: &str = "up0";
pub const BRIDGE: &str = "br0";
pub const VETH: &str = "vc0";

/// The uplink between a host and the client that is also its router: `up0`
/// (192.0.2.1/24) in `host` to `eth0` (192.0.2.2/24) in `client`, the host's default
/// route through it.
pub fn wire_uplink(host: &Netns, client: &Netns) {
    host.ip(&[
        "link",
        "add",
        UPLINK,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        &client.name,
    ]);
    host.ip(&["addr", "add", "192.0.2.1/24", "dev", UPLINK]);
    host.ip(&["link", "set", UPLINK, "up"]);
    host.ip(&["route", "add", "default", "via", "192.0.2.2"]);
    client.ip(&["addr", "add", "192.0.2.2/24", "dev", "eth0"]);
    client.ip(&["link", "set", "eth0", "up"]);
}

/// What Docker's users run into: conntrack told to stay out, forwarding dropped, and
/// bridged frames sent through iptables too (bridge netfilter), so the policy also
/// bites between two ports of one bridge.
pub fn harden_firewall(host: &Netns) {
    host.exec(&["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"]);
    host.exec(&[
        "iptables",
        "-t",
        "raw",
        "-A",
        "PREROUTING",
        "-j",
        "CT",
        "--notrack",
    ]);
    host.exec(&["iptables", "-P", "FORWARD", "DROP"]);
}

/// `harden_firewall`'s rules for IPv6: ip6tables tells conntrack to stay out and drops
/// what the host forwards.
pub fn harden_firewall6(host: &Netns) {
    let raw = ["-t", "raw", "-A", "PREROUTING", "-j", "CT", "--notrack"];
    for args in [&raw[..], &["-P", "FORWARD", "DROP"]] {
        let mut v = vec!["ip6tables"];
        v.extend_from_slice(args);
        host.exec(&v);
    }
}

/// A bridge `name` in `host` with address `cidr`, up.
pub fn add_bridge(host: &Netns, name: &str, cidr: &str) {
    host.ip(&["link", "add", name, "type", "bridge"]);
    host.ip(&["addr", "add", cidr, "dev", name]);
    host.ip(&["link", "set", name, "up"]);
}

/// Plug namespace `ns` into `bridge` of `host`: `veth` on the host's side, `dev` with
/// address `cidr` inside, and a default route through `gateway` when given.
pub fn plug(
    host: &Netns,
    (bridge, veth): (&str, &str),
    ns: &Netns,
    (dev, cidr): (&str, &str),
    gateway: Option<&str>,
) {
    host.ip(&[
        "link", "add", veth, "type", "veth", "peer", "name", dev, "netns", &ns.name,
    ]);
    host.ip(&["link", "set", veth, "master", bridge, "up"]);
    ns.ip(&["addr", "add", cidr, "dev", dev]);
    ns.ip(&["link", "set", dev, "up"]);
    if let Some(gw) = gateway {
        ns.ip(&["route", "add", "default", "via", gw]);
    }
}

/// Set the host's FORWARD policy: `ACCEPT` is a permissive host (Docker's iptables off),
/// where only bpfnet's verdicts stand between networks and between containers.
pub fn forward_policy(host: &Netns, policy: &str) {
    host.exec(&["iptables", "-P", "FORWARD", policy]);
}

/// The "outside" server behind the client, which routes for it: `eth1`
/// (198.51.100.1/24) in `client` to `eth0` (198.51.100.2/24) in `server`.
pub fn wire_server(client: &Netns, server: &Netns) {
    client.ip(&[
        "link",
        "add",
        "eth1",
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        &server.name,
    ]);
    client.ip(&["addr", "add", "198.51.100.1/24", "dev", "eth1"]);
    client.ip(&["link", "set", "eth1", "up"]);
    client.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    server.ip(&["addr", "add", "198.51.100.2/24", "dev", "eth0"]);
    server.ip(&["link", "set", "eth0", "up"]);
    server.ip(&["route", "add", "default", "via", "198.51.100.1"]);
}

pub struct Topology {
    pub client: Netns,
    pub host: Netns,
    pub container: Netns,
    pub container2: Netns,
    pub server: Netns,
    pub files: Scratch,
}

impl Topology {
    /// Build the namespaces and links for test `tag` (a few characters).
    pub fn new(tag: &str) -> Self {
        let t = Self::with_default_offloads(tag);
        // With offloads on, veths hand packets over as "checksum verified"; off, every
        // receiver checks the sums the datapath rewrote.
        for (ns, dev) in [
            (&t.client, "eth0"),
            (&t.host, UPLINK),
            (&t.host, VETH),
            (&t.container, "eth0"),
            (&t.server, "eth0"),
        ] {
            ns.exec(&["ethtool", "-K", dev, "tx", "off", "rx", "off"]);
        }
        t
    }

    /// The topology as a host would have it (checksum and segmentation offloads on), for
    /// measuring rather than checking.
    pub fn with_default_offloads(tag: &str) -> Self {
        let id = unique(tag);
        let t = Self {
            client: Netns::new(&format!("{id}-cli")),
            host: Netns::new(&format!("{id}-host")),
            container: Netns::new(&format!("{id}-ctr")),
            container2: Netns::new(&format!("{id}-ctr2")),
            server: Netns::new(&format!("{id}-srv")),
            files: Scratch::new(tag),
        };
        let (h, c, k, k2, s) = (&t.host, &t.client, &t.container, &t.container2, &t.server);
        wire_uplink(h, c);
        c.ip(&["route", "add", "default", "via", "192.0.2.1"]);
        // The client doubles as the router to the "outside" server.
        wire_server(c, s);
        add_bridge(h, BRIDGE, "172.17.0.1/16");
        let gw = Some("172.17.0.1");
        plug(h, (BRIDGE, VETH), k, ("eth0", "172.17.0.4/16"), gw);
        plug(h, (BRIDGE, "vc1"), k2, ("eth0", "172.17.0.5/16"), gw);
        t
    }

    /// IPv6 on every link beside IPv4 (see the module's picture), with the routes
    /// IPv4 has: the host's default through the client, the client forwarding for the
    /// server, the containers' default through the bridge. No address waits for
    /// duplicate detection.
    pub fn add_ipv6(&self) {
        let (h, c, s) = (&self.host, &self.client, &self.server);
        for (ns, dev, cidr) in [
            (h, UPLINK, "2001:db8:1::1/64"),
            (c, "eth0", "2001:db8:1::2/64"),
            (c, "eth1", "2001:db8:2::1/64"),
            (s, "eth0", "2001:db8:2::2/64"),
            (h, BRIDGE, "fd00:17::1/64"),
            (&self.container, "eth0", "fd00:17::4/64"),
            (&self.container2, "eth0", "fd00:17::5/64"),
        ] {
            ns.ip(&["-6", "addr", "add", cidr, "dev", dev, "nodad"]);
        }
        c.exec(&["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
        for (ns, via) in [
            (h, "2001:db8:1::2"),
            (s, "2001:db8:2::1"),
            (&self.container, "fd00:17::1"),
            (&self.container2, "fd00:17::1"),
        ] {
            ns.ip(&["-6", "route", "add", "default", "via", via]);
        }
    }

    pub fn harden_host_firewall(&self) {
        harden_firewall(&self.host);
    }

    /// Every receiver checked the sums the datapath rewrote (offloads are off) and
    /// found no TCP or UDP checksum error, in any namespace of the topology.
    pub fn assert_no_checksum_errors(&self) {
        for ns in [
            &self.client,
            &self.host,
            &self.container,
            &self.container2,
            &self.server,
        ] {
            for proto in ["Tcp", "Udp"] {
                assert_eq!(
                    ns.snmp(proto, "InCsumErrors"),
                    0,
                    "{proto} checksum errors in {}",
                    ns.name
                );
            }
        }
    }

    pub fn start_daemon(&self) -> Daemon {
        self.start_daemon_with(&[])
    }

    /// The daemon with `extra` arguments after the topology's own.
    pub fn start_daemon_with(&self, extra: &[&str]) -> Daemon {
        Daemon::start(
            &self.host.path(),
            &self.files.socket,
            &self.daemon_args(extra),
        )
    }

    /// `bpfnet daemon`'s arguments for this topology (its files, `br0`, `up0`, Docker not
    /// followed), then `extra`.
    pub fn daemon_args(&self, extra: &[&str]) -> Vec<String> {
        let mut args = self.files.daemon_args();
        args.extend(["--bridge", BRIDGE, "--uplink", UPLINK, "--no-docker"].map(String::from));
        args.extend(extra.iter().map(ToString::to_string));
        args
    }

    /// Run `bpfnet daemon` on the topology with `extra` arguments and `env`; it must exit
    /// by itself within 20 s (killed by PID otherwise, and the test fails): its exit status
    /// and its stderr.
    pub fn daemon_exit(&self, extra: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String) {
        let log = self.files.socket.with_file_name("daemon.stderr");
        let mut child = Command::new("nsenter")
            .arg(format!("--net={}", self.host.path()))
            .arg(bin())
            .arg("--socket")
            .arg(&self.files.socket)
            .arg("daemon")
            .args(self.daemon_args(extra))
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("create the daemon's stderr file"))
            .spawn()
            .expect("nsenter + bpfnet daemon start");
        leftovers::record(child.id());
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for bpfnet daemon") {
                break Some(status);
            }
            if Instant::now() >= deadline {
                let _unused: Result<_, _> = child.kill();
                let _unused: Result<_, _> = child.wait();
                break None;
            }
            thread::sleep(Duration::from_millis(50));
        };
        leftovers::forget(child.id());
        let stderr = fs::read_to_string(&log).unwrap_or_default();
        let status = status.unwrap_or_else(|| {
            panic!(
                "bpfnet daemon {extra:?} should exit by itself; after 20 s it still ran:\n{stderr}"
            )
        });
        (status, stderr)
    }

    /// A second network, br1 (172.18.0.1/16): a new namespace `container3` (172.18.0.3,
    /// on veth vd3) and container2 on both networks (172.18.0.5 on its eth1, veth vc2).
    /// The daemon must be started with `--bridge br1` to manage it.
    pub fn add_second_network(&self) -> Netns {
        let (h, k2) = (&self.host, &self.container2);
        let k3 = Netns::new(&format!("{}-ctr3", self.host.name));
        add_bridge(h, "br1", "172.18.0.1/16");
        plug(
            h,
            ("br1", "vd3"),
            &k3,
            ("eth0", "172.18.0.3/16"),
            Some("172.18.0.1"),
        );
        plug(h, ("br1", "vc2"), k2, ("eth1", "172.18.0.5/16"), None);
        k3
    }

    /// Register every container of both networks as an endpoint (`bpfnet endpoint add`).
    pub fn register_endpoints(&self, container3: &Netns) {
        for (veth, bridge, ip, ns, dev) in [
            ("vc0", "br0", "172.17.0.4/16", &self.container, "eth0"),
            ("vc1", "br0", "172.17.0.5/16", &self.container2, "eth0"),
            ("vc2", "br1", "172.18.0.5/16", &self.container2, "eth1"),
            ("vd3", "br1", "172.18.0.3/16", container3, "eth0"),
        ] {
            let mac = ns
                .mac(dev)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":");
            crate::daemon::cli_ok(
                &self.files.socket,
                &[
                    "endpoint", "add", "--bridge", bridge, "--veth", veth, "--ip", ip, "--mac",
                    &mac,
                ],
            );
        }
    }

    pub fn host_addr(port: u16) -> SocketAddr {
        SocketAddr::from((HOST_IP, port))
    }
}
