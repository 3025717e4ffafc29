//! The deploy files pass the real tools' checks: `systemd-analyze verify` on the units, plists parse,
//! `promtool check config` on the scrape and agent configs, `amtool check-config` on the Alertmanager route.

use std::path::{Path, PathBuf};
use std::process::Command;

use e2e::*;

fn deploy() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn check(program: &str, args: &[&str], file: &Path) {
    let output = Command::new(find_program(program)).args(args).arg(file).output().unwrap();
    let report = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{program} {args:?} {}:\n{report}", file.display());
}

/// The installed systemd's version (`systemctl --version`: "systemd 252 (...)").
fn systemd_version() -> u32 {
    let output = Command::new("systemctl").arg("--version").output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    text.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("systemctl --version: {text}"))
}

#[test]
fn systemd_units_verify_and_back_off() {
    let dir = tempfile::tempdir().unwrap();
    // What systemd before 254 says of the backoff keys: they are ignored, and nothing else may be said.
    let tolerated = if systemd_version() < 254 { &["'RestartSteps'", "'RestartMaxDelaySec'"][..] } else { &[][..] };
    for unit in ["openclaw-tunnel-exporter.service", "openclaw-tunnel@.service"] {
        let text = std::fs::read_to_string(deploy().join("systemd").join(unit)).unwrap();
        for line in ["StartLimitIntervalSec=0", "RestartSec=5", "RestartSteps=6", "RestartMaxDelaySec=5min"] {
            assert!(text.lines().any(|l| l == line), "{unit}: no `{line}`");
        }
        // verify checks that ExecStart's binary exists: point the documented install path at the one just
        // built. Nothing else in the unit changes.
        let text = text.replace(
            "/usr/local/bin/openclaw-tunnel-exporter",
            workspace_binary("openclaw-tunnel-exporter").to_str().unwrap(),
        );
        // A template is verified as an instance.
        let name = unit.replace("@.service", "@mac-ap1.service");
        std::fs::write(dir.path().join(&name), text).unwrap();
        let output = Command::new("systemd-analyze").arg("verify").arg(dir.path().join(&name)).output().unwrap();
        let report = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "systemd-analyze verify {unit}:\n{report}");
        for said in report.lines().filter(|line| !line.trim().is_empty()) {
            let known = said.contains("Unknown key") && tolerated.iter().any(|key| said.contains(key));
            assert!(known, "systemd-analyze verify {unit} (systemd {}): {said}", systemd_version());
        }
    }
}

/// The socket unit verifies beside its service, and its address is the default config's `web.listen`; the laptop
/// agent's `Sockets` group (named `Listeners`, as the exporter asks launchd) holds the same address.
#[test]
fn the_socket_unit_and_the_agent_s_sockets_hold_the_default_web_address() {
    let dir = tempfile::tempdir().unwrap();
    for unit in ["openclaw-tunnel-exporter.service", "openclaw-tunnel-exporter.socket"] {
        let text = std::fs::read_to_string(deploy().join("systemd").join(unit)).unwrap();
        let text = text.replace(
            "/usr/local/bin/openclaw-tunnel-exporter",
            workspace_binary("openclaw-tunnel-exporter").to_str().unwrap(),
        );
        std::fs::write(dir.path().join(unit), text).unwrap();
    }
    let socket = dir.path().join("openclaw-tunnel-exporter.socket");
    let output = Command::new("systemd-analyze").arg("verify").arg(&socket).output().unwrap();
    let report = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "systemd-analyze verify the socket unit:\n{report}");
    let tolerated = ["'RestartSteps'", "'RestartMaxDelaySec'"];
    for said in report.lines().filter(|line| !line.trim().is_empty()) {
        let known =
            systemd_version() < 254 && said.contains("Unknown key") && tolerated.iter().any(|k| said.contains(k));
        assert!(known, "systemd-analyze verify the socket unit: {said}");
    }
    let default = Command::new(workspace_binary("openclaw-tunnel-exporter")).arg("default-config").output().unwrap();
    let default = String::from_utf8_lossy(&default.stdout).into_owned();
    let web = default
        .lines()
        .find_map(|line| line.strip_prefix("listen = \"").and_then(|rest| rest.strip_suffix('"')))
        .expect("web.listen in the default config");
    let unit = std::fs::read_to_string(&socket).unwrap();
    assert!(unit.lines().any(|line| line == format!("ListenStream={web}")), "{unit}");
    let (host, port) = web.rsplit_once(':').unwrap();
    let check = "import plistlib,sys; d=plistlib.load(open(sys.argv[1],'rb')); \
        s=d['Sockets']['Listeners'][0]; \
        assert (s['SockNodeName'], s['SockServiceName'], s['SockType']) == (sys.argv[2], sys.argv[3], 'stream'), s";
    let plist = deploy().join("launchd/laptop/ai.openclaw.tunnel-exporter.plist");
    let output = Command::new("python3").args(["-c", check]).arg(&plist).args([host, port]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

/// Socket activation as systemd does it (`systemd-socket-activate`, systemd's own tool, speaks the same
/// protocol: it holds the addresses, then execs the exporter on the first connection with `LISTEN_FDS`): the
/// exporter serves `/metrics` and its tap on the sockets it was handed, the connection that woke it included,
/// and never binds (no failed bind counted while the sockets are held for it).
#[test]
fn socket_activation_hands_the_web_and_tap_addresses_over() {
    let gateway = Gateway::start(free_port(), std::time::Duration::ZERO);
    let web = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let tap = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let config = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    let text = format!(
        "[web]\nlisten = \"{web}\"\n{}{}[[auth_tap]]\nforward = \"t\"\nlisten = \"{tap}\"\nupstream = \"{}\"\n",
        forward_toml("t", gateway.addr.port()),
        trusting("gateway-standin"),
        gateway.addr
    );
    std::fs::write(config.path(), text).unwrap();
    let mut command = Command::new(find_program("systemd-socket-activate"));
    command
        .args(["-l", &web.to_string(), "-l", &tap.to_string()])
        .arg(workspace_binary("openclaw-tunnel-exporter"))
        .arg("--config")
        .arg(config.path())
        .env("RUST_LOG", "info");
    let activated = Proc::spawn("socket-activated exporter", &mut command);
    let t = std::time::Duration::from_secs(30);
    wait_listening(web, "systemd-socket-activate", t);
    // The first request wakes the exporter and waits in the handed-over socket's queue until it answers.
    let metrics = ureq::get(format!("http://{web}/metrics")).call().unwrap().body_mut().read_to_string().unwrap();
    let scrape = Scrape::parse(&metrics);
    assert!(metrics.contains("openclaw_exporter_build_info"), "the exporter answered on the handed-over socket");
    for listener in ["web", "auth_tap"] {
        let failed = format!("openclaw_exporter_listen_failures_total{{listener=\"{listener}\",reason=\"in_use\"}}");
        assert_eq!(scrape.value(&failed), 0.0, "{listener}: no bind of its own was tried:\n{}", activated.output());
    }
    let log = activated.output();
    assert!(log.contains("listening sockets handed over by the service manager"), "{log}");
    use std::io::{Read, Write};
    let mut through = std::net::TcpStream::connect(tap).unwrap();
    through.set_read_timeout(Some(t)).unwrap();
    through.write_all(b"GET /healthz HTTP/1.1\r\nHost: tap\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    let _ = through.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 200 "),
        "the tap relays on its handed-over socket: {answer}\n{}",
        activated.output()
    );
}

#[test]
fn the_tunnel_units_set_autossh_deliberately_and_no_deploy_file_cites_a_path_users_lack() {
    let unit = std::fs::read_to_string(deploy().join("systemd/openclaw-tunnel@.service")).unwrap();
    let plist = std::fs::read_to_string(deploy().join("launchd/laptop/ai.openclaw.tunnel.mac-ap1.plist")).unwrap();
    assert!(unit.contains("Environment=AUTOSSH_GATETIME=0") && unit.contains("Environment=AUTOSSH_POLL=30"));
    assert!(plist.contains("<key>AUTOSSH_GATETIME</key><string>0</string>"));
    assert!(plist.contains("<key>AUTOSSH_POLL</key><string>30</string>"));
    let mut files = vec![deploy()];
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().flatten().map(|entry| entry.path()));
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        for cited in ["../shared", "SSH-FORWARD.md", "OPENCLAW-GATEWAY.md", "METRICS.md", "CROSS-BUILD.md"] {
            assert!(!text.contains(cited), "{} cites {cited}, which a user does not have", path.display());
        }
    }
}

#[test]
fn launchd_plists_parse() {
    let mut plists = Vec::new();
    for role in ["laptop", "gateway-mac"] {
        for entry in std::fs::read_dir(deploy().join("launchd").join(role)).unwrap().flatten() {
            if entry.path().extension().is_some_and(|e| e == "plist") {
                plists.push(entry.path());
            }
        }
    }
    assert_eq!(plists.len(), 3, "two laptop agents and the gateway daemon: {plists:?}");
    for path in plists {
        // launchd's own keys with their types: a string Label, an array of strings, booleans where launchd
        // reads booleans.
        let check = "import plistlib,sys; d=plistlib.load(open(sys.argv[1],'rb')); \
            assert isinstance(d['Label'], str) and d['Label'], 'Label'; \
            assert d['ProgramArguments'] and all(isinstance(a, str) for a in d['ProgramArguments']), 'ProgramArguments'; \
            assert d['RunAtLoad'] is True and d['KeepAlive'] is True, 'RunAtLoad/KeepAlive'; \
            assert type(d['ThrottleInterval']) is int and d['ThrottleInterval'] >= 30, 'ThrottleInterval'; \
            assert isinstance(d.get('StandardErrorPath', ''), str)";
        let output = Command::new("python3").args(["-c", check]).arg(&path).output().unwrap();
        assert!(output.status.success(), "{}: {}", path.display(), String::from_utf8_lossy(&output.stderr));
    }
}

#[test]
fn the_gateway_mac_config_validates_and_its_doctor_runs_the_exposure_step() {
    let plist = deploy().join("launchd/gateway-mac/ai.openclaw.tunnel-exporter.gateway.plist");
    let config = deploy().join("launchd/gateway-mac/config.toml");
    // The daemon runs the documented config path; the file in the repo is that config.
    let text = std::fs::read_to_string(&plist).unwrap();
    assert!(text.contains("<string>/opt/openclaw-tunnel-exporter/etc/gateway.toml</string>"), "{text}");
    assert!(text.contains("<string>/opt/openclaw-tunnel-exporter/bin/openclaw-tunnel-exporter</string>"), "{text}");
    assert!(
        !text.contains("/usr/local/"),
        "the root daemon runs nothing from /usr/local (Homebrew's, a user's): {text}"
    );
    let binary = workspace_binary("openclaw-tunnel-exporter");
    let checked = Command::new(&binary).arg("--config").arg(&config).arg("check-config").output().unwrap();
    let report = String::from_utf8_lossy(&checked.stdout).into_owned() + &String::from_utf8_lossy(&checked.stderr);
    assert!(checked.status.success() && report.contains("0 forward(s)"), "{report}");
    // Only the bind-exposure step runs on the gateway host, and it reads the real socket table: a loopback
    // listener on the configured port passes.
    let gateway = e2e::Gateway::start(free_port(), std::time::Duration::ZERO);
    let local = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    let configured =
        std::fs::read_to_string(&config).unwrap().replace("port = 18789", &format!("port = {}", gateway.addr.port()));
    let state = tempfile::tempdir().unwrap();
    let state_file = state.path().join("buckets.json");
    let configured = configured.replace("/opt/openclaw-tunnel-exporter/var/buckets.json", state_file.to_str().unwrap());
    std::fs::write(local.path(), configured).unwrap();
    let doctor = Command::new(&binary).arg("--config").arg(local.path()).arg("doctor").output().unwrap();
    let report = String::from_utf8_lossy(&doctor.stdout).into_owned() + &String::from_utf8_lossy(&doctor.stderr);
    assert_eq!(doctor.status.code(), Some(0), "{report}");
    assert!(
        report.contains("gateway bound to loopback only") && report.contains(&gateway.addr.to_string()),
        "{report}"
    );
    assert!(!report.contains("ssh owns the local forward"), "no forward steps on the gateway host: {report}");
}

/// The laptop agents log to the user's own Logs folder, never to /tmp (another user can pre-create a file there).
#[test]
fn the_laptop_agents_log_under_the_user_s_library() {
    for name in ["ai.openclaw.tunnel-exporter.plist", "ai.openclaw.tunnel.mac-ap1.plist"] {
        let text = std::fs::read_to_string(deploy().join("launchd/laptop").join(name)).unwrap();
        assert!(!text.contains("/tmp/"), "{name}: {text}");
        assert!(text.contains("<key>StandardErrorPath</key><string>/Users/USER/Library/Logs/"), "{name}: {text}");
    }
}

/// The gateway-Mac install script as root (on Linux: the checks are POSIX sh and stat): a clean install lands
/// root-owned and passes; a prefix another user owns, or a directory above it others can write, is refused
/// with the path named, and nothing is bootstrapped.
#[test]
fn the_gateway_mac_install_script_refuses_paths_another_user_can_replace() {
    if !root_or_skip("the_gateway_mac_install_script_refuses_paths_another_user_can_replace", "install as root") {
        return;
    }
    let script = deploy().join("launchd/gateway-mac/install.sh");
    let binary = workspace_binary("openclaw-tunnel-exporter");
    let run = |prefix: &std::path::Path, daemons: &std::path::Path| {
        let output = Command::new("sh")
            .arg(&script)
            .arg(&binary)
            .env("OCE_PREFIX", prefix)
            .env("OCE_DAEMONS", daemons)
            .env("OCE_NO_LAUNCHCTL", "1")
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr),
        )
    };
    // A root-owned, 0755 base (a temporary directory is 0700: fine, root's own).
    let base = tempfile::tempdir().unwrap();
    let (ok, said) = run(&base.path().join("opt"), &base.path().join("LaunchDaemons"));
    assert!(ok, "{said}");
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let installed = std::fs::metadata(base.path().join("opt/bin/openclaw-tunnel-exporter")).unwrap();
    assert_eq!((installed.uid(), installed.mode() & 0o777), (0, 0o755));
    let config = std::fs::metadata(base.path().join("opt/etc/gateway.toml")).unwrap();
    assert_eq!((config.uid(), config.mode() & 0o777), (0, 0o644));

    // The prefix handed to another user (nobody) before the install: refused, naming it.
    let nobody = base.path().join("nobody-opt");
    std::fs::create_dir(&nobody).unwrap();
    std::os::unix::fs::chown(&nobody, Some(65534), Some(65534)).unwrap();
    let (ok, said) = run(&nobody, &base.path().join("LaunchDaemons"));
    assert!(!ok, "installed into a prefix nobody owns: {said}");
    assert!(said.contains(&nobody.display().to_string()) && said.contains("uid 65534"), "{said}");

    // A directory above the prefix writable by others (not sticky): refused too.
    let open = base.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (ok, said) = run(&open.join("opt"), &base.path().join("LaunchDaemons"));
    assert!(!ok, "{said}");
    assert!(said.contains(&open.display().to_string()) && said.contains("writable by group or others"), "{said}");
}

#[test]
fn prometheus_and_alertmanager_configs_check() {
    check("promtool", &["check", "config"], &deploy().join("prometheus/scrape.yml"));
    check("promtool", &["check", "config", "--agent"], &deploy().join("prometheus/agent.yml"));
    check("amtool", &["check-config"], &deploy().join("alertmanager/alertmanager.yml"));
}

#[test]
fn the_ssh_config_example_parses_with_ssh() {
    // ssh -G prints the resolved options of a host without connecting.
    let output = Command::new("ssh")
        .args(["-G", "-F"])
        .arg(deploy().join("ssh/config.example"))
        .arg("mac-ap1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    for expected in [
        "proxyjump bastion",
        "localforward [127.0.0.1]:18789 [127.0.0.1]:18789",
        "exitonforwardfailure yes",
        "serveraliveinterval 5",
    ] {
        assert!(text.contains(expected), "ssh -G lacks {expected:?}:\n{text}");
    }
    // The options the exporter flags (openclaw_tunnel_ssh_option_risk): the shipped example has none.
    assert_eq!(probes::ssh_options::risks_of_ssh_g(&text), [], "{text}");
}
