//! The datapath at scale: with N flows live (2N entries in the CT table) and E more
//! endpoints registered (E veths on the bridge, each attached and registered), how long
//! one sweep of the daemon takes, the connection rate to a published port, what each
//! program costs per packet, the kernel memory each flow takes, and how long the daemon
//! took to attach and register the endpoints.
use std::{
    fs,
    os::fd::{AsFd as _, AsRawFd as _},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use aya::maps::{HashMap, IterableMap as _, Map, MapData};
use bpfnet_tests::topo::Topology;
use common::{
    Be16, CT_DNAT, CT_REPLY, CtKey, CtValue, PROTO_TCP,
    ct::{TCP_ACK, TCP_SYN},
    names,
};
use serde::{Deserialize, Serialize};

use crate::{
    cost,
    crowd::{Crowd, Networks},
    load,
    modes::{self, ECHO, Family, Mode},
    pin::Pin,
};

#[derive(Serialize, Deserialize)]
pub(crate) struct CtScaleRow {
    pub flows: usize,
    /// Endpoints registered besides the bench's two.
    #[serde(default)]
    pub endpoints: usize,
    /// Seconds until every extra veth was attached, and to register every endpoint.
    #[serde(default)]
    pub attach_s: f64,
    #[serde(default)]
    pub register_s: f64,
    /// One sweep of the whole table by the daemon (`bpfnet stats`), milliseconds.
    pub sweep_ms: f64,
    pub conns_per_s: f64,
    /// Nanoseconds per run of each program during TCP request/response.
    pub from_uplink_ns: f64,
    pub from_container_ns: f64,
    /// Kernel memory of the CT table (`memlock`) per flow it holds at most, bytes.
    pub bytes_per_flow: f64,
}

/// How often the daemon sweeps during the measurement.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

pub(crate) fn measure(
    t: &Topology,
    flows: usize,
    endpoints: usize,
    dur: Duration,
    pin: Pin,
) -> Result<CtScaleRow> {
    // Room for every entry and, as by default, for the tests' own churn of flows, so
    // the LRU evicts nothing.
    let entries = (2 * flows * 5 / 4) as u32 + common::CT_DEFAULT_ENTRIES;
    let nets = Networks::make(t, endpoints)?;
    let mut args = vec![
        "--ct-entries".to_string(),
        entries.to_string(),
        "--ct-sweep-interval".to_string(),
        SWEEP_EVERY.as_secs().to_string(),
    ];
    args.extend(nets.daemon_args());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let daemon = modes::bpfnet(t, &args);
    let row = (|| {
        let crowd = Crowd::add(t, nets)?;
        let ct = fill(t, flows)?;
        let memlock = memlock(&ct)?;
        let sweep_ms = sweep_of(t, 2 * flows as u64)?;
        load::pin_servers(None);
        let conns_per_s =
            load::conn_rate(&t.client, Mode::Bpfnet.target(Family::V4, ECHO), 4, dur)?.per_sec;
        let _stats = cost::start()?;
        let before = cost::snapshot()?;
        load::pin_servers(pin.server());
        let rr = load::tcp_rr(
            &t.client,
            Mode::Bpfnet.target(Family::V4, ECHO),
            dur,
            pin.client(),
        );
        load::pin_servers(None);
        rr?;
        let costs = cost::between(&before, &cost::snapshot()?);
        let ns = |p: &str| costs.get(p).map_or(f64::NAN, |c| c.ns_per_run);
        Ok(CtScaleRow {
            flows,
            endpoints,
            attach_s: crowd.attach_s,
            register_s: crowd.register_s,
            sweep_ms,
            conns_per_s,
            from_uplink_ns: ns("from_uplink"),
            from_container_ns: ns("from_container"),
            bytes_per_flow: memlock as f64 / (f64::from(entries) / 2.0),
        })
    })();
    drop(daemon);
    Mode::Bpfnet.teardown(t);
    row
}

/// `flows` established published-port flows (both entries each, just seen) in the
/// daemon's CT table, which is returned.
fn fill(t: &Topology, flows: usize) -> Result<HashMap<MapData, CtKey, CtValue>> {
    let path = t.files.pin_dir.join(names::CT);
    let mut ct: HashMap<MapData, CtKey, CtValue> = HashMap::try_from(Map::LruHashMap(
        MapData::from_pin(&path)
            .with_context(|| format!("cannot open the pinned CT table {}", path.display()))?,
    ))?;
    let now = bpfnet::conntrack::monotonic_ns();
    let host = u32::from_ne_bytes([192, 0, 2, 1]);
    let backend = u32::from_ne_bytes([172, 17, 0, 4]);
    for i in 0..flows {
        // Clients from 100.64.0.0/10: map entries only, no packet carries them.
        let base = u32::from_be_bytes([100, 64, 0, 0]) + (i / 60_000) as u32;
        let fwd = CtKey::new(
            base.to_be(),
            host,
            Be16::new(1024 + (i % 60_000) as u16),
            Be16::new(ECHO),
            PROTO_TCP,
        );
        let to = CtKey {
            dst_ip: backend,
            ..fwd
        };
        let mut f = CtValue::new(&to, CT_DNAT, now);
        let mut r = CtValue::new(&fwd.reversed(), CT_DNAT | CT_REPLY, now);
        f.tcp_seen = TCP_SYN | TCP_ACK;
        r.tcp_seen = TCP_SYN | TCP_ACK;
        ct.insert(fwd, f, 0).context("fill the CT table")?;
        ct.insert(to.reversed(), r, 0)
            .context("fill the CT table")?;
    }
    Ok(ct)
}

/// The CT table's kernel memory (`memlock` in its fdinfo), bytes.
fn memlock(ct: &HashMap<MapData, CtKey, CtValue>) -> Result<u64> {
    let fd = ct.map().fd().as_fd().as_raw_fd();
    let info = fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))?;
    info.lines()
        .find_map(|l| l.strip_prefix("memlock:"))
        .and_then(|v| v.trim().parse().ok())
        .context("no memlock in the CT table's fdinfo")
}

/// How long the daemon's first in-kernel sweep (without the userspace walk) that visited
/// at least `entries` entries took, ms.
fn sweep_of(t: &Topology, entries: u64) -> Result<f64> {
    // A sweep that also walked from userspace (every tenth, seconds long at a million
    // flows) puts the next one off by twenty times its length (the daemon's cap on
    // sweeping); the one after it is a kernel sweep.
    let deadline = Instant::now() + SWEEP_EVERY * 3 + Duration::from_secs(90);
    loop {
        let out = bpfnet_tests::daemon::cli(&t.files.socket, &["stats", "--json"]);
        let stats: Option<bpfnet::api::Stats> = serde_json::from_slice(&out.stdout).ok();
        // The in-kernel sweep alone: not one of the sweeps that also walk from userspace.
        if let Some(sweep) = stats
            .and_then(|s| s.last_sweep)
            .filter(|w| !w.walked && w.entries >= entries)
        {
            return Ok(sweep.micros as f64 / 1e3);
        }
        if Instant::now() > deadline {
            bail!("no sweep of {entries} entries within {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
