//! Linux: NETLINK_SOCK_DIAG asking only for LISTEN sockets on one port (what `ss -ltn 'sport = :P'` does: the
//! port goes to the kernel as a bytecode filter, so other users' listeners on other ports are never copied
//! out; measured in issue 38: 19,000 of them cost the unfiltered dump about 22 ms a round). Reading
//! /proc/net/tcp instead walks the whole established hash in the kernel, milliseconds per read on a large
//! machine; sock_diag walks only the listening hash.

use std::io;
use std::net::{IpAddr, SocketAddr};

use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST};
use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP};
use netlink_packet_sock_diag::inet::{nlas::Nla, ExtensionFlags, InetRequest, SocketId, StateFlags};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_sys::{protocols::NETLINK_SOCK_DIAG, Socket, SocketAddr as NetlinkAddr};

use super::Listener;

/// Every listening TCP socket (IPv4 and IPv6) on `port` for which `keep` is true: the kernel filters by port.
pub(crate) fn listening(port: u16, keep: impl Fn(SocketAddr) -> bool) -> io::Result<Vec<Listener>> {
    let mut socket = Socket::new(NETLINK_SOCK_DIAG)?;
    socket.bind_auto()?;
    socket.connect(&NetlinkAddr::new(0, 0))?;
    let mut found = Vec::new();
    for family in [AF_INET, AF_INET6] {
        dump_family(&mut socket, family, port, &keep, &mut found)?;
    }
    Ok(found)
}

/// `INET_DIAG_REQ_BYTECODE`: the request attribute that carries a filter program (include/uapi/linux/inet_diag.h).
const INET_DIAG_REQ_BYTECODE: u16 = 1;
/// The filter's comparisons: source port >= and <= the value of the op that follows.
const INET_DIAG_BC_S_GE: u8 = 2;
const INET_DIAG_BC_S_LE: u8 = 3;

/// The filter program `sport >= port && sport <= port`, as `ss` writes one (each comparison an op followed by
/// an op holding the port; jumping exactly to the end accepts, 4 bytes past it rejects). `inet_diag_bc_op`:
/// code u8, yes u8, no u16, host byte order.
fn port_filter(port: u16) -> [u8; 16] {
    let op = |code: u8, yes: u8, no: u16| {
        let no = no.to_ne_bytes();
        [code, yes, no[0], no[1]]
    };
    let value = |port: u16| {
        let port = port.to_ne_bytes();
        [0, 0, port[0], port[1]]
    };
    let mut program = [0u8; 16];
    program[0..4].copy_from_slice(&op(INET_DIAG_BC_S_GE, 8, 20));
    program[4..8].copy_from_slice(&value(port));
    program[8..12].copy_from_slice(&op(INET_DIAG_BC_S_LE, 8, 12));
    program[12..16].copy_from_slice(&value(port));
    program
}

/// Append a netlink attribute to a serialized message and fix the message's length.
fn append_attribute(message: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let length = 4 + value.len();
    message.extend_from_slice(&(length as u16).to_ne_bytes());
    message.extend_from_slice(&kind.to_ne_bytes());
    message.extend_from_slice(value);
    message.resize(message.len().next_multiple_of(4), 0);
    let total = (message.len() as u32).to_ne_bytes();
    message[..4].copy_from_slice(&total);
}

/// The listening socket a connection to `wanted` would be handed to now, by inode, and its uid: one exact
/// sock_diag lookup (the kernel's own listener lookup for that address: the most specific bind, a dual-stack
/// wildcard included), with no walk of anyone's listeners. None when nothing would take it.
pub(crate) fn receiving(wanted: SocketAddr) -> io::Result<Option<(u64, u32)>> {
    let mut socket = Socket::new(NETLINK_SOCK_DIAG)?;
    socket.bind_auto()?;
    socket.connect(&NetlinkAddr::new(0, 0))?;
    let (family, any) = match wanted.ip() {
        IpAddr::V4(_) => (AF_INET, IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
        IpAddr::V6(_) => (AF_INET6, IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)),
    };
    // The listener's side of a connection from nowhere: its source is the wanted address, its destination none.
    let socket_id = SocketId {
        source_port: wanted.port(),
        destination_port: 0,
        source_address: wanted.ip(),
        destination_address: any,
        interface_id: 0,
        cookie: [0xff; 8],
    };
    send_request(&mut socket, NLM_F_REQUEST, family, StateFlags::LISTEN, socket_id, None)?;
    let mut buffer = vec![0u8; 8 * 1024];
    let size = socket.recv(&mut &mut buffer[..], 0)?;
    let message = NetlinkMessage::<SockDiagMessage>::deserialize(&buffer[..size])
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    Ok(match message.payload {
        NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(response)) => {
            Some((u64::from(response.header.inode), response.header.uid))
        }
        // ENOENT: nothing would take a connection to `wanted`.
        _ => None,
    })
}

/// The socket at the other end of one of our connections, as the kernel's table has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FarEnd {
    /// Accepted by its listener's process (ESTABLISHED or CLOSE_WAIT, with an inode): this uid's.
    Settled(u32),
    /// Not yet: half-open (SYN_RECV), or established but still in the listener's queue (no inode yet).
    Pending,
    /// In a state that vouches for no one (a TIME_WAIT or closing mini-socket carries no owner's uid).
    Unsettled(u8),
    /// No such socket: never taken by the listener (a connection whose final ACK the listener dropped, its
    /// queue full, exists on our side only; the kernel then answers the lookup with the listener itself), or
    /// taken and closed.
    Missing,
}

/// TCP states (include/net/tcp_states.h).
const ESTABLISHED: u8 = 1;
const SYN_RECV: u8 = 3;
const CLOSE_WAIT: u8 = 8;
const LISTEN: u8 = 10;

/// What an exact lookup's answer says of the far end: only an accepted socket (ESTABLISHED or CLOSE_WAIT with an
/// inode) names whose it is; a half-open one or one still queued is looked at again; any other state vouches
/// for no one.
pub(crate) fn judge_far_end(state: u8, inode: u32, uid: u32) -> FarEnd {
    match state {
        ESTABLISHED | CLOSE_WAIT if inode != 0 => FarEnd::Settled(uid),
        ESTABLISHED | CLOSE_WAIT | SYN_RECV => FarEnd::Pending,
        // An exact lookup that finds no socket of the connection falls back to the listener that would take
        // it (inet_lookup): the far end does not exist.
        LISTEN => FarEnd::Missing,
        other => FarEnd::Unsettled(other),
    }
}

/// The socket at the other end of our connection `local` -> `peer` (the listener's side: an accepted socket
/// carries the uid of the listener's process). One exact sock_diag lookup (no dump): it names whose listener
/// took this very connection, which a re-read of the listener table cannot (a listener may come and go between
/// the table read and the connect).
pub(crate) fn far_end(local: SocketAddr, peer: SocketAddr) -> io::Result<FarEnd> {
    Ok(match exact(local, peer)? {
        Some((state, inode, uid)) => judge_far_end(state, inode, uid),
        None => FarEnd::Missing,
    })
}

/// The uid of the process at the other end of our connection `local` -> `peer` (the tap's client: its
/// connecting socket), when the kernel's table has that socket with an owner (an inode): one exact lookup.
pub(crate) fn peer_uid(local: SocketAddr, peer: SocketAddr) -> io::Result<Option<u32>> {
    Ok(exact(local, peer)?.and_then(|(_, inode, uid)| (inode != 0).then_some(uid)))
}

/// The socket whose source is `peer` and destination `local` (the other end of our connection), as (TCP state,
/// inode, uid); `None` when there is no such socket.
fn exact(local: SocketAddr, peer: SocketAddr) -> io::Result<Option<(u8, u32, u32)>> {
    let mut socket = Socket::new(NETLINK_SOCK_DIAG)?;
    socket.bind_auto()?;
    socket.connect(&NetlinkAddr::new(0, 0))?;
    // An IPv4 connection taken by a dual-stack `[::]` listener lives on as an IPv6 socket with mapped
    // addresses: ask both forms.
    let mut forms = vec![(peer.ip(), local.ip())];
    if let (IpAddr::V4(peer_v4), IpAddr::V4(local_v4)) = (peer.ip(), local.ip()) {
        forms.push((IpAddr::V6(peer_v4.to_ipv6_mapped()), IpAddr::V6(local_v4.to_ipv6_mapped())));
    }
    for (source_address, destination_address) in forms {
        // The far end's socket: its source is our peer, its destination us.
        let socket_id = SocketId {
            source_port: peer.port(),
            destination_port: local.port(),
            source_address,
            destination_address,
            interface_id: 0,
            cookie: [0xff; 8],
        };
        let family = if source_address.is_ipv4() { AF_INET } else { AF_INET6 };
        send_request(&mut socket, NLM_F_REQUEST, family, StateFlags::all(), socket_id, None)?;
        let mut buffer = vec![0u8; 8 * 1024];
        let size = socket.recv(&mut &mut buffer[..], 0)?;
        let message = NetlinkMessage::<SockDiagMessage>::deserialize(&buffer[..size])
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        if let NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(response)) = message.payload {
            let header = &response.header;
            return Ok(Some((header.state, header.inode, header.uid)));
        }
        // An error (ENOENT: no such socket in this family): try the next form.
    }
    Ok(None)
}

/// Send one TCP sock_diag request: a dump (`NLM_F_DUMP` in `flags`) of the sockets in `states`, filtered by
/// the kernel to source port `port` when given, or the one socket `socket_id` names.
fn send_request(
    socket: &mut Socket,
    flags: u16,
    family: u8,
    states: StateFlags,
    socket_id: SocketId,
    port: Option<u16>,
) -> io::Result<()> {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    let request = InetRequest { family, protocol: IPPROTO_TCP, extensions: ExtensionFlags::empty(), states, socket_id };
    let mut packet = NetlinkMessage::new(header, SockDiagMessage::InetRequest(request).into());
    packet.finalize();
    let mut request_bytes = vec![0; packet.buffer_len()];
    packet.serialize(&mut request_bytes);
    if let Some(port) = port {
        append_attribute(&mut request_bytes, INET_DIAG_REQ_BYTECODE, &port_filter(port));
    }
    socket.send(&request_bytes, 0)?;
    Ok(())
}

fn dump_family(
    socket: &mut Socket,
    family: u8,
    port: u16,
    keep: &impl Fn(SocketAddr) -> bool,
    found: &mut Vec<Listener>,
) -> io::Result<()> {
    let mut socket_id = if family == AF_INET { SocketId::new_v4() } else { SocketId::new_v6() };
    // The request's own source port: the kernel compares it before anything else it does for a listener (the
    // bytecode filter below is the same test, for kernels that ignore the field).
    socket_id.source_port = port;
    send_request(socket, NLM_F_REQUEST | NLM_F_DUMP, family, StateFlags::LISTEN, socket_id, Some(port))?;

    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let size = socket.recv(&mut &mut buffer[..], 0)?;
        let mut offset = 0;
        while offset < size {
            let message = NetlinkMessage::<SockDiagMessage>::deserialize(&buffer[offset..size])
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            match message.payload {
                NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(response)) => {
                    let id = &response.header.socket_id;
                    let addr = SocketAddr::new(id.source_address, id.source_port);
                    // The kernel filtered by port; checked again here, so an old kernel that ignored the
                    // filter costs time, never a wrong answer.
                    if keep(addr) && addr.port() == port {
                        let v6only = response.nlas.iter().find_map(|nla| match nla {
                            Nla::SkV6Only(v6only) => Some(*v6only),
                            _ => None,
                        });
                        found.push(Listener {
                            addr,
                            inode: u64::from(response.header.inode),
                            pid: None,
                            uid: Some(response.header.uid),
                            v6only,
                        });
                    }
                }
                NetlinkPayload::Done(_) => return Ok(()),
                NetlinkPayload::Error(err) => {
                    // IPv6 disabled on the host is an empty family, not a failure.
                    return if family == AF_INET6 { Ok(()) } else { Err(io::Error::other(err.to_string())) };
                }
                _ => {}
            }
            let length = message.header.length as usize;
            if length == 0 {
                break;
            }
            offset += length;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_hands_back_only_the_asked_ports_listeners() {
        let others: Vec<std::net::TcpListener> =
            (0..20).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
        let ours = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = ours.local_addr().unwrap().port();
        let seen = std::cell::RefCell::new(Vec::new());
        let found = listening(port, |addr| {
            seen.borrow_mut().push(addr);
            true
        })
        .unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        // What the kernel sent, before any check here: the filter ran in the kernel.
        assert!(seen.borrow().iter().all(|addr| addr.port() == port), "{:?}", seen.borrow());
        drop(others);
    }

    #[test]
    fn the_kernel_names_the_listener_a_connection_would_go_to_without_a_dump() {
        let exact = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = exact.local_addr().unwrap();
        let inode_of = |listener: &std::net::TcpListener| {
            let port = listener.local_addr().unwrap().port();
            listening(port, |_| true).unwrap().iter().map(|l| l.inode).collect::<Vec<_>>()
        };
        let (inode, uid) = receiving(addr).unwrap().expect("the exact bind takes it");
        assert_eq!(vec![inode], inode_of(&exact));
        // SAFETY: geteuid has no preconditions.
        assert_eq!(uid, unsafe { libc::geteuid() });
        drop(exact);
        assert_eq!(receiving(addr).unwrap(), None, "nothing listens");
        // A wildcard takes connections to any of its family's addresses.
        let wildcard = std::net::TcpListener::bind(("0.0.0.0", addr.port())).unwrap();
        assert_eq!(receiving(addr).unwrap().map(|(inode, _)| vec![inode]), Some(inode_of(&wildcard)));
    }

    #[test]
    fn only_an_accepted_far_end_vouches_and_a_half_open_or_queued_one_is_asked_again() {
        assert_eq!(judge_far_end(ESTABLISHED, 4242, 1000), FarEnd::Settled(1000));
        assert_eq!(judge_far_end(CLOSE_WAIT, 4242, 1000), FarEnd::Settled(1000));
        assert_eq!(judge_far_end(SYN_RECV, 0, 65534), FarEnd::Pending, "half-open: asked again");
        assert_eq!(judge_far_end(ESTABLISHED, 0, 65534), FarEnd::Pending, "queued, not yet accepted: asked again");
        assert_eq!(judge_far_end(LISTEN, 4242, 1000), FarEnd::Missing, "the lookup fell back to the listener");
        // TIME_WAIT (6), FIN_WAIT1 (4), LAST_ACK (9): mini-sockets or closing ones vouch for no one.
        for state in [4, 6, 9] {
            assert_eq!(judge_far_end(state, 4242, 1000), FarEnd::Unsettled(state));
        }
    }
}
