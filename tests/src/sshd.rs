//! A real sshd and ssh forwards through it; the whole chain gateway <- sshd <- ssh -L <- exporter.

use super::*;

/// A real sshd on a free loopback port that allows local forwards to one gateway port.
pub struct Sshd {
    /// The listener process.
    pub proc: Proc,
    /// Its port.
    pub port: u16,
    /// The user ssh logs in as.
    pub user: String,
    dir: tempfile::TempDir,
}

impl Sshd {
    /// Generate keys, write a config and start sshd, permitting forwards to 127.0.0.1:`gateway_port`.
    pub fn start(gateway_port: u16) -> Sshd {
        Self::start_permitting(&format!("127.0.0.1:{gateway_port}"))
    }

    /// As [`Sshd::start`], permitting forwards to `permit_open` (`host:port`; a bastion permits the next
    /// sshd's port, for `ssh -J`).
    pub fn start_permitting(permit_open: &str) -> Sshd {
        Self::start_listening(permit_open, &[])
    }

    /// As [`Sshd::start_permitting`], listening on `also` besides 127.0.0.1 (a test network's host address,
    /// for an ssh that runs inside a namespace).
    pub fn start_listening(permit_open: &str, also: &[std::net::Ipv4Addr]) -> Sshd {
        let dir = tempfile::Builder::new().prefix("oce-sshd").tempdir().unwrap();
        let d = dir.path();
        fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
        for key in ["host_ed25519", "client_ed25519"] {
            let status = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(d.join(key))
                .stdin(Stdio::null())
                .status()
                .expect("ssh-keygen");
            assert!(status.success(), "ssh-keygen failed");
        }
        fs::copy(d.join("client_ed25519.pub"), d.join("authorized_keys")).unwrap();
        fs::set_permissions(d.join("authorized_keys"), fs::Permissions::from_mode(0o644)).unwrap();
        let port = free_port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\n{}HostKey {d}/host_ed25519\nAuthorizedKeysFile {d}/authorized_keys\n\
             PidFile none\nUsePAM no\nStrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             AllowTcpForwarding local\nPermitOpen {permit_open}\nLogLevel VERBOSE\n",
            also.iter().map(|ip| format!("ListenAddress {ip}\n")).collect::<String>(),
            d = d.display()
        );
        fs::write(d.join("sshd_config"), config).unwrap();
        let host_pub = fs::read_to_string(d.join("host_ed25519.pub")).unwrap();
        fs::write(d.join("known_hosts"), format!("[127.0.0.1]:{port} {host_pub}")).unwrap();

        let sshd = find_program("sshd");
        let (user, mut command) = if is_root() {
            let status = Command::new("chown").arg("daemon:").arg(d.join("host_ed25519")).status().unwrap();
            assert!(status.success(), "chown daemon host key");
            let mut command = Command::new("setpriv");
            command.args(["--reuid=daemon", "--regid=daemon", "--clear-groups"]).arg(&sshd);
            ("daemon".to_owned(), command)
        } else {
            let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap();
            (user.trim().to_owned(), Command::new(&sshd))
        };
        command.arg("-f").arg(d.join("sshd_config")).args(["-D", "-e"]);
        let mut proc = Proc::spawn_group("sshd", &mut command);
        proc.wait_listening(SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(10));
        Sshd { proc, port, user, dir }
    }

    /// The ssh client arguments for `-L 127.0.0.1:local:127.0.0.1:gateway`, as users run them.
    pub fn forward_args(&self, local_port: u16, gateway_port: u16) -> Vec<String> {
        let d = self.dir.path().display();
        [
            "-F",
            "/dev/null",
            "-i",
            &format!("{d}/client_ed25519"),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            &format!("UserKnownHostsFile={d}/known_hosts"),
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "ServerAliveInterval=1",
            "-o",
            "ServerAliveCountMax=3",
            "-o",
            "ExitOnForwardFailure=yes",
            "-o",
            "ConnectTimeout=5",
            "-p",
            &self.port.to_string(),
            "-N",
            "-L",
            &format!("127.0.0.1:{local_port}:127.0.0.1:{gateway_port}"),
            &format!("{}@127.0.0.1", self.user),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// The private key the client logs in with.
    pub fn client_key(&self) -> PathBuf {
        self.dir.path().join("client_ed25519")
    }

    /// This sshd's `known_hosts` line (`[127.0.0.1]:PORT KEY`).
    pub fn known_hosts_line(&self) -> String {
        fs::read_to_string(self.dir.path().join("known_hosts")).unwrap()
    }

    /// Its `known_hosts` line for another of its addresses (`[IP]:PORT KEY`).
    pub fn known_hosts_line_for(&self, ip: std::net::Ipv4Addr) -> String {
        self.known_hosts_line().replacen("[127.0.0.1]", &format!("[{ip}]"), 1)
    }

    /// An ssh_config `Host` block named `alias` that logs in to this sshd the way [`Sshd::forward_args`] does,
    /// with `known_hosts` as the known-hosts file and `extra` lines (ProxyJump, LocalForward...) appended.
    pub fn host_block(&self, alias: &str, known_hosts: &Path, extra: &[&str]) -> String {
        let mut block = format!(
            "Host {alias}\n  HostName 127.0.0.1\n  Port {}\n  User {}\n  IdentityFile {}\n  IdentitiesOnly yes\n  \
             UserKnownHostsFile {}\n  StrictHostKeyChecking yes\n  BatchMode yes\n  ServerAliveInterval 1\n  \
             ServerAliveCountMax 3\n  ExitOnForwardFailure yes\n  ConnectTimeout 5\n",
            self.port,
            self.user,
            self.client_key().display(),
            known_hosts.display()
        );
        for line in extra {
            block.push_str(&format!("  {line}\n"));
        }
        block
    }

    /// Start `ssh -N -L` and wait until the forward listens.
    pub fn forward(&self, local_port: u16, gateway_port: u16) -> Proc {
        let mut ssh = Proc::spawn_group("ssh", Command::new("ssh").args(self.forward_args(local_port, gateway_port)));
        ssh.wait_listening(SocketAddr::from(([127, 0, 0, 1], local_port)), Duration::from_secs(10));
        ssh
    }

    /// Start the forward under `autossh -M 0`, as deploy/ runs it, and wait until it listens.
    pub fn autossh_forward(&self, local_port: u16, gateway_port: u16) -> Proc {
        let mut command = Command::new(find_program("autossh"));
        command.env("AUTOSSH_GATETIME", "0").env("AUTOSSH_POLL", "5").arg("-M").arg("0");
        command.args(self.forward_args(local_port, gateway_port));
        // Its own group: killing autossh alone would leave its ssh child holding the forward.
        let mut autossh = Proc::spawn_group("autossh", &mut command);
        autossh.wait_listening(SocketAddr::from(([127, 0, 0, 1], local_port)), Duration::from_secs(10));
        autossh
    }

    /// SIGSTOP (or SIGCONT) every process serving a connection: the remote side freezes, the listener lives.
    pub fn signal_sessions(&self, signal: i32) -> usize {
        let sessions = descendants(self.proc.pid());
        for pid in &sessions {
            kill(*pid, signal);
        }
        sessions.len()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // Session processes may have left the listener's process group (setsid): end them explicitly.
        for pid in descendants(self.proc.pid()) {
            kill(pid, libc::SIGCONT);
            kill(pid, libc::SIGKILL);
        }
    }
}

/// A whole working chain: gateway stand-in <- sshd <- ssh -L <- exporter.
pub struct Chain {
    /// The gateway stand-in.
    pub gateway: Gateway,
    /// The sshd.
    pub sshd: Sshd,
    /// The ssh forward.
    pub ssh: Proc,
    /// The forward's local port.
    pub local_port: u16,
    /// The exporter.
    pub exporter: Exporter,
}

impl Chain {
    /// Start everything with the forward named `t`.
    pub fn start() -> Chain {
        let gateway = Gateway::start(free_port(), Duration::ZERO);
        let sshd = Sshd::start(gateway.addr.port());
        let local_port = free_port();
        let ssh = sshd.forward(local_port, gateway.addr.port());
        let exporter = Exporter::start(&forward_toml("t", local_port));
        Chain { gateway, sshd, ssh, local_port, exporter }
    }

    /// The forward's local address.
    pub fn local(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.local_port))
    }
}
