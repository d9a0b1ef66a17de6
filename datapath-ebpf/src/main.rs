//! bpfnet datapath: thin entry points; each concern lives in its own module.
#![no_std]
#![no_main]

mod container;
mod csum;
mod ct;
mod frag;
mod fwd;
mod icmp;
mod l2;
mod maps;
mod nat;
mod parse;
mod stats;
mod uplink;

use aya_ebpf::{macros::classifier, programs::TcContext};

/// TC ingress on each uplink: DNAT for published ports, reverse SNAT.
#[classifier]
pub fn from_uplink(ctx: TcContext) -> i32 {
    uplink::handle(&ctx)
}

/// TC ingress on each container's host-side veth: reverse DNAT, SNAT, hairpin.
#[classifier]
pub fn from_container(ctx: TcContext) -> i32 {
    container::handle(&ctx)
}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
