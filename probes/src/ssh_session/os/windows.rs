//! Windows: the IP Helper listener table ([`crate::socket_table`], which names each socket's owning pid) and
//! a Toolhelp32 process snapshot for the parent, through Microsoft's `windows` crate.

use std::net::SocketAddr;

use windows::Win32::Foundation::{CloseHandle, HANDLE};
use windows::Win32::Security::{EqualSid, GetTokenInformation, TokenUser, TOKEN_QUERY, TOKEN_USER};
use windows::Win32::System::Diagnostics::ToolHelp::{
    CreateToolhelp32Snapshot, Process32FirstW, Process32NextW, PROCESSENTRY32W, TH32CS_SNAPPROCESS,
};
use windows::Win32::System::Threading::{
    GetCurrentProcess, OpenProcess, OpenProcessToken, PROCESS_QUERY_LIMITED_INFORMATION,
};

use super::super::decide::ProcessInfo;
use super::super::Owner;

/// The listening sockets of both families that could take a connection to `wanted`, as `(address, owning
/// pid)`: two table calls. The table does not say IPV6_V6ONLY, so an IPv6 wildcard counts (fail closed).
fn serving(wanted: SocketAddr) -> Option<Vec<(SocketAddr, u32)>> {
    let rows = crate::socket_table::candidates(wanted).ok()?;
    Some(rows.into_iter().map(|row| (row.addr, row.pid.unwrap_or(0))).collect())
}

/// The listener table: every socket that could take a connection to `wanted` is still the remembered
/// pid's, and that pid is still the same process (its creation time, so a reused pid is a new owner).
pub(in crate::ssh_session) fn still_holds(owner: &Owner, wanted: SocketAddr) -> bool {
    let same_process = start_time(owner.pid).is_some_and(|started| started == owner.socket_inode);
    same_process
        && serving(wanted).is_some_and(|rows| !rows.is_empty() && rows.iter().all(|&(_, pid)| pid == owner.pid))
}

/// Every listening address that could take a connection to `wanted`, whoever owns it.
pub(in crate::ssh_session) fn candidate_addrs(wanted: SocketAddr) -> Option<Vec<SocketAddr>> {
    Some(serving(wanted)?.into_iter().map(|(addr, _)| addr).collect())
}

/// A process's creation time (100 ns since 1601) from `GetProcessTimes`: with the pid, it names one process
/// for its whole life (a pid alone is reused).
fn start_time(pid: u32) -> Option<u64> {
    use windows::Win32::Foundation::FILETIME;
    use windows::Win32::System::Threading::GetProcessTimes;
    // SAFETY: the handle is closed on every path; the four FILETIMEs are plain data the call writes.
    unsafe {
        let process = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, false, pid).ok()?;
        let (mut created, mut exited, mut kernel, mut user) =
            (FILETIME::default(), FILETIME::default(), FILETIME::default(), FILETIME::default());
        let read = GetProcessTimes(process, &mut created, &mut exited, &mut kernel, &mut user);
        let _ = CloseHandle(process);
        read.ok()?;
        Some((u64::from(created.dwHighDateTime) << 32) | u64::from(created.dwLowDateTime))
    }
}

/// Windows has no per-process socket handle to remember (the table carries the pid): the owner's creation
/// time stands in for the socket's identity, so the steady state notices a reused pid.
pub(in crate::ssh_session) fn socket_of(pid: u32, _listening: SocketAddr) -> Option<(i32, u64)> {
    start_time(pid).map(|started| (-1, started))
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
    serving(wanted).map(|rows| !rows.is_empty())
}

/// The `TOKEN_USER` of a process's token, in a buffer aligned for it.
fn token_user(process: HANDLE) -> Option<Vec<u64>> {
    // SAFETY: the token handle is closed on every path; the buffer is sized by the first call and u64-aligned,
    // which TOKEN_USER (a pointer and a u32) needs.
    unsafe {
        let mut token = HANDLE::default();
        OpenProcessToken(process, TOKEN_QUERY, &mut token).ok()?;
        let mut len = 0u32;
        let _ = GetTokenInformation(token, TokenUser, None, 0, &mut len);
        let mut buffer = vec![0u64; (len as usize).div_ceil(8).max(1)];
        let read = GetTokenInformation(token, TokenUser, Some(buffer.as_mut_ptr().cast()), len, &mut len);
        let _ = CloseHandle(token);
        read.ok().map(|()| buffer)
    }
}

/// Windows has no uid: whether `pid` runs as this process's user, by comparing the two tokens' user SIDs.
pub(in crate::ssh_session) fn user_of(pid: u32) -> (Option<u32>, Option<bool>) {
    // SAFETY: the process handle is closed on every path; both buffers hold a TOKEN_USER written by the OS.
    let same = unsafe {
        let ours = token_user(GetCurrentProcess());
        let theirs = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, false, pid).ok().and_then(|process| {
            let user = token_user(process);
            let _ = CloseHandle(process);
            user
        });
        match (ours, theirs) {
            (Some(ours), Some(theirs)) => {
                let ours = &*(ours.as_ptr() as *const TOKEN_USER);
                let theirs = &*(theirs.as_ptr() as *const TOKEN_USER);
                Some(EqualSid(ours.User.Sid, theirs.User.Sid).is_ok())
            }
            _ => None,
        }
    };
    (None, same)
}

/// The OS table of every listener says v6only where it matters (Linux's sock_diag; Windows' table lists each
/// family apart): the portable lookup asks this only where there is no such table (macOS).
pub(in crate::ssh_session) fn socket_v6only(_pid: u32, _listening: std::net::SocketAddr) -> Option<bool> {
    None
}
