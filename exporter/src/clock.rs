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
