//! The rate limit on the ICMP errors the datapath answers itself (time exceeded), as the
//! kernel limits its own: per destination (`net.ipv4.icmp_ratelimit`,
//! `net.ipv6.icmp.ratelimit`, with the kernel's burst of six) and over all destinations
//! (`net.ipv4.icmp_msgs_per_sec`, `icmp_msgs_burst`), for the types the rate masks name.

/// The kernel's burst per destination: six intervals' worth (`XRLIM_BURST_FACTOR`).
pub const ICMP_BURST_FACTOR: u64 = 6;

/// `IcmpLimit::flags`: IPv4 time-exceeded is limited (type 11 in `icmp_ratemask`).
pub const ICMP_LIMIT_V4: u32 = 1;
/// `IcmpLimit::flags`: `ICMPv6` time-exceeded is limited (type 3 in `icmp.ratemask`).
pub const ICMP_LIMIT_V6: u32 = 2;

/// Value of `icmp_limit_v1` (one slot), written by the daemon from the sysctls. All zero
/// (not written): no limit.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct IcmpLimit {
    /// One error per destination prefix (/24, /64) per this many ms, IPv4 (0: none).
    pub interval4_ms: u32,
    /// The same for IPv6.
    pub interval6_ms: u32,
    /// Errors per second over all destinations (refill of the global bucket).
    pub msgs_per_sec: u32,
    /// Size of the global bucket.
    pub msgs_burst: u32,
    /// `ICMP_LIMIT_*`: the families whose time-exceeded is limited at all.
    pub flags: u32,
    pub _pad: u32,
}

impl Default for IcmpLimit {
    /// The kernel's defaults.
    fn default() -> Self {
        Self {
            interval4_ms: 1000,
            interval6_ms: 1000,
            msgs_per_sec: 1000,
            msgs_burst: 50,
            flags: ICMP_LIMIT_V4 | ICMP_LIMIT_V6,
            _pad: 0,
        }
    }
}

/// Value of the rate buckets (`icmp_rate`, per destination prefix; `icmp_global`): the
/// credit left and when it was last refilled (`CLOCK_MONOTONIC` ns).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct RateBucket {
    pub credit: u64,
    pub last_ns: u64,
}

impl RateBucket {
    /// Refill by `rate` per nanosecond since the last call (counting at most `max_ns` of
    /// them, so the product cannot overflow) up to `cap`, then take `cost`: whether it
    /// was there.
    #[inline(always)]
    pub fn take(&mut self, now_ns: u64, rate: u64, max_ns: u64, cap: u64, cost: u64) -> bool {
        let elapsed = now_ns.wrapping_sub(self.last_ns).min(max_ns);
        self.last_ns = now_ns;
        self.credit = (self.credit + elapsed * rate).min(cap);
        if self.credit < cost {
            return false;
        }
        self.credit -= cost;
        true
    }
}

crate::pod::aya_pod!(IcmpLimit, RateBucket);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_bucket_gives_its_burst_then_one_per_interval() {
        let interval = 1_000_000_000;
        let cap = ICMP_BURST_FACTOR * interval;
        let mut b = RateBucket {
            credit: cap,
            last_ns: 0,
        };
        let taken = (0..10).filter(|_| b.take(5, 1, cap, cap, interval)).count();
        assert_eq!(taken, 6, "the burst");
        assert!(
            !b.take(interval / 2, 1, cap, cap, interval),
            "half an interval"
        );
        assert!(b.take(interval + 5, 1, cap, cap, interval), "a whole one");
    }
}
