//! Loading the embedded eBPF object, its pinned maps and its pinned TCX links.
mod attach;
pub mod batch;
pub mod bpffs;
mod cgroup;
mod health;
mod jump;
#[cfg(test)]
mod layout_tests;
pub mod log;
mod maps;
mod migrate;
pub mod monitor;
mod pinned;
mod sweep;
pub mod sync;
pub mod teardown;
pub mod verifier;
mod xdp;

use std::{
    path::{Path, PathBuf},
    time::Instant,
};

pub use attach::Attachment;
use aya::{
    Ebpf, EbpfLoader,
    maps::MapError,
    pin::PinError,
    programs::{CgroupSockAddr, Program, ProgramError, SchedClassifier, Xdp, links::LinkError},
};
pub use cgroup::{SOCK_PROGRAMS, cgroup2_root};
use common::names;
pub use health::Fill;
pub use jump::IPV6_PROGRAMS;
pub use maps::Maps;
pub use monitor::MonitorMaps;
pub use pinned::Mismatch;
use sweep::SweepMaps;
pub use sweep::{SWEEP_PROGRAM, SweepError};
pub use verifier::ProgramCost;
pub use xdp::{UnknownXdpMode, XDP_PROGRAM, XdpMode};

/// Default pin directory for maps and links.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/bpfnet";

/// The object built from `datapath-ebpf` by build.rs.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bpfnet-datapath"));

#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error("bpffs: {0}")]
    Bpffs(#[from] bpffs::BpffsError),
    #[error("cannot parse the embedded eBPF object: {source}")]
    Object { source: Box<aya_obj::ParseError> },
    #[error(
        "map `{name}` pinned at `{path}` differs from this bpfnet's: {}; remove `{path}` to \
         start that map afresh (its state is lost), or use another --pin-dir",
        pinned::list(.mismatches)
    )]
    PinnedMap {
        name: String,
        path: PathBuf,
        mismatches: Vec<Mismatch>,
    },
    #[error(
        "`{path}`, where map `{name}` is pinned, is not a BPF map bpfnet can read (remove \
         it, or use another --pin-dir)"
    )]
    PinUnreadable {
        name: String,
        path: PathBuf,
        source: Box<MapError>,
    },
    #[error("cannot remove `{path}` to resize map `{name}`")]
    Unpin {
        name: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot load the eBPF object (maps pinned under `{pin_dir}`): {source}")]
    Load {
        pin_dir: PathBuf,
        source: Box<aya::EbpfError>,
    },
    #[error("program `{name}` is missing from the eBPF object")]
    MissingProgram { name: &'static str },
    #[error("map `{name}` is missing from the eBPF object or has another type: not in the object")]
    MissingMap { name: &'static str },
    #[error("map `{name}` is missing from the eBPF object or has another type: {source}")]
    Map {
        name: &'static str,
        source: Box<MapError>,
    },
    #[error("map `{name}`: slot {slot} ({program}): {source}")]
    JumpSlot {
        name: &'static str,
        slot: u32,
        program: &'static str,
        source: Box<MapError>,
    },
    #[error("cannot start the datapath's log reader: {source}")]
    Logger { source: Box<aya_log::Error> },
    #[error("the kernel refused program `{name}`: {reason}")]
    Refused { name: &'static str, reason: String },
    #[error("program `{name}`: {source}")]
    Program {
        name: &'static str,
        source: Box<ProgramError>,
    },
    #[error("cannot attach `{program}` to `{iface}`: {source}")]
    Attach {
        program: &'static str,
        iface: String,
        source: AttachFailure,
    },
}

/// The step of attaching a program that failed (`DatapathError::Attach`).
#[derive(Debug, thiserror::Error)]
pub enum AttachFailure {
    #[error("pinned link `{}`: {source}", path.display())]
    PinnedLink { path: PathBuf, source: LinkError },
    #[error("{mode} mode: {source}")]
    XdpMode {
        mode: XdpMode,
        source: Box<ProgramError>,
    },
    #[error(transparent)]
    Program(#[from] Box<ProgramError>),
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error(transparent)]
    Pin(#[from] PinError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl From<ProgramError> for AttachFailure {
    fn from(e: ProgramError) -> Self {
        Self::Program(Box::new(e))
    }
}

/// Where a program is attached (TC ingress, but `ToTunnel`: TC egress).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Hook {
    /// An Ethernet uplink.
    FromUplink,
    /// An uplink whose packets carry no link-layer header (a tunnel, a VPN).
    FromL3Uplink,
    FromContainer,
    /// The cluster's VXLAN device, on the way out: the host's own packets get their key.
    ToTunnel,
}

impl Hook {
    pub const ALL: [Hook; 4] = [
        Hook::FromUplink,
        Hook::FromL3Uplink,
        Hook::FromContainer,
        Hook::ToTunnel,
    ];

    pub fn program(self) -> &'static str {
        match self {
            Self::FromUplink => "from_uplink",
            Self::FromL3Uplink => "from_l3_uplink",
            Self::FromContainer => "from_container",
            Self::ToTunnel => "to_tunnel",
        }
    }

    /// The direction of the interface's traffic the program sees.
    pub fn attach_type(self) -> aya::programs::TcAttachType {
        match self {
            Self::ToTunnel => aya::programs::TcAttachType::Egress,
            _ => aya::programs::TcAttachType::Ingress,
        }
    }

    pub fn is_uplink(self) -> bool {
        matches!(self, Self::FromUplink | Self::FromL3Uplink)
    }
}

/// The new-flow table's size for a CT map of `ct_entries`.
fn ct_new_entries(ct_entries: u32) -> u32 {
    (ct_entries / common::CT_NEW_SHARE).max(16)
}

/// Program `name` of the object as its type.
fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, DatapathError>
where
    &'a mut T: TryFrom<&'a mut Program, Error = ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or(DatapathError::MissingProgram { name })?
        .try_into()
        .map_err(program_err(name))
}

/// Load program `name` as `load` does, unless `opts` say to refuse it; a refusal carries
/// the verifier's reason.
fn load_program<T>(
    ebpf: &mut Ebpf,
    name: &'static str,
    opts: &LoadOptions,
    load: impl FnOnce(&mut T) -> Result<(), ProgramError>,
) -> Result<ProgramCost, DatapathError>
where
    for<'a> &'a mut T: TryFrom<&'a mut Program, Error = ProgramError>,
{
    opts.refused(name)?;
    let started = Instant::now();
    load(program::<T>(ebpf, name)?).map_err(|e| DatapathError::Refused {
        name,
        reason: verifier::refusal(&e),
    })?;
    Ok(verifier::cost(ebpf, name, started.elapsed()))
}

/// Create (or reuse) the maps and load every packet program, `monitor` saying whether
/// they carry the monitor's events; nothing attached changes.
fn load_programs(
    pin_dir: &Path,
    max_entries: &[(&'static str, u32)],
    opts: &LoadOptions,
    monitor: bool,
) -> Result<(Ebpf, Vec<ProgramCost>), DatapathError> {
    if monitor {
        opts.refused(REFUSE_MONITOR_EVENTS)?;
    }
    let mut loader = EbpfLoader::new();
    loader.default_map_pin_directory(pin_dir);
    let csum_ipv6 = csum_ipv6_flag();
    loader.override_global("CSUM_IPV6_FLAG", &csum_ipv6, true);
    let level = opts.log as u8;
    loader.override_global(aya_log::LEVEL, &level, true);
    let events = u8::from(monitor);
    loader.override_global("MONITOR_EVENTS", &events, true);
    for &(name, n) in max_entries {
        loader.map_max_entries(name, n);
    }
    let mut ebpf = loader.load(OBJECT).map_err(|e| DatapathError::Load {
        pin_dir: pin_dir.into(),
        source: Box::new(e),
    })?;
    let mut costs = Vec::new();
    let classifiers = Hook::ALL
        .map(Hook::program)
        .into_iter()
        .chain(IPV6_PROGRAMS.map(|(name, _)| name));
    for name in classifiers {
        costs.push(load_program(
            &mut ebpf,
            name,
            opts,
            |p: &mut SchedClassifier| p.load(),
        )?);
    }
    costs.push(load_program(
        &mut ebpf,
        XDP_PROGRAM,
        opts,
        |p: &mut Xdp| p.load(),
    )?);
    for name in SOCK_PROGRAMS {
        costs.push(load_program(
            &mut ebpf,
            name,
            opts,
            |p: &mut CgroupSockAddr| p.load(),
        )?);
    }
    Ok((ebpf, costs))
}

fn program_err(name: &'static str) -> impl Fn(ProgramError) -> DatapathError {
    move |e| DatapathError::Program {
        name,
        source: Box::new(e),
    }
}

/// The loaded datapath: programs verified and loaded, maps pinned (or reused).
pub struct Datapath {
    ebpf: Ebpf,
    pub maps: Maps,
    /// What verifying each program cost.
    costs: Vec<ProgramCost>,
    /// Programs off the packet path the kernel refused.
    degraded: Vec<Degraded>,
    pin_dir: PathBuf,
    /// Whether and how `xdp_uplink` goes on Ethernet uplinks (`--xdp`).
    xdp: Option<XdpMode>,
    /// How many entries the main flow table and the new-flow table hold.
    ct_entries: u32,
    ct_new_entries: u32,
    sweep_maps: SweepMaps,
    /// Until the daemon takes them for its monitor.
    monitor: Option<MonitorMaps>,
    /// The datapath's log reader, when it logs (until the daemon takes it).
    logger: Option<log::Logger>,
}

/// How to load the datapath.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// The programs' own logs (`--datapath-log`).
    pub log: log::DatapathLog,
    /// Test only: programs to refuse as if the kernel had.
    pub refuse: Vec<String>,
}

impl LoadOptions {
    /// The refusal `refuse` asks for `name`, as the kernel's would read.
    fn refused(&self, name: &'static str) -> Result<(), DatapathError> {
        if self.refuse.iter().any(|r| r == name) {
            return Err(DatapathError::Refused {
                name,
                reason: "refused by --test-refuse-program".into(),
            });
        }
        Ok(())
    }
}

/// `LoadOptions::refuse`'s name for the packet programs with monitor events.
pub const REFUSE_MONITOR_EVENTS: &str = "monitor-events";

/// A part of the datapath that runs without its program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Degraded {
    /// `ct_sweep` did not load: flows are swept from userspace.
    Sweep { reason: String },
    /// The packet programs loaded only without their monitor events.
    Monitor { reason: String },
}

impl std::fmt::Display for Degraded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sweep { reason } => write!(
                f,
                "the kernel refused `{SWEEP_PROGRAM}` ({reason}): flows are swept from userspace"
            ),
            Self::Monitor { reason } => write!(
                f,
                "the packet programs load only without monitor events ({reason}): \
                 `bpfnet monitor` sees nothing"
            ),
        }
    }
}

/// The sizes of each family's main flow table (`--ct-entries`, `--ct6-entries`); each
/// new-flow table is a quarter of its main one. Tables are allocated whole, so a family
/// sized for flows it never sees costs memory (and sweep time) for nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtEntries {
    pub ipv4: u32,
    pub ipv6: u32,
}

/// `BPF_F_IPV6` for `bpf_l4_csum_replace` on kernels that know it (6.16 on; older ones
/// refuse unknown flags, so they get 0 and keep their old handling).
fn csum_ipv6_flag() -> u64 {
    const BPF_F_IPV6: u64 = 1 << 7;
    match aya::util::KernelVersion::current() {
        Ok(v) if v >= aya::util::KernelVersion::new(6, 16, 0) => BPF_F_IPV6,
        _ => 0,
    }
}

impl Datapath {
    /// Load the programs and create or reuse the maps pinned under `pin_dir` (mounting
    /// bpffs first when it is absent). A pinned map whose type, sizes or flags differ
    /// from the object's is refused, except that `ct` sizes the CT maps: a pinned CT map
    /// of another size is replaced (its flows are lost, which is logged).
    pub fn load(pin_dir: &Path, ct: CtEntries) -> Result<Self, DatapathError> {
        Self::load_with(pin_dir, ct, &LoadOptions::default())
    }

    /// `load`, with the programs' own logs at `level` (`--datapath-log`).
    pub fn load_logging(
        pin_dir: &Path,
        ct: CtEntries,
        level: log::DatapathLog,
    ) -> Result<Self, DatapathError> {
        let opts = LoadOptions {
            log: level,
            ..LoadOptions::default()
        };
        Self::load_with(pin_dir, ct, &opts)
    }

    /// `load` as `opts` say. Every program is loaded before anything attached changes
    /// (the IPv6 slots are pointed at the new programs only once all of them loaded),
    /// so a packet program the kernel refuses leaves the running datapath as it was.
    /// Programs off the packet path degrade instead: without `ct_sweep` the daemon
    /// sweeps from userspace, and when the packet programs load only without their
    /// monitor events they are loaded that way (see `degraded`).
    pub fn load_with(
        pin_dir: &Path,
        ct: CtEntries,
        opts: &LoadOptions,
    ) -> Result<Self, DatapathError> {
        let ct_entries = ct.ipv4;
        bpffs::prepare(pin_dir)?;
        // Every size the flags set, for the loader and for the pin check alike.
        let max_entries = [
            (names::CT, ct_entries),
            (names::CT_NEW, ct_new_entries(ct_entries)),
            (names::CT6, ct.ipv6),
            (names::CT6_NEW, ct_new_entries(ct.ipv6)),
            // Counters are replaced (reset) when a new bpfnet counts more reasons.
            (names::STATS, common::Reason::COUNT),
        ];
        pinned::check(pin_dir, OBJECT, &max_entries)?;
        let mut degraded = Vec::new();
        let (mut ebpf, mut costs) = match load_programs(pin_dir, &max_entries, opts, true) {
            Ok(loaded) => loaded,
            Err(DatapathError::Refused { name, reason }) => {
                tracing::warn!(
                    program = name,
                    reason,
                    "refused with monitor events; loading the datapath without them"
                );
                let loaded = load_programs(pin_dir, &max_entries, opts, false)?;
                degraded.push(Degraded::Monitor {
                    reason: format!("`{name}`: {reason}"),
                });
                loaded
            }
            Err(e) => return Err(e),
        };
        match load_program(&mut ebpf, SWEEP_PROGRAM, opts, |p: &mut SchedClassifier| {
            p.load()
        }) {
            Ok(cost) => costs.push(cost),
            Err(DatapathError::Refused { name, reason }) => {
                tracing::warn!(
                    program = name,
                    reason,
                    "the kernel refused the in-kernel sweep: flows are swept from userspace"
                );
                degraded.push(Degraded::Sweep { reason });
            }
            Err(e) => return Err(e),
        }
        jump::point(&mut ebpf)?;
        let level = opts.log as u8;
        let mut maps = Maps::take(&mut ebpf)?;
        let sweep_maps = SweepMaps::take(&mut ebpf)?;
        let monitor = MonitorMaps::take(&mut ebpf)?;
        let logger = match level {
            0 => None,
            _ => Some(
                aya_log::EbpfLogger::init_with_logger(&mut ebpf, log::Tracing).map_err(|e| {
                    DatapathError::Logger {
                        source: Box::new(e),
                    }
                })?,
            ),
        };
        migrate::ct(pin_dir, &mut maps);
        migrate::retired_quota(pin_dir);
        // The kernel's defaults until the daemon writes the host's own.
        maps.icmp_limit
            .set(0, common::IcmpLimit::default(), 0)
            .map_err(|e| DatapathError::Map {
                name: names::ICMP_LIMIT,
                source: Box::new(e),
            })?;
        Ok(Self {
            ebpf,
            maps,
            costs,
            degraded,
            pin_dir: pin_dir.into(),
            xdp: None,
            ct_entries,
            ct_new_entries: ct_new_entries(ct_entries),
            sweep_maps,
            monitor: Some(monitor),
            logger,
        })
    }

    /// What verifying each loaded program cost, in load order.
    pub fn costs(&self) -> &[ProgramCost] {
        &self.costs
    }

    /// Every program of the object, loaded or not.
    pub fn object_programs(&self) -> Vec<String> {
        self.ebpf.programs().map(|(n, _)| n.to_string()).collect()
    }

    /// What runs without its program, and why.
    pub fn degraded(&self) -> &[Degraded] {
        &self.degraded
    }

    /// Whether the in-kernel sweep is loaded.
    pub fn sweeps_in_kernel(&self) -> bool {
        !self
            .degraded
            .iter()
            .any(|d| matches!(d, Degraded::Sweep { .. }))
    }

    /// Whether the packet programs carry the monitor's events.
    pub fn monitor_events(&self) -> bool {
        !self
            .degraded
            .iter()
            .any(|d| matches!(d, Degraded::Monitor { .. }))
    }

    /// The reader of the programs' logs, once, when they log.
    pub fn take_logger(&mut self) -> Option<log::Logger> {
        self.logger.take()
    }

    /// The monitor's maps, once (the daemon's monitor task owns them).
    pub fn take_monitor(&mut self) -> Option<MonitorMaps> {
        self.monitor.take()
    }

    /// Put `xdp_uplink` on the Ethernet uplinks attached from now on (`None`: take it
    /// off them). The new-flow budget it enforces keeps the new-flow table holding a
    /// second of new flows: its size shared among the CPUs.
    pub fn set_xdp(&mut self, mode: Option<XdpMode>) -> Result<(), MapError> {
        self.xdp = mode;
        let budget = match mode {
            Some(_) => {
                let cpus = aya::util::nr_cpus().map_or(1, |n| n.max(1)) as u32;
                (self.ct_new_entries / cpus).max(1)
            }
            None => 0,
        };
        self.maps.flood_budget.set(0, budget, 0)
    }

    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// The size of the main IPv4 flow table (`--ct-entries`).
    pub fn ct_entries(&self) -> u32 {
        self.ct_entries
    }

    /// The loaded XDP program (e.g. for `BPF_PROG_TEST_RUN`).
    pub fn xdp_program(&mut self) -> &mut Xdp {
        program(&mut self.ebpf, XDP_PROGRAM).expect("load() checked that xdp_uplink is loaded")
    }

    /// The loaded program for `hook` (e.g. for `BPF_PROG_TEST_RUN`).
    pub fn program(&mut self, hook: Hook) -> &mut SchedClassifier {
        program(&mut self.ebpf, hook.program())
            .expect("load() checked that every hook's program is a loaded classifier")
    }
}
