//! What each datapath program costs per packet: the kernel's own run-time statistics
//! (`BPF_ENABLE_STATS`, held only while a cost pass runs, so the timed rounds pay no
//! clock reads), as nanoseconds per run over a test.
use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    os::fd::OwnedFd,
    path::Path,
};

use anyhow::{Context as _, Result};
use aya::{
    programs::{
        ProgramInfo,
        links::{FdLink, PinnedLink},
        loaded_programs,
    },
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

/// Run time and run count per program name, summed over every program of that name
/// measured.
#[derive(Clone, Default)]
pub(crate) struct Snapshot(BTreeMap<String, (u64, u64)>);

/// Statistics collection, on while this lives.
pub(crate) struct Collecting(#[expect(dead_code, reason = "held only to close on drop")] OwnedFd);

pub(crate) fn start() -> Result<Collecting> {
    enable_stats(Stats::RunTime)
        .map(Collecting)
        .context("cannot enable BPF run-time statistics")
}

/// Every loaded program named in `PROGRAMS`, whoever loaded it.
pub(crate) fn snapshot() -> Result<Snapshot> {
    snapshot_where(|_, name| PROGRAMS.contains(&name))
}

/// The programs in `ids` only.
pub(crate) fn snapshot_of(ids: &BTreeSet<u32>) -> Result<Snapshot> {
    snapshot_where(|info, _| ids.contains(&info.id()))
}

/// The programs the links pinned in `dir` (a daemon's `links/`) attach: what one daemon
/// runs, not the programs of the same names that other bpfnet instances on the machine
/// (tests, other benches) loaded.
pub(crate) fn linked(dir: &Path) -> Result<BTreeSet<u32>> {
    let mut ids = BTreeSet::new();
    for e in fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = e?.path();
        let link = FdLink::from(
            PinnedLink::from_pin(&path)
                .with_context(|| format!("cannot open the link {}", path.display()))?,
        );
        ids.insert(link.info()?.program_id());
    }
    Ok(ids)
}

fn snapshot_where(pick: impl Fn(&ProgramInfo, &str) -> bool) -> Result<Snapshot> {
    let mut s = BTreeMap::new();
    for info in loaded_programs() {
        let info = info.context("cannot read a loaded program's info")?;
        let Some(name) = info.name_as_str() else {
            continue;
        };
        if pick(&info, name) {
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
