//! First-byte probe: `GET <health_path>` through the forward, timed from the request written to the first
//! response byte.
//!
//! This is the only tunnel probe that proves the far side: the gateway answers /healthz with 27 bytes, no
//! log line and no side effect. Through a dead forward the failure tells where it broke (measured on a real
//! `ssh -N -L` forward): `refused` = ssh not listening; `reset` or `empty_reply` about one path RTT
//! after connecting = ssh alive but the gateway (or its host) refused; `timeout` = path silently dead or the
//! gateway hung. Time to first byte, not total time, because ssh's non-interactive transport adds ~40 ms to a
//! response written in two pieces.

use std::time::Duration;

use crate::route::Route;

pub use crate::http::{Failure, Response, MAX_HEAD_BYTES};

/// What to ask and where.
#[derive(Debug, Clone)]
pub struct Target {
    /// The forward's route: the ssh -L listener (127.0.0.1:18789), or the gateway directly.
    pub route: Route,
    /// The request path, e.g. `/healthz`.
    pub path: String,
}

/// What a first-byte probe returns.
pub type Outcome = Result<Response, Failure>;

impl crate::Probe for Target {
    const KIND: &'static str = "first_byte";
    type Outcome = Outcome;

    /// Send one `GET` and wait for the response head.
    async fn probe(&mut self, timeout: Duration) -> Outcome {
        let head = crate::http::get(&self.route, &self.path, "*/*", timeout).await?;
        if (200..300).contains(&head.status) {
            Ok(head)
        } else {
            Err(crate::http::bad_head(
                Some(head.status),
                Some(head.first_byte),
                &format!("HTTP status {}", head.status),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Label;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A target that answers `reply` after `delay`, once.
    async fn serve_once(reply: &'static [u8], delay: Duration) -> SocketAddr {
        misbehaving(move |mut socket| {
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                let _ = socket.write_all(reply).await;
            })
        })
        .await
    }

    fn target(addr: SocketAddr) -> Target {
        Target { route: Route::Local(addr), path: "/healthz".into() }
    }

    #[tokio::test]
    async fn a_2xx_is_a_response_with_its_first_byte_time() {
        let addr = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", Duration::from_millis(20)).await;
        let response = crate::Probe::probe(&mut target(addr), Duration::from_secs(2)).await.unwrap();
        assert_eq!(response.status, 200);
        assert!(response.first_byte >= Duration::from_millis(20), "{response:?}");
    }

    #[tokio::test]
    async fn a_503_is_bad_status_with_the_round_trip_kept() {
        let addr = serve_once(b"HTTP/1.1 503 Service Unavailable\r\n\r\n", Duration::ZERO).await;
        let failure = crate::Probe::probe(&mut target(addr), Duration::from_secs(2)).await.unwrap_err();
        assert_eq!(failure.label(), "bad_status");
        assert!(matches!(failure, Failure::BadStatus { status: Some(503), first_byte: Some(_), .. }));
    }

    #[tokio::test]
    async fn garbage_is_bad_status() {
        let addr = serve_once(b"SSH-2.0-OpenSSH_9.2\r\n", Duration::ZERO).await;
        let failure = crate::Probe::probe(&mut target(addr), Duration::from_secs(2)).await.unwrap_err();
        assert_eq!(failure.label(), "bad_status");
    }

    #[tokio::test]
    async fn a_close_without_bytes_is_an_empty_reply() {
        let addr = serve_once(b"", Duration::ZERO).await;
        let failure = crate::Probe::probe(&mut target(addr), Duration::from_secs(2)).await.unwrap_err();
        assert_eq!(failure.label(), "empty_reply");
    }

    #[tokio::test]
    async fn silence_is_a_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let held = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(socket);
        });
        let failure = crate::Probe::probe(&mut target(addr), Duration::from_millis(200)).await.unwrap_err();
        assert_eq!(failure, Failure::Timeout);
        held.abort();
    }

    type BoxFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

    /// A target that misbehaves after reading the request.
    async fn misbehaving(behave: impl FnOnce(tokio::net::TcpStream) -> BoxFuture + Send + 'static) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = socket.read(&mut buf).await;
            behave(socket).await;
        });
        addr
    }

    #[tokio::test]
    async fn a_target_dribbling_one_byte_a_second_times_out_within_the_timeout() {
        let addr = misbehaving(|mut socket| {
            Box::pin(async move {
                for byte in b"HTTP/1.1 200 OK\r\n\r\n" {
                    if socket.write_all(&[*byte]).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            })
        })
        .await;
        let started = std::time::Instant::now();
        let failure = crate::Probe::probe(&mut target(addr), Duration::from_millis(1500)).await.unwrap_err();
        assert_eq!(failure, Failure::Timeout);
        assert!(started.elapsed() < Duration::from_millis(1700));
    }

    #[tokio::test]
    async fn a_10_mib_body_is_not_read() {
        let addr = misbehaving(|mut socket| {
            Box::pin(async move {
                let _ = socket.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10485760\r\n\r\n").await;
                let chunk = vec![b'x'; 1 << 20];
                for _ in 0..10 {
                    if socket.write_all(&chunk).await.is_err() {
                        return;
                    }
                }
            })
        })
        .await;
        let response = crate::Probe::probe(&mut target(addr), Duration::from_secs(2)).await.unwrap();
        assert_eq!(response.status, 200);
    }

    #[tokio::test]
    async fn a_reset_inside_the_head_is_a_reset() {
        let addr = misbehaving(|mut socket| {
            Box::pin(async move {
                let _ = socket.write_all(b"HTTP/1.1 200 O").await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                let _ = socket.set_zero_linger();
                drop(socket);
            })
        })
        .await;
        let failure = crate::Probe::probe(&mut target(addr), Duration::from_secs(2)).await.unwrap_err();
        assert_eq!(failure.label(), "reset", "{failure:?}");
    }

    #[tokio::test]
    async fn a_closed_port_is_refused() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let failure = crate::Probe::probe(&mut target(addr), Duration::from_secs(1)).await.unwrap_err();
        assert_eq!(failure, Failure::Refused);
    }

    #[tokio::test]
    async fn an_endless_head_is_bad_status_not_unbounded_memory() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let _ = socket.write_all(b"HTTP/1.1 200 OK\r\n").await;
            let line = b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
            for _ in 0..1000 {
                if socket.write_all(line).await.is_err() {
                    break;
                }
            }
        });
        let failure = crate::Probe::probe(&mut target(addr), Duration::from_secs(2)).await.unwrap_err();
        assert_eq!(failure.label(), "bad_status");
    }
}
