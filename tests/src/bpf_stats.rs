//! `kernel.bpf_stats_enabled` is one switch for the whole machine, and other processes
//! run beside a test (another test run, another worktree's, the bench). Whoever flips it
//! holds `LOCK` exclusively while it is flipped; whoever needs it left alone (the bench,
//! whose timed rounds must not pay for run-time statistics) holds it shared.
use std::{
    fs::{File, OpenOptions},
    time::{Duration, Instant},
};

/// The lock file, the same for every process on the machine.
pub const LOCK: &str = "/run/lock/bpfnet-bpf-stats.lock";
const SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";
/// How long a test waits for another process's hold (a full bench can take this long).
const WAIT: Duration = Duration::from_mins(30);

/// The lock, held until dropped (closing the file releases it).
pub struct Held(#[expect(dead_code, reason = "held for its lock")] File);

fn lock(exclusive: bool) -> Held {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK)
        .unwrap_or_else(|e| panic!("open {LOCK}: {e}"));
    let start = Instant::now();
    loop {
        let got = if exclusive {
            f.try_lock()
        } else {
            f.try_lock_shared()
        };
        match got {
            Ok(()) => return Held(f),
            Err(std::fs::TryLockError::WouldBlock) if start.elapsed() < WAIT => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("lock {LOCK} (exclusive: {exclusive}): {e}"),
        }
    }
}

/// Nobody flips the switch while this lives.
pub fn shared() -> Held {
    lock(false)
}

/// `kernel.bpf_stats_enabled=1` while it lives, the lock held exclusively; the old
/// value back on drop, before the lock is released.
pub struct Enabled {
    old: String,
    _held: Held,
}

impl Enabled {
    pub fn enable() -> Self {
        let held = lock(true);
        let old = std::fs::read_to_string(SYSCTL).expect("read kernel.bpf_stats_enabled");
        std::fs::write(SYSCTL, "1").expect("set kernel.bpf_stats_enabled=1");
        Self { old, _held: held }
    }
}

impl Drop for Enabled {
    fn drop(&mut self) {
        let _unused: Result<_, _> = std::fs::write(SYSCTL, self.old.trim());
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::mpsc, thread};

    use super::*;

    /// While a reader holds the lock shared, a test turning the statistics on waits: the
    /// switch stays as it was, and flips only once the reader lets go; back on drop.
    #[test]
    fn the_switch_does_not_flip_under_a_shared_holder() {
        if !crate::require_root() {
            return;
        }
        let read = || std::fs::read_to_string(SYSCTL).expect("read the sysctl");
        let reader = shared();
        let before = read();
        let (tx, rx) = mpsc::channel();
        let flipper = thread::spawn(move || {
            let on = Enabled::enable();
            tx.send(read()).expect("send");
            // Held until the main thread has looked.
            thread::sleep(Duration::from_millis(200));
            drop(on);
        });
        assert!(
            rx.recv_timeout(Duration::from_millis(700)).is_err(),
            "the statistics were turned on while a reader held the lock"
        );
        assert_eq!(read(), before, "the switch flipped under a reader");
        drop(reader);
        let during = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("turned on once the reader let go");
        assert_eq!(during.trim(), "1");
        flipper.join().expect("the flipping thread");
        let _steady = shared();
        assert_eq!(read(), before, "the old value is back on drop");
    }
}
