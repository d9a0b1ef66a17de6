//! The load tool: request/response latency on one connection, connection rate with
//! concurrent clients, UDP request/response; and the servers they talk to.
use std::{
    io::{Read, Write},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicIsize, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use bpfnet_tests::netns::Netns;
use serde::Serialize;

use crate::pin;

/// The CPU the servers answer on (-1: any), read as each connection starts.
static SERVER_CPU: AtomicIsize = AtomicIsize::new(-1);

/// Pin the servers' work (from the next connection or datagram on) to `cpu`, or free it.
pub(crate) fn pin_servers(cpu: Option<usize>) {
    SERVER_CPU.store(cpu.map_or(-1, |c| c as isize), Ordering::Relaxed);
}

fn server_cpu() -> Option<usize> {
    usize::try_from(SERVER_CPU.load(Ordering::Relaxed)).ok()
}

/// Throughput and latency of a run.
#[derive(Clone, Copy, Debug, Serialize)]
pub(crate) struct Rate {
    /// Operations per second.
    pub per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

fn rate(mut lat: Vec<Duration>, elapsed: Duration) -> Rate {
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e6)
    };
    Rate {
        per_sec: lat.len() as f64 / elapsed.as_secs_f64(),
        p50_us: pct(0.50),
        p99_us: pct(0.99),
    }
}

/// TCP and UDP one-byte echo on `port` in `ns`: several acceptors share the listener,
/// each serving a connection until it closes. Stopped on drop.
pub(crate) struct Servers {
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
    listener: TcpListener,
}

/// A TCP listener and a UDP socket on `addr`, an IPv6 one taking IPv6 only (so IPv4
/// keeps its own sockets and the socket programs of its own family).
fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, UdpSocket)> {
    use socket2::{Domain, Socket, Type};
    let socket = |ty: Type| -> std::io::Result<Socket> {
        let s = Socket::new(Domain::for_address(addr), ty, None)?;
        if addr.is_ipv6() {
            s.set_only_v6(true)?;
        }
        s.set_reuse_address(true)?;
        s.bind(&addr.into())?;
        Ok(s)
    };
    let tcp = socket(Type::STREAM)?;
    tcp.listen(1024)?;
    Ok((tcp.into(), socket(Type::DGRAM)?.into()))
}

impl Servers {
    /// Echo servers on `port` of every address of `ip`'s family (`ip` unspecified).
    pub(crate) fn start(ns: &Netns, ip: IpAddr, port: u16) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (tcp, udp) =
            ns.run(move || bind(SocketAddr::new(ip, port)).expect("bench server binds"));
        udp.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let mut threads = Vec::new();
        // Blocking accept, so a connection waits for no poll interval; Drop shuts the
        // listener down to wake the acceptors.
        for _ in 0..8 {
            let (l, s) = (tcp.try_clone().expect("listener clone"), stop.clone());
            threads.push(thread::spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    match l.accept() {
                        Ok((c, _)) => serve(c),
                        Err(_) => return,
                    }
                }
            }));
        }
        let s = stop.clone();
        threads.push(thread::spawn(move || {
            let mut b = [0u8; 64];
            let mut pinned = None;
            while !s.load(Ordering::Relaxed) {
                if pinned != Some(server_cpu()) {
                    pinned = Some(server_cpu());
                    pin::this_thread(server_cpu());
                }
                if let Ok((n, from)) = udp.recv_from(&mut b) {
                    let _unused: Result<_, _> = udp.send_to(&b[..n], from);
                }
            }
        }));
        Self {
            stop,
            threads,
            listener: tcp,
        }
    }
}

fn serve(mut c: TcpStream) {
    pin::this_thread(server_cpu());
    let _unused: Result<_, _> = c.set_nonblocking(false);
    let _unused: Result<_, _> = c.set_nodelay(true);
    let _unused: Result<_, _> = c.set_read_timeout(Some(Duration::from_secs(5)));
    let mut b = [0u8; 1];
    while let Ok(1) = c.read(&mut b) {
        if c.write_all(&b).is_err() {
            return;
        }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Blocked accept() calls return.
        let _unused: Result<_, _> =
            rustix::net::shutdown(&self.listener, rustix::net::Shutdown::Both);
        for t in self.threads.drain(..) {
            let _unused: Result<_, _> = t.join();
        }
    }
}

/// Latencies of the operations that worked; the failed ones counted, the first kept.
#[derive(Default)]
struct Tally {
    lat: Vec<Duration>,
    failed: usize,
    first_error: Option<anyhow::Error>,
}

impl Tally {
    fn record(&mut self, started: Instant, op: Result<()>) {
        match op {
            Ok(()) => self.lat.push(started.elapsed()),
            Err(e) => {
                self.failed += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }

    fn merge(&mut self, other: Self) {
        self.lat.extend(other.lat);
        self.failed += other.failed;
        if let Some(e) = other.first_error {
            self.first_error.get_or_insert(e);
        }
    }

    /// The rate over `elapsed`; a single failed `what` fails the run.
    fn rate(self, what: &str, elapsed: Duration) -> Result<Rate> {
        if let Some(e) = self.first_error {
            bail!(
                "{} of {} {what} failed, the first with: {e:#}",
                self.failed,
                self.failed + self.lat.len()
            );
        }
        ensure!(!self.lat.is_empty(), "no {what} completed in {elapsed:?}");
        Ok(rate(self.lat, elapsed))
    }
}

/// How long a reply may take before the exchange counts as failed.
const REPLY_TIMEOUT: Duration = Duration::from_secs(3);

fn connect(to: SocketAddr) -> Result<TcpStream> {
    let s = TcpStream::connect_timeout(&to, REPLY_TIMEOUT).context("connect")?;
    s.set_nodelay(true).context("nodelay")?;
    s.set_read_timeout(Some(REPLY_TIMEOUT))
        .context("read timeout")?;
    Ok(s)
}

/// One byte out and the same byte back.
fn exchange(mut s: impl Read + Write) -> Result<()> {
    let mut b = [7u8; 1];
    s.write_all(&b).context("send")?;
    s.read_exact(&mut b).context("receive")
}

/// One connection, one byte each way, as fast as it goes, the client on `cpu`; the
/// first failed exchange ends the run as an error.
pub(crate) fn tcp_rr(
    ns: &Netns,
    to: SocketAddr,
    dur: Duration,
    cpu: Option<usize>,
) -> Result<Rate> {
    ns.run(move || {
        pin::this_thread(cpu);
        let mut s = connect(to)?;
        let mut tally = Tally::default();
        let start = Instant::now();
        while start.elapsed() < dur {
            let t = Instant::now();
            tally.record(t, exchange(&mut s));
            if tally.failed > 0 {
                break;
            }
        }
        tally.rate("round trips", start.elapsed())
    })
}

/// `clients` threads each connecting, exchanging one byte and closing, in a loop.
pub(crate) fn conn_rate(ns: &Netns, to: SocketAddr, clients: usize, dur: Duration) -> Result<Rate> {
    let start = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            ns.spawn(move || {
                let mut tally = Tally::default();
                while start.elapsed() < dur {
                    let t = Instant::now();
                    tally.record(t, connect(to).and_then(exchange));
                }
                tally
            })
        })
        .collect();
    let mut tally = Tally::default();
    for h in handles {
        let client = h
            .join()
            .map_err(|_| anyhow!("a connection-rate client thread panicked"))?;
        tally.merge(client);
    }
    tally.rate("connections", start.elapsed())
}

/// One socket, one datagram each way at a time, the client on `cpu`; a lost one counts
/// as failed.
pub(crate) fn udp_rr(
    ns: &Netns,
    to: SocketAddr,
    dur: Duration,
    cpu: Option<usize>,
) -> Result<Rate> {
    ns.run(move || {
        pin::this_thread(cpu);
        let any: SocketAddr = match to {
            SocketAddr::V4(_) => "0.0.0.0:0",
            SocketAddr::V6(_) => "[::]:0",
        }
        .parse()
        .expect("an unspecified address");
        let s = UdpSocket::bind(any).context("UDP bind")?;
        s.connect(to).context("UDP connect")?;
        s.set_read_timeout(Some(Duration::from_secs(1)))
            .context("read timeout")?;
        let mut tally = Tally::default();
        let mut b = [7u8; 1];
        let start = Instant::now();
        while start.elapsed() < dur {
            let t = Instant::now();
            let op = s
                .send(&b)
                .context("send")
                .and_then(|_| s.recv(&mut b).context("receive"));
            tally.record(t, op.map(drop));
        }
        tally.rate("UDP round trips", start.elapsed())
    })
}
