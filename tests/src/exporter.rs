//! The exporter binary under test, its scrapes, and the config snippets tests write.

use super::*;

/// Samples of one scrape: `name{labels}` -> value, labels as rendered.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    /// The raw text.
    pub text: String,
    samples: BTreeMap<String, f64>,
}

impl Scrape {
    /// Parse the text exposition format (0.0.4 or OpenMetrics) into samples.
    pub fn parse(text: &str) -> Scrape {
        let samples = text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .filter_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                Some((series.to_owned(), value.parse().ok()?))
            })
            .collect();
        Scrape { text: text.to_owned(), samples }
    }

    /// The value of an exact series, e.g. `openclaw_gateway_up{forward="t"}`.
    pub fn get(&self, series: &str) -> Option<f64> {
        self.samples.get(series).copied()
    }

    /// The value of an exact series, or 0 when absent.
    pub fn value(&self, series: &str) -> f64 {
        self.get(series).unwrap_or(0.0)
    }
}

/// The exporter binary running on a config file written for the test.
pub struct Exporter {
    /// The process.
    pub proc: Proc,
    /// Its metrics address.
    pub web: SocketAddr,
    /// The extra `[web]` keys, kept by [`Exporter::rewrite_config`].
    web_extra: String,
    _config: tempfile::NamedTempFile,
}

impl Exporter {
    /// Start on `forwards_toml` with the listener owner found by `lookup` (`procfs` or `listeners`).
    pub fn start_with_lookup(lookup: &str, forwards_toml: &str) -> Exporter {
        Self::start(&format!(
            "[scheduler]\nmax_concurrent_probes = 128\nowner_lookup = \"{lookup}\"\n\n{forwards_toml}"
        ))
    }

    /// Write `forwards_toml` (the `[[forward]]` tables) to a config with a free web port, and start it.
    pub fn start(forwards_toml: &str) -> Exporter {
        Self::start_with(forwards_toml, |command| command)
    }

    /// As [`Exporter::start`], letting the caller adjust the command (user, environment).
    pub fn start_with(forwards_toml: &str, adjust: impl FnOnce(&mut Command) -> &mut Command) -> Exporter {
        Self::start_configured("", forwards_toml, adjust)
    }

    /// As [`Exporter::start`], with `POST /-/reload` served (`[web] enable_lifecycle = true`).
    pub fn start_with_lifecycle(forwards_toml: &str) -> Exporter {
        Self::start_configured("enable_lifecycle = true\n", forwards_toml, |command| command)
    }

    /// As [`Exporter::start_with`], with more keys for the `[web]` table (`web_extra`).
    pub fn start_configured(
        web_extra: &str,
        forwards_toml: &str,
        adjust: impl FnOnce(&mut Command) -> &mut Command,
    ) -> Exporter {
        let web = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut exporter = Self::launch(web, web_extra, forwards_toml, adjust);
        exporter.proc.wait_listening(web, Duration::from_secs(10));
        exporter
    }

    /// As [`Exporter::start_configured`] on the web address `web`, without waiting for it to listen (another
    /// process may hold it).
    pub fn launch(
        web: SocketAddr,
        web_extra: &str,
        forwards_toml: &str,
        adjust: impl FnOnce(&mut Command) -> &mut Command,
    ) -> Exporter {
        let config = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        fs::write(config.path(), format!("[web]\nlisten = \"{web}\"\n{web_extra}\n{forwards_toml}")).unwrap();
        fs::set_permissions(config.path(), fs::Permissions::from_mode(0o644)).unwrap();
        let mut command = Command::new(workspace_binary("openclaw-tunnel-exporter"));
        command.arg("--config").arg(config.path()).env("RUST_LOG", "info");
        let proc = Proc::spawn("exporter", adjust(&mut command));
        Exporter { proc, web, web_extra: web_extra.to_owned(), _config: config }
    }

    /// GET a path, with an optional Accept header; returns (content type, body).
    pub fn get(&self, path: &str, accept: Option<&str>) -> (String, String) {
        let mut request = ureq::get(format!("http://{}{path}", self.web));
        if let Some(accept) = accept {
            request = request.header("Accept", accept);
        }
        let mut response = request.call().unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let content_type =
            response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        (content_type, response.body_mut().read_to_string().unwrap())
    }

    /// Scrape /metrics in the 0.0.4 text format.
    pub fn scrape(&self) -> Scrape {
        Scrape::parse(&self.get("/metrics", None).1)
    }

    /// Scrape until `condition` holds, or panic after `timeout` with `what`, the last scrape and the log.
    pub fn wait_for(&self, what: &str, timeout: Duration, condition: impl Fn(&Scrape) -> bool) -> Scrape {
        let deadline = Instant::now() + timeout;
        loop {
            let scrape = self.scrape();
            if condition(&scrape) {
                return scrape;
            }
            if Instant::now() > deadline {
                let relevant: Vec<_> =
                    scrape.text.lines().filter(|l| !l.starts_with('#') && !l.contains("_bucket")).collect();
                panic!(
                    "timed out after {timeout:?} waiting for: {what}\n--- last scrape ---\n{}\n--- exporter log ---\n{}",
                    relevant.join("\n"),
                    self.proc.output()
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Replace the config file's `[[forward]]` tables (the web section stays), for reload tests.
    pub fn rewrite_config(&self, forwards_toml: &str) {
        let web = format!("[web]\nlisten = \"{}\"\n{}\n", self.web, self.web_extra);
        fs::write(self._config.path(), format!("{web}\n{forwards_toml}")).unwrap();
    }

    /// The status JSON.
    pub fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.get("/status.json", None).1).unwrap()
    }
}

/// A `[[forward]]` table named `name` on `local_port` with fast test intervals.
pub fn forward_toml(name: &str, local_port: u16) -> String {
    format!(
        "[[forward]]\nname = \"{name}\"\nlocal = \"127.0.0.1:{local_port}\"\nhealth_path = \"/healthz\"\n\
         syn_interval = \"200ms\"\nfirst_byte_interval = \"300ms\"\ntimeout = \"1s\"\n"
    )
}

/// The `trusted_owners` line for a forward whose port is held by `program` itself, not ssh (the gateway
/// stand-in answering on the forward's address; a test process serving it): the auth tap and the token
/// senders check the owner, as on a gateway host that trusts its `node`.
pub fn trusting(program: &str) -> String {
    format!("trusted_owners = [\"{program}\"]\n")
}

/// This process's command name (Linux `comm`), for [`trusting`] a listener the test itself holds.
pub fn own_comm() -> String {
    fs::read_to_string("/proc/self/comm").unwrap().trim().to_owned()
}

/// The `hash = "$argon2id$..."` registry line for `token`, from the exporter's own `fingerprint` command
/// (which must not echo the token).
pub fn fingerprint_line(token: &str) -> String {
    let output = run_with_stdin(&workspace_binary("openclaw-tunnel-exporter"), &["fingerprint"], token.as_bytes());
    assert!(output.status.success());
    let line = String::from_utf8(output.stdout).unwrap();
    assert!(!line.contains(token) && line.starts_with("hash = \"$argon2id$"), "{line}");
    line.trim().to_owned()
}
