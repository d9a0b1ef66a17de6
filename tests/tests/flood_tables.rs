//! `BPF_PROG_TEST_RUN`, floods against shared budgets: `--xdp`'s new-flow budget (a
//! random-source flood cannot starve a source prefix that completed a handshake, one
//! prefix cannot take the unproven pool), a container's SNAT quota and its share of the
//! flow tables (no container takes them from the others, no eviction resets a count,
//! nobody outside spends a container's share). Each asserts its control and the named
//! counter.
use std::time::{Duration, Instant};

use Hook::{FromContainer as OUT, FromUplink as IN};
use Reason::*;
use aya::maps::{IterableMap as _, MapType};
use bpfnet::{
    conntrack::Timeouts,
    datapath::{Hook, XdpMode},
};
use bpfnet_tests::{
    fixture::{Fixture, TC_ACT_REDIRECT, TC_ACT_SHOT, XDP_DROP, XDP_PASS, with_fixture},
    packet::{Addr, TCP_ACK, TCP_SYN, tcp, tcp_seq, udp},
    require_root,
    tables::{C1, C2, HOST, PORTS, SERVER, ip, set_ports, setup, step},
};
use common::{Be32, CtTimeouts, Reason};
use rustix::thread::{CpuSet, sched_getaffinity, sched_setaffinity};

/// `flood_budget_v1` in these tests: first packets per CPU per second, a pool of 8 for
/// proven prefixes, 8 for the rest, of which one prefix may take 2.
const BUDGET: u32 = 16;
const POOL: usize = 8;

fn set_budget(fx: &mut Fixture, budget: u32) {
    fx.dp
        .maps
        .flood_budget
        .set(0, budget, 0)
        .expect("flood budget");
}

/// A SYN to the published port, through `xdp_uplink` only: its verdict.
fn syn_xdp(fx: &mut Fixture, src: Addr) -> u32 {
    fx.run_xdp(&tcp(src, (HOST, 8038), TCP_SYN, b""))
}

/// `n` spoofed SYNs to the published port, each from another /24 (198.18.0.0/15, the
/// benchmarking range; through `xdp_uplink` only, nothing leaves): how many passed.
fn random_source_flood(fx: &mut Fixture, first: u16, n: u16) -> usize {
    (first..first + n)
        .filter(|i| {
            let [hi, lo] = i.to_be_bytes();
            syn_xdp(fx, ([198, 18 + (hi & 1), lo, 7], 1024 + *i)) == XDP_PASS
        })
        .count()
}

/// `client`'s handshake with the published port through TC, to the last ACK that
/// promotes the flow.
fn handshake(fx: &mut Fixture, client: Addr) {
    step(
        fx,
        "the client's SYN",
        IN,
        &tcp_seq(client, (HOST, 8038), TCP_SYN, (1000, 0), b""),
        TC_ACT_REDIRECT,
        &[DnatNew, RedirectPeer],
    );
    let (v, _) = fx.run(
        OUT,
        &tcp_seq((C1, 8080), client, TCP_SYN | TCP_ACK, (7000, 1001), b""),
    );
    assert_eq!(v, TC_ACT_REDIRECT, "the backend's SYN-ACK goes out");
    step(
        fx,
        "the handshake's last ACK",
        IN,
        &tcp_seq(client, (HOST, 8038), TCP_ACK, (1001, 7001), b""),
        TC_ACT_REDIRECT,
        &[CtForward, RedirectPeer],
    );
}

#[test]
fn a_random_source_flood_cannot_starve_a_prefix_that_completed_a_handshake() {
    if !require_root() {
        return;
    }
    with_fixture("proven", 4096, |fx| {
        setup(fx, PORTS);
        set_budget(fx, BUDGET);
        let client = [198, 51, 100, 7];
        let passed = random_source_flood(fx, 0, 40);
        assert_eq!(passed, POOL, "the flood gets the unproven pool, no more");
        // Control: before its handshake the client is one more unproven source.
        let v = fx.run_xdp_counted(
            "an unproven client's SYN after the flood",
            &tcp((client, 40000), (HOST, 8038), TCP_SYN, b""),
            &[DropFlood],
        );
        assert_eq!(v, XDP_DROP, "an unproven client is cut off with the flood");
        // Its handshake through TC (another source port) proves its /24.
        handshake(fx, (client, 40001));
        // The flood goes on (and so has the unproven pool spent in the current second,
        // whether or not a new second began).
        random_source_flood(fx, 100, 40);
        let v = fx.run_xdp_counted(
            "the flood's last SYN",
            &tcp(([198, 19, 200, 7], 999), (HOST, 8038), TCP_SYN, b""),
            &[DropFlood],
        );
        assert_eq!(v, XDP_DROP, "the unproven pool is spent");
        for port in 40002..40002 + POOL as u16 {
            let v = fx.run_xdp_counted(
                "a proven client's new SYN during the flood",
                &tcp((client, port), (HOST, 8038), TCP_SYN, b""),
                &[],
            );
            assert_eq!(v, XDP_PASS, "the proven prefix keeps its own pool");
        }
        // Another address of the proven /24 is proven too; the pool still bounds it.
        let v = fx.run_xdp_counted(
            "a SYN beyond the proven pool",
            &tcp(([198, 51, 100, 8], 40000), (HOST, 8038), TCP_SYN, b""),
            &[DropFlood],
        );
        assert_eq!(v, XDP_DROP, "proven sources get a pool, not a blank cheque");
    });
}

/// Pin the calling thread to `cpus` (`BPF_PROG_TEST_RUN` runs the program on the CPU that
/// calls it).
fn pin(cpus: &[usize]) {
    let mut set = CpuSet::new();
    for &c in cpus {
        set.set(c);
    }
    sched_setaffinity(None, &set)
        .unwrap_or_else(|e| panic!("pin the test thread to CPUs {cpus:?}: {e}"));
}

/// The CPUs this thread may run on.
fn allowed_cpus() -> Vec<usize> {
    let set = sched_getaffinity(None).expect("read the test thread's CPUs");
    (0..CpuSet::MAX_CPU).filter(|&c| set.is_set(c)).collect()
}

/// On the calling CPU, within one second: a random-source flood (one SYN from each of
/// 512 /24s of 198.18.0.0/15) and a flood from the proven `client`'s /24 (`n` SYNs from
/// other ports), through `xdp_uplink` only. How many of each passed, or None when the
/// floods outlasted a budget window (the machine stalled).
fn floods_within_a_second(fx: &mut Fixture, client: [u8; 4], n: u16) -> Option<(usize, usize)> {
    let start = Instant::now();
    let unproven = random_source_flood(fx, 0, 512);
    let proven = (0..n)
        .filter(|i| syn_xdp(fx, (client, 10_000 + i)) == XDP_PASS)
        .count();
    (start.elapsed() < Duration::from_millis(900)).then_some((unproven, proven))
}

/// The daemon's budget (`set_xdp`) is the new-flow table's size a second shared among
/// the CPUs: each CPU's window admits its share, so a flood spread over every CPU of the
/// machine (the test pins itself to each in turn) gets the table's size a second in all,
/// half to proven prefixes and half to the rest; not a table per CPU.
#[test]
fn the_new_flow_budget_is_shared_among_the_cpus() {
    if !require_root() {
        return;
    }
    with_fixture("cpushare", 4096, |fx| {
        setup(fx, PORTS);
        fx.dp.set_xdp(Some(XdpMode::Generic)).expect("budget set");
        let table = fx
            .dp
            .maps
            .ct_new
            .map()
            .info()
            .map(|i| i.max_entries())
            .expect("the new-flow table's size") as usize;
        let possible = aya::util::nr_cpus().expect("possible CPUs");
        let share = table / possible;
        assert!(share >= 16, "a budget of {share} a CPU tells pools apart");
        let client = [198, 51, 100, 7];
        handshake(fx, (client, 40001));
        let cpus = allowed_cpus();
        let mut total = 0;
        for &cpu in &cpus {
            pin(&[cpu]);
            let got = (0..3)
                .find_map(|attempt| {
                    if attempt > 0 {
                        // The stalled window ends; the next flood starts a new one.
                        std::thread::sleep(Duration::from_millis(1100));
                    }
                    floods_within_a_second(fx, client, share as u16)
                })
                .unwrap_or_else(|| panic!("CPU {cpu}: three floods each outlasted a second"));
            assert_eq!(
                got,
                (share / 2, share / 2),
                "CPU {cpu}: the floods (unproven, proven) each get half of this CPU's \
                 share of a {table}-entry table over {possible} CPUs"
            );
            total += got.0 + got.1;
        }
        pin(&cpus);
        eprintln!(
            "{total} first packets admitted on {} of {possible} CPUs; table {table}",
            cpus.len()
        );
        assert_eq!(
            total,
            share * cpus.len(),
            "the CPUs together admit their shares of one table"
        );
        if cpus.len() == possible {
            assert!(
                total <= table,
                "all {possible} CPUs together admit at most the new-flow table a second: {total}"
            );
        }
    });
}

#[test]
fn one_prefix_cannot_take_the_whole_unproven_budget() {
    if !require_root() {
        return;
    }
    with_fixture("share", 4096, |fx| {
        setup(fx, PORTS);
        set_budget(fx, BUDGET);
        let passed = (1..=10u8)
            .filter(|h| syn_xdp(fx, ([203, 0, 113, *h], 5000)) == XDP_PASS)
            .count();
        assert_eq!(passed, POOL / 4, "one /24 gets its share of the pool");
        let v = fx.run_xdp_counted(
            "that prefix's next SYN",
            &tcp(([203, 0, 113, 77], 5000), (HOST, 8038), TCP_SYN, b""),
            &[DropFlood],
        );
        assert_eq!(v, XDP_DROP, "beyond its share");
        // Control: the pool is not spent; another prefix gets in.
        let v = fx.run_xdp_counted(
            "another prefix's SYN",
            &tcp(([198, 51, 100, 9], 5000), (HOST, 8038), TCP_SYN, b""),
            &[],
        );
        assert_eq!(v, XDP_PASS, "another prefix still has the rest of the pool");
    });
}

/// A container's masqueraded datagram to `dst` from source port `port`: its verdict and
/// the counters it moved are required.
fn egress(fx: &mut Fixture, name: &str, from: [u8; 4], port: u16, dst: Addr, counted: &[Reason]) {
    let verdict = if counted.contains(&SnatNew) {
        TC_ACT_REDIRECT
    } else {
        TC_ACT_SHOT
    };
    step(
        fx,
        name,
        OUT,
        &udp((from, port), dst, b"q", true),
        verdict,
        counted,
    );
}

#[test]
fn a_containers_snat_quota_is_its_own_and_no_eviction_resets_it() {
    if !require_root() {
        return;
    }
    with_fixture("snatquota", 4096, |fx| {
        setup(fx, PORTS);
        // Eight ports: a container may hold four.
        set_ports(fx, (61000, 61007));
        for port in 5000..5004 {
            egress(
                fx,
                "C1 within its quota",
                C1,
                port,
                (SERVER, 53),
                &[SnatNew, RedirectRoute],
            );
        }
        egress(
            fx,
            "C1 beyond its quota",
            C1,
            5004,
            (SERVER, 53),
            &[DropSnatQuota],
        );
        // The quota is the container's, whatever the destination.
        let other = [198, 51, 100, 3];
        egress(
            fx,
            "C1 toward another destination",
            C1,
            5005,
            (other, 53),
            &[DropSnatQuota],
        );
        // Control: the other container still gets ports.
        egress(
            fx,
            "C2's flow",
            C2,
            5000,
            (SERVER, 53),
            &[SnatNew, RedirectRoute],
        );
        // No other key can evict C1's count: the counts are a plain hash (an LRU hash
        // evicts under pressure, and an evicted count is a quota reset), and keys beyond
        // its size are refused, not made room for.
        let m = &mut fx.dp.maps.snat_use;
        let kind = m.map().info().and_then(|i| i.map_type());
        assert!(
            matches!(kind, Ok(MapType::Hash)),
            "the SNAT quota counts are a plain hash: {kind:?}"
        );
        for i in 0..2 * 65_536u32 {
            let [_, a, b, c] = i.to_be_bytes();
            let _unused: Result<_, _> = m.insert(Be32::from_bytes([10, a, b, c]), 1, 0);
        }
        assert_eq!(
            fx.dp.maps.snat_use.get(&ip(C1), 0).ok(),
            Some(4),
            "C1's count survives the other keys"
        );
        egress(
            fx,
            "C1 after the others' keys",
            C1,
            5006,
            (SERVER, 53),
            &[DropSnatQuota],
        );
    });
}

#[test]
fn a_container_holds_at_most_its_share_of_the_flow_tables() {
    if !require_root() {
        return;
    }
    with_fixture("ctshare", 4096, |fx| {
        setup(fx, PORTS);
        const SHARE: u32 = 4;
        fx.dp.maps.ct_share.set(0, SHARE, 0).expect("ct share");
        // Flows from outside to C1's published port are not C1's: nobody outside can
        // spend its share.
        for port in 0..2 * SHARE as u16 {
            step(
                fx,
                "a SYN from outside to C1's published port",
                IN,
                &tcp(([203, 0, 113, 9], 3000 + port), (HOST, 8038), TCP_SYN, b""),
                TC_ACT_REDIRECT,
                &[DnatNew, RedirectPeer],
            );
        }
        for port in 5000..5000 + SHARE as u16 {
            egress(
                fx,
                "C1 within its share",
                C1,
                port,
                (SERVER, 53),
                &[SnatNew, RedirectRoute],
            );
        }
        egress(
            fx,
            "C1 beyond its share",
            C1,
            6000,
            (SERVER, 53),
            &[DropCtQuota],
        );
        // Control: the other container still creates flows.
        egress(
            fx,
            "C2's flow",
            C2,
            5000,
            (SERVER, 53),
            &[SnatNew, RedirectRoute],
        );
        assert_eq!(
            fx.dp.maps.ct_use.get(&ip(C1), 0).ok(),
            Some(u64::from(SHARE)),
            "C1's count is the flows it started"
        );
        // Its flows expire: the in-kernel sweep gives the share back.
        let t = Timeouts {
            udp: Duration::ZERO,
            ..Timeouts::default()
        };
        fx.dp
            .set_sweep_timeouts(CtTimeouts::from(&t))
            .expect("timeouts set");
        fx.dp.sweep_ct().expect("ct_sweep runs");
        assert_eq!(
            fx.dp.maps.ct_use.get(&ip(C1), 0).ok(),
            Some(0),
            "the sweep released C1's expired flows"
        );
        egress(
            fx,
            "C1 after its flows expired",
            C1,
            6001,
            (SERVER, 53),
            &[SnatNew, RedirectRoute],
        );
    });
}
