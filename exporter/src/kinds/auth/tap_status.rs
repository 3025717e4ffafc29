//! What the auth record keeps of each auth tap's listener, and its key in a forward's `/api/status` entry: below
//! both the record (which reports it) and the tap's sink (which sets it).

use serde::{Deserialize, Serialize};

/// The status key of a forward's auth taps' listeners.
pub const AUTH_TAPS_KEY: &str = "auth_taps";

/// An auth tap's listen address: listening, or waiting for it (and who holds it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TapListenStatus {
    /// The tap's `listen` address.
    pub listen: String,
    /// Whether the tap listens there.
    pub listening: bool,
    /// Why it does not (the bind's error), while it waits.
    pub error: Option<String>,
    /// Who holds the address, while another socket does: the CLI pointed there hands it its token.
    pub held_by: Option<String>,
    /// Whether the holder is another process than this user's ssh (what `openclaw_gateway_tap_hijacked` says).
    pub hijacked: bool,
    /// Since when (Unix seconds) it listens or waits.
    pub since: f64,
}
