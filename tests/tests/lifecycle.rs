//! The exporter as a process: clean shutdown on SIGTERM and SIGINT, a hanging target that blocks neither
//! other probes nor scrapes, and live reload that keeps the old config on bad input.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use e2e::*;

const T: Duration = Duration::from_secs(20);

#[test]
fn sigterm_and_sigint_stop_the_exporter_cleanly() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let gateway = Gateway::start(free_port(), Duration::ZERO);
        let mut exporter = Exporter::start_with_lifecycle(&forward_toml("t", gateway.addr.port()));
        exporter.wait_for("a first probe", T, |m| m.value("openclaw_tunnel_up_checks_total{forward=\"t\"}") >= 1.0);
        exporter.proc.signal(signal);
        let status = exporter.proc.wait_exit(Duration::from_secs(5)).expect("exits within 5 s");
        assert!(status.success(), "signal {signal}: {status:?}\n{}", exporter.proc.output());
        assert!(exporter.proc.output().contains("stopped"), "{}", exporter.proc.output());
    }
}

#[test]
fn a_target_that_never_answers_blocks_neither_other_probes_nor_scrapes() {
    // The kernel completes the handshake from the backlog; nothing ever reads or answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let gateway = Gateway::start(free_port(), Duration::ZERO);
    let forwards = format!(
        "{}{}",
        forward_toml("t", gateway.addr.port()),
        forward_toml("hang", silent.local_addr().unwrap().port())
    );
    let exporter = Exporter::start_with_lifecycle(&forwards);
    let before = exporter.wait_for("the hanging target times out", T, |m| {
        m.value("openclaw_gateway_probe_failures_total{forward=\"hang\",reason=\"timeout\"}") >= 1.0
    });
    // The timeout is 1 s; in that time the healthy forward's 300 ms probes carry on, and a scrape is quick.
    let started = Instant::now();
    let scrape = exporter.wait_for("the healthy forward keeps probing", T, |m| {
        m.value("openclaw_gateway_first_byte_seconds_count{forward=\"t\"}")
            >= before.value("openclaw_gateway_first_byte_seconds_count{forward=\"t\"}") + 6.0
    });
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(scrape.get("openclaw_gateway_up{forward=\"t\"}"), Some(1.0));
    let scrape_started = Instant::now();
    exporter.scrape();
    assert!(scrape_started.elapsed() < Duration::from_secs(1), "a scrape waited on a probe");
}

#[test]
fn a_bad_reload_keeps_the_running_config_a_good_one_keeps_the_counters_and_a_removed_forward_goes() {
    let gateway = Gateway::start(free_port(), Duration::ZERO);
    let port = gateway.addr.port();
    let exporter = Exporter::start_with_lifecycle(&forward_toml("t", port));
    let before =
        exporter.wait_for("probes running", T, |m| m.value("openclaw_tunnel_up_checks_total{forward=\"t\"}") >= 3.0);

    // A bad edit of the file is noticed by itself (no signal), rejected, counted, and the old config runs on.
    exporter.rewrite_config(&forward_toml("t", port).replace("timeout = \"1s\"", "timeout = \"forever\""));
    exporter.wait_for("the failed reload counted and probes still running", T, |m| {
        m.get("openclaw_exporter_config_reloads_total{result=\"failure\"}") == Some(1.0)
            && m.value("openclaw_tunnel_up_checks_total{forward=\"t\"}")
                >= before.value("openclaw_tunnel_up_checks_total{forward=\"t\"}") + 5.0
    });
    assert!(exporter.proc.output().contains("forward[0].timeout"), "{}", exporter.proc.output());
    // SIGHUP reloads even an unchanged file: the same bad file fails again.
    exporter.proc.signal(libc::SIGHUP);
    exporter.wait_for("SIGHUP reloaded and failed again", T, |m| {
        m.get("openclaw_exporter_config_reloads_total{result=\"failure\"}") == Some(2.0)
    });

    // A good edit adds a forward; the running forward's counters carry on.
    exporter.rewrite_config(&format!("{}{}", forward_toml("t", port), forward_toml("second", port)));
    let after = exporter.wait_for("the new forward probed", T, |m| {
        m.value("openclaw_tunnel_up_checks_total{forward=\"second\"}") >= 1.0
    });
    assert_eq!(after.get("openclaw_exporter_config_reloads_total{result=\"success\"}"), Some(1.0));
    assert!(
        after.value("openclaw_tunnel_up_checks_total{forward=\"t\"}")
            >= before.value("openclaw_tunnel_up_checks_total{forward=\"t\"}"),
        "counters survive a reload"
    );
    // Removing it removes every series it had and its status; brought back, it starts from zero.
    let grown = exporter.wait_for("the new forward probed ten times", T, |m| {
        m.value("openclaw_tunnel_up_checks_total{forward=\"second\"}") >= 10.0
    });
    exporter.rewrite_config(&forward_toml("t", port));
    let removed = exporter.wait_for("the removed forward's series gone", T, |m| {
        !m.text.contains("forward=\"second\"")
            && m.get("openclaw_exporter_config_reloads_total{result=\"success\"}") == Some(2.0)
    });
    assert!(removed.value("openclaw_tunnel_up_checks_total{forward=\"t\"}") > 0.0, "the kept forward's series stay");
    let status = exporter.status();
    let forwards = status["forwards"].as_array().expect("forwards in the status");
    assert!(forwards.iter().all(|f| f["forward"] != "second"), "the status still shows the removed forward: {status}");
    exporter.rewrite_config(&format!("{}{}", forward_toml("t", port), forward_toml("second", port)));
    let back = exporter.wait_for("the forward back", T, |m| {
        m.get("openclaw_exporter_config_reloads_total{result=\"success\"}") == Some(3.0)
            && m.value("openclaw_tunnel_up_checks_total{forward=\"second\"}") >= 1.0
    });
    assert!(
        back.value("openclaw_tunnel_up_checks_total{forward=\"second\"}")
            < grown.value("openclaw_tunnel_up_checks_total{forward=\"second\"}"),
        "a forward that comes back starts from zero"
    );
    // POST /-/reload answers with the result.
    let response = ureq::post(format!("http://{}/-/reload", exporter.web)).send_empty().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(exporter.scrape().get("openclaw_exporter_config_reloads_total{result=\"success\"}"), Some(4.0));
}

/// One HTTP request through `tap` on a fresh connection (so each one goes through the tap's accept):
/// the status line, or what went wrong.
fn request_through(tap: std::net::SocketAddr) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&tap, T).map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(T)).unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: tap\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).map_err(|e| format!("read: {e}"))?;
    answer.lines().next().map(str::to_owned).filter(|line| line.contains(" 200 ")).ok_or(answer)
}

fn tap_toml(forward: &str, listen: std::net::SocketAddr, upstream: std::net::SocketAddr) -> String {
    format!("[[auth_tap]]\nforward = \"{forward}\"\nlisten = \"{listen}\"\nupstream = \"{upstream}\"\n")
}

#[test]
fn a_reload_that_cannot_start_keeps_the_running_generation_whole_and_a_taken_tap_port_is_retried() {
    // The running generation must never stop for a reload that cannot start: its probes keep their rhythm,
    // its tap keeps relaying, the failure is counted and answered, and the process lives on.
    let gateway = Gateway::start(free_port(), Duration::ZERO);
    let tap = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    // The tap's upstream is the stand-in itself, trusted by name.
    let running = format!(
        "{}{}{}",
        forward_toml("t", gateway.addr.port()),
        trusting("gateway-standin"),
        tap_toml("t", tap, gateway.addr)
    );
    let exporter = Exporter::start_with_lifecycle(&running);
    exporter.wait_for("probes running", T, |m| m.value("openclaw_tunnel_up_checks_total{forward=\"t\"}") >= 3.0);
    wait_listening(tap, "auth tap", T);
    let reload = || {
        let response = ureq::post(format!("http://{}/-/reload", exporter.web))
            .config()
            .http_status_as_error(false)
            .build()
            .send_empty()
            .unwrap();
        let status = response.status();
        (status, response.into_body().read_to_string().unwrap())
    };

    // A CA file that exists (so the file validates) but holds no certificate: the generation cannot start.
    let not_a_certificate = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(not_a_certificate.path(), "not a certificate\n").unwrap();
    exporter.rewrite_config(&format!(
        "{running}[[model_host]]\nname = \"m\"\nurl = \"https://127.0.0.1:{}/\"\nca_file = \"{}\"\n",
        gateway.addr.port(),
        not_a_certificate.path().display()
    ));
    let (status, body) = reload();
    assert!(!status.is_success(), "a reload that cannot start answers an error: {status} {body}");
    assert!(body.contains("model_host[0].ca_file"), "the error names the key: {body}");
    let failed = exporter.wait_for("the failed reload counted", T, |m| {
        m.get("openclaw_exporter_config_reloads_total{result=\"failure\"}") >= Some(1.0)
    });
    // Still the running generation: probes go on and the tap relays.
    exporter.wait_for("probes still running", T, |m| {
        m.value("openclaw_tunnel_up_checks_total{forward=\"t\"}")
            >= failed.value("openclaw_tunnel_up_checks_total{forward=\"t\"}") + 3.0
    });
    assert_eq!(request_through(tap), Ok("HTTP/1.1 200 OK".to_owned()));
    assert!(exporter.proc.output().contains("keeping the running configuration"), "{}", exporter.proc.output());

    // A second tap whose port another process holds (this test): the reload succeeds, the running tap keeps
    // relaying, the new one is hijacked and names the holder until the port is free, then listens.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap();
    exporter.rewrite_config(&format!("{running}{}", tap_toml("t", taken_addr, gateway.addr)));
    let (status, body) = reload();
    assert!(status.is_success(), "a taken tap port does not fail the reload: {status} {body}");
    exporter.wait_for("the taken tap port seen", T, |m| {
        m.value("openclaw_gateway_tap_hijacked{forward=\"t\"}") == 1.0
            && m.value("openclaw_exporter_listen_failures_total{listener=\"auth_tap\",reason=\"in_use\"}") >= 1.0
    });
    let taps = exporter.status()["forwards"][0]["auth_taps"].to_string();
    assert!(taps.contains(&format!("pid {}", std::process::id())), "the holder named: {taps}");
    assert_eq!(request_through(tap), Ok("HTTP/1.1 200 OK".to_owned()), "the running tap relays meanwhile");
    drop(taken);
    let released = std::time::Instant::now();
    wait_listening(taken_addr, "the second tap, once the port is free", Duration::from_secs(15));
    assert!(released.elapsed() < Duration::from_secs(15));
    assert_eq!(request_through(taken_addr), Ok("HTTP/1.1 200 OK".to_owned()));
    exporter.wait_for("no longer hijacked", T, |m| m.value("openclaw_gateway_tap_hijacked{forward=\"t\"}") == 0.0);
}

#[test]
fn the_tap_keeps_accepting_through_twenty_reloads() {
    // Each reload hands the tap's listening socket to the next generation: a client connecting at any
    // moment is accepted and answered, never refused.
    let gateway = Gateway::start(free_port(), Duration::ZERO);
    let tap = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let config = |name: &str| {
        format!(
            "{}{}{}",
            forward_toml(name, gateway.addr.port()),
            trusting("gateway-standin"),
            tap_toml(name, tap, gateway.addr)
        )
    };
    let exporter = Exporter::start_with_lifecycle(&config("a"));
    wait_listening(tap, "auth tap", T);

    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let client = std::thread::spawn({
        let (done, answered) = (done.clone(), answered.clone());
        move || {
            let mut failures = Vec::new();
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                match request_through(tap) {
                    Ok(_) => drop(answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst)),
                    Err(err) => failures.push(err),
                }
            }
            failures
        }
    });
    for i in 0..20 {
        // Each reload waits for an answer after the last one, so every generation's hand-over happens while
        // the client is requesting (a machine too loaded to answer between reloads cannot hide a refusal).
        let before = answered.load(std::sync::atomic::Ordering::SeqCst);
        let deadline = std::time::Instant::now() + T;
        while answered.load(std::sync::atomic::Ordering::SeqCst) == before {
            assert!(std::time::Instant::now() < deadline, "no request answered through the tap before reload {i}");
            std::thread::sleep(Duration::from_millis(1));
        }
        exporter.rewrite_config(&config(if i % 2 == 0 { "b" } else { "a" }));
        let response = ureq::post(format!("http://{}/-/reload", exporter.web)).send_empty().unwrap();
        assert!(response.status().is_success(), "reload {i}");
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let failures = client.join().unwrap();
    let answered = answered.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        failures.is_empty(),
        "{} of {} requests failed during reloads: {:?}",
        failures.len(),
        answered as usize + failures.len(),
        &failures[..failures.len().min(5)]
    );
    println!("{answered} requests answered through the tap during 20 reloads");
    assert!(answered >= 20, "the client kept requesting through the reloads ({answered})");
    assert!(exporter.scrape().value("openclaw_exporter_config_reloads_total{result=\"success\"}") >= 20.0);
}

#[test]
fn model_hosts_are_probed_apart_from_the_tunnel() {
    let model = Gateway::start(free_port(), Duration::from_millis(20));
    let dead = free_port();
    let forward = Gateway::start(free_port(), Duration::ZERO);
    let config = format!(
        "{}\n[[model_host]]\nname = \"local-model\"\nurl = \"http://localhost:{}/healthz\"\ninterval = \"300ms\"\ntimeout = \"1s\"\n\
         [[model_host]]\nname = \"dead\"\nurl = \"http://127.0.0.1:{dead}/\"\ninterval = \"300ms\"\ntimeout = \"1s\"\n",
        forward_toml("t", forward.addr.port()),
        model.addr.port()
    );
    let exporter = Exporter::start_with_lifecycle(&config);
    let scrape = exporter.wait_for("model host first bytes and a refused dead port", T, |m| {
        m.value("openclaw_model_host_first_byte_seconds_count{model_host=\"local-model\"}") >= 2.0
            && m.value("openclaw_model_host_probe_failures_total{model_host=\"dead\",reason=\"refused\"}") >= 1.0
    });
    for phase in ["dns", "connect"] {
        let series = format!("openclaw_model_host_phase_seconds_count{{model_host=\"local-model\",phase=\"{phase}\"}}");
        assert!(scrape.value(&series) >= 2.0, "{series}");
    }
    // 20 ms answer: the first byte histogram's sum says so; plain http has no tls phase.
    let sum = scrape.value("openclaw_model_host_first_byte_seconds_sum{model_host=\"local-model\"}");
    let count = scrape.value("openclaw_model_host_first_byte_seconds_count{model_host=\"local-model\"}");
    assert!(sum / count >= 0.019, "mean first byte {}", sum / count);
    assert_eq!(scrape.get("openclaw_model_host_phase_seconds_count{model_host=\"local-model\",phase=\"tls\"}"), None);
    assert_eq!(scrape.get("openclaw_objective_model_host_first_byte_seconds{model_host=\"local-model\"}"), Some(2.0));
    // Never in the tunnel's families.
    assert!(!scrape
        .text
        .lines()
        .any(|l| l.starts_with("openclaw_gateway_first_byte_seconds") && l.contains("local-model")));
}

#[test]
fn token_sources_that_disagree_are_flagged_without_printing_a_token() {
    let gateway = Gateway::start(free_port(), Duration::ZERO);
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join(".openclaw")).unwrap();
    std::fs::write(
        home.path().join(".openclaw/openclaw.json"),
        "{ gateway: { mode: 'local', auth: { token: 'oce-canary-from-config' } } } // JSON5",
    )
    .unwrap();
    // A token file readable by others is warned about (its token agrees with nothing here, which is fine).
    let token_file = home.path().join("token");
    std::fs::write(&token_file, "oce-canary-from-file").unwrap();
    std::fs::set_permissions(&token_file, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let config = format!(
        "{}[auth_probe]\nenabled = true\ninterval = \"1s\"\ntoken_file = \"{}\"\n",
        forward_toml("t", gateway.addr.port()),
        token_file.display()
    );
    let exporter = Exporter::start_with(&config, |command| {
        command
            .env("HOME", home.path())
            .env("OPENCLAW_GATEWAY_TOKEN", "oce-canary-from-launchd")
            .env_remove("OPENCLAW_CONFIG_PATH")
    });
    let scrape = exporter.wait_for("the disagreement flagged", T, |m| {
        m.get("openclaw_gateway_token_sources_agree{forward=\"t\"}") == Some(0.0)
    });
    let log = exporter.proc.output();
    assert!(log.contains("token sources disagree") && log.contains("OPENCLAW_GATEWAY_TOKEN"), "{log}");
    assert!(log.contains("the token file is readable by group or others"), "{log}");
    assert!(!log.contains("oce-canary") && !scrape.text.contains("oce-canary"), "a token leaked:\n{log}");
}

#[test]
fn json_logs_are_one_object_per_line_and_state_changes_are_logged_once() {
    let gateway = Gateway::start(free_port(), Duration::ZERO);
    let exporter = Exporter::start_with(&forward_toml("t", gateway.addr.port()), |command| {
        command.arg("--log-format").arg("json")
    });
    exporter.wait_for("ten rounds", T, |m| m.value("openclaw_tunnel_up_checks_total{forward=\"t\"}") >= 10.0);
    let log = exporter.proc.output();
    let lines: Vec<serde_json::Value> =
        log.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    assert!(lines.iter().all(|l| l["level"].is_string() && l["message"].is_string()), "{log}");
    // Ten rounds with the same (not-ssh) owner: one line about it, not ten.
    let owner_lines = lines.iter().filter(|l| l["message"].as_str().unwrap_or_default().contains("not ssh")).count();
    assert_eq!(owner_lines, 1, "{log}");
}

#[test]
fn the_buckets_survive_a_restart_and_a_bad_state_file_is_ignored() {
    let gateway = Gateway::start(free_port(), Duration::ZERO);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state/buckets.json");
    let config = format!("{}[state]\nfile = \"{}\"\n", forward_toml("t", gateway.addr.port()), state.display());

    let mut first = Exporter::start_with_lifecycle(&config);
    first.wait_for("rounds counted", T, |m| m.value("openclaw_tunnel_up_checks_total{forward=\"t\"}") >= 5.0);
    first.proc.signal(libc::SIGTERM);
    assert!(first.proc.wait_exit(Duration::from_secs(5)).expect("exits").success());
    let saved: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    let saved_checks = saved["forwards"]["t"][0]["checks"].as_u64().unwrap();
    assert!(saved_checks >= 5, "{saved}");

    // A restart keeps the day's buckets (counters restart, as Prometheus expects).
    let second = Exporter::start_with_lifecycle(&config);
    let status = second.status();
    let restored = status["forwards"][0]["buckets"][0]["checks"].as_u64().unwrap();
    assert!(restored >= saved_checks, "restored {restored} < saved {saved_checks}: {status}");
    assert!(second.proc.output().contains("restored the uptime buckets"), "{}", second.proc.output());
    drop(second);

    // Corrupt and truncated files are reported and ignored, never fatal.
    let whole = std::fs::read_to_string(&state).unwrap();
    for bad in ["\u{0}\u{1}garbage".to_owned(), whole[..whole.len() / 2].to_owned()] {
        std::fs::write(&state, bad).unwrap();
        let exporter = Exporter::start_with_lifecycle(&config);
        exporter.wait_for("probes run anyway", T, |m| m.value("openclaw_tunnel_up_checks_total{forward=\"t\"}") >= 2.0);
        assert!(exporter.proc.output().contains("unusable and was ignored"), "{}", exporter.proc.output());
    }
}

#[test]
fn a_reload_storm_leaves_one_consistent_config_and_no_stray_probes() {
    let gateway = Gateway::start(free_port(), Duration::ZERO);
    let port = gateway.addr.port();
    let exporter = Exporter::start_with_lifecycle(&forward_toml("a", port));
    exporter.wait_for("a probed", T, |m| m.value("openclaw_tunnel_up_checks_total{forward=\"a\"}") >= 1.0);
    // 100 reloads within about a second, alternating configs, some of them bad.
    for i in 0..100 {
        let config = match i % 3 {
            0 => forward_toml("a", port),
            1 => forward_toml("b", port),
            _ => forward_toml("b", port).replace("timeout = \"1s\"", "timeout = \"never\""),
        };
        exporter.rewrite_config(&config);
        exporter.proc.signal(libc::SIGHUP);
        std::thread::sleep(Duration::from_millis(10));
    }
    exporter.rewrite_config(&forward_toml("final", port));
    exporter.proc.signal(libc::SIGHUP);
    let settled = exporter.wait_for("the last config running", T, |m| {
        m.value("openclaw_tunnel_up_checks_total{forward=\"final\"}") >= 3.0
    });
    std::thread::sleep(Duration::from_secs(2));
    let later = exporter.scrape();
    // The removed forwards' series are gone, and no stray probe brings any back.
    for scrape in [&settled, &later] {
        for stale in ["a", "b"] {
            let series: Vec<_> = scrape.text.lines().filter(|l| l.contains(&format!("forward=\"{stale}\""))).collect();
            assert!(series.is_empty(), "forward {stale} removed but still exported:\n{}", series.join("\n"));
        }
    }
    assert!(
        later.value("openclaw_tunnel_up_checks_total{forward=\"final\"}")
            > settled.value("openclaw_tunnel_up_checks_total{forward=\"final\"}")
    );
    assert!(later.value("openclaw_exporter_config_reloads_total{result=\"success\"}") >= 1.0);
}

#[test]
fn slow_clients_cannot_hold_the_metrics_server() {
    use std::io::Write;
    let gateway = Gateway::start(free_port(), Duration::ZERO);
    let exporter = Exporter::start_with_lifecycle(&forward_toml("t", gateway.addr.port()));
    // 200 clients that send half a request head and then nothing.
    let slow: Vec<_> = (0..200)
        .map(|_| {
            let mut stream = std::net::TcpStream::connect(exporter.web).unwrap();
            stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n").unwrap();
            stream
        })
        .collect();
    let started = Instant::now();
    let scrape = exporter.scrape();
    assert!(started.elapsed() < Duration::from_secs(2), "a scrape waited {:?} behind slow clients", started.elapsed());
    assert!(scrape.get("openclaw_tunnel_up_checks_total{forward=\"t\"}").is_some());
    drop(slow);
}

/// A LaunchAgent starts with 256 descriptors (a systemd service often 1,024) while the hard limit is far higher:
/// the exporter raises its soft limit to the hard one at start and logs both figures.
#[test]
fn the_descriptor_soft_limit_is_raised_to_the_hard_limit_at_start() {
    let exporter = Exporter::start_with(&forward_toml("t", free_port()), |command| {
        use std::os::unix::process::CommandExt;
        // SAFETY: setrlimit is async-signal-safe; the closure runs in the child between fork and exec.
        unsafe {
            command.pre_exec(|| {
                let limit = libc::rlimit { rlim_cur: 256, rlim_max: 4096 };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            })
        }
    });
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", exporter.proc.pid())).unwrap();
    let open_files = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let figures: Vec<&str> = open_files.split_whitespace().collect();
    assert_eq!(figures[3..5], ["4096", "4096"], "{open_files}");
    let log = exporter.proc.output();
    assert!(log.contains("before=256") && log.contains("after=4096"), "{log}");
}
