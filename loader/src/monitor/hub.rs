//! The task that owns the monitor's maps: it tells the datapath what its clients want,
//! drains the ring buffer and fans each event out.
use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use common::{MonitorConfig, MonitorState, Reason, monitor::HOOK_XDP};
use rustix::time::{ClockId, clock_gettime};
use tokio::{
    io::{Interest, unix::AsyncFd},
    sync::{
        mpsc::{self, error::TrySendError},
        oneshot,
    },
};
use tracing::{debug, warn};

use super::decode;
use crate::{
    api::{
        Program, Request, Response,
        monitor::{CtState, Event, Filter, Hook, Kind, Lost, Record},
        server::{Call, Subscriber},
    },
    datapath::MonitorMaps,
};

struct Client {
    filter: Filter,
    mask: u64,
    records: mpsc::Sender<Record>,
    /// The datapath's counts when it connected.
    base: MonitorState,
    behind: u64,
    reported: Lost,
}

/// An interface as events name it.
#[derive(Clone)]
struct Iface {
    name: String,
    hook: Hook,
    /// Whether its frames start with an Ethernet header.
    l2: bool,
}

pub async fn run(
    maps: MonitorMaps,
    mut joins: mpsc::Receiver<Subscriber>,
    calls: mpsc::Sender<Call>,
) {
    let MonitorMaps {
        events,
        mut config,
        state,
    } = maps;
    // SAFETY: the ring buffer owns its map's descriptor, which stays open and the same
    // for as long as the ring buffer lives, here inside the AsyncFd.
    let registered = unsafe { AsyncFd::register_with_interest(events, Interest::READABLE) };
    let mut ring = match registered {
        Ok(r) => r,
        Err(e) => {
            warn!(error = %e, "cannot poll the monitor's ring buffer; `bpfnet monitor` is off");
            return;
        }
    };
    let left_out = || crate::datapath::monitor::left_out(&state).ok();
    let mut clients: Vec<Client> = Vec::new();
    let mut names = Names::new(calls);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            join = joins.recv() => {
                let Some(s) = join else { return };
                clients.push(Client {
                    filter: s.filter,
                    mask: s.mask,
                    records: s.records,
                    base: left_out().unwrap_or_default(),
                    behind: 0,
                    reported: Lost::default(),
                });
                configure(&mut config, &clients);
            }
            ready = ring.readable_mut() => {
                let mut guard = match ready {
                    Ok(g) => g,
                    Err(e) => {
                        warn!(error = %e, "monitor ring buffer poll failed");
                        return;
                    }
                };
                let mut batch = Vec::new();
                while let Some(item) = guard.get_inner_mut().next() {
                    if let Some(e) = item.get(..size_of::<common::Event>()) {
                        batch.push(bytemuck::pod_read_unaligned::<common::Event>(e));
                    }
                }
                guard.clear_ready();
                for raw in &batch {
                    if let Some(e) = names.decode(raw).await {
                        deliver(&mut clients, e);
                    }
                }
            }
            _ = tick.tick() => {
                let before = clients.len();
                clients.retain(|c| !c.records.is_closed());
                if clients.len() != before {
                    configure(&mut config, &clients);
                }
                if let Some(now) = left_out() {
                    report_lost(&mut clients, &now);
                }
            }
        }
    }
}

/// Tell the datapath the union of what the clients want: every reason any asks for,
/// the finest sampling, the highest rate (0, no limit, if any asks for that).
fn configure(config: &mut aya::maps::Array<aya::maps::MapData, MonitorConfig>, clients: &[Client]) {
    let c = union(clients.iter().map(|c| (c.mask, &c.filter)));
    debug!(
        reasons = format!("{:#x}", c.reasons),
        sample = c.sample,
        rate = c.rate,
        "monitor"
    );
    if let Err(e) = config.set(0, c, 0) {
        warn!(error = %e, "cannot configure the datapath's monitor events");
    }
}

/// The datapath's settings for clients of these masks and filters.
fn union<'a>(clients: impl Iterator<Item = (u64, &'a Filter)> + Clone) -> MonitorConfig {
    MonitorConfig {
        reasons: clients.clone().fold(0, |m, (mask, _)| m | mask),
        sample: clients
            .clone()
            .map(|(_, f)| f.sample.max(1))
            .min()
            .unwrap_or(1),
        rate: if clients.clone().any(|(_, f)| f.rate == 0) {
            0
        } else {
            clients.map(|(_, f)| f.rate).max().unwrap_or(0)
        },
    }
}

fn deliver(clients: &mut [Client], e: Event) {
    let reason = e.reason;
    let e = Box::new(e);
    for c in clients.iter_mut() {
        if c.mask & 1 << (reason as u32) == 0 || !c.filter.passes(&e) {
            continue;
        }
        match c.records.try_send(Record::Event(e.clone())) {
            Ok(()) | Err(TrySendError::Closed(_)) => {}
            Err(TrySendError::Full(_)) => c.behind += 1,
        }
    }
}

fn report_lost(clients: &mut [Client], now: &MonitorState) {
    for c in clients.iter_mut() {
        let lost = Lost {
            sampled_out: now.sampled_out.saturating_sub(c.base.sampled_out),
            rate_limited: now.rate_limited.saturating_sub(c.base.rate_limited),
            ring_full: now.ring_full.saturating_sub(c.base.ring_full),
            client_behind: c.behind,
        };
        if lost != c.reported && c.records.try_send(Record::Lost(lost)).is_ok() {
            c.reported = lost;
        }
    }
}

/// Interface names and hooks by ifindex, from the daemon's listing of what it attached
/// (asked again for an unknown ifindex, at most once a second), else from the kernel.
struct Names {
    calls: mpsc::Sender<Call>,
    known: HashMap<u32, Iface>,
    asked: Option<Instant>,
    /// Wall clock minus monotonic clock (what `bpf_ktime_get_ns` reads), nanoseconds.
    offset_ns: i128,
}

impl Names {
    fn new(calls: mpsc::Sender<Call>) -> Self {
        Self {
            calls,
            known: HashMap::new(),
            asked: None,
            offset_ns: clock_offset(),
        }
    }

    /// The event, or none for a reason this bpfnet does not know (no client asked for it).
    async fn decode(&mut self, raw: &common::Event) -> Option<Event> {
        let reason = Reason::ALL.get(raw.reason as usize).copied()?;
        let iface = self.iface(raw.ifindex).await;
        let captured = usize::from(raw.captured).min(raw.data.len());
        let xdp = raw.hook == HOOK_XDP;
        Some(Event {
            time_ns: u64::try_from(i128::from(raw.time_ns) + self.offset_ns).unwrap_or(0),
            kind: Kind::of(reason),
            reason,
            iface: iface.name,
            ifindex: raw.ifindex,
            hook: if xdp { Hook::Xdp } else { iface.hook },
            packet: decode::packet(&raw.data[..captured], raw.len, xdp || iface.l2),
            after: decode::xlate(&raw.xlate),
            ct: CtState::of(reason),
        })
    }

    async fn iface(&mut self, ifindex: u32) -> Iface {
        if let Some(i) = self.known.get(&ifindex) {
            return i.clone();
        }
        if self
            .asked
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            self.asked = Some(Instant::now());
            self.offset_ns = clock_offset();
            self.refresh().await;
            if let Some(i) = self.known.get(&ifindex) {
                return i.clone();
            }
        }
        let name = crate::netlink::ifname(ifindex).unwrap_or_else(|| ifindex.to_string());
        let l2 = std::fs::read_to_string(format!("/sys/class/net/{name}/type"))
            .map_or(true, |t| t.trim() == "1");
        Iface {
            name,
            hook: Hook::Unmanaged,
            l2,
        }
    }

    async fn refresh(&mut self) {
        let (tx, rx) = oneshot::channel();
        if self.calls.send((Request::List, tx)).await.is_err() {
            return;
        }
        let Ok(Response::Listing(l)) = rx.await else {
            return;
        };
        for (name, program) in l.attached {
            let Some((hook, l2)) = event_hook(program) else {
                continue;
            };
            if let Some(i) = name_to_index(&name) {
                self.known.insert(i, Iface { name, hook, l2 });
            }
        }
    }
}

/// The hook an event of a TC program names (the program as `bpfnet ls` lists it), and
/// whether its frames start with an Ethernet header; none for a program that reports
/// no events of its own (XDP events say so themselves).
fn event_hook(program: Program) -> Option<(Hook, bool)> {
    match program {
        Program::FromContainer => Some((Hook::FromContainer, true)),
        Program::FromUplink => Some((Hook::FromUplink, true)),
        Program::FromL3Uplink => Some((Hook::FromUplink, false)),
        Program::ToTunnel | Program::XdpUplink => None,
    }
}

fn name_to_index(name: &str) -> Option<u32> {
    crate::netlink::ifindex(name)
}

/// `CLOCK_REALTIME` − `CLOCK_MONOTONIC`, nanoseconds.
fn clock_offset() -> i128 {
    let read = |clock| {
        let ts = clock_gettime(clock);
        i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
    };
    read(ClockId::Realtime) - read(ClockId::Monotonic)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_name_the_hook_of_their_program() {
        assert_eq!(
            event_hook(Program::FromContainer),
            Some((Hook::FromContainer, true))
        );
        assert_eq!(
            event_hook(Program::FromUplink),
            Some((Hook::FromUplink, true))
        );
        assert_eq!(
            event_hook(Program::FromL3Uplink),
            Some((Hook::FromUplink, false))
        );
        assert_eq!(event_hook(Program::ToTunnel), None);
        assert_eq!(
            event_hook(Program::XdpUplink),
            None,
            "XDP events say so themselves"
        );
    }

    #[test]
    fn the_datapath_gets_the_union_of_what_clients_want() {
        let none = union(std::iter::empty());
        assert_eq!(none.reasons, 0, "no client, no events");
        let a = Filter {
            sample: 4,
            rate: 100,
            ..Filter::default()
        };
        let b = Filter {
            sample: 2,
            rate: 50,
            ..Filter::default()
        };
        let c = union([(0b01, &a), (0b10, &b)].into_iter());
        assert_eq!((c.reasons, c.sample, c.rate), (0b11, 2, 100));
        let unlimited = Filter {
            rate: 0,
            ..Filter::default()
        };
        assert_eq!(union([(1, &a), (1, &unlimited)].into_iter()).rate, 0);
    }
}
