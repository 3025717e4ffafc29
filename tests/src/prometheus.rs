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
        let proc = Proc::spawn("prometheus", &mut command);
        wait_listening(addr, "prometheus", Duration::from_secs(30));
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
        let answer = ureq::get(format!("http://{}/api/v1/query", self.addr))
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
        let proc = Proc::spawn(
            "alertmanager",
            Command::new(find_program("prometheus-alertmanager"))
                .arg(format!("--config.file={}", dir.path().join("alertmanager.yml").display()))
                .arg(format!("--storage.path={}", dir.path().join("data").display()))
                .arg(format!("--web.listen-address={addr}"))
                .arg(format!("--cluster.listen-address=127.0.0.1:{cluster}")),
        );
        wait_listening(addr, "alertmanager", Duration::from_secs(30));
        Alertmanager { proc, addr, _dir: dir }
    }
}
