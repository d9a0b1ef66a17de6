//! The way back: remove everything `Datapath::load`, `attach` and `attach_sockets`
//! made. Links go first (each program leaves its interface or cgroup as its last link
//! does), then the maps, then the directories and bpfnet's own cgroup2 mount. Every
//! failure is collected; one does not stop the rest.
use std::{
    fs, io,
    path::{Path, PathBuf},
};

use rustix::mount::UnmountFlags;

use super::cgroup::OWN_MOUNT;

#[derive(Debug, thiserror::Error)]
pub enum TeardownError {
    #[error("cannot list `{path}`: {source}")]
    List { path: PathBuf, source: io::Error },
    #[error("cannot remove `{path}`: {source}")]
    Remove { path: PathBuf, source: io::Error },
    #[error("cannot unmount `{path}`: {source}")]
    Unmount { path: PathBuf, source: io::Error },
}

/// What a teardown removed, and what it could not.
#[derive(Debug, Default)]
pub struct Teardown {
    /// Pinned links removed: their programs are detached.
    pub links: Vec<String>,
    /// Pinned maps removed.
    pub maps: Vec<String>,
    pub unmounted: Vec<PathBuf>,
    pub errors: Vec<TeardownError>,
}

/// Remove every pin under `pin_dir` (links before maps), the directory itself, and
/// bpfnet's own cgroup2 mount. A missing `pin_dir` is nothing to do.
pub fn teardown(pin_dir: &Path) -> Teardown {
    let mut t = Teardown::default();
    let links = pin_dir.join("links");
    t.links = remove_files(&links, &mut t.errors);
    remove_dir(&links, &mut t.errors);
    t.maps = remove_files(pin_dir, &mut t.errors);
    remove_dir(pin_dir, &mut t.errors);
    if is_mounted(Path::new(OWN_MOUNT)) {
        match unmount(Path::new(OWN_MOUNT)) {
            Ok(()) => {
                t.unmounted.push(OWN_MOUNT.into());
                remove_dir(Path::new(OWN_MOUNT), &mut t.errors);
            }
            Err(source) => t.errors.push(TeardownError::Unmount {
                path: OWN_MOUNT.into(),
                source,
            }),
        }
    }
    t
}

/// Remove the files directly under `dir`; their names, sorted.
fn remove_files(dir: &Path, errors: &mut Vec<TeardownError>) -> Vec<String> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Vec::new(),
        Err(source) => {
            errors.push(TeardownError::List {
                path: dir.into(),
                source,
            });
            return Vec::new();
        }
    };
    let mut removed = Vec::new();
    for entry in entries {
        let path = match entry {
            Ok(e) => e.path(),
            Err(source) => {
                errors.push(TeardownError::List {
                    path: dir.into(),
                    source,
                });
                continue;
            }
        };
        if path.is_dir() {
            continue;
        }
        match fs::remove_file(&path) {
            Ok(()) => removed.push(
                path.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into(),
            ),
            Err(source) => errors.push(TeardownError::Remove { path, source }),
        }
    }
    removed.sort();
    removed
}

fn remove_dir(dir: &Path, errors: &mut Vec<TeardownError>) {
    match fs::remove_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => errors.push(TeardownError::Remove {
            path: dir.into(),
            source: e,
        }),
        _ => {}
    }
}

/// Whether `path` is a mount point (listed in this process's mountinfo).
fn is_mounted(path: &Path) -> bool {
    fs::read_to_string("/proc/self/mountinfo").is_ok_and(|m| {
        m.lines()
            .any(|l| l.split_whitespace().nth(4) == Some(&*path.to_string_lossy()))
    })
}

fn unmount(path: &Path) -> io::Result<()> {
    Ok(rustix::mount::unmount(path, UnmountFlags::empty())?)
}
