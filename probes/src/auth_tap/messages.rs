//! The few WebSocket messages the tap reads, parsed: the client's `connect` request (its credential), the
//! gateway's answer to it (accepted, or refused with an auth status and a reason), and the gateway's
//! `shutdown` event. Anything else is passed through unread.

use super::credential::Credential;
use crate::refusal::Refusal;

/// The gateway's `shutdown` event: Some(restartExpectedMs) (None for a terminal shutdown), or None when the
/// message is not that event.
pub(super) fn shutdown_notice(message: &[u8]) -> Option<Option<std::time::Duration>> {
    let value: serde_json::Value = serde_json::from_slice(message).ok()?;
    if value["type"] != "event" || value["event"] != "shutdown" {
        return None;
    }
    let expected = value["payload"]["restartExpectedMs"].as_f64().filter(|ms| ms.is_finite() && *ms >= 0.0);
    // Bounded: a day at most (the gateway's own restarts take seconds).
    Some(expected.map(|ms| std::time::Duration::from_secs_f64(ms.min(86_400_000.0) / 1000.0)))
}

/// `{"type":"req","method":"connect","id":..,"params":{"auth":{"token":".."}}}` -> (id, credential).
pub(super) fn connect_request(message: &[u8]) -> Option<(serde_json::Value, Credential)> {
    let value: serde_json::Value = serde_json::from_slice(message).ok()?;
    if value["type"] != "req" || value["method"] != "connect" {
        return None;
    }
    let credential = match value["params"]["auth"]["token"].as_str() {
        Some(token) if !token.is_empty() => Credential::token(token.as_bytes()),
        _ => Credential::None,
    };
    Some((value["id"].clone(), credential))
}

/// The gateway's answer to a `connect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ConnectAnswer {
    Accepted,
    /// Refused: the auth status it amounts to (401, 403, 429; None when it is no auth failure) and why.
    Refused {
        status: Option<u16>,
        reason: Refusal,
    },
}

/// The gateway's `res` to the connect request, None when this message is not that answer.
pub(super) fn connect_answer(message: &[u8], id: &serde_json::Value) -> Option<ConnectAnswer> {
    let value: serde_json::Value = serde_json::from_slice(message).ok()?;
    if value["type"] != "res" || &value["id"] != id {
        return None;
    }
    if value["ok"] == true {
        return Some(ConnectAnswer::Accepted);
    }
    let error = &value["error"];
    let reason = Refusal::of_error(error);
    let detail = error["details"]["code"].as_str().or(error["code"].as_str()).unwrap_or_default();
    let message = error["message"].as_str().unwrap_or_default().to_ascii_lowercase();
    let status = refusal_status(detail).or_else(|| {
        // Older gateways without details.code: the message's own words.
        if message.starts_with("unauthorized") {
            Some(401)
        } else if message.contains("scope") {
            Some(403)
        } else {
            None
        }
    });
    Some(ConnectAnswer::Refused { status, reason })
}

/// A connect refusal's `error.details.code` as the HTTP status it amounts to (the table in the README's
/// auth section): who are you (401), you may not (403), slow down (429). Anything else (UNAVAILABLE while
/// starting, INVALID_REQUEST) is not an auth failure.
pub(crate) fn refusal_status(detail: &str) -> Option<u16> {
    match detail {
        "AUTH_TOKEN_MISSING" | "AUTH_TOKEN_MISMATCH" | "AUTH_DEVICE_TOKEN_MISMATCH" => Some(401),
        "NOT_PAIRED" | "DEVICE_IDENTITY_REQUIRED" => Some(401),
        d if d.starts_with("DEVICE_AUTH_") => Some(401),
        "AUTH_SCOPE_MISMATCH" | "PAIRING_REQUIRED" | "FORBIDDEN" => Some(403),
        "AUTH_RATE_LIMITED" => Some(429),
        // A future AUTH_* code is still an authentication refusal.
        d if d.starts_with("AUTH_") => Some(401),
        _ => None,
    }
}
