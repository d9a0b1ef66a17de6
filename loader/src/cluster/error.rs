//! What can go wrong talking to the cluster's etcd.
use std::{
    io,
    net::{Ipv4Addr, Ipv6Addr},
    path::PathBuf,
    time::Duration,
};

use super::{ClusterConfig, Ipv4Net, Ipv6Net};

/// A value on the command line or in etcd that does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    /// Not `a.b.c.d/len`.
    #[error("`{value}` is not an IPv4 network with a prefix length (e.g. 10.244.0.0/16)")]
    Net {
        /// What was given.
        value: String,
    },
    /// Not `addr/len` of IPv6.
    #[error("`{value}` is not an IPv6 network with a prefix length (e.g. fd00:10:244::/48)")]
    Net6 {
        /// What was given.
        value: String,
    },
    /// Neither `host-gw` nor `vxlan`.
    #[error("`{value}` is not a cluster mode (host-gw or vxlan)")]
    Mode {
        /// What was given.
        value: String,
    },
}

/// An error of the cluster control plane.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The endpoints do not make an etcd client (a malformed URL, none at all).
    #[error("cannot use etcd endpoints `{endpoints}`: {error}")]
    Connect {
        /// The endpoints, comma-separated.
        endpoints: String,
        /// What the client said (in the message only, not also as the error's source:
        /// a chain would print its long text twice).
        error: Box<etcd_client::Error>,
    },
    /// An etcd request failed (etcd unreachable, or it refused).
    #[error("etcd: cannot {what}: {error}")]
    Etcd {
        /// What was being done.
        what: &'static str,
        /// What the client said (in the message only).
        error: Box<etcd_client::Error>,
    },
    /// etcd refused this client: its certificate (or etcd's, to us), its password, or a
    /// key its role is not granted.
    #[error("{refusal}")]
    Refused {
        /// What was being done.
        what: &'static str,
        /// Who refused what, and what etcd or the TLS handshake said.
        refusal: Refusal,
    },
    /// An etcd request got no answer in time.
    #[error("etcd: cannot {what}: no answer in {after:?}")]
    Timeout {
        /// What was being done.
        what: &'static str,
        /// How long it waited.
        after: Duration,
    },
    /// A stream from etcd (lease keepalive, watch) ended or went silent.
    #[error("etcd: {problem}")]
    Stream {
        /// What happened to which stream.
        problem: StreamProblem,
    },
    /// A lease of this node expired in etcd (it was unreachable too long).
    #[error("etcd: lease {lease:x} expired")]
    LeaseLost {
        /// The lease id.
        lease: i64,
    },
    /// No cluster config in etcd.
    #[error("no cluster config at `{key}` in etcd (run `bpfnet cluster init`)")]
    NoConfig {
        /// Where it was looked for.
        key: String,
    },
    /// The cluster config in etcd does not parse.
    #[error("the cluster config at `{key}` in etcd is not valid: {source}")]
    ConfigJson {
        /// Where it is.
        key: String,
        /// Why it does not parse.
        source: serde_json::Error,
    },
    /// The cluster config in etcd parses but cannot work.
    #[error("the cluster config at `{key}` in etcd is not valid: {source}")]
    BadConfig {
        /// Where it is.
        key: String,
        /// Why it cannot work (`InvalidConfig`).
        source: Box<ClusterError>,
    },
    /// `init` with a config other than the one in etcd.
    #[error(
        "etcd already holds a different cluster config: {existing}; refusing to overwrite it \
         with {wanted}"
    )]
    ConfigDiffers {
        /// The one in etcd.
        existing: Box<ClusterConfig>,
        /// The one asked for.
        wanted: Box<ClusterConfig>,
    },
    /// A cluster config with values that cannot work.
    #[error("invalid cluster config: {problem}")]
    InvalidConfig {
        /// Which value and why.
        problem: ConfigProblem,
    },
    /// This node's own parameters (name, underlay) cannot work.
    #[error("invalid node: {problem}")]
    InvalidNode {
        /// Which value and why.
        problem: NodeProblem,
    },
    /// Every node subnet of the cluster CIDR is reserved.
    #[error("no free /{node_prefix} left in {cidr}: every node subnet is reserved")]
    PoolExhausted {
        /// The cluster CIDR (IPv4 or IPv6).
        cidr: String,
        /// The node subnets' prefix length.
        node_prefix: u8,
    },
    /// Another live node registered this node's name with another underlay address.
    #[error("node name `{name}` is registered by another live node (underlay {underlay})")]
    NameTaken {
        /// The name.
        name: String,
        /// The other node's underlay address.
        underlay: Ipv4Addr,
    },
    /// A key changed under a compare-and-swap that had to succeed.
    #[error("etcd: {what} changed meanwhile")]
    Raced {
        /// Which key.
        what: &'static str,
    },
    /// A value could not be encoded as JSON.
    #[error("cannot encode {what} as JSON: {source}")]
    Encode {
        /// What.
        what: &'static str,
        /// Why.
        source: serde_json::Error,
    },
    /// The persisted cluster state cannot be read or written.
    #[error("cannot {what} `{path}`: {source}")]
    Persist {
        /// Read or write.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The persisted cluster state does not parse.
    #[error("`{path}` is not valid cluster state: {source}")]
    PersistParse {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
}

/// Who refused whom, with what etcd or the TLS handshake said.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refusal {
    #[error("etcd's RBAC does not let this node's user {what}: {said}")]
    Rbac { what: &'static str, said: String },
    #[error("etcd refused this node's user or password (--etcd-user): {said}")]
    Password { said: String },
    #[error("etcd refused this node's client certificate (--etcd-cert): {said}")]
    ClientCertificate { said: String },
    #[error("etcd's certificate does not verify with --etcd-cacert: {said}")]
    ServerCertificate { said: String },
}

/// What happened to a stream from etcd.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StreamProblem {
    #[error("no keepalive answer in {ttl:?}")]
    KeepaliveSilent { ttl: Duration },
    #[error("a lease keepalive stream ended")]
    KeepaliveEnded,
    #[error("the watch on the nodes ended")]
    WatchEnded,
    #[error("the watch on the nodes was canceled: {reason} (compacted at {compact_revision})")]
    WatchCanceled {
        reason: String,
        compact_revision: i64,
    },
}

/// Why this node's own parameters cannot work.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NodeProblem {
    #[error("no etcd endpoint")]
    NoEndpoint,
    #[error("`{name}` is not a node name (1 to 253 letters, digits, `-`, `_`, `.`)")]
    Name { name: String },
    #[error(
        "{underlay} cannot be an underlay address (unspecified, loopback, multicast or broadcast)"
    )]
    Underlay { underlay: Ipv4Addr },
}

/// Why a cluster config cannot work.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigProblem {
    #[error("the cluster CIDR {cidr} is every address")]
    EveryAddress { cidr: Ipv4Net },
    #[error("the cluster CIDR {cidr} overlaps {addr}/{len}")]
    Overlaps {
        cidr: Ipv4Net,
        addr: Ipv4Addr,
        len: u8,
    },
    #[error("the node prefix /{node_prefix} is shorter than the cluster CIDR {cidr}")]
    NodePrefixShort { node_prefix: u8, cidr: Ipv4Net },
    #[error("the node prefix /{node_prefix} is longer than /{max}")]
    NodePrefixLong { node_prefix: u8, max: u8 },
    #[error("the VNI {vni} is not in 1..={max}")]
    Vni { vni: u32, max: u32 },
    #[error("the lease TTL {ttl} s is not in 1..={max}")]
    LeaseTtl { ttl: u64, max: u64 },
    #[error("reclaim-after {reclaim_after} s is not in {ttl}..={max} (at least the lease TTL)")]
    ReclaimAfter {
        reclaim_after: u64,
        ttl: u64,
        max: u64,
    },
    #[error("the cluster IPv6 CIDR {cidr} is every address")]
    EveryAddress6 { cidr: Ipv6Net },
    #[error("the cluster IPv6 CIDR {cidr} overlaps {addr}/{len}")]
    Overlaps6 {
        cidr: Ipv6Net,
        addr: Ipv6Addr,
        len: u8,
    },
    #[error("the IPv6 node prefix /{len} is shorter than the cluster IPv6 CIDR {cidr}")]
    NodePrefix6Short { len: u8, cidr: Ipv6Net },
    #[error("the IPv6 node prefix /{len} is longer than /{max}")]
    NodePrefix6Long { len: u8, max: u8 },
    #[error("the IPv6 node prefix /{len} makes more than 2^{max_bits} node prefixes of {cidr}")]
    TooManyPrefixes6 {
        len: u8,
        max_bits: u8,
        cidr: Ipv6Net,
    },
}

impl ClusterError {
    /// Whether this says etcd cannot be reached (as opposed to a refusal or bad data).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            Self::Etcd { .. } | Self::Timeout { .. } | Self::Stream { .. } | Self::LeaseLost { .. }
        )
    }

    /// Whether etcd refused this client (credentials, certificate, permissions).
    pub fn is_refusal(&self) -> bool {
        matches!(self, Self::Refused { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_refusals_streams_and_node_problems_read_as_before() {
        for (e, m) in [
            (
                ClusterError::Refused {
                    what: "put the node",
                    refusal: Refusal::Rbac {
                        what: "put the node",
                        said: "permission denied".into(),
                    },
                },
                "etcd's RBAC does not let this node's user put the node: permission denied",
            ),
            (
                ClusterError::Refused {
                    what: "shake hands",
                    refusal: Refusal::ClientCertificate {
                        said: "received fatal alert: BadCertificate".into(),
                    },
                },
                "etcd refused this node's client certificate (--etcd-cert): received fatal \
                 alert: BadCertificate",
            ),
            (
                ClusterError::Stream {
                    problem: StreamProblem::KeepaliveSilent {
                        ttl: Duration::from_secs(10),
                    },
                },
                "etcd: no keepalive answer in 10s",
            ),
            (
                ClusterError::Stream {
                    problem: StreamProblem::WatchCanceled {
                        reason: "compacted".into(),
                        compact_revision: 42,
                    },
                },
                "etcd: the watch on the nodes was canceled: compacted (compacted at 42)",
            ),
            (
                ClusterError::InvalidNode {
                    problem: NodeProblem::Underlay {
                        underlay: Ipv4Addr::LOCALHOST,
                    },
                },
                "invalid node: 127.0.0.1 cannot be an underlay address (unspecified, loopback, \
                 multicast or broadcast)",
            ),
        ] {
            assert_eq!(e.to_string(), m);
        }
        assert!(
            ClusterError::Refused {
                what: "authenticate",
                refusal: Refusal::Password { said: "x".into() },
            }
            .is_refusal()
        );
    }
}
