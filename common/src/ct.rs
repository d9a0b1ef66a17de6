//! Connection tracking entries, shared by DNAT (and later SNAT).
//!
//! Each translated flow has two entries: one keyed by the tuple of the original direction
//! as it arrives on the uplink, one keyed by the tuple of the reply as it leaves the
//! container. Each entry names the address to write and, with the key, is enough to derive
//! its twin's key.

/// Key of `ct_v1`: a 5-tuple as seen on the wire at the hook that looks it up.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CtKey {
    /// Source IPv4, network order.
    pub src_ip: u32,
    /// Destination IPv4, network order.
    pub dst_ip: u32,
    /// Source port, network order.
    pub src_port: u16,
    /// Destination port, network order.
    pub dst_port: u16,
    /// `PROTO_TCP` or `PROTO_UDP`.
    pub proto: u8,
    pub _pad: [u8; 3],
}

/// What an entry does to a packet that matches its key.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtKind {
    /// Client → published port: destination becomes `nat_ip:nat_port` (the backend).
    DnatForward = 1,
    /// Backend → client: source becomes `nat_ip:nat_port` (the published address).
    DnatReply = 2,
}

impl CtKind {
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::DnatForward),
            2 => Some(Self::DnatReply),
            _ => None,
        }
    }
}

/// TCP state as far as one direction's flags tell it.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpState {
    /// Not TCP, or no flag of note seen yet.
    None = 0,
    SynSent = 1,
    Established = 2,
    Fin = 3,
    Rst = 4,
}

impl TcpState {
    pub fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::SynSent,
            2 => Self::Established,
            3 => Self::Fin,
            4 => Self::Rst,
            _ => Self::None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::None => "-",
            Self::SynSent => "syn",
            Self::Established => "established",
            Self::Fin => "fin",
            Self::Rst => "rst",
        }
    }
}

/// Value of `ct_v1`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtValue {
    /// Address written into the packet, network order (see `CtKind`).
    pub nat_ip: u32,
    /// Port written into the packet, network order.
    pub nat_port: u16,
    /// A `CtKind`.
    pub kind: u8,
    /// A `TcpState`.
    pub state: u8,
    /// `bpf_ktime_get_ns` (CLOCK_MONOTONIC) of the last packet, nanoseconds.
    pub last_seen_ns: u64,
    /// Packets matched in this direction.
    pub packets: u64,
    /// Bytes (L2 length) matched in this direction.
    pub bytes: u64,
}

impl CtKey {
    /// Key of the twin entry, given this entry's value.
    pub fn twin(&self, v: &CtValue) -> CtKey {
        match CtKind::from_u8(v.kind) {
            // Forward {c→h} with backend b: the reply is {b→c}.
            Some(CtKind::DnatForward) => CtKey {
                src_ip: v.nat_ip,
                dst_ip: self.src_ip,
                src_port: v.nat_port,
                dst_port: self.src_port,
                proto: self.proto,
                _pad: [0; 3],
            },
            // Reply {b→c} with published h: the forward is {c→h}.
            Some(CtKind::DnatReply) | None => CtKey {
                src_ip: self.dst_ip,
                dst_ip: v.nat_ip,
                src_port: self.dst_port,
                dst_port: v.nat_port,
                proto: self.proto,
                _pad: [0; 3],
            },
        }
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: #[repr(C)] integers with explicit padding fields, no implicit padding.
    unsafe impl aya::Pod for super::CtKey {}
    unsafe impl aya::Pod for super::CtValue {}
}

#[cfg(test)]
mod tests {
    use core::mem::{offset_of, size_of};

    use super::*;

    #[test]
    fn layouts_match_the_datapath() {
        assert_eq!(size_of::<CtKey>(), 16);
        assert_eq!(offset_of!(CtKey, src_port), 8);
        assert_eq!(offset_of!(CtKey, proto), 12);
        assert_eq!(size_of::<CtValue>(), 32);
        assert_eq!(offset_of!(CtValue, kind), 6);
        assert_eq!(offset_of!(CtValue, last_seen_ns), 8);
    }

    #[test]
    fn twins_point_at_each_other() {
        let fwd = CtKey {
            src_ip: 1,
            dst_ip: 2,
            src_port: 3,
            dst_port: 4,
            proto: 6,
            _pad: [0; 3],
        };
        let fwd_v = CtValue {
            nat_ip: 9,
            nat_port: 8,
            kind: CtKind::DnatForward as u8,
            state: 0,
            last_seen_ns: 0,
            packets: 0,
            bytes: 0,
        };
        let rev = fwd.twin(&fwd_v);
        assert_eq!(
            (rev.src_ip, rev.dst_ip, rev.src_port, rev.dst_port),
            (9, 1, 8, 3)
        );
        let rev_v = CtValue {
            nat_ip: 2,
            nat_port: 4,
            kind: CtKind::DnatReply as u8,
            ..fwd_v
        };
        assert_eq!(rev.twin(&rev_v), fwd);
    }
}
