//! Clocks that see time the process did not: suspend and SIGSTOP.
//!
//! tokio's `Instant` is CLOCK_MONOTONIC, which on Linux stops while the machine sleeps, so a laptop lid
//! closed for an hour would look like no time passed. Gaps between probe rounds are measured on a clock that
//! keeps counting through suspend: CLOCK_BOOTTIME on Linux, CLOCK_MONOTONIC on macOS (which counts sleep).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Time since boot, including time suspended.
pub fn since_boot() -> Duration {
    #[cfg(target_os = "linux")]
    const CLOCK: libc::clockid_t = libc::CLOCK_BOOTTIME;
    #[cfg(not(target_os = "linux"))]
    const CLOCK: libc::clockid_t = libc::CLOCK_MONOTONIC;
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, exclusively borrowed timespec; clock_gettime only writes into it.
    let rc = unsafe { libc::clock_gettime(CLOCK, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime on a clock every supported OS has");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Wall-clock seconds since the Unix epoch, for wall-aligned five-minute buckets.
pub fn unix_seconds(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64()
}
