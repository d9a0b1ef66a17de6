//! Keys and values of the configuration maps the daemon fills.

use crate::{Be16, Be32, Ip6};

/// Key of `published_v1` (IPv4: `A` is `u32`) and `published6_v1` (`Ip6`): a published
/// host port.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublishedKey<A = u32> {
    /// Host address, network order; 0 (`::`) means every address in `host_ips_v1`
    /// (`host_ips6_v1`).
    pub host_ip: A,
    /// Host port.
    pub port: Be16,
    /// `PROTO_TCP` or `PROTO_UDP`.
    pub proto: u8,
    pub _pad: u8,
}

impl<A> PublishedKey<A> {
    /// The key of `port`/`proto` at `host_ip`, padding zeroed.
    #[inline(always)]
    pub const fn new(host_ip: A, port: Be16, proto: u8) -> Self {
        Self {
            host_ip,
            port,
            proto,
            _pad: 0,
        }
    }
}

/// Value of `published_v1` and `published6_v1`: where a published port leads.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Backend<A = u32> {
    /// Backend (container) address, network order.
    pub ip: A,
    /// Backend port.
    pub port: Be16,
    pub _pad: u16,
}

impl<A> Backend<A> {
    /// The backend `ip:port`, padding zeroed.
    #[inline(always)]
    pub const fn new(ip: A, port: Be16) -> Self {
        Self { ip, port, _pad: 0 }
    }
}

/// Value of `endpoints_v1` (key: container IPv4, network order) and of `endpoints6_v1`
/// (key: container IPv6, `Ip6`): a container whose host-side veth is known, so traffic
/// can be handed straight to its namespace.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Endpoint {
    /// Host-side veth ifindex, host order.
    pub ifindex: u32,
    /// Network: the ifindex of its bridge, host order.
    pub network: u32,
    /// The container's MAC address, wire order.
    pub mac: [u8; 6],
    /// `EP_*` bits.
    pub flags: u8,
    pub _pad: u8,
}

impl Endpoint {
    /// The endpoint behind veth `ifindex` on bridge `network`, padding zeroed.
    #[inline(always)]
    pub const fn new(ifindex: u32, network: u32, mac: [u8; 6], flags: u8) -> Self {
        Self {
            ifindex,
            network,
            mac,
            flags,
            _pad: 0,
        }
    }
}

/// `Endpoint::flags`: bound by the datapath from the first packet of a veth nobody had
/// registered yet (the daemon replaces it when it learns the container).
pub const EP_LEARNED: u8 = 1;

/// Value of `subnets_v1` (an LPM trie keyed by IPv4 prefix, network order) and of
/// `subnets6_v1` (keyed by IPv6 prefix, `Ip6`): a managed network's subnet.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Network {
    /// The network: its bridge's ifindex, host order.
    pub bridge: u32,
    /// `NET_*` bits.
    pub flags: u32,
}

/// `Network::flags`: no NAT, direct routed access from outside (Docker's
/// `com.docker.network.bridge.gateway_mode_ipv4=routed`). In `subnets6_v1`: an IPv6
/// subnet routed without NAT66, open only at ports published at its containers' own
/// addresses (a global prefix, unless `NET_NAT6`; a unique local one with
/// `NET_ROUTED6`).
pub const NET_ROUTED: u32 = 1;
/// `Network::flags`: the network is a LAN bridged to an uplink (pipework style); its
/// peers reach it at layer 2, so the inbound policy does not apply.
pub const NET_LAN: u32 = 2;
/// `Network::flags`: Docker's `--internal`: nothing routed in or out of the network.
pub const NET_INTERNAL: u32 = 4;
/// `Network::flags`: `com.docker.network.bridge.enable_icc=false`: no traffic between
/// the network's containers (published ports and egress still work).
pub const NET_NO_ICC: u32 = 8;
/// `Network::flags`: `com.docker.network.bridge.enable_ip_masquerade=false`: egress
/// leaves with the container's own address.
pub const NET_NO_MASQ: u32 = 16;
/// A network's (Docker) setting for its IPv6 subnet, `gateway_mode_ipv6=routed`: routed
/// although unique local. The daemon folds it into `NET_ROUTED` of `subnets6_v1`.
pub const NET_ROUTED6: u32 = 32;
/// `gateway_mode_ipv6=nat`: NAT66 although global.
pub const NET_NAT6: u32 = 64;
/// `Network::flags` of a host-length entry (/32, /128) beside its subnet's: the
/// subnet's network or broadcast address (IPv6: its subnet-router anycast address),
/// which no endpoint may have, so no port may claim it. The entry carries the subnet's
/// bridge and other flags, so every other lookup reads it as the subnet.
pub const NET_EDGE: u32 = 128;

/// Value of `ports_v2` (key: host-side veth ifindex, host order): the bridge port a
/// container's traffic enters by.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Port {
    /// Network: the ifindex of its bridge, host order.
    pub network: u32,
    /// `PORT_*` bits.
    pub flags: u32,
    /// The bridge's MAC, wire order: frames sent to it are routed, others switched.
    pub bridge_mac: [u8; 6],
    /// The MAC its endpoints use (with `PORT_ENFORCE`), wire order: frames of every
    /// ethertype must come from it.
    pub mac: [u8; 6],
    /// The IPv4 of one endpoint of this port (0: none), which `endpoints_v1` also maps
    /// to this port and `mac`: a packet from it is checked without that lookup. (Was
    /// padding in earlier versions: 0 there.)
    pub ip: Be32,
}

/// `Port::flags`: endpoints are registered on this port, so every frame from it must
/// carry one of their IPv4 and MAC addresses (anti-spoofing).
pub const PORT_ENFORCE: u32 = 1;
/// `Port::flags`: the IPv6 addresses of this port's endpoints are known (registered, or
/// bound from its first IPv6 packet), so an IPv6 source not among them (nor the
/// link-local address of its MAC) is spoofed. Ports of registered endpoints always
/// have it: registration names every address a container has.
pub const PORT_V6: u32 = 2;
/// `Port::flags`: the port's network has no inter-container communication
/// (`NET_NO_ICC`), for frames whose source lies in none of its subnets (link-local
/// IPv6, `0.0.0.0`).
pub const PORT_NO_ICC: u32 = 4;

/// Value of `config_v1` (one slot): datapath settings from the daemon's flags.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Config {
    /// First source port SNAT may use, host order.
    pub snat_port_min: u16,
    /// Last source port SNAT may use (inclusive), host order.
    pub snat_port_max: u16,
    /// Secret that keys the SNAT port sequence of each flow (so outsiders cannot predict
    /// which port a container's flow gets), chosen at random by the daemon.
    pub hash_seed: u32,
    /// Cookie of the daemon's network namespace: the socket programs rewrite only
    /// sockets of that namespace.
    pub netns_cookie: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            snat_port_min: SNAT_PORTS_DEFAULT.0,
            snat_port_max: SNAT_PORTS_DEFAULT.1,
            hash_seed: 0,
            netns_cookie: 0,
        }
    }
}

/// Default SNAT source ports: every unprivileged port, as MASQUERADE uses. A flow keeps
/// its own source port when that is free; candidates a host socket holds are skipped.
pub const SNAT_PORTS_DEFAULT: (u16, u16) = (1024, 65535);

/// `ifaces_v1` value bit: the interface is an uplink (`from_uplink` runs there), so
/// egress through it is masqueraded.
pub const IFACE_UPLINK: u32 = 1;
/// `ifaces_v1` value bit: the interface is a managed bridge.
pub const IFACE_BRIDGE: u32 = 2;
/// `ifaces_v1` value bit of an uplink while bpfnet's cluster VXLAN device exists: a
/// VXLAN datagram to the host arriving on it passes only from a node, by the way back
/// to it. Without the device, VXLAN is someone else's (a LAN stretched over it, another
/// overlay) and bpfnet leaves its datagrams to the host.
pub const IFACE_TUNNEL_GUARD: u32 = 4;
/// `ifaces_v1` value of an uplink that is a managed bridge's LAN wire: that bridge's
/// ifindex (host order) shifted by this, beside the role bits (0 above them: no LAN
/// wire). The LAN's hosts, inside the bridge's subnet, arrive only on it.
pub const IFACE_LAN_SHIFT: u32 = 8;

/// Value of `cluster_v1` (an LPM trie keyed by IPv4 prefix, network order) and of
/// `cluster6_v1` (keyed by IPv6 prefix; the underlay, and so `node`, stays IPv4): a prefix of
/// the cluster's container network, where its packets go and which network it is.
/// Between two addresses of the cluster nothing is translated; a packet passes only
/// between prefixes of one network (equal `vni`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ClusterRoute {
    /// The node that holds the prefix: its underlay IPv4 (for
    /// `CLUSTER_NODE`, the node's own address, the entry's). For `CLUSTER_ROUTED`, the
    /// next hop the host's (non-default) route to the prefix names, the only one its
    /// sources are admitted from: a gateway, `CLUSTER_ON_LINK` for a route straight onto
    /// a link (each source its own next hop), 0 for none (routed sources refused).
    pub node: Be32,
    /// The network: its VXLAN network identifier across hosts, host order (0 without
    /// etcd).
    pub vni: u32,
    /// `CLUSTER_*`: how the prefix is reached.
    pub kind: u32,
    /// `CLUSTER_VXLAN`: the VXLAN device's ifindex, host order; 0 otherwise.
    pub ifindex: u32,
}

/// The MAC of every node's VXLAN device, and the destination of every frame inside
/// the tunnel: the overlay carries IP, so a frame need only look addressed to the
/// device that receives it.
pub const CLUSTER_VXLAN_MAC: [u8; 6] = [0x02, 0x62, 0x70, 0x66, 0x6e, 0x01];
/// The source of every frame inside the tunnel: not the receiving device's own MAC,
/// which the VXLAN driver drops as a loop.
pub const CLUSTER_VXLAN_SRC_MAC: [u8; 6] = [0x02, 0x62, 0x70, 0x66, 0x6e, 0x02];

/// `ClusterRoute::kind`: reached by the host's routing table (a cluster CIDR whose
/// network routes each host's prefix, as a cloud VPC does), untranslated.
pub const CLUSTER_ROUTED: u32 = 0;
/// `ClusterRoute::node` of a `CLUSTER_ROUTED` prefix the host reaches by a route onto a
/// link, without a gateway: each of its sources is its own next hop.
pub const CLUSTER_ON_LINK: Be32 = Be32::from_raw(u32::MAX);
/// The UDP port of the cluster's VXLAN tunnel (IANA's), host order: the VXLAN device
/// listens on it, and the underlay's ingress admits datagrams to it only from nodes.
pub const CLUSTER_VXLAN_PORT: u16 = 4789;
/// `ClusterRoute::kind`: a node on the same L2 segment (host-gw): sent to its underlay
/// address.
pub const CLUSTER_HOST_GW: u32 = 1;
/// `ClusterRoute::kind`: a node behind a VXLAN tunnel: encapsulated to its underlay
/// address, the network's `vni` as key.
pub const CLUSTER_VXLAN: u32 = 2;
/// `ClusterRoute::kind`: a node's own underlay address (a /32): its host and what it
/// translates (a port it publishes for a container elsewhere) count as the cluster.
pub const CLUSTER_NODE: u32 = 3;

/// Key of `frags_v1`: an IPv4 datagram being fragmented, as seen at the hook.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, bytemuck::Pod, bytemuck::Zeroable)]
pub struct FragKey {
    /// Source and destination IPv4.
    pub src_ip: Be32,
    pub dst_ip: Be32,
    /// IP identification.
    pub id: Be16,
    pub proto: u8,
    pub _pad: u8,
}

impl FragKey {
    /// The key of datagram `id` of `proto` from `src_ip` to `dst_ip`, padding zeroed.
    #[inline(always)]
    pub const fn new(src_ip: Be32, dst_ip: Be32, id: Be16, proto: u8) -> Self {
        Self {
            src_ip,
            dst_ip,
            id,
            proto,
            _pad: 0,
        }
    }
}

/// Key of `frags6_v1`: an IPv6 datagram being fragmented (its fragment header's
/// identification).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, bytemuck::Pod, bytemuck::Zeroable)]
pub struct FragKey6 {
    pub src_ip: Ip6,
    pub dst_ip: Ip6,
    pub id: Be32,
    pub proto: u8,
    pub _pad: [u8; 3],
}

impl FragKey6 {
    /// As `FragKey::new`, for IPv6.
    #[inline(always)]
    pub const fn new(src_ip: Ip6, dst_ip: Ip6, id: Be32, proto: u8) -> Self {
        Self {
            src_ip,
            dst_ip,
            id,
            proto,
            _pad: [0; 3],
        }
    }
}

/// Value of `frags_v1` and `frags6_v1`: the ports its first fragment carried.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, bytemuck::Pod, bytemuck::Zeroable)]
pub struct FragPorts {
    pub src_port: Be16,
    pub dst_port: Be16,
}

/// Key of `sock_revnat_v1`: a host socket and the backend it was pointed at.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, bytemuck::Pod, bytemuck::Zeroable)]
pub struct SockKey {
    /// `bpf_get_socket_cookie`.
    pub cookie: u64,
    /// Backend IPv4 and port.
    pub ip: Be32,
    pub port: Be16,
    pub _pad: u16,
}

impl SockKey {
    /// Socket `cookie` pointed at `ip:port`, padding zeroed.
    #[inline(always)]
    pub const fn new(cookie: u64, ip: Be32, port: Be16) -> Self {
        Self {
            cookie,
            ip,
            port,
            _pad: 0,
        }
    }
}

/// Value of `sock_revnat_v1`: the address the socket dialed (IPv4 as `SockKey::ip`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, bytemuck::Pod, bytemuck::Zeroable)]
pub struct SockOrig {
    pub ip: Be32,
    pub port: Be16,
    pub _pad: u16,
}

impl SockOrig {
    /// The dialed `ip:port`, padding zeroed.
    #[inline(always)]
    pub const fn new(ip: Be32, port: Be16) -> Self {
        Self { ip, port, _pad: 0 }
    }
}

/// Key of `sock_revnat6_v1`: an IPv6 host socket and the backend it was pointed at
/// (an IPv4 backend as `::ffff:a.b.c.d`, for a dual-stack socket that dialed a
/// v4-mapped address).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, bytemuck::Pod, bytemuck::Zeroable)]
pub struct SockKey6 {
    /// `bpf_get_socket_cookie`.
    pub cookie: u64,
    /// Backend address and port.
    pub ip: Ip6,
    pub port: Be16,
    pub _pad: [u8; 6],
}

impl SockKey6 {
    /// As `SockKey::new`, for IPv6.
    #[inline(always)]
    pub const fn new(cookie: u64, ip: Ip6, port: Be16) -> Self {
        Self {
            cookie,
            ip,
            port,
            _pad: [0; 6],
        }
    }
}

/// Value of `sock_revnat6_v1`: the address the socket dialed.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, bytemuck::Pod, bytemuck::Zeroable)]
pub struct SockOrig6 {
    pub ip: Ip6,
    pub port: Be16,
    pub _pad: u16,
}

impl SockOrig6 {
    /// As `SockOrig::new`, for IPv6.
    #[inline(always)]
    pub const fn new(ip: Ip6, port: Be16) -> Self {
        Self { ip, port, _pad: 0 }
    }
}

// The pinned maps' layouts: a change here breaks an upgrade over pinned maps (a new
// layout takes a new map name, `crate::names`).
const _: () = {
    use core::mem::size_of;
    assert!(size_of::<Endpoint>() == 16);
    assert!(size_of::<Network>() == 8);
    assert!(size_of::<Port>() == 24);
    assert!(size_of::<Config>() == 16);
    assert!(size_of::<ClusterRoute>() == 16);
    assert!(size_of::<FragKey>() == 12);
    assert!(size_of::<FragKey6>() == 40);
    assert!(size_of::<FragPorts>() == 4);
    assert!(size_of::<SockKey>() == 16);
    assert!(size_of::<SockOrig>() == 8);
    assert!(size_of::<SockKey6>() == 32);
    assert!(size_of::<SockOrig6>() == 20);
};

crate::pod::pod_generic!(
    PublishedKey<u32> = 4 + 4,
    PublishedKey<Ip6> = 16 + 4,
    Backend<u32> = 4 + 4,
    Backend<Ip6> = 16 + 4,
);
crate::pod::aya_pod!(
    Endpoint,
    Network,
    Port,
    Config,
    FragKey,
    FragPorts,
    SockKey,
    SockOrig,
    ClusterRoute,
);
