//! Bind exposure (host side): which addresses the gateway's port really listens on.
//!
//! The gateway's own `openclaw gateway status` reports the configured bind, not the real one, so only the
//! kernel's socket table tells the truth. Each listener is classified: loopback (127/8, ::1), private
//! (RFC 1918, CGNAT/tailnet 100.64/10, link-local, IPv6 ULA fc00::/7 and link-local fe80::/10) or public
//! (anything else, including the wildcards 0.0.0.0 and ::, which listen on every address the host has).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// The port to inspect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// The gateway's port, e.g. 18789.
    pub port: u16,
}

/// How far a listener reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// This host only.
    Loopback,
    /// A private network (LAN, tailnet, link-local).
    Private,
    /// Anything else, wildcards included.
    Public,
}

impl Scope {
    /// Every scope, for zero-valued series.
    pub const ALL: [Scope; 3] = [Scope::Loopback, Scope::Private, Scope::Public];

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
    } else if ip.is_private() || ip.is_link_local() || (a == 100 && (64..128).contains(&b)) {
        Scope::Private
    } else {
        Scope::Public
    }
}

fn scope_v6(ip: Ipv6Addr) -> Scope {
    let first = ip.segments()[0];
    if ip.is_loopback() {
        Scope::Loopback
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
}

impl Exposure {
    /// How many listeners fall in `scope`.
    pub fn count(&self, scope: Scope) -> usize {
        self.listeners.iter().filter(|addr| Scope::of(addr.ip()) == scope).count()
    }

    /// True when something listens beyond loopback.
    pub fn exposed(&self) -> bool {
        self.listeners.iter().any(|addr| Scope::of(addr.ip()) != Scope::Loopback)
    }
}

crate::labels!(Scope {
    Scope::Loopback => "loopback",
    Scope::Private => "private",
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

    /// Read the listening sockets on `port`.
    async fn probe(&mut self, timeout: Duration) -> Outcome {
        let port = self.port;
        let lookup = tokio::task::spawn_blocking(move || listeners_on(port));
        match tokio::time::timeout(timeout, lookup).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(err)) => Err(Failure::Unreadable(err.to_string())),
            Err(_) => Err(Failure::Timeout),
        }
    }
}

/// Linux (sock_diag) and Windows (the IP Helper listener table): the kernel's own table of every listener.
#[cfg(any(target_os = "linux", windows))]
fn listeners_on(port: u16) -> Outcome {
    let listeners =
        crate::socket_table::listening(|addr| addr.port() == port).map_err(|e| Failure::Unreadable(e.to_string()))?;
    Ok(Exposure { listeners: listeners.into_iter().map(|l| l.addr).collect() })
}

/// macOS: the `listeners` crate (libproc). Nothing is spawned. Only processes the exporter may inspect are
/// seen, which is why the gateway Mac runs it as root (deploy/launchd/gateway-mac).
#[cfg(not(any(target_os = "linux", windows)))]
fn listeners_on(port: u16) -> Outcome {
    let all = listeners::get_all().map_err(|e| Failure::Unreadable(e.to_string()))?;
    Ok(Exposure { listeners: tcp_listeners_on(all.into_iter().map(|l| (l.socket, l.protocol, l.state)), port) })
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
            ("100.100.1.1", Scope::Private),
            ("169.254.0.9", Scope::Private),
            ("fd7a:115c:a1e0::1", Scope::Private),
            ("fe80::1", Scope::Private),
            ("100.128.0.1", Scope::Public),
            ("8.8.8.8", Scope::Public),
            ("0.0.0.0", Scope::Public),
            ("::", Scope::Public),
            ("2001:db8::1", Scope::Public),
        ] {
            assert_eq!(Scope::of(ip.parse().unwrap()), scope, "{ip}");
        }
    }

    #[tokio::test]
    async fn finds_loopback_listeners_on_a_port() {
        let v4 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = v4.local_addr().unwrap().port();
        let v6 = std::net::TcpListener::bind(("::1", port)).ok();
        let exposure = crate::Probe::probe(&mut Target { port }, Duration::from_secs(5)).await.unwrap();
        assert_eq!(exposure.count(Scope::Loopback), 1 + usize::from(v6.is_some()));
        assert!(!exposure.exposed());
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
