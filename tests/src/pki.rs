//! Certificates for a TLS etcd, made with `openssl` into a temporary directory (removed
//! on drop): a CA, etcd's server certificate for its listen address, client
//! certificates whose CN is the etcd user, and a foreign CA that signs client
//! certificates etcd must refuse.
use std::{
    fs,
    net::IpAddr,
    path::{Path, PathBuf},
    process::Command,
};

use crate::unique;

/// A client certificate and its key.
#[derive(Clone, Debug)]
pub struct ClientCert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The test's certificate authorities and what they signed.
pub struct Pki {
    dir: PathBuf,
}

impl Pki {
    /// A CA, a server certificate for `server_ip` (in its subjectAltName) and a foreign
    /// CA.
    pub fn new(server_ip: IpAddr) -> Self {
        let dir = std::env::temp_dir().join(unique("pki"));
        fs::create_dir_all(&dir).expect("pki dir");
        let pki = Self { dir };
        for ca in ["ca", "foreign-ca"] {
            pki.openssl(&[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN=bpfnet test {ca}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.pem"),
            ]);
        }
        // etcd's gateway dials etcd itself with this certificate: a client's use too.
        pki.sign(
            "ca",
            "server",
            "etcd",
            &format!("subjectAltName=IP:{server_ip}\nextendedKeyUsage=serverAuth,clientAuth"),
        );
        pki
    }

    /// The CA etcd trusts and whose signature its server certificate carries.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A CA etcd does not trust.
    pub fn foreign_ca(&self) -> PathBuf {
        self.dir.join("foreign-ca.pem")
    }

    /// etcd's server certificate and key.
    pub fn server(&self) -> ClientCert {
        self.files("server")
    }

    /// A client certificate for etcd user `cn`, signed by the CA.
    pub fn client(&self, cn: &str) -> ClientCert {
        self.sign(
            "ca",
            &format!("client-{cn}"),
            cn,
            "extendedKeyUsage=clientAuth",
        )
    }

    /// A client certificate for etcd user `cn`, signed by the foreign CA.
    pub fn foreign_client(&self, cn: &str) -> ClientCert {
        self.sign(
            "foreign-ca",
            &format!("foreign-{cn}"),
            cn,
            "extendedKeyUsage=clientAuth",
        )
    }

    /// A file in the directory with `contents` (e.g. a password file).
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.join(name);
        fs::write(&path, contents).expect("write a pki file");
        path
    }

    fn files(&self, name: &str) -> ClientCert {
        ClientCert {
            cert: self.dir.join(format!("{name}.pem")),
            key: self.dir.join(format!("{name}.key")),
        }
    }

    /// A key and a certificate `name` for `cn`, signed by `ca`, with `extensions`.
    fn sign(&self, ca: &str, name: &str, cn: &str, extensions: &str) -> ClientCert {
        let ext = format!("{name}.ext");
        fs::write(
            self.dir.join(&ext),
            format!(
                "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n{extensions}\n"
            ),
        )
        .expect("extensions file");
        self.openssl(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            &format!("/CN={cn}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-days",
            "2",
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-extfile",
            &ext,
            "-out",
            &format!("{name}.pem"),
        ]);
        self.files(name)
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&self.dir)
            .output()
            .expect("openssl runs (installed with Debian's base)");
        assert!(
            out.status.success(),
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _unused: Result<_, _> = fs::remove_dir_all(&self.dir);
    }
}
