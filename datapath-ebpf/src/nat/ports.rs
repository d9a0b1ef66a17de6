//! SNAT source port allocation. Candidates: the flow's own source port first (kept when
//! free, as MASQUERADE does), then a sequence that starts at a keyed hash of the
//! original tuple. The sequence is the same every time for a given flow, so a flow whose
//! forward entry was evicted finds its surviving reply entry and is repaired instead of
//! being translated to a new tuple.
use aya_ebpf::{
    bindings::__sk_buff, cty::c_void, helpers::generated::bpf_loop, programs::TcContext,
};
use common::{Addr, Be16, CT_SNAT, CtKey, Reason};

use crate::{
    ct::{self, From},
    family::Family,
    hostsock::{self, Holder},
    maps::{config, scratch, scratch_or},
    packet::Packet,
    quota::{self, Use},
    stats::count,
};

/// Candidates tried after the original port.
const TRIES: u32 = 32;

/// One word into murmur3's running hash.
#[inline(always)]
fn mix(h: u32, w: u32) -> u32 {
    (h ^ w)
        .wrapping_mul(0xcc9e_2d51)
        .rotate_left(15)
        .wrapping_mul(0x1b87_3593)
}

/// A keyed mix of the original tuple (murmur3's finaliser over its words).
#[inline(always)]
fn hash<A: Addr>(k: &CtKey<A>, seed: u32) -> u32 {
    let mut h = seed;
    for i in 0..A::WORDS {
        h = mix(h, k.src_ip.word(i));
    }
    for i in 0..A::WORDS {
        h = mix(h, k.dst_ip.word(i));
    }
    h = mix(
        h,
        (u32::from(k.src_port.raw()) << 16) | u32::from(k.dst_port.raw()),
    );
    h = mix(h, u32::from(k.proto));
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// What a candidate tuple turned out to be.
enum Candidate {
    /// Taken by another flow or a host socket: try the next.
    Taken,
    /// This flow now owns it.
    Ours,
    /// This flow's own tuple: its forward entry was put back from the surviving reply.
    Repaired,
}

/// Try `to` (with its candidate source port) for the first packet `p` of flow `key`.
#[inline(always)]
fn try_port<A: Family>(
    ctx: &TcContext,
    p: &Packet<A>,
    key: &CtKey<A>,
    to: &CtKey<A>,
) -> Result<Candidate, Reason> {
    // The candidate's reply tuple, in scratch space (an IPv6 tuple is 40 bytes of a
    // callback's stack).
    let rk = &mut scratch_or(Reason::DropSnatPorts).map(A::work)?.rk;
    *rk = to.reversed();
    let rk = &*rk;
    if let Some((rv, table)) = ct::entry(rk) {
        // Its reply entry translates back to our own original tuple, reversed.
        if rv.src_ip.same(&key.dst_ip)
            && rv.dst_ip.same(&key.src_ip)
            && rv.src_port == key.dst_port
            && rv.dst_port == key.src_port
        {
            // Our own flow's reply half survived the loss of its forward half.
            ct::repair(p, to, table)?;
            count(ctx, Reason::CtRepaired);
            return Ok(Candidate::Repaired);
        }
        if !ct::release_finished(rk, rv, table, p) {
            return Ok(Candidate::Taken);
        }
    }
    if p.proto != A::PROTO_ICMP && hostsock::holds(ctx, rk, Holder::Any) {
        return Ok(Candidate::Taken);
    }
    match ct::create(p, to) {
        Ok(()) => Ok(Candidate::Ours),
        // Another CPU took this tuple between our look and our insert.
        Err(Reason::DropCtClash) => Ok(Candidate::Taken),
        Err(e) => Err(e),
    }
}

/// The state of one port search, on the hook's stack, for `candidate`; its tuples are
/// in this CPU's scratch space (the stack is short).
#[repr(C)]
struct Search<A> {
    skb: *mut __sk_buff,
    p: *const Packet<A>,
    own: u32,
    min: u32,
    range: u32,
    start: u32,
    /// Whether the flow got a tuple (and whether it was its own, repaired); if not, why
    /// the search ended.
    found: bool,
    repaired: bool,
    failed: Reason,
}

/// One candidate of the search: 0 the flow's own port (when in the range), then the
/// keyed sequence. A `bpf_loop` callback, so the verifier checks it once, not once per
/// candidate.
extern "C" fn candidate<A: Family>(i: u64, data: *mut c_void) -> i64 {
    // SAFETY: `data` is the `Search` that `allocate` passed to bpf_loop, on its stack.
    let s = unsafe { &mut *data.cast::<Search<A>>() };
    if s.range == 0 {
        return 1;
    }
    let port = if i == 0 {
        if s.own < s.min || s.own >= s.min + s.range {
            return 0;
        }
        s.own
    } else {
        s.min + s.start.wrapping_add(i as u32).wrapping_sub(1) % s.range
    };
    let Some(t) = scratch().map(A::work) else {
        return 1;
    };
    t.to.src_port = Be16::new(port as u16);
    let ctx = TcContext::new(s.skb);
    // SAFETY: the packet summary `allocate` was given, on the hook's stack.
    let p = unsafe { &*s.p };
    match try_port(&ctx, p, &t.key, &t.to) {
        Ok(Candidate::Taken) => 0,
        Ok(Candidate::Ours) => {
            s.found = true;
            1
        }
        Ok(Candidate::Repaired) => {
            s.found = true;
            s.repaired = true;
            1
        }
        Err(reason) => {
            s.failed = reason;
            1
        }
    }
}

/// Choose the source port for the first packet `p` of an egress flow leaving from
/// `src_ip`, and create the flow; true when the flow was its own, repaired. Err
/// (`drop-snat-ports`): every candidate is taken.
#[inline(always)]
pub(super) fn allocate<A: Family>(
    ctx: &TcContext,
    p: &Packet<A>,
    src_ip: A,
) -> Result<(CtKey<A>, bool), Reason> {
    // The original tuple and the candidate live in scratch space, where the search's
    // callback finds them.
    let t = scratch_or(Reason::DropSnatPorts).map(A::work)?;
    t.key = ct::key_of(p);
    t.to = t.key;
    t.to.src_ip = src_ip;
    // Its own stage: its frame is gone before the search's callback adds its own.
    crate::family::stage!(A, ct::stage(ctx, p, From::Container, CT_SNAT, &p.dst_ip))?;
    if !p.has_ports() {
        // No port to vary: the address alone names the flow (GRE and the like).
        return match ct::create(p, &t.to) {
            Ok(()) => Ok((t.to, false)),
            Err(_) => Err(Reason::DropSnatPorts),
        };
    }
    let cfg = config();
    let (min, max) = (u32::from(cfg.snat_port_min), u32::from(cfg.snat_port_max));
    let range = max.saturating_sub(min) + 1;
    if !within_quota(&t.key, range) {
        return Err(Reason::DropSnatQuota);
    }
    let mut search = Search {
        skb: ctx.skb.skb,
        p,
        own: u32::from(t.key.src_port.get()),
        min,
        range,
        start: hash(&t.key, cfg.hash_seed) % range,
        found: false,
        repaired: false,
        failed: Reason::DropSnatPorts,
    };
    // SAFETY: bpf_loop calls `candidate` with a pointer to `search`, which outlives it.
    unsafe {
        bpf_loop(
            TRIES + 1,
            candidate::<A> as *mut c_void,
            (&raw mut search).cast(),
            0,
        )
    };
    if search.found {
        let t = scratch_or(Reason::DropSnatPorts).map(A::work)?;
        if !search.repaired {
            quota::take(Use::Snat, &t.key.src_ip);
        }
        Ok((t.to, search.repaired))
    } else {
        Err(search.failed)
    }
}

/// Whether `forward`'s container may take another port: it holds masqueraded flows for
/// less than half the range (toward all destinations together, so toward any one), so
/// no container can exhaust it for the others.
#[inline(always)]
fn within_quota<A: Family>(forward: &CtKey<A>, range: u32) -> bool {
    quota::held(Use::Snat, &forward.src_ip) < u64::from((range / 2).max(1))
}
