//! Events for `bpfnet monitor` and drops by interface for the metrics.
//!
//! Every verdict asks `monitor` whether its reason is wanted: one array read, and nothing
//! more while no monitor is attached (the mask is 0). A wanted one goes to `emit`, a
//! function of its own (a BPF-to-BPF call, so its body is not copied into each of the
//! many verdicts), which samples (per CPU), applies the rate limit (one budget the CPUs
//! share, as the ICMP errors' global bucket is: a per-CPU one would multiply the rate
//! asked for by the CPUs a flood is spread over) and writes the event to the ring
//! buffer; what it leaves out or cannot write is counted, never waited for.
use aya_ebpf::{
    helpers::generated::{bpf_ktime_get_coarse_ns, bpf_ktime_get_ns},
    macros::map,
    maps::{Array, LruPerCpuHashMap, PerCpuArray, RingBuf},
};
use common::{
    Addr, Be16, Counter, CtKey, DropKey, Event, MonitorConfig, MonitorState, MonitorWindow, Reason,
    clock::NS_PER_SEC, monitor::EVENT_CAPTURE,
};

use crate::parse::Frame;

/// 1 MiB of events: about 5,000 of them, a few seconds of a busy drop path at the
/// default rate, for the daemon to drain.
#[map(name = "events")]
static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 20, 0);

#[map(name = "monitor")]
static MONITOR: Array<MonitorConfig> = Array::with_max_entries(1, 0);

#[map(name = "monitor_state")]
static STATE: PerCpuArray<MonitorState> = PerCpuArray::with_max_entries(1, 0);

/// The rate limit's window, shared by the CPUs.
#[map(name = "monitor_rate")]
static WINDOW: Array<MonitorWindow> = Array::with_max_entries(1, 0);

/// Drops by interface and reason. LRU: an interface that is gone makes room.
#[map(name = "drops_v1")]
static DROPS: LruPerCpuHashMap<DropKey, Counter> = LruPerCpuHashMap::pinned(16_384, 0);

/// 0 when the loader built the programs without events (a kernel that refused them
/// with): a read-only global fixed at load, so the verifier drops every report as dead
/// code, as it drops the logs.
#[unsafe(no_mangle)]
static MONITOR_EVENTS: u8 = 1;

const _: () = assert!(EVENT_CAPTURE.is_power_of_two());

/// Report `reason`'s packet if a monitor asked for it; `xlate`: the tuple its flow leaves
/// with.
#[inline(always)]
pub(crate) fn notify<C: Frame, A: Addr>(ctx: &C, reason: Reason, xlate: Option<&CtKey<A>>) {
    // SAFETY: a read of a constant the loader may set before loading; volatile so the
    // compiler does not fold its initial value in.
    if unsafe { core::ptr::read_volatile(&raw const MONITOR_EVENTS) } == 0 {
        return;
    }
    let Some(cfg) = MONITOR.get(0) else {
        return;
    };
    if cfg.reasons & (1u64 << (reason as u32)) == 0 {
        return;
    }
    let limits = Limits {
        sample: cfg.sample,
        rate: cfg.rate,
    };
    match xlate {
        Some(k) => emit_flow(ctx, reason as u32, limits, k),
        None => emit(ctx, reason as u32, limits),
    }
}

/// `MonitorConfig`'s sampling and rate, passed in one register.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct Limits {
    sample: u32,
    rate: u32,
}

/// Count a drop against its interface.
#[inline(never)]
pub(crate) fn count_drop<C: Frame>(ctx: &C, reason: u32) {
    let key = DropKey {
        ifindex: ctx.ifindex(),
        reason,
    };
    let len = u64::from(ctx.len());
    #[expect(
        clippy::single_match_else,
        reason = "the hit and the miss are two paths of equal weight"
    )]
    match DROPS.get_ptr_mut(key) {
        // SAFETY: this CPU's value; only this CPU writes it while the program runs.
        Some(c) => unsafe {
            (*c).packets += 1;
            (*c).bytes += len;
        },
        None => {
            let c = Counter {
                packets: 1,
                bytes: len,
            };
            // A failure loses one packet of this breakdown; `stats_v1` has it.
            let _unused: Result<_, _> = DROPS.insert(key, c, 0);
        }
    }
}

// Both write the record in place, in the ring buffer, and keep what must outlive a
// helper call in registers or in the per-CPU state: the verdict's caller has used most
// of the stack, and each call's frame counts against it.

#[inline(never)]
fn emit<C: Frame>(ctx: &C, reason: u32, limits: Limits) {
    write::<C, u32>(ctx, reason, limits, None);
}

#[inline(never)]
fn emit_flow<C: Frame, A: Addr>(ctx: &C, reason: u32, limits: Limits, k: &CtKey<A>) {
    write(ctx, reason, limits, Some(k));
}

/// Whether the window shared by the CPUs has room for one more event of `rate` a
/// second; if so, the place is taken.
#[inline(always)]
fn within_rate(rate: u32) -> bool {
    let Some(window) = WINDOW.get_ptr_mut(0) else {
        return true;
    };
    // SAFETY: the one slot, shared by the CPUs, read and written in place without a
    // lock (the target has no atomic add): a racing CPU's update may be lost, which lets
    // an event more through, never fewer. The place is taken at once, so the race spans
    // a few instructions (an event the full ring buffer then refuses has used it too).
    let window = unsafe { &mut *window };
    // The window needs no precision: the coarse clock (a tick's resolution) is the
    // cheaper read on the path a flood takes.
    // SAFETY: a helper without arguments.
    let coarse = unsafe { bpf_ktime_get_coarse_ns() };
    if coarse.wrapping_sub(window.start_ns) >= NS_PER_SEC {
        window.start_ns = coarse;
        window.sent = 0;
    }
    if window.sent >= u64::from(rate) {
        return false;
    }
    window.sent += 1;
    true
}

#[inline(always)]
fn write<C: Frame, A: Addr>(ctx: &C, reason: u32, limits: Limits, xlate: Option<&CtKey<A>>) {
    let Some(state) = STATE.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's slot; only this CPU writes it while the program runs.
    let state = unsafe { &mut *state };
    state.seen += 1;
    if limits.sample > 1 && state.seen % u64::from(limits.sample) != 0 {
        state.sampled_out += 1;
        return;
    }
    state.reason = reason;
    if limits.rate != 0 && !within_rate(limits.rate) {
        state.rate_limited += 1;
        return;
    }
    // SAFETY: a helper without arguments.
    state.now_ns = unsafe { bpf_ktime_get_ns() };
    let Some(mut entry) = EVENTS.reserve::<Event>(0) else {
        state.ring_full += 1;
        return;
    };
    let e = entry.as_mut_ptr();
    // SAFETY: `e` is the reserved record, `size_of::<Event>()` bytes; every field is
    // written before it is submitted (the capture's tail past `captured` excepted, whose
    // bytes the reader ignores).
    unsafe {
        (*e).time_ns = state.now_ns;
        (*e).reason = state.reason;
        (*e).ifindex = ctx.ifindex();
        (*e).len = ctx.len();
        (*e).hook = ctx.hook();
        (*e)._pad = 0;
        let t = &mut (*e).xlate;
        t.src = [0; 4];
        t.dst = [0; 4];
        t._pad = [0; 2];
        if let Some(k) = xlate {
            for i in 0..A::WORDS {
                t.src[i] = k.src_ip.word(i);
                t.dst[i] = k.dst_ip.word(i);
            }
            t.src_port = k.src_port;
            t.dst_port = k.dst_port;
            t.proto = k.proto;
            t.family = if A::WORDS == 1 { 4 } else { 6 };
        } else {
            t.src_port = Be16::ZERO;
            t.dst_port = Be16::ZERO;
            t.proto = 0;
            t.family = 0;
        }
        let data = core::ptr::addr_of_mut!((*e).data).cast::<u8>();
        // As much as the packet has, up to the capture's size. The length passes through
        // an opaque value and a mask, so the compiler cannot drop the bounds the verifier
        // needs to see (1 to EVENT_CAPTURE).
        let len = ctx.len();
        let n = if len > EVENT_CAPTURE as u32 {
            EVENT_CAPTURE as u32
        } else {
            len
        };
        let n = (core::hint::black_box(n.wrapping_sub(1)) & (EVENT_CAPTURE as u32 - 1)) + 1;
        (*e).captured = if len > 0 && ctx.load(data, n) {
            n as u16
        } else {
            0
        };
    }
    entry.submit(0);
}
