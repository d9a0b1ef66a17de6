//! Connection tracking, shared by DNAT and SNAT.
//!
//! A flow has two entries, like netfilter's original and reply tuples: each is keyed by
//! the tuple a packet has when it reaches a bpfnet hook and holds the tuple it leaves
//! with. The reply entry is the exact reverse of the forward one, so either derives its
//! twin. For ICMP echo the identifier stands in for the ports: requests carry it as the
//! source port (destination 0), replies as the destination port (source 0).

use crate::{Addr, Be16, Ip6};

/// A 5-tuple of either family (`A`: `u32` for IPv4, `Ip6`); the key of `ct_v3` (IPv4)
/// and `ct6_v1` (IPv6).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CtKey<A = u32> {
    /// Source address, network order.
    pub src_ip: A,
    /// Destination address, network order.
    pub dst_ip: A,
    /// Source port (or ICMP echo id).
    pub src_port: Be16,
    /// Destination port (or ICMP echo id).
    pub dst_port: Be16,
    /// IP protocol number.
    pub proto: u8,
    pub _pad: [u8; 3],
}

/// `CtValue::flags`: this entry is the reply direction.
pub const CT_REPLY: u8 = 1;
/// `CtValue::flags`: the flow's destination is translated (published port).
pub const CT_DNAT: u8 = 2;
/// `CtValue::flags`: the flow's source is translated (egress masquerade, hairpin).
pub const CT_SNAT: u8 = 4;
/// `CtValue::flags`, on both entries: the flow's originator was a local endpoint when it
/// began, so its forward entry's packets come from a container's veth, never from
/// outside.
pub const CT_ORIG_LOCAL: u8 = 8;
/// `CtValue::flags`, on both entries: the flow's responder (its translated destination)
/// was a local endpoint when it began, so its reply entry's packets come from a
/// container's veth, never from outside.
pub const CT_REPLY_LOCAL: u8 = 16;
/// `CtValue::flags`, per entry (the twins differ): the side this entry's own packets
/// arrive from, recorded when the flow began; 0 in entries made before sides were
/// recorded or rebuilt by the daemon (then only the `*_LOCAL` bits are checked). A
/// packet of the entry arriving from another side is forged (`drop-spoof`).
pub const CT_SIDE: u8 = 32 | 64;
/// `CT_SIDE`: a container's veth (`from_container`).
pub const CT_SIDE_VETH: u8 = 32;
/// `CT_SIDE`: an uplink, Ethernet or L3, outside the cluster's tunnel.
pub const CT_SIDE_UPLINK: u8 = 64;
/// `CT_SIDE`: out of the cluster's VXLAN tunnel (at `from_uplink`, with a tunnel key).
pub const CT_SIDE_TUNNEL: u8 = 32 | 64;

/// TCP flag bits as they are kept in `CtValue::tcp_seen`.
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;
/// Not a TCP flag: this direction sent the flow's first FIN, so its sender is the side
/// that waits in `TIME_WAIT` once both have closed.
pub const TCP_FIN_FIRST: u8 = 0x80;

/// `CtValue::hop`: no next hop remembered.
pub const HOP_NONE: u8 = 0;
/// `CtValue::hop`: straight into an endpoint's namespace (`bpf_redirect_peer` on the
/// host-side veth `hop_ifindex`; MACs: the endpoint's, then its gateway's).
pub const HOP_PEER: u8 = 1;
/// `CtValue::hop`: out of device `hop_ifindex` with MACs `hop_macs` (`bpf_redirect`).
pub const HOP_ROUTE: u8 = 2;

/// Value of `ct_v3` and `ct6_v1` (and of `ct_new_v2` and `ct6_new_v1`, which hold flows
/// not yet answered).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtValue<A = u32> {
    /// The tuple the packet leaves with (addresses network order; `proto` unchanged).
    pub src_ip: A,
    pub dst_ip: A,
    pub src_port: Be16,
    pub dst_port: Be16,
    /// `CT_REPLY | CT_DNAT | CT_SNAT | CT_ORIG_LOCAL | CT_REPLY_LOCAL`, and this entry's
    /// `CT_SIDE`.
    pub flags: u8,
    /// TCP flags seen in this direction since the last SYN (`TCP_*` bits).
    pub tcp_seen: u8,
    /// TCP window scale this direction's sender announced in its SYN (0: none).
    pub wscale: u8,
    /// Where this direction's packets went last (`HOP_*`), so the next ones skip the
    /// endpoint and route lookups while the route generation stays `hop_gen`.
    pub hop: u8,
    /// TCP: one past the highest sequence number this direction has sent, host order.
    pub seq_end: u32,
    /// TCP: the largest window (scaled) this direction's sender has offered, host order.
    pub max_win: u32,
    /// `CLOCK_MONOTONIC` at the last tick when the last packet was seen, nanoseconds (from
    /// `jiffies` and the measured tick, `crate::Clock`; from `bpf_ktime_get_coarse_ns`
    /// before the tick is measured).
    pub last_seen_ns: u64,
    /// Packets matched in this direction.
    pub packets: u64,
    /// Bytes (L2 length) matched in this direction.
    pub bytes: u64,
    /// The next hop's device (host-side veth for `HOP_PEER`).
    pub hop_ifindex: u32,
    /// `route_gen_v1` when the hop was found: any route, neighbour, link, address or
    /// endpoint change since makes it stale.
    pub hop_gen: u32,
    /// MTU of the hop's device (0 for `HOP_PEER`: not checked).
    pub hop_mtu: u32,
    /// Destination and source MAC the packet gets, as stored in the frame.
    pub hop_macs: [[u8; 6]; 2],
}

impl<A> CtKey<A> {
    /// The tuple `proto` `src_ip:src_port` → `dst_ip:dst_port`, padding zeroed.
    #[inline(always)]
    pub const fn new(src_ip: A, dst_ip: A, src_port: Be16, dst_port: Be16, proto: u8) -> Self {
        Self {
            src_ip,
            dst_ip,
            src_port,
            dst_port,
            proto,
            _pad: [0; 3],
        }
    }
}

impl<A: Addr> CtKey<A> {
    /// The tuple with source and destination swapped.
    #[must_use]
    pub fn reversed(&self) -> CtKey<A> {
        CtKey::new(
            self.dst_ip,
            self.src_ip,
            self.dst_port,
            self.src_port,
            self.proto,
        )
    }

    /// The tuple a packet with this key leaves with, per `v`.
    #[must_use]
    pub fn translated(&self, v: &CtValue<A>) -> CtKey<A> {
        CtKey::new(v.src_ip, v.dst_ip, v.src_port, v.dst_port, self.proto)
    }

    /// Key of the twin entry: the reverse of this entry's translated tuple.
    #[must_use]
    pub fn twin(&self, v: &CtValue<A>) -> CtKey<A> {
        self.translated(v).reversed()
    }
}

impl<A: Addr> CtValue<A> {
    /// A fresh entry that translates to `to`, with `flags`.
    pub fn new(to: &CtKey<A>, flags: u8, now_ns: u64) -> Self {
        CtValue {
            src_ip: to.src_ip,
            dst_ip: to.dst_ip,
            src_port: to.src_port,
            dst_port: to.dst_port,
            flags,
            tcp_seen: 0,
            wscale: 0,
            hop: HOP_NONE,
            seq_end: 0,
            max_win: 0,
            last_seen_ns: now_ns,
            packets: 0,
            bytes: 0,
            hop_ifindex: 0,
            hop_gen: 0,
            hop_mtu: 0,
            hop_macs: [[0; 6]; 2],
        }
    }

    /// Make this entry a fresh one that translates to `to` (`reversed`: to its reverse),
    /// with `flags`: `new` written in place (a value of 96 bytes is not built on the
    /// datapath's short stack first).
    #[inline(always)]
    pub fn reset(&mut self, to: &CtKey<A>, reversed: bool, flags: u8, now_ns: u64) {
        if reversed {
            self.src_ip = to.dst_ip;
            self.dst_ip = to.src_ip;
            self.src_port = to.dst_port;
            self.dst_port = to.src_port;
        } else {
            self.src_ip = to.src_ip;
            self.dst_ip = to.dst_ip;
            self.src_port = to.src_port;
            self.dst_port = to.dst_port;
        }
        self.flags = flags;
        self.tcp_seen = 0;
        self.wscale = 0;
        self.hop = HOP_NONE;
        self.seq_end = 0;
        self.max_win = 0;
        self.last_seen_ns = now_ns;
        self.packets = 0;
        self.bytes = 0;
        self.hop_ifindex = 0;
        self.hop_gen = 0;
        self.hop_mtu = 0;
        self.hop_macs = [[0; 6]; 2];
    }

    pub fn is_reply(&self) -> bool {
        self.flags & CT_REPLY != 0
    }

    /// Whether this entry's packets come from a local endpoint (`CT_ORIG_LOCAL` for the
    /// forward entry, `CT_REPLY_LOCAL` for the reply one): off a wire they are forged.
    #[inline(always)]
    pub fn from_local(&self) -> bool {
        let side = if self.is_reply() {
            CT_REPLY_LOCAL
        } else {
            CT_ORIG_LOCAL
        };
        self.flags & side != 0
    }
}

/// A flow's TCP state, derived from what both directions have seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpState {
    SynSent,
    Established,
    /// One side sent its FIN.
    Closing,
    /// Both sides sent their FIN: the one that closed first waits out `TIME_WAIT`, so the
    /// tuple is not given to another flow before the entry expires.
    TimeWait,
    /// Reset: no side keeps the tuple.
    Closed,
}

impl TcpState {
    /// From the forward and reply entries' `tcp_seen`.
    pub fn of(fwd: u8, rep: u8) -> Self {
        if (fwd | rep) & TCP_RST != 0 {
            Self::Closed
        } else if fwd & TCP_FIN != 0 && rep & TCP_FIN != 0 {
            Self::TimeWait
        } else if (fwd | rep) & TCP_FIN != 0 {
            Self::Closing
        } else if rep & TCP_SYN != 0 && fwd & TCP_ACK != 0 || (fwd & TCP_SYN == 0 && rep != 0) {
            // Handshake seen, or a flow picked up mid-stream in both directions.
            Self::Established
        } else {
            Self::SynSent
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::SynSent => "syn-sent",
            Self::Established => "established",
            Self::Closing => "closing",
            Self::TimeWait => "time-wait",
            Self::Closed => "closed",
        }
    }
}

/// Whether a flow whose forward entry has `flags`, of `proto`, in TCP `state`, holds a
/// count in its container's SNAT quota: a masqueraded (not published) flow, until it has
/// finished (the datapath releases the count when both sides close or one resets).
pub fn holds_snat_quota(flags: u8, proto: u8, state: TcpState) -> bool {
    let snat_only = flags & (CT_SNAT | CT_DNAT) == CT_SNAT;
    let over = proto == crate::PROTO_TCP && matches!(state, TcpState::Closed | TcpState::TimeWait);
    snat_only && !over
}

/// Idle timeouts by protocol and TCP state, nanoseconds: the value of `ct_timeouts`,
/// written by the daemon from `--ct-timeouts` for the in-kernel sweep (`ct_sweep`), and
/// what the daemon's own view of a flow's expiry uses.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct CtTimeouts {
    pub syn: u64,
    pub established: u64,
    pub closing: u64,
    pub time_wait: u64,
    pub closed: u64,
    pub udp: u64,
    pub icmp: u64,
}

impl CtTimeouts {
    /// The timeout of a flow of `proto` in TCP `state` (ignored for other protocols;
    /// every protocol but TCP and UDP ages as ICMP does).
    pub fn of(&self, proto: u8, state: TcpState) -> u64 {
        match proto {
            crate::PROTO_TCP => match state {
                TcpState::SynSent => self.syn,
                TcpState::Established => self.established,
                TcpState::Closing => self.closing,
                TcpState::TimeWait => self.time_wait,
                TcpState::Closed => self.closed,
            },
            crate::PROTO_UDP => self.udp,
            _ => self.icmp,
        }
    }

    /// The shortest: an entry idle for less is due in no state.
    pub fn min(&self) -> u64 {
        let all = [
            self.syn,
            self.established,
            self.closing,
            self.time_wait,
            self.closed,
            self.udp,
            self.icmp,
        ];
        let mut m = u64::MAX;
        let mut i = 0;
        while i < all.len() {
            if all[i] < m {
                m = all[i];
            }
            i += 1;
        }
        m
    }
}

/// What one in-kernel sweep saw and did: the value of `sweep`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct SweepStats {
    /// Entries visited, both tables (an expired flow's second half is not visited when
    /// the first took it along).
    pub entries: u64,
    /// Entries of the main table visited: how full it is.
    pub main: u64,
    /// Entries removed (both halves of each expired flow).
    pub removed: u64,
    /// `jiffies` and the coarse monotonic clock when the sweep began (`ClockSample`).
    pub jiffies: u64,
    pub now_ns: u64,
    /// Entries left after the sweep in each table (`SWEPT_TABLES` order): how full each
    /// is, counted as the walk passes, and again by a walk that only counts in a table
    /// that lost entries (a removed flow's twin may go before the walk reaches it).
    pub left: [u64; 4],
}

/// The tables `ct_sweep` walks, in its order and that of `SweepStats::left`.
pub const SWEPT_TABLES: [&str; 4] = [
    crate::names::CT,
    crate::names::CT_NEW,
    crate::names::CT6,
    crate::names::CT6_NEW,
];

/// The value of `ct_v2` and `ct_new_v1`, before entries remembered their next hop:
/// read once, when a daemon of this version takes over from an older one's maps.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct CtValueV2 {
    pub src_ip: u32,
    pub dst_ip: u32,
    pub src_port: Be16,
    pub dst_port: Be16,
    pub flags: u8,
    pub tcp_seen: u8,
    pub wscale: u8,
    pub _pad: u8,
    pub seq_end: u32,
    pub max_win: u32,
    pub last_seen_ns: u64,
    pub packets: u64,
    pub bytes: u64,
}

impl From<CtValueV2> for CtValue {
    /// The same flow, with no next hop remembered yet.
    fn from(v: CtValueV2) -> Self {
        CtValue {
            src_ip: v.src_ip,
            dst_ip: v.dst_ip,
            src_port: v.src_port,
            dst_port: v.dst_port,
            flags: v.flags,
            tcp_seen: v.tcp_seen,
            wscale: v.wscale,
            hop: HOP_NONE,
            seq_end: v.seq_end,
            max_win: v.max_win,
            last_seen_ns: v.last_seen_ns,
            packets: v.packets,
            bytes: v.bytes,
            hop_ifindex: 0,
            hop_gen: 0,
            hop_mtu: 0,
            hop_macs: [[0; 6]; 2],
        }
    }
}

crate::pod::aya_pod!(CtValueV2, CtTimeouts, SweepStats);

// Pinned layouts (`ct_v3`, `ct6_v1`, and `ct_v2` read once by the migration): the ports
// are `Be16` over the `u16` they were, at the same offsets.
const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(offset_of!(CtKey<u32>, src_port) == 8);
    assert!(offset_of!(CtKey<u32>, dst_port) == 10);
    assert!(offset_of!(CtKey<u32>, proto) == 12);
    assert!(offset_of!(CtKey<Ip6>, src_port) == 32);
    assert!(offset_of!(CtKey<Ip6>, proto) == 36);
    assert!(offset_of!(CtValue<u32>, src_port) == 8);
    assert!(offset_of!(CtValue<u32>, dst_port) == 10);
    assert!(offset_of!(CtValue<u32>, flags) == 12);
    assert!(offset_of!(CtValue<Ip6>, src_port) == 32);
    assert!(offset_of!(CtValue<Ip6>, flags) == 36);
    assert!(size_of::<CtValueV2>() == 48);
    assert!(offset_of!(CtValueV2, src_port) == 8);
    assert!(offset_of!(CtValueV2, dst_port) == 10);
    assert!(offset_of!(CtValueV2, flags) == 12);
};
crate::pod::pod_generic!(
    CtKey<u32> = 2 * 4 + 8,
    CtKey<Ip6> = 2 * 16 + 8,
    CtValue<u32> = 2 * 4 + 64,
    CtValue<Ip6> = 2 * 16 + 64,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twins_point_at_each_other() {
        let key = |s, d, sp, dp| CtKey::new(s, d, Be16::new(sp), Be16::new(dp), 6);
        // Client 1:3 → published 2:4, translated to backend 9:8.
        let fwd = key(1, 2, 3, 4);
        let fwd_v = CtValue::new(&key(1, 9, 3, 8), CT_DNAT, 0);
        let rev = fwd.twin(&fwd_v);
        assert_eq!(rev, key(9, 1, 8, 3));
        let rev_v = CtValue::new(&fwd.reversed(), CT_DNAT | CT_REPLY, 0);
        assert_eq!(rev.translated(&rev_v), key(2, 1, 4, 3));
        assert_eq!(rev.twin(&rev_v), fwd);
    }

    #[test]
    fn tcp_state_follows_both_directions() {
        assert_eq!(TcpState::of(TCP_SYN, 0), TcpState::SynSent);
        assert_eq!(
            TcpState::of(TCP_SYN | TCP_ACK, TCP_SYN | TCP_ACK),
            TcpState::Established
        );
        assert_eq!(TcpState::of(TCP_ACK, TCP_ACK), TcpState::Established);
        assert_eq!(TcpState::of(TCP_ACK | TCP_FIN, TCP_ACK), TcpState::Closing);
        assert_eq!(
            TcpState::of(TCP_ACK | TCP_FIN, TCP_ACK | TCP_FIN),
            TcpState::TimeWait
        );
        assert_eq!(TcpState::of(TCP_SYN, TCP_RST), TcpState::Closed);
    }
}
