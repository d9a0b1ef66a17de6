//! What one container may hold of what all share: masqueraded flows (the SNAT quota,
//! half the port range) and flows it originated (its share of the flow tables,
//! `--ct-per-endpoint`). Counted per container address in plain hashes, so no other
//! key's eviction resets a count; the daemon's sweeper recounts both from the tables.
//! Only flows a container starts count: flows from outside to its published ports are
//! bounded by the new-flow table and `--xdp`'s budget instead, so nobody outside can
//! spend a container's share and so deny its egress.
use aya_ebpf::{bindings::BPF_NOEXIST, maps::HashMap};
use common::CtKey;

use crate::{family::Family, maps::CT_SHARE};

/// Which of a container's counts.
#[derive(Clone, Copy)]
pub(crate) enum Use {
    /// Masqueraded flows, each holding a source port.
    Snat,
    /// Flows it originated, in either table.
    Flows,
}

impl Use {
    #[inline(always)]
    fn map<A: Family>(self) -> &'static HashMap<A, u64> {
        match self {
            Self::Snat => A::snat_use(),
            Self::Flows => A::ct_use(),
        }
    }
}

/// How many `what` container `ip` holds.
#[inline(always)]
pub(crate) fn held<A: Family>(what: Use, ip: &A) -> u64 {
    // SAFETY: plain lookup of a u64, copied out.
    unsafe { what.map::<A>().get(ip) }.copied().unwrap_or(0)
}

/// One more `what` for container `ip`.
#[inline(always)]
pub(crate) fn take<A: Family>(what: Use, ip: &A) {
    let map = what.map::<A>();
    if map.insert(ip, 1, u64::from(BPF_NOEXIST)).is_ok() {
        return;
    }
    if let Some(c) = map.get_ptr_mut(ip) {
        // SAFETY: a valid map value pointer. Two CPUs may race here (the target has no
        // atomic add); a lost update only loosens the quota until the sweeper recounts.
        unsafe { *c += 1 };
    }
}

/// One `what` of container `ip` has ended.
#[inline(always)]
pub(crate) fn release<A: Family>(what: Use, ip: &A) {
    if let Some(c) = what.map::<A>().get_ptr_mut(ip) {
        // SAFETY: as in `take`.
        unsafe { *c = (*c).saturating_sub(1) };
    }
}

/// Whether container `ip` may originate another flow: fewer than its share of the flow
/// tables.
#[inline(always)]
pub(crate) fn may_start<A: Family>(ip: &A) -> bool {
    let share = u64::from(CT_SHARE.get(0).copied().unwrap_or(0));
    share == 0 || held(Use::Flows, ip) < share
}

/// One SNAT flow of `forward`'s container has ended: its port is free for its quota
/// again.
#[inline(always)]
pub(crate) fn release_use<A: Family>(forward: &CtKey<A>) {
    release(Use::Snat, &forward.src_ip);
}
