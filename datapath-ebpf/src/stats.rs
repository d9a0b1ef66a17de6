//! Per-reason verdict counters.
use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    programs::TcContext,
};
use common::Reason;

use crate::maps::STATS;

#[inline(always)]
pub fn count(ctx: &TcContext, reason: Reason) {
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
        TC_ACT_SHOT as i32
    } else {
        TC_ACT_OK as i32
    }
}
