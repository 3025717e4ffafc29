//! A forward's route keys: `local` (an ssh -L listener, as before) or `url` (`ws://HOST:PORT`,
//! `wss://HOST[:PORT]`), and a `wss://` route's `tls_fingerprint` or `ca_file`. Every problem names its key and
//! value; a URL is shown without userinfo, query or fragment (it may carry a credential, and none is allowed).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use super::checker::Checker;
use super::raw::RawForward;
use super::Forward;
use crate::openclaw_cli_url::redacted;

/// A forward's road to the gateway, as configured.
#[derive(Debug, Clone, PartialEq)]
pub enum RouteConfig {
    /// `local = "HOST:PORT"`: an ssh -L listener on this machine, whose owner is checked.
    Local(SocketAddr),
    /// `url = "ws://HOST:PORT"` or `"wss://HOST[:PORT]"`: the gateway reached directly, no local listener.
    Direct(DirectRoute),
}

/// A `ws://` or `wss://` route.
#[derive(Debug, Clone, PartialEq)]
pub struct DirectRoute {
    /// The URL, `scheme://authority/` (it carries no credential: userinfo, query and fragment are refused).
    pub url: String,
    /// The host, without brackets.
    pub host: String,
    /// The port (443 when a `wss://` URL names none).
    pub port: u16,
    /// How a `wss://` route's certificate is verified; None for `ws://`.
    pub tls: Option<TlsVerify>,
}

/// How a `wss://` route verifies the gateway's certificate.
#[derive(Debug, Clone, PartialEq)]
pub enum TlsVerify {
    /// `tls_fingerprint`: the leaf certificate's SHA-256, as OpenClaw's `gateway.remote.tlsFingerprint`.
    Pin(probes::route::Fingerprint),
    /// A chain to the built-in roots (plus `ca_file`) and the host name.
    Roots {
        /// `ca_file`: a private CA in PEM.
        ca_file: Option<PathBuf>,
    },
}

impl Forward {
    /// The ssh -L listener of a `local` route.
    pub fn local(&self) -> Option<SocketAddr> {
        match &self.route {
            RouteConfig::Local(addr) => Some(*addr),
            RouteConfig::Direct(_) => None,
        }
    }

    /// Which road it is.
    pub fn transport(&self) -> probes::route::Transport {
        match &self.route {
            RouteConfig::Local(_) => probes::route::Transport::Ssh,
            RouteConfig::Direct(DirectRoute { tls: None, .. }) => probes::route::Transport::Ws,
            RouteConfig::Direct(_) => probes::route::Transport::Wss,
        }
    }

    /// Where it goes, for people: the local address or the URL.
    pub fn address(&self) -> String {
        match &self.route {
            RouteConfig::Local(addr) => addr.to_string(),
            RouteConfig::Direct(direct) => direct.url.clone(),
        }
    }

    /// The route the probes dial, its CA file loaded (the only part that can fail).
    pub fn probe_route(&self) -> Result<probes::route::Route, probes::tls::TlsConfigError> {
        use probes::route::{Direct, Route, Verify};
        Ok(match &self.route {
            RouteConfig::Local(addr) => Route::Local(*addr),
            RouteConfig::Direct(DirectRoute { host, port, tls: None, .. }) => {
                Route::Direct(Arc::new(Direct::ws(host, *port)))
            }
            RouteConfig::Direct(DirectRoute { host, port, tls: Some(verify), .. }) => {
                let verify = match verify {
                    TlsVerify::Pin(pin) => Verify::Pin(*pin),
                    TlsVerify::Roots { ca_file } => Verify::roots(ca_file.as_deref())?,
                };
                // The host was checked as a server name when the config was validated.
                let direct = Direct::wss(host, *port, verify)
                    .map_err(|err| probes::tls::TlsConfigError::Rustls(rustls_general(err.to_string())))?;
                Route::Direct(Arc::new(direct))
            }
        })
    }
}

fn rustls_general(message: String) -> rustls::Error {
    rustls::Error::General(message)
}

/// `forward[index]`'s route from its `local`, `url`, `tls_fingerprint` and `ca_file`.
pub(super) fn validate_route(forward: &RawForward, index: usize, c: &mut Checker<'_>) -> RouteConfig {
    let key = |field: &str| format!("forward[{index}].{field}");
    let tls_keys = forward.tls_fingerprint.is_some() || forward.ca_file.is_some();
    match (&forward.local, &forward.url) {
        (Some(local), None) => {
            if tls_keys {
                let (field, value) = tls_key(forward);
                c.problem(&key(field), &value, "TLS settings belong to a wss:// url; a local ssh forward is plain TCP");
            }
            RouteConfig::Local(local_addr(local, &key("local"), c))
        }
        (None, Some(url)) => {
            let trusted = forward.trusted_owners.join(", ");
            for (field, value) in [
                ("ssh_host", forward.ssh_host.as_deref()),
                ("jump_host", forward.jump_host.as_deref()),
                ("trusted_owners", (!trusted.is_empty()).then_some(trusted.as_str())),
            ] {
                if let Some(value) = value {
                    c.problem(
                        &key(field),
                        &value,
                        "an ssh-only key: a url route has no ssh (set local for an ssh forward)",
                    );
                }
            }
            RouteConfig::Direct(direct(forward, url, index, c))
        }
        (Some(_), Some(url)) => {
            c.problem(
                &key("url"),
                &redacted(url),
                "set local (an ssh forward) or url (the gateway directly), not both",
            );
            RouteConfig::Local(SocketAddr::from(([127, 0, 0, 1], 0)))
        }
        (None, None) => {
            c.problem(
                &key("local"),
                &"(unset)",
                "a forward needs local = \"HOST:PORT\" (the ssh -L listener) or url = \"ws://HOST:PORT\" / \
                 \"wss://HOST[:PORT]\" (the gateway reached directly)",
            );
            RouteConfig::Local(SocketAddr::from(([127, 0, 0, 1], 0)))
        }
    }
}

/// The TLS key that is set, for a problem naming it.
fn tls_key(forward: &RawForward) -> (&'static str, String) {
    match (&forward.tls_fingerprint, &forward.ca_file) {
        (Some(fingerprint), _) => ("tls_fingerprint", fingerprint.clone()),
        (None, Some(ca_file)) => ("ca_file", ca_file.clone()),
        (None, None) => ("tls_fingerprint", String::new()),
    }
}

/// `local`: an IP:port, a wildcard measured at its family's loopback (where the CLI connects), never port 0.
fn local_addr(local: &str, key: &str, c: &mut Checker<'_>) -> SocketAddr {
    let mut addr = c.addr(key, local);
    // A wildcard (what ssh -g binds, and what `init` keeps for it) is measured where the CLI connects: the
    // family's loopback. Connecting to 0.0.0.0 reaches 127.0.0.1 on Linux, and the owner check must judge the
    // listeners that address reaches.
    if addr.ip().is_unspecified() {
        let loopback: IpAddr =
            if addr.is_ipv4() { std::net::Ipv4Addr::LOCALHOST.into() } else { std::net::Ipv6Addr::LOCALHOST.into() };
        addr.set_ip(loopback);
    }
    if addr.port() == 0 && local.parse::<SocketAddr>().is_ok() {
        c.problem(key, &local, "port 0 is not a forward's port");
    }
    addr
}

/// `url` and, for `wss://`, how its certificate is verified.
fn direct(forward: &RawForward, url: &str, index: usize, c: &mut Checker<'_>) -> DirectRoute {
    let key = |field: &str| format!("forward[{index}].{field}");
    let shown = redacted(url);
    let unusable = DirectRoute { url: shown.clone(), host: String::new(), port: 1, tls: None };
    let parsed = match url::Url::parse(url) {
        Ok(parsed) => parsed,
        Err(err) => {
            c.problem(&key("url"), &shown, &format!("not a URL ({err}): write ws://HOST:PORT or wss://HOST[:PORT]"));
            return unusable;
        }
    };
    let tls = match parsed.scheme() {
        "ws" => false,
        "wss" => true,
        other => {
            c.problem(
                &key("url"),
                &shown,
                &format!("scheme {other}: a gateway route is ws://HOST:PORT or wss://HOST[:PORT]"),
            );
            return unusable;
        }
    };
    if !parsed.username().is_empty()
        || parsed.password().is_some()
        || parsed.query().is_some()
        || parsed.fragment().is_some()
    {
        c.problem(
            &key("url"),
            &shown,
            "no user, password, query or fragment: a URL is shown in logs and on the page, and the token comes from \
             the CLI's own sources",
        );
    }
    if !matches!(parsed.path(), "" | "/") {
        c.problem(&key("url"), &shown, "the gateway serves WebSocket and HTTP at its root: no path");
    }
    let Some(host) = parsed.host_str().map(|h| h.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase())
    else {
        c.problem(&key("url"), &shown, "no host");
        return unusable;
    };
    let port = match (parsed.port(), tls) {
        (Some(port), _) => port,
        (None, true) => 443,
        (None, false) => {
            c.problem(&key("url"), &shown, "ws:// needs its port (the gateway listens on 18789 by default)");
            1
        }
    };
    let this_machine = host.trim_end_matches('.') == "localhost"
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified());
    if this_machine && !tls {
        c.problem(
            &key("url"),
            &shown,
            &format!(
                "a ws:// URL to this machine: use local = \"127.0.0.1:{port}\" instead, which checks that your own ssh \
                 owns the listener before the token goes to it"
            ),
        );
    }
    let scheme = if tls { "wss" } else { "ws" };
    let bracketed = if host.contains(':') { format!("[{host}]") } else { host.clone() };
    let authority = if tls && port == 443 { bracketed } else { format!("{bracketed}:{port}") };
    let verify = if tls {
        Some(verification(forward, &host, index, c))
    } else {
        if forward.tls_fingerprint.is_some() || forward.ca_file.is_some() {
            let (field, value) = tls_key(forward);
            c.problem(&key(field), &value, "a pin or CA file verifies a wss:// route's certificate; this url is ws://");
        }
        None
    };
    DirectRoute { url: format!("{scheme}://{authority}/"), host, port, tls: verify }
}

/// How a `wss://` route verifies its certificate: a pin, a CA file, or the built-in roots and the name.
fn verification(forward: &RawForward, host: &str, index: usize, c: &mut Checker<'_>) -> TlsVerify {
    let key = |field: &str| format!("forward[{index}].{field}");
    if probes::route::Direct::wss(host, 443, probes::route::Verify::Pin(probes::route::Fingerprint([0; 32]))).is_err() {
        c.problem(&key("url"), &host, "not a host name or IP address a certificate can name");
    }
    match (&forward.tls_fingerprint, &forward.ca_file) {
        (Some(_), Some(ca_file)) => {
            c.problem(
                &key("ca_file"),
                ca_file,
                "set tls_fingerprint (pin the gateway's own certificate) or ca_file (trust a private CA), not both",
            );
            TlsVerify::Roots { ca_file: None }
        }
        (Some(fingerprint), None) => match probes::route::Fingerprint::parse(fingerprint) {
            Some(pin) => TlsVerify::Pin(pin),
            None => {
                c.problem(
                    &key("tls_fingerprint"),
                    fingerprint,
                    "not a SHA-256 fingerprint: 64 hex digits, or 32 colon-separated pairs, optionally prefixed \
                     sha256: (the form of OpenClaw's gateway.remote.tlsFingerprint; `openssl x509 -noout \
                     -fingerprint -sha256 -in cert.pem` prints one)",
                );
                TlsVerify::Pin(probes::route::Fingerprint([0; 32]))
            }
        },
        (None, Some(ca_file)) => {
            if let Err(err) = probes::tls::root_store(Some(std::path::Path::new(ca_file))) {
                c.problem(&key("ca_file"), ca_file, &format!("does not load: {err}"));
            }
            TlsVerify::Roots { ca_file: Some(PathBuf::from(ca_file)) }
        }
        (None, None) => TlsVerify::Roots { ca_file: None },
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, DirectRoute, RouteConfig, TlsVerify};
    use probes::route::{Fingerprint, Transport};

    /// Load `toml` from a file: the config, or every problem.
    fn load(toml: &str) -> Result<Config, Vec<String>> {
        let file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        std::fs::write(file.path(), toml).unwrap();
        Config::load(Some(file.path())).map_err(|err| err.problems)
    }

    fn forward(keys: &str) -> String {
        format!("[[forward]]\nname = \"gw\"\n{keys}")
    }

    #[test]
    fn an_ssh_forward_means_what_it_meant() {
        let config = load(&forward("local = \"0.0.0.0:18789\"\n")).unwrap();
        assert_eq!(config.forwards[0].route, RouteConfig::Local("127.0.0.1:18789".parse().unwrap()));
        assert_eq!(config.forwards[0].transport(), Transport::Ssh);
        assert_eq!(config.forwards[0].address(), "127.0.0.1:18789");
    }

    #[test]
    fn a_ws_url_is_a_direct_route_and_wss_defaults_to_443_and_the_built_in_roots() {
        let config = load(&forward("url = \"ws://10.200.0.2:28789\"\n")).unwrap();
        let expected =
            DirectRoute { url: "ws://10.200.0.2:28789/".into(), host: "10.200.0.2".into(), port: 28789, tls: None };
        assert_eq!(config.forwards[0].route, RouteConfig::Direct(expected));
        assert_eq!(config.forwards[0].local(), None);
        let config = load(&forward("url = \"wss://Mac-AP1.tail1.ts.net\"\n")).unwrap();
        let RouteConfig::Direct(direct) = &config.forwards[0].route else { panic!("a direct route") };
        assert_eq!(
            (direct.url.as_str(), direct.host.as_str(), direct.port),
            ("wss://mac-ap1.tail1.ts.net/", "mac-ap1.tail1.ts.net", 443)
        );
        assert_eq!(direct.tls, Some(TlsVerify::Roots { ca_file: None }));
        assert_eq!(config.forwards[0].transport(), Transport::Wss);
    }

    #[test]
    fn a_pin_takes_openclaws_forms_and_a_ca_file_must_load() {
        let hex = "AB".repeat(32);
        let config =
            load(&forward(&format!("url = \"wss://10.0.0.5:18789\"\ntls_fingerprint = \"sha256:{hex}\"\n"))).unwrap();
        let RouteConfig::Direct(direct) = &config.forwards[0].route else { panic!("a direct route") };
        assert_eq!(direct.tls, Some(TlsVerify::Pin(Fingerprint([0xab; 32]))));
        let problems = load(&forward("url = \"wss://10.0.0.5\"\nca_file = \"/nonexistent/ca.pem\"\n")).unwrap_err();
        assert!(
            problems.iter().any(|p| p.contains("key `forward[0].ca_file` = \"/nonexistent/ca.pem\": does not load")),
            "{problems:?}"
        );
    }

    #[test]
    fn every_bad_route_is_named_with_its_key_and_value() {
        let hex = "ab".repeat(32);
        for (keys, key, says) in [
            ("url = \"ws://127.0.0.1:18789\"\n", "url", "use local = \"127.0.0.1:18789\""),
            ("url = \"ws://localhost:18789\"\n", "url", "use local"),
            ("url = \"ws://10.0.0.5\"\n", "url", "ws:// needs its port"),
            ("url = \"http://10.0.0.5:18789\"\n", "url", "scheme http"),
            ("url = \"wss://10.0.0.5/gateway\"\n", "url", "no path"),
            ("url = \"ws://10.0.0.5:18789\"\nlocal = \"127.0.0.1:18789\"\n", "url", "not both"),
            ("url = \"ws://10.0.0.5:18789\"\ntls_fingerprint = \"x\"\n", "tls_fingerprint", "this url is ws://"),
            ("url = \"wss://10.0.0.5\"\ntls_fingerprint = \"abc\"\n", "tls_fingerprint", "not a SHA-256 fingerprint"),
            ("local = \"127.0.0.1:18789\"\nca_file = \"/x.pem\"\n", "ca_file", "belong to a wss:// url"),
            ("url = \"wss://10.0.0.5\"\nssh_host = \"mac\"\n", "ssh_host", "an ssh-only key"),
            ("", "local", "a forward needs local"),
        ] {
            let problems = load(&forward(keys)).unwrap_err();
            let named = format!("key `forward[0].{key}`");
            assert!(problems.iter().any(|p| p.contains(&named) && p.contains(says)), "{keys}: {problems:#?}");
        }
        let both = forward(&format!("url = \"wss://10.0.0.5\"\ntls_fingerprint = \"{hex}\"\nca_file = \"/x.pem\"\n"));
        assert!(load(&both).unwrap_err().iter().any(|p| p.contains("not both")));
    }

    #[test]
    fn a_url_with_a_credential_is_refused_and_never_shown() {
        let problems = load(&forward("url = \"wss://me:s3cret@gw.example/?token=tok-9f2\"\n")).unwrap_err();
        let text = problems.join("\n");
        assert!(text.contains("no user, password, query or fragment"), "{text}");
        assert!(!text.contains("s3cret") && !text.contains("tok-9f2"), "{text}");
    }

    #[test]
    fn the_route_init_writes_from_the_clis_direct_mode_loads_as_that_route() {
        let remote = crate::openclaw_cli_url::CliRemote {
            transport: Some("direct".into()),
            url: "wss://Mac-AP1.tail1.ts.net".into(),
            tls_fingerprint: Some(vec!["AB"; 32].join(":")),
            source: "test".into(),
        };
        let direct = crate::init::direct_route(&remote).unwrap();
        let config = load(&crate::init::render(&[], Some(&direct), 18789, None)).unwrap();
        assert_eq!(config.forwards[0].name, "mac-ap1.tail1.ts.net");
        let RouteConfig::Direct(route) = &config.forwards[0].route else { panic!("a direct route") };
        assert_eq!(route.tls, Some(TlsVerify::Pin(Fingerprint([0xab; 32]))));
        assert_eq!(route.url, "wss://mac-ap1.tail1.ts.net/");
    }

    #[test]
    fn a_tap_in_front_of_a_url_route_speaks_to_that_route() {
        let tap = "[[auth_tap]]\nforward = \"gw\"\nlisten = \"127.0.0.1:18789\"\n";
        let config = load(&(forward("url = \"wss://10.0.0.5\"\n") + tap)).unwrap();
        assert_eq!(config.auth_taps[0].upstream, None);
        let problems =
            load(&(forward("url = \"wss://10.0.0.5\"\n") + tap + "upstream = \"127.0.0.1:1\"\n")).unwrap_err();
        assert!(
            problems.iter().any(|p| p.contains("auth_tap[0].upstream") && p.contains("remove upstream")),
            "{problems:?}"
        );
    }
}
