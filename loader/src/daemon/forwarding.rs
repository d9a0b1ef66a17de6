//! The host's forwarding switches: routed delivery (`bpf_fib_lookup`) answers
//! "forwarding disabled" unless they are on, as Docker also requires.
use std::{fs, path::Path};

use tracing::{info, warn};

const IPV4: &str = "/proc/sys/net/ipv4/ip_forward";
const IPV6_CONF: &str = "/proc/sys/net/ipv6/conf";

/// Turn IPv4 and IPv6 forwarding on.
pub(super) fn enable() {
    set(IPV4, "net.ipv4.ip_forward");
    let all = Path::new(IPV6_CONF).join("all/forwarding");
    if !all.exists() || fs::read_to_string(&all).is_ok_and(|v| v.trim() == "1") {
        // No IPv6 in this kernel or namespace, or already forwarding.
        return;
    }
    keep_router_advertisements();
    set(&all.display().to_string(), "net.ipv6.conf.all.forwarding");
}

fn set(path: &str, name: &str) {
    if fs::read_to_string(path).is_ok_and(|v| v.trim() == "1") {
        return;
    }
    match fs::write(path, "1") {
        Ok(()) => info!("enabled {name}"),
        Err(e) => warn!(error = %e, "cannot enable {name}; routed delivery will fail"),
    }
}

/// An interface with `accept_ra=1` ignores router advertisements once the host
/// forwards, and with them its autoconfigured address and default route: each (and
/// `default`, for interfaces to come) is told to accept them while forwarding (2), as
/// Docker's documentation asks users to do by hand. Managed bridges and container
/// veths are then set back to 0 as they are managed (`refuse_router_advertisements`).
fn keep_router_advertisements() {
    let Ok(dirs) = fs::read_dir(IPV6_CONF) else {
        return;
    };
    for dir in dirs.flatten() {
        let name = dir.file_name();
        if name == "all" || name == "lo" {
            continue;
        }
        let path = dir.path().join("accept_ra");
        if fs::read_to_string(&path).is_ok_and(|v| v.trim() == "1") {
            match fs::write(&path, "2") {
                Ok(()) => {
                    info!(iface = ?name, "accept_ra=2: keeps router advertisements while forwarding");
                }
                Err(e) => warn!(iface = ?name, error = %e, "cannot set accept_ra=2"),
            }
        }
    }
}

/// A managed bridge or a container's veth takes no router advertisement
/// (`accept_ra=0`): an advertisement from a container must never give the host a
/// default route into it. Written only when it is not 0 already; a missing file is a
/// host without IPv6.
pub(super) fn refuse_router_advertisements(dev: &str) {
    let path = Path::new(IPV6_CONF).join(dev).join("accept_ra");
    if fs::read_to_string(&path).map_or(true, |v| v.trim() == "0") {
        return;
    }
    match fs::write(&path, "0") {
        Ok(()) => info!(
            iface = dev,
            "accept_ra=0: a managed interface takes no router advertisement"
        ),
        Err(e) => warn!(iface = dev, error = %e, "cannot set accept_ra=0"),
    }
}
