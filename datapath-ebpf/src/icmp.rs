//! ICMP and `ICMPv6` errors (destination unreachable, fragmentation needed or packet too
//! big, time exceeded, parameter problem) about a translated flow: the embedded header
//! is translated back the way its packet was, and the outer header is pointed at the
//! endpoint that sent that packet. The quote is read and its addresses rewritten per
//! family (`Quote`: `quoted`, `quoted6`, `replace_addr`, `replace_addr6`); the rest is
//! shared. An upper layer: it looks the quoted flow up (`ct`), rewrites (`nat`) and
//! forwards (`fwd`); below it nothing imports it.
use aya_ebpf::programs::TcContext;
use common::{Be16, CtKey, Ip6, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, Reason};

use crate::{
    ct::{self, From},
    family::{Family, stage},
    fwd,
    hdr::{
        ICMP_CSUM, ICMP_HLEN, ICMP_ID, IP_CSUM, IP_DST, IP_HLEN, IP_SRC, IPV6_DST, IPV6_HLEN,
        IPV6_SRC, Ipv4Hdr, L4_DST_PORT,
    },
    nat,
    packet::{Icmp, Packet},
    parse::{ICMP_ECHO, ICMP_ECHOREPLY, ICMPV6_ECHO, ICMPV6_ECHOREPLY},
    stats::{count, verdict},
};

/// Offsets inside the quoted packet.
pub(crate) struct Quoted<A = u32> {
    /// Its IP header.
    pub ip_off: usize,
    /// Its ports (or echo identifier), None when they are not rewritten here.
    src_port_off: Option<usize>,
    dst_port_off: Option<usize>,
    pub tuple: CtKey<A>,
}

/// Fill `q`'s ports from the quoted L4 header at `l4` of protocol `proto` (`echo`: the
/// family's echo request and reply types); None when nothing here can be translated.
#[inline(always)]
fn quoted_ports<A>(
    ctx: &TcContext,
    q: &mut Quoted<A>,
    l4: usize,
    icmp: u8,
    echo: (u8, u8),
) -> Option<()> {
    match q.tuple.proto {
        PROTO_TCP | PROTO_UDP => {
            let ports: [Be16; 2] = ctx.load(l4).ok()?;
            q.tuple.src_port = ports[0];
            q.tuple.dst_port = ports[1];
            q.src_port_off = Some(l4);
            q.dst_port_off = Some(l4 + L4_DST_PORT);
        }
        proto if proto == icmp => {
            let kind: u8 = ctx.load(l4).ok()?;
            let id: Be16 = ctx.load(l4 + ICMP_ID).ok()?;
            if kind == echo.0 {
                q.tuple.src_port = id;
                q.src_port_off = Some(l4 + ICMP_ID);
            } else if kind == echo.1 {
                q.tuple.dst_port = id;
                q.dst_port_off = Some(l4 + ICMP_ID);
            } else {
                return None;
            }
        }
        _ => return None,
    }
    Some(())
}

/// An `ICMPv6` error's quote: an IPv6 header (no extension headers: nothing bpfnet
/// translates carries them) and the first 8 bytes of its upper layer.
#[inline(always)]
fn quoted6(ctx: &TcContext, p: &Packet<Ip6>) -> Option<Quoted<Ip6>> {
    let ip_off = p.l4_off() + ICMP_HLEN;
    let [ver, _, _, _, _, _, next, _]: [u8; 8] = ctx.load(ip_off).ok()?;
    let l4 = ip_off + IPV6_HLEN;
    if ver >> 4 != 6 || l4 + 8 > p.end() {
        return None;
    }
    let [src, dst]: [Ip6; 2] = ctx.load(ip_off + IPV6_SRC).ok()?;
    let mut q = Quoted {
        ip_off,
        src_port_off: None,
        dst_port_off: None,
        tuple: CtKey::new(src, dst, Be16::ZERO, Be16::ZERO, next),
    };
    quoted_ports(
        ctx,
        &mut q,
        l4,
        PROTO_ICMPV6,
        (ICMPV6_ECHO, ICMPV6_ECHOREPLY),
    )?;
    Some(q)
}

/// Replace an address of the quoted IPv6 header (`src`: the source), keeping the `ICMPv6`
/// checksum, which covers it, right (the quoted header has no checksum of its own).
#[inline(always)]
fn replace_addr6(
    ctx: &TcContext,
    icmp_csum: usize,
    q: &Quoted<Ip6>,
    src: bool,
    old: &Ip6,
    new: &Ip6,
) -> Result<(), Reason> {
    if old.same(new) {
        return Ok(());
    }
    let diff = crate::csum::diff128(&old.words, &new.words);
    ctx.l4_csum_replace(icmp_csum, 0, u64::from(diff), 0)
        .map_err(|_| Reason::DropRewrite)?;
    let off = q.ip_off + if src { IPV6_SRC } else { IPV6_DST };
    ctx.store(off, new, 0).map_err(|_| Reason::DropRewrite)
}

#[inline(always)]
fn quoted(ctx: &TcContext, p: &Packet) -> Option<Quoted> {
    let ip_off = p.l4_off() + ICMP_HLEN;
    let ip: Ipv4Hdr = ctx.load(ip_off).ok()?;
    let l4 = ip_off + ip.ihl();
    // The quoted header and its first 8 bytes must lie inside the error itself.
    if ip.ihl() < IP_HLEN || l4 + 8 > p.end() {
        return None;
    }
    let mut q = Quoted {
        ip_off,
        src_port_off: None,
        dst_port_off: None,
        tuple: CtKey::new(ip.src, ip.dst, Be16::ZERO, Be16::ZERO, ip.proto),
    };
    quoted_ports(ctx, &mut q, l4, PROTO_ICMP, (ICMP_ECHO, ICMP_ECHOREPLY))?;
    Some(q)
}

/// Replace a 4- or 2-byte field of the quoted packet, keeping the ICMP checksum right.
#[inline(always)]
fn replace(
    ctx: &TcContext,
    icmp_csum: usize,
    off: usize,
    old: u32,
    new: u32,
    size: u64,
) -> Result<(), Reason> {
    if old == new {
        return Ok(());
    }
    ctx.l4_csum_replace(icmp_csum, u64::from(old), u64::from(new), size)
        .map_err(|_| Reason::DropRewrite)?;
    if size == 4 {
        ctx.store(off, &new, 0).map_err(|_| Reason::DropRewrite)
    } else {
        ctx.store(off, &(new as u16), 0)
            .map_err(|_| Reason::DropRewrite)
    }
}

/// Replace an address of the quoted IPv4 header: its own checksum, the ICMP checksum
/// (which covers both the address and that checksum) and the bytes.
#[inline(always)]
fn replace_addr(
    ctx: &TcContext,
    icmp_csum: usize,
    ip_off: usize,
    off: usize,
    old: u32,
    new: u32,
) -> Result<(), Reason> {
    if old == new {
        return Ok(());
    }
    let csum_off = ip_off + IP_CSUM;
    let old_csum: u16 = ctx.load(csum_off).map_err(|_| Reason::DropRewrite)?;
    ctx.l3_csum_replace(csum_off, u64::from(old), u64::from(new), 4)
        .map_err(|_| Reason::DropRewrite)?;
    let new_csum: u16 = ctx.load(csum_off).map_err(|_| Reason::DropRewrite)?;
    ctx.l4_csum_replace(icmp_csum, u64::from(old_csum), u64::from(new_csum), 2)
        .map_err(|_| Reason::DropRewrite)?;
    replace(ctx, icmp_csum, off, old, new, 4)
}

/// What differs between ICMP and `ICMPv6` errors: where the quote lies, how its addresses
/// are replaced. A trait of its own, not a part of `Family`, so `family` (below this
/// module) imports nothing of ICMP.
pub(crate) trait Quote: Family {
    /// An ICMP error's quoted packet (None: nothing bpfnet translates).
    fn quoted(ctx: &TcContext, p: &Packet<Self>) -> Option<Quoted<Self>>;
    /// Replace an address of an ICMP error's quoted header (`src`: its source), with
    /// the checksums that cover it.
    fn replace_quoted_addr(
        ctx: &TcContext,
        icmp_csum: usize,
        q: &Quoted<Self>,
        src: bool,
        old: &Self,
        new: &Self,
    ) -> Result<(), Reason>;
}

impl Quote for u32 {
    #[inline(always)]
    fn quoted(ctx: &TcContext, p: &Packet<Self>) -> Option<Quoted<Self>> {
        quoted(ctx, p)
    }
    #[inline(always)]
    fn replace_quoted_addr(
        ctx: &TcContext,
        icmp_csum: usize,
        q: &Quoted<Self>,
        src: bool,
        old: &Self,
        new: &Self,
    ) -> Result<(), Reason> {
        let off = q.ip_off + if src { IP_SRC } else { IP_DST };
        replace_addr(ctx, icmp_csum, q.ip_off, off, *old, *new)
    }
}

impl Quote for Ip6 {
    #[inline(always)]
    fn quoted(ctx: &TcContext, p: &Packet<Self>) -> Option<Quoted<Self>> {
        quoted6(ctx, p)
    }
    #[inline(always)]
    fn replace_quoted_addr(
        ctx: &TcContext,
        icmp_csum: usize,
        q: &Quoted<Self>,
        src: bool,
        old: &Self,
        new: &Self,
    ) -> Result<(), Reason> {
        replace_addr6(ctx, icmp_csum, q, src, old, new)
    }
}

/// An ICMP error about a translated flow: translated and delivered. None: it quotes no
/// flow bpfnet translates (the caller decides). An error whose sender or addressee does
/// not match the packet it quotes is forged, and dropped.
/// Its translation and its delivery are stages of their own (`stage!`): for IPv6, a
/// cluster route's lookup and tunnel key would not fit one frame beside the quote's.
#[inline(always)]
pub(crate) fn handle_error<A: Quote>(
    ctx: &TcContext,
    p: &mut Packet<A>,
    from: From,
) -> Option<i32> {
    if p.icmp != Icmp::Error {
        return None;
    }
    match stage!(A, translate_error(ctx, p, from))? {
        Ok(()) => Some(stage!(A, fwd::to_destination(ctx, p, None))),
        Err(reason) => Some(verdict(ctx, reason)),
    }
}

/// `handle_error`'s translation: None, not an error about a translated flow; Err, the
/// verdict on a forged or untranslatable one.
#[inline(always)]
fn translate_error<A: Quote>(
    ctx: &TcContext,
    p: &mut Packet<A>,
    from: From,
) -> Option<Result<(), Reason>> {
    let q = A::quoted(ctx, p)?;
    // The quoted packet travelled as the reverse of the flow entry we need.
    let to = ct::peek(&q.tuple.reversed())?;
    // It is addressed to whoever sent the quoted packet, and a container reports only
    // packets that were sent to it.
    if !p.dst_ip.same(&q.tuple.src_ip)
        || (from == From::Container && !p.src_ip.same(&q.tuple.dst_ip))
    {
        return Some(Err(Reason::DropIcmpForged));
    }
    if rewrite(ctx, p, &q, &to.reversed()).is_err() {
        return Some(Err(Reason::DropRewrite));
    }
    count(ctx, Reason::IcmpError);
    Some(Ok(()))
}

#[inline(always)]
fn rewrite<A: Quote>(
    ctx: &TcContext,
    p: &mut Packet<A>,
    q: &Quoted<A>,
    new: &CtKey<A>,
) -> Result<(), Reason> {
    let icmp_csum = p.l4_off() + ICMP_CSUM;
    let old = &q.tuple;
    A::replace_quoted_addr(ctx, icmp_csum, q, true, &old.src_ip, &new.src_ip)?;
    A::replace_quoted_addr(ctx, icmp_csum, q, false, &old.dst_ip, &new.dst_ip)?;
    if let Some(off) = q.src_port_off {
        replace(
            ctx,
            icmp_csum,
            off,
            u32::from(old.src_port.raw()),
            u32::from(new.src_port.raw()),
            2,
        )?;
    }
    if let Some(off) = q.dst_port_off {
        replace(
            ctx,
            icmp_csum,
            off,
            u32::from(old.dst_port.raw()),
            u32::from(new.dst_port.raw()),
            2,
        )?;
    }
    // The error goes to whoever sent the quoted packet; if the quoted packet's
    // destination itself answered, it now speaks with that destination's new address.
    if p.src_ip.same(&old.dst_ip) {
        nat::rewrite_src(ctx, p, new.dst_ip, p.src_port)?;
    }
    nat::rewrite_dst(ctx, p, new.src_ip, p.dst_port)
}
