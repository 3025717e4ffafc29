//! Processes and ports: free ports, child processes that die with their handle, waiting for a port, root.

use super::*;

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
        if TcpListener::bind(("127.0.0.1", port)).is_ok() && reserve_machine_wide(port) {
            return port;
        }
    }
    unreachable!("the loop returns")
}

/// Where ports handed out by any test process on this machine are reserved (one file per port, holding the
/// pid that took it).
fn reservations_dir() -> PathBuf {
    std::env::temp_dir().join("openclaw-tunnel-exporter-e2e-ports")
}

/// Reserve `port` for this process across every test process on the machine: two suites running at once (a
/// developer's `cargo test` beside CI's clean clone) draw from the same range, and a port free when checked
/// could go to both, the second child failing to bind. A reservation whose process has ended is taken over.
fn reserve_machine_wide(port: u16) -> bool {
    use std::io::Write;
    let dir = reservations_dir();
    let _ = fs::create_dir_all(&dir);
    let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(0o1777));
    let file = dir.join(port.to_string());
    for _ in 0..2 {
        match fs::OpenOptions::new().write(true).create_new(true).open(&file) {
            Ok(mut reserved) => {
                let _ = write!(reserved, "{}", std::process::id());
                return true;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let holder = fs::read_to_string(&file).ok().and_then(|pid| pid.trim().parse::<u32>().ok());
                match holder {
                    Some(pid) if pid == std::process::id() || is_alive(pid) => return false,
                    // Ended (or a file cut short by a crash): take it over.
                    _ => {
                        let _ = fs::remove_file(&file);
                    }
                }
            }
            // A directory we cannot write: fall back to this process's own bookkeeping.
            Err(_) => return true,
        }
    }
    false
}

/// Whether process `pid` exists (kill with signal 0: EPERM means it exists under another user).
fn is_alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks for existence and permission.
    let sent = unsafe { libc::kill(pid as i32, 0) };
    sent == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// What `ss` says listens on or is bound to `port`, for a failure message.
pub fn port_holders(port: u16) -> String {
    let output = Command::new("ss").args(["-Htanp", &format!("sport = :{port}")]).output();
    match output {
        Ok(out) if !out.stdout.is_empty() => String::from_utf8_lossy(&out.stdout).into_owned(),
        Ok(_) => "nothing (ss shows no socket on that port)".to_owned(),
        Err(e) => format!("(ss did not run: {e})"),
    }
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

/// CPU time `pid` has used, user and system, in clock ticks (`/proc/PID/stat` fields 14 and 15; 100 a second).
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command name's closing parenthesis: state is field 3, utime 14, stime 15.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default().split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    field(14) + field(15)
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

/// Wait until `addr` accepts a TCP connection, or panic naming `what` and what holds the port.
pub fn wait_listening(addr: SocketAddr, what: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {addr} within {timeout:?}; sockets on that port: {}",
            port_holders(addr.port())
        );
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

    /// Wait until `addr` accepts a TCP connection. Panics with the process's exit status and output when it
    /// exits first, and with its output and what holds the port when `timeout` passes.
    pub fn wait_listening(&mut self, addr: SocketAddr, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the reader threads take the last lines.
                thread::sleep(Duration::from_millis(100));
                panic!("{} exited ({status}) before listening on {addr}; its output:\n{}", self.name, self.output());
            }
            assert!(
                Instant::now() < deadline,
                "{} did not listen on {addr} within {timeout:?} (still running); sockets on that port: {}\nits output:\n{}",
                self.name,
                port_holders(addr.port()),
                self.output()
            );
            thread::sleep(Duration::from_millis(50));
        }
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

/// Run a tool in `dir`; panics with its stderr unless it succeeds; returns its stdout.
pub fn run_tool(program: &str, args: &[&str], dir: &Path) -> String {
    let output = Command::new(find_program(program)).args(args).current_dir(dir).output().unwrap();
    assert!(output.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

/// `ca.key` and `ca.pem` in `dir`: a P-256 test CA made with the openssl CLI, as a user would.
pub fn make_ca(dir: &Path) {
    run_tool("openssl", &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key"], dir);
    run_tool(
        "openssl",
        &["req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=test CA", "-days", "2", "-out", "ca.pem"],
        dir,
    );
}

/// `NAME.key` and `NAME.pem`: a P-256 key and a certificate for `subject` with extension `extension`, signed by
/// the CA in `dir` (`ca.key`, `ca.pem`).
pub fn issue_cert(dir: &Path, name: &str, subject: &str, extension: &str) {
    let openssl = |args: &[&str]| run_tool("openssl", args, dir);
    let (key, csr, ext, pem) =
        (format!("{name}.key"), format!("{name}.csr"), format!("{name}.ext"), format!("{name}.pem"));
    openssl(&["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", &key]);
    openssl(&["req", "-new", "-key", &key, "-subj", subject, "-out", &csr]);
    fs::write(dir.join(&ext), format!("{extension}\n")).unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &ext,
        "-out",
        &pem,
    ]);
}

/// An ordinary account the tests create to run the exporter and its ssh as users run them (root reads
/// every process's sockets, so a test run as root proves nothing about what a user's exporter can see).
#[derive(Debug, Clone)]
pub struct TestUser {
    /// Its name.
    pub name: String,
    /// Its uid.
    pub uid: u32,
    /// Its primary gid.
    pub gid: u32,
    /// A home directory of its own (0700, its own), removed with the handle.
    pub home: PathBuf,
    _home: Arc<tempfile::TempDir>,
}

/// The account every such test shares (created once with `useradd` if missing; root only).
pub const TEST_USER: &str = "oce-tunnel-user";

impl TestUser {
    /// The test account, created if missing, with a fresh home directory. Needs root.
    pub fn create() -> TestUser {
        assert!(is_root(), "creating a test user needs root");
        let id = |flag: &str| -> Option<u32> {
            let out = Command::new("id").arg(flag).arg(TEST_USER).output().ok()?;
            String::from_utf8_lossy(&out.stdout).trim().parse().ok().filter(|_| out.status.success())
        };
        if id("-u").is_none() {
            // Tests run in parallel: another may create it first (then useradd fails and `id` finds it).
            let _ = Command::new("useradd")
                .args(["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", TEST_USER])
                .status();
        }
        let (uid, gid) = (id("-u").expect("the test user exists"), id("-g").expect("its group"));
        let home = tempfile::Builder::new().prefix("oce-user-home").tempdir().unwrap();
        std::os::unix::fs::chown(home.path(), Some(uid), Some(gid)).unwrap();
        fs::set_permissions(home.path(), fs::Permissions::from_mode(0o700)).unwrap();
        TestUser { name: TEST_USER.into(), uid, gid, home: home.path().to_owned(), _home: Arc::new(home) }
    }

    /// `program args...` run as this user (setpriv), with HOME its home.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("setpriv");
        command
            .arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .arg("--clear-groups")
            .arg(program)
            .env("HOME", &self.home)
            .env("USER", &self.name)
            .env("LOGNAME", &self.name);
        command
    }

    /// Rewrite `command` to run as this user, keeping its program, arguments and environment.
    pub fn wrap(&self, command: &mut Command) {
        let program = command.get_program().to_owned();
        let args: Vec<_> = command.get_args().map(|a| a.to_owned()).collect();
        let envs: Vec<_> = command.get_envs().map(|(k, v)| (k.to_owned(), v.map(|v| v.to_owned()))).collect();
        let mut wrapped = self.command(program);
        wrapped.args(args);
        for (key, value) in envs {
            match value {
                Some(value) => wrapped.env(key, value),
                None => wrapped.env_remove(key),
            };
        }
        *command = wrapped;
    }

    /// Write `contents` to `name` in its home, owned by it with `mode`; returns the path.
    pub fn file(&self, name: &str, contents: &[u8], mode: u32) -> PathBuf {
        let path = self.home.join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).unwrap();
            std::os::unix::fs::chown(parent, Some(self.uid), Some(self.gid)).unwrap();
        }
        fs::write(&path, contents).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        std::os::unix::fs::chown(&path, Some(self.uid), Some(self.gid)).unwrap();
        path
    }
}
