//! The CT tables seen from the daemon: each family's tables, listing and flushing (the
//! sweeper is `sweeper.rs`).
use aya::{
    Pod,
    maps::{HashMap as BpfHashMap, MapData, MapError},
};
use common::{Addr, Be32, CtKey, CtValue, Ip6};

/// `BPF_NOEXIST`: create, never replace.
const NOEXIST: u64 = 1;

use crate::{
    conntrack::{self, FlowInfo, Timeouts, monotonic_ns},
    datapath::{Maps, batch},
};

/// One family's CT table.
type CtMap<A> = BpfHashMap<MapData, CtKey<A>, CtValue<A>>;

/// An address family's two CT tables (answered flows, flows not answered yet) and its
/// containers' counts: `ct_v3`, `ct_new_v2`, `snat_use_v2`, `ct_use_v1` for `Be32`;
/// `ct6_v1`, `ct6_new_v1`, `snat6_use_v2`, `ct6_use_v1` for `Ip6`.
pub(super) trait CtFamily: Addr {
    /// Every entry of both tables.
    fn read_ct(maps: &Maps) -> Vec<(CtKey<Self>, CtValue<Self>)>;
    /// `key`'s entry, and whether the main table holds it (else the new-flow table).
    fn get_ct(maps: &Maps, key: &CtKey<Self>) -> Option<(CtValue<Self>, bool)>;
    /// Create `key` in the main table or the new-flow table, never replacing an entry;
    /// whether it was created.
    fn create_ct(maps: &mut Maps, main: bool, key: &CtKey<Self>, v: &CtValue<Self>) -> bool;
    /// Remove `key` from whichever table holds it; whether one did.
    fn remove_ct(maps: &mut Maps, key: &CtKey<Self>) -> bool;
    /// The containers with a count of `what`.
    fn use_keys(maps: &Maps, what: Use) -> Vec<Self>;
    /// Set (`Some`) or clear a container's count of `what`.
    fn set_use(maps: &mut Maps, what: Use, ip: &Self, n: Option<u64>) -> Result<(), MapError>;
}

/// A container's counts: its masqueraded flows (the SNAT quota), the flows it originated
/// (its share of the flow tables).
#[derive(Clone, Copy, Debug)]
pub(super) enum Use {
    Snat,
    Flows,
}

macro_rules! ct_family {
    ($addr:ty, $main:ident, $new:ident, $snat_use:ident, $ct_use:ident) => {
        impl CtFamily for $addr {
            fn read_ct(maps: &Maps) -> Vec<(CtKey<Self>, CtValue<Self>)> {
                read_both(&maps.$main, &maps.$new)
            }

            fn get_ct(maps: &Maps, key: &CtKey<Self>) -> Option<(CtValue<Self>, bool)> {
                match maps.$main.get(key, 0) {
                    Ok(v) => Some((v, true)),
                    Err(_) => maps.$new.get(key, 0).ok().map(|v| (v, false)),
                }
            }

            fn create_ct(
                maps: &mut Maps,
                main: bool,
                key: &CtKey<Self>,
                v: &CtValue<Self>,
            ) -> bool {
                let table = if main {
                    &mut maps.$main
                } else {
                    &mut maps.$new
                };
                table.insert(key, v, NOEXIST).is_ok()
            }

            fn remove_ct(maps: &mut Maps, key: &CtKey<Self>) -> bool {
                maps.$main.remove(key).is_ok() || maps.$new.remove(key).is_ok()
            }

            fn use_keys(maps: &Maps, what: Use) -> Vec<Self> {
                let map = match what {
                    Use::Snat => &maps.$snat_use,
                    Use::Flows => &maps.$ct_use,
                };
                map.keys().filter_map(Result::ok).collect()
            }

            fn set_use(
                maps: &mut Maps,
                what: Use,
                ip: &Self,
                n: Option<u64>,
            ) -> Result<(), MapError> {
                let map = match what {
                    Use::Snat => &mut maps.$snat_use,
                    Use::Flows => &mut maps.$ct_use,
                };
                match n {
                    Some(n) => map.insert(ip, n, 0),
                    None => map.remove(ip),
                }
            }
        }
    };
}

ct_family!(Be32, ct, ct_new, snat_use, ct_use);
ct_family!(Ip6, ct6, ct6_new, snat6_use, ct6_use);

/// Every entry of a family's two tables, read in batches; one by one where the kernel
/// refuses batches.
fn read_both<A>(main: &CtMap<A>, new: &CtMap<A>) -> Vec<(CtKey<A>, CtValue<A>)>
where
    CtKey<A>: Pod,
    CtValue<A>: Pod,
{
    let mut out = batch::entries_or_each(main);
    out.extend(batch::entries_or_each(new));
    out
}

/// Remove `keys` from whichever of family `A`'s tables holds them; returns how many
/// went.
pub(super) fn remove_ct<A: CtFamily>(maps: &mut Maps, keys: &[CtKey<A>]) -> usize {
    keys.iter().filter(|k| A::remove_ct(maps, k)).count()
}

/// Entries in the tables of both families.
pub(super) fn count(maps: &Maps) -> u64 {
    (Be32::read_ct(maps).len() + Ip6::read_ct(maps).len()) as u64
}

/// Every flow of both families, IPv4 first, each in tuple order.
pub(super) fn list(maps: &Maps, timeouts: &Timeouts) -> Vec<FlowInfo> {
    let now = monotonic_ns();
    let v4 = conntrack::flows(Be32::read_ct(maps));
    let v6 = conntrack::flows(Ip6::read_ct(maps));
    v4.iter()
        .map(|f| FlowInfo::new(f, now, timeouts))
        .chain(v6.iter().map(|f| FlowInfo::new(f, now, timeouts)))
        .collect()
}

/// Remove every tracked flow of both families; returns how many entries went.
pub(super) fn flush(maps: &mut Maps) -> usize {
    let keys: Vec<CtKey> = Be32::read_ct(maps).into_iter().map(|(k, _)| k).collect();
    let keys6: Vec<CtKey<Ip6>> = Ip6::read_ct(maps).into_iter().map(|(k, _)| k).collect();
    remove_ct(maps, &keys) + remove_ct(maps, &keys6)
}
