//! The Grafana dashboards against a real Prometheus that scraped a running exporter with live probes
//! (a real ssh forward, a model host, an auth tap with traffic, a gateway port): every panel query, every
//! annotation query and every template variable query, with the variables substituted, must parse and
//! return data. The JSON's structure is checked too: importable (a datasource input), unique panel ids.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use e2e::*;

fn dashboards() -> Vec<(PathBuf, serde_json::Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../dashboards");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        // The fleet dashboard reads what laptops push to a central store: it is checked against
        // VictoriaMetrics fed by remote write, in tests/tests/remote_write.rs.
        let fleet = path.file_name().is_some_and(|n| n.to_string_lossy().contains("fleet"));
        if path.extension().is_some_and(|e| e == "json") && !fleet {
            let json = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).expect("valid JSON");
            found.push((path, json));
        }
    }
    assert!(!found.is_empty());
    found
}

/// Every series a query selects by name carries `job=~"$job"` first, so a dashboard never mixes this
/// exporter's series with the gateway's own diagnostics-prometheus plugin (another job, some of the same
/// prefixes). Returns the selectors that do not.
fn selectors_without_the_job(query: &str) -> Vec<String> {
    let mut missing = Vec::new();
    let bytes = query.as_bytes();
    let mut at = 0;
    while let Some(found) = query[at..].find("openclaw") {
        let start = at + found;
        let name_end = start
            + query[start..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(query.len() - start);
        let preceded = start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || b"_:\"".contains(&bytes[start - 1]));
        if !preceded && !query[name_end..].starts_with("{job=~\"$job\"") {
            missing.push(query[start..name_end].to_owned());
        }
        at = name_end;
    }
    missing
}

#[test]
fn every_dashboard_selector_names_the_job() {
    assert_eq!(selectors_without_the_job("sum(openclaw_a{job=~\"$job\",x=\"1\"}) / openclaw_b"), ["openclaw_b"]);
    for (path, dashboard) in dashboards() {
        let mut checked = 0;
        let mut strings = vec![&dashboard];
        while let Some(value) = strings.pop() {
            match value {
                serde_json::Value::Object(map) => {
                    for (key, value) in map {
                        match (key.as_str(), value.as_str()) {
                            ("expr" | "definition", Some(query)) if !query.contains(", job)") => {
                                let missing = selectors_without_the_job(query);
                                assert!(missing.is_empty(), "{}: {missing:?} in {query}", path.display());
                                checked += 1;
                            }
                            _ => strings.push(value),
                        }
                    }
                }
                serde_json::Value::Array(items) => strings.extend(items),
                _ => {}
            }
        }
        assert!(checked > 5, "{}: {checked} queries", path.display());
    }
}

fn substitute(query: &str) -> String {
    query
        .replace("$__rate_interval", "30s")
        .replace("$__interval", "15s")
        .replace("$__range", "1h")
        .replace("$forward", "t|s")
        .replace("$laptop", "lap")
        .replace("$model_host", "m")
        .replace("$gateway", "g")
        .replace("$job", "openclaw-tunnel")
}

#[test]
fn every_dashboard_query_returns_data_from_a_live_exporter() {
    let gateway = Gateway::start_with(
        free_port(),
        Duration::from_millis(2),
        &["--token", "tok-dash", "--readiness", "2026.9.6-standin"],
    );
    let sshd = Sshd::start(gateway.addr.port());
    let local_port = free_port();
    let _ssh = sshd.forward(local_port, gateway.addr.port());
    // A second road: wss:// to the same gateway through a TLS front (stunnel) with a pinned certificate, so the
    // panels of a direct route (its certificate, its handshake, "no ssh on this route") have data too.
    let pki = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let certificate = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap().self_signed(&key).unwrap();
    let (cert_file, key_file, conf) =
        (pki.path().join("front.pem"), pki.path().join("front.key"), pki.path().join("front.conf"));
    std::fs::write(&cert_file, certificate.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    let front = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    std::fs::write(
        &conf,
        format!(
            "foreground = yes\npid =\n[front]\naccept = {front}\nconnect = {}\ncert = {}\nkey = {}\n",
            gateway.addr,
            cert_file.display(),
            key_file.display()
        ),
    )
    .unwrap();
    let mut stunnel = Proc::spawn("stunnel", std::process::Command::new(find_program("stunnel4")).arg(&conf));
    stunnel.wait_listening(front, Duration::from_secs(10));
    let pin = probes::route::Fingerprint::of(certificate.der());
    let wss = format!(
        "[[forward]]\nname = \"s\"\nurl = \"wss://{front}\"\ntls_fingerprint = \"{pin}\"\nsyn_interval = \"200ms\"\n\
         first_byte_interval = \"300ms\"\ntimeout = \"1s\"\n"
    );
    let tap = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let token = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(token.path(), "tok-dash").unwrap();
    let config = |auth: &str| {
        format!(
            "{}{auth}\
         [[auth_tap]]\nforward = \"t\"\nlisten = \"{tap}\"\nupstream = \"127.0.0.1:{local_port}\"\n\
         [auth_probe]\nenabled = true\ninterval = \"1s\"\ntoken_file = \"{}\"\n\
         [[model_host]]\nname = \"m\"\nurl = \"http://127.0.0.1:{}/healthz\"\ninterval = \"300ms\"\ntimeout = \"1s\"\n\
         [[gateway]]\nname = \"g\"\nport = {}\ninterval = \"500ms\"\n",
            forward_toml("t", local_port) + "readiness_interval = \"1s\"\nws_handshake_interval = \"1s\"\n" + &wss,
            token.path().display(),
            gateway.addr.port(),
            gateway.addr.port()
        )
    };
    let before_rotation =
        "[auth]\ncurrent = \"r1\"\n[[auth.revision]]\nname = \"r1\"\nsha256 = \"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\"\n";
    let exporter = Exporter::start_with_lifecycle(&config(before_rotation));
    let prometheus = Prometheus::start(
        &format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: openclaw-tunnel\n    static_configs:\n      - targets: ['{}']\n        labels:\n          laptop: lap\n",
            exporter.web
        ),
        &[],
        &[],
    );
    // Real traffic through the tap, spread over the scrapes, so rates and quantiles have data.
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(12) {
        let _ = agent.get(format!("http://{tap}/healthz")).call();
        let _ = agent.post(format!("http://{tap}/tools/invoke")).header("Authorization", "Bearer wrong").send("{}");
        std::thread::sleep(Duration::from_millis(500));
    }

    // A real rotation, as configuration management does it: r2 becomes current with its rotation time.
    let annotations: Vec<(String, String)> = dashboards()
        .iter()
        .flat_map(|(_, dashboard)| dashboard["annotations"]["list"].as_array().cloned().unwrap_or_default())
        .map(|a| (a["name"].as_str().unwrap().to_owned(), substitute(a["expr"].as_str().unwrap())))
        .collect();
    assert!(annotations.iter().any(|(name, _)| name == "Token rotation"), "{annotations:?}");
    let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let rotated_at = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    let rotated =
        before_rotation.replace("current = \"r1\"", &format!("current = \"r2\"\nrotated_at = \"{rotated_at}\""));
    exporter.rewrite_config(&config(&format!(
        "{rotated}[[auth.revision]]\nname = \"r2\"\n{}\n",
        fingerprint_line("tok-dash")
    )));
    let reloaded = ureq::post(format!("http://{}/-/reload", exporter.web))
        .config()
        .http_status_as_error(false)
        .build()
        .send_empty()
        .unwrap();
    let status = reloaded.status();
    assert!(status.is_success(), "{status}: {}", reloaded.into_body().read_to_string().unwrap());
    for (name, expr) in &annotations {
        let deadline = Instant::now() + Duration::from_secs(30);
        while prometheus.query(expr).is_empty() {
            assert!(Instant::now() < deadline, "annotation {name} never marked the rotation:\n  {expr}");
            std::thread::sleep(Duration::from_millis(250));
        }
        // ... and marked nothing before it.
        let earlier = prometheus.query_at(expr, before - 1.0);
        assert!(earlier.is_empty(), "annotation {name} marked a rotation before there was one: {earlier:?}");
    }

    for (path, dashboard) in dashboards() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(dashboard["__inputs"][0]["pluginId"], "prometheus", "{name}: no datasource input to import with");
        let panels = dashboard["panels"].as_array().unwrap();
        let mut ids = std::collections::HashSet::new();
        let mut queries = Vec::new();
        for panel in panels {
            assert!(ids.insert(panel["id"].as_u64().expect("panel id")), "{name}: duplicate panel id");
            assert!(panel["gridPos"]["w"].as_u64().is_some() && panel["type"].is_string(), "{name}: {panel}");
            for target in panel["targets"].as_array().into_iter().flatten() {
                assert_eq!(target["datasource"]["uid"], "${DS_PROMETHEUS}", "{name}: {}", panel["title"]);
                queries.push((
                    panel["title"].as_str().unwrap_or("?").to_owned(),
                    target["expr"].as_str().unwrap().to_owned(),
                ));
            }
        }
        for annotation in dashboard["annotations"]["list"].as_array().into_iter().flatten() {
            queries
                .push((format!("annotation {}", annotation["name"]), annotation["expr"].as_str().unwrap().to_owned()));
        }
        // A series born at the rotation's reload (old-revision failures at zero) needs two scrapes before a
        // rate over it has a value: wait for that, not for a fixed time.
        let deadline = Instant::now() + Duration::from_secs(30);
        for (title, query) in &queries {
            let query = substitute(query);
            while prometheus.query(&query).is_empty() {
                assert!(Instant::now() < deadline, "{name}: panel {title:?}: no data for\n  {query}");
                std::thread::sleep(Duration::from_millis(250));
            }
        }
        for variable in dashboard["templating"]["list"].as_array().into_iter().flatten() {
            let Some(definition) = variable["definition"].as_str() else { continue };
            let inner = definition
                .strip_prefix("label_values(")
                .and_then(|d| d.strip_suffix(')'))
                .expect("label_values(metric, label)");
            let (metric, label) = inner.rsplit_once(',').unwrap();
            let answer = ureq::get(format!("http://{}/api/v1/label/{}/values", prometheus.addr, label.trim()))
                .query("match[]", substitute(metric.trim()))
                .call()
                .unwrap()
                .body_mut()
                .read_to_string()
                .unwrap();
            let values: serde_json::Value = serde_json::from_str(&answer).unwrap();
            assert!(!values["data"].as_array().unwrap().is_empty(), "{name}: variable {definition} has no values");
        }
        eprintln!(
            "{name}: {} panel queries and {} variables returned data",
            queries.len(),
            dashboard["templating"]["list"].as_array().map_or(0, |l| l.len())
        );
    }
}
