//! Isolation between containers, as Docker's bridge rules have it: no traffic between
//! two networks (`drop-isolation`), none between two containers of a network without
//! inter-container communication (`drop-icc`; its broadcast and multicast reach the
//! host alone). The verdicts on a container's switched and routed-back packets; an
//! internal network's (`drop-internal`) are `container`'s, `uplink`'s and `nat`'s.
use aya_ebpf::programs::TcContext;
use common::{NET_NO_ICC, PORT_NO_ICC, Reason};

use crate::{
    family::Family,
    l2::{self, L2},
    stats::verdict,
};

/// The `NET_*` flags of the network a container's packet from `src` comes from: its
/// source's subnet's, and no ICC when its port says so (a link-local or unspecified
/// source lies in no subnet).
#[inline(always)]
pub(crate) fn own_flags<A: Family>(l2: &L2, src: &A) -> u32 {
    let subnet = A::network_of(src).map_or(0, |n| n.flags);
    if l2.port.flags & PORT_NO_ICC != 0 {
        subnet | NET_NO_ICC
    } else {
        subnet
    }
}

/// The verdict on a switched frame for `dst` from a network of `own` flags, when its
/// network's policy decides it (None: it is switched). It is judged as unicast to a
/// neighbour whatever its Ethernet destination: a unicast address in a broadcast or
/// multicast frame reaches the neighbour all the same. Without ICC, a group frame
/// reaches only the host.
#[inline(always)]
pub(crate) fn switched<A: Family>(ctx: &TcContext, l2: &L2, dst: &A, own: u32) -> Option<i32> {
    let group = l2.dst_mac[0] & 1 != 0;
    let unicast = !group || !(A::is_group(dst) || A::is_host(dst));
    if group && unicast && other_network(l2, dst) {
        return Some(verdict(ctx, Reason::DropIsolation));
    }
    if own & NET_NO_ICC == 0 {
        None
    } else if unicast {
        Some(verdict(ctx, Reason::DropIcc))
    } else {
        Some(l2::to_host(ctx, l2))
    }
}

/// A routed packet for a neighbour in the sender's own network, which the host would
/// forward back onto the bridge: only where the network allows inter-container
/// communication.
#[inline(always)]
pub(crate) fn via_gateway(ctx: &TcContext, own: u32, pass: Reason) -> i32 {
    if own & NET_NO_ICC != 0 {
        verdict(ctx, Reason::DropIcc)
    } else {
        verdict(ctx, pass)
    }
}

/// Whether `dst` belongs to a managed network other than the one `l2` came from.
#[inline(always)]
fn other_network<A: Family>(l2: &L2, dst: &A) -> bool {
    let mine = l2.port.network;
    A::network_of(dst).is_some_and(|n| n.bridge != mine)
        || A::endpoint(dst).is_some_and(|ep| ep.network != mine)
}
