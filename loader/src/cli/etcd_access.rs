//! The flags that say how to reach etcd securely, shared by `daemon`, `cluster init`
//! and `node ls` (each has an `--etcd`, which they require): named as etcdctl's, with
//! the password never on the command line.
use std::path::PathBuf;

use bpfnet::cluster::{AccessFlags, EtcdAccess, PASSWORD_ENV};

#[derive(clap::Args, Clone, Debug, Default)]
#[expect(
    clippy::struct_field_names,
    reason = "the fields are the --etcd-* flags"
)]
pub(crate) struct EtcdAccessArgs {
    /// The CA bundle (PEM) etcd's server certificate must chain to; required for
    /// https:// endpoints.
    #[arg(long, value_name = "FILE", requires = "etcd")]
    etcd_cacert: Option<PathBuf>,
    /// This node's client certificate (PEM) for etcd's --client-cert-auth; its CN is
    /// the etcd user it acts as when no --etcd-user is given.
    #[arg(long, value_name = "FILE", requires_all = ["etcd_key", "etcd"])]
    etcd_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "etcd_cert")]
    etcd_key: Option<PathBuf>,
    /// The etcd user (password authentication). The password comes from
    /// --etcd-password-file, else from $`BPFNET_ETCD_PASSWORD`, never from the command
    /// line.
    #[arg(long, value_name = "USER", requires = "etcd")]
    etcd_user: Option<String>,
    /// A file whose first line is --etcd-user's password.
    #[arg(long, value_name = "FILE", requires = "etcd_user")]
    etcd_password_file: Option<PathBuf>,
}

impl EtcdAccessArgs {
    /// `endpoints` with these flags, every file read and checked.
    pub(crate) fn access(&self, endpoints: Vec<String>) -> anyhow::Result<EtcdAccess> {
        let flags = AccessFlags {
            endpoints,
            cacert: self.etcd_cacert.clone(),
            cert: self.etcd_cert.clone(),
            key: self.etcd_key.clone(),
            user: self.etcd_user.clone(),
            password_file: self.etcd_password_file.clone(),
        };
        Ok(EtcdAccess::new(&flags, std::env::var(PASSWORD_ENV).ok())?)
    }
}
