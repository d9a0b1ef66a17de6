//! `bpfnet daemon --metrics ADDR:PORT`: Prometheus metrics at `GET /metrics`, served by
//! a task of its own. Each scrape asks the daemon's main loop for one snapshot
//! (`Request::Metrics`) through the control API's channel, as a CLI call would: the
//! HTTP side never touches the datapath, and a slow or hostile client never holds the
//! main loop.
mod http;
mod render;

use std::{io, net::SocketAddr, sync::Arc, time::Duration};

pub use render::render;
use tokio::{
    net::TcpListener,
    sync::{Semaphore, mpsc},
};
use tracing::{debug, info, warn};

use crate::api::server::Call;

/// Connections served at once; one beyond them is closed unanswered. Each has
/// `http::READ_TIMEOUT` to send its request, so idle or slow clients hold a slot
/// seconds at most: to keep every slot taken a client must open this many
/// connections every few seconds, from the host's own file descriptors' worth.
const MAX_CONNECTIONS: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot serve metrics on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
}

/// Listen on `addr` (in the daemon's network namespace).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, MetricsError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Bind { addr, source })?;
    info!(%addr, "serving Prometheus metrics at /metrics");
    Ok(listener)
}

/// Answer scrapes forever, each connection in a task of its own, at most
/// `MAX_CONNECTIONS` at once.
pub async fn serve(listener: TcpListener, calls: mpsc::Sender<Call>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                if let Ok(slot) = Arc::clone(&slots).try_acquire_owned() {
                    let calls = calls.clone();
                    tokio::spawn(async move {
                        http::connection(stream, calls).await;
                        drop(slot);
                    });
                } else {
                    debug!(%peer, "too many metrics connections; closing this one");
                }
            }
            Err(e) => {
                // Out of file descriptors, say: wait rather than spin.
                warn!(error = %e, "metrics accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
