//! What the datapath tells `bpfnet monitor` and the metrics: events through a ring
//! buffer, and drop counters per interface.
//!
//! The datapath reports a packet only when the daemon asked for its reason
//! (`MonitorConfig::reasons`), one in `sample` per CPU, and at most `rate` a second over
//! all CPUs (`MonitorWindow`, one budget they share); what it held back or could not
//! write is counted in `MonitorState`. With no monitor
//! attached the mask is 0 and a verdict costs one array read more.

use crate::Be16;

/// Bytes of a packet an event carries, from its first (the link-layer header, if any).
pub const EVENT_CAPTURE: usize = 128;

/// `Event::hook`: a TC program (`from_container` or `from_uplink`: the interface says
/// which).
pub const HOOK_TC: u8 = 1;
/// `Event::hook`: `xdp_uplink`.
pub const HOOK_XDP: u8 = 2;

/// Value of `monitor` (an array of one, not pinned: each daemon starts with none).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct MonitorConfig {
    /// Bit `r` set: packets counted with `Reason` `r` are reported.
    pub reasons: u64,
    /// Report one in this many of them, per CPU (0 and 1: every one).
    pub sample: u32,
    /// At most this many events a second, all CPUs together (0: no limit).
    pub rate: u32,
}

/// Value of `monitor_rate` (an array of one, not pinned, shared by the CPUs): the rate
/// limit's one-second window. Updated without a lock: two CPUs racing may each write
/// an event the window had room for only once, never fewer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct MonitorWindow {
    /// When the current window began (`bpf_ktime_get_coarse_ns`).
    pub start_ns: u64,
    /// Events written in it, by every CPU.
    pub sent: u64,
}

/// Value of `monitor_state` (per CPU, not pinned): the sampling count and what was not
/// reported.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct MonitorState {
    /// Reported reasons seen, for sampling.
    pub seen: u64,
    /// Left out by sampling.
    pub sampled_out: u64,
    /// Held back by the rate limit.
    pub rate_limited: u64,
    /// Not written: the ring buffer was full (the reader is behind).
    pub ring_full: u64,
    /// Working memory of the event being written: its time and reason (kept here, not
    /// on a stack the verdict's caller has mostly used).
    pub now_ns: u64,
    pub reason: u32,
    pub _pad: u32,
}

/// A tuple as an event carries it: IPv4 in the first word of each address (`Be32::raw`),
/// IPv6 as `Ip6::words`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct EventTuple {
    pub src: [u32; 4],
    pub dst: [u32; 4],
    pub src_port: Be16,
    pub dst_port: Be16,
    pub proto: u8,
    /// 4 or 6; 0: no tuple.
    pub family: u8,
    pub _pad: [u8; 2],
}

/// One record of the `events` ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Event {
    /// `bpf_ktime_get_ns` when it was reported.
    pub time_ns: u64,
    /// The interface the program runs on, host order.
    pub ifindex: u32,
    /// The packet's whole length.
    pub len: u32,
    /// The `Reason` it was counted with.
    pub reason: u32,
    /// `HOOK_*`.
    pub hook: u8,
    pub _pad: u8,
    /// How many bytes of `data` are the packet's.
    pub captured: u16,
    /// The tuple the flow leaves with, when the verdict translated it or found its flow.
    pub xlate: EventTuple,
    /// The packet's first bytes as the program saw them.
    pub data: [u8; EVENT_CAPTURE],
}

/// Key of `drops_v1` (per CPU): drops by interface and reason.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, bytemuck::Pod, bytemuck::Zeroable)]
pub struct DropKey {
    /// Host order.
    pub ifindex: u32,
    /// A drop `Reason`.
    pub reason: u32,
}

crate::pod::aya_pod!(
    MonitorConfig,
    MonitorState,
    MonitorWindow,
    EventTuple,
    DropKey
);

const _: () = assert!(
    crate::Reason::COUNT <= 64,
    "MonitorConfig::reasons has a bit per reason"
);
