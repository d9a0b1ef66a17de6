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

/// One field per map key and value type. bpf-linker's BTF holds only the types a global or
/// a function signature reaches, and the maps' `PhantomData` reaches none of them; the
/// loader's layout test reads them from here (`layouts_match_the_datapath`).
#[repr(C)]
pub struct MapTypes {
    pub published_key: PublishedKey,
    pub backend: Backend,
    pub endpoint: Endpoint,
    pub port: Port,
    pub ct_key: CtKey,
    pub ct_value: CtValue,
    pub frag_key: FragKey,
    pub frag_ports: FragPorts,
    pub sock_key: SockKey,
    pub sock_orig: SockOrig,
    pub config: Config,
    pub counter: Counter,
}

/// Never called, so never loaded: exported only so that `MapTypes` reaches the BTF.
#[unsafe(no_mangle)]
pub extern "C" fn bpfnet_map_types(_: &MapTypes) {}
