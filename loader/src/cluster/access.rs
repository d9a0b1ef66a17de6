//! How bpfnet reaches etcd: its endpoints, the TLS files (the CA that signed etcd's
//! certificate, a client certificate and key etcd knows this node by) and a user and
//! password, read and checked once, before any connection.
use std::{
    fmt, fs, io,
    path::{Path, PathBuf},
};

use etcd_client::{Certificate, ConnectOptions, Identity, TlsOptions};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};

/// The environment variable the etcd password is read from when no
/// `--etcd-password-file` is given.
pub const PASSWORD_ENV: &str = "BPFNET_ETCD_PASSWORD";

/// What the command line says about reaching etcd, before any file is read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccessFlags {
    /// `--etcd`: client URLs (`https://host:port`, `http://host:port` or `host:port`).
    pub endpoints: Vec<String>,
    /// `--etcd-cacert`: the CA bundle etcd's server certificate must chain to.
    pub cacert: Option<PathBuf>,
    /// `--etcd-cert`: this client's certificate.
    pub cert: Option<PathBuf>,
    /// `--etcd-key`: its private key.
    pub key: Option<PathBuf>,
    /// `--etcd-user`: the etcd user (password authentication).
    pub user: Option<String>,
    /// `--etcd-password-file`: the user's password, on the file's first line.
    pub password_file: Option<PathBuf>,
}

/// A way to reach etcd that was checked: the files are read and hold what they should.
#[derive(Clone, PartialEq, Eq)]
pub struct EtcdAccess {
    endpoints: Vec<String>,
    tls: Option<Tls>,
    auth: Option<(String, String)>,
}

/// The TLS files' contents (PEM).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Tls {
    /// The CA bundle etcd's certificate must chain to.
    pub(crate) ca: Vec<u8>,
    /// This client's certificate and key.
    pub(crate) identity: Option<ClientIdentity>,
}

/// A client certificate chain and its key (PEM).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ClientIdentity {
    pub(crate) cert: Vec<u8>,
    pub(crate) key: Vec<u8>,
}

/// A flag combination or file that cannot reach etcd.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// No `--etcd` endpoint.
    #[error("no etcd endpoint")]
    NoEndpoint,
    /// Some endpoints are `https://`, others not.
    #[error("etcd endpoints `{endpoints}` mix https:// and http://: use one scheme")]
    MixedSchemes {
        /// The endpoints, comma-separated.
        endpoints: String,
    },
    /// An `https://` endpoint without a CA to check etcd's certificate by.
    #[error(
        "etcd endpoint `{endpoint}` is https:// but no --etcd-cacert says which CA signs etcd's certificate"
    )]
    HttpsWithoutCa {
        /// The endpoint.
        endpoint: String,
    },
    /// TLS files given for an `http://` endpoint.
    #[error(
        "--etcd-cacert, --etcd-cert and --etcd-key are for https:// endpoints, and `{endpoint}` is http://"
    )]
    TlsOnHttp {
        /// The endpoint.
        endpoint: String,
    },
    /// A certificate without its key or the other way round.
    #[error("{given} is given without {missing}")]
    HalfIdentity {
        /// The flag given.
        given: &'static str,
        /// The flag missing.
        missing: &'static str,
    },
    /// A file that cannot be read.
    #[error("cannot read {what} `{path}`: {error}")]
    Unreadable {
        /// Which file (the flag).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why (in the message only: a chain would print it twice).
        error: io::Error,
    },
    /// A file that does not hold what it should.
    #[error("{what} `{path}` holds no PEM {expected}")]
    NotPem {
        /// Which file.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What it should hold.
        expected: &'static str,
    },
    /// `--etcd-user USER:PASSWORD`: the password would show in the process list.
    #[error(
        "--etcd-user takes a user name only: the password goes in --etcd-password-file or \
         ${PASSWORD_ENV}, not on the command line"
    )]
    PasswordOnCommandLine,
    /// A user without a password.
    #[error("etcd user `{user}` has no password: give --etcd-password-file or ${PASSWORD_ENV}")]
    NoPassword {
        /// The user.
        user: String,
    },
    /// A password without a user.
    #[error("--etcd-password-file is given without --etcd-user")]
    PasswordWithoutUser,
    /// An empty user name.
    #[error("--etcd-user is empty")]
    EmptyUser,
}

impl EtcdAccess {
    /// Plain `http://` endpoints, no TLS, no user (tests, and etcd on localhost).
    pub fn plain(endpoints: Vec<String>) -> Self {
        Self {
            endpoints,
            tls: None,
            auth: None,
        }
    }

    /// Read and check what `flags` name; `env_password` is [`PASSWORD_ENV`]'s value,
    /// used when no password file is given.
    pub fn new(flags: &AccessFlags, env_password: Option<String>) -> Result<Self, AccessError> {
        let endpoints = flags.endpoints.clone();
        let Some(first) = endpoints.first() else {
            return Err(AccessError::NoEndpoint);
        };
        let https = |e: &str| e.starts_with("https://");
        if endpoints.iter().any(|e| https(e) != https(first)) {
            return Err(AccessError::MixedSchemes {
                endpoints: endpoints.join(","),
            });
        }
        // A certificate needs its key and the other way round, before any file is read.
        match (&flags.cert, &flags.key) {
            (Some(_), None) => {
                return Err(AccessError::HalfIdentity {
                    given: "--etcd-cert",
                    missing: "--etcd-key",
                });
            }
            (None, Some(_)) => {
                return Err(AccessError::HalfIdentity {
                    given: "--etcd-key",
                    missing: "--etcd-cert",
                });
            }
            _ => {}
        }
        let any_tls = flags.cacert.is_some() || flags.cert.is_some() || flags.key.is_some();
        if let Some(plain) = endpoints.iter().find(|e| e.starts_with("http://"))
            && any_tls
        {
            return Err(AccessError::TlsOnHttp {
                endpoint: plain.clone(),
            });
        }
        let tls = match &flags.cacert {
            Some(ca) => Some(Tls {
                ca: read_certs("--etcd-cacert", ca)?,
                identity: identity(flags)?,
            }),
            None if https(first) => {
                return Err(AccessError::HttpsWithoutCa {
                    endpoint: first.clone(),
                });
            }
            None if any_tls => {
                // A client certificate without a CA: etcd's own is not checked by anything.
                return Err(AccessError::HalfIdentity {
                    given: if flags.cert.is_some() {
                        "--etcd-cert"
                    } else {
                        "--etcd-key"
                    },
                    missing: "--etcd-cacert",
                });
            }
            None => None,
        };
        Ok(Self {
            endpoints,
            tls,
            auth: auth(flags, env_password)?,
        })
    }

    /// The endpoints.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// Why etcd's traffic is not protected, if it is not: plain HTTP, or TLS without
    /// any client identity.
    pub fn weakness(&self) -> Option<String> {
        let endpoints = self.endpoints.join(",");
        match (&self.tls, &self.auth) {
            (None, _) => Some(format!(
                "etcd traffic to {endpoints} is unauthenticated and unencrypted (http://): any \
                 host that reaches etcd can register a node; use https:// with --etcd-cacert, \
                 --etcd-cert and --etcd-key"
            )),
            (Some(Tls { identity: None, .. }), None) => Some(format!(
                "etcd at {endpoints} does not know who this node is (no client certificate, no \
                 user): give --etcd-cert and --etcd-key"
            )),
            _ => None,
        }
    }

    /// The TLS files' contents, over TLS.
    pub(crate) fn tls(&self) -> Option<&Tls> {
        self.tls.as_ref()
    }

    /// The client's options: TLS and the user, on top of `base`.
    pub(crate) fn options(&self, base: ConnectOptions) -> ConnectOptions {
        let mut options = base;
        if let Some(tls) = &self.tls {
            let mut config = TlsOptions::new().ca_certificate(Certificate::from_pem(&tls.ca));
            if let Some(id) = &tls.identity {
                config = config.identity(Identity::from_pem(&id.cert, &id.key));
            }
            options = options.with_tls(config);
        }
        if let Some((user, password)) = &self.auth {
            // etcd's tokens expire (5 minutes by default): a long session gets a new one.
            options = options
                .with_user(user.clone(), password.clone())
                .with_auto_token_refresh(true);
        }
        options
    }
}

impl fmt::Debug for EtcdAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdAccess")
            .field("endpoints", &self.endpoints)
            .field("tls", &self.tls.is_some())
            .field(
                "client_cert",
                &self.tls.as_ref().is_some_and(|t| t.identity.is_some()),
            )
            .field("user", &self.auth.as_ref().map(|(u, _)| u))
            .finish()
    }
}

fn identity(flags: &AccessFlags) -> Result<Option<ClientIdentity>, AccessError> {
    match (&flags.cert, &flags.key) {
        (Some(cert), Some(key)) => Ok(Some(ClientIdentity {
            cert: read_certs("--etcd-cert", cert)?,
            key: read_key(key)?,
        })),
        // The pairs were checked first.
        _ => Ok(None),
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, AccessError> {
    fs::read(path).map_err(|error| AccessError::Unreadable {
        what,
        path: path.into(),
        error,
    })
}

/// A file of PEM certificates, at least one of them valid.
fn read_certs(what: &'static str, path: &Path) -> Result<Vec<u8>, AccessError> {
    let pem = read(what, path)?;
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem).collect();
    match certs {
        Ok(c) if !c.is_empty() => Ok(pem),
        _ => Err(AccessError::NotPem {
            what,
            path: path.into(),
            expected: "certificate",
        }),
    }
}

/// A file with a PEM private key (PKCS#8, PKCS#1 or SEC1).
fn read_key(path: &Path) -> Result<Vec<u8>, AccessError> {
    let what = "--etcd-key";
    let pem = read(what, path)?;
    match PrivateKeyDer::from_pem_slice(&pem) {
        Ok(_) => Ok(pem),
        Err(_) => Err(AccessError::NotPem {
            what,
            path: path.into(),
            expected: "private key",
        }),
    }
}

fn auth(
    flags: &AccessFlags,
    env_password: Option<String>,
) -> Result<Option<(String, String)>, AccessError> {
    let Some(user) = &flags.user else {
        return match flags.password_file {
            Some(_) => Err(AccessError::PasswordWithoutUser),
            None => Ok(None),
        };
    };
    if user.contains(':') {
        return Err(AccessError::PasswordOnCommandLine);
    }
    if user.is_empty() {
        return Err(AccessError::EmptyUser);
    }
    let password = match &flags.password_file {
        Some(path) => {
            let text = read("--etcd-password-file", path)?;
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned()
        }
        None => env_password.unwrap_or_default(),
    };
    if password.is_empty() {
        return Err(AccessError::NoPassword { user: user.clone() });
    }
    Ok(Some((user.clone(), password)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(endpoint: &str) -> AccessFlags {
        AccessFlags {
            endpoints: vec![endpoint.into()],
            ..AccessFlags::default()
        }
    }

    #[test]
    fn plain_http_works_and_is_called_weak() {
        let a = EtcdAccess::new(&flags("http://192.0.2.1:2379"), None).expect("plain");
        assert!(a.weakness().expect("weak").contains("unencrypted"));
    }

    #[test]
    fn https_needs_a_ca_and_tls_files_need_https() {
        let e = EtcdAccess::new(&flags("https://192.0.2.1:2379"), None).expect_err("no CA");
        assert!(matches!(e, AccessError::HttpsWithoutCa { .. }), "{e}");
        let mut f = flags("http://192.0.2.1:2379");
        f.cacert = Some("/nonexistent/ca.pem".into());
        let e = EtcdAccess::new(&f, None).expect_err("TLS on http");
        assert!(matches!(e, AccessError::TlsOnHttp { .. }), "{e}");
        let mut f = flags("https://192.0.2.1:2379");
        f.endpoints.push("http://192.0.2.2:2379".into());
        let e = EtcdAccess::new(&f, None).expect_err("mixed");
        assert!(matches!(e, AccessError::MixedSchemes { .. }), "{e}");
    }

    #[test]
    fn a_missing_or_wrong_file_is_named() {
        let dir = std::env::temp_dir().join(format!("bpfnet-access-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("dir");
        let junk = dir.join("junk.pem");
        fs::write(&junk, "not a certificate\n").expect("write");
        let mut f = flags("https://192.0.2.1:2379");
        f.cacert = Some(dir.join("missing.pem"));
        let e = EtcdAccess::new(&f, None).expect_err("missing");
        assert!(
            e.to_string().contains("--etcd-cacert") && e.to_string().contains("missing.pem"),
            "{e}"
        );
        f.cacert = Some(junk.clone());
        let e = EtcdAccess::new(&f, None).expect_err("junk");
        assert!(
            matches!(
                e,
                AccessError::NotPem {
                    what: "--etcd-cacert",
                    ..
                }
            ),
            "{e}"
        );
        f.cert = Some(junk);
        let e = EtcdAccess::new(&f, None).expect_err("half");
        assert!(matches!(e, AccessError::HalfIdentity { .. }), "{e}");
        let _unused: Result<_, _> = fs::remove_dir_all(&dir);
    }

    #[test]
    fn passwords_come_from_a_file_or_the_environment_never_the_command_line() {
        let mut f = flags("http://192.0.2.1:2379");
        f.user = Some("node-a:secret".into());
        assert!(matches!(
            EtcdAccess::new(&f, None),
            Err(AccessError::PasswordOnCommandLine)
        ));
        f.user = Some("node-a".into());
        assert!(matches!(
            EtcdAccess::new(&f, None),
            Err(AccessError::NoPassword { .. })
        ));
        let a = EtcdAccess::new(&f, Some("secret".into())).expect("from the environment");
        assert_eq!(a.auth, Some(("node-a".into(), "secret".into())));
        assert!(!format!("{a:?}").contains("secret"), "{a:?}");
        f.user = None;
        f.password_file = Some("/nonexistent".into());
        assert!(matches!(
            EtcdAccess::new(&f, None),
            Err(AccessError::PasswordWithoutUser)
        ));
    }
}
