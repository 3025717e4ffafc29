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

#[test]
fn systemd_units_verify() {
    let dir = tempfile::tempdir().unwrap();
    for unit in ["openclaw-tunnel-exporter.service", "openclaw-tunnel@.service"] {
        let text = std::fs::read_to_string(deploy().join("systemd").join(unit)).unwrap();
        // verify checks that ExecStart's binary exists: point the documented install path at the one just
        // built. Nothing else in the unit changes.
        let text = text.replace(
            "/usr/local/bin/openclaw-tunnel-exporter",
            workspace_binary("openclaw-tunnel-exporter").to_str().unwrap(),
        );
        // A template is verified as an instance.
        let name = unit.replace("@.service", "@mac-ap1.service");
        std::fs::write(dir.path().join(&name), text).unwrap();
        check("systemd-analyze", &["verify"], &dir.path().join(&name));
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
    assert!(text.contains("/usr/local/etc/openclaw-tunnel-exporter/gateway.toml"), "{text}");
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
    let configured =
        configured.replace("/usr/local/var/openclaw-tunnel-exporter/buckets.json", state_file.to_str().unwrap());
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
}
