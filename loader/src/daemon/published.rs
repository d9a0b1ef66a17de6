//! Published ports: the desired list in `State`, its entries in `published_v1` (IPv4)
//! and `published6_v1` (IPv6), and the flows of a port no longer published.
use std::collections::BTreeMap;

use common::{Addr, Backend, Be32, CT_DNAT, CtKey, CtValue, Ip6, PublishedKey};
use tracing::{debug, info, warn};

use super::{
    Daemon,
    flows::{CtFamily, remove_ct},
};
use crate::{
    api::{ApiError, Change, Missing, PublishConflict},
    datapath::{
        Maps,
        sync::{SyncError, sync},
    },
    spec::{MapAddr, PublishSpec},
};

/// The publishes the desired state asks for: the manual ones, and each Docker
/// container's (by id).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Asked {
    manual: Vec<PublishSpec>,
    docker: BTreeMap<String, Vec<PublishSpec>>,
}

/// The publishes part: owns `published_v1` and `published6_v1`.
#[derive(Debug, Default)]
pub(super) struct Publishes {
    /// What the last apply was asked (None: none yet).
    asked: Option<Asked>,
    /// Whether that apply wrote everything (else the next one runs whatever it is asked).
    clean: bool,
    /// The last apply's failures.
    errors: Vec<SyncError>,
    /// Docker publishes not installed, and why.
    pub conflicts: Vec<PublishConflict>,
}

/// The publishes `before` asked for that `now` no longer does: a manual one unpublished,
/// a container's that it (or its container) dropped. Their flows go with them.
pub(super) fn withdrawn(before: &Asked, now: &Asked) -> Vec<PublishSpec> {
    let manual = before
        .manual
        .iter()
        .filter(|s| !now.manual.contains(s))
        .copied();
    let docker = before.docker.iter().flat_map(|(id, old)| {
        let now = now.docker.get(id);
        old.iter()
            .filter(move |s| now.is_none_or(|n| !n.contains(s)))
            .copied()
    });
    manual.chain(docker).collect()
}

impl Daemon {
    /// The publishes part's input as it stands.
    fn asked_publishes(&self) -> Asked {
        Asked {
            manual: self.desired.published.clone(),
            docker: self
                .desired
                .docker
                .iter()
                .map(|(id, c)| (id.clone(), c.publishes.clone()))
                .collect(),
        }
    }

    /// The publishes to install, manual ones first, and the Docker ones left out because
    /// an earlier one holds their port.
    pub(super) fn accepted_publishes(&self) -> (Vec<PublishSpec>, Vec<PublishConflict>) {
        let mut accepted = self.desired.published.clone();
        let mut conflicts = Vec::new();
        let mut containers: Vec<_> = self.desired.docker.values().collect();
        containers.sort_by(|a, b| a.name.cmp(&b.name));
        for c in containers {
            for spec in &c.publishes {
                match accepted.iter().find(|a| a.conflicts_with(spec)) {
                    Some(holder) => conflicts.push(PublishConflict {
                        container: c.name.clone(),
                        spec: *spec,
                        holder: *holder,
                    }),
                    None => accepted.push(*spec),
                }
            }
        }
        (accepted, conflicts)
    }

    pub(super) async fn publish(&mut self, spec: PublishSpec) -> Result<(), ApiError> {
        if let Some(holder) = self
            .accepted_publishes()
            .0
            .iter()
            .find(|p| p.conflicts_with(&spec))
        {
            return Err(ApiError::Conflict {
                spec,
                holder: *holder,
            });
        }
        self.desired.update(|s| {
            s.published.push(spec);
            Ok(())
        })?;
        self.reconcile().await;
        let errors = self.parts.publishes.take_errors();
        if !errors.is_empty() {
            // Not in the datapath: not published at all.
            self.desired.update(|s| {
                s.published.retain(|p| *p != spec);
                Ok(())
            })?;
            self.reconcile().await;
            return Err(ApiError::Datapath {
                change: Change::Publish { spec },
                errors,
            });
        }
        info!(%spec, "published");
        Ok(())
    }

    pub(super) async fn unpublish(&mut self, spec: PublishSpec) -> Result<(), ApiError> {
        self.desired.update(|s| {
            let pos = s
                .published
                .iter()
                .position(|p| *p == spec)
                .ok_or(ApiError::NotFound {
                    missing: Missing::Publish { spec },
                })?;
            s.published.remove(pos);
            Ok(())
        })?;
        // Its flows go too (`withdrawn`).
        self.reconcile().await;
        let errors = self.parts.publishes.take_errors();
        if !errors.is_empty() {
            return Err(ApiError::Datapath {
                change: Change::Unpublish { spec },
                errors,
            });
        }
        info!(%spec, "unpublished");
        Ok(())
    }

    /// The publishes part's turn in `reconcile`.
    pub(super) fn sync_published(&mut self) {
        let asked = self.asked_publishes();
        let accepted = self.accepted_publishes();
        self.parts
            .publishes
            .reconcile(&mut self.dp.maps, asked, accepted);
    }
}

impl Publishes {
    /// Unless `asked` is what its last clean apply was, make the maps hold the
    /// `accepted` publishes (`write`), then drop the flows of those withdrawn since
    /// (what Docker does with conntrack when a port is unmapped).
    pub(super) fn reconcile(
        &mut self,
        maps: &mut Maps,
        asked: Asked,
        accepted: (Vec<PublishSpec>, Vec<PublishConflict>),
    ) {
        let before = self.asked.replace(asked.clone());
        if self.clean && before.as_ref() == Some(&asked) {
            return;
        }
        let errors = self.write(maps, accepted);
        self.clean = errors.is_empty();
        self.errors = errors;
        for spec in before.map(|b| withdrawn(&b, &asked)).unwrap_or_default() {
            forget_flows(maps, &spec);
        }
    }

    /// Write the maps again at the next reconcile, whatever it is asked.
    pub(super) fn forget(&mut self) {
        self.clean = false;
    }

    /// The last apply's failures, taken (the request that asked reports them).
    pub(super) fn take_errors(&mut self) -> Vec<SyncError> {
        std::mem::take(&mut self.errors)
    }

    /// Make `published_v1` and `published6_v1` hold exactly the accepted publishes'
    /// entries (the maps survive restarts; this also repairs whatever changed while no
    /// daemon ran). Returns the failures, each also logged.
    fn write(
        &mut self,
        maps: &mut Maps,
        (accepted, conflicts): (Vec<PublishSpec>, Vec<PublishConflict>),
    ) -> Vec<SyncError> {
        for c in &conflicts {
            if !self.conflicts.contains(c) {
                warn!("{c}; not installed");
            }
        }
        self.conflicts = conflicts;
        let want: BTreeMap<PublishedKey, Backend> =
            accepted.iter().flat_map(PublishSpec::entries).collect();
        let want6: BTreeMap<PublishedKey<Ip6>, Backend<Ip6>> =
            accepted.iter().flat_map(PublishSpec::entries).collect();
        let synced = sync(&mut maps.published, &want);
        let synced6 = sync(&mut maps.published6, &want6);
        let mut errors = Vec::new();
        for (map, mut synced) in [
            ("published ports", synced),
            ("IPv6 published ports", synced6),
        ] {
            // Logged here, and kept whole for the request that asked.
            let failed = std::mem::take(&mut synced.errors);
            for e in &failed {
                warn!(map, error = %e, "map differs from the desired state");
            }
            super::report(map, synced);
            errors.extend(failed);
        }
        debug!(
            publishes = accepted.len(),
            entries = want.len(),
            entries6 = want6.len(),
            "published ports synced"
        );
        errors
    }
}

/// Drop the tracked flows of an unpublished port, so its established flows stop too
/// (what Docker does with conntrack when a port is unmapped).
fn forget_flows(maps: &mut Maps, spec: &PublishSpec) {
    forget_flows_of::<Be32>(maps, spec);
    forget_flows_of::<Ip6>(maps, spec);
}

/// `forget_flows` in family `A`'s tables (nothing for a spec of the other family): the
/// forward entries its DNAT created, and their twins.
fn forget_flows_of<A: CtFamily + MapAddr>(maps: &mut Maps, spec: &PublishSpec) {
    let Some((host_ip, backend)) = spec.addrs::<A>() else {
        return;
    };
    let doomed: Vec<CtKey<A>> = A::read_ct(maps)
        .into_iter()
        .filter(|(k, v)| dnat_of(spec, host_ip, backend, k, v))
        .flat_map(|(k, v)| [k, k.twin(&v)])
        .collect();
    remove_ct(maps, &doomed);
}

/// Whether `k → v` is the forward entry of a flow `spec`'s DNAT created: its host port,
/// protocol and host address (`host_ip`, `A::ZERO` for every one), translated to
/// `backend`.
fn dnat_of<A: Addr>(
    spec: &PublishSpec,
    host_ip: A,
    backend: A,
    k: &CtKey<A>,
    v: &CtValue<A>,
) -> bool {
    let port = k.dst_port.get();
    v.flags & CT_DNAT != 0
        && !v.is_reply()
        && v.dst_ip == backend
        && k.proto == spec.proto.number()
        && (spec.host_ports.start..=spec.host_ports.end).contains(&port)
        && (host_ip == A::ZERO || host_ip == k.dst_ip)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use common::{Be16, CT_REPLY, CT_SNAT, PROTO_TCP, PROTO_UDP};

    use super::*;

    fn ip6(s: &str) -> Ip6 {
        let a: Ipv6Addr = s.parse().expect("a valid IPv6 address in the test");
        Ip6::from(a)
    }

    /// Client `[2001:db8::99]:40000` to `[dst]:port`, translated to `[to]:to_port`.
    fn flow(dst: &str, port: u16, to: &str, to_port: u16, proto: u8) -> (CtKey<Ip6>, CtKey<Ip6>) {
        let key = |d: &str, p: u16| {
            CtKey::new(
                ip6("2001:db8::99"),
                ip6(d),
                Be16::new(40000),
                Be16::new(p),
                proto,
            )
        };
        (key(dst, port), key(to, to_port))
    }

    fn forgotten(spec: &str, k: &CtKey<Ip6>, v: &CtValue<Ip6>) -> bool {
        let spec: PublishSpec = spec.parse().expect("a valid spec in the test");
        let (host_ip, backend) = spec
            .addrs::<Ip6>()
            .expect("an IPv6 spec has IPv6 addresses");
        dnat_of(&spec, host_ip, backend, k, v)
    }

    fn asked(manual: &[&str], docker: &[(&str, &[&str])]) -> Asked {
        let specs = |l: &[&str]| -> Vec<PublishSpec> {
            l.iter()
                .map(|s| s.parse().expect("a valid spec in the test"))
                .collect()
        };
        Asked {
            manual: specs(manual),
            docker: docker
                .iter()
                .map(|(id, l)| (id.to_string(), specs(l)))
                .collect(),
        }
    }

    #[test]
    fn a_publish_is_withdrawn_from_where_it_was_asked() {
        let before = asked(
            &["8080:172.17.0.4:80", "8081:172.17.0.4:81"],
            &[
                ("a", &["9000:172.17.0.5:90", "9001:172.17.0.5:91"]),
                ("b", &["9100:172.17.0.6:90"]),
            ],
        );
        assert!(withdrawn(&before, &before).is_empty(), "nothing changed");
        // One unpublished, a container's port dropped, another container gone.
        let now = asked(&["8081:172.17.0.4:81"], &[("a", &["9001:172.17.0.5:91"])]);
        let gone: Vec<String> = withdrawn(&before, &now)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(gone.len(), 3, "each withdrawn publish once: {gone:?}");
        for s in [
            "8080:172.17.0.4:80",
            "9000:172.17.0.5:90",
            "9100:172.17.0.6:90",
        ] {
            let s: PublishSpec = s.parse().expect("a valid spec in the test");
            assert!(gone.contains(&s.to_string()), "{s} withdrawn: {gone:?}");
        }
        // A new publish withdraws nothing.
        assert!(withdrawn(&now, &before).is_empty());
    }

    #[test]
    fn an_ipv6_unpublish_finds_the_flows_its_dnat_created() {
        let spec = "[2001:db8::1]:8000-8001:[fd00:beef::4]:80-81";
        let (k, to) = flow("2001:db8::1", 8001, "fd00:beef::4", 81, PROTO_TCP);
        let fwd = CtValue::new(&to, CT_DNAT, 0);
        assert!(forgotten(spec, &k, &fwd), "its forward entry");
        let reply = CtValue::new(&k.reversed(), CT_DNAT | CT_REPLY, 0);
        assert!(
            !forgotten(spec, &k.twin(&fwd), &reply),
            "the reply entry goes as the forward one's twin, not by itself"
        );
        let wildcard = "8000-8001:[fd00:beef::4]:80-81";
        assert!(
            forgotten(wildcard, &k, &fwd),
            "a wildcard covers every host address"
        );

        let others = [
            (
                "another host address",
                flow("2001:db8::2", 8001, "fd00:beef::4", 81, PROTO_TCP),
            ),
            (
                "another host port",
                flow("2001:db8::1", 8002, "fd00:beef::4", 82, PROTO_TCP),
            ),
            (
                "another backend",
                flow("2001:db8::1", 8001, "fd00:beef::5", 81, PROTO_TCP),
            ),
            (
                "another protocol",
                flow("2001:db8::1", 8001, "fd00:beef::4", 81, PROTO_UDP),
            ),
        ];
        for (what, (k, to)) in others {
            let v = CtValue::new(&to, CT_DNAT, 0);
            assert!(
                !forgotten(spec, &k, &v),
                "{what} is not this publish's flow"
            );
        }
        let snat = CtValue::new(&to, CT_SNAT, 0);
        assert!(
            !forgotten(spec, &k, &snat),
            "a flow without DNAT is not a publish's"
        );
    }
}
