//! bpfnet datapath: thin entry points; each concern lives in its own module.
#![no_std]
#![no_main]

mod cluster;
mod container;
mod csum;
mod ct;
mod family;
mod fib;
mod flood;
mod frag;
mod fwd;
mod guard6;
mod hdr;
mod hop;
mod hostsock;
mod icmp;
mod isolation;
mod l2;
mod log;
mod maps;
mod monitor;
mod nat;
mod packet;
mod parse;
mod parse6;
mod quota;
mod ratelimit;
mod sock;
mod stats;
mod sweep;
mod tcp;
mod time_exceeded;
mod tunnel;
mod uplink;
mod xdp;

use aya_ebpf::{
    macros::{cgroup_sock_addr, classifier, xdp},
    programs::{SockAddrContext, TcContext, XdpContext},
};

/// TC ingress on each Ethernet uplink: DNAT for published ports, reverse SNAT.
#[classifier]
#[inline(always)]
pub(crate) fn from_uplink(ctx: TcContext) -> i32 {
    uplink::handle(&ctx, parse::ETH_HLEN)
}

/// XDP on each Ethernet uplink with `--xdp`: early drop, ahead of `from_uplink`.
#[xdp]
#[inline(always)]
pub(crate) fn xdp_uplink(ctx: XdpContext) -> u32 {
    xdp::gate(&ctx)
}

/// TC ingress on each L3 uplink (`WireGuard`, tun, IP-in-IP, GRE, PPP: packets without a
/// link-layer header): the same as `from_uplink`.
#[classifier]
#[inline(always)]
pub(crate) fn from_l3_uplink(ctx: TcContext) -> i32 {
    uplink::handle(&ctx, 0)
}

/// TC ingress on each container's host-side veth: reverse DNAT, SNAT, hairpin.
#[classifier]
#[inline(always)]
pub(crate) fn from_container(ctx: TcContext) -> i32 {
    container::handle(&ctx)
}

/// TC egress on the cluster's VXLAN device: the host's own packets into the tunnel get
/// their key.
#[classifier]
#[inline(always)]
pub(crate) fn to_tunnel(ctx: TcContext) -> i32 {
    cluster::host_into_tunnel(&ctx)
}

/// `from_container` for IPv6 frames (tail-called).
#[classifier]
pub(crate) fn from_container6(ctx: TcContext) -> i32 {
    container::handle6(&ctx)
}

/// `from_uplink` for IPv6 packets (tail-called).
#[classifier]
pub(crate) fn from_uplink6(ctx: TcContext) -> i32 {
    uplink::handle6(&ctx, parse::ETH_HLEN)
}

/// `from_l3_uplink` for IPv6 packets (tail-called).
#[classifier]
pub(crate) fn from_l3_uplink6(ctx: TcContext) -> i32 {
    uplink::handle6(&ctx, 0)
}

/// The sweeper's walk of the flow tables, run by the daemon (`BPF_PROG_TEST_RUN`), attached
/// nowhere.
#[classifier]
pub(crate) fn ct_sweep(_ctx: TcContext) -> i32 {
    sweep::run()
}

/// cgroup connect4: host sockets dialing a published port go to its backend.
#[cgroup_sock_addr(connect4)]
pub(crate) fn sock_connect4(ctx: SockAddrContext) -> i32 {
    sock::to_backend(&ctx)
}

/// cgroup sendmsg4: unconnected UDP to a published port goes to its backend; every
/// datagram's answers are recorded as the host's.
#[cgroup_sock_addr(sendmsg4)]
pub(crate) fn sock_sendmsg4(ctx: SockAddrContext) -> i32 {
    sock::host_datagram(&ctx)
}

/// cgroup recvmsg4: replies from the backend show the published address.
#[cgroup_sock_addr(recvmsg4)]
pub(crate) fn sock_recvmsg4(ctx: SockAddrContext) -> i32 {
    sock::from_backend(&ctx)
}

/// cgroup getpeername4: the peer is the published address the socket dialed.
#[cgroup_sock_addr(getpeername4)]
pub(crate) fn sock_getpeername4(ctx: SockAddrContext) -> i32 {
    sock::from_backend(&ctx)
}

/// cgroup connect6: host IPv6 sockets dialing a published port go to its backend.
#[cgroup_sock_addr(connect6)]
pub(crate) fn sock_connect6(ctx: SockAddrContext) -> i32 {
    sock::to_backend6(&ctx)
}

/// cgroup sendmsg6: unconnected UDP to a published port goes to its backend; every
/// datagram's answers are recorded as the host's.
#[cgroup_sock_addr(sendmsg6)]
pub(crate) fn sock_sendmsg6(ctx: SockAddrContext) -> i32 {
    sock::host_datagram6(&ctx)
}

/// cgroup recvmsg6: replies from the backend show the published address.
#[cgroup_sock_addr(recvmsg6)]
pub(crate) fn sock_recvmsg6(ctx: SockAddrContext) -> i32 {
    sock::from_backend6(&ctx)
}

/// cgroup getpeername6: the peer is the published address the socket dialed.
#[cgroup_sock_addr(getpeername6)]
pub(crate) fn sock_getpeername6(ctx: SockAddrContext) -> i32 {
    sock::from_backend6(&ctx)
}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
