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

/// True when a listener bound to `listening` accepts connections for `wanted`: same port, and the same
/// address, an IPv4-mapped IPv6 form of it, or a wildcard (`0.0.0.0`, `::`) of a family that reaches it.
pub fn listener_serves(listening: SocketAddr, wanted: SocketAddr) -> bool {
    if listening.port() != wanted.port() {
        return false;
    }
    let (listening_ip, wanted_ip) = (unmapped(listening.ip()), unmapped(wanted.ip()));
    if listening_ip == wanted_ip {
        return true;
    }
    match listening.ip() {
        // 0.0.0.0 takes IPv4 only; `::` takes IPv6 and (unless IPV6_V6ONLY, which ssh sets only for an
        // explicit IPv6 bind) IPv4 through mapped addresses, so a wildcard of either family serves both here.
        IpAddr::V4(v4) => v4.is_unspecified() && wanted_ip.is_ipv4(),
        IpAddr::V6(v6) => v6.is_unspecified(),
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
fn specificity(listening: SocketAddr, wanted: SocketAddr) -> u8 {
    if unmapped(listening.ip()) == unmapped(wanted.ip()) {
        3
    } else if listening.is_ipv4() == unmapped(wanted.ip()).is_ipv4() {
        2
    } else {
        1
    }
}

/// Of every listener `(address, item)` the OS reported, the one a connection to `wanted` reaches.
pub fn serving_listener<T>(listeners: impl IntoIterator<Item = (SocketAddr, T)>, wanted: SocketAddr) -> Option<T> {
    listeners
        .into_iter()
        .filter(|(addr, _)| listener_serves(*addr, wanted))
        .max_by_key(|(addr, _)| specificity(*addr, wanted))
        .map(|(_, item)| item)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_wildcard_or_mapped_listener_serves_loopback() {
        let wanted = addr("127.0.0.1:18789");
        assert!(listener_serves(addr("127.0.0.1:18789"), wanted));
        assert!(listener_serves(addr("0.0.0.0:18789"), wanted));
        assert!(listener_serves(addr("[::]:18789"), wanted));
        assert!(listener_serves(addr("[::ffff:127.0.0.1]:18789"), wanted));
        assert!(!listener_serves(addr("127.0.0.1:18790"), wanted));
        assert!(!listener_serves(addr("10.0.0.1:18789"), wanted));
        assert!(!listener_serves(addr("[::1]:18789"), wanted));
    }

    #[test]
    fn an_ipv6_forward_is_served_by_its_own_address_or_the_ipv6_wildcard_only() {
        let wanted = addr("[::1]:18789");
        assert!(listener_serves(addr("[::1]:18789"), wanted));
        assert!(listener_serves(addr("[::]:18789"), wanted));
        assert!(!listener_serves(addr("0.0.0.0:18789"), wanted));
        assert!(!listener_serves(addr("127.0.0.1:18789"), wanted));
        // A forward configured as a mapped address is the IPv4 address.
        assert!(listener_serves(addr("127.0.0.1:18789"), addr("[::ffff:127.0.0.1]:18789")));
    }

    #[test]
    fn the_most_specific_listener_wins() {
        let wanted = addr("127.0.0.1:18789");
        let listeners = vec![
            (addr("[::]:18789"), "v6 wildcard"),
            (addr("0.0.0.0:18789"), "v4 wildcard"),
            (addr("127.0.0.1:18789"), "exact"),
            (addr("127.0.0.1:18790"), "other port"),
        ];
        assert_eq!(serving_listener(listeners.clone(), wanted), Some("exact"));
        assert_eq!(serving_listener(listeners[..2].to_vec(), wanted), Some("v4 wildcard"));
        assert_eq!(serving_listener(listeners[..1].to_vec(), wanted), Some("v6 wildcard"));
        assert_eq!(serving_listener(listeners[3..].to_vec(), wanted), None);
        // The exact IPv4 listener reported in its mapped form still beats the wildcards.
        let mapped = vec![(addr("0.0.0.0:18789"), "v4 wildcard"), (addr("[::ffff:127.0.0.1]:18789"), "mapped")];
        assert_eq!(serving_listener(mapped, wanted), Some("mapped"));
    }
}
