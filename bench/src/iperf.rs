//! iperf3 streams between namespaces.
use std::{
    net::SocketAddr,
    process::{Child, Command, Output, Stdio},
    thread,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use bpfnet_tests::netns::Netns;
use serde_json::Value;

use crate::pin::Pin;

/// An iperf3 server in a namespace, killed on drop.
pub(crate) struct Server(Child);

impl Server {
    pub(crate) fn start(ns: &Netns, port: u16) -> Self {
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns.name,
                "iperf3",
                "-s",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("iperf3 server starts (`cargo xtask setup` installs iperf3)");
        thread::sleep(Duration::from_millis(300));
        Self(child)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _unused: Result<_, _> = self.0.kill();
        let _unused: Result<_, _> = self.0.wait();
    }
}

/// Gbit/s received in a `secs`-second TCP stream from `ns` to `to` (`reverse`: the
/// server sends), client and server placed by `pin`. No positive rate is an error
/// carrying iperf3's own words.
pub(crate) fn stream(
    ns: &Netns,
    to: SocketAddr,
    secs: f64,
    reverse: bool,
    pin: Pin,
) -> Result<f64> {
    // Whole seconds: iperf3 reads a fraction as 0, which means "forever".
    let whole = secs.round().max(1.0) as u64;
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &ns.name])
        // A stalled stream must not hang the run: iperf3's own idle timeout is 2 minutes.
        .args(["timeout", &(whole + 20).to_string()])
        .args([
            "iperf3",
            "-c",
            &to.ip().to_string(),
            "-p",
            &to.port().to_string(),
        ])
        .args(["-t", &whole.to_string(), "--connect-timeout", "3000", "-J"]);
    if reverse {
        c.arg("-R");
    }
    if let Some(a) = pin.iperf_affinity() {
        c.args(["-A", &a]);
    }
    let out = c.output().context("cannot run iperf3")?;
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let bps = json["end"]["sum_received"]["bits_per_second"].as_f64();
    match bps {
        Some(b) if out.status.success() && b.is_finite() && b > 0.0 => Ok(b / 1e9),
        _ => {
            let got = bps.map_or("no bits_per_second".into(), |b| format!("{b} bit/s"));
            bail!(
                "iperf3 to {to} ({}, {got}): {}",
                out.status,
                why(&out, &json)
            )
        }
    }
}

/// iperf3's error: in its JSON (3.12 exits 0 when it cannot connect), else the tail
/// of what it printed.
fn why(out: &Output, json: &Value) -> String {
    if out.status.code() == Some(124) {
        return "timed out (killed by timeout(1))".into();
    }
    if let Some(e) = json["error"].as_str() {
        return e.to_string();
    }
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    match lines.len() {
        0 => "no output".into(),
        n => lines[n.saturating_sub(5)..].join(" / "),
    }
}
