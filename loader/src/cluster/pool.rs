//! The subnet pool: a reservation key per node subnet, created by compare-and-swap.
use std::collections::HashSet;

use etcd_client::{Client, Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp};
use tracing::{debug, info, warn};

use super::{
    ClusterConfig, ClusterError, Ipv4Net,
    etcd::call,
    keys::{Keys, SubnetRecord, now, to_json},
};

/// How many times a node's own reservation is re-read when it changes under the
/// re-attach; past that, a fresh subnet is claimed.
const OWN_ROUNDS: usize = 3;

/// The reserved subnets, as far as this claimer knows.
#[derive(Debug, Default)]
pub(crate) struct Taken {
    /// Reservations of the node prefix's length (all of them, normally).
    exact: HashSet<Ipv4Net>,
    /// Reservations of another length (left by an older config): checked for overlap.
    other: Vec<Ipv4Net>,
}

impl Taken {
    /// `net` is reserved.
    pub(crate) fn insert(&mut self, net: Ipv4Net, node_prefix: u8) {
        if net.len == node_prefix {
            self.exact.insert(net);
        } else {
            self.other.push(net);
        }
    }

    /// Whether `net` overlaps no reservation.
    fn is_free(&self, net: &Ipv4Net) -> bool {
        !self.exact.contains(net) && !self.other.iter().any(|o| o.overlaps(net))
    }
}

/// The lowest node subnet of the CIDR that overlaps no reservation.
pub(crate) fn lowest_free(cfg: &ClusterConfig, taken: &Taken) -> Option<Ipv4Net> {
    cfg.cidr
        .subnets(cfg.node_prefix)
        .find(|net| taken.is_free(net))
}

/// Claim a node subnet for `name`, attached to `reservation_lease`: its own reservation
/// if it has one (a restarted node gets its subnet back), else the lowest free
/// `/node_prefix` of the CIDR, created only if no one else holds it
/// (`create_revision == 0`) and retried with the next one on conflict. Two concurrent
/// claimers never get the same or overlapping subnets.
pub async fn claim(
    client: &mut Client,
    prefix: &str,
    cfg: &ClusterConfig,
    name: &str,
    reservation_lease: i64,
) -> Result<Ipv4Net, ClusterError> {
    cfg.validate()?;
    let keys = Keys::new(prefix);
    let record = to_json(
        "a subnet reservation",
        &SubnetRecord {
            node: name.into(),
            last_seen: now(),
        },
    )?;
    let put = || Some(PutOptions::new().with_lease(reservation_lease));
    let mut taken = Taken::default();
    for _ in 0..OWN_ROUNDS {
        let (listed, own) = list(client, &keys, cfg, name).await?;
        taken = listed;
        let Some((net, revision)) = own else { break };
        let key = keys.subnet(&net);
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key.clone(),
                CompareOp::Equal,
                revision,
            )])
            .and_then([TxnOp::put(key, record.clone(), put())]);
        if call("renew this node's reservation", client.txn(txn))
            .await?
            .succeeded()
        {
            info!(node = name, subnet = %net, "took this node's reserved subnet back");
            return Ok(net);
        }
        debug!(node = name, subnet = %net, "own reservation changed meanwhile; reading again");
    }
    while let Some(net) = lowest_free(cfg, &taken) {
        let key = keys.subnet(&net);
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, record.clone(), put())]);
        if call("reserve a subnet", client.txn(txn)).await?.succeeded() {
            info!(node = name, subnet = %net, "reserved a subnet");
            return Ok(net);
        }
        debug!(node = name, subnet = %net, "subnet reserved by another node meanwhile");
        taken.insert(net, cfg.node_prefix);
    }
    Err(ClusterError::PoolExhausted {
        cidr: cfg.cidr,
        node_prefix: cfg.node_prefix,
    })
}

/// Every reservation, and `name`'s own (with its mod revision) if it has one.
async fn list(
    client: &mut Client,
    keys: &Keys,
    cfg: &ClusterConfig,
    name: &str,
) -> Result<(Taken, Option<(Ipv4Net, i64)>), ClusterError> {
    let resp = call(
        "list the subnet reservations",
        client.get(keys.subnets(), Some(GetOptions::new().with_prefix())),
    )
    .await?;
    let mut taken = Taken::default();
    let mut own = None;
    for kv in resp.kvs() {
        let Some(net) = keys.subnet_of(kv.key()) else {
            warn!(key = %String::from_utf8_lossy(kv.key()), "not a subnet reservation key; ignored");
            continue;
        };
        // Reserved whatever its value says: only its lease's end frees it.
        taken.insert(net, cfg.node_prefix);
        match serde_json::from_slice::<SubnetRecord>(kv.value()) {
            Ok(r) if r.node == name && cfg.is_node_subnet(&net) && own.is_none() => {
                own = Some((net, kv.mod_revision()));
            }
            Ok(_) => {}
            Err(e) => warn!(subnet = %net, error = %e, "reservation with a bad value; skipped"),
        }
    }
    Ok((taken, own))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Mode;

    #[test]
    fn the_lowest_free_subnet_skips_reservations_of_any_length() {
        let cfg = ClusterConfig::new("10.244.0.0/20".parse().expect("net"), 26, Mode::HostGw);
        let net = |s: &str| s.parse::<Ipv4Net>().expect("net");
        let mut taken = Taken::default();
        assert_eq!(lowest_free(&cfg, &taken), Some(net("10.244.0.0/26")));
        taken.insert(net("10.244.0.0/26"), 26);
        assert_eq!(lowest_free(&cfg, &taken), Some(net("10.244.0.64/26")));
        // A /24 left by an older config covers the next three /26s.
        taken.insert(net("10.244.0.0/24"), 26);
        assert_eq!(lowest_free(&cfg, &taken), Some(net("10.244.1.0/26")));
        for n in cfg.cidr.subnets(26) {
            taken.insert(n, 26);
        }
        assert_eq!(lowest_free(&cfg, &taken), None);
    }
}
