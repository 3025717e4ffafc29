//! Real Prometheus and Alertmanager servers (Debian's).

use super::*;

/// The version line a Debian tool prints, for the test log.
pub fn version_of(program: &str) -> String {
    let output = Command::new(find_program(program)).arg("--version").output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    text.lines().next().unwrap_or_default().to_owned()
}

/// A real Prometheus server (Debian's) with its own data directory on a free port.
pub struct Prometheus {
    /// The process.
    pub proc: Proc,
    /// Its HTTP address.
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Start with `config_yaml` (and files it references written beside it by the caller), extra flags.
    pub fn start(config_yaml: &str, files: &[(&str, String)], flags: &[&str]) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("prometheus.yml"), config_yaml).unwrap();
        for (name, text) in files {
            fs::write(dir.path().join(name), text).unwrap();
        }
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let agent = flags.contains(&"--enable-feature=agent");
        let mut command = Command::new(find_program("prometheus"));
        command
            .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
            .arg(format!("--web.listen-address={addr}"))
            .args(flags)
            .current_dir(dir.path());
        let storage = if agent { "--storage.agent.path" } else { "--storage.tsdb.path" };
        command.arg(format!("{storage}={}", dir.path().join("data").display()));
        let mut proc = Proc::spawn("prometheus", &mut command);
        proc.wait_listening(addr, Duration::from_secs(30));
        Prometheus { proc, addr, _dir: dir }
    }

    /// Run an instant query; returns the `data.result` array.
    pub fn query(&self, query: &str) -> Vec<serde_json::Value> {
        self.query_with(query, &[])
    }

    /// As [`Prometheus::query`], evaluated at `unix_seconds`.
    pub fn query_at(&self, query: &str, unix_seconds: f64) -> Vec<serde_json::Value> {
        self.query_with(query, &[("time", unix_seconds.to_string())])
    }

    fn query_with(&self, query: &str, extra: &[(&str, String)]) -> Vec<serde_json::Value> {
        instant_query(self.addr, query, extra)
    }
}

/// `GET /api/v1/query` (Prometheus's API, which VictoriaMetrics speaks too) with `extra` parameters; returns
/// `data.result`, empty when the server does not answer.
fn instant_query(addr: SocketAddr, query: &str, extra: &[(&str, String)]) -> Vec<serde_json::Value> {
    let answer = ureq::get(format!("http://{addr}/api/v1/query"))
        .query("query", query)
        .query_pairs(extra.iter().map(|(k, v)| (*k, v.as_str())))
        .call()
        .ok()
        .and_then(|mut r| r.body_mut().read_to_string().ok())
        .unwrap_or_default();
    serde_json::from_str::<serde_json::Value>(&answer)
        .ok()
        .and_then(|v| v["data"]["result"].as_array().cloned())
        .unwrap_or_default()
}

/// A real Alertmanager (Debian's prometheus-alertmanager) routing everything to one webhook.
pub struct Alertmanager {
    /// The process.
    pub proc: Proc,
    /// Its HTTP address.
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Alertmanager {
    /// Start with a route that sends every alert (and its resolution) to `webhook` within about a second.
    pub fn start(webhook: &str) -> Alertmanager {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "route:\n  receiver: hook\n  group_by: ['alertname', 'forward']\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n\
             receivers:\n  - name: hook\n    webhook_configs:\n      - url: '{webhook}'\n        send_resolved: true\n"
        );
        fs::write(dir.path().join("alertmanager.yml"), config).unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let cluster = free_port();
        let mut proc = Proc::spawn(
            "alertmanager",
            Command::new(find_program("prometheus-alertmanager"))
                .arg(format!("--config.file={}", dir.path().join("alertmanager.yml").display()))
                .arg(format!("--storage.path={}", dir.path().join("data").display()))
                .arg(format!("--web.listen-address={addr}"))
                .arg(format!("--cluster.listen-address=127.0.0.1:{cluster}")),
        );
        proc.wait_listening(addr, Duration::from_secs(30));
        Alertmanager { proc, addr, _dir: dir }
    }
}

/// A remote-write receiver: VictoriaMetrics or Prometheus 2.42 (both Debian's), restartable on the same port
/// and data directory, as a receiver that goes away and comes back does.
pub struct Receiver {
    /// Which engine.
    pub engine: Engine,
    /// Its HTTP address.
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
    proc: Option<Proc>,
    /// Output of the runs stopped so far.
    previous_output: String,
}

/// A remote-write engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// `victoria-metrics` (single node).
    VictoriaMetrics,
    /// `prometheus --web.enable-remote-write-receiver`, with an out-of-order window for late batches.
    Prometheus,
    /// The same with `--enable-feature=native-histograms`: it stores native histograms (remote write 1.0's
    /// `histograms` field; Debian's 2.42 reads no 2.0).
    PrometheusNativeHistograms,
}

impl Receiver {
    /// Start `engine` on a free port with an empty data directory, and wait until it is ready.
    pub fn start(engine: Engine) -> Receiver {
        let mut receiver = Receiver {
            engine,
            addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
            dir: tempfile::tempdir().unwrap(),
            proc: None,
            previous_output: String::new(),
        };
        receiver.run();
        receiver
    }

    fn run(&mut self) {
        let dir = self.dir.path();
        let mut command = match self.engine {
            Engine::VictoriaMetrics => {
                let mut command = Command::new(find_program("victoria-metrics"));
                command
                    .arg(format!("-storageDataPath={}", dir.join("data").display()))
                    .arg(format!("-httpListenAddr={}", self.addr))
                    .arg("-retentionPeriod=100y")
                    // Queries about the last seconds must see them (the default hides the last 30 s).
                    .arg("-search.latencyOffset=0s")
                    .arg("-search.disableCache");
                command
            }
            Engine::Prometheus | Engine::PrometheusNativeHistograms => {
                // Late batches (a laptop back online) arrive behind newer samples of other series: the
                // out-of-order window takes them.
                fs::write(
                    dir.join("prometheus.yml"),
                    "global: {}\nstorage:\n  tsdb:\n    out_of_order_time_window: 2h\n",
                )
                .unwrap();
                let mut command = Command::new(find_program("prometheus"));
                command
                    .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
                    .arg(format!("--web.listen-address={}", self.addr))
                    .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
                    .arg("--web.enable-remote-write-receiver");
                if self.engine == Engine::PrometheusNativeHistograms {
                    command.arg("--enable-feature=native-histograms");
                }
                command
            }
        };
        let name = format!("{:?}", self.engine);
        self.proc = Some(Proc::spawn(&name, command.current_dir(dir)));
        let ready = match self.engine {
            Engine::VictoriaMetrics => "/health",
            Engine::Prometheus | Engine::PrometheusNativeHistograms => "/-/ready",
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while ureq::get(format!("http://{}{ready}", self.addr)).call().is_err() {
            assert!(Instant::now() < deadline, "{name} did not become ready:\n{}", self.output());
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stop it (SIGTERM, as a service manager does) and wait for it to exit.
    pub fn stop(&mut self) {
        let mut proc = self.proc.take().expect("running");
        proc.signal(libc::SIGTERM);
        assert!(proc.wait_exit(Duration::from_secs(60)).is_some(), "{:?} did not stop", self.engine);
        self.previous_output.push_str(&proc.output());
    }

    /// Start it again on the same port and data.
    pub fn restart(&mut self) {
        self.run();
    }

    /// The remote-write URL.
    pub fn write_url(&self) -> String {
        format!("http://{}/api/v1/write", self.addr)
    }

    /// Everything it printed.
    pub fn output(&self) -> String {
        format!("{}{}", self.previous_output, self.proc.as_ref().map(Proc::output).unwrap_or_default())
    }

    /// An instant query now; returns `data.result`.
    pub fn query(&self, query: &str) -> Vec<serde_json::Value> {
        instant_query(self.addr, query, &[])
    }

    /// Whether the first series `selector` names is stored as a native histogram (its instant value is a
    /// `histogram`, not a float).
    pub fn stores_native(&self, selector: &str) -> bool {
        self.query(selector).first().is_some_and(|series| series.get("histogram").is_some())
    }

    /// The raw samples of `selector` (one series) in `[from, to]`, Unix seconds: `selector[range]` at `to`.
    pub fn raw_samples(&self, selector: &str, from: f64, to: f64) -> Vec<(f64, f64)> {
        let range = (to - from).ceil() as u64;
        let answer = ureq::get(format!("http://{}/api/v1/query", self.addr))
            .query("query", format!("{selector}[{range}s]"))
            .query("time", to.to_string())
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_to_string().ok())
            .unwrap_or_default();
        let value: serde_json::Value = serde_json::from_str(&answer).unwrap_or_default();
        let result = value["data"]["result"].as_array().cloned().unwrap_or_default();
        assert!(result.len() <= 1, "{selector} names more than one series: {answer}");
        result
            .first()
            .and_then(|series| series["values"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .map(|pair| (pair[0].as_f64().unwrap(), pair[1].as_str().unwrap().parse::<f64>().unwrap()))
            .collect()
    }
}

/// The fleet dashboard, which reads what laptops push to a central store.
pub fn fleet_dashboard() -> serde_json::Value {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../dashboards/openclaw-fleet.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A dashboard's panel queries, as (panel title, query), its variables unsubstituted.
pub fn panel_queries(dashboard: &serde_json::Value) -> Vec<(String, String)> {
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            queries.push((panel["title"].to_string(), target["expr"].as_str().unwrap().to_owned()));
        }
    }
    queries
}
