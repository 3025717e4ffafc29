//! The tunnel KPIs end to end: a real sshd and `ssh -N -L` forward (and autossh), the gateway stand-in
//! behind it, and the exporter binary, asserting on what an actual scrape of /metrics returns.

use std::time::{Duration, Instant};

use e2e::*;

const T: Duration = Duration::from_secs(20);

fn s(name: &str) -> String {
    format!("{name}{{forward=\"t\"}}")
}

fn failures(scrape: &Scrape, reason: &str) -> f64 {
    scrape.value(&format!("openclaw_gateway_probe_failures_total{{forward=\"t\",reason=\"{reason}\"}}"))
}

fn tunnel_down(scrape: &Scrape, cause: &str) -> f64 {
    scrape.value(&format!("openclaw_tunnel_down_seconds_total{{forward=\"t\",cause=\"{cause}\"}}"))
}

fn down_rounds(scrape: &Scrape) -> f64 {
    scrape.value(&s("openclaw_tunnel_up_checks_total")) - scrape.value(&s("openclaw_tunnel_up_successes_total"))
}

fn all_up(chain: &Chain) -> Scrape {
    chain.exporter.wait_for("SYN success, ssh session up, gateway up, a first byte", T, |m| {
        m.value(&s("openclaw_tunnel_syn_successes_total")) >= 3.0
            && m.get(&s("openclaw_tunnel_ssh_session_up")) == Some(1.0)
            && m.get(&s("openclaw_gateway_up")) == Some(1.0)
            && m.value(&s("openclaw_gateway_first_byte_seconds_count")) >= 1.0
    })
}

#[test]
fn all_up_reports_syn_session_and_first_byte() {
    let chain = Chain::start();
    let scrape = all_up(&chain);
    assert_eq!(down_rounds(&scrape), 0.0, "no round may count down while everything is up");
    assert_eq!(scrape.get("openclaw_tunnel_ssh_session_state{forward=\"t\",state=\"up\"}"), Some(1.0));
    assert!(scrape.value(&s("openclaw_tunnel_connect_seconds_count")) >= 3.0);
    // A loopback stand-in answers far within the 250 ms objective: every answered probe is a good event (a
    // scrape may land between a probe's histogram and its good count, on the blocking pool).
    let good = scrape.value(&s("openclaw_gateway_first_byte_good_total"));
    let answered = scrape.value(&s("openclaw_gateway_first_byte_seconds_count"));
    assert!(good >= 1.0 && good >= answered - 1.0, "good {good}, answered {answered}");
    // The owning pid and its parent go into the log and the status JSON.
    let ssh_pid = chain.ssh.pid();
    let status = chain.exporter.status();
    assert_eq!(status["forwards"][0]["ssh_session"]["pid"], ssh_pid);
    assert_eq!(status["forwards"][0]["ssh_session"]["name"], "ssh");
    assert!(status["forwards"][0]["first_byte_seconds"]["p50"].as_f64().unwrap() > 0.0);
    let log = chain.exporter.proc.output();
    assert!(log.contains("ssh session up") && log.contains(&format!("pid={ssh_pid}")), "{log}");
}

#[test]
fn gateway_stopped_with_ssh_alive_keeps_syn_up_and_fails_the_first_byte() {
    let mut chain = Chain::start();
    all_up(&chain);
    chain.gateway.proc.signal(libc::SIGKILL);
    chain.gateway.proc.wait_exit(Duration::from_secs(5)).expect("gateway exits");
    let before = chain.exporter.scrape();
    let scrape = chain.exporter.wait_for("gateway_up 0 with reset or empty_reply, SYN still succeeding", T, |m| {
        m.get(&s("openclaw_gateway_up")) == Some(0.0)
            && failures(m, "reset") + failures(m, "empty_reply") >= 2.0
            && m.value(&s("openclaw_tunnel_syn_successes_total"))
                >= before.value(&s("openclaw_tunnel_syn_successes_total")) + 3.0
    });
    assert_eq!(scrape.get(&s("openclaw_tunnel_ssh_session_up")), Some(1.0));
    assert_eq!(failures(&scrape, "refused"), 0.0, "ssh still listens: nothing may be refused");
    assert_eq!(down_rounds(&scrape), 0.0, "the tunnel itself is up: SYN and session");
    // Failed probes are not good events.
    assert!(
        scrape.value(&s("openclaw_gateway_first_byte_good_total"))
            < scrape.value(&s("openclaw_gateway_probe_attempts_total")),
        "{}",
        scrape.text
    );
    // Down time goes to the gateway, by reason, none to the tunnel.
    let gateway_down = ["reset", "empty_reply"]
        .iter()
        .map(|reason| {
            scrape.value(&format!("openclaw_gateway_down_seconds_total{{forward=\"t\",reason=\"{reason}\"}}"))
        })
        .sum::<f64>();
    assert!(gateway_down > 0.0, "{}", scrape.text);
    assert_eq!(tunnel_down(&scrape, "no_ssh") + tunnel_down(&scrape, "syn_failed"), 0.0);
}

/// The open gateway_down spell in the timeline, if any.
fn gateway_down_spell(status: &serde_json::Value) -> Option<serde_json::Value> {
    status["timeline"].as_array()?.iter().find(|e| e["kind"] == "gateway_down" && e["subject"] == "t").cloned()
}

#[test]
fn a_gateway_down_spell_open_across_a_reload_closes_when_the_gateway_answers_again() {
    let mut chain = Chain::start();
    all_up(&chain);
    let port = chain.gateway.addr.port();
    chain.gateway.proc.signal(libc::SIGKILL);
    chain.gateway.proc.wait_exit(Duration::from_secs(5)).expect("gateway exits");
    let deadline = Instant::now() + T;
    while gateway_down_spell(&chain.exporter.status()).is_none_or(|spell| !spell["end"].is_null()) {
        assert!(Instant::now() < deadline, "no open gateway_down spell: {}", chain.exporter.status());
        std::thread::sleep(Duration::from_millis(100));
    }
    // The gateway back and at once a reload (SIGHUP reloads even an unchanged file): the new generation's
    // first round is most likely the first to see the gateway answer, so the spell its predecessor opened
    // must be closed by a recording that never saw it open.
    chain.gateway = Gateway::start(port, Duration::ZERO);
    chain.exporter.proc.signal(libc::SIGHUP);
    chain.exporter.wait_for("the reload done and the gateway answering", T, |m| {
        m.get("openclaw_exporter_config_reloads_total{result=\"success\"}") == Some(1.0)
            && m.get(&s("openclaw_gateway_up")) == Some(1.0)
    });
    let deadline = Instant::now() + T;
    loop {
        let status = chain.exporter.status();
        let spell = gateway_down_spell(&status).expect("the spell stays in the timeline");
        if !spell["end"].is_null() {
            break;
        }
        assert!(Instant::now() < deadline, "the gateway_down spell never closed after the reload: {status}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn ssh_killed_refuses_syn_and_counts_rounds_down() {
    let mut chain = Chain::start();
    all_up(&chain);
    chain.ssh.signal(libc::SIGTERM);
    chain.ssh.wait_exit(Duration::from_secs(5)).expect("ssh exits");
    let scrape = chain.exporter.wait_for("ssh_session_up 0, refused first bytes, down rounds", T, |m| {
        m.get(&s("openclaw_tunnel_ssh_session_up")) == Some(0.0)
            && failures(m, "refused") >= 1.0
            && down_rounds(m) >= 3.0
            && m.get(&s("openclaw_gateway_up")) == Some(0.0)
    });
    assert_eq!(scrape.get("openclaw_tunnel_ssh_session_state{forward=\"t\",state=\"no_listener\"}"), Some(1.0));
    // Three down rounds of 200 ms at least, all for ssh not running; none of it is the gateway's.
    assert!(tunnel_down(&scrape, "no_ssh") >= 0.5, "{}", scrape.text);
    assert_eq!(tunnel_down(&scrape, "not_ssh"), 0.0);
    assert_eq!(scrape.get("openclaw_gateway_down_seconds_total{forward=\"t\",reason=\"refused\"}"), None);
    // The timeline tells it: a tunnel-down spell for ssh not running, still going on.
    let status = chain.exporter.status();
    let down = status["timeline"].as_array().unwrap().iter().find(|e| e["kind"] == "tunnel_down").cloned();
    let down = down.unwrap_or_else(|| panic!("no tunnel_down in the timeline: {status}"));
    assert_eq!((down["subject"].as_str(), down["detail"].as_str()), (Some("t"), Some("no_ssh")), "{down}");
    assert!(down["end"].is_null(), "{down}");
    let later = chain.exporter.wait_for("SYN attempts keep failing", T, |m| {
        m.value(&s("openclaw_tunnel_syn_attempts_total"))
            >= scrape.value(&s("openclaw_tunnel_syn_attempts_total")) + 3.0
    });
    assert_eq!(
        later.value(&s("openclaw_tunnel_syn_successes_total")),
        scrape.value(&s("openclaw_tunnel_syn_successes_total")),
        "no SYN may succeed with ssh gone"
    );
}

#[test]
fn remote_frozen_times_out_the_first_byte_then_ssh_exits_and_syn_is_refused() {
    let mut chain = Chain::start();
    all_up(&chain);
    let frozen = chain.sshd.signal_sessions(libc::SIGSTOP);
    assert!(frozen >= 1, "no sshd session process to freeze");
    let scrape = chain.exporter.wait_for("first byte times out while SYN still connects", T, |m| {
        failures(m, "timeout") >= 1.0 && m.get(&s("openclaw_gateway_up")) == Some(0.0)
    });
    assert!(scrape.value(&s("openclaw_tunnel_syn_successes_total")) >= 3.0);
    // ServerAliveInterval 1 x (ServerAliveCountMax 3 + 1): ssh gives up within a few seconds.
    chain.ssh.wait_exit(Duration::from_secs(15)).expect("ssh exits once the server stops answering keepalives");
    chain.exporter.wait_for("SYN refused and the session down after ssh gave up", T, |m| {
        m.get(&s("openclaw_tunnel_ssh_session_up")) == Some(0.0) && failures(m, "refused") >= 1.0
    });
    chain.sshd.signal_sessions(libc::SIGCONT);
}

#[test]
fn autossh_restores_the_forward_and_the_metrics_recover() {
    let gateway = Gateway::start(free_port(), Duration::ZERO);
    let sshd = Sshd::start(gateway.addr.port());
    let local_port = free_port();
    let autossh = sshd.autossh_forward(local_port, gateway.addr.port());
    let exporter = Exporter::start(&forward_toml("t", local_port));
    exporter.wait_for("up under autossh", T, |m| {
        m.get(&s("openclaw_tunnel_ssh_session_up")) == Some(1.0) && m.get(&s("openclaw_gateway_up")) == Some(1.0)
    });
    let status = exporter.status();
    assert_eq!(status["forwards"][0]["ssh_session"]["parent_name"], "autossh");
    let first_ssh = status["forwards"][0]["ssh_session"]["pid"].as_u64().unwrap() as u32;
    assert!(descendants(autossh.pid()).contains(&first_ssh));

    // Kill autossh's ssh child: autossh starts a new one, the forward comes back, and so do the metrics.
    kill(first_ssh, libc::SIGKILL);
    let deadline = Instant::now() + T;
    loop {
        let status = exporter.status();
        let session = &status["forwards"][0]["ssh_session"];
        if session["state"] == "up" && session["pid"].as_u64() != Some(first_ssh as u64) {
            assert_eq!(session["parent_name"], "autossh");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "autossh's new ssh never owned the forward: {status}\n{}",
            exporter.proc.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let recovered = exporter.scrape();
    exporter.wait_for("gateway answers again through the restored forward", T, |m| {
        m.get(&s("openclaw_gateway_up")) == Some(1.0)
            && m.value(&s("openclaw_tunnel_up_successes_total"))
                > recovered.value(&s("openclaw_tunnel_up_successes_total")) + 2.0
    });
    assert!(exporter.proc.output().contains("parent=autossh"), "{}", exporter.proc.output());
    assert_eq!(exporter.scrape().get(&s("openclaw_tunnel_ssh_session_changes_total")), Some(1.0), "one new owner");
    // The timeline names the new ssh with its pid and parent.
    let status = exporter.status();
    let restart = status["timeline"].as_array().unwrap().iter().find(|e| e["kind"] == "ssh_restart").cloned();
    let restart = restart.unwrap_or_else(|| panic!("no ssh_restart in the timeline: {status}"));
    let detail = restart["detail"].as_str().unwrap();
    assert!(detail.starts_with("ssh pid ") && detail.contains("parent autossh"), "{detail}");
}

#[test]
fn an_exporter_stopped_for_ten_seconds_counts_the_time_unobserved_not_down() {
    let chain = Chain::start();
    all_up(&chain);
    let before = chain.exporter.scrape();
    chain.exporter.proc.signal(libc::SIGSTOP);
    std::thread::sleep(Duration::from_secs(10));
    chain.exporter.proc.signal(libc::SIGCONT);
    let scrape = chain.exporter.wait_for("the stall counted as unobserved", T, |m| {
        m.value(&s("openclaw_tunnel_unobserved_seconds_total")) >= 8.0
    });
    let unobserved = scrape.value(&s("openclaw_tunnel_unobserved_seconds_total"));
    assert!(unobserved <= 12.0, "unobserved {unobserved}s for a 10 s stop");
    assert_eq!(down_rounds(&scrape), 0.0, "a stopped exporter is not a down tunnel");
    assert_eq!(tunnel_down(&scrape, "no_ssh") + tunnel_down(&scrape, "syn_failed"), 0.0);
    // The timeline shows the stop as asleep, about ten seconds long, and no tunnel_down.
    let status = chain.exporter.status();
    let events = status["timeline"].as_array().unwrap();
    let asleep = events.iter().find(|e| e["kind"] == "asleep").unwrap_or_else(|| panic!("{status}"));
    let length = asleep["end"].as_f64().unwrap() - asleep["start"].as_f64().unwrap();
    assert!((8.0..=12.0).contains(&length), "{asleep}");
    assert!(!events.iter().any(|e| e["kind"] == "tunnel_down"), "{status}");
    // 10 s at 200 ms would be 50 rounds: none of them may be invented.
    let rounds =
        scrape.value(&s("openclaw_tunnel_up_checks_total")) - before.value(&s("openclaw_tunnel_up_checks_total"));
    assert!(rounds < 15.0, "{rounds} rounds counted across a 10 s stop");
}

#[test]
fn after_a_stop_the_wait_until_the_forward_works_again_is_one_resume_observation() {
    // The laptop's sleep, as the exporter sees it: the process stopped, and meanwhile the forward's ssh dies
    // (NAT forgot it). Resumed, the exporter counts the gap unobserved; the forward comes back 4 s later.
    let mut chain = Chain::start();
    all_up(&chain);
    let count = |m: &Scrape| m.value(&s("openclaw_tunnel_resume_seconds_count"));
    assert_eq!(count(&chain.exporter.scrape()), 0.0, "no gap yet, no observation (the series exists at zero)");
    chain.exporter.proc.signal(libc::SIGSTOP);
    chain.ssh.signal(libc::SIGTERM);
    chain.ssh.wait_exit(Duration::from_secs(5)).expect("ssh exits");
    std::thread::sleep(Duration::from_secs(3));
    chain.exporter.proc.signal(libc::SIGCONT);
    let resumed = Instant::now();
    chain
        .exporter
        .wait_for("the stop counted unobserved", T, |m| m.value(&s("openclaw_tunnel_unobserved_seconds_total")) >= 2.0);
    std::thread::sleep(Duration::from_secs(4).saturating_sub(resumed.elapsed()));
    chain.ssh = chain.sshd.forward(chain.local_port, chain.gateway.addr.port());
    let back = resumed.elapsed().as_secs_f64();
    let scrape = chain.exporter.wait_for("one resume observed", T, |m| count(m) == 1.0);
    let seconds = scrape.value(&s("openclaw_tunnel_resume_seconds_sum"));
    // From the first round after the gap (at the resume) to the first good first byte (after the forward was
    // back, within one 300 ms first-byte interval).
    assert!((back - 0.5..=back + 1.5).contains(&seconds), "resume observed {seconds} s, the forward back at {back} s");
    assert_eq!(scrape.value("openclaw_tunnel_resume_seconds_bucket{forward=\"t\",le=\"2\"}"), 0.0);
    assert_eq!(scrape.value("openclaw_tunnel_resume_seconds_bucket{forward=\"t\",le=\"10\"}"), 1.0);
    let last = &chain.exporter.status()["forwards"][0]["last_resume"];
    assert_eq!(last["usable"], true, "{last}");
    let page = chain.exporter.get("/", Some("text/html")).1;
    assert!(page.contains("After the last wake") && page.contains("usable in"), "the status row");
    // Another first byte is not another observation: one per gap.
    let later = chain.exporter.wait_for("more first bytes", T, |m| {
        m.value(&s("openclaw_gateway_probe_attempts_total"))
            >= scrape.value(&s("openclaw_gateway_probe_attempts_total")) + 3.0
    });
    assert_eq!(count(&later), 1.0);
}

#[test]
fn a_listener_that_is_not_ssh_is_not_a_session() {
    let gateway = Gateway::start(free_port(), Duration::ZERO);
    let exporter = Exporter::start(&forward_toml("t", gateway.addr.port()));
    let scrape = exporter.wait_for("SYN succeeds but the owner is not ssh", T, |m| {
        m.value(&s("openclaw_tunnel_syn_successes_total")) >= 3.0
            && m.get("openclaw_tunnel_ssh_session_state{forward=\"t\",state=\"not_ssh\"}") == Some(1.0)
    });
    assert_eq!(scrape.get(&s("openclaw_tunnel_ssh_session_up")), Some(0.0));
    assert_eq!(scrape.value(&s("openclaw_tunnel_up_successes_total")), 0.0);
    // The stand-in answers /healthz, so the gateway probe alone would have called this healthy.
    assert_eq!(scrape.get(&s("openclaw_gateway_up")).unwrap_or(1.0), 1.0);
    assert!(exporter.proc.output().contains("not ssh"), "{}", exporter.proc.output());
}

#[test]
fn an_owner_the_exporter_cannot_read_is_unknown_not_down() {
    if !root_or_skip("tunnel::an_owner_the_exporter_cannot_read", "the exporter run as another user than ssh") {
        return;
    }
    let chain_gateway = Gateway::start(free_port(), Duration::ZERO);
    let sshd = Sshd::start(chain_gateway.addr.port());
    let local_port = free_port();
    let _ssh = sshd.forward(local_port, chain_gateway.addr.port());
    // ssh runs as root; the exporter as `daemon` cannot read root's /proc/PID/fd.
    let exporter = Exporter::start_with(&forward_toml("t", local_port), |command| {
        let program = command.get_program().to_owned();
        let args: Vec<_> = command.get_args().map(|a| a.to_owned()).collect();
        *command = std::process::Command::new("setpriv");
        command.args(["--reuid=daemon", "--regid=daemon", "--clear-groups"]).arg(program).args(args);
        command.env("RUST_LOG", "info")
    });
    let scrape = exporter.wait_for("session state unreadable, rounds up on SYN", T, |m| {
        m.get("openclaw_tunnel_ssh_session_state{forward=\"t\",state=\"unreadable\"}") == Some(1.0)
            && m.value(&s("openclaw_tunnel_up_successes_total")) >= 3.0
    });
    assert_eq!(scrape.get(&s("openclaw_tunnel_ssh_session_up")), None, "unknown must not read as 0 (down)");
    assert_eq!(down_rounds(&scrape), 0.0);
    assert!(exporter.proc.output().contains("cannot read which process owns"), "{}", exporter.proc.output());
}
