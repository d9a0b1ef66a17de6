//! Connection tracking: lookup with per-packet accounting, and creation of both
//! directions of a flow, allocating an SNAT source port when asked.
use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{bpf_get_prandom_u32, bpf_ktime_get_ns},
    programs::TcContext,
};
use common::{
    CT_REPLY, CtKey, CtValue, PROTO_TCP, Reason,
    ct::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN},
};

use crate::{
    maps::{CONFIG, CT},
    parse::Packet,
    stats::count,
};

/// Ports tried before SNAT gives up on a destination (random start, then sequential).
const SNAT_TRIES: u32 = 32;

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

/// TCP bits to keep after this packet: a bare SYN starts the record afresh (the tuple
/// is being reused), anything else adds to it.
#[inline(always)]
fn tcp_seen(cur: u8, p: &Packet, reply: bool) -> u8 {
    if p.proto != PROTO_TCP {
        return 0;
    }
    let f = p.tcp_flags & (TCP_FIN | TCP_SYN | TCP_RST | TCP_ACK);
    if !reply && f & (TCP_SYN | TCP_ACK) == TCP_SYN {
        f
    } else {
        cur | f
    }
}

/// The tuple this packet's flow leaves with. Accounts the packet to the entry and to
/// `ct-forward`/`ct-reply`.
#[inline(always)]
pub fn lookup(ctx: &TcContext, p: &Packet) -> Option<CtKey> {
    let key = key_of(p);
    let v = CT.get_ptr_mut(key)?;
    // SAFETY: a valid map value pointer; concurrent updates of the counters may race,
    // which only costs the statistics some accuracy.
    let (to, reply) = unsafe {
        let reply = (*v).flags & CT_REPLY != 0;
        (*v).tcp_seen = tcp_seen((*v).tcp_seen, p, reply);
        (*v).last_seen_ns = bpf_ktime_get_ns();
        (*v).packets += 1;
        (*v).bytes += u64::from(ctx.len());
        (key.translated(&*v), reply)
    };
    if p.proto == PROTO_TCP && !reply && p.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN {
        // A new connection on a reused tuple: the reply side's record is of the old one.
        if let Some(twin) = CT.get_ptr_mut(to.reversed()) {
            // SAFETY: a valid map value pointer.
            unsafe { (*twin).tcp_seen = 0 };
        }
    }
    count(
        ctx,
        if reply {
            Reason::CtReply
        } else {
            Reason::CtForward
        },
    );
    Some(to)
}

/// Translation of a flow without accounting, for ICMP errors that quote it.
#[inline(always)]
pub fn peek(key: &CtKey) -> Option<CtKey> {
    // SAFETY: plain lookup, value copied out.
    unsafe { CT.get(key) }.map(|v| key.translated(v))
}

/// Whether the reply entry at `rk` belongs to a TCP flow both sides have closed (FIN
/// each way, or a RST); if so its forward entry is removed so the tuple can be reused.
#[inline(always)]
fn closed_flow_released(rk: &CtKey) -> bool {
    if rk.proto != PROTO_TCP {
        return false;
    }
    // SAFETY: plain lookups, values copied out.
    let Some(r) = (unsafe { CT.get(rk) }).copied() else {
        return false;
    };
    let fk = rk.twin(&r);
    let f_seen = unsafe { CT.get(fk) }.map_or(0, |f| f.tcp_seen);
    let closed = (r.tcp_seen | f_seen) & TCP_RST != 0
        || (r.tcp_seen & TCP_FIN != 0 && f_seen & TCP_FIN != 0);
    if closed {
        let _ = CT.remove(fk);
    }
    closed
}

/// Create the flow of `p` whose packets leave as `to` (flags `CT_DNAT`/`CT_SNAT`). With
/// `alloc_port`, `to.src_port` is chosen from the SNAT range so that the reply tuple is
/// unused. Returns the tuple to apply.
#[inline(always)]
pub fn create(
    ctx: &TcContext,
    p: &Packet,
    mut to: CtKey,
    flags: u8,
    alloc_port: bool,
) -> Result<CtKey, Reason> {
    let key = key_of(p);
    // SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let reply = CtValue::new(&key.reversed(), flags | CT_REPLY, now);
    if alloc_port {
        let cfg = CONFIG.get(0).copied().unwrap_or_default();
        let (min, max) = (u32::from(cfg.snat_port_min), u32::from(cfg.snat_port_max));
        let range = max.saturating_sub(min) + 1;
        // SAFETY: helper without arguments.
        let start = unsafe { bpf_get_prandom_u32() } % range;
        let mut found = false;
        for i in 0..SNAT_TRIES {
            to.src_port = ((min + (start + i) % range) as u16).to_be();
            // NOEXIST: a tuple a live flow holds is never taken over; a closed one is.
            let rk = to.reversed();
            if CT.insert(rk, reply, u64::from(BPF_NOEXIST)).is_ok()
                || (closed_flow_released(&rk) && CT.insert(rk, reply, 0).is_ok())
            {
                found = true;
                break;
            }
        }
        if !found {
            return Err(Reason::DropSnatPorts);
        }
    } else if CT.insert(to.reversed(), reply, 0).is_err() {
        return Err(Reason::DropCtInsert);
    }
    let mut fwd = CtValue::new(&to, flags, now);
    fwd.tcp_seen = tcp_seen(0, p, false);
    fwd.packets = 1;
    fwd.bytes = u64::from(ctx.len());
    if CT.insert(key, fwd, 0).is_err() {
        let _ = CT.remove(to.reversed());
        return Err(Reason::DropCtInsert);
    }
    Ok(to)
}
