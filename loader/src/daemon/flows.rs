//! The CT tables seen from the daemon: listing, flushing, and the sweeper that removes
//! flows idle past their timeout.
use std::collections::{BTreeMap, BTreeSet};

use common::{CT_DNAT, CT_REPLY, CT_SNAT, CtKey, CtValue, PROTO_TCP, TcpState, ct::TCP_FIN_FIRST};

/// `BPF_NOEXIST`: create, never replace.
const NOEXIST: u64 = 1;
use tracing::{debug, warn};

use super::Daemon;
use crate::{
    conntrack::{self, Flow, FlowInfo, monotonic_ns},
    datapath::batch,
};

impl Daemon {
    /// Every entry of both tables (answered flows and flows not answered yet), read in
    /// batches; one by one where the kernel refuses batches.
    pub(super) fn entries(&self) -> Vec<(CtKey, CtValue)> {
        let maps = &self.dp.maps;
        let mut out = Vec::new();
        for map in [&maps.ct, &maps.ct_new] {
            match batch::entries(map) {
                Ok(entries) => out.extend(entries),
                Err(e) => {
                    debug!(error = %e, "batch lookup refused; reading entry by entry");
                    out.extend(map.iter().filter_map(Result::ok));
                }
            }
        }
        out
    }

    fn flows(&self) -> Vec<Flow> {
        conntrack::flows(self.entries())
    }

    /// Entries in both tables.
    pub(super) fn ct_entries(&self) -> u64 {
        self.entries().len() as u64
    }

    pub(super) fn conntrack(&self) -> Vec<FlowInfo> {
        let now = monotonic_ns();
        self.flows()
            .iter()
            .map(|f| FlowInfo::new(f, now, &self.timeouts))
            .collect()
    }

    /// Remove every tracked flow; returns how many entries went.
    pub(super) fn flush_conntrack(&mut self) -> usize {
        let keys: Vec<CtKey> = self.entries().into_iter().map(|(k, _)| k).collect();
        self.remove_ct(&keys)
    }

    /// Remove `keys` from whichever table holds them; returns how many went.
    pub(super) fn remove_ct(&mut self, keys: &[CtKey]) -> usize {
        let maps = &mut self.dp.maps;
        keys.iter()
            .filter(|k| maps.ct.remove(k).is_ok() || maps.ct_new.remove(k).is_ok())
            .count()
    }

    /// The flow of forward key `key` as it stands in the maps now.
    fn fresh(&self, key: &CtKey) -> Option<Flow> {
        let maps = &self.dp.maps;
        let get = |k: &CtKey| maps.ct.get(k, 0).or_else(|_| maps.ct_new.get(k, 0)).ok();
        let fwd = get(key)?;
        let twin = key.twin(&fwd);
        Some(Flow {
            key: *key,
            fwd,
            reply: get(&twin).filter(CtValue::is_reply).map(|v| (twin, v)),
        })
    }

    /// Remove the flows idle past their timeout. Each is read again just before it goes,
    /// so a flow a packet revived since the scan is kept.
    pub(super) fn sweep(&mut self) {
        let started = std::time::Instant::now();
        // One listing serves both: the maps are read once a sweep.
        let flows = self.flows();
        let removed = self.remove_expired(&flows);
        let live: Vec<&Flow> = flows.iter().filter(|f| !removed.contains(&f.key)).collect();
        self.repair_replies(&live);
        self.recount_snat_use(live.into_iter());
        debug!(
            flows = flows.len(),
            expired = removed.len(),
            took_ms = started.elapsed().as_secs_f64() * 1e3,
            "swept"
        );
    }

    /// A forward entry whose reply entry LRU eviction took gets it back, rebuilt from the
    /// forward one (its translation is the reply's, reversed): the flow keeps its tuple.
    fn repair_replies(&mut self, live: &[&Flow]) {
        let mut repaired = 0;
        for f in live
            .iter()
            .filter(|f| f.reply.is_none() && !f.fwd.is_reply())
        {
            let rk = f.key.twin(&f.fwd);
            let mut rv = CtValue::new(
                &f.key.reversed(),
                f.fwd.flags | CT_REPLY,
                f.fwd.last_seen_ns,
            );
            rv.tcp_seen = f.fwd.tcp_seen & !TCP_FIN_FIRST;
            // NOEXIST: a reply that came back meanwhile, or another flow's, is kept.
            if self.dp.maps.ct.insert(rk, rv, NOEXIST).is_ok() {
                repaired += 1;
            }
        }
        if repaired > 0 {
            debug!(repaired, "reply entries put back");
        }
    }

    /// Set each container's SNAT quota use to its live (unfinished) SNAT flows toward
    /// each destination: the datapath counts as it goes, this corrects what LRU
    /// eviction and racing CPUs left.
    fn recount_snat_use<'a>(&mut self, live: impl Iterator<Item = &'a Flow>) {
        let mut want: BTreeMap<CtKey, u64> = BTreeMap::new();
        for f in live {
            let snat_only = f.fwd.flags & (CT_SNAT | CT_DNAT) == CT_SNAT;
            let over = f.key.proto == PROTO_TCP
                && matches!(f.tcp_state(), TcpState::Closed | TcpState::TimeWait);
            if snat_only && !f.fwd.is_reply() && !over {
                *want
                    .entry(CtKey {
                        src_port: 0,
                        ..f.key
                    })
                    .or_default() += 1;
            }
        }
        let map = &mut self.dp.maps.snat_use;
        let have: Vec<CtKey> = map.keys().filter_map(Result::ok).collect();
        for k in have.iter().filter(|k| !want.contains_key(k)) {
            if let Err(e) = map.remove(k) {
                warn!(error = %e, "cannot clear an SNAT quota count");
            }
        }
        for (k, n) in &want {
            if let Err(e) = map.insert(k, n, 0) {
                warn!(error = %e, "cannot set an SNAT quota count");
            }
        }
    }

    /// Remove the flows of `flows` idle past their timeout; their keys.
    fn remove_expired(&mut self, flows: &[Flow]) -> BTreeSet<CtKey> {
        let now = monotonic_ns();
        let due: Vec<CtKey> = flows
            .iter()
            .filter(|f| f.expires_in(now, &self.timeouts).is_zero())
            .map(|f| f.key)
            .collect();
        let mut gone = BTreeSet::new();
        let mut removed = 0;
        for key in due {
            // Read again just before it goes: a packet may have revived it since.
            let Some(flow) = self.fresh(&key) else {
                continue;
            };
            if !flow.expires_in(monotonic_ns(), &self.timeouts).is_zero() {
                continue;
            }
            let keys = flow.keys();
            let n = self.remove_ct(&keys);
            if n < keys.len() {
                warn!(
                    gone = n,
                    of = keys.len(),
                    "an expired flow was partly gone already"
                );
            }
            removed += n;
            gone.insert(key);
        }
        self.swept += removed as u64;
        if removed > 0 {
            debug!(removed, "CT sweep");
        }
        gone
    }
}
