//! The in-kernel sweep: `ct_sweep` run with BPF_PROG_TEST_RUN (it walks both flow
//! tables with `bpf_for_each_map_elem`; see the datapath's `sweep.rs`), its timeouts and
//! its result.
use aya::{
    maps::{Array, MapData},
    programs::{SchedClassifier, TestRun as _, TestRunOptions},
};
use common::{CtTimeouts, SweepStats, names};

use super::{Datapath, DatapathError, program};

pub const SWEEP_PROGRAM: &str = "ct_sweep";

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("cannot set the sweep's timeouts: {source}")]
    Timeouts { source: aya::maps::MapError },
    #[error("cannot run `ct_sweep`: {source}")]
    Run { source: aya::programs::ProgramError },
    #[error("`ct_sweep` returned {code} (no timeouts set)")]
    Failed { code: u32 },
    #[error("cannot read the sweep's result: {source}")]
    Result { source: aya::maps::MapError },
}

/// The sweep's maps (not pinned: they belong to this daemon's programs).
pub struct SweepMaps {
    timeouts: Array<MapData, CtTimeouts>,
    result: Array<MapData, SweepStats>,
}

impl SweepMaps {
    pub(super) fn take(ebpf: &mut aya::Ebpf) -> Result<Self, DatapathError> {
        Ok(Self {
            timeouts: super::maps::take(ebpf, names::CT_TIMEOUTS)?,
            result: super::maps::take(ebpf, names::SWEEP)?,
        })
    }
}

impl Datapath {
    /// The idle timeouts `ct_sweep` applies.
    pub fn set_sweep_timeouts(&mut self, t: CtTimeouts) -> Result<(), SweepError> {
        self.sweep_maps
            .timeouts
            .set(0, t, 0)
            .map_err(|source| SweepError::Timeouts { source })
    }

    /// One walk of both flow tables in the kernel: expired flows removed (both entries,
    /// and their SNAT quota count), every entry counted.
    pub fn sweep_ct(&mut self) -> Result<SweepStats, SweepError> {
        // A classifier's test run wants a frame; the program never reads it.
        let frame = [0u8; 64];
        let prog: &mut SchedClassifier = program(&mut self.ebpf, SWEEP_PROGRAM)
            .expect("load() checked that ct_sweep is a loaded classifier");
        let opts = TestRunOptions {
            data_in: Some(&frame),
            ..Default::default()
        };
        let r = prog
            .test_run(opts)
            .map_err(|source| SweepError::Run { source })?;
        if r.return_value != 0 {
            return Err(SweepError::Failed {
                code: r.return_value,
            });
        }
        self.sweep_maps
            .result
            .get(&0, 0)
            .map_err(|source| SweepError::Result { source })
    }
}
