//! Startup and readiness probe: `GET /startupz` and `GET /readyz` through the forward.
//!
//! `/healthz` is liveness only: it answers 200 seconds before the gateway accepts WebSocket connects (which get
//! close 1013 until `/startupz` says `started`). Through an ssh forward the gateway treats the caller as local
//! and adds details: its version and uptime (`/startupz`), failing components and its event loop (`/readyz`).
//! Gateways older than mid-2026 answer 404 on both: the parts are then `None`, never a failure.
//!
//! Everything taken from a body is bounded: a version of at most [`MAX_VERSION`] characters of a fixed
//! alphabet, at most [`MAX_FAILING`] component names of at most [`MAX_NAME`] characters each, numbers that
//! are finite and in range. None of it is ever a label value but the version (validated shape, capped length).

use std::time::Duration;

use serde_json::Value;

pub use crate::http::Failure;

/// The longest version string kept (the gateway's are like `2026.9.6`).
pub const MAX_VERSION: usize = 32;
/// How many failing component names are kept.
pub const MAX_FAILING: usize = 16;
/// The longest failing component name kept.
pub const MAX_NAME: usize = 128;

/// Where to ask.
#[derive(Debug, Clone)]
pub struct Target {
    /// The forward's route.
    pub route: crate::route::Route,
}

/// The gateway's startup state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartupState {
    /// Sidecars still starting: WebSocket connects are refused with 1013.
    Starting,
    /// Shutting down or restarting.
    Draining,
    /// Serving.
    Started,
}

crate::labels!(StartupState {
    StartupState::Starting => "starting",
    StartupState::Draining => "draining",
    StartupState::Started => "started",
});

/// What `/startupz` said.
#[derive(Debug, Clone, PartialEq)]
pub struct Startup {
    /// The state.
    pub state: StartupState,
    /// The gateway's version, when given and well formed.
    pub version: Option<String>,
    /// How long the gateway process has run, when given.
    pub uptime: Option<Duration>,
}

/// The gateway's event loop, from `/readyz`.
#[derive(Debug, Clone, PartialEq)]
pub struct EventLoop {
    /// Event-loop delay p99 over the last window.
    pub delay_p99: Duration,
    /// Event-loop utilization, 0..=1.
    pub utilization: f64,
    /// Whether the gateway calls its event loop degraded.
    pub degraded: bool,
}

/// What `/readyz` said.
#[derive(Debug, Clone, PartialEq)]
pub struct Ready {
    /// Ready to serve.
    pub ready: bool,
    /// The failing components' names (bounded; free text, never a label).
    pub failing: Vec<String>,
    /// How many components fail (all of them, also those past [`MAX_FAILING`]).
    pub failing_count: usize,
    /// The event loop, once the gateway's first sampling window has completed.
    pub event_loop: Option<EventLoop>,
}

/// Both answers; `None` where the gateway has no such endpoint (404).
#[derive(Debug, Clone, PartialEq)]
pub struct Readiness {
    /// `/startupz`.
    pub startup: Option<Startup>,
    /// `/readyz`.
    pub ready: Option<Ready>,
}

/// What a readiness probe returns.
pub type Outcome = Result<Readiness, Failure>;

impl crate::Probe for Target {
    const KIND: &'static str = "readiness";
    type Outcome = Outcome;

    /// Ask `/startupz`, then `/readyz`, each within `timeout`'s half.
    async fn probe(&mut self, timeout: Duration) -> Outcome {
        let (status, body) = crate::http::get_document(&self.route, "/startupz", timeout / 2).await?;
        let startup = parse_startup(status, &body)?;
        let (status, body) = crate::http::get_document(&self.route, "/readyz", timeout / 2).await?;
        let ready = parse_ready(status, &body)?;
        Ok(Readiness { startup, ready })
    }
}

fn json(status: u16, body: &[u8]) -> Result<Option<Value>, Failure> {
    if status == 404 {
        return Ok(None);
    }
    if status != 200 && status != 503 {
        return Err(crate::http::bad_head(Some(status), None, &format!("HTTP status {status}")));
    }
    serde_json::from_slice::<Value>(body)
        .map(Some)
        .map_err(|err| crate::http::bad_head(Some(status), None, &format!("not JSON: {err}")))
}

/// `/startupz`'s answer: 200 or 503 with a `status`; 404 on older gateways.
pub fn parse_startup(status: u16, body: &[u8]) -> Result<Option<Startup>, Failure> {
    let Some(value) = json(status, body)? else { return Ok(None) };
    let state = match value["status"].as_str() {
        Some("started") => StartupState::Started,
        Some("starting") => StartupState::Starting,
        Some("draining") => StartupState::Draining,
        _ if status == 200 => StartupState::Started,
        _ => StartupState::Starting,
    };
    let version = value["version"].as_str().filter(|v| valid_version(v)).map(str::to_owned);
    Ok(Some(Startup { state, version, uptime: millis(&value["uptimeMs"]) }))
}

/// `/readyz`'s answer: 200 (ready) or 503 with `ready`, `failing` and `eventLoop`; 404 on older gateways.
pub fn parse_ready(status: u16, body: &[u8]) -> Result<Option<Ready>, Failure> {
    let Some(value) = json(status, body)? else { return Ok(None) };
    let ready = value["ready"].as_bool().unwrap_or(status == 200);
    let all = value["failing"].as_array().map(Vec::as_slice).unwrap_or_default();
    let failing = all
        .iter()
        .take(MAX_FAILING)
        .map(|name| {
            let name = name.as_str().map_or_else(|| name.to_string(), str::to_owned);
            name.chars().filter(|c| !c.is_control()).take(MAX_NAME).collect()
        })
        .collect();
    let event_loop = &value["eventLoop"];
    let event_loop = millis(&event_loop["delayP99Ms"]).map(|delay_p99| EventLoop {
        delay_p99,
        utilization: event_loop["utilization"].as_f64().filter(|u| (0.0..=1.0).contains(u)).unwrap_or(0.0),
        degraded: event_loop["degraded"].as_bool().unwrap_or(false),
    });
    Ok(Some(Ready { ready, failing, failing_count: all.len(), event_loop }))
}

/// A non-negative finite number of milliseconds, below a year.
fn millis(value: &Value) -> Option<Duration> {
    value.as_f64().filter(|ms| ms.is_finite() && (0.0..3.2e10).contains(ms)).map(|ms| Duration::from_secs_f64(ms / 1e3))
}

/// A version as the gateway writes them (`2026.9.6`, `2026.10.0-beta.1`): bounded, a fixed alphabet.
pub fn valid_version(version: &str) -> bool {
    !version.is_empty()
        && version.len() <= MAX_VERSION
        && version.bytes().all(|b| b.is_ascii_alphanumeric() || b".-+_".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_real_gateways_answers_parse() {
        let startup =
            parse_startup(200, br#"{"ok":true,"status":"started","version":"2026.9.6","uptimeMs":6274}"#).unwrap();
        let startup = startup.unwrap();
        assert_eq!(startup.state, StartupState::Started);
        assert_eq!(startup.version.as_deref(), Some("2026.9.6"));
        assert_eq!(startup.uptime, Some(Duration::from_millis(6274)));
        let starting = parse_startup(503, br#"{"ok":false,"status":"starting"}"#).unwrap().unwrap();
        assert_eq!((starting.state, starting.version), (StartupState::Starting, None));

        let ready = parse_ready(
            503,
            br#"{"ready":false,"failing":["agent-database:main","plugin-reload"],"uptimeMs":6253,
                "eventLoop":{"degraded":true,"reasons":["cpu"],"intervalMs":1135.2,"delayP99Ms":234.4,
                "delayMaxMs":234.4,"utilization":0.818,"cpuCoreRatio":0.953}}"#,
        )
        .unwrap()
        .unwrap();
        assert!(!ready.ready);
        assert_eq!(ready.failing, ["agent-database:main", "plugin-reload"]);
        let event_loop = ready.event_loop.unwrap();
        assert!(event_loop.degraded && (event_loop.utilization - 0.818).abs() < 1e-9);
        assert_eq!(event_loop.delay_p99, Duration::from_micros(234_400));
        // No eventLoop until the first window completes.
        assert_eq!(parse_ready(200, br#"{"ready":true,"failing":[]}"#).unwrap().unwrap().event_loop, None);
    }

    #[test]
    fn older_gateways_have_no_endpoint_and_hostile_bodies_stay_bounded() {
        assert_eq!(parse_startup(404, b"Not Found").unwrap(), None);
        assert_eq!(parse_ready(404, b"").unwrap(), None);
        assert!(parse_startup(200, b"<html>").is_err());
        assert!(parse_ready(500, b"{}").is_err());
        let long = format!(r#"{{"status":"started","version":"{}","uptimeMs":-5}}"#, "9".repeat(100));
        let startup = parse_startup(200, long.as_bytes()).unwrap().unwrap();
        assert_eq!((startup.version, startup.uptime), (None, None));
        let odd = parse_startup(200, br#"{"status":"started","version":"1.0\n{evil=\"x\"}"}"#).unwrap().unwrap();
        assert_eq!(odd.version, None);
        let names: Vec<String> = (0..100).map(|i| format!("\"c{i}-{}\\u0007\"", "x".repeat(300))).collect();
        let body = format!(r#"{{"ready":false,"failing":[{}]}}"#, names.join(","));
        let ready = parse_ready(503, body.as_bytes()).unwrap().unwrap();
        assert_eq!((ready.failing.len(), ready.failing_count), (MAX_FAILING, 100));
        assert!(ready.failing.iter().all(|n| n.chars().count() <= MAX_NAME && !n.contains('\u{7}')));
    }
}
