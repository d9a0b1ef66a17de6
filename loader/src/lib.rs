//! bpfnet: an eBPF fast-path datapath for containers. This crate is the `bpfnet` binary's
//! library: the daemon, its control API, the datapath loader and the spec parser.
pub mod api;
pub mod cluster;
pub mod conntrack;
pub mod daemon;
pub mod datapath;
pub mod docker;
pub mod endpoint;
pub mod flags;
pub mod metrics;
pub mod monitor;
pub mod netlink;
pub mod spec;
pub mod state;
