//! The HTTP side: `/metrics` (OpenMetrics or Prometheus 0.0.4 text, by the Accept header), `/-/healthy`,
//! `/-/reload`, `/api/status` (also at `/status.json`) and the status page at `/`. Handlers only read the recorder; they never probe.
//! With a web config file, every path asks for basic auth and the listener speaks TLS ([`TlsListener`]).
//!
//! Any web page in the user's browser can send requests to loopback. Every path refuses a `Host` that is not
//! a loopback name, an IP literal, this machine's name or one of `[web] allowed_hosts` (a DNS-rebinding page
//! carries its own domain there); `POST /-/reload` is served only with `[web] enable_lifecycle = true`, and
//! even then refuses what a browser sends cross-site (see [`guard`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_rustls::server::TlsStream;

pub mod guard;
mod render;
pub mod serve;
mod status_page;

use crate::record::{Format, Recorder};
use crate::web_security::{self as security, WebSecurity};
use serve::{LimitedListener, Watchable, Watched};

/// The web config in force; a reload replaces it.
pub type SecurityWatch = watch::Receiver<Option<Arc<WebSecurity>>>;

/// A client that has not finished its TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// One render at a time, off the probes' thread, coalesced: scrapers share it, probes never wait.
    renders: Arc<render::Renders>,
}

/// The router, reading from `recorder` and sending reload requests to `reloads`; basic auth on every path
/// when the web config in `security` has users; the request guards of `policy` (a reload replaces it).
pub fn router(
    recorder: Arc<Recorder>,
    reloads: mpsc::Sender<ReloadRequest>,
    security: SecurityWatch,
    policy: guard::PolicyWatch,
) -> Router {
    let guards = guard::Guards::new(policy, recorder.clone());
    let remembered = recorder.remembered_credentials().clone();
    Router::new()
        .route("/", get(index))
        .route("/metrics", get(metrics))
        .route("/-/healthy", get(|| async { "Healthy.\n" }))
        .route("/-/reload", post(reload).layer(axum::middleware::from_fn_with_state(guards.clone(), guard::lifecycle)))
        .route("/api/status", get(status))
        .route("/status.json", get(status))
        .with_state(AppState { recorder, reloads, renders: render::Renders::new() })
        .layer(axum::middleware::from_fn_with_state(
            BasicAuth::new(security, guards.clone(), remembered),
            require_basic_auth,
        ))
        .layer(axum::middleware::from_fn_with_state(guards, guard::host))
}

/// bcrypt checks of credentials never seen before run at most this many at once, on the blocking pool (which
/// /metrics rendering, owner lookups and queue I/O share): a flood of wrong passwords holds two of its
/// threads at most.
const BCRYPT_AT_ONCE: usize = 2;
/// First sights of credentials checked at once before the rate limit applies, and per second after it. One
/// check costs about 60 ms at bcrypt cost 10 here, so the limit bounds a flood to a quarter of a core; a good
/// scraper's credentials, once accepted, are answered from the cache whatever the flood.
const FIRST_SIGHTS_BURST: f64 = 8.0;
const FIRST_SIGHTS_PER_SECOND: f64 = 4.0;

/// The basic-auth gate: the web config in force, the bcrypt slots, the first-sight budgets, the credentials
/// remembered from before a restart, and how long a bcrypt check takes here.
#[derive(Clone)]
struct BasicAuth {
    security: SecurityWatch,
    bcrypt_slots: Arc<tokio::sync::Semaphore>,
    first_sights: Arc<std::sync::Mutex<FirstSights>>,
    guards: guard::Guards,
    remembered: Arc<security::Remembered>,
    /// A moving average of one bcrypt check's time, in microseconds: what an answer past the budget waits, so
    /// it looks like any other wrong password's (issue 38: 401 for a configured name, 429 for an unknown one).
    check_micros: Arc<std::sync::atomic::AtomicU64>,
}

/// What an answer past the first-sight budget waits before any check was timed (bcrypt cost 10 here: about
/// 60 ms), and the bounds of the measured wait.
const FIRST_CHECK_GUESS: Duration = Duration::from_millis(60);
const CHECK_WAIT_MIN: Duration = Duration::from_millis(20);
const CHECK_WAIT_MAX: Duration = Duration::from_secs(2);

/// First-sight budgets: one per configured user name, one shared by every name that is not configured, so
/// a flood of unknown credentials (after a restart the accepted cache is empty) cannot 429 a known user.
/// Bounded: keys are configured names only.
struct FirstSights {
    by_user: std::collections::HashMap<String, probes::auth_tap::credential::Budget>,
    unknown: probes::auth_tap::credential::Budget,
}

impl FirstSights {
    fn new() -> FirstSights {
        FirstSights { by_user: Default::default(), unknown: Self::budget() }
    }

    fn budget() -> probes::auth_tap::credential::Budget {
        probes::auth_tap::credential::Budget::new(FIRST_SIGHTS_BURST, FIRST_SIGHTS_PER_SECOND)
    }

    /// Spend one first sight of `user`, from its own budget when `known` (a configured name).
    fn spend(&mut self, user: &str, known: bool) -> bool {
        if !known {
            return self.unknown.spend();
        }
        match self.by_user.get_mut(user) {
            Some(budget) => budget.spend(),
            None => {
                let mut budget = Self::budget();
                let spent = budget.spend();
                self.by_user.insert(user.to_owned(), budget);
                spent
            }
        }
    }
}

impl BasicAuth {
    fn new(security: SecurityWatch, guards: guard::Guards, remembered: Arc<security::Remembered>) -> BasicAuth {
        let guess = u64::try_from(FIRST_CHECK_GUESS.as_micros()).unwrap_or(u64::MAX);
        BasicAuth {
            security,
            bcrypt_slots: Arc::new(tokio::sync::Semaphore::new(BCRYPT_AT_ONCE)),
            first_sights: Arc::new(std::sync::Mutex::new(FirstSights::new())),
            guards,
            remembered,
            check_micros: Arc::new(std::sync::atomic::AtomicU64::new(guess)),
        }
    }

    /// Fold one bcrypt check's time into the average (a quarter weight: a few checks settle it).
    fn timed_check(&self, took: Duration) {
        use std::sync::atomic::Ordering::Relaxed;
        let took = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let before = self.check_micros.load(Relaxed);
        self.check_micros.store(before - before / 4 + took / 4, Relaxed);
    }

    /// How long an answer past the budget waits: as long as a check takes here.
    fn check_wait(&self) -> Duration {
        let micros = self.check_micros.load(std::sync::atomic::Ordering::Relaxed);
        Duration::from_micros(micros).clamp(CHECK_WAIT_MIN, CHECK_WAIT_MAX)
    }

    /// The refusal of a credential: 401 with a Basic challenge, whatever the name and whether it was checked
    /// (`reason`: unauthorized, or auth_rate_limited past the budget).
    fn refuse(&self, reason: &'static str) -> Response {
        let mut refused = self.guards.refuse_with(StatusCode::UNAUTHORIZED, reason, "Unauthorized");
        refused.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Basic"));
        refused
    }
}

async fn require_basic_auth(State(auth): State<BasicAuth>, request: Request, next: Next) -> Response {
    let current = auth.security.borrow().clone();
    let Some(current) = current.filter(|security| security.requires_auth()) else {
        return next.run(request).await;
    };
    // The caches first, on this thread: a known scraper never waits behind anyone's bcrypt.
    let authorization = request.headers().get(header::AUTHORIZATION).map(|value| value.as_bytes());
    let authorized = match current.check(authorization) {
        security::Check::Allowed => true,
        security::Check::Refused => false,
        // Accepted before a restart (the state file): at once, outside the budget, whatever floods it.
        security::Check::Verify(unverified) if current.recognized(&unverified, &auth.remembered) => true,
        security::Check::Verify(unverified) => {
            let known = current.knows(unverified.user());
            let within_budget = auth
                .first_sights
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .spend(unverified.user(), known);
            if !within_budget {
                // The same answer as a wrong password's, as late as a check would make it: a name over the
                // budget cannot be told from one under it, nor a configured name from an unknown one.
                tokio::time::sleep(auth.check_wait()).await;
                return auth.refuse("auth_rate_limited");
            }
            let Ok(_slot) = auth.bcrypt_slots.acquire().await else {
                return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
            };
            // bcrypt takes tens of milliseconds: off the async workers.
            let remembered = auth.remembered.clone();
            let checked = tokio::task::spawn_blocking(move || {
                let started = std::time::Instant::now();
                (current.verify(unverified, &remembered), started.elapsed())
            });
            let (verified, took) = checked.await.unwrap_or((false, Duration::ZERO));
            auth.timed_check(took);
            verified
        }
    };
    if authorized {
        next.run(request).await
    } else {
        auth.refuse("unauthorized")
    }
}

/// A TLS listener for `axum::serve`: handshakes run in their own tasks (a client that stalls mid-handshake
/// holds no one else) and only finished ones are handed to the server. Each handshake uses the certificate
/// of the web config in force, so a reload rotates certificates without a restart.
pub struct TlsListener {
    handshaken: mpsc::Receiver<(TlsStream<Watched<TcpStream>>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Accept on `listener` with `initial` until the web config in `security` brings another certificate.
    pub fn new(
        mut listener: LimitedListener,
        mut initial: Arc<rustls::ServerConfig>,
        security: SecurityWatch,
    ) -> TlsListener {
        use axum::serve::Listener as _;
        let local = listener.local_addr().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
        let (done, handshaken) = mpsc::channel(64);
        tokio::spawn(async move {
            while !done.is_closed() {
                let (tcp, peer) = listener.accept().await;
                let slot = tcp.slot();
                if let Some(tls) = security.borrow().as_ref().and_then(|security| security.tls.clone()) {
                    initial = tls;
                }
                let acceptor = tokio_rustls::TlsAcceptor::from(initial.clone());
                let done = done.clone();
                tokio::spawn(async move {
                    let handshake = tokio::select! {
                        handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)) => handshake,
                        _ = slot.evicted() => return,
                    };
                    match handshake {
                        Ok(Ok(stream)) => {
                            let _ = done.send((stream, peer)).await;
                        }
                        Ok(Err(err)) => tracing::debug!(%peer, error = %err, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        TlsListener { handshaken, local }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<Watched<TcpStream>>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.handshaken.recv().await {
            Some(accepted) => accepted,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// What `/metrics` answers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposition {
    /// A text format.
    Text(Format),
    /// The Prometheus protobuf format (`io.prometheus.client.MetricFamily`, length-delimited): the one that
    /// carries native histograms, for a scraper with them on (it asks for it first).
    Protobuf,
}

/// The Prometheus protobuf exposition, as a scraper asks for it and as the answer names it.
pub const PROTOBUF_CONTENT_TYPE: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";

/// Pick the format from an Accept header: the acceptable one with the highest `q` (the first of equals), among
/// the protobuf exposition, OpenMetrics and 0.0.4 text; 0.0.4 text when none is named.
pub fn negotiate(accept: Option<&str>) -> Exposition {
    let mut best: Option<(f32, Exposition)> = None;
    for range in accept.unwrap_or_default().split(',') {
        let mut params = range.split(';').map(str::trim);
        let media = params.next().unwrap_or_default().to_ascii_lowercase();
        let params: Vec<String> = params.map(|p| p.replace(' ', "").to_ascii_lowercase()).collect();
        let q = params.iter().find_map(|p| p.strip_prefix("q=").and_then(|q| q.parse::<f32>().ok())).unwrap_or(1.0);
        let delimited_families = params.iter().any(|p| p == "proto=io.prometheus.client.metricfamily")
            && params.iter().any(|p| p == "encoding=delimited");
        let exposition = match media.as_str() {
            "application/vnd.google.protobuf" if delimited_families => Exposition::Protobuf,
            "application/openmetrics-text" => Exposition::Text(Format::OpenMetrics),
            "text/plain" | "*/*" | "text/*" => Exposition::Text(Format::Prometheus),
            _ => continue,
        };
        if q > 0.0 && best.is_none_or(|(best_q, _)| q > best_q) {
            best = Some((q, exposition));
        }
    }
    best.map_or(Exposition::Text(Format::Prometheus), |(_, exposition)| exposition)
}

async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let exposition = negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let (content_type, key) = match exposition {
        Exposition::Text(Format::OpenMetrics) => (OPENMETRICS_CONTENT_TYPE, "metrics:openmetrics"),
        Exposition::Text(Format::Prometheus) => (PROMETHEUS_CONTENT_TYPE, "metrics:prometheus"),
        Exposition::Protobuf => (PROTOBUF_CONTENT_TYPE, "metrics:protobuf"),
    };
    // Encoding a thousand forwards takes tens of milliseconds; on the runtime's one thread that would delay
    // every probe due meanwhile (bench/: probe lag p99 2.5 -> 250 ms under wrk before this).
    let render = move |recorder: &Recorder| match exposition {
        Exposition::Text(format) => recorder.encode(format, SystemTime::now()).into_bytes(),
        Exposition::Protobuf => recorder.encode_protobuf(SystemTime::now()),
    };
    match rendered(&state, key.into(), render).await {
        Ok(body) => ([(header::CONTENT_TYPE, content_type)], body).into_response(),
        Err(response) => response,
    }
}

async fn status(State(state): State<AppState>) -> Response {
    let body = |report| serde_json::to_vec(&report).unwrap_or_default();
    match rendered(&state, "status".into(), move |recorder| body(recorder.status(SystemTime::now()))).await {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(response) => response,
    }
}

/// The body `key` names, made by `render` ([`render::Renders`]: off the web's thread, one at a time,
/// coalesced): a flood of them neither holds the web thread nor the recorder's locks for longer than a copy
/// takes.
async fn rendered(
    state: &AppState,
    key: String,
    render: impl FnOnce(&Recorder) -> Vec<u8> + Send + 'static,
) -> Result<bytes::Bytes, Response> {
    state
        .renders
        .render(key, &state.recorder, render)
        .await
        .map_err(|_| (StatusCode::INTERNAL_SERVER_ERROR, "rendering failed\n").into_response())
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

/// `/`, or `/?refresh=N` to have the browser reload it every N seconds (5 to 3,600; no script).
async fn index(
    State(state): State<AppState>,
    axum::extract::Query(query): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    let refresh = query.get("refresh").and_then(|n| n.parse::<u32>().ok());
    let page =
        move |recorder: &Recorder| status_page::render(&recorder.status(SystemTime::now()), refresh).into_bytes();
    match rendered(&state, format!("page:{refresh:?}"), page).await {
        Ok(page) => Html(page).into_response(),
        Err(response) => response,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_scrape_accept_header_gets_openmetrics() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(negotiate(Some(prometheus)), Exposition::Text(Format::OpenMetrics));
    }

    #[test]
    fn plain_clients_get_the_0_0_4_text() {
        let text = Exposition::Text(Format::Prometheus);
        assert_eq!(negotiate(None), text);
        assert_eq!(negotiate(Some("*/*")), text);
        assert_eq!(negotiate(Some("text/plain;version=0.0.4")), text);
        assert_eq!(negotiate(Some("application/openmetrics-text;q=0")), text);
        assert_eq!(negotiate(Some("application/vnd.google.protobuf")), text, "a protobuf of what, delimited how?");
    }

    /// Prometheus 2.42 with native histograms on asks for protobuf first (its scrape Accept header, read off a
    /// scrape of this exporter); without them, protobuf is not asked for.
    #[test]
    fn a_scraper_with_native_histograms_on_gets_protobuf() {
        let native = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(negotiate(Some(native)), Exposition::Protobuf);
        let lower = "text/plain;q=0.9, application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited; q=0.5";
        assert_eq!(negotiate(Some(lower)), Exposition::Text(Format::Prometheus), "the higher q wins");
    }
}
