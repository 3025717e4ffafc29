//! `supervise -- PROGRAM ARGS...`: keep a tunnel's ssh running with exponential backoff, where the platform's
//! own supervisor cannot back off. Windows' Task Scheduler restarts a task that fails to start, not a program
//! that exits, so the shipped tasks ran a PowerShell loop restarting ssh.exe every 5 s forever; a Mac that is
//! down for an hour took 720 connection attempts. This loop waits [`Backoff`]'s delay between starts: 5 s,
//! doubling to 5 min, back to 5 s after a run that lasted an hour. The same binary on every OS, so the logic
//! is unit-tested here and run under wine.
//!
//! The child never outlives the supervisor: on Windows it is put in a job object that kills it when the
//! supervisor's handle closes (Task Scheduler's "End" terminates only the task's own process); on Linux it
//! gets SIGTERM when its parent dies. An ssh left behind would hold the forward's port and make the next one
//! an orphan.

use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

/// The wait between starts: `min`, doubling after each quick exit up to `max`, back to `min` after a run of
/// at least `healthy_after`.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    healthy_after: Duration,
    next: Duration,
}

impl Backoff {
    /// A backoff starting at `min`.
    pub fn new(min: Duration, max: Duration, healthy_after: Duration) -> Backoff {
        Backoff { min, max: max.max(min), healthy_after, next: min }
    }

    /// The wait before the next start, after a run that lasted `ran`.
    pub fn after_exit(&mut self, ran: Duration) -> Duration {
        if ran >= self.healthy_after {
            self.next = self.min;
        }
        let wait = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        wait
    }
}

/// Run `program` again and again, waiting `backoff` between starts. Returns only when the program cannot
/// be named.
pub fn run(program: &[String], mut backoff: Backoff) -> ExitCode {
    let Some((name, args)) = program.split_first() else {
        eprintln!("supervise: no program given (supervise -- PROGRAM ARGS...)");
        return ExitCode::from(2);
    };
    let guard = os::Guard::new();
    loop {
        let started = Instant::now();
        let mut command = Command::new(name);
        command.args(args);
        os::prepare(&mut command);
        let ended = match command.spawn() {
            Ok(mut child) => {
                guard.adopt(&child);
                match child.wait() {
                    Ok(status) => format!("exited ({status})"),
                    Err(err) => format!("could not be waited for ({err})"),
                }
            }
            Err(err) => format!("could not start ({err})"),
        };
        let ran = started.elapsed();
        let wait = backoff.after_exit(ran);
        eprintln!(
            "supervise: {name} {ended} after {}; starting it again in {}",
            humantime::format_duration(Duration::from_millis(ran.as_millis() as u64)),
            humantime::format_duration(wait)
        );
        std::thread::sleep(wait);
    }
}

#[cfg(windows)]
mod os {
    use std::os::windows::io::AsRawHandle;
    use windows::Win32::Foundation::HANDLE;
    use windows::Win32::System::JobObjects::{
        AssignProcessToJobObject, CreateJobObjectW, JobObjectExtendedLimitInformation, SetInformationJobObject,
        JOBOBJECT_EXTENDED_LIMIT_INFORMATION, JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
    };

    /// A job object that kills its processes when the supervisor's handle to it closes (at exit, however the
    /// supervisor ends). None when it cannot be made: the child then runs unguarded.
    pub(super) struct Guard(Option<HANDLE>);

    impl Guard {
        pub(super) fn new() -> Guard {
            // SAFETY: no security attributes and no name: an anonymous job owned by this process.
            let Ok(job) = (unsafe { CreateJobObjectW(None, windows::core::PCWSTR::null()) }) else {
                return Guard(None);
            };
            let mut limits = JOBOBJECT_EXTENDED_LIMIT_INFORMATION::default();
            limits.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
            // SAFETY: `limits` is the structure the class names, with its size.
            let set = unsafe {
                SetInformationJobObject(
                    job,
                    JobObjectExtendedLimitInformation,
                    std::ptr::from_ref(&limits).cast(),
                    std::mem::size_of::<JOBOBJECT_EXTENDED_LIMIT_INFORMATION>() as u32,
                )
            };
            Guard(set.is_ok().then_some(job))
        }

        pub(super) fn adopt(&self, child: &std::process::Child) {
            if let Some(job) = self.0 {
                // SAFETY: both handles are open: the job's is ours, the child's is owned by `child`.
                let _ = unsafe { AssignProcessToJobObject(job, HANDLE(child.as_raw_handle())) };
            }
        }
    }

    pub(super) fn prepare(_command: &mut std::process::Command) {}
}

#[cfg(not(windows))]
mod os {
    /// Unix needs no handle: on Linux the child asks the kernel for SIGTERM when its parent dies; macOS keeps
    /// tunnels with launchd and autossh (their own backoff), and its child is not guarded.
    pub(super) struct Guard;

    impl Guard {
        pub(super) fn new() -> Guard {
            Guard
        }

        pub(super) fn adopt(&self, _child: &std::process::Child) {}
    }

    #[cfg(target_os = "linux")]
    pub(super) fn prepare(command: &mut std::process::Command) {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe and touches only the child being started.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }

    #[cfg(not(target_os = "linux"))]
    pub(super) fn prepare(_command: &mut std::process::Command) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn quick_exits_double_the_wait_up_to_the_cap_and_an_hour_up_resets_it() {
        let mut backoff = Backoff::new(5 * S, 300 * S, 3600 * S);
        let waits: Vec<u64> = (0..9).map(|_| backoff.after_exit(S).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(backoff.after_exit(3600 * S).as_secs(), 5, "a healthy hour starts over");
        assert_eq!(backoff.after_exit(3599 * S).as_secs(), 10, "a run just short of an hour does not");
    }

    #[test]
    fn an_hour_of_a_dead_mac_costs_a_handful_of_starts_not_720() {
        let mut backoff = Backoff::new(5 * S, 300 * S, 3600 * S);
        // Each attempt fails after a 10 s connect timeout.
        let (mut elapsed, mut starts) = (Duration::ZERO, 0);
        while elapsed < 3600 * S {
            starts += 1;
            elapsed += 10 * S + backoff.after_exit(10 * S);
        }
        assert!(starts <= 18, "{starts} starts in an hour");
    }
}
