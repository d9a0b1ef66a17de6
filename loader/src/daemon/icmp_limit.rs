//! The kernel's ICMP rate-limit sysctls, read at start for the errors the datapath
//! answers itself (time exceeded): the same limits as the host's own errors.
use std::{fs, str::FromStr};

use common::{ICMP_LIMIT_V4, ICMP_LIMIT_V6, IcmpLimit};
use tracing::info;

const V4: &str = "/proc/sys/net/ipv4";
const V6: &str = "/proc/sys/net/ipv6/icmp";
/// ICMP type of time exceeded, IPv4 and IPv6.
const TIME_EXCEEDED: u32 = 11;
const TIME_EXCEEDED6: u32 = 3;

/// The host's limits; a sysctl that cannot be read keeps the kernel's default.
pub(super) fn read() -> IcmpLimit {
    let d = IcmpLimit::default();
    let v4_mask: u32 = sysctl(&format!("{V4}/icmp_ratemask")).unwrap_or(1 << TIME_EXCEEDED);
    let v6_mask = fs::read_to_string(format!("{V6}/ratemask"))
        .ok()
        .and_then(|s| in_ranges(&s, TIME_EXCEEDED6))
        .unwrap_or(true);
    let mut flags = 0;
    if v4_mask & (1 << TIME_EXCEEDED) != 0 {
        flags |= ICMP_LIMIT_V4;
    }
    if v6_mask {
        flags |= ICMP_LIMIT_V6;
    }
    let limit = IcmpLimit {
        interval4_ms: sysctl(&format!("{V4}/icmp_ratelimit")).unwrap_or(d.interval4_ms),
        interval6_ms: sysctl(&format!("{V6}/ratelimit")).unwrap_or(d.interval6_ms),
        msgs_per_sec: sysctl(&format!("{V4}/icmp_msgs_per_sec")).unwrap_or(d.msgs_per_sec),
        msgs_burst: sysctl(&format!("{V4}/icmp_msgs_burst")).unwrap_or(d.msgs_burst),
        flags,
        ..d
    };
    info!(?limit, "ICMP errors rate-limited as the host's");
    limit
}

fn sysctl<T: FromStr>(path: &str) -> Option<T> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Whether `n` is in a kernel bitmap list (`0-1,3-127`); None if it is not one.
fn in_ranges(list: &str, n: u32) -> Option<bool> {
    let mut found = false;
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        let (lo, hi) = if let Some((lo, hi)) = part.split_once('-') {
            (lo.parse::<u32>().ok()?, hi.parse::<u32>().ok()?)
        } else {
            let one = part.parse::<u32>().ok()?;
            (one, one)
        };
        found |= (lo..=hi).contains(&n);
    }
    Some(found)
}

#[cfg(test)]
mod tests {
    use super::in_ranges;

    #[test]
    fn a_bitmap_list_is_read_as_the_kernel_writes_it() {
        assert_eq!(in_ranges("0-1,3-127\n", 3), Some(true));
        assert_eq!(in_ranges("0-1,4-127", 3), Some(false));
        assert_eq!(in_ranges("3", 3), Some(true));
        assert_eq!(in_ranges("", 3), Some(false));
        assert_eq!(in_ranges("x-1", 3), None);
    }
}
