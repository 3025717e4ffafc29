//! Clocks that see time the process did not: suspend and SIGSTOP.
//!
//! tokio's `Instant` is CLOCK_MONOTONIC, which on Linux stops while the machine sleeps, so a laptop lid
//! closed for an hour would look like no time passed. Gaps between probe rounds are measured on a clock that
//! keeps counting through sleep, one per OS:
//! - Linux: CLOCK_BOOTTIME (CLOCK_MONOTONIC stops in suspend).
//! - macOS: CLOCK_MONOTONIC, which on Darwin counts sleep (CLOCK_UPTIME_RAW is the one that stops).
//! - Windows: GetTickCount64, the interrupt-time tick count, which counts sleep and hibernation
//!   (QueryUnbiasedInterruptTime is the one that skips them). Its 10-16 ms resolution is far below the
//!   1.5 x interval a gap must exceed, and wine implements it, so the Windows binary runs in CI.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Time since boot, including time asleep.
#[cfg(unix)]
pub fn since_boot() -> Duration {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    const CLOCK: libc::clockid_t = libc::CLOCK_BOOTTIME;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    const CLOCK: libc::clockid_t = libc::CLOCK_MONOTONIC;
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, exclusively borrowed timespec; clock_gettime only writes into it.
    let rc = unsafe { libc::clock_gettime(CLOCK, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime on a clock every supported OS has");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Time since boot, including time asleep.
#[cfg(windows)]
pub fn since_boot() -> Duration {
    // SAFETY: GetTickCount64 takes no arguments and cannot fail.
    Duration::from_millis(unsafe { windows::Win32::System::SystemInformation::GetTickCount64() })
}

/// Wall-clock seconds since the Unix epoch, for wall-aligned five-minute buckets.
pub fn unix_seconds(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64()
}

#[cfg(test)]
mod tests {
    #[test]
    fn since_boot_moves_forward_with_the_monotonic_clock() {
        let (boot, mono) = (super::since_boot(), std::time::Instant::now());
        std::thread::sleep(std::time::Duration::from_millis(30));
        let (boot_step, mono_step) = (super::since_boot() - boot, mono.elapsed());
        // Awake, the two clocks advance together; the slack covers the coarser clock's resolution and a
        // preemption between the paired reads on a loaded machine.
        let slack = std::time::Duration::from_millis(500);
        assert!(boot_step >= std::time::Duration::from_millis(10), "{boot_step:?}");
        assert!(boot_step + slack >= mono_step && boot_step <= mono_step + slack, "{boot_step:?} vs {mono_step:?}");
    }
}

/// The last second of year 9999: a time read from a file or another process beyond it (or not finite, or
/// before 1970) is damage, not a time.
pub const LATEST_PLAUSIBLE: f64 = 253_402_300_799.0;

/// Whether `seconds` (Unix) is a time this program can show and compute with.
pub fn plausible_unix_seconds(seconds: f64) -> bool {
    seconds.is_finite() && (0.0..=LATEST_PLAUSIBLE).contains(&seconds)
}

/// `seconds` (Unix) as RFC 3339 to the second, or `?` when it is not a plausible time (never a panic).
pub fn rfc3339_seconds(seconds: f64) -> String {
    if !plausible_unix_seconds(seconds) {
        return "?".into();
    }
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs_f64(seconds)).to_string()
}

#[cfg(test)]
mod plausible_tests {
    use super::*;

    #[test]
    fn absurd_times_are_shown_as_unknown_never_a_panic() {
        for absurd in [1e300, f64::INFINITY, f64::NAN, -1.0, LATEST_PLAUSIBLE + 1.0] {
            assert!(!plausible_unix_seconds(absurd), "{absurd}");
            assert_eq!(rfc3339_seconds(absurd), "?");
        }
        assert_eq!(rfc3339_seconds(0.0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_seconds(LATEST_PLAUSIBLE), "9999-12-31T23:59:59Z");
    }
}
