//! Threads that work besides probing (the web server, argon2id checks of new tokens) ask the OS to prefer the
//! probes' thread when the CPU is short: a probe's timed window must not wait for them. Measured with
//! bench/overload.py on 2 cores saturated by a flood: see ARCHITECTURE.md.

/// Lower the calling thread's scheduling priority: nice 10 on Linux (setpriority on the thread id applies to
/// that thread alone), the utility QoS class on macOS, below normal on Windows. Best effort: whether the OS
/// agreed.
pub fn lower_this_thread() -> bool {
    imp::lower()
}

#[cfg(target_os = "linux")]
mod imp {
    pub fn lower() -> bool {
        // SAFETY: setpriority with PRIO_PROCESS and a thread id changes that thread's nice value only.
        unsafe { libc::setpriority(libc::PRIO_PROCESS, thread_id(), 10) == 0 }
    }

    /// The calling thread's id. The gettid system call, not glibc's wrapper: the release build links against
    /// glibc 2.17, and the wrapper came in 2.30.
    pub fn thread_id() -> libc::id_t {
        // SAFETY: SYS_gettid takes no arguments and cannot fail.
        unsafe { libc::syscall(libc::SYS_gettid) as libc::id_t }
    }
}

#[cfg(target_os = "macos")]
mod imp {
    pub fn lower() -> bool {
        // SAFETY: sets the calling thread's own QoS class; no pointers.
        unsafe { libc::pthread_set_qos_class_self_np(libc::qos_class_t::QOS_CLASS_UTILITY, 0) == 0 }
    }
}

#[cfg(windows)]
mod imp {
    use windows::Win32::System::Threading::{GetCurrentThread, SetThreadPriority, THREAD_PRIORITY_BELOW_NORMAL};

    pub fn lower() -> bool {
        // SAFETY: the pseudo-handle of the calling thread, always valid.
        unsafe { SetThreadPriority(GetCurrentThread(), THREAD_PRIORITY_BELOW_NORMAL).is_ok() }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
mod imp {
    pub fn lower() -> bool {
        false
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn a_lowered_thread_runs_at_nice_10_and_the_others_keep_theirs() {
        let before = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        let lowered = std::thread::spawn(|| {
            assert!(super::lower_this_thread());
            // SAFETY: getpriority of the calling thread's id.
            unsafe { libc::getpriority(libc::PRIO_PROCESS, super::imp::thread_id()) }
        })
        .join()
        .unwrap();
        assert_eq!(lowered, 10.max(before));
        // SAFETY: as above, for this thread.
        let here = unsafe { libc::getpriority(libc::PRIO_PROCESS, super::imp::thread_id()) };
        assert_eq!(here, before, "only the calling thread is lowered");
    }
}
