//! Per-reason verdict counters.
use aya_ebpf::programs::TcContext;
use common::{Addr, Be32, CtKey, Reason};

use crate::{maps::STATS, monitor, parse::Frame};

// TC verdicts (uapi/linux/pkt_cls.h) as the i32 a classifier returns; the generated
// bindings' type for them differs between the host and the bpf target.
pub(crate) const TC_ACT_OK: i32 = 0;
pub(crate) const TC_ACT_SHOT: i32 = 2;
pub(crate) const TC_ACT_REDIRECT: i64 = 7;

/// Count `reason` (drops also against the interface) and report it to a monitor that
/// asked for it.
#[inline(always)]
pub(crate) fn count<C: Frame>(ctx: &C, reason: Reason) {
    add(ctx, reason);
    monitor::notify::<C, Be32>(ctx, reason, None);
}

/// `count` for a verdict that found or made a flow: the monitor is told the tuple the
/// packet leaves with, `to`.
#[inline(always)]
pub(crate) fn count_flow<C: Frame, A: Addr>(ctx: &C, reason: Reason, to: &CtKey<A>) {
    add(ctx, reason);
    monitor::notify(ctx, reason, Some(to));
}

#[inline(always)]
fn add<C: Frame>(ctx: &C, reason: Reason) {
    if let Some(c) = STATS.get_ptr_mut(reason as u32) {
        // SAFETY: per-CPU slot, only this CPU writes it while this program runs.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += u64::from(ctx.len());
        }
    }
    if reason.is_drop() {
        monitor::count_drop(ctx, reason as u32);
    }
}

/// Count `reason` and return the verdict that goes with it.
#[inline(always)]
pub(crate) fn verdict(ctx: &TcContext, reason: Reason) -> i32 {
    count(ctx, reason);
    if reason.is_drop() {
        TC_ACT_SHOT
    } else {
        TC_ACT_OK
    }
}
