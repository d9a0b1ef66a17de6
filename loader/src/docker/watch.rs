//! The Docker watcher: connects (reconnecting with backoff whenever the engine is
//! absent, restarts or its socket goes), sends a snapshot of the running containers,
//! then one update per container event. It never touches the datapath itself: the
//! daemon applies what it sends, and keeps the datapath as it is while Docker is gone.
use std::{
    collections::{BTreeMap, HashMap},
    time::Duration,
};

use bollard::{
    API_DEFAULT_VERSION, Docker,
    models::{EventMessage, EventMessageTypeEnum},
    query_parameters::{EventsOptionsBuilder, ListContainersOptions},
};
use futures::StreamExt as _;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::model::{ContainerNet, bridge_name, container_net, network_flags};
use crate::netlink::{ifname, veth_in_sandbox};

/// A container's attachment as the daemon installs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wire {
    pub network: String,
    pub bridge: String,
    /// The network's `NET_*` flags (internal, routed, no icc, no masquerade).
    pub flags: u32,
    /// Host-side veth, when it could be found.
    pub veth: Option<String>,
}

/// A running container and where its attachments are plugged in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Learned {
    pub net: ContainerNet,
    /// Same order as `net.attachments`.
    pub wires: Vec<Wire>,
}

#[derive(Debug)]
pub enum Update {
    /// Every running container, after (re)connecting.
    Snapshot(Vec<Learned>),
    /// A container started, or joined or left a network.
    Upsert(Learned),
    /// A container stopped.
    Gone { id: String },
    /// The engine is not reachable, or was lost (the datapath stays as it is).
    Unreachable { error: String },
}

/// Where the engine is: `DOCKER_HOST` (<unix://PATH>) like the docker CLI, else the
/// default socket.
pub fn socket_path() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .filter(|h| h.starts_with("unix://"))
        .unwrap_or_else(|| "unix:///var/run/docker.sock".into())
}

/// Follow Docker forever, sending updates to `tx`; every `resync` the whole container
/// list is read again, whatever the events said.
pub async fn watch(tx: mpsc::Sender<Update>, resync: Duration) {
    let path = socket_path();
    let mut backoff = Duration::from_millis(250);
    let mut told = false;
    loop {
        match connect(&path).await {
            Ok(docker) => {
                info!(socket = %path, "following Docker");
                backoff = Duration::from_millis(250);
                told = false;
                let error = match follow(&docker, &tx, resync).await {
                    Ok(()) => {
                        warn!("Docker event stream ended; reconnecting");
                        "the event stream ended".to_string()
                    }
                    Err(e) => {
                        warn!(error = %e, "lost Docker; reconnecting");
                        e.to_string()
                    }
                };
                let _unused: Result<_, _> = tx.send(Update::Unreachable { error }).await;
            }
            // Said once per outage; the datapath keeps its state meanwhile.
            Err(e) if !told => {
                warn!(socket = %path, error = %e, "Docker not reachable; retrying with backoff");
                told = true;
                let error = e.to_string();
                let _unused: Result<_, _> = tx.send(Update::Unreachable { error }).await;
            }
            Err(e) => debug!(socket = %path, error = %e, "Docker still not reachable"),
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

async fn connect(path: &str) -> Result<Docker, bollard::errors::Error> {
    let docker = Docker::connect_with_unix(path, 30, API_DEFAULT_VERSION)?;
    let docker = docker.negotiate_version().await?;
    docker.ping().await?;
    Ok(docker)
}

async fn follow(
    docker: &Docker,
    tx: &mpsc::Sender<Update>,
    every: Duration,
) -> Result<(), bollard::errors::Error> {
    // Subscribe before listing, so nothing happens unseen in between.
    let filters = HashMap::from([("type", vec!["container", "network"])]);
    let mut events = docker.events(Some(EventsOptionsBuilder::new().filters(&filters).build()));
    let mut networks = BTreeMap::new();
    if tx
        .send(snapshot(docker, &mut networks).await?)
        .await
        .is_err()
    {
        return Ok(());
    }
    // Level-triggered: besides the events, the whole list now and then, so a missed
    // event heals by itself.
    let mut resync = tokio::time::interval(every);
    resync.tick().await;
    loop {
        let update = tokio::select! {
            event = events.next() => match event {
                Some(event) => on_event(docker, &event?, &mut networks).await?,
                None => return Ok(()),
            },
            _ = resync.tick() => Some(snapshot(docker, &mut networks).await?),
        };
        if let Some(update) = update
            && tx.send(update).await.is_err()
        {
            return Ok(());
        }
    }
}

/// Every running container, as Docker says now.
async fn snapshot(
    docker: &Docker,
    networks: &mut BTreeMap<String, (String, u32)>,
) -> Result<Update, bollard::errors::Error> {
    let running = docker
        .list_containers(Some(ListContainersOptions::default()))
        .await?;
    let mut all = Vec::new();
    for c in running {
        if let Some(id) = c.id
            && let Some(l) = learn(docker, &id, networks).await?
        {
            all.push(l);
        }
    }
    Ok(Update::Snapshot(all))
}

/// The update an event calls for. An engine that cannot answer is an error (the watcher
/// reconnects and reconciles), never a reason to forget a container.
async fn on_event(
    docker: &Docker,
    e: &EventMessage,
    networks: &mut BTreeMap<String, (String, u32)>,
) -> Result<Option<Update>, bollard::errors::Error> {
    let Some(actor) = e.actor.as_ref() else {
        return Ok(None);
    };
    let id = match e.typ {
        Some(EventMessageTypeEnum::CONTAINER) => actor.id.clone(),
        Some(EventMessageTypeEnum::NETWORK) => actor
            .attributes
            .as_ref()
            .and_then(|a| a.get("container"))
            .cloned(),
        _ => None,
    };
    let Some(id) = id else {
        return Ok(None);
    };
    Ok(match e.action.as_deref() {
        // Only a container that ended leaves. A signal (`kill`, which `die` follows when
        // it ends the process) or `pause` leaves its network and ports as they are.
        Some("die" | "stop" | "destroy") => Some(Update::Gone { id }),
        Some("start" | "restart" | "unpause" | "connect" | "disconnect" | "rename") => {
            Some(match learn(docker, &id, networks).await? {
                Some(l) => Update::Upsert(l),
                None => Update::Gone { id },
            })
        }
        _ => None,
    })
}

/// Inspect a container and find its bridges and host-side veths. Ok(None): it is gone
/// or not running.
async fn learn(
    docker: &Docker,
    id: &str,
    networks: &mut BTreeMap<String, (String, u32)>,
) -> Result<Option<Learned>, bollard::errors::Error> {
    let inspect = match docker.inspect_container(id, None).await {
        Ok(i) => i,
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let Some(net) = container_net(&inspect) else {
        return Ok(None);
    };
    let mut wires = Vec::new();
    for a in &net.attachments {
        let (bridge, flags) = if let Some(b) = networks.get(&a.network_id) {
            b.clone()
        } else {
            let n = docker.inspect_network(&a.network_id, None).await?;
            let b = (
                bridge_name(&a.network_id, n.options.as_ref()),
                network_flags(n.internal, n.options.as_ref()),
            );
            networks.insert(a.network_id.clone(), b.clone());
            b
        };
        let veth = match &net.sandbox {
            Some(sandbox) => {
                let (sandbox, mac) = (sandbox.clone(), a.mac.0);
                tokio::task::spawn_blocking(move || veth_in_sandbox(&sandbox, mac))
                    .await
                    .ok()
                    .and_then(|r| r.map_err(|e| debug!(error = %e, "sandbox lookup")).ok())
                    .flatten()
                    .and_then(ifname)
            }
            None => None,
        };
        wires.push(Wire {
            network: a.network.clone(),
            bridge,
            flags,
            veth,
        });
    }
    Ok(Some(Learned { net, wires }))
}
