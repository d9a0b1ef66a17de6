//! `bpfnet monitor` on the wire: what a client asks for (`Filter`, in
//! `Request::Monitor`) and the records it is sent (`Record`, one JSON line each). The
//! daemon's side, which drains the datapath's events into them, is `crate::monitor`.
use std::net::IpAddr;

use common::Reason;
use serde::{Deserialize, Serialize};

use super::{
    flow::Proto,
    reason::{by_name, by_names},
};

/// Default events per second (all CPUs together).
pub const DEFAULT_RATE: u32 = 1000;

/// Drops, traces (every other verdict), or both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Drop,
    Trace,
}

impl Kind {
    pub fn of(reason: Reason) -> Self {
        if reason.is_drop() {
            Self::Drop
        } else {
            Self::Trace
        }
    }
}

/// What a client wants to see. Empty lists match everything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    /// Only these kinds (none: both).
    #[serde(default)]
    pub kind: Option<Kind>,
    /// Only these reasons (by name on the wire: `drop-isolation`).
    #[serde(default, with = "by_names")]
    pub reasons: Vec<Reason>,
    /// A packet whose source or destination, before or after translation, is one of
    /// these.
    #[serde(default)]
    pub ips: Vec<IpAddr>,
    /// A packet whose source or destination port, before or after translation, is one
    /// of these.
    #[serde(default)]
    pub ports: Vec<u16>,
    /// Seen on one of these interfaces.
    #[serde(default)]
    pub ifaces: Vec<String>,
    /// Report one in this many packets (1: every one).
    #[serde(default = "one")]
    pub sample: u32,
    /// At most this many events a second, all CPUs together (0: no limit).
    #[serde(default = "default_rate")]
    pub rate: u32,
}

fn one() -> u32 {
    1
}

fn default_rate() -> u32 {
    DEFAULT_RATE
}

#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("--reason {} is a {actual:?} reason, and --type asks for {asked:?} only", .reason.name())]
    KindMismatch {
        reason: Reason,
        actual: Kind,
        asked: Kind,
    },
}

impl Filter {
    /// The datapath mask this filter needs: a bit per reason (`MonitorConfig::reasons`).
    pub fn mask(&self) -> Result<u64, FilterError> {
        if self.reasons.is_empty() {
            return Ok(Reason::ALL
                .iter()
                .filter(|&&r| self.kind.is_none_or(|k| k == Kind::of(r)))
                .fold(0, |m, &r| m | 1 << (r as u32)));
        }
        self.reasons.iter().try_fold(0, |m, &r| match self.kind {
            Some(asked) if asked != Kind::of(r) => Err(FilterError::KindMismatch {
                reason: r,
                actual: Kind::of(r),
                asked,
            }),
            _ => Ok(m | 1 << (r as u32)),
        })
    }

    /// Whether `e` passes the filter (its reason is already one the mask asked for; the
    /// mask is the union of every client's).
    pub fn passes(&self, e: &Event) -> bool {
        let reason_ok = if self.reasons.is_empty() {
            self.kind.is_none_or(|k| k == e.kind)
        } else {
            self.reasons.contains(&e.reason)
        };
        let tuples = || e.packet.before.iter().chain(&e.after);
        let ip_ok = self.ips.is_empty()
            || tuples().any(|t| self.ips.contains(&t.src) || self.ips.contains(&t.dst));
        let port_ok = self.ports.is_empty()
            || tuples().any(|t| {
                [t.sport, t.dport]
                    .into_iter()
                    .flatten()
                    .any(|p| self.ports.contains(&p))
            });
        let iface_ok = self.ifaces.is_empty() || self.ifaces.contains(&e.iface);
        reason_ok && ip_ok && port_ok && iface_ok
    }
}

/// One decoded event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Wall-clock time, nanoseconds since the Unix epoch.
    pub time_ns: u64,
    pub kind: Kind,
    #[serde(with = "by_name")]
    pub reason: Reason,
    /// The interface (its name; the ifindex when it has none any more).
    pub iface: String,
    pub ifindex: u32,
    pub hook: Hook,
    /// The packet as it arrived.
    #[serde(flatten)]
    pub packet: Packet,
    /// The tuple its flow leaves with, for a verdict that found or made a flow.
    pub after: Option<Tuple>,
    /// The flow's state as the verdict found it; none for a packet of no flow.
    pub ct: Option<CtState>,
}

/// Where an event was seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Hook {
    FromContainer,
    /// An uplink's TC program (Ethernet or L3).
    FromUplink,
    Xdp,
    /// An interface bpfnet did not attach to (gone, or not known yet).
    Unmanaged,
}

impl Hook {
    pub fn name(self) -> &'static str {
        match self {
            Self::FromContainer => "from-container",
            Self::FromUplink => "from-uplink",
            Self::Xdp => "xdp",
            Self::Unmanaged => "unmanaged",
        }
    }
}

/// A flow's state as a verdict found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CtState {
    New,
    Established,
    Reply,
    Related,
}

impl CtState {
    /// The flow state a verdict implies.
    pub fn of(reason: Reason) -> Option<Self> {
        match reason {
            Reason::DnatNew | Reason::SnatNew => Some(Self::New),
            Reason::CtForward | Reason::CtRepaired => Some(Self::Established),
            Reason::CtReply => Some(Self::Reply),
            Reason::IcmpError => Some(Self::Related),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Established => "established",
            Self::Reply => "reply",
            Self::Related => "related",
        }
    }
}

/// What was left out since the client connected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lost {
    /// Left out by sampling (`--sample`), in the datapath.
    pub sampled_out: u64,
    /// Held back by the rate limit (`--rate`), in the datapath.
    pub rate_limited: u64,
    /// Not written: the ring buffer was full.
    pub ring_full: u64,
    /// Not sent to this client: it read too slowly.
    pub client_behind: u64,
}

impl Lost {
    pub fn total(&self) -> u64 {
        self.rate_limited + self.ring_full + self.client_behind
    }
}

/// One line of a monitor stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "kebab-case")]
pub enum Record {
    Event(Box<Event>),
    Lost(Lost),
}

/// Addresses, protocol and ports of a packet or a flow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tuple {
    pub proto: Proto,
    pub src: IpAddr,
    /// Source port (TCP, UDP) or echo identifier (ICMP echo); none for other packets
    /// and later fragments.
    pub sport: Option<u16>,
    pub dst: IpAddr,
    pub dport: Option<u16>,
}

/// What the captured bytes say.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Packet {
    /// The packet's whole length.
    pub len: u32,
    /// Its tuple as it arrived; none for a frame that is not IP or was cut short.
    pub before: Option<Tuple>,
    /// TCP flags, as `tcpdump` writes them (`S`, `S.`, `F.`, `R`, `P.`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_flags: Option<String>,
    /// ICMP or `ICMPv6` type and code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp: Option<(u8, u8)>,
    /// The ethertype of a frame that is not IP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ethertype: Option<u16>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(reason: Reason, src: &str, dport: u16, iface: &str) -> Event {
        let tuple = Tuple {
            proto: Proto::Tcp,
            src: src.parse().unwrap(),
            sport: Some(40000),
            dst: "172.18.0.3".parse().unwrap(),
            dport: Some(dport),
        };
        Event {
            time_ns: 0,
            kind: Kind::of(reason),
            reason,
            iface: iface.into(),
            ifindex: 4,
            hook: Hook::FromContainer,
            packet: Packet {
                len: 60,
                before: Some(tuple),
                ..Packet::default()
            },
            after: None,
            ct: None,
        }
    }

    #[test]
    fn filters_match_addresses_ports_interfaces_and_kinds() {
        let e = event(Reason::DropIsolation, "172.17.0.4", 80, "vc0");
        assert!(Filter::default().passes(&e));
        let f = |f: Filter| f.passes(&e);
        assert!(f(Filter {
            ips: vec!["172.18.0.3".parse().unwrap()],
            ..Filter::default()
        }));
        assert!(!f(Filter {
            ips: vec!["203.0.113.9".parse().unwrap()],
            ..Filter::default()
        }));
        assert!(f(Filter {
            ports: vec![80],
            ..Filter::default()
        }));
        assert!(!f(Filter {
            ports: vec![443],
            ..Filter::default()
        }));
        assert!(!f(Filter {
            ifaces: vec!["vc1".into()],
            ..Filter::default()
        }));
        assert!(!f(Filter {
            kind: Some(Kind::Trace),
            ..Filter::default()
        }));
        assert!(!f(Filter {
            reasons: vec![Reason::DropSpoof],
            ..Filter::default()
        }));
    }

    #[test]
    fn events_keep_their_wire_names() {
        let mut e = event(Reason::CtForward, "172.17.0.4", 80, "vc0");
        e.ct = CtState::of(e.reason);
        let json = serde_json::to_value(Record::Event(Box::new(e.clone()))).unwrap();
        let field = |k: &str| json[k].as_str().unwrap_or_default().to_owned();
        assert_eq!(
            [field("record"), field("kind"), field("reason")],
            ["event", "trace", "ct-forward"]
        );
        assert_eq!(
            [field("hook"), field("ct")],
            ["from-container", "established"]
        );
        for h in [
            Hook::FromContainer,
            Hook::FromUplink,
            Hook::Xdp,
            Hook::Unmanaged,
        ] {
            assert_eq!(serde_json::to_value(h).unwrap(), h.name());
        }
        for c in [
            CtState::New,
            CtState::Established,
            CtState::Reply,
            CtState::Related,
        ] {
            assert_eq!(serde_json::to_value(c).unwrap(), c.name());
        }
        let back: Record = serde_json::from_value(json).unwrap();
        assert_eq!(back, Record::Event(Box::new(e)));
    }

    #[test]
    fn masks_follow_kind_and_reasons() {
        let all = Filter::default().mask().unwrap();
        assert_eq!(all.count_ones(), Reason::COUNT);
        let drops = Filter {
            kind: Some(Kind::Drop),
            ..Filter::default()
        }
        .mask()
        .unwrap();
        assert!(drops & 1 << (Reason::DropIsolation as u32) != 0);
        assert!(drops & 1 << (Reason::CtForward as u32) == 0);
        let one = Filter {
            reasons: vec![Reason::DropIsolation],
            ..Filter::default()
        }
        .mask()
        .unwrap();
        assert_eq!(one, 1 << (Reason::DropIsolation as u32));
        assert!(matches!(
            Filter {
                kind: Some(Kind::Trace),
                reasons: vec![Reason::DropIsolation],
                ..Filter::default()
            }
            .mask(),
            Err(FilterError::KindMismatch { .. })
        ));
    }
}
