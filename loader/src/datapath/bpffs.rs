//! Making sure the pin directory lives on a mounted bpffs.
use std::{
    ffi::CString,
    fs, io,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
};

use tracing::info;

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
const BPFFS_ROOT: &str = "/sys/fs/bpf";

#[derive(Debug, thiserror::Error)]
pub enum BpffsError {
    #[error("cannot mount bpffs on {BPFFS_ROOT}: {source}")]
    Mount { source: io::Error },
    #[error("cannot create pin directory `{path}`: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error("pin directory `{path}` is not on a bpffs mount")]
    NotBpffs { path: PathBuf },
}

fn is_bpffs(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statfs on a NUL-terminated path into a zeroed, properly sized buffer.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == BPF_FS_MAGIC
    }
}

/// Mount bpffs on /sys/fs/bpf when nothing is mounted there, then create `pin_dir` and
/// its `links/` subdirectory.
pub fn prepare(pin_dir: &Path) -> Result<(), BpffsError> {
    if pin_dir.starts_with(BPFFS_ROOT) && !is_bpffs(Path::new(BPFFS_ROOT)) {
        info!("mounting bpffs on {BPFFS_ROOT}");
        let target = CString::new(BPFFS_ROOT).expect("no NUL in a constant");
        // SAFETY: mount(2) with NUL-terminated strings and no data.
        let rc = unsafe {
            libc::mount(
                c"bpf".as_ptr(),
                target.as_ptr(),
                c"bpf".as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            return Err(BpffsError::Mount {
                source: io::Error::last_os_error(),
            });
        }
    }
    let links = pin_dir.join("links");
    fs::create_dir_all(&links).map_err(|source| BpffsError::Create {
        path: links.clone(),
        source,
    })?;
    if !is_bpffs(pin_dir) {
        return Err(BpffsError::NotBpffs {
            path: pin_dir.into(),
        });
    }
    Ok(())
}
