//! `from_container`: reverse DNAT of a backend's replies.
use aya_ebpf::programs::TcContext;
use common::{CtKind, Reason};

use crate::{
    ct, fwd, nat,
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
        return verdict(ctx, Reason::Pass);
    }
    let Some((ip, port)) = ct::lookup(ctx, &p, CtKind::DnatReply) else {
        return verdict(ctx, Reason::Pass);
    };
    if nat::rewrite_src(ctx, &mut p, ip, port).is_err() {
        return verdict(ctx, Reason::DropRewrite);
    }
    count(ctx, Reason::DnatReply);
    fwd::by_route(ctx, &p)
}
