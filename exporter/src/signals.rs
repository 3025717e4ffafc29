//! What the OS asks of the process, one stream on every OS.
//!
//! Unix: SIGTERM and SIGINT stop, SIGHUP reloads. Windows has no SIGHUP: Ctrl-C, Ctrl-Break and the console's
//! close, logoff and shutdown events stop, and a reload comes from `POST /-/reload` or the config file
//! changing (polled on every OS). Task Scheduler's "End" terminates without an event; the state file is
//! saved every minute for that reason.

use anyhow::Context;

/// A request from the OS, with the name to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Stop gracefully.
    Shutdown(&'static str),
    /// Load the configuration again (SIGHUP; Windows has no such event).
    #[cfg_attr(windows, allow(dead_code))]
    Reload(&'static str),
}

/// The installed handlers.
#[cfg(unix)]
pub struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    /// Install the handlers (before the first `recv`, so no signal is missed after start).
    pub fn install() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            terminate: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            interrupt: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            hangup: signal(SignalKind::hangup()).context("installing the SIGHUP handler")?,
        })
    }

    /// The next request.
    pub async fn recv(&mut self) -> Signal {
        tokio::select! {
            _ = self.terminate.recv() => Signal::Shutdown("SIGTERM"),
            _ = self.interrupt.recv() => Signal::Shutdown("SIGINT"),
            _ = self.hangup.recv() => Signal::Reload("SIGHUP"),
        }
    }
}

/// The installed handlers.
#[cfg(windows)]
pub struct Signals {
    ctrl_c: tokio::signal::windows::CtrlC,
    ctrl_break: tokio::signal::windows::CtrlBreak,
    close: tokio::signal::windows::CtrlClose,
    logoff: tokio::signal::windows::CtrlLogoff,
    shutdown: tokio::signal::windows::CtrlShutdown,
}

#[cfg(windows)]
impl Signals {
    /// Install the handlers (before the first `recv`, so no event is missed after start).
    pub fn install() -> anyhow::Result<Signals> {
        use tokio::signal::windows;
        Ok(Signals {
            ctrl_c: windows::ctrl_c().context("installing the Ctrl-C handler")?,
            ctrl_break: windows::ctrl_break().context("installing the Ctrl-Break handler")?,
            close: windows::ctrl_close().context("installing the console close handler")?,
            logoff: windows::ctrl_logoff().context("installing the logoff handler")?,
            shutdown: windows::ctrl_shutdown().context("installing the shutdown handler")?,
        })
    }

    /// The next request.
    pub async fn recv(&mut self) -> Signal {
        tokio::select! {
            _ = self.ctrl_c.recv() => Signal::Shutdown("Ctrl-C"),
            _ = self.ctrl_break.recv() => Signal::Shutdown("Ctrl-Break"),
            _ = self.close.recv() => Signal::Shutdown("console closed"),
            _ = self.logoff.recv() => Signal::Shutdown("logoff"),
            _ = self.shutdown.recv() => Signal::Shutdown("system shutdown"),
        }
    }
}
