//! Control API between the CLI and the daemon: one JSON request and one JSON response
//! per line over a unix socket that only root can open.
pub mod client;
mod error;
pub mod server;

pub use error::ApiError;
use serde::{Deserialize, Serialize};

use crate::{
    conntrack::FlowInfo,
    endpoint::{EndpointSpec, Ipv4Cidr, Ipv6Cidr, Mac},
    spec::PublishSpec,
};

/// Default control socket.
pub const DEFAULT_SOCKET: &str = "/run/bpfnet/bpfnet.sock";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    Publish {
        spec: PublishSpec,
    },
    Unpublish {
        spec: PublishSpec,
    },
    List,
    Conntrack,
    ConntrackFlush,
    Stats,
    EndpointAdd {
        bridge: String,
        veth: String,
        /// Its IPv4 address (none: an IPv6-only endpoint).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ip: Option<Ipv4Cidr>,
        /// Its IPv6 addresses, if any.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        ip6: Vec<Ipv6Cidr>,
        /// None: learn it from the bridge's forwarding database.
        mac: Option<Mac>,
    },
    EndpointDel {
        /// Any of the endpoint's addresses.
        ip: std::net::IpAddr,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Response {
    Ok,
    Listing(Listing),
    Conntrack { flows: Vec<FlowInfo> },
    Stats(Stats),
    Error { message: String },
}

/// A Docker container as `bpfnet ls` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerListing {
    pub id: String,
    pub name: String,
    pub publishes: Vec<PublishSpec>,
    pub endpoints: Vec<EndpointSpec>,
}

/// What `bpfnet stats` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub counters: Vec<StatLine>,
    /// Entries in the CT map now (two per flow).
    pub ct_entries: u64,
    /// Entries the sweeper removed since the daemon started.
    pub ct_swept: u64,
    /// The sweeper's last pass, once it has run.
    #[serde(default)]
    pub last_sweep: Option<Sweep>,
}

/// One pass of the sweeper over both CT tables.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sweep {
    /// Entries read.
    pub entries: u64,
    /// Entries removed (expired).
    pub removed: u64,
    /// How long the pass took, microseconds.
    pub micros: u64,
    /// Whether the pass included the userspace walk (repair, SNAT recount; every tenth
    /// sweep, or every sweep in a crowded table), or was the in-kernel sweep alone.
    #[serde(default)]
    pub walked: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatLine {
    pub reason: String,
    pub drop: bool,
    pub packets: u64,
    pub bytes: u64,
}

/// What `bpfnet ls` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    pub published: Vec<PublishSpec>,
    pub endpoints: Vec<EndpointSpec>,
    /// Containers learned from Docker.
    pub docker: Vec<DockerListing>,
    /// Publishes not installed because another holds the port.
    pub conflicts: Vec<String>,
    /// Problems with the host a user should fix.
    pub warnings: Vec<String>,
    pub bridges: Vec<String>,
    pub uplinks: Vec<String>,
    /// Interfaces with a bpfnet program attached: (interface, program).
    pub attached: Vec<(String, String)>,
}
