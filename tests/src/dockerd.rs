//! A real dockerd for the Docker end-to-end tests, inside a test namespace, with its own
//! data root, exec root, socket and bridge address and Docker's NAT turned off (as
//! bpfnet wants it), so it never meets a user's Docker. Removed (containers, daemon,
//! files) on drop.
use std::{
    fs,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use crate::{leftovers, netns::Netns};

/// The client that matches Debian's dockerd (another may come first on PATH).
const DOCKER: &str = "/usr/bin/docker";
/// The image the tests run: busybox-static with httpd, nc and a page to serve.
pub const IMAGE: &str = "bpfnet/busybox";
/// What the image's httpd serves at /.
pub const PAGE: &str = "hello-bpfnet";

pub struct Dockerd {
    child: Child,
    pub socket: PathBuf,
    dir: PathBuf,
    netns_path: String,
    bip: String,
    live_restore: bool,
    /// Docker's own iptables NAT (off while bpfnet does the NAT).
    own_nat: bool,
}

impl Dockerd {
    /// Start dockerd in the namespace at `netns_path`, files under `dir`.
    pub fn start(netns_path: &str, dir: &Path, bip: &str) -> Self {
        Self::start_with(netns_path, dir, bip, false)
    }

    /// `start`, optionally with `--live-restore` (containers outlive dockerd).
    pub fn start_with(netns_path: &str, dir: &Path, bip: &str, live_restore: bool) -> Self {
        let _unused: Result<_, _> = fs::remove_dir_all(dir);
        fs::create_dir_all(dir).expect("dockerd dir");
        let mut d = Self {
            child: Command::new("true").spawn().expect("placeholder process"),
            socket: dir.join("docker.sock"),
            dir: dir.into(),
            netns_path: netns_path.into(),
            bip: bip.into(),
            live_restore,
            own_nat: false,
        };
        d.respawn();
        d.import_image();
        d
    }

    /// (Re)start the daemon process on the same files and wait until it answers.
    pub fn respawn(&mut self) {
        let _unused: Result<_, _> = self.child.wait();
        leftovers::forget(self.child.id());
        fs::write(self.dir.join("daemon.json"), "{}\n").expect("dockerd config");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("dockerd.log"))
            .expect("dockerd log");
        let dir = |sub: &str| self.dir.join(sub).display().to_string();
        self.child = Command::new("nsenter")
            .arg(format!("--net={}", self.netns_path))
            .arg("dockerd")
            .args(["--data-root", &dir("data")])
            .args(["--exec-root", &dir("exec")])
            .args(["--pidfile", &dir("dockerd.pid")])
            // Its own (empty) configuration: a host daemon.json with bpfnet's keys would
            // clash with the flags below and stop it.
            .args(["--config-file", &dir("daemon.json")])
            .args(["-H", &self.host()])
            .args(["--bip", &self.bip])
            .args([
                format!("--iptables={}", self.own_nat),
                format!("--ip-masq={}", self.own_nat),
                "--userland-proxy=false".into(),
            ])
            .args(self.live_restore.then_some("--live-restore"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("dockerd starts (is docker.io installed? `cargo xtask setup`)");
        leftovers::record(self.child.id());
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.docker(&["version"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "dockerd did not answer: {}",
                self.log()
            );
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stop dockerd and start it again with Docker's own iptables NAT, as a host without
    /// bpfnet runs it.
    pub fn respawn_with_own_nat(&mut self) {
        self.stop();
        self.own_nat = true;
        self.respawn();
    }

    /// Stop dockerd (SIGTERM) and wait for it; with live restore its containers go on.
    pub fn stop(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _unused: Result<_, _> =
                rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(100));
        }
        let _unused: Result<_, _> = self.child.kill();
        let _unused: Result<_, _> = self.child.wait();
        leftovers::forget(self.child.id());
    }

    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default()
    }

    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new(DOCKER)
            .args(["-H", &self.host()])
            .args(args)
            .output()
            .expect("docker CLI runs")
    }

    /// Run a docker command that must succeed; its trimmed stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The network namespace of running container `container`, named `name` under
    /// /run/netns (`ip netns attach`), so a test runs sockets in it; dropping it removes
    /// the name only.
    pub fn netns_of(&self, container: &str, name: &str) -> Netns {
        let pid = self.ok(&["inspect", "-f", "{{.State.Pid}}", container]);
        crate::netns::sh(&["ip", "netns", "attach", name, &pid]);
        Netns { name: name.into() }
    }

    /// Container `container`'s address on Docker's default network.
    pub fn ip_of(&self, container: &str) -> std::net::Ipv4Addr {
        let ip = self.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", container]);
        ip.parse()
            .unwrap_or_else(|e| panic!("{container}'s address `{ip}`: {e}"))
    }

    /// busybox-static as an image, built without a registry.
    fn import_image(&self) {
        let root = self.dir.join("rootfs");
        fs::create_dir_all(root.join("bin")).expect("rootfs");
        fs::create_dir_all(root.join("www")).expect("rootfs www");
        fs::copy("/bin/busybox", root.join("bin/busybox"))
            .expect("/bin/busybox (busybox-static; `cargo xtask setup`)");
        for tool in [
            "sh", "nc", "httpd", "sleep", "printf", "cat", "ip", "nslookup",
        ] {
            symlink("busybox", root.join("bin").join(tool)).expect("busybox link");
        }
        fs::write(root.join("www/index.html"), format!("{PAGE}\n")).expect("page");
        let mut tar = Command::new("tar")
            .arg("-C")
            .arg(&root)
            .args(["-c", "."])
            .stdout(Stdio::piped())
            .spawn()
            .expect("tar runs");
        let out = Command::new(DOCKER)
            .args([
                "-H",
                &self.host(),
                "import",
                "-c",
                "ENV PATH=/bin",
                "-",
                IMAGE,
            ])
            .stdin(tar.stdout.take().expect("tar stdout"))
            .output()
            .expect("docker import runs");
        assert!(
            tar.wait().is_ok_and(|s| s.success()),
            "tar of the rootfs failed"
        );
        assert!(
            out.status.success(),
            "docker import: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let ids = self.docker(&["ps", "-aq"]);
        let ids = String::from_utf8_lossy(&ids.stdout).to_string();
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids);
            let _ = self.docker(&args);
        }
        // SIGTERM lets dockerd stop its containerd too.
        self.stop();
        // dockerd leaves its data root bind-mounted over itself, and a restart more.
        leftovers::unmount_under(&self.dir);
        let _unused: Result<_, _> = fs::remove_dir_all(&self.dir);
    }
}
