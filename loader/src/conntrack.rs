//! Flows as people see them (both CT entries paired), their state and expiry, and the
//! timeouts the sweeper applies.
use std::{
    collections::HashMap,
    fmt,
    net::{IpAddr, SocketAddr},
    str::FromStr,
    time::Duration,
};

use common::{
    Addr, CT_ORIG_LOCAL, CtKey, CtTimeouts, CtValue, PROTO_TCP, TcpState, ct::holds_snat_quota,
};
use rustc_hash::FxBuildHasher;
use rustix::time::{ClockId, clock_gettime};
use serde::{Deserialize, Serialize};

use crate::api::flow::{FlowState, Nat, Proto};

/// How long an idle flow lives, by protocol and TCP state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub syn: Duration,
    pub established: Duration,
    /// One side has sent FIN.
    pub closing: Duration,
    /// Both sides sent FIN (a `TIME_WAIT` holds the tuple at one end).
    pub time_wait: Duration,
    /// Either side sent an in-window RST.
    pub closed: Duration,
    pub udp: Duration,
    pub icmp: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            syn: Duration::from_mins(1),
            established: Duration::from_hours(6),
            closing: Duration::from_mins(2),
            time_wait: Duration::from_mins(2),
            closed: Duration::from_secs(10),
            udp: Duration::from_mins(1),
            icmp: Duration::from_secs(30),
        }
    }
}

impl From<&Timeouts> for CtTimeouts {
    fn from(t: &Timeouts) -> Self {
        let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        CtTimeouts {
            syn: ns(t.syn),
            established: ns(t.established),
            closing: ns(t.closing),
            time_wait: ns(t.time_wait),
            closed: ns(t.closed),
            udp: ns(t.udp),
            icmp: ns(t.icmp),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "`{input}`: expected NAME=SECONDS[,...] with NAME one of syn, established, closing, time_wait, closed, udp, icmp"
)]
pub struct TimeoutsError {
    input: String,
}

/// `udp=30,closed=5`: the named timeouts change, the others keep their defaults.
impl FromStr for Timeouts {
    type Err = TimeoutsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || TimeoutsError { input: s.into() };
        let mut t = Timeouts::default();
        for item in s.split(',') {
            let (name, secs) = item.split_once('=').ok_or_else(err)?;
            let secs = secs
                .parse::<u64>()
                .ok()
                .filter(|&s| s > 0)
                .ok_or_else(err)?;
            let slot = match name {
                "syn" => &mut t.syn,
                "established" => &mut t.established,
                "closing" => &mut t.closing,
                "time_wait" => &mut t.time_wait,
                "closed" => &mut t.closed,
                "udp" => &mut t.udp,
                "icmp" => &mut t.icmp,
                _ => return Err(err()),
            };
            *slot = Duration::from_secs(secs);
        }
        Ok(t)
    }
}

/// A flow of either family: its forward entry and, unless LRU eviction took it, its
/// reply entry.
#[derive(Clone, Debug)]
pub struct Flow<A = u32> {
    pub key: CtKey<A>,
    pub fwd: CtValue<A>,
    pub reply: Option<(CtKey<A>, CtValue<A>)>,
}

impl<A: Addr> Flow<A> {
    pub fn last_seen_ns(&self) -> u64 {
        self.reply
            .map_or(0, |(_, v)| v.last_seen_ns)
            .max(self.fwd.last_seen_ns)
    }

    pub fn tcp_state(&self) -> TcpState {
        TcpState::of(self.fwd.tcp_seen, self.reply.map_or(0, |(_, v)| v.tcp_seen))
    }

    /// The same rule as the in-kernel sweep's (`CtTimeouts::of`).
    pub fn timeout(&self, t: &Timeouts) -> Duration {
        Duration::from_nanos(CtTimeouts::from(t).of(self.key.proto, self.tcp_state()))
    }

    /// Time left before the sweeper removes it (zero: due).
    pub fn expires_in(&self, now_ns: u64, t: &Timeouts) -> Duration {
        let idle = Duration::from_nanos(now_ns.saturating_sub(self.last_seen_ns()));
        self.timeout(t).saturating_sub(idle)
    }

    /// The container whose SNAT quota count this flow holds, when it holds one: a
    /// container's masqueraded flow, until it has finished.
    pub fn snat_quota_key(&self) -> Option<A> {
        let holds = holds_snat_quota(self.fwd.flags, self.key.proto, self.tcp_state());
        (holds && !self.fwd.is_reply()).then_some(self.key.src_ip)
    }

    /// The container whose share of the flow tables this flow counts against: the local
    /// endpoint that originated it (a reply half left alone names it through its twin).
    pub fn originator(&self) -> Option<A> {
        if self.fwd.flags & CT_ORIG_LOCAL == 0 {
            return None;
        }
        Some(if self.fwd.is_reply() {
            self.key.twin(&self.fwd).src_ip
        } else {
            self.key.src_ip
        })
    }

    /// The keys to delete to forget it.
    pub fn keys(&self) -> Vec<CtKey<A>> {
        std::iter::once(self.key)
            .chain(self.reply.map(|(k, _)| k))
            .collect()
    }
}

/// Where each key sits in a list of entries: a hash index with `FxHash`, a multiplicative
/// hash (the sweep indexes a million keys every few seconds; `SipHash`'s resistance to
/// chosen keys buys nothing for a table the datapath already bounds).
pub type Index<A = u32> = HashMap<CtKey<A>, u32, FxBuildHasher>;

/// The index of `entries` by key.
pub fn index<A: Addr>(entries: &[(CtKey<A>, CtValue<A>)]) -> Index<A> {
    let mut index = Index::with_capacity_and_hasher(entries.len(), FxBuildHasher);
    for (i, (k, _)) in entries.iter().enumerate() {
        index.insert(*k, i as u32);
    }
    index
}

/// The flows of `entries` (indexed by `index`), one per forward entry with its reply
/// entry if LRU eviction left it; a reply entry whose forward entry is gone becomes a
/// flow of its own (so the sweeper still ages it out). Built as they are walked.
pub fn pairs<'a, A: Addr>(
    entries: &'a [(CtKey<A>, CtValue<A>)],
    index: &'a Index<A>,
) -> impl Iterator<Item = Flow<A>> + 'a {
    let get = move |k: &CtKey<A>| index.get(k).map(|&i| entries[i as usize].1);
    entries.iter().filter_map(move |(k, v)| {
        let twin = k.twin(v);
        let other = get(&twin);
        if v.is_reply() {
            // Its flow is its forward entry's, unless that is gone.
            return other.is_none_or(|t| t.is_reply()).then_some(Flow {
                key: *k,
                fwd: *v,
                reply: None,
            });
        }
        Some(Flow {
            key: *k,
            fwd: *v,
            reply: other.filter(CtValue::is_reply).map(|t| (twin, t)),
        })
    })
}

/// Pair the entries of the CT map into flows, in tuple order (see `pairs`).
pub fn flows<A: Addr>(entries: Vec<(CtKey<A>, CtValue<A>)>) -> Vec<Flow<A>> {
    let index = index(&entries);
    let mut out: Vec<Flow<A>> = pairs(&entries, &index).collect();
    out.sort_unstable_by_key(|f| f.key);
    out
}

/// A tuple for display: addresses and host-order ports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tuple {
    pub src: IpAddr,
    pub src_port: u16,
    pub dst: IpAddr,
    pub dst_port: u16,
}

impl<A: Addr> From<&CtKey<A>> for Tuple {
    fn from(k: &CtKey<A>) -> Self {
        Self {
            src: k.src_ip.to_ip(),
            src_port: k.src_port.get(),
            dst: k.dst_ip.to_ip(),
            dst_port: k.dst_port.get(),
        }
    }
}

impl fmt::Display for Tuple {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // IPv6 in brackets, as in a socket address.
        let (src, dst) = (
            SocketAddr::new(self.src, self.src_port),
            SocketAddr::new(self.dst, self.dst_port),
        );
        write!(f, "{src} -> {dst}")
    }
}

/// One line of `bpfnet conntrack`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowInfo {
    pub proto: Proto,
    /// As the first packet arrived.
    pub original: Tuple,
    /// As it left.
    pub translated: Tuple,
    pub nat: Nat,
    pub state: FlowState,
    pub expires_in_s: u64,
    pub packets: u64,
    pub bytes: u64,
    pub reply_packets: u64,
    pub reply_bytes: u64,
}

impl FlowInfo {
    pub fn new<A: Addr>(f: &Flow<A>, now_ns: u64, t: &Timeouts) -> Self {
        let state = if f.fwd.is_reply() {
            FlowState::Orphan
        } else if f.key.proto == PROTO_TCP {
            f.tcp_state().into()
        } else {
            FlowState::None
        };
        let (reply_packets, reply_bytes) = f.reply.map_or((0, 0), |(_, v)| (v.packets, v.bytes));
        Self {
            proto: f.key.proto.into(),
            original: Tuple::from(&f.key),
            translated: Tuple::from(&f.key.translated(&f.fwd)),
            nat: Nat::of(f.fwd.flags),
            state,
            expires_in_s: f.expires_in(now_ns, t).as_secs(),
            packets: f.fwd.packets,
            bytes: f.fwd.bytes,
            reply_packets,
            reply_bytes,
        }
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds, the clock of `bpf_ktime_get_coarse_ns` (which lags it
/// by at most a tick).
pub fn monotonic_ns() -> u64 {
    let ts = clock_gettime(ClockId::Monotonic);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests;
