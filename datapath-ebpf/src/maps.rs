//! The pinned maps (see DESIGN.md, "Maps"); names carry the layout version.
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray},
};
use common::{
    Backend, Config, Counter, CtKey, CtValue, Endpoint, FragKey, FragPorts, Port, PublishedKey,
    Reason, SockKey, SockOrig,
};

#[map(name = "published_v1")]
pub static PUBLISHED: HashMap<PublishedKey, Backend> = HashMap::pinned(65_536, 0);

/// Host IPv4 addresses (network order) → flags (unused, 0).
#[map(name = "host_ips_v1")]
pub static HOST_IPS: HashMap<u32, u32> = HashMap::pinned(1024, 0);

/// Container IPv4 (network order) → endpoint.
#[map(name = "endpoints_v1")]
pub static ENDPOINTS: HashMap<u32, Endpoint> = HashMap::pinned(65_536, 0);

/// Host-side veth ifindex → its bridge port.
#[map(name = "ports_v1")]
pub static PORTS: HashMap<u32, Port> = HashMap::pinned(65_536, 0);

/// ifindex → `IFACE_*` role bits.
#[map(name = "ifaces_v1")]
pub static IFACES: HashMap<u32, u32> = HashMap::pinned(4096, 0);

#[map(name = "ct_v1")]
pub static CT: LruHashMap<CtKey, CtValue> = LruHashMap::pinned(common::CT_DEFAULT_ENTRIES, 0);

/// First-fragment ports of translated datagrams, for their later fragments.
#[map(name = "frags_v1")]
pub static FRAGS: LruHashMap<FragKey, FragPorts> = LruHashMap::pinned(8192, 0);

/// Host sockets pointed at a backend by the socket programs → the address they dialed.
#[map(name = "sock_revnat_v1")]
pub static SOCK_REVNAT: LruHashMap<SockKey, SockOrig> = LruHashMap::pinned(65_536, 0);

#[map(name = "config_v1")]
pub static CONFIG: Array<Config> = Array::pinned(1, 0);

#[map(name = "stats_v1")]
pub static STATS: PerCpuArray<Counter> = PerCpuArray::pinned(Reason::COUNT, 0);
