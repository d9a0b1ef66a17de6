//! Connection tracking: lookup, creation of both directions, per-packet accounting.
use aya_ebpf::{helpers::bpf_ktime_get_ns, programs::TcContext};
use common::{CtKey, CtKind, CtValue, PROTO_TCP, TcpState};

use crate::{maps::CT, parse::Packet};

const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;

#[inline(always)]
pub fn key_of(p: &Packet) -> CtKey {
    CtKey {
        src_ip: p.src_ip,
        dst_ip: p.dst_ip,
        src_port: p.src_port,
        dst_port: p.dst_port,
        proto: p.proto,
        _pad: [0; 3],
    }
}

#[inline(always)]
fn next_state(cur: u8, p: &Packet) -> u8 {
    if p.proto != PROTO_TCP {
        return TcpState::None as u8;
    }
    let f = p.tcp_flags;
    let next = if f & TCP_RST != 0 {
        TcpState::Rst
    } else if f & TCP_FIN != 0 {
        TcpState::Fin
    } else if f & TCP_SYN != 0 {
        TcpState::SynSent
    } else if f & TCP_ACK != 0 && cur != TcpState::Fin as u8 && cur != TcpState::Rst as u8 {
        TcpState::Established
    } else {
        return cur;
    };
    next as u8
}

/// The entry for this packet's tuple, if it has `kind`; accounts the packet to it.
#[inline(always)]
pub fn lookup(ctx: &TcContext, p: &Packet, kind: CtKind) -> Option<(u32, u16)> {
    let v = CT.get_ptr_mut(key_of(p))?;
    // SAFETY: a valid map value pointer; concurrent updates of counters may race, which
    // only costs accuracy of the statistics.
    unsafe {
        if (*v).kind != kind as u8 {
            return None;
        }
        (*v).state = next_state((*v).state, p);
        (*v).last_seen_ns = bpf_ktime_get_ns();
        (*v).packets += 1;
        (*v).bytes += u64::from(ctx.len());
        Some(((*v).nat_ip, (*v).nat_port))
    }
}

/// Create the forward entry (this packet's tuple, destination → `to_ip:to_port`) and the
/// reply entry (the backend's answer, source → the original destination).
#[inline(always)]
pub fn create_dnat(ctx: &TcContext, p: &Packet, to_ip: u32, to_port: u16) -> Result<(), ()> {
    let now = unsafe { bpf_ktime_get_ns() };
    let state = next_state(TcpState::None as u8, p);
    let fwd = CtValue {
        nat_ip: to_ip,
        nat_port: to_port,
        kind: CtKind::DnatForward as u8,
        state,
        last_seen_ns: now,
        packets: 1,
        bytes: u64::from(ctx.len()),
    };
    let key = key_of(p);
    let rev = CtValue {
        nat_ip: p.dst_ip,
        nat_port: p.dst_port,
        kind: CtKind::DnatReply as u8,
        state: TcpState::None as u8,
        last_seen_ns: now,
        packets: 0,
        bytes: 0,
    };
    CT.insert(key.twin(&fwd), rev, 0).map_err(|_| ())?;
    CT.insert(key, fwd, 0).map_err(|_| ())
}
