//! The ssh options that make a dead path look alive, read from what ssh itself would use: `ssh -G` for the
//! forward owner's own destination, `-F` file and `-o` options (Match, Include and defaults applied as ssh
//! applies them).
//!
//! - `ServerAliveInterval 0` (ssh's default): a dead NAT path goes unnoticed for as long as TCP keepalive
//!   takes (hours), and the forward keeps accepting connects that lead nowhere.
//! - `ExitOnForwardFailure no` (the default): an ssh whose bind fails keeps running, an orphan
//!   ([`crate::ssh_hygiene`]).
//! - `ConnectTimeout` unset: a restart by autossh or a service manager hangs on an unreachable host for as
//!   long as the TCP stack retries.
//! - `StrictHostKeyChecking no`: any host key is accepted, so the token crosses a path nobody verified.
//!
//! `ssh -G` runs once per new owner (a spawn, never per round), within a timeout, with the owner's `-F` file
//! only when it is this user's own and nobody else can write it (a config's `Match exec` runs its command
//! as whoever runs `ssh -G`).

use std::time::Duration;

use crate::ssh_processes::{parse_command, program_name};

/// One risky setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Risk {
    /// `ServerAliveInterval 0`.
    ServerAliveOff,
    /// `ExitOnForwardFailure no`.
    ExitOnForwardFailureOff,
    /// `ConnectTimeout` unset.
    ConnectTimeoutUnset,
    /// `StrictHostKeyChecking no`.
    StrictHostKeyCheckingOff,
}

crate::labels!(Risk {
    Risk::ServerAliveOff => "server_alive_off",
    Risk::ExitOnForwardFailureOff => "exit_on_forward_failure_off",
    Risk::ConnectTimeoutUnset => "connect_timeout_unset",
    Risk::StrictHostKeyCheckingOff => "strict_host_key_checking_off",
});

impl Risk {
    /// Every risk, in the order of [`crate::Label::LABELS`].
    pub const ALL: [Risk; 4] = [
        Risk::ServerAliveOff,
        Risk::ExitOnForwardFailureOff,
        Risk::ConnectTimeoutUnset,
        Risk::StrictHostKeyCheckingOff,
    ];

    /// The `~/.ssh/config` lines (under the forward's `Host`) that remove it.
    pub fn fix(self) -> &'static str {
        match self {
            Risk::ServerAliveOff => "ServerAliveInterval 15\nServerAliveCountMax 3",
            Risk::ExitOnForwardFailureOff => "ExitOnForwardFailure yes",
            Risk::ConnectTimeoutUnset => "ConnectTimeout 10",
            Risk::StrictHostKeyCheckingOff => "StrictHostKeyChecking yes",
        }
    }

    /// Why it matters, in a few words.
    pub fn why(self) -> &'static str {
        match self {
            Risk::ServerAliveOff => "a dead path stays undetected for as long as TCP keepalive takes (hours)",
            Risk::ExitOnForwardFailureOff => "an ssh whose bind fails keeps running and forwards nothing (an orphan)",
            Risk::ConnectTimeoutUnset => "a restart hangs on an unreachable host instead of failing and backing off",
            Risk::StrictHostKeyCheckingOff => "any host key is accepted: the path to the gateway is not verified",
        }
    }
}

/// How long ssh takes to notice a dead path, from `ssh -G` output: `ServerAliveInterval` x
/// `ServerAliveCountMax`; None when keepalives are off (then TCP keepalive decides: hours) or unreadable.
pub fn dead_path_after(text: &str) -> Option<Duration> {
    let value = |name: &str| {
        text.lines().find_map(|line| {
            let (key, value) = line.trim().split_once(' ')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim().parse::<u64>().ok()).flatten()
        })
    };
    let interval = value("serveraliveinterval").filter(|&seconds| seconds > 0)?;
    Some(Duration::from_secs(interval.saturating_mul(value("serveralivecountmax").unwrap_or(3))))
}

/// The listen addresses of the `localforward` lines of `ssh -G` output (`localforward [127.0.0.1]:18789
/// [127.0.0.1]:18789`; a bare port listens on loopback, `*` on every address; a socket path is skipped).
pub fn local_listens_of_ssh_g(text: &str) -> Vec<std::net::SocketAddr> {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            if !words.next()?.eq_ignore_ascii_case("localforward") {
                return None;
            }
            let listen = words.next()?;
            let (host, port) = match listen.rsplit_once(':') {
                Some((host, port)) => (host.trim_start_matches('[').trim_end_matches(']'), port),
                None => ("", listen),
            };
            let ip = match host {
                "" | "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
                "*" => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                other => other.parse().ok()?,
            };
            Some(SocketAddr::new(ip, port.parse().ok()?))
        })
        .collect()
}

/// What `ssh -G` says of an owner: its risks, and how long it takes to notice a dead path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audit {
    /// The risky settings.
    pub risks: Vec<Risk>,
    /// [`dead_path_after`].
    pub dead_path_after: Option<Duration>,
}

/// The risks in `ssh -G` output.
pub fn risks_of_ssh_g(text: &str) -> Vec<Risk> {
    let mut risks = Vec::new();
    for line in text.lines() {
        let Some((key, value)) = line.trim().split_once(' ') else { continue };
        let value = value.trim();
        let risk = match key.to_ascii_lowercase().as_str() {
            "serveraliveinterval" if value == "0" => Risk::ServerAliveOff,
            "exitonforwardfailure" if value == "no" => Risk::ExitOnForwardFailureOff,
            "connecttimeout" if value == "none" => Risk::ConnectTimeoutUnset,
            "stricthostkeychecking" if matches!(value, "false" | "no" | "off") => Risk::StrictHostKeyCheckingOff,
            _ => continue,
        };
        risks.push(risk);
    }
    risks.sort();
    risks.dedup();
    risks
}

/// The `ssh -G` arguments that resolve what the ssh with `argv` runs with: its `-F` file as `vet` passes it
/// (the path checked, [`safe_config_file`]), its `-o` options, `-p` and `-J`, and its destination. An error for
/// plink, a command line with no destination, or a `-F` file `vet` refuses: `ssh -G` without it would read
/// configs the real ssh never read, so nothing is resolved then.
pub fn ssh_g_args(argv: &[String], vet: impl Fn(&str) -> Option<String>) -> Result<Vec<String>, String> {
    let not_ssh = || "not an ssh command line with a destination".to_owned();
    if program_name(argv.first().ok_or_else(not_ssh)?) != "ssh" {
        return Err(not_ssh());
    }
    let process = parse_command(argv).ok_or_else(not_ssh)?;
    let mut args = Vec::new();
    if let Some(file) = process.config_file.as_deref() {
        let checked = vet(file).ok_or_else(|| {
            format!("its -F {file} is not a file of this user's that no one else can write, in a directory no one else can write: not read")
        })?;
        args.extend(["-F".to_owned(), checked]);
    }
    for option in &process.options {
        args.extend(["-o".to_owned(), option.clone()]);
    }
    if let Some(port) = process.port {
        args.extend(["-p".to_owned(), port.to_string()]);
    }
    if let Some(jump) = &process.jump {
        args.extend(["-J".to_owned(), jump.clone()]);
    }
    args.extend(["-G".to_owned(), "--".to_owned(), process.destination_as_given.clone()]);
    Ok(args)
}

/// The path to hand `ssh -G` for a config file named by `-F`, when it is safe to read: `/dev/null` (no
/// config at all), or the canonical path (no symlink left to swap) of a regular file that is this user's own
/// and that no one else can write, in a directory no one else can write, under ancestors that only their
/// owner (this user or root) can change or that are sticky (/tmp). `ssh -G` runs a config's `Match exec`
/// commands as whoever runs it, so a file someone else can write or swap would run their command as this
/// user. `None` when it is not safe. The ownership parts are Unix's; Windows checks that it is a file.
pub fn safe_config_file(path: &str) -> Option<String> {
    if path == "/dev/null" || path.eq_ignore_ascii_case("nul") {
        return Some(path.to_owned());
    }
    let canonical = std::fs::canonicalize(path).ok()?;
    let meta = std::fs::metadata(&canonical).ok()?;
    if !meta.is_file() {
        return None;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let ours = unsafe { libc::geteuid() };
        if meta.uid() != ours || meta.mode() & 0o022 != 0 {
            return None;
        }
        let parent = canonical.parent()?;
        let parent_meta = std::fs::metadata(parent).ok()?;
        if (parent_meta.uid() != ours && parent_meta.uid() != 0) || parent_meta.mode() & 0o022 != 0 {
            return None;
        }
        for ancestor in parent.ancestors().skip(1) {
            let meta = std::fs::metadata(ancestor).ok()?;
            let sticky = meta.mode() & 0o1000 != 0;
            if (meta.uid() != ours && meta.uid() != 0) || (meta.mode() & 0o022 != 0 && !sticky) {
                return None;
            }
        }
    }
    canonical.to_str().map(str::to_owned)
}

/// Run `ssh -G` for the ssh whose command line is `argv`, within `timeout`: the risks it runs with. An error
/// says why they are unknown (plink, no ssh on PATH, ssh -G failing or hanging).
pub async fn audit(argv: &[String], timeout: Duration) -> Result<Audit, String> {
    let text = resolve(argv, timeout).await?;
    Ok(Audit { risks: risks_of_ssh_g(&text), dead_path_after: dead_path_after(&text) })
}

/// The largest `ssh -G` output kept (a resolved config is a few KiB).
const MAX_SSH_G_OUTPUT: usize = 1 << 20;

/// `ssh -G` for the ssh with `argv` ([`ssh_g_args`]: its vetted `-F`, its `-o`, `-p`, `-J`, `--` and its
/// destination), within `timeout`: what ssh would run with, as text. On the blocking pool.
pub async fn resolve(argv: &[String], timeout: Duration) -> Result<String, String> {
    let args = ssh_g_args(argv, safe_config_file)?;
    let ran =
        tokio::task::spawn_blocking(move || run_ssh_g(&args, timeout)).await.map_err(|err| format!("ssh -G: {err}"))?;
    match ran {
        Some(crate::spawn::Ran::Exited { success: true, stdout, .. }) => {
            Ok(String::from_utf8_lossy(&stdout).into_owned())
        }
        Some(crate::spawn::Ran::Exited { .. }) => Err("ssh -G exited with a failure".to_owned()),
        Some(crate::spawn::Ran::TimedOut) => Err(format!("ssh -G gave no answer within {timeout:?}")),
        None => Err("cannot run ssh -G".to_owned()),
    }
}

/// Run `ssh` with `args` (ending in `-G -- HOST`) within `timeout`, its output bounded: the one place `ssh -G`
/// runs, for the probes' option audit and config forwards, `init` and `evidence` alike. `None` when ssh
/// cannot start.
pub fn run_ssh_g(args: &[String], timeout: Duration) -> Option<crate::spawn::Ran> {
    let mut command = std::process::Command::new("ssh");
    command.args(args);
    crate::spawn::run_within(&mut command, timeout, MAX_SSH_G_OUTPUT as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Label;

    fn argv(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn forwards_written_in_an_ssh_config_are_read_from_ssh_g_as_ssh_prints_them() {
        // OpenSSH's dump_cfg_forwards: `[host]:port` when a listen host is given, a bare port otherwise.
        let text = "user me\nlocalforward [127.0.0.1]:18789 [127.0.0.1]:18789\nlocalforward 18790 [localhost]:18789\n\
                    localforward [*]:18791 [h]:1\nlocalforward [::1]:18792 [h]:1\nlocalforward /tmp/s.sock [h]:1\n\
                    remoteforward [127.0.0.1]:9 [h]:1\n";
        let listens: Vec<String> = local_listens_of_ssh_g(text).iter().map(ToString::to_string).collect();
        assert_eq!(listens, ["127.0.0.1:18789", "127.0.0.1:18790", "0.0.0.0:18791", "[::1]:18792"]);
    }

    #[test]
    fn a_dead_path_is_noticed_after_interval_times_count_and_never_with_keepalives_off() {
        let text = |interval: &str, count: &str| {
            format!("user me\nserveraliveinterval {interval}\nserveralivecountmax {count}\n")
        };
        assert_eq!(dead_path_after(&text("15", "3")), Some(Duration::from_secs(45)));
        assert_eq!(dead_path_after(&text("60", "5")), Some(Duration::from_secs(300)));
        assert_eq!(dead_path_after(&text("0", "3")), None, "ssh's default: keepalives off");
        assert_eq!(
            dead_path_after("serveraliveinterval 30\n"),
            Some(Duration::from_secs(90)),
            "CountMax defaults to 3"
        );
    }

    #[test]
    fn ssh_defaults_carry_three_risks_and_a_careful_config_none() {
        let defaults =
            "exitonforwardfailure no\nstricthostkeychecking ask\nserveraliveinterval 0\nconnecttimeout none\n";
        assert_eq!(
            risks_of_ssh_g(defaults),
            [Risk::ServerAliveOff, Risk::ExitOnForwardFailureOff, Risk::ConnectTimeoutUnset]
        );
        let careful =
            "exitonforwardfailure yes\nstricthostkeychecking true\nserveraliveinterval 15\nconnecttimeout 10\n";
        assert!(risks_of_ssh_g(careful).is_empty());
        assert_eq!(risks_of_ssh_g("stricthostkeychecking false\n"), [Risk::StrictHostKeyCheckingOff]);
        assert!(risks_of_ssh_g("stricthostkeychecking accept-new\n").is_empty(), "accept-new pins the first key");
        assert_eq!(Risk::ALL.map(|risk| risk.label()), Risk::LABELS);
    }

    #[test]
    fn ssh_g_is_asked_with_the_owners_own_options_and_destination() {
        let owner = argv(
            "/usr/bin/ssh -F /home/me/.ssh/tunnel -o ServerAliveInterval=0 -p 2222 -NL 18789:127.0.0.1:18789 me@mac",
        );
        assert_eq!(
            ssh_g_args(&owner, |file| Some(file.to_owned())).unwrap(),
            argv("-F /home/me/.ssh/tunnel -o ServerAliveInterval=0 -p 2222 -G -- me@mac")
        );
        let refused = ssh_g_args(&owner, |_| None).unwrap_err();
        assert!(
            refused.contains("-F /home/me/.ssh/tunnel") && refused.contains("not read"),
            "a -F file someone else can write is not handed over, and ssh -G does not run without it: {refused}"
        );
        assert_eq!(
            ssh_g_args(&owner, |_| Some("/canonical/tunnel".to_owned())).unwrap()[..2],
            argv("-F /canonical/tunnel")[..],
            "ssh is handed the path that was checked"
        );
        assert!(ssh_g_args(&argv("plink -L 18789:h:1 mac"), |file| Some(file.to_owned())).is_err());
        assert_eq!(
            ssh_g_args(&argv("ssh -N mac"), |file| Some(file.to_owned())).unwrap(),
            argv("-G -- mac"),
            "an owner whose forward comes from its config is asked about too"
        );
    }

    #[cfg(unix)]
    #[test]
    fn only_this_users_unshared_files_are_handed_to_ssh() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("ssh-options-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("config");
        std::fs::write(&file, "Host x\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let canonical = std::fs::canonicalize(&file).unwrap().to_str().unwrap().to_owned();
        assert_eq!(safe_config_file(file.to_str().unwrap()), Some(canonical.clone()));
        // Through a symlink: the canonical path is what ssh is handed, so the link cannot be swapped after.
        let link = dir.join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert_eq!(safe_config_file(link.to_str().unwrap()), Some(canonical));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert_eq!(safe_config_file(file.to_str().unwrap()), None, "world-writable");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert_eq!(safe_config_file(file.to_str().unwrap()), None, "in a directory anyone can write");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(safe_config_file(dir.to_str().unwrap()), None, "a directory");
        assert_eq!(safe_config_file("/dev/null").as_deref(), Some("/dev/null"), "no config at all");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
