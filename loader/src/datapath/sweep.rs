//! The in-kernel sweep: `ct_sweep` run with `BPF_PROG_TEST_RUN` (it walks both flow
//! tables with `bpf_for_each_map_elem`; see the datapath's `sweep.rs`), its timeouts and
//! its result; and the datapath's clock, measured from the sweeps' clock readings.
use aya::{
    maps::{Array, MapData},
    programs::{SchedClassifier, TestRun as _, TestRunOptions},
};
use common::{Clock, ClockSample, CtTimeouts, SweepStats, names};

use super::{Datapath, DatapathError, program};

pub const SWEEP_PROGRAM: &str = "ct_sweep";

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("cannot set the sweep's timeouts: {source}")]
    Timeouts { source: aya::maps::MapError },
    #[error("`ct_sweep` is not loaded (the kernel refused it)")]
    NotLoaded,
    #[error("cannot run `ct_sweep`: {source}")]
    Run { source: aya::programs::ProgramError },
    #[error("`ct_sweep` returned {code} (no timeouts set)")]
    Failed { code: u32 },
    #[error("cannot read the sweep's result: {source}")]
    Result { source: aya::maps::MapError },
    #[error("cannot set the datapath's clock: {source}")]
    Clock { source: aya::maps::MapError },
}

/// The sweep's maps (not pinned: they belong to this daemon's programs).
pub(super) struct SweepMaps {
    timeouts: Array<MapData, CtTimeouts>,
    result: Array<MapData, SweepStats>,
    clock: Array<MapData, Clock>,
    /// The first sweep's clock reading: the longer the span to the latest, the finer
    /// the measured tick.
    first: Option<ClockSample>,
}

impl SweepMaps {
    pub(super) fn take(ebpf: &mut aya::Ebpf) -> Result<Self, DatapathError> {
        Ok(Self {
            timeouts: super::maps::take(ebpf, names::CT_TIMEOUTS)?,
            result: super::maps::take(ebpf, names::SWEEP)?,
            clock: super::maps::take(ebpf, names::CLOCK)?,
            first: None,
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
        if !self.sweeps_in_kernel() {
            return Err(SweepError::NotLoaded);
        }
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
        let stats = self
            .sweep_maps
            .result
            .get(&0, 0)
            .map_err(|source| SweepError::Result { source })?;
        self.sweep_maps.clock_reading(ClockSample {
            jiffies: stats.jiffies,
            now_ns: stats.now_ns,
        })?;
        Ok(stats)
    }

    /// Set the datapath's clock (the tests skew it, to see which clock the datapath read).
    pub fn set_clock(&mut self, clock: Clock) -> Result<(), SweepError> {
        self.sweep_maps
            .clock
            .set(0, clock, 0)
            .map_err(|source| SweepError::Clock { source })
    }

    /// The datapath's clock, once a sweep has measured it (None: it reads the coarse
    /// clock, a helper call per packet).
    pub fn clock(&self) -> Option<Clock> {
        self.sweep_maps
            .clock
            .get(&0, 0)
            .ok()
            .filter(|c| c.tick_ns != 0)
    }
}

impl SweepMaps {
    /// Measure the tick between the first reading and `now`, and give the datapath the
    /// clock through `now` (every sweep: the offset follows the latest reading).
    fn clock_reading(&mut self, now: ClockSample) -> Result<(), SweepError> {
        let Some(first) = self.first else {
            self.first = Some(now);
            return Ok(());
        };
        if let Some(clock) = Clock::calibrate(first, now) {
            self.clock
                .set(0, clock, 0)
                .map_err(|source| SweepError::Clock { source })
        } else {
            if now.now_ns.saturating_sub(first.now_ns) >= 1_000_000_000 {
                tracing::warn!(
                    ?first,
                    ?now,
                    "jiffies fit no whole HZ: the datapath keeps the coarse clock"
                );
            }
            Ok(())
        }
    }
}
