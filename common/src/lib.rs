//! Types shared by the eBPF datapath and the `bpfnet` loader.
//!
//! Byte order is in the types: a value as it sits in the packet is a `Be16`/`Be32`
//! (`be`) or an `Ip6`, converted from and to host order and `std::net` addresses there
//! and nowhere else. Plain integers are host order; an IPv4 address is a `Be32` (the
//! family-generic `Addr`, like `Ip6`). The loader's `layouts_match_the_datapath` test
//! checks every map type's size and field offsets against the BTF of the built eBPF
//! object.
#![no_std]

pub mod addr;
pub mod be;
pub mod clock;
pub mod ct;
pub mod ip6;
pub mod maps;
pub mod monitor;
mod pod;
pub mod ratelimit;
pub mod stats;

pub use addr::Addr;
pub use be::{Be16, Be32};
pub use clock::{Clock, ClockSample};
pub use ct::{
    CT_DNAT, CT_ORIG_LOCAL, CT_REPLY, CT_REPLY_LOCAL, CT_SIDE, CT_SIDE_TUNNEL, CT_SIDE_UPLINK,
    CT_SIDE_VETH, CT_SNAT, CtKey, CtTimeouts, CtValue, CtValueV2, HOP_NONE, HOP_PEER, HOP_ROUTE,
    SWEPT_TABLES, SweepStats, TcpState,
};
pub use ip6::Ip6;
pub use maps::{
    Backend, CLUSTER_HOST_GW, CLUSTER_NODE, CLUSTER_ON_LINK, CLUSTER_ROUTED, CLUSTER_VXLAN,
    CLUSTER_VXLAN_MAC, CLUSTER_VXLAN_PORT, CLUSTER_VXLAN_SRC_MAC, ClusterRoute, Config, EP_LEARNED,
    Endpoint, FragKey, FragKey6, FragPorts, IFACE_BRIDGE, IFACE_LAN_SHIFT, IFACE_TUNNEL_GUARD,
    IFACE_UPLINK, NET_EDGE, NET_INTERNAL, NET_LAN, NET_NAT6, NET_NO_ICC, NET_NO_MASQ, NET_ROUTED,
    NET_ROUTED6, Network, PORT_ENFORCE, PORT_NO_ICC, PORT_V6, Port, PublishedKey,
    SNAT_PORTS_DEFAULT, SockKey, SockKey6, SockOrig, SockOrig6,
};
pub use monitor::{DropKey, Event, EventTuple, MonitorConfig, MonitorState, MonitorWindow};
pub use ratelimit::{ICMP_LIMIT_V4, ICMP_LIMIT_V6, IcmpLimit, RateBucket};
pub use stats::{Counter, Reason};

/// IANA protocol number of TCP.
pub const PROTO_TCP: u8 = 6;
/// IANA protocol number of UDP.
pub const PROTO_UDP: u8 = 17;
/// IANA protocol number of ICMP.
pub const PROTO_ICMP: u8 = 1;
/// IANA protocol number of `ICMPv6`.
pub const PROTO_ICMPV6: u8 = 58;

/// Map names; the `_v1` suffix changes whenever a layout does, so a new daemon never
/// reads a pinned map written with another layout.
pub mod names {
    pub const PUBLISHED: &str = "published_v1";
    pub const PUBLISHED6: &str = "published6_v1";
    pub const HOST_IPS: &str = "host_ips_v1";
    pub const HOST_IPS6: &str = "host_ips6_v1";
    pub const ENDPOINTS: &str = "endpoints_v1";
    pub const ENDPOINTS6: &str = "endpoints6_v1";
    pub const CT: &str = "ct_v3";
    pub const CT_NEW: &str = "ct_new_v2";
    pub const CT6: &str = "ct6_v1";
    pub const CT6_NEW: &str = "ct6_new_v1";
    /// The layouts before `CtValue` remembered its next hop, migrated at start.
    pub const CT_V2: &str = "ct_v2";
    pub const CT_NEW_V1: &str = "ct_new_v1";
    pub const ROUTE_GEN: &str = "route_gen_v1";
    pub const SUBNETS: &str = "subnets_v1";
    pub const SUBNETS6: &str = "subnets6_v1";
    pub const CLUSTER: &str = "cluster_v1";
    /// The cluster's IPv6 prefixes (dual stack), `ClusterRoute` values as `cluster_v1`'s.
    pub const CLUSTER6: &str = "cluster6_v1";
    /// Per container address: its masqueraded flows (SNAT quota), the flows it
    /// originated (its share of the flow tables), and the share.
    pub const SNAT_USE: &str = "snat_use_v2";
    pub const SNAT6_USE: &str = "snat6_use_v2";
    pub const CT_USE: &str = "ct_use_v1";
    pub const CT6_USE: &str = "ct6_use_v1";
    pub const CT_SHARE: &str = "ct_share_v1";
    /// The SNAT quota counts before they were keyed by the container alone, unpinned at
    /// start.
    pub const SNAT_USE_V1: &str = "snat_use_v1";
    pub const SNAT6_USE_V1: &str = "snat6_use_v1";
    pub const HOST_UDP: &str = "host_udp_v1";
    pub const HOST_UDP6: &str = "host_udp6_v1";
    pub const STATS: &str = "stats_v1";
    /// Drops by interface and reason (per CPU).
    pub const DROPS: &str = "drops_v1";
    /// Not pinned: `bpfnet monitor`'s ring buffer, its settings and its per-CPU state.
    pub const EVENTS: &str = "events";
    pub const MONITOR: &str = "monitor";
    pub const MONITOR_STATE: &str = "monitor_state";
    pub const CONFIG: &str = "config_v1";
    pub const IFACES: &str = "ifaces_v1";
    pub const FRAGS: &str = "frags_v1";
    pub const FRAGS6: &str = "frags6_v1";
    pub const PORTS: &str = "ports_v2";
    pub const SOCK_REVNAT: &str = "sock_revnat_v1";
    pub const SOCK_REVNAT6: &str = "sock_revnat6_v1";
    pub const FLOOD_BUDGET: &str = "flood_budget_v1";
    /// The ICMP error rate limit, from the sysctls.
    pub const ICMP_LIMIT: &str = "icmp_limit_v1";
    /// Not pinned: the ICMP error rate buckets, per destination prefix and global.
    pub const ICMP_RATE: &str = "icmp_rate";
    pub const ICMP_GLOBAL: &str = "icmp_global";
    pub const JUMP: &str = "jump_v1";
    /// Not pinned: the in-kernel sweep's timeouts and its last result.
    pub const CT_TIMEOUTS: &str = "ct_timeouts";
    pub const SWEEP: &str = "sweep";
    /// Not pinned: jiffies to monotonic time, measured by each daemon.
    pub const CLOCK: &str = "clock";
}

/// Slots of `jump_v1`: the IPv6 programs the IPv4 ones tail-call.
pub mod jump {
    /// `from_container6`, from `from_container`.
    pub const FROM_CONTAINER6: u32 = 0;
    /// `from_uplink6`, from `from_uplink`.
    pub const FROM_UPLINK6: u32 = 1;
    /// `from_l3_uplink6`, from `from_l3_uplink`.
    pub const FROM_L3_UPLINK6: u32 = 2;
}

/// Default number of connection-tracking entries (each flow takes two).
pub const CT_DEFAULT_ENTRIES: u32 = 262_144;
/// Flows not yet answered live in `ct_new_v2`, a quarter the size of the CT map, so a
/// flood of new flows cannot evict answered ones.
pub const CT_NEW_SHARE: u32 = 4;
