//! The CT map seen from the daemon: listing, flushing, and the sweeper that removes
//! flows idle past their timeout.
use common::CtKey;
use tracing::{debug, warn};

use super::Daemon;
use crate::conntrack::{self, Flow, FlowInfo, monotonic_ns};

impl Daemon {
    fn flows(&self) -> Vec<Flow> {
        conntrack::flows(self.dp.maps.ct.iter().filter_map(Result::ok))
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
        let keys: Vec<CtKey> = self.dp.maps.ct.keys().filter_map(Result::ok).collect();
        self.remove_ct(&keys)
    }

    pub(super) fn remove_ct(&mut self, keys: &[CtKey]) -> usize {
        keys.iter()
            .filter(|k| self.dp.maps.ct.remove(k).is_ok())
            .count()
    }

    /// Remove the flows idle past their timeout.
    pub(super) fn sweep(&mut self) {
        let now = monotonic_ns();
        let due: Vec<CtKey> = self
            .flows()
            .iter()
            .filter(|f| f.expires_in(now, &self.timeouts).is_zero())
            .flat_map(Flow::keys)
            .collect();
        if due.is_empty() {
            return;
        }
        let removed = self.remove_ct(&due);
        self.swept += removed as u64;
        if removed < due.len() {
            warn!(
                removed,
                due = due.len(),
                "some expired CT entries were already gone"
            );
        }
        debug!(removed, "CT sweep");
    }
}
