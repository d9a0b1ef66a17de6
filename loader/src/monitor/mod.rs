//! `bpfnet monitor`, the daemon's side: the datapath's drop and trace events, decoded,
//! filtered and streamed to each client of the control socket that asked for them.
//!
//! The datapath reports only the reasons some client wants (the union of their filters),
//! sampled per CPU and rate-limited over all CPUs (`common::monitor`); the hub (`hub`) drains the ring
//! buffer, decodes each event (`decode`) into the wire's `api::monitor::Event` and hands
//! it to every client whose filter it passes. What was left out on the way is counted
//! and sent as `lost` records.
mod decode;
pub mod hub;
