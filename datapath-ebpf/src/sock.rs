//! Host-local access to published ports: cgroup socket programs point a host socket that
//! dials a published address (127.0.0.1:PORT, a host address:PORT) straight at the
//! backend, and show the dialed address back to the application. This replaces
//! docker-proxy and `route_localnet`. IPv6 sockets alike (`[::1]:PORT`, a host IPv6
//! address, and `::ffff:127.0.0.1:PORT` from a dual-stack socket, which reaches the IPv4
//! publish). Only sockets of the daemon's network namespace are touched: cgroup
//! programs see every namespace.
use aya_ebpf::{
    EbpfContext,
    bindings::bpf_sock_addr,
    helpers::generated::{bpf_get_netns_cookie, bpf_get_socket_cookie},
    programs::SockAddrContext,
};
use common::{Be16, Be32, CtKey, Ip6, PROTO_UDP, SockKey, SockKey6, SockOrig, SockOrig6};

use crate::{
    family::Family,
    maps::{CONFIG, SOCK_REVNAT, SOCK_REVNAT6},
    nat::published,
};

/// Verdict of a `sock_addr` program: let the call go on.
const ALLOW: i32 = 1;

#[inline(always)]
fn ours(ctx: &SockAddrContext) -> bool {
    let Some(cfg) = CONFIG.get(0) else {
        return false;
    };
    // SAFETY: helper on this program's context.
    cfg.netns_cookie != 0 && unsafe { bpf_get_netns_cookie(ctx.as_ptr()) } == cfg.netns_cookie
}

/// Record the answer a host socket's UDP datagram to `remote` (this call's destination)
/// expects, in its family's `host_udp` map: from then on it is the host's, whatever a
/// publish covers.
///
/// # Safety
/// `sa` is the kernel's `bpf_sock_addr` of a sendmsg4/sendmsg6 call.
#[inline(always)]
unsafe fn record_answer<A: Family>(sa: *mut bpf_sock_addr, remote: A) {
    // SAFETY: the caller's bpf_sock_addr: the socket, its protocol and source port, and
    // the destination port are readable for sendmsg.
    unsafe {
        let sk = (*sa).__bindgen_anon_1.sk;
        if sk.is_null() || (*sa).protocol != u32::from(PROTO_UDP) {
            return;
        }
        let answer = CtKey::new(
            remote,
            A::ZERO,
            Be16::from_raw((*sa).user_port as u16),
            Be16::new((*sk).src_port as u16),
            PROTO_UDP,
        );
        let _unused: Result<_, _> = A::host_udp().insert(answer, 0, 0);
    }
}

/// sendmsg4: a datagram a host socket sends; its answers are the host's (recorded), and
/// a published destination becomes its backend.
#[inline(always)]
pub(crate) fn host_datagram(ctx: &SockAddrContext) -> i32 {
    if !ours(ctx) {
        return ALLOW;
    }
    // SAFETY: the kernel's bpf_sock_addr for this sendmsg4 call.
    unsafe { record_answer(ctx.sock_addr, (*ctx.sock_addr).user_ip4) };
    to_backend(ctx)
}

/// connect4 and sendmsg4: a published destination becomes its backend.
#[inline(always)]
pub(crate) fn to_backend(ctx: &SockAddrContext) -> i32 {
    if !ours(ctx) {
        return ALLOW;
    }
    let sa = ctx.sock_addr;
    // SAFETY: the kernel's bpf_sock_addr for this call; user_ip4/user_port are readable
    // and writable for connect4 and sendmsg4.
    unsafe {
        let ip = (*sa).user_ip4;
        let port = Be16::from_raw((*sa).user_port as u16);
        let Some(b) = published(ip, port, (*sa).protocol as u8) else {
            return ALLOW;
        };
        let key = SockKey::new(
            bpf_get_socket_cookie(ctx.as_ptr()),
            Be32::from_raw(b.ip),
            b.port,
        );
        let orig = SockOrig::new(Be32::from_raw(ip), port);
        if SOCK_REVNAT.insert(key, orig, 0).is_err() {
            return ALLOW;
        }
        (*sa).user_ip4 = b.ip;
        (*sa).user_port = u32::from(b.port.raw());
    }
    ALLOW
}

/// getpeername4 and recvmsg4: the backend's address is shown as the one dialed.
#[inline(always)]
pub(crate) fn from_backend(ctx: &SockAddrContext) -> i32 {
    if !ours(ctx) {
        return ALLOW;
    }
    let sa = ctx.sock_addr;
    // SAFETY: as above; getpeername4/recvmsg4 may rewrite user_ip4/user_port.
    unsafe {
        let key = SockKey::new(
            bpf_get_socket_cookie(ctx.as_ptr()),
            Be32::from_raw((*sa).user_ip4),
            Be16::from_raw((*sa).user_port as u16),
        );
        if let Some(orig) = SOCK_REVNAT.get(key) {
            (*sa).user_ip4 = orig.ip.raw();
            (*sa).user_port = u32::from(orig.port.raw());
        }
    }
    ALLOW
}

/// `::ffff:0:0/96`'s third word, as stored.
const V4_MAPPED: u32 = u32::from_ne_bytes([0, 0, 0xff, 0xff]);

/// The IPv4 address of a v4-mapped IPv6 address (a dual-stack socket dialing IPv4).
#[inline(always)]
fn mapped_v4(ip: &Ip6) -> Option<u32> {
    let w = ip.words;
    (w[0] == 0 && w[1] == 0 && w[2] == V4_MAPPED).then_some(w[3])
}

/// sendmsg6: as `host_datagram`, for an IPv6 socket. (A datagram a dual-stack socket
/// sends to a v4-mapped address leaves through `udp_sendmsg` and sendmsg4.)
#[inline(always)]
pub(crate) fn host_datagram6(ctx: &SockAddrContext) -> i32 {
    if !ours(ctx) {
        return ALLOW;
    }
    // SAFETY: the kernel's bpf_sock_addr for this sendmsg6 call. Its address is read a
    // word at a time, each load from the context itself (the verifier refuses a load
    // through a context pointer moved first, which a copy of the array may compile to).
    unsafe {
        let sa = ctx.sock_addr;
        let w = |i: usize| core::ptr::read_volatile(&raw const (*sa).user_ip6[i]);
        let remote = Ip6 {
            words: [w(0), w(1), w(2), w(3)],
        };
        record_answer(sa, remote);
    }
    to_backend6(ctx)
}

/// connect6 and sendmsg6: a published destination becomes its backend: an IPv6 publish
/// for an IPv6 address (`[::1]:PORT`, a host address), an IPv4 one for a v4-mapped
/// address (`::ffff:127.0.0.1:PORT` from a dual-stack socket), dialed as v4-mapped.
#[inline(always)]
pub(crate) fn to_backend6(ctx: &SockAddrContext) -> i32 {
    if !ours(ctx) {
        return ALLOW;
    }
    let sa = ctx.sock_addr;
    // SAFETY: the kernel's bpf_sock_addr for this call; user_ip6/user_port are readable
    // and writable (a word at a time) for connect6 and sendmsg6.
    unsafe {
        let dialed = Ip6 {
            words: (*sa).user_ip6,
        };
        let port = Be16::from_raw((*sa).user_port as u16);
        let proto = (*sa).protocol as u8;
        let (ip, to_port) = match mapped_v4(&dialed) {
            Some(v4) => match published(v4, port, proto) {
                Some(b) => (
                    Ip6 {
                        words: [0, 0, V4_MAPPED, b.ip],
                    },
                    b.port,
                ),
                None => return ALLOW,
            },
            None => match published(dialed, port, proto) {
                Some(b) => (b.ip, b.port),
                None => return ALLOW,
            },
        };
        let key = SockKey6::new(bpf_get_socket_cookie(ctx.as_ptr()), ip, to_port);
        let orig = SockOrig6::new(dialed, port);
        if SOCK_REVNAT6.insert(key, orig, 0).is_err() {
            return ALLOW;
        }
        (*sa).user_ip6[0] = ip.words[0];
        (*sa).user_ip6[1] = ip.words[1];
        (*sa).user_ip6[2] = ip.words[2];
        (*sa).user_ip6[3] = ip.words[3];
        (*sa).user_port = u32::from(to_port.raw());
    }
    ALLOW
}

/// getpeername6 and recvmsg6: the backend's address is shown as the one dialed.
#[inline(always)]
pub(crate) fn from_backend6(ctx: &SockAddrContext) -> i32 {
    if !ours(ctx) {
        return ALLOW;
    }
    let sa = ctx.sock_addr;
    // SAFETY: as above; getpeername6/recvmsg6 may rewrite user_ip6/user_port.
    unsafe {
        let key = SockKey6::new(
            bpf_get_socket_cookie(ctx.as_ptr()),
            Ip6 {
                words: (*sa).user_ip6,
            },
            Be16::from_raw((*sa).user_port as u16),
        );
        if let Some(orig) = SOCK_REVNAT6.get(key) {
            let w = orig.ip.words;
            (*sa).user_ip6[0] = w[0];
            (*sa).user_ip6[1] = w[1];
            (*sa).user_ip6[2] = w[2];
            (*sa).user_ip6[3] = w[3];
            (*sa).user_port = u32::from(orig.port.raw());
        }
    }
    ALLOW
}
