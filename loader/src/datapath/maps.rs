//! Typed handles on the pinned maps.
use aya::{
    Ebpf,
    maps::{Array, HashMap, LpmTrie, Map, MapData, PerCpuArray, PerCpuHashMap, lpm_trie::Key},
};
use common::{
    Backend, Be32, ClusterRoute, Config, Counter, CtKey, CtValue, DropKey, Endpoint, IcmpLimit,
    Ip6, NET_EDGE, Network, Port, PublishedKey, Reason, names,
};

use super::DatapathError;

pub struct Maps {
    pub published: HashMap<MapData, PublishedKey, Backend>,
    /// IPv6 published ports.
    pub published6: HashMap<MapData, PublishedKey<Ip6>, Backend<Ip6>>,
    /// Host IPv4 → flags.
    pub host_ips: HashMap<MapData, Be32, u32>,
    /// Host IPv6 → flags.
    pub host_ips6: HashMap<MapData, Ip6, u32>,
    /// Container IPv4 → endpoint.
    pub endpoints: HashMap<MapData, Be32, Endpoint>,
    /// Container IPv6 → endpoint.
    pub endpoints6: HashMap<MapData, Ip6, Endpoint>,
    /// Answered flows.
    pub ct: HashMap<MapData, CtKey, CtValue>,
    /// Flows not answered yet.
    pub ct_new: HashMap<MapData, CtKey, CtValue>,
    /// A container's masqueraded flows (the SNAT quota), by its IPv4.
    pub snat_use: HashMap<MapData, Be32, u64>,
    /// The flows a container originated (its share of the flow tables), by its IPv4.
    pub ct_use: HashMap<MapData, Be32, u64>,
    /// IPv6 flows, answered and not yet, and the IPv6 containers' counts.
    pub ct6: HashMap<MapData, CtKey<Ip6>, CtValue<Ip6>>,
    pub ct6_new: HashMap<MapData, CtKey<Ip6>, CtValue<Ip6>>,
    pub snat6_use: HashMap<MapData, Ip6, u64>,
    pub ct6_use: HashMap<MapData, Ip6, u64>,
    /// `--ct-per-endpoint`: the flows one container may originate (0: no limit).
    pub ct_share: Array<MapData, u32>,
    /// Managed networks' subnets (IPv4) → the network.
    pub subnets: LpmTrie<MapData, Be32, Network>,
    /// Managed networks' IPv6 subnets → the network.
    pub subnets6: LpmTrie<MapData, Ip6, Network>,
    /// The cluster's prefixes and node addresses (IPv4) → where they are.
    pub cluster: LpmTrie<MapData, Be32, ClusterRoute>,
    /// The cluster's IPv6 prefixes → where they are (their node's IPv4 underlay).
    pub cluster6: LpmTrie<MapData, Ip6, ClusterRoute>,
    pub stats: PerCpuArray<MapData, Counter>,
    /// Drops by interface and reason.
    pub drops: PerCpuHashMap<MapData, DropKey, Counter>,
    pub config: Array<MapData, Config>,
    /// ifindex → `IFACE_*` role bits.
    pub ifaces: HashMap<MapData, u32, u32>,
    /// Container veth ifindex → its bridge port.
    pub ports: HashMap<MapData, u32, Port>,
    /// The route generation flows' remembered next hops are checked against.
    pub route_gen: Array<MapData, u32>,
    /// `--xdp`'s new-flow budget per CPU per second (0: none).
    pub flood_budget: Array<MapData, u32>,
    /// The rate limit on the ICMP errors the datapath answers itself.
    pub icmp_limit: Array<MapData, IcmpLimit>,
}

pub(super) fn take<T: TryFrom<Map, Error = aya::maps::MapError>>(
    ebpf: &mut Ebpf,
    name: &'static str,
) -> Result<T, DatapathError> {
    let map = ebpf
        .take_map(name)
        .ok_or(DatapathError::MissingMap { name })?;
    T::try_from(map).map_err(|e| DatapathError::Map {
        name,
        source: Box::new(e),
    })
}

impl Maps {
    pub(super) fn take(ebpf: &mut Ebpf) -> Result<Self, DatapathError> {
        Ok(Self {
            published: take(ebpf, names::PUBLISHED)?,
            published6: take(ebpf, names::PUBLISHED6)?,
            host_ips: take(ebpf, names::HOST_IPS)?,
            host_ips6: take(ebpf, names::HOST_IPS6)?,
            endpoints: take(ebpf, names::ENDPOINTS)?,
            endpoints6: take(ebpf, names::ENDPOINTS6)?,
            ct: take(ebpf, names::CT)?,
            ct_new: take(ebpf, names::CT_NEW)?,
            subnets: take(ebpf, names::SUBNETS)?,
            subnets6: take(ebpf, names::SUBNETS6)?,
            cluster: take(ebpf, names::CLUSTER)?,
            cluster6: take(ebpf, names::CLUSTER6)?,
            snat_use: take(ebpf, names::SNAT_USE)?,
            ct_use: take(ebpf, names::CT_USE)?,
            ct6: take(ebpf, names::CT6)?,
            ct6_new: take(ebpf, names::CT6_NEW)?,
            snat6_use: take(ebpf, names::SNAT6_USE)?,
            ct6_use: take(ebpf, names::CT6_USE)?,
            ct_share: take(ebpf, names::CT_SHARE)?,
            stats: take(ebpf, names::STATS)?,
            drops: take(ebpf, names::DROPS)?,
            config: take(ebpf, names::CONFIG)?,
            ifaces: take(ebpf, names::IFACES)?,
            ports: take(ebpf, names::PORTS)?,
            route_gen: take(ebpf, names::ROUTE_GEN)?,
            flood_budget: take(ebpf, names::FLOOD_BUDGET)?,
            icmp_limit: take(ebpf, names::ICMP_LIMIT)?,
        })
    }

    /// Make every next hop a flow remembers stale: routes, neighbours, links, addresses
    /// or endpoints changed. A failure is returned for the caller to report.
    pub fn bump_route_gen(&mut self) -> Result<(), aya::maps::MapError> {
        let generation = self.route_gen.get(&0, 0)?;
        self.route_gen.set(0, generation.wrapping_add(1), 0)
    }

    /// Whether a container may have IPv4 `ip`: not one of the host's
    /// addresses, nor a subnet's network or broadcast address (`NET_EDGE`).
    pub fn claimable(&self, ip: Be32) -> bool {
        self.host_ips.get(&ip, 0).is_err()
            && self
                .subnets
                .get(&Key::new(32, ip), 0)
                .map_or(true, |n| n.flags & NET_EDGE == 0)
    }

    /// Whether a container may have IPv6 `ip`: as `claimable`.
    pub fn claimable6(&self, ip: Ip6) -> bool {
        self.host_ips6.get(&ip, 0).is_err()
            && self
                .subnets6
                .get(&Key::new(128, ip), 0)
                .map_or(true, |n| n.flags & NET_EDGE == 0)
    }

    /// Counter totals over all CPUs, one per reason.
    pub fn stats(&self) -> Vec<(Reason, Counter)> {
        Reason::ALL
            .iter()
            .map(|&r| {
                let total = self
                    .stats
                    .get(&(r as u32), 0)
                    .map_or(Counter::default(), |per_cpu| sum(&per_cpu));
                (r, total)
            })
            .collect()
    }

    /// Drops by interface (ifindex) and reason, totals over all CPUs, in key order.
    pub fn drops(&self) -> Vec<(u32, Reason, Counter)> {
        let mut drops: Vec<_> = self
            .drops
            .iter()
            .filter_map(Result::ok)
            .filter_map(|(k, per_cpu)| {
                let reason = *Reason::ALL.get(k.reason as usize)?;
                Some((k.ifindex, reason, sum(&per_cpu)))
            })
            .collect();
        drops.sort_by_key(|&(i, r, _)| (i, r as u32));
        drops
    }
}

/// One counter's total over all CPUs.
fn sum(per_cpu: &[Counter]) -> Counter {
    per_cpu.iter().fold(Counter::default(), |acc, c| Counter {
        packets: acc.packets + c.packets,
        bytes: acc.bytes + c.bytes,
    })
}
