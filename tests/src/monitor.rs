//! `bpfnet monitor --json` as a child process, its records read on a thread.
use std::{
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{daemon::bin, leftovers};

pub struct Monitor {
    child: Child,
    records: mpsc::Receiver<Value>,
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
                let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
                    panic!("monitor printed a line that is not JSON ({e}): {line}")
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
        wanted: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            poke();
            let until = Instant::now() + Duration::from_millis(300);
            while let Some(left) = until.checked_duration_since(Instant::now()) {
                match self.records.recv_timeout(left) {
                    Ok(v) if v["record"] == "event" && wanted(&v) => return Some(v),
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }
        None
    }

    /// Every record that arrives within `window`.
    pub fn collect(&self, window: Duration) -> Vec<Value> {
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
        let _ = self.child.kill();
        let _ = self.child.wait();
        leftovers::forget(self.child.id());
    }
}
