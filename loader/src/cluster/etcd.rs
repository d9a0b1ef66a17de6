//! The etcd client as this module uses it: every request under a deadline, so an
//! unreachable etcd is an error rather than a hang.
use std::{future::Future, time::Duration};

use etcd_client::{Client, ConnectOptions};

use super::ClusterError;

/// Longest wait for one request's answer.
pub(crate) const RPC_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for a TCP connection to an endpoint.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A client for the etcd cluster at `endpoints` (`http://host:port`, or `host:port`). It
/// connects lazily: an unreachable etcd shows at the first request.
pub async fn connect(endpoints: &[String]) -> Result<Client, ClusterError> {
    let options = ConnectOptions::new()
        .with_connect_timeout(CONNECT_TIMEOUT)
        .with_timeout(RPC_TIMEOUT);
    let connect = async {
        Client::connect(endpoints, Some(options))
            .await
            .map_err(|e| ClusterError::Connect {
                endpoints: endpoints.join(","),
                error: Box::new(e),
            })
    };
    match tokio::time::timeout(RPC_TIMEOUT, connect).await {
        Ok(r) => r,
        Err(_) => Err(ClusterError::Timeout {
            what: "connect",
            after: RPC_TIMEOUT,
        }),
    }
}

/// Await one etcd request, at most `RPC_TIMEOUT`.
pub(crate) async fn call<T>(
    what: &'static str,
    request: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, ClusterError> {
    match tokio::time::timeout(RPC_TIMEOUT, request).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(ClusterError::Etcd {
            what,
            error: Box::new(e),
        }),
        Err(_) => Err(ClusterError::Timeout {
            what,
            after: RPC_TIMEOUT,
        }),
    }
}
