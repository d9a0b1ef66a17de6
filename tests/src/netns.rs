//! Throwaway network namespaces, removed on drop, and running code inside them.
use std::{fs::File, os::fd::AsFd as _, process::Command, thread};

/// Run a command, panicking with its output if it fails.
pub fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A named network namespace (under /run/netns), deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(name: &str) -> Self {
        sh(&["ip", "netns", "add", name]);
        let ns = Self { name: name.into() };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// `ip -n NAME ARGS...`
    pub fn ip(&self, args: &[&str]) {
        let mut v = vec!["ip", "-n", &self.name];
        v.extend_from_slice(args);
        sh(&v);
    }

    /// Run a program inside the namespace (`ip netns exec`, fine for sysctl/iptables).
    pub fn exec(&self, args: &[&str]) {
        let mut v = vec!["ip", "netns", "exec", &self.name];
        v.extend_from_slice(args);
        sh(&v);
    }

    /// Run a command inside the namespace and return what it printed on stdout,
    /// whatever its exit status (a probe's report, not a setup step).
    pub fn output(&self, args: &[&str]) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run {args:?} in {}: {e}", self.name));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// ifindex of `dev` inside the namespace.
    pub fn ifindex(&self, dev: &str) -> u32 {
        let out = Command::new("ip")
            .args(["-n", &self.name, "-o", "link", "show", dev])
            .output()
            .expect("ip link show runs");
        let text = String::from_utf8_lossy(&out.stdout);
        text.split(':')
            .next()
            .and_then(|i| i.trim().parse().ok())
            .unwrap_or_else(|| panic!("no ifindex for {dev} in {}: {text}", self.name))
    }

    /// MAC address of `dev` inside the namespace.
    pub fn mac(&self, dev: &str) -> [u8; 6] {
        let out = Command::new("ip")
            .args(["-n", &self.name, "-o", "link", "show", dev])
            .output()
            .expect("ip link show runs");
        let text = String::from_utf8_lossy(&out.stdout);
        let hex = text
            .split("link/ether ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .unwrap_or_else(|| panic!("no MAC for {dev}: {text}"));
        let mut mac = [0u8; 6];
        for (b, h) in mac.iter_mut().zip(hex.split(':')) {
            *b = u8::from_str_radix(h, 16).expect("MAC bytes are hex");
        }
        mac
    }

    /// A counter of /proc/net/snmp in this namespace, e.g. ("Tcp", "`InCsumErrors`").
    pub fn snmp(&self, proto: &'static str, field: &'static str) -> u64 {
        self.run(move || {
            // /proc/net follows the process's first thread; thread-self follows ours.
            let text = std::fs::read_to_string("/proc/thread-self/net/snmp").expect("read snmp");
            let rows: Vec<Vec<&str>> = text
                .lines()
                .filter(|l| l.starts_with(&format!("{proto}:")))
                .map(|l| l.split_whitespace().collect())
                .collect();
            let col = rows[0]
                .iter()
                .position(|f| *f == field)
                .expect("snmp field exists");
            rows[1][col].parse().expect("snmp value is a number")
        })
    }

    /// Run `f` on a thread that has entered this namespace; sockets it creates stay
    /// in the namespace.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        self.spawn(f)
            .join()
            .expect("thread inside the namespace panicked")
    }

    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> thread::JoinHandle<T> {
        let path = self.path();
        thread::spawn(move || {
            enter(&path);
            f()
        })
    }
}

/// Move the calling thread into the network namespace at `path`.
pub fn enter(path: &str) {
    let f = File::open(path).unwrap_or_else(|e| panic!("open {path}: {e}"));
    // Only the calling thread moves.
    rustix::thread::move_into_link_name_space(
        f.as_fd(),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )
    .unwrap_or_else(|e| panic!("setns {path}: {e}"));
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _unused: Result<_, _> = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}
