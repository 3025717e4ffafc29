//! The probe kinds' adapters: one module per kind, each the [`crate::driver::Adapter`] of its probe. An
//! adapter builds its target, owns its interval and timeout, does what a round needs first (reading token
//! files), logs state changes and records each outcome through the recorder's API ([`crate::record`]).

pub mod auth;
pub mod exposure;
pub mod first_byte;
pub mod model_host;
pub mod openclaw_cli_url;
pub mod openclaw_cli_version;
pub mod readiness;
pub mod ssh_hygiene;
pub mod tunnel;
pub mod ws_handshake;
