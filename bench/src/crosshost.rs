//! Across hosts: two hosts on one underlay segment, a container on each (10.244.0.2 on
//! host 1, 10.244.1.2 on host 2), and the ways one reaches the other, in interleaved
//! rounds: `routed` (a kernel route on each host to the other's prefix: the baseline),
//! `host-gw` and `vxlan` (bpfnet, each host a node of an etcd cluster), `kernel vxlan`
//! (a VXLAN device with a route, a neighbour and an FDB entry per peer: flannel's way).
//! Dual stack: the containers have IPv6 addresses too (`fd00:10:244:0::2` and
//! `fd00:10:244:1::2`), for the IPv6 rows: bpfnet carries them over the IPv4 underlay;
//! the kernel's `routed` baseline routes them to the peer's underlay IPv6 address
//! (`fd00:192:0:2::i`, the kernel has no IPv6 route by an IPv4 next hop), `kernel vxlan`
//! through its device to the peer's prefix's first address, a permanent neighbour.
//!
//! The host-to-remote-container rows have host 1 itself as the client.
use std::{
    collections::BTreeMap,
    fs,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Duration,
};

use anyhow::{Result, ensure};
use bpfnet_tests::{
    cluster::{Cluster, ETCD_IP, cluster_init},
    daemon::Daemon,
    etcd::EtcdServer,
    netns::Netns,
    topo::add_bridge,
};

use crate::{Plan, iperf, load, median, or_failed, pin::Pin, report::Row};

/// The ways across, in the order each round takes them.
pub(crate) const MODES: [&str; 4] = ["routed", "host-gw", "vxlan", "kernel vxlan"];

const ECHO: u16 = 9300;
/// The IPv6 echo servers' port (iperf3's server takes both families).
const ECHO6: u16 = 9306;
const IPERF: u16 = 5203;
/// The server container, on host 2.
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 2);
/// The server container's IPv6 address.
const SERVER6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0x244, 1, 0, 0, 0, 2);
/// etcd key prefixes of the two bpfnet clusters.
const HOST_GW: &str = "/gw";
const VXLAN: &str = "/vx";
/// The kernel VXLAN device and its MAC on host `i` (flannel's `flannel.1`).
const KERNEL_VXLAN: &str = "vx0";

fn kernel_vxlan_mac(i: u8) -> String {
    format!("02:66:6c:00:00:{i:02x}")
}

/// The hosts, etcd and the servers, for the whole run.
pub(crate) struct CrossHost {
    c: Cluster,
    etcd: EtcdServer,
    _etcd_ns: Netns,
    _servers: (load::Servers, load::Servers, iperf::Server),
}

/// Host `i`'s prefix: 10.244.(i-1).0/24, its bridge holding the first address.
fn prefix(i: u8) -> String {
    format!("10.244.{}.0/24", i - 1)
}

/// Host `i`'s underlay IPv6 address, for the `routed` baseline's IPv6 routes.
fn underlay6(i: u8) -> String {
    format!("fd00:192:0:2::{i}/64")
}

/// Host `i`'s IPv6 prefix: `fd00:10:244:(i-1)::/64`, its bridge holding the first address.
fn prefix6(i: u8) -> String {
    format!("fd00:10:244:{}::/64", i - 1)
}

impl CrossHost {
    #[expect(
        clippy::unnecessary_wraps,
        reason = "built like the other measures, which `?` their setup"
    )]
    pub(crate) fn new() -> Result<Self> {
        let mut c = Cluster::measuring("xhost", 2);
        for h in &mut c.hosts {
            let i = h.index;
            add_bridge(&h.ns, "br0", &format!("10.244.{}.1/24", i - 1));
            let ns = h.add_container(
                Ipv4Addr::new(10, 244, i - 1, 2),
                24,
                Ipv4Addr::new(10, 244, i - 1, 1),
            );
            ns.exec(&["sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1"]);
            ns.exec(&["sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65000"]);
            let gateway6 = format!("fd00:10:244:{}::1", i - 1);
            let own6 = format!("fd00:10:244:{}::2/64", i - 1);
            ns.ip(&["-6", "addr", "add", &own6, "dev", "eth0", "nodad"]);
            ns.ip(&["-6", "route", "add", "default", "via", &gateway6]);
            h.ns.ip(&[
                "-6",
                "addr",
                "add",
                &format!("{gateway6}/64"),
                "dev",
                "br0",
                "nodad",
            ]);
            h.ns.exec(&["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
            h.ns.ip(&["-6", "addr", "add", &underlay6(i), "dev", "ul0", "nodad"]);
        }
        let etcd_ns = Netns::new(&format!("{}-etcd", c.hosts[0].ns.name));
        c.plug_underlay(&etcd_ns, 250, "192.0.2.250/24");
        let etcd = EtcdServer::start(ETCD_IP.into(), Some(&etcd_ns.name));
        for (prefix, mode) in [(HOST_GW, "host-gw"), (VXLAN, "vxlan")] {
            cluster_init(
                &etcd_ns,
                &etcd,
                &[
                    "--etcd-prefix",
                    prefix,
                    "--cidr",
                    "10.244.0.0/16",
                    "--node-prefix",
                    "24",
                    "--cidr6",
                    "fd00:10:244::/48",
                    "--mode",
                    mode,
                    "--lease-ttl",
                    "3",
                ],
            );
        }
        let server = &c.hosts[1].containers[0];
        let servers = (
            load::Servers::start(server, Ipv4Addr::UNSPECIFIED.into(), ECHO),
            load::Servers::start(server, Ipv6Addr::UNSPECIFIED.into(), ECHO6),
            iperf::Server::start(server, IPERF),
        );
        Ok(Self {
            c,
            etcd,
            _etcd_ns: etcd_ns,
            _servers: servers,
        })
    }

    /// Put mode `mode` in place: its daemons, if any.
    fn setup(&self, mode: &str) -> Result<Vec<Daemon>> {
        let hosts = &self.c.hosts;
        let (h1, h2) = (&hosts[0], &hosts[1]);
        match mode {
            "routed" => {
                h1.ns.ip(&["route", "add", &prefix(2), "via", "192.0.2.2"]);
                h2.ns.ip(&["route", "add", &prefix(1), "via", "192.0.2.1"]);
                h1.ns
                    .ip(&["-6", "route", "add", &prefix6(2), "via", "fd00:192:0:2::2"]);
                h2.ns
                    .ip(&["-6", "route", "add", &prefix6(1), "via", "fd00:192:0:2::1"]);
                Ok(Vec::new())
            }
            "kernel vxlan" => {
                for (me, peer) in [(h1, h2), (h2, h1)] {
                    let (i, j) = (me.index, peer.index);
                    let local = format!("192.0.2.{i}");
                    let gw = format!("10.244.{}.0", j - 1);
                    let mac = kernel_vxlan_mac(j);
                    let ns = &me.ns;
                    ns.ip(&[
                        "link",
                        "add",
                        KERNEL_VXLAN,
                        "type",
                        "vxlan",
                        "id",
                        "1",
                        "local",
                        &local,
                        "dev",
                        "ul0",
                        "dstport",
                        "4789",
                        "nolearning",
                    ]);
                    ns.ip(&["link", "set", KERNEL_VXLAN, "address", &kernel_vxlan_mac(i)]);
                    ns.ip(&["link", "set", KERNEL_VXLAN, "mtu", "1450", "up"]);
                    let own = format!("10.244.{}.0/32", i - 1);
                    ns.ip(&["addr", "add", &own, "dev", KERNEL_VXLAN]);
                    ns.ip(&[
                        "route",
                        "add",
                        &prefix(j),
                        "via",
                        &gw,
                        "dev",
                        KERNEL_VXLAN,
                        "onlink",
                    ]);
                    ns.ip(&[
                        "neigh",
                        "add",
                        &gw,
                        "lladdr",
                        &mac,
                        "dev",
                        KERNEL_VXLAN,
                        "nud",
                        "permanent",
                    ]);
                    ns.exec(&[
                        "bridge",
                        "fdb",
                        "append",
                        &mac,
                        "dev",
                        KERNEL_VXLAN,
                        "dst",
                        &format!("192.0.2.{j}"),
                    ]);
                    let gw6 = format!("fd00:10:244:{}::", j - 1);
                    let own6 = format!("fd00:10:244:{}::/128", i - 1);
                    ns.ip(&["-6", "addr", "add", &own6, "dev", KERNEL_VXLAN, "nodad"]);
                    ns.ip(&[
                        "-6",
                        "route",
                        "add",
                        &prefix6(j),
                        "via",
                        &gw6,
                        "dev",
                        KERNEL_VXLAN,
                        "onlink",
                    ]);
                    ns.ip(&[
                        "-6",
                        "neigh",
                        "add",
                        &gw6,
                        "lladdr",
                        &mac,
                        "dev",
                        KERNEL_VXLAN,
                        "nud",
                        "permanent",
                    ]);
                }
                Ok(Vec::new())
            }
            "host-gw" | "vxlan" => {
                let cluster = if mode == "host-gw" { HOST_GW } else { VXLAN };
                let url = self.etcd.url();
                let mut daemons = Vec::new();
                // One after the other, so each claims its own prefix the first time.
                for h in hosts {
                    daemons.push(h.join(&url, &["--etcd-prefix", cluster]));
                    let (gateway, _) = h.await_prefix();
                    ensure!(
                        gateway == Ipv4Addr::new(10, 244, h.index - 1, 1),
                        "host {} got the prefix of {gateway}",
                        h.index
                    );
                    let (gateway6, _) = h.await_prefix6();
                    ensure!(
                        gateway6
                            == Ipv6Addr::new(
                                0xfd00,
                                0x10,
                                0x244,
                                u16::from(h.index) - 1,
                                0,
                                0,
                                0,
                                1
                            ),
                        "host {} got the IPv6 prefix of {gateway6}",
                        h.index
                    );
                }
                for h in hosts {
                    h.await_peers(1);
                }
                Ok(daemons)
            }
            other => anyhow::bail!("no mode {other}"),
        }
    }

    /// Undo `setup` (after its daemons are dropped).
    fn teardown(&self, mode: &str) {
        for h in &self.c.hosts {
            match mode {
                "routed" => {
                    let other = 3 - h.index;
                    for (family, p) in [("-4", prefix(other)), ("-6", prefix6(other))] {
                        let _unused: Result<_, _> = std::process::Command::new("ip")
                            .args(["-n", &h.ns.name, family, "route", "del", &p])
                            .status();
                    }
                }
                "kernel vxlan" => h.ns.ip(&["link", "del", KERNEL_VXLAN]),
                _ => {
                    // The datapath outlives the daemon: removing its pins detaches it;
                    // its routes for the host stay until `--cleanup`.
                    let _unused: Result<_, _> = std::process::Command::new("ip")
                        .args(["-n", &h.ns.name, "route", "flush", "proto", "98"])
                        .status();
                    let _unused: Result<_, _> = fs::remove_dir_all(&h.files.pin_dir);
                    let _unused: Result<_, _> = fs::remove_dir_all(&h.files.state_dir);
                    if mode == "vxlan" {
                        h.ns.ip(&["link", "del", "bpfnet-vxlan"]);
                    }
                }
            }
        }
    }
}

/// Who the client of a measure is: host 1's container, or host 1 itself.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Client {
    Container,
    Host,
}

/// How one measure runs, from the client's namespace: its metrics' values.
type Run = Box<dyn Fn(&Netns) -> Result<Vec<f64>>>;

/// A measure across hosts: its metrics (name, unit, higher is better), its client and
/// how.
type Measure = (Vec<(&'static str, &'static str, bool)>, Client, Run);

/// A single TCP stream to iperf3 at `to`: Gbit/s.
fn stream(to: SocketAddr, secs: f64, pin: Pin) -> Run {
    Box::new(move |c| iperf::stream(c, to, secs, false, pin).map(|g| vec![g]))
}

/// TCP request/response with the echo server at `to`: per second, and its p99 when
/// `p99`.
fn tcp_rr(to: SocketAddr, dur: Duration, pin: Pin, p99: bool) -> Run {
    Box::new(move |c| {
        load::pin_servers(pin.server());
        let r = load::tcp_rr(c, to, dur, pin.client())?;
        Ok(if p99 {
            vec![r.per_sec, r.p99_us]
        } else {
            vec![r.per_sec]
        })
    })
}

/// UDP request/response with the echo server at `to`: per second.
fn udp_rr(to: SocketAddr, dur: Duration, pin: Pin) -> Run {
    Box::new(move |c| {
        load::pin_servers(pin.server());
        load::udp_rr(c, to, dur, pin.client()).map(|r| vec![r.per_sec])
    })
}

fn measures(plan: &Plan, pin: Pin) -> Vec<Measure> {
    let (secs, dur) = (plan.secs, Duration::from_secs_f64(plan.secs));
    let echo = SocketAddr::from((SERVER, ECHO));
    let echo6 = SocketAddr::from((SERVER6, ECHO6));
    let iperf = SocketAddr::from((SERVER, IPERF));
    let iperf6 = SocketAddr::from((SERVER6, IPERF));
    vec![
        (
            vec![("TCP stream across hosts", "Gbit/s", true)],
            Client::Container,
            stream(iperf, secs, pin),
        ),
        (
            vec![
                ("TCP request/response across hosts", "trans/s", true),
                ("TCP RR p99 across hosts", "µs", false),
            ],
            Client::Container,
            tcp_rr(echo, dur, pin, true),
        ),
        (
            vec![("UDP request/response across hosts", "trans/s", true)],
            Client::Container,
            udp_rr(echo, dur, pin),
        ),
        (
            vec![(
                "TCP connection rate across hosts (4 clients)",
                "conns/s",
                true,
            )],
            Client::Container,
            Box::new(move |c| {
                load::pin_servers(None);
                load::conn_rate(c, echo, 4, dur).map(|r| vec![r.per_sec])
            }),
        ),
        (
            vec![("TCP stream across hosts, IPv6", "Gbit/s", true)],
            Client::Container,
            stream(iperf6, secs, pin),
        ),
        (
            vec![
                ("TCP request/response across hosts, IPv6", "trans/s", true),
                ("TCP RR p99 across hosts, IPv6", "µs", false),
            ],
            Client::Container,
            tcp_rr(echo6, dur, pin, true),
        ),
        (
            vec![("UDP request/response across hosts, IPv6", "trans/s", true)],
            Client::Container,
            udp_rr(echo6, dur, pin),
        ),
        (
            vec![(
                "TCP request/response host to remote container",
                "trans/s",
                true,
            )],
            Client::Host,
            tcp_rr(echo, dur, pin, false),
        ),
        (
            vec![("TCP stream host to remote container", "Gbit/s", true)],
            Client::Host,
            stream(iperf, secs, pin),
        ),
    ]
}

/// Every measure in every mode, `plan.reps` interleaved rounds: the medians.
pub(crate) fn rows(x: &CrossHost, plan: &Plan, pin: Pin, failures: &mut Vec<String>) -> Vec<Row> {
    let tests = measures(plan, pin);
    let client = |who: Client| match who {
        Client::Container => &x.c.hosts[0].containers[0],
        Client::Host => &x.c.hosts[0].ns,
    };
    let mut samples: Vec<BTreeMap<&str, Vec<Vec<f64>>>> =
        tests.iter().map(|_| BTreeMap::new()).collect();
    for rep in 0..plan.reps {
        for mode in MODES {
            eprintln!(
                "[bench] across hosts, round {} of {}: {mode}",
                rep + 1,
                plan.reps
            );
            let daemons = or_failed(
                x.setup(mode).map(Some),
                &format!("across hosts: {mode}: setup"),
                None,
                failures,
            );
            for (i, (names, who, f)) in tests.iter().enumerate() {
                let what = format!("{mode}: {}", names[0].0);
                let v = if daemons.is_some() {
                    or_failed(
                        f(client(*who)),
                        &what,
                        vec![f64::NAN; names.len()],
                        failures,
                    )
                } else {
                    vec![f64::NAN; names.len()]
                };
                eprintln!("[bench]   {what} = {v:?}");
                samples[i].entry(mode).or_default().push(v);
            }
            drop(daemons);
            x.teardown(mode);
        }
    }
    let mut rows = Vec::new();
    for (i, (names, _, _)) in tests.iter().enumerate() {
        for (k, &(test, unit, higher)) in names.iter().enumerate() {
            let values = samples[i]
                .iter()
                .map(|(m, runs)| (m.to_string(), median(runs.iter().map(|r| r[k]).collect())))
                .collect();
            rows.push(Row {
                test: test.to_string(),
                unit: unit.to_string(),
                higher_is_better: higher,
                values,
            });
        }
    }
    rows
}
