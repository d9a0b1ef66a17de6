//! probe
use std::time::Instant;

use bpfnet::datapath::Hook;
use bpfnet_tests::{
    fixture::with_fixture,
    packet::{TCP_SYN, tcp},
    require_root,
    tables::{C1, HOST, PORTS, SERVER, entries, setup},
};

#[test]
fn probe() {
    if !require_root() {
        return;
    }
    with_fixture("probe", 65536, |fx| {
        setup(fx, PORTS);
        let f = tcp((SERVER, 1), (HOST, 9999), TCP_SYN, b"");
        let t = Instant::now();
        for _ in 0..100_000 {
            fx.run(Hook::FromUplink, &f);
        }
        eprintln!("test_run uplink pass: {:?}/frame", t.elapsed() / 100_000);
        let t = Instant::now();
        for i in 0..20_000u16 {
            let f = tcp((C1, 1000 + i % 50000), (SERVER, 80), TCP_SYN, b"");
            fx.run(Hook::FromContainer, &f);
        }
        eprintln!("test_run snat: {:?}/frame", t.elapsed() / 20_000);
        let t = Instant::now();
        for _ in 0..1000 {
            let _ = fx.stats();
        }
        eprintln!("stats: {:?}", t.elapsed() / 1000);
        let t = Instant::now();
        let n = entries(fx).len();
        eprintln!("entries {n}: {:?}", t.elapsed());
        let t = Instant::now();
        let keys: Vec<_> = fx.dp.maps.ct_new.keys().filter_map(Result::ok).collect();
        eprintln!("keys {}: {:?}", keys.len(), t.elapsed());
        let t = Instant::now();
        for k in &keys {
            let _ = fx.dp.maps.ct_new.remove(k);
        }
        eprintln!("remove: {:?}", t.elapsed());
    });
}
