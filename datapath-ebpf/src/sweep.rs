//! `ct_sweep`: the sweeper's walk of both flow tables of each family, in the kernel. Attached nowhere:
//! the daemon runs it with `BPF_PROG_TEST_RUN` every sweep interval. `bpf_for_each_map_elem`
//! visits each entry in place (no copy to userspace, no pairing index); an entry idle
//! for less than the shortest timeout costs a few instructions, an older one a lookup of
//! its twin to know the flow's state; an expired flow loses both entries, its SNAT
//! quota count and its originator's share count. The main table's entries are counted: LRU eviction, which can take one
//! half of a flow, happens only in a full table, so the daemon's full walk (repair,
//! recount) is needed often only then.
use aya_ebpf::{
    cty::c_void,
    helpers::generated::{
        bpf_for_each_map_elem, bpf_jiffies64, bpf_ktime_get_coarse_ns, bpf_map_delete_elem,
    },
    macros::map,
    maps::Array,
};
use common::{
    Be32, CT_ORIG_LOCAL, CT_REPLY, CtKey, CtTimeouts, CtValue, Ip6, SweepStats, TcpState,
    ct::holds_snat_quota,
};

use crate::{
    ct,
    family::Family,
    maps::{CT, CT_NEW, CT6, CT6_NEW},
    quota::{self, Use},
};

/// `--ct-timeouts`, written by the daemon at start.
#[map(name = "ct_timeouts")]
static TIMEOUTS: Array<CtTimeouts> = Array::with_max_entries(1, 0);

/// The last sweep's figures, read by the daemon after each run.
#[map(name = "sweep")]
static RESULT: Array<SweepStats> = Array::with_max_entries(1, 0);

/// The walk's state, on `run`'s stack, shared with every `visit`. Nothing in it changes
/// from one entry to the next: the verifier checks a callback as a loop, and a counter
/// it could follow (one on this stack) would differ at every turn, so it would walk the
/// callback again for each value. The counters live in the `sweep` map's value, whose
/// contents it does not follow.
#[repr(C)]
struct Walk {
    now: u64,
    min: u64,
    /// Walking the main table (answered flows), not the new-flow table.
    main: bool,
    /// The table walked, its index in `SweepStats::left` (ct, `ct_new`, ct6, `ct6_new`).
    table: usize,
    t: CtTimeouts,
    stats: *mut SweepStats,
}

#[inline(always)]
pub(crate) fn run() -> i32 {
    let Some(t) = TIMEOUTS.get(0).copied() else {
        return 1;
    };
    // SAFETY: helpers without arguments. The coarse clock is the one `last_seen_ns` is
    // kept in; jiffies read with it let the daemon measure the tick (`common::Clock`).
    let (jiffies, now) = unsafe { (bpf_jiffies64(), bpf_ktime_get_coarse_ns()) };
    let Some(stats) = RESULT.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: a valid map value pointer; only this run writes it (the daemon runs one
    // sweep at a time).
    unsafe {
        *stats = SweepStats {
            jiffies,
            now_ns: now,
            ..SweepStats::default()
        }
    };
    let mut w = Walk {
        now,
        min: t.min(),
        main: true,
        table: 0,
        t,
        stats,
    };
    let visit4 = visit::<Be32> as *mut c_void;
    let visit6 = visit::<Ip6> as *mut c_void;
    let counter = count as *mut c_void;
    for (i, (table, main, visit)) in [
        ((&raw const CT).cast::<c_void>(), true, visit4),
        ((&raw const CT_NEW).cast::<c_void>(), false, visit4),
        ((&raw const CT6).cast::<c_void>(), true, visit6),
        ((&raw const CT6_NEW).cast::<c_void>(), false, visit6),
    ]
    .into_iter()
    .enumerate()
    {
        w.main = main;
        w.table = i;
        // SAFETY: the `sweep` map's value, valid for the whole run.
        let removed = unsafe { (*stats).removed };
        // SAFETY: a map of this object, a callback of the signature the helper expects
        // for its key and value types, and a context on this stack that outlives the
        // call.
        unsafe { bpf_for_each_map_elem(table.cast_mut(), visit, (&raw mut w).cast(), 0) };
        // A flow removed whole may have taken its twin out of this table before the
        // walk reached it (the twin then counted off, never on): a table that lost
        // entries is counted again, a walk that only counts (the helper's answer).
        // SAFETY: as above; `count` takes any key and value and no context.
        unsafe {
            if (*stats).removed != removed {
                let n = bpf_for_each_map_elem(table.cast_mut(), counter, core::ptr::null_mut(), 0);
                if let Some(c) = (*stats).left.get_mut(i) {
                    *c = u64::try_from(n).unwrap_or(0);
                }
            }
        }
    }
    0
}

impl Walk {
    #[inline(always)]
    fn stats(&mut self) -> &mut SweepStats {
        // SAFETY: the `sweep` map's value, valid for the whole run.
        unsafe { &mut *self.stats }
    }

    /// Count `n` entries (or take them off) table `i`'s entries left.
    #[inline(always)]
    fn left(&mut self, i: usize, n: i64) {
        if let Some(c) = self.stats().left.get_mut(i) {
            *c = c.wrapping_add_signed(n);
        }
    }
}

/// Visit an entry, which the helper's answer counts.
extern "C" fn count(_: *mut c_void, _: *const c_void, _: *const c_void, _: *mut c_void) -> i64 {
    0
}

/// One entry of either table: count it; remove its flow when the flow is idle past its
/// timeout (a reply entry's flow is its forward entry's, unless that is gone).
extern "C" fn visit<A: Family>(
    map: *mut c_void,
    key: *const CtKey<A>,
    value: *const CtValue<A>,
    ctx: *mut c_void,
) -> i64 {
    // SAFETY: the helper passes the entry's key and value and `run`'s `Walk`.
    let (w, k, v) = unsafe { (&mut *ctx.cast::<Walk>(), &*key, &*value) };
    w.stats().entries += 1;
    if w.main {
        w.stats().main += 1;
    }
    w.left(w.table, 1);
    let reply = v.flags & CT_REPLY != 0;
    if w.now.saturating_sub(v.last_seen_ns) < w.min {
        return 0;
    }
    let tk = k.twin(v);
    let twin = ct::entry(&tk).map(|(t, _)| *t);
    let (rep_seen, last_seen, paired) = match twin {
        // The forward entry decides for its flow.
        Some(t) if reply && t.flags & CT_REPLY == 0 => return 0,
        Some(t) if !reply && t.flags & CT_REPLY != 0 => {
            (t.tcp_seen, v.last_seen_ns.max(t.last_seen_ns), true)
        }
        // A forward half of an answered flow (main table) whose reply half LRU eviction
        // took ages as if the reply had seen what it has (the daemon's walk puts the
        // reply back); any other half whose twin is gone ages on its own.
        _ if w.main && !reply => (v.tcp_seen, v.last_seen_ns, false),
        _ => (0, v.last_seen_ns, false),
    };
    let verdict = ct_sweep_verdict(
        v.tcp_seen.into(),
        rep_seen.into(),
        v.flags.into(),
        k.proto.into(),
        w.now.saturating_sub(last_seen),
    );
    if verdict & DUE == 0 {
        return 0;
    }
    // SAFETY: the map being walked and the key the helper passed; deleting the element
    // being visited is allowed.
    if unsafe { bpf_map_delete_elem(map, key.cast()) } == 0 {
        w.stats().removed += 1;
        w.left(w.table, -1);
    }
    // The twin's table: the family's main one (even index) or its new-flow one. Taken
    // off the count of a table walked already; one walked later never counts it; this
    // table is counted again at the end (`run`).
    let main = w.table & !1;
    let twin_table = if !paired {
        None
    } else if A::ct().remove(tk).is_ok() {
        Some(main)
    } else if A::ct_new().remove(tk).is_ok() {
        Some(main + 1)
    } else {
        None
    };
    if let Some(i) = twin_table {
        w.stats().removed += 1;
        if i < w.table {
            w.left(i, -1);
        }
    }
    // The flow's SNAT quota count, unless it was released when the flow finished.
    if !reply && verdict & HOLDS_QUOTA != 0 {
        quota::release_use(k);
    }
    // Its originator's share of the tables (a reply entry removed here is an orphan: its
    // forward key, the twin, names the container).
    if v.flags & CT_ORIG_LOCAL != 0 {
        quota::release(Use::Flows, if reply { &tk.src_ip } else { &k.src_ip });
    }
    0
}

/// `ct_sweep_verdict`'s answer: the flow is idle past its timeout.
const DUE: u32 = 1;
/// `ct_sweep_verdict`'s answer: the flow holds a count in its container's SNAT quota.
const HOLDS_QUOTA: u32 = 2;

/// Whether a flow of `proto` whose entries saw `fwd_seen` and `rep_seen`, idle for
/// `idle_ns`, is due (`DUE`), and whether it holds an SNAT quota count (`HOLDS_QUOTA`;
/// `flags`: its forward entry's). A global function: the verifier checks it once, on
/// its own, and to its callers its answer is any number, so the many ways of reaching
/// it do not each walk the many ways through it.
#[unsafe(no_mangle)]
#[inline(never)]
pub(crate) extern "C" fn ct_sweep_verdict(
    fwd_seen: u32,
    rep_seen: u32,
    flags: u32,
    proto: u32,
    idle_ns: u64,
) -> u32 {
    let Some(t) = TIMEOUTS.get(0) else {
        return 0;
    };
    let (proto, state) = (proto as u8, TcpState::of(fwd_seen as u8, rep_seen as u8));
    let mut verdict = 0;
    if idle_ns >= t.of(proto, state) {
        verdict |= DUE;
    }
    if holds_snat_quota(flags as u8, proto, state) {
        verdict |= HOLDS_QUOTA;
    }
    verdict
}
