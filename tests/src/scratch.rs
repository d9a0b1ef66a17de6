//! Per-test files: pin directory, state directory and control socket, removed on drop.
use std::{fs, path::PathBuf};

use crate::unique;

pub struct Scratch {
    pub pin_dir: PathBuf,
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    tmp: PathBuf,
}

impl Scratch {
    pub fn new(tag: &str) -> Self {
        let id = unique(tag);
        let tmp = std::env::temp_dir().join(&id);
        let pin_dir = PathBuf::from(format!("/sys/fs/bpf/{id}"));
        fs::create_dir_all(&tmp).expect("create test temp dir");
        Self {
            pin_dir,
            state_dir: tmp.join("state"),
            socket: tmp.join("bpfnet.sock"),
            tmp,
        }
    }

    /// `--pin-dir` and `--state-dir` for `bpfnet daemon`.
    pub fn daemon_args(&self) -> Vec<String> {
        vec![
            "--pin-dir".into(),
            self.pin_dir.display().to_string(),
            "--state-dir".into(),
            self.state_dir.display().to_string(),
        ]
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _unused: Result<_, _> = fs::remove_dir_all(&self.pin_dir);
        let _unused: Result<_, _> = fs::remove_dir_all(&self.tmp);
    }
}
