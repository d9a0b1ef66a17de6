//! BPF_PROG_TEST_RUN, floods against shared budgets: `--xdp`'s new-flow budget (a
//! random-source flood cannot starve a source prefix that completed a handshake, one
//! prefix cannot take the unproven pool), and each asserts its control and the named
//! counter.
use Hook::{FromContainer as OUT, FromUplink as IN};
use Reason::*;
use bpfnet::datapath::Hook;
use bpfnet_tests::{
    fixture::{Fixture, TC_ACT_REDIRECT, XDP_DROP, XDP_PASS, with_fixture},
    packet::{Addr, TCP_ACK, TCP_SYN, tcp, tcp_seq},
    require_root,
    tables::{C1, HOST, PORTS, setup, step},
};
use common::Reason;

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
