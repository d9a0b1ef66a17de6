//! Helpers for bpfnet's privileged integration tests: throwaway network namespaces,
//! a packet builder with independent checksum checks, a daemon process guard and
//! echo servers/clients that run inside namespaces.
pub mod bpf_stats;
pub mod cluster;
pub mod daemon;
pub mod dockerd;
pub mod dpkg_root;
pub mod echo;
pub mod etcd;
pub mod fixture;
pub mod lan;
pub mod leftovers;
pub mod lossy_events;
pub mod monitor;
pub mod netns;
pub mod packet;
pub mod packet6;
pub mod pki;
pub mod property;
pub mod raw;
pub mod scratch;
pub mod tables;
pub mod tables6;
pub mod topo;
pub mod tun;
pub mod unit_file;

use std::{
    io::Write as _,
    sync::atomic::{AtomicU32, Ordering},
};

/// Whether the tests may touch the kernel. In CI a missing privilege is a failure;
/// elsewhere the skip is announced on the terminal (past the test harness's capture).
pub fn require_root() -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "these tests need root (CI=true is set, so not skipping)"
    );
    let test = std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string();
    // Written to the file descriptor itself: eprintln! would be captured and hidden.
    let _unused: Result<_, _> = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: needs root, nothing was tested (run `sudo cargo xtask test`)"
    );
    record_skip(&test, "needs root");
    false
}

/// The file `cargo xtask test` counts skipped tests in, one line each.
pub const SKIPPED_LOG_ENV: &str = "BPFNET_SKIPPED_LOG";

/// Append `BINARY::TEST: WHY` to the skip log when one is set (`cargo xtask test` sets
/// it, and prints the count and names at its end).
fn record_skip(test: &str, why: &str) {
    let Some(log) = std::env::var_os(SKIPPED_LOG_ENV) else {
        return;
    };
    let binary = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .map(|s| match s.rsplit_once('-') {
            Some((name, hash)) if hash.chars().all(|c| c.is_ascii_hexdigit()) => name.to_string(),
            _ => s,
        })
        .unwrap_or_default();
    // One short write with O_APPEND: lines of parallel tests do not interleave.
    let line = format!("{binary}::{test}: {why}\n");
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
        let _unused: Result<_, _> = writeln!(
            std::io::stderr(),
            "cannot record the skip in {}: {e}",
            log.display()
        );
    }
}

/// A name unique to this process, this call and `tag`: `bpfnet-test-TAG-PID-N`. The
/// owner's PID in it lets `leftovers::sweep` tell a dead run's leftovers from a live one's.
pub fn unique(tag: &str) -> String {
    assert!(!tag.contains('-'), "a tag is one word: `{tag}`");
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{}{tag}-{}-{n}", leftovers::PREFIX, std::process::id())
}

/// Poll `ok` every 50 ms until it holds; panic with `what` after `timeout`.
pub fn wait_for(what: &str, timeout: std::time::Duration, mut ok: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + timeout;
    while !ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "waited {timeout:?} for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
