//! Linux: NETLINK_SOCK_DIAG asking only for LISTEN sockets (what `ss -ltn` does). Reading /proc/net/tcp
//! instead walks the whole established hash in the kernel, milliseconds per read on a large machine;
//! sock_diag walks only the listening hash.

use std::io;
use std::net::{IpAddr, SocketAddr};

use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST};
use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP};
use netlink_packet_sock_diag::inet::{nlas::Nla, ExtensionFlags, InetRequest, SocketId, StateFlags};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_sys::{protocols::NETLINK_SOCK_DIAG, Socket, SocketAddr as NetlinkAddr};

use super::Listener;

/// Every listening TCP socket (IPv4 and IPv6) for which `keep` is true.
pub(crate) fn listening(keep: impl Fn(SocketAddr) -> bool) -> io::Result<Vec<Listener>> {
    let mut socket = Socket::new(NETLINK_SOCK_DIAG)?;
    socket.bind_auto()?;
    socket.connect(&NetlinkAddr::new(0, 0))?;
    let mut found = Vec::new();
    for family in [AF_INET, AF_INET6] {
        dump_family(&mut socket, family, &keep, &mut found)?;
    }
    Ok(found)
}

/// The uid of the socket at the other end of our connection `local` -> `peer` (the listener's side: an
/// accepted socket, or one still in the listener's queue, carries the uid of the listener that made it). One
/// exact sock_diag lookup (no dump): it names whose listener took this very connection, which a re-read of
/// the listener table cannot (a listener may come and go between the table read and the connect).
pub(crate) fn peer_uid(local: SocketAddr, peer: SocketAddr) -> io::Result<Option<u32>> {
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
        send_request(&mut socket, NLM_F_REQUEST, family, StateFlags::all(), socket_id)?;
        let mut buffer = vec![0u8; 8 * 1024];
        let size = socket.recv(&mut &mut buffer[..], 0)?;
        let message = NetlinkMessage::<SockDiagMessage>::deserialize(&buffer[..size])
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        if let NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(response)) = message.payload {
            return Ok(Some(response.header.uid));
        }
        // An error (ENOENT: no such socket in this family): try the next form.
    }
    Ok(None)
}

/// Send one TCP sock_diag request: a dump (`NLM_F_DUMP` in `flags`) of the sockets in `states`, or the one
/// socket `socket_id` names.
fn send_request(
    socket: &mut Socket,
    flags: u16,
    family: u8,
    states: StateFlags,
    socket_id: SocketId,
) -> io::Result<()> {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    let request = InetRequest { family, protocol: IPPROTO_TCP, extensions: ExtensionFlags::empty(), states, socket_id };
    let mut packet = NetlinkMessage::new(header, SockDiagMessage::InetRequest(request).into());
    packet.finalize();
    let mut request_bytes = vec![0; packet.buffer_len()];
    packet.serialize(&mut request_bytes);
    socket.send(&request_bytes, 0)?;
    Ok(())
}

fn dump_family(
    socket: &mut Socket,
    family: u8,
    keep: &impl Fn(SocketAddr) -> bool,
    found: &mut Vec<Listener>,
) -> io::Result<()> {
    let socket_id = if family == AF_INET { SocketId::new_v4() } else { SocketId::new_v6() };
    send_request(socket, NLM_F_REQUEST | NLM_F_DUMP, family, StateFlags::LISTEN, socket_id)?;

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
                    if keep(addr) {
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
