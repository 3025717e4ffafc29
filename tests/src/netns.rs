//! A test network: a network namespace joined to this host by a veth pair, reached only through /32 host
//! routes. The machine's own services sit at public-looking addresses (this one's is in 192.0.2.0/24), so a
//! broad route into a test namespace would cut them off: the namespace gets a LAN address (10.200.N.2) and a
//! "public" one from the documentation range (198.51.100.N), and the host one /32 route to each. Needs root.

use super::*;
use std::net::Ipv4Addr;

/// A network namespace with a LAN and a public address, removed with the handle (every process in it killed).
pub struct TestNet {
    /// The namespace's name.
    pub name: String,
    /// The host's end of the veth pair (10.200.N.1).
    pub host: Ipv4Addr,
    /// The namespace's LAN address (10.200.N.2): private, where OpenClaw's CLI speaks ws:// in the clear.
    pub lan: Ipv4Addr,
    /// The namespace's public-looking address (198.51.100.N): where no token may go in the clear.
    pub public: Ipv4Addr,
    host_link: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip").args(args).output().map_err(|err| format!("ip: {err}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim()))
    }
}

impl TestNet {
    /// A new namespace: the first free N of 1..=250 (a namespace of another test, or one a crashed run left,
    /// keeps its N).
    pub fn create() -> TestNet {
        assert!(is_root(), "a network namespace needs root");
        for n in 1..=250u8 {
            let name = format!("oce-net-{n}");
            if ip(&["netns", "add", &name]).is_err() {
                continue;
            }
            let net = TestNet {
                host_link: format!("oceh{n}"),
                name,
                host: Ipv4Addr::new(10, 200, n, 1),
                lan: Ipv4Addr::new(10, 200, n, 2),
                public: Ipv4Addr::new(198, 51, 100, n),
            };
            net.wire(n).unwrap_or_else(|err| panic!("setting up the test network {}: {err}", net.name));
            return net;
        }
        panic!("no free test network namespace (oce-net-1..250 all exist)");
    }

    fn wire(&self, n: u8) -> Result<(), String> {
        let (host, lan, public) =
            (format!("{}/32", self.host), format!("{}/32", self.lan), format!("{}/32", self.public));
        let inside = format!("ocen{n}");
        ip(&["link", "add", &self.host_link, "type", "veth", "peer", "name", &inside])?;
        ip(&["link", "set", &inside, "netns", &self.name])?;
        ip(&["addr", "add", &host, "dev", &self.host_link])?;
        ip(&["link", "set", &self.host_link, "up"])?;
        ip(&["-n", &self.name, "addr", "add", &lan, "dev", &inside])?;
        ip(&["-n", &self.name, "addr", "add", &public, "dev", &inside])?;
        ip(&["-n", &self.name, "link", "set", &inside, "up"])?;
        ip(&["-n", &self.name, "link", "set", "lo", "up"])?;
        // Host routes only, both ways.
        ip(&["route", "add", &lan, "dev", &self.host_link])?;
        ip(&["route", "add", &public, "dev", &self.host_link])?;
        ip(&["-n", &self.name, "route", "add", &host, "dev", &inside])?;
        Ok(())
    }

    /// `program` run inside the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        if let Ok(output) = Command::new("ip").args(["netns", "pids", &self.name]).output() {
            for pid in String::from_utf8_lossy(&output.stdout).split_whitespace().filter_map(|p| p.parse().ok()) {
                kill(pid, libc::SIGKILL);
            }
        }
        // Deleting the host's end removes the pair and the routes through it.
        let _ = ip(&["link", "del", &self.host_link]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// A recorder in a namespace: a TCP (or, with a certificate, TLS) server on `addr` that answers every request
/// with a 200 and appends what each connection sent (decrypted) to a file: what an impostor would have read.
pub struct Recorder {
    /// The process.
    pub proc: Proc,
    /// Its file.
    pub file: tempfile::NamedTempFile,
}

/// The recorder's script: one thread per connection, at most 64 KiB read from each.
const RECORDER: &str = r#"
import socket, ssl, sys, threading
host, port, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
context = None
if len(sys.argv) > 5:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(sys.argv[4], sys.argv[5])
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind((host, port))
listener.listen(64)
print("up", flush=True)
lock = threading.Lock()
def serve(conn):
    try:
        if context:
            conn = context.wrap_socket(conn, server_side=True)
        conn.settimeout(5)
        data = b""
        while len(data) < 65536 and b"\r\n\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
        with lock, open(out, "ab") as f:
            f.write(data + b"\n--\n")
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 27\r\n\r\n{\"ok\":true,\"status\":\"live\"}")
    except Exception:
        pass
    finally:
        try:
            conn.close()
        except Exception:
            pass
while True:
    conn, _ = listener.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"#;

impl Recorder {
    /// Start on `addr` inside `net`, with TLS when `tls` names a certificate and key (PEM files).
    pub fn start(net: &TestNet, addr: SocketAddr, tls: Option<(&Path, &Path)>) -> Recorder {
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut command = net.command(find_program("python3"));
        command.arg("-c").arg(RECORDER).arg(addr.ip().to_string()).arg(addr.port().to_string()).arg(file.path());
        if let Some((cert, key)) = tls {
            command.arg(cert).arg(key);
        }
        let mut proc = Proc::spawn("recorder", &mut command);
        proc.wait_listening(addr, Duration::from_secs(10));
        Recorder { proc, file }
    }

    /// Everything it read so far.
    pub fn read(&self) -> String {
        String::from_utf8_lossy(&fs::read(self.file.path()).unwrap_or_default()).into_owned()
    }
}
