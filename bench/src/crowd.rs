//! A crowd of endpoints: N veths (their peers in a namespace of their own) on networks of
//! their own, each attached by the daemon and registered as an endpoint, as N containers
//! would be. A Linux bridge takes at most 1,024 ports (Docker's networks have the same
//! limit), so the crowd fills as many networks of `PER_NETWORK` as it needs: `crowd0`
//! (10.128.0.1/16), `crowd1` (10.129.0.1/16)... Removed on drop.
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
use bpfnet_tests::{netns::Netns, topo::Topology};

/// Endpoints per network (a bridge takes 1,024 ports).
const PER_NETWORK: usize = 1000;

/// The crowd's networks, made before the daemon starts (it must be told to manage them).
pub(crate) struct Networks {
    host: String,
    n: usize,
    peers: Netns,
}

pub(crate) struct Crowd {
    _nets: Networks,
    /// Seconds until the daemon had attached every veth, and to register every endpoint.
    pub attach_s: f64,
    pub register_s: f64,
}

fn veth(i: usize) -> String {
    format!("ce{i}")
}

fn bridge(net: usize) -> String {
    format!("crowd{net}")
}

/// The i-th endpoint's network and address: 10.(128 + network).x.y from .0.2 on.
fn place(i: usize) -> (usize, Ipv4Addr) {
    let net = i / PER_NETWORK;
    let [_, _, a, b] = (2 + (i % PER_NETWORK) as u32).to_be_bytes();
    (net, Ipv4Addr::new(10, 128 + net as u8, a, b))
}

/// Run `lines` as one `ip -batch` inside `ns`.
fn ip_batch(ns: &str, what: &str, lines: impl Iterator<Item = String>) -> Result<()> {
    let path = std::env::temp_dir().join(format!("bpfnet-bench-{what}-{}", std::process::id()));
    fs::write(&path, lines.collect::<Vec<_>>().join("\n") + "\n")?;
    let out = std::process::Command::new("ip")
        .args(["-n", ns, "-batch"])
        .arg(&path)
        .output()
        .context("run ip -batch")?;
    let _unused: Result<_, _> = fs::remove_file(&path);
    if !out.status.success() {
        bail!(
            "ip -n {ns} -batch ({what}): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl Networks {
    /// The bridges (with their addresses) `n` endpoints need, in the bench's host.
    pub(crate) fn make(t: &Topology, n: usize) -> Result<Self> {
        let peers = Netns::new(&format!("{}-crowd", t.host.name));
        let host = t.host.name.clone();
        let nets = Self { host, n, peers };
        ip_batch(
            &nets.host,
            "crowd-bridges",
            (0..nets.count()).flat_map(|j| {
                let b = bridge(j);
                [
                    format!("link add {b} type bridge"),
                    format!("addr add 10.{}.0.1/16 dev {b}", 128 + j),
                    format!("link set {b} up"),
                ]
            }),
        )?;
        Ok(nets)
    }

    fn count(&self) -> usize {
        self.n.div_ceil(PER_NETWORK)
    }

    /// `--bridge` for each of the crowd's networks.
    pub(crate) fn daemon_args(&self) -> Vec<String> {
        (0..self.count())
            .flat_map(|j| ["--bridge".to_string(), bridge(j)])
            .collect()
    }
}

impl Drop for Networks {
    fn drop(&mut self) {
        // The pairs go with the peers' namespace; the bridges are removed here.
        let _unused: Result<_, _> = ip_batch(
            &self.host,
            "crowd-del",
            (0..self.count()).map(|j| format!("link del {}", bridge(j))),
        );
    }
}

impl Crowd {
    /// A veth for each endpoint on its network, waited for until the daemon (managing
    /// `nets`) attached each, then registered one by one through the control API.
    pub(crate) fn add(t: &Topology, nets: Networks) -> Result<Self> {
        let n = nets.n;
        let start = Instant::now();
        ip_batch(
            &nets.host,
            "crowd-add",
            (0..n).flat_map(|i| {
                let v = veth(i);
                let b = bridge(place(i).0);
                [
                    format!(
                        "link add {v} type veth peer name p{i} netns {}",
                        nets.peers.name
                    ),
                    format!("link set {v} master {b} up"),
                ]
            }),
        )?;
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
        let start = Instant::now();
        for i in 0..n {
            let (net, addr) = place(i);
            let [_, b, c, d] = addr.octets();
            let req = Request::EndpointAdd {
                bridge: bridge(net),
                veth: veth(i),
                ip: Ipv4Cidr::new(addr, 16),
                ip6: Vec::new(),
                mac: Some(Mac([0x02, 0xce, 0, b, c, d])),
            };
            client::call(&t.files.socket, &req)
                .with_context(|| format!("register endpoint {addr} on {}", veth(i)))?;
        }
        Ok(Self {
            _nets: nets,
            attach_s,
            register_s: start.elapsed().as_secs_f64(),
        })
    }
}
