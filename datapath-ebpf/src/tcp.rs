//! TCP sequence tracking per direction, so that an off-path host cannot steer a flow:
//! a segment changes its state (SYN, SYN-ACK, FIN, RST) only when its sequence and
//! acknowledgment numbers are in both directions' windows, as netfilter's
//! `tcp_in_window` demands, and data or a bare ACK teaches the tracking only when it
//! lies in its sender's window. Each CT entry tracks its own direction's sender.
use aya_ebpf::programs::TcContext;
use common::{
    Addr, CtValue, PROTO_TCP,
    ct::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN},
};

use crate::{hdr::TCP_HLEN, packet::Packet};

/// The window assumed for a receiver that has not offered one yet.
const MIN_WINDOW: u32 = 65_535;
const OPT_END: u8 = 0;
const OPT_NOP: u8 = 1;
const OPT_WSCALE: u8 = 3;
/// RFC 7323's largest shift.
const MAX_WSCALE: u8 = 14;

/// `a` comes after `b` in sequence space.
#[inline(always)]
pub(crate) fn after(a: u32, b: u32) -> bool {
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
pub(crate) fn wscale<A: Addr>(ctx: &TcContext, p: &Packet<A>) -> u8 {
    let end = p.l4_off() + usize::from(p.tcp_hlen);
    let mut off = p.l4_off() + TCP_HLEN;
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
pub(crate) fn start<A: Addr>(ctx: &TcContext, v: &mut CtValue<A>, p: &Packet<A>) {
    if p.proto != PROTO_TCP {
        return;
    }
    v.seq_end = seq_end(p);
    v.wscale = wscale(ctx, p);
    // The window in a SYN is never scaled.
    v.max_win = u32::from(p.tcp_win);
}

/// Learn from a packet of `v`'s sender that is not a SYN and was judged in window: its
/// highest sequence number and the largest window it offers.
#[inline(always)]
pub(crate) fn learn<A: Addr>(v: &mut CtValue<A>, p: &Packet<A>) {
    let end = seq_end(p);
    if v.seq_end == 0 || after(end, v.seq_end) {
        v.seq_end = end;
    }
    let win = u32::from(p.tcp_win) << v.wscale;
    if win > v.max_win {
        v.max_win = win;
    }
}

/// Follow data or a bare ACK of `v`'s sender without the other direction at hand (the
/// common packet costs one lookup): learn from it only when its sequence number lies
/// within a window of what the sender has sent, the sender's own largest window standing
/// in for its receiver's. false: out of window (or nothing known of this sender yet),
/// nothing learned, so an off-path segment far ahead never widens the window a forged
/// RST is judged by; a sender's real segments past a loss are learned again once its
/// retransmissions fill the gap.
#[inline(always)]
pub(crate) fn follow<A: Addr>(v: &mut CtValue<A>, p: &Packet<A>) -> bool {
    if !in_own_window(v, p) {
        return false;
    }
    learn(v, p);
    true
}

/// Whether `p`'s sequence number lies within a window of what `v`'s sender has sent (its
/// own largest window standing in for its receiver's; false when nothing is known).
#[inline(always)]
pub(crate) fn in_own_window<A: Addr>(v: &CtValue<A>, p: &Packet<A>) -> bool {
    v.seq_end != 0 && near(p.tcp_seq, v.seq_end, v.max_win)
}

/// Whether `seq` lies within `[end - win, end + win]` (wrapping), `win` at least
/// `MIN_WINDOW`.
#[inline(always)]
fn near(seq: u32, end: u32, win: u32) -> bool {
    let win = if win > MIN_WINDOW { win } else { MIN_WINDOW };
    seq.wrapping_sub(end.wrapping_sub(win)) <= win.saturating_mul(2)
}

/// Whether a RST or FIN from `sender` lies in the window its receiver (`receiver`, the
/// flow's other direction) would accept: its sequence number within the receiver's
/// window of what the sender has sent, and its acknowledgment number (when it carries
/// one) within the sender's window of what the receiver has sent. A sender that has sent
/// nothing yet (the answer to a SYN, an entry the daemon rebuilt) must acknowledge what
/// the receiver sent: a RST exactly, a FIN within a window.
#[inline(always)]
pub(crate) fn in_window<A: Addr>(
    sender: &CtValue<A>,
    receiver: Option<&CtValue<A>>,
    p: &Packet<A>,
) -> bool {
    let (recv_end, recv_win) = receiver.map_or((0, 0), |r| (r.seq_end, r.max_win));
    let acked = p.tcp_flags & TCP_ACK != 0;
    if sender.seq_end == 0 {
        if !acked || recv_end == 0 {
            return false;
        }
        if p.tcp_flags & TCP_RST != 0 {
            return p.tcp_ack == recv_end;
        }
        return acknowledges(p.tcp_ack, recv_end);
    }
    if !near(p.tcp_seq, sender.seq_end, recv_win) {
        return false;
    }
    // netfilter's ack check: at most what the receiver sent, within the sender's window.
    !acked || recv_end == 0 || acknowledges_within(p.tcp_ack, recv_end, sender.max_win)
}

/// Whether SYN-ACK `p` from `sender` answers the SYN of `receiver`, the flow's other
/// direction: the receiver sent a SYN, and `p` acknowledges exactly what it occupies.
#[inline(always)]
pub(crate) fn answers_syn<A: Addr>(receiver: &CtValue<A>, p: &Packet<A>) -> bool {
    receiver.tcp_seen & TCP_SYN != 0 && receiver.seq_end != 0 && p.tcp_ack == receiver.seq_end
}

/// Whether SYN(-ACK) `p` repeats the one `v`'s sender already sent: the same segment.
#[inline(always)]
pub(crate) fn repeats_syn<A: Addr>(v: &CtValue<A>, p: &Packet<A>) -> bool {
    v.seq_end != 0 && seq_end(p) == v.seq_end
}

/// Whether SYN `p` is the one `v`'s sender already sent, perhaps with less data: it
/// starts where that one did, within a window below its end.
#[inline(always)]
pub(crate) fn resends_syn<A: Addr>(v: &CtValue<A>, p: &Packet<A>) -> bool {
    acknowledges(p.tcp_seq.wrapping_add(1), v.seq_end)
}

/// Whether acknowledgment number `ack` acknowledges data a sender whose sequence space
/// ends at `end` has sent: at most `end`, within a window of it (a blind guess hits one
/// 32-bit number in 65,536).
#[inline(always)]
pub(crate) fn acknowledges(ack: u32, end: u32) -> bool {
    acknowledges_within(ack, end, 0)
}

/// `acknowledges` with the window `win` when it is larger than `MIN_WINDOW`.
#[inline(always)]
fn acknowledges_within(ack: u32, end: u32, win: u32) -> bool {
    let win = if win > MIN_WINDOW { win } else { MIN_WINDOW };
    !after(ack, end) && after(ack, end.wrapping_sub(win))
}
