//! systemd's readiness protocol (`Type=notify`): READY=1 once the maps and links are in
//! place and the control socket answers, STOPPING=1 on the way out. Without
//! `NOTIFY_SOCKET` (not started by systemd) nothing is sent.
use sd_notify::NotifyState;
use tracing::warn;

/// The datapath is attached and the control API answers.
pub(super) fn ready() {
    send(&[
        NotifyState::Ready,
        NotifyState::Status("datapath attached; serving the control API"),
    ]);
}

/// The daemon is leaving; the datapath stays attached.
pub(super) fn stopping() {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("stopping; the datapath stays attached"),
    ]);
}

/// A notification that cannot be sent costs systemd's view of the daemon, never the
/// datapath: it is logged, not fatal.
fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        warn!(error = %e, "cannot notify systemd");
    }
}
