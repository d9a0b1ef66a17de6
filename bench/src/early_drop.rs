//! Early drop: a bounded burst of datagrams routed to an unpublished container port, all
//! of which bpfnet drops (`drop-inbound`): by `from_uplink` in `bpfnet` mode, by
//! `xdp_uplink` before TC in `bpfnet+xdp` mode. Reported per mode: the datapath programs'
//! run time per probe (`bpf_stats`) and the probes per second the client got through the
//! host's receive path, sending as fast as it can on one CPU (on a veth the receive path
//! runs in the sender's context, so a cheaper drop is a faster sender).
use std::{
    net::{SocketAddr, UdpSocket},
    time::Instant,
};

use anyhow::{Context as _, Result, ensure};
use bpfnet_tests::{daemon::counter, topo::Topology};
use common::Reason;
use serde::{Deserialize, Serialize};

use crate::{cost, modes::Mode, pin};

#[derive(Serialize, Deserialize)]
pub(crate) struct DropRow {
    pub mode: String,
    pub probes: u64,
    /// Counted `drop-inbound` during the burst.
    pub dropped: u64,
    /// Run time of every datapath program over the burst, per probe.
    pub ns_per_probe: f64,
    pub probes_per_s: f64,
}

/// Where the probes go: a container port nothing publishes.
const TARGET: ([u8; 4], u16) = ([172, 17, 0, 4], 9);

pub(crate) fn measure(t: &Topology, mode: Mode, probes: u64) -> Result<DropRow> {
    let daemon = mode.setup(t);
    t.client
        .ip(&["route", "add", "172.17.0.0/16", "via", "192.0.2.1"]);
    let row = (|| {
        let collecting = cost::start()?;
        let before = (
            cost::snapshot()?,
            counter(&t.files.socket, Reason::DropInbound),
        );
        let cpu = Some(0);
        let took = t.client.run(move || -> Result<f64> {
            pin::this_thread(cpu);
            let s = UdpSocket::bind("0.0.0.0:0").context("bind the probe socket")?;
            let to = SocketAddr::from(TARGET);
            let start = Instant::now();
            for _ in 0..probes {
                s.send_to(b"probe", to).context("send a probe")?;
            }
            Ok(start.elapsed().as_secs_f64())
        })?;
        let after = cost::snapshot()?;
        drop(collecting);
        let dropped = counter(&t.files.socket, Reason::DropInbound) - before.1;
        ensure!(
            dropped >= probes * 9 / 10,
            "{}: only {dropped} of {probes} probes were dropped by bpfnet",
            mode.name()
        );
        let ns: f64 = cost::between(&before.0, &after)
            .values()
            .map(|c| c.ns_per_run * c.runs as f64)
            .sum();
        Ok(DropRow {
            mode: mode.name().to_string(),
            probes,
            dropped,
            ns_per_probe: ns / probes as f64,
            probes_per_s: probes as f64 / took,
        })
    })();
    t.client.ip(&["route", "del", "172.17.0.0/16"]);
    drop(daemon);
    mode.teardown(t);
    row
}
