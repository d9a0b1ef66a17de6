//! The end-to-end topology: client ns (192.0.2.2) — uplink — host ns with a bridge
//! (172.17.0.1/16) — container ns (172.17.0.4), each test with its own names, pins and
//! state, all removed on drop.
use std::{
    fs,
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
};

use crate::{daemon::Daemon, netns::Netns, unique};

pub const HOST_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
pub const BRIDGE_IP: Ipv4Addr = Ipv4Addr::new(172, 17, 0, 1);
pub const CONTAINER_IP: Ipv4Addr = Ipv4Addr::new(172, 17, 0, 4);
pub const UPLINK: &str = "up0";
pub const BRIDGE: &str = "br0";
pub const VETH: &str = "vc0";

pub struct Topology {
    pub client: Netns,
    pub host: Netns,
    pub container: Netns,
    pub pin_dir: PathBuf,
    pub state_dir: PathBuf,
    pub socket: PathBuf,
}

impl Topology {
    /// Build the namespaces and links for test `tag` (a few characters).
    pub fn new(tag: &str) -> Self {
        let id = unique(tag);
        let tmp = std::env::temp_dir().join(format!("bpfnet-test-{id}"));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp).expect("create test temp dir");
        let t = Self {
            client: Netns::new(&format!("{id}-cli")),
            host: Netns::new(&format!("{id}-host")),
            container: Netns::new(&format!("{id}-ctr")),
            pin_dir: PathBuf::from(format!("/sys/fs/bpf/bpfnet-test-{id}")),
            state_dir: tmp.join("state"),
            socket: tmp.join("bpfnet.sock"),
        };
        let _ = fs::remove_dir_all(&t.pin_dir);
        let (h, c, k) = (&t.host, &t.client, &t.container);
        h.ip(&[
            "link", "add", UPLINK, "type", "veth", "peer", "name", "eth0", "netns", &c.name,
        ]);
        h.ip(&["addr", "add", "192.0.2.1/24", "dev", UPLINK]);
        h.ip(&["link", "set", UPLINK, "up"]);
        c.ip(&["addr", "add", "192.0.2.2/24", "dev", "eth0"]);
        c.ip(&["link", "set", "eth0", "up"]);
        c.ip(&["route", "add", "default", "via", "192.0.2.1"]);
        h.ip(&["link", "add", BRIDGE, "type", "bridge"]);
        h.ip(&["addr", "add", "172.17.0.1/16", "dev", BRIDGE]);
        h.ip(&["link", "set", BRIDGE, "up"]);
        h.ip(&[
            "link", "add", VETH, "type", "veth", "peer", "name", "eth0", "netns", &k.name,
        ]);
        h.ip(&["link", "set", VETH, "master", BRIDGE, "up"]);
        k.ip(&["addr", "add", "172.17.0.4/16", "dev", "eth0"]);
        k.ip(&["link", "set", "eth0", "up"]);
        k.ip(&["route", "add", "default", "via", "172.17.0.1"]);
        t
    }

    /// What Docker's users run into: conntrack told to stay out, forwarding dropped.
    pub fn harden_host_firewall(&self) {
        self.host.exec(&[
            "iptables",
            "-t",
            "raw",
            "-A",
            "PREROUTING",
            "-j",
            "CT",
            "--notrack",
        ]);
        self.host.exec(&["iptables", "-P", "FORWARD", "DROP"]);
    }

    pub fn start_daemon(&self) -> Daemon {
        Daemon::start(
            &self.host.path(),
            &self.socket,
            &[
                "--bridge",
                BRIDGE,
                "--uplink",
                UPLINK,
                "--pin-dir",
                self.pin_dir.to_str().expect("utf-8 path"),
                "--state-dir",
                self.state_dir.to_str().expect("utf-8 path"),
                "--no-docker",
            ],
        )
    }

    pub fn host_addr(port: u16) -> SocketAddr {
        SocketAddr::from((HOST_IP, port))
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        // Namespaces go with their own Drop (taking the links and so the TCX links with
        // them); the pins and the temp dir are ours.
        let _ = fs::remove_dir_all(&self.pin_dir);
        if let Some(tmp) = self.socket.parent() {
            let _ = fs::remove_dir_all(tmp);
        }
    }
}
