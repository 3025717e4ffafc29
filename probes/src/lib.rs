//! The probes of openclaw-tunnel-exporter.
//!
//! One file per probe, every probe with the same shape, the [`Probe`] trait: its `Target` runs within a
//! timeout and returns a typed `Outcome`, whose failure reasons or states are [`Label`]s from a `const`
//! list. A probe never touches a metric, a clock other than its own timings, or the network beyond its
//! target; the exporter decides what an outcome means and records it. Shared plumbing has its own
//! modules: [`net`] (connect, close, which listener serves an address), [`http`] (the request builder,
//! the exchange, the response-head reader and the HTTP failure reasons) [`limit`] (the connection limit
//! of the tap and of the exporter's web server) and [`background`] (a lower priority for threads that do not
//! probe).
//!
//! - [`route`]: the roads to the gateway (an ssh -L listener, or `ws://`/`wss://` directly) and the one dial
//!   every gateway probe uses: connect, and for `wss://` a TLS handshake whose certificate must verify (a pin or
//!   a trusted chain and name); [`tls`] the roots and client configs the TLS clients share.
//! - [`gate`]: the credential gate every sender of the token runs, one rule per route.
//! - [`syn`]: TCP connect to the ssh -L listener. Success proves only that the local listener exists.
//! - [`direct`]: the tunnel round of a route without ssh: connect, and for `wss://` the TLS handshake and the
//!   certificate's verdict, timed apart.
//! - [`ssh_session`]: which process owns that listener, and whether it is an ssh client (`ssh`, `ssh.exe`,
//!   `plink`), on Linux, macOS and Windows; the steady state is one system call.
//! - [`ssh_hygiene`]: this user's ssh clients that forward the same local address but do not own its
//!   listener (ssh without `ExitOnForwardFailure` keeps running when its bind fails), from the process table
//!   [`ssh_processes`] reads without spawning anything (also what `init` reads).
//! - [`first_byte`]: `GET /healthz` through the forward, timed from request written to first response byte;
//!   the only probe that proves the far side is alive.
//!
//! - [`exposure`]: which addresses the gateway port really listens on (host side).
//! - [`model_host`]: HTTPS to a model API with dns, connect, tls and first byte timed apart.
//! - [`readiness`]: `GET /startupz` and `/readyz` through the forward: started, ready, version, uptime and
//!   the gateway's event loop (what `/healthz` does not say).
//! - [`ws_handshake`]: the CLI's own path: a WebSocket upgrade through the forward, timed to the gateway's
//!   first frame (`connect.challenge`); with a token it completes `connect` and closes 1000.
//! - [`openclaw_cli_version`]: the version of the `openclaw` CLI this machine runs, from its package.json (found on
//!   `[cli] path`, PATH or the usual prefixes, its links resolved; never run).
//! - [`auth_probe`]: `POST /tools/invoke {}` with this machine's token: accepted (400) or rejected (401).
//! - [`refusal`]: why the gateway refused a WebSocket `connect` (a fixed set) and the docs' fix for each, read
//!   by the handshake probe and the tap alike.
//! - [`spawn`]: running another program with a deadline and bounded output (`ssh -G`, the `openclaw` CLI).
//! - [`auth_tap`]: not a timed probe but a pass-through: it reads the credentials and auth answers of real
//!   traffic on its way to the gateway and reports them as events.
//!
//! Failure reasons are fixed sets ([`Label::label`] returns one of [`Label::LABELS`]), so a metric label
//! built from an outcome can never carry data a peer sent.

// No function over 120 lines (clippy.toml's threshold, clippy counting code lines) outside tests: a longer one
// is split along its own seams.
#![cfg_attr(not(test), warn(clippy::too_many_lines))]

pub mod auth_probe;
pub mod auth_tap;
pub mod background;
pub mod control_ui;
pub mod direct;
pub mod docker_engine;
pub mod exposure;
pub mod first_byte;
pub mod gate;
pub mod http;
pub mod limit;
pub mod model_host;
pub mod net;
pub mod openclaw_cli_version;
pub mod readiness;
pub mod redact;
pub mod refusal;
pub mod route;
#[cfg(any(target_os = "linux", windows))]
pub mod socket_table;
pub mod spawn;
pub mod ssh_hygiene;
pub mod ssh_options;
pub mod ssh_processes;
pub mod ssh_session;
pub mod syn;
pub mod tls;
pub mod ws_handshake;

use std::future::Future;
use std::time::Duration;

/// The contract every scheduled probe keeps. The implementing value is the probe's target and whatever
/// it remembers between runs (ssh_session's last owner), owned by the task that runs it.
pub trait Probe: Send + 'static {
    /// The probe's name: the `probe` label of the lag histogram and of the trace span.
    const KIND: &'static str;
    /// What one run found; [`CutOff`] converts into what a run reports when the caller's hard timeout
    /// ended it (a probe that overran its own timeout).
    type Outcome: From<CutOff> + Send + 'static;
    /// Run once, within `timeout`.
    fn probe(&mut self, timeout: Duration) -> impl Future<Output = Self::Outcome> + Send;
}

/// A run its caller's hard timeout ended.
#[derive(Debug, Clone, Copy)]
pub struct CutOff;

/// Implement [`Label`] for an enum from one list of `pattern => "value"` arms: [`Label::LABELS`] is the
/// values in order and [`Label::label`] the `match` over the patterns, so the list cannot drift from the
/// match, and the match being exhaustive means every variant has its value.
///
/// ```
/// enum Door { Open, Shut(u8) }
/// probes::labels!(Door { Door::Open => "open", Door::Shut(_) => "shut" });
/// use probes::Label;
/// assert_eq!(Door::LABELS, ["open", "shut"]);
/// assert_eq!(Door::Shut(1).label(), "shut");
/// ```
#[macro_export]
macro_rules! labels {
    ($type:ty { $($pattern:pat => $value:literal),+ $(,)? }) => {
        impl $crate::Label for $type {
            const LABELS: &'static [&'static str] = &[$($value),+];

            fn label(&self) -> &'static str {
                match self {
                    $($pattern => $value),+
                }
            }
        }
    };
}

/// A failure reason, state or scope: a label value from a fixed list.
pub trait Label {
    /// Every value [`Label::label`] can return, for series created at zero before the first run.
    const LABELS: &'static [&'static str];
    /// This value's label.
    fn label(&self) -> &'static str;
}
