//! Running the real `bpfnet` binary: the daemon inside a namespace, and the CLI.
use std::{
    collections::BTreeSet,
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use bpfnet::{
    api::{Listing, Program, Stats},
    conntrack::FlowInfo,
};
use common::Reason;

use crate::leftovers;

/// The `bpfnet` binary under test: `BPFNET_BIN` (set by `cargo xtask test`), else the
/// workspace's debug build.
pub fn bin() -> PathBuf {
    let path = std::env::var_os("BPFNET_BIN").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/bpfnet"),
        PathBuf::from,
    );
    assert!(
        path.exists(),
        "bpfnet binary not found at {} (run `cargo xtask test`, or build it and set BPFNET_BIN)",
        path.display()
    );
    path
}

/// `bpfnet daemon --cleanup` in the namespace at `netns_path`, for the daemon whose
/// socket and pin directory these are.
pub fn cleanup(netns_path: &str, socket: &Path, pin_dir: &Path) -> Output {
    Command::new("nsenter")
        .arg(format!("--net={netns_path}"))
        .arg(bin())
        .arg("--socket")
        .arg(socket)
        .args(["daemon", "--cleanup", "--pin-dir"])
        .arg(pin_dir)
        .output()
        .expect("bpfnet daemon --cleanup runs")
}

/// Run the CLI against `socket`.
pub fn cli(socket: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .expect("bpfnet CLI runs")
}

/// Run the CLI and require success, returning stdout.
pub fn cli_ok(socket: &Path, args: &[&str]) -> String {
    let out = cli(socket, args);
    assert!(
        out.status.success(),
        "bpfnet {args:?} should succeed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `bpfnet status --json`, typed, and its exit code.
pub fn status(socket: &Path) -> (bpfnet::api::Status, i32) {
    let out = cli(socket, &["status", "--json"]);
    let code = out.status.code().expect("bpfnet status exits");
    let s = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "status --json prints a status ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (s, code)
}

/// `bpfnet ls --json`, typed.
pub fn ls(socket: &Path) -> Listing {
    serde_json::from_str(&cli_ok(socket, &["ls", "--json"])).expect("ls --json prints a listing")
}

/// `bpfnet stats --json`, typed.
pub fn stats(socket: &Path) -> Stats {
    serde_json::from_str(&cli_ok(socket, &["stats", "--json"])).expect("stats --json prints stats")
}

/// `bpfnet conntrack --json`, typed.
pub fn conntrack(socket: &Path) -> Vec<FlowInfo> {
    serde_json::from_str(&cli_ok(socket, &["conntrack", "--json"]))
        .expect("conntrack --json prints flows")
}

/// Packets counted for `reason` by `bpfnet stats`.
pub fn counter(socket: &Path, reason: Reason) -> u64 {
    let stats = stats(socket);
    stats
        .counters
        .iter()
        .find(|c| c.reason == reason)
        .map_or_else(
            || panic!("no counter {} in {stats:?}", reason.name()),
            |c| c.packets,
        )
}

/// Whether this test run's daemons all run `--xdp` (`BPFNET_TEST_XDP`).
pub fn xdp_on() -> bool {
    std::env::var_os("BPFNET_TEST_XDP").is_some()
}

/// `bpfnet ls`'s `attached` as it reads when every Ethernet uplink in `want` (pairs of
/// interface and program, sorted) also carries `xdp_uplink` under `BPFNET_TEST_XDP`.
pub fn with_xdp(want: &[(&str, Program)]) -> Vec<(String, Program)> {
    let mut pairs: Vec<(String, Program)> = want.iter().map(|&(i, p)| (i.to_owned(), p)).collect();
    if xdp_on() {
        let xdp: Vec<(String, Program)> = pairs
            .iter()
            .filter(|(_, p)| *p == Program::FromUplink)
            .map(|(i, _)| (i.clone(), Program::XdpUplink))
            .collect();
        pairs.extend(xdp);
        pairs.sort();
    }
    pairs
}

/// A `bpfnet daemon` process inside a namespace, killed (by PID) on drop.
pub struct Daemon {
    child: Child,
}

impl Daemon {
    /// Start `bpfnet daemon ARGS` inside the namespace at `netns_path` and wait until the
    /// control socket answers.
    pub fn start(netns_path: &str, socket: &Path, args: &[String]) -> Self {
        Self::start_env(netns_path, socket, args, &[])
    }

    /// `start` with extra environment (e.g. `DOCKER_HOST`). With `BPFNET_TEST_XDP=MODE` in
    /// the test's environment every daemon also runs `--xdp=MODE` (unless the test gives
    /// `--xdp` itself): `cargo xtask test` runs the end-to-end tests again that way.
    pub fn start_env(
        netns_path: &str,
        socket: &Path,
        args: &[String],
        env: &[(&str, &str)],
    ) -> Self {
        Self::spawn(netns_path, socket, args, env, Stdio::inherit())
    }

    /// `start`, its log (stderr) written to `log`.
    pub fn start_logged(netns_path: &str, socket: &Path, args: &[String], log: &Path) -> Self {
        let file = std::fs::File::create(log).expect("create the daemon's log file");
        Self::spawn(netns_path, socket, args, &[], file.into())
    }

    fn spawn(
        netns_path: &str,
        socket: &Path,
        args: &[String],
        env: &[(&str, &str)],
        stderr: Stdio,
    ) -> Self {
        let xdp = std::env::var("BPFNET_TEST_XDP")
            .ok()
            .filter(|_| !args.iter().any(|a| a.starts_with("--xdp")))
            .map(|mode| format!("--xdp={mode}"));
        let mut child = Command::new("nsenter")
            .arg(format!("--net={netns_path}"))
            .arg(bin())
            .arg("--socket")
            .arg(socket)
            .arg("daemon")
            .args(args)
            .args(xdp)
            .env("BPFNET_LOG", "bpfnet=debug,info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("nsenter + bpfnet daemon start");
        leftovers::record(child.id());
        let deadline = Instant::now() + Duration::from_secs(20);
        while UnixStream::connect(socket).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("bpfnet daemon exited during start-up: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "bpfnet daemon did not open {}",
                socket.display()
            );
            thread::sleep(Duration::from_millis(50));
        }
        Self { child }
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(self) {
        drop(self);
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _unused: Result<_, _> = self.child.kill();
        let _unused: Result<_, _> = self.child.wait();
        leftovers::forget(self.child.id());
    }
}

/// (link id, program id) of every link pinned under `pin_dir/links`.
pub fn pinned_links(pin_dir: &Path) -> Vec<(u32, u32)> {
    let dir = pin_dir.join("links");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("list {}: {e}", dir.display()))
        .map(|e| {
            let path = e.expect("pinned link entry").path();
            let link = aya::programs::links::PinnedLink::from_pin(&path)
                .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
            let info = aya::programs::links::FdLink::from(link)
                .info()
                .unwrap_or_else(|e| panic!("info of {}: {e}", path.display()));
            (info.id(), info.program_id())
        })
        .collect()
}

/// IDs of every BPF link and every BPF program alive in the kernel now.
pub fn live_bpf_ids() -> (BTreeSet<u32>, BTreeSet<u32>) {
    let links = aya::programs::loaded_links()
        .filter_map(Result::ok)
        .map(|l| l.id())
        .collect();
    let progs = aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .map(|p| p.id())
        .collect();
    (links, progs)
}

/// Do what LRU eviction does to the one flow whose server port is `port`: remove its
/// reply entry from the pinned CT table `table` (`ct_v3`, `ct6_v1`) of `pin_dir`. Then
/// wait for the daemon's sweeper (started with `--ct-sweep-interval 1`) to put it back
/// under its old key: its full walk, which repairs, runs at least every tenth sweep.
pub fn evict_reply_and_await_repair<A>(pin_dir: &Path, table: &str, port: u16)
where
    A: common::Addr,
    common::CtKey<A>: aya::Pod,
    common::CtValue<A>: aya::Pod,
{
    let mut ct = pinned_ct::<A>(pin_dir, table);
    let replies: Vec<common::CtKey<A>> = ct
        .iter()
        .filter_map(Result::ok)
        .filter(|(k, v)| v.is_reply() && k.src_port.get() == port)
        .map(|(k, _)| k)
        .collect();
    assert_eq!(replies.len(), 1, "one reply entry for the connection");
    ct.remove(&replies[0]).expect("evict the reply entry");
    let deadline = Instant::now() + Duration::from_secs(15);
    while ct.get(&replies[0], 0).is_err() {
        assert!(
            Instant::now() < deadline,
            "the reply entry is back under its old key within ten sweeps"
        );
        thread::sleep(Duration::from_millis(200));
    }
}

/// How many entries the pinned CT table `table` (`ct_v3`, `ct6_new_v1`…) of `pin_dir`
/// holds.
pub fn ct_table_len<A>(pin_dir: &Path, table: &str) -> usize
where
    A: common::Addr,
    common::CtKey<A>: aya::Pod,
    common::CtValue<A>: aya::Pod,
{
    pinned_ct::<A>(pin_dir, table)
        .keys()
        .filter_map(Result::ok)
        .count()
}

/// The pinned CT table `table` of `pin_dir`, opened from userspace.
fn pinned_ct<A>(
    pin_dir: &Path,
    table: &str,
) -> aya::maps::HashMap<aya::maps::MapData, common::CtKey<A>, common::CtValue<A>>
where
    A: common::Addr,
    common::CtKey<A>: aya::Pod,
    common::CtValue<A>: aya::Pod,
{
    use aya::maps::{HashMap, Map, MapData};
    let pin = pin_dir.join(table);
    let map = MapData::from_pin(&pin).unwrap_or_else(|e| panic!("{}: {e}", pin.display()));
    HashMap::try_from(Map::LruHashMap(map)).expect("a CT map")
}

/// Every IPv4 endpoint in the pinned `endpoints_v1` of `pin_dir`, registered or bound by
/// the datapath (`EP_LEARNED`), by address.
pub fn pinned_endpoints(pin_dir: &Path) -> Vec<(std::net::Ipv4Addr, common::Endpoint)> {
    pinned_hash::<u32, common::Endpoint>(pin_dir, "endpoints_v1")
        .into_iter()
        .map(|(ip, ep)| (std::net::Ipv4Addr::from(ip.to_ne_bytes()), ep))
        .collect()
}

/// The ifindexes the pinned `ports_v2` of `pin_dir` holds: the bridge ports the datapath
/// treats as a container's.
pub fn pinned_ports(pin_dir: &Path) -> Vec<u32> {
    pinned_hash::<u32, common::Port>(pin_dir, "ports_v2")
        .into_iter()
        .map(|(ifindex, _)| ifindex)
        .collect()
}

/// Every entry of the pinned hash map `name` of `pin_dir`.
fn pinned_hash<K: aya::Pod, V: aya::Pod>(pin_dir: &Path, name: &str) -> Vec<(K, V)> {
    use aya::maps::{HashMap, Map, MapData};
    let pin = pin_dir.join(name);
    let map = MapData::from_pin(&pin).unwrap_or_else(|e| panic!("{}: {e}", pin.display()));
    let map: HashMap<MapData, K, V> =
        HashMap::try_from(Map::HashMap(map)).unwrap_or_else(|e| panic!("{name}: {e}"));
    map.iter().filter_map(Result::ok).collect()
}

/// Every key of the pinned hash map `name` of `pin_dir`, whose values are `V`s.
pub fn pinned_keys<K: aya::Pod, V: aya::Pod>(pin_dir: &Path, name: &str) -> Vec<K> {
    pinned_hash::<K, V>(pin_dir, name)
        .into_iter()
        .map(|(k, _)| k)
        .collect()
}

/// Remove `key` from the pinned hash map `name` of `pin_dir`, as a user would by hand.
pub fn remove_pinned<K: aya::Pod, V: aya::Pod>(pin_dir: &Path, name: &str, key: &K) {
    use aya::maps::{HashMap, Map, MapData};
    let pin = pin_dir.join(name);
    let map = MapData::from_pin(&pin).unwrap_or_else(|e| panic!("{}: {e}", pin.display()));
    let mut map: HashMap<MapData, K, V> =
        HashMap::try_from(Map::HashMap(map)).unwrap_or_else(|e| panic!("{name}: {e}"));
    map.remove(key)
        .unwrap_or_else(|e| panic!("remove an entry of {name} by hand: {e}"));
}
