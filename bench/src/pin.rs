//! CPU placement of single-flow tests. Unpinned on these 2-vCPU machines, a client and
//! server go bimodal (about 60k against 16k transactions/s) depending on whether the
//! scheduler wakes the idle CPU; pinned, rounds agree and modes compare.
use clap::ValueEnum;
use rustix::thread::{CpuSet, sched_setaffinity};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Pin {
    /// Client and server on CPU 0 (with the softirq work their packets cause).
    Same,
    /// Client on CPU 0, server on CPU 1.
    Split,
    /// Wherever the scheduler puts them.
    None,
}

impl Pin {
    pub(crate) fn client(self) -> Option<usize> {
        match self {
            Self::Same | Self::Split => Some(0),
            Self::None => None,
        }
    }

    pub(crate) fn server(self) -> Option<usize> {
        match self {
            Self::Same => Some(0),
            Self::Split => Some(1),
            Self::None => None,
        }
    }

    /// iperf3's `-A CLIENT,SERVER` (the client tells the server where to run).
    pub(crate) fn iperf_affinity(self) -> Option<String> {
        Some(format!("{},{}", self.client()?, self.server()?))
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Same => "same",
            Self::Split => "split",
            Self::None => "none",
        }
    }
}

/// Run the calling thread on `cpu` only, or on every CPU (None).
pub(crate) fn this_thread(cpu: Option<usize>) {
    let mut set = CpuSet::new();
    match cpu {
        Some(c) => set.set(c),
        None => (0..CpuSet::MAX_CPU).for_each(|c| set.set(c)),
    }
    // Best effort, as before: an unpinned round still measures, only noisier.
    let _unused: Result<_, _> = sched_setaffinity(None, &set);
}
