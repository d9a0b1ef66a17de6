//! The flow table at scale: with N flows live (2N entries in the CT table), what one
//! sweep costs the daemon in CPU, the connection rate to a published port, what each
//! program costs per packet, and the kernel memory each flow takes.
use std::{
    fs,
    os::fd::{AsFd as _, AsRawFd as _},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use aya::maps::{HashMap, IterableMap as _, Map, MapData};
use bpfnet_tests::topo::Topology;
use common::{
    CT_DNAT, CT_REPLY, CtKey, CtValue, PROTO_TCP,
    ct::{TCP_ACK, TCP_SYN},
    names,
};
use serde::{Deserialize, Serialize};

use crate::{
    cost, load,
    modes::{self, ECHO, Mode},
    pin::Pin,
};

#[derive(Serialize, Deserialize)]
pub struct CtScaleRow {
    pub flows: usize,
    /// Daemon CPU (user + system) per sweep of the whole table, milliseconds.
    pub sweep_cpu_ms: f64,
    pub conns_per_s: f64,
    /// Nanoseconds per run of each program during TCP request/response.
    pub from_uplink_ns: f64,
    pub from_container_ns: f64,
    /// Kernel memory of the CT table (`memlock`) per flow it holds at most, bytes.
    pub bytes_per_flow: f64,
}

/// How often the daemon sweeps during the measurement.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Sweeps timed.
const SWEEPS: u32 = 8;

pub fn measure(t: &Topology, flows: usize, dur: Duration, pin: Pin) -> Result<CtScaleRow> {
    // Room for every entry and the measured flows, so the LRU evicts nothing.
    let entries = ((2 * flows).max(4096) * 5 / 4) as u32;
    let daemon = modes::bpfnet(
        t,
        &[
            "--ct-entries",
            &entries.to_string(),
            "--ct-sweep-interval",
            &SWEEP_EVERY.as_secs().to_string(),
        ],
    );
    let row = (|| {
        let ct = fill(t, flows)?;
        let memlock = memlock(&ct)?;
        let sweep_cpu_ms = cpu_ms(daemon.pid(), SWEEP_EVERY * SWEEPS)? / f64::from(SWEEPS);
        let conns_per_s = load::conn_rate(&t.client, Mode::Bpfnet.target(ECHO), 4, dur)?.per_sec;
        let _stats = cost::start()?;
        let before = cost::snapshot()?;
        load::pin_servers(pin.server());
        load::tcp_rr(&t.client, Mode::Bpfnet.target(ECHO), dur, pin.client())?;
        let costs = cost::between(&before, &cost::snapshot()?);
        let ns = |p: &str| costs.get(p).map_or(f64::NAN, |c| c.ns_per_run);
        Ok(CtScaleRow {
            flows,
            sweep_cpu_ms,
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
        let fwd = CtKey {
            src_ip: base.to_be(),
            dst_ip: host,
            src_port: (1024 + (i % 60_000) as u16).to_be(),
            dst_port: ECHO.to_be(),
            proto: PROTO_TCP,
            _pad: [0; 3],
        };
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

/// CPU time (user + system, every thread) process `pid` spends over `span`, ms.
fn cpu_ms(pid: u32, span: Duration) -> Result<f64> {
    let ticks = || -> Result<u64> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
        // The fields after the command name, which may hold spaces and ends at ')'.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
        let f: Vec<&str> = rest.split_whitespace().collect();
        let (Some(u), Some(s)) = (f.get(11), f.get(12)) else {
            bail!("cannot read /proc/{pid}/stat");
        };
        Ok(u.parse::<u64>()? + s.parse::<u64>()?)
    };
    // SAFETY: sysconf has no preconditions.
    let per_s = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let (t0, start) = (ticks()?, Instant::now());
    std::thread::sleep(span);
    let used = ticks()? - t0;
    Ok(used as f64 / per_s * 1e3 * (span.as_secs_f64() / start.elapsed().as_secs_f64()))
}
