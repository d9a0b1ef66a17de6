//! Raw IP from inside a namespace, for the attacks that ordinary sockets cannot send:
//! forged ICMP errors, blind RSTs, other IP protocols; and a raw receiver that tells
//! whether any such packet arrived. (The packet sockets, `sockaddr_ll` and `poll` stay
//! on libc: rustix has no `sockaddr_ll`, and its `event` feature is not built.)
use std::{
    io,
    net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    time::{Duration, Instant},
};

use rustix::net::{
    AddressFamily, Protocol, RawProtocol, SendFlags, SocketType, ipproto, sendto, socket,
};

use crate::{netns::Netns, packet::ETH_HLEN};

fn check(rc: i32) -> io::Result<i32> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// A raw IPv4 socket of IP protocol `proto`.
fn raw_socket(proto: Protocol) -> io::Result<OwnedFd> {
    Ok(socket(AddressFamily::INET, SocketType::RAW, Some(proto))?)
}

/// Send the IPv4 packet inside `frame` (an Ethernet frame from `packet`) as it is,
/// addresses and all, from `ns`.
pub fn send_frame(ns: &Netns, frame: &[u8]) -> io::Result<()> {
    let ip = frame[ETH_HLEN..].to_vec();
    ns.run(move || {
        let s = raw_socket(ipproto::RAW)?;
        let dst = SocketAddrV4::new(Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]), 0);
        sendto(&s, &ip, SendFlags::empty(), &dst)?;
        Ok(())
    })
}

/// Send the IPv6 packets inside `frames` (Ethernet frames from `packet6`) as they are,
/// addresses and all, from `ns`, routed by its IPv6 routes; how many went.
pub fn send_frames6(ns: &Netns, frames: Vec<Vec<u8>>) -> io::Result<usize> {
    ns.run(move || {
        // IPPROTO_RAW on IPv6 sends the header as given.
        let fd = socket(AddressFamily::INET6, SocketType::RAW, Some(ipproto::RAW))?;
        let mut sent = 0;
        for frame in &frames {
            let ip = &frame[ETH_HLEN..];
            let dst: [u8; 16] = ip[24..40].try_into().expect("an IPv6 header");
            let to = SocketAddrV6::new(Ipv6Addr::from(dst), 0, 0, 0);
            if sendto(&fd, ip, SendFlags::empty(), &to).is_ok() {
                sent += 1;
            }
        }
        Ok(sent)
    })
}

/// Send the Ethernet `frame` as it is out of `dev` in `ns` (ARP and the like).
pub fn send_l2(ns: &Netns, dev: &'static str, frame: &[u8]) -> io::Result<()> {
    let frame = frame.to_vec();
    ns.run(move || {
        // SAFETY: socket(2); the fd is owned below.
        let fd = check(unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) })?;
        // SAFETY: a fresh, valid fd.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let name = std::ffi::CString::new(dev).map_err(io::Error::other)?;
        // SAFETY: if_nametoindex(3) on a NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        // SAFETY: an all-zero sockaddr_ll is valid; the fields sendto needs are set.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = ifindex as i32;
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(&frame[..6]);
        // SAFETY: sendto(2) with a valid buffer and a sockaddr_ll of the right size.
        check(unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&raw const sll).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            )
        } as i32)?;
        Ok(())
    })
}

/// A raw receiver for IP protocol `proto` in a namespace: every packet of it that
/// reaches this namespace's stack.
pub struct Receiver {
    fd: OwnedFd,
}

impl Receiver {
    pub fn open(ns: &Netns, proto: u8) -> Self {
        let fd = ns
            .run(move || {
                let proto = RawProtocol::new(proto.into()).ok_or(io::ErrorKind::InvalidInput)?;
                raw_socket(Protocol::from_raw(proto))
            })
            .expect("raw socket");
        Self { fd }
    }

    /// Source addresses of the packets received within `wait`.
    pub fn sources(&self, wait: Duration) -> Vec<Ipv4Addr> {
        let deadline = Instant::now() + wait;
        let mut out = Vec::new();
        let mut buf = [0u8; 2048];
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = left.as_millis().max(1) as i32;
            // SAFETY: poll(2) on one valid pollfd.
            if unsafe { libc::poll(&raw mut pfd, 1, ms) } <= 0 {
                break;
            }
            // SAFETY: recv(2) into a buffer of its stated size.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n >= 20 {
                out.push(Ipv4Addr::new(buf[12], buf[13], buf[14], buf[15]));
            }
        }
        out
    }
}

/// Start watching `dev` in `ns`: the sequence number of the next TCP segment sent from
/// port `sport` within `wait` (None: no such segment).
pub fn next_seq(
    ns: &Netns,
    dev: &'static str,
    sport: u16,
    wait: Duration,
) -> std::thread::JoinHandle<Option<u32>> {
    ns.spawn(move || {
        // ETH_P_ALL: a socket bound to one protocol sees only what a device receives,
        // not what it sends.
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: socket(2); the fd is owned below.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM, i32::from(proto)) };
        if fd < 0 {
            return None;
        }
        // SAFETY: a fresh, valid fd.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let name = std::ffi::CString::new(dev).ok()?;
        // SAFETY: if_nametoindex(3) on a NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        // SAFETY: an all-zero sockaddr_ll is valid; the fields we need are set below.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: bind(2) with a sockaddr_ll of the right size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const sll).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc < 0 {
            return None;
        }
        let deadline = Instant::now() + wait;
        let mut buf = [0u8; 2048];
        while Instant::now() < deadline {
            let mut pfd = libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: poll(2) on one valid pollfd.
            if unsafe { libc::poll(&raw mut pfd, 1, 100) } <= 0 {
                continue;
            }
            // SAFETY: recv(2) into a buffer of its stated size.
            let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            let ip = &buf[..n.max(0) as usize];
            if ip.len() < 40 || ip[0] >> 4 != 4 || ip[9] != 6 {
                continue;
            }
            let l4 = usize::from(ip[0] & 0x0f) * 4;
            if ip.len() < l4 + 8 || u16::from_be_bytes([ip[l4], ip[l4 + 1]]) != sport {
                continue;
            }
            return Some(u32::from_be_bytes([
                ip[l4 + 4],
                ip[l4 + 5],
                ip[l4 + 6],
                ip[l4 + 7],
            ]));
        }
        None
    })
}
