//! TCX attachment with pinned links: a link outlives the daemon, and a restarted daemon
//! swaps its new program into the existing link atomically (no packet sees no program).
use std::{
    fs, io,
    path::{Path, PathBuf},
};

use aya::programs::{
    LinkOrder, SchedClassifier, TcAttachType,
    links::{FdLink, LinkError, PinnedLink},
    tc::{SchedClassifierLink, TcAttachOptions},
};
use tracing::{debug, info, warn};

use super::{AttachFailure, Datapath, DatapathError, Hook};

/// A pinned attachment found in the pin directory.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Attachment {
    pub hook: Hook,
    pub ifindex: u32,
}

impl Attachment {
    fn file_name(&self) -> String {
        format!("{}@{}", self.hook.program(), self.ifindex)
    }

    fn parse(name: &str) -> Option<Self> {
        let (prog, ifindex) = name.split_once('@')?;
        let hook = Hook::ALL.into_iter().find(|h| h.program() == prog)?;
        Some(Self {
            hook,
            ifindex: ifindex.parse().ok()?,
        })
    }
}

impl Datapath {
    fn link_path(&self, a: &Attachment) -> PathBuf {
        self.pin_dir.join("links").join(a.file_name())
    }

    /// Attach `hook`'s program to TC ingress (egress) of `iface` (and, on an Ethernet uplink,
    /// `xdp_uplink` with `--xdp`), reusing a pinned link if one is there (atomic program
    /// replacement) or creating and pinning a new one. An XDP program that cannot go on
    /// (the interface carries another one) is logged: TC drops the same packets.
    pub fn attach(&mut self, hook: Hook, iface: &str, ifindex: u32) -> Result<(), DatapathError> {
        self.attach_tc(hook, iface, ifindex)?;
        if hook == Hook::FromUplink
            && let Err(e) = self.attach_xdp(iface, ifindex)
        {
            warn!(error = %e, "uplink without its XDP early drop");
        }
        Ok(())
    }

    fn attach_tc(&mut self, hook: Hook, iface: &str, ifindex: u32) -> Result<(), DatapathError> {
        let a = Attachment { hook, ifindex };
        let path = self.link_path(&a);
        let err = |source: AttachFailure| DatapathError::Attach {
            program: hook.program(),
            iface: iface.into(),
            source,
        };
        let pinned_link = |source| {
            err(AttachFailure::PinnedLink {
                path: path.clone(),
                source,
            })
        };
        let prog = self.program(hook);
        match PinnedLink::from_pin(&path) {
            Ok(pinned) => {
                let link =
                    SchedClassifierLink::try_from(FdLink::from(pinned)).map_err(pinned_link)?;
                match prog.attach_to_link(link) {
                    Ok(id) => {
                        // The pin keeps the link; our fd can go.
                        drop(prog.take_link(id));
                        debug!(
                            iface,
                            program = hook.program(),
                            "replaced program in pinned link"
                        );
                        return Ok(());
                    }
                    Err(e) => {
                        // The interface behind the old link is gone (ENOLINK): start afresh.
                        debug!(iface, error = %e, "stale pinned link, re-attaching");
                        remove_pin(&path).map_err(|e| err(e.into()))?;
                    }
                }
            }
            Err(LinkError::SyscallError(e)) if e.io_error.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(pinned_link(e)),
        }
        fresh(prog, hook.attach_type(), iface, &path).map_err(err)?;
        info!(iface, program = hook.program(), "attached");
        Ok(())
    }

    /// Remove the pinned link of `hook` on `ifindex`, detaching the program.
    pub fn detach(&self, hook: Hook, ifindex: u32) -> io::Result<()> {
        if hook == Hook::FromUplink {
            self.detach_xdp(ifindex)?;
        }
        remove_pin(&self.link_path(&Attachment { hook, ifindex }))
    }

    /// Every attachment pinned under the pin directory.
    pub fn attachments(&self) -> io::Result<Vec<Attachment>> {
        let mut out: Vec<Attachment> = fs::read_dir(self.pin_dir.join("links"))?
            .filter_map(|e| Attachment::parse(e.ok()?.file_name().to_str()?))
            .collect();
        out.sort();
        Ok(out)
    }
}

fn fresh(
    prog: &mut SchedClassifier,
    direction: TcAttachType,
    iface: &str,
    path: &PathBuf,
) -> Result<(), AttachFailure> {
    let id = prog.attach_with_options(
        iface,
        direction,
        TcAttachOptions::TcxOrder(LinkOrder::default()),
    )?;
    let link = prog.take_link(id)?;
    FdLink::try_from(link)?.pin(path)?;
    Ok(())
}

/// Remove a pin; one already gone is fine.
pub(super) fn remove_pin(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
