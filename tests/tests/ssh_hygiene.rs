//! Tunnel hygiene against a real sshd and real ssh clients (issue 22): orphaned forwards (a second `ssh -N -L`
//! to a port the first one holds keeps running without `ExitOnForwardFailure`).

use std::process::Command;
use std::time::{Duration, Instant};

use e2e::*;

const T: Duration = Duration::from_secs(30);

/// `doctor` on `config` (written with a free web port into `dir`), its command adjusted by `adjust`: what it
/// printed.
fn doctor(dir: &std::path::Path, config: &str, adjust: impl FnOnce(&mut Command)) -> String {
    let config_file = dir.join("exporter.toml");
    std::fs::write(&config_file, format!("[web]\nlisten = \"127.0.0.1:{}\"\n{config}", free_port())).unwrap();
    let mut command = Command::new(workspace_binary("openclaw-tunnel-exporter"));
    command.arg("--config").arg(&config_file).arg("doctor");
    adjust(&mut command);
    String::from_utf8_lossy(&command.output().unwrap().stdout).into_owned()
}

fn orphans(scrape: &Scrape) -> Option<f64> {
    scrape.get("openclaw_tunnel_ssh_orphans{forward=\"t\"}")
}

fn orphan_rounds(scrape: &Scrape) -> f64 {
    scrape.get("openclaw_exporter_probe_lag_seconds_count{probe=\"ssh_hygiene\"}").unwrap_or(0.0)
}

/// `ssh -N -L` to a port the running forward already holds, with `ExitOnForwardFailure` as given.
fn second_ssh(sshd: &Sshd, local: u16, gateway: u16, exit_on_forward_failure: &str) -> Proc {
    let args: Vec<String> = sshd
        .forward_args(local, gateway)
        .into_iter()
        .map(|arg| {
            if arg == "ExitOnForwardFailure=yes" {
                format!("ExitOnForwardFailure={exit_on_forward_failure}")
            } else {
                arg
            }
        })
        .collect();
    Proc::spawn_group("second ssh", Command::new("ssh").args(args))
}

#[test]
fn a_second_ssh_to_a_held_port_is_an_orphan_until_killed_and_exit_on_forward_failure_leaves_none() {
    let gateway = Gateway::start(free_port(), Duration::ZERO);
    let sshd = Sshd::start(gateway.addr.port());
    let local = free_port();
    let _forward = sshd.forward(local, gateway.addr.port());
    let config = format!("{}hygiene_interval = \"1s\"\n", forward_toml("t", local));
    let exporter = Exporter::start(&config);
    exporter.wait_for("no orphan while one ssh holds the forward", T, |m| orphans(m) == Some(0.0));

    // A second tunnel to the same port: its bind fails ("Address already in use") and it keeps running.
    let mut orphan = second_ssh(&sshd, local, gateway.addr.port(), "no");
    exporter.wait_for("the second ssh counted as an orphan", T, |m| orphans(m) == Some(1.0));
    let status = exporter.status();
    let listed = &status["forwards"][0]["ssh_orphans"];
    assert_eq!(listed[0]["pid"].as_u64(), Some(u64::from(orphan.pid())), "{listed}");
    assert_eq!(listed[0]["end_with"].as_str(), Some(format!("kill {}", orphan.pid()).as_str()), "{listed}");
    assert!(listed[0]["started"].as_f64().is_some(), "{listed}");
    // What identifies it (its forward, its destination), not its options (issue 38: shown nowhere).
    let command = listed[0]["command"].as_str().unwrap_or_default();
    assert!(command.contains(&format!("-L 127.0.0.1:{local}:127.0.0.1:{}", gateway.addr.port())), "{listed}");
    assert!(!command.contains("ExitOnForwardFailure"), "{listed}");
    let (_, page) = exporter.get("/", None);
    assert!(
        page.contains(&format!("pid {}", orphan.pid())) && page.contains("Orphaned ssh"),
        "the status page lists it"
    );

    // The doctor names it with the command that ends it, and passes the layers that work.
    let dir = tempfile::tempdir().unwrap();
    let said = doctor(dir.path(), &config, |_| {});
    assert!(said.contains(&format!("orphaned ssh pid {}", orphan.pid())), "{said}");
    assert!(said.contains(&format!("end it with `kill {}`", orphan.pid())), "{said}");
    assert!(said.contains("ExitOnForwardFailure yes"), "{said}");
    assert!(said.contains("2 ssh owns the local forward") && said.contains("PASS"), "{said}");

    // Killed: none.
    orphan.signal(libc::SIGTERM);
    orphan.wait_exit(Duration::from_secs(10)).expect("the orphan exits");
    exporter.wait_for("no orphan once it is killed", T, |m| orphans(m) == Some(0.0));

    // With ExitOnForwardFailure=yes the second ssh exits on its failed bind, and nothing is counted.
    let mut strict = second_ssh(&sshd, local, gateway.addr.port(), "yes");
    let deadline = Instant::now() + T;
    while strict.is_running() {
        assert!(Instant::now() < deadline, "ssh with ExitOnForwardFailure=yes kept running:\n{}", strict.output());
        let scrape = exporter.scrape();
        assert_eq!(orphans(&scrape), Some(0.0), "an ssh that exits on its failed bind is no orphan");
        std::thread::sleep(Duration::from_millis(50));
    }
    let exited = strict.wait_exit(Duration::from_secs(1)).expect("exited");
    assert!(!exited.success(), "ssh reports its failed forward: {exited:?}\n{}", strict.output());
    let rounds = orphan_rounds(&exporter.scrape());
    let after = exporter.wait_for("two more orphan rounds", T, |m| orphan_rounds(m) >= rounds + 2.0);
    assert_eq!(orphans(&after), Some(0.0));
}

/// A forward started as users start it, `ssh -F CONFIG -N -L ... alias`, whose Host block sets
/// `ServerAliveInterval` to `server_alive`.
fn forward_from_config(sshd: &Sshd, dir: &std::path::Path, local: u16, gateway: u16, server_alive: u32) -> Proc {
    let known_hosts = dir.join("known_hosts");
    std::fs::write(&known_hosts, sshd.known_hosts_line()).unwrap();
    let block = sshd
        .host_block("mac", &known_hosts, &[])
        .replace("ServerAliveInterval 1\n", &format!("ServerAliveInterval {server_alive}\n"));
    assert!(block.contains(&format!("ServerAliveInterval {server_alive}\n")), "{block}");
    let config = dir.join(format!("ssh_config_{server_alive}"));
    std::fs::write(&config, block).unwrap();
    let mut ssh = Proc::spawn_group(
        "ssh from its config",
        Command::new("ssh").arg("-F").arg(&config).args([
            "-N",
            "-L",
            &format!("127.0.0.1:{local}:127.0.0.1:{gateway}"),
            "mac",
        ]),
    );
    ssh.wait_listening(std::net::SocketAddr::from(([127, 0, 0, 1], local)), Duration::from_secs(10));
    ssh
}

fn risk(scrape: &Scrape, option: &str) -> Option<f64> {
    scrape.get(&format!("openclaw_tunnel_ssh_option_risk{{forward=\"t\",option=\"{option}\"}}"))
}

#[test]
fn an_ssh_without_keepalives_is_a_risk_the_doctor_fixes_and_one_with_them_is_not() {
    let gateway = Gateway::start(free_port(), Duration::ZERO);
    let sshd = Sshd::start(gateway.addr.port());
    let dir = tempfile::tempdir().unwrap();
    let local = free_port();
    let mut ssh = forward_from_config(&sshd, dir.path(), local, gateway.addr.port(), 0);
    let config = format!("{}hygiene_interval = \"1s\"\n", forward_toml("t", local));
    let exporter = Exporter::start(&config);
    let seen =
        exporter.wait_for("ServerAliveInterval 0 seen as a risk", T, |m| risk(m, "server_alive_off") == Some(1.0));
    for careful in ["exit_on_forward_failure_off", "connect_timeout_unset", "strict_host_key_checking_off"] {
        assert_eq!(risk(&seen, careful), Some(0.0), "{careful}: the Host block sets it");
    }
    let status = exporter.status();
    let risks = &status["forwards"][0]["ssh_option_risks"];
    assert_eq!(risks[0]["option"].as_str(), Some("server_alive_off"), "{risks}");
    let (_, page) = exporter.get("/", None);
    assert!(page.contains("ssh options") && page.contains("server_alive_off"), "the status page shows the risk");

    let said = doctor(dir.path(), &config, |_| {});
    assert!(
        said.contains("server_alive_off") && said.contains("ServerAliveInterval 15"),
        "the doctor prints the fix:\n{said}"
    );

    // The same forward restarted with keepalives: a new owner, resolved again, no risk.
    ssh.signal(libc::SIGTERM);
    ssh.wait_exit(Duration::from_secs(10)).expect("ssh exits");
    let mut ssh = forward_from_config(&sshd, dir.path(), local, gateway.addr.port(), 15);
    exporter.wait_for("ServerAliveInterval 15 is no risk", T, |m| risk(m, "server_alive_off") == Some(0.0));
    // 15 x 3 = 45 s to notice a dead path: what the fix recommends, so no note about waking.
    let said = doctor(dir.path(), &config, |_| {});
    assert!(!said.contains("notices its dead path"), "{said}");

    // Keepalives every minute: 3 minutes after a wake before ssh notices, and the doctor says what that costs.
    ssh.signal(libc::SIGTERM);
    ssh.wait_exit(Duration::from_secs(10)).expect("ssh exits");
    let _ssh = forward_from_config(&sshd, dir.path(), local, gateway.addr.port(), 60);
    let said = doctor(dir.path(), &config, |_| {});
    assert!(
        said.contains("ServerAliveInterval x ServerAliveCountMax = 180 s")
            && said.contains("openclaw_tunnel_resume_seconds"),
        "the doctor relates a slow resume to the keepalives:\n{said}"
    );
}

#[test]
fn the_clis_url_is_checked_against_the_forwards_localhost_127_0_0_1_and_a_port_with_no_forward() {
    let gateway = Gateway::start(free_port(), Duration::ZERO);
    let sshd = Sshd::start(gateway.addr.port());
    let local = free_port();
    // ssh -L 127.0.0.1:PORT listens on IPv4 only.
    let _forward = sshd.forward(local, gateway.addr.port());
    let dir = tempfile::tempdir().unwrap();
    let cli_config = dir.path().join("openclaw.json");
    let config = format!("[scheduler]\ncli_url_interval = \"1s\"\n{}", forward_toml("t", local));
    let cli_env = |command: &mut Command| {
        command.env("OPENCLAW_CONFIG_PATH", &cli_config).env("HOME", dir.path()).env_remove("OPENCLAW_GATEWAY_URL");
    };
    let matches = |scrape: &Scrape| scrape.get("openclaw_gateway_cli_url_matches{forward=\"t\"}");
    let unused = free_port();
    for (url, expected) in [
        (format!("ws://localhost:{local}"), 0.0),
        (format!("ws://127.0.0.1:{local}"), 1.0),
        (format!("ws://127.0.0.1:{unused}"), 0.0),
    ] {
        std::fs::write(&cli_config, format!("{{ gateway: {{ mode: 'remote', remote: {{ url: '{url}' }} }} }}\n"))
            .unwrap();
        let exporter = Exporter::start_with(&config, |command| {
            cli_env(command);
            command
        });
        exporter.wait_for(&format!("{url}: matches {expected}"), T, |m| matches(m) == Some(expected));
        let status = exporter.status();
        let cli_url = &status["forwards"][0]["cli_url"];
        assert_eq!(cli_url["url"].as_str(), Some(url.as_str()), "{cli_url}");
        let (_, page) = exporter.get("/", None);
        assert_eq!(page.contains("not measured"), expected == 0.0, "the status page says whether the CLI uses it");

        let said = doctor(dir.path(), &config, cli_env);
        if expected == 1.0 {
            assert!(cli_url["problem"].is_null(), "{cli_url}");
            assert!(!said.contains("the CLI's URL"), "no note when the CLI uses this forward:\n{said}");
        } else if url.contains("localhost") {
            let problem = cli_url["problem"].as_str().unwrap_or_default();
            assert!(problem.contains("::1") && problem.contains(&format!("127.0.0.1:{local} only")), "{problem}");
            assert!(said.contains("says localhost") && said.contains(&format!("use ws://127.0.0.1:{local}")), "{said}");
        } else {
            let named = format!("points at port {unused}, where no configured forward listens");
            assert!(cli_url["problem"].as_str().unwrap_or_default().contains(&named), "{cli_url}");
            assert!(said.contains(&named), "{said}");
        }
    }
}

/// Answers within seconds of start (issue 30): with the orphan check every 30 s and the auth probe every hour,
/// the orphan gauge and the token file's local revision are present within 5 s. Before, each probe's first round
/// came at a random phase of its whole interval (up to 30 s, up to an hour).
#[test]
fn first_rounds_come_within_seconds_of_start() {
    let home = tempfile::tempdir().unwrap();
    let token_file = home.path().join("token");
    std::fs::write(&token_file, "tok-r1").unwrap();
    let config = format!(
        "{}hygiene_interval = \"30s\"\n[auth_probe]\nenabled = true\ninterval = \"1h\"\ntoken_file = \"{}\"\n\
         [auth]\ncurrent = \"r1\"\n[[auth.revision]]\nname = \"r1\"\n{}\n[[auth.revision]]\nname = \"r2\"\n{}\n",
        forward_toml("t", free_port()),
        token_file.display(),
        fingerprint_line("tok-r1"),
        fingerprint_line("tok-r2"),
    );
    let started = Instant::now();
    let exporter = Exporter::start_with(&config, |command| {
        command
            .env("HOME", home.path())
            .env_remove("OPENCLAW_GATEWAY_TOKEN")
            .env_remove("OPENCLAW_CONFIG_PATH")
            .env_remove("OPENCLAW_STATE_DIR")
    });
    let revision = "openclaw_gateway_token_local_revision{source=\"token_file\",token_revision=\"r1\"}";
    exporter.wait_for("the orphan gauge and the local revision", Duration::from_secs(5), |m| {
        orphans(m).is_some() && m.get(revision) == Some(1.0)
    });
    eprintln!("both present {:?} after start", started.elapsed());
    // The token sources are read on their own 10 s schedule, not in the hour-long auth round: a rotation
    // written to the token file shows as the new local revision within one read, and the old one goes.
    std::fs::write(&token_file, "tok-r2").unwrap();
    let rotated = Instant::now();
    let r2 = "openclaw_gateway_token_local_revision{source=\"token_file\",token_revision=\"r2\"}";
    exporter.wait_for("the rotated local revision", Duration::from_secs(15), |m| {
        m.get(r2) == Some(1.0) && m.get(revision).is_none()
    });
    eprintln!("r2 shown {:?} after the token file changed", rotated.elapsed());
}

/// The runbook's step 3, "Add LocalForward": the forward written in an ssh config the test owns, started as
/// `ssh -F CONFIG -N mac` (no -L on any command line). A second `ssh -N mac` whose bind fails and that keeps
/// running (`-o ExitOnForwardFailure=no`) is an orphan found through `ssh -G` of its own command line, listed
/// with its pid, and gone once killed; `init` writes the forward from the running process alone.
#[test]
fn a_forward_written_in_the_ssh_config_counts_its_orphans_and_init_writes_it() {
    let gateway = Gateway::start(free_port(), Duration::ZERO);
    let sshd = Sshd::start(gateway.addr.port());
    let dir = tempfile::tempdir().unwrap();
    let local = free_port();
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(&known_hosts, sshd.known_hosts_line()).unwrap();
    let forward_line = format!("LocalForward 127.0.0.1:{local} 127.0.0.1:{}", gateway.addr.port());
    let ssh_config = dir.path().join("ssh_config");
    std::fs::write(&ssh_config, sshd.host_block("mac", &known_hosts, &[&forward_line])).unwrap();
    let cfg = ssh_config.to_str().unwrap().to_owned();
    let _forward = Proc::spawn_group("ssh -N mac", Command::new("ssh").args(["-F", &cfg, "-N", "mac"]));
    wait_listening(std::net::SocketAddr::from(([127, 0, 0, 1], local)), "the config's forward", T);

    let config = format!("{}hygiene_interval = \"1s\"\n", forward_toml("t", local));
    let exporter = Exporter::start(&config);
    exporter.wait_for("no orphan while one ssh holds the forward", T, |m| orphans(m) == Some(0.0));

    let mut orphan = Proc::spawn_group(
        "second ssh -N mac",
        Command::new("ssh").args(["-F", &cfg, "-o", "ExitOnForwardFailure=no", "-N", "mac"]),
    );
    exporter.wait_for("the second ssh, forwarding by its config, counted as an orphan", T, |m| orphans(m) == Some(1.0));
    let status = exporter.status();
    let listed = &status["forwards"][0]["ssh_orphans"];
    assert_eq!(listed[0]["pid"].as_u64(), Some(u64::from(orphan.pid())), "{listed}");
    let said = doctor(dir.path(), &config, |_| {});
    assert!(said.contains(&format!("orphaned ssh pid {}", orphan.pid())), "the doctor sees it too:\n{said}");
    orphan.signal(libc::SIGTERM);
    orphan.wait_exit(Duration::from_secs(10)).expect("the orphan exits");
    exporter.wait_for("no orphan once it is killed", T, |m| orphans(m) == Some(0.0));

    // init, given no ssh config of its own to read, finds the forward through the running `ssh -F CONFIG -N mac`.
    let output = Command::new(workspace_binary("openclaw-tunnel-exporter"))
        .args(["init", "--ssh-config", "/nonexistent", "--remote-port", &gateway.addr.port().to_string()])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains(&format!("name = \"mac\"\nlocal = \"127.0.0.1:{local}\"")), "{text}");
    assert!(text.contains("# from running ssh pid"), "{text}");
}
