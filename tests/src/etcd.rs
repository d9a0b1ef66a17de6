//! A real etcd for the cluster control plane's tests: one member on free ports with a
//! fresh data directory, optionally inside a network namespace, over plain HTTP or over
//! TLS with client certificates (`start_tls`) and then RBAC (`enable_rbac`). `stop` and
//! `restart` keep its data; drop kills it and removes its files.
use std::{
    fs,
    io::{Read as _, Write as _},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use bpfnet::cluster::{AccessFlags, EtcdAccess};
use etcd_client::{Client, Permission};

use crate::{
    leftovers, netns,
    pki::{ClientCert, Pki},
    unique,
};

/// The etcd superuser's password (its certificate, CN `root`, works too).
pub const ROOT_PASSWORD: &str = "root-secret";

/// Debian's etcd-server.
const ETCD: &str = "/usr/bin/etcd";
/// Longest wait for etcd to answer after a (re)start.
const READY: Duration = Duration::from_secs(30);

/// One etcd member, killed by PID (never by name) when stopped or dropped.
pub struct EtcdServer {
    child: Option<Child>,
    /// Its files: `data/` and `etcd.log`.
    dir: PathBuf,
    ip: IpAddr,
    client_port: u16,
    peer_port: u16,
    netns: Option<String>,
    /// TLS: the certificates, the CA etcd trusts clients by now, and a plain-HTTP
    /// port for `/health`.
    tls: Option<Tls>,
}

struct Tls {
    pki: Pki,
    trusted: PathBuf,
    metrics_port: u16,
}

impl EtcdServer {
    /// Start etcd listening on `listen_ip` (inside the named namespace when given) and
    /// wait until it answers.
    pub fn start(listen_ip: IpAddr, netns: Option<&str>) -> Self {
        Self::start_with(listen_ip, netns, false)
    }

    /// `start` over TLS: an https:// client URL, etcd's certificate for `listen_ip`,
    /// and `--client-cert-auth` with the test CA (`pki()`).
    pub fn start_tls(listen_ip: IpAddr, netns: Option<&str>) -> Self {
        Self::start_with(listen_ip, netns, true)
    }

    fn start_with(listen_ip: IpAddr, netns: Option<&str>, tls: bool) -> Self {
        assert!(
            Path::new(ETCD).exists(),
            "etcd not installed: run cargo xtask setup"
        );
        let dir = std::env::temp_dir().join(unique("etcd"));
        fs::create_dir_all(&dir).expect("etcd test dir");
        let netns = netns.map(String::from);
        let (client_port, peer_port, metrics_port) = in_netns(netns.as_deref(), move || {
            (
                free_port(listen_ip),
                free_port(listen_ip),
                free_port(listen_ip),
            )
        });
        let tls = tls.then(|| {
            let pki = Pki::new(listen_ip);
            Tls {
                trusted: pki.ca(),
                pki,
                metrics_port,
            }
        });
        let mut etcd = Self {
            child: None,
            dir,
            ip: listen_ip,
            client_port,
            peer_port,
            netns,
            tls,
        };
        etcd.spawn();
        etcd
    }

    /// Its client URL, `http://IP:PORT` (`https://` over TLS).
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", SocketAddr::new(self.ip, self.client_port))
    }

    /// The certificates of a TLS etcd.
    pub fn pki(&self) -> &Pki {
        &self.tls.as_ref().expect("a TLS etcd").pki
    }

    /// Its URL and, over TLS, the CA to check it by: what every client needs.
    pub fn flags(&self) -> AccessFlags {
        AccessFlags {
            endpoints: vec![self.url()],
            cacert: self.tls.as_ref().map(|t| t.pki.ca()),
            ..AccessFlags::default()
        }
    }

    /// Access as the superuser: plain, or over TLS with the `root` client certificate.
    pub fn access(&self) -> EtcdAccess {
        match &self.tls {
            None => EtcdAccess::plain(vec![self.url()]),
            Some(t) => self.access_as(&t.pki.client("root")),
        }
    }

    /// Access over TLS with client certificate `cert`.
    pub fn access_as(&self, cert: &ClientCert) -> EtcdAccess {
        let flags = AccessFlags {
            cert: Some(cert.cert.clone()),
            key: Some(cert.key.clone()),
            ..self.flags()
        };
        EtcdAccess::new(&flags, None).expect("valid test TLS files")
    }

    /// Restart trusting only client certificates signed by `ca` (a revoked client CA).
    pub fn trust(&mut self, ca: PathBuf) {
        self.tls.as_mut().expect("a TLS etcd").trusted = ca;
        self.restart();
    }

    /// Turn on authentication with RBAC: the `root` user, and for each `(user,
    /// password)` a role of the same name that reads `{prefix}/`, writes
    /// `{prefix}/nodes/{user}` and writes under `{prefix}/subnets/` (what
    /// README's "Across hosts" tells operators to grant a node).
    pub fn enable_rbac(&self, prefix: &str, nodes: &[(&str, &str)]) {
        let (prefix, nodes): (String, Vec<(String, String)>) = (
            prefix.trim_end_matches('/').into(),
            nodes
                .iter()
                .map(|(u, p)| ((*u).into(), (*p).into()))
                .collect(),
        );
        self.with_client(move |mut c| async move {
            c.user_add("root", ROOT_PASSWORD, None)
                .await
                .expect("add root");
            c.user_grant_role("root", "root").await.expect("root role");
            for (user, password) in nodes {
                c.role_add(user.as_str()).await.expect("add a node role");
                for perm in [
                    Permission::read(format!("{prefix}/")).with_prefix(),
                    Permission::read_write(format!("{prefix}/nodes/{user}")),
                    Permission::read_write(format!("{prefix}/subnets/")).with_prefix(),
                ] {
                    c.role_grant_permission(user.as_str(), perm)
                        .await
                        .expect("grant a node role a key");
                }
                c.user_add(user.as_str(), password.as_str(), None)
                    .await
                    .expect("add a node user");
                c.user_grant_role(user.as_str(), user.as_str())
                    .await
                    .expect("give the node its role");
            }
            c.auth_enable().await.expect("enable auth");
        });
    }

    /// Put `key` = `value` as `access` says (with the lease of `lease_ttl` seconds when
    /// given): etcd's answer, an error text when it refuses.
    pub fn put_as(
        &self,
        access: &EtcdAccess,
        key: &str,
        value: &str,
        lease_ttl: Option<i64>,
    ) -> Result<(), String> {
        let (key, value) = (key.to_owned(), value.to_owned());
        let access = access.clone();
        self.in_runtime(move || async move {
            let mut c = bpfnet::cluster::connect(&access)
                .await
                .map_err(|e| e.to_string())?;
            let opts = match lease_ttl {
                Some(ttl) => {
                    let lease = c.lease_grant(ttl, None).await.map_err(|e| e.to_string())?;
                    Some(etcd_client::PutOptions::new().with_lease(lease.id()))
                }
                None => None,
            };
            c.put(key, value, opts)
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        })
    }

    /// Run `f` with a client (as root, before RBAC: as anyone) on a runtime inside the
    /// namespace.
    fn with_client<F: Future<Output = ()>>(&self, f: impl FnOnce(Client) -> F + Send + 'static) {
        let access = self.access();
        self.in_runtime(move || async move {
            let client = bpfnet::cluster::connect(&access)
                .await
                .expect("connect to etcd");
            f(client).await;
        });
    }

    /// Run the future `f` makes on a runtime of its own, inside the namespace.
    fn in_runtime<T: Send + 'static, F: Future<Output = T>>(
        &self,
        f: impl FnOnce() -> F + Send + 'static,
    ) -> T {
        in_netns(self.netns.as_deref(), move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for etcd requests")
                .block_on(f())
        })
    }

    /// Kill it (SIGKILL, as a crash); its data stays for `restart`.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _unused: Result<_, _> = child.kill();
            let _unused: Result<_, _> = child.wait();
            leftovers::forget(child.id());
        }
    }

    /// Start it again on the same data and ports, and wait until it answers.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    fn spawn(&mut self) {
        let url = self.url();
        let peer = format!("http://{}", SocketAddr::new(self.ip, self.peer_port));
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("etcd.log"))
            .expect("etcd log");
        let mut cmd = match &self.netns {
            // `ip netns exec` execs etcd itself: the child's PID is etcd's.
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, ETCD]);
                c
            }
            None => Command::new(ETCD),
        };
        cmd.args(["--name", "test"])
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .args(["--listen-client-urls", &url])
            .args(["--advertise-client-urls", &url])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("test={peer}")])
            .args(["--initial-cluster-state", "new"])
            .args(["--logger", "zap", "--log-outputs", "stderr"]);
        if let Some(t) = &self.tls {
            let server = t.pki.server();
            let metrics = format!("http://{}", SocketAddr::new(self.ip, t.metrics_port));
            cmd.arg("--cert-file")
                .arg(server.cert)
                .arg("--key-file")
                .arg(server.key)
                .arg("--trusted-ca-file")
                .arg(&t.trusted)
                .arg("--client-cert-auth")
                .args(["--listen-metrics-urls", &metrics]);
        }
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log);
        let child = cmd.spawn().expect("etcd starts");
        leftovers::record(child.id());
        self.child = Some(child);
        // Over TLS, `/health` is asked on the plain metrics port.
        let port = self
            .tls
            .as_ref()
            .map_or(self.client_port, |t| t.metrics_port);
        let addr = SocketAddr::new(self.ip, port);
        let deadline = Instant::now() + READY;
        while !in_netns(self.netns.as_deref(), move || healthy(addr)) {
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "etcd did not answer at {url} ({exited:?}):\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Watch `key` from now on: the handle gives the moment etcd reports its next put
    /// (a node's registration), or None when none comes within `within`. Returns once
    /// the starting revision is read, so no later put is missed.
    pub fn next_put(&self, key: &str, within: Duration) -> thread::JoinHandle<Option<Instant>> {
        let (access, key) = (self.access(), key.to_string());
        let path = self.netns.as_ref().map(|ns| format!("/run/netns/{ns}"));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let handle = thread::spawn(move || {
            if let Some(path) = path {
                netns::enter(&path);
            }
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the etcd watch");
            rt.block_on(async move {
                let mut client = bpfnet::cluster::connect(&access)
                    .await
                    .expect("connect to etcd");
                let now = client.get(key.as_str(), None).await.expect("read the key");
                let revision = now
                    .header()
                    .map_or(0, etcd_client::ResponseHeader::revision);
                ready_tx.send(()).expect("the caller waits");
                let opts = etcd_client::WatchOptions::new().with_start_revision(revision + 1);
                let mut watch = client
                    .watch(key.as_str(), Some(opts))
                    .await
                    .expect("watch the key");
                let put = async {
                    while let Some(resp) = watch.message().await.expect("the watch answers") {
                        if resp
                            .events()
                            .iter()
                            .any(|e| e.event_type() == etcd_client::EventType::Put)
                        {
                            return Instant::now();
                        }
                    }
                    panic!("the watch on {key} ended");
                };
                tokio::time::timeout(within, put).await.ok()
            })
        });
        ready_rx
            .recv()
            .expect("the watch thread read the starting revision");
        handle
    }

    /// What etcd logged.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default()
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.stop();
        let _unused: Result<_, _> = fs::remove_dir_all(&self.dir);
    }
}

/// Run `f` on a thread inside the named namespace, or here.
fn in_netns<T: Send + 'static>(ns: Option<&str>, f: impl FnOnce() -> T + Send + 'static) -> T {
    let Some(ns) = ns else {
        return f();
    };
    let path = format!("/run/netns/{ns}");
    thread::spawn(move || {
        netns::enter(&path);
        f()
    })
    .join()
    .expect("thread inside the namespace panicked")
}

/// A port nothing listens on at `ip` now.
fn free_port(ip: IpAddr) -> u16 {
    TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|e| panic!("no free port on {ip}: {e}"))
        .port()
}

/// Whether etcd's `/health` at `addr` says it is healthy (it has a leader).
fn healthy(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _unused: Result<_, _> = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /health HTTP/1.0\r\nHost: etcd\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = String::new();
    let _unused: Result<_, _> = s.read_to_string(&mut answer);
    answer.contains("\"health\":\"true\"")
}
