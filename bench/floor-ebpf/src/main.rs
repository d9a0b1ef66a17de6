//! The floor: the least any eBPF datapath does per packet, measured beside bpfnet's
//! programs by `cargo xtask bench` (`bench/src/floor.rs`). On TC ingress: parse
//! Ethernet, then IPv4 or IPv6, then TCP or UDP; look the 5-tuple up in one hash map;
//! write the hop's Ethernet addresses; redirect. A flow's first packet finds no entry
//! and takes its hop from its destination's route (the bench fills the routes), so every
//! later packet of the flow costs exactly one lookup. Anything else passes untouched.
//!
//! On the host (`cargo clippy --workspace`) the crate builds as an ordinary binary with
//! an empty `main`, so the programs are checked like any code; only the `bpfel` build
//! (`bench/build.rs`) is loaded.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

use core::mem::size_of;

use aya_ebpf::{
    bindings::TC_ACT_OK,
    helpers::generated::bpf_redirect,
    macros::{classifier, map},
    maps::HashMap,
    programs::TcContext,
};
use floor_ebpf::Hop;

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

/// The IPv4 header, only the fields the floor reads named.
#[repr(C)]
#[derive(Clone, Copy)]
struct Ipv4 {
    ver_ihl: u8,
    _skip: [u8; 8],
    proto: u8,
    _check: [u8; 2],
    src: [u8; 4],
    dst: [u8; 4],
}

/// The IPv6 header, only the fields the floor reads named.
#[repr(C)]
#[derive(Clone, Copy)]
struct Ipv6 {
    _skip: [u8; 6],
    next: u8,
    _hop_limit: u8,
    src: [u8; 16],
    dst: [u8; 16],
}

/// A 5-tuple, addresses and ports as on the wire.
#[repr(C)]
#[derive(Clone, Copy)]
struct Flow<A> {
    src: A,
    dst: A,
    ports: [u16; 2],
    proto: u8,
    _pad: [u8; 3],
}

#[map]
static FLOWS4: HashMap<Flow<[u8; 4]>, Hop> = HashMap::with_max_entries(131_072, 0);
#[map]
static FLOWS6: HashMap<Flow<[u8; 16]>, Hop> = HashMap::with_max_entries(131_072, 0);
/// Each destination's hop, by address: filled by the bench.
#[map]
static ROUTES4: HashMap<[u8; 4], Hop> = HashMap::with_max_entries(64, 0);
#[map]
static ROUTES6: HashMap<[u8; 16], Hop> = HashMap::with_max_entries(64, 0);

/// TC ingress on the host's uplink: the floor of `from_uplink`.
#[classifier]
pub(crate) fn floor_uplink(ctx: TcContext) -> i32 {
    floor(&ctx)
}

/// TC ingress on each container's host-side veth: the floor of `from_container`.
#[classifier]
pub(crate) fn floor_container(ctx: TcContext) -> i32 {
    floor(&ctx)
}

/// The same code under two names, so the kernel counts each place apart.
#[inline(always)]
fn floor(ctx: &TcContext) -> i32 {
    let hop = match read::<u16>(ctx, 12).map(u16::from_be) {
        Some(ETH_P_IP) => hop4(ctx),
        Some(ETH_P_IPV6) => hop6(ctx),
        _ => None,
    };
    hop.map_or(TC_ACT_OK, |hop| redirect(ctx, &hop))
}

#[inline(always)]
fn hop4(ctx: &TcContext) -> Option<Hop> {
    let ip: Ipv4 = read(ctx, ETH_HLEN)?;
    let flow = Flow {
        src: ip.src,
        dst: ip.dst,
        ports: ports(ctx, ip.proto, ETH_HLEN + usize::from(ip.ver_ihl & 0x0f) * 4)?,
        proto: ip.proto,
        _pad: [0; 3],
    };
    // SAFETY: the value is copied out before anything can delete it.
    if let Some(hop) = unsafe { FLOWS4.get(flow) } {
        return Some(*hop);
    }
    // SAFETY: as above.
    let hop = *unsafe { ROUTES4.get(flow.dst) }?;
    let _unused: Result<_, _> = FLOWS4.insert(flow, hop, 0);
    Some(hop)
}

#[inline(always)]
fn hop6(ctx: &TcContext) -> Option<Hop> {
    let ip: Ipv6 = read(ctx, ETH_HLEN)?;
    let flow = Flow {
        src: ip.src,
        dst: ip.dst,
        ports: ports(ctx, ip.next, ETH_HLEN + size_of::<Ipv6>())?,
        proto: ip.next,
        _pad: [0; 3],
    };
    // SAFETY: the value is copied out before anything can delete it.
    if let Some(hop) = unsafe { FLOWS6.get(flow) } {
        return Some(*hop);
    }
    // SAFETY: as above.
    let hop = *unsafe { ROUTES6.get(flow.dst) }?;
    let _unused: Result<_, _> = FLOWS6.insert(flow, hop, 0);
    Some(hop)
}

/// A TCP or UDP header's ports at `off`.
#[inline(always)]
fn ports(ctx: &TcContext, proto: u8, off: usize) -> Option<[u16; 2]> {
    if proto != IPPROTO_TCP && proto != IPPROTO_UDP {
        return None;
    }
    read(ctx, off)
}

/// The Ethernet addresses rewritten, out of the hop's device.
#[inline(always)]
fn redirect(ctx: &TcContext, hop: &Hop) -> i32 {
    let start = ctx.data();
    if start + hop.macs.len() > ctx.data_end() {
        return TC_ACT_OK;
    }
    // SAFETY: the bytes are inside the packet (checked above).
    unsafe { (start as *mut [u8; 12]).write_unaligned(hop.macs) };
    // SAFETY: helper call with plain integer arguments.
    unsafe { bpf_redirect(hop.ifindex, 0) as i32 }
}

/// A `T` at `off` bytes into the packet, if the packet holds it.
#[inline(always)]
fn read<T: Copy>(ctx: &TcContext, off: usize) -> Option<T> {
    let start = ctx.data() + off;
    if start + size_of::<T>() > ctx.data_end() {
        return None;
    }
    // SAFETY: the bytes are inside the packet (checked above).
    Some(unsafe { (start as *const T).read_unaligned() })
}

#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
