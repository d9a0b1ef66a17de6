//! Verdict and drop counters of `stats_v1`, one slot per reason.

/// Why a packet got the verdict it got. The index into `stats_v1`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Not for bpfnet: handed to the kernel unchanged.
    Pass = 0,
    /// First packet of a published-port flow: CT entries created, destination rewritten.
    DnatNew = 1,
    /// Packet of a known published-port flow, destination rewritten.
    DnatEstablished = 2,
    /// Reply of a published-port flow, source rewritten.
    DnatReply = 3,
    /// Delivered into a known endpoint's namespace with `bpf_redirect_peer`.
    RedirectPeer = 4,
    /// Delivered with `bpf_fib_lookup` + `bpf_redirect_neigh`.
    RedirectNeigh = 5,
    /// Drop: IPv4 header with a bad IHL or total length.
    DropMalformed = 6,
    /// Drop: packet too short for its L4 header.
    DropTruncated = 7,
    /// Drop: the route lookup for a translated packet failed.
    DropNoRoute = 8,
    /// Drop: CT entry could not be created.
    DropCtInsert = 9,
    /// Drop: header rewrite or checksum helper failed.
    DropRewrite = 10,
    /// A non-first IPv4 fragment to a host address: passed up unchanged (ports unknown).
    FragmentPassed = 11,
}

impl Reason {
    pub const COUNT: u32 = 12;

    pub const ALL: [Reason; Self::COUNT as usize] = [
        Self::Pass,
        Self::DnatNew,
        Self::DnatEstablished,
        Self::DnatReply,
        Self::RedirectPeer,
        Self::RedirectNeigh,
        Self::DropMalformed,
        Self::DropTruncated,
        Self::DropNoRoute,
        Self::DropCtInsert,
        Self::DropRewrite,
        Self::FragmentPassed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::DnatNew => "dnat-new",
            Self::DnatEstablished => "dnat-established",
            Self::DnatReply => "dnat-reply",
            Self::RedirectPeer => "redirect-peer",
            Self::RedirectNeigh => "redirect-neigh",
            Self::DropMalformed => "drop-malformed",
            Self::DropTruncated => "drop-truncated",
            Self::DropNoRoute => "drop-no-route",
            Self::DropCtInsert => "drop-ct-insert",
            Self::DropRewrite => "drop-rewrite",
            Self::FragmentPassed => "fragment-passed",
        }
    }

    pub fn is_drop(self) -> bool {
        matches!(
            self,
            Self::DropMalformed
                | Self::DropTruncated
                | Self::DropNoRoute
                | Self::DropCtInsert
                | Self::DropRewrite
        )
    }
}

/// Value of `stats_v1` (per CPU).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

#[cfg(feature = "user")]
// SAFETY: two u64, no padding.
unsafe impl aya::Pod for Counter {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_reason_at_its_index() {
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{} is out of place", r.name());
        }
    }
}
