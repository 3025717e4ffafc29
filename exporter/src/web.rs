//! The HTTP side: `/metrics` (OpenMetrics or Prometheus 0.0.4 text, by the Accept header), `/-/healthy`,
//! `/-/reload`, `/api/status` (also at `/status.json`) and the status page at `/`. Handlers only read the recorder; they never probe.

use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::sync::{mpsc, oneshot};

use crate::recorder::{Format, Recorder};

/// OpenMetrics text, as Prometheus asks for it first.
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The Prometheus text format for clients that do not ask for OpenMetrics.
pub const PROMETHEUS_CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// A reload request from `POST /-/reload`, answered with the reload's result.
pub type ReloadRequest = oneshot::Sender<Result<(), String>>;

#[derive(Clone)]
struct AppState {
    recorder: Arc<Recorder>,
    reloads: mpsc::Sender<ReloadRequest>,
}

/// The router, reading from `recorder` and sending reload requests to `reloads`.
pub fn router(recorder: Arc<Recorder>, reloads: mpsc::Sender<ReloadRequest>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/metrics", get(metrics))
        .route("/-/healthy", get(|| async { "Healthy.\n" }))
        .route("/-/reload", post(reload))
        .route("/api/status", get(status))
        .route("/status.json", get(status))
        .with_state(AppState { recorder, reloads })
}

/// Pick the format from an Accept header: OpenMetrics when asked for, else 0.0.4 text.
pub fn negotiate(accept: Option<&str>) -> Format {
    let asks_openmetrics = accept.is_some_and(|accept| {
        accept.split(',').any(|range| {
            let mut params = range.split(';').map(str::trim);
            let media = params.next().unwrap_or_default();
            let refused = params.any(|p| p.strip_prefix("q=").and_then(|q| q.parse::<f32>().ok()) == Some(0.0));
            media.eq_ignore_ascii_case("application/openmetrics-text") && !refused
        })
    });
    if asks_openmetrics {
        Format::OpenMetrics
    } else {
        Format::Prometheus
    }
}

async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let format = negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let content_type = match format {
        Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        Format::Prometheus => PROMETHEUS_CONTENT_TYPE,
    };
    let body = state.recorder.encode(format, SystemTime::now());
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn status(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(state.recorder.status(SystemTime::now()))
}

async fn reload(State(state): State<AppState>) -> Response {
    let (reply, result) = oneshot::channel();
    if state.reloads.send(reply).await.is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    match result.await {
        Ok(Ok(())) => (StatusCode::OK, "reloaded\n").into_response(),
        Ok(Err(problems)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{problems}\n")).into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response(),
    }
}

async fn index(State(state): State<AppState>) -> Html<String> {
    Html(crate::status_page::render(&state.recorder.status(SystemTime::now())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_scrape_accept_header_gets_openmetrics() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(negotiate(Some(prometheus)), Format::OpenMetrics);
    }

    #[test]
    fn plain_clients_get_the_0_0_4_text() {
        assert_eq!(negotiate(None), Format::Prometheus);
        assert_eq!(negotiate(Some("*/*")), Format::Prometheus);
        assert_eq!(negotiate(Some("text/plain;version=0.0.4")), Format::Prometheus);
        assert_eq!(negotiate(Some("application/openmetrics-text;q=0")), Format::Prometheus);
    }
}
