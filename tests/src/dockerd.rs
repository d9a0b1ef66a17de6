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
}

impl Dockerd {
    /// Start dockerd in the namespace at `netns_path`, files under `dir`.
    pub fn start(netns_path: &str, dir: &Path, bip: &str) -> Self {
        let _ = fs::remove_dir_all(dir);
        fs::create_dir_all(dir).expect("dockerd dir");
        let socket = dir.join("docker.sock");
        let log = fs::File::create(dir.join("dockerd.log")).expect("dockerd log");
        let child = Command::new("nsenter")
            .arg(format!("--net={netns_path}"))
            .arg("dockerd")
            .args(["--data-root", &dir.join("data").display().to_string()])
            .args(["--exec-root", &dir.join("exec").display().to_string()])
            .args(["--pidfile", &dir.join("dockerd.pid").display().to_string()])
            .args(["-H", &format!("unix://{}", socket.display())])
            .args(["--bip", bip])
            .args([
                "--iptables=false",
                "--ip-masq=false",
                "--userland-proxy=false",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("dockerd starts (is docker.io installed? `cargo xtask setup`)");
        let d = Self {
            child,
            socket,
            dir: dir.into(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !d.docker(&["version"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "dockerd did not answer: {}",
                d.log()
            );
            thread::sleep(Duration::from_millis(200));
        }
        d.import_image();
        d
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

    /// busybox-static as an image, built without a registry.
    fn import_image(&self) {
        let root = self.dir.join("rootfs");
        fs::create_dir_all(root.join("bin")).expect("rootfs");
        fs::create_dir_all(root.join("www")).expect("rootfs www");
        fs::copy("/bin/busybox", root.join("bin/busybox"))
            .expect("/bin/busybox (busybox-static; `cargo xtask setup`)");
        for tool in ["sh", "nc", "httpd", "sleep", "printf", "cat", "ip"] {
            symlink("busybox", root.join("bin").join(tool)).expect("busybox link");
        }
        fs::write(root.join("www/index.html"), format!("{PAGE}\n")).expect("page");
        let tar = Command::new("tar")
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
            .stdin(tar.stdout.expect("tar stdout"))
            .output()
            .expect("docker import runs");
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
        // SAFETY: signalling our own child by PID.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}
