//! Request guards against the hostile neighbours of a loopback listener: web pages in the user's browser.
//!
//! - DNS rebinding: a page on `evil.example` whose name is re-pointed at 127.0.0.1 reads this server as
//!   same-origin, but its requests carry `Host: evil.example`. [`host`] lets through only loopback names
//!   (`localhost`, `*.localhost`), IP literals (a rebinding attack needs a name), this machine's own name
//!   (`name`, `name.local`: a widened listener scraped by host name) and `[web] allowed_hosts`.
//! - Cross-site requests: any page can POST a form or a no-cors `fetch` to loopback. [`lifecycle`] serves a
//!   state-changing route only when `[web] enable_lifecycle = true`, and then refuses a request with a foreign
//!   `Origin`, a `Sec-Fetch-Site` other than `same-origin` or `none`, or a form's content type
//!   (`application/x-www-form-urlencoded`, `multipart/form-data`, `text/plain`): what a browser sends
//!   cross-site without a CORS preflight, which this server never grants. `curl -X POST` sends none of them.
//!
//! Every refusal is counted in `openclaw_exporter_web_requests_refused_total{reason}`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::watch;

use crate::config::WebPolicy;
use crate::record::Recorder;

/// The policy in force; a reload replaces it.
pub type PolicyWatch = watch::Receiver<WebPolicy>;

/// Why a request was refused: the `reason` label's fixed set.
pub const REASONS: [&str; 5] = ["foreign_host", "lifecycle_off", "cross_site", "unauthorized", "auth_rate_limited"];

/// Marks a response a guard refused (a foreign Host, basic auth, the lifecycle gate): a connection whose
/// requests are only refused never becomes established, so it can always be evicted to make room.
#[derive(Debug, Clone, Copy)]
pub struct Refused;

/// The guards' state: the policy, this machine's names, and where refusals are counted.
#[derive(Clone)]
pub struct Guards {
    policy: PolicyWatch,
    machine_names: Arc<Vec<String>>,
    recorder: Arc<Recorder>,
}

impl Guards {
    /// Guards reading `policy`, counting into `recorder`.
    pub fn new(policy: PolicyWatch, recorder: Arc<Recorder>) -> Guards {
        recorder.create_web_refusal_series(&REASONS);
        let name = gethostname::gethostname().to_string_lossy().to_ascii_lowercase();
        let mut names = vec![name.clone()];
        if let Some(short) = name.split('.').next().filter(|short| *short != name) {
            names.push(short.to_owned());
        }
        names.push(format!("{}.local", names.last().expect("one name")));
        Guards { policy, machine_names: Arc::new(names), recorder }
    }

    fn refuse(&self, reason: &'static str, message: &str) -> Response {
        self.refuse_with(StatusCode::FORBIDDEN, reason, message)
    }

    /// Answer `status` with `message`, counted under `reason` (one of [`REASONS`]), marked [`Refused`] so
    /// the connection does not count as established.
    pub fn refuse_with(&self, status: StatusCode, reason: &'static str, message: &str) -> Response {
        self.recorder.count_web_refused(reason);
        tracing::debug!(reason, "{message}");
        let mut response = (status, format!("{message}\n")).into_response();
        response.extensions_mut().insert(Refused);
        response
    }
}

/// The host part of a `Host` header value: lower case, without port or IPv6 brackets.
fn host_name(value: &str) -> String {
    let value = value.trim().to_ascii_lowercase();
    if let Some(rest) = value.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default().to_owned();
    }
    value
        .rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(value.clone(), |(host, _)| host.to_owned())
}

/// Whether a request to `host` (a `Host` value) may be served under `policy`.
pub fn host_allowed(host: &str, policy: &WebPolicy, machine_names: &[String]) -> bool {
    let name = host_name(host);
    name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<std::net::IpAddr>().is_ok()
        || machine_names.contains(&name)
        || policy.allowed_hosts.contains(&name)
}

/// Every path: refuse a `Host` a DNS-rebinding page would carry. A request without `Host` (HTTP/1.0 tools)
/// passes: browsers always send one.
pub async fn host(State(guards): State<Guards>, request: Request, next: Next) -> Response {
    let host = request.headers().get(header::HOST).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let allowed = match host.as_deref() {
        None => true,
        Some(host) => host_allowed(host, &guards.policy.borrow(), &guards.machine_names),
    };
    if allowed {
        next.run(request).await
    } else {
        guards.refuse("foreign_host", "Host is not this machine: add it to [web] allowed_hosts if it is")
    }
}

/// Why a state-changing request is one a browser sent cross-site, if it is.
pub fn cross_site(headers: &HeaderMap) -> Option<&'static str> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(|v| v.trim().to_ascii_lowercase());
    if let Some(origin) = get("origin") {
        let own = get("host").unwrap_or_default();
        let same = url::Url::parse(&origin).ok().is_some_and(|url| {
            let port = url.port_or_known_default().map(|p| p.to_string()).unwrap_or_default();
            let host = url.host_str().unwrap_or_default();
            own == format!("{host}:{port}") || (own == host && url.port().is_none())
        });
        if !same {
            return Some("a foreign Origin");
        }
    }
    if get("sec-fetch-site").is_some_and(|site| site != "same-origin" && site != "none") {
        return Some("Sec-Fetch-Site says another site");
    }
    let form = ["application/x-www-form-urlencoded", "multipart/form-data", "text/plain"];
    if get("content-type").is_some_and(|t| form.iter().any(|f| t.starts_with(f))) {
        return Some("a form's content type");
    }
    None
}

/// `POST /-/reload` and any other state-changing route: off unless `[web] enable_lifecycle = true`; never
/// for a request a browser sent cross-site.
pub async fn lifecycle(State(guards): State<Guards>, request: Request, next: Next) -> Response {
    if !guards.policy.borrow().enable_lifecycle {
        return guards.refuse(
            "lifecycle_off",
            "lifecycle endpoints are off: set [web] enable_lifecycle = true (SIGHUP and a change of the config file reload too)",
        );
    }
    if let Some(why) = cross_site(request.headers()) {
        return guards.refuse("cross_site", &format!("refused: {why} (a browser's cross-site request)"));
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn only_this_machine_s_names_and_ip_literals_pass_the_host_check() {
        let policy = WebPolicy { enable_lifecycle: false, allowed_hosts: vec!["metrics.corp".into()] };
        let names = vec!["lap".to_owned(), "lap.local".to_owned()];
        for host in [
            "127.0.0.1:19789",
            "localhost:19789",
            "LOCALHOST",
            "[::1]:19789",
            "10.0.0.5:19789",
            "lap:19789",
            "lap.local",
            "metrics.corp:80",
            "x.localhost",
        ] {
            assert!(host_allowed(host, &policy, &names), "{host}");
        }
        for host in ["evil.example:19789", "127.0.0.1.nip.io:19789", "localhost.evil.example", "lap.evil"] {
            assert!(!host_allowed(host, &policy, &names), "{host}");
        }
    }

    #[test]
    fn what_a_browser_sends_cross_site_is_refused_and_curl_is_not() {
        assert_eq!(cross_site(&headers(&[("host", "127.0.0.1:19789")])), None, "curl -X POST");
        let same =
            [("host", "127.0.0.1:19789"), ("origin", "http://127.0.0.1:19789"), ("sec-fetch-site", "same-origin")];
        assert_eq!(cross_site(&headers(&same)), None);
        let foreign = [("host", "127.0.0.1:19789"), ("origin", "http://localhost:8000")];
        assert!(cross_site(&headers(&foreign)).is_some());
        assert!(cross_site(&headers(&[("host", "127.0.0.1:19789"), ("origin", "null")])).is_some());
        assert!(cross_site(&headers(&[("host", "127.0.0.1:19789"), ("sec-fetch-site", "cross-site")])).is_some());
        assert!(cross_site(&headers(&[("host", "127.0.0.1:19789"), ("sec-fetch-site", "same-site")])).is_some());
        let form = [("host", "127.0.0.1:19789"), ("content-type", "application/x-www-form-urlencoded")];
        assert!(cross_site(&headers(&form)).is_some());
    }
}
