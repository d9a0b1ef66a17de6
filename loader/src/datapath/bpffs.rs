//! Making sure the pin directory lives on a mounted bpffs, and is the daemon's own: a
//! pin another user can write is a datapath another user can replace.
use std::{
    ffi::CStr,
    fs, io,
    os::unix::fs::{DirBuilderExt as _, MetadataExt as _},
    path::{Path, PathBuf},
};

use rustix::mount::MountFlags;
use tracing::info;

const BPF_FS_MAGIC: rustix::fs::FsWord = 0xcafe_4a11;
const BPFFS_ROOT: &str = "/sys/fs/bpf";
/// A bpffs bpfnet mounts is its owner's alone (the kernel's default is 0777).
pub const MOUNT_OPTIONS: &CStr = c"mode=0700";

#[derive(Debug, thiserror::Error)]
pub enum BpffsError {
    #[error("cannot mount bpffs on {BPFFS_ROOT}: {source}")]
    Mount { source: io::Error },
    #[error("cannot create pin directory `{path}`: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error("pin directory `{path}` is not on a bpffs mount")]
    NotBpffs { path: PathBuf },
    #[error("cannot read pin directory `{path}`: {source}")]
    Stat { path: PathBuf, source: io::Error },
    #[error(
        "pin directory `{path}` is owned by uid {owner}, not the daemon's ({uid}): refusing it"
    )]
    NotOwned { path: PathBuf, owner: u32, uid: u32 },
    #[error("pin directory `{path}` is writable by others (mode {mode:o}): refusing it")]
    Writable { path: PathBuf, mode: u32 },
}

fn is_bpffs(path: &Path) -> bool {
    rustix::fs::statfs(path).is_ok_and(|st| st.f_type == BPF_FS_MAGIC)
}

/// Mount bpffs on /sys/fs/bpf (`MOUNT_OPTIONS`) when nothing is mounted there, then
/// create `pin_dir` and its `links/` subdirectory, refused unless the daemon's own.
pub fn prepare(pin_dir: &Path) -> Result<(), BpffsError> {
    if pin_dir.starts_with(BPFFS_ROOT) && !is_bpffs(Path::new(BPFFS_ROOT)) {
        info!("mounting bpffs on {BPFFS_ROOT}");
        rustix::mount::mount("bpf", BPFFS_ROOT, "bpf", MountFlags::empty(), MOUNT_OPTIONS)
            .map_err(|e| BpffsError::Mount { source: e.into() })?;
    }
    let uid = rustix::process::geteuid().as_raw();
    // Each checked before anything is made inside it.
    for dir in [pin_dir.to_path_buf(), pin_dir.join("links")] {
        // Not left to the umask: a world-writable pin directory is refused.
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&dir)
            .map_err(|source| BpffsError::Create {
                path: dir.clone(),
                source,
            })?;
        owned(&dir, uid)?;
    }
    if !is_bpffs(pin_dir) {
        return Err(BpffsError::NotBpffs {
            path: pin_dir.into(),
        });
    }
    Ok(())
}

/// `dir` belongs to `uid` and no one else may write it.
fn owned(dir: &Path, uid: u32) -> Result<(), BpffsError> {
    let meta = fs::metadata(dir).map_err(|source| BpffsError::Stat {
        path: dir.into(),
        source,
    })?;
    if meta.uid() != uid {
        return Err(BpffsError::NotOwned {
            path: dir.into(),
            owner: meta.uid(),
            uid,
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(BpffsError::Writable {
            path: dir.into(),
            mode,
        });
    }
    Ok(())
}
