//! A LAN behind one uplink (pipework style), each test with its own names, removed on
//! drop:
//!
//! ```text
//! LAN hosts (203.0.113.2, .3, .4, ...) — switch: a plain bridge in a namespace of its own
//!   — the host's lan0, a port of the managed bridge brlan (203.0.113.1/24)
//!   host: brlan — vl0: container (203.0.113.50), a registered endpoint
//! ```
//!
//! Every LAN host reaches the host through the same port, lan0, so whatever the datapath
//! does there it does to all of them. The host is hardened (notrack, FORWARD DROP through
//! bridge netfilter); echo servers answer on port 7000 in the container and 7001 on
//! every LAN host.
use std::{
    net::{Ipv4Addr, SocketAddr},
    path::Path,
    process::Command,
    time::Duration,
};

use bpfnet::api::Program;

use crate::{
    daemon::{Daemon, cli_ok, ls},
    echo::{EchoServer, Server},
    netns::Netns,
    scratch::Scratch,
    topo::{add_bridge, harden_firewall, plug},
    unique, wait_for,
};

pub const LAN_BRIDGE: &str = "brlan";
/// The host's port on the LAN's switch.
pub const LAN_UPLINK: &str = "lan0";
pub const LAN_VETH: &str = "vl0";
pub const LAN_HOST_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
pub const LAN_CONTAINER_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 50);
pub const CONTAINER_PORT: u16 = 7000;
pub const PEER_PORT: u16 = 7001;
/// The switch's bridge, in its own namespace.
const SWITCH: &str = "lan";

/// How the host's wire to the LAN is made, and how the daemon learns it is an uplink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    /// A veth, named with `--uplink`, a port of brlan before the daemon starts.
    Named,
    /// A veth named with `--uplink` that appears, and is enslaved to brlan, while the
    /// daemon runs (followed through rtnetlink).
    NamedLater,
    /// No `--uplink`: every interface is an uplink, and the LAN wire is found as a port of
    /// a managed bridge that is no veth: a VXLAN device (the LAN stretched over an
    /// underlay, 192.0.2.0/24) whose other end is a port of the switch.
    Found,
}

pub struct Lan {
    // Declared first, so dropped first: servers and daemon go before their namespaces.
    _servers: Vec<Server>,
    _daemon: Daemon,
    pub host: Netns,
    pub switch: Netns,
    /// The LAN hosts, `peer_ip(i)` each.
    pub peers: Vec<Netns>,
    pub container: Netns,
    pub files: Scratch,
}

impl Lan {
    /// The LAN of test `tag` (one word) with `peers` LAN hosts, its wire made as `wire`
    /// says, the daemon running and the container registered.
    pub fn new(tag: &str, wire: Wire, peers: usize) -> Self {
        let id = unique(tag);
        let host = Netns::new(&format!("{id}-host"));
        let switch = Netns::new(&format!("{id}-sw"));
        let container = Netns::new(&format!("{id}-ctr"));
        let files = Scratch::new(tag);
        harden_firewall(&host);
        add_bridge(&host, LAN_BRIDGE, "203.0.113.1/24");
        switch.ip(&["link", "add", SWITCH, "type", "bridge"]);
        switch.ip(&["link", "set", SWITCH, "up"]);
        let peers: Vec<Netns> = (0..peers)
            .map(|i| {
                let peer = Netns::new(&format!("{id}-p{i}"));
                let cidr = format!("{}/24", Self::peer_ip(i));
                plug(
                    &switch,
                    (SWITCH, &format!("p{i}")),
                    &peer,
                    ("eth0", &cidr),
                    None,
                );
                peer
            })
            .collect();
        plug(
            &host,
            (LAN_BRIDGE, LAN_VETH),
            &container,
            ("eth0", "203.0.113.50/24"),
            None,
        );
        let mut servers = vec![EchoServer::start(&container, CONTAINER_PORT)];
        servers.extend(peers.iter().map(|p| EchoServer::start(p, PEER_PORT)));

        match wire {
            Wire::Named => wire_veth(&host, &switch),
            Wire::Found => wire_vxlan(&host, &switch),
            Wire::NamedLater => {}
        }
        let mut args = files.daemon_args();
        args.extend(["--bridge", LAN_BRIDGE, "--no-docker"].map(String::from));
        if wire != Wire::Found {
            args.extend(["--uplink", LAN_UPLINK].map(String::from));
        }
        let daemon = Daemon::start(&host.path(), &files.socket, &args);
        let mac = mac_string(&container, "eth0");
        cli_ok(
            &files.socket,
            &[
                "endpoint",
                "add",
                "--bridge",
                LAN_BRIDGE,
                "--veth",
                LAN_VETH,
                "--ip",
                "203.0.113.50/24",
                "--mac",
                &mac,
            ],
        );
        let lan = Self {
            _servers: servers,
            _daemon: daemon,
            host,
            switch,
            peers,
            container,
            files,
        };
        if wire == Wire::NamedLater {
            wire_veth(&lan.host, &lan.switch);
        }
        lan.await_wire();
        lan
    }

    /// The address of LAN host `i`: 203.0.113.2 onwards.
    pub fn peer_ip(i: usize) -> Ipv4Addr {
        Ipv4Addr::new(203, 0, 113, 2 + u8::try_from(i).expect("a few LAN hosts"))
    }

    pub fn sock(&self) -> &Path {
        &self.files.socket
    }

    pub fn container_addr() -> SocketAddr {
        SocketAddr::from((LAN_CONTAINER_IP, CONTAINER_PORT))
    }

    /// Until lan0 carries a bpfnet program and the first LAN host's ping reaches the
    /// container: the daemon has followed the wire. (Whether it did so rightly is for the
    /// test to say.)
    fn await_wire(&self) {
        let wait = Duration::from_secs(10);
        wait_for("lan0 to carry a bpfnet program", wait, || {
            !self.programs_on(LAN_UPLINK).is_empty()
        });
        wait_for(
            "the first LAN host's ping to reach the container",
            wait,
            || pings(&self.peers[0], LAN_CONTAINER_IP),
        );
    }

    /// The bpfnet programs attached to `dev` (`bpfnet ls`).
    pub fn programs_on(&self, dev: &str) -> Vec<Program> {
        ls(self.sock())
            .attached
            .into_iter()
            .filter(|(i, _)| i == dev)
            .map(|(_, p)| p)
            .collect()
    }
}

/// The host's lan0 as a veth whose other end is a port of the switch; lan0 a port of
/// brlan.
fn wire_veth(host: &Netns, switch: &Netns) {
    switch.ip(&[
        "link", "add", "up0", "type", "veth", "peer", "name", LAN_UPLINK, "netns", &host.name,
    ]);
    switch.ip(&["link", "set", "up0", "master", SWITCH, "up"]);
    host.ip(&["link", "set", LAN_UPLINK, "master", LAN_BRIDGE, "up"]);
}

/// The host's lan0 as a VXLAN device (VNI 42) over the underlay veth und0 (192.0.2.1),
/// whose other end (192.0.2.2) carries the switch's end of the tunnel, a port of the
/// switch. The underlay's MTU leaves the LAN its 1500 bytes.
fn wire_vxlan(host: &Netns, switch: &Netns) {
    switch.ip(&[
        "link", "add", "und", "type", "veth", "peer", "name", "und0", "netns", &host.name,
    ]);
    for (ns, dev, addr, remote) in [
        (switch, "und", "192.0.2.2", "192.0.2.1"),
        (host, "und0", "192.0.2.1", "192.0.2.2"),
    ] {
        ns.ip(&["link", "set", dev, "mtu", "1550", "up"]);
        ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", dev]);
        let vx = if dev == "und" { "vx" } else { LAN_UPLINK };
        ns.ip(&[
            "link", "add", vx, "type", "vxlan", "id", "42", "local", addr, "remote", remote,
            "dstport", "4789", "dev", dev,
        ]);
        let bridge = if dev == "und" { SWITCH } else { LAN_BRIDGE };
        ns.ip(&["link", "set", vx, "master", bridge, "up"]);
    }
}

/// `dev`'s MAC in `ns`, as `ip` and the CLI write it.
pub fn mac_string(ns: &Netns, dev: &str) -> String {
    ns.mac(dev)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Whether one ping from `ns` to `to` is answered within two seconds.
pub fn pings(ns: &Netns, to: Ipv4Addr) -> bool {
    Command::new("ip")
        .args(["netns", "exec", &ns.name, "ping", "-n", "-c1", "-W2"])
        .arg(to.to_string())
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The MAC `ns`'s neighbour table holds for `ip` on `dev` (None: no entry with one).
pub fn neighbour_mac(ns: &Netns, ip: Ipv4Addr, dev: &str) -> Option<String> {
    let out = Command::new("ip")
        .args(["-n", &ns.name, "neigh", "show"])
        .arg(ip.to_string())
        .args(["dev", dev])
        .output()
        .expect("ip neigh runs");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split("lladdr ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .map(str::to_string)
}
