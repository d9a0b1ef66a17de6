//! A crowd of endpoints: N veths on the bench's bridge (their peers in a namespace of
//! their own), each attached by the daemon and registered as an endpoint, as N containers
//! would be. Removed on drop.
use std::{
    fs,
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use bpfnet::{
    api::{Request, client},
    endpoint::{Ipv4Cidr, Mac},
};
use bpfnet_tests::{
    netns::{Netns, sh},
    topo::{BRIDGE, Topology},
};

pub struct Crowd {
    host: String,
    n: usize,
    _peers: Netns,
    /// Seconds until the daemon had attached every veth, and to register every endpoint.
    pub attach_s: f64,
    pub register_s: f64,
}

fn veth(i: usize) -> String {
    format!("ce{i}")
}

/// The i-th crowd address: 172.17.100.0 onwards, clear of the bench's containers.
fn address(i: usize) -> Ipv4Addr {
    let [_, _, a, b] = (u32::from_be_bytes([0, 0, 100, 0]) + i as u32).to_be_bytes();
    Ipv4Addr::new(172, 17, a, b)
}

/// Run `lines` as one `ip -batch` inside `ns`.
fn ip_batch(ns: &str, what: &str, lines: impl Iterator<Item = String>) -> Result<()> {
    let path = std::env::temp_dir().join(format!("bpfnet-bench-{what}-{}", std::process::id()));
    fs::write(&path, lines.collect::<Vec<_>>().join("\n") + "\n")?;
    let file = path.to_string_lossy().into_owned();
    sh(&["ip", "-n", ns, "-batch", &file]);
    let _ = fs::remove_file(&path);
    Ok(())
}

impl Crowd {
    /// `n` veths on the bench bridge, waited for until the daemon attached each, then
    /// registered one by one through the control API.
    pub fn add(t: &Topology, n: usize) -> Result<Self> {
        let peers = Netns::new(&format!("{}-crowd", t.host.name));
        let start = Instant::now();
        let host = t.host.name.clone();
        ip_batch(
            &host,
            "crowd-add",
            (0..n).flat_map(|i| {
                let v = veth(i);
                [
                    format!("link add {v} type veth peer name p{i} netns {}", peers.name),
                    format!("link set {v} master {BRIDGE} up"),
                ]
            }),
        )?;
        let crowd = |attach_s, register_s| Self {
            host: host.clone(),
            n,
            _peers: peers,
            attach_s,
            register_s,
        };
        let links = t.files.pin_dir.join("links");
        let deadline = Instant::now() + Duration::from_secs(120 + n as u64 / 20);
        loop {
            let attached = fs::read_dir(&links)
                .with_context(|| format!("cannot list {}", links.display()))?
                .filter_map(Result::ok)
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with("from_container@")
                })
                .count();
            if attached >= n + 2 {
                break;
            }
            if Instant::now() > deadline {
                bail!("the daemon attached {attached} of {} veths", n + 2);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let attach_s = start.elapsed().as_secs_f64();
        let mut c = crowd(attach_s, 0.0);
        let start = Instant::now();
        for i in 0..n {
            let [_, _, a, b] = address(i).octets();
            let req = Request::EndpointAdd {
                bridge: BRIDGE.into(),
                veth: veth(i),
                ip: Ipv4Cidr {
                    addr: address(i),
                    len: 16,
                },
                mac: Some(Mac([0x02, 0xce, 0, 0, a, b])),
            };
            client::call(&t.files.socket, &req)
                .with_context(|| format!("register endpoint {} on {}", address(i), veth(i)))?;
        }
        c.register_s = start.elapsed().as_secs_f64();
        Ok(c)
    }
}

impl Drop for Crowd {
    fn drop(&mut self) {
        // The peers' namespace goes with `_peers`, taking every pair with it; deleting
        // the host ends first spares the daemon one event per pair later.
        let _ = ip_batch(
            &self.host,
            "crowd-del",
            (0..self.n).map(|i| format!("link del {}", veth(i))),
        );
    }
}
