//! The pinned maps (see DESIGN.md, "Maps"); names carry the layout version.
use aya_ebpf::{
    bindings::{bpf_fib_lookup, bpf_sock_tuple},
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, ProgramArray},
};
use common::{
    Backend, Clock, ClusterRoute, Config, Counter, CtKey, CtValue, Endpoint, FragKey, FragKey6,
    FragPorts, IcmpLimit, Ip6, Network, Port, PublishedKey, Reason, SockKey, SockKey6, SockOrig,
    SockOrig6,
};

use crate::packet::Packet;

#[map(name = "published_v1")]
pub(crate) static PUBLISHED: HashMap<PublishedKey, Backend> = HashMap::pinned(65_536, 0);

#[map(name = "published6_v1")]
pub(crate) static PUBLISHED6: HashMap<PublishedKey<Ip6>, Backend<Ip6>> = HashMap::pinned(65_536, 0);

/// Host IPv4 addresses (network order) → flags (unused, 0).
#[map(name = "host_ips_v1")]
pub(crate) static HOST_IPS: HashMap<u32, u32> = HashMap::pinned(1024, 0);

/// Host IPv6 addresses → flags (unused, 0).
#[map(name = "host_ips6_v1")]
pub(crate) static HOST_IPS6: HashMap<Ip6, u32> = HashMap::pinned(1024, 0);

/// Container IPv4 (network order) → endpoint.
#[map(name = "endpoints_v1")]
pub(crate) static ENDPOINTS: HashMap<u32, Endpoint> = HashMap::pinned(65_536, 0);

/// Container IPv6 → endpoint.
#[map(name = "endpoints6_v1")]
pub(crate) static ENDPOINTS6: HashMap<Ip6, Endpoint> = HashMap::pinned(65_536, 0);

/// Host-side veth ifindex → its bridge port.
#[map(name = "ports_v2")]
pub(crate) static PORTS: HashMap<u32, Port> = HashMap::pinned(65_536, 0);

/// ifindex → `IFACE_*` role bits.
#[map(name = "ifaces_v1")]
pub(crate) static IFACES: HashMap<u32, u32> = HashMap::pinned(4096, 0);

/// Answered flows, two entries each (see `ct`).
#[map(name = "ct_v3")]
pub(crate) static CT: LruHashMap<CtKey, CtValue> =
    LruHashMap::pinned(common::CT_DEFAULT_ENTRIES, 0);

/// Flows not answered yet: a flood of them evicts only its own kind.
#[map(name = "ct_new_v2")]
pub(crate) static CT_NEW: LruHashMap<CtKey, CtValue> =
    LruHashMap::pinned(common::CT_DEFAULT_ENTRIES / common::CT_NEW_SHARE, 0);

/// IPv6 flows, as `ct_v3` and `ct_new_v2`.
#[map(name = "ct6_v1")]
pub(crate) static CT6: LruHashMap<CtKey<Ip6>, CtValue<Ip6>> =
    LruHashMap::pinned(common::CT_DEFAULT_ENTRIES, 0);

#[map(name = "ct6_new_v1")]
pub(crate) static CT6_NEW: LruHashMap<CtKey<Ip6>, CtValue<Ip6>> =
    LruHashMap::pinned(common::CT_DEFAULT_ENTRIES / common::CT_NEW_SHARE, 0);

/// What each container holds, by its address (network order): its masqueraded flows
/// (the SNAT quota, `snat_use_v2`) and the flows it originated (its share of the flow
/// tables, `ct_use_v1`). Counted here, recounted by the daemon's sweeper. Plain hashes
/// sized as `endpoints_v1`: no count is lost to another key's eviction.
#[map(name = "snat_use_v2")]
pub(crate) static SNAT_USE: HashMap<u32, u64> = HashMap::pinned(65_536, 0);

#[map(name = "snat6_use_v2")]
pub(crate) static SNAT6_USE: HashMap<Ip6, u64> = HashMap::pinned(65_536, 0);

#[map(name = "ct_use_v1")]
pub(crate) static CT_USE: HashMap<u32, u64> = HashMap::pinned(65_536, 0);

#[map(name = "ct6_use_v1")]
pub(crate) static CT6_USE: HashMap<Ip6, u64> = HashMap::pinned(65_536, 0);

/// `--ct-per-endpoint`: the flows one container may originate (0: no limit), written by
/// the daemon.
#[map(name = "ct_share_v1")]
pub(crate) static CT_SHARE: Array<u32> = Array::pinned(1, 0);

/// UDP datagrams host sockets sent, keyed as their answers arrive: remote address and
/// port as source, 0 as destination address, the local port as destination port →
/// unused. An unconnected host socket's answers are its own, not a publish's.
#[map(name = "host_udp_v1")]
pub(crate) static HOST_UDP: LruHashMap<CtKey, u8> = LruHashMap::pinned(16_384, 0);

/// `host_udp_v1` for IPv6 host sockets (sendmsg6).
#[map(name = "host_udp6_v1")]
pub(crate) static HOST_UDP6: LruHashMap<CtKey<Ip6>, u8> = LruHashMap::pinned(16_384, 0);

/// Managed networks' IPv4 subnets (network order) → the network.
#[map(name = "subnets_v1")]
pub(crate) static SUBNETS: LpmTrie<u32, Network> = LpmTrie::pinned(1024, 0);

/// The cluster's container prefixes and node addresses (IPv4, network order) → where
/// they are (see `cluster`).
#[map(name = "cluster_v1")]
pub(crate) static CLUSTER: LpmTrie<u32, ClusterRoute> = LpmTrie::pinned(16_384, 0);

/// The cluster's IPv6 container prefixes (dual stack) → where they are: the node's
/// IPv4 underlay address, as in `cluster_v1` (no node entries: nodes are IPv4).
#[map(name = "cluster6_v1")]
pub(crate) static CLUSTER6: LpmTrie<Ip6, ClusterRoute> = LpmTrie::pinned(16_384, 0);

/// Managed networks' IPv6 subnets → the network.
#[map(name = "subnets6_v1")]
pub(crate) static SUBNETS6: LpmTrie<Ip6, Network> = LpmTrie::pinned(1024, 0);

/// First-fragment ports of translated datagrams, for their later fragments.
#[map(name = "frags_v1")]
pub(crate) static FRAGS: LruHashMap<FragKey, FragPorts> = LruHashMap::pinned(8192, 0);

/// First-fragment ports of translated IPv6 datagrams.
#[map(name = "frags6_v1")]
pub(crate) static FRAGS6: LruHashMap<FragKey6, FragPorts> = LruHashMap::pinned(8192, 0);

/// Host sockets pointed at a backend by the socket programs → the address they dialed.
#[map(name = "sock_revnat_v1")]
pub(crate) static SOCK_REVNAT: LruHashMap<SockKey, SockOrig> = LruHashMap::pinned(65_536, 0);

/// The IPv6 programs, tail-called by the IPv4 ones for an IPv6 frame (`JUMP_*`), so
/// each family's path has the whole stack to itself. Pinned: a program array empties
/// when the last user-space reference goes, and the datapath outlives the daemon.
#[map(name = "jump_v1")]
pub(crate) static JUMP: ProgramArray = ProgramArray::pinned(JUMP_SLOTS, 0);
pub(crate) const JUMP_SLOTS: u32 = 4;

/// IPv6 host sockets pointed at a backend → the address they dialed.
#[map(name = "sock_revnat6_v1")]
pub(crate) static SOCK_REVNAT6: LruHashMap<SockKey6, SockOrig6> = LruHashMap::pinned(65_536, 0);

#[map(name = "config_v1")]
pub(crate) static CONFIG: Array<Config> = Array::pinned(1, 0);

/// The route generation: bumped (by the daemon, or here when an endpoint is learned)
/// whenever a route, neighbour, link, address or endpoint changes, so every next hop a
/// flow remembers from before is looked up again.
#[map(name = "route_gen_v1")]
pub(crate) static ROUTE_GEN: Array<u32> = Array::pinned(1, 0);

/// `--xdp`'s new-flow budget: first packets to published ports each CPU lets through per
/// second (0: no limit), written by the daemon from the new-flow table's size.
#[map(name = "flood_budget_v1")]
pub(crate) static FLOOD_BUDGET: Array<u32> = Array::pinned(1, 0);

/// The ICMP error rate limit (see `ratelimit`), written by the daemon from the sysctls.
#[map(name = "icmp_limit_v1")]
pub(crate) static ICMP_LIMIT: Array<IcmpLimit> = Array::pinned(1, 0);

#[map(name = "stats_v1")]
pub(crate) static STATS: PerCpuArray<Counter> = PerCpuArray::pinned(Reason::COUNT, 0);

/// Per-CPU working memory for values too big for the programs' 512-byte stack: each
/// family's packet and flow being created, a route lookup's parameters, a socket tuple.
/// Each field has one user at a time (a program runs to completion on its CPU).
#[repr(C)]
pub(crate) struct Scratch {
    pub v4: Work<u32>,
    pub v6: Work<Ip6>,
    pub fib: bpf_fib_lookup,
    pub tuple: bpf_sock_tuple,
}

/// One family's working memory (`Family::work`).
#[repr(C)]
pub(crate) struct Work<A> {
    /// The packet the program is handling (see `parse`).
    pub pkt: Packet<A>,
    /// The two CT entries of a flow being created.
    pub fwd: CtValue<A>,
    pub rev: CtValue<A>,
    /// The SNAT port search: the flow's original tuple and the candidate.
    pub key: CtKey<A>,
    pub to: CtKey<A>,
    /// The candidate's reply tuple, and the forward tuple of a flow whose tuple it may
    /// take over.
    pub rk: CtKey<A>,
    pub fk: CtKey<A>,
    /// The tuple a container's packet leaves with (`container::out`).
    pub out: CtKey<A>,
    /// The tuples of the flow `ct::create` is creating.
    pub ck: CtKey<A>,
    pub crk: CtKey<A>,
}

/// Jiffies to monotonic time (`common::clock`), written by the daemon once it has
/// measured the tick; not pinned, each daemon measures its own.
#[map(name = "clock")]
pub(crate) static CLOCK: Array<Clock> = Array::with_max_entries(1, 0);

#[map(name = "scratch")]
static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// This CPU's scratch space.
#[inline(always)]
pub(crate) fn scratch() -> Option<&'static mut Scratch> {
    // SAFETY: a per-CPU slot, used by one program at a time on this CPU; the reference
    // does not outlive the program's run.
    SCRATCH.get_ptr_mut(0).map(|s| unsafe { &mut *s })
}

/// `scratch`, or `reason`: the one way a path that must drop without its scratch space
/// asks for it. The lookup of slot 0 of a per-CPU array fails only for the verifier's
/// sake (the parser asks first in every program); the failure is counted as the reason
/// of the operation that needed the space, which the caller names: `DropMalformed` for
/// the parsers and the container path, `DropCtInsert` for a new flow's entries,
/// `DropSnatPorts` for the port search. One reason for all cost `from_uplink` about 6%
/// more verified instructions when tried (issue 31, round one), so each caller keeps its
/// own; this helper costs nothing. Paths that do not drop on it answer their own "no":
/// the route lookup (`fib::route`, whose parameter block the space is) finds no route, a
/// socket or cluster check answers false.
#[inline(always)]
pub(crate) fn scratch_or(reason: Reason) -> Result<&'static mut Scratch, Reason> {
    scratch().ok_or(reason)
}

/// One field per map key and value type. bpf-linker's BTF holds only the types a global or
/// a function signature reaches, and the maps' `PhantomData` reaches none of them; the
/// loader's layout test reads them from here (`layouts_match_the_datapath`).
#[repr(C)]
pub(crate) struct MapTypes {
    pub published_key: PublishedKey,
    pub backend: Backend,
    pub published_key6: PublishedKey<Ip6>,
    pub backend6: Backend<Ip6>,
    pub ct_key6: CtKey<Ip6>,
    pub ct_value6: CtValue<Ip6>,
    pub endpoint: Endpoint,
    pub ip6: Ip6,
    pub port: Port,
    pub ct_key: CtKey,
    pub ct_value: CtValue,
    pub frag_key: FragKey,
    pub frag_key6: FragKey6,
    pub frag_ports: FragPorts,
    pub sock_key: SockKey,
    pub sock_orig: SockOrig,
    pub sock_key6: SockKey6,
    pub sock_orig6: SockOrig6,
    pub config: Config,
    pub icmp_limit: IcmpLimit,
    pub rate_bucket: common::RateBucket,
    pub counter: Counter,
    pub network: Network,
    pub cluster_route: ClusterRoute,
    pub ct_timeouts: common::CtTimeouts,
    pub sweep: common::SweepStats,
    pub clock: Clock,
    pub drop_key: common::DropKey,
    pub monitor_config: common::MonitorConfig,
    pub monitor_state: common::MonitorState,
    pub monitor_window: common::MonitorWindow,
    pub event: common::Event,
}

/// Never called, so never loaded: exported only so that `MapTypes` reaches the BTF.
#[unsafe(no_mangle)]
pub(crate) extern "C" fn bpfnet_map_types(_: &MapTypes) {}

// Accessors: each lookup copies the value out, so no reference into a map outlives the
// call (values may change under us; a copy is what a verdict should be based on).

/// The endpoint that owns container address `ip` (network order).
#[inline(always)]
pub(crate) fn endpoint(ip: u32) -> Option<Endpoint> {
    // SAFETY: plain lookup of a Pod value, copied out.
    unsafe { ENDPOINTS.get(ip) }.copied()
}

/// The endpoint that owns container address `ip`.
#[inline(always)]
pub(crate) fn endpoint6(ip: &Ip6) -> Option<Endpoint> {
    // SAFETY: plain lookup of a Pod value, copied out.
    unsafe { ENDPOINTS6.get(ip) }.copied()
}

/// The managed network whose IPv6 subnet holds `ip`.
#[inline(always)]
pub(crate) fn network6_of(ip: &Ip6) -> Option<Network> {
    SUBNETS6
        .get(aya_ebpf::maps::lpm_trie::Key::new(128, *ip))
        .copied()
}

/// The managed network whose subnet holds `ip` (network order).
#[inline(always)]
pub(crate) fn network_of(ip: u32) -> Option<Network> {
    SUBNETS
        .get(aya_ebpf::maps::lpm_trie::Key::new(32, ip))
        .copied()
}

/// The cluster prefix that holds `ip` (network order).
#[inline(always)]
pub(crate) fn cluster_of(ip: u32) -> Option<ClusterRoute> {
    CLUSTER
        .get(aya_ebpf::maps::lpm_trie::Key::new(32, ip))
        .copied()
}

/// The cluster IPv6 prefix that holds `ip`.
#[inline(always)]
pub(crate) fn cluster6_of(ip: &Ip6) -> Option<ClusterRoute> {
    CLUSTER6
        .get(aya_ebpf::maps::lpm_trie::Key::new(128, *ip))
        .copied()
}

/// The bridge port a container veth (`ifindex`) is.
#[inline(always)]
pub(crate) fn port(ifindex: u32) -> Option<Port> {
    // SAFETY: plain lookup of a Pod value, copied out.
    unsafe { PORTS.get(ifindex) }.copied()
}

/// The current route generation.
#[inline(always)]
pub(crate) fn route_gen() -> u32 {
    ROUTE_GEN.get(0).copied().unwrap_or(0)
}

/// Make every remembered next hop stale.
#[inline(always)]
pub(crate) fn bump_route_gen() {
    if let Some(g) = ROUTE_GEN.get_ptr_mut(0) {
        // SAFETY: a valid map value pointer. Two CPUs bumping at once may count as one
        // bump (the target has no atomics in core), which still changes the generation.
        unsafe { *g = (*g).wrapping_add(1) };
    }
}

/// The daemon's settings (defaults until it has written them).
#[inline(always)]
pub(crate) fn config() -> Config {
    CONFIG.get(0).copied().unwrap_or_default()
}

/// Whether `ip` (network order) is one of the host's addresses.
#[inline(always)]
pub(crate) fn is_host(ip: u32) -> bool {
    HOST_IPS.get_ptr(ip).is_some()
}

/// Whether `ip` is one of the host's IPv6 addresses.
#[inline(always)]
pub(crate) fn is_host6(ip: &Ip6) -> bool {
    HOST_IPS6.get_ptr(ip).is_some()
}

/// The `IFACE_*` roles of interface `ifindex` (0: not managed).
#[inline(always)]
pub(crate) fn iface_role(ifindex: u32) -> u32 {
    // SAFETY: plain lookup of a u32, copied out.
    unsafe { IFACES.get(ifindex) }.copied().unwrap_or(0)
}
