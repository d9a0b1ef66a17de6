//! `from_uplink`: DNAT of traffic to published ports, reverse SNAT of replies to
//! container egress, ICMP errors about either.
use aya_ebpf::programs::TcContext;
use common::{Backend, CT_DNAT, PROTO_ICMP, PublishedKey, Reason};

use crate::{
    ct, frag, fwd, icmp, l2,
    maps::{HOST_IPS, PUBLISHED},
    nat,
    parse::{Frag, Icmp, parse},
    stats::{count, verdict},
};

#[inline(always)]
pub fn handle(ctx: &TcContext) -> i32 {
    let mut p = match parse(ctx) {
        Ok(p) => p,
        Err(reason) => return verdict(ctx, reason),
    };
    match p.icmp {
        Icmp::Error => return icmp::handle_error(ctx, &mut p),
        Icmp::Other => return verdict(ctx, Reason::Pass),
        _ => {}
    }
    // An uplink enslaved to a bridge (pipework-style LAN): frames for a registered
    // endpoint go straight to it.
    if let Ok(dst_mac) = ctx.load::<[u8; 6]>(0)
        && let Some(v) = l2::to_endpoint(ctx, p.dst_ip, dst_mac, None, 0)
    {
        return v;
    }
    if p.frag == Frag::Later {
        if !frag::recall(&mut p) {
            let reason = if is_host(p.dst_ip) {
                Reason::FragmentPassed
            } else {
                Reason::Pass
            };
            return verdict(ctx, reason);
        }
        count(ctx, Reason::FragmentTranslated);
    }
    let to = if let Some(to) = ct::lookup(ctx, &p) {
        to
    } else if let Some(b) = published_from_wire(p.dst_ip, p.dst_port, p.proto) {
        let mut to = ct::key_of(&p);
        to.dst_ip = b.ip;
        to.dst_port = b.port;
        match ct::create(ctx, &p, to, CT_DNAT, false) {
            Ok(to) => {
                count(ctx, Reason::DnatNew);
                to
            }
            Err(reason) => return verdict(ctx, reason),
        }
    } else {
        return verdict(ctx, Reason::Pass);
    };
    frag::remember(&p);
    if nat::apply(ctx, &mut p, &to).is_err() {
        return verdict(ctx, Reason::DropRewrite);
    }
    fwd::to_destination(ctx, &p)
}

#[inline(always)]
pub fn is_host(ip: u32) -> bool {
    HOST_IPS.get_ptr(ip).is_some()
}

#[inline(always)]
fn is_loopback(ip: u32) -> bool {
    ip.to_ne_bytes()[0] == 127
}

/// `published` for a packet off a wire (uplink or container). Loopback addresses never
/// legitimately come from one: a frame to 127.x must not reach a 127.0.0.1-bound
/// publish, which is for host sockets only.
#[inline(always)]
pub fn published_from_wire(ip: u32, port: u16, proto: u8) -> Option<Backend> {
    if is_loopback(ip) {
        return None;
    }
    published(ip, port, proto)
}

/// The backend of `ip:port`, bound to that address or to every host address.
#[inline(always)]
pub fn published(ip: u32, port: u16, proto: u8) -> Option<Backend> {
    if proto == PROTO_ICMP {
        return None;
    }
    let mut key = PublishedKey {
        host_ip: ip,
        port,
        proto,
        _pad: 0,
    };
    // SAFETY: plain lookups of Pod values, copied out.
    if let Some(b) = unsafe { PUBLISHED.get(key) } {
        return Some(*b);
    }
    if !is_host(ip) {
        return None;
    }
    key.host_ip = 0;
    unsafe { PUBLISHED.get(key) }.copied()
}
