//! TLS and basic auth on the metrics listener from an exporter-toolkit web config file, checked with real
//! clients: curl, and a real Prometheus scraping over HTTPS with basic auth. Certificates come from the
//! openssl CLI and the bcrypt hash from htpasswd, as a user would make them.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::*;

const PASSWORD: &str = "correct-horse-9f2";

/// A CA, a server certificate for 127.0.0.1 signed by it, and a web config with TLS and user `prom`.
fn write_web_config(dir: &Path, password: &str) {
    make_ca(dir);
    issue_cert(dir, "server", "/CN=exporter", "subjectAltName=IP:127.0.0.1");
    write_users(dir, password);
}

fn write_users(dir: &Path, password: &str) {
    let line = run_tool("htpasswd", &["-nbBC", "10", "prom", password], dir);
    let hash = line.trim().trim_start_matches("prom:");
    fs::write(
        dir.join("web.yml"),
        format!(
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  min_version: TLS12\n\
             basic_auth_users:\n  prom: '{hash}'\n"
        ),
    )
    .unwrap();
}

/// `curl` against the exporter: (exit code, HTTP status or 0).
fn curl(url: &str, extra: &[&str], dir: &Path) -> (i32, u16) {
    let output = Command::new(find_program("curl"))
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10"])
        .args(extra)
        .arg(url)
        .current_dir(dir)
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&output.stdout).trim().parse().unwrap_or(0);
    (output.status.code().unwrap_or(-1), status)
}

/// A TLS + basic-auth exporter on a fresh web config: (its directory, the gateway, the exporter, its https
/// /metrics URL). The directory holds ca.pem for clients.
fn start_tls() -> (tempfile::TempDir, Gateway, Exporter, String) {
    let dir = tempfile::tempdir().unwrap();
    write_web_config(dir.path(), PASSWORD);
    let gateway = Gateway::start(free_port(), Duration::ZERO);
    let web_extra = format!("config_file = \"{}\"\n", dir.path().join("web.yml").display());
    let forwards =
        format!("{}\n[auth_probe]\nenabled = false\ninterval = \"1m\"\n", forward_toml("t", gateway.addr.port()));
    let exporter = Exporter::start_configured(&web_extra, &forwards, |command| command);
    let https = format!("https://{}/metrics", exporter.web);
    (dir, gateway, exporter, https)
}

#[test]
fn curl_and_prometheus_scrape_over_tls_with_basic_auth() {
    let (dir, _gateway, exporter, https) = start_tls();
    let user = format!("prom:{PASSWORD}");

    // Clients stalled before their TLS handshake hold no one else: handshakes run in their own tasks.
    let stalled: Vec<_> = (0..100).map(|_| std::net::TcpStream::connect(exporter.web).unwrap()).collect();
    assert_eq!(curl(&https, &["--cacert", "ca.pem", "-u", &user], dir.path()), (0, 200));
    drop(stalled);
    assert_eq!(curl(&https, &["--cacert", "ca.pem"], dir.path()), (0, 401), "no credentials");
    assert_eq!(curl(&https, &["--cacert", "ca.pem", "-u", "prom:wrong"], dir.path()), (0, 401), "wrong password");
    assert_eq!(curl(&https, &["--cacert", "ca.pem", "-u", &format!("other:{PASSWORD}")], dir.path()), (0, 401));
    // Every path is protected, not only /metrics.
    let status = format!("https://{}/api/status", exporter.web);
    assert_eq!(curl(&status, &["--cacert", "ca.pem"], dir.path()), (0, 401));
    // curl's code 60: the certificate is not trusted without the CA. Plain HTTP gets no HTTP answer.
    assert_eq!(curl(&https, &["-u", &user], dir.path()).0, 60);
    assert_ne!(curl(&format!("http://{}/metrics", exporter.web), &["-u", &user], dir.path()).1, 200);

    // A real Prometheus: the right password scrapes (up 1), a wrong one is refused (up 0).
    let job = |name: &str, password: &str| {
        format!(
            "  - job_name: {name}\n    scheme: https\n    tls_config:\n      ca_file: {}\n    basic_auth:\n      \
             username: prom\n      password: '{password}'\n    static_configs:\n      - targets: ['{}']\n",
            dir.path().join("ca.pem").display(),
            exporter.web
        )
    };
    let prometheus = Prometheus::start(
        &format!("global:\n  scrape_interval: 1s\nscrape_configs:\n{}{}", job("right", PASSWORD), job("wrong", "nope")),
        &[],
        &[],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let right = prometheus.query("up{job=\"right\"} == 1");
        let wrong = prometheus.query("up{job=\"wrong\"} == 0");
        let stored = prometheus.query("openclaw_tunnel_up_checks_total{job=\"right\",forward=\"t\"}");
        if !right.is_empty() && !wrong.is_empty() && !stored.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "Prometheus: right {right:?} wrong {wrong:?}\n{}", prometheus.proc.output());
        std::thread::sleep(Duration::from_millis(500));
    }
    let log = exporter.proc.output();
    assert!(!log.contains(PASSWORD), "the password reached the log");
}

#[test]
fn users_and_certificates_reload_and_a_bad_web_config_keeps_the_old_one() {
    let (dir, _gateway, exporter, https) = start_tls();
    let with = |password: &str| curl(&https, &["--cacert", "ca.pem", "-u", &format!("prom:{password}")], dir.path());
    assert_eq!(with(PASSWORD), (0, 200));

    write_users(dir.path(), "rotated-password-2");
    exporter.proc.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while with("rotated-password-2") != (0, 200) {
        assert!(Instant::now() < deadline, "the new password never worked:\n{}", exporter.proc.output());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(with(PASSWORD), (0, 401), "the old password still works after the reload");

    // A web config naming a missing key file: the reload fails, is counted, and the running one stays.
    let good = fs::read_to_string(dir.path().join("web.yml")).unwrap();
    fs::write(dir.path().join("web.yml"), good.replace("server.key", "missing.key")).unwrap();
    exporter.proc.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !exporter.proc.output().contains("missing.key") {
        assert!(Instant::now() < deadline, "the failed reload was not logged:\n{}", exporter.proc.output());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(with("rotated-password-2"), (0, 200));
    let output = Command::new(find_program("curl"))
        .args(["-s", "--cacert", "ca.pem", "-u", "prom:rotated-password-2", &https])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let scrape = Scrape::parse(&String::from_utf8_lossy(&output.stdout));
    assert_eq!(scrape.value("openclaw_exporter_config_reloads_total{result=\"failure\"}"), 1.0);
    assert!(exporter.proc.output().contains("tls_server_config.key_file"), "{}", exporter.proc.output());
}

#[test]
fn a_client_certificate_is_required_when_the_web_config_asks_for_one() {
    let (dir, _gateway, exporter, https) = start_tls();
    issue_cert(dir.path(), "client", "/CN=prometheus", "extendedKeyUsage=clientAuth");
    // Same listener, now verifying clients against the CA (certificates reload without a restart).
    fs::write(
        dir.path().join("web.yml"),
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  \
         client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n",
    )
    .unwrap();
    exporter.proc.signal(libc::SIGHUP);
    let with_cert = ["--cacert", "ca.pem", "--cert", "client.pem", "--key", "client.key"];
    let deadline = Instant::now() + Duration::from_secs(10);
    while curl(&https, &["--cacert", "ca.pem"], dir.path()).1 == 200 || curl(&https, &with_cert, dir.path()) != (0, 200)
    {
        assert!(Instant::now() < deadline, "client certificates were not required:\n{}", exporter.proc.output());
        std::thread::sleep(Duration::from_millis(100));
    }
    // Without a certificate the handshake fails: no HTTP status at all.
    let (code, status) = curl(&https, &["--cacert", "ca.pem"], dir.path());
    assert!(code != 0 && status == 0, "curl without a client certificate: exit {code}, status {status}");
}

/// The serial of the certificate the exporter serves, as `openssl s_client` sees it.
fn served_serial(addr: std::net::SocketAddr, dir: &Path) -> String {
    let shown = Command::new(find_program("openssl"))
        .args(["s_client", "-connect", &addr.to_string(), "-CAfile", "ca.pem"])
        .stdin(std::process::Stdio::null())
        .current_dir(dir)
        .output()
        .unwrap();
    let pem = String::from_utf8_lossy(&shown.stdout).into_owned();
    let mut x509 = Command::new(find_program("openssl"))
        .args(["x509", "-noout", "-serial"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(x509.stdin.as_mut().unwrap(), pem.as_bytes()).unwrap();
    let output = x509.wait_with_output().unwrap();
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// A renewed certificate at the same path (the web config file itself unchanged), then SIGHUP: the new
/// certificate is served, as `openssl s_client` sees by its serial.
#[test]
fn a_renewed_certificate_is_served_after_sighup() {
    let (dir, _gateway, exporter, _https) = start_tls();
    let before = served_serial(exporter.web, dir.path());
    assert!(before.starts_with("serial="), "{before}");
    issue_cert(dir.path(), "server", "/CN=exporter renewed", "subjectAltName=IP:127.0.0.1");
    exporter.proc.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = served_serial(exporter.web, dir.path());
        if now != before && now.starts_with("serial=") {
            break;
        }
        assert!(Instant::now() < deadline, "still serving {before} after SIGHUP:\n{}", exporter.proc.output());
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn check_config_names_the_web_config_file_key_and_value() {
    let dir = tempfile::tempdir().unwrap();
    let web_yml = dir.path().join("web.yml");
    fs::write(&web_yml, "tls_server_config:\n  cert_file: nowhere.pem\n  key_file: k.pem\n").unwrap();
    let config = dir.path().join("config.toml");
    fs::write(&config, format!("[web]\nconfig_file = \"{}\"\n", web_yml.display())).unwrap();
    let output = Command::new(workspace_binary("openclaw-tunnel-exporter"))
        .args(["--config", config.to_str().unwrap(), "check-config"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains(&format!("{}: key `web.config_file`", config.display())), "{stderr}");
    assert!(
        stderr.contains(&format!("{}: key `tls_server_config.cert_file` = \"nowhere.pem\"", web_yml.display())),
        "{stderr}"
    );
}
