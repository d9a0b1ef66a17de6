//! Per-reason verdict counters.
use aya_ebpf::programs::TcContext;
use common::Reason;

use crate::{maps::STATS, parse::Frame};

// TC verdicts (uapi/linux/pkt_cls.h) as the i32 a classifier returns; the generated
// bindings' type for them differs between the host and the bpf target.
pub const TC_ACT_OK: i32 = 0;
pub const TC_ACT_SHOT: i32 = 2;
pub const TC_ACT_REDIRECT: i64 = 7;

#[inline(always)]
pub fn count<C: Frame>(ctx: &C, reason: Reason) {
    if let Some(c) = STATS.get_ptr_mut(reason as u32) {
        // SAFETY: per-CPU slot, only this CPU writes it while this program runs.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += u64::from(ctx.len());
        }
    }
}

/// Count `reason` and return the verdict that goes with it.
#[inline(always)]
pub fn verdict(ctx: &TcContext, reason: Reason) -> i32 {
    count(ctx, reason);
    if reason.is_drop() {
        TC_ACT_SHOT
    } else {
        TC_ACT_OK
    }
}
