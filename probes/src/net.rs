//! Network plumbing every probe that connects shares: a connect that skips the reactor when loopback
//! finishes the handshake inside connect(), a close without TIME_WAIT, which connect errors are the
//! exporter's own, and which listening address serves a forward's address.

use std::io;
use std::net::{IpAddr, SocketAddr};

use tokio::net::TcpStream;

/// A connected tokio stream to `addr`, for the probes that go on to talk and for the auth tap's upstream.
/// Same as `TcpStream::connect`, minus a trip through the reactor when loopback finishes the handshake
/// inside connect(). No timeout of its own: callers bound it.
pub async fn connect_stream(addr: SocketAddr) -> io::Result<TcpStream> {
    match start_connect(addr)? {
        Started::Established(socket) => TcpStream::from_std(socket.into()),
        Started::Pending(socket) => finish_connect(socket).await,
    }
}

pub(crate) async fn finish_connect(socket: socket2::Socket) -> io::Result<TcpStream> {
    let stream = TcpStream::from_std(socket.into())?;
    stream.writable().await?;
    match stream.take_error()? {
        Some(err) => Err(err),
        None => Ok(stream),
    }
}

pub(crate) enum Started {
    Established(socket2::Socket),
    Pending(socket2::Socket),
}

/// A non-blocking connect. On loopback the kernel runs the whole handshake inside connect(), so the socket
/// is usually established when the call returns; asking (getpeername) then spares the epoll registration,
/// the wakeup and the deregistration a runtime-driven connect costs: most of a probe's user-space time.
pub(crate) fn start_connect(addr: SocketAddr) -> io::Result<Started> {
    // Non-blocking from socket() on Linux (SOCK_NONBLOCK): one system call fewer per probe.
    #[cfg(target_os = "linux")]
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM.nonblocking(), None)?;
    #[cfg(not(target_os = "linux"))]
    let socket = {
        let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
        socket.set_nonblocking(true)?;
        socket
    };
    match socket.connect(&addr.into()) {
        Ok(()) => return Ok(Started::Established(socket)),
        Err(err) if err.raw_os_error() == Some(CONNECT_IN_PROGRESS) => {}
        Err(err) => return Err(err),
    }
    if socket.peer_addr().is_ok() {
        return Ok(Started::Established(socket));
    }
    match socket.take_error()? {
        Some(err) => Err(err),
        None => Ok(Started::Pending(socket)),
    }
}

/// What a non-blocking connect() returns while the handshake goes on: EINPROGRESS on Linux (115) and macOS
/// (36), WSAEWOULDBLOCK on Windows (10035).
const CONNECT_IN_PROGRESS: i32 = if cfg!(target_os = "linux") {
    115
} else if cfg!(windows) {
    10035
} else {
    36
};

/// Close with RST instead of FIN. A prober that connects every second per forward would otherwise leave a
/// TIME_WAIT entry per probe for a minute, bloating the socket table that the ssh session probe reads.
pub fn close_without_time_wait(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

/// True when a connect failed for the exporter's own shortage (no descriptor, buffer or local port): the
/// peer was never asked, so no peer is to blame.
pub fn is_local_shortage(err: &io::Error) -> bool {
    // EMFILE, ENFILE, ENOBUFS by OS: Linux 24, 23, 105; macOS 24, 23, 55; Windows WSAEMFILE 10024, WSAENOBUFS 10055.
    const LOCAL: &[i32] = if cfg!(windows) {
        &[10024, 10055]
    } else if cfg!(target_os = "linux") {
        &[24, 23, 105]
    } else {
        &[24, 23, 55]
    };
    err.raw_os_error().is_some_and(|code| LOCAL.contains(&code))
        || matches!(err.kind(), io::ErrorKind::AddrNotAvailable | io::ErrorKind::AddrInUse | io::ErrorKind::OutOfMemory)
}

/// True when the kernel could hand a connection to `wanted` to a listener bound to `listening`: same port,
/// and the same address (or its IPv4-mapped IPv6 form), the IPv4 wildcard for an IPv4 address, or the IPv6
/// wildcard for an IPv6 address and, unless the socket is IPV6_V6ONLY, for an IPv4 one too. `v6only` is what
/// the OS says of an IPv6 socket; `None` (not said) counts as dual-stack, so an unknown socket is always a
/// candidate: every candidate must be trusted before a credential goes out, and not knowing fails closed.
///
/// Measured (issue 28): `ssh -g` (or `-L '*:P:...'`) while another user holds `127.0.0.1:P` fails its IPv4
/// wildcard bind, binds `[::]:P` with IPV6_V6ONLY (OpenSSH sets it), and stays up; that socket never
/// receives a connection to `127.0.0.1:P`, so it must not vouch for it.
pub fn could_receive(listening: SocketAddr, v6only: Option<bool>, wanted: SocketAddr) -> bool {
    if listening.port() != wanted.port() {
        return false;
    }
    let (listening_ip, wanted_ip) = (unmapped(listening.ip()), unmapped(wanted.ip()));
    if listening_ip == wanted_ip {
        return true;
    }
    match listening.ip() {
        IpAddr::V4(v4) => v4.is_unspecified() && wanted_ip.is_ipv4(),
        // `::ffff:0.0.0.0` is the IPv4 wildcard in IPv6 form.
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some_and(|v4| v4.is_unspecified()) => wanted_ip.is_ipv4(),
        IpAddr::V6(v6) => v6.is_unspecified() && (wanted_ip.is_ipv6() || v6only != Some(true)),
    }
}

/// `::ffff:a.b.c.d` as `a.b.c.d`; anything else unchanged.
fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        ip => ip,
    }
}

/// How closely a listener matches the wanted address: the kernel hands a connection to the most specific
/// bind, so an exact address beats a wildcard of the same family, which beats the other family's wildcard.
pub fn specificity(listening: SocketAddr, wanted: SocketAddr) -> u8 {
    if unmapped(listening.ip()) == unmapped(wanted.ip()) {
        3
    } else if unmapped(listening.ip()).is_ipv4() == unmapped(wanted.ip()).is_ipv4() {
        2
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_candidates_for_an_ipv4_forward_exclude_a_v6only_wildcard() {
        let wanted = addr("127.0.0.1:18789");
        assert!(could_receive(addr("127.0.0.1:18789"), None, wanted));
        assert!(could_receive(addr("0.0.0.0:18789"), None, wanted));
        assert!(could_receive(addr("[::ffff:127.0.0.1]:18789"), Some(false), wanted));
        assert!(could_receive(addr("[::ffff:0.0.0.0]:18789"), Some(false), wanted));
        // A dual-stack IPv6 wildcard takes IPv4 connections; a v6only one (what ssh -g binds) never does.
        assert!(could_receive(addr("[::]:18789"), Some(false), wanted));
        assert!(!could_receive(addr("[::]:18789"), Some(true), wanted));
        // Not told: counted as a candidate (fail closed).
        assert!(could_receive(addr("[::]:18789"), None, wanted));
        assert!(!could_receive(addr("127.0.0.1:18790"), None, wanted));
        assert!(!could_receive(addr("10.0.0.1:18789"), None, wanted));
        assert!(!could_receive(addr("[::1]:18789"), Some(false), wanted));
    }

    #[test]
    fn an_ipv6_forward_is_received_by_its_own_address_or_the_ipv6_wildcard_only() {
        let wanted = addr("[::1]:18789");
        assert!(could_receive(addr("[::1]:18789"), Some(true), wanted));
        assert!(could_receive(addr("[::]:18789"), Some(true), wanted));
        assert!(could_receive(addr("[::]:18789"), Some(false), wanted));
        assert!(!could_receive(addr("0.0.0.0:18789"), None, wanted));
        assert!(!could_receive(addr("127.0.0.1:18789"), None, wanted));
        // A forward configured as a mapped address is the IPv4 address.
        assert!(could_receive(addr("127.0.0.1:18789"), None, addr("[::ffff:127.0.0.1]:18789")));
    }

    #[test]
    fn the_exact_address_is_the_most_specific() {
        let wanted = addr("127.0.0.1:18789");
        assert_eq!(specificity(addr("127.0.0.1:18789"), wanted), 3);
        assert_eq!(specificity(addr("[::ffff:127.0.0.1]:18789"), wanted), 3);
        assert_eq!(specificity(addr("0.0.0.0:18789"), wanted), 2);
        assert_eq!(specificity(addr("[::]:18789"), wanted), 1);
    }
}
