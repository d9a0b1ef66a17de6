//! Incremental checksum updates (RFC 1624). The L4 checksum goes through the kernel
//! helpers, which keep `CHECKSUM_PARTIAL/COMPLETE` and GSO packets right; the IPv4 header
//! checksum, which no offload touches, is computed here on the raw words as stored
//! (one's-complement sums do not depend on byte order), and written in place with the
//! field it covers: a header that stays valid leaves `skb->csum` valid too.
//! Arithmetic only, on no packet: the lowest layer with `hdr`, importing nothing of the
//! crate (the L4 fix of a NAT rewrite, which needs the family, is `nat::rewrite`'s).

/// Fold a 32-bit one's-complement sum and complement it.
#[inline(always)]
pub(crate) fn fold(mut s: u32) -> u16 {
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    !(s as u16)
}

/// Checksum `check` after the 16-bit word it covers changes from `old` to `new` (all
/// raw, as stored).
#[inline(always)]
pub(crate) fn replace16(check: u16, old: u16, new: u16) -> u16 {
    fold(u32::from(!check) + u32::from(!old) + u32::from(new))
}

/// Checksum `check` after the 32-bit field it covers changes from `old` to `new`.
#[inline(always)]
pub(crate) fn replace32(check: u16, old: u32, new: u32) -> u16 {
    let s = u32::from(!check)
        + u32::from(!(old as u16))
        + u32::from(!((old >> 16) as u16))
        + (new & 0xffff)
        + (new >> 16);
    fold(s)
}

/// The one's-complement sum (unfolded, as `bpf_csum_diff` gives it) that turns a sum
/// over the 16 bytes `old` into one over `new`: computed here, with no helper call.
#[inline(always)]
pub(crate) fn diff128(old: &[u32; 4], new: &[u32; 4]) -> u32 {
    let mut s = 0u64;
    for i in 0..4 {
        s += u64::from(!old[i]) + u64::from(new[i]);
    }
    s = (s & 0xffff_ffff) + (s >> 32);
    s = (s & 0xffff_ffff) + (s >> 32);
    s as u32
}

/// `BPF_F_IPV6` where the kernel has it (6.16 on), set by the loader: without it a
/// pseudo-header fix of an IPv6 packet whose `skb->csum` is `CHECKSUM_COMPLETE` also
/// moves `skb->csum`, which the address change (inside the IPv6 header it covers) had
/// already balanced, and the receiver logs a checksum fault.
#[unsafe(no_mangle)]
static CSUM_IPV6_FLAG: u64 = 0;

#[inline(always)]
pub(crate) fn ipv6_flag() -> u64 {
    // SAFETY: a read of a constant the loader may set before loading; volatile so the
    // compiler does not fold its initial value in.
    unsafe { core::ptr::read_volatile(&raw const CSUM_IPV6_FLAG) }
}
