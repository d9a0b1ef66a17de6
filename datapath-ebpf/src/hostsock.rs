//! The host's own sockets, looked up from the program: a tuple a host socket holds is the
//! host's, whatever a publish covers, and SNAT never hands it to a container.
use aya_ebpf::{
    EbpfContext as _,
    bindings::{BPF_F_CURRENT_NETNS, bpf_sock, bpf_sock_tuple},
    cty::c_void,
    helpers::generated::{bpf_sk_lookup_udp, bpf_sk_release, bpf_skc_lookup_tcp},
    programs::TcContext,
};
use common::{CtKey, PROTO_TCP, PROTO_UDP};

use crate::{family::Family, maps::scratch};

/// `sk_state` values (`include/net/tcp_states.h`).
const TCP_ESTABLISHED: u32 = 1;
const TCP_LISTEN: u32 = 10;

/// Which host sockets count as holding a tuple.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Holder {
    /// A connection: a TCP socket in any state but LISTEN, a connected UDP socket. Such a
    /// socket talks to exactly this peer; a listener or an unconnected UDP socket (which
    /// dockerd keeps on every published port) does not claim the peer's packets.
    Connection,
    /// Any socket that would receive the tuple's packets, also a bound UDP socket.
    Any,
}

/// Whether a host socket in this namespace holds tuple `t` as it arrives at the host
/// (`t.dst` is the local end).
#[inline(always)]
pub(crate) fn holds<A: Family>(ctx: &TcContext, t: &CtKey<A>, holder: Holder) -> bool {
    let Some(s) = scratch() else {
        return false;
    };
    let tuple = &mut s.tuple;
    let size = A::sock_tuple(tuple, t);
    let any = holder == Holder::Any;
    match t.proto {
        PROTO_TCP => tcp_held(ctx.as_ptr(), tuple, size, any),
        PROTO_UDP => udp_held(ctx.as_ptr(), tuple, size, any),
        _ => false,
    }
}

/// Whether `t` (arriving from outside) answers a datagram an unconnected host socket sent
/// (recorded by the sendmsg socket programs).
#[inline(always)]
pub(crate) fn answers_host_datagram<A: Family>(t: &CtKey<A>) -> bool {
    if t.proto != PROTO_UDP {
        return false;
    }
    let k = CtKey {
        dst_ip: A::ZERO,
        ..*t
    };
    A::host_udp().get_ptr(k).is_some()
}

// The two lookups are functions of their own (BPF-to-BPF calls): inlined, the compiler
// shares one load of the socket's state between them, and the verifier refuses an
// instruction used with both a full socket and a sock_common pointer.

#[inline(never)]
fn tcp_held(ctx: *mut c_void, tuple: *mut bpf_sock_tuple, size: u32, any: bool) -> bool {
    // SAFETY: the helper takes the program's context and a tuple of `size` (the IPv4 or
    // the IPv6 half); the socket it returns is released below.
    let sk: *mut bpf_sock =
        unsafe { bpf_skc_lookup_tcp(ctx, tuple, size, BPF_F_CURRENT_NETNS as u64, 0) };
    if sk.is_null() {
        return false;
    }
    // SAFETY: a non-null socket from the lookup; state is readable on sock_common.
    let state = unsafe { (*sk).state };
    // SAFETY: releasing the reference the lookup took.
    unsafe { bpf_sk_release(sk.cast()) };
    any || state != TCP_LISTEN
}

#[inline(never)]
fn udp_held(ctx: *mut c_void, tuple: *mut bpf_sock_tuple, size: u32, any: bool) -> bool {
    // SAFETY: as in `tcp_held`.
    let sk: *mut bpf_sock =
        unsafe { bpf_sk_lookup_udp(ctx, tuple, size, BPF_F_CURRENT_NETNS as u64, 0) };
    if sk.is_null() {
        return false;
    }
    // SAFETY: a non-null full socket from the lookup.
    let state = unsafe { (*sk).state };
    // SAFETY: releasing the reference the lookup took.
    unsafe { bpf_sk_release(sk.cast()) };
    any || state == TCP_ESTABLISHED
}
