//! The socket programs on the root cgroup (v2), with pinned links that a restarted
//! daemon replaces.
use std::{
    fs, io,
    path::{Path, PathBuf},
};

use aya::programs::{CgroupAttachMode, CgroupSockAddr, links::FdLink};
use rustix::mount::MountFlags;
use tracing::info;

use super::{AttachFailure, Datapath, DatapathError};

/// The cgroup `sock_addr` programs, by name in the object.
pub const SOCK_PROGRAMS: [&str; 8] = [
    "sock_connect4",
    "sock_sendmsg4",
    "sock_recvmsg4",
    "sock_getpeername4",
    "sock_connect6",
    "sock_sendmsg6",
    "sock_recvmsg6",
    "sock_getpeername6",
];

/// Where bpfnet mounts a cgroup2 hierarchy when the host has none mounted.
pub(super) const OWN_MOUNT: &str = "/run/bpfnet/cgroup2";

/// A mounted cgroup2 hierarchy (its root holds every process), mounting one if needed.
pub fn cgroup2_root() -> io::Result<PathBuf> {
    let mounts = fs::read_to_string("/proc/self/mountinfo")?;
    // mountinfo: ... MOUNTPOINT(5th) ... " - " FSTYPE SOURCE OPTIONS
    for line in mounts.lines() {
        let mut halves = line.split(" - ");
        let (Some(left), Some(right)) = (halves.next(), halves.next()) else {
            continue;
        };
        if right.split_whitespace().next() == Some("cgroup2")
            && let Some(point) = left.split_whitespace().nth(4)
        {
            return Ok(PathBuf::from(point));
        }
    }
    fs::create_dir_all(OWN_MOUNT)?;
    rustix::mount::mount("cgroup2", OWN_MOUNT, "cgroup2", MountFlags::empty(), None)?;
    info!(path = OWN_MOUNT, "mounted cgroup2");
    Ok(PathBuf::from(OWN_MOUNT))
}

impl Datapath {
    /// Attach the socket programs to `cgroup`. A link pinned by an earlier daemon is
    /// replaced by pinning the new one over it: for a moment both run, which is
    /// harmless (the second sees the backend address, not a published one).
    pub fn attach_sockets(&mut self, cgroup: &Path) -> Result<(), DatapathError> {
        let dir = fs::File::open(cgroup).map_err(|e| attach_err("cgroup", cgroup, e.into()))?;
        for name in SOCK_PROGRAMS {
            let path = self.pin_dir.join("links").join(name);
            // bpffs names may not contain dots.
            let tmp = self.pin_dir.join("links").join(format!("{name}_new"));
            let prog: &mut CgroupSockAddr = super::program(&mut self.ebpf, name)?;
            let err = |e: AttachFailure| attach_err(name, cgroup, e);
            let id = prog
                .attach(&dir, CgroupAttachMode::Single)
                .map_err(|e| err(e.into()))?;
            let link = prog.take_link(id).map_err(|e| err(e.into()))?;
            let link = FdLink::try_from(link).map_err(|e| err(e.into()))?;
            let _unused: Result<_, _> = fs::remove_file(&tmp);
            link.pin(&tmp).map_err(|e| err(e.into()))?;
            fs::rename(&tmp, &path).map_err(|e| err(e.into()))?;
        }
        info!(cgroup = %cgroup.display(), "socket programs attached");
        Ok(())
    }
}

fn attach_err(program: &'static str, cgroup: &Path, source: AttachFailure) -> DatapathError {
    DatapathError::Attach {
        program,
        iface: cgroup.display().to_string(),
        source,
    }
}
