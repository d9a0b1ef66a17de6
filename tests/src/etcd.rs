//! A real etcd for the cluster control plane's tests: one member on free ports with a
//! fresh data directory, optionally inside a network namespace. `stop` and `restart`
//! keep its data; drop kills it and removes its files.
use std::{
    fs,
    io::{Read as _, Write as _},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use crate::{leftovers, netns, unique};

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
}

impl EtcdServer {
    /// Start etcd listening on `listen_ip` (inside the named namespace when given) and
    /// wait until it answers.
    pub fn start(listen_ip: IpAddr, netns: Option<&str>) -> Self {
        assert!(
            Path::new(ETCD).exists(),
            "etcd not installed: run cargo xtask setup"
        );
        let dir = std::env::temp_dir().join(unique("etcd"));
        fs::create_dir_all(&dir).expect("etcd test dir");
        let netns = netns.map(String::from);
        let (client_port, peer_port) = in_netns(netns.as_deref(), move || {
            (free_port(listen_ip), free_port(listen_ip))
        });
        let mut etcd = Self {
            child: None,
            dir,
            ip: listen_ip,
            client_port,
            peer_port,
            netns,
        };
        etcd.spawn();
        etcd
    }

    /// Its client URL, `http://IP:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", SocketAddr::new(self.ip, self.client_port))
    }

    /// Kill it (SIGKILL, as a crash); its data stays for `restart`.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: signalling our own child by PID.
            unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
            let _ = child.wait();
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
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log);
        let child = cmd.spawn().expect("etcd starts");
        leftovers::record(child.id());
        self.child = Some(child);
        let addr = SocketAddr::new(self.ip, self.client_port);
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
        let (url, key) = (self.url(), key.to_string());
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
                let mut client = etcd_client::Client::connect([url], None)
                    .await
                    .expect("connect to etcd");
                let now = client.get(key.as_str(), None).await.expect("read the key");
                let revision = now.header().map_or(0, |h| h.revision());
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
        let _ = fs::remove_dir_all(&self.dir);
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
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /health HTTP/1.0\r\nHost: etcd\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.contains("\"health\":\"true\"")
}
