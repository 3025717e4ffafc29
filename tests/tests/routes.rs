//! Every road to the gateway, end to end, as a team on those roads runs it: the REAL OpenClaw gateway from npm
//! in a network namespace started with `--bind lan`, reached directly at its LAN address over `ws://`, over
//! `wss://` to its own TLS with a pinned certificate, and over `wss://` through a TLS front with a CA-signed
//! certificate (stunnel in front of the gateway's loopback, as Tailscale Serve fronts it); a recorder at a
//! public-looking address; an impostor with another certificate at the pinned address. The exporter, its
//! doctor and `init` run as an ordinary user the test creates, with the token where the CLI keeps it
//! (`gateway.remote.token` in `~/.openclaw/openclaw.json`).
//!
//! Needs root (network namespaces, the test user). One real gateway at a time (each ~700 MB, and they share
//! the hard-coded /tmp/openclaw): the two tests that start one hold [`REAL_GATEWAY`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use e2e::*;

const T: Duration = Duration::from_secs(40);

static REAL_GATEWAY: Mutex<()> = Mutex::new(());

fn canary(what: &str) -> String {
    format!("oce-route-{what}-{}-{}", std::process::id(), Instant::now().elapsed().as_nanos())
}

/// A certificate and key written as PEM files.
struct Pem {
    cert: PathBuf,
    key: PathBuf,
    sha256: String,
}

fn write_pem(dir: &Path, name: &str, cert: &rcgen::Certificate, key: &rcgen::KeyPair) -> Pem {
    let (cert_path, key_path) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let sha256 = probes::route::Fingerprint::of(cert.der()).to_string();
    Pem { cert: cert_path, key: key_path, sha256 }
}

/// A self-signed certificate as the gateway's `autoGenerate` makes one: `CN=openclaw-gateway`, no SAN.
fn gateway_certificate(dir: &Path, name: &str) -> Pem {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, "openclaw-gateway");
    write_pem(dir, name, &params.self_signed(&key).unwrap(), &key)
}

/// A private CA (its PEM at `ca.pem`) and the leaves it signs.
struct Ca {
    dir: PathBuf,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Ca {
    fn new(dir: &Path) -> Ca {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "oce test tailnet CA");
        std::fs::write(dir.join("ca.pem"), params.self_signed(&key).unwrap().pem()).unwrap();
        Ca { dir: dir.to_owned(), issuer: rcgen::Issuer::new(params, key) }
    }

    fn pem(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    fn leaf(&self, name: &str, san: &str, expired: bool) -> Pem {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec![san.to_owned()]).unwrap();
        if expired {
            params.not_before = rcgen::date_time_ymd(2024, 1, 1);
            params.not_after = rcgen::date_time_ymd(2025, 1, 1);
        }
        write_pem(&self.dir, name, &params.signed_by(&key, &self.issuer).unwrap(), &key)
    }
}

/// The test user with the openclaw CLI's config in its home: remote mode, direct transport, `url`, the token.
fn cli_config(user: &TestUser, url: &str, token: &str, pin: Option<&str>) {
    let mut remote = serde_json::json!({"transport": "direct", "url": url, "token": token});
    if let Some(pin) = pin {
        remote["tlsFingerprint"] = serde_json::Value::String(pin.to_owned());
    }
    let config = serde_json::json!({"gateway": {"mode": "remote", "remote": remote}});
    user.file(".openclaw/openclaw.json", config.to_string().as_bytes(), 0o600);
}

/// The exporter as `user`, on `config`, with nothing of this machine's own CLI environment.
fn exporter(user: &TestUser, config: &str) -> Exporter {
    Exporter::start_with(config, |command| {
        command
            .env_remove("OPENCLAW_GATEWAY_TOKEN")
            .env_remove("OPENCLAW_STATE_DIR")
            .env_remove("OPENCLAW_CONFIG_PATH")
            .env_remove("OPENCLAW_GATEWAY_URL");
        user.wrap(command);
        command
    })
}

/// The exporter's `args` subcommand as `user` on `config`: (exit code, stdout + stderr).
fn run_as(user: &TestUser, config: &str, args: &[&str]) -> (i32, String) {
    let file = user.file(
        "exporter.toml",
        format!("[web]\nlisten = \"127.0.0.1:{}\"\n{config}", free_port()).as_bytes(),
        0o600,
    );
    let mut command = user.command(workspace_binary("openclaw-tunnel-exporter"));
    if !args.contains(&"init") {
        command.arg("--config").arg(&file);
    }
    let output = command
        .args(args)
        .env_remove("OPENCLAW_GATEWAY_TOKEN")
        .env_remove("OPENCLAW_CONFIG_PATH")
        .env_remove("OPENCLAW_GATEWAY_URL")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    (output.status.code().unwrap_or(-1), said)
}

/// A forward table for `url`, fast intervals, and `extra` keys.
fn forward(name: &str, url: &str, extra: &str) -> String {
    format!(
        "[[forward]]\nname = \"{name}\"\nurl = \"{url}\"\nsyn_interval = \"250ms\"\nfirst_byte_interval = \"250ms\"\n\
         readiness_interval = \"1s\"\nws_handshake_interval = \"2s\"\ncontrol_ui_interval = \"2s\"\ntimeout = \"2s\"\n{extra}\n"
    )
}

/// The revision registry (`new` current, `old` the one before) and the auth probe every second.
fn auth(new: &str, old: &str) -> String {
    format!(
        "[auth]\ncurrent = \"new\"\n[[auth.revision]]\nname = \"new\"\n{}\n[[auth.revision]]\nname = \"old\"\n{}\n\n\
         [auth_probe]\nenabled = true\ninterval = \"1s\"\n",
        fingerprint_line(new),
        fingerprint_line(old)
    )
}

fn series(name: &str, forward: &str) -> String {
    format!("{name}{{forward=\"{forward}\"}}")
}

fn down(forward: &str, cause: &str) -> String {
    format!("openclaw_tunnel_down_seconds_total{{forward=\"{forward}\",cause=\"{cause}\"}}")
}

fn probe_auth(scrape: &Scrape, forward: &str, code: Option<&str>, revision: &str) -> f64 {
    scrape.value(&match code {
        None => format!(
            "openclaw_gateway_auth_requests_total{{forward=\"{forward}\",channel=\"probe\",token_revision=\"{revision}\"}}"
        ),
        Some(code) => format!(
            "openclaw_gateway_auth_failures_total{{forward=\"{forward}\",channel=\"probe\",code=\"{code}\",token_revision=\"{revision}\"}}"
        ),
    })
}

fn withheld(scrape: &Scrape, forward: &str) -> f64 {
    scrape.value(&format!("openclaw_gateway_credential_withheld_total{{forward=\"{forward}\",probe=\"auth\"}}"))
}

fn ws_route(addr: SocketAddr) -> probes::route::Route {
    probes::route::Route::Direct(std::sync::Arc::new(probes::route::Direct::ws(&addr.ip().to_string(), addr.port())))
}

/// The ssh-only families say nothing of a route without ssh: absent, not 0.
fn assert_no_ssh_series(scrape: &Scrape, forward: &str) {
    for family in [
        "openclaw_tunnel_ssh_session_up",
        "openclaw_tunnel_ssh_session_state",
        "openclaw_tunnel_forward_hijacked",
        "openclaw_tunnel_ssh_orphans",
        "openclaw_tunnel_owner_lookups_total",
    ] {
        let ours = format!("forward=\"{forward}\"");
        assert!(
            !scrape.text.lines().any(|line| line.starts_with(family) && line.contains(&ours)),
            "{family} for the direct route {forward}:\n{}",
            scrape.text
        );
    }
}

/// `ws://` to the gateway's LAN address: every round up, a wrong token refused once and never sent again (no
/// lockout: the right one is then accepted), the CLI's URL matched, `init` writing the CLI's route, the doctor's
/// direct layers; a stalled exporter's seconds unobserved. Then `wss://` through a TLS front with a CA-signed
/// certificate: up with `ca_file`; expired and wrong-name certificates down `tls_failed`, the token withheld.
#[test]
fn the_real_gateway_over_ws_on_its_lan_address_and_wss_through_a_ca_signed_front() {
    if !root_or_skip("routes::ws_and_front", "a network namespace and a test user") {
        return;
    }
    let _one = REAL_GATEWAY.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let (right, wrong) = (canary("right"), canary("wrong"));
    let net = TestNet::create();
    let gateway = OpenclawGateway::start_lan(&net, &right, None, ws_route);
    let user = TestUser::create();
    let lan_url = format!("ws://{}", gateway.addr);
    cli_config(&user, &lan_url, &wrong, None);

    // The TLS front: stunnel on the namespace's LAN address, to the gateway's loopback there.
    let pki = tempfile::tempdir().unwrap();
    std::fs::set_permissions(pki.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let ca = Ca::new(pki.path());
    let front = SocketAddr::from((net.lan, free_port()));
    let start_front = |pem: &Pem| -> Proc {
        let config = pki.path().join(format!("stunnel-{}.conf", pem.sha256));
        std::fs::write(
            &config,
            format!(
                "foreground = yes\npid =\n[front]\naccept = {front}\nconnect = 127.0.0.1:{}\ncert = {}\nkey = {}\n",
                gateway.addr.port(),
                pem.cert.display(),
                pem.key.display()
            ),
        )
        .unwrap();
        let mut stunnel = Proc::spawn("stunnel", net.command(find_program("stunnel4")).arg(&config));
        stunnel.wait_listening(front, Duration::from_secs(10));
        stunnel
    };
    let good = ca.leaf("front", &net.lan.to_string(), false);
    let mut stunnel = start_front(&good);
    let ca_file = user.file("ca.pem", &std::fs::read(ca.pem()).unwrap(), 0o600);

    let config = format!(
        "{}{}{}",
        forward("lan", &lan_url, ""),
        forward("front", &format!("wss://{front}"), &format!("ca_file = \"{}\"", ca_file.display())),
        auth(&right, &wrong)
    );
    let exporter = exporter(&user, &config);

    // ws:// to a private address: every round up, the gateway up, no ssh series, the road named.
    let up = exporter.wait_for("the ws:// route up", T, |m| {
        m.get(&series("openclaw_gateway_up", "lan")) == Some(1.0)
            && m.value(&series("openclaw_tunnel_up_successes_total", "lan")) >= 8.0
    });
    assert_eq!(
        up.value(&series("openclaw_tunnel_up_checks_total", "lan")),
        up.value(&series("openclaw_tunnel_up_successes_total", "lan")),
        "every round of a healthy ws:// route is up"
    );
    assert_eq!(up.get("openclaw_tunnel_route_info{forward=\"lan\",transport=\"ws\"}"), Some(1.0));
    assert_eq!(up.get(&series("openclaw_tunnel_tls_certificate_verified", "lan")), None, "no TLS on ws://");
    assert_no_ssh_series(&up, "lan");
    // Every probe that speaks to the gateway works on the route: the handshake to the challenge, the Control UI.
    exporter.wait_for("the handshake and the Control UI over ws://", T, |m| {
        m.value(&series("openclaw_gateway_ws_handshake_seconds_count", "lan")) >= 1.0
            && m.get(&series("openclaw_gateway_control_ui_up", "lan")) == Some(1.0)
    });

    // The wrong token: one 401 by revision, and never sent again until it changes.
    exporter.wait_for("the wrong token refused once", T, |m| probe_auth(m, "lan", Some("401"), "old") == 1.0);
    std::thread::sleep(Duration::from_secs(4));
    let later = exporter.scrape();
    assert_eq!(probe_auth(&later, "lan", None, "old"), 1.0, "a refused token is sent once");
    assert_eq!(probe_auth(&later, "lan", Some("401"), "old"), 1.0);
    assert!(exporter.proc.output().contains("not retried until a token source changes"), "{}", exporter.proc.output());
    // The right token: accepted, so the gateway never locked this address out (a lockout answers 429).
    cli_config(&user, &lan_url, &right, None);
    let accepted = exporter.wait_for("the right token accepted", T, |m| probe_auth(m, "lan", None, "new") >= 2.0);
    for code in ["401", "403", "429"] {
        assert_eq!(probe_auth(&accepted, "lan", Some(code), "new"), 0.0, "{code}");
    }
    // The CLI's URL is this route's.
    exporter.wait_for("the CLI's URL matched", T, |m| {
        m.get(&series("openclaw_gateway_cli_url_matches", "lan")) == Some(1.0)
    });

    // wss:// through the CA-signed front: up, verified by the CA and the address it names, not pinned.
    let front_up = exporter.wait_for("the wss:// front up", T, |m| {
        m.get(&series("openclaw_gateway_up", "front")) == Some(1.0)
            && m.get(&series("openclaw_tunnel_tls_certificate_verified", "front")) == Some(1.0)
    });
    assert_eq!(front_up.get(&series("openclaw_tunnel_tls_pinned", "front")), Some(0.0));
    assert_eq!(front_up.get("openclaw_tunnel_route_info{forward=\"front\",transport=\"wss\"}"), Some(1.0));
    exporter.wait_for("the token accepted through the front", T, |m| probe_auth(m, "front", None, "new") >= 1.0);

    // init writes the CLI's own route; the doctor walks the direct layers and passes them all.
    let (code, said) = run_as(&user, "", &["init"]);
    assert_eq!(code, 0, "{said}");
    assert!(
        said.contains(&format!("url = \"{lan_url}\"")) && said.contains("# the openclaw CLI uses this forward"),
        "{said}"
    );
    assert!(!said.contains(&right), "init never prints the token");
    let (code, said) = run_as(&user, &(forward("lan", &lan_url, "") + &auth(&right, &wrong)), &["doctor"]);
    for layer in
        ["gateway host resolves", "connect to the gateway", "TLS and certificate", "token accepted and current"]
    {
        assert!(said.contains(layer), "{layer} in:\n{said}");
    }
    assert_eq!(code, 0, "{said}");

    // A stopped exporter (SIGSTOP, as a sleeping laptop): those seconds unobserved, not down.
    let before = exporter.scrape();
    exporter.proc.signal(libc::SIGSTOP);
    std::thread::sleep(Duration::from_secs(10));
    exporter.proc.signal(libc::SIGCONT);
    let unobserved = series("openclaw_tunnel_unobserved_seconds_total", "lan");
    let after = exporter
        .wait_for("the stall counted unobserved", T, |m| m.value(&unobserved) >= before.value(&unobserved) + 9.0);
    assert_eq!(after.value(&down("lan", "connect_failed")), before.value(&down("lan", "connect_failed")), "not down");

    // The front's certificate expired, then one for another name: down tls_failed, verified 0, no token.
    for (name, san, expired) in
        [("expired", net.lan.to_string(), true), ("other-name", "gateway.example".to_owned(), false)]
    {
        drop(stunnel);
        stunnel = start_front(&ca.leaf(name, &san, expired));
        let before = exporter.scrape();
        let failed = exporter.wait_for(&format!("the {name} certificate down tls_failed"), T, |m| {
            m.value(&down("front", "tls_failed")) > before.value(&down("front", "tls_failed"))
                && m.get(&series("openclaw_tunnel_tls_certificate_verified", "front")) == Some(0.0)
                && withheld(m, "front") > withheld(&before, "front")
        });
        assert_eq!(failed.value(&down("front", "certificate_mismatch")), 0.0, "{name}: a failure, not a mismatch");
        assert_eq!(
            probe_auth(&failed, "front", None, "new"),
            probe_auth(&before, "front", None, "new"),
            "{name}: no token"
        );
    }
    drop(stunnel);
    drop(gateway);
}

/// `wss://` to the gateway's own TLS, pinned: up, verified, the handshake timed apart and the first byte beside
/// a raw TLS client's; a CLI-like client through the auth tap gets its 401 by revision. Then an impostor with
/// another certificate at the pinned address: verified 0 within two rounds, down by certificate, no request
/// head with a credential reaches it, the doctor names what it presented.
#[test]
fn the_real_gateway_over_wss_pinned_and_an_impostor_at_its_address() {
    if !root_or_skip("routes::wss_pinned", "a network namespace and a test user") {
        return;
    }
    let _one = REAL_GATEWAY.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let (right, wrong) = (canary("right"), canary("wrong"));
    let net = TestNet::create();
    let pki = tempfile::tempdir().unwrap();
    let own = gateway_certificate(pki.path(), "gateway");
    let pin = probes::route::Fingerprint::parse(&own.sha256).unwrap();
    let pinned = move |addr: SocketAddr| {
        let verify = probes::route::Verify::Pin(pin);
        probes::route::Route::Direct(std::sync::Arc::new(
            probes::route::Direct::wss(&addr.ip().to_string(), addr.port(), verify).unwrap(),
        ))
    };
    let gateway = OpenclawGateway::start_lan(&net, &right, Some((&own.cert, &own.key)), pinned);
    let user = TestUser::create();
    let url = format!("wss://{}", gateway.addr);
    cli_config(&user, &url, &right, Some(&own.sha256));
    let tap = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let config = format!(
        "{}{}[[auth_tap]]\nforward = \"tls\"\nlisten = \"{tap}\"\n",
        forward("tls", &url, &format!("tls_fingerprint = \"sha256:{}\"", own.sha256)),
        auth(&right, &wrong)
    );
    let exporter = exporter(&user, &config);
    let up = exporter.wait_for("the pinned wss:// route up", T, |m| {
        m.get(&series("openclaw_gateway_up", "tls")) == Some(1.0)
            && m.get(&series("openclaw_tunnel_tls_certificate_verified", "tls")) == Some(1.0)
            && m.value(&series("openclaw_tunnel_tls_handshake_seconds_count", "tls")) >= 4.0
    });
    assert_eq!(up.get(&series("openclaw_tunnel_tls_pinned", "tls")), Some(1.0));
    assert!(up.value(&series("openclaw_tunnel_tls_certificate_expiry_timestamp_seconds", "tls")) > 1.8e9);
    assert_no_ssh_series(&up, "tls");
    exporter.wait_for("every probe over wss: started, the token accepted, the handshake, the Control UI", T, |m| {
        m.get("openclaw_gateway_startup_state{forward=\"tls\",state=\"started\"}") == Some(1.0)
            && probe_auth(m, "tls", None, "new") >= 1.0
            && m.value(&series("openclaw_gateway_ws_handshake_seconds_count", "tls")) >= 1.0
            && m.get(&series("openclaw_gateway_control_ui_up", "tls")) == Some(1.0)
    });

    // The first byte beside a raw TLS client in the same window: the handshake is never inside it. Not a speed
    // goal (those are bench/'s) but a placement check: a full handshake here is ~3.5 ms, so a first byte that
    // held it would sit well past the 2 ms the two clients may differ by.
    let raw = raw_tls_first_bytes(gateway.addr, 40);
    let status = exporter.status();
    let entry = status["forwards"].as_array().unwrap().iter().find(|f| f["forward"] == "tls").unwrap().clone();
    let exporter_p50 = entry["first_byte_seconds"]["p50"].as_f64().unwrap() * 1e3;
    let raw_p50 = median(&raw);
    assert!(
        (exporter_p50 - raw_p50).abs() <= 2.0,
        "first byte p50: exporter {exporter_p50:.3} ms, raw TLS client {raw_p50:.3} ms"
    );
    let handshakes = exporter.scrape();
    let handshake_mean = handshakes.value(&series("openclaw_tunnel_tls_handshake_seconds_sum", "tls")) * 1e3
        / handshakes.value(&series("openclaw_tunnel_tls_handshake_seconds_count", "tls"));
    eprintln!("first byte p50 {exporter_p50:.3} ms (raw TLS client {raw_p50:.3} ms); TLS handshake mean {handshake_mean:.3} ms");
    assert_eq!(entry["route"]["last"]["certificate"]["sha256"], own.sha256.as_str());
    assert_eq!(entry["route"]["last"]["certificate"]["pin_line"], serde_json::Value::Null, "pinned: nothing to pin");

    // A CLI-like client through the tap (plain ws:// on loopback; the tap speaks wss:// to the gateway).
    let (_refused, answer) = WsClient::connect(tap, Some(&wrong));
    assert_eq!(answer, ConnectAnswer::Refused("AUTH_TOKEN_MISMATCH".into()));
    exporter.wait_for("the tap's 401 by revision", T, |m| {
        m.value(
            "openclaw_gateway_auth_failures_total{forward=\"tls\",channel=\"ws\",code=\"401\",token_revision=\"old\"}",
        ) == 1.0
    });

    // An impostor with another certificate at the pinned address.
    let addr = gateway.addr;
    drop(gateway);
    wait_refused(addr, "the stopped gateway", T);
    let other = gateway_certificate(pki.path(), "impostor");
    let impostor = Recorder::start(&net, addr, Some((&other.cert, &other.key)));
    let rounds = series("openclaw_tunnel_up_checks_total", "tls");
    let at_impostor = exporter.scrape().value(&rounds);
    let caught = exporter.wait_for("the impostor's certificate refused", T, |m| {
        m.get(&series("openclaw_tunnel_tls_certificate_verified", "tls")) == Some(0.0)
            && m.value(&down("tls", "certificate_mismatch")) > 0.0
    });
    // Two rounds, and one more that may complete while the scrape that sees it is made.
    assert!(
        caught.value(&rounds) - at_impostor <= 3.0,
        "verified 0 after {} rounds",
        caught.value(&rounds) - at_impostor
    );
    let before = exporter.scrape();
    exporter
        .wait_for("the token withheld from the impostor", T, |m| withheld(m, "tls") >= withheld(&before, "tls") + 2.0);
    let through_tap = invoke_through(tap, &right);
    assert!(through_tap.starts_with("HTTP/1.1 502"), "the tap relays nothing to the impostor: {through_tap}");
    let read = impostor.read();
    assert!(!read.contains(&right) && !read.contains("Authorization"), "the impostor read a credential:\n{read}");
    let (code, said) = run_as(&user, &config, &["doctor"]);
    assert_eq!(code, 13, "the TLS layer fails:\n{said}");
    assert!(said.contains(&other.sha256) && said.contains(&own.sha256), "the doctor names both fingerprints:\n{said}");
    assert!(!said.contains(&right), "{said}");
}

/// `ws://` to a public-looking address with a recorder there: probed, and the token withheld, counted and
/// never in what it read.
#[test]
fn a_public_address_over_ws_is_probed_but_never_given_the_token() {
    if !root_or_skip("routes::public_ws", "a network namespace and a test user") {
        return;
    }
    let token = canary("public");
    let net = TestNet::create();
    let addr = SocketAddr::from((net.public, free_port()));
    let recorder = Recorder::start(&net, addr, None);
    let user = TestUser::create();
    let url = format!("ws://{addr}");
    cli_config(&user, &url, &token, None);
    let config = format!("{}{}", forward("public", &url, ""), auth(&token, &canary("other")));
    let exporter = exporter(&user, &config);
    exporter.wait_for("probed, the token withheld", T, |m| {
        m.value(&series("openclaw_tunnel_up_successes_total", "public")) >= 3.0
            && m.get(&series("openclaw_gateway_up", "public")) == Some(1.0)
            && withheld(m, "public") >= 2.0
    });
    let read = recorder.read();
    assert!(read.contains("GET /healthz"), "the recorder was probed:\n{read}");
    assert!(!read.contains(&token), "the token reached a public address in the clear:\n{read}");
    assert!(exporter.proc.output().contains("a public host"), "the log names it:\n{}", exporter.proc.output());
    let (code, said) = run_as(&user, &config, &["doctor"]);
    assert_eq!(code, 13, "{said}");
    assert!(said.contains("public host") && !said.contains(&token), "{said}");
}

/// A POST with `token` as its Bearer through the tap; the tap's answer.
fn invoke_through(tap: SocketAddr, token: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(tap).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let request = format!(
        "POST /tools/invoke HTTP/1.1\r\nHost: {tap}\r\nAuthorization: Bearer {token}\r\nContent-Length: 2\r\n\r\n{{}}"
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

/// `samples` first bytes of `GET /healthz` from a raw TLS client of another stack (Python's ssl, OpenSSL):
/// connect and shake hands first, then time the request written to the first byte, as the exporter does.
fn raw_tls_first_bytes(addr: SocketAddr, samples: usize) -> Vec<f64> {
    let script = r#"
import socket, ssl, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
for _ in range(n):
    raw = socket.create_connection((host, port), timeout=5)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    tls = context.wrap_socket(raw)
    request = ("GET /healthz HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n\r\n" % (host, port)).encode()
    tls.sendall(request)
    started = time.perf_counter()
    tls.recv(1)
    print("%.6f" % ((time.perf_counter() - started) * 1e3), flush=True)
    tls.close()
    time.sleep(0.2)
"#;
    let output = Command::new(find_program("python3"))
        .args(["-c", script, &addr.ip().to_string(), &addr.port().to_string(), &samples.to_string()])
        .output()
        .unwrap();
    assert!(output.status.success(), "raw TLS client: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).lines().filter_map(|line| line.trim().parse().ok()).collect()
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}
