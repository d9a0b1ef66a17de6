//! Host-local access to published ports: cgroup socket programs point a host socket that
//! dials a published address (127.0.0.1:PORT, a host address:PORT) straight at the
//! backend, and show the dialed address back to the application. This replaces
//! docker-proxy and route_localnet. Only sockets of the daemon's network namespace are
//! touched: cgroup programs see every namespace.
use aya_ebpf::{
    EbpfContext,
    helpers::generated::{bpf_get_netns_cookie, bpf_get_socket_cookie},
    programs::SockAddrContext,
};
use common::{CtKey, PROTO_UDP, SockKey, SockOrig};

use crate::{
    maps::{CONFIG, HOST_UDP, SOCK_REVNAT},
    nat::published,
};

/// Verdict of a sock_addr program: let the call go on.
const ALLOW: i32 = 1;

#[inline(always)]
fn ours(ctx: &SockAddrContext) -> bool {
    let Some(cfg) = CONFIG.get(0) else {
        return false;
    };
    // SAFETY: helper on this program's context.
    cfg.netns_cookie != 0 && unsafe { bpf_get_netns_cookie(ctx.as_ptr()) } == cfg.netns_cookie
}

/// sendmsg4: a datagram a host socket sends; its answers are the host's (recorded), and
/// a published destination becomes its backend.
#[inline(always)]
pub fn host_datagram(ctx: &SockAddrContext) -> i32 {
    if !ours(ctx) {
        return ALLOW;
    }
    // SAFETY: the kernel's bpf_sock_addr for this call: user_ip4/user_port and the
    // socket's source port are readable for sendmsg4.
    unsafe {
        let sa = ctx.sock_addr;
        let sk = (*sa).__bindgen_anon_1.sk;
        if !sk.is_null() && (*sa).protocol == u32::from(PROTO_UDP) {
            let answer = CtKey {
                src_ip: (*sa).user_ip4,
                dst_ip: 0,
                src_port: (*sa).user_port as u16,
                dst_port: ((*sk).src_port as u16).to_be(),
                proto: PROTO_UDP,
                _pad: [0; 3],
            };
            let _ = HOST_UDP.insert(answer, 0, 0);
        }
    }
    to_backend(ctx)
}

/// connect4 and sendmsg4: a published destination becomes its backend.
#[inline(always)]
pub fn to_backend(ctx: &SockAddrContext) -> i32 {
    if !ours(ctx) {
        return ALLOW;
    }
    let sa = ctx.sock_addr;
    // SAFETY: the kernel's bpf_sock_addr for this call; user_ip4/user_port are readable
    // and writable for connect4 and sendmsg4.
    unsafe {
        let ip = (*sa).user_ip4;
        let port = (*sa).user_port as u16;
        let Some(b) = published(ip, port, (*sa).protocol as u8) else {
            return ALLOW;
        };
        let key = SockKey {
            cookie: bpf_get_socket_cookie(ctx.as_ptr()),
            ip: b.ip,
            port: b.port,
            _pad: 0,
        };
        let orig = SockOrig { ip, port, _pad: 0 };
        if SOCK_REVNAT.insert(key, orig, 0).is_err() {
            return ALLOW;
        }
        (*sa).user_ip4 = b.ip;
        (*sa).user_port = u32::from(b.port);
    }
    ALLOW
}

/// getpeername4 and recvmsg4: the backend's address is shown as the one dialed.
#[inline(always)]
pub fn from_backend(ctx: &SockAddrContext) -> i32 {
    if !ours(ctx) {
        return ALLOW;
    }
    let sa = ctx.sock_addr;
    // SAFETY: as above; getpeername4/recvmsg4 may rewrite user_ip4/user_port.
    unsafe {
        let key = SockKey {
            cookie: bpf_get_socket_cookie(ctx.as_ptr()),
            ip: (*sa).user_ip4,
            port: (*sa).user_port as u16,
            _pad: 0,
        };
        if let Some(orig) = SOCK_REVNAT.get(key) {
            (*sa).user_ip4 = orig.ip;
            (*sa).user_port = u32::from(orig.port);
        }
    }
    ALLOW
}
