//! `bpfnet monitor`: the datapath's drops and traces as they happen.
use std::{
    io::{self, BufRead as _, BufReader, Write as _},
    net::IpAddr,
    os::unix::net::UnixStream,
    path::Path,
};

use anyhow::{Context as _, bail};
use bpfnet::api::{
    Request, Response,
    monitor::{self, Event, Filter, Kind, Lost, Record, Tuple},
    reason,
};
use common::Reason;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// Only drops, or only traces (every other verdict: translations, tracked packets,
    /// deliveries). Default: both.
    #[arg(long = "type", value_name = "TYPE")]
    kind: Option<Kind>,
    /// Only this reason (repeatable), as `bpfnet stats` names it: `drop-isolation`,
    /// `dnat-new`...
    #[arg(long = "reason", value_name = "REASON", value_parser = reason::parse)]
    reasons: Vec<Reason>,
    /// Only packets from or to this address, before or after translation (repeatable).
    #[arg(long = "ip", value_name = "IP")]
    ips: Vec<IpAddr>,
    /// Only packets from or to this port, before or after translation (repeatable).
    #[arg(long = "port", value_name = "PORT")]
    ports: Vec<u16>,
    /// Only packets seen on this interface (repeatable).
    #[arg(long = "iface", value_name = "NAME")]
    ifaces: Vec<String>,
    /// Report one in N of the packets asked for, sampled in the datapath.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..))]
    sample: u32,
    /// At most N events a second, all CPUs together, limited in the datapath (0: no
    /// limit). What the limit holds back is counted and shown as lost.
    #[arg(long, value_name = "N", default_value_t = monitor::DEFAULT_RATE)]
    rate: u32,
    /// Stop after N events.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// One JSON object per line: events (`"record":"event"`) and counts of what was
    /// left out (`"record":"lost"`).
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: Args, socket: &Path) -> anyhow::Result<()> {
    let filter = Filter {
        kind: args.kind,
        reasons: args.reasons,
        ips: args.ips,
        ports: args.ports,
        ifaces: args.ifaces,
        sample: args.sample,
        rate: args.rate,
    };
    filter.mask()?;
    let stream = UnixStream::connect(socket).with_context(|| {
        format!(
            "cannot reach the bpfnet daemon at `{}` (is `bpfnet daemon` running?)",
            socket.display()
        )
    })?;
    let mut request = serde_json::to_vec(&Request::Monitor { filter })?;
    request.push(b'\n');
    (&stream).write_all(&request)?;
    let mut lines = BufReader::new(&stream).lines();
    let first = lines.next().context("the daemon closed the connection")??;
    match serde_json::from_str::<Response>(&first)? {
        Response::Ok => {}
        Response::Error { message } => bail!("{message}"),
        _ => bail!("the daemon answered `monitor` with something else"),
    }
    let mut out = io::stdout().lock();
    let mut events = 0;
    for line in lines {
        let line = line.context("lost the connection to the daemon")?;
        let record: Record = serde_json::from_str(&line)
            .context("the daemon sent a record this CLI does not understand")?;
        let text = match (&record, args.json) {
            (_, true) => line,
            (Record::Event(e), false) => event_line(e),
            (Record::Lost(l), false) => lost_line(l),
        };
        // A closed stdout (`| head`) ends the monitor quietly.
        if writeln!(out, "{text}").and_then(|()| out.flush()).is_err() {
            return Ok(());
        }
        if matches!(record, Record::Event(_)) {
            events += 1;
            if args.count.is_some_and(|n| events >= n) {
                return Ok(());
            }
        }
    }
    bail!("the daemon ended the monitor stream")
}

fn event_line(e: &Event) -> String {
    let secs = e.time_ns / 1_000_000_000;
    let micros = e.time_ns % 1_000_000_000 / 1000;
    let (h, m, s) = (secs / 3600 % 24, secs / 60 % 60, secs % 60);
    let mut line = format!(
        "{h:02}:{m:02}:{s:02}.{micros:06} {:<20} {} ({})",
        e.reason.name(),
        e.iface,
        e.hook.name()
    );
    match &e.packet.before {
        Some(t) => line += &format!(" {}", tuple(t)),
        None => match e.packet.ethertype {
            Some(t) => line += &format!(" ethertype {t:#06x}"),
            None => line += " (not decoded)",
        },
    }
    if let Some(f) = &e.packet.tcp_flags {
        line += &format!(" [{f}]");
    }
    if let Some((t, c)) = e.packet.icmp {
        line += &format!(" type {t} code {c}");
    }
    line += &format!(" len {}", e.packet.len);
    if let Some(a) = e
        .after
        .as_ref()
        .filter(|a| Some(*a) != e.packet.before.as_ref())
    {
        line += &format!(" => {}", endpoints(a));
    }
    if let Some(ct) = e.ct {
        line += &format!(" ct {}", ct.name());
    }
    line
}

fn tuple(t: &Tuple) -> String {
    format!("{} {}", t.proto, endpoints(t))
}

fn endpoints(t: &Tuple) -> String {
    let at = |ip: &IpAddr, port: Option<u16>| match (ip, port) {
        (IpAddr::V6(ip), Some(p)) => format!("[{ip}]:{p}"),
        (ip, Some(p)) => format!("{ip}:{p}"),
        (ip, None) => ip.to_string(),
    };
    format!("{} -> {}", at(&t.src, t.sport), at(&t.dst, t.dport))
}

fn lost_line(l: &Lost) -> String {
    format!(
        "-- lost {}: {} rate-limited, {} ring full, {} behind (sampled out: {})",
        l.total(),
        l.rate_limited,
        l.ring_full,
        l.client_behind,
        l.sampled_out
    )
}
