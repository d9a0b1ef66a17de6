//! Where the daemon's events come from: API calls (the control socket and the metrics
//! endpoint), netlink notifications, Docker's watcher, the cluster's members, the
//! sweeper's timer, the repair timer and the signals that stop it.
use std::time::Duration;

use futures::{Stream, StreamExt as _};
use tokio::{
    signal::unix::{Signal, SignalKind, signal},
    sync::{mpsc, oneshot},
    time::{Instant, Sleep},
};

use super::{Config, Daemon, DaemonError};
use crate::{
    api::{self, Request, Response, server::Call},
    cluster::ClusterEvent,
    docker::watch::Update,
    netlink::Change,
};

/// One thing that happened.
pub(super) enum Event {
    Call(Request, oneshot::Sender<Response>),
    Netlink(Change),
    Docker(Update),
    Cluster(usize, ClusterEvent),
    /// The sweeper is due.
    Sweep,
    /// Time for a full reapply of every part (`--docker-resync`), repairing what was
    /// changed by hand.
    Repair,
}

/// The daemon's event sources, open.
pub(super) struct Events<N> {
    calls: mpsc::Receiver<Call>,
    changes: N,
    docker: mpsc::Receiver<Update>,
    cluster: mpsc::Receiver<(usize, ClusterEvent)>,
    sweep: std::pin::Pin<Box<Sleep>>,
    repair: tokio::time::Interval,
    term: Signal,
    int: Signal,
}

impl<N: Stream<Item = Change> + Unpin> Events<N> {
    /// Join the cluster, follow Docker, serve the control socket (and the metrics
    /// endpoint, the monitor's clients), catch the signals; the first sweep is due at
    /// once.
    pub(super) async fn open(
        d: &mut Daemon,
        cfg: &Config,
        changes: N,
        metrics: Option<tokio::net::TcpListener>,
    ) -> Result<Self, DaemonError> {
        let (cluster_tx, cluster) = mpsc::channel(16);
        if let Some(etcd) = &cfg.etcd {
            d.join_cluster(etcd, cfg.underlay.as_deref(), &cfg.state_dir, cluster_tx)
                .await;
        }
        let (docker_tx, docker) = mpsc::channel(64);
        if cfg.follow_docker {
            tokio::spawn(crate::docker::watch::watch(docker_tx, cfg.docker_resync));
        }
        let listener = api::server::bind(&cfg.socket)?;
        let (tx, calls) = mpsc::channel(64);
        if let Some(listener) = metrics {
            tokio::spawn(crate::metrics::serve(listener, tx.clone()));
        }
        let (monitor_tx, monitor_rx) = mpsc::channel(16);
        if let Some(maps) = d.dp.take_monitor() {
            tokio::spawn(crate::monitor::hub::run(maps, monitor_rx, tx.clone()));
        }
        tokio::spawn(api::server::serve(listener, tx, monitor_tx));
        Ok(Self {
            calls,
            changes,
            docker,
            cluster,
            sweep: Box::pin(tokio::time::sleep(Duration::ZERO)),
            repair: tokio::time::interval_at(Instant::now() + cfg.docker_resync, cfg.docker_resync),
            term: signal(SignalKind::terminate()).map_err(DaemonError::Signal)?,
            int: signal(SignalKind::interrupt()).map_err(DaemonError::Signal)?,
        })
    }

    /// The next event; None on SIGTERM or SIGINT.
    pub(super) async fn next(&mut self) -> Option<Event> {
        tokio::select! {
            Some((req, reply)) = self.calls.recv() => Some(Event::Call(req, reply)),
            Some(change) = self.changes.next() => Some(Event::Netlink(change)),
            Some(update) = self.docker.recv() => Some(Event::Docker(update)),
            Some((net, event)) = self.cluster.recv() => Some(Event::Cluster(net, event)),
            () = &mut self.sweep => Some(Event::Sweep),
            _ = self.repair.tick() => Some(Event::Repair),
            _ = self.term.recv() => None,
            _ = self.int.recv() => None,
        }
    }

    /// The next sweep is due in `after`.
    pub(super) fn sweep_in(&mut self, after: Duration) {
        self.sweep.as_mut().reset(Instant::now() + after);
    }
}
