//! `bpfnet monitor`: the datapath's drop and trace events, decoded, filtered and streamed
//! to each client of the control socket that asked for them.
//!
//! The datapath reports only the reasons some client wants (the union of their filters),
//! sampled per CPU and rate-limited over all CPUs (`common::monitor`); the hub (`hub`) drains the ring
//! buffer, decodes each event (`decode`) and hands it to every client whose filter it
//! passes. What was left out on the way is counted and sent as `lost` records.
mod decode;
pub mod hub;

use std::net::IpAddr;

use common::Reason;
pub use decode::{Packet, Tuple};
use serde::{Deserialize, Serialize};

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
    /// Only these reasons, by name (`drop-isolation`).
    #[serde(default)]
    pub reasons: Vec<String>,
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
    #[error("unknown reason `{name}` (see `bpfnet stats` for the names)")]
    UnknownReason { name: String },
    #[error("--reason {name} is a {actual:?} reason, and --type asks for {asked:?} only")]
    KindMismatch {
        name: String,
        actual: Kind,
        asked: Kind,
    },
}

/// A reason by its name.
pub fn reason_named(name: &str) -> Result<Reason, FilterError> {
    Reason::ALL
        .iter()
        .copied()
        .find(|r| r.name() == name)
        .ok_or_else(|| FilterError::UnknownReason { name: name.into() })
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
        self.reasons.iter().try_fold(0, |m, name| {
            let r = reason_named(name)?;
            match self.kind {
                Some(asked) if asked != Kind::of(r) => Err(FilterError::KindMismatch {
                    name: name.clone(),
                    actual: Kind::of(r),
                    asked,
                }),
                _ => Ok(m | 1 << (r as u32)),
            }
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
    pub reason: String,
    /// The interface (its name; the ifindex when it has none any more).
    pub iface: String,
    pub ifindex: u32,
    /// `from-container`, `from-uplink` or `xdp`.
    pub hook: String,
    /// The packet as it arrived.
    #[serde(flatten)]
    pub packet: Packet,
    /// The tuple its flow leaves with, for a verdict that found or made a flow.
    pub after: Option<Tuple>,
    /// The flow's state as the verdict found it: `new`, `established`, `reply` or
    /// `related`; none for a packet of no flow.
    pub ct: Option<String>,
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

/// The flow state a verdict implies.
pub fn ct_state(reason: Reason) -> Option<&'static str> {
    match reason {
        Reason::DnatNew | Reason::SnatNew => Some("new"),
        Reason::CtForward | Reason::CtRepaired => Some("established"),
        Reason::CtReply => Some("reply"),
        Reason::IcmpError => Some("related"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(reason: &str, src: &str, dport: u16, iface: &str) -> Event {
        let tuple = Tuple {
            proto: "tcp".into(),
            src: src.parse().unwrap(),
            sport: Some(40000),
            dst: "172.18.0.3".parse().unwrap(),
            dport: Some(dport),
        };
        Event {
            time_ns: 0,
            kind: Kind::of(reason_named(reason).unwrap()),
            reason: reason.into(),
            iface: iface.into(),
            ifindex: 4,
            hook: "from-container".into(),
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
        let e = event("drop-isolation", "172.17.0.4", 80, "vc0");
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
            reasons: vec!["drop-spoof".into()],
            ..Filter::default()
        }));
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
            reasons: vec!["drop-isolation".into()],
            ..Filter::default()
        }
        .mask()
        .unwrap();
        assert_eq!(one, 1 << (Reason::DropIsolation as u32));
        assert!(matches!(
            Filter {
                reasons: vec!["drop-nonsense".into()],
                ..Filter::default()
            }
            .mask(),
            Err(FilterError::UnknownReason { .. })
        ));
        assert!(matches!(
            Filter {
                kind: Some(Kind::Trace),
                reasons: vec!["drop-isolation".into()],
                ..Filter::default()
            }
            .mask(),
            Err(FilterError::KindMismatch { .. })
        ));
    }
}
