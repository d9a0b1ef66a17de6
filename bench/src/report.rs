//! The committed report: JSON results, a Markdown table with ratios, SVG plots.
use std::{
    collections::BTreeMap,
    fmt::{self, Write as _},
    fs,
    path::Path,
};

use serde::{Deserialize, Deserializer, Serialize};

use crate::{cost::Cost, ctscale::CtScaleRow, early_drop::DropRow, modes, verifier::VerifierRow};

/// Medians and results are NaN when a measurement failed: JSON writes it as null.
#[derive(Serialize, Deserialize)]
pub(crate) struct Row {
    pub test: String,
    pub unit: String,
    pub higher_is_better: bool,
    /// Median per mode.
    #[serde(deserialize_with = "nan_if_null_values")]
    pub values: BTreeMap<String, f64>,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct ScaleRow {
    pub published: usize,
    pub iptables_install_ms: f64,
    pub bpfnet_install_ms: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub iptables_conns_per_s: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub bpfnet_conns_per_s: f64,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct Report {
    pub date: String,
    pub machine: BTreeMap<String, String>,
    pub quick: bool,
    pub repetitions: usize,
    pub seconds_per_run: f64,
    /// Where single-flow tests' client and server ran (`same`, `split`, `none`).
    #[serde(default)]
    pub pin: String,
    pub rows: Vec<Row>,
    /// Per test, per datapath program that ran: nanoseconds per run.
    #[serde(default)]
    pub costs: BTreeMap<String, BTreeMap<String, Cost>>,
    /// Bursts of probes bpfnet drops, by TC and by XDP.
    #[serde(default)]
    pub early_drop: Vec<DropRow>,
    /// The flow table at scale.
    #[serde(default)]
    pub ct_scale: Vec<CtScaleRow>,
    pub scaling: Vec<ScaleRow>,
    /// Containers on two hosts, by each way across (`crosshost::MODES`).
    #[serde(default)]
    pub cross_host: Vec<Row>,
    /// The fast path watched and logging (`observe::MODES`).
    #[serde(default)]
    pub observe: Vec<Row>,
    /// Each program's verification, logs off and at debug.
    #[serde(default)]
    pub verifier: Vec<VerifierRow>,
    /// Measurements that failed, as "mode: test: error".
    #[serde(default)]
    pub failures: Vec<String>,
}

fn nan_if_null<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::deserialize(d)?.unwrap_or(f64::NAN))
}

fn nan_if_null_values<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, f64>, D::Error> {
    let values = BTreeMap::<String, Option<f64>>::deserialize(d)?;
    Ok(values
        .into_iter()
        .map(|(m, v)| (m, v.unwrap_or(f64::NAN)))
        .collect())
}

/// A value a measurement that worked can give: every figure is positive.
pub(crate) fn measured(v: f64) -> bool {
    v.is_finite() && v > 0.0
}

impl Report {
    /// A report with nothing measured, to fill in part of.
    pub(crate) fn empty() -> Self {
        Self {
            date: String::new(),
            machine: BTreeMap::new(),
            quick: false,
            repetitions: 0,
            seconds_per_run: 0.0,
            pin: String::new(),
            rows: Vec::new(),
            costs: BTreeMap::new(),
            early_drop: Vec::new(),
            ct_scale: Vec::new(),
            scaling: Vec::new(),
            cross_host: Vec::new(),
            observe: Vec::new(),
            verifier: Vec::new(),
            failures: Vec::new(),
        }
    }

    /// The failures, then every value missing, zero or not finite.
    pub(crate) fn problems(&self) -> Vec<String> {
        let mut p = self.failures.clone();
        if self.rows.is_empty() || self.scaling.is_empty() {
            p.push("no tests or no scaling rows".into());
        }
        unmeasured(&self.rows, &modes::ALL.map(modes::Mode::name), &mut p);
        for row in &self.rows {
            // Every test's packets run some program (names of later metrics of one
            // measure have none of their own).
            if let Some(c) = self.costs.get(&row.test)
                && !c.values().any(|c| measured(c.ns_per_run))
            {
                p.push(format!("program costs: {}: no program ran", row.test));
            }
        }
        if self.costs.is_empty() {
            p.push("no program costs".into());
        } else if crate::against_floor::rows(self.costs.keys().map(String::as_str), &self.costs)
            .is_empty()
        {
            p.push("program costs: no program measured against the floor".into());
        }
        if self.cross_host.is_empty() {
            p.push("no rows across hosts".into());
        }
        unmeasured(&self.cross_host, &crate::crosshost::MODES, &mut p);
        if self.observe.is_empty() {
            p.push("no observability rows".into());
        }
        unmeasured(&self.observe, &crate::observe::MODES, &mut p);
        if self.ct_scale.is_empty() {
            p.push("no flow-table scale rows".into());
        }
        if self.verifier.is_empty() {
            p.push("no verification rows".into());
        }
        for v in self.verifier.iter().filter(|v| !v.within_budget()) {
            p.push(format!(
                "verification: `{}` needs {} / {} instructions, over the budget",
                v.program, v.insns_off, v.insns_debug
            ));
        }
        if self.early_drop.len() != 2 {
            p.push("early drop: not measured in both modes".into());
        }
        for x in &self.early_drop {
            for (what, v) in [
                ("ns per probe", x.ns_per_probe),
                ("probes/s", x.probes_per_s),
            ] {
                if !measured(v) {
                    p.push(format!("early drop {}: {what} = {v}", x.mode));
                }
            }
        }
        for x in &self.ct_scale {
            for (what, v) in [
                ("sweep ms", x.sweep_ms),
                ("conns/s", x.conns_per_s),
                ("from_uplink ns", x.from_uplink_ns),
                ("from_container ns", x.from_container_ns),
                ("bytes per flow", x.bytes_per_flow),
            ] {
                if !measured(v) {
                    p.push(format!("flow table N={}: {what} = {v}", x.flows));
                }
            }
        }
        for x in &self.scaling {
            for (what, v) in [
                ("iptables install ms", x.iptables_install_ms),
                ("bpfnet install ms", x.bpfnet_install_ms),
                ("iptables conns/s", x.iptables_conns_per_s),
                ("bpfnet conns/s", x.bpfnet_conns_per_s),
            ] {
                if !measured(v) {
                    p.push(format!("scaling N={}: {what} = {v}", x.published));
                }
            }
        }
        p
    }
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}", a / b)
    } else {
        "-".into()
    }
}

pub(crate) fn markdown(r: &Report) -> Result<String, fmt::Error> {
    let mut s = String::new();
    writeln!(s, "# bpfnet benchmark\n")?;
    writeln!(
        s,
        "{} — {} — kernel {} — {} CPUs ({}). Medians of {} interleaved rounds of {} s each; client and server of single-flow tests pinned: `{}`; `cargo xtask bench{}` reproduces it.\n",
        r.date,
        r.machine.get("cpu").map_or("?", String::as_str),
        r.machine.get("kernel").map_or("?", String::as_str),
        r.machine.get("cpus").map_or("?", String::as_str),
        r.machine.get("virtualization").map_or("?", String::as_str),
        r.repetitions,
        r.seconds_per_run,
        r.pin,
        if r.quick { " --quick" } else { "" },
    )?;
    writeln!(
        s,
        "Modes: `wire` is a veth straight between the two namespaces of each test (no host in \
         between: the physical limit of the topology); `direct` routes through the host to the \
         container (no NAT); `iptables` is Docker's rule set for `-p` with netfilter conntrack \
         (ip6tables for the IPv6 rows); `bpfnet` is this project; `bpfnet+xdp` is bpfnet with \
         `--xdp=generic` (XDP on the uplink veth, ahead of the same TC programs; it passes \
         IPv6 to them). Rows marked (IPv6) run the same test over IPv6: a ULA network with \
         NAT66, the port published on the host's IPv6 address. Ratios above 1 favour bpfnet \
         except for latencies, where below 1 does.\n"
    )?;
    let problems = r.problems();
    if !problems.is_empty() {
        writeln!(s, "## Failed measurements (NaN: not measured)\n")?;
        for p in problems {
            writeln!(s, "- {p}")?;
        }
        writeln!(s)?;
    }
    writeln!(
        s,
        "| test | unit | wire | direct | iptables | bpfnet | bpfnet+xdp | bpfnet / wire | bpfnet / direct | bpfnet / iptables | bpfnet+xdp / bpfnet |"
    )?;
    writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")?;
    for row in &r.rows {
        let v = |m: &str| row.values.get(m).copied().unwrap_or(0.0);
        writeln!(
            s,
            "| {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {} |",
            row.test,
            row.unit,
            v("wire"),
            v("direct"),
            v("iptables"),
            v("bpfnet"),
            v("bpfnet+xdp"),
            ratio(v("bpfnet"), v("wire")),
            ratio(v("bpfnet"), v("direct")),
            ratio(v("bpfnet"), v("iptables")),
            ratio(v("bpfnet+xdp"), v("bpfnet")),
        )?;
    }
    s.push_str(&families_markdown(r)?);
    s.push_str(&crate::verifier::markdown(&r.verifier, None));
    writeln!(s, "\n## What each program costs\n")?;
    writeln!(
        s,
        "Each test once more in `bpfnet` mode with the kernel's BPF run-time statistics on \
         (`BPF_ENABLE_STATS`, off during the timed rounds): nanoseconds per run (one run per \
         packet, or per GSO batch) of each TC program the test's packets ran.\n"
    )?;
    s.push_str(&costs_markdown(
        r.rows.iter().map(|row| row.test.as_str()),
        &r.costs,
    )?);
    writeln!(s, "\n## Per-packet cost against the floor\n")?;
    writeln!(
        s,
        "The floor is the least an eBPF datapath does per packet (`bench/floor-ebpf`): parse \
         Ethernet, IPv4 or IPv6 and TCP or UDP, look the 5-tuple up in one hash map, write the \
         Ethernet addresses and redirect. Each test runs once more in `direct` mode with it \
         attached where bpfnet's programs run (`floor_uplink` on the host's uplink, \
         `floor_container` on the containers' veths), in the same pass and with the same \
         statistics as the table above; a flow's packets after its first take one lookup and \
         a redirect. Each program's nanoseconds per run over the floor's at its place, for \
         the same test (where both ran at least 1,000 times: fewer are stray packets such \
         as neighbour discovery); the first table keeps, per program and family, the test of known \
         flows (every test but the connection rates) where the program is furthest above the \
         floor (goal: at most 1.5×).\n"
    )?;
    s.push_str(&crate::against_floor::markdown(
        r.rows.iter().map(|row| row.test.as_str()),
        &r.costs,
    )?);
    writeln!(s, "\n## Early drop: TC or XDP\n")?;
    writeln!(
        s,
        "A burst of datagrams routed to an unpublished container port, every one dropped by \
         bpfnet (`drop-inbound`): by `from_uplink` (TC) in `bpfnet` mode, by `xdp_uplink` before \
         TC in `bpfnet+xdp` mode. The datapath programs' run time per probe, and the probes per \
         second one sending thread (pinned to CPU 0) got through the host's receive path, which \
         on a veth runs in the sender's context.\n"
    )?;
    writeln!(s, "| mode | probes | dropped | ns per probe | probes/s |")?;
    writeln!(s, "|---|---:|---:|---:|---:|")?;
    for x in &r.early_drop {
        writeln!(
            s,
            "| {} | {} | {} | {:.0} | {:.0} |",
            x.mode, x.probes, x.dropped, x.ns_per_probe, x.probes_per_s
        )?;
    }
    s.push_str(&cross_host_markdown(r)?);
    s.push_str(&observe_markdown(r)?);
    writeln!(s, "\n## Scaling with the number of published ports\n")?;
    writeln!(
        s,
        "N published ports installed before the measured one (iptables-restore of Docker's rules vs \
         one `bpfnet publish` of a range plus the measured port); connection rate to the last one.\n"
    )?;
    writeln!(
        s,
        "| N | iptables install ms | bpfnet install ms | iptables conns/s | bpfnet conns/s | bpfnet / iptables |"
    )?;
    writeln!(s, "|---:|---:|---:|---:|---:|---:|")?;
    for x in &r.scaling {
        writeln!(
            s,
            "| {} | {:.1} | {:.1} | {:.0} | {:.0} | {} |",
            x.published,
            x.iptables_install_ms,
            x.bpfnet_install_ms,
            x.iptables_conns_per_s,
            x.bpfnet_conns_per_s,
            ratio(x.bpfnet_conns_per_s, x.iptables_conns_per_s)
        )?;
    }
    writeln!(s, "\n## At scale: flows and endpoints\n")?;
    writeln!(
        s,
        "N established flows (2N entries) written into the CT table (sized 2.5N plus the \
         default 262,144, so the tests' own flows evict none) and E endpoints registered besides \
         the bench's two (E veths added to the bridge at once, as many containers: seconds until \
         the daemon attached every one, then to register each through the control API): how \
         long one in-kernel sweep over both tables takes (`ct_sweep`; `bpfnet stats`; the \
         userspace repair walk of every tenth sweep not included), \
         the connection rate to the published port, each program's cost per packet of TCP \
         request/response, and the table's kernel memory per flow it can hold.\n"
    )?;
    writeln!(
        s,
        "| flows | more endpoints | attach s | register s | sweep ms | conns/s | `from_uplink` ns/run | `from_container` ns/run | bytes per flow |"
    )?;
    writeln!(s, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|")?;
    for x in &r.ct_scale {
        writeln!(
            s,
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.0} | {:.0} | {:.0} | {:.0} |",
            x.flows,
            x.endpoints,
            x.attach_s,
            x.register_s,
            x.sweep_ms,
            x.conns_per_s,
            x.from_uplink_ns,
            x.from_container_ns,
            x.bytes_per_flow
        )?;
    }
    writeln!(
        s,
        "\n![ratios to wire](plots/ratios.svg)\n\n![scaling](plots/scaling.svg)"
    )?;
    Ok(s)
}

/// Containers on two hosts: each way across against the kernel's routing.
pub(crate) fn cross_host_markdown(r: &Report) -> Result<String, fmt::Error> {
    let mut s = String::from("\n## Across hosts\n\n");
    writeln!(
        s,
        "Two hosts on one underlay segment (veths into a bridge), a container on each; the \
         client container on host 1 (host 1 itself in the host-to-remote-container rows) \
         reaches the server container on host 2 by its address. \
         `routed`: a kernel route on each host to the other's prefix (the baseline); \
         `host-gw` and `vxlan`: bpfnet, each host a node of an etcd cluster (the containers' \
         packets use no kernel route; the host's use bpfnet's, into the tunnel by `to_tunnel`; \
         VXLAN through a collect-metadata device, MSS clamped); `kernel vxlan`: a VXLAN \
         device with a route, a neighbour and an FDB entry per peer (flannel's way). The \
         `IPv6` rows reach the server's IPv6 address (dual stack, `--cidr6`): bpfnet over the \
         IPv4 underlay, the kernel's ways by the underlay's IPv6 addresses (`routed`) or its \
         VXLAN device. Same interleaved rounds; ratios above 1 are faster than the baseline \
         (for p99, below 1).\n"
    )?;
    writeln!(
        s,
        "| test | unit | routed | host-gw | vxlan | kernel vxlan | host-gw / routed | vxlan / routed | vxlan / kernel vxlan |"
    )?;
    writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|---:|")?;
    for row in &r.cross_host {
        let v = |m: &str| row.values.get(m).copied().unwrap_or(0.0);
        writeln!(
            s,
            "| {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {} |",
            row.test,
            row.unit,
            v("routed"),
            v("host-gw"),
            v("vxlan"),
            v("kernel vxlan"),
            ratio(v("host-gw"), v("routed")),
            ratio(v("vxlan"), v("routed")),
            ratio(v("vxlan"), v("kernel vxlan")),
        )?;
    }
    Ok(s)
}

/// Each of `modes` without a measured value in a row, as a problem.
fn unmeasured(rows: &[Row], modes: &[&str], p: &mut Vec<String>) {
    for row in rows {
        for mode in modes {
            match row.values.get(*mode) {
                Some(&v) if measured(v) => {}
                Some(v) => p.push(format!("{mode}: {} = {v} {}", row.test, row.unit)),
                None => p.push(format!("{mode}: {}: no value", row.test)),
            }
        }
    }
}

pub(crate) fn observe_markdown(r: &Report) -> Result<String, fmt::Error> {
    let mut s = String::from("\n## Watching the datapath\n\n");
    writeln!(
        s,
        "bpfnet alone (`off`); with `bpfnet monitor --json --type drop` attached (`monitor \
         drops`: the fast path's verdicts are not in its mask); with `bpfnet monitor --json` \
         (`monitor`: drops and traces, so every packet asks to be reported, at 1,000 events \
         per CPU per second, printed to nowhere); and with `--datapath-log debug` (every log \
         statement live and read). Same interleaved rounds; ratios to `off` (above 1 is \
         faster for rates; for ns per packet, below 1 is cheaper). With logging off the \
         verifier removes the log statements from the programs (`datapath_log` test), so \
         `off` is also the cost of logging off.\n"
    )?;
    writeln!(
        s,
        "| test | unit | off | monitor drops | monitor | log debug | monitor drops / off | monitor / off | log debug / off |"
    )?;
    writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|---:|")?;
    for row in &r.observe {
        let v = |m: &str| row.values.get(m).copied().unwrap_or(0.0);
        writeln!(
            s,
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} | {} |",
            row.test,
            row.unit,
            v("off"),
            v("monitor drops"),
            v("monitor"),
            v("log debug"),
            ratio(v("monitor drops"), v("off")),
            ratio(v("monitor"), v("off")),
            ratio(v("log debug"), v("off")),
        )?;
    }
    Ok(s)
}

/// What a test's name ends with over IPv6 (`modes::Family::suffix`).
const IPV6: &str = " (IPv6)";

/// Each IPv6 test beside its IPv4 twin: the kernel's own gap between the families
/// (`direct`), bpfnet's, and the programs' cost per packet in both.
fn families_markdown(r: &Report) -> Result<String, fmt::Error> {
    let mut s = String::from("\n## IPv6 against IPv4\n\n");
    s.push_str(
        "Each test over IPv6 beside the same test over IPv4, from the table above: `direct` \
         shows the kernel's own difference between the families, `bpfnet` adds NAT66 (the \
         bridge's ULA prefix, published on the host's IPv6 address) where IPv4 has NAT44; \
         `iptables` is Docker's ip6tables rule set. Program costs from the table below (IPv6 \
         runs tail-called from the same entry programs, so their time is counted there).\n\n",
    );
    s.push_str(
        "| test | unit | direct v4 | direct v6 | bpfnet v4 | bpfnet v6 | direct v6 / v4 | bpfnet v6 / v4 | bpfnet / iptables v6 | `from_uplink` ns v4 / v6 | `from_container` ns v4 / v6 |\n",
    );
    s.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for v6 in r.rows.iter().filter(|x| x.test.ends_with(IPV6)) {
        let name = v6.test.trim_end_matches(IPV6);
        let Some(v4) = r.rows.iter().find(|x| x.test == name) else {
            continue;
        };
        let v = |row: &Row, m: &str| row.values.get(m).copied().unwrap_or(0.0);
        let ns = |test: &str, prog: &str| {
            r.costs
                .get(test)
                .and_then(|c| c.get(prog))
                .map_or("-".into(), |c| format!("{:.0}", c.ns_per_run))
        };
        writeln!(
            s,
            "| {name} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {} / {} | {} / {} |",
            v6.unit,
            v(v4, "direct"),
            v(v6, "direct"),
            v(v4, "bpfnet"),
            v(v6, "bpfnet"),
            ratio(v(v6, "direct"), v(v4, "direct")),
            ratio(v(v6, "bpfnet"), v(v4, "bpfnet")),
            ratio(v(v6, "bpfnet"), v(v6, "iptables")),
            ns(&v4.test, "from_uplink"),
            ns(&v6.test, "from_uplink"),
            ns(&v4.test, "from_container"),
            ns(&v6.test, "from_container"),
        )?;
    }
    Ok(s)
}

/// The program-cost table: per test (in `order`), ns per run and runs of each program.
pub(crate) fn costs_markdown<'a>(
    order: impl IntoIterator<Item = &'a str>,
    costs: &BTreeMap<String, BTreeMap<String, Cost>>,
) -> Result<String, fmt::Error> {
    let progs = crate::cost::PROGRAMS;
    let mut s = String::from("| test |");
    for p in progs {
        write!(s, " `{p}` ns/run | runs |")?;
    }
    s.push_str("\n|---|");
    s.push_str(&"---:|---:|".repeat(progs.len()));
    s.push('\n');
    for (test, c) in order
        .into_iter()
        .filter_map(|t| costs.get(t).map(|c| (t, c)))
    {
        write!(s, "| {test} |")?;
        for p in progs {
            match c.get(p) {
                Some(c) => {
                    write!(s, " {:.0} | {} |", c.ns_per_run, c.runs)?;
                }
                None => s.push_str(" - | 0 |"),
            }
        }
        s.push('\n');
    }
    Ok(s)
}

/// Bars: each rate test as a fraction of `wire`, for direct, iptables and bpfnet.
pub(crate) fn ratios_svg(r: &Report) -> Result<String, fmt::Error> {
    let rows: Vec<&Row> = r.rows.iter().filter(|x| x.higher_is_better).collect();
    let bars = [
        ("direct", "#ccc"),
        ("iptables", "#999"),
        ("bpfnet", "#2a6fdb"),
    ];
    let (w, bar, gap, left) = (760.0, 12.0, 14.0, 260.0);
    let h = 40.0 + rows.len() as f64 * (bars.len() as f64 * bar + gap);
    let max = rows
        .iter()
        .flat_map(|x| {
            bars.map(|(m, _)| {
                x.values.get(m).copied().unwrap_or(0.0)
                    / x.values.get("wire").copied().unwrap_or(1.0).max(1e-9)
            })
        })
        .fold(1.2f64, f64::max);
    let scale = (w - left - 40.0) / max;
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">"#
    );
    write!(
        s,
        r#"<text x="{left}" y="14">fraction of wire (the physical limit); light: direct, grey: iptables, blue: bpfnet; line: 1.0</text>"#
    )?;
    for (i, row) in rows.iter().enumerate() {
        let y = 24.0 + i as f64 * (bars.len() as f64 * bar + gap);
        let wire = row.values.get("wire").copied().unwrap_or(0.0).max(1e-9);
        write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            left - 6.0,
            y + bar + 3.0,
            row.test
        )?;
        for (j, (m, color)) in bars.iter().enumerate() {
            let f = row.values.get(*m).copied().unwrap_or(0.0) / wire;
            let yy = y + j as f64 * bar;
            write!(
                s,
                r#"<rect x="{left}" y="{yy}" width="{:.1}" height="{}" fill="{color}"/>"#,
                f * scale,
                bar - 2.0
            )?;
            write!(
                s,
                r#"<text x="{:.1}" y="{}">{f:.2}</text>"#,
                left + f * scale + 4.0,
                yy + bar - 4.0
            )?;
        }
    }
    write!(
        s,
        r##"<line x1="{0:.1}" x2="{0:.1}" y1="20" y2="{1}" stroke="#c00"/></svg>"##,
        left + scale,
        h - 4.0
    )?;
    Ok(s)
}

/// Connection rate to the last published port against the number published.
pub(crate) fn scaling_svg(r: &Report) -> Result<String, fmt::Error> {
    let (w, h, l, b) = (640.0, 320.0, 70.0, 40.0);
    let max = r
        .scaling
        .iter()
        .flat_map(|x| [x.iptables_conns_per_s, x.bpfnet_conns_per_s])
        .fold(1.0f64, f64::max);
    let n = r.scaling.len().max(2) as f64;
    let px = |i: usize| l + i as f64 * (w - l - 20.0) / (n - 1.0);
    let py = |v: f64| h - b - v / max * (h - b - 20.0);
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">"#
    );
    write!(
        s,
        r#"<text x="{l}" y="14">connections/s to the last published port (grey: iptables, blue: bpfnet), max {max:.0}</text>"#
    )?;
    for (key, color) in [(false, "#999"), (true, "#2a6fdb")] {
        let pts: Vec<String> = r
            .scaling
            .iter()
            .enumerate()
            .map(|(i, x)| {
                format!(
                    "{:.1},{:.1}",
                    px(i),
                    py(if key {
                        x.bpfnet_conns_per_s
                    } else {
                        x.iptables_conns_per_s
                    })
                )
            })
            .collect();
        write!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            pts.join(" ")
        )?;
    }
    for (i, x) in r.scaling.iter().enumerate() {
        write!(
            s,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">N={}</text>"#,
            px(i),
            h - b + 16.0,
            x.published
        )?;
    }
    s.push_str("</svg>");
    Ok(s)
}

/// Write results/<date>.json, report.md and plots/ under `out`.
pub(crate) fn write(out: &Path, r: &Report) -> std::io::Result<()> {
    fs::create_dir_all(out.join("results"))?;
    fs::create_dir_all(out.join("plots"))?;
    let json = serde_json::to_string_pretty(r).map_err(std::io::Error::other)?;
    fs::write(out.join("results").join(format!("{}.json", r.date)), json)?;
    fs::write(
        out.join("report.md"),
        markdown(r).map_err(std::io::Error::other)?,
    )?;
    fs::write(
        out.join("plots/ratios.svg"),
        ratios_svg(r).map_err(std::io::Error::other)?,
    )?;
    fs::write(
        out.join("plots/scaling.svg"),
        scaling_svg(r).map_err(std::io::Error::other)?,
    )
}
