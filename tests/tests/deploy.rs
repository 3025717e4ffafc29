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
    for entry in std::fs::read_dir(deploy().join("launchd")).unwrap().flatten() {
        let path = entry.path();
        let output = Command::new("python3")
            .args(["-c", "import plistlib,sys; d=plistlib.load(open(sys.argv[1],'rb')); assert d['Label'] and d['ProgramArguments']"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}: {}", path.display(), String::from_utf8_lossy(&output.stderr));
    }
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
