//! Bad configuration files: each gets a clear error naming the file, key and value, and a non-zero exit,
//! from `check-config` and from a plain run alike.

use std::process::Command;

use e2e::{run_with_stdin, workspace_binary};

fn check(config: &str, env: &[(&str, &str)]) -> (bool, String, tempfile::NamedTempFile) {
    let file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(file.path(), config).unwrap();
    let output = Command::new(workspace_binary("openclaw-tunnel-exporter"))
        .arg("check-config")
        .arg("--config")
        .arg(file.path())
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stderr).into_owned() + &String::from_utf8_lossy(&output.stdout);
    (output.status.success(), text, file)
}

fn assert_rejected(config: &str, expected: &[&str]) {
    let (ok, text, file) = check(config, &[]);
    assert!(!ok, "accepted a bad config:\n{config}\n{text}");
    assert!(text.contains(&file.path().display().to_string()), "error does not name the file:\n{text}");
    for needle in expected {
        assert!(text.contains(needle), "error lacks {needle:?}:\n{text}");
    }
}

const GOOD: &str = "[[forward]]\nname = \"mac-ap1\"\nlocal = \"127.0.0.1:18789\"\n";

#[test]
fn a_good_file_passes() {
    let (ok, text, _file) = check(GOOD, &[]);
    assert!(ok, "{text}");
    assert!(text.contains("configuration OK"), "{text}");
}

#[test]
fn an_unknown_key_is_an_error() {
    assert_rejected(&format!("{GOOD}syn_intervall = \"1s\"\n"), &["forward[0].syn_intervall", "unknown key"]);
    assert_rejected("[webb]\nlisten = \"127.0.0.1:1\"\n", &["webb", "unknown key"]);
}

#[test]
fn duplicate_forward_names_are_an_error() {
    assert_rejected(&format!("{GOOD}{GOOD}"), &["forward[1].name", "\"mac-ap1\"", "duplicate"]);
}

#[test]
fn a_bad_duration_is_an_error() {
    assert_rejected(&format!("{GOOD}timeout = \"soon\"\n"), &["forward[0].timeout", "\"soon\"", "duration"]);
    assert_rejected(&format!("{GOOD}syn_interval = \"0s\"\n"), &["forward[0].syn_interval", "\"0s\""]);
}

#[test]
fn a_bad_address_is_an_error() {
    assert_rejected(
        "[[forward]]\nname = \"a\"\nlocal = \"mac.example:18789\"\n",
        &["forward[0].local", "\"mac.example:18789\"", "address"],
    );
    assert_rejected(&format!("[web]\nlisten = \"127.0.0.1\"\n{GOOD}"), &["web.listen", "\"127.0.0.1\""]);
}

#[test]
fn a_non_loopback_listener_must_be_asked_for() {
    assert_rejected(&format!("[web]\nlisten = \"0.0.0.0:19789\"\n{GOOD}"), &["web.listen", "allow_non_loopback"]);
    let (ok, text, _f) = check(&format!("[web]\nlisten = \"0.0.0.0:19789\"\nallow_non_loopback = true\n{GOOD}"), &[]);
    assert!(ok, "{text}");
}

#[test]
fn toml_syntax_errors_name_the_file() {
    assert_rejected("[[forward]\nname = \n", &[]);
}

#[test]
fn every_problem_is_listed_at_once() {
    let (ok, text, _f) = check(
        "[[forward]]\nname = \"a b\"\nlocal = \"x\"\ntimeout = \"1 fortnight\"\nhealth_path = \"healthz\"\n",
        &[],
    );
    assert!(!ok);
    for key in ["forward[0].name", "forward[0].local", "forward[0].timeout", "forward[0].health_path"] {
        assert!(text.contains(key), "{key} missing:\n{text}");
    }
}

#[test]
fn an_environment_override_is_applied_and_named_when_bad() {
    let (ok, text, _f) = check(GOOD, &[("OPENCLAW_EXPORTER__WEB__LISTEN", "127.0.0.1:29999")]);
    assert!(ok && text.contains("127.0.0.1:29999"), "{text}");
    let (ok, text, _f) = check(GOOD, &[("OPENCLAW_EXPORTER__WEB__LISTEN", "nowhere")]);
    assert!(!ok);
    assert!(
        text.contains("environment variable OPENCLAW_EXPORTER__WEB__LISTEN") && text.contains("\"nowhere\""),
        "{text}"
    );
}

#[test]
fn an_environment_variable_aimed_at_a_forward_is_named_and_told_where_forwards_come_from() {
    for variable in ["OPENCLAW_EXPORTER__FORWARD__0__NAME", "OPENCLAW_EXPORTER__AUTH__REVISION__0__NAME"] {
        let (ok, text, _f) = check(GOOD, &[(variable, "x")]);
        assert!(!ok, "{text}");
        assert!(text.contains(&format!("environment variable {variable}")), "{text}");
        assert!(text.contains("come from the config file") && !text.contains("embedded default"), "{text}");
    }
}

#[test]
fn a_forward_on_localhost_is_told_to_use_127_0_0_1() {
    let (ok, text, _f) = check("[[forward]]\nname = \"a\"\nlocal = \"localhost:18789\"\n", &[]);
    assert!(!ok);
    assert!(text.contains("use 127.0.0.1:18789, not localhost"), "{text}");
}

#[test]
fn running_on_a_bad_config_exits_non_zero_without_serving() {
    let file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(file.path(), format!("{GOOD}timeout = \"x\"\n")).unwrap();
    let output =
        Command::new(workspace_binary("openclaw-tunnel-exporter")).arg("--config").arg(file.path()).output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("forward[0].timeout"));
}

#[test]
fn a_missing_file_is_an_error() {
    let output = Command::new(workspace_binary("openclaw-tunnel-exporter"))
        .args(["check-config", "--config", "/nonexistent/exporter.toml"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/exporter.toml"));
}

#[test]
fn a_token_pasted_where_a_fingerprint_belongs_is_rejected_without_being_echoed() {
    let token = "oce-canary-pasted-token-0123456789abcdef";
    let (ok, text, _f) = check(
        &format!("{GOOD}[auth]\ncurrent = \"r1\"\n[[auth.revision]]\nname = \"r1\"\nsha256 = \"{token}\"\n"),
        &[],
    );
    assert!(!ok);
    assert!(text.contains("auth.revision[0].sha256"), "{text}");
    assert!(!text.contains("canary"), "the pasted token was echoed:\n{text}");
    let (ok, text, _f) =
        check(&format!("{GOOD}[auth]\ncurrent = \"r1\"\n[[auth.revision]]\nname = \"r1\"\nhash = \"{token}\"\n"), &[]);
    assert!(!ok);
    assert!(text.contains("auth.revision[0].hash"), "{text}");
    assert!(!text.contains("canary"), "the pasted token was echoed:\n{text}");
}

#[test]
fn fingerprints_are_salted_slow_hashes_and_legacy_sha256_entries_work_with_a_warning() {
    let exporter = workspace_binary("openclaw-tunnel-exporter");
    let long = "3f9a0c7e5b1d4a8e6c2f0b9d7a5e3c1f8b6d4a2e";
    let first = run_with_stdin(&exporter, &["fingerprint"], long.as_bytes());
    let second = run_with_stdin(&exporter, &["fingerprint"], long.as_bytes());
    let (first_line, second_line) = (String::from_utf8_lossy(&first.stdout), String::from_utf8_lossy(&second.stdout));
    assert!(first_line.starts_with("hash = \"$argon2id$v=19$m=19456,t=2,p=1$"), "{first_line}");
    assert_ne!(first_line, second_line, "a random salt per hash");
    assert!(first.stderr.is_empty(), "no warning for a long token: {}", String::from_utf8_lossy(&first.stderr));
    let short = run_with_stdin(&exporter, &["fingerprint"], b"hunter2");
    assert!(short.status.success());
    let warning = String::from_utf8_lossy(&short.stderr);
    assert!(warning.contains("7 bytes") && !warning.contains("hunter2"), "{warning}");

    // Both entry kinds load; the legacy one is named in a warning.
    let legacy = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    let (ok, text, _f) = check(
        &format!(
            "{GOOD}[auth]\ncurrent = \"r2\"\n[[auth.revision]]\nname = \"r1\"\nsha256 = \"{legacy}\"\n\
             [[auth.revision]]\nname = \"r2\"\n{}\n",
            first_line.trim()
        ),
        &[],
    );
    assert!(ok, "{text}");
    assert!(text.contains("warning: auth.revision \"r1\": an unsalted sha256"), "{text}");
    assert!(!text.contains("\"r2\": an unsalted"), "{text}");
}

#[test]
fn auth_and_tap_references_are_checked() {
    assert_rejected(
        &format!("{GOOD}[auth]\ncurrent = \"r9\"\n[[auth_tap]]\nforward = \"nope\"\nlisten = \"127.0.0.1:1\"\nupstream = \"127.0.0.1:2\"\n"),
        &["auth.current", "\"r9\"", "auth_tap[0].forward", "\"nope\""],
    );
    assert_rejected(
        &format!("{GOOD}[[model_host]]\nname = \"m\"\nurl = \"ftp://x\"\n"),
        &["model_host[0].url", "\"ftp://x\""],
    );
}

#[test]
fn a_remote_write_url_with_a_password_is_refused_without_showing_it() {
    let config = "[remote_write]\nurl = \"https://laptops:hunter2-secret@metrics.example/api/v1/write\"\n";
    assert_rejected(config, &["remote_write.url", "basic_auth", "metrics.example/api/v1/write"]);
    let (_, text, _file) = check(config, &[]);
    assert!(!text.contains("hunter2-secret"), "the password was printed:\n{text}");
    // The same from a plain run.
    let file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(file.path(), config).unwrap();
    let output =
        Command::new(workspace_binary("openclaw-tunnel-exporter")).arg("--config").arg(file.path()).output().unwrap();
    assert!(!output.status.success());
    let text = String::from_utf8_lossy(&output.stderr).into_owned() + &String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("remote_write.url") && !text.contains("hunter2-secret"), "{text}");
}

#[test]
fn remote_write_backoffs_must_be_ordered() {
    assert_rejected(
        "[remote_write]\nurl = \"http://127.0.0.1:9/api/v1/write\"\nmin_backoff = \"10s\"\nmax_backoff = \"1s\"\n",
        &["remote_write.max_backoff", "1s", "min_backoff"],
    );
}

/// A remote-write password over plain `http://` to another host: accepted, with a warning naming the key and the
/// host, never the password.
#[test]
fn a_password_over_plain_http_to_another_host_is_warned_of() {
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("password");
    std::fs::write(&password, "pa55-w0rd-e2e").unwrap();
    let config = |url: &str| {
        format!(
            "{GOOD}[remote_write]\nurl = \"{url}\"\nqueue_dir = \"{}\"\nbasic_auth = {{ username = \"laptops\", password_file = \"{}\" }}\n",
            dir.path().join("queue").display(),
            password.display()
        )
    };
    let (ok, text, _file) = check(&config("http://metrics.example:8428/api/v1/write"), &[]);
    assert!(ok, "{text}");
    assert!(
        text.contains("warning: remote_write.url")
            && text.contains("remote_write.basic_auth would cross the network in clear text to metrics.example"),
        "{text}"
    );
    assert!(!text.contains("pa55-w0rd-e2e"), "{text}");
    let (ok, text, _file) = check(&config("https://metrics.example/api/v1/write"), &[]);
    assert!(ok && !text.contains("clear text"), "{text}");
}
