//! The load tool: request/response latency on one connection, connection rate with
//! concurrent clients, UDP request/response; and the servers they talk to.
use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use bpfnet_tests::netns::Netns;
use serde::Serialize;

/// Throughput and latency of a run.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Rate {
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
pub struct Servers {
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
    listener: TcpListener,
}

impl Servers {
    pub fn start(ns: &Netns, port: u16) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (tcp, udp) = ns.run(move || {
            (
                TcpListener::bind(("0.0.0.0", port)).expect("bench TCP server bind"),
                UdpSocket::bind(("0.0.0.0", port)).expect("bench UDP server bind"),
            )
        });
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
            while !s.load(Ordering::Relaxed) {
                if let Ok((n, from)) = udp.recv_from(&mut b) {
                    let _ = udp.send_to(&b[..n], from);
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
    let _ = c.set_nonblocking(false);
    let _ = c.set_nodelay(true);
    let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
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
        // SAFETY: shutdown(2) on the listener's own fd; blocked accept() calls return.
        unsafe {
            libc::shutdown(
                std::os::fd::AsRawFd::as_raw_fd(&self.listener),
                libc::SHUT_RDWR,
            )
        };
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// One connection, one byte each way, as fast as it goes.
pub fn tcp_rr(ns: &Netns, to: SocketAddr, dur: Duration) -> Rate {
    ns.run(move || {
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(3)).expect("RR connect");
        s.set_nodelay(true).expect("nodelay");
        let mut lat = Vec::new();
        let mut b = [7u8; 1];
        let start = Instant::now();
        while start.elapsed() < dur {
            let t = Instant::now();
            s.write_all(&b).expect("RR send");
            s.read_exact(&mut b).expect("RR receive");
            lat.push(t.elapsed());
        }
        rate(lat, start.elapsed())
    })
}

/// `clients` threads each connecting, exchanging one byte and closing, in a loop.
pub fn conn_rate(ns: &Netns, to: SocketAddr, clients: usize, dur: Duration) -> Rate {
    let start = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            ns.spawn(move || {
                let mut lat = Vec::new();
                while start.elapsed() < dur {
                    let t = Instant::now();
                    let Ok(mut s) = TcpStream::connect_timeout(&to, Duration::from_secs(3)) else {
                        continue;
                    };
                    let _ = s.set_nodelay(true);
                    let mut b = [1u8; 1];
                    if s.write_all(&b).is_ok() && s.read_exact(&mut b).is_ok() {
                        lat.push(t.elapsed());
                    }
                }
                lat
            })
        })
        .collect();
    let lat: Vec<Duration> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap_or_default())
        .collect();
    rate(lat, start.elapsed())
}

/// One socket, one datagram each way at a time.
pub fn udp_rr(ns: &Netns, to: SocketAddr, dur: Duration) -> Rate {
    ns.run(move || {
        let s = UdpSocket::bind("0.0.0.0:0").expect("UDP bind");
        s.connect(to).expect("UDP connect");
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let mut lat = Vec::new();
        let mut b = [7u8; 1];
        let start = Instant::now();
        while start.elapsed() < dur {
            let t = Instant::now();
            if s.send(&b).is_ok() && s.recv(&mut b).is_ok() {
                lat.push(t.elapsed());
            }
        }
        rate(lat, start.elapsed())
    })
}
