//! This user's running ssh clients and the local forwards their command lines ask for: the process table
//! `init` reads to find forwards and the orphan probe ([`crate::ssh_hygiene`]) reads to find the ones that
//! forward nothing.
//!
//! No process is spawned: Linux reads /proc (the `procfs` crate), macOS asks the kernel (`proc_listpids` by
//! uid through the `libproc` crate, `sysctl(KERN_PROCARGS2)` for each ssh's argv). Windows has no
//! unprivileged call for another process's command line short of reading its memory, so [`list`] says
//! unsupported there (`init` asks PowerShell instead, once, when a person runs it).
//!
//! What a command line forwards is read by [`parse_argv`], ssh's and plink's option grammar: `-L` specs
//! (clustered or not), `-o LocalForward=...`, `-F`, `-J`, `-p`, the destination.

use std::net::SocketAddr;
use std::time::SystemTime;

/// One running ssh client of this user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshProcess {
    /// Its pid.
    pub pid: u32,
    /// When it started, when the OS says.
    pub started: Option<SystemTime>,
    /// Its command line.
    pub argv: Vec<String>,
}

impl SshProcess {
    /// Its local forwards' listen addresses that parse as IP:port (`-L 18789:...` listens on 127.0.0.1).
    pub fn local_listens(&self) -> Vec<SocketAddr> {
        parse_argv(&self.argv)
            .map(|forwards| {
                forwards
                    .local_forwards
                    .iter()
                    .filter_map(|(listen, _, _)| {
                        let (host, port) = split_host_port(listen);
                        Some(SocketAddr::new(host.parse().ok()?, port?.parse().ok()?))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether it asks for a listener on `addr`: the same port, on that address or on every address.
    pub fn forwards(&self, addr: SocketAddr) -> bool {
        self.local_listens().iter().any(|listen| listen_covers(*listen, addr))
    }

    /// What identifies it, for a person: its program, its forwards (`-L`, `-R`, `-D`, and `LocalForward`,
    /// `RemoteForward`, `DynamicForward` options), `-p`, `-J` and the destination. Nothing else of its command
    /// line is shown anywhere (its other options, a remote command, a password argument): what is never shown
    /// needs no masking, and masking word by word let `sshpass -p`, `curl -u` and headers through.
    pub fn identity(&self) -> String {
        match parse_command(&self.argv) {
            Some(found) => found.shown.join(" "),
            None => self.argv.first().map(|argv0| program_name(argv0)).unwrap_or_default(),
        }
    }
}

/// Whether a forward listening on `listen` takes connects to `addr`: the same port, on that address or on every
/// address.
pub fn listen_covers(listen: SocketAddr, addr: SocketAddr) -> bool {
    listen.port() == addr.port() && (listen.ip() == addr.ip() || listen.ip().is_unspecified())
}

/// This user's running ssh and plink processes; an error says why the table cannot be read here.
pub fn list() -> Result<Vec<SshProcess>, String> {
    os::list()
}

/// Whether a command line's program is an ssh client whose argv [`parse_argv`] reads.
pub fn is_ssh_program(argv0: &str) -> bool {
    matches!(program_name(argv0).as_str(), "ssh" | "plink")
}

#[cfg(target_os = "linux")]
mod os {
    use super::{is_ssh_program, SshProcess};
    use std::time::{Duration, SystemTime};

    /// /proc: this user's processes (the owner of /proc/PID is the effective uid) whose `comm` is an ssh
    /// client, then only their cmdline and start time: two small reads per ssh, one per other process.
    pub(super) fn list() -> Result<Vec<SshProcess>, String> {
        let processes = procfs::process::all_processes().map_err(|err| format!("cannot list /proc: {err}"))?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let ours = unsafe { libc::geteuid() };
        let boot = procfs::boot_time_secs().ok().map(|secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
        let ticks = procfs::ticks_per_second();
        Ok(processes
            .flatten()
            .filter(|process| process.uid().is_ok_and(|uid| uid == ours))
            .filter_map(|process| {
                let stat = process.stat().ok()?;
                // comm is at most 15 bytes: "ssh", "plink".
                if !is_ssh_program(&stat.comm) {
                    return None;
                }
                let argv = process.cmdline().ok()?;
                is_ssh_program(argv.first()?).then_some(())?;
                let started = boot.map(|boot| boot + Duration::from_secs_f64(stat.starttime as f64 / ticks as f64));
                Some(SshProcess { pid: u32::try_from(process.pid()).ok()?, started, argv })
            })
            .collect())
    }
}

#[cfg(target_os = "macos")]
mod os {
    use super::{is_ssh_program, parse_procargs2, SshProcess};
    use libproc::libproc::bsd_info::BSDInfo;
    use libproc::libproc::proc_pid::pidinfo;
    use libproc::processes::{pids_by_type, ProcFilter};
    use std::time::{Duration, SystemTime};

    /// `proc_listpids` by effective uid, `proc_pidinfo(PROC_PIDTBSDINFO)` for the name and start time,
    /// `sysctl(KERN_PROCARGS2)` for an ssh's argv.
    pub(super) fn list() -> Result<Vec<SshProcess>, String> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let uid = unsafe { libc::geteuid() };
        let pids = pids_by_type(ProcFilter::ByUID { uid }).map_err(|err| format!("cannot list processes: {err}"))?;
        Ok(pids
            .into_iter()
            .filter_map(|pid| {
                let info = pidinfo::<BSDInfo>(i32::try_from(pid).ok()?, 0).ok()?;
                let comm: Vec<u8> = info.pbi_comm.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
                if !is_ssh_program(&String::from_utf8_lossy(&comm)) {
                    return None;
                }
                let argv = parse_procargs2(&procargs2(pid)?)?;
                let started = SystemTime::UNIX_EPOCH
                    + Duration::from_secs(info.pbi_start_tvsec)
                    + Duration::from_micros(info.pbi_start_tvusec);
                Some(SshProcess { pid, started: Some(started), argv })
            })
            .collect())
    }

    /// The raw `KERN_PROCARGS2` buffer of `pid`.
    fn procargs2(pid: u32) -> Option<Vec<u8>> {
        let mut mib = [libc::CTL_KERN, libc::KERN_PROCARGS2, i32::try_from(pid).ok()?];
        let mut size: libc::size_t = 0;
        // SAFETY: a null buffer asks only for the size, written to `size`.
        let asked =
            unsafe { libc::sysctl(mib.as_mut_ptr(), 3, std::ptr::null_mut(), &mut size, std::ptr::null_mut(), 0) };
        if asked != 0 || size == 0 {
            return None;
        }
        let mut buffer = vec![0u8; size];
        // SAFETY: `buffer` holds `size` writable bytes; the kernel writes at most that and updates `size`.
        let read = unsafe {
            libc::sysctl(mib.as_mut_ptr(), 3, buffer.as_mut_ptr().cast(), &mut size, std::ptr::null_mut(), 0)
        };
        (read == 0).then(|| {
            buffer.truncate(size);
            buffer
        })
    }
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
mod os {
    use super::SshProcess;

    pub(super) fn list() -> Result<Vec<SshProcess>, String> {
        Err("this OS has no unprivileged read of another process's command line".into())
    }
}

/// The argv in a `KERN_PROCARGS2` buffer (macOS): a native-endian `int` argc, the executable's path and its
/// NUL padding, then argc NUL-terminated arguments (the environment follows; it is never read).
#[cfg_attr(not(target_os = "macos"), allow(dead_code))]
fn parse_procargs2(buffer: &[u8]) -> Option<Vec<String>> {
    let argc = i32::from_ne_bytes(buffer.get(..4)?.try_into().ok()?);
    let argc = usize::try_from(argc).ok()?;
    let rest = &buffer[4..];
    let path_end = rest.iter().position(|&b| b == 0)?;
    let args_start = path_end + rest[path_end..].iter().position(|&b| b != 0)?;
    let argv: Vec<String> =
        rest[args_start..].split(|&b| b == 0).take(argc).map(|arg| String::from_utf8_lossy(arg).into_owned()).collect();
    (argv.len() == argc).then_some(argv)
}

/// A running ssh client's forwards, from its argv.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ProcessForwards {
    /// The destination (alias or host), without a `user@`.
    pub destination: String,
    /// The destination as written, `user@host` included (what `ssh -G` is asked about).
    pub destination_as_given: String,
    /// Every `-o` option, as written (`ServerAliveInterval=15`).
    pub options: Vec<String>,
    /// `-F`, when given.
    pub config_file: Option<String>,
    /// `-J`, when given.
    pub jump: Option<String>,
    /// `-p`, when given.
    pub port: Option<u16>,
    /// `-L` specs: (listen address, remote host, remote port).
    pub local_forwards: Vec<(String, String, u16)>,
    /// The words that identify it ([`SshProcess::identity`]): the program, its forwards, `-p`, `-J`, the
    /// destination.
    pub shown: Vec<String>,
}

/// The `-o` options that are forwards, shown with the other forwards.
const FORWARD_OPTIONS: [&str; 3] = ["localforward", "remoteforward", "dynamicforward"];

/// ssh's options that take an argument (its getopt string).
const SSH_WITH_ARGUMENT: &str = "BbcDEeFIiJLlmOoPpQRSWw";
/// plink's (PuTTY) options that take one.
const PLINK_WITH_ARGUMENT: &[&str] =
    &["-L", "-R", "-D", "-P", "-l", "-pw", "-i", "-load", "-m", "-proxycmd", "-hostkey", "-sercfg", "-J"];

/// Read an ssh (or plink) command line; None when it forwards nothing.
pub fn parse_argv(argv: &[String]) -> Option<ProcessForwards> {
    parse_command(argv).filter(|found| !found.local_forwards.is_empty())
}

/// Read an ssh (or plink) command line, forwards or not; None when it is not one or names no destination.
pub fn parse_command(argv: &[String]) -> Option<ProcessForwards> {
    let program = program_name(argv.first()?);
    let plink = program == "plink";
    if program != "ssh" && !plink {
        return None;
    }
    let mut found = ProcessForwards { shown: vec![program.clone()], ..ProcessForwards::default() };
    let mut args = argv[1..].iter();
    while let Some(arg) = args.next() {
        if plink {
            if PLINK_WITH_ARGUMENT.contains(&arg.as_str()) {
                let value = args.next()?;
                match arg.as_str() {
                    "-L" => push_spec(&mut found, value),
                    "-P" => found.port = value.parse().ok(),
                    "-J" => found.jump = Some(value.clone()),
                    _ => {}
                }
                if matches!(arg.as_str(), "-L" | "-R" | "-D" | "-P" | "-J") {
                    found.shown.extend([arg.clone(), value.clone()]);
                }
            } else if !arg.starts_with('-') && found.destination.is_empty() {
                found.destination = arg.clone();
                found.shown.push(arg.clone());
            }
            continue;
        }
        let Some(flags) = arg.strip_prefix('-').filter(|f| !f.is_empty()) else {
            if found.destination.is_empty() {
                found.destination = arg.clone();
                found.shown.push(arg.clone());
                // What follows the destination is the remote command: never shown.
                break;
            }
            continue;
        };
        // Clustered flags (-NL spec, -L8080:h:80): the first flag taking an argument ends the cluster.
        for (i, flag) in flags.char_indices() {
            if SSH_WITH_ARGUMENT.contains(flag) {
                let inline = &flags[i + flag.len_utf8()..];
                let value = if inline.is_empty() { args.next()?.clone() } else { inline.to_owned() };
                if matches!(flag, 'L' | 'R' | 'D' | 'p' | 'J') {
                    found.shown.extend([format!("-{flag}"), value.clone()]);
                }
                match flag {
                    'L' => push_spec(&mut found, &value),
                    'o' => {
                        let key = value.split(['=', ' ', '\t']).next().unwrap_or_default().to_ascii_lowercase();
                        if FORWARD_OPTIONS.contains(&key.as_str()) {
                            found.shown.extend(["-o".to_owned(), value.clone()]);
                        }
                        push_option(&mut found, &value);
                        found.options.push(value);
                    }
                    'F' => found.config_file = Some(value),
                    'J' => found.jump = Some(value),
                    'p' => found.port = value.parse().ok(),
                    _ => {}
                }
                break;
            }
        }
    }
    let destination = found.destination.rsplit_once('@').map_or(found.destination.as_str(), |(_, h)| h).to_owned();
    found.destination_as_given = std::mem::replace(&mut found.destination, destination);
    (!found.destination.is_empty()).then_some(found)
}

/// `-o LocalForward=LISTEN TARGET` (or `-o "LocalForward LISTEN TARGET"`): the same forward as `-L`.
fn push_option(found: &mut ProcessForwards, option: &str) {
    let (key, value) = match option.split_once(['=', ' ', '\t']) {
        Some((key, value)) => (key.trim(), value.trim()),
        None => return,
    };
    if !key.eq_ignore_ascii_case("localforward") {
        return;
    }
    let mut words = value.split_whitespace();
    let (Some(listen), Some(target)) = (words.next(), words.next()) else { return };
    push_spec(found, &format!("{listen}:{target}"));
}

/// A command's program name, lower case, without directory (`/` or `\\`) or `.exe`: `ssh`, `plink`.
pub fn program_name(argv0: &str) -> String {
    let base = argv0.rsplit(['/', '\\']).next().unwrap_or(argv0).to_ascii_lowercase();
    base.strip_suffix(".exe").map(str::to_owned).unwrap_or(base)
}

/// `[bind:]port:host:hostport` (IPv6 in brackets) into the forward list; unix sockets are skipped.
fn push_spec(found: &mut ProcessForwards, spec: &str) {
    let mut parts = Vec::new();
    let mut rest = spec;
    while !rest.is_empty() {
        if let Some(inner) = rest.strip_prefix('[') {
            let Some((host, tail)) = inner.split_once(']') else { return };
            parts.push(host.to_owned());
            rest = tail.strip_prefix(':').unwrap_or(tail);
        } else {
            let (part, tail) = rest.split_once(':').unwrap_or((rest, ""));
            parts.push(part.to_owned());
            rest = tail;
        }
    }
    let (listen, host, port) = match parts.as_slice() {
        [port, host, hostport] => (format!("127.0.0.1:{port}"), host, hostport),
        [bind, port, host, hostport] => (format!("{}:{port}", bind_address(bind)), host, hostport),
        _ => return,
    };
    if let Ok(port) = port.parse::<u16>() {
        found.local_forwards.push((listen, host.clone(), port));
    }
}

/// `[v6]:port`, `host:port` or a bare word: (host without brackets, port).
pub fn split_host_port(text: &str) -> (&str, Option<&str>) {
    if let Some(rest) = text.strip_prefix('[') {
        if let Some((host, tail)) = rest.split_once(']') {
            return (host, tail.strip_prefix(':'));
        }
    }
    match text.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host, Some(port)),
        _ => (text, None),
    }
}

/// A host for a `host:port`: brackets around IPv6; `localhost`, `*` and an empty bind written as 127.0.0.1,
/// the address a forward is measured on.
pub fn bracket(host: &str) -> String {
    let host = if host == "localhost" || host.is_empty() || host == "*" { "127.0.0.1" } else { host };
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// A forward's bind address as ssh binds it: `localhost` is 127.0.0.1, an empty bind or `*` is every
/// interface (`0.0.0.0`: a wildcard stays a wildcard, so nothing proposes an address ssh may not hold),
/// brackets around IPv6.
pub fn bind_address(host: &str) -> String {
    match host {
        "" | "*" => "0.0.0.0".to_owned(),
        other => bracket(other),
    }
}

/// Words of a command line, double quotes grouping (Windows).
pub fn split_command_line(line: &str) -> Vec<String> {
    let (mut words, mut word, mut quoted) = (Vec::new(), String::new(), false);
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn command_lines_of_ssh_autossh_children_and_plink_are_read() {
        let ssh = parse_argv(&argv(
            "/usr/bin/ssh -F /tmp/cfg -NL 127.0.0.1:18789:127.0.0.1:18789 -J bastion -p 2222 me@mac-ap1",
        ))
        .unwrap();
        assert_eq!(ssh.destination, "mac-ap1");
        assert_eq!(ssh.config_file.as_deref(), Some("/tmp/cfg"));
        assert_eq!(ssh.jump.as_deref(), Some("bastion"));
        assert_eq!(ssh.port, Some(2222));
        assert_eq!(ssh.local_forwards, [("127.0.0.1:18789".to_owned(), "127.0.0.1".to_owned(), 18789)]);
        let autossh_child =
            parse_argv(&argv("ssh -L18789:localhost:18789 -o ServerAliveInterval=30 -N mac echo hi -L 1:2:3")).unwrap();
        assert_eq!(autossh_child.destination, "mac");
        assert_eq!(autossh_child.local_forwards, [("127.0.0.1:18789".to_owned(), "localhost".to_owned(), 18789)]);
        let v6 = parse_argv(&argv("ssh -L [::1]:18789:[fd00::1]:18789 mac")).unwrap();
        assert_eq!(v6.local_forwards, [("[::1]:18789".to_owned(), "fd00::1".to_owned(), 18789)]);
        let plink = parse_argv(&argv(
            "C:\\PuTTY\\plink.exe -ssh -N -L 127.0.0.1:18789:127.0.0.1:18789 -P 22 -load mac-ap1 mac.example.com",
        ))
        .unwrap();
        assert_eq!(plink.destination, "mac.example.com");
        assert_eq!(plink.local_forwards.len(), 1);
        assert_eq!(parse_argv(&argv("ssh mac uptime")), None, "no -L: nothing to add");
        assert_eq!(parse_argv(&argv("sshd -D")), None);
    }

    #[test]
    fn an_identity_shows_the_forwards_port_jump_and_destination_and_nothing_else() {
        let canary = "c4nary-0123";
        let process = |words: Vec<String>| SshProcess { pid: 1, started: None, argv: words };
        let mut words =
            argv("/usr/bin/ssh -N -p 2222 -J bastion -L 127.0.0.1:18789:127.0.0.1:18789 -R 9000:h:22 -D1080 -o");
        words.push(format!("ProxyCommand=sshpass -p{canary} ssh -W %h:%p x"));
        words.push(format!("-oSetEnv=TOKEN={canary}"));
        words.extend(["-o".to_owned(), format!("LocalCommand=curl -u me:{canary} https://x")]);
        words.extend(["-o".to_owned(), "LocalForward=18790 127.0.0.1:18789".to_owned()]);
        words.extend(["-i".to_owned(), format!("/keys/{canary}")]);
        words.extend([
            "me@mac-ap1".to_owned(),
            "curl".to_owned(),
            "-H".to_owned(),
            format!("Authorization: Bearer {canary}"),
        ]);
        let shown = process(words).identity();
        assert_eq!(
            shown,
            "ssh -p 2222 -J bastion -L 127.0.0.1:18789:127.0.0.1:18789 -R 9000:h:22 -D 1080 -o LocalForward=18790 \
             127.0.0.1:18789 me@mac-ap1"
        );
        assert!(!shown.contains(canary));
        let plink = argv(&format!("plink.exe -ssh -pw {canary} -P 22 -L 18789:h:1 -m cmd.txt mac"));
        assert_eq!(process(plink).identity(), "plink -P 22 -L 18789:h:1 mac");
        assert_eq!(process(argv(&format!("autossh -M 0 {canary}"))).identity(), "autossh");
    }

    #[test]
    fn a_local_forward_given_as_an_option_counts_like_l() {
        let equals =
            parse_argv(&["ssh", "-N", "-o", "LocalForward=18789 127.0.0.1:18789", "mac"].map(String::from)).unwrap();
        assert_eq!(equals.local_forwards, [("127.0.0.1:18789".to_owned(), "127.0.0.1".to_owned(), 18789)]);
        let spaced =
            parse_argv(&["ssh", "-o", "localforward 127.0.0.1:18790 [::1]:18789", "mac"].map(String::from)).unwrap();
        assert_eq!(spaced.local_forwards, [("127.0.0.1:18790".to_owned(), "::1".to_owned(), 18789)]);
        assert_eq!(parse_argv(&argv("ssh -o ServerAliveInterval=15 mac")), None);
    }

    #[test]
    fn a_process_forwards_its_listen_address_or_every_address() {
        let process = |line: &str| SshProcess { pid: 1, started: None, argv: argv(line) };
        let local: SocketAddr = "127.0.0.1:18789".parse().unwrap();
        assert!(process("ssh -N -L 18789:127.0.0.1:18789 mac").forwards(local));
        assert!(process("ssh -N -L localhost:18789:127.0.0.1:18789 mac").forwards(local));
        assert!(process("ssh -N -L *:18789:127.0.0.1:18789 mac").forwards(local), "a * bind wants every address");
        for line in ["ssh -N -L *:18789:127.0.0.1:18789 mac", "ssh -N -L :18789:127.0.0.1:18789 mac"] {
            let words: Vec<String> = line.split(' ').map(String::from).collect();
            let parsed = parse_argv(&words).unwrap();
            assert_eq!(parsed.local_forwards[0].0, "0.0.0.0:18789", "a wildcard stays a wildcard: {line}");
        }
        assert!(process("ssh -N -L 0.0.0.0:18789:127.0.0.1:18789 mac").forwards(local));
        assert!(!process("ssh -N -L 18790:127.0.0.1:18789 mac").forwards(local), "another port");
        assert!(!process("ssh -N -L 127.0.0.2:18789:127.0.0.1:18789 mac").forwards(local), "another address");
        assert!(!process("ssh -N mac").forwards(local));
    }

    #[test]
    fn a_plink_password_never_reaches_a_person() {
        let plink = SshProcess { pid: 1, started: None, argv: argv("plink -pw hunter2 -L 18789:h:1 mac") };
        assert_eq!(plink.identity(), "plink -L 18789:h:1 mac");
    }

    #[test]
    fn windows_command_lines_split_at_spaces_outside_quotes() {
        assert_eq!(
            split_command_line(r#""C:\Program Files\OpenSSH\ssh.exe" -N -L 127.0.0.1:18789:127.0.0.1:18789 mac"#),
            ["C:\\Program Files\\OpenSSH\\ssh.exe", "-N", "-L", "127.0.0.1:18789:127.0.0.1:18789", "mac"]
        );
    }

    #[test]
    fn a_kern_procargs2_buffer_gives_the_argv_and_never_the_environment() {
        let mut buffer = 3i32.to_ne_bytes().to_vec();
        buffer.extend_from_slice(b"/usr/bin/ssh\0\0\0\0ssh\0-N\0mac\0SECRET=1\0");
        assert_eq!(parse_procargs2(&buffer), Some(argv("ssh -N mac")));
        assert_eq!(parse_procargs2(&buffer[..10]), None, "a cut buffer is no argv");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_running_ssh_of_this_user_is_listed_with_its_forwards() {
        // A process named ssh (a copy of sh, waiting on a sleep) with a forward on its command line, no network.
        let dir = std::env::temp_dir().join(format!("ssh-processes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ssh = dir.join("ssh");
        std::fs::copy("/bin/sh", &ssh).unwrap();
        let mut child = std::process::Command::new(&ssh)
            .args(["-c", "sleep 30; true", "-L", "18789:127.0.0.1:18789", "mac"])
            .spawn()
            .unwrap();
        // Its /proc entry is there once spawn returns (exec has happened).
        let listed = list().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let found = listed.iter().find(|process| process.pid == child.id()).expect("the ssh is listed");
        assert!(found.started.is_some_and(|started| started <= SystemTime::now()));
        assert_eq!(found.argv[1..], ["-c", "sleep 30; true", "-L", "18789:127.0.0.1:18789", "mac"]);
        assert!(found.forwards("127.0.0.1:18789".parse().unwrap()));
    }
}
