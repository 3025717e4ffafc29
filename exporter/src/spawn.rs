//! Running another program with a deadline: its output is read while it runs (a pipe holds 64 KiB, so a
//! program that prints more would otherwise block and look like a hang), and it is killed at the deadline.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What a bounded run gave.
#[derive(Debug)]
pub enum Ran {
    /// It exited: whether it succeeded, its stdout (at most the given bytes) and stderr.
    Exited { success: bool, stdout: Vec<u8>, stderr: Vec<u8> },
    /// It did not exit within the deadline and was killed.
    TimedOut,
}

/// Run `command` (stdin closed), reading stdout (at most `max_stdout` bytes kept) and stderr while it runs;
/// kill it when it has not exited within `timeout`. `None` when it cannot start.
pub fn run_within(command: &mut Command, timeout: Duration, max_stdout: u64) -> Option<Ran> {
    let mut child = command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().ok()?;
    let reader = |pipe: Option<Box<dyn Read + Send>>, limit: u64| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(pipe) = pipe {
                let _ = pipe.take(limit).read_to_end(&mut text);
            }
            text
        })
    };
    let stdout = reader(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>), max_stdout);
    let stderr = reader(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>), 64 * 1024);
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => break None,
        }
    };
    match status {
        Some(status) => Some(Ran::Exited {
            success: status.success(),
            stdout: stdout.join().unwrap_or_default(),
            stderr: stderr.join().unwrap_or_default(),
        }),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            // The pipes close with the process (unless it left children holding them: do not wait on those).
            drop((stdout, stderr));
            Some(Ran::TimedOut)
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn a_program_that_prints_more_than_a_pipe_holds_is_read_whole() {
        let ran =
            run_within(Command::new("sh").args(["-c", "head -c 300000 /dev/zero"]), Duration::from_secs(10), 1 << 20);
        assert!(
            matches!(ran, Some(Ran::Exited { success: true, ref stdout, .. }) if stdout.len() == 300_000),
            "{ran:?}"
        );
    }

    #[test]
    fn a_program_that_hangs_is_killed_at_the_deadline() {
        let started = Instant::now();
        let ran = run_within(Command::new("sleep").arg("30"), Duration::from_millis(300), 1024);
        assert!(matches!(ran, Some(Ran::TimedOut)), "{ran:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
