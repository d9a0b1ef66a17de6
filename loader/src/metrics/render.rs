//! A snapshot in the Prometheus text format (0.0.4), encoded by `prometheus-client`:
//! a registry is filled from the snapshot and encoded, once per scrape.
use std::sync::atomic::AtomicU64;

use common::{Reason, SWEPT_TABLES};
use prometheus_client::{
    encoding::{EncodeLabelSet, prometheus_text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::{Registry, Unit},
};

use crate::api::{MapFill, Metrics};

type Count = Counter<u64>;
type Seconds = Counter<f64, AtomicU64>;
type Level = Gauge<u64, AtomicU64>;
type Ratio = Gauge<f64, AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Verdict {
    reason: &'static str,
    verdict: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InterfaceReason {
    interface: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Table {
    family: &'static str,
    table: &'static str,
}

/// One label, named by the metric.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    kind: &'static str,
}

/// A reason label alone.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Why {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Source {
    source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MapName {
    map: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Program {
    program: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Prefix {
    prefix: String,
}

/// The family and table of each of `SWEPT_TABLES`.
const TABLES: [Table; 4] = [
    Table {
        family: "ipv4",
        table: "main",
    },
    Table {
        family: "ipv4",
        table: "new",
    },
    Table {
        family: "ipv6",
        table: "main",
    },
    Table {
        family: "ipv6",
        table: "new",
    },
];

fn level(v: u64) -> Level {
    let g = Level::default();
    g.set(v);
    g
}

fn count(v: u64) -> Count {
    let c = Count::default();
    c.inc_by(v);
    c
}

/// The packet counter of verdict `reason` (0 when the snapshot has none).
fn packets(m: &Metrics, reason: Reason) -> u64 {
    m.counters
        .iter()
        .find(|c| c.reason == reason)
        .map_or(0, |c| c.packets)
}

fn verdicts(r: &mut Registry, m: &Metrics) {
    let (packets, bytes) = (
        Family::<Verdict, Count>::default(),
        Family::<Verdict, Count>::default(),
    );
    for c in &m.counters {
        let l = Verdict {
            reason: c.reason.name(),
            verdict: if c.drop { "drop" } else { "pass" },
        };
        packets.get_or_create(&l).inc_by(c.packets);
        bytes.get_or_create(&l).inc_by(c.bytes);
    }
    r.register(
        "packets",
        "Packets by verdict reason (bpfnet stats); verdict drop or pass",
        packets,
    );
    r.register("bytes", "Bytes by verdict reason", bytes);
    let by_iface = Family::<InterfaceReason, Count>::default();
    for d in &m.drops {
        let l = InterfaceReason {
            interface: d.interface.clone(),
            reason: d.reason.name(),
        };
        by_iface.get_or_create(&l).inc_by(d.packets);
    }
    r.register(
        "drops_by_interface",
        "Dropped packets by the interface they arrived on and reason",
        by_iface,
    );
}

fn flows(r: &mut Registry, m: &Metrics) {
    let (entries, capacity, ratio) = (
        Family::<Table, Level>::default(),
        Family::<Table, Level>::default(),
        Family::<Table, Ratio>::default(),
    );
    let fills: Vec<&MapFill> = SWEPT_TABLES
        .iter()
        .filter_map(|name| m.status.maps.iter().find(|f| f.name == *name))
        .collect();
    for (t, f) in TABLES.iter().zip(fills) {
        entries.get_or_create(t).set(f.entries);
        capacity.get_or_create(t).set(u64::from(f.max_entries));
        ratio.get_or_create(t).set(f.ratio());
    }
    r.register(
        "ct_entries",
        "Flow-table entries (two per flow) by family and table (main: answered, new: not yet), as of the last sweep",
        entries,
    );
    r.register(
        "ct_capacity",
        "Flow-table size by family and table",
        capacity,
    );
    r.register(
        "ct_fill_ratio",
        "Flow-table entries over its size, by family and table",
        ratio,
    );
    let created = Family::<Kind, Count>::default();
    created
        .get_or_create(&Kind { kind: "dnat" })
        .inc_by(packets(m, Reason::DnatNew));
    created
        .get_or_create(&Kind { kind: "snat" })
        .inc_by(packets(m, Reason::SnatNew));
    r.register(
        "ct_flows_created",
        "Translated flows created: published ports (dnat) and masqueraded egress (snat)",
        created,
    );
    r.register(
        "ct_expired_entries",
        "Flow-table entries the sweeper removed as expired since the daemon started",
        count(m.ct_swept),
    );
    if let Some(s) = m.status.last_sweep {
        let took = Ratio::default();
        took.set(s.micros as f64 / 1e6);
        r.register_with_unit(
            "ct_last_sweep_duration",
            "How long the last sweep of the flow tables took",
            Unit::Seconds,
            took,
        );
    }
    if let Some(at) = m.status.last_sweep_at {
        r.register_with_unit(
            "ct_last_sweep_timestamp",
            "When the last sweep ran (Unix time)",
            Unit::Seconds,
            level(at),
        );
    }
    r.register(
        "snat_ports_in_use",
        "Masqueraded flows, each holding a source port",
        level(m.snat_flows),
    );
    let failures = Family::<Why, Count>::default();
    for reason in [Reason::DropSnatPorts, Reason::DropSnatQuota] {
        failures
            .get_or_create(&Why {
                reason: reason.name(),
            })
            .inc_by(packets(m, reason));
    }
    r.register(
        "snat_allocation_failures",
        "New masqueraded flows refused: no free port (drop-snat-ports) or the container's quota (drop-snat-quota)",
        failures,
    );
}

fn state(r: &mut Registry, m: &Metrics) {
    let publishes = Family::<Source, Level>::default();
    publishes
        .get_or_create(&Source { source: "cli" })
        .set(m.publishes_cli);
    publishes
        .get_or_create(&Source { source: "docker" })
        .set(m.publishes_docker);
    r.register(
        "publishes",
        "Publishes installed (a range counts once), by source",
        publishes,
    );
    r.register(
        "endpoints",
        "Endpoints registered, by hand and from Docker",
        level(m.endpoints),
    );
    let docker = &m.status.docker;
    if docker.followed {
        r.register(
            "docker_up",
            "Whether the Docker Engine answers (1) or not (0)",
            level(u64::from(docker.connected == Some(true))),
        );
        if let Some(at) = docker.last_resync {
            r.register_with_unit(
                "docker_last_resync_timestamp",
                "When Docker's container list was last read and reconciled (Unix time)",
                Unit::Seconds,
                level(at),
            );
        }
    }
    r.register(
        "cluster_peers",
        "Other nodes of the cluster (static peers and etcd's)",
        level(m.cluster_peers),
    );
    r.register(
        "cluster_node_conflicts",
        "Node entries in etcd not believed: their subnet is not reserved for them, or their \
         underlay address is another node's",
        level(m.cluster_conflicts),
    );
    if !m.etcd.is_empty() {
        let up = Family::<Prefix, Level>::default();
        for (prefix, connected) in &m.etcd {
            up.get_or_create(&Prefix {
                prefix: prefix.clone(),
            })
            .set(u64::from(*connected));
        }
        r.register(
            "etcd_up",
            "Whether etcd answers for the cluster network at this key prefix",
            up,
        );
    }
    let (entries, capacity) = (
        Family::<MapName, Level>::default(),
        Family::<MapName, Level>::default(),
    );
    for f in &m.status.maps {
        let l = MapName {
            map: f.name.clone(),
        };
        entries.get_or_create(&l).set(f.entries);
        capacity.get_or_create(&l).set(u64::from(f.max_entries));
    }
    r.register("map_entries", "Entries in each pinned map", entries);
    r.register("map_capacity", "Size of each pinned map", capacity);
    let attached = Family::<Program, Level>::default();
    for (_, program) in &m.status.attached {
        attached
            .get_or_create(&Program {
                program: program.name().to_string(),
            })
            .inc();
    }
    r.register(
        "attached_interfaces",
        "Interfaces carrying each program",
        attached,
    );
    r.register(
        "warnings",
        "Problems `bpfnet status` reports (0: healthy)",
        level(m.status.warnings.len() as u64),
    );
}

fn programs(r: &mut Registry, m: &Metrics) {
    r.register(
        "bpf_stats_enabled",
        "Whether the kernel counts programs' run time (kernel.bpf_stats_enabled)",
        level(u64::from(m.bpf_stats_enabled)),
    );
    let (insns, load) = (
        Family::<Program, Level>::default(),
        Family::<Program, Ratio>::default(),
    );
    for p in &m.status.programs {
        let l = Program {
            program: p.name.clone(),
        };
        if let Some(n) = p.verified_insns {
            insns.get_or_create(&l).set(u64::from(n));
        }
        load.get_or_create(&l).set(p.load_micros as f64 / 1e6);
    }
    r.register(
        "program_verified_insns",
        "Instructions the kernel's verifier processed to load the program",
        insns,
    );
    r.register_with_unit(
        "program_load",
        "Time the program took to load (verification included)",
        Unit::Seconds,
        load,
    );
    r.register(
        "sweep_in_kernel",
        "Whether ct_sweep runs in the kernel (0: the kernel refused it, flows are swept from userspace)",
        level(u64::from(m.status.sweep_in_kernel)),
    );
    r.register(
        "monitor_events",
        "Whether the packet programs carry bpfnet monitor's events",
        level(u64::from(m.status.monitor_events)),
    );
    if !m.bpf_stats_enabled {
        return;
    }
    let (time, runs) = (
        Family::<Program, Seconds>::default(),
        Family::<Program, Count>::default(),
    );
    for p in &m.programs {
        let l = Program {
            program: p.program.clone(),
        };
        time.get_or_create(&l).inc_by(p.run_time_ns as f64 / 1e9);
        runs.get_or_create(&l).inc_by(p.runs);
    }
    r.register_with_unit(
        "program_run",
        "Time the datapath program ran, while the kernel counts it",
        Unit::Seconds,
        time,
    );
    r.register(
        "program_runs",
        "Runs of the datapath program, while the kernel counts them",
        runs,
    );
}

/// `m` in the Prometheus text format, every metric prefixed `bpfnet_`.
pub fn render(m: &Metrics) -> Result<String, std::fmt::Error> {
    let mut r = Registry::with_prefix("bpfnet");
    verdicts(&mut r, m);
    flows(&mut r, m);
    state(&mut r, m);
    programs(&mut r, m);
    let mut out = String::new();
    encode(&mut out, &r)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{DropLine, ProgramRun, StatLine, Status, Sweep};

    fn snapshot() -> Metrics {
        let line = |reason: Reason, drop, packets| StatLine {
            reason,
            drop,
            packets,
            bytes: packets * 100,
        };
        let fill = |name: &str, entries, max_entries| MapFill {
            name: name.into(),
            entries,
            max_entries,
        };
        Metrics {
            status: Status {
                attached: vec![
                    ("up0".into(), crate::api::Program::FromUplink),
                    ("vc0".into(), crate::api::Program::FromContainer),
                    ("vc1".into(), crate::api::Program::FromContainer),
                ],
                maps: vec![
                    fill("ct_v3", 6, 64),
                    fill("ct_new_v2", 0, 16),
                    fill("ct6_v1", 2, 64),
                    fill("ct6_new_v1", 1, 16),
                    fill("published_v1", 3, 65_536),
                ],
                last_sweep: Some(Sweep {
                    entries: 9,
                    removed: 1,
                    micros: 1500,
                    walked: false,
                }),
                last_sweep_at: Some(1_700_000_000),
                programs: vec![crate::api::ProgramCost {
                    name: "ct_sweep".into(),
                    verified_insns: Some(4156),
                    load_micros: 4_000,
                }],
                sweep_in_kernel: false,
                monitor_events: true,
                ..Status::default()
            },
            counters: vec![
                line(Reason::DnatNew, false, 5),
                line(Reason::SnatNew, false, 2),
                line(Reason::DropInbound, true, 7),
                line(Reason::DropSnatQuota, true, 1),
            ],
            drops: vec![DropLine {
                interface: "up0".into(),
                reason: Reason::DropInbound,
                packets: 7,
                bytes: 700,
            }],
            ct_swept: 4,
            publishes_cli: 3,
            bpf_stats_enabled: true,
            programs: vec![ProgramRun {
                program: "from_uplink".into(),
                run_time_ns: 2_500_000_000,
                runs: 10,
            }],
            ..Metrics::default()
        }
    }

    /// Every sample line, as (name, labels, value); panics on a line that is neither a
    /// sample nor a HELP or TYPE comment, or a sample of a metric without both.
    fn samples(text: &str) -> Vec<(String, String, f64)> {
        let mut described = std::collections::BTreeSet::new();
        let mut out = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line
                .strip_prefix("# HELP ")
                .or(line.strip_prefix("# TYPE "))
            {
                let name = rest.split(' ').next().expect("a described name");
                described.insert(name.to_string());
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("`series value`");
            let (name, labels) = match series.split_once('{') {
                Some((n, l)) => (n, l.strip_suffix('}').expect("labels end with }")),
                None => (series, ""),
            };
            assert!(name.starts_with("bpfnet_"), "{line}");
            assert!(described.contains(name), "{name} has HELP and TYPE");
            let value = value.parse().expect("a number");
            out.push((name.to_string(), labels.to_string(), value));
        }
        out
    }

    fn value(s: &[(String, String, f64)], name: &str, labels: &str) -> f64 {
        s.iter()
            .find(|(n, l, _)| n == name && l == labels)
            .unwrap_or_else(|| panic!("no {name}{{{labels}}} in {s:?}"))
            .2
    }

    #[test]
    fn a_snapshot_renders_as_prometheus_text() {
        let text = render(&snapshot()).expect("renders");
        let s = samples(&text);
        assert!(
            text.contains("# TYPE bpfnet_packets_total counter"),
            "{text}"
        );
        assert!(text.contains("# TYPE bpfnet_ct_fill_ratio gauge"), "{text}");
        let cases = [
            (
                "bpfnet_packets_total",
                r#"reason="dnat-new",verdict="pass""#,
                5.0,
            ),
            (
                "bpfnet_bytes_total",
                r#"reason="drop-inbound",verdict="drop""#,
                700.0,
            ),
            (
                "bpfnet_drops_by_interface_total",
                r#"interface="up0",reason="drop-inbound""#,
                7.0,
            ),
            ("bpfnet_ct_entries", r#"family="ipv4",table="main""#, 6.0),
            ("bpfnet_ct_capacity", r#"family="ipv6",table="new""#, 16.0),
            (
                "bpfnet_ct_fill_ratio",
                r#"family="ipv4",table="main""#,
                6.0 / 64.0,
            ),
            ("bpfnet_ct_flows_created_total", r#"kind="dnat""#, 5.0),
            ("bpfnet_ct_flows_created_total", r#"kind="snat""#, 2.0),
            ("bpfnet_ct_expired_entries_total", "", 4.0),
            ("bpfnet_ct_last_sweep_duration_seconds", "", 0.0015),
            (
                "bpfnet_snat_allocation_failures_total",
                r#"reason="drop-snat-quota""#,
                1.0,
            ),
            ("bpfnet_publishes", r#"source="cli""#, 3.0),
            ("bpfnet_map_entries", r#"map="published_v1""#, 3.0),
            (
                "bpfnet_attached_interfaces",
                r#"program="from_container""#,
                2.0,
            ),
            (
                "bpfnet_program_run_seconds_total",
                r#"program="from_uplink""#,
                2.5,
            ),
            (
                "bpfnet_program_runs_total",
                r#"program="from_uplink""#,
                10.0,
            ),
            ("bpfnet_warnings", "", 0.0),
            (
                "bpfnet_program_verified_insns",
                r#"program="ct_sweep""#,
                4156.0,
            ),
            (
                "bpfnet_program_load_seconds",
                r#"program="ct_sweep""#,
                0.004,
            ),
            ("bpfnet_sweep_in_kernel", "", 0.0),
            ("bpfnet_monitor_events", "", 1.0),
        ];
        for (name, labels, want) in cases {
            assert_eq!(value(&s, name, labels), want, "{name}{{{labels}}}");
        }
        assert!(
            !text.contains("bpfnet_docker_up"),
            "no Docker state when Docker is not followed"
        );
    }

    #[test]
    fn program_run_time_is_left_out_while_the_kernel_does_not_count_it() {
        let m = Metrics {
            bpf_stats_enabled: false,
            ..snapshot()
        };
        let s = samples(&render(&m).expect("renders"));
        assert_eq!(value(&s, "bpfnet_bpf_stats_enabled", ""), 0.0);
        assert!(
            !s.iter()
                .any(|(n, _, _)| n.starts_with("bpfnet_program_run"))
        );
    }
}
