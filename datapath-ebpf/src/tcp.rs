//! TCP sequence tracking per direction, so that an off-path host cannot steer a flow:
//! a RST or FIN changes its state only when its sequence number is in the window, as
//! netfilter's `tcp_in_window` demands. Each CT entry tracks its own direction's sender.
use aya_ebpf::programs::TcContext;
use common::{
    Addr, CtValue, PROTO_TCP,
    ct::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN},
};

use crate::parse::Packet;

/// The window assumed for a receiver that has not offered one yet.
const MIN_WINDOW: u32 = 65_535;
const OPT_END: u8 = 0;
const OPT_NOP: u8 = 1;
const OPT_WSCALE: u8 = 3;
/// RFC 7323's largest shift.
const MAX_WSCALE: u8 = 14;

/// `a` comes after `b` in sequence space.
#[inline(always)]
pub fn after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// One past the last sequence number this segment occupies (SYN and FIN count one).
#[inline(always)]
fn seq_end<A: Addr>(p: &Packet<A>) -> u32 {
    let flags = u32::from(p.tcp_flags & TCP_SYN != 0) + u32::from(p.tcp_flags & TCP_FIN != 0);
    p.tcp_seq.wrapping_add(p.payload_len).wrapping_add(flags)
}

/// The window scale a SYN announces (0 without the option).
#[inline(always)]
pub fn wscale<A: Addr>(ctx: &TcContext, p: &Packet<A>) -> u8 {
    let end = p.l4_off() + usize::from(p.tcp_hlen);
    let mut off = p.l4_off() + 20;
    for _ in 0..10 {
        if off >= end {
            break;
        }
        let Ok(kind) = ctx.load::<u8>(off) else {
            break;
        };
        match kind {
            OPT_END => break,
            OPT_NOP => off += 1,
            OPT_WSCALE => return ctx.load::<u8>(off + 2).map_or(0, |s| s.min(MAX_WSCALE)),
            _ => match ctx.load::<u8>(off + 1) {
                Ok(len) if len >= 2 => off += usize::from(len),
                _ => break,
            },
        }
    }
    0
}

/// Start tracking the sender of SYN (or SYN-ACK) `p` in `v`.
#[inline(always)]
pub fn start<A: Addr>(ctx: &TcContext, v: &mut CtValue<A>, p: &Packet<A>) {
    if p.proto != PROTO_TCP {
        return;
    }
    v.seq_end = seq_end(p);
    v.wscale = wscale(ctx, p);
    // The window in a SYN is never scaled.
    v.max_win = u32::from(p.tcp_win);
}

/// Follow a packet of `v`'s sender that is not a SYN: its highest sequence number and
/// the largest window it offers.
#[inline(always)]
pub fn follow<A: Addr>(v: &mut CtValue<A>, p: &Packet<A>) {
    let end = seq_end(p);
    if v.seq_end == 0 || after(end, v.seq_end) {
        v.seq_end = end;
    }
    let win = u32::from(p.tcp_win) << v.wscale;
    if win > v.max_win {
        v.max_win = win;
    }
}

/// Whether a RST or FIN from `sender` lies in the window its receiver (`receiver`, the
/// flow's other direction) would accept. A RST from a sender that has sent nothing yet
/// (the answer to a SYN) must acknowledge exactly what the receiver sent.
#[inline(always)]
pub fn in_window<A: Addr>(
    sender: &CtValue<A>,
    receiver: Option<&CtValue<A>>,
    p: &Packet<A>,
) -> bool {
    let (recv_end, recv_win) = receiver.map_or((0, 0), |r| (r.seq_end, r.max_win));
    if sender.seq_end == 0 {
        // Nothing seen from this side yet (the answer to a SYN, or an entry the daemon
        // rebuilt): a RST must acknowledge exactly what the receiver sent; a FIN, which
        // alone frees nothing, starts the tracking.
        if p.tcp_flags & TCP_RST == 0 {
            return true;
        }
        return p.tcp_flags & TCP_ACK != 0 && recv_end != 0 && p.tcp_ack == recv_end;
    }
    let win = if recv_win > MIN_WINDOW {
        recv_win
    } else {
        MIN_WINDOW
    };
    // seq within [seq_end - win, seq_end + win], wrapping.
    p.tcp_seq.wrapping_sub(sender.seq_end.wrapping_sub(win)) <= win.saturating_mul(2)
}

/// Whether acknowledgment number `ack` acknowledges data a sender whose sequence space
/// ends at `end` has sent: at most `end`, within a window of it (a blind guess hits one
/// 32-bit number in 65,536).
#[inline(always)]
pub fn acknowledges(ack: u32, end: u32) -> bool {
    !after(ack, end) && after(ack, end.wrapping_sub(MIN_WINDOW))
}

/// Whether `p` carries a flag that would change the flow's state toward its end.
#[inline(always)]
pub fn closes<A: Addr>(p: &Packet<A>) -> bool {
    p.proto == PROTO_TCP && p.tcp_flags & (TCP_RST | TCP_FIN) != 0
}
