//! What holds the gateway's port on the gateway host ([`Endpoint`]): a host process (the gateway itself,
//! named with its pid and user), a published container port (`docker-proxy` with the container's address,
//! dockerd's own socket when the userland proxy is off, Docker Desktop's backend, rootless Docker's or
//! Podman's port forwarder), or a port that answers with no listener at all (a NAT rule publishes it: nerdctl
//! and CNI, or a hand-written DNAT). Health checks and logs differ between them, so the doctor names where
//! the gateway's logs are. The decision is by the holders' names ([`Endpoint::of`]), portable; reading the
//! holders is the OS's ([`holders_of`]).

use std::net::SocketAddr;

use crate::ssh_session;

/// A listener on the gateway's port and the process holding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The listening address.
    pub addr: SocketAddr,
    /// The process, when it could be read.
    pub process: Option<Process>,
    /// Why it could not, when it could not (another user's process and no privilege).
    pub unreadable: Option<String>,
}

/// A process holding a listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    /// Its pid.
    pub pid: u32,
    /// Its command name.
    pub name: String,
    /// Who it runs as, for people (`root (uid 0), this user`).
    pub user: String,
    /// `docker-proxy`'s `-container-ip` and `-container-port` (Linux, from its command line).
    pub container: Option<SocketAddr>,
}

/// What publishes a container's port on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publisher {
    /// Docker's userland proxy, one process per published port and address family.
    DockerProxy,
    /// dockerd itself (the userland proxy off: it holds the port so nothing else takes it).
    Dockerd,
    /// Docker Desktop's backend (macOS, Windows): the VM's ports published by `com.docker.backend`/vpnkit.
    DockerDesktop,
    /// Rootless Docker's or Podman's port forwarder (`rootlessport`, `rootlesskit`, `slirp4netns`,
    /// `pasta`, `conmon`).
    Rootless,
}

crate::labels!(Publisher {
    Publisher::DockerProxy => "docker-proxy",
    Publisher::Dockerd => "dockerd",
    Publisher::DockerDesktop => "docker-desktop",
    Publisher::Rootless => "rootless",
});

impl Publisher {
    /// The publisher a process named `name` is, if it is one (Windows image names in any case, `.exe` or not).
    pub fn of(name: &str) -> Option<Publisher> {
        let base = name.rsplit(['/', '\\']).next().unwrap_or(name).to_ascii_lowercase();
        let stem = base.strip_suffix(".exe").unwrap_or(&base);
        match stem {
            "docker-proxy" => Some(Publisher::DockerProxy),
            "dockerd" => Some(Publisher::Dockerd),
            "com.docker.backend" | "com.docker.vpnkit" | "vpnkit" | "vpnkit-bridge" | "docker desktop" => {
                Some(Publisher::DockerDesktop)
            }
            "rootlessport" | "rootlesskit" | "slirp4netns" | "pasta" | "conmon" => Some(Publisher::Rootless),
            _ => None,
        }
    }
}

/// What holds the gateway's port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// Nothing listens and nothing answers.
    Closed,
    /// A host process: the gateway itself (its logs in /tmp/openclaw and ~/.openclaw/logs).
    HostProcess(Process),
    /// A published container port (its logs: `docker logs`).
    ContainerPort {
        /// What publishes it.
        publisher: Publisher,
        /// The publishing process.
        process: Process,
        /// The container's address, when the publisher says it (docker-proxy).
        container: Option<SocketAddr>,
    },
    /// No listener, yet the port answers: a NAT rule publishes it (nerdctl/CNI, a hand-written DNAT).
    Nat,
    /// A listener whose holder this user cannot read: why.
    Unknown(String),
}

crate::labels!(Endpoint {
    Endpoint::Closed => "closed",
    Endpoint::HostProcess(_) => "host_process",
    Endpoint::ContainerPort { .. } => "container_port",
    Endpoint::Nat => "nat",
    Endpoint::Unknown(_) => "unknown",
});

impl Endpoint {
    /// The endpoint the port's `holders` make, `answers` telling a port with no listener that still accepts (a
    /// NAT rule) from a closed one. A publisher among the holders makes it a container port (its process with
    /// the container's address first); else a holder that cannot be read makes it unknown; else the first
    /// host process.
    pub fn of(holders: &[Holder], answers: bool) -> Endpoint {
        if holders.is_empty() {
            return if answers { Endpoint::Nat } else { Endpoint::Closed };
        }
        let mut published: Vec<(Publisher, &Process)> = holders
            .iter()
            .filter_map(|h| h.process.as_ref())
            .filter_map(|p| Publisher::of(&p.name).map(|publisher| (publisher, p)))
            .collect();
        published.sort_by_key(|(_, process)| process.container.is_none());
        if let Some((publisher, process)) = published.first() {
            return Endpoint::ContainerPort {
                publisher: *publisher,
                process: (*process).clone(),
                container: process.container,
            };
        }
        if let Some(why) = holders.iter().find_map(|h| h.unreadable.clone()) {
            return Endpoint::Unknown(why);
        }
        match holders.iter().find_map(|h| h.process.clone()) {
            Some(process) => Endpoint::HostProcess(process),
            None => Endpoint::Unknown("no process holding the port could be read".into()),
        }
    }

    /// For people: what holds the port.
    pub fn describe(&self) -> String {
        match self {
            Endpoint::Closed => "nothing listens and nothing answers".into(),
            Endpoint::HostProcess(p) => format!("a host process: {} pid {} ({})", p.name, p.pid, p.user),
            Endpoint::ContainerPort { publisher, process, container } => format!(
                "a published container port: {} pid {} ({}){}",
                process.name,
                process.pid,
                publisher.label_words(),
                container.map_or(String::new(), |c| format!(", to the container at {c}"))
            ),
            Endpoint::Nat => "no listener, yet the port answers: a NAT rule publishes it".into(),
            Endpoint::Unknown(why) => format!("unknown: {why}"),
        }
    }
}

impl Publisher {
    fn label_words(self) -> &'static str {
        match self {
            Publisher::DockerProxy => "Docker's userland proxy",
            Publisher::Dockerd => "dockerd's own socket: the userland proxy is off",
            Publisher::DockerDesktop => "Docker Desktop's backend",
            Publisher::Rootless => "a rootless container runtime's port forwarder",
        }
    }
}

/// `docker-proxy`'s container address from its arguments: `-container-ip X -container-port Y` (also
/// `--container-ip=X`).
pub fn container_of(argv: &[String]) -> Option<SocketAddr> {
    let value = |flag: &str| -> Option<&str> {
        argv.iter().enumerate().find_map(|(i, arg)| {
            let arg = arg.trim_start_matches('-');
            match arg.split_once('=') {
                Some((name, value)) if name == flag => Some(value),
                None if arg == flag => argv.get(i + 1).map(String::as_str),
                _ => None,
            }
        })
    };
    let ip: std::net::IpAddr = value("container-ip")?.parse().ok()?;
    let port: u16 = value("container-port")?.parse().ok()?;
    Some(SocketAddr::new(ip, port))
}

/// The holders of `listeners` (distinct addresses), read with the platform's owner lookup; `docker-proxy`'s
/// container address from its command line (Linux).
pub fn holders_of(listeners: &[SocketAddr]) -> Vec<Holder> {
    let lookup = ssh_session::Lookup::platform_default();
    let mut distinct = listeners.to_vec();
    distinct.sort();
    distinct.dedup();
    distinct
        .into_iter()
        .map(|addr| {
            let outcome = ssh_session::holder_now(addr, lookup);
            match outcome.owner() {
                Some(owner) => Holder {
                    addr,
                    process: Some(Process {
                        pid: owner.pid,
                        name: owner.name.clone(),
                        user: owner.user(),
                        container: (Publisher::of(&owner.name) == Some(Publisher::DockerProxy))
                            .then(|| command_line(owner.pid).and_then(|argv| container_of(&argv)))
                            .flatten(),
                    }),
                    unreadable: None,
                },
                None => Holder { addr, process: None, unreadable: Some(outcome.holder()) },
            }
        })
        .collect()
}

/// A process's arguments (Linux's /proc/PID/cmdline, at most 64 of 4 KiB each); elsewhere none are read.
fn command_line(pid: u32) -> Option<Vec<String>> {
    #[cfg(target_os = "linux")]
    {
        let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        Some(
            raw.split(|&b| b == 0)
                .filter(|arg| !arg.is_empty())
                .take(64)
                .map(|arg| String::from_utf8_lossy(&arg[..arg.len().min(4096)]).into_owned())
                .collect(),
        )
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = pid;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Label;

    fn holder(addr: &str, name: &str, container: Option<&str>) -> Holder {
        Holder {
            addr: addr.parse().unwrap(),
            process: Some(Process {
                pid: 100,
                name: name.into(),
                user: "root (uid 0), this user".into(),
                container: container.map(|c| c.parse().unwrap()),
            }),
            unreadable: None,
        }
    }

    #[test]
    fn holder_kinds_are_named_from_synthetic_listener_rows() {
        let host = Endpoint::of(&[holder("127.0.0.1:18789", "node", None)], true);
        assert_eq!(host.label(), "host_process");
        assert!(host.describe().contains("node pid 100"), "{}", host.describe());
        // docker-proxy for each family; the one that names the container wins.
        let proxied = Endpoint::of(
            &[
                holder("[::1]:18789", "docker-proxy", None),
                holder("127.0.0.1:18789", "docker-proxy", Some("172.17.0.2:18789")),
            ],
            true,
        );
        assert_eq!(proxied.label(), "container_port");
        match &proxied {
            Endpoint::ContainerPort { publisher, container, .. } => {
                assert_eq!(
                    (*publisher, *container),
                    (Publisher::DockerProxy, Some("172.17.0.2:18789".parse().unwrap()))
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(proxied.describe().contains("172.17.0.2:18789"));
        for (name, publisher) in [
            ("dockerd", Publisher::Dockerd),
            ("com.docker.backend", Publisher::DockerDesktop),
            ("com.docker.backend.exe", Publisher::DockerDesktop),
            ("vpnkit-bridge.exe", Publisher::DockerDesktop),
            ("rootlessport", Publisher::Rootless),
        ] {
            match Endpoint::of(&[holder("0.0.0.0:18789", name, None)], true) {
                Endpoint::ContainerPort { publisher: found, .. } => assert_eq!(found, publisher, "{name}"),
                other => panic!("{name}: {other:?}"),
            }
        }
        // A publisher beside a host process still names a container port.
        let mixed = Endpoint::of(
            &[holder("127.0.0.1:18789", "node", None), holder("0.0.0.0:18789", "docker-proxy", None)],
            true,
        );
        assert_eq!(mixed.label(), "container_port");
        // No listener: a NAT rule when the port answers, closed when not.
        assert_eq!(Endpoint::of(&[], true), Endpoint::Nat);
        assert_eq!(Endpoint::of(&[], false), Endpoint::Closed);
        // A holder that cannot be read.
        let unreadable =
            Holder { addr: "0.0.0.0:18789".parse().unwrap(), process: None, unreadable: Some("root's".into()) };
        assert_eq!(Endpoint::of(&[unreadable], true).label(), "unknown");
        assert_eq!(Publisher::of("node"), None);
        assert_eq!(Publisher::of("docker"), None, "the CLI holds no port");
    }

    #[test]
    fn docker_proxys_arguments_name_the_container() {
        let argv = |args: &str| args.split(' ').map(str::to_owned).collect::<Vec<_>>();
        let old = argv("/usr/sbin/docker-proxy -proto tcp -host-ip 127.0.0.1 -host-port 18789 -container-ip 172.17.0.2 -container-port 18789");
        assert_eq!(container_of(&old), Some("172.17.0.2:18789".parse().unwrap()));
        let equals = argv("docker-proxy --container-ip=fd00::2 --container-port=8080 -use-listen-fd");
        assert_eq!(container_of(&equals), Some("[fd00::2]:8080".parse().unwrap()));
        assert_eq!(container_of(&argv("docker-proxy -container-ip 172.17.0.2")), None);
        assert_eq!(container_of(&argv("docker-proxy -container-ip bogus -container-port 1")), None);
    }
}
