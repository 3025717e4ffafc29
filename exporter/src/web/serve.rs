//! Serving connections: what `axum::serve` does, plus what it does not offer and a loopback listener needs
//! when any local user can connect: a connection limit ([`probes::limit`]: at the limit the oldest
//! connection not established makes room, else the oldest idle one, else the oldest busy one is told to close
//! once its answer is out while the new one comes in), hyper's header-read timeout
//! (a slow-loris head is cut; hyper 1.12 also starts it when a kept-alive connection waits for its next
//! request, measured: an idle keep-alive connection closed at `header_read_timeout`) and an idle timeout
//! (a request body or a response that moves no byte for that long: a stalled upload, a client that never
//! reads its answer). Each is counted in `openclaw_exporter_connections_closed_total{listener="web",reason}`.
//!
//! Alternative: `axum::serve` (no limit, no timer, so no header timeout) behind a tower layer; a layer sees
//! requests, not connections, so neither an idle socket nor a half-sent head would ever reach it.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use probes::limit::{Admission, Admitted, Connections, Slot};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::WebLimits;
use crate::record::Recorder;

/// The `listener` label of the web server's closes.
const LISTENER: &str = "web";

/// A connection's socket, watched: fails a read or write once nothing has moved either way for the idle
/// timeout (hyper then closes the connection). Its slot is marked established by the service, once a whole
/// request head has arrived.
pub struct Watched<IO> {
    io: IO,
    admitted: Admitted,
    idle_for: Duration,
    idle: Pin<Box<Sleep>>,
    timed_out: Arc<AtomicBool>,
}

impl<IO> Watched<IO> {
    fn new(io: IO, admitted: Admitted, idle_for: Duration) -> Self {
        let idle = Box::pin(tokio::time::sleep(idle_for));
        Watched { io, admitted, idle_for, idle, timed_out: Arc::default() }
    }

    fn touch(&mut self) {
        self.idle.as_mut().reset(Instant::now() + self.idle_for);
    }

    /// A write that moved bytes restarts the idle clock; one stuck (a client that never reads its answer)
    /// fails once the clock runs out.
    fn after_write(&mut self, cx: &mut Context<'_>, written: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        match written {
            Poll::Ready(Ok(n)) if n > 0 => {
                self.touch();
                Poll::Ready(Ok(n))
            }
            Poll::Pending => self.timed_out_or_pending(cx),
            other => other,
        }
    }

    fn timed_out_or_pending<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        if self.idle.as_mut().poll(cx).is_ready() {
            self.timed_out.store(true, Ordering::Relaxed);
            Poll::Ready(Err(io::ErrorKind::TimedOut.into()))
        } else {
            Poll::Pending
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.touch();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => this.timed_out_or_pending(cx),
            other => other,
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.io).poll_write(cx, buf);
        this.after_write(cx, written)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.after_write(cx, written)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// A connection the limit admitted: its slot (to learn of an eviction) and whether the idle timeout ended it.
pub trait Watchable {
    /// The connection's place in the limit.
    fn slot(&self) -> Arc<Slot>;
    /// Set once the idle timeout failed a read.
    fn timed_out(&self) -> Arc<AtomicBool>;
}

impl Watchable for Watched<TcpStream> {
    fn slot(&self) -> Arc<Slot> {
        self.admitted.slot().clone()
    }

    fn timed_out(&self) -> Arc<AtomicBool> {
        self.timed_out.clone()
    }
}

impl Watchable for TlsStream<Watched<TcpStream>> {
    fn slot(&self) -> Arc<Slot> {
        self.get_ref().0.slot()
    }

    fn timed_out(&self) -> Arc<AtomicBool> {
        self.get_ref().0.timed_out()
    }
}

/// The TCP listener with the connection limit: accepts only what the limit admits.
pub struct LimitedListener {
    tcp: TcpListener,
    limit: Connections,
    idle_for: Duration,
    recorder: Arc<Recorder>,
}

impl LimitedListener {
    /// Limit `tcp` as `limits` say, counting closes into `recorder`.
    pub fn new(tcp: TcpListener, limits: &WebLimits, recorder: Arc<Recorder>) -> LimitedListener {
        LimitedListener {
            tcp,
            limit: Connections::new(limits.max_connections).evicting_idle(),
            idle_for: limits.idle_timeout,
            recorder,
        }
    }
}

impl axum::serve::Listener for LimitedListener {
    type Io = Watched<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (tcp, peer) = match self.tcp.accept().await {
                Ok(accepted) => accepted,
                Err(_) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let admitted = match self.limit.admit() {
                Admission::Admitted(admitted) => admitted,
                Admission::Replaced(admitted) => {
                    self.recorder.count_connection_closed(LISTENER, "limit_silent");
                    admitted
                }
                Admission::Retiring(admitted) => {
                    self.recorder.count_connection_closed(LISTENER, "limit_busy");
                    admitted
                }
                Admission::Refused => {
                    self.recorder.count_connection_closed(LISTENER, "limit_new");
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            return (Watched::new(tcp, admitted, self.idle_for), peer);
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// A connection's answer in progress: busy until this is dropped (with the response's body, once written).
struct Busy(Arc<Slot>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.set_busy(false);
    }
}

/// Serve `app` on `listener` until `shutdown`; then stop accepting, let requests in flight finish, and return.
pub async fn serve<L>(
    mut listener: L,
    app: Router,
    header_read_timeout: Duration,
    recorder: Arc<Recorder>,
    shutdown: CancellationToken,
) where
    L: axum::serve::Listener,
    L::Io: Watchable + AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let connections = TaskTracker::new();
    loop {
        let (io, _) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (slot, timed_out) = (io.slot(), io.timed_out());
        // A connection is established (never closed to make room while it serves a request) once a request
        // passed the Host check and authentication: a client that dribbles half a head (slow-loris), or sends
        // only requests the guards refuse, stays evictable, so it cannot hold a slot a scraper needs.
        let router = TowerToHyperService::new(app.clone());
        let established = slot.clone();
        let service = hyper::service::service_fn(move |request| {
            established.set_busy(true);
            let call = hyper::service::Service::call(&router, request);
            let slot = established.clone();
            async move {
                let response = call.await;
                if response
                    .as_ref()
                    .is_ok_and(|response| response.extensions().get::<super::guard::Refused>().is_none())
                {
                    slot.spoke();
                }
                // Busy until the body is out, not only until it is made: a connection closed to make room
                // while writing its answer loses the scrape (issue 38: "peer disconnected" mid-body).
                let busy = Busy(slot);
                response.map(|response| {
                    response.map(|body| {
                        axum::body::Body::new(http_body_util::BodyExt::map_frame(body, move |frame| {
                            let _ = &busy;
                            frame
                        }))
                    })
                })
            }
        });
        let (recorder, shutdown) = (recorder.clone(), shutdown.clone());
        connections.spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(header_read_timeout);
            let connection = builder.serve_connection(TokioIo::new(io), service);
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                // Made room for a newer connection: dropping it closes the socket.
                _ = slot.evicted() => return,
                // Every connection was busy when a new one came: answer the request in flight, then close.
                _ = slot.retired() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
                _ = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(err) = result {
                if timed_out.load(Ordering::Relaxed) {
                    recorder.count_connection_closed(LISTENER, "idle_timeout");
                } else if err.is_timeout() {
                    recorder.count_connection_closed(LISTENER, "header_timeout");
                }
            }
        });
    }
    connections.close();
    connections.wait().await;
}
