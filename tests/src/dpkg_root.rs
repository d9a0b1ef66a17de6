//! A package installed for real into a scratch root, its maintainer scripts run: dpkg
//! `--root` with `--force-script-chrootless` runs them on this system's shell and tools
//! with `DPKG_ROOT` set, which deb-systemd-helper honours, so they change the scratch
//! root only. Each dpkg call runs in a mount namespace of its own in which systemd
//! seems to run (`/run/systemd/system` exists on a fresh tmpfs), so every start, stop
//! or restart the scripts would do is tried, against `systemctl` and
//! `deb-systemd-invoke` stubs that record their calls; the host's
//! `/etc/systemd/system` and `/var/lib/systemd` are empty tmpfs there, and anything a
//! script writes into them is reported. The host's dpkg database and systemd are never
//! touched.
use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use crate::unique;

/// What runs inside the namespace: `$1...` are dpkg's arguments.
const SCRIPT: &str = r#"set -e
mount -t tmpfs bpfnet-test /run
mkdir -p /run/systemd/system
for d in /etc/systemd/system /var/lib/systemd; do
    if [ -d "$d" ]; then mount -t tmpfs bpfnet-test "$d"; fi
done
status=0
PATH="$STUBS:$PATH" dpkg --root="$ROOT" --log="$DIR/dpkg.log" --force-script-chrootless \
    --force-not-root --force-depends "$@" || status=$?
for d in /etc/systemd/system /var/lib/systemd; do
    if [ -d "$d" ]; then find "$d" -mindepth 1 -printf 'host-write %p\n'; fi
done
exit $status
"#;

/// The stubs: each appends `NAME ARGS...` to `$CALLS`.
const STUBS: &[&str] = &["systemctl", "deb-systemd-invoke"];

/// One dpkg call's outcome.
#[derive(Debug)]
pub struct Run {
    pub success: bool,
    /// dpkg's and the scripts' output.
    pub output: String,
    /// What the stubs were asked, one call a line (`deb-systemd-invoke stop bpfnet.service`).
    pub calls: Vec<String>,
    /// Paths the scripts created under the host's systemd directories (must be none).
    pub host_writes: Vec<String>,
}

/// A scratch root with an empty dpkg database; removed on drop.
pub struct DpkgRoot {
    dir: PathBuf,
}

impl DpkgRoot {
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(unique(tag));
        let admin = dir.join("root/var/lib/dpkg");
        for d in [admin.join("info"), admin.join("updates"), dir.join("stubs")] {
            fs::create_dir_all(&d).unwrap_or_else(|e| panic!("create {}: {e}", d.display()));
        }
        fs::write(admin.join("status"), "").expect("an empty dpkg status");
        for stub in STUBS {
            let path = dir.join("stubs").join(stub);
            fs::write(
                &path,
                format!("#!/bin/sh\necho \"{stub} $*\" >> \"$CALLS\"\n"),
            )
            .expect("write a stub");
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod a stub");
        }
        Self { dir }
    }

    /// The scratch root (`/` of the installed package).
    pub fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    /// `path` (absolute in the package's terms) inside the root.
    pub fn at(&self, path: &str) -> PathBuf {
        self.root().join(path.trim_start_matches('/'))
    }

    /// Run `dpkg ARGS` on the root (`-i DEB`, `-r NAME`, `-P NAME`).
    pub fn dpkg(&self, args: &[&str]) -> Run {
        let calls = self.dir.join("calls");
        let _unused: Result<_, _> = fs::remove_file(&calls);
        let out = Command::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
                SCRIPT,
                "sh",
            ])
            .args(args)
            .env("ROOT", self.root())
            .env("DIR", &self.dir)
            .env("STUBS", self.dir.join("stubs"))
            .env("CALLS", &calls)
            .output()
            .expect("unshare runs (util-linux)");
        let stdout = String::from_utf8_lossy(&out.stdout);
        Run {
            success: out.status.success(),
            output: format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)),
            calls: fs::read_to_string(&calls)
                .unwrap_or_default()
                .lines()
                .map(str::to_string)
                .collect(),
            host_writes: stdout
                .lines()
                .filter_map(|l| l.strip_prefix("host-write "))
                .map(str::to_string)
                .collect(),
        }
    }

    /// `dpkg-query`'s status of `package` in the root (`install ok installed`), or None
    /// when the database does not know it.
    pub fn status(&self, package: &str) -> Option<String> {
        let out = Command::new("dpkg-query")
            .arg(format!("--root={}", self.root().display()))
            .args(["-W", "-f=${Status}", package])
            .output()
            .expect("dpkg-query runs");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Every path under `dir` (absolute in the package's terms) in the root, sorted.
    pub fn list(&self, dir: &str) -> Vec<String> {
        let mut all = Vec::new();
        let mut todo = vec![self.at(dir)];
        while let Some(d) = todo.pop() {
            for e in fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    todo.push(p.clone());
                }
                all.push(relative(&self.root(), &p));
            }
        }
        all.sort();
        all
    }
}

fn relative(root: &Path, p: &Path) -> String {
    format!("/{}", p.strip_prefix(root).unwrap_or(p).display())
}

impl Drop for DpkgRoot {
    fn drop(&mut self) {
        let _unused: Result<_, _> = fs::remove_dir_all(&self.dir);
    }
}
