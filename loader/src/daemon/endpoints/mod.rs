//! Registered endpoints: the desired list in `State` (`requests.rs`), the entries it
//! and the attached veths want (`want.rs`), and this part, which writes them to
//! `endpoints_v1`, `endpoints6_v1` and `ports_v2`.
mod requests;
mod want;

use std::collections::BTreeMap;

use common::{Be32, EP_LEARNED, Endpoint, Ip6};
use tracing::debug;
pub(super) use want::{Bridge, Veth, port};

use crate::{
    datapath::{Datapath, batch::entries_or_each, sync::sync},
    endpoint::EndpointSpec,
};

/// What the endpoints' entries are computed from, besides the bindings the datapath
/// learns (which change with no event: read at each apply).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Inputs {
    /// Every endpoint to install: manual ones, then Docker's.
    pub specs: Vec<EndpointSpec>,
    /// Container veths attached now, by name.
    pub veths: BTreeMap<String, Veth>,
    /// Their bridges.
    pub bridges: BTreeMap<u32, Bridge>,
}

/// The endpoints part: owns the three maps' contents.
#[derive(Debug, Default)]
pub(super) struct Endpoints {
    /// The inputs of the last apply that wrote everything it wanted (None: none yet, or
    /// the last one failed somewhere, so the next one runs whatever its inputs).
    applied: Option<Inputs>,
}

impl Endpoints {
    /// Make the maps match `inputs`, unless they are those of the last clean apply.
    /// Returns whether `endpoints_v1` changed (flows may remember an endpoint's old
    /// veth, or a route to a new one).
    pub(super) fn reconcile(&mut self, dp: &mut Datapath, inputs: Inputs) -> bool {
        if self.applied.as_ref() == Some(&inputs) {
            return false;
        }
        let (changed, clean) = apply(dp, &inputs);
        self.applied = clean.then_some(inputs);
        changed
    }

    /// Write the maps again at the next reconcile, whatever its inputs.
    pub(super) fn forget(&mut self) {
        self.applied = None;
    }
}

/// Write what `inputs` want (bindings the datapath learned stay while their veth is
/// attached and nothing registered claims that veth or address; the datapath refuses
/// addresses no container may have, and one bound before, or taken by the host since,
/// goes). Returns whether `endpoints_v1` changed and whether every write succeeded.
fn apply(dp: &mut Datapath, inputs: &Inputs) -> (bool, bool) {
    let maps = &dp.maps;
    let learned: BTreeMap<Be32, Endpoint> = entries_or_each(&maps.endpoints)
        .into_iter()
        .filter(|(ip, ep)| ep.flags & EP_LEARNED != 0 && maps.claimable(*ip))
        .collect();
    let learned6: BTreeMap<Ip6, Endpoint> = entries_or_each(&maps.endpoints6)
        .into_iter()
        .filter(|(ip, ep)| ep.flags & EP_LEARNED != 0 && maps.claimable6(*ip))
        .collect();
    let want = want::want(
        &inputs.specs,
        &inputs.veths,
        &inputs.bridges,
        &learned,
        &learned6,
    );
    for e in &want.waiting {
        debug!(veth = %e.veth, ips = %e.addresses(), "endpoint's veth is absent; waiting for it");
    }
    if !want.waiting.is_empty() {
        debug!(
            endpoints = want.waiting.len(),
            "endpoints wait for their veth to appear"
        );
    }
    let maps = &mut dp.maps;
    // Ports first: a port's recorded endpoint is trusted without `endpoints_v1`, so
    // it must never name an address that map no longer gives the port.
    let ports = sync(&mut maps.ports, &want.ports);
    let endpoints = sync(&mut maps.endpoints, &want.eps);
    let endpoints6 = sync(&mut maps.endpoints6, &want.eps6);
    let changed = endpoints.written + endpoints.removed > 0;
    let clean =
        ports.errors.is_empty() && endpoints.errors.is_empty() && endpoints6.errors.is_empty();
    super::report("bridge ports", ports);
    super::report("endpoints", endpoints);
    super::report("IPv6 endpoints", endpoints6);
    (changed, clean)
}

impl super::Daemon {
    /// The endpoints part's inputs as they stand.
    pub(super) fn endpoint_inputs(&self) -> Inputs {
        let veths: BTreeMap<String, Veth> = self
            .host
            .links
            .veths()
            .map(|(l, bridge)| {
                let veth = Veth {
                    index: l.index,
                    bridge,
                };
                (l.name.clone(), veth)
            })
            .collect();
        let bridges = veths
            .values()
            .map(|v| (v.bridge, self.bridge(v.bridge)))
            .collect();
        Inputs {
            specs: self.all_endpoints(),
            veths,
            bridges,
        }
    }

    /// What a port on bridge `index` takes from it: its MAC (a bridge's follows its
    /// ports until set by hand) and its Docker network's ICC policy.
    pub(super) fn bridge(&self, index: u32) -> Bridge {
        let net_flags = self
            .host
            .links
            .get(index)
            .and_then(|l| self.host.docker_net_flags.get(&l.name))
            .copied()
            .unwrap_or(0);
        Bridge {
            mac: self.host.links.bridge_mac(index).unwrap_or_default(),
            no_icc: net_flags & common::NET_NO_ICC != 0,
        }
    }

    /// Make `endpoints_v1`, `endpoints6_v1` and `ports_v2` match the registered
    /// endpoints and the veths attached now (a veth may come and go with its container;
    /// its name is the link).
    pub(super) fn sync_endpoints(&mut self) {
        let inputs = self.endpoint_inputs();
        self.stale.hops |= self.parts.endpoints.reconcile(&mut self.dp, inputs);
    }
}
