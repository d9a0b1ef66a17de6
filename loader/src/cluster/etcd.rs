//! The etcd client as this module uses it: every request under a deadline, so an
//! unreachable etcd is an error rather than a hang.
use std::{future::Future, time::Duration};

use etcd_client::{Client, ConnectOptions};

use super::{ClusterError, EtcdAccess, Refusal};

/// Longest wait for one request's answer.
pub(crate) const RPC_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for a TCP connection to an endpoint.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A client for the etcd cluster `access` names, over TLS and as its user when it says
/// so. It connects lazily: an unreachable etcd shows at the first request; a refused
/// certificate (either way, `handshake.rs`) or password shows here.
pub async fn connect(access: &EtcdAccess) -> Result<Client, ClusterError> {
    // A refused client certificate would only show as a closed connection later.
    super::handshake::verdict(access).await?;
    let options = access.options(
        ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_timeout(RPC_TIMEOUT),
    );
    let endpoints = access.endpoints();
    let connect = async {
        Client::connect(endpoints, Some(options))
            .await
            .map_err(|e| match refusal("authenticate", &e) {
                Some(refusal) => ClusterError::Refused {
                    what: "authenticate",
                    refusal,
                },
                None => ClusterError::Connect {
                    endpoints: endpoints.join(","),
                    error: Box::new(e),
                },
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

/// Whether etcd lets `etcd`'s client in and read `{prefix}/config`: the daemon's check
/// at start, so a refused certificate or password is an error there and then rather
/// than a member retrying forever. An unreachable etcd is an error too; the caller
/// tells them apart ([`ClusterError::is_refusal`]).
pub async fn probe(etcd: &EtcdAccess, prefix: &str) -> Result<(), ClusterError> {
    let mut client = connect(etcd).await?;
    let key = super::keys::Keys::new(prefix).config();
    let count = etcd_client::GetOptions::new().with_count_only();
    call("read the cluster config", client.get(key, Some(count))).await?;
    Ok(())
}

/// Await one etcd request, at most `RPC_TIMEOUT`.
pub(crate) async fn call<T>(
    what: &'static str,
    request: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, ClusterError> {
    match tokio::time::timeout(RPC_TIMEOUT, request).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(classify(what, e)),
        Err(_) => Err(ClusterError::Timeout {
            what,
            after: RPC_TIMEOUT,
        }),
    }
}

/// An etcd client's error as this module reports it: a refusal (of the credentials, the
/// certificate, or a key RBAC does not grant) apart from everything else.
pub(crate) fn classify(what: &'static str, error: etcd_client::Error) -> ClusterError {
    match refusal(what, &error) {
        Some(refusal) => ClusterError::Refused { what, refusal },
        None => ClusterError::Etcd {
            what,
            error: Box::new(error),
        },
    }
}

/// Who refused what, if `error` is a refusal: etcd refusing this node's password, its
/// role's grants or its certificate, or this node refusing etcd's certificate.
pub(crate) fn refusal(what: &'static str, error: &etcd_client::Error) -> Option<Refusal> {
    // gRPC's status codes (tonic's `Code`, by number).
    const INVALID_ARGUMENT: i32 = 3;
    const PERMISSION_DENIED: i32 = 7;
    const FAILED_PRECONDITION: i32 = 9;
    const UNAUTHENTICATED: i32 = 16;
    if let etcd_client::Error::GRpcStatus(status) = error {
        let message = status.message().trim_start_matches("etcdserver: ");
        match i32::from(status.code()) {
            PERMISSION_DENIED => {
                return Some(Refusal::Rbac {
                    what,
                    said: message.to_string(),
                });
            }
            UNAUTHENTICATED | INVALID_ARGUMENT | FAILED_PRECONDITION
                if message.contains("auth") || message.contains("user") =>
            {
                return Some(Refusal::Password {
                    said: message.to_string(),
                });
            }
            _ => {}
        }
    }
    // A TLS failure is deep in the chain.
    let mut source: Option<&dyn std::error::Error> = Some(error);
    while let Some(e) = source {
        let text = e.to_string();
        if text.contains("received fatal alert") {
            return Some(Refusal::ClientCertificate { said: text });
        }
        if text.contains("invalid peer certificate") {
            return Some(Refusal::ServerCertificate { said: text });
        }
        source = e.source();
    }
    None
}
