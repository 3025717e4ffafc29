//! End to end against the REAL OpenClaw gateway (npm openclaw@2026.9.6 on Node 24, installed by
//! tests/install-openclaw.sh) behind a real ssh -L forward and the exporter's auth tap: the first byte
//! through the forward, requests by token revision over HTTP and WebSocket, a token rotation with its 4001
//! closes, the active auth probe and its back-off, and a canary: no token appears in any log line, metric,
//! status page or error output.
//!
//! One test function on purpose: the gateway takes ~5 s and ~700 MB to start, and writes to a fixed
//! /tmp/openclaw, so two must not run at once.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use e2e::*;

const T: Duration = Duration::from_secs(30);

fn invoke(addr: SocketAddr, token: Option<&str>) -> u16 {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut request = agent.post(format!("http://{addr}/tools/invoke")).header("Content-Type", "application/json");
    if let Some(token) = token {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    request.send("{}").unwrap().status().as_u16()
}

fn auth(scrape: &Scrape, kind: &str, channel: &str, code: Option<&str>, revision: &str) -> f64 {
    let series = match code {
        None => format!(
            "openclaw_gateway_auth_{kind}_total{{forward=\"mac\",channel=\"{channel}\",token_revision=\"{revision}\"}}"
        ),
        Some(code) => format!(
            "openclaw_gateway_auth_{kind}_total{{forward=\"mac\",channel=\"{channel}\",code=\"{code}\",token_revision=\"{revision}\"}}"
        ),
    };
    scrape.value(&series)
}

fn requests(scrape: &Scrape, channel: &str, revision: &str) -> f64 {
    auth(scrape, "requests", channel, None, revision)
}

fn failures(scrape: &Scrape, channel: &str, revision: &str) -> f64 {
    auth(scrape, "failures", channel, Some("401"), revision)
}

fn refusals(scrape: &Scrape, channel: &str, reason: &str) -> f64 {
    scrape.value(&format!(
        "openclaw_gateway_connect_refusals_total{{forward=\"mac\",channel=\"{channel}\",reason=\"{reason}\"}}"
    ))
}

#[test]
fn the_real_gateway_through_ssh_and_the_tap_by_token_revision_with_a_rotation() {
    let canary = format!("oce-canary-{}-{}", std::process::id(), Instant::now().elapsed().as_nanos());
    let (t1, t2, t_unknown) = (format!("{canary}-one"), format!("{canary}-two"), format!("{canary}-unknown"));

    let gateway = OpenclawGateway::start(&t1);
    let sshd = Sshd::start(gateway.addr.port());
    let forward_port = free_port();
    let _ssh = sshd.forward(forward_port, gateway.addr.port());
    let tap = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let state = tempfile::tempdir().unwrap();
    let token_file = state.path().join("gateway-token");
    std::fs::write(&token_file, &t1).unwrap();

    let (r1, r2) = (fingerprint_line(&t1), fingerprint_line(&t2));
    let config = |current: &str| {
        format!(
            "[[forward]]\nname = \"mac\"\nlocal = \"127.0.0.1:{forward_port}\"\nsyn_interval = \"200ms\"\n\
             first_byte_interval = \"500ms\"\nreadiness_interval = \"1s\"\nws_handshake_interval = \"5s\"\ntimeout = \"8s\"\n\n\
             [auth]\ncurrent = \"{current}\"\n[[auth.revision]]\nname = \"r1\"\n{r1}\n[[auth.revision]]\nname = \"r2\"\n{r2}\n\n\
             [[auth_tap]]\nforward = \"mac\"\nlisten = \"{tap}\"\nupstream = \"127.0.0.1:{forward_port}\"\n\n\
             [auth_probe]\nenabled = true\ninterval = \"2s\"\ntoken_file = \"{}\"\n",
            token_file.display()
        )
    };
    // A stand-in `openclaw` CLI first on PATH, as npm installs one: bin/openclaw a link into its package, whose
    // package.json says 2026.5.1 (read, never run), older than the real gateway's 2026.9.6.
    let cli = state.path().join("cli");
    let package = cli.join("lib/node_modules/openclaw");
    std::fs::create_dir_all(&package).unwrap();
    std::fs::write(
        package.join("package.json"),
        r#"{"name":"openclaw","version":"2026.5.1","bin":{"openclaw":"openclaw.mjs"}}"#,
    )
    .unwrap();
    std::fs::write(package.join("openclaw.mjs"), "#!/usr/bin/env node\nprocess.exit(99)\n").unwrap();
    std::fs::create_dir_all(cli.join("bin")).unwrap();
    std::os::unix::fs::symlink("../lib/node_modules/openclaw/openclaw.mjs", cli.join("bin/openclaw")).unwrap();
    let path = format!("{}:{}", cli.join("bin").display(), std::env::var("PATH").unwrap_or_default());
    let exporter = Exporter::start_with(&config("r1"), |command| {
        // The CLI's own sources of this machine must not leak in: an empty HOME, no token in the env.
        command
            .env("HOME", state.path())
            .env("PATH", &path)
            .env_remove("OPENCLAW_GATEWAY_TOKEN")
            .env_remove("OPENCLAW_CONFIG_PATH")
    });

    // The real gateway answers its first byte through the real forward.
    exporter.wait_for("the real gateway up through the forward", T, |m| {
        m.get("openclaw_gateway_up{forward=\"mac\"}") == Some(1.0)
            && m.get("openclaw_tunnel_ssh_session_up{forward=\"mac\"}") == Some(1.0)
    });

    // Through the forward the gateway counts the exporter as local: started, ready, its version and start time.
    let own = exporter.wait_for("the real gateway's own state through the forward", T, |m| {
        m.get("openclaw_gateway_startup_state{forward=\"mac\",state=\"started\"}") == Some(1.0)
            && m.get("openclaw_tunnel_gateway_build_info{forward=\"mac\",version=\"2026.9.6\"}") == Some(1.0)
            && m.get("openclaw_gateway_ready{forward=\"mac\"}").is_some()
    });
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let started_at = own.value("openclaw_gateway_start_time_seconds{forward=\"mac\"}");
    assert!((now - 600.0..=now).contains(&started_at), "start time {started_at}, now {now}");
    assert_eq!(own.get("openclaw_gateway_restarts_total{forward=\"mac\"}"), Some(0.0));
    // The CLI's own version beside it: the stand-in's package, found through the link on PATH.
    exporter.wait_for("the CLI's version", T, |m| m.get("openclaw_cli_build_info{version=\"2026.5.1\"}") == Some(1.0));
    // The real gateway's Control UI through the forward: GET / answers its HTML (the Control UI kind).
    exporter
        .wait_for("the real Control UI", T, |m| m.get("openclaw_gateway_control_ui_up{forward=\"mac\"}") == Some(1.0));

    // HTTP through the tap: current, unknown, none; a success between failures resets the gateway's delay.
    assert_eq!(invoke(tap, Some(&t1)), 400, "the right token is authenticated: 400 'requires name'");
    assert_eq!(invoke(tap, Some(&t_unknown)), 401);
    assert_eq!(invoke(tap, Some(&t1)), 400);
    assert_eq!(invoke(tap, None), 401);
    assert_eq!(invoke(tap, Some(&t1)), 400);

    // WebSocket through the tap: a session kept open across the rotation, an unknown token, no token.
    let (open, answer) = WsClient::connect(tap, Some(&t1));
    assert_eq!(answer, ConnectAnswer::Accepted);
    let (_refused, answer) = WsClient::connect(tap, Some(&t_unknown));
    assert_eq!(answer, ConnectAnswer::Refused("AUTH_TOKEN_MISMATCH".into()));
    let (_ok, answer) = WsClient::connect(tap, Some(&t1));
    assert_eq!(answer, ConnectAnswer::Accepted);
    let (_none, answer) = WsClient::connect(tap, None);
    let ConnectAnswer::Refused(no_token_code) = answer else { panic!("{answer:?}") };
    // Why the gateway refused, by its own reason: the wrong token, and whatever it says of none.
    let no_token_reason = match no_token_code.as_str() {
        "AUTH_TOKEN_MISSING" => "token_missing",
        "NOT_PAIRED" | "PAIRING_REQUIRED" | "DEVICE_IDENTITY_REQUIRED" => "pairing_required",
        other => panic!("the gateway refused no token with {other}: which reason is it?"),
    };
    exporter.wait_for("the CLI's refused connects by reason", T, |m| {
        refusals(m, "ws", "token_mismatch") >= 1.0 && refusals(m, "ws", no_token_reason) >= 1.0
    });

    let before = exporter.wait_for("tap and probe counts before the rotation", T, |m| {
        requests(m, "http", "r1") >= 3.0
            && requests(m, "http", "unknown") >= 1.0
            && requests(m, "http", "none") >= 1.0
            && failures(m, "http", "unknown") >= 1.0
            && failures(m, "http", "none") >= 1.0
            && requests(m, "ws", "r1") >= 2.0
            && failures(m, "ws", "unknown") >= 1.0
            && failures(m, "ws", "none") >= 1.0
            && requests(m, "probe", "r1") >= 1.0
            // The token sources' own watch reads within 2 s of start, at a phase of its own: the auth probe's
            // first round can come first (seen in CI, where the rest of this took under 2 s).
            && m.get("openclaw_gateway_token_sources_agree{forward=\"mac\"}").is_some()
    });
    assert_eq!(failures(&before, "http", "r1") + failures(&before, "ws", "r1") + failures(&before, "probe", "r1"), 0.0);
    assert!(
        before.value("openclaw_gateway_observed_first_byte_seconds_count{forward=\"mac\",channel=\"http\"}") >= 5.0
    );
    assert!(before.value("openclaw_gateway_observed_first_byte_seconds_count{forward=\"mac\",channel=\"ws\"}") >= 2.0);
    assert_eq!(before.get("openclaw_gateway_token_sources_agree{forward=\"mac\"}"), Some(1.0));

    // Rotate: the gateway closes every WebSocket with 4001.
    gateway.rotate(&t2);
    assert_eq!(open.wait_close(Duration::from_secs(20)), Some(4001));
    let rotated = exporter.wait_for("the 4001 close counted and the rotation time marked", T, |m| {
        m.value("openclaw_gateway_ws_closes_total{forward=\"mac\",code=\"4001\",by=\"gateway\"}") >= 1.0
            && m.value("openclaw_gateway_token_rotation_timestamp_seconds") > 0.0
    });

    // The old revision now fails, labelled with its name; the current one succeeds.
    assert_eq!(invoke(tap, Some(&t1)), 401);
    assert_eq!(invoke(tap, Some(&t2)), 400);
    let (_old, answer) = WsClient::connect(tap, Some(&t1));
    assert_eq!(answer, ConnectAnswer::Refused("AUTH_TOKEN_MISMATCH".into()));
    let (_new, answer) = WsClient::connect(tap, Some(&t2));
    assert_eq!(answer, ConnectAnswer::Accepted);
    let after = exporter.wait_for("old-revision 401s labelled r1, the probe too", T, |m| {
        failures(m, "http", "r1") >= 1.0
            && failures(m, "ws", "r1") >= 1.0
            && failures(m, "probe", "r1") >= 1.0
            && requests(m, "http", "r2") >= 1.0
            && requests(m, "ws", "r2") >= 1.0
    });
    for channel in ["http", "ws", "probe"] {
        assert_eq!(failures(&after, channel, "r2"), 0.0, "the current revision must not fail on {channel}");
    }
    // The handshake probe's connect with the old token is refused too, for the same reason; the status page,
    // /api/status and the doctor say what to do.
    exporter.wait_for("the handshake probe's refused connect", T, |m| refusals(m, "probe", "token_mismatch") >= 1.0);
    let api: serde_json::Value = serde_json::from_str(&exporter.get("/api/status", None).1).unwrap();
    let refusal = &api["forwards"][0]["last_refusal"];
    assert_eq!(refusal["reason"], "token_mismatch", "{refusal}");
    assert!(refusal["fix"].as_str().unwrap().contains("auth-token --show"), "{refusal}");
    let page = exporter.get("/", Some("text/html")).1;
    assert!(page.contains("Connect refused") && page.contains("token_mismatch") && page.contains("auth-token --show"));
    let doctor_config = state.path().join("doctor.toml");
    std::fs::write(
        &doctor_config,
        format!(
            "[[forward]]\nname = \"mac\"\nlocal = \"127.0.0.1:{forward_port}\"\ntimeout = \"8s\"\n\
             [auth_probe]\nenabled = true\ntoken_file = \"{}\"\n",
            token_file.display()
        ),
    )
    .unwrap();
    let doctor = std::process::Command::new(workspace_binary("openclaw-tunnel-exporter"))
        .args(["doctor", "--config"])
        .arg(&doctor_config)
        .env("HOME", state.path())
        .env("PATH", &path)
        .env_remove("OPENCLAW_GATEWAY_TOKEN")
        .env_remove("OPENCLAW_CONFIG_PATH")
        .output()
        .unwrap();
    let told = String::from_utf8_lossy(&doctor.stdout);
    assert_eq!(doctor.status.code(), Some(17), "{told}");
    // Step 5 names both versions and which to upgrade.
    assert!(
        told.contains("the openclaw CLI here is 2026.5.1")
            && told.contains("the gateway 2026.9.6")
            && told.contains("upgrade the CLI"),
        "{told}"
    );
    assert!(told.contains("refused: token_mismatch") && told.contains("auth-token --show"), "{told}");
    assert!(!told.contains(&canary), "the doctor printed a token");
    assert!(rotated.value("openclaw_gateway_ws_closes_total{forward=\"mac\",code=\"4001\",by=\"gateway\"}") >= 1.0);

    // The probe backs off after its 401: no more requests with the refused token...
    let backed_off = exporter.scrape();
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        requests(&exporter.scrape(), "probe", "r1"),
        requests(&backed_off, "probe", "r1"),
        "probe retried a refused token"
    );
    // ...until the token source changes.
    std::fs::write(&token_file, &t2).unwrap();
    exporter.wait_for("the probe accepted with the new token", T, |m| requests(m, "probe", "r2") >= 1.0);

    // A reload that makes r2 current.
    exporter.rewrite_config(&config("r2"));
    exporter.proc.signal(libc::SIGHUP);
    let reloaded = exporter.wait_for("r2 current after reload", T, |m| {
        m.get("openclaw_gateway_token_revision_current{token_revision=\"r2\"}") == Some(1.0)
    });
    assert_eq!(reloaded.get("openclaw_gateway_token_revision_current{token_revision=\"r1\"}"), Some(0.0));
    assert!(failures(&reloaded, "http", "r1") >= 1.0, "counters survive the reload");

    // The canary: no token, nor any part of one, anywhere the exporter writes.
    let openmetrics = exporter.get("/metrics", Some("application/openmetrics-text")).1;
    let status = exporter.get("/status.json", None).1;
    let log = exporter.proc.output();
    for (what, text) in
        [("0.0.4 metrics", &reloaded.text), ("OpenMetrics", &openmetrics), ("status.json", &status), ("log", &log)]
    {
        assert!(!text.contains(&canary), "a token leaked into the {what}");
    }
}

/// This exporter's metric family names, from its source: every `"openclaw_..."` string literal under
/// exporter/src (the families table, the build info, remote write's account).
fn our_family_names() -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let mut dirs = vec![std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../exporter/src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            for (at, _) in text.match_indices("\"openclaw_") {
                let rest = &text[at + 1..];
                let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
                if rest[end..].starts_with('"') {
                    names.insert(rest[..end].to_owned());
                }
            }
        }
    }
    names
}

#[test]
fn no_family_of_ours_shares_a_name_with_the_gateways_own_prometheus_plugin() {
    // The families the gateway's diagnostics-prometheus plugin publishes, from the installed gateway's docs.
    let doc = std::fs::read_to_string(openclaw_dir().join("node_modules/openclaw/docs/gateway/prometheus.md"))
        .expect("the real gateway is installed (tests/install-openclaw.sh)");
    let published: std::collections::BTreeSet<String> = doc
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("openclaw_"))
        .map(|word| word.trim_end_matches("_bucket").trim_end_matches("_count").trim_end_matches("_sum").to_owned())
        .collect();
    assert!(published.contains("openclaw_gateway_build_info") && published.len() > 20, "{published:?}");
    let ours = our_family_names();
    assert!(ours.contains("openclaw_tunnel_gateway_build_info") && ours.len() > 50, "{ours:?}");
    // What a family is exposed as: its name, and a counter's `_total`, a histogram's series.
    let exposed = |name: &str| {
        ["", "_total", "_bucket", "_count", "_sum", "_created", "_info"].map(|suffix| format!("{name}{suffix}"))
    };
    let shared: Vec<&String> =
        ours.iter().filter(|name| exposed(name).iter().any(|series| published.contains(series))).collect();
    // The deprecated alias, kept one release (README changelog), is the only one.
    assert_eq!(shared, ["openclaw_gateway_build_info"], "families sharing a name with the gateway's plugin");
}
