//! What each datapath program costs per packet: the kernel's own run-time statistics
//! (`BPF_ENABLE_STATS`, held only while a cost pass runs, so the timed rounds pay no
//! clock reads), as nanoseconds per run over a test.
use std::{collections::BTreeMap, os::fd::OwnedFd};

use anyhow::{Context as _, Result};
use aya::{
    programs::loaded_programs,
    sys::{Stats, enable_stats},
};
use serde::{Deserialize, Serialize};

/// The TC programs whose cost is reported (the socket programs run per connect, not
/// per packet).
pub(crate) const PROGRAMS: [&str; 4] = [
    "xdp_uplink",
    "from_uplink",
    "from_l3_uplink",
    "from_container",
];

/// One program over one test.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Cost {
    pub runs: u64,
    pub ns_per_run: f64,
}

/// Run time and run count per program name (bpfnet's and the floor's), summed over
/// every loaded program of that name.
#[derive(Clone, Default)]
pub(crate) struct Snapshot(BTreeMap<String, (u64, u64)>);

/// Statistics collection, on while this lives.
pub(crate) struct Collecting(#[expect(dead_code, reason = "held only to close on drop")] OwnedFd);

pub(crate) fn start() -> Result<Collecting> {
    enable_stats(Stats::RunTime)
        .map(Collecting)
        .context("cannot enable BPF run-time statistics")
}

pub(crate) fn snapshot() -> Result<Snapshot> {
    let mut s = BTreeMap::new();
    for info in loaded_programs() {
        let info = info.context("cannot read a loaded program's info")?;
        let Some(name) = info.name_as_str() else {
            continue;
        };
        if PROGRAMS.contains(&name)
            || [
                crate::floor::UPLINK_PROGRAM,
                crate::floor::CONTAINER_PROGRAM,
            ]
            .contains(&name)
        {
            let e: &mut (u64, u64) = s.entry(name.to_string()).or_default();
            e.0 += info.run_time().as_nanos() as u64;
            e.1 += info.run_count();
        }
    }
    Ok(Snapshot(s))
}

/// Cost per program between two snapshots, for programs that ran.
pub(crate) fn between(before: &Snapshot, after: &Snapshot) -> BTreeMap<String, Cost> {
    after
        .0
        .iter()
        .filter_map(|(name, &(ns, runs))| {
            let (ns0, runs0) = before.0.get(name).copied().unwrap_or_default();
            let runs = runs.saturating_sub(runs0);
            (runs > 0).then(|| {
                let ns = ns.saturating_sub(ns0);
                (
                    name.clone(),
                    Cost {
                        runs,
                        ns_per_run: ns as f64 / runs as f64,
                    },
                )
            })
        })
        .collect()
}
