//! Windows: the IP Helper listener table (`GetExtendedTcpTable`, which names each socket's owning pid) and
//! a Toolhelp32 process snapshot for the parent, through Microsoft's `windows` crate.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use windows::Win32::Foundation::{CloseHandle, ERROR_INSUFFICIENT_BUFFER, NO_ERROR};
use windows::Win32::NetworkManagement::IpHelper::{
    GetExtendedTcpTable, MIB_TCP6ROW_OWNER_PID, MIB_TCPROW_OWNER_PID, TCP_TABLE_OWNER_PID_LISTENER,
};
use windows::Win32::Networking::WinSock::{AF_INET, AF_INET6};
use windows::Win32::System::Diagnostics::ToolHelp::{
    CreateToolhelp32Snapshot, Process32FirstW, Process32NextW, PROCESSENTRY32W, TH32CS_SNAPPROCESS,
};

use super::super::decide::{listener_serves, ProcessInfo};
use super::super::Owner;

/// Every listening TCP socket of `wanted`'s family as `(address, owning pid)`: one `GetExtendedTcpTable`
/// call (two when the table grew between sizing and reading).
fn listeners_of_family(wanted: SocketAddr) -> Option<Vec<(SocketAddr, u32)>> {
    let family = if wanted.is_ipv4() { AF_INET.0 } else { AF_INET6.0 };
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
            return None;
        }
        // SAFETY: on success the buffer starts with the row count (a u32), followed by that many rows
        // (MIB_TCPTABLE_OWNER_PID / MIB_TCP6TABLE_OWNER_PID layout), all within `size` bytes.
        unsafe {
            let count = *(buffer.as_ptr().cast::<u32>()) as usize;
            let rows = buffer.as_ptr().cast::<u8>().add(std::mem::size_of::<u32>());
            return Some(if wanted.is_ipv4() {
                let rows = std::slice::from_raw_parts(rows.cast::<MIB_TCPROW_OWNER_PID>(), count);
                rows.iter()
                    .map(|row| {
                        let ip = Ipv4Addr::from(u32::from_be(row.dwLocalAddr));
                        (SocketAddr::new(IpAddr::V4(ip), u16::from_be(row.dwLocalPort as u16)), row.dwOwningPid)
                    })
                    .collect()
            } else {
                // IPv6 rows start with a 16-byte address: 4-byte alignment after the count holds.
                let rows = std::slice::from_raw_parts(rows.cast::<MIB_TCP6ROW_OWNER_PID>(), count);
                rows.iter()
                    .map(|row| {
                        let ip = Ipv6Addr::from(row.ucLocalAddr);
                        (SocketAddr::new(IpAddr::V6(ip), u16::from_be(row.dwLocalPort as u16)), row.dwOwningPid)
                    })
                    .collect()
            });
        }
    }
    None
}

/// One listener-table call: the remembered pid still owns a socket listening for `wanted`.
pub(in crate::ssh_session) fn still_holds(owner: &Owner, wanted: SocketAddr) -> bool {
    listeners_of_family(wanted)
        .is_some_and(|rows| rows.iter().any(|&(addr, pid)| pid == owner.pid && listener_serves(addr, wanted)))
}

/// Windows has no per-process socket handle to remember: the table carries the pid.
pub(in crate::ssh_session) fn socket_of(_pid: u32, _listening: SocketAddr) -> Option<(i32, u64)> {
    None
}

/// The image name and parent pid from a Toolhelp32 process snapshot (on a change of owner only).
pub(in crate::ssh_session) fn process_info(pid: u32) -> Option<ProcessInfo> {
    // SAFETY: a snapshot handle is closed below on every path; PROCESSENTRY32W is plain data sized by dwSize.
    unsafe {
        let snapshot = CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0).ok()?;
        let mut entry = PROCESSENTRY32W { dwSize: std::mem::size_of::<PROCESSENTRY32W>() as u32, ..Default::default() };
        let mut found = None;
        let mut more = Process32FirstW(snapshot, &mut entry).is_ok();
        while more {
            if entry.th32ProcessID == pid {
                let len = entry.szExeFile.iter().position(|&c| c == 0).unwrap_or(entry.szExeFile.len());
                let name = String::from_utf16_lossy(&entry.szExeFile[..len]);
                found = Some(ProcessInfo { name, parent_pid: entry.th32ParentProcessID });
                break;
            }
            more = Process32NextW(snapshot, &mut entry).is_ok();
        }
        let _ = CloseHandle(snapshot);
        found
    }
}

/// The listener table lists every user's sockets, so absence is proof.
pub(in crate::ssh_session) fn listener_exists(wanted: SocketAddr) -> Option<bool> {
    listeners_of_family(wanted).map(|rows| rows.iter().any(|&(addr, _)| listener_serves(addr, wanted)))
}
