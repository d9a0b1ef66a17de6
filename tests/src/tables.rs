//! Shared pieces of the NAT tables: the fixture's addresses, a host with published
//! ports and an SNAT range, and a step that checks verdict, checksums and counters.
use std::net::IpAddr;

use bpfnet::{conntrack, datapath::Hook};
use common::{
    Backend, Be16, Be32, Config, CtKey, CtValue, IFACE_UPLINK, PROTO_TCP, PROTO_UDP, PublishedKey,
    Reason, TcpState,
};

use crate::{
    fixture::{Fixture, TC_ACT_SHOT},
    packet::{Addr, View},
};

pub const HOST: [u8; 4] = [192, 0, 2, 1];
pub const ROUTER: [u8; 4] = [192, 0, 2, 2];
pub const BRIDGE_IP: [u8; 4] = [172, 17, 0, 1];
pub const C1: [u8; 4] = [172, 17, 0, 4];
pub const C2: [u8; 4] = [172, 17, 0, 5];
pub const SERVER: [u8; 4] = [198, 51, 100, 2];
pub const PORTS: (u16, u16) = (61000, 61999);

pub fn ip(a: [u8; 4]) -> Be32 {
    Be32::from_bytes(a)
}

pub fn setup(fx: &mut Fixture, ports: (u16, u16)) {
    let m = &mut fx.dp.maps;
    m.ifaces
        .insert(fx.uplink, IFACE_UPLINK, 0)
        .expect("uplink role");
    m.host_ips.insert(ip(HOST), 0, 0).expect("host ip");
    m.host_ips.insert(ip(BRIDGE_IP), 0, 0).expect("bridge ip");
    set_ports(fx, ports);
    let key = PublishedKey::new(Be32::ZERO, Be16::new(8038), PROTO_TCP);
    let backend = Backend::new(ip(C1), Be16::new(8080));
    fx.dp
        .maps
        .published
        .insert(key, backend, 0)
        .expect("publish");
    let udp_key = PublishedKey {
        proto: PROTO_UDP,
        ..key
    };
    fx.dp
        .maps
        .published
        .insert(udp_key, backend, 0)
        .expect("publish udp");
}

pub fn set_ports(fx: &mut Fixture, (min, max): (u16, u16)) {
    let cfg = Config {
        snat_port_min: min,
        snat_port_max: max,
        ..Config::default()
    };
    fx.dp.maps.config.set(0, cfg, 0).expect("config");
}

/// Limit the ICMP errors the datapath answers itself as `limit` says.
pub fn set_icmp_limit(fx: &mut Fixture, limit: common::IcmpLimit) {
    fx.dp.maps.icmp_limit.set(0, limit, 0).expect("icmp limit");
}

/// Run, require `verdict`, valid checksums and the counters; return the output frame.
pub fn step(
    fx: &mut Fixture,
    name: &str,
    hook: Hook,
    frame: &[u8],
    verdict: u32,
    counted: &[Reason],
) -> Vec<u8> {
    let (v, out) = fx.run_counted(name, hook, frame, counted);
    assert_eq!(v, verdict, "{name}: verdict");
    if verdict != TC_ACT_SHOT
        && let Err(e) = View(&out).verify_checksums()
    {
        panic!("{name}: {e}");
    }
    out
}

pub fn snat_port(name: &str, out: &[u8], from: [u8; 4]) -> u16 {
    let (src, port) = View(out).src();
    assert_eq!(src, from, "{name}: masqueraded source address");
    assert!(
        (PORTS.0..=PORTS.1).contains(&port),
        "{name}: source port {port} outside {PORTS:?}"
    );
    port
}

/// Every entry of both CT tables.
pub fn entries(fx: &Fixture) -> Vec<(CtKey, CtValue)> {
    let m = &fx.dp.maps;
    m.ct.iter()
        .chain(m.ct_new.iter())
        .filter_map(Result::ok)
        .collect()
}

pub fn flow_state(fx: &Fixture, orig: (Addr, Addr, u8)) -> TcpState {
    let flows = conntrack::flows(entries(fx));
    let f = flows
        .iter()
        .find(|f| {
            let t = conntrack::Tuple::from(&f.key);
            let (src, dst) = (IpAddr::from(orig.0.0), IpAddr::from(orig.1.0));
            (t.src, t.src_port, t.dst, t.dst_port, f.key.proto)
                == (src, orig.0.1, dst, orig.1.1, orig.2)
        })
        .unwrap_or_else(|| panic!("no flow {orig:?}"));
    assert!(f.reply.is_some(), "flow {orig:?} has its reply entry");
    f.tcp_state()
}
