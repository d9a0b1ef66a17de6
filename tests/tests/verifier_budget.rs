//! Headroom: every program of the object verifies within a quarter of the kernel's
//! instruction budget and in under a second, in every build the project ships (the
//! datapath's logs off and at debug; `xdp_uplink`, for `--xdp`, is loaded by both). A
//! program near the kernel's limit passes or fails on details nobody controls: a kernel
//! build, a toolchain point release.
use bpfnet::datapath::{
    CtEntries, Datapath, LoadOptions,
    log::DatapathLog,
    verifier::{INSN_BUDGET, LOAD_BUDGET},
};
use bpfnet_tests::{require_root, scratch::Scratch};

/// Loads at most this often when one is over `LOAD_BUDGET`: a load's wall time is the
/// machine's too (another process on the CPU stretches it), so a program is over only
/// when its quickest load is.
const LOADS: usize = 3;

/// One load at a time: the two tests would otherwise stretch each other's loads.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn check(level: DatapathLog) {
    let _one = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let files = Scratch::new("verif");
    let ct = CtEntries {
        ipv4: 1024,
        ipv6: 1024,
    };
    let opts = LoadOptions {
        log: level,
        ..LoadOptions::default()
    };
    let mut dp = Datapath::load_with(&files.pin_dir, ct, &opts).expect("datapath loads");
    let mut costs = dp.costs().to_vec();
    let mut scratches = Vec::new();
    for _ in 1..LOADS {
        if costs
            .iter()
            .all(|c| c.load_micros <= LOAD_BUDGET.as_micros() as u64)
        {
            break;
        }
        drop(dp);
        let again = Scratch::new("verif");
        dp = Datapath::load_with(&again.pin_dir, ct, &opts).expect("datapath loads again");
        scratches.push(again);
        for (c, n) in costs.iter_mut().zip(dp.costs().iter()) {
            assert_eq!(c.name, n.name, "the programs load in one order");
            assert_eq!(
                c.verified_insns, n.verified_insns,
                "{}: the same verification",
                c.name
            );
            c.load_micros = c.load_micros.min(n.load_micros);
        }
    }
    #[expect(clippy::format_collect, reason = "a test's report, built once")]
    let table: String = costs
        .iter()
        .map(|c| {
            format!(
                "  {:<20} {:>9} insns {:>8.1} ms\n",
                c.name,
                c.verified_insns.map_or("?".into(), |n| n.to_string()),
                c.load_micros as f64 / 1e3
            )
        })
        .collect();
    eprintln!("verifier cost with logs {}:\n{table}", level.name());
    assert!(
        dp.degraded().is_empty(),
        "logs {}: every program loads, none degraded: {:?}",
        level.name(),
        dp.degraded()
    );
    let mut all = dp.object_programs();
    all.sort();
    let mut measured: Vec<String> = costs.iter().map(|c| c.name.clone()).collect();
    measured.sort();
    assert_eq!(
        measured, all,
        "every program of the object is loaded and measured"
    );
    for c in costs {
        let insns = c
            .verified_insns
            .unwrap_or_else(|| panic!("{}: the kernel reports no verified_insns", c.name));
        assert!(
            insns <= INSN_BUDGET,
            "logs {}: `{}` needs {insns} verified instructions, over its budget of {INSN_BUDGET} \
             (a quarter of the kernel's limit)\n{table}",
            level.name(),
            c.name
        );
        assert!(
            c.load_micros <= LOAD_BUDGET.as_micros() as u64,
            "logs {}: `{}` took {} ms to load, over {} ms\n{table}",
            level.name(),
            c.name,
            c.load_micros / 1000,
            LOAD_BUDGET.as_millis()
        );
    }
}

#[test]
fn every_program_verifies_within_a_quarter_of_the_budget_with_logs_off() {
    if !require_root() {
        return;
    }
    check(DatapathLog::Off);
}

#[test]
fn every_program_verifies_within_a_quarter_of_the_budget_with_logs_at_debug() {
    if !require_root() {
        return;
    }
    check(DatapathLog::Debug);
}
