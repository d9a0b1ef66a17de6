//! What `bpfnet status` shows and what the metrics endpoint renders: one snapshot each,
//! taken by the daemon's main loop.
use common::Reason;
use serde::{Deserialize, Serialize};

use super::{Program, StatLine, Sweep, reason::by_name};
pub use crate::datapath::ProgramCost;
pub(super) use crate::datapath::XdpMode;

/// A map is reported as crowded from this share of its entries on.
pub const FULL_WARNING_PERCENT: u64 = 80;

/// Whether the datapath is healthy: what is attached, how full the maps are, whether
/// Docker answers, when things were last reconciled, and what a user should fix.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// Interfaces with a bpfnet program attached: (interface, program), as `bpfnet ls`.
    pub attached: Vec<(String, Program)>,
    /// `--xdp`'s mode; None: off.
    pub xdp: Option<XdpMode>,
    /// The pinned maps and how full they are.
    pub maps: Vec<MapFill>,
    /// When the flow tables' entries were counted (Unix seconds): by the last sweep, as
    /// it walked them. None: counted for this answer.
    pub ct_counted_at: Option<u64>,
    pub docker: DockerStatus,
    /// When the sweeper last ran (Unix seconds), and what it did.
    pub last_sweep_at: Option<u64>,
    pub last_sweep: Option<Sweep>,
    /// What verifying each loaded program cost (instructions, load time).
    #[serde(default)]
    pub programs: Vec<ProgramCost>,
    /// Whether `ct_sweep` runs (false: the kernel refused it; flows are swept from
    /// userspace).
    #[serde(default = "yes")]
    pub sweep_in_kernel: bool,
    /// Whether the packet programs carry `bpfnet monitor`'s events.
    #[serde(default = "yes")]
    pub monitor_events: bool,
    /// Problems a user should fix; none means healthy.
    pub warnings: Vec<String>,
}

fn yes() -> bool {
    true
}

impl Status {
    pub fn healthy(&self) -> bool {
        self.warnings.is_empty()
    }
}

/// How full one pinned map is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapFill {
    /// Its pinned name (`ct_v3`, `endpoints_v1`…).
    pub name: String,
    pub entries: u64,
    pub max_entries: u32,
}

impl MapFill {
    /// Entries over capacity (0 for a map of unknown capacity).
    pub fn ratio(&self) -> f64 {
        if self.max_entries == 0 {
            return 0.0;
        }
        self.entries as f64 / f64::from(self.max_entries)
    }

    /// Whether it is at least `FULL_WARNING_PERCENT` full.
    pub fn crowded(&self) -> bool {
        self.max_entries > 0
            && self.entries * 100 >= u64::from(self.max_entries) * FULL_WARNING_PERCENT
    }
}

/// The daemon's link to the Docker Engine.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerStatus {
    /// Whether the daemon follows Docker (no `--no-docker`).
    pub followed: bool,
    /// Whether the engine answers; None before the first attempt.
    pub connected: Option<bool>,
    /// Why it does not, as last seen.
    pub error: Option<String>,
    /// When Docker last answered, with a list or an event (Unix seconds).
    pub last_contact: Option<u64>,
    /// When its whole container list was last read and reconciled (Unix seconds).
    pub last_resync: Option<u64>,
}

/// What `GET /metrics` renders: the status and the counters, in one snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metrics {
    pub status: Status,
    /// Verdicts by reason (`bpfnet stats`).
    pub counters: Vec<StatLine>,
    /// Drops by interface and reason.
    pub drops: Vec<DropLine>,
    /// Flow-table entries the sweeper removed (expired) since the daemon started.
    pub ct_swept: u64,
    /// Masqueraded flows, each holding a source port (the SNAT quota counts' sum).
    pub snat_flows: u64,
    /// Publishes installed, by where they come from.
    pub publishes_cli: u64,
    pub publishes_docker: u64,
    /// Endpoints registered (by hand and from Docker).
    pub endpoints: u64,
    /// Other nodes of the cluster (static peers and etcd's).
    pub cluster_peers: u64,
    /// Node entries etcd holds that are not believed (conflicts).
    pub cluster_conflicts: u64,
    /// Each etcd network's key prefix and whether etcd answers for it.
    pub etcd: Vec<(String, bool)>,
    /// Whether the kernel counts programs' run time (`kernel.bpf_stats_enabled`).
    pub bpf_stats_enabled: bool,
    /// Each packet program's run time and runs (only while the kernel counts them).
    pub programs: Vec<ProgramRun>,
}

/// Drops of one reason on one interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropLine {
    /// Its name, or its ifindex when it is gone.
    pub interface: String,
    #[serde(with = "by_name")]
    pub reason: Reason,
    pub packets: u64,
    pub bytes: u64,
}

/// A program's run time and runs, as the kernel counted them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramRun {
    pub program: String,
    pub run_time_ns: u64,
    pub runs: u64,
}
