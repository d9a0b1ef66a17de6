//! The flow tables' clock. An entry records when it was last seen in nanoseconds of
//! `CLOCK_MONOTONIC`, the clock `bpf_ktime_get_coarse_ns` reads in the kernel and
//! `clock_gettime` in the daemon. That helper is a call and two returns per packet (about
//! 40 ns on these machines, a tenth of a program's run); the datapath derives the same
//! time from `jiffies` instead, which the verifier inlines into one load, once the daemon
//! has measured the tick (`Clock`, from two `ClockSample`s of its sweeps).

/// Jiffies to `CLOCK_MONOTONIC` nanoseconds: `jiffies * tick_ns - base_ns`, wrapping. The
/// value of `clock`; `tick_ns` 0 (not calibrated yet): the datapath reads the coarse
/// clock.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Clock {
    pub tick_ns: u64,
    pub base_ns: u64,
}

/// `jiffies` and the coarse monotonic clock read together in the kernel (by `ct_sweep`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockSample {
    pub jiffies: u64,
    pub now_ns: u64,
}

/// Nanoseconds in a second: the datapath's rate windows and buckets count in it too.
pub const NS_PER_SEC: u64 = 1_000_000_000;

impl Clock {
    /// The time at `jiffies`.
    #[inline(always)]
    pub fn at(&self, jiffies: u64) -> u64 {
        jiffies
            .wrapping_mul(self.tick_ns)
            .wrapping_sub(self.base_ns)
    }

    /// The clock through `later`, with the kernel's tick length measured between
    /// `earlier` and `later` (at least a second apart): the kernel's HZ is a whole number
    /// of ticks a second, and its tick `(10^9 + HZ/2) / HZ` nanoseconds. None when the
    /// samples are too close or fit no whole HZ within 1%.
    pub fn calibrate(earlier: ClockSample, later: ClockSample) -> Option<Self> {
        let dt = later.now_ns.checked_sub(earlier.now_ns)?;
        let dj = later.jiffies.wrapping_sub(earlier.jiffies);
        if dt < NS_PER_SEC || dj == 0 || dj > dt {
            return None;
        }
        // Ticks per second, in thousandths.
        let milli_hz = u128::from(dj) * 1_000 * u128::from(NS_PER_SEC) / u128::from(dt);
        let hz = (milli_hz + 500) / 1_000;
        if hz == 0 || milli_hz.abs_diff(hz * 1_000) > hz * 10 {
            return None;
        }
        let hz = hz as u64;
        let tick_ns = (NS_PER_SEC + hz / 2) / hz;
        Some(Self {
            tick_ns,
            base_ns: later
                .jiffies
                .wrapping_mul(tick_ns)
                .wrapping_sub(later.now_ns),
        })
    }
}

crate::pod::aya_pod!(Clock);

#[cfg(test)]
mod tests {
    use super::*;

    /// Jiffies as the kernel counts them: from 2^32 - 300 s (`INITIAL_JIFFIES`), one per
    /// tick of monotonic time since boot, plus a phase.
    fn sample(hz: u64, now_ns: u64, phase_ns: u64) -> ClockSample {
        let tick = (NS_PER_SEC + hz / 2) / hz;
        ClockSample {
            jiffies: (1u64 << 32) - 300 * hz + (now_ns - phase_ns) / tick,
            now_ns,
        }
    }

    #[test]
    fn the_tick_of_every_usual_hz_is_found_and_the_clock_follows_monotonic_time() {
        for hz in [100, 250, 300, 1000, 24, 1200] {
            let tick = (NS_PER_SEC + hz / 2) / hz;
            let (a, b) = (
                sample(hz, 7 * NS_PER_SEC, 1234),
                sample(hz, 17 * NS_PER_SEC, 1234),
            );
            let c = Clock::calibrate(a, b).unwrap_or_else(|| panic!("HZ={hz}"));
            assert_eq!(c.tick_ns, tick, "HZ={hz}");
            // An hour later the derived time is within a tick of the real one.
            let later = sample(hz, 3_617 * NS_PER_SEC + 5, 1234);
            let err = c.at(later.jiffies).abs_diff(later.now_ns);
            assert!(err <= tick, "HZ={hz}: off by {err} ns");
        }
    }

    #[test]
    fn samples_too_close_or_fitting_no_whole_hz_give_no_clock() {
        let a = sample(250, 10 * NS_PER_SEC, 0);
        assert_eq!(
            Clock::calibrate(a, sample(250, 10 * NS_PER_SEC + NS_PER_SEC / 2, 0)),
            None
        );
        assert_eq!(Clock::calibrate(a, a), None);
        // Time going backwards, or jiffies frozen.
        assert_eq!(Clock::calibrate(sample(250, 20 * NS_PER_SEC, 0), a), None);
        let frozen = ClockSample {
            jiffies: a.jiffies,
            now_ns: a.now_ns + 5 * NS_PER_SEC,
        };
        assert_eq!(Clock::calibrate(a, frozen), None);
        // More ticks than nanoseconds.
        let wild = ClockSample {
            jiffies: a.jiffies + 3 * NS_PER_SEC,
            now_ns: a.now_ns + 2 * NS_PER_SEC,
        };
        assert_eq!(Clock::calibrate(a, wild), None);
    }

    /// Ticks at a rate no whole HZ explains within 1% (10.5, 30.4 and 40.5 a second over
    /// ten seconds) give no clock; 10.05 a second is HZ=10 within 1% and does. Above 50
    /// HZ every rate is within 1% of a whole one, so only low rates can be refused.
    #[test]
    fn samples_that_fit_no_whole_hz_give_no_clock() {
        let at = |jiffies: u64, secs: u64| ClockSample {
            jiffies: (1u64 << 32) + jiffies,
            now_ns: secs * NS_PER_SEC,
        };
        for ticks in [105, 304, 405] {
            assert_eq!(
                Clock::calibrate(at(0, 5), at(ticks, 15)),
                None,
                "{ticks} ticks in 10 s fit no whole HZ"
            );
        }
        let near = Clock::calibrate(at(0, 5), at(1_005, 105)).expect("10.05 Hz is HZ=10");
        assert_eq!(near.tick_ns, NS_PER_SEC / 10);
    }
}
