//! `from_uplink`: DNAT of traffic to published ports.
use aya_ebpf::programs::TcContext;
use common::{Backend, CtKind, PublishedKey, Reason};

use crate::{
    ct, fwd,
    maps::{HOST_IPS, PUBLISHED},
    nat,
    parse::{Frag, parse},
    stats::{count, verdict},
};

#[inline(always)]
pub fn handle(ctx: &TcContext) -> i32 {
    let mut p = match parse(ctx) {
        Ok(p) => p,
        Err(reason) => return verdict(ctx, reason),
    };
    if p.frag == Frag::Later {
        let reason = if is_host(p.dst_ip) {
            Reason::FragmentPassed
        } else {
            Reason::Pass
        };
        return verdict(ctx, reason);
    }
    let (to_ip, to_port) = if let Some(to) = ct::lookup(ctx, &p, CtKind::DnatForward) {
        count(ctx, Reason::DnatEstablished);
        to
    } else if let Some(b) = published(p.dst_ip, p.dst_port, p.proto) {
        if ct::create_dnat(ctx, &p, b.ip, b.port).is_err() {
            return verdict(ctx, Reason::DropCtInsert);
        }
        count(ctx, Reason::DnatNew);
        (b.ip, b.port)
    } else {
        return verdict(ctx, Reason::Pass);
    };
    if nat::rewrite_dst(ctx, &mut p, to_ip, to_port).is_err() {
        return verdict(ctx, Reason::DropRewrite);
    }
    fwd::to_destination(ctx, &p)
}

#[inline(always)]
fn is_host(ip: u32) -> bool {
    HOST_IPS.get_ptr(ip).is_some()
}

/// The backend of `ip:port`, bound to that address or to every host address.
#[inline(always)]
fn published(ip: u32, port: u16, proto: u8) -> Option<Backend> {
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
