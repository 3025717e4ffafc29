//! The gateway's own state through the forward: startup state, readiness and failing components, version,
//! start time and restarts, and its event loop (what `/healthz`, and so `openclaw_gateway_up`, does not say).

/// What the status report shows of the gateway behind a forward.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GatewayState {
    /// `starting`, `draining` or `started`; None on a gateway without `/startupz`.
    pub startup: Option<String>,
    /// The gateway's version, when it says.
    pub version: Option<String>,
    /// Ready, per `/readyz`; None without it.
    pub ready: Option<bool>,
    /// The failing components `/readyz` names (bounded).
    pub failing: Vec<String>,
}
