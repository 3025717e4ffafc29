//! The auth tap: an in-path TCP pass-through in front of the gateway (or the ssh forward) that reads, but
//! never changes, what flows through it, to count requests and 401/403/429s by token revision.
//!
//! Each accepted connection first sends its request head (or WebSocket upgrade) within
//! `header_read_timeout`; only then does the tap connect upstream, and it relays nothing until the
//! credential gate ([`crate::gate::CredentialGate`]) has vouched for the connected upstream: a listener (or a
//! connection's far end) that is not our user's ssh, a public host in the clear, or a `wss://` upstream whose
//! certificate did not verify gets no byte of the client's token, and the client gets a 502. The CLI speaks
//! plain `ws://` to the tap on loopback; the tap speaks to its upstream route, TLS and pin included. Then two copy tasks run. Each forwards a chunk first and reads it second, so
//! observing never delays the bytes beyond one memcpy into the readers; both sides get TCP_NODELAY. Copy
//! buffers grow from 8 KiB to 128 KiB only while reads fill them and shrink back to 8 KiB after a read
//! that did not fill a quarter; a connection that moves nothing either way for `idle_timeout` is closed. The
//! readers ([`http`], [`ws`]) are sans-IO and bounded: a head of at most 16 KiB, a WebSocket message of at most 256 KiB while one is wanted, otherwise nothing but counters.
//! Tokens are hashed on sight ([`credential`]); events carry revision names only.

pub mod credential;
pub mod http;
mod messages;
mod observer;
pub mod ws;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::gate::Clearance;
use crate::limit::{Admission, Connections, Slot};
use crate::route::{Route, Stream};
pub use credential::Registry;
pub use observer::Observer;

/// Which protocol an auth event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// An HTTP request (Bearer header).
    Http,
    /// A WebSocket `connect` request (token in the first frame).
    Ws,
}

impl Channel {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Http => "http",
            Channel::Ws => "ws",
        }
    }
}

/// What the tap saw. Revision values are registry names, `unknown` or `none`.
#[derive(Debug, Clone, PartialEq)]
pub enum AuthEvent<'a> {
    /// A request carrying a credential (or none).
    Request {
        /// http or ws.
        channel: Channel,
        /// The credential's revision.
        revision: &'a str,
    },
    /// The gateway refused that request: 401, 403 or 429.
    Failure {
        /// http or ws.
        channel: Channel,
        /// 401, 403 or 429.
        code: u16,
        /// The credential's revision.
        revision: &'a str,
    },
    /// The gateway refused a WebSocket `connect`, for this reason (its `error.details.code`, or the close code
    /// 1002 or 1013 of a connect it left unanswered). Counted besides any [`AuthEvent::Failure`] it also is.
    ConnectRefused {
        /// Why, from the fixed set.
        reason: crate::refusal::Refusal,
    },
    /// A WebSocket close, counted once per connection, for the side that sent it first (the other side's
    /// close is its echo). Which came first is judged by when each was read off its socket, not by when
    /// the observer got to it, so the two copy tasks racing cannot swap them.
    WsClose {
        /// The close code (4001 auth rotated, 1008 policy, 1012 restart, 1013 starting, 4000 the client
        /// heard nothing for two ticks); None when the frame carried none (1005).
        code: Option<u16>,
        /// Who sent it first.
        by: CloseBy,
    },
    /// A connection over the tap's limit: the new one was closed (`refused_new`), or the oldest not yet
    /// established was, to make room for it.
    OverLimit {
        /// The new connection was refused (every open one was established).
        refused_new: bool,
    },
    /// A connection from another user's process (Linux: the peer socket's uid), admitted within their own
    /// small quota ([`OTHER_USERS_QUOTA`]) or refused past it; it never takes the user's own slots.
    OtherUser {
        /// Admitted (true) or refused (false).
        admitted: bool,
    },
    /// The tap closed a connection on its own timer: no whole request head within `header_read_timeout`
    /// (`idle: false`), or nothing either way for `idle_timeout` (`idle: true`).
    TimedOut {
        /// Which timer.
        idle: bool,
    },
    /// The upstream is not our user's ssh (or its far end is not ours): nothing was relayed, the client got
    /// a 502.
    Withheld {
        /// The gate's verdict, for the log.
        why: String,
        /// Its kind and holder, which the log says once ([`crate::gate::Withholding::verdict`]).
        verdict: String,
    },
    /// The gateway announced an orderly close (its `shutdown` event, sent before closing 1012).
    GatewayShutdown {
        /// `restartExpectedMs`: Some when a restart is expected, None for a terminal shutdown.
        restart_expected: Option<Duration>,
    },
    /// Request (or connect frame) fully seen -> first byte of its answer.
    FirstByte {
        /// http or ws.
        channel: Channel,
        /// The elapsed time.
        elapsed: Duration,
    },
}

/// Which side of a tapped WebSocket sent a close first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseBy {
    /// The gateway (1012 restart, 1013 starting, 4001 rotated, 1008 refused, ...).
    Gateway,
    /// The client (1000 done, 4000 heard nothing for two ticks: a stalled tunnel seen from the CLI).
    Client,
}

impl CloseBy {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseBy::Gateway => "gateway",
            CloseBy::Client => "client",
        }
    }
}

/// Where the tap's events go (the exporter's recorder).
pub trait AuthSink: Send + Sync + 'static {
    /// One event, for the tap of forward `forward`.
    fn auth_event(&self, forward: &str, event: AuthEvent<'_>);
}

/// One tap's settings.
#[derive(Clone)]
pub struct TapConfig {
    /// The forward label of its events.
    pub forward: String,
    /// Where it connects each accepted client: the ssh forward, or the gateway directly.
    pub upstream: Route,
    /// Revision names by fingerprint.
    pub registry: Arc<Registry>,
    /// Longest wait for the upstream connect.
    pub connect_timeout: Duration,
    /// Connections open at once at most ([`crate::limit`]): at the limit the oldest that never sent a byte
    /// makes room, or the new one is closed.
    pub max_connections: usize,
    /// The first request head (or WebSocket upgrade) must arrive within this, or the connection is closed.
    pub header_read_timeout: Duration,
    /// A connection with nothing moving either way for this long is closed.
    pub idle_timeout: Duration,
    /// The owner check of the upstream, shared by the tap's connections (so its remembered owner makes the
    /// steady state one table read). `None` only where the caller itself made the upstream (tests).
    pub gate: Option<Arc<tokio::sync::Mutex<crate::gate::CredentialGate>>>,
}

/// How many connections other users' processes may hold open at once, apart from the user's own
/// `max_connections`: enough for a `sudo openclaw` now and then, too few to matter to the user's CLI whatever
/// they do with them (issue 38: four one-byte connections of another user's made the CLI fail 16 of 30 times
/// at `max_connections = 4`).
pub const OTHER_USERS_QUOTA: usize = 4;

/// Accept clients on `listener` until the future is dropped; each connection runs in its own task and
/// outlives the accept loop (so a config reload does not cut live connections). Another user's connections
/// (Linux) count against [`OTHER_USERS_QUOTA`], never against `max_connections`.
pub async fn serve(listener: TcpListener, config: TapConfig, sink: Arc<dyn AuthSink>) {
    let config = Arc::new(config);
    let own = Connections::new(config.max_connections);
    let others = Connections::new(OTHER_USERS_QUOTA);
    loop {
        let client = match listener.accept().await {
            Ok((client, _)) => client,
            Err(_) => {
                // Out of fds and the like: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let other_user = of_another_user(&client);
        let admission = if other_user { others.admit() } else { own.admit() };
        let admitted = match admission {
            Admission::Admitted(admitted) | Admission::Replaced(admitted) | Admission::Retiring(admitted)
                if other_user =>
            {
                sink.auth_event(&config.forward, AuthEvent::OtherUser { admitted: true });
                admitted
            }
            // (The tap's limit keeps no slot for busy connections: it never retires one.)
            Admission::Admitted(admitted) | Admission::Retiring(admitted) => admitted,
            Admission::Replaced(admitted) => {
                sink.auth_event(&config.forward, AuthEvent::OverLimit { refused_new: false });
                admitted
            }
            Admission::Refused if other_user => {
                sink.auth_event(&config.forward, AuthEvent::OtherUser { admitted: false });
                continue;
            }
            Admission::Refused => {
                sink.auth_event(&config.forward, AuthEvent::OverLimit { refused_new: true });
                continue;
            }
        };
        let (config, sink) = (config.clone(), sink.clone());
        tokio::spawn(async move {
            let slot = admitted.slot().clone();
            tokio::select! {
                _ = relay(client, config, sink, Some(&slot)) => {}
                _ = slot.evicted() => {}
            }
            drop(admitted);
        });
    }
}

/// Whether the client's process runs as another user than this one (Linux: one exact sock_diag lookup of the
/// client's socket, its uid against our effective uid). Elsewhere, and when the lookup finds no owner (a
/// client on another host, through a tap that listens beyond loopback), it is not.
fn of_another_user(client: &TcpStream) -> bool {
    #[cfg(target_os = "linux")]
    if let (Ok(local), Ok(peer)) = (client.local_addr(), client.peer_addr()) {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let ours = unsafe { libc::geteuid() };
        return matches!(crate::socket_table::peer_uid(local, peer), Ok(Some(uid)) if uid != ours);
    }
    let _ = client;
    false
}

/// What the tap answers a client whose upstream the gate refused: the status a reverse proxy gives for an
/// upstream it will not use, and nothing of the client's request.
fn withheld_answer() -> Vec<u8> {
    let body = "the gateway's route failed the credential gate (a port not held by this user's ssh, a public host \
                in the clear, or a certificate that did not verify): nothing was relayed (openclaw-tunnel-exporter tap)\n";
    format!(
        "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Relay one client connection to the upstream and back, observing both directions. `slot`: the
/// connection's place in the tap's limit, established (never closed for room) only once its first head is
/// whole and its upstream confirmed; until then the oldest such connection makes room for a new one.
pub async fn relay(mut client: TcpStream, config: Arc<TapConfig>, sink: Arc<dyn AuthSink>, slot: Option<&Slot>) {
    // The first head before anything else: a client that sends a byte and goes silent holds a slot for at
    // most header_read_timeout (and only until a newer connection needs it), and no upstream connection.
    let head = match tokio::time::timeout(config.header_read_timeout, read_first_head(&mut client)).await {
        Ok(Some(head)) => head,
        Ok(None) => return,
        Err(_) => {
            sink.auth_event(&config.forward, AuthEvent::TimedOut { idle: false });
            return;
        }
    };
    // A `local` route's connection is dialled and confirmed under the gate's lock, one at a time: confirming
    // waits until the listener has accepted it (only an accepted socket vouches), and a burst dialled at once
    // overflows the listener's queue (measured: a thousand clients at once made the kernel answer with SYN
    // cookies and drop the final ACKs, so a few upstream connections were never taken and their far end could
    // never be found: a 502 for a healthy upstream).
    // (A direct route's confirmation reads no socket table: its dial, a TLS handshake, runs unlocked.)
    let mut gate = match &config.gate {
        Some(gate) => Some(gate.lock().await).filter(|held| held.local().is_some()),
        None => None,
    };
    let upstream = match config.upstream.dial(config.connect_timeout).await {
        Ok(dialed) => dialed.stream,
        // The client sees the same thing it would without the tap: the connection closes. (A `wss://`
        // upstream whose certificate did not verify is refused the same way, before a byte of the client's.)
        Err(failure) => {
            drop(gate);
            if let Some((why, verdict)) = upstream_refused(&failure) {
                sink.auth_event(&config.forward, AuthEvent::Withheld { why, verdict });
                let _ = client.write_all(&withheld_answer()).await;
                let _ = client.shutdown().await;
            }
            return;
        }
    };
    if let Some(shared) = &config.gate {
        let mut held = match gate.take() {
            Some(held) => held,
            None => shared.lock().await,
        };
        let verdict = held.confirm(&upstream, config.connect_timeout).await;
        drop(held);
        if let Clearance::Withheld(withheld) = verdict {
            upstream.close_without_time_wait();
            sink.auth_event(&config.forward, AuthEvent::Withheld { why: withheld.why, verdict: withheld.verdict });
            let _ = client.write_all(&withheld_answer()).await;
            let _ = client.shutdown().await;
            return;
        }
    }
    if let Some(slot) = slot {
        slot.spoke();
    }
    let _ = client.set_nodelay(true);
    match upstream {
        Stream::Plain(upstream) => {
            let (client_read, client_write) = client.into_split();
            let (upstream_read, upstream_write) = upstream.into_split();
            let halves = Halves { client_read, client_write, upstream_read, upstream_write };
            pass(halves, &head, &config, sink).await;
        }
        Stream::Tls(upstream) => {
            let (client_read, client_write) = client.into_split();
            let (upstream_read, upstream_write) = tokio::io::split(*upstream);
            let halves = Halves { client_read, client_write, upstream_read, upstream_write };
            pass(halves, &head, &config, sink).await;
        }
    }
}

/// A dial of the upstream that the gate's rule itself refuses: a `wss://` certificate that did not verify.
/// (Other failures close the client's connection as a dead upstream would.)
fn upstream_refused(failure: &crate::route::DialFailure) -> Option<(String, String)> {
    failure.presented().map(|certificate| {
        (format!("the upstream's certificate did not verify: {failure}"), format!("certificate:{}", certificate.sha256))
    })
}

/// A tapped connection's two sides, split for the two copy loops.
struct Halves<CR, CW, UR, UW> {
    client_read: CR,
    client_write: CW,
    upstream_read: UR,
    upstream_write: UW,
}

/// Write the client's first head upstream, then copy both ways, observing, until both sides end or nothing
/// moves for `idle_timeout`.
async fn pass<CR, CW, UR, UW>(halves: Halves<CR, CW, UR, UW>, head: &[u8], config: &TapConfig, sink: Arc<dyn AuthSink>)
where
    CR: AsyncRead + Unpin,
    CW: AsyncWrite + Unpin,
    UR: AsyncRead + Unpin,
    UW: AsyncWrite + Unpin,
{
    let Halves { client_read, client_write, upstream_read, mut upstream_write } = halves;
    let observer = Arc::new(Mutex::new(Observer::new(config.forward.clone(), config.registry.clone(), sink.clone())));
    let now = std::time::Instant::now();
    if upstream_write.write_all(head).await.is_err() {
        return;
    }
    let _ = upstream_write.flush().await;
    observer.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).client_bytes(head, now);
    let activity = Arc::new(Activity::default());
    let to_upstream = copy(client_read, upstream_write, observer.clone(), Direction::ClientToGateway, &activity);
    let to_client = copy(upstream_read, client_write, observer, Direction::GatewayToClient, &activity);
    tokio::select! {
        _ = async { tokio::join!(to_upstream, to_client) } => {}
        _ = activity.idle_for(config.idle_timeout) => sink.auth_event(&config.forward, AuthEvent::TimedOut { idle: true }),
    }
}

/// The largest first head the tap waits for (the readers' own bound on a head).
const MAX_FIRST_HEAD: usize = 16 * 1024;

/// The client's bytes up to the end of its first request head (`\r\n\r\n`), or up to [`MAX_FIRST_HEAD`]
/// (the readers then give up on it, as they would mid-stream). `None` when the client closed first.
async fn read_first_head(client: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let n = match client.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => n,
        };
        head.extend_from_slice(&chunk[..n]);
        let scan_from = head.len().saturating_sub(n + 3);
        if head[scan_from..].windows(4).any(|window| window == b"\r\n\r\n") || head.len() >= MAX_FIRST_HEAD {
            return Some(head);
        }
    }
}

/// When a tapped connection last moved a byte either way.
struct Activity {
    started: std::time::Instant,
    /// Milliseconds since `started` at the last byte.
    last_ms: std::sync::atomic::AtomicU64,
}

impl Default for Activity {
    fn default() -> Self {
        Activity { started: std::time::Instant::now(), last_ms: std::sync::atomic::AtomicU64::new(0) }
    }
}

impl Activity {
    fn touch(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.last_ms.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// Resolves once nothing has moved for `limit`.
    async fn idle_for(&self, limit: Duration) {
        loop {
            let last = Duration::from_millis(self.last_ms.load(std::sync::atomic::Ordering::Relaxed));
            let quiet = self.started.elapsed().saturating_sub(last);
            if quiet >= limit {
                return;
            }
            tokio::time::sleep(limit - quiet).await;
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Direction {
    ClientToGateway,
    GatewayToClient,
}

/// Copy buffers start small (an idle or request/response connection costs little) and double, up to the
/// maximum, whenever a read fills them (a bulk stream then moves in large chunks: fewer syscalls).
const FIRST_CHUNK: usize = 8 * 1024;
const MAX_CHUNK: usize = 128 * 1024;

async fn copy(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    observer: Arc<Mutex<Observer>>,
    direction: Direction,
    activity: &Activity,
) {
    let mut buffer = vec![0u8; FIRST_CHUNK];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        activity.touch();
        // Read time, before forwarding: what orders the two sides' closes (an echo is read only after
        // the close it answers was forwarded).
        let now = std::time::Instant::now();
        let full = n == buffer.len();
        // A TLS writer holds what it encrypted until flushed: flush each chunk, as a plain socket sends it.
        if to.write_all(&buffer[..n]).await.is_err() || to.flush().await.is_err() {
            break;
        }
        let mut observer = observer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match direction {
            Direction::ClientToGateway => observer.client_bytes(&buffer[..n], now),
            Direction::GatewayToClient => observer.gateway_bytes(&buffer[..n], now),
        }
        drop(observer);
        if full && buffer.len() < MAX_CHUNK {
            buffer.resize(buffer.len() * 2, 0);
        } else if n < buffer.len() / 4 && buffer.len() > FIRST_CHUNK {
            // The burst is over: give the memory back (an idle WebSocket holds 8 KiB per side, not 128).
            buffer = vec![0u8; FIRST_CHUNK];
        }
    }
    // Pass the half-close on, so each side sees what it would see directly.
    let _ = to.shutdown().await;
}
