//! The maps `bpfnet monitor` reads and sets: the events ring buffer, what the datapath
//! reports, and what it left out. Not pinned: each daemon starts with no monitor.
use aya::{
    Ebpf,
    maps::{Array, MapData, MapError, PerCpuArray, RingBuf},
};
use common::{MonitorConfig, MonitorState, names};

use super::{DatapathError, maps::take};

pub struct MonitorMaps {
    pub events: RingBuf<MapData>,
    pub config: Array<MapData, MonitorConfig>,
    pub state: PerCpuArray<MapData, MonitorState>,
}

impl MonitorMaps {
    pub(super) fn take(ebpf: &mut Ebpf) -> Result<Self, DatapathError> {
        Ok(Self {
            events: take(ebpf, names::EVENTS)?,
            config: take(ebpf, names::MONITOR)?,
            state: take(ebpf, names::MONITOR_STATE)?,
        })
    }
}

/// What every CPU left out since the daemon started, summed.
pub fn left_out(state: &PerCpuArray<MapData, MonitorState>) -> Result<MonitorState, MapError> {
    let per_cpu = state.get(&0, 0)?;
    Ok(per_cpu
        .iter()
        .fold(MonitorState::default(), |a, s| MonitorState {
            sampled_out: a.sampled_out + s.sampled_out,
            rate_limited: a.rate_limited + s.rate_limited,
            ring_full: a.ring_full + s.ring_full,
            ..a
        }))
}
