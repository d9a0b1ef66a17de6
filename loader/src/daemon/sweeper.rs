//! The sweeper: removes the flows idle past their timeout, in the kernel and, when
//! due, by a walk from userspace that also repairs lost reply halves and recounts each
//! container's flows. It owns its timeouts and the record of its sweeps.
use std::{collections::HashMap, time::Duration};

use common::{Be32, CT_REPLY, CT_SIDE, CtKey, CtValue, Ip6, ct::TCP_FIN_FIRST};
use tracing::{debug, warn};

use super::flows::{CtFamily, Use, remove_ct};
use crate::{
    conntrack::{self, Flow, Timeouts, monotonic_ns},
    datapath::{Datapath, Maps, SweepError},
};

/// At most this share of one CPU goes to sweeping: a sweep that took `t` waits at least
/// `t * SWEEP_SHARE` before the next.
const SWEEP_SHARE: u32 = 20;

/// Every this many sweeps the userspace walk (repair of lost halves, SNAT recount) runs
/// even when the main table is far from full.
const FULL_WALK_EVERY: u64 = 10;

/// When the next sweep is due after one that took `took`: the configured `interval`, or
/// longer when the table is so large that sweeping that often would take more than a
/// twentieth of a CPU (a million flows take seconds to read).
pub(super) fn next_sweep(interval: Duration, took: Duration) -> Duration {
    interval.max(took * SWEEP_SHARE)
}

/// The datapath's clock is measured between the first sweep's clock reading and a later
/// one (`Datapath::sweep_ct`): the second sweep after a daemon starts comes this soon,
/// so the datapath leaves the coarse clock's helper call within seconds.
const CLOCK_SPAN: Duration = Duration::from_millis(1_500);

/// Whether sweep number `sweeps` (from 1), after which the main table holds `main` of its
/// `capacity` entries, also walks the tables from userspace: every `FULL_WALK_EVERY`
/// sweeps, and every sweep while the table is three quarters full.
fn full_walk_due(sweeps: u64, main: u64, capacity: u32) -> bool {
    main * 4 >= u64::from(capacity) * 3 || sweeps.is_multiple_of(FULL_WALK_EVERY)
}

/// The sweeper part.
#[derive(Debug)]
pub(super) struct Sweeper {
    pub timeouts: Timeouts,
    /// CT entries removed since start.
    pub swept: u64,
    /// Sweeps since start.
    sweeps: u64,
    /// The last pass.
    pub last: Option<crate::api::Sweep>,
    /// When it last ran.
    pub last_at: Option<std::time::SystemTime>,
    /// Entries each flow table held after the last in-kernel sweep (`SWEPT_TABLES`
    /// order); None when it has not run or failed.
    pub ct_left: Option<[u64; 4]>,
}

impl Sweeper {
    pub(super) fn new(timeouts: Timeouts) -> Self {
        Self {
            timeouts,
            swept: 0,
            sweeps: 0,
            last: None,
            last_at: None,
            ct_left: None,
        }
    }

    /// Every tracked flow, for the API.
    pub(super) fn flows(&self, dp: &Datapath) -> Vec<conntrack::FlowInfo> {
        super::flows::list(&dp.maps, &self.timeouts)
    }

    /// When the next sweep is due after one that took `took` (`next_sweep`), sooner
    /// while the datapath's clock waits for its second reading.
    pub(super) fn due(&self, dp: &Datapath, interval: Duration, took: Duration) -> Duration {
        if self.sweeps < 3 && dp.clock().is_none() {
            return interval.min(CLOCK_SPAN);
        }
        next_sweep(interval, took)
    }

    /// Remove the flows idle past their timeout: in the kernel (`ct_sweep`: no entry
    /// leaves it, an entry recently seen costs a few instructions). The userspace walk
    /// (repair of halves LRU eviction took, SNAT recount) follows when the main table is
    /// three quarters full (eviction happens in a full table) and every
    /// `FULL_WALK_EVERY` sweeps; it does it all when the kernel sweep fails.
    pub(super) fn sweep(&mut self, dp: &mut Datapath) -> Duration {
        let started = std::time::Instant::now();
        self.sweeps += 1;
        let (entries, removed, walked) = match dp.sweep_ct() {
            Ok(s) => {
                self.swept += s.removed;
                self.ct_left = Some(s.left);
                let walked = full_walk_due(self.sweeps, s.main, dp.ct_entries());
                if walked {
                    self.walk::<Be32>(&mut dp.maps, false);
                    self.walk::<Ip6>(&mut dp.maps, false);
                }
                (s.entries, s.removed, walked)
            }
            Err(e) => {
                // A sweep the kernel refused to load was reported at start.
                if !matches!(e, SweepError::NotLoaded) {
                    warn!(error = %e, "in-kernel sweep failed; sweeping from userspace");
                }
                self.ct_left = None;
                let (entries, removed) = self.walk::<Be32>(&mut dp.maps, true);
                let (entries6, removed6) = self.walk::<Ip6>(&mut dp.maps, true);
                (entries + entries6, removed + removed6, true)
            }
        };
        let took = started.elapsed();
        self.last_at = Some(std::time::SystemTime::now());
        self.last = Some(crate::api::Sweep {
            entries,
            removed,
            micros: took.as_micros() as u64,
            walked,
        });
        debug!(
            entries,
            expired = removed,
            took_ms = took.as_secs_f64() * 1e3,
            "swept"
        );
        took
    }

    /// One walk of family `A`'s two tables in userspace (read in batches, paired through a hash
    /// index, no flow kept beyond what it needs): finds the forward entries that lost
    /// their reply entry and recounts the SNAT quota; with `expire`, also removes the
    /// flows idle past their timeout, each read again just before it goes, so a flow a
    /// packet revived since the scan is kept. Returns (entries read, entries removed).
    fn walk<A: CtFamily>(&mut self, maps: &mut Maps, expire: bool) -> (u64, u64) {
        let entries = A::read_ct(maps);
        let index = conntrack::index(&entries);
        let now = monotonic_ns();
        let (mut due, mut unanswered) = (Vec::new(), Vec::new());
        let (mut snat, mut flows) = (HashMap::new(), HashMap::new());
        for flow in conntrack::pairs(&entries, &index) {
            if expire && flow.expires_in(now, &self.timeouts).is_zero() {
                due.push(flow.key);
                continue;
            }
            if flow.reply.is_none() && !flow.fwd.is_reply() {
                unanswered.push(flow.clone());
            }
            if let Some(k) = flow.snat_quota_key() {
                *snat.entry(k).or_insert(0u64) += 1;
            }
            if let Some(k) = flow.originator() {
                *flows.entry(k).or_insert(0u64) += 1;
            }
        }
        let removed = self.remove_expired(maps, &due);
        repair_replies(maps, &unanswered);
        recount(maps, Use::Snat, &snat);
        recount(maps, Use::Flows, &flows);
        (entries.len() as u64, removed as u64)
    }

    /// Remove the flows of forward keys `due`, found idle past their timeout, that still
    /// are when read again; how many entries went.
    fn remove_expired<A: CtFamily>(&mut self, maps: &mut Maps, due: &[CtKey<A>]) -> usize {
        let mut removed = 0;
        for key in due {
            // Read again just before it goes: a packet may have revived it since.
            let Some(flow) = fresh(maps, key) else {
                continue;
            };
            if !flow.expires_in(monotonic_ns(), &self.timeouts).is_zero() {
                continue;
            }
            let keys = flow.keys();
            let n = remove_ct(maps, &keys);
            if n < keys.len() {
                warn!(
                    gone = n,
                    of = keys.len(),
                    "an expired flow was partly gone already"
                );
            }
            removed += n;
        }
        self.swept += removed as u64;
        removed
    }
}

/// The flow of forward key `key` as it stands in the maps now.
fn fresh<A: CtFamily>(maps: &Maps, key: &CtKey<A>) -> Option<Flow<A>> {
    let (fwd, _) = A::get_ct(maps, key)?;
    let twin = key.twin(&fwd);
    let reply = A::get_ct(maps, &twin).map(|(v, _)| v);
    Some(Flow {
        key: *key,
        fwd,
        reply: reply.filter(CtValue::is_reply).map(|v| (twin, v)),
    })
}

/// A forward entry whose reply entry LRU eviction took gets it back, rebuilt from the
/// forward one (its translation is the reply's, reversed): the flow keeps its tuple.
///
/// A walk of two tables can also miss a reply entry that exists: the datapath creates
/// a flow's reply entry first and moves both entries between the tables, so a walk
/// may pass one's place before it is written and the other's after. Each candidate
/// is therefore read again, both tables, and its reply put back only when it is
/// still missing, in the table that holds its forward entry (a copy in the main
/// table would shadow the real entry in the new-flow table, and its stale TCP state
/// would keep the tuple from being reused).
fn repair_replies<A: CtFamily>(maps: &mut Maps, unanswered: &[Flow<A>]) {
    let mut repaired = 0;
    for f in unanswered {
        let Some((fwd, main)) = A::get_ct(maps, &f.key) else {
            continue;
        };
        let rk = f.key.twin(&fwd);
        if A::get_ct(maps, &rk).is_some() {
            continue;
        }
        // Its side is not recorded (the forward entry's is its own): only a local
        // endpoint's side is checked, as in entries of older layouts.
        let flags = (fwd.flags & !CT_SIDE) | CT_REPLY;
        let mut rv = CtValue::new(&f.key.reversed(), flags, fwd.last_seen_ns);
        rv.tcp_seen = fwd.tcp_seen & !TCP_FIN_FIRST;
        // Never replacing: a reply that came back meanwhile, or another flow's, is kept.
        if A::create_ct(maps, main, &rk, &rv) {
            repaired += 1;
        }
    }
    if repaired > 0 {
        debug!(repaired, "reply entries put back");
    }
}

/// Set each container's count of `what` to what the tables hold (its live SNAT flows,
/// the flows it originated): the datapath counts as it goes, this corrects what LRU
/// eviction and racing CPUs left.
fn recount<A: CtFamily>(maps: &mut Maps, what: Use, want: &HashMap<A, u64>) {
    for ip in A::use_keys(maps, what)
        .iter()
        .filter(|ip| !want.contains_key(ip))
    {
        if let Err(e) = A::set_use(maps, what, ip, None) {
            warn!(error = %e, count = ?what, "cannot clear a container's count");
        }
    }
    for (ip, n) in want {
        if let Err(e) = A::set_use(maps, what, ip, Some(*n)) {
            warn!(error = %e, count = ?what, "cannot set a container's count");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_full_walk_runs_every_tenth_sweep_and_always_in_a_crowded_table() {
        let due: Vec<u64> = (1..=30).filter(|&n| full_walk_due(n, 10, 1000)).collect();
        assert_eq!(due, vec![10, 20, 30]);
        assert!(full_walk_due(7, 750, 1000), "three quarters full");
        assert!(!full_walk_due(7, 749, 1000));
    }

    #[test]
    fn a_long_sweep_stretches_the_interval() {
        let ten = Duration::from_secs(10);
        assert_eq!(next_sweep(ten, Duration::from_millis(9)), ten);
        assert_eq!(
            next_sweep(ten, Duration::from_millis(1600)),
            Duration::from_secs(32)
        );
    }
}
