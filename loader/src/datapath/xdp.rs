//! `--xdp`: `xdp_uplink`, the early-drop program, on every Ethernet uplink ahead of
//! `from_uplink`, through a pinned link like the TC ones (a restarted daemon swaps its
//! program into the link; one started without `--xdp` removes it).
use std::{fmt, io, path::PathBuf, str::FromStr};

use aya::programs::{
    Xdp,
    links::{FdLink, LinkError, PinnedLink},
    xdp::XdpLink,
};
use tracing::{debug, info};

use super::{AttachFailure, Datapath, DatapathError, attach::remove_pin, program};

pub const XDP_PROGRAM: &str = "xdp_uplink";

/// Where the XDP program runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum XdpMode {
    /// The driver's native hook where it has one, generic XDP otherwise (the kernel's
    /// choice).
    Auto,
    /// In the driver, before a socket buffer exists; refused by drivers without it.
    Native,
    /// In the kernel's receive path, on the socket buffer (any device).
    Generic,
}

impl XdpMode {
    fn aya(self) -> aya::programs::XdpMode {
        match self {
            Self::Auto => aya::programs::XdpMode::Default,
            Self::Native => aya::programs::XdpMode::Driver,
            Self::Generic => aya::programs::XdpMode::Skb,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown XDP mode `{given}` (auto, native or generic)")]
pub struct UnknownXdpMode {
    given: String,
}

impl FromStr for XdpMode {
    type Err = UnknownXdpMode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "native" => Ok(Self::Native),
            "generic" => Ok(Self::Generic),
            _ => Err(UnknownXdpMode { given: s.into() }),
        }
    }
}

impl fmt::Display for XdpMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Native => "native",
            Self::Generic => "generic",
        })
    }
}

impl Datapath {
    fn xdp_link_path(&self, ifindex: u32) -> PathBuf {
        self.pin_dir
            .join("links")
            .join(format!("{XDP_PROGRAM}@{ifindex}"))
    }

    /// Put `xdp_uplink` on uplink `iface` when `--xdp` is on; take it off otherwise.
    pub(super) fn attach_xdp(&mut self, iface: &str, ifindex: u32) -> Result<(), DatapathError> {
        let path = self.xdp_link_path(ifindex);
        let err = |source: AttachFailure| DatapathError::Attach {
            program: XDP_PROGRAM,
            iface: iface.into(),
            source,
        };
        let pinned_link = |source| {
            err(AttachFailure::PinnedLink {
                path: path.clone(),
                source,
            })
        };
        let Some(mode) = self.xdp else {
            return remove_pin(&path).map_err(|e| err(e.into()));
        };
        let prog: &mut Xdp = program(&mut self.ebpf, XDP_PROGRAM)?;
        match PinnedLink::from_pin(&path) {
            Ok(pinned) => {
                let link = XdpLink::try_from(FdLink::from(pinned)).map_err(pinned_link)?;
                match prog.attach_to_link(link) {
                    Ok(id) => {
                        drop(prog.take_link(id));
                        debug!(iface, "replaced XDP program in pinned link");
                        return Ok(());
                    }
                    Err(e) => {
                        debug!(iface, error = %e, "stale pinned XDP link, re-attaching");
                        remove_pin(&path).map_err(|e| err(e.into()))?;
                    }
                }
            }
            Err(LinkError::SyscallError(e)) if e.io_error.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(pinned_link(e)),
        }
        let id = prog.attach_to_if_index(ifindex, mode.aya()).map_err(|e| {
            err(AttachFailure::XdpMode {
                mode,
                source: Box::new(e),
            })
        })?;
        let link = prog.take_link(id).map_err(|e| err(e.into()))?;
        let link = FdLink::try_from(link).map_err(|e| err(e.into()))?;
        link.pin(&path).map_err(|e| err(e.into()))?;
        info!(iface, program = XDP_PROGRAM, %mode, "attached");
        Ok(())
    }

    /// Whether `xdp_uplink` is on `ifindex` (its link is pinned).
    pub fn has_xdp(&self, ifindex: u32) -> bool {
        self.xdp_link_path(ifindex).exists()
    }

    /// Take `xdp_uplink` off `ifindex` (nothing to do when it is not there).
    pub(super) fn detach_xdp(&self, ifindex: u32) -> io::Result<()> {
        remove_pin(&self.xdp_link_path(ifindex))
    }
}
