//! The floor: what the least eBPF datapath costs per packet on this CPU, measured in
//! the same run and on the same tests as bpfnet's programs. `bench/floor-ebpf` parses
//! Ethernet/IP/TCP or UDP, looks the 5-tuple up in one hash map and redirects; here it
//! is loaded and attached in `direct` mode on the host's uplink (`floor_uplink`, where
//! `from_uplink` runs in `bpfnet` mode) and on both containers' veths
//! (`floor_container`, where `from_container` runs), with a route for every address the
//! tests talk to, so each flow's packets after its first take one lookup and a redirect
//! to the device the routed packet would have left by.
use std::{collections::BTreeSet, net::IpAddr};

use anyhow::{Context as _, Result};
use aya::{
    Ebpf,
    maps::HashMap,
    programs::{LinkOrder, SchedClassifier, TcAttachType, tc::TcAttachOptions},
};
use bpfnet_tests::topo::{
    BRIDGE, CLIENT_IP, CLIENT_IP6, CONTAINER_IP, CONTAINER_IP6, CONTAINER2_IP, CONTAINER2_IP6,
    SERVER_IP, SERVER_IP6, Topology, UPLINK, VETH,
};
use floor_ebpf::Hop;

/// The floor's object, built from `bench/floor-ebpf` by build.rs.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bpfnet-floor"));

/// The floor's programs: on the uplink, on the containers' veths.
pub(crate) const UPLINK_PROGRAM: &str = "floor_uplink";
pub(crate) const CONTAINER_PROGRAM: &str = "floor_container";

/// The floor attached in the host: detached when dropped (TCX links close with it).
pub(crate) struct Floor(Ebpf);

impl Floor {
    /// The ids of the floor's programs (for `cost::snapshot_of`).
    pub(crate) fn ids(&self) -> Result<BTreeSet<u32>> {
        self.0.programs().map(|(_, p)| Ok(p.info()?.id())).collect()
    }
}

/// Load the floor, fill its routes and attach it in `t`'s host (in `direct` mode: the
/// client and the server route the containers' networks through the host).
pub(crate) fn attach(t: &Topology) -> Result<Floor> {
    let to_uplink = Hop {
        ifindex: t.host.ifindex(UPLINK),
        macs: macs(t.client.mac("eth0"), t.host.mac(UPLINK)),
    };
    let to = |veth, ns: &bpfnet_tests::netns::Netns| Hop {
        ifindex: t.host.ifindex(veth),
        macs: macs(ns.mac("eth0"), t.host.mac(BRIDGE)),
    };
    let (to_container, to_container2) = (to(VETH, &t.container), to("vc1", &t.container2));
    let routes: Vec<(IpAddr, Hop)> = vec![
        (CLIENT_IP.into(), to_uplink),
        (SERVER_IP.into(), to_uplink),
        (CLIENT_IP6.into(), to_uplink),
        (SERVER_IP6.into(), to_uplink),
        (CONTAINER_IP.into(), to_container),
        (CONTAINER_IP6.into(), to_container),
        (CONTAINER2_IP.into(), to_container2),
        (CONTAINER2_IP6.into(), to_container2),
    ];
    // The devices are named in the host's namespace: attach from a thread inside it.
    t.host
        .run(move || load(&routes))
        .map(Floor)
        .context("cannot attach the floor")
}

fn load(routes: &[(IpAddr, Hop)]) -> Result<Ebpf> {
    let mut ebpf = Ebpf::load(OBJECT).context("cannot load the floor's object")?;
    for (ip, hop) in routes {
        match ip {
            IpAddr::V4(ip) => route(&mut ebpf, "ROUTES4", ip.octets(), hop)?,
            IpAddr::V6(ip) => route(&mut ebpf, "ROUTES6", ip.octets(), hop)?,
        }
    }
    for (name, devs) in [
        (UPLINK_PROGRAM, &[UPLINK][..]),
        (CONTAINER_PROGRAM, &[VETH, "vc1"][..]),
    ] {
        let prog: &mut SchedClassifier = ebpf
            .program_mut(name)
            .with_context(|| format!("no program {name}"))?
            .try_into()?;
        prog.load().with_context(|| format!("cannot load {name}"))?;
        for dev in devs {
            // Ahead of nothing: `direct` mode attaches no other program.
            let order = TcAttachOptions::TcxOrder(LinkOrder::default());
            prog.attach_with_options(dev, TcAttachType::Ingress, order)
                .with_context(|| format!("cannot attach {name} to {dev}"))?;
        }
    }
    Ok(ebpf)
}

/// Packets to `ip` go by `hop`.
fn route<const N: usize>(ebpf: &mut Ebpf, map: &str, ip: [u8; N], hop: &Hop) -> Result<()> {
    let mut m: HashMap<_, [u8; N], [u8; 16]> = ebpf
        .map_mut(map)
        .with_context(|| format!("no map {map}"))?
        .try_into()?;
    m.insert(ip, hop.to_bytes(), 0)
        .with_context(|| format!("cannot fill {map}"))
}

/// An Ethernet header's addresses: destination, then source.
fn macs(dst: [u8; 6], src: [u8; 6]) -> [u8; 12] {
    let mut m = [0; 12];
    m[..6].copy_from_slice(&dst);
    m[6..].copy_from_slice(&src);
    m
}
