//! The probes of openclaw-tunnel-exporter.
//!
//! One file per probe, every probe with the same shape: a `Target` and a timeout go in, a typed `Outcome`
//! comes out. A probe never touches a metric, a clock other than its own timings, or the network beyond
//! its target; the exporter decides what an outcome means and records it.
//!
//! - [`syn`]: TCP connect to the ssh -L listener. Success proves only that the local listener exists.
//! - [`ssh_session`]: which process owns that listener, and whether it is an ssh client (`ssh`, `ssh.exe`,
//!   `plink`), on Linux, macOS and Windows; the steady state is one system call.
//! - [`first_byte`]: `GET /healthz` through the forward, timed from request written to first response byte;
//!   the only probe that proves the far side is alive.
//!
//! - [`exposure`]: which addresses the gateway port really listens on (host side).
//! - [`model_host`]: HTTPS to a model API with dns, connect, tls and first byte timed apart.
//! - [`auth_probe`]: `POST /tools/invoke {}` with this machine's token: accepted (400) or rejected (401).
//! - [`auth_tap`]: not a timed probe but a pass-through: it reads the credentials and auth answers of real
//!   traffic on its way to the gateway and reports them as events.
//!
//! Failure reasons are fixed sets (`reason()` returns a `&'static str`), so a metric label built from an
//! outcome can never carry data a peer sent.

pub mod auth_probe;
pub mod auth_tap;
pub mod control_ui;
pub mod exposure;
pub mod first_byte;
pub mod model_host;
#[cfg(any(target_os = "linux", windows))]
pub mod socket_table;
pub mod ssh_session;
pub mod syn;
