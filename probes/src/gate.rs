//! The credential gate every sender of the gateway token goes through (the auth probe, the WebSocket
//! handshake probe, the doctor, evidence, the auth tap), one rule per route ([`crate::route`]):
//!
//! - `local` (an ssh -L listener): the listener must be our own user's ssh ([`ssh_session::Outcome::trust`]).
//!   [`CredentialGate::check`] looks the owner up before the connect; [`CredentialGate::confirm`] looks again on
//!   the connected stream before a byte of the credential, and on Linux asks who owns the far end of this very
//!   connection (sock_diag), so a listener that came and went between the check and the connect cannot have
//!   taken it.
//! - `wss://`: the token goes only on a connection whose certificate verified (the pin, or a trusted chain and
//!   the host name). The dial verifies it inside the handshake, so `confirm` needs only to see a TLS stream.
//! - `ws://`: the rule OpenClaw's CLI applies to plaintext URLs ([`route::plaintext_host_allowed`]: LAN,
//!   link-local, CGNAT, `.local`, `.ts.net`), and the address actually connected must be in those ranges too: a
//!   public address never gets the token in the clear.
//!
//! Every sender runs the gate inside its own round, after its concurrency permit, so nothing waits between the
//! verdict and the send.

use std::net::SocketAddr;
use std::time::Duration;

use crate::route::{self, Route, Stream, Transport};
use crate::ssh_session::{self, Trust};

/// The gate's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Clearance {
    /// The credential may go on.
    Cleared,
    /// It may not: why, for the log, the page and the doctor.
    Withheld(Withholding),
}

/// Why a credential was withheld: what a person reads, and the verdict it stands for (its kind and its
/// holder), on which logs are deduplicated: the words may carry figures that vary from round to round (how
/// many processes could not be read), the verdict does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Withholding {
    /// For people: who holds the port and whose it is, or which rule refused the route.
    pub why: String,
    /// The verdict's kind and holder (`not_ssh:python3:4242:nobody (uid 65534)`, `public_host`).
    pub verdict: String,
}

impl Withholding {
    fn withheld(verdict: impl Into<String>, why: impl Into<String>) -> Clearance {
        Clearance::Withheld(Withholding { why: why.into(), verdict: verdict.into() })
    }
}

impl std::fmt::Display for Withholding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.why)
    }
}

impl Clearance {
    /// Why the credential was withheld, if it was.
    pub fn withheld(self) -> Option<Withholding> {
        match self {
            Clearance::Cleared => None,
            Clearance::Withheld(withholding) => Some(withholding),
        }
    }
}

/// The check before a credential goes to a route; see the module documentation.
#[derive(Debug, Clone)]
pub struct CredentialGate {
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    /// A local listener: its owner must be our user's ssh (or a name in `also_trusted`).
    Owner { target: Box<ssh_session::Target>, also_trusted: Vec<String> },
    /// A direct route.
    Direct(Route),
}

impl CredentialGate {
    /// A gate for the listener `target` looks up, trusting ssh clients and `also_trusted` of this user.
    pub fn owner(target: ssh_session::Target, also_trusted: Vec<String>) -> CredentialGate {
        CredentialGate { kind: Kind::Owner { target: Box::new(target), also_trusted } }
    }

    /// The gate of `route`: for a `local` one, the owner lookup `session` makes (sharing its index); for a
    /// direct one, its transport's rule.
    pub fn for_route(
        route: &Route,
        session: impl FnOnce(SocketAddr) -> ssh_session::Target,
        also_trusted: Vec<String>,
    ) -> CredentialGate {
        match route {
            Route::Local(addr) => CredentialGate::owner(session(*addr), also_trusted),
            Route::Direct(_) => CredentialGate { kind: Kind::Direct(route.clone()) },
        }
    }

    /// The ssh listener the gate guards, for a `local` route.
    pub fn local(&self) -> Option<SocketAddr> {
        match &self.kind {
            Kind::Owner { target, .. } => Some(target.addr),
            Kind::Direct(_) => None,
        }
    }

    /// Before the connect: the owner looked up now and judged, or the direct route's rule.
    pub async fn check(&mut self, timeout: Duration) -> Clearance {
        match &mut self.kind {
            Kind::Owner { target, also_trusted } => {
                let outcome = crate::Probe::probe(target.as_mut(), timeout).await;
                match outcome.trust(also_trusted) {
                    Trust::Ours(_) => Clearance::Cleared,
                    Trust::NotOurs(why) => Withholding::withheld(outcome.verdict(), why),
                }
            }
            Kind::Direct(route) => direct_check(route),
        }
    }

    /// After connect() returned `stream`, before a credential is written to it: for a `local` route, the
    /// listeners still only the trusted owner's and (Linux) the connection's far end a socket of this user; for
    /// `wss://`, a TLS stream (its certificate verified by the dial); for `ws://`, the address reached.
    pub async fn confirm(&mut self, stream: &Stream, timeout: Duration) -> Clearance {
        if let Kind::Direct(route) = &self.kind {
            return direct_confirm(route, stream);
        }
        let cleared = self.check(timeout).await;
        if cleared != Clearance::Cleared {
            return cleared;
        }
        match ssh_session::far_end_is_ours(stream.tcp(), timeout).await {
            Ok(()) => Clearance::Cleared,
            Err(why) => Withholding::withheld(format!("far_end:{why}"), why),
        }
    }
}

fn direct_check(route: &Route) -> Clearance {
    let Some(direct) = route.direct() else { return Withholding::withheld("not_direct", "not a direct route") };
    match route.transport() {
        Transport::Wss => Clearance::Cleared,
        _ if route::plaintext_host_allowed(direct.host()) => Clearance::Cleared,
        _ => Withholding::withheld(
            "public_host",
            format!(
                "ws://{} is a public host: the token would cross the network in the clear (OpenClaw's CLI refuses it \
             too); use wss://, or an ssh forward",
                route.authority()
            ),
        ),
    }
}

fn direct_confirm(route: &Route, stream: &Stream) -> Clearance {
    match route.transport() {
        Transport::Wss if stream.is_tls() => Clearance::Cleared,
        Transport::Wss => Withholding::withheld("not_tls", "a wss:// route's connection is not TLS"),
        _ => {
            if let withheld @ Clearance::Withheld(_) = direct_check(route) {
                return withheld;
            }
            match stream.tcp().peer_addr() {
                Ok(peer) if route::private_address(peer.ip()) => Clearance::Cleared,
                Ok(peer) => Withholding::withheld(
                    format!("public_address:{}", peer.ip()),
                    format!(
                        "{} reached the public address {}: the token would cross the network in the clear; use wss://",
                        route.authority(),
                        peer.ip()
                    ),
                ),
                Err(_) => Withholding::withheld("closed", "the connection closed before its address could be checked"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::{Direct, Fingerprint, Verify};
    use std::sync::Arc;

    /// This process's command name, so a gate can trust a listener the test itself holds.
    #[cfg(target_os = "linux")]
    fn own_comm() -> String {
        std::fs::read_to_string("/proc/self/comm").map(|comm| comm.trim().to_owned()).unwrap_or_default()
    }

    fn direct(route: Direct) -> Route {
        Route::Direct(Arc::new(route))
    }

    #[tokio::test]
    async fn each_route_is_judged_by_its_own_rule_before_the_connect() {
        let timeout = Duration::from_secs(1);
        let pin = || Verify::Pin(Fingerprint([7; 32]));
        let mut wss = CredentialGate::for_route(
            &direct(Direct::wss("198.51.100.7", 443, pin()).unwrap()),
            ssh_session::Target::new,
            vec![],
        );
        assert_eq!(wss.check(timeout).await, Clearance::Cleared, "wss is judged on its connection");
        for host in ["10.200.0.2", "100.100.1.1", "mac-ap1.local", "mac-ap1.tail1.ts.net"] {
            let mut gate =
                CredentialGate::for_route(&direct(Direct::ws(host, 18789)), ssh_session::Target::new, vec![]);
            assert_eq!(gate.check(timeout).await, Clearance::Cleared, "{host}");
        }
        let mut public =
            CredentialGate::for_route(&direct(Direct::ws("198.51.100.7", 18789)), ssh_session::Target::new, vec![]);
        let why = public.check(timeout).await.withheld().expect("a public ws:// host is withheld").why;
        assert!(why.contains("198.51.100.7:18789") && why.contains("wss://"), "{why}");
    }

    #[tokio::test]
    async fn a_ws_name_is_confirmed_by_the_address_it_reached_and_wss_only_on_tls() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stream = Stream::Plain(crate::net::connect_stream(addr).await.unwrap());
        let timeout = Duration::from_secs(1);
        let mut named =
            CredentialGate::for_route(&direct(Direct::ws("gw.local", addr.port())), ssh_session::Target::new, vec![]);
        assert_eq!(named.confirm(&stream, timeout).await, Clearance::Cleared, "loopback is in the CLI's ranges");
        let pin = Verify::Pin(Fingerprint([7; 32]));
        let mut wss = CredentialGate::for_route(
            &direct(Direct::wss("gw.local", 443, pin).unwrap()),
            ssh_session::Target::new,
            vec![],
        );
        assert!(wss.confirm(&stream, timeout).await.withheld().is_some(), "a plain stream on a wss route");
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn the_gate_confirms_a_connection_to_a_listener_it_trusts() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // It accepts, as ssh does: only an accepted socket vouches for its owner.
        let accepting = listener.try_clone().unwrap();
        std::thread::spawn(move || {
            let _kept: Vec<_> = accepting.incoming().take(1).collect();
            std::thread::sleep(Duration::from_secs(10));
        });
        let mut gate = CredentialGate::owner(ssh_session::Target::new(addr), vec![own_comm()]);
        assert_eq!(gate.check(Duration::from_secs(5)).await, Clearance::Cleared);
        let stream = Stream::Plain(crate::net::connect_stream(addr).await.unwrap());
        assert_eq!(gate.confirm(&stream, Duration::from_secs(5)).await, Clearance::Cleared);
        // Without the name in also_trusted this process is not ssh: no token.
        let mut strict = CredentialGate::owner(ssh_session::Target::new(addr), Vec::new());
        assert!(strict.confirm(&stream, Duration::from_secs(5)).await.withheld().is_some());
    }

    /// The listener changes between the gate's check and the connect: the check saw our own listener, the
    /// connection lands at another user's (nobody, as root), and `confirm` refuses it before any byte.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_listener_that_changed_between_the_check_and_the_connect_is_refused_after_connect() {
        // nobody's listener accepts (an accepted socket names its owner); one that never accepts is withheld
        // all the same, as not accepted in time.
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            assert!(std::env::var("OCE_REQUIRE_ROOT").as_deref() != Ok("1"), "needs root to run a listener as nobody");
            eprintln!("not root: cannot run a listener as another user; skipped");
            return;
        }
        let ours = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = ours.local_addr().unwrap();
        let mut gate = CredentialGate::owner(ssh_session::Target::new(addr), vec![own_comm()]);
        assert_eq!(gate.check(Duration::from_secs(5)).await, Clearance::Cleared);
        drop(ours);
        let script =
            "import socket,sys,time\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
                      s.bind(('127.0.0.1',int(sys.argv[1])))\ns.listen(8)\nprint('up',flush=True)\nc=s.accept()\ntime.sleep(30)\n";
        let mut nobody = std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c", script])
            .arg(addr.port().to_string())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("setpriv python3");
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(nobody.stdout.take().unwrap()), &mut line).unwrap();
        assert_eq!(line.trim(), "up");
        let stream = Stream::Plain(crate::net::connect_stream(addr).await.unwrap());
        let verdict = gate.confirm(&stream, Duration::from_secs(5)).await;
        // The connection's far end itself names nobody, whatever the listener table says by now.
        let far_end = ssh_session::far_end_is_ours(stream.tcp(), Duration::from_secs(1)).await;
        let _ = nobody.kill();
        let _ = nobody.wait();
        assert!(far_end.as_ref().is_err_and(|why| why.contains("uid 65534")), "{far_end:?}");
        match verdict {
            Clearance::Withheld(withheld) => {
                assert!(withheld.why.contains("uid 65534"), "names the holder: {withheld}")
            }
            Clearance::Cleared => panic!("a connection taken by nobody's listener was trusted"),
        }
    }
}
