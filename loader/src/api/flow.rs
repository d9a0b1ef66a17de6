//! What a flow or a packet is, as the API names it: its protocol, the translation it
//! went through and its state (`bpfnet conntrack`, `bpfnet monitor`).
use std::{fmt, str::FromStr};

use common::{CT_DNAT, CT_SNAT, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, TcpState};
use serde::{Deserialize, Serialize};

/// An IP protocol: `tcp`, `udp`, `icmp`, `icmpv6` on the wire, any other by its number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proto {
    Tcp,
    Udp,
    Icmp,
    Icmpv6,
    /// Any other protocol, by its number (never one of the above).
    Other(u8),
}

impl Proto {
    pub fn number(self) -> u8 {
        match self {
            Self::Tcp => PROTO_TCP,
            Self::Udp => PROTO_UDP,
            Self::Icmp => PROTO_ICMP,
            Self::Icmpv6 => PROTO_ICMPV6,
            Self::Other(n) => n,
        }
    }
}

impl From<u8> for Proto {
    fn from(n: u8) -> Self {
        match n {
            PROTO_TCP => Self::Tcp,
            PROTO_UDP => Self::Udp,
            PROTO_ICMP => Self::Icmp,
            PROTO_ICMPV6 => Self::Icmpv6,
            n => Self::Other(n),
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, so a table's width applies.
        match self {
            Self::Tcp => f.pad("tcp"),
            Self::Udp => f.pad("udp"),
            Self::Icmp => f.pad("icmp"),
            Self::Icmpv6 => f.pad("icmpv6"),
            Self::Other(n) => f.pad(&n.to_string()),
        }
    }
}

/// A protocol name the API does not write.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{given}` is not a protocol: expected tcp, udp, icmp, icmpv6 or a number")]
pub struct UnknownProto {
    given: String,
}

impl FromStr for Proto {
    type Err = UnknownProto;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "tcp" => Ok(Self::Tcp),
            "udp" => Ok(Self::Udp),
            "icmp" => Ok(Self::Icmp),
            "icmpv6" => Ok(Self::Icmpv6),
            n => n.parse::<u8>().map(Self::from).map_err(|_| UnknownProto {
                given: s.to_string(),
            }),
        }
    }
}

serde_as_string!(Proto);

/// The translation a flow goes through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Nat {
    #[serde(rename = "-")]
    None,
    #[serde(rename = "dnat")]
    Dnat,
    #[serde(rename = "snat")]
    Snat,
    #[serde(rename = "dnat+snat")]
    DnatSnat,
}

impl Nat {
    /// From a conntrack entry's flags.
    pub fn of(flags: u8) -> Self {
        match (flags & CT_DNAT != 0, flags & CT_SNAT != 0) {
            (true, true) => Self::DnatSnat,
            (true, false) => Self::Dnat,
            (false, true) => Self::Snat,
            (false, false) => Self::None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::None => "-",
            Self::Dnat => "dnat",
            Self::Snat => "snat",
            Self::DnatSnat => "dnat+snat",
        }
    }
}

impl fmt::Display for Nat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// A tracked flow's state: a TCP flow's, `orphan` for a reply entry whose forward one is
/// gone, `-` for a flow of another protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FlowState {
    SynSent,
    Established,
    Closing,
    TimeWait,
    Closed,
    Orphan,
    #[serde(rename = "-")]
    None,
}

impl From<TcpState> for FlowState {
    fn from(s: TcpState) -> Self {
        match s {
            TcpState::SynSent => Self::SynSent,
            TcpState::Established => Self::Established,
            TcpState::Closing => Self::Closing,
            TcpState::TimeWait => Self::TimeWait,
            TcpState::Closed => Self::Closed,
        }
    }
}

impl FlowState {
    pub fn name(self) -> &'static str {
        match self {
            Self::SynSent => TcpState::SynSent.name(),
            Self::Established => TcpState::Established.name(),
            Self::Closing => TcpState::Closing.name(),
            Self::TimeWait => TcpState::TimeWait.name(),
            Self::Closed => TcpState::Closed.name(),
            Self::Orphan => "orphan",
            Self::None => "-",
        }
    }
}

impl fmt::Display for FlowState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json<T: Serialize>(v: T) -> String {
        serde_json::to_string(&v).unwrap()
    }

    #[test]
    fn a_protocol_is_its_name_or_number_on_the_wire() {
        for (n, name) in [
            (PROTO_TCP, "tcp"),
            (PROTO_UDP, "udp"),
            (PROTO_ICMP, "icmp"),
            (PROTO_ICMPV6, "icmpv6"),
            (47, "47"),
        ] {
            let p = Proto::from(n);
            assert_eq!(p.number(), n);
            assert_eq!(json(p), format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<Proto>(&json(p)).unwrap(), p);
        }
        assert_eq!(format!("{:<5}|", Proto::Udp), "udp  |");
        assert!(serde_json::from_str::<Proto>("\"gre\"").is_err());
        // A known protocol's number reads back as its name, never as Other.
        assert_eq!("6".parse::<Proto>().unwrap(), Proto::Tcp);
    }

    #[test]
    fn nat_and_state_keep_their_names_on_the_wire() {
        for nat in [Nat::None, Nat::Dnat, Nat::Snat, Nat::DnatSnat] {
            assert_eq!(json(nat), format!("\"{}\"", nat.name()));
        }
        assert_eq!(Nat::of(CT_DNAT | CT_SNAT), Nat::DnatSnat);
        assert_eq!(Nat::of(0), Nat::None);
        for s in [
            TcpState::SynSent,
            TcpState::Established,
            TcpState::Closing,
            TcpState::TimeWait,
            TcpState::Closed,
        ] {
            assert_eq!(json(FlowState::from(s)), format!("\"{}\"", s.name()));
        }
        assert_eq!(json(FlowState::Orphan), "\"orphan\"");
        assert_eq!(json(FlowState::None), "\"-\"");
        assert_eq!(format!("{:<12}|", FlowState::TimeWait), "time-wait   |");
    }
}
