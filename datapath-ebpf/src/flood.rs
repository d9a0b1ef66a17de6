//! `--xdp`'s new-flow budget, shared fairly. A source prefix (IPv4 /24) that completed a
//! handshake recently is proven (written by `ct` when a flow from outside is promoted:
//! the originator acknowledged the answer's SYN, which a spoofer never sees, as a SYN
//! cookie's ACK proves it). Each CPU's budget per second is split in two pools: one for
//! proven prefixes, one for the rest, where one prefix may take only a share, so a
//! random-source flood exhausts the unproven pool alone and a prefix that floods from
//! its real addresses leaves the others their share. Both pools together admit no more
//! first packets than the budget: the new-flow table still holds a second of them.
use aya_ebpf::{helpers::generated::bpf_ktime_get_coarse_ns, macros::map, maps::LruHashMap};
use common::{Be32, addr::prefix24, clock::NS_PER_SEC};

use crate::maps::FLOOD_BUDGET;

/// A prefix stays proven this long after its last completed handshake.
const PROVEN_NS: u64 = 600 * NS_PER_SEC;
/// The per-prefix shares of the unproven pool: counters indexed by a hash of the prefix
/// (two prefixes may share one, and its share).
const SLOTS: usize = 256;
/// One unproven prefix takes at most this fraction of the unproven pool.
const PREFIX_SHARE: u64 = 4;

/// Source prefixes (IPv4 /24, host bits 0) that completed a handshake →
/// when (`CLOCK_MONOTONIC` ns, coarse). Not pinned: a new daemon's programs start with no
/// proof, as after a reboot.
#[map(name = "flood_proven")]
static PROVEN: LruHashMap<Be32, u64> = LruHashMap::with_max_entries(16_384, 0);

/// One CPU's first packets in the current one-second window: per pool, and per
/// unproven prefix slot (a slot's count is the window's when its epoch is).
#[repr(C)]
pub(crate) struct Window {
    start_ns: u64,
    epoch: u64,
    proven: u64,
    unproven: u64,
    slots: [Slot; SLOTS],
}

#[repr(C)]
struct Slot {
    epoch: u64,
    count: u64,
}

#[map(name = "flood_window")]
static WINDOW: aya_ebpf::maps::PerCpuArray<Window> =
    aya_ebpf::maps::PerCpuArray::with_max_entries(1, 0);

/// Record that `src` completed a handshake: its prefix is proven.
#[inline(always)]
pub(crate) fn prove(src: Be32, now_ns: u64) {
    let _unused: Result<_, _> = PROVEN.insert(prefix24(src), now_ns, 0);
}

/// Count a first packet from `src` against this CPU's budget for the
/// current second; whether it is beyond its pool or its prefix's share.
#[inline(always)]
pub(crate) fn over_budget(src: Be32) -> bool {
    let budget = u64::from(FLOOD_BUDGET.get(0).copied().unwrap_or(0));
    if budget == 0 {
        return false;
    }
    let Some(w) = WINDOW.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: this CPU's slot, written only by this program while it runs here; the
    // helper takes no arguments.
    let (w, now) = unsafe { (&mut *w, bpf_ktime_get_coarse_ns()) };
    if now.wrapping_sub(w.start_ns) >= NS_PER_SEC {
        w.start_ns = now;
        w.epoch += 1;
        w.proven = 0;
        w.unproven = 0;
    }
    let pool = (budget / 2).max(1);
    let p = prefix24(src);
    // SAFETY: plain lookup of a u64, copied out.
    let proven = unsafe { PROVEN.get(p) }.is_some_and(|t| now.wrapping_sub(*t) < PROVEN_NS);
    if proven {
        w.proven += 1;
        return w.proven > pool;
    }
    let Some(slot) = w.slots.get_mut(slot_of(p)) else {
        return true;
    };
    if slot.epoch != w.epoch {
        slot.epoch = w.epoch;
        slot.count = 0;
    }
    if slot.count >= (pool / PREFIX_SHARE).max(1) || w.unproven >= pool {
        return true;
    }
    slot.count += 1;
    w.unproven += 1;
    false
}

/// The unproven-share slot of prefix `p` (a multiplicative hash of its 24 bits).
#[inline(always)]
fn slot_of(p: Be32) -> usize {
    (p.get().wrapping_mul(0x9e37_79b1) >> 24) as usize % SLOTS
}
