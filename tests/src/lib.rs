//! Helpers for bpfnet's privileged integration tests: throwaway network namespaces,
//! a packet builder with independent checksum checks, a daemon process guard and
//! echo servers/clients that run inside namespaces.
pub mod daemon;
pub mod dockerd;
pub mod echo;
pub mod fixture;
pub mod netns;
pub mod packet;
pub mod scratch;
pub mod topo;

/// Whether the tests may touch the kernel; in CI a missing privilege is a failure.
pub fn require_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "these tests need root (CI=true is set, so not skipping)"
    );
    eprintln!("skipping: needs root");
    false
}

/// A name unique to this process and `tag`, short enough for an interface.
pub fn unique(tag: &str) -> String {
    format!("bn{}{}", tag, std::process::id() % 100_000)
}
