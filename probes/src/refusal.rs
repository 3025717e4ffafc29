//! Why the gateway refused a WebSocket `connect`, as one reason from a fixed set, and what its troubleshooting
//! docs say to do about it.
//!
//! The gateway (2026.9.6) answers a refused `connect` with `{"type":"res","ok":false,"error":{"code":..,
//! "message":..,"details":{"code":..}}}`, then closes: 1008 for auth, 1002 for a protocol mismatch
//! (`details.code` `PROTOCOL_MISMATCH`), 1013 while its startup sidecars are pending (`error.code`
//! `UNAVAILABLE`, `details.reason` `startup-sidecars`). The detail codes are its `ConnectErrorDetailCodes`
//! (dist/connect-error-details-*.mjs); the fixes are the table in
//! `docs/gateway/troubleshooting/agent-replies-and-control-ui.md`, `docs/gateway/security/rate-limiting.md` and
//! `docs/gateway/troubleshooting/updates-and-rollbacks.md` of the npm package. Nothing the gateway sends
//! becomes a label: an unknown code is `other`.

/// Why a `connect` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// No shared token was sent (`AUTH_TOKEN_MISSING`, `AUTH_REQUIRED`).
    TokenMissing,
    /// The shared token is not the gateway's (`AUTH_TOKEN_MISMATCH`, `AUTH_UNAUTHORIZED`).
    TokenMismatch,
    /// The cached per-device token is stale or revoked (`AUTH_DEVICE_TOKEN_MISMATCH`, `DEVICE_AUTH_*`).
    DeviceTokenMismatch,
    /// The device token is valid but its scopes do not cover the request (`AUTH_SCOPE_MISMATCH`).
    ScopeMismatch,
    /// The device needs approval (`PAIRING_REQUIRED`, `NOT_PAIRED`, `DEVICE_IDENTITY_REQUIRED`).
    PairingRequired,
    /// Too many failed attempts from this source (`AUTH_RATE_LIMITED`).
    RateLimited,
    /// The client's protocol range is not the gateway's (`PROTOCOL_MISMATCH`, close 1002).
    ProtocolMismatch,
    /// The gateway is still starting (`UNAVAILABLE` with `startup-sidecars`, close 1013).
    Starting,
    /// Anything else.
    Other,
}

crate::labels!(Refusal {
    Refusal::TokenMissing => "token_missing",
    Refusal::TokenMismatch => "token_mismatch",
    Refusal::DeviceTokenMismatch => "device_token_mismatch",
    Refusal::ScopeMismatch => "scope_mismatch",
    Refusal::PairingRequired => "pairing_required",
    Refusal::RateLimited => "rate_limited",
    Refusal::ProtocolMismatch => "protocol_mismatch",
    Refusal::Starting => "starting",
    Refusal::Other => "other",
});

impl Refusal {
    /// The reason of a refused `connect`'s `error` object: its `details.code`, else its `code`, else (older
    /// gateways) its message's own words.
    pub fn of_error(error: &serde_json::Value) -> Refusal {
        let detail = error["details"]["code"].as_str().unwrap_or_default();
        if let Some(reason) = Refusal::of_detail(detail) {
            return reason;
        }
        if error["code"] == "UNAVAILABLE" || error["details"]["reason"] == "startup-sidecars" {
            return Refusal::Starting;
        }
        if let Some(reason) = error["code"].as_str().and_then(Refusal::of_detail) {
            return reason;
        }
        let message = error["message"].as_str().unwrap_or_default().to_ascii_lowercase();
        if message.contains("protocol mismatch") {
            Refusal::ProtocolMismatch
        } else if message.contains("token mismatch") {
            Refusal::TokenMismatch
        } else if message.contains("token missing") {
            Refusal::TokenMissing
        } else if message.contains("gateway starting") {
            Refusal::Starting
        } else {
            Refusal::Other
        }
    }

    /// The reason a close code gives for a `connect` left unanswered: 1002 protocol, 1013 starting.
    pub fn of_close(code: Option<u16>) -> Option<Refusal> {
        match code? {
            1002 => Some(Refusal::ProtocolMismatch),
            1013 => Some(Refusal::Starting),
            _ => None,
        }
    }

    fn of_detail(detail: &str) -> Option<Refusal> {
        Some(match detail {
            "AUTH_TOKEN_MISSING" | "AUTH_REQUIRED" | "AUTH_PASSWORD_MISSING" => Refusal::TokenMissing,
            "AUTH_TOKEN_MISMATCH" | "AUTH_UNAUTHORIZED" | "AUTH_PASSWORD_MISMATCH" | "AUTH_BOOTSTRAP_TOKEN_INVALID" => {
                Refusal::TokenMismatch
            }
            "AUTH_DEVICE_TOKEN_MISMATCH" => Refusal::DeviceTokenMismatch,
            d if d.starts_with("DEVICE_AUTH_") => Refusal::DeviceTokenMismatch,
            "AUTH_SCOPE_MISMATCH" => Refusal::ScopeMismatch,
            "PAIRING_REQUIRED" | "NOT_PAIRED" | "DEVICE_IDENTITY_REQUIRED" | "CONTROL_UI_DEVICE_IDENTITY_REQUIRED" => {
                Refusal::PairingRequired
            }
            "AUTH_RATE_LIMITED" => Refusal::RateLimited,
            "PROTOCOL_MISMATCH" | "CLIENT_VERSION_MISMATCH" => Refusal::ProtocolMismatch,
            _ => return None,
        })
    }

    /// What the gateway's troubleshooting docs say to do, in one line.
    pub fn fix(self) -> &'static str {
        match self {
            Refusal::TokenMissing => {
                "the client sent no shared token: on the gateway host run `openclaw gateway auth-token --show` and set it where the CLI reads it (gateway.remote.token or OPENCLAW_GATEWAY_TOKEN)"
            }
            Refusal::TokenMismatch => {
                "the shared token is not the gateway's: replace the CLI's token with the current one (`openclaw gateway auth-token --show` on the gateway host); if it still fails, run the token drift recovery checklist (`openclaw devices`)"
            }
            Refusal::DeviceTokenMismatch => {
                "the cached per-device token is stale or revoked: rotate or re-approve it with `openclaw devices`, then reconnect (rotating the shared token does not fix this)"
            }
            Refusal::ScopeMismatch => {
                "the device token is valid but its scopes do not cover this connect: re-pair the device or approve the requested scopes; do not rotate the shared token"
            }
            Refusal::PairingRequired => {
                "the device needs approval: on the gateway host run `openclaw devices list`, then `openclaw devices approve <requestId>`"
            }
            Refusal::RateLimited => {
                "too many failed attempts from this source: wait for the lockout to end (Retry-After), and find the client sending wrong tokens"
            }
            Refusal::ProtocolMismatch => {
                "the CLI and the gateway speak different protocol versions: upgrade the older of the two (`openclaw --version` here, the gateway's version on the status page), and restart stale clients"
            }
            Refusal::Starting => "the gateway is still starting: connects are refused until /startupz says started; retry shortly",
            Refusal::Other => "the gateway refused the connect for another reason: its log (`openclaw logs --follow`) names it",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Label;
    use serde_json::json;

    #[test]
    fn every_documented_code_has_its_reason_and_unknown_ones_are_other() {
        for (error, reason) in [
            (json!({"code": "INVALID_REQUEST", "details": {"code": "AUTH_TOKEN_MISSING"}}), "token_missing"),
            (json!({"details": {"code": "AUTH_TOKEN_MISMATCH", "canRetryWithDeviceToken": true}}), "token_mismatch"),
            (json!({"details": {"code": "AUTH_DEVICE_TOKEN_MISMATCH"}}), "device_token_mismatch"),
            (json!({"details": {"code": "DEVICE_AUTH_SIGNATURE_INVALID"}}), "device_token_mismatch"),
            (json!({"details": {"code": "AUTH_SCOPE_MISMATCH"}}), "scope_mismatch"),
            (json!({"details": {"code": "PAIRING_REQUIRED", "reason": "not-paired"}}), "pairing_required"),
            (json!({"code": "NOT_PAIRED"}), "pairing_required"),
            (json!({"details": {"code": "AUTH_RATE_LIMITED"}}), "rate_limited"),
            (json!({"message": "protocol mismatch", "details": {"code": "PROTOCOL_MISMATCH"}}), "protocol_mismatch"),
            (json!({"code": "UNAVAILABLE", "details": {"reason": "startup-sidecars"}}), "starting"),
            (json!({"message": "unauthorized: gateway token mismatch (set gateway.remote.token)"}), "token_mismatch"),
            (json!({"details": {"code": "SOMETHING_NEW\nforged"}}), "other"),
            (json!("not an object"), "other"),
        ] {
            assert_eq!(Refusal::of_error(&error).label(), reason, "{error}");
        }
        assert_eq!(Refusal::of_close(Some(1002)), Some(Refusal::ProtocolMismatch));
        assert_eq!(Refusal::of_close(Some(1013)), Some(Refusal::Starting));
        assert_eq!(Refusal::of_close(Some(1008)), None);
        assert_eq!(Refusal::of_close(None), None);
    }
}
