//! Several hosts on one underlay segment, each with a bridge of containers and its own
//! daemon: the cluster's end-to-end topology. Everything is removed on drop.
//!
//! ```text
//! switch: bridge `ul` — host i: `ul0` 192.0.2.i/24 — bridge br0 — containers
//! router (optional): `ul0` 192.0.2.254/24, routing each host's prefix to it (a VPC)
//! ```
use std::{
    net::{Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use bpfnet::api::{NetworkListing, NodeListing};

use crate::{
    daemon::{Daemon, cli_ok},
    etcd::EtcdServer,
    netns::Netns,
    pki::ClientCert,
    scratch::Scratch,
    topo::{BRIDGE, add_bridge, harden_firewall, plug},
    unique,
};

/// The underlay interface of every host.
pub const UNDERLAY: &str = "ul0";
/// The router's underlay address.
pub const ROUTER_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 254);
/// The etcd server's underlay address.
pub const ETCD_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 250);

/// One host: its namespace, its containers, its daemon's files.
pub struct Host {
    pub ns: Netns,
    pub containers: Vec<Netns>,
    pub files: Scratch,
    /// 1-based: the host's underlay address is 192.0.2.`index`.
    pub index: u8,
    /// Checksum offloads left on (measuring), or off so every receiver checks.
    offloads: bool,
}

impl Host {
    pub fn underlay_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(192, 0, 2, self.index)
    }

    /// A container on br0 with address `ip/len`, its default route through `gateway`;
    /// its veth on the host is `v{index}{n}`.
    pub fn add_container(&mut self, ip: Ipv4Addr, len: u8, gateway: Ipv4Addr) -> &Netns {
        self.add_container_to(BRIDGE, ip, len, gateway)
    }

    /// `add_container` on `bridge`.
    pub fn add_container_to(
        &mut self,
        bridge: &str,
        ip: Ipv4Addr,
        len: u8,
        gateway: Ipv4Addr,
    ) -> &Netns {
        let n = self.containers.len();
        let ns = Netns::new(&format!("{}-c{n}", self.ns.name));
        let veth = format!("v{}{n}", self.index);
        plug(
            &self.ns,
            (bridge, &veth),
            &ns,
            ("eth0", &format!("{ip}/{len}")),
            Some(&gateway.to_string()),
        );
        if !self.offloads {
            for (ns, dev) in [(&self.ns, veth.as_str()), (&ns, "eth0")] {
                ns.exec(&["ethtool", "-K", dev, "tx", "off", "rx", "off"]);
            }
        }
        self.containers.push(ns);
        self.containers.last().expect("just pushed")
    }

    /// `bpfnet node ls --json` of this host's daemon: its first network.
    pub fn nodes(&self) -> NetworkListing {
        self.network(0)
    }

    /// `bpfnet node ls --json` of this host's daemon: its network `i`.
    pub fn network(&self, i: usize) -> NetworkListing {
        self.try_network(i)
            .unwrap_or_else(|| panic!("node ls --json lists no network {i}"))
    }

    /// Network `i`, if the daemon lists it yet.
    fn try_network(&self, i: usize) -> Option<NetworkListing> {
        let all: NodeListing =
            serde_json::from_str(&cli_ok(&self.files.socket, &["node", "ls", "--json"]))
                .expect("node ls --json prints a node listing");
        all.networks.into_iter().nth(i)
    }

    /// Wait until the daemon has its node prefix and its bridge the prefix's first
    /// address: (gateway, prefix length).
    pub fn await_prefix(&self) -> (Ipv4Addr, u8) {
        self.await_prefix_of(0, BRIDGE)
    }

    /// `await_prefix` for the daemon's network `net`, on `bridge`.
    pub fn await_prefix_of(&self, net: usize, bridge: &str) -> (Ipv4Addr, u8) {
        let mut found: Option<(Ipv4Addr, u8)> = None;
        crate::wait_for("the node's prefix", Duration::from_secs(20), || {
            found = self
                .try_network(net)
                .and_then(|n| n.this)
                .map(|t| (t.gateway, t.subnet.prefix_len()));
            found.is_some_and(|(g, l)| {
                self.ns
                    .output(&["ip", "-4", "addr", "show", "dev", bridge])
                    .contains(&format!("{g}/{l}"))
            })
        });
        found.expect("waited for it")
    }

    /// Wait until the daemon has its node's IPv6 prefix (dual stack) and its bridge the
    /// prefix's first address, past duplicate address detection: (gateway, length).
    pub fn await_prefix6(&self) -> (Ipv6Addr, u8) {
        let mut found: Option<(Ipv6Addr, u8)> = None;
        crate::wait_for("the node's IPv6 prefix", Duration::from_secs(20), || {
            found = self
                .try_network(0)
                .and_then(|n| n.this)
                .and_then(|t| t.gateway6.zip(t.subnet6.map(|s| s.prefix_len())));
            found.is_some_and(|(g, l)| {
                let out = self.ns.output(&["ip", "-6", "addr", "show", "dev", BRIDGE]);
                out.lines()
                    .any(|line| line.contains(&format!("{g}/{l}")) && !line.contains("tentative"))
            })
        });
        found.expect("waited for it")
    }

    /// Give container `n` the IPv6 address `ip/len` too, its IPv6 default route through
    /// `gateway`.
    pub fn add_ipv6(&self, n: usize, ip: Ipv6Addr, len: u8, gateway: Ipv6Addr) {
        let ns = &self.containers[n];
        ns.ip(&[
            "-6",
            "addr",
            "add",
            &format!("{ip}/{len}"),
            "dev",
            "eth0",
            "nodad",
        ]);
        ns.ip(&["-6", "route", "add", "default", "via", &gateway.to_string()]);
    }

    /// Wait until the daemon lists `n` other nodes alive.
    pub fn await_peers(&self, n: usize) {
        crate::wait_for(&format!("{n} live peers"), Duration::from_secs(20), || {
            self.try_network(0)
                .is_some_and(|l| l.nodes.iter().filter(|p| p.alive).count() == n)
        });
    }

    /// Start the host's daemon as cluster node `h{index}` of the etcd at `url`.
    pub fn join(&self, url: &str, extra: &[&str]) -> Daemon {
        let name = format!("h{}", self.index);
        let mut args = vec!["--etcd", url, "--node-name", &name];
        args.extend_from_slice(extra);
        self.start_daemon(&args)
    }

    /// `join`, the daemon's log written to `log`.
    pub fn join_logged(&self, url: &str, extra: &[&str], log: &std::path::Path) -> Daemon {
        let name = format!("h{}", self.index);
        let mut args = self.daemon_args(&["--etcd", url, "--node-name", &name]);
        args.extend(extra.iter().map(ToString::to_string));
        Daemon::start_logged(&self.ns.path(), &self.files.socket, &args, log)
    }

    /// The arguments `start_daemon` gives, then `extra`.
    pub fn daemon_args(&self, extra: &[&str]) -> Vec<String> {
        let mut args = self.files.daemon_args();
        args.extend(
            [
                "--bridge",
                BRIDGE,
                "--uplink",
                UNDERLAY,
                "--underlay",
                UNDERLAY,
                "--no-docker",
            ]
            .map(String::from),
        );
        args.extend(extra.iter().map(ToString::to_string));
        args
    }

    /// Start the host's daemon on br0 and the underlay, with `extra` arguments.
    pub fn start_daemon(&self, extra: &[&str]) -> Daemon {
        let mut args = self.files.daemon_args();
        args.extend(
            [
                "--bridge",
                BRIDGE,
                "--uplink",
                UNDERLAY,
                "--underlay",
                UNDERLAY,
                "--no-docker",
            ]
            .map(String::from),
        );
        args.extend(extra.iter().map(ToString::to_string));
        Daemon::start(&self.ns.path(), &self.files.socket, &args)
    }
}

pub struct Cluster {
    pub switch: Netns,
    pub hosts: Vec<Host>,
    pub router: Option<Netns>,
    tag: String,
    /// A measuring topology: offloads on, the hosts' firewalls left open.
    measuring: bool,
}

impl Cluster {
    /// `hosts` hosts on the switch, each with FORWARD DROP and raw notrack, no bridge
    /// yet.
    pub fn new(tag: &str, hosts: u8) -> Self {
        Self::build(tag, hosts, false)
    }

    /// The topology as hosts would have it, for measuring: offloads on, no firewall
    /// rules.
    pub fn measuring(tag: &str, hosts: u8) -> Self {
        Self::build(tag, hosts, true)
    }

    fn build(tag: &str, hosts: u8, measuring: bool) -> Self {
        let id = unique(tag);
        let switch = Netns::new(&format!("{id}-sw"));
        switch.ip(&["link", "add", "ul", "type", "bridge"]);
        switch.ip(&["link", "set", "ul", "up"]);
        let mut c = Self {
            switch,
            hosts: Vec::new(),
            router: None,
            tag: id,
            measuring,
        };
        for _ in 0..hosts {
            c.add_host();
        }
        c
    }

    /// One more host on the switch (the next index), its firewall hardened.
    pub fn add_host(&mut self) -> &mut Host {
        let index = u8::try_from(self.hosts.len() + 1).expect("fewer than 254 hosts");
        let ns = Netns::new(&format!("{}-h{index}", self.tag));
        self.plug_underlay(&ns, index, &format!("192.0.2.{index}/24"));
        if !self.measuring {
            harden_firewall(&ns);
        }
        ns.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        self.hosts.push(Host {
            ns,
            containers: Vec::new(),
            files: Scratch::new(&format!("clusterh{index}")),
            index,
            offloads: self.measuring,
        });
        self.hosts.last_mut().expect("just pushed")
    }

    /// Host `index`'s namespace and everything in it go, as a lost machine's would.
    pub fn remove_host(&mut self, index: u8) -> Host {
        let at = self
            .hosts
            .iter()
            .position(|h| h.index == index)
            .expect("a host of that index");
        self.hosts.remove(at)
    }

    /// A router on the switch at 192.0.2.254 that routes each `(prefix, host)` to that
    /// host's underlay address, and every host's default route through it.
    pub fn add_router(&mut self, routes: &[(&str, u8)]) {
        let r = Netns::new(&format!("{}-rt", self.tag));
        self.plug_underlay(&r, 254, "192.0.2.254/24");
        r.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        // A VPC's router forwards without telling hosts of a shorter way.
        r.exec(&["sysctl", "-qw", "net.ipv4.conf.all.send_redirects=0"]);
        r.exec(&["sysctl", "-qw", "net.ipv4.conf.ul0.send_redirects=0"]);
        for (prefix, host) in routes {
            r.ip(&["route", "add", prefix, "via", &format!("192.0.2.{host}")]);
        }
        for h in &self.hosts {
            h.ns.ip(&["route", "add", "default", "via", "192.0.2.254"]);
        }
        self.router = Some(r);
    }

    /// etcd on the segment, in a namespace of its own at `ETCD_IP`, and the cluster's
    /// config written into it (`bpfnet cluster init` with `init_args`).
    pub fn add_etcd(&mut self, init_args: &[&str]) -> (Netns, EtcdServer) {
        let ns = Netns::new(&format!("{}-etcd", self.tag));
        self.plug_underlay(&ns, 250, "192.0.2.250/24");
        let etcd = EtcdServer::start(ETCD_IP.into(), Some(&ns.name));
        cluster_init(&ns, &etcd, init_args);
        (ns, etcd)
    }

    /// `add_etcd` over TLS with client certificates (`EtcdServer::start_tls`); the
    /// config is written as root, with root's certificate.
    pub fn add_etcd_tls(&mut self, init_args: &[&str]) -> (Netns, EtcdServer) {
        let ns = Netns::new(&format!("{}-etcd", self.tag));
        self.plug_underlay(&ns, 250, "192.0.2.250/24");
        let etcd = EtcdServer::start_tls(ETCD_IP.into(), Some(&ns.name));
        let root = etcd_flags(&etcd, Some(&etcd.pki().client("root")));
        let mut args: Vec<&str> = root.iter().map(String::as_str).collect();
        args.extend_from_slice(init_args);
        cluster_init(&ns, &etcd, &args);
        (ns, etcd)
    }

    /// Give every host a bridge br0 with `10.244.i.1/24`.
    pub fn add_bridges(&self) {
        for h in &self.hosts {
            add_bridge(&h.ns, BRIDGE, &format!("10.244.{}.1/24", h.index));
        }
    }

    /// Plug `ns` into the switch as `ul0` with `cidr` (its port `p{index}`).
    pub fn plug_underlay(&self, ns: &Netns, index: u8, cidr: &str) {
        let port = format!("p{index}");
        // A removed host's namespace goes asynchronously, and its port with it.
        crate::wait_for(
            &format!("the previous {port} gone"),
            Duration::from_secs(10),
            || {
                !std::process::Command::new("ip")
                    .args(["-n", &self.switch.name, "link", "show", &port])
                    .output()
                    .expect("ip link show runs")
                    .status
                    .success()
            },
        );
        self.switch.ip(&[
            "link", "add", &port, "type", "veth", "peer", "name", UNDERLAY, "netns", &ns.name,
        ]);
        self.switch
            .ip(&["link", "set", &port, "master", "ul", "up"]);
        ns.ip(&["addr", "add", cidr, "dev", UNDERLAY]);
        ns.ip(&["link", "set", UNDERLAY, "up"]);
        if !self.measuring {
            ns.exec(&["ethtool", "-K", UNDERLAY, "tx", "off", "rx", "off"]);
        }
    }
}

/// The MAC of interface `dev` in `ns`.
pub fn mac_of(ns: &Netns, dev: &str) -> [u8; 6] {
    let text = ns.output(&["cat", &format!("/sys/class/net/{dev}/address")]);
    let bytes: Vec<u8> = text
        .trim()
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).expect("a MAC byte"))
        .collect();
    bytes.try_into().expect("six bytes")
}

/// Send, from `ns` out of its underlay interface, a VXLAN datagram with outer source
/// `outer_src` (spoofed or its own) to host `to`'s underlay address and MAC, network
/// identifier `vni`, carrying `inner` (an Ethernet frame from `packet`); the frame's
/// source MAC is `ns`'s own.
pub fn send_vxlan(ns: &Netns, outer_src: Ipv4Addr, to: &Host, vni: u32, inner: &[u8]) {
    let mut frame = crate::packet::vxlan(outer_src.octets(), to.underlay_ip().octets(), vni, inner);
    frame[0..6].copy_from_slice(&mac_of(&to.ns, UNDERLAY));
    frame[6..12].copy_from_slice(&mac_of(ns, UNDERLAY));
    crate::raw::send_l2(ns, UNDERLAY, &frame).expect("the VXLAN frame is sent");
}

/// `--etcd-cacert CA` for a TLS etcd, and `--etcd-cert`, `--etcd-key` for `cert`.
pub fn etcd_flags(etcd: &EtcdServer, cert: Option<&ClientCert>) -> Vec<String> {
    let mut args = Vec::new();
    if let Some(ca) = etcd.flags().cacert {
        args.extend(["--etcd-cacert".into(), ca.display().to_string()]);
    }
    if let Some(c) = cert {
        args.extend([
            "--etcd-cert".into(),
            c.cert.display().to_string(),
            "--etcd-key".into(),
            c.key.display().to_string(),
        ]);
    }
    args
}

/// `bpfnet cluster init --etcd URL ARGS` from namespace `ns`, which must succeed.
pub fn cluster_init(ns: &Netns, etcd: &EtcdServer, args: &[&str]) {
    let url = etcd.url();
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net={}", ns.path()))
        .arg(crate::daemon::bin())
        .args(["cluster", "init", "--etcd", &url])
        .args(args)
        .output()
        .expect("bpfnet cluster init runs");
    assert!(
        out.status.success(),
        "bpfnet cluster init: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
