//! A userspace VPN between two namespaces: a tun device in each (no link-layer header,
//! like `WireGuard`'s or `OpenVPN`'s) and a relay that copies every packet one device sends
//! into the other, as a VPN does once it has decrypted it. Dropping it stops the relay
//! and closes both devices, which removes them.
use std::{
    fs::{File, OpenOptions},
    io::{ErrorKind, Read as _, Write as _},
    os::fd::AsRawFd as _,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::{self, JoinHandle},
};

use crate::netns::Netns;

/// `struct ifreq` as TUNSETIFF reads it: the name, then the flags.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Create tun device `name` (no packet-info prefix) in `ns`, up with `cidr`.
fn open(ns: &Netns, name: &str, cidr: &str) -> File {
    let dev = name.to_string();
    let file = ns.run(move || {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")
            .expect("open /dev/net/tun");
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            flags: (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short,
            _pad: [0; 22],
        };
        req.name[..dev.len()].copy_from_slice(dev.as_bytes());
        // SAFETY: TUNSETIFF reads a struct ifreq, which `req` lays out.
        let rc = unsafe { libc::ioctl(f.as_raw_fd(), libc::TUNSETIFF, &mut req) };
        assert_eq!(
            rc,
            0,
            "TUNSETIFF {dev}: {}",
            std::io::Error::last_os_error()
        );
        f
    });
    ns.ip(&["addr", "add", cidr, "dev", name]);
    ns.ip(&["link", "set", name, "up"]);
    file
}

/// Copy packets from `from` to `to` until `stop`.
fn relay(from: File, to: File, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    thread::spawn(move || {
        let (mut from, mut to) = (from, to);
        let mut buf = vec![0u8; 65536];
        while !stop.load(Ordering::Relaxed) {
            let mut fd = libc::pollfd {
                fd: from.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            if unsafe { libc::poll(&raw mut fd, 1, 50) } <= 0 {
                continue;
            }
            match from.read(&mut buf) {
                // A packet the far side cannot take is lost, as on any link.
                Ok(n) => {
                    let _unused: Result<_, _> = to.write(&buf[..n]);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("tun relay read: {e}"),
            }
        }
    })
}

/// Two tun devices joined by a relay.
pub struct TunLink {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl TunLink {
    /// Tun device `a.1` in `a.0` with address `a.2`, and `b.1` in `b.0` with `b.2`.
    pub fn new(a: (&Netns, &str, &str), b: (&Netns, &str, &str)) -> Self {
        let fa = open(a.0, a.1, a.2);
        let fb = open(b.0, b.1, b.2);
        let stop = Arc::new(AtomicBool::new(false));
        let threads = vec![
            relay(
                fa.try_clone().expect("dup the tun fd"),
                fb.try_clone().expect("dup the tun fd"),
                stop.clone(),
            ),
            relay(fb, fa, stop.clone()),
        ];
        Self { stop, threads }
    }
}

impl Drop for TunLink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _unused: Result<_, _> = t.join();
        }
    }
}
