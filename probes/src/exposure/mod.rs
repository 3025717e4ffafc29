//! Bind exposure (host side): which addresses the gateway's port really listens on.
//!
//! The gateway's own `openclaw gateway status` reports the configured bind, not the real one, so only the
//! kernel's socket table tells the truth. Each listener is classified: loopback (127/8, ::1), tailnet
//! (Tailscale's 100.64/10, the CGNAT range, and its IPv6 fd7a:115c:a1e0::/48), private (RFC 1918,
//! link-local, the rest of IPv6 ULA fc00::/7 and link-local fe80::/10) or public (anything else, including
//! the wildcards 0.0.0.0 and ::, which listen on every address the host has). Which scopes a team allows is
//! the exporter's business ([`Exposure::outside`]); loopback is always allowed.
//!
//! What holds the port is named too ([`endpoint`]): a host process, a published container port, or a NAT rule.
//! Exposure stays measured on the real bind: `docker run -p 18789:18789` has docker-proxy listen on 0.0.0.0,
//! which is public whatever the gateway binds inside its container.

pub mod endpoint;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

pub use endpoint::Endpoint;

/// The port to inspect, and what the last read found out about its holders.
#[derive(Debug, Default)]
pub struct Target {
    /// The gateway's port, e.g. 18789.
    pub port: u16,
    /// The Docker Engine's socket, when the team opted in (`[[gateway]] docker_socket`): the containers
    /// publishing the port are named.
    pub docker_socket: Option<PathBuf>,
    /// The holders last read, by the listeners they were read for: a process walk only when those change.
    remembered: Option<(Vec<SocketAddr>, Vec<endpoint::Holder>)>,
    /// A holder lookup still running (for these listeners), started by an earlier read that could not wait for
    /// it: taken up by the next read rather than started again.
    pending: Option<(Vec<SocketAddr>, tokio::task::JoinHandle<Vec<endpoint::Holder>>)>,
}

impl Target {
    /// A target for `port`, naming containers through `docker_socket` when given.
    pub fn new(port: u16, docker_socket: Option<PathBuf>) -> Target {
        Target { port, docker_socket, remembered: None, pending: None }
    }
}

/// How far a listener reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// This host only.
    Loopback,
    /// A private network (LAN, link-local, IPv6 ULA).
    Private,
    /// A tailnet: 100.64.0.0/10 (CGNAT, Tailscale's IPv4 range) and fd7a:115c:a1e0::/48 (Tailscale's IPv6).
    Tailnet,
    /// Anything else, wildcards included.
    Public,
}

impl Scope {
    /// Every scope, for zero-valued series.
    pub const ALL: [Scope; 4] = [Scope::Loopback, Scope::Private, Scope::Tailnet, Scope::Public];

    /// The scope a label value names (a config's `allowed` list).
    pub fn from_label(label: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == label)
    }

    /// The label value (also through [`crate::Label`]).
    pub fn as_str(self) -> &'static str {
        crate::Label::label(&self)
    }

    /// The scope of a listening address.
    pub fn of(ip: IpAddr) -> Scope {
        match ip {
            IpAddr::V4(v4) => scope_v4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => scope_v4(v4),
                None => scope_v6(v6),
            },
        }
    }
}

fn scope_v4(ip: Ipv4Addr) -> Scope {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Scope::Loopback
    } else if a == 100 && (64..128).contains(&b) {
        Scope::Tailnet
    } else if ip.is_private() || ip.is_link_local() {
        Scope::Private
    } else {
        Scope::Public
    }
}

fn scope_v6(ip: Ipv6Addr) -> Scope {
    let first = ip.segments()[0];
    let [_, second, third, ..] = ip.segments();
    if ip.is_loopback() {
        Scope::Loopback
    } else if (first, second, third) == (0xfd7a, 0x115c, 0xa1e0) {
        Scope::Tailnet
    } else if (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80 {
        Scope::Private
    } else {
        Scope::Public
    }
}

/// The listeners found on the port.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Exposure {
    /// Every listening address on the port.
    pub listeners: Vec<SocketAddr>,
    /// Who holds each of them.
    pub holders: Vec<endpoint::Holder>,
    /// With no listener: whether a connect to 127.0.0.1 on the port was accepted all the same (a NAT rule).
    pub answers_without_listener: bool,
    /// The containers the Docker Engine says publish the port (`docker_socket` set, the port a container's or
    /// a NAT rule's), or why it could not say.
    pub containers: Option<Result<Vec<crate::docker_engine::Container>, String>>,
}

impl Exposure {
    /// What holds the port.
    pub fn endpoint(&self) -> Endpoint {
        Endpoint::of(&self.holders, self.answers_without_listener)
    }

    /// How many listeners fall in `scope`.
    pub fn count(&self, scope: Scope) -> usize {
        self.listeners.iter().filter(|addr| Scope::of(addr.ip()) == scope).count()
    }

    /// True when something listens beyond loopback.
    pub fn exposed(&self) -> bool {
        self.listeners.iter().any(|addr| Scope::of(addr.ip()) != Scope::Loopback)
    }

    /// The listeners outside `allowed` (loopback is always allowed): what pages.
    pub fn outside(&self, allowed: &[Scope]) -> Vec<SocketAddr> {
        let scope_allowed = |scope: Scope| scope == Scope::Loopback || allowed.contains(&scope);
        self.listeners.iter().copied().filter(|addr| !scope_allowed(Scope::of(addr.ip()))).collect()
    }
}

crate::labels!(Scope {
    Scope::Loopback => "loopback",
    Scope::Private => "private",
    Scope::Tailnet => "tailnet",
    Scope::Public => "public",
});

/// Why the listeners could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Failure {
    /// The OS would not give its socket table (permission, an interface missing on this system).
    #[error("cannot read the socket table: {0}")]
    Unreadable(String),
    /// The read did not finish within the timeout.
    #[error("reading the socket table timed out")]
    Timeout,
}

crate::labels!(Failure {
    Failure::Unreadable(_) => "unreadable",
    Failure::Timeout => "timeout",
});

/// What an exposure probe returns.
pub type Outcome = Result<Exposure, Failure>;

impl From<crate::CutOff> for Outcome {
    fn from(_: crate::CutOff) -> Self {
        Err(Failure::Timeout)
    }
}

impl crate::Probe for Target {
    const KIND: &'static str = "exposure";
    type Outcome = Outcome;

    /// Read the listening sockets on `port` and who holds them (looked up again only when they change); with
    /// none, whether the port answers anyway; with `docker_socket`, which containers publish it.
    async fn probe(&mut self, timeout: Duration) -> Outcome {
        let started = tokio::time::Instant::now();
        let port = self.port;
        let lookup = tokio::task::spawn_blocking(move || {
            let mut exposure = listeners_on(port)?;
            exposure.listeners.sort();
            Ok(exposure)
        });
        let mut exposure: Exposure = match tokio::time::timeout(timeout, lookup).await {
            Ok(Ok(outcome)) => outcome?,
            Ok(Err(err)) => return Err(Failure::Unreadable(err.to_string())),
            Err(_) => return Err(Failure::Timeout),
        };
        let left = |cap: Duration| timeout.saturating_sub(started.elapsed()).min(cap);
        // The listeners are the red line and are already read; naming their holders may walk every process
        // (slow where the OS is: under wine it took seconds), so it never costs the read its exposure.
        exposure.holders = self.holders(&exposure.listeners, left(timeout)).await;
        if exposure.listeners.is_empty() {
            exposure.answers_without_listener = answers(port, left(Duration::from_secs(1))).await;
        }
        if let Some(socket) = &self.docker_socket {
            if matches!(exposure.endpoint(), Endpoint::ContainerPort { .. } | Endpoint::Nat) {
                let asked = crate::docker_engine::publishing(socket, port, left(Duration::from_secs(2))).await;
                exposure.containers = Some(asked);
            }
        }
        Ok(exposure)
    }
}

impl Target {
    /// The holders of `listeners`: remembered while the listeners are the same; else looked up on the
    /// blocking pool, waited for at most `wait` (a lookup not done by then is taken up by the next read, and
    /// its listeners' holders are unknown this time).
    async fn holders(&mut self, listeners: &[SocketAddr], wait: Duration) -> Vec<endpoint::Holder> {
        if let Some((read_for, holders)) = &self.remembered {
            if read_for == listeners {
                return holders.clone();
            }
        }
        let mut running = match self.pending.take() {
            Some((read_for, handle)) if read_for == listeners => handle,
            _ => {
                let owned = listeners.to_vec();
                tokio::task::spawn_blocking(move || endpoint::holders_of(&owned))
            }
        };
        match tokio::time::timeout(wait, &mut running).await {
            Ok(Ok(holders)) => {
                // A holder read as gone (it closed between the table and the walk) is read again next time.
                if holders.iter().all(|h| h.process.is_some()) {
                    self.remembered = Some((listeners.to_vec(), holders.clone()));
                }
                holders
            }
            Ok(Err(join_error)) => unknown_holders(listeners, &format!("the holder lookup failed: {join_error}")),
            Err(_) => {
                self.pending = Some((listeners.to_vec(), running));
                unknown_holders(listeners, "the holder lookup did not finish in time; it goes on for the next read")
            }
        }
    }
}

/// Each distinct listener with its holder unknown, for `why`.
fn unknown_holders(listeners: &[SocketAddr], why: &str) -> Vec<endpoint::Holder> {
    let mut distinct = listeners.to_vec();
    distinct.dedup();
    distinct
        .into_iter()
        .map(|addr| endpoint::Holder { addr, process: None, unreadable: Some(why.to_owned()) })
        .collect()
}

/// Whether a connect to 127.0.0.1:`port` is accepted within `timeout` (closed at once, with RST): a port with
/// no listener that answers is published by a NAT rule.
async fn answers(port: u16, timeout: Duration) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    match tokio::time::timeout(timeout, crate::net::connect_stream(addr)).await {
        Ok(Ok(stream)) => {
            crate::net::close_without_time_wait(stream);
            true
        }
        _ => false,
    }
}

/// Linux (sock_diag) and Windows (the IP Helper listener table): the kernel's own table of every listener.
#[cfg(any(target_os = "linux", windows))]
fn listeners_on(port: u16) -> Outcome {
    let listeners = crate::socket_table::listening(port, |_| true).map_err(|e| Failure::Unreadable(e.to_string()))?;
    Ok(Exposure { listeners: listeners.into_iter().map(|l| l.addr).collect(), ..Exposure::default() })
}

/// macOS: the `listeners` crate (libproc). Nothing is spawned. Only processes the exporter may inspect are
/// seen, which is why the gateway Mac runs it as root (deploy/launchd/gateway-mac).
#[cfg(not(any(target_os = "linux", windows)))]
fn listeners_on(port: u16) -> Outcome {
    let all = listeners::get_all().map_err(|e| Failure::Unreadable(e.to_string()))?;
    Ok(Exposure {
        listeners: tcp_listeners_on(all.into_iter().map(|l| (l.socket, l.protocol, l.state)), port),
        ..Exposure::default()
    })
}

/// The distinct addresses listening for TCP on `port`, sorted (one socket may show under several pids).
#[cfg_attr(any(target_os = "linux", windows), allow(dead_code))]
fn tcp_listeners_on(
    found: impl IntoIterator<Item = (SocketAddr, listeners::Protocol, listeners::SocketState)>,
    port: u16,
) -> Vec<SocketAddr> {
    let mut addrs: Vec<SocketAddr> = found
        .into_iter()
        .filter(|&(addr, protocol, state)| {
            addr.port() == port && protocol == listeners::Protocol::TCP && state == listeners::SocketState::Listen
        })
        .map(|(addr, ..)| addr)
        .collect();
    addrs.sort();
    addrs.dedup();
    addrs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_classified() {
        for (ip, scope) in [
            ("127.0.0.1", Scope::Loopback),
            ("127.8.9.1", Scope::Loopback),
            ("::1", Scope::Loopback),
            ("::ffff:127.0.0.1", Scope::Loopback),
            ("10.1.2.3", Scope::Private),
            ("172.20.0.1", Scope::Private),
            ("192.168.1.5", Scope::Private),
            ("100.64.0.1", Scope::Tailnet),
            ("100.100.1.1", Scope::Tailnet),
            ("100.127.255.254", Scope::Tailnet),
            ("::ffff:100.100.1.1", Scope::Tailnet),
            ("169.254.0.9", Scope::Private),
            ("fd7a:115c:a1e0::1", Scope::Tailnet),
            ("fd7a:115c:a1e1::1", Scope::Private),
            ("fd00::1", Scope::Private),
            ("fe80::1", Scope::Private),
            ("100.63.255.255", Scope::Public),
            ("100.128.0.1", Scope::Public),
            ("8.8.8.8", Scope::Public),
            ("0.0.0.0", Scope::Public),
            ("::", Scope::Public),
            ("2001:db8::1", Scope::Public),
        ] {
            assert_eq!(Scope::of(ip.parse().unwrap()), scope, "{ip}");
        }
    }

    #[test]
    fn only_listeners_outside_the_allowed_scopes_count_and_loopback_always_passes() {
        let found = Exposure {
            listeners: ["127.0.0.1:1", "100.100.1.1:1", "10.0.0.1:1", "0.0.0.0:1"].map(|a| a.parse().unwrap()).to_vec(),
            ..Exposure::default()
        };
        let outside = |allowed: &[Scope]| found.outside(allowed).iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(outside(&[]), ["100.100.1.1:1", "10.0.0.1:1", "0.0.0.0:1"]);
        assert_eq!(outside(&[Scope::Tailnet]), ["10.0.0.1:1", "0.0.0.0:1"]);
        assert_eq!(outside(&[Scope::Tailnet, Scope::Private]), ["0.0.0.0:1"]);
        assert!(outside(&Scope::ALL).is_empty());
        assert_eq!(Scope::from_label("tailnet"), Some(Scope::Tailnet));
        assert_eq!(Scope::from_label("lan"), None);
    }

    #[tokio::test]
    async fn finds_loopback_listeners_on_a_port() {
        let v4 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = v4.local_addr().unwrap().port();
        let v6 = std::net::TcpListener::bind(("::1", port)).ok();
        let exposure = crate::Probe::probe(&mut Target::new(port, None), Duration::from_secs(5)).await.unwrap();
        assert_eq!(exposure.count(Scope::Loopback), 1 + usize::from(v6.is_some()));
        assert!(!exposure.exposed());
        // This test process holds them: a host process, named.
        match exposure.endpoint() {
            Endpoint::HostProcess(process) => assert_eq!(process.pid, std::process::id()),
            other => panic!("{other:?}"),
        }
        drop((v4, v6));
        let closed = crate::Probe::probe(&mut Target::new(port, None), Duration::from_secs(5)).await.unwrap();
        assert_eq!(closed.endpoint(), Endpoint::Closed);
    }

    #[test]
    fn the_crate_path_keeps_tcp_listeners_on_the_port_once_each() {
        let v4 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = v4.local_addr().unwrap().port();
        let all = listeners::get_all().unwrap();
        let found = tcp_listeners_on(all.into_iter().map(|l| (l.socket, l.protocol, l.state)), port);
        assert_eq!(found, vec![v4.local_addr().unwrap()]);
        use listeners::{Protocol, SocketState};
        let rows = [
            ("0.0.0.0:18789", Protocol::TCP, SocketState::Listen),
            ("0.0.0.0:18789", Protocol::TCP, SocketState::Listen),
            ("127.0.0.1:18789", Protocol::TCP, SocketState::Established),
            ("127.0.0.1:18789", Protocol::UDP, SocketState::Unknown),
            ("[::1]:18789", Protocol::TCP, SocketState::Listen),
            ("[::1]:18790", Protocol::TCP, SocketState::Listen),
        ];
        let found = tcp_listeners_on(rows.map(|(a, p, s)| (a.parse().unwrap(), p, s)), 18789);
        assert_eq!(found, vec!["0.0.0.0:18789".parse().unwrap(), "[::1]:18789".parse().unwrap()]);
    }
}
