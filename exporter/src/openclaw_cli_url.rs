//! The gateway URL this machine's `openclaw` CLI connects to, read the way the CLI reads it, and whether it is
//! the address of a forward the exporter measures. The exporter can be green while the CLI talks to nothing:
//! `localhost` that resolves to ::1 first while ssh listens on 127.0.0.1 only, a port with no forward, `wss://`
//! to a plain forward.
//!
//! The CLI's order (openclaw 2026.9.6): `OPENCLAW_GATEWAY_URL` (the process environment, then the state
//! directory's `.env`, then `~/.config/openclaw/gateway.env`, as for the token), then in remote mode
//! (`gateway.mode: "remote"`) `gateway.remote.url` from its JSON5 config; in local mode it talks to
//! `ws://127.0.0.1:<gateway.port>` (18789 unless set). The same files and reader as [`crate::token_sources`].

use std::net::{IpAddr, SocketAddr};

use crate::token_sources::{read_config, Locations};

/// The URL the CLI uses and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenclawCliUrl {
    /// The URL as written, with its userinfo, query and fragment removed ([`redacted`]: a URL may carry a
    /// credential, and this one goes to logs, `/api/status` and the doctor; judging needs only the scheme,
    /// host and port).
    pub url: String,
    /// Where it was read, for people: `env OPENCLAW_GATEWAY_URL`, `FILE gateway.remote.url`, `local mode`.
    pub source: String,
}

/// The CLI's gateway URL; an error says why it cannot be known (a config that is not JSON5, remote mode
/// without a URL).
pub fn read(locations: &Locations) -> Result<OpenclawCliUrl, String> {
    read_as_written(locations).map(|cli| OpenclawCliUrl { url: redacted(&cli.url), ..cli })
}

/// `url` as every log line, `check-config`, the status report and the doctor show a URL: its userinfo
/// (user and password), query and fragment removed, since any of them may carry a credential and none is
/// needed to judge where it points (scheme, host, port, path). A string that does not parse as a URL is not
/// shown at all.
pub fn redacted(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else { return "<not a URL: not shown>".to_owned() };
    let clean = parsed.username().is_empty()
        && parsed.password().is_none()
        && parsed.query().is_none()
        && parsed.fragment().is_none();
    if clean {
        // As written: re-serializing would add a trailing `/` the person never wrote.
        return url.to_owned();
    }
    let _ = parsed.set_username("");
    let _ = parsed.set_password(None);
    parsed.set_query(None);
    parsed.set_fragment(None);
    parsed.to_string()
}

/// The CLI's remote settings, as its config file writes them (remote mode only): `gateway.remote.transport`
/// (`direct` or `ssh`), `url` and `tlsFingerprint`. What `init` turns into a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliRemote {
    /// `gateway.remote.transport`, when set.
    pub transport: Option<String>,
    /// `gateway.remote.url`, redacted ([`redacted`]).
    pub url: String,
    /// `gateway.remote.tlsFingerprint`, when set.
    pub tls_fingerprint: Option<String>,
    /// The file, for people.
    pub source: String,
}

impl CliRemote {
    /// Whether the CLI reaches the gateway directly: `transport: "direct"`, or no transport and a URL to another
    /// host (a URL to this machine is an ssh forward's).
    pub fn is_direct(&self) -> bool {
        match self.transport.as_deref() {
            Some(transport) => transport == "direct",
            None => match CliAddress::of_url(&self.url) {
                Some(CliAddress::Url { host, .. }) => {
                    host != "localhost" && !host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
                }
                _ => false,
            },
        }
    }
}

/// The CLI's remote settings from its config file, None when it is not in remote mode or has no config.
pub fn read_remote(locations: &Locations) -> Result<Option<CliRemote>, String> {
    let Some(path) = locations.config_file.as_ref() else { return Ok(None) };
    let Some(config) = read_config(path)? else { return Ok(None) };
    let gateway = &config["gateway"];
    if gateway["mode"] != "remote" {
        return Ok(None);
    }
    let remote = &gateway["remote"];
    let Some(url) = remote["url"].as_str() else {
        return Err(format!("{}: gateway.mode is remote but gateway.remote.url is not set", path.display()));
    };
    Ok(Some(CliRemote {
        transport: remote["transport"].as_str().map(str::to_owned),
        url: redacted(url),
        tls_fingerprint: remote["tlsFingerprint"].as_str().map(str::to_owned),
        source: path.display().to_string(),
    }))
}

fn read_as_written(locations: &Locations) -> Result<OpenclawCliUrl, String> {
    if let Some((url, source)) = &locations.env_url {
        return Ok(OpenclawCliUrl { url: url.clone(), source: source.clone() });
    }
    let Some(path) = locations.config_file.as_ref() else { return Ok(local_mode(None, "no config file")) };
    let Some(config) = read_config(path)? else { return Ok(local_mode(None, "no config file")) };
    let gateway = &config["gateway"];
    if gateway["mode"] == "remote" {
        return match gateway["remote"]["url"].as_str() {
            Some(url) => {
                Ok(OpenclawCliUrl { url: url.to_owned(), source: format!("{} gateway.remote.url", path.display()) })
            }
            None => Err(format!("{}: gateway.mode is remote but gateway.remote.url is not set", path.display())),
        };
    }
    let port = gateway["port"].as_u64().and_then(|port| u16::try_from(port).ok());
    Ok(local_mode(port, &format!("{} gateway.mode local", path.display())))
}

fn local_mode(port: Option<u16>, why: &str) -> OpenclawCliUrl {
    let port = port.unwrap_or(18789);
    OpenclawCliUrl { url: format!("ws://127.0.0.1:{port}"), source: format!("local mode ({why}), port {port}") }
}

/// Where a forward takes the CLI: a local listener (an ssh forward, or a tap in front of one), or the gateway's
/// URL for a direct route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliAddress {
    /// A listener on this machine, spoken to in the clear.
    Local(SocketAddr),
    /// A `ws://` or `wss://` route.
    Url {
        /// `wss://`.
        tls: bool,
        /// The host, lower case, without brackets or a trailing dot.
        host: String,
        /// The port.
        port: u16,
    },
}

impl CliAddress {
    /// The address of a direct route's `url` (None when it is not a ws/wss URL with a host).
    pub fn of_url(url: &str) -> Option<CliAddress> {
        let parsed = url::Url::parse(url).ok()?;
        let tls = match parsed.scheme() {
            "ws" | "http" => false,
            "wss" | "https" => true,
            _ => return None,
        };
        Some(CliAddress::Url { tls, host: host_of(&parsed)?, port: parsed.port_or_known_default()? })
    }
}

/// A URL's host as routes compare it: lower case, no brackets, no trailing dot.
fn host_of(parsed: &url::Url) -> Option<String> {
    let host = parsed.host_str()?.trim_start_matches('[').trim_end_matches(']').trim_end_matches('.');
    Some(host.to_ascii_lowercase())
}

/// What the CLI's URL is to the configured forwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// It is this forward's address, in its scheme (plain for an ssh forward).
    Matches {
        /// The forward.
        forward: String,
    },
    /// A direct route's host and port, in the other scheme (`ws://` to a `wss://` route, or back).
    RouteSchemeMismatch {
        /// The URL's scheme.
        scheme: String,
        /// The forward.
        forward: String,
        /// The route's URL.
        route: String,
    },
    /// A host no configured forward reaches (not this machine: a direct URL with no route of its own).
    NoRouteToHost {
        /// The URL's host and port.
        host: String,
    },
    /// `localhost` on a forward's port: it may resolve to ::1 first, while ssh listens where `listens` says.
    Localhost {
        /// The forward on that port.
        forward: String,
        /// Where its ssh listens.
        listens: SocketAddr,
    },
    /// Another host or address on a forward's port.
    OtherHost {
        /// The URL's host.
        host: String,
        /// The forward on that port.
        forward: String,
        /// Where its ssh listens.
        listens: SocketAddr,
    },
    /// TLS (`wss://`, `https://`) to a plain forward.
    SchemeMismatch {
        /// The URL's scheme.
        scheme: String,
        /// The forward.
        forward: String,
        /// Where its ssh listens.
        listens: SocketAddr,
    },
    /// No configured forward listens on the URL's port.
    NoForwardOnPort {
        /// The port.
        port: u16,
    },
    /// Not a gateway URL at all.
    NotAUrl {
        /// Why.
        why: String,
    },
}

impl Finding {
    /// The forward the CLI's URL is, when it is one.
    pub fn matched(&self) -> Option<&str> {
        match self {
            Finding::Matches { forward } => Some(forward),
            _ => None,
        }
    }

    /// The mismatch in words, with what to write instead (None when it matches).
    pub fn explain(&self, cli: &OpenclawCliUrl) -> Option<String> {
        let (url, source) = (&cli.url, &cli.source);
        Some(match self {
            Finding::Matches { .. } => return None,
            Finding::Localhost { forward, listens } => format!(
                "the CLI's URL {url} ({source}) says localhost, which may resolve to ::1 first, while ssh listens on \
                 {listens} only (forward {forward}): use ws://{listens}"
            ),
            Finding::OtherHost { host, forward, listens } => format!(
                "the CLI's URL {url} ({source}) points at {host}, but the forward {forward}'s ssh listens on \
                 {listens}: use ws://{listens}"
            ),
            Finding::SchemeMismatch { scheme, forward, listens } => format!(
                "the CLI's URL {url} ({source}) uses {scheme} (TLS), but the forward {forward} at {listens} is a plain \
                 ssh forward: use ws://{listens}"
            ),
            Finding::RouteSchemeMismatch { scheme, forward, route } => format!(
                "the CLI's URL {url} ({source}) uses {scheme}, but the forward {forward} reaches that gateway as \
                 {route}: use {route}"
            ),
            Finding::NoRouteToHost { host } => format!(
                "the CLI's URL {url} ({source}) points at {host}, which no configured forward reaches: the exporter \
                 does not measure the path the CLI uses (add a [[forward]] with url = \"{url}\")"
            ),
            Finding::NoForwardOnPort { port } => format!(
                "the CLI's URL {url} ({source}) points at port {port}, where no configured forward listens: the \
                 exporter does not measure the path the CLI uses"
            ),
            Finding::NotAUrl { why } => format!("the CLI's URL {url} ({source}) is not a gateway URL: {why}"),
        })
    }
}

/// Judge `url` against the forwards (name, where each takes the CLI): a direct route by its host and port,
/// else the local listeners by port.
pub fn judge(url: &str, addresses: &[(&str, CliAddress)]) -> Finding {
    let parsed = match url::Url::parse(url) {
        Ok(parsed) => parsed,
        Err(err) => return Finding::NotAUrl { why: err.to_string() },
    };
    let tls = match parsed.scheme() {
        "ws" | "http" => false,
        "wss" | "https" => true,
        other => return Finding::NotAUrl { why: format!("scheme {other}, not ws, wss, http or https") },
    };
    let Some(port) = parsed.port_or_known_default() else {
        return Finding::NotAUrl { why: "no port".into() };
    };
    let host = host_of(&parsed).unwrap_or_default();
    let routes = addresses.iter().filter_map(|(name, address)| match address {
        CliAddress::Url { tls, host, port } => Some((*name, *tls, host, *port)),
        CliAddress::Local(_) => None,
    });
    let same_place: Vec<_> =
        routes.filter(|(_, _, route_host, route_port)| **route_host == host && *route_port == port).collect();
    if let Some((name, _, _, _)) = same_place.iter().find(|(_, route_tls, _, _)| *route_tls == tls) {
        return Finding::Matches { forward: (*name).to_owned() };
    }
    if let Some((name, route_tls, route_host, route_port)) = same_place.first() {
        let scheme = if *route_tls { "wss" } else { "ws" };
        return Finding::RouteSchemeMismatch {
            scheme: parsed.scheme().to_owned(),
            forward: (*name).to_owned(),
            route: format!("{scheme}://{}:{route_port}", bracketed(route_host)),
        };
    }
    let forwards: Vec<(&str, SocketAddr)> = addresses
        .iter()
        .filter_map(|(name, address)| match address {
            CliAddress::Local(local) => Some((*name, *local)),
            CliAddress::Url { .. } => None,
        })
        .collect();
    let this_machine = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !this_machine && forwards.iter().all(|(_, local)| local.port() != port || local.ip().to_string() != host) {
        return Finding::NoRouteToHost { host: format!("{}:{port}", bracketed(&host)) };
    }
    let on_port: Vec<&(&str, SocketAddr)> = forwards.iter().filter(|(_, local)| local.port() == port).collect();
    let Some(&&(first, first_local)) = on_port.first() else { return Finding::NoForwardOnPort { port } };
    let ip = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        Some(url::Host::Domain(domain)) if domain.eq_ignore_ascii_case("localhost") => {
            return Finding::Localhost { forward: first.to_owned(), listens: first_local };
        }
        _ => None,
    };
    let Some(&&(name, local)) = on_port.iter().find(|(_, local)| Some(local.ip()) == ip) else {
        let host = parsed.host_str().unwrap_or_default().to_owned();
        return Finding::OtherHost { host, forward: first.to_owned(), listens: first_local };
    };
    if tls {
        return Finding::SchemeMismatch {
            scheme: parsed.scheme().to_owned(),
            forward: name.to_owned(),
            listens: local,
        };
    }
    Finding::Matches { forward: name.to_owned() }
}

fn bracketed(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn forwards() -> Vec<(&'static str, CliAddress)> {
        vec![
            ("mac", CliAddress::Local("127.0.0.1:18789".parse().unwrap())),
            ("v6", CliAddress::Local("[::1]:18790".parse().unwrap())),
            ("lan", CliAddress::of_url("ws://10.200.0.2:28789").unwrap()),
            ("tailnet", CliAddress::of_url("wss://Mac-AP1.tail1.ts.net").unwrap()),
        ]
    }

    #[test]
    fn each_kind_of_url_is_judged() {
        let f = forwards();
        assert_eq!(judge("ws://127.0.0.1:18789", &f), Finding::Matches { forward: "mac".into() });
        assert_eq!(judge("http://127.0.0.1:18789/", &f), Finding::Matches { forward: "mac".into() });
        assert_eq!(judge("ws://[::1]:18790", &f), Finding::Matches { forward: "v6".into() });
        let mac: SocketAddr = "127.0.0.1:18789".parse().unwrap();
        assert_eq!(judge("ws://localhost:18789", &f), Finding::Localhost { forward: "mac".into(), listens: mac });
        assert_eq!(
            judge("wss://127.0.0.1:18789", &f),
            Finding::SchemeMismatch { scheme: "wss".into(), forward: "mac".into(), listens: mac }
        );
        assert_eq!(
            judge("ws://[::1]:18789", &f),
            Finding::OtherHost { host: "[::1]".into(), forward: "mac".into(), listens: mac }
        );
        assert_eq!(judge("ws://127.0.0.1:9999", &f), Finding::NoForwardOnPort { port: 9999 });
        assert!(matches!(judge("127.0.0.1:18789", &f), Finding::NotAUrl { .. }));
        let cli = OpenclawCliUrl { url: "ws://localhost:18789".into(), source: "test".into() };
        let said = judge(&cli.url, &f).explain(&cli).unwrap();
        assert!(said.contains("::1") && said.contains("127.0.0.1:18789"), "{said}");
    }

    #[test]
    fn a_direct_url_is_the_route_with_that_url_in_its_scheme() {
        let f = forwards();
        assert_eq!(judge("ws://10.200.0.2:28789", &f), Finding::Matches { forward: "lan".into() });
        assert_eq!(judge("wss://mac-ap1.tail1.ts.net/", &f), Finding::Matches { forward: "tailnet".into() });
        assert_eq!(judge("wss://MAC-AP1.tail1.ts.net.:443", &f), Finding::Matches { forward: "tailnet".into() });
        assert_eq!(
            judge("wss://10.200.0.2:28789", &f),
            Finding::RouteSchemeMismatch {
                scheme: "wss".into(),
                forward: "lan".into(),
                route: "ws://10.200.0.2:28789".into()
            }
        );
        assert_eq!(judge("ws://10.200.0.9:28789", &f), Finding::NoRouteToHost { host: "10.200.0.9:28789".into() });
        let cli = OpenclawCliUrl { url: "wss://gw.example:8443".into(), source: "test".into() };
        let said = judge(&cli.url, &f).explain(&cli).unwrap();
        assert!(
            said.contains("no configured forward reaches") && said.contains("url = \"wss://gw.example:8443\""),
            "{said}"
        );
    }

    fn locations(dir: &std::path::Path) -> Locations {
        Locations {
            env_token: None,
            env_url: None,
            state_env_file: None,
            gateway_env_file: None,
            config_file: Some(dir.join("openclaw.json")),
            token_file: None,
        }
    }

    #[test]
    fn the_url_is_read_as_the_cli_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("openclaw.json");
        let at = |text: &str| {
            std::fs::write(&config, text).unwrap();
            read(&locations(dir.path()))
        };
        let remote = at("{ gateway: { mode: 'remote', remote: { url: 'ws://localhost:18789' } }, // JSON5\n}").unwrap();
        assert_eq!(remote.url, "ws://localhost:18789");
        assert!(remote.source.ends_with("gateway.remote.url"), "{remote:?}");
        let local = at(r#"{"gateway": {"mode": "local", "port": 19001, "remote": {"url": "ws://x:1"}}}"#).unwrap();
        assert_eq!(local.url, "ws://127.0.0.1:19001", "local mode ignores remote.url");
        assert!(at(r#"{"gateway": {"mode": "remote"}}"#).unwrap_err().contains("gateway.remote.url is not set"));
        assert!(at("{ not json").is_err());
        let with_env = Locations {
            env_url: Some(("ws://127.0.0.1:1".into(), "env OPENCLAW_GATEWAY_URL".into())),
            ..locations(dir.path())
        };
        assert_eq!(read(&with_env).unwrap().url, "ws://127.0.0.1:1", "the environment wins");
        let none =
            Locations { config_file: Some(PathBuf::from("/nonexistent/openclaw.json")), ..locations(dir.path()) };
        assert_eq!(read(&none).unwrap().url, "ws://127.0.0.1:18789");
        let secret = Locations {
            env_url: Some(("ws://me:s3cret@127.0.0.1:18789/?token=tok-9f2".into(), "env".into())),
            ..locations(dir.path())
        };
        let shown = read(&secret).unwrap().url;
        assert!(!shown.contains("s3cret") && !shown.contains("tok-9f2"), "{shown}");
        assert_eq!(judge(&shown, &forwards()), Finding::Matches { forward: "mac".into() }, "still judged");
    }

    #[test]
    fn a_url_is_shown_without_userinfo_query_or_fragment() {
        for (written, shown) in [
            ("ws://127.0.0.1:18789", "ws://127.0.0.1:18789"),
            ("ws://me@127.0.0.1:18789/", "ws://127.0.0.1:18789/"),
            ("https://u:p4ss@vm.example/api/v1/write?api_key=k3y#frag-t0k", "https://vm.example/api/v1/write"),
            ("http://vm.example/write#t0k", "http://vm.example/write"),
        ] {
            assert_eq!(redacted(written), shown, "{written}");
        }
        assert_eq!(redacted("not a url ?token=abc"), "<not a URL: not shown>");
    }
}
