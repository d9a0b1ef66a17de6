//! The datapath's own logs (`--datapath-log`): off, the verifier removes every log
//! statement from the loaded programs; on, their records reach the daemon's log.
use std::{thread, time::Duration};

use bpfnet::datapath::{CtEntries, Datapath, Hook, log::DatapathLog};
use bpfnet_tests::{
    daemon::{Daemon, cli_ok},
    echo::{EchoServer, tcp_roundtrip},
    require_root,
    scratch::Scratch,
    topo::Topology,
};

/// Instructions of each TC program after verification, at `level`.
fn translated_sizes(level: DatapathLog) -> Vec<(Hook, u32)> {
    let files = Scratch::new("dlog");
    let ct = CtEntries {
        ipv4: 1024,
        ipv6: 1024,
    };
    let mut dp = Datapath::load_logging(&files.pin_dir, ct, level).expect("datapath loads");
    Hook::ALL
        .iter()
        .map(|&h| {
            let info = dp.program(h).info().expect("program info");
            (h, info.size_translated().expect("translated size"))
        })
        .collect()
}

/// Off, nothing of the log statements is left in the programs the kernel runs: each
/// is smaller than the same program logging at `debug`, which loads too.
#[test]
fn with_logging_off_the_verifier_removes_the_log_statements() {
    if !require_root() {
        return;
    }
    let off = translated_sizes(DatapathLog::Off);
    let debug = translated_sizes(DatapathLog::Debug);
    for ((hook, off), (_, debug)) in off.iter().zip(&debug) {
        assert!(
            off < debug,
            "{hook:?}: {off} bytes with logging off, {debug} at debug: off must have none of \
             the log statements"
        );
    }
}

/// At `debug`, a published port's first packet logs the DNAT it chose and the answer
/// (from port 8038) logs its flow table hit, under target `datapath`.
#[test]
fn at_debug_the_nat_and_flow_decisions_reach_the_daemons_log() {
    if !require_root() {
        return;
    }
    let t = Topology::new("dlogd");
    let log = t
        .files
        .state_dir
        .parent()
        .expect("the scratch directory")
        .join("daemon.log");
    let args = t.daemon_args(&["--datapath-log", "debug"]);
    let d = Daemon::start_logged(&t.host.path(), &t.files.socket, &args, &log);
    let _e = EchoServer::start(&t.container, 8038);
    cli_ok(&t.files.socket, &["publish", "8038:172.17.0.4:8038"]);
    tcp_roundtrip(&t.client, Topology::host_addr(8038), b"logged").expect("through the publish");
    let mut text = String::new();
    for _ in 0..50 {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("ct: tracked flow, proto 6 ports 8038->") {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    drop(d);
    assert!(
        text.contains("nat: dnat new flow, proto 6 port 8038 to port 8038"),
        "the DNAT choice is logged:\n{text}"
    );
    assert!(
        text.contains("ct: tracked flow, proto 6 ports 8038->"),
        "the container's answer is a tracked flow's packet:\n{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("datapath") && l.contains("nat: dnat")),
        "under target `datapath`:\n{text}"
    );
}
