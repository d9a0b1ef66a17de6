//! Control API between the CLI and the daemon: one JSON request and one JSON response
//! per line over a unix socket that only root can open.
pub mod client;
mod error;
pub mod flow;
pub mod monitor;
mod program;
pub mod reason;
pub mod server;
mod status;

use common::{CLUSTER_HOST_GW, CLUSTER_NODE, CLUSTER_VXLAN, Reason};
pub use error::{ApiError, Change, Invalid, Missing};
pub use program::Program;
use reason::by_name;
use serde::{Deserialize, Serialize};
pub use status::{
    DockerStatus, DropLine, FULL_WARNING_PERCENT, MapFill, Metrics, ProgramCost, ProgramRun, Status,
};

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
    Nodes,
    /// Whether the datapath is healthy (`bpfnet status`).
    Status,
    /// What `GET /metrics` renders, in one snapshot.
    Metrics,
    /// Stream events (`monitor::Record`, one JSON line each) until the client goes.
    Monitor {
        filter: monitor::Filter,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Response {
    Ok,
    Listing(Listing),
    Conntrack { flows: Vec<FlowInfo> },
    Stats(Stats),
    Nodes(NodeListing),
    Status(Status),
    Metrics(Box<Metrics>),
    Error { message: String },
}

/// What `bpfnet node ls` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeListing {
    /// The etcd networks this node joined.
    pub networks: Vec<NetworkListing>,
    /// `--cluster-cidr`.
    pub cluster_cidr: Option<Ipv4Cidr>,
    /// `--peer`s: (prefix, underlay address).
    pub static_peers: Vec<(Ipv4Cidr, std::net::Ipv4Addr)>,
}

/// One etcd network as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkListing {
    /// The network's bridge here.
    pub bridge: String,
    /// Its key prefix in etcd.
    pub prefix: String,
    /// This node, once it has its prefix.
    pub this: Option<ThisNode>,
    /// The other nodes etcd knows, as last seen (kept while etcd is unreachable).
    pub nodes: Vec<crate::cluster::Node>,
    /// The node entries not believed (their reservation names another node, ...).
    #[serde(default)]
    pub conflicts: Vec<crate::cluster::Conflict>,
    /// Whether etcd answers now.
    pub etcd_connected: bool,
}

/// This node in a cluster network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThisNode {
    pub name: String,
    #[serde(with = "crate::cluster::net")]
    pub subnet: crate::cluster::Ipv4Net,
    pub underlay: std::net::Ipv4Addr,
    pub mode: crate::cluster::Mode,
    pub vni: u32,
    /// The address the network's bridge has in the node's prefix.
    pub gateway: std::net::Ipv4Addr,
    /// The node's IPv6 prefix (dual stack), the bridge's first address in it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::cluster::net6::opt"
    )]
    pub subnet6: Option<crate::cluster::Ipv6Net>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<std::net::Ipv6Addr>,
}

/// A `cluster_v1` entry as `bpfnet ls` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRouteLine {
    pub prefix: Ipv4Cidr,
    pub kind: RouteKind,
    /// The node it is sent to (host-gw, vxlan).
    pub node: Option<std::net::Ipv4Addr>,
    pub vni: u32,
}

/// How a cluster prefix is reached (`ClusterRoute::kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RouteKind {
    /// By the host's routing table.
    Routed,
    HostGw,
    Vxlan,
    /// A node's own address.
    Node,
}

impl RouteKind {
    /// The kind of a `cluster_v1` value's `kind` (`CLUSTER_*`; any other: routed).
    pub fn of(kind: u32) -> Self {
        match kind {
            CLUSTER_HOST_GW => Self::HostGw,
            CLUSTER_VXLAN => Self::Vxlan,
            CLUSTER_NODE => Self::Node,
            _ => Self::Routed,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Routed => "routed",
            Self::HostGw => "host-gw",
            Self::Vxlan => "vxlan",
            Self::Node => "node",
        }
    }
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
    #[serde(with = "by_name")]
    pub reason: Reason,
    pub drop: bool,
    pub packets: u64,
    pub bytes: u64,
}

/// A Docker container's publish not installed because an earlier one (a manual
/// publish, or another container's) holds its port. On the wire it is the sentence
/// `bpfnet ls` prints, as it always was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishConflict {
    /// The container's name.
    pub container: String,
    pub spec: PublishSpec,
    /// The publish that holds the port.
    pub holder: PublishSpec,
}

impl std::fmt::Display for PublishConflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self {
            container,
            spec,
            holder,
        } = self;
        write!(
            f,
            "`{spec}` of container {container} conflicts with published `{holder}`"
        )
    }
}

impl std::str::FromStr for PublishConflict {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let err = || format!("`{s}` is not a publish conflict");
        let rest = s.strip_prefix('`').ok_or_else(err)?;
        let (spec, rest) = rest.split_once("` of container ").ok_or_else(err)?;
        let (container, holder) = rest
            .rsplit_once(" conflicts with published `")
            .ok_or_else(err)?;
        let holder = holder.strip_suffix('`').ok_or_else(err)?;
        Ok(Self {
            container: container.to_owned(),
            spec: spec.parse().map_err(|_| err())?,
            holder: holder.parse().map_err(|_| err())?,
        })
    }
}

serde_as_string!(PublishConflict);

/// What `bpfnet ls` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    pub published: Vec<PublishSpec>,
    pub endpoints: Vec<EndpointSpec>,
    /// Containers learned from Docker.
    pub docker: Vec<DockerListing>,
    /// Publishes not installed because another holds the port.
    pub conflicts: Vec<PublishConflict>,
    /// Problems with the host a user should fix.
    pub warnings: Vec<String>,
    pub bridges: Vec<String>,
    pub uplinks: Vec<String>,
    /// Interfaces with a bpfnet program attached: (interface, program).
    pub attached: Vec<(String, Program)>,
    /// The cluster's prefixes and where they are sent.
    #[serde(default)]
    pub cluster: Vec<ClusterRouteLine>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datapath::XdpMode;

    #[test]
    fn a_publish_conflict_reads_and_travels_as_the_sentence_ls_prints() {
        let spec = |s: &str| s.parse::<PublishSpec>().expect("valid publish");
        let c = PublishConflict {
            container: "web".into(),
            spec: spec("8080:172.17.0.5:80"),
            holder: spec("8080:172.17.0.4:80"),
        };
        assert_eq!(
            c.to_string(),
            "`8080:172.17.0.5:80/tcp` of container web conflicts with published \
             `8080:172.17.0.4:80/tcp`"
        );
        let json = serde_json::to_value(&c).expect("serialize");
        assert_eq!(json, serde_json::Value::String(c.to_string()));
        let back: PublishConflict = serde_json::from_value(json).expect("deserialize");
        assert_eq!(back, c);
        assert!(
            "`8080:172.17.0.5:80` of container web"
                .parse::<PublishConflict>()
                .is_err()
        );
    }

    #[test]
    fn route_kinds_travel_by_name() {
        let kinds = [
            (common::CLUSTER_ROUTED, RouteKind::Routed),
            (CLUSTER_HOST_GW, RouteKind::HostGw),
            (CLUSTER_VXLAN, RouteKind::Vxlan),
            (CLUSTER_NODE, RouteKind::Node),
        ];
        for (raw, kind) in kinds {
            assert_eq!(RouteKind::of(raw), kind, "kind {raw}");
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.name());
        }
        assert_eq!(
            [
                RouteKind::Routed,
                RouteKind::HostGw,
                RouteKind::Vxlan,
                RouteKind::Node
            ]
            .map(RouteKind::name),
            ["routed", "host-gw", "vxlan", "node"]
        );
    }

    #[test]
    fn xdp_modes_travel_as_the_flag_spells_them() {
        for m in [XdpMode::Auto, XdpMode::Native, XdpMode::Generic] {
            let name = m.to_string();
            assert_eq!(serde_json::to_value(m).unwrap(), name.as_str());
            assert_eq!(name.parse::<XdpMode>().unwrap(), m);
        }
    }

    #[test]
    fn counters_carry_reasons_by_name() {
        let line = StatLine {
            reason: Reason::DropIsolation,
            drop: true,
            packets: 3,
            bytes: 180,
        };
        let json = serde_json::to_string(&line).unwrap();
        assert_eq!(
            json,
            r#"{"reason":"drop-isolation","drop":true,"packets":3,"bytes":180}"#
        );
        assert_eq!(serde_json::from_str::<StatLine>(&json).unwrap(), line);
    }
}
