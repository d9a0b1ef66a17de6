//! Helpers for bpfnet's privileged integration tests: throwaway network namespaces,
//! a packet builder with independent checksum checks, a daemon process guard and
//! echo servers/clients that run inside namespaces.
pub mod cluster;
pub mod daemon;
pub mod dockerd;
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

use std::{
    io::Write as _,
    sync::atomic::{AtomicU32, Ordering},
};

/// Whether the tests may touch the kernel. In CI a missing privilege is a failure;
/// elsewhere the skip is announced on the terminal (past the test harness's capture).
pub fn require_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
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
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: needs root, nothing was tested (run `sudo cargo xtask test`)"
    );
    false
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
