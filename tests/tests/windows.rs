//! The Windows binary, run for real under wine (Debian's wine 8.0), and the Windows deploy files checked by
//! wine's own `schtasks` and `reg`.
//!
//! The binary is `target/x86_64-pc-windows-gnu/debug/openclaw-tunnel-exporter.exe`, linked by
//! `tests/cross.sh` (the test command runs it before the tests). Wine 8.0 lacks bcryptprimitives.dll, which
//! Rust's std loads for randomness; `tests/wine/bcryptprimitives.c`, built here with zig, stands in for it
//! beside the .exe (real Windows ships the DLL).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use e2e::*;

/// Wine's first start creates the prefix (tens of seconds on a loaded machine).
const WINE_START: Duration = Duration::from_secs(120);
const T: Duration = Duration::from_secs(30);

/// One wine prefix and one copy of the .exe with its DLL, shared by every test here.
struct Wine {
    dir: PathBuf,
}

fn wine() -> &'static Wine {
    static WINE: OnceLock<Wine> = OnceLock::new();
    WINE.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let exe = root.join("target/x86_64-pc-windows-gnu/debug/openclaw-tunnel-exporter.exe");
        assert!(exe.is_file(), "{} is missing: run tests/cross.sh (tests/run-all.sh does)", exe.display());
        // One fixed directory under target/, emptied at every run: a wine prefix is ~900 MB, and a static
        // is never dropped, so a temporary directory per run was never removed (13 runs filled the disk).
        let dir = root.join("target/e2e-wine");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(&exe, dir.join("openclaw-tunnel-exporter.exe")).unwrap();
        let dll = Command::new("python3")
            .args(["-m", "ziglang", "cc", "-target", "x86_64-windows-gnu", "-shared", "-o"])
            .arg(dir.join("bcryptprimitives.dll"))
            .arg(root.join("tests/wine/bcryptprimitives.c"))
            .arg("-ladvapi32")
            .output()
            .expect("python3 -m ziglang (tests/install-cross.sh installs it)");
        assert!(dll.status.success(), "building the ProcessPrng DLL: {}", String::from_utf8_lossy(&dll.stderr));
        let wine = Wine { dir };
        // Create the prefix once, up front, so no test's timeout includes it.
        let version = wine.run(&["--version"]);
        assert!(version.status.success(), "the .exe under wine: {}", text(&version));
        assert!(text(&version).contains(env!("CARGO_PKG_VERSION")), "{}", text(&version));
        wine
    })
}

impl Wine {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(find_program("wine"));
        command
            .arg("openclaw-tunnel-exporter.exe")
            .args(args)
            .current_dir(&self.dir)
            .env("WINEPREFIX", self.dir.join("prefix"))
            .env("WINEDEBUG", "-all")
            .env("RUST_LOG", "info");
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// A wine built-in program (`schtasks`, `reg`) in the same prefix.
    fn builtin(&self, program: &str, args: &[&str]) -> Output {
        Command::new(find_program("wine"))
            .arg(program)
            .args(args)
            .current_dir(&self.dir)
            .env("WINEPREFIX", self.dir.join("prefix"))
            .env("WINEDEBUG", "-all")
            .output()
            .unwrap()
    }

    /// Write a file beside the .exe (the wine process's working directory) and return its name.
    fn write(&self, name: &str, text: &str) -> String {
        std::fs::write(self.dir.join(name), text).unwrap();
        name.to_owned()
    }
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

fn scrape(web: SocketAddr) -> Scrape {
    let body = ureq::get(format!("http://{web}/metrics")).call().unwrap().body_mut().read_to_string().unwrap();
    Scrape::parse(&body)
}

fn wait_scrape(web: SocketAddr, what: &str, proc: &Proc, condition: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = std::time::Instant::now() + T;
    loop {
        let scraped = scrape(web);
        if condition(&scraped) {
            return scraped;
        }
        assert!(std::time::Instant::now() < deadline, "{what}:\n{}\n--- log ---\n{}", scraped.text, proc.output());
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_windows_binary_serves_metrics_on_its_embedded_default_config() {
    let wine = wine();
    let default_web = SocketAddr::from(([127, 0, 0, 1], 19789));
    assert!(std::net::TcpListener::bind(default_web).is_ok(), "{default_web} is taken: the default config needs it");
    let proc = Proc::spawn_group("exporter.exe", &mut wine.command(&[]));
    wait_listening(default_web, "the Windows exporter on its default config", WINE_START);
    // Loopback only: wine's socket is this kernel's, so `ss` shows the address the .exe bound.
    let listening = Command::new(find_program("ss")).args(["-ltnH", "sport = :19789"]).output().unwrap();
    let listening = String::from_utf8_lossy(&listening.stdout).into_owned();
    assert!(listening.contains("127.0.0.1:19789") && !listening.contains("*:19789"), "{listening}");
    let scraped = wait_scrape(default_web, "rounds counted on the default forward", &proc, |m| {
        m.value("openclaw_tunnel_up_checks_total{forward=\"default\"}") >= 2.0
    });
    assert_eq!(
        scraped.get(&format!("openclaw_exporter_build_info{{version=\"{}\"}}", env!("CARGO_PKG_VERSION"))),
        Some(1.0)
    );
    // Nothing listens on 127.0.0.1:18789 here: the Windows listener table says so, and the round is down.
    assert_eq!(
        scraped.get("openclaw_tunnel_ssh_session_state{forward=\"default\",state=\"no_listener\"}"),
        Some(1.0),
        "{}",
        scraped.text
    );
    assert_eq!(scraped.value("openclaw_tunnel_up_successes_total{forward=\"default\"}"), 0.0);
    assert!(proc.output().contains("serving /metrics"), "{}", proc.output());
}

#[test]
fn check_config_on_a_bad_file_exits_1_naming_the_file_and_key() {
    let wine = wine();
    let bad = wine.write("bad.toml", "[scheduler]\nmax_concurrent_probes = 0\n");
    let output = wine.run(&["--config", &bad, "check-config"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let report = text(&output);
    assert!(report.contains("bad.toml") && report.contains("scheduler.max_concurrent_probes"), "{report}");
    // Linux's own lookup is refused by name on Windows.
    let procfs = wine.write("procfs.toml", "[scheduler]\nmax_concurrent_probes = 8\nowner_lookup = \"procfs\"\n");
    let output = wine.run(&["--config", &procfs, "check-config"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("scheduler.owner_lookup"), "{}", text(&output));
    let output = wine.run(&["check-config"]);
    assert!(output.status.success(), "the embedded default under wine: {}", text(&output));
}

#[test]
fn doctor_exits_with_the_ssh_session_step_when_nothing_listens() {
    let wine = wine();
    let config = wine.write("doctor.toml", &forward_toml("t", free_port()));
    let output = wine.run(&["--config", &config, "doctor"]);
    assert_eq!(output.status.code(), Some(12), "step 2 (ssh owns the local forward) fails: {}", text(&output));
    assert!(text(&output).contains("nothing listens on"), "{}", text(&output));
}

#[test]
fn a_forward_with_a_listener_is_probed_end_to_end_by_the_windows_binary() {
    // A Linux gateway stand-in on the forward's port: the Windows binary's SYN and first-byte probes reach it
    // through wine's sockets, and its listener-table lookup sees the listener (owned by a process that is
    // not a Windows process, so not an ssh session), never "no listener".
    let wine = wine();
    let gateway = Gateway::start(free_port(), Duration::ZERO);
    let web = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let config =
        wine.write("probed.toml", &format!("[web]\nlisten = \"{web}\"\n\n{}", forward_toml("t", gateway.addr.port())));
    let proc = Proc::spawn_group("exporter.exe", &mut wine.command(&["--config", &config]));
    wait_listening(web, "the Windows exporter", WINE_START);
    let scraped = wait_scrape(web, "SYN and first byte through wine", &proc, |m| {
        m.value("openclaw_tunnel_syn_successes_total{forward=\"t\"}") >= 3.0
            && m.get("openclaw_gateway_up{forward=\"t\"}") == Some(1.0)
    });
    assert!(scraped.value("openclaw_gateway_first_byte_seconds_count{forward=\"t\"}") >= 1.0, "{}", scraped.text);
    for state in ["no_listener", "up", "unsupported"] {
        let series = format!("openclaw_tunnel_ssh_session_state{{forward=\"t\",state=\"{state}\"}}");
        assert_eq!(scraped.get(&series), Some(0.0), "{series}:\n{}", scraped.text);
    }
}

#[test]
fn the_gateway_host_config_reads_exposure_from_the_windows_listener_table() {
    // The gateway-host shape (`forward = []`, one [[gateway]]): the listener table shows a loopback listener on
    // the gateway's port, whoever owns it, in /metrics and in the doctor's one step.
    let wine = wine();
    let gateway = Gateway::start(free_port(), Duration::ZERO);
    let web = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let config = wine.write(
        "gateway-host.toml",
        &format!(
            "forward = []\n[web]\nlisten = \"{web}\"\n[auth_probe]\nenabled = false\ninterval = \"1m\"\n\
             [[gateway]]\nname = \"g\"\nport = {}\ninterval = \"1s\"\n",
            gateway.addr.port()
        ),
    );
    let doctor = wine.run(&["--config", &config, "doctor"]);
    assert_eq!(doctor.status.code(), Some(0), "{}", text(&doctor));
    assert!(text(&doctor).contains(&gateway.addr.to_string()), "the listener named: {}", text(&doctor));
    let proc = Proc::spawn_group("exporter.exe", &mut wine.command(&["--config", &config]));
    wait_listening(web, "the Windows exporter", WINE_START);
    let scraped = wait_scrape(web, "one loopback listener on the gateway port", &proc, |m| {
        m.get("openclaw_gateway_listen_sockets{gateway=\"g\",scope=\"loopback\"}") == Some(1.0)
    });
    assert_eq!(scraped.get("openclaw_gateway_listen_sockets{gateway=\"g\",scope=\"public\"}"), Some(0.0));
    assert_eq!(scraped.get("openclaw_gateway_exposed_since_timestamp_seconds{gateway=\"g\"}"), Some(0.0));
}

fn xpath(file: &Path, expression: &str) -> String {
    let output = Command::new(find_program("xmllint")).args(["--xpath", expression]).arg(file).output().unwrap();
    assert!(output.status.success(), "xmllint --xpath {expression} {}: {}", file.display(), text(&output));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[test]
fn the_task_scheduler_files_register_with_schtasks_and_restart_on_failure() {
    let wine = wine();
    let deploy = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/windows");
    let mut tasks = 0;
    for entry in std::fs::read_dir(&deploy).unwrap().flatten() {
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".task.xml")) else {
            continue;
        };
        tasks += 1;
        let copy = wine.write(&format!("{name}.xml"), &std::fs::read_to_string(&path).unwrap());
        let created = wine.builtin("schtasks", &["/create", "/tn", name, "/xml", &copy, "/f"]);
        assert!(created.status.success(), "schtasks /create /xml {}: {}", path.display(), text(&created));
        let field = |element: &str| xpath(&path, &format!("string(//*[local-name()='{element}'])"));
        assert_eq!(field("ExecutionTimeLimit"), "PT0S", "{}: runs without a time limit", path.display());
        assert_eq!(field("Count"), "999", "{}: restarted on failure", path.display());
        assert_eq!(field("DisallowStartIfOnBatteries"), "false", "{}", path.display());
        let command = field("Command") + " " + &field("Arguments");
        if name.starts_with("openclaw-tunnel.") {
            // The forward: an ssh client the exporter's `supervise` starts again when it exits, backing off.
            assert!(
                command.contains("openclaw-tunnel-exporter.exe supervise -- ") && command.contains("-N"),
                "{command}"
            );
            assert!(command.contains("ssh.exe") || command.contains("plink.exe"), "{command}");
            assert!(!command.contains("while ($true)"), "no busy loop: {command}");
        } else {
            assert!(command.contains("openclaw-tunnel-exporter.exe") && command.contains("--config"), "{command}");
        }
    }
    assert!(tasks >= 3, "the exporter, OpenSSH and plink tasks: {tasks} found");
    // A broken file is refused, so the check above can fail.
    let broken =
        wine.write("broken.xml", "<Task xmlns=\"http://schemas.microsoft.com/windows/2004/02/mit/task\"><Actions>");
    let created = wine.builtin("schtasks", &["/create", "/tn", "broken", "/xml", &broken, "/f"]);
    assert!(!created.status.success(), "schtasks accepted broken XML: {}", text(&created));
}

#[test]
fn supervise_backs_off_doubling_to_its_cap_on_windows() {
    let wine = wine();
    // A program that exits at once, as ssh.exe does when the Mac is down.
    let supervisor = Proc::spawn(
        "supervise under wine",
        &mut wine.command(&[
            "supervise",
            "--min-delay",
            "300ms",
            "--max-delay",
            "1200ms",
            "--",
            "cmd.exe",
            "/c",
            "exit 3",
        ]),
    );
    let deadline = std::time::Instant::now() + WINE_START;
    let waits = loop {
        let output = supervisor.output();
        let waits: Vec<String> = output
            .lines()
            .filter_map(|line| line.split_once("starting it again in ").map(|(_, wait)| wait.trim().to_owned()))
            .collect();
        if waits.len() >= 5 {
            break waits;
        }
        assert!(std::time::Instant::now() < deadline, "fewer than 5 restarts:\n{output}");
        std::thread::sleep(Duration::from_millis(100));
    };
    supervisor.signal(libc::SIGKILL);
    assert_eq!(waits[..5], ["300ms", "600ms", "1s 200ms", "1s 200ms", "1s 200ms"], "{}", supervisor.output());
    assert!(supervisor.output().contains("exited (exit code: 3)"), "{}", supervisor.output());
}

#[test]
fn the_putty_session_imports_with_reg_and_carries_the_forward() {
    let wine = wine();
    let reg = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/windows/putty-mac-ap1.reg");
    let copy = wine.write("putty.reg", &std::fs::read_to_string(&reg).unwrap());
    let imported = wine.builtin("reg", &["import", &copy]);
    assert!(imported.status.success(), "reg import: {}", text(&imported));
    let key = r"HKCU\Software\SimonTatham\PuTTY\Sessions\mac-ap1";
    for (value, expected) in [
        ("PortForwardings", "L127.0.0.1:18789=127.0.0.1:18789"),
        ("ProxyMethod", "0x6"),
        ("SshNoShell", "0x1"),
        ("PingIntervalSecs", "0x5"),
    ] {
        let queried = wine.builtin("reg", &["query", key, "/v", value]);
        assert!(text(&queried).contains(expected), "{value}: {}", text(&queried));
    }
}

/// Remote write from the Windows binary: rounds are queued (segment files, fsync, the `acked` file replaced
/// by rename) and delivered to a receiver on the Linux side, and a second Windows exporter on the same queue
/// directory is kept out by the queue's lock (LockFileEx through the standard library), naming the holder's pid,
/// while it probes and serves.
#[test]
fn remote_write_queues_and_delivers_and_the_queue_lock_holds_on_windows() {
    let wine = wine();
    let receiver = ScriptedReceiver::start(None);
    let remote_write = format!(
        "[remote_write]\nurl = \"{}\"\ninterval = \"200ms\"\nqueue_dir = \"queue-win\"\nmin_backoff = \"100ms\"\n\
         max_backoff = \"400ms\"\n",
        receiver.url()
    );
    let web = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let config = wine.write(
        "remote-write.toml",
        &format!("[web]\nlisten = \"{web}\"\n\n{}\n{remote_write}", forward_toml("t", free_port())),
    );
    let proc = Proc::spawn_group("exporter.exe (remote write)", &mut wine.command(&["--config", &config]));
    wait_listening(web, "the Windows exporter", WINE_START);
    let scraped = wait_scrape(web, "rounds delivered from Windows", &proc, |m| {
        m.value("openclaw_exporter_remote_write_rounds_total{result=\"sent\"}") >= 5.0
    });
    let dropped: f64 = ["over_max_bytes", "disk_full", "io_error", "corrupt", "missing", "rejected"]
        .iter()
        .map(|reason| {
            scraped.value(&format!(
                "openclaw_exporter_remote_write_rounds_total{{result=\"dropped\",reason=\"{reason}\"}}"
            ))
        })
        .sum();
    assert_eq!(dropped, 0.0, "{}", scraped.text);
    let rounds: Vec<u64> = receiver.answered().iter().flat_map(|a| a.rounds.iter().map(|(seq, _)| *seq)).collect();
    assert!(rounds.windows(2).all(|w| w[0] < w[1]) && rounds.first() == Some(&0), "{rounds:?}");

    let second_web = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let second = wine.write(
        "remote-write-2.toml",
        &format!("[web]\nlisten = \"{second_web}\"\n\n{}\n{remote_write}", forward_toml("t", free_port())),
    );
    // The second never takes the first one's queue; it probes and serves, retrying the open (counted).
    let second = Proc::spawn_group("second exporter.exe", &mut wine.command(&["--config", &second]));
    wait_listening(second_web, "the second Windows exporter", WINE_START);
    wait_scrape(second_web, "the second retries the queue's open", &second, |m| {
        m.value("openclaw_exporter_remote_write_queue_errors_total{op=\"open\"}") >= 2.0
    });
    let said = second.output();
    assert!(said.contains("queue-win") && said.contains("in use by another exporter (pid "), "{said}");
    drop(second);
    drop(proc);
}
