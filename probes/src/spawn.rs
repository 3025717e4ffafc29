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

/// Run `command` (stdin closed), reading stdout and stderr to their ends while it runs (at most
/// `max_stdout` bytes of stdout and [`MAX_STDERR`] of stderr kept; the rest is read and dropped, so a
/// chatty program never blocks on a full pipe and looks hung); kill it when it has not exited within
/// `timeout`. After it exits, its pipes are waited for only until the deadline: a grandchild that inherited
/// them and lives on cannot hold the caller. `None` when it cannot start.
pub fn run_within(command: &mut Command, timeout: Duration, max_stdout: u64) -> Option<Ran> {
    let mut child = command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().ok()?;
    let deadline = Instant::now() + timeout;
    let stdout = Drain::start(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>), max_stdout);
    let stderr = Drain::start(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>), MAX_STDERR);
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
            stdout: stdout.finish(deadline),
            stderr: stderr.finish(deadline),
        }),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            // The readers end with the pipes (or live on with a grandchild that holds them): not waited for.
            Some(Ran::TimedOut)
        }
    }
}

/// The stderr bytes [`run_within`] keeps.
pub const MAX_STDERR: u64 = 64 * 1024;

/// A pipe read to its end on a thread of its own, keeping the first `limit` bytes.
struct Drain {
    kept: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    done: std::sync::mpsc::Receiver<()>,
}

impl Drain {
    fn start(pipe: Option<Box<dyn Read + Send>>, limit: u64) -> Drain {
        let kept = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (done_tx, done) = std::sync::mpsc::channel();
        let shared = kept.clone();
        std::thread::spawn(move || {
            if let Some(mut pipe) = pipe {
                let mut chunk = [0u8; 8192];
                loop {
                    match pipe.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            let mut kept = shared.lock().unwrap_or_else(|p| p.into_inner());
                            let room = (limit as usize).saturating_sub(kept.len());
                            kept.extend_from_slice(&chunk[..n.min(room)]);
                        }
                    }
                }
            }
            let _ = done_tx.send(());
        });
        Drain { kept, done }
    }

    /// What was kept, once the pipe ended or at `deadline`, whichever comes first.
    fn finish(self, deadline: Instant) -> Vec<u8> {
        let _ = self.done.recv_timeout(deadline.saturating_duration_since(Instant::now()));
        std::mem::take(&mut *self.kept.lock().unwrap_or_else(|p| p.into_inner()))
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
    fn a_program_that_prints_more_than_is_kept_is_not_taken_for_hung() {
        // 1 MiB on stderr and stdout, more than is kept of either and than a pipe holds.
        let script = "head -c 1048576 /dev/zero >&2; head -c 1048576 /dev/zero; exit 0";
        let ran = run_within(Command::new("sh").args(["-c", script]), Duration::from_secs(10), 1024);
        match ran {
            Some(Ran::Exited { success: true, stdout, stderr }) => {
                assert_eq!((stdout.len(), stderr.len() as u64), (1024, MAX_STDERR));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_grandchild_holding_the_pipes_cannot_hold_the_caller_past_the_deadline() {
        let started = Instant::now();
        // The shell exits at once; its background sleep keeps stdout and stderr open for 30 s.
        let ran =
            run_within(Command::new("sh").args(["-c", "echo hi; sleep 30 & exit 0"]), Duration::from_secs(1), 1024);
        assert!(matches!(ran, Some(Ran::Exited { success: true, ref stdout, .. }) if stdout == b"hi\n"), "{ran:?}");
        assert!(started.elapsed() < Duration::from_secs(10), "waited {:?} for a grandchild", started.elapsed());
    }

    #[test]
    fn a_program_that_hangs_is_killed_at_the_deadline() {
        let started = Instant::now();
        let ran = run_within(Command::new("sleep").arg("30"), Duration::from_millis(300), 1024);
        assert!(matches!(ran, Some(Ran::TimedOut)), "{ran:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
