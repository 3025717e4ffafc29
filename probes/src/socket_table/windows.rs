//! Windows: `GetExtendedTcpTable(TCP_TABLE_OWNER_PID_LISTENER)`, which lists every listening socket with its
//! owning pid, whoever owns it, through Microsoft's `windows` crate.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use windows::Win32::Foundation::{ERROR_INSUFFICIENT_BUFFER, NO_ERROR};
use windows::Win32::NetworkManagement::IpHelper::{
    GetExtendedTcpTable, MIB_TCP6ROW_OWNER_PID, MIB_TCPROW_OWNER_PID, TCP_TABLE_OWNER_PID_LISTENER,
};
use windows::Win32::Networking::WinSock::{AF_INET, AF_INET6};

use super::Listener;

/// Every listening TCP socket, IPv4 and IPv6, for which `keep` is true.
pub(crate) fn listening(port: u16, keep: impl Fn(SocketAddr) -> bool) -> io::Result<Vec<Listener>> {
    // The IP Helper table takes no filter: the port is checked here.
    let keep = |addr: SocketAddr| addr.port() == port && keep(addr);
    let mut found = listening_family(true, keep)?;
    found.extend(listening_family(false, keep)?);
    Ok(found)
}

/// The listening TCP sockets of one family: one `GetExtendedTcpTable` call (two when the table grew between
/// sizing and reading).
fn listening_family(ipv4: bool, keep: impl Fn(SocketAddr) -> bool) -> io::Result<Vec<Listener>> {
    let family = if ipv4 { AF_INET.0 } else { AF_INET6.0 };
    let mut size: u32 = 16 * 1024;
    let mut buffer: Vec<u64> = Vec::new();
    for _ in 0..4 {
        // u64 elements keep the rows aligned.
        buffer.resize((size as usize).div_ceil(8), 0);
        // SAFETY: the buffer holds `size` writable bytes; the call writes at most that and sets `size`.
        let status = unsafe {
            GetExtendedTcpTable(
                Some(buffer.as_mut_ptr().cast()),
                &mut size,
                false,
                u32::from(family),
                TCP_TABLE_OWNER_PID_LISTENER,
                0,
            )
        };
        if status == ERROR_INSUFFICIENT_BUFFER.0 {
            continue;
        }
        if status != NO_ERROR.0 {
            return Err(io::Error::from_raw_os_error(status as i32));
        }
        // SAFETY: on success the buffer starts with the row count (a u32), followed by that many rows
        // (MIB_TCPTABLE_OWNER_PID / MIB_TCP6TABLE_OWNER_PID layout), all within `size` bytes.
        let rows: Vec<(SocketAddr, u32)> = unsafe {
            let count = *(buffer.as_ptr().cast::<u32>()) as usize;
            let rows = buffer.as_ptr().cast::<u8>().add(std::mem::size_of::<u32>());
            if ipv4 {
                std::slice::from_raw_parts(rows.cast::<MIB_TCPROW_OWNER_PID>(), count)
                    .iter()
                    .map(|row| {
                        let ip = IpAddr::V4(Ipv4Addr::from(u32::from_be(row.dwLocalAddr)));
                        (SocketAddr::new(ip, u16::from_be(row.dwLocalPort as u16)), row.dwOwningPid)
                    })
                    .collect()
            } else {
                // IPv6 rows start with a 16-byte address: 4-byte alignment after the count holds.
                std::slice::from_raw_parts(rows.cast::<MIB_TCP6ROW_OWNER_PID>(), count)
                    .iter()
                    .map(|row| {
                        let ip = IpAddr::V6(Ipv6Addr::from(row.ucLocalAddr));
                        (SocketAddr::new(ip, u16::from_be(row.dwLocalPort as u16)), row.dwOwningPid)
                    })
                    .collect()
            }
        };
        return Ok(rows
            .into_iter()
            .filter(|(addr, _)| keep(*addr))
            .map(|(addr, pid)| Listener { addr, inode: 0, pid: Some(pid), uid: None, v6only: None })
            .collect());
    }
    Err(io::Error::other("the listener table kept growing"))
}
