//! etcd's verdict on this node's TLS credentials, asked before the gRPC client connects.
//! Over TLS 1.3 a client finishes its handshake before the server checks the client's
//! certificate, so a refused certificate reaches the gRPC client only as a closed
//! connection, indistinguishable from an etcd going away; here the handshake is made
//! alone and the server's alert, if one comes, is read.
use std::{sync::Arc, time::Duration};

use tokio::{io::AsyncReadExt as _, net::TcpStream};
use tokio_rustls::{
    TlsConnector,
    rustls::{
        ClientConfig, RootCertStore,
        crypto::{CryptoProvider, ring},
        pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject as _},
    },
};
use tracing::debug;

use super::{ClusterError, EtcdAccess, Refusal, access::Tls};

/// How long etcd is given to refuse a client certificate after the handshake.
const VERDICT_WAIT: Duration = Duration::from_secs(1);
/// Longest wait for the TCP connection and the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether the first endpoint accepts this node's TLS credentials, and this node etcd's
/// certificate. Only a refusal is an error: an endpoint that cannot be reached, or
/// plain HTTP, is left to the client.
pub(crate) async fn verdict(access: &EtcdAccess) -> Result<(), ClusterError> {
    let Some(tls) = access.tls() else {
        return Ok(());
    };
    let Some((host, port)) = access.endpoints().first().and_then(|e| host_port(e)) else {
        return Ok(());
    };
    let Some(config) = client_config(tls) else {
        return Ok(());
    };
    let Ok(name) = ServerName::try_from(host.clone()) else {
        return Ok(());
    };
    let connect = async {
        let tcp = TcpStream::connect((host.as_str(), port)).await?;
        TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
    };
    let mut tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, connect).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
            return Err(refused(&e.to_string()));
        }
        Ok(Err(e)) => {
            debug!(error = %e, "no TLS handshake with etcd");
            return Ok(());
        }
        Err(_) => return Ok(()),
    };
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(VERDICT_WAIT, tls.read(&mut byte)).await;
    debug!(?read, "etcd's verdict on this node's certificate");
    match read {
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => Err(refused(&e.to_string())),
        _ => Ok(()),
    }
}

/// The refusal a TLS error stands for, named by who refused whom.
fn refused(error: &str) -> ClusterError {
    let said = error.to_string();
    let refusal = if error.contains("alert") {
        Refusal::ClientCertificate { said }
    } else {
        Refusal::ServerCertificate { said }
    };
    ClusterError::Refused {
        what: "shake hands",
        refusal,
    }
}

/// `host` and `port` of `https://host:port[/...]`.
fn host_port(endpoint: &str) -> Option<(String, u16)> {
    let rest = endpoint.strip_prefix("https://").unwrap_or(endpoint);
    let authority = rest.split('/').next()?;
    let (host, port) = authority.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some((host.to_owned(), port.parse().ok()?))
}

/// A rustls client trusting `ca`, with `identity` as its certificate, as tonic's is.
fn client_config(tls: &Tls) -> Option<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&tls.ca) {
        roots.add(cert.ok()?).ok()?;
    }
    // The provider tonic's client picks: the process's default, else ring.
    let provider = CryptoProvider::get_default().cloned().unwrap_or_else(|| {
        #[expect(
            deprecated,
            reason = "tonic's choice too; post-quantum key exchange is not needed to read an alert"
        )]
        Arc::new(ring::default_provider())
    });
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(roots);
    let mut config = match &tls.identity {
        Some(id) => {
            let chain: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&id.cert).collect();
            builder
                .with_client_auth_cert(chain.ok()?, PrivateKeyDer::from_pem_slice(&id.key).ok()?)
                .ok()?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Some(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_split_into_host_and_port() {
        assert_eq!(
            host_port("https://192.0.2.250:2379"),
            Some(("192.0.2.250".into(), 2379))
        );
        assert_eq!(
            host_port("https://[2001:db8::1]:2379/"),
            Some(("2001:db8::1".into(), 2379))
        );
        assert_eq!(host_port("https://etcd"), None);
    }
}
