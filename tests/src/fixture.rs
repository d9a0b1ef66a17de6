//! A `BPF_PROG_TEST_RUN` fixture: the datapath loaded with its own pins, run inside a
//! namespace whose routes and permanent neighbours make route lookups deterministic.
//!
//! The namespace has `t0` (the uplink, 192.0.2.1/24, neighbour 192.0.2.2 which is also
//! the gateway to 198.51.100.0/24) and `t1` (the bridge side, 172.17.0.1/16, neighbours
//! 172.17.0.4 and 172.17.0.5).
use std::panic;

use aya::{
    maps::lpm_trie::Key,
    programs::{TestRun as _, TestRunOptions},
};
use bpfnet::datapath::{Datapath, Hook};
use common::{
    Be32, Counter, Endpoint, IFACE_BRIDGE, IFACE_UPLINK, Network, PORT_ENFORCE, Port, Reason,
};

use crate::{netns::Netns, unique};

pub const TC_ACT_OK: u32 = 0;
pub const TC_ACT_SHOT: u32 = 2;
pub const TC_ACT_REDIRECT: u32 = 7;
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
/// The largest frame `BPF_PROG_TEST_RUN` hands an XDP program without multi-buffer
/// support in one buffer (a page less XDP's headroom and the shared-info tailroom).
pub const XDP_MAX_FRAME: usize = 3500;

pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
/// The source MAC of every frame the packet builder makes, and so of the containers.
pub const CONTAINER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
/// The destination MAC of every frame the packet builder makes: the bridge's, so
/// container frames are routed.
pub const BRIDGE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// The container addresses registered on the bridge side (`t1`) by default.
pub const CONTAINERS: [[u8; 4]; 2] = [[172, 17, 0, 4], [172, 17, 0, 5]];
pub const BACKEND_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x04];
pub const OTHER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x05];

pub struct Fixture {
    pub dp: Datapath,
    pub uplink: u32,
    pub bridge: u32,
}

impl Fixture {
    /// Run one frame through `hook` as if it arrived on the matching device.
    pub fn run(&mut self, hook: Hook, frame: &[u8]) -> (u32, Vec<u8>) {
        let ingress = match hook {
            Hook::FromUplink | Hook::FromL3Uplink | Hook::ToTunnel => self.uplink,
            Hook::FromContainer => self.bridge,
        };
        let mut out = vec![0u8; frame.len() + 256];
        // __sk_buff up to and including ifindex: ingress_ifindex at 36, ifindex at 40.
        let mut ctx = [0u8; 44];
        ctx[36..40].copy_from_slice(&ingress.to_ne_bytes());
        ctx[40..44].copy_from_slice(&ingress.to_ne_bytes());
        let opts = TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: Some(&ctx),
            ..Default::default()
        };
        let r =
            self.dp.program(hook).test_run(opts).unwrap_or_else(|e| {
                panic!("BPF_PROG_TEST_RUN of a {}-byte frame: {e}", frame.len())
            });
        out.truncate(r.data_size_out as usize);
        (r.return_value, out)
    }

    /// Run one frame through `xdp_uplink` (`--xdp`'s early drop on the uplink).
    pub fn run_xdp(&mut self, frame: &[u8]) -> u32 {
        assert!(
            frame.len() <= XDP_MAX_FRAME,
            "a {}-byte frame does not fit one XDP buffer",
            frame.len()
        );
        let mut out = vec![0u8; frame.len() + 256];
        // xdp_md: data 0, data_end the frame's length, data_meta 0, then ingress_ifindex:
        // the frame arrives on the uplink, as `run` hands `from_uplink` its frames.
        let mut ctx = [0u8; 24];
        ctx[4..8].copy_from_slice(&u32::try_from(frame.len()).unwrap_or(0).to_ne_bytes());
        ctx[12..16].copy_from_slice(&self.uplink.to_ne_bytes());
        let opts = TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: Some(&ctx),
            ..Default::default()
        };
        let r = self.dp.xdp_program().test_run(opts).unwrap_or_else(|e| {
            panic!(
                "BPF_PROG_TEST_RUN (XDP) of a {}-byte frame: {e}",
                frame.len()
            )
        });
        assert_eq!(
            &out[..r.data_size_out as usize],
            frame,
            "xdp_uplink never changes a frame"
        );
        r.return_value
    }

    /// The host as the daemon leaves it: `t0` an uplink, `t1` a container port of the
    /// network 172.17.0.0/16 (itself the "bridge"), with `ips` registered on it, enforced.
    pub fn managed(&mut self, ips: &[[u8; 4]]) {
        let m = &mut self.dp.maps;
        let port = Port {
            network: self.bridge,
            flags: PORT_ENFORCE,
            bridge_mac: BRIDGE_MAC,
            mac: CONTAINER_MAC,
            // The first address is the port's own (checked without `endpoints_v1`).
            ip: ips.first().map_or(Be32::ZERO, |ip| Be32::from_bytes(*ip)),
        };
        m.ports.insert(self.bridge, port, 0).expect("port");
        m.ifaces
            .insert(self.bridge, IFACE_BRIDGE, 0)
            .expect("bridge role");
        m.ifaces
            .insert(self.uplink, IFACE_UPLINK, 0)
            .expect("uplink role");
        let subnet = Key::new(16, Be32::from_bytes([172, 17, 0, 0]));
        let net = Network {
            bridge: self.bridge,
            flags: 0,
        };
        m.subnets.insert(&subnet, net, 0).expect("subnet");
        let old: Vec<Be32> = m.endpoints.keys().filter_map(Result::ok).collect();
        for ip in old {
            m.endpoints.remove(&ip).expect("remove endpoint");
        }
        for ip in ips {
            let ep = Endpoint::new(self.bridge, self.bridge, CONTAINER_MAC, 0);
            m.endpoints
                .insert(Be32::from_bytes(*ip), ep, 0)
                .expect("endpoint");
        }
    }

    /// Lower the uplink's MTU (the caller runs inside the fixture's namespace).
    pub fn set_uplink_mtu(&mut self, mtu: u16) {
        crate::netns::sh(&["ip", "link", "set", "t0", "mtu", &mtu.to_string()]);
    }

    pub fn stats(&self) -> Vec<(Reason, Counter)> {
        self.dp.maps.stats()
    }

    /// Run a frame and require exactly `counted` to move (by one packet each).
    pub fn run_counted(
        &mut self,
        name: &str,
        hook: Hook,
        frame: &[u8],
        counted: &[Reason],
    ) -> (u32, Vec<u8>) {
        self.counted(name, counted, |fx| fx.run(hook, frame))
    }

    /// Run a frame through `xdp_uplink` and require exactly `counted` to move (by one
    /// packet each: an `XDP_PASS` counts nothing, TC counts it).
    pub fn run_xdp_counted(&mut self, name: &str, frame: &[u8], counted: &[Reason]) -> u32 {
        self.counted(name, counted, |fx| fx.run_xdp(frame))
    }

    /// `run`'s outcome, requiring exactly the counters `counted` to move, by one packet
    /// each.
    fn counted<R>(
        &mut self,
        name: &str,
        counted: &[Reason],
        run: impl FnOnce(&mut Self) -> R,
    ) -> R {
        let before = self.stats();
        let r = run(self);
        for (i, (reason, c)) in self.stats().iter().enumerate() {
            let moved = c.packets - before[i].1.packets;
            let want = u64::from(counted.contains(reason));
            assert_eq!(
                moved,
                want,
                "{name}: counter {} moved by {moved}",
                reason.name()
            );
        }
        r
    }
}

/// Build the namespace, load the datapath (CT map of `ct_entries`) inside it and run `f`;
/// namespace and pins are removed whatever happens.
pub fn with_fixture(tag: &str, ct_entries: u32, f: impl FnOnce(&mut Fixture) + Send + 'static) {
    let id = unique(tag);
    let ns = Netns::new(&format!("{id}-tbl"));
    ns.ip(&["link", "add", "t0", "type", "veth", "peer", "name", "t1"]);
    ns.ip(&["addr", "add", "192.0.2.1/24", "dev", "t0"]);
    ns.ip(&["addr", "add", "172.17.0.1/16", "dev", "t1"]);
    ns.ip(&["link", "set", "t0", "up"]);
    ns.ip(&["link", "set", "t1", "up"]);
    for (ip, mac, dev) in [
        ("192.0.2.2", "02:00:00:00:00:02", "t0"),
        ("172.17.0.4", "02:00:00:00:00:04", "t1"),
        ("172.17.0.5", "02:00:00:00:00:05", "t1"),
    ] {
        ns.ip(&[
            "neigh",
            "add",
            ip,
            "lladdr",
            mac,
            "dev",
            dev,
            "nud",
            "permanent",
        ]);
    }
    ns.ip(&["route", "add", "198.51.100.0/24", "via", "192.0.2.2"]);
    ns.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    // IPv6: the uplink 2001:db8:1::1 with its router ::2 toward the server network
    // 2001:db8:2::/64; the "bridge" holds a ULA network and a routed global one.
    ns.exec(&["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
    for (cidr, dev) in [
        ("2001:db8:1::1/64", "t0"),
        ("fd00:17::1/64", "t1"),
        ("2001:db8:42::1/64", "t1"),
    ] {
        ns.ip(&["-6", "addr", "add", cidr, "dev", dev, "nodad"]);
    }
    for (ip, mac, dev) in [
        ("2001:db8:1::2", "02:00:00:00:00:02", "t0"),
        ("fd00:17::4", "02:00:00:00:00:04", "t1"),
        ("2001:db8:42::7", "02:00:00:00:00:07", "t1"),
    ] {
        ns.ip(&[
            "-6",
            "neigh",
            "add",
            ip,
            "lladdr",
            mac,
            "dev",
            dev,
            "nud",
            "permanent",
        ]);
    }
    ns.ip(&[
        "-6",
        "route",
        "add",
        "2001:db8:2::/64",
        "via",
        "2001:db8:1::2",
    ]);
    let (uplink, bridge) = (ns.ifindex("t0"), ns.ifindex("t1"));
    let pin_dir = format!("/sys/fs/bpf/{id}");
    let pins = pin_dir.clone();
    let result = panic::catch_unwind(panic::AssertUnwindSafe(|| {
        ns.run(move || {
            let sizes = bpfnet::datapath::CtEntries {
                ipv4: ct_entries,
                ipv6: ct_entries,
            };
            let dp = Datapath::load(pins.as_ref(), sizes).expect("datapath loads");
            let mut fx = Fixture { dp, uplink, bridge };
            fx.managed(&CONTAINERS);
            f(&mut fx);
        });
    }));
    let _unused: Result<_, _> = std::fs::remove_dir_all(&pin_dir);
    drop(ns);
    if let Err(e) = result {
        panic::resume_unwind(e);
    }
}
