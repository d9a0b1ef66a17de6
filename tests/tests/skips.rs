//! A privileged test run without root skips itself, says so on the terminal, and records
//! itself in the file `cargo xtask test` counts at its end (`BPFNET_SKIPPED_LOG`).
use std::{fs, os::unix::fs::PermissionsExt as _, process::Command};

use bpfnet_tests::{SKIPPED_LOG_ENV, require_root, unique};

/// The privileged test the other runs as nobody: as root it does nothing.
#[test]
fn needs_root_probe() {
    let _ = require_root();
}

/// `needs_root_probe` run by uid 65534 passes, prints its SKIPPED line and writes
/// `skips::needs_root_probe: needs root` into the skip log, and nothing else.
#[test]
fn a_test_run_without_root_is_skipped_and_recorded_for_xtask() {
    if !require_root() {
        return;
    }
    let dir = std::env::temp_dir().join(unique("skips"));
    fs::create_dir_all(&dir).expect("a scratch directory");
    let log = dir.join("skipped.log");
    fs::write(&log, "").expect("create the log");
    fs::set_permissions(&log, fs::Permissions::from_mode(0o666)).expect("chmod the log");
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(std::env::current_exe().expect("this test's executable"))
        .args(["--exact", "needs_root_probe", "--nocapture"])
        .env_remove("CI")
        .env(SKIPPED_LOG_ENV, &log)
        .output()
        .expect("setpriv runs (util-linux)");
    let recorded = fs::read_to_string(&log).expect("read the log");
    let _unused: Result<_, _> = fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the skipped test passes ({}): {stderr}",
        out.status
    );
    assert!(
        stderr.contains("SKIPPED needs_root_probe: needs root"),
        "the skip is told on the terminal: {stderr}"
    );
    assert_eq!(
        recorded, "skips::needs_root_probe: needs root\n",
        "the skip is recorded for `cargo xtask test` to count"
    );
}
