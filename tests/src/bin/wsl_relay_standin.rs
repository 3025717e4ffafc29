//! A stand-in for WSL2's localhost relay, for tests/tests/wsl_relay.rs. On Windows, `wslrelay.exe` (running as the
//! user) listens on 127.0.0.1:P for every port a WSL2 VM listens on at its own localhost, and carries each
//! connection into the VM, where WSL's init connects to 127.0.0.1:P. Here the "VM" is a network namespace and
//! the crossing is a Unix socket (a path both namespaces see):
//!
//! - `wsl-relay-standin windows LISTEN_ADDR=UNIX_PATH...`: the Windows side (the test runs a copy named
//!   `wslrelay.exe`, so its process is named as WSL's): listen on each TCP address, forward to its Unix socket.
//! - `wsl-relay-standin vm UNIX_PATH=CONNECT_ADDR...`: the VM side (run inside the namespace): listen on each Unix
//!   socket (mode 0666), forward to its TCP address.
//!
//! Prints `up` once every listener is bound. Each connection is two copying threads; a side that closes ends
//! the other's writes.

use std::io::Write;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::thread;

/// Copy both ways between two connected streams until either side closes.
fn splice<A, B>(a: A, b: B, a2: A, b2: B)
where
    A: std::io::Read + std::io::Write + Send + 'static + Closable,
    B: std::io::Read + std::io::Write + Send + 'static + Closable,
{
    let forward = thread::spawn(move || {
        let (mut from, mut to) = (a, b);
        let _ = std::io::copy(&mut from, &mut to);
        to.close_write();
    });
    let (mut from, mut to) = (b2, a2);
    let _ = std::io::copy(&mut from, &mut to);
    to.close_write();
    let _ = forward.join();
}

/// A stream whose write half can be shut.
trait Closable {
    fn close_write(&self);
}

impl Closable for TcpStream {
    fn close_write(&self) {
        let _ = self.shutdown(Shutdown::Write);
    }
}

impl Closable for UnixStream {
    fn close_write(&self) {
        let _ = self.shutdown(Shutdown::Write);
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let side = args.next().expect("windows | vm");
    let pairs: Vec<(String, String)> = args
        .map(|pair| {
            let (from, to) = pair.split_once('=').expect("FROM=TO");
            (from.to_owned(), to.to_owned())
        })
        .collect();
    let mut loops = Vec::new();
    for (from, to) in pairs {
        match side.as_str() {
            "windows" => {
                let listener = TcpListener::bind(&from).unwrap_or_else(|err| panic!("bind {from}: {err}"));
                loops.push(thread::spawn(move || {
                    for tcp in listener.incoming().flatten() {
                        let to = to.clone();
                        thread::spawn(move || {
                            let Ok(unix) = UnixStream::connect(&to) else { return };
                            let (Ok(tcp2), Ok(unix2)) = (tcp.try_clone(), unix.try_clone()) else { return };
                            splice(tcp, unix, tcp2, unix2);
                        });
                    }
                }));
            }
            "vm" => {
                let _ = std::fs::remove_file(&from);
                let listener = UnixListener::bind(&from).unwrap_or_else(|err| panic!("bind {from}: {err}"));
                std::fs::set_permissions(&from, std::fs::Permissions::from_mode(0o666)).unwrap();
                loops.push(thread::spawn(move || {
                    for unix in listener.incoming().flatten() {
                        let to = to.clone();
                        thread::spawn(move || {
                            // Nothing listens in the VM: the connection closes, as WSL's relay does.
                            let Ok(tcp) = TcpStream::connect(&to) else { return };
                            let _ = tcp.set_nodelay(true);
                            let (Ok(unix2), Ok(tcp2)) = (unix.try_clone(), tcp.try_clone()) else { return };
                            splice(unix, tcp, unix2, tcp2);
                        });
                    }
                }));
            }
            other => panic!("unknown side {other}: windows | vm"),
        }
    }
    println!("up");
    let _ = std::io::stdout().flush();
    for handle in loops {
        let _ = handle.join();
    }
}
