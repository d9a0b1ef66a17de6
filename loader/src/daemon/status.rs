//! `bpfnet status` and the metrics' snapshot: what is attached where, how full the maps
//! are, Docker's link, when things were last reconciled, and what a user should fix.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::{debug, warn};

use super::{Daemon, docker_nat};
use crate::{
    api::{DockerStatus, DropLine, MapFill, Metrics, Program, ProgramRun, StatLine, Status},
    datapath::{Fill, Hook},
    netlink::ifname,
};

/// How long `bpfnet status` waits for iptables to say whether Docker's NAT is on.
const IPTABLES_WAIT: Duration = Duration::from_secs(3);

/// Whether the kernel counts programs' run time (`BPF_ENABLE_STATS` or the sysctl).
const BPF_STATS_SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn map_fill(f: Fill) -> MapFill {
    MapFill {
        name: f.name.to_string(),
        entries: f.entries,
        max_entries: f.max_entries,
    }
}

fn bpf_stats_enabled() -> bool {
    std::fs::read_to_string(BPF_STATS_SYSCTL).is_ok_and(|v| v.trim() == "1")
}

impl Daemon {
    /// Interfaces with a bpfnet program attached: (interface, program), sorted.
    pub(super) fn attached(&self) -> Vec<(String, Program)> {
        let mut attached: Vec<(String, Program)> = self
            .host
            .links
            .attachments()
            .filter_map(|(hook, i)| Some((self.host.links.get(i)?.name.clone(), hook, i)))
            .flat_map(|(name, hook, i)| {
                let xdp = (hook == Hook::FromUplink && self.dp.has_xdp(i))
                    .then(|| (name.clone(), Program::XdpUplink));
                xdp.into_iter().chain([(name, hook.into())])
            })
            .collect();
        if let Some(l) = self.host.links.get(self.cluster.to_tunnel) {
            attached.push((l.name.clone(), Program::ToTunnel));
        }
        attached.sort();
        attached
    }

    /// Whether the datapath is healthy. The flow tables' entries are the last sweep's
    /// count (it walks them anyway); the other maps are small enough to count now.
    pub(super) fn status(&self) -> Status {
        let (ct, counted_at) = match self.parts.sweeper.ct_left {
            Some(left) => (left, self.parts.sweeper.last_at.map(unix)),
            None => (self.dp.ct_count_now(), None),
        };
        let maps: Vec<MapFill> = self
            .dp
            .ct_fill(ct)
            .into_iter()
            .chain(self.dp.maps.fill())
            .map(map_fill)
            .collect();
        let link = &self.host.docker_link;
        let mut warnings = self.warnings.clone();
        if link.followed && link.connected == Some(false) {
            let why = link.error.as_deref().unwrap_or("no answer");
            warnings.push(format!("Docker is not reachable: {why}"));
        }
        warnings.extend(
            self.parts
                .publishes
                .conflicts
                .iter()
                .map(|c| format!("publish not installed: {c}")),
        );
        warnings.extend(self.dp.degraded().iter().map(ToString::to_string));
        warnings.extend(self.cluster.cidr_warning());
        warnings.extend(self.cluster.networks.iter().filter(|n| !n.conflicts.is_empty()).map(|n| {
            format!(
                "cluster network {}: {} node entries not believed (their subnet is not reserved \
                 for them, or their address is taken); `bpfnet node ls` lists them",
                n.prefix,
                n.conflicts.len()
            )
        }));
        warnings.extend(maps.iter().filter(|m| m.crowded()).map(|m| {
            format!(
                "map {} is {}% full ({} of {} entries)",
                m.name,
                m.entries * 100 / u64::from(m.max_entries),
                m.entries,
                m.max_entries
            )
        }));
        Status {
            attached: self.attached(),
            xdp: self.dp.xdp_mode(),
            maps,
            ct_counted_at: counted_at,
            docker: DockerStatus {
                followed: link.followed,
                connected: link.connected,
                error: link.error.clone(),
                last_contact: link.last_contact.map(unix),
                last_resync: link.last_resync.map(unix),
            },
            last_sweep_at: self.parts.sweeper.last_at.map(unix),
            last_sweep: self.parts.sweeper.last,
            programs: self.dp.costs().to_vec(),
            sweep_in_kernel: self.dp.sweeps_in_kernel(),
            monitor_events: self.dp.monitor_events(),
            warnings,
        }
    }

    /// Ask iptables again whether Docker's own NAT is on (it may have been turned on or
    /// off since the start), waiting at most `IPTABLES_WAIT`; the last answer stands
    /// when iptables does not give one.
    pub(super) async fn recheck_docker_nat(&mut self) {
        if !self.host.docker_link.followed {
            return;
        }
        let check = tokio::task::spawn_blocking(docker_nat::check);
        match tokio::time::timeout(IPTABLES_WAIT, check).await {
            Ok(Ok(found)) => {
                self.warnings.retain(|w| w != docker_nat::WARNING);
                if let Some(w) = found {
                    self.warnings.push(w);
                }
            }
            Ok(Err(e)) => warn!(error = %e, "the Docker NAT check failed"),
            Err(_) => debug!("iptables did not answer in time; the last Docker NAT check stands"),
        }
    }

    /// Verdict counters by reason, totals over all CPUs.
    pub(super) fn stats_counters(&self) -> Vec<StatLine> {
        self.dp
            .maps
            .stats()
            .into_iter()
            .map(|(r, c)| StatLine {
                reason: r,
                drop: r.is_drop(),
                packets: c.packets,
                bytes: c.bytes,
            })
            .collect()
    }

    /// Other nodes of the cluster: static peers and those etcd knows.
    fn cluster_peers(&self) -> u64 {
        let etcd: usize = self.cluster.networks.iter().map(|n| n.nodes.len()).sum();
        (self.cluster.peers.len() + etcd) as u64
    }

    /// Node entries not believed, in every etcd network.
    fn cluster_conflicts(&self) -> u64 {
        self.cluster
            .networks
            .iter()
            .map(|n| n.conflicts.len() as u64)
            .sum()
    }

    /// Each etcd network's key prefix and whether etcd answers for it.
    fn etcd_links(&self) -> Vec<(String, bool)> {
        self.cluster
            .networks
            .iter()
            .map(|n| (n.prefix.clone(), n.connected))
            .collect()
    }

    /// Everything `GET /metrics` renders, in one snapshot.
    pub(super) fn metrics(&self) -> Metrics {
        let stats = self.stats_counters();
        let drops = self
            .dp
            .maps
            .drops()
            .into_iter()
            .map(|(i, reason, c)| DropLine {
                interface: self
                    .host
                    .links
                    .get(i)
                    .map(|l| l.name.clone())
                    .or_else(|| ifname(i))
                    .unwrap_or_else(|| i.to_string()),
                reason,
                packets: c.packets,
                bytes: c.bytes,
            })
            .collect();
        let (published, _) = self.accepted_publishes();
        let cli = self.desired.published.len() as u64;
        let bpf_stats = bpf_stats_enabled();
        let programs = if bpf_stats {
            self.dp
                .program_stats()
                .into_iter()
                .map(|(name, time, runs)| ProgramRun {
                    program: name.into(),
                    run_time_ns: u64::try_from(time.as_nanos()).unwrap_or(u64::MAX),
                    runs,
                })
                .collect()
        } else {
            Vec::new()
        };
        Metrics {
            status: self.status(),
            counters: stats,
            drops,
            ct_swept: self.parts.sweeper.swept,
            snat_flows: self.dp.maps.snat_flows(),
            publishes_cli: cli,
            publishes_docker: (published.len() as u64).saturating_sub(cli),
            endpoints: self.all_endpoints().len() as u64,
            cluster_peers: self.cluster_peers(),
            cluster_conflicts: self.cluster_conflicts(),
            etcd: self.etcd_links(),
            bpf_stats_enabled: bpf_stats,
            programs,
        }
    }
}
