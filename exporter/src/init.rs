//! `init`: the forwards this laptop already has, as a config.
//!
//! Two sources, merged by local address: the `Host` entries of the ssh config whose `LocalForward` reaches the
//! gateway's port (each resolved by `ssh -G HOST`, so Match, Include and defaults apply as ssh applies them),
//! and the running ssh clients (ssh, autossh's ssh child, plink) whose command lines carry `-L` to that port
//! (their destination resolved by `ssh -G` too, with the `-F` they were started with). Process command lines
//! come from the process table (`probes::ssh_processes`: /proc on Linux, libproc on macOS) or PowerShell's CIM (Windows). Names come from host aliases, made label-safe and unique.

use probes::ssh_options::{risks_of_ssh_g, Risk};
use probes::ssh_processes::{bind_address, bracket, parse_command, program_name, split_host_port};
#[cfg(windows)]
use probes::ssh_processes::{is_ssh_program, split_command_line};
use probes::Label;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One forward found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Found {
    /// The `forward` label: the host alias, label-safe.
    pub name: String,
    /// The local listener.
    pub local: String,
    /// `host:port` of the ssh server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssh_host: Option<String>,
    /// `host:port` of the first ProxyJump hop.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jump_host: Option<String>,
    /// The forward's far end as the ssh server sees it.
    pub remote: String,
    /// Where it was found, for the comment above it.
    #[serde(skip)]
    pub source: String,
    /// The risky options its host runs with (`ssh -G`), for a warning comment beside it.
    #[serde(skip)]
    pub risks: Vec<Risk>,
}

/// The route the openclaw CLI's own config names when it reaches the gateway directly
/// (`gateway.remote.transport: "direct"`, or a remote URL to another host): a `[[forward]]` with its `url` and
/// `tls_fingerprint`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DirectFound {
    /// The `forward` label: the URL's host, label-safe.
    pub name: String,
    /// `ws://HOST:PORT` or `wss://HOST[:PORT]`.
    pub url: String,
    /// The CLI's pin, normalized to `sha256:<64 hex digits>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_fingerprint: Option<String>,
    /// Where it was read, for the comment above it.
    #[serde(skip)]
    pub source: String,
    /// What the exporter will say of it, when it is not a road the CLI can use as it is.
    #[serde(skip)]
    pub warnings: Vec<String>,
}

/// The CLI's direct route, from its remote settings; None when the CLI uses an ssh forward (or no remote).
pub fn direct_route(remote: &crate::openclaw_cli_url::CliRemote) -> Option<DirectFound> {
    use crate::openclaw_cli_url::CliAddress;
    if !remote.is_direct() {
        return None;
    }
    let Some(CliAddress::Url { tls, host, .. }) = CliAddress::of_url(&remote.url) else { return None };
    let mut warnings = Vec::new();
    let tls_fingerprint = match remote.tls_fingerprint.as_deref() {
        Some(written) => match probes::route::Fingerprint::parse(written) {
            Some(pin) if tls => Some(format!("sha256:{pin}")),
            Some(_) => {
                warnings.push("the CLI pins a certificate on a ws:// URL, which has none: the pin is left out".into());
                None
            }
            None => {
                warnings.push(format!("the CLI's tlsFingerprint {written:?} is not a SHA-256 fingerprint: left out"));
                None
            }
        },
        None => None,
    };
    if !tls && !probes::route::plaintext_host_allowed(&host) {
        warnings.push(format!(
            "ws:// to {host}, a public host: the CLI refuses it in the clear and the exporter withholds the token; use wss://"
        ));
    }
    if tls && tls_fingerprint.is_none() {
        warnings.push(
            "no pin: the certificate must chain to the built-in roots and name the host (a self-signed gateway \
             needs tls_fingerprint, a private CA ca_file)"
                .into(),
        );
    }
    Some(DirectFound {
        name: label_safe(&host),
        url: remote.url.clone(),
        tls_fingerprint,
        source: remote.source.clone(),
        warnings,
    })
}

/// What `ssh -G` says about a host.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// `hostname`.
    pub hostname: String,
    /// `port`.
    pub port: u16,
    /// The first hop of `proxyjump`, as written (`alias` or `host:port`).
    pub jump: Option<String>,
    /// `localforward` lines: (listen address, remote host, remote port).
    pub local_forwards: Vec<(String, String, u16)>,
    /// The options that make a dead path look alive.
    pub risks: Vec<Risk>,
}

/// Parse `ssh -G` output.
pub fn parse_ssh_g(text: &str) -> Resolved {
    let mut resolved = Resolved { port: 22, risks: risks_of_ssh_g(text), ..Resolved::default() };
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let (Some(key), rest) = (words.next(), words.collect::<Vec<_>>()) else { continue };
        match (key.to_ascii_lowercase().as_str(), rest.as_slice()) {
            ("hostname", [host]) => resolved.hostname = (*host).to_owned(),
            ("port", [port]) => resolved.port = port.parse().unwrap_or(22),
            ("proxyjump", [jumps]) if *jumps != "none" => {
                // user@host:port,next...: the first hop is the one the laptop reaches.
                let first = jumps.split(',').next().unwrap_or_default();
                let host = first.rsplit_once('@').map_or(first, |(_, host)| host);
                // As written (an alias, maybe with a port): resolve_hop makes it host:port.
                resolved.jump = Some(host.to_owned());
            }
            ("localforward", [listen, target]) => {
                let listen = match split_host_port(listen) {
                    (host, Some(port)) => format!("{}:{port}", bind_address(host)),
                    (port, None) => format!("127.0.0.1:{port}"),
                };
                if let (host, Some(port)) = split_host_port(target) {
                    if let Ok(port) = port.parse() {
                        resolved.local_forwards.push((listen, host.to_owned(), port));
                    }
                }
            }
            _ => {}
        }
    }
    resolved
}

/// The aliases of the `Host` lines of an ssh config (patterns with `*`, `?` or `!` are not hosts).
pub fn host_aliases(config: &str) -> Vec<String> {
    let mut aliases = Vec::new();
    for line in config.lines() {
        let line = line.trim();
        let Some((keyword, rest)) = line.split_once(|c: char| c.is_whitespace() || c == '=') else { continue };
        if !keyword.eq_ignore_ascii_case("host") {
            continue;
        }
        for alias in rest.split_whitespace() {
            let alias = alias.trim_matches('"');
            if !alias.contains(['*', '?', '!']) && !aliases.iter().any(|a| a == alias) {
                aliases.push(alias.to_owned());
            }
        }
    }
    aliases
}

/// How long one `ssh -G` may take: it only reads config files, but a config can `Match exec` a command or be
/// a FIFO nobody writes.
const SSH_G_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// `ssh -G [-F file] -- host`, within [`SSH_G_TIMEOUT`].
fn ssh_g(host: &str, config_file: Option<&str>) -> Option<Resolved> {
    let mut args = Vec::new();
    if let Some(file) = config_file {
        args.extend(["-F".to_owned(), file.to_owned()]);
    }
    args.extend(["-G".to_owned(), "--".to_owned(), host.to_owned()]);
    match probes::ssh_options::run_ssh_g(&args, SSH_G_TIMEOUT)? {
        probes::spawn::Ran::Exited { success: true, stdout, .. } => {
            Some(parse_ssh_g(&String::from_utf8_lossy(&stdout)))
        }
        probes::spawn::Ran::Exited { .. } => None,
        probes::spawn::Ran::TimedOut => {
            eprintln!("init: ssh -G {host} gave no answer within {SSH_G_TIMEOUT:?}; skipped");
            None
        }
    }
}

/// A jump host (`user@alias:port,next` or an alias) as the `host:port` its first hop really is: an alias
/// resolves through the same ssh config, as ssh itself would.
fn resolve_hop(jump: &str, config_file: Option<&str>) -> String {
    let first = jump.split(',').next().unwrap_or_default();
    let host = first.rsplit_once('@').map_or(first, |(_, h)| h);
    let (name, port) = split_host_port(host);
    match ssh_g(name, config_file) {
        Some(hop) => format!("{}:{}", bracket(&hop.hostname), port.and_then(|p| p.parse().ok()).unwrap_or(hop.port)),
        None if port.is_some() => host.to_owned(),
        None => format!("{host}:22"),
    }
}

/// A label-safe forward name (1-64 of A-Z a-z 0-9 _ . -).
fn label_safe(alias: &str) -> String {
    let name: String = alias
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') { c } else { '-' })
        .take(60)
        .collect();
    if name.is_empty() {
        "forward".to_owned()
    } else {
        name
    }
}

/// Discover: the ssh config (`ssh_config`, read for its Host lines and passed to `ssh -G`), then the running
/// ssh clients; forwards to `remote_port` only, merged by local address.
pub fn discover(ssh_config: &Path, remote_port: u16) -> Vec<Found> {
    let mut by_local: BTreeMap<String, Found> = BTreeMap::new();
    let config_arg = ssh_config.to_string_lossy().into_owned();
    if let Ok(text) = std::fs::read_to_string(ssh_config) {
        for alias in host_aliases(&text) {
            let Some(mut resolved) = ssh_g(&alias, Some(&config_arg)) else { continue };
            resolved.jump = resolved.jump.map(|jump| resolve_hop(&jump, Some(&config_arg)));
            add(
                &mut by_local,
                &alias,
                &resolved,
                &resolved.local_forwards,
                remote_port,
                format!("{} Host {alias}", ssh_config.display()),
            );
        }
    }
    for (pid, argv) in ssh_processes() {
        // An ssh with forwards on its command line, or one with a destination only (`ssh -N mac`), whose
        // forwards come from its ssh config (LocalForward under its Host): ssh -G below says which.
        let Some(mut process) = parse_command(&argv)
            .filter(|p| !p.local_forwards.is_empty() || argv.first().is_some_and(|a| program_name(a) == "ssh"))
        else {
            continue;
        };
        // The hygiene probe's rule for another ssh's -F file (probes::ssh_options::safe_config_file: ssh -G runs
        // a config's `Match exec` commands as whoever runs it), and ssh is handed the path that was checked. A
        // file that fails it is not read, and nor is anything else in its place: ssh -G without it would
        // resolve configs the real ssh never read.
        let mut vetted = true;
        if let Some(file) = process.config_file.take() {
            match probes::ssh_options::safe_config_file(&file) {
                Some(checked) => process.config_file = Some(checked),
                None => {
                    vetted = false;
                    eprintln!(
                        "init: ssh pid {pid} uses -F {file}, not a file of yours that no one else can write in a \
                         directory no one else can write: not read (its forwards are taken from its command line)"
                    );
                }
            }
        }
        let mut resolved = if vetted {
            ssh_g(&process.destination, process.config_file.as_deref()).unwrap_or_default()
        } else {
            Resolved::default()
        };
        if resolved.hostname.is_empty() {
            resolved.hostname = process.destination.clone();
        }
        if let Some(port) = process.port {
            resolved.port = port;
        }
        if let Some(jump) = process.jump.clone().or(resolved.jump.clone()) {
            resolved.jump = Some(resolve_hop(&jump, process.config_file.as_deref()));
        }
        let forwards: Vec<_> = process.local_forwards.iter().chain(&resolved.local_forwards).cloned().collect();
        add(&mut by_local, &process.destination, &resolved, &forwards, remote_port, format!("running ssh pid {pid}"));
    }
    let mut names: Vec<String> = Vec::new();
    let mut found: Vec<Found> = by_local.into_values().collect();
    for forward in &mut found {
        let base = forward.name.clone();
        let mut n = 1;
        while names.contains(&forward.name) {
            n += 1;
            forward.name = format!("{base}-{n}");
        }
        names.push(forward.name.clone());
    }
    found
}

fn add(
    by_local: &mut BTreeMap<String, Found>,
    alias: &str,
    resolved: &Resolved,
    forwards: &[(String, String, u16)],
    remote_port: u16,
    source: String,
) {
    for (listen, host, port) in forwards {
        if *port != remote_port {
            continue;
        }
        let remote_host = if host == "localhost" { "127.0.0.1" } else { host.as_str() };
        let found = Found {
            name: label_safe(alias),
            local: listen.clone(),
            ssh_host: (!resolved.hostname.is_empty())
                .then(|| format!("{}:{}", bracket(&resolved.hostname), resolved.port)),
            jump_host: resolved.jump.clone(),
            remote: format!("{}:{port}", bracket(remote_host)),
            source: source.clone(),
            risks: resolved.risks.clone(),
        };
        by_local
            .entry(listen.clone())
            .and_modify(|existing| {
                existing.source = format!("{}; {}", existing.source, found.source);
                existing.jump_host = existing.jump_host.clone().or(found.jump_host.clone());
            })
            .or_insert(found);
    }
}

/// This user's running ssh clients: (pid, argv), from the process table (`probes::ssh_processes`: /proc on
/// Linux, libproc and sysctl on macOS; nothing spawned). Another user's ssh is none of this user's forwards,
/// and its command line (its `-F` file) is theirs to choose.
#[cfg(not(windows))]
fn ssh_processes() -> Vec<(u32, Vec<String>)> {
    match probes::ssh_processes::list() {
        Ok(processes) => processes.into_iter().map(|process| (process.pid, process.argv)).collect(),
        Err(detail) => {
            eprintln!("init: running ssh clients not read: {detail}");
            Vec::new()
        }
    }
}

/// This user's running ssh.exe or plink.exe: (pid, argv), from PowerShell's CIM (the owner from `GetOwner`;
/// the command line split at spaces outside quotes).
#[cfg(windows)]
fn ssh_processes() -> Vec<(u32, Vec<String>)> {
    let script = "Get-CimInstance Win32_Process -Filter \"Name='ssh.exe' or Name='plink.exe'\" | \
                  Where-Object { (Invoke-CimMethod -InputObject $_ -MethodName GetOwner).User -eq $env:USERNAME } | \
                  ForEach-Object { \"$($_.ProcessId) $($_.CommandLine)\" }";
    let Ok(output) =
        std::process::Command::new("powershell").args(["-NoProfile", "-NonInteractive", "-Command", script]).output()
    else {
        return Vec::new();
    };
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let (pid, command_line) = line.trim().split_once(' ')?;
            let argv = split_command_line(command_line);
            is_ssh_program(argv.first()?).then_some((pid.parse().ok()?, argv))
        })
        .collect()
}

/// The config `init` prints: a header, then one `[[forward]]` per forward with where it was found.
/// `cli` is the openclaw CLI's gateway URL, when it can be read: the forward it is gets a comment saying so,
/// and a URL that is none of them gets a warning in the header.
pub fn render(
    found: &[Found],
    direct: Option<&DirectFound>,
    remote_port: u16,
    cli: Option<&crate::openclaw_cli_url::OpenclawCliUrl>,
) -> String {
    use crate::openclaw_cli_url::CliAddress;
    let mut text = format!(
        "# openclaw-tunnel-exporter config written by `openclaw-tunnel-exporter init`: the forwards to port {remote_port}\n\
         # found in the ssh config and the running ssh clients, and the openclaw CLI's direct route. Check it with\n\
         # `check-config --config FILE`.\n"
    );
    if found.is_empty() && direct.is_none() {
        text.push_str("# No forward found: add one by hand, e.g.\n# [[forward]]\n# name = \"mac\"\n# local = \"127.0.0.1:18789\"\n");
        return text;
    }
    let mut locals: Vec<(&str, CliAddress)> = found
        .iter()
        .filter_map(|forward| Some((forward.name.as_str(), CliAddress::Local(forward.local.parse().ok()?))))
        .collect();
    if let Some((direct, address)) = direct.and_then(|direct| Some((direct, CliAddress::of_url(&direct.url)?))) {
        locals.push((direct.name.as_str(), address));
    }
    let finding = cli.map(|cli| (cli, crate::openclaw_cli_url::judge(&cli.url, &locals)));
    if let Some(problem) = finding.as_ref().and_then(|(cli, finding)| finding.explain(cli)) {
        text.push_str(&format!("# warning: {problem}\n"));
    }
    for forward in found {
        #[derive(serde::Serialize)]
        struct One<'a> {
            forward: [&'a Found; 1],
        }
        let table = toml::to_string(&One { forward: [forward] }).expect("strings serialize");
        text.push_str(&format!("\n# from {}\n", forward.source));
        if let Some((cli, _)) = finding.as_ref().filter(|(_, finding)| finding.matched() == Some(forward.name.as_str()))
        {
            text.push_str(&format!("# the openclaw CLI uses this forward: {} ({})\n", cli.url, cli.source));
        }
        if forward.local.parse::<std::net::SocketAddr>().is_ok_and(|local| local.ip().is_unspecified()) {
            text.push_str(
                "# warning: ssh binds this forward on every interface (-g, GatewayPorts, or a '*' or empty bind \
                 address): the gateway is reachable beyond this machine through it, and where another user holds \
                 127.0.0.1 on that port ssh may hold only [::] (the exporter then reports forward_hijacked). Bind it \
                 to 127.0.0.1 (-L 127.0.0.1:PORT:...). The exporter measures it at the loopback address.\n",
            );
        }
        if !forward.risks.is_empty() {
            let labels: Vec<&str> = forward.risks.iter().map(|risk| risk.label()).collect();
            text.push_str(&format!(
                "# warning: its ssh host runs with {} (see `doctor`); add to ~/.ssh/config under its Host:\n",
                labels.join(", ")
            ));
            for risk in &forward.risks {
                for line in risk.fix().lines() {
                    text.push_str(&format!("#   {line}\n"));
                }
            }
        }
        text.push_str(&table);
    }
    if let Some(direct) = direct {
        #[derive(serde::Serialize)]
        struct One<'a> {
            forward: [&'a DirectFound; 1],
        }
        let table = toml::to_string(&One { forward: [direct] }).expect("strings serialize");
        text.push_str(&format!("\n# from {} gateway.remote (the CLI reaches the gateway directly)\n", direct.source));
        if let Some((cli, _)) = finding.as_ref().filter(|(_, finding)| finding.matched() == Some(direct.name.as_str()))
        {
            text.push_str(&format!("# the openclaw CLI uses this forward: {} ({})\n", cli.url, cli.source));
        }
        for warning in &direct.warnings {
            text.push_str(&format!("# warning: {warning}\n"));
        }
        text.push_str(&table);
    }
    text
}

/// Where the user's ssh config is.
pub fn default_ssh_config() -> PathBuf {
    dirs::home_dir().unwrap_or_default().join(".ssh").join("config")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_g_output_gives_host_port_jump_and_forwards() {
        let text = "user me\nhostname mac.example.com\nport 2222\nlocalforward [127.0.0.1]:18789 [127.0.0.1]:18789\n\
                    localforward 18790 [localhost]:9999\nlocalforward [::1]:18791 [127.0.0.1]:18789\n\
                    proxyjump me@bastion.example.com,hop2\nserveraliveinterval 0\n";
        let resolved = parse_ssh_g(text);
        assert_eq!(resolved.risks, [Risk::ServerAliveOff]);
        assert_eq!(resolved.hostname, "mac.example.com");
        assert_eq!(resolved.port, 2222);
        assert_eq!(resolved.jump.as_deref(), Some("bastion.example.com"));
        assert_eq!(
            resolved.local_forwards,
            [
                ("127.0.0.1:18789".to_owned(), "127.0.0.1".to_owned(), 18789),
                ("127.0.0.1:18790".to_owned(), "localhost".to_owned(), 9999),
                ("[::1]:18791".to_owned(), "127.0.0.1".to_owned(), 18789),
            ]
        );
        assert_eq!(parse_ssh_g("proxyjump none\n").jump, None);
    }

    #[test]
    fn host_lines_give_aliases_but_not_patterns() {
        let config = "Host mac-ap1 mac2\n  HostName x\nHost *.corp !bad\nhost=bastion\nMatch host foo\n";
        assert_eq!(host_aliases(config), ["mac-ap1", "mac2", "bastion"]);
    }

    #[test]
    fn the_rendered_config_is_toml_with_safe_names() {
        let found = [Found {
            name: label_safe("mac ap1\"x"),
            local: "127.0.0.1:18789".into(),
            ssh_host: Some("mac.example.com:22".into()),
            jump_host: None,
            remote: "127.0.0.1:18789".into(),
            source: "test".into(),
            risks: vec![Risk::ServerAliveOff],
        }];
        let cli = crate::openclaw_cli_url::OpenclawCliUrl { url: "ws://127.0.0.1:18789".into(), source: "test".into() };
        let text = render(&found, None, 18789, Some(&cli));
        assert!(text.contains("# the openclaw CLI uses this forward: ws://127.0.0.1:18789 (test)"), "{text}");
        let elsewhere =
            crate::openclaw_cli_url::OpenclawCliUrl { url: "ws://localhost:18789".into(), source: "test".into() };
        assert!(render(&found, None, 18789, Some(&elsewhere)).contains("# warning: the CLI's URL ws://localhost:18789"));
        let value: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(value["forward"][0]["name"].as_str(), Some("mac-ap1-x"));
        assert_eq!(value["forward"][0]["ssh_host"].as_str(), Some("mac.example.com:22"));
        assert!(value["forward"][0].get("jump_host").is_none());
        assert!(
            text.contains("# warning: its ssh host runs with server_alive_off")
                && text.contains("#   ServerAliveInterval 15"),
            "{text}"
        );
    }

    /// The CLI's remote settings read from a JSON5 config file.
    fn remote_of(json5: &str) -> Option<crate::openclaw_cli_url::CliRemote> {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("openclaw.json");
        std::fs::write(&config, json5).unwrap();
        let locations = crate::token_sources::Locations {
            env_token: None,
            env_url: None,
            state_env_file: None,
            gateway_env_file: None,
            config_file: Some(config),
            token_file: None,
        };
        crate::openclaw_cli_url::read_remote(&locations).unwrap()
    }

    #[test]
    fn the_clis_direct_transport_becomes_a_url_route_with_its_pin() {
        let colons = vec!["AB"; 32].join(":");
        let remote = remote_of(&format!(
            "{{ gateway: {{ mode: 'remote', remote: {{ transport: 'direct', url: 'wss://Mac-AP1.tail1.ts.net', \
             tlsFingerprint: '{colons}', token: 'not-read-here' }} }} }}"
        ))
        .unwrap();
        let direct = direct_route(&remote).expect("a direct route");
        assert_eq!(direct.url, "wss://Mac-AP1.tail1.ts.net");
        assert_eq!(direct.tls_fingerprint, Some(format!("sha256:{}", "ab".repeat(32))));
        assert!(direct.warnings.is_empty(), "{:?}", direct.warnings);
        let cli = crate::openclaw_cli_url::OpenclawCliUrl { url: remote.url.clone(), source: "test".into() };
        let text = render(&[], Some(&direct), 18789, Some(&cli));
        assert!(text.contains("# the openclaw CLI uses this forward: wss://Mac-AP1.tail1.ts.net"), "{text}");
        assert!(!text.contains("not-read-here"), "{text}");
        let value: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(value["forward"][0]["url"].as_str(), Some("wss://Mac-AP1.tail1.ts.net"));
        assert_eq!(value["forward"][0]["name"].as_str(), Some("mac-ap1.tail1.ts.net"));
    }

    #[test]
    fn the_clis_ssh_transport_is_no_direct_route_and_a_bare_remote_url_to_another_host_is() {
        let ssh = remote_of("{gateway: {mode: 'remote', remote: {transport: 'ssh', url: 'ws://127.0.0.1:18789'}}}");
        assert_eq!(ssh.as_ref().and_then(direct_route), None);
        let tunnel = remote_of("{gateway: {mode: 'remote', remote: {url: 'ws://127.0.0.1:18789'}}}");
        assert_eq!(tunnel.as_ref().and_then(direct_route), None, "a URL to this machine is an ssh forward's");
        let lan = remote_of("{gateway: {mode: 'remote', remote: {url: 'ws://192.168.0.202:18789'}}}").unwrap();
        let direct = direct_route(&lan).expect("a LAN URL is direct");
        assert_eq!((direct.url.as_str(), direct.tls_fingerprint.as_deref()), ("ws://192.168.0.202:18789", None));
        assert!(direct.warnings.is_empty());
        let public =
            remote_of("{gateway: {mode: 'remote', remote: {transport: 'direct', url: 'ws://198.51.100.7:18789'}}}");
        let direct = public.as_ref().and_then(direct_route).unwrap();
        assert!(direct.warnings.iter().any(|w| w.contains("a public host")), "{:?}", direct.warnings);
        assert_eq!(remote_of("{gateway: {mode: 'local', remote: {url: 'ws://192.168.0.202:18789'}}}"), None);
    }
}
