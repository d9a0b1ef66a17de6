//! What a killed test run leaves behind, and its removal.
//!
//! Everything a test creates is named `bpfnet-test-TAG-PID-N` (see `unique`): network
//! namespaces, `/sys/fs/bpf` pin directories (whose links keep cgroup programs on the
//! host's root cgroup) and temporary directories (a dockerd's data root among them).
//! Processes a test starts are recorded under `RECORDS` with their start time. `sweep`
//! removes only what belongs to a test process that no longer runs, so a concurrent run
//! keeps its own.
use std::{
    fs,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    process::Command,
};

/// Prefix of every name a test creates.
pub const PREFIX: &str = "bpfnet-test-";
/// One file per process a test started: name = its PID, content = `OWNER STARTTIME`.
const RECORDS: &str = "/run/bpfnet-test/pids";
const PINS: &str = "/sys/fs/bpf";

/// Remember `child`, started by this process, until `forget`.
pub fn record(child: u32) {
    let Some(start) = start_time(child) else {
        return;
    };
    let _unused: Result<_, _> = fs::create_dir_all(RECORDS);
    let _unused: Result<_, _> = fs::write(
        Path::new(RECORDS).join(child.to_string()),
        format!("{} {start}", std::process::id()),
    );
}

/// `child` was stopped by its owner.
pub fn forget(child: u32) {
    let _unused: Result<_, _> = fs::remove_file(Path::new(RECORDS).join(child.to_string()));
}

/// Field 22 of /proc/PID/stat: when the process started, which tells a reused PID apart.
fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields after it are plain.
    let after = &stat[stat.rfind(')')? + 2..];
    after.split(' ').nth(19)?.parse().ok()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The owner PID in `bpfnet-test-TAG-PID-N...`, when `name` is one of ours.
fn owner(name: &str) -> Option<u32> {
    name.strip_prefix(PREFIX)?.split('-').nth(1)?.parse().ok()
}

/// Ours and abandoned: named by a test process that is gone.
fn abandoned(name: &str) -> bool {
    owner(name).is_some_and(|pid| !alive(pid))
}

fn pids() -> Vec<u32> {
    fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn kill(pid: u32) {
    // A process gone meanwhile (ESRCH) is what was wanted.
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _unused: Result<_, _> =
            rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}

/// Kill every process `pick` selects; returns how many.
fn kill_where(pick: impl Fn(u32) -> bool) -> usize {
    let victims: Vec<u32> = pids().into_iter().filter(|&p| pick(p)).collect();
    for &p in &victims {
        kill(p);
    }
    victims.len()
}

/// What `sweep` removed.
#[derive(Debug, Default)]
pub struct Swept {
    pub processes: usize,
    pub namespaces: Vec<String>,
    pub dirs: Vec<PathBuf>,
}

/// Remove the leftovers of test runs that no longer run.
pub fn sweep() -> Swept {
    let mut swept = Swept::default();
    // Recorded processes whose owner is gone, if the PID still names the same process.
    for entry in fs::read_dir(RECORDS).into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let rec = fs::read_to_string(entry.path()).unwrap_or_default();
        let mut f = rec.split_whitespace().map(|v| v.parse::<u64>().ok());
        let (Some(Some(owner)), Some(Some(start))) = (f.next(), f.next()) else {
            continue;
        };
        if alive(owner as u32) {
            continue;
        }
        if start_time(pid) == Some(start) {
            kill(pid);
            swept.processes += 1;
        }
        let _unused: Result<_, _> = fs::remove_file(entry.path());
    }
    // Namespaces: first whatever still runs inside them, then the namespace.
    let list = Command::new("ip").args(["netns", "list"]).output();
    let list = list.map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    for ns in list.unwrap_or_default().lines() {
        let Some(name) = ns.split_whitespace().next().filter(|n| abandoned(n)) else {
            continue;
        };
        if let Ok(m) = fs::metadata(format!("/run/netns/{name}")) {
            let inode = m.ino();
            swept.processes += kill_where(|p| {
                fs::metadata(format!("/proc/{p}/ns/net")).is_ok_and(|n| n.ino() == inode)
            });
        }
        let _unused: Result<_, _> = Command::new("ip").args(["netns", "del", name]).output();
        swept.namespaces.push(name.into());
    }
    // Temporary directories (a dockerd's data root: its containers run from it) and pins.
    for base in [std::env::temp_dir(), PathBuf::from(PINS)] {
        for entry in fs::read_dir(&base).into_iter().flatten().flatten() {
            let path = entry.path();
            if !entry.file_name().to_str().is_some_and(abandoned) {
                continue;
            }
            swept.processes += kill_where(|p| {
                fs::read_link(format!("/proc/{p}/root")).is_ok_and(|r| r.starts_with(&path))
            });
            unmount_under(&path);
            let _unused: Result<_, _> = fs::remove_dir_all(&path);
            swept.dirs.push(path);
        }
    }
    swept
}

/// Detach every mount at or below `dir`, deepest first.
pub fn unmount_under(dir: &Path) {
    let mounts = fs::read_to_string("/proc/mounts").unwrap_or_default();
    let mut ours: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|m| Path::new(m).starts_with(dir))
        .collect();
    ours.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in ours {
        let _unused: Result<_, _> = rustix::mount::unmount(m, rustix::mount::UnmountFlags::DETACH);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_is_read_from_the_name() {
        assert_eq!(owner("bpfnet-test-dk-4242-3-host"), Some(4242));
        assert_eq!(owner("bpfnet-test-dk-4242-3"), Some(4242));
        assert_eq!(owner("bpfnet-other-dk-4242-3"), None);
        assert_eq!(owner("bpfnet-test-dk-x-3"), None);
        assert!(!abandoned(&crate::unique("me")), "this process is alive");
    }
}
