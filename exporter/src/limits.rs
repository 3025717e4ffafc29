//! The process's descriptor limit: every probe, tap connection, web client and queue file is a descriptor, and
//! a macOS LaunchAgent starts with a soft limit of 256 (Linux services often with 1,024), far below the hard
//! limit the system allows. Raised to the hard limit at start, as Prometheus and nginx do, and logged.

/// Raise the soft `RLIMIT_NOFILE` to the hard limit; returns (before, after), or `None` where there is no such
/// limit (Windows: sockets are handles, limited only by memory) or it cannot be read.
#[cfg(unix)]
pub fn raise_descriptor_limit() -> Option<(u64, u64)> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes the struct it is given; RLIMIT_NOFILE is valid on every Unix.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    let before = limit.rlim_cur;
    if limit.rlim_cur >= limit.rlim_max {
        return Some((before, before));
    }
    // macOS refuses RLIM_INFINITY (and anything above OPEN_MAX, 10,240) for the soft limit: try the hard
    // limit, then OPEN_MAX.
    for wanted in [limit.rlim_max, limit.rlim_max.min(10_240)] {
        let raised = libc::rlimit { rlim_cur: wanted, rlim_max: limit.rlim_max };
        // SAFETY: setrlimit reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return Some((before, wanted));
        }
    }
    Some((before, before))
}

/// Windows has no descriptor soft limit for sockets.
#[cfg(not(unix))]
pub fn raise_descriptor_limit() -> Option<(u64, u64)> {
    None
}
