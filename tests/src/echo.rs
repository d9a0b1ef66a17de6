//! Echo servers that answer `PORT:` + payload (so a test sees which port it reached), and
//! clients, each created on a thread inside a namespace.
use std::{
    io::{self, Read as _, Write as _},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use crate::netns::Netns;

const POLL: Duration = Duration::from_millis(50);
pub const IO_TIMEOUT: Duration = Duration::from_secs(3);

/// A TCP and a UDP server on one port inside a namespace, each connection served on a
/// thread of its own; stopped and joined on drop.
pub struct Server {
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
}

/// Serves one accepted TCP connection (the peer as the server saw it, and the port).
type OnTcp = fn(TcpStream, SocketAddr, u16);
/// The answer to one UDP datagram.
type OnUdp = fn(&[u8], SocketAddr, u16) -> Vec<u8>;

impl Server {
    /// On every address of one family (`any`: 0.0.0.0 or ::).
    fn start(ns: &Netns, any: IpAddr, port: u16, on_tcp: OnTcp, on_udp: OnUdp) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (tcp, udp) = ns.run(move || {
            let tcp = TcpListener::bind((any, port)).expect("bind TCP server");
            let udp = UdpSocket::bind((any, port)).expect("bind UDP server");
            (tcp, udp)
        });
        tcp.set_nonblocking(true).expect("nonblocking listener");
        udp.set_read_timeout(Some(POLL)).expect("udp timeout");
        let s1 = stop.clone();
        let t = thread::spawn(move || {
            while !s1.load(Ordering::Relaxed) {
                match tcp.accept() {
                    Ok((c, peer)) => {
                        let _unused: Result<_, _> = c.set_nonblocking(false);
                        thread::spawn(move || on_tcp(c, peer, port));
                    }
                    Err(_) => thread::sleep(POLL),
                }
            }
        });
        let s2 = stop.clone();
        let u = thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !s2.load(Ordering::Relaxed) {
                if let Ok((n, from)) = udp.recv_from(&mut buf) {
                    let _unused: Result<_, _> = udp.send_to(&on_udp(&buf[..n], from, port), from);
                }
            }
        });
        Self {
            stop,
            threads: vec![t, u],
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _unused: Result<_, _> = t.join();
        }
    }
}

/// Echo servers that answer `PORT:` + payload, so a test sees which port it reached.
pub struct EchoServer;

impl EchoServer {
    pub fn start(ns: &Netns, port: u16) -> Server {
        Self::start_on(ns, Ipv4Addr::UNSPECIFIED.into(), port)
    }

    /// On IPv6 (every address of the namespace).
    pub fn start6(ns: &Netns, port: u16) -> Server {
        Self::start_on(ns, Ipv6Addr::UNSPECIFIED.into(), port)
    }

    fn start_on(ns: &Netns, any: IpAddr, port: u16) -> Server {
        Server::start(
            ns,
            any,
            port,
            |c, _, port| serve_echo(c, port),
            |msg, _, port| {
                let mut reply = format!("{port}:").into_bytes();
                reply.extend_from_slice(msg);
                reply
            },
        )
    }
}

fn serve_echo(mut c: TcpStream, port: u16) {
    if c.write_all(format!("{port}:").as_bytes()).is_err() {
        return;
    }
    let mut buf = vec![0u8; 65536];
    loop {
        match c.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if c.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// Servers that answer every TCP connection and UDP datagram with the peer's `ip:port`
/// as they saw it.
pub struct WhoamiServer;

impl WhoamiServer {
    pub fn start(ns: &Netns, port: u16) -> Server {
        Self::start_on(ns, Ipv4Addr::UNSPECIFIED.into(), port)
    }

    /// On IPv6 (every address of the namespace).
    pub fn start6(ns: &Netns, port: u16) -> Server {
        Self::start_on(ns, Ipv6Addr::UNSPECIFIED.into(), port)
    }

    fn start_on(ns: &Netns, any: IpAddr, port: u16) -> Server {
        Server::start(
            ns,
            any,
            port,
            |mut c, peer, _| {
                // Read the request to its end first: closing with unread data would
                // reset the connection under the answer.
                let _unused: Result<_, _> = c.set_read_timeout(Some(IO_TIMEOUT));
                let _unused: Result<_, _> = c.read_to_end(&mut Vec::new());
                let _unused: Result<_, _> = c.write_all(peer.to_string().as_bytes());
            },
            |_, from, _| from.to_string().into_bytes(),
        )
    }
}

impl WhoamiServer {
    /// The peer address a whoami answer names.
    pub fn seen(reply: &[u8]) -> SocketAddr {
        String::from_utf8_lossy(reply)
            .parse()
            .unwrap_or_else(|e| panic!("a whoami server answered {reply:?}: {e}"))
    }
}

/// Connect from `ns` to `to`, send `msg`, return the whole reply (`PORT:` + msg).
pub fn tcp_roundtrip(ns: &Netns, to: SocketAddr, msg: &'static [u8]) -> io::Result<Vec<u8>> {
    ns.run(move || {
        let mut s = TcpStream::connect_timeout(&to, IO_TIMEOUT).map_err(timed_out)?;
        s.set_read_timeout(Some(IO_TIMEOUT))?;
        s.write_all(msg)?;
        s.shutdown(std::net::Shutdown::Write)?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).map_err(timed_out)?;
        Ok(out)
    })
}

/// Send one datagram from `ns` to `to` and return the reply, which must come from `to`
/// itself: a reply that missed its reverse translation is an error, not an answer. One
/// datagram, no retry, so a datapath that loses a flow's first packet fails here.
pub fn udp_roundtrip(ns: &Netns, to: SocketAddr, msg: &'static [u8]) -> io::Result<Vec<u8>> {
    ns.run(move || {
        let s = UdpSocket::bind(if to.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" })?;
        s.set_read_timeout(Some(IO_TIMEOUT))?;
        s.send_to(msg, to)?;
        let mut buf = vec![0u8; 65536];
        let (n, from) = s.recv_from(&mut buf).map_err(timed_out)?;
        if from != to {
            return Err(io::Error::other(format!(
                "reply from {from}, not from {to}: {:?}",
                String::from_utf8_lossy(&buf[..n])
            )));
        }
        Ok(buf[..n].to_vec())
    })
}

/// A socket timeout reads as EAGAIN on Linux; call it what it is.
fn timed_out(e: io::Error) -> io::Error {
    match e.kind() {
        io::ErrorKind::WouldBlock => io::ErrorKind::TimedOut.into(),
        _ => e,
    }
}

/// A negative check: `r` must have failed with exactly `kind` (refused: the host answered
/// that nothing listens; timed out: the packet was dropped on the way).
#[track_caller]
pub fn assert_fails<T: std::fmt::Debug>(what: &str, r: io::Result<T>, kind: io::ErrorKind) {
    match r {
        Ok(v) => panic!("{what}: expected {kind:?}, but it went through: {v:?}"),
        Err(e) => assert_eq!(e.kind(), kind, "{what}: expected {kind:?}, got `{e}`"),
    }
}

/// Connect from `ns` (the socket lives there) and hand back the stream.
pub fn tcp_connect(ns: &Netns, to: SocketAddr) -> io::Result<TcpStream> {
    ns.run(move || {
        let s = TcpStream::connect_timeout(&to, IO_TIMEOUT)?;
        s.set_read_timeout(Some(IO_TIMEOUT))?;
        Ok(s)
    })
}

/// `connect()` from a chosen local address and port (std has no bind-before-connect),
/// giving up after 2 s with `TimedOut`. Call it inside the namespace.
pub fn tcp_connect_from(from: SocketAddr, to: SocketAddr) -> io::Result<TcpStream> {
    use rustix::{
        io::Errno,
        net::{
            AddressFamily, SocketType, bind, connect, socket,
            sockopt::{Timeout, set_socket_reuseaddr, set_socket_timeout},
        },
    };
    let (SocketAddr::V4(from), SocketAddr::V4(to)) = (from, to) else {
        return Err(io::ErrorKind::Unsupported.into());
    };
    let fd = socket(AddressFamily::INET, SocketType::STREAM, None)?;
    set_socket_reuseaddr(&fd, true)?;
    bind(&fd, &from)?;
    set_socket_timeout(&fd, Timeout::Send, Some(Duration::from_secs(2)))?;
    match connect(&fd, &to) {
        // connect() that runs out of SO_SNDTIMEO says EINPROGRESS.
        Err(Errno::INPROGRESS) => return Err(io::ErrorKind::TimedOut.into()),
        r => r?,
    }
    let s = TcpStream::from(fd);
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    Ok(s)
}
