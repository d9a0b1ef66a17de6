//! iperf3 streams between namespaces.
use std::{
    process::{Child, Command, Stdio},
    thread,
    time::Duration,
};

use bpfnet_tests::netns::Netns;

/// An iperf3 server in a namespace, killed on drop.
pub struct Server(Child);

impl Server {
    pub fn start(ns: &Netns, port: u16) -> Self {
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
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Gbit/s received in a `secs`-second TCP stream from `ns` to `to` (`reverse`: the
/// server sends).
pub fn stream(ns: &Netns, to: std::net::SocketAddr, secs: f64, reverse: bool) -> f64 {
    let mut args = vec![
        "netns".to_string(),
        "exec".into(),
        ns.name.clone(),
        "iperf3".into(),
        "-c".into(),
        to.ip().to_string(),
        "-p".into(),
        to.port().to_string(),
        "-t".into(),
        // Whole seconds: iperf3 reads a fraction as 0, which means "forever".
        format!("{}", secs.round().max(1.0) as u64),
        "-J".into(),
    ];
    if reverse {
        args.push("-R".into());
    }
    let out = Command::new("ip")
        .args(&args)
        .output()
        .expect("iperf3 client runs");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    json["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .map_or(0.0, |b| b / 1e9)
}
