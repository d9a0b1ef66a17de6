//! Docker's own NAT (iptables: true) fights bpfnet for the same ports: detect it and say
//! which settings to turn off. Old empty chains of an earlier Docker run are harmless.
use std::process::Command;

/// What `check` says when Docker's DNAT rules are there.
pub(super) const WARNING: &str = "Docker's own NAT rules are active (iptables nat chain DOCKER has \
                           DNAT rules): set \"iptables\": false, \"ip-masq\": false and \
                           \"userland-proxy\": false in /etc/docker/daemon.json and restart \
                           dockerd";

/// A warning when the host's nat table has Docker DNAT rules.
pub(super) fn check() -> Option<String> {
    let out = Command::new("iptables")
        .args(["-w", "-t", "nat", "-S", "DOCKER"])
        .output()
        .ok()?;
    let rules = String::from_utf8_lossy(&out.stdout);
    rules
        .lines()
        .any(|l| l.contains("-j DNAT"))
        .then(|| WARNING.to_string())
}
