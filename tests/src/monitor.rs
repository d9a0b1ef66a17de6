//! `bpfnet monitor --json` as a child process, its records read on a thread; what the
//! datapath was told to report; the CPUs it runs on.
use std::{
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use bpfnet::api::monitor::{Event, Record};

use crate::{daemon::bin, leftovers};

pub struct Monitor {
    child: Child,
    records: mpsc::Receiver<Record>,
}

impl Monitor {
    /// `bpfnet monitor --json ARGS` against `socket`.
    pub fn start(socket: &Path, args: &[&str]) -> Self {
        let mut child = Command::new(bin())
            .arg("--socket")
            .arg(socket)
            .args(["monitor", "--json"])
            .args(args)
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .expect("bpfnet monitor starts");
        leftovers::record(child.id());
        let out = child.stdout.take().expect("piped stdout");
        let (tx, records) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let v: Record = serde_json::from_str(&line).unwrap_or_else(|e| {
                    panic!("monitor printed a line that is not a record ({e}): {line}")
                });
                if tx.send(v).is_err() {
                    return;
                }
            }
        });
        Self { child, records }
    }

    /// The first event for which `wanted` holds, within `timeout`, calling `poke` (which
    /// sends the traffic) before each wait: the monitor may not be subscribed yet when
    /// the first packets go.
    pub fn await_event(
        &self,
        timeout: Duration,
        mut poke: impl FnMut(),
        wanted: impl Fn(&Event) -> bool,
    ) -> Option<Event> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            poke();
            let until = Instant::now() + Duration::from_millis(300);
            while let Some(left) = until.checked_duration_since(Instant::now()) {
                match self.records.recv_timeout(left) {
                    Ok(Record::Event(e)) if wanted(&e) => return Some(*e),
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }
        None
    }

    /// Records as they arrive, until `done` holds for all so far or `timeout` passes.
    pub fn records_until(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&[Record]) -> bool,
    ) -> Vec<Record> {
        let deadline = Instant::now() + timeout;
        let mut all = Vec::new();
        while !done(&all) {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            match self.records.recv_timeout(left) {
                Ok(v) => all.push(v),
                Err(_) => break,
            }
        }
        all
    }

    /// Every record that arrives within `window`.
    pub fn collect(&self, window: Duration) -> Vec<Record> {
        let until = Instant::now() + window;
        let mut all = Vec::new();
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            match self.records.recv_timeout(left) {
                Ok(v) => all.push(v),
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    thread::sleep(left);
                    break;
                }
            }
        }
        all
    }

    /// Whether the process has exited, and how.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _unused: Result<_, _> = self.child.kill();
        let _unused: Result<_, _> = self.child.wait();
        leftovers::forget(self.child.id());
    }
}

/// What the datapath is told to report (`monitor`, a `MonitorConfig`) by the daemon
/// whose links are pinned under `pin_dir`. The map is not pinned (each daemon starts
/// with no monitor): it is found among the maps its pinned programs use.
pub fn datapath_config(pin_dir: &Path) -> common::MonitorConfig {
    use aya::maps::{Array, Map, MapData};
    for (_, program) in crate::daemon::pinned_links(pin_dir) {
        let Some(info) = aya::programs::loaded_programs()
            .filter_map(Result::ok)
            .find(|p| p.id() == program)
        else {
            continue;
        };
        let ids = info
            .map_ids()
            .expect("a program's maps")
            .expect("the kernel lists a program's maps");
        for id in ids {
            let map = MapData::from_id(id).expect("a map by its id");
            let named = map
                .info()
                .ok()
                .is_some_and(|i| i.name_as_str() == Some(common::names::MONITOR));
            if named {
                let a: Array<MapData, common::MonitorConfig> =
                    Array::try_from(Map::Array(map)).expect("`monitor` is an array");
                return a.get(&0, 0).expect("its one value");
            }
        }
    }
    panic!(
        "no program pinned under {} uses `monitor`",
        pin_dir.display()
    );
}

/// The CPUs that run programs now (`/sys/devices/system/cpu/online`: "0-1", "0,2-3").
pub fn online_cpus() -> Vec<u32> {
    let s =
        std::fs::read_to_string("/sys/devices/system/cpu/online").expect("read the online CPUs");
    let cpus: Vec<u32> = s
        .trim()
        .split(',')
        .flat_map(|r| {
            let (a, b) = r.split_once('-').unwrap_or((r, r));
            let (a, b): (u32, u32) = (a.parse().expect("a CPU"), b.parse().expect("a CPU"));
            a..=b
        })
        .collect();
    assert!(!cpus.is_empty(), "some CPU is online: {s}");
    cpus
}
