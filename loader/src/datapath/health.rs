//! What `bpfnet status` and the metrics read of the datapath: each program's run time
//! and count, and how full the maps are.
use std::time::Duration;

use aya::{
    Pod,
    maps::{HashMap, IterableMap as _, MapData},
};
use common::{SWEPT_TABLES, names};

use super::{Datapath, Hook, IPV6_PROGRAMS, Maps, XDP_PROGRAM, XdpMode, batch};

/// How full one pinned map is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fill {
    /// Its pinned name (`ct_v3`, `snat_use_v2`…).
    pub name: &'static str,
    pub entries: u64,
    /// The kernel's `max_entries` (0 when the kernel would not say).
    pub max_entries: u32,
}

/// The programs whose run time is worth reading: those on the packet path.
fn packet_programs() -> impl Iterator<Item = &'static str> {
    Hook::ALL
        .into_iter()
        .map(Hook::program)
        .chain(IPV6_PROGRAMS.into_iter().map(|(name, _)| name))
        .chain([XDP_PROGRAM])
}

impl Datapath {
    /// Each packet program's total run time and run count, as the kernel counts them
    /// while `kernel.bpf_stats_enabled` is 1 (zeros otherwise); a program the kernel
    /// will not describe is left out.
    pub fn program_stats(&self) -> Vec<(&'static str, Duration, u64)> {
        packet_programs()
            .filter_map(|name| {
                let info = self.ebpf.program(name)?.info().ok()?;
                Some((name, info.run_time(), info.run_count()))
            })
            .collect()
    }

    /// `--xdp`'s mode, when it is on.
    pub fn xdp_mode(&self) -> Option<XdpMode> {
        self.xdp
    }

    /// The four flow tables' sizes, in `SWEPT_TABLES` order.
    pub fn ct_capacity(&self) -> [u32; 4] {
        let m = &self.maps;
        [
            capacity(m.ct.map()),
            capacity(m.ct_new.map()),
            capacity(m.ct6.map()),
            capacity(m.ct6_new.map()),
        ]
    }

    /// The four flow tables' entries, counted now by reading them whole: a walk of
    /// every entry, which the sweep's count (`SweepStats::left`) spares.
    pub fn ct_count_now(&self) -> [u64; 4] {
        let m = &self.maps;
        [
            count(&m.ct),
            count(&m.ct_new),
            count(&m.ct6),
            count(&m.ct6_new),
        ]
    }

    /// The four flow tables' fill, from `entries` (in `SWEPT_TABLES` order).
    pub fn ct_fill(&self, entries: [u64; 4]) -> [Fill; 4] {
        let cap = self.ct_capacity();
        std::array::from_fn(|i| Fill {
            name: SWEPT_TABLES[i],
            entries: entries[i],
            max_entries: cap[i],
        })
    }
}

impl Maps {
    /// The fill of the maps other than the flow tables: per-container counts, endpoints,
    /// published ports and drops by interface, each at most tens of thousands of
    /// entries, counted now.
    pub fn fill(&self) -> Vec<Fill> {
        vec![
            fill(names::SNAT_USE, &self.snat_use),
            fill(names::SNAT6_USE, &self.snat6_use),
            fill(names::CT_USE, &self.ct_use),
            fill(names::CT6_USE, &self.ct6_use),
            fill(names::ENDPOINTS, &self.endpoints),
            fill(names::ENDPOINTS6, &self.endpoints6),
            fill(names::PUBLISHED, &self.published),
            fill(names::PUBLISHED6, &self.published6),
            Fill {
                name: names::DROPS,
                entries: self.drops.keys().flatten().count() as u64,
                max_entries: capacity(self.drops.map()),
            },
        ]
    }

    /// The SNAT flows the quota counts hold, both families: the masqueraded flows, each
    /// holding a source port.
    pub fn snat_flows(&self) -> u64 {
        let v4 = batch::entries_or_each(&self.snat_use);
        let v6 = batch::entries_or_each(&self.snat6_use);
        v4.iter()
            .map(|(_, n)| n)
            .chain(v6.iter().map(|(_, n)| n))
            .sum()
    }
}

fn capacity(map: &MapData) -> u32 {
    map.info().map_or(0, |i| i.max_entries())
}

fn count<K: Pod, V: Pod>(map: &HashMap<MapData, K, V>) -> u64 {
    batch::entries_or_each(map).len() as u64
}

fn fill<K: Pod, V: Pod>(name: &'static str, map: &HashMap<MapData, K, V>) -> Fill {
    Fill {
        name,
        entries: count(map),
        max_entries: capacity(map.map()),
    }
}
