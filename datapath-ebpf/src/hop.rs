//! A flow's remembered next hop: the first packet of a direction finds where it goes
//! (the endpoint that owns its destination, else the route and its neighbour's MACs),
//! the flow entry keeps it, and the next packets reuse it while the route generation is
//! unchanged. The daemon bumps the generation on every route, neighbour, link, address
//! or endpoint change (the datapath does when it learns an endpoint), so a hop is never
//! used after what it was derived from has changed.
use aya_ebpf::programs::TcContext;
use common::{CtKey, CtValue, HOP_NONE, HOP_PEER, HOP_ROUTE};

use crate::{
    family::Family,
    fib::{Next, device_mtu, next_hop},
    maps::route_gen,
};

/// Where a packet leaving as `to` goes next, and the device's MTU when the hop was
/// remembered (None: not known, ask the kernel). `flow`: the packet's flow entry, which
/// remembers the hop.
#[inline(always)]
pub(crate) fn next<A: Family>(
    ctx: &TcContext,
    to: &CtKey<A>,
    flow: Option<&mut CtValue<A>>,
) -> Option<(Next, Option<u32>)> {
    // Read before looking anything up: a change during the lookup leaves a stale mark.
    let generation = route_gen();
    let Some(v) = flow else {
        return next_hop(ctx, to).map(|n| (n, None));
    };
    if v.hop_gen == generation && v.hop != HOP_NONE {
        let next = Next {
            peer: v.hop == HOP_PEER,
            ifindex: v.hop_ifindex,
            macs: v.hop_macs,
            resolved: true,
            via: common::Be32::ZERO,
            vni: 0,
        };
        let mtu = (v.hop == HOP_ROUTE).then_some(v.hop_mtu);
        return Some((next, mtu));
    }
    let n = next_hop(ctx, to)?;
    remember(ctx, v, &n, generation);
    Some((n, None))
}

/// Keep `n` in `v`; a route whose neighbour is unresolved is not kept (the kernel finds
/// the neighbour, every packet, until it is), nor a tunnel's (its key is set on every
/// packet, from the cluster map).
#[inline(always)]
fn remember<A: Family>(ctx: &TcContext, v: &mut CtValue<A>, n: &Next, generation: u32) {
    v.hop = if n.peer {
        HOP_PEER
    } else if n.resolved && n.vni == 0 {
        HOP_ROUTE
    } else {
        HOP_NONE
    };
    v.hop_ifindex = n.ifindex;
    v.hop_macs = n.macs;
    v.hop_mtu = if n.peer {
        0
    } else {
        device_mtu(ctx, n.ifindex)
    };
    v.hop_gen = generation;
}
