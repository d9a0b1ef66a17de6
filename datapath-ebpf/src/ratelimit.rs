//! The rate limit on the ICMP errors bpfnet answers itself, as the kernel limits its own
//! (`icmpv4_xrlim_allow`, `icmp_global_allow`): a bucket per destination prefix (/24,
//! /64: one host's addresses share it, as a forged source varies only its low bits) with
//! the kernel's burst of six intervals, then a bucket over all destinations. Both are
//! shared by the CPUs and updated without a lock, as the kernel's are: a race lets an
//! error more through, never fewer; a per-CPU bucket would multiply the limit by the
//! CPUs a flood is spread over.
use aya_ebpf::{
    helpers::generated::bpf_ktime_get_coarse_ns,
    macros::map,
    maps::{Array, LruHashMap},
};
use common::{
    Be32, ICMP_LIMIT_V4, ICMP_LIMIT_V6, IcmpLimit, Ip6, RateBucket, addr::prefix24,
    clock::NS_PER_SEC, ratelimit::ICMP_BURST_FACTOR,
};

use crate::maps::ICMP_LIMIT;

/// Destination prefix (IPv4 as `::ffff:a.b.c.0`) → its bucket.
#[map(name = "icmp_rate")]
static RATE: LruHashMap<Ip6, RateBucket> = LruHashMap::with_max_entries(16_384, 0);

#[map(name = "icmp_global")]
static GLOBAL: Array<RateBucket> = Array::with_max_entries(1, 0);

const MS_NS: u64 = 1_000_000;

/// Whether an IPv4 time-exceeded to `dst` may be sent now.
#[inline(always)]
pub(crate) fn allow(dst: Be32) -> bool {
    let key = Ip6 {
        words: [
            0,
            0,
            u32::from_ne_bytes([0, 0, 255, 255]),
            prefix24(dst).raw(),
        ],
    };
    let limit = ICMP_LIMIT.get(0).copied().unwrap_or_default();
    allow_to(
        &key,
        &limit,
        limit.flags & ICMP_LIMIT_V4 != 0,
        limit.interval4_ms,
    )
}

/// Whether an `ICMPv6` time-exceeded to `dst` may be sent now.
#[inline(always)]
pub(crate) fn allow6(dst: &Ip6) -> bool {
    let key = Ip6 {
        words: [dst.words[0], dst.words[1], 0, 0],
    };
    let limit = ICMP_LIMIT.get(0).copied().unwrap_or_default();
    allow_to(
        &key,
        &limit,
        limit.flags & ICMP_LIMIT_V6 != 0,
        limit.interval6_ms,
    )
}

#[inline(always)]
fn allow_to(key: &Ip6, limit: &IcmpLimit, limited: bool, interval_ms: u32) -> bool {
    if !limited {
        return true;
    }
    // SAFETY: the helper takes no arguments.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    per_destination(key, now, u64::from(interval_ms) * MS_NS) && global(limit, now)
}

/// One error per `interval` ns to the prefix `key`, after a burst of six.
#[inline(always)]
fn per_destination(key: &Ip6, now: u64, interval: u64) -> bool {
    if interval == 0 {
        return true;
    }
    let cap = ICMP_BURST_FACTOR * interval;
    #[expect(
        clippy::single_match_else,
        reason = "the hit and the miss are two paths of equal weight"
    )]
    match RATE.get_ptr_mut(key) {
        // SAFETY: a value of this map, read and written in place; a racing CPU's update
        // may be lost, which lets at most an error more through.
        Some(b) => unsafe { (*b).take(now, 1, cap, cap, interval) },
        None => {
            let fresh = RateBucket {
                credit: cap - interval,
                last_ns: now,
            };
            // A full table evicts its least recently used prefix; a failed insert
            // lets this one error through, as a fresh bucket would.
            let _unused: Result<_, _> = RATE.insert(key, fresh, 0);
            true
        }
    }
}

/// `msgs_per_sec` errors a second over all destinations, after a burst of `msgs_burst`.
#[inline(always)]
fn global(limit: &IcmpLimit, now: u64) -> bool {
    let Some(b) = GLOBAL.get_ptr_mut(0) else {
        return true;
    };
    let cap = u64::from(limit.msgs_burst) * NS_PER_SEC;
    // SAFETY: the one slot, read and written in place; as above, a lost race lets an
    // error more through. A bucket never used (last_ns 0) starts full.
    unsafe {
        if (*b).last_ns == 0 {
            (*b).credit = cap;
            (*b).last_ns = now;
        }
        (*b).take(
            now,
            u64::from(limit.msgs_per_sec),
            NS_PER_SEC,
            cap,
            NS_PER_SEC,
        )
    }
}
