//! The arithmetic of when an operation should start and what its latency
//! is, kept pure so the coordinated-omission correction is unit-tested.
//!
//! Open loop: operation `i` is *intended* to start at `i / rate` after the
//! run began, whatever happened to the ones before it. Its latency is
//! measured from that intended time, not from when it was actually sent:
//! if the gateway (or the harness) stalls, the operations that should have
//! gone out during the stall are charged the stall, as a real user arriving
//! on schedule would be. Measuring from the actual send hides it
//! (coordinated omission).

use std::time::Duration;

/// When operation `index` is intended to start, after the run began.
pub(crate) fn intended_offset(index: u64, rate: f64) -> Duration {
    // f64 holds every index below 2^53 exactly; a run never gets near it.
    Duration::from_secs_f64(index as f64 / rate)
}

/// Latency charged to an operation: from its intended start to its answer.
/// An answer cannot come before the intended start; zero if the clock says so.
pub(crate) fn corrected_latency(intended: Duration, answered: Duration) -> Duration {
    answered.saturating_sub(intended)
}

/// Which phase an operation belongs to, by when it started (intended start
/// in open loop, actual start in closed loop), as an offset from the run's
/// beginning: warm-up operations are not recorded, and nothing starts after
/// the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Warmup,
    Measured,
    Over,
}

pub(crate) fn phase(started: Duration, warmup: Duration, duration: Duration) -> Phase {
    if started < warmup {
        Phase::Warmup
    } else if started < warmup + duration {
        Phase::Measured
    } else {
        Phase::Over
    }
}

/// Operations per second over the measured window.
///
/// The operations counted are those that *started* in the window, and the
/// divisor is the window itself: in steady state the ones still in flight
/// when it closes (counted, answered after it) balance the ones in flight
/// when it opened (not counted, answered in it).
pub(crate) fn per_second(count: u64, window: Duration) -> f64 {
    if window.is_zero() {
        0.0
    } else {
        count as f64 / window.as_secs_f64()
    }
}

/// A fast deterministic hash (splitmix64), to pick reads in `mixed` and
/// orders in `read` without a random-number crate.
pub(crate) fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Whether operation `index` of a `mixed` run is a read: a fraction
/// `read_ratio` of them are, spread evenly by the hash.
pub(crate) fn is_read(index: u64, read_ratio: f64) -> bool {
    let unit = (splitmix64(index) >> 11) as f64 / (1_u64 << 53) as f64;
    unit < read_ratio
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intended_times_are_evenly_spaced_from_zero() {
        assert_eq!(intended_offset(0, 100.0), Duration::ZERO);
        assert_eq!(intended_offset(1, 100.0), Duration::from_millis(10));
        assert_eq!(intended_offset(250, 100.0), Duration::from_millis(2_500));
        assert_eq!(intended_offset(3, 0.5), Duration::from_secs(6));
    }

    #[test]
    fn a_stall_is_charged_to_every_operation_scheduled_during_it() {
        // 100 ops/s; the gateway freezes from 1.0 s to 2.0 s and answers
        // everything queued at 2.0 s. The op intended at 1.0 s waited 1 s,
        // the one intended at 1.5 s waited 0.5 s, though both were "served"
        // at the same instant: measured from the send they would look alike.
        let answered = Duration::from_secs(2);
        assert_eq!(
            corrected_latency(intended_offset(100, 100.0), answered),
            Duration::from_secs(1)
        );
        assert_eq!(
            corrected_latency(intended_offset(150, 100.0), answered),
            Duration::from_millis(500)
        );
    }

    #[test]
    fn latency_never_goes_negative() {
        assert_eq!(
            corrected_latency(Duration::from_secs(3), Duration::from_secs(2)),
            Duration::ZERO
        );
    }

    #[test]
    fn phases_split_at_warmup_and_end() {
        let (warmup, duration) = (Duration::from_secs(5), Duration::from_secs(10));
        assert_eq!(phase(Duration::ZERO, warmup, duration), Phase::Warmup);
        assert_eq!(
            phase(Duration::from_millis(4_999), warmup, duration),
            Phase::Warmup
        );
        assert_eq!(
            phase(Duration::from_secs(5), warmup, duration),
            Phase::Measured
        );
        assert_eq!(
            phase(Duration::from_millis(14_999), warmup, duration),
            Phase::Measured
        );
        assert_eq!(
            phase(Duration::from_secs(15), warmup, duration),
            Phase::Over
        );
        assert_eq!(
            phase(Duration::ZERO, Duration::ZERO, duration),
            Phase::Measured
        );
    }

    #[test]
    fn throughput_is_over_the_window() {
        assert_eq!(per_second(3_000, Duration::from_secs(30)), 100.0);
        assert_eq!(per_second(5, Duration::ZERO), 0.0);
    }

    #[test]
    fn reads_follow_the_ratio() {
        let reads = (0..100_000).filter(|&index| is_read(index, 0.3)).count();
        assert!((29_000..31_000).contains(&reads), "{reads}");
        assert!(!(0..1_000).any(|index| is_read(index, 0.0)));
        assert!((0..1_000).all(|index| is_read(index, 1.0)));
    }
}
