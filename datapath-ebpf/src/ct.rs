//! Connection tracking. A flow has two entries, one per direction, each keyed by the
//! tuple a packet has when it reaches a bpfnet hook (see `common::ct`). New flows live in
//! `ct_new_v2` until they are proven an exchange (netfilter's "assured"): the originator
//! speaks again after an answer, and for TCP that is the handshake's last ACK,
//! acknowledging the answer's SYN. Only then do both entries move to `ct_v3`, so a flood
//! of flows from spoofed sources evicts only its own kind, even when the backend answers
//! every one of them (a SYN-ACK to each SYN). Both entries are created together with
//! NOEXIST and removed together when the second cannot be created: no flow ever takes
//! over another's tuple, on any CPU.
use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::generated::{bpf_jiffies64, bpf_ktime_get_coarse_ns},
    maps::LruHashMap,
    programs::TcContext,
};
use common::{
    CLUSTER_VXLAN, CT_DNAT, CT_ORIG_LOCAL, CT_REPLY, CT_REPLY_LOCAL, CT_SIDE, CT_SIDE_TUNNEL,
    CT_SIDE_UPLINK, CT_SIDE_VETH, CT_SNAT, CtKey, CtValue, PROTO_TCP, Reason, TcpState,
    ct::{TCP_ACK, TCP_FIN, TCP_FIN_FIRST, TCP_RST, TCP_SYN},
};

use crate::{
    family::Family,
    maps::{CLOCK, Work, scratch, scratch_or},
    packet::Packet,
    quota::{self, Use},
    stats::count_flow,
    tcp, tunnel,
};

/// Which side a packet came from. For an ICMP error it bounds what the error may quote.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum From {
    /// A container: it can only report a packet it received itself.
    Container,
    /// The outside: the flow's peer or a router on its path.
    Uplink,
}

/// Which table an entry lives in.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Table {
    /// Answered flows.
    Main,
    /// Flows still waiting for their first reply.
    New,
}

impl Table {
    #[inline(always)]
    fn map<A: Family>(self) -> &'static LruHashMap<CtKey<A>, CtValue<A>> {
        match self {
            Self::Main => A::ct(),
            Self::New => A::ct_new(),
        }
    }
}

#[inline(always)]
pub(crate) fn key_of<A: Family>(p: &Packet<A>) -> CtKey<A> {
    CtKey::new(p.src_ip, p.dst_ip, p.src_port, p.dst_port, p.proto)
}

/// `CLOCK_MONOTONIC` at the last tick (a flow's times need seconds, not nanoseconds): from
/// `jiffies`, one load, once the daemon has measured the tick; until then from the
/// coarse clock, a helper call.
#[inline(always)]
fn now() -> u64 {
    match CLOCK.get(0) {
        // SAFETY: helpers without arguments.
        Some(c) if c.tick_ns != 0 => c.at(unsafe { bpf_jiffies64() }),
        _ => unsafe { bpf_ktime_get_coarse_ns() },
    }
}

/// The entry for `key` in either table.
#[inline(always)]
fn find<A: Family>(key: &CtKey<A>) -> Option<(*mut CtValue<A>, Table)> {
    if let Some(v) = A::ct().get_ptr_mut(key) {
        return Some((v, Table::Main));
    }
    A::ct_new().get_ptr_mut(key).map(|v| (v, Table::New))
}

/// The entry for `key` in either table, in place (no copy on the stack).
#[inline(always)]
pub(crate) fn entry<A: Family>(key: &CtKey<A>) -> Option<(&'static CtValue<A>, Table)> {
    // SAFETY: a valid map value pointer; the reference lives for this program run only.
    find(key).map(|(v, t)| (unsafe { &*v }, t))
}

/// A flow is over when either side reset it or both sides finished.
#[inline(always)]
fn finished(a: u8, b: u8) -> bool {
    matches!(TcpState::of(a, b), TcpState::Closed | TcpState::TimeWait)
}

/// Follow a TCP packet of the flow in `v` (its sender's direction) in `table`, as
/// netfilter's `tcp_in_window` does. Ok(false): data or a bare ACK out of its sender's
/// window, or a SYN that changes nothing, which passes but leaves the entry as it was.
/// Err(`drop-tcp-window`): a segment that would change the flow's state (SYN-ACK, RST,
/// FIN, a SYN from the answering side) outside both directions' windows, or a SYN-ACK
/// that is not the answer to the flow's SYN: it changes nothing.
#[inline(always)]
fn track_tcp<A: Family>(
    ctx: &TcContext,
    key: &CtKey<A>,
    v: &mut CtValue<A>,
    table: Table,
    p: &Packet<A>,
) -> Result<bool, Reason> {
    let f = p.tcp_flags & (TCP_FIN | TCP_SYN | TCP_RST | TCP_ACK);
    let reply = v.flags & CT_REPLY != 0;
    if f & (TCP_FIN | TCP_SYN | TCP_RST) == 0 {
        // Data or a bare ACK changes no state: the flow's other half is not needed, and
        // the common packet costs one lookup. A sender not heard from yet (the answer to
        // a SYN) sends nothing else first; an entry the daemon rebuilt counts its
        // packets but learns only from a FIN or RST, judged against the other side.
        if v.seq_end == 0 {
            return Ok(v.tcp_seen & TCP_SYN != 0);
        }
        if !reply && table == Table::New {
            // The originator teaches nothing before its ACK proves the flow an exchange
            // (`assured`, which learns from that ACK).
            return Ok(tcp::in_own_window(v, p));
        }
        if !tcp::follow(v, p) {
            return Ok(false);
        }
        v.tcp_seen |= f;
        return Ok(true);
    }
    if f & TCP_SYN != 0 && f & (TCP_RST | TCP_FIN) != 0 {
        return Err(Reason::DropTcpWindow);
    }
    let twin_key = key.twin(v);
    let twin = table.map::<A>().get_ptr_mut(twin_key);
    // SAFETY: a valid map value pointer, read only.
    let receiver = twin.map(|t| unsafe { &*t });
    let twin_seen = receiver.map_or(0, |t| t.tcp_seen);
    let was_finished = finished(v.tcp_seen, twin_seen);
    if f == TCP_SYN {
        if reply {
            // Simultaneous open is not followed: the answering side answers with a SYN-ACK.
            return Err(Reason::DropTcpWindow);
        }
        if was_finished || (twin_seen & TCP_SYN == 0 && tcp::resends_syn(v, p)) {
            // The tuple is being reused for a new connection (both records start afresh),
            // or the SYN is sent again before any answer, perhaps without the data of the
            // first (a refused Fast Open), which the answer then does not acknowledge.
            v.tcp_seen = f;
            tcp::start(ctx, v, p);
            if was_finished && let Some(t) = twin {
                // SAFETY: a valid map value pointer.
                unsafe {
                    (*t).tcp_seen = 0;
                    (*t).seq_end = 0;
                    (*t).max_win = 0;
                }
            }
            return Ok(true);
        }
        // A SYN inside a live flow changes nothing: the endpoint answers it itself.
        return Ok(false);
    }
    if f & TCP_SYN != 0 {
        // A SYN-ACK: only the answer to the flow's SYN, from the answering side, once
        // (again only with the same sequence number).
        let answers = reply && receiver.is_some_and(|r| tcp::answers_syn(r, p));
        if !answers {
            return Err(Reason::DropTcpWindow);
        }
        if v.tcp_seen & TCP_SYN != 0 && v.seq_end != 0 {
            return if tcp::repeats_syn(v, p) {
                Ok(true)
            } else {
                Err(Reason::DropTcpWindow)
            };
        }
        v.tcp_seen |= f;
        tcp::start(ctx, v, p);
        return Ok(true);
    }
    if !tcp::in_window(v, receiver, p) {
        return Err(Reason::DropTcpWindow);
    }
    if f & TCP_FIN != 0 && twin_seen & TCP_FIN == 0 {
        v.tcp_seen |= TCP_FIN_FIRST;
    }
    v.tcp_seen |= f;
    if !was_finished && finished(v.tcp_seen, twin_seen) && v.flags & (CT_SNAT | CT_DNAT) == CT_SNAT
    {
        // The container's port toward this destination is free for its quota again.
        // A reference, not a copy of the tuple: the frame is at its limit.
        quota::release_use(if reply { &twin_key } else { key });
    }
    tcp::learn(v, p);
    Ok(true)
}

/// A tracked packet: the tuple it leaves with and its flow entry (None when the entry
/// has just moved tables), whose remembered next hop spares the next packets a lookup.
pub(crate) struct Hit<A: Family> {
    pub to: CtKey<A>,
    pub entry: Option<&'static mut CtValue<A>>,
}

/// The tuple this packet's flow leaves with, accounting the packet to its entry and to
/// `ct-forward`/`ct-reply`. A flow's first reply moves it to the main table. A packet
/// that arrives from another side than its entry's (`CT_SIDE`: off a wire in a
/// container's place, from a container in the outside's, off the plain wire in a
/// tunnel's) is forged: `drop-spoof`, and the flow is left as it was.
#[inline(always)]
pub(crate) fn lookup<A: Family>(
    ctx: &TcContext,
    p: &Packet<A>,
    from: From,
) -> Result<Option<Hit<A>>, Reason> {
    let key = key_of(p);
    let Some((ptr, table)) = find(&key) else {
        return Ok(None);
    };
    // SAFETY: a valid map value pointer; concurrent updates of the same flow on two CPUs
    // may race, which costs the counters and the window some accuracy, never safety.
    let v = unsafe { &mut *ptr };
    // One comparison for a packet from its own side; the rest only for the others.
    if v.flags & CT_SIDE != side_of(from) && !other_side_ok(ctx, v, from) {
        return Err(Reason::DropSpoof);
    }
    if p.proto == PROTO_TCP && !track_tcp(ctx, &key, v, table, p)? {
        // Passed, but it taught the flow nothing: the entry is left as it was.
        let to = key.translated(v);
        count_flow(ctx, direction(v), &to);
        return Ok(Some(Hit { to, entry: None }));
    }
    v.last_seen_ns = now();
    v.packets += 1;
    v.bytes += u64::from(ctx.len());
    let reply = v.flags & CT_REPLY != 0;
    let to = key.translated(v);
    count_flow(ctx, direction(v), &to);
    if !reply && table == Table::New && assured(&key, v, p) {
        if p.proto == PROTO_TCP {
            v.tcp_seen |= TCP_ACK;
            tcp::learn(v, p);
        }
        promote(&key, v);
        return Ok(Some(Hit { to, entry: None }));
    }
    Ok(Some(Hit { to, entry: Some(v) }))
}

/// The counter of a tracked packet of entry `v`'s direction.
#[inline(always)]
fn direction<A: Family>(v: &CtValue<A>) -> Reason {
    if v.flags & CT_REPLY != 0 {
        Reason::CtReply
    } else {
        Reason::CtForward
    }
}

/// The side (`CT_SIDE_*`) a packet arriving at hook `from` comes from, as far as the
/// hook tells: a tunnel's packets too arrive at `from_uplink`.
#[inline(always)]
fn side_of(from: From) -> u8 {
    match from {
        From::Container => CT_SIDE_VETH,
        From::Uplink => CT_SIDE_UPLINK,
    }
}

/// Whether a packet from `from`, whose entry `v` records another side, is the flow's all
/// the same: out of the tunnel, a tunnel side's (it carries a tunnel key); in an entry of
/// no recorded side (older, or rebuilt by the daemon), anything but a local endpoint's
/// side off a wire.
#[inline(always)]
fn other_side_ok<A: Family>(ctx: &TcContext, v: &CtValue<A>, from: From) -> bool {
    match v.flags & CT_SIDE {
        0 => from == From::Container || !v.from_local(),
        CT_SIDE_TUNNEL => from == From::Uplink && tunnel::tunnel_of(ctx).is_some(),
        _ => false,
    }
}

/// Whether the originator's packet `p` (its entry `key`, `v`, in the new-flow table)
/// proves the flow an exchange: an answer came, and it speaks again. For TCP this must be
/// the handshake's last ACK (or later), acknowledging what the answer sent and in the
/// window of what the originator sent: a spoofer never sees the SYN-ACK, so it cannot.
#[inline(always)]
fn assured<A: Family>(key: &CtKey<A>, v: &CtValue<A>, p: &Packet<A>) -> bool {
    let Some(answer) = A::ct_new().get_ptr(key.twin(v)) else {
        return false;
    };
    // SAFETY: a valid map value pointer, read only.
    let answer = unsafe { &*answer };
    if answer.packets == 0 {
        return false;
    }
    p.proto != PROTO_TCP
        || (p.tcp_flags & (TCP_SYN | TCP_RST | TCP_ACK) == TCP_ACK
            && answer.tcp_seen & TCP_SYN != 0
            && tcp::acknowledges(p.tcp_ack, answer.seq_end)
            && tcp::in_window(v, Some(answer), p))
}

/// Move a flow proven an exchange (its forward entry `fk`, `fv`) to the main table; a
/// TCP flow from outside proves its source's prefix to the new-flow budget.
#[inline(always)]
#[expect(
    clippy::needless_borrows_for_generic_args,
    reason = "a reference into the map, not a 48-byte copy on the stack"
)]
fn promote<A: Family>(fk: &CtKey<A>, fv: &CtValue<A>) {
    let (ct, ct_new) = (A::ct(), A::ct_new());
    let rk = fk.twin(fv);
    let Some(rv) = ct_new.get_ptr(rk) else {
        return;
    };
    let noexist = u64::from(BPF_NOEXIST);
    // SAFETY: valid map value pointers, read by the helpers in place.
    if ct.insert(rk, unsafe { &*rv }, noexist).is_ok() && ct.insert(fk, fv, noexist).is_err() {
        let _unused: Result<_, _> = ct.remove(rk);
        return;
    }
    if fk.proto == PROTO_TCP && fv.flags & CT_ORIG_LOCAL == 0 {
        // A source from outside acknowledged the answer's SYN: not spoofed (`flood`).
        A::prove(&fk.src_ip, fv.last_seen_ns);
    }
    let _unused: Result<_, _> = ct_new.remove(fk);
    let _unused: Result<_, _> = ct_new.remove(rk);
}

/// Translation of a flow without accounting, for ICMP errors that quote it.
#[inline(always)]
pub(crate) fn peek<A: Family>(key: &CtKey<A>) -> Option<CtKey<A>> {
    entry(key).map(|(v, _)| key.translated(v))
}

/// Prepare, in this CPU's scratch space, the entries of a new flow whose first packet
/// is `p`, arrived at hook `from` (flags `CT_DNAT`/`CT_SNAT`) and whose translated
/// destination is `responder`, so that `create` and `repair` can try tuples without
/// parsing the packet again. Each side that is a local endpoint is marked
/// (`CT_ORIG_LOCAL`, `CT_REPLY_LOCAL`): its packets never come from outside. Each entry
/// records the side its packets arrive from (`CT_SIDE`: `orig_side`, `reply_side`).
/// Err(`drop-ct-quota`): a container's flow beyond its share of the flow tables.
#[inline(always)]
pub(crate) fn stage<A: Family>(
    ctx: &TcContext,
    p: &Packet<A>,
    from: From,
    flags: u8,
    responder: &A,
) -> Result<(), Reason> {
    // The forward entry's flags in the low byte, the reply entry's in the high one: no
    // more values live across the lookups than the flags alone (the frame is full).
    let both = |f: u8| u16::from(f) * 0x0101;
    let mut f = both(flags) | u16::from(orig_side(p, from)) | u16::from(CT_REPLY) << 8;
    f |= u16::from(reply_side(from, flags, responder)) << 8;
    if A::endpoint(&p.src_ip).is_some() {
        if !quota::may_start(&p.src_ip) {
            return Err(Reason::DropCtQuota);
        }
        f |= both(CT_ORIG_LOCAL);
    }
    if A::endpoint(responder).is_some() {
        f = (f & !(u16::from(CT_SIDE) << 8)) | both(CT_REPLY_LOCAL) | u16::from(CT_SIDE_VETH) << 8;
    }
    let s = A::work(scratch_or(Reason::DropCtInsert)?);
    let now = now();
    s.ck = key_of(p);
    let [fwd, rev] = f.to_le_bytes();
    s.fwd.reset(&s.ck, false, fwd, now);
    s.rev.reset(&s.ck, true, rev, now);
    if p.proto == PROTO_TCP {
        s.fwd.tcp_seen = p.tcp_flags & (TCP_FIN | TCP_SYN | TCP_RST | TCP_ACK);
        tcp::start(ctx, &mut s.fwd, p);
    }
    s.fwd.packets = 1;
    s.fwd.bytes = u64::from(ctx.len());
    Ok(())
}

/// The side (`CT_SIDE_*`) a new flow's originator's packets arrive from: where its
/// first packet arrived, `from`; out of the tunnel when its source is a tunnel prefix
/// (off the wire such a source never passes the uplink's source check).
#[inline(always)]
fn orig_side<A: Family>(p: &Packet<A>, from: From) -> u8 {
    if from == From::Uplink && tunnel_prefix(&p.src_ip) {
        CT_SIDE_TUNNEL
    } else {
        side_of(from)
    }
}

/// The side a new flow's responder's packets arrive from, unless it is a local endpoint
/// (a container's veth): the tunnel for a tunnel prefix, an uplink for the destination of
/// a container's egress (it was routed out); unrecorded (0) for anything else (a backend
/// not bound yet, a published port's backend elsewhere), where the older check holds.
#[inline(always)]
fn reply_side<A: Family>(from: From, flags: u8, responder: &A) -> u8 {
    if tunnel_prefix(responder) {
        CT_SIDE_TUNNEL
    } else if from == From::Container && flags & CT_DNAT == 0 {
        CT_SIDE_UPLINK
    } else {
        0
    }
}

#[inline(always)]
fn tunnel_prefix<A: Family>(ip: &A) -> bool {
    A::cluster_of(ip).is_some_and(|c| c.kind == CLUSTER_VXLAN)
}

/// The staged forward entry, leaving as `to`.
#[inline(always)]
fn staged<A: Family>(to: &CtKey<A>) -> Result<&'static mut Work<A>, Reason> {
    let s = A::work(scratch_or(Reason::DropCtInsert)?);
    s.fwd.src_ip = to.src_ip;
    s.fwd.dst_ip = to.dst_ip;
    s.fwd.src_port = to.src_port;
    s.fwd.dst_port = to.dst_port;
    Ok(s)
}

/// Create the staged flow of first packet `p` leaving as `to`: both entries in the new
/// table, or neither. Err(`drop-ct-clash`): another flow holds the reply tuple.
#[inline(always)]
#[expect(
    clippy::needless_borrows_for_generic_args,
    reason = "references into the scratch map, not 48-byte copies on the stack"
)]
pub(crate) fn create<A: Family>(p: &Packet<A>, to: &CtKey<A>) -> Result<(), Reason> {
    let (ct, ct_new) = (A::ct(), A::ct_new());
    let s = staged(to)?;
    // The tuples in scratch space: an IPv6 tuple is 40 bytes of a short stack.
    s.ck = key_of(p);
    s.crk = to.reversed();
    let (key, rk) = (&s.ck, &s.crk);
    if ct.get_ptr(rk).is_some() {
        return Err(Reason::DropCtClash);
    }
    let noexist = u64::from(BPF_NOEXIST);
    if ct_new.insert(rk, &s.rev, noexist).is_err() {
        return Err(Reason::DropCtClash);
    }
    if ct.get_ptr(key).is_some() || ct_new.insert(key, &s.fwd, noexist).is_err() {
        // Another CPU created this flow first: ours goes, theirs serves the next packet.
        let _unused: Result<_, _> = ct_new.remove(rk);
        return Err(Reason::DropCtInsert);
    }
    if s.fwd.flags & CT_ORIG_LOCAL != 0 {
        quota::take(Use::Flows, &s.ck.src_ip);
    }
    Ok(())
}

/// Put back the staged forward entry of first packet `p`'s flow, leaving as `to`, whose
/// reply entry survived in `table`.
#[inline(always)]
#[expect(
    clippy::needless_borrows_for_generic_args,
    reason = "a reference into the scratch map, not a 48-byte copy on the stack"
)]
pub(crate) fn repair<A: Family>(p: &Packet<A>, to: &CtKey<A>, table: Table) -> Result<(), Reason> {
    let s = staged(to)?;
    table
        .map::<A>()
        .insert(key_of(p), &s.fwd, u64::from(BPF_NOEXIST))
        .map_err(|_| Reason::DropCtInsert)
}

/// Whether the flow holding reply tuple `rk` (entry `rv`) is over in a way that lets the
/// new flow of SYN `p` take its tuple at once without harm to the peer: reset (no side
/// keeps the tuple), or both sides closed and either the container closed first (so it,
/// not the peer, waits in `TIME_WAIT`) or `p`'s sequence number lies beyond what the peer
/// has seen, which a peer in `TIME_WAIT` accepts as a new connection. Both of the old
/// flow's entries are then removed, and its originator's share count.
#[inline(always)]
pub(crate) fn release_finished<A: Family>(
    rk: &CtKey<A>,
    rv: &CtValue<A>,
    table: Table,
    p: &Packet<A>,
) -> bool {
    if rk.proto != PROTO_TCP {
        return false;
    }
    let fk = &mut A::work(match scratch() {
        Some(s) => s,
        None => return false,
    })
    .fk;
    *fk = rk.twin(rv);
    let fk = &*fk;
    // SAFETY: plain lookup, the two fields copied out.
    let (f_seen, f_end) =
        unsafe { table.map::<A>().get(fk) }.map_or((0, 0), |f| (f.tcp_seen, f.seq_end));
    let reusable = if (rv.tcp_seen | f_seen) & TCP_RST != 0 {
        true
    } else if rv.tcp_seen & f_seen & TCP_FIN != 0 {
        f_seen & TCP_FIN_FIRST != 0 || tcp::after(p.tcp_seq, f_end)
    } else {
        false
    };
    if reusable {
        let local = rv.flags & CT_ORIG_LOCAL != 0;
        let _unused: Result<_, _> = table.map::<A>().remove(fk);
        let _unused: Result<_, _> = table.map::<A>().remove(rk);
        if local {
            quota::release(Use::Flows, &fk.src_ip);
        }
    }
    reusable
}
