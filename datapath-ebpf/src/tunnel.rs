//! The VXLAN tunnel key of a packet (`bpf_tunnel_key`, on the collect-metadata device):
//! read from one that came out of the tunnel, set on one that goes into it. The bottom
//! layer (L0, see DESIGN.md): it imports nothing of the crate, so `ct` checks a flow's
//! tunnel side without importing `cluster`; `cluster`, `fwd` and `uplink` use it too.
use core::mem::size_of;

use aya_ebpf::{
    EbpfContext as _,
    bindings::bpf_tunnel_key,
    helpers::generated::{bpf_skb_get_tunnel_key, bpf_skb_set_tunnel_key},
    programs::TcContext,
};
use common::Be32;

/// The VXLAN key a packet arrived with: (remote node, host order; VNI), None when it
/// carries none (it did not come out of a collect-metadata tunnel).
#[inline(always)]
pub(crate) fn tunnel_of(ctx: &TcContext) -> Option<(u32, u32)> {
    // SAFETY: an all-zero bpf_tunnel_key is a valid value of this plain C struct.
    let mut key: bpf_tunnel_key = unsafe { core::mem::zeroed() };
    // SAFETY: helper on this program's context, writing at most `size` bytes of `key`.
    let ret = unsafe {
        bpf_skb_get_tunnel_key(
            ctx.as_ptr().cast(),
            &raw mut key,
            size_of::<bpf_tunnel_key>() as u32,
            0,
        )
    };
    if ret != 0 {
        return None;
    }
    // SAFETY: reading the IPv4 member of the union, which an IPv4 tunnel wrote.
    Some((unsafe { key.__bindgen_anon_1.remote_ipv4 }, key.tunnel_id))
}

/// Give the packet the VXLAN key of node `via` (its underlay address; the helper
/// takes it in host order) and VNI `vni`.
#[inline(always)]
pub(crate) fn set_tunnel(ctx: &TcContext, via: Be32, vni: u32) -> Result<(), ()> {
    // SAFETY: an all-zero bpf_tunnel_key is a valid value of this plain C struct.
    let mut key: bpf_tunnel_key = unsafe { core::mem::zeroed() };
    key.tunnel_id = vni;
    key.__bindgen_anon_1.remote_ipv4 = via.get();
    key.tunnel_ttl = 64;
    // SAFETY: helper on this program's context, reading `size` bytes of `key`.
    let ret = unsafe {
        bpf_skb_set_tunnel_key(
            ctx.as_ptr().cast(),
            &raw mut key,
            size_of::<bpf_tunnel_key>() as u32,
            0,
        )
    };
    if ret == 0 { Ok(()) } else { Err(()) }
}
