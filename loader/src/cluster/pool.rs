//! The subnet pool: a reservation key per node subnet, created by compare-and-swap;
//! with dual stack, a second pool of IPv6 prefixes (`subnets6/`) on the same lease.
use std::{collections::HashSet, fmt, hash::Hash};

use etcd_client::{Client, Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp};
use tracing::{debug, info, warn};

use super::{
    ClusterConfig, ClusterError, Ipv4Net, Ipv6Net,
    etcd::call,
    keys::{Keys, SubnetRecord, now, to_json},
    net, net6,
};

/// How many times a node's own reservation is re-read when it changes under the
/// re-attach; past that, a fresh subnet is claimed.
const OWN_ROUNDS: usize = 3;

/// A network a pool hands out parts of: an IPv4 subnet (`subnets/`) or an IPv6 prefix
/// (`subnets6/`).
pub(crate) trait PoolNet: Copy + Eq + Hash + fmt::Display + fmt::Debug {
    /// What a reservation of it is called in logs and errors.
    const WHAT: &'static str;
    fn prefix_len(&self) -> u8;
    fn overlaps(&self, other: &Self) -> bool;
    fn covers(&self, other: &Self) -> bool;
    /// Its parts of length `len`, lowest first.
    fn parts(&self, len: u8) -> impl Iterator<Item = Self>;
    /// The prefix of every reservation key of this family.
    fn dir(keys: &Keys) -> String;
    /// The reservation key of `net`.
    fn key(keys: &Keys, net: &Self) -> String;
    /// The network a reservation key names.
    fn of_key(keys: &Keys, key: &[u8]) -> Option<Self>;
}

impl PoolNet for Ipv4Net {
    const WHAT: &'static str = "subnet";
    fn prefix_len(&self) -> u8 {
        Ipv4Net::prefix_len(self)
    }
    fn overlaps(&self, other: &Self) -> bool {
        net::overlaps(self, other)
    }
    fn covers(&self, other: &Self) -> bool {
        self.contains(other)
    }
    fn parts(&self, len: u8) -> impl Iterator<Item = Self> {
        net::subnets(self, len)
    }
    fn dir(keys: &Keys) -> String {
        keys.subnets()
    }
    fn key(keys: &Keys, net: &Self) -> String {
        keys.subnet(net)
    }
    fn of_key(keys: &Keys, key: &[u8]) -> Option<Self> {
        keys.subnet_of(key)
    }
}

impl PoolNet for Ipv6Net {
    const WHAT: &'static str = "IPv6 prefix";
    fn prefix_len(&self) -> u8 {
        Ipv6Net::prefix_len(self)
    }
    fn overlaps(&self, other: &Self) -> bool {
        net6::overlaps(self, other)
    }
    fn covers(&self, other: &Self) -> bool {
        self.contains(other)
    }
    fn parts(&self, len: u8) -> impl Iterator<Item = Self> {
        net6::subnets(self, len)
    }
    fn dir(keys: &Keys) -> String {
        keys.subnets6()
    }
    fn key(keys: &Keys, net: &Self) -> String {
        keys.subnet6(net)
    }
    fn of_key(keys: &Keys, key: &[u8]) -> Option<Self> {
        keys.subnet6_of(key)
    }
}

/// The reserved subnets, as far as this claimer knows.
#[derive(Debug)]
pub(crate) struct Taken<N = Ipv4Net> {
    /// Reservations of the node prefix's length (all of them, normally).
    exact: HashSet<N>,
    /// Reservations of another length (left by an older config): checked for overlap.
    other: Vec<N>,
}

impl<N> Default for Taken<N> {
    fn default() -> Self {
        Self {
            exact: HashSet::new(),
            other: Vec::new(),
        }
    }
}

impl<N: PoolNet> Taken<N> {
    /// `net` is reserved.
    pub(crate) fn insert(&mut self, net: N, node_prefix: u8) {
        if net.prefix_len() == node_prefix {
            self.exact.insert(net);
        } else {
            self.other.push(net);
        }
    }

    /// Whether `net` overlaps no reservation.
    fn is_free(&self, net: &N) -> bool {
        !self.exact.contains(net) && !self.other.iter().any(|o| o.overlaps(net))
    }
}

/// The lowest node subnet of `cidr` that overlaps no reservation.
pub(crate) fn lowest_free<N: PoolNet>(cidr: &N, node_prefix: u8, taken: &Taken<N>) -> Option<N> {
    cidr.parts(node_prefix).find(|net| taken.is_free(net))
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
    claim_in(
        client,
        prefix,
        cfg.cidr,
        cfg.node_prefix,
        name,
        reservation_lease,
    )
    .await
}

/// `claim` for the node's IPv6 prefix, out of `cidr6` (`subnets6/`), on the same
/// reservation lease as its IPv4 subnet; None when the cluster has no `cidr6`.
pub async fn claim6(
    client: &mut Client,
    prefix: &str,
    cfg: &ClusterConfig,
    name: &str,
    reservation_lease: i64,
) -> Result<Option<Ipv6Net>, ClusterError> {
    cfg.validate()?;
    let Some(cidr6) = cfg.cidr6 else {
        return Ok(None);
    };
    claim_in(
        client,
        prefix,
        cidr6,
        cfg.node_prefix6,
        name,
        reservation_lease,
    )
    .await
    .map(Some)
}

async fn claim_in<N: PoolNet>(
    client: &mut Client,
    prefix: &str,
    cidr: N,
    node_prefix: u8,
    name: &str,
    reservation_lease: i64,
) -> Result<N, ClusterError> {
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
        let (listed, own) = list(client, &keys, &cidr, node_prefix, name).await?;
        taken = listed;
        let Some((net, revision)) = own else { break };
        let key = N::key(&keys, &net);
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
            info!(node = name, subnet = %net, "took this node's reserved {} back", N::WHAT);
            return Ok(net);
        }
        debug!(node = name, subnet = %net, "own reservation changed meanwhile; reading again");
    }
    while let Some(net) = lowest_free(&cidr, node_prefix, &taken) {
        let key = N::key(&keys, &net);
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, record.clone(), put())]);
        if call("reserve a subnet", client.txn(txn)).await?.succeeded() {
            info!(node = name, subnet = %net, "reserved a {}", N::WHAT);
            return Ok(net);
        }
        debug!(node = name, subnet = %net, "subnet reserved by another node meanwhile");
        taken.insert(net, node_prefix);
    }
    Err(ClusterError::PoolExhausted {
        cidr: cidr.to_string(),
        node_prefix,
    })
}

/// Every reservation, and `name`'s own (with its mod revision) if it has one.
async fn list<N: PoolNet>(
    client: &mut Client,
    keys: &Keys,
    cidr: &N,
    node_prefix: u8,
    name: &str,
) -> Result<(Taken<N>, Option<(N, i64)>), ClusterError> {
    let resp = call(
        "list the subnet reservations",
        client.get(N::dir(keys), Some(GetOptions::new().with_prefix())),
    )
    .await?;
    let mut taken = Taken::default();
    let mut own = None;
    for kv in resp.kvs() {
        let Some(net) = N::of_key(keys, kv.key()) else {
            warn!(key = %String::from_utf8_lossy(kv.key()), "not a subnet reservation key; ignored");
            continue;
        };
        // Reserved whatever its value says: only its lease's end frees it.
        taken.insert(net, node_prefix);
        let mine = net.prefix_len() == node_prefix && cidr.covers(&net);
        match serde_json::from_slice::<SubnetRecord>(kv.value()) {
            Ok(r) if r.node == name && mine && own.is_none() => {
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
        let net = |s: &str| net::parse(s).expect("net");
        let mut taken = Taken::default();
        let free = |t: &Taken| lowest_free(&cfg.cidr, cfg.node_prefix, t);
        assert_eq!(free(&taken), Some(net("10.244.0.0/26")));
        taken.insert(net("10.244.0.0/26"), 26);
        assert_eq!(free(&taken), Some(net("10.244.0.64/26")));
        // A /24 left by an older config covers the next three /26s.
        taken.insert(net("10.244.0.0/24"), 26);
        assert_eq!(free(&taken), Some(net("10.244.1.0/26")));
        for n in net::subnets(&cfg.cidr, 26) {
            taken.insert(n, 26);
        }
        assert_eq!(free(&taken), None);
    }

    #[test]
    fn the_lowest_free_ipv6_prefix_skips_reservations_of_any_length() {
        let net = |s: &str| net6::parse(s).expect("net");
        let cidr = net("fd00:10:244::/62");
        let mut taken = Taken::<Ipv6Net>::default();
        assert_eq!(
            lowest_free(&cidr, 64, &taken),
            Some(net("fd00:10:244::/64"))
        );
        taken.insert(net("fd00:10:244::/64"), 64);
        assert_eq!(
            lowest_free(&cidr, 64, &taken),
            Some(net("fd00:10:244:1::/64"))
        );
        // A /63 left by an older config covers the next two.
        taken.insert(net("fd00:10:244:2::/63"), 64);
        assert_eq!(
            lowest_free(&cidr, 64, &taken),
            Some(net("fd00:10:244:1::/64"))
        );
        taken.insert(net("fd00:10:244:1::/64"), 64);
        assert_eq!(lowest_free(&cidr, 64, &taken), None);
    }
}
