//! The datapath's own debug logs (`aya-log`): parse failures, flow table decisions, NAT
//! choices. Compiled into the programs but off unless asked for: the level is a
//! read-only global fixed at load, so with logging off the verifier drops every log
//! statement as dead code and the programs run as if they had none.
use std::{
    os::fd::AsRawFd,
    panic::{AssertUnwindSafe, catch_unwind},
};

use aya_log::EbpfLogger;
use tokio::io::{Interest, unix::AsyncFd};
use tracing::warn;

/// How much the datapath logs (`--datapath-log`), as `aya-log` numbers its levels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
#[repr(u8)]
pub enum DatapathLog {
    #[default]
    Off = 0,
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
    Trace = 5,
}

impl DatapathLog {
    /// The level a `BPFNET_LOG`-style filter gives target `datapath` (`datapath=debug`),
    /// if it names it.
    pub fn from_filter(filter: &str) -> Option<Self> {
        filter.split(',').find_map(|directive| {
            let level = directive.trim().strip_prefix("datapath=")?;
            <Self as clap::ValueEnum>::from_str(level, true).ok()
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Error => "error",
            Self::Warn => "warn",
            Self::Info => "info",
            Self::Debug => "debug",
            Self::Trace => "trace",
        }
    }
}

/// Hands each datapath record to `tracing`, under target `datapath` (the program's
/// module as a field).
pub struct Tracing;

impl log::Log for Tracing {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, r: &log::Record<'_>) {
        let (module, args) = (r.target(), r.args());
        match r.level() {
            log::Level::Error => tracing::error!(target: "datapath", module, "{args}"),
            log::Level::Warn => tracing::warn!(target: "datapath", module, "{args}"),
            log::Level::Info => tracing::info!(target: "datapath", module, "{args}"),
            log::Level::Debug => tracing::debug!(target: "datapath", module, "{args}"),
            log::Level::Trace => tracing::trace!(target: "datapath", module, "{args}"),
        }
    }

    fn flush(&self) {}
}

pub type Logger = EbpfLogger<Tracing>;

/// Read the datapath's records as they come, until the logger fails.
pub async fn forward(logger: Logger) {
    debug_assert!(logger.as_raw_fd() >= 0);
    // SAFETY: the logger owns its ring buffer's descriptor, which stays open and the
    // same for as long as the logger lives, here inside the AsyncFd.
    let registered = unsafe { AsyncFd::register_with_interest(logger, Interest::READABLE) };
    let mut fd = match registered {
        Ok(fd) => fd,
        Err(e) => {
            warn!(error = %e, "cannot poll the datapath's log buffer; its logs are lost");
            return;
        }
    };
    loop {
        let mut guard = match fd.readable_mut().await {
            Ok(g) => g,
            Err(e) => {
                warn!(error = %e, "datapath log poll failed; its logs stop");
                return;
            }
        };
        // aya-log panics on a record it cannot decode: a bug, not worth the daemon.
        if catch_unwind(AssertUnwindSafe(|| guard.get_inner_mut().flush())).is_err() {
            warn!("a datapath log record could not be decoded; its logs stop");
            return;
        }
        guard.clear_ready();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_names_the_datapath_level() {
        assert_eq!(
            DatapathLog::from_filter("bpfnet=info,datapath=debug"),
            Some(DatapathLog::Debug)
        );
        assert_eq!(DatapathLog::from_filter("debug"), None);
        assert_eq!(DatapathLog::from_filter("datapath=loud"), None);
    }
}
