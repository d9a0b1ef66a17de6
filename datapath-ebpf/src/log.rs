//! Debug logs (`aya-log`, `bpfnet daemon --datapath-log`): parse failures, flow table
//! hits, NAT choices.
//!
//! Each statement is a function of its own, called only from a program's top level:
//! its formatting's stack is a frame of its own, never added to the deep chains of the
//! IPv6 stages. `datapath_log!` calls it only when the level allows; the level is a
//! read-only global fixed at load, so with logging off the verifier sees the branch
//! never taken and removes it with the call: the programs run as if they had no logs.
use aya_ebpf::programs::TcContext;
use aya_log_ebpf::debug;
use common::{Be16, Be32, CtKey, Reason};

use crate::{family::Family, packet::Packet, parse::Frame as _};

/// Call `$call` (one of this module's functions) if debug logging is on.
#[macro_export]
macro_rules! datapath_log {
    ($call:expr) => {
        if ::aya_log_ebpf::macro_support::level_enabled(::aya_log_ebpf::macro_support::Level::Debug)
        {
            $call;
        }
    };
}

/// Two ports as host-order values in one register.
fn pair(a: Be16, b: Be16) -> u32 {
    u32::from(a.get()) << 16 | u32::from(b.get())
}

/// A frame dropped by the parser.
#[inline(never)]
pub(crate) fn parse_failed(ctx: &TcContext, reason: Reason) {
    debug!(ctx, "parse: {} on ifindex {}", reason.name(), ctx.ifindex());
}

/// A tracked flow's packet, `p`, leaving as `to`.
#[inline(always)]
pub(crate) fn tracked<A: Family>(ctx: &TcContext, p: &Packet<A>, to: &CtKey<A>) {
    tracked_ports(
        ctx,
        p.proto,
        pair(p.src_port, p.dst_port),
        pair(to.src_port, to.dst_port),
    );
}

#[inline(never)]
fn tracked_ports(ctx: &TcContext, proto: u8, from: u32, to: u32) {
    debug!(
        ctx,
        "ct: tracked flow, proto {} ports {}->{} leave as {}->{}",
        proto,
        from >> 16,
        from & 0xffff,
        to >> 16,
        to & 0xffff
    );
}

/// A new DNAT flow: destination port `from` to `to`.
#[inline(never)]
pub(crate) fn dnat(ctx: &TcContext, proto: u8, from: Be16, to: Be16) {
    debug!(
        ctx,
        "nat: dnat new flow, proto {} port {} to port {}",
        proto,
        from.get(),
        to.get()
    );
}

/// A new masqueraded flow: source port `from` to `to`.
#[inline(never)]
pub(crate) fn snat(ctx: &TcContext, proto: u8, from: Be16, to: Be16) {
    debug!(
        ctx,
        "nat: snat new flow, proto {} source port {} to {}",
        proto,
        from.get(),
        to.get()
    );
}

/// A host's own packet keyed into the tunnel: to node `node`, VNI `vni`.
#[inline(never)]
pub(crate) fn host_into_tunnel(ctx: &TcContext, node: Be32, vni: u32) {
    debug!(
        ctx,
        "cluster: host packet into the tunnel to node {:i} vni {}",
        node.get(),
        vni
    );
}
