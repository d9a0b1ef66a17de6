//! The cluster control plane in etcd (v3): each node reserves a subnet of the cluster
//! CIDR, registers its underlay address under a short liveness lease and follows the
//! other nodes, whose subnets the datapath routes to their underlay addresses. All of
//! bpfnet's etcd code is here; the daemon only consumes [`ClusterEvent`]s.
//!
//! Keys, under a prefix (`/bpfnet` by default):
//! - `{prefix}/config`: the [`ClusterConfig`], JSON, written once by [`init`].
//! - `{prefix}/subnets/{a.b.c.d}-{len}`: `{"node": NAME, "last_seen": SECS}`, a subnet's
//!   reservation, on a lease of TTL `reclaim_after` kept alive while the node runs: etcd
//!   deletes it, returning the subnet to the pool, once the node is gone that long.
//! - `{prefix}/nodes/{NAME}`: `{"subnet", "underlay", "mode", "vni", "last_seen", "mac",
//!   "incarnation"}`, a live node, on a lease of TTL `lease_ttl` kept alive every third
//!   of it; `mac` is its underlay interface's, `incarnation` new at each start;
//!   `subnet6`, its IPv6 prefix, when the cluster has a `cidr6` (dual stack).
//! - `{prefix}/subnets6/{ipv6}-{len}`: a node's IPv6 prefix's reservation, the same
//!   record on the same lease as its IPv4 subnet's.
mod access;
mod config;
mod error;
mod etcd;
mod handshake;
mod init;
mod keys;
mod member;
pub mod net;
pub mod net6;
mod node;
mod outbox;
mod peers;
mod persist;
mod pool;
mod session;
mod trust;

pub use access::{AccessError, AccessFlags, EtcdAccess, PASSWORD_ENV};
pub use config::{ClusterConfig, Mode};
pub use error::{ClusterError, ConfigProblem, NodeProblem, ParseError, Refusal, StreamProblem};
pub use etcd::{connect, probe};
pub use init::{InitOutcome, init};
pub use member::{ClusterEvent, JoinOptions, incarnation, run};
pub use net::Ipv4Net;
pub use net6::Ipv6Net;
pub use node::{EtcdNodes, Node, nodes};
pub use persist::STATE_FILE;
pub use pool::{claim, claim6};
pub use trust::{Conflict, ConflictReason};

/// The key prefix when none is given.
pub const DEFAULT_PREFIX: &str = "/bpfnet";
