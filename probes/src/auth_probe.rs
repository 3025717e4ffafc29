//! Active auth probe: `POST /tools/invoke` with body `{}` through the forward, with the token this machine's
//! `openclaw` CLI would use. The gateway answers 400 ("requires name") once the token is accepted, without
//! side effects, and 401 when it is not; 429 is a lockout, 403 a scope or proxy problem.
//!
//! Meant to run rarely (once a minute): each wrong token is a strike on the gateway's per-IP counter.

use std::time::Duration;

use crate::gate::{Clearance, CredentialGate};
use crate::route::Route;

/// A token that never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wrap a token.
    pub fn new(token: impl Into<Vec<u8>>) -> Self {
        Secret(token.into())
    }

    /// The token's bytes, for the one place that sends it.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Where to send the probe and with what.
#[derive(Debug, Clone)]
pub struct Target {
    /// The forward's route.
    pub route: Route,
    /// The token to present.
    pub token: Secret,
    /// The owner check run inside the round: before the connect, and on the connected stream before the
    /// token is written (see [`CredentialGate`]). `None` only where the caller itself made the listener
    /// (this module's tests).
    pub gate: Option<CredentialGate>,
}

/// Why an auth probe got no verdict.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// The exchange failed (refused, reset, timeout...).
    #[error(transparent)]
    Http(#[from] crate::http::Failure),
    /// The gate withheld the token (the listener or the connection's far end not our own user's ssh, a public
    /// host in the clear, a connection that is not the verified TLS one): nothing was sent.
    #[error("token withheld: {why}")]
    Withheld {
        /// Who holds the port, for the log and the doctor.
        why: String,
        /// The verdict's kind and holder, which the log says once ([`crate::gate::Withholding::verdict`]).
        verdict: String,
    },
}

impl crate::Label for Failure {
    const LABELS: &'static [&'static str] =
        &["refused", "reset", "empty_reply", "timeout", "bad_status", "local_error", "dns", "tls", "withheld"];

    fn label(&self) -> &'static str {
        match self {
            Failure::Http(failure) => crate::Label::label(failure),
            Failure::Withheld { .. } => "withheld",
        }
    }
}

impl From<crate::CutOff> for Outcome {
    fn from(_: crate::CutOff) -> Self {
        Err(Failure::Http(crate::http::Failure::Timeout))
    }
}

/// The gateway's verdict on the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Any status other than 401/403/429 (400 expected): the token got past authentication.
    Accepted(u16),
    /// 401, 403 or 429.
    Rejected(u16),
}

/// What an auth probe returns.
pub type Outcome = Result<Answer, Failure>;

crate::labels!(Answer {
    Answer::Accepted(_) => "accepted",
    Answer::Rejected(_) => "rejected",
});

impl crate::Probe for Target {
    const KIND: &'static str = "auth";
    type Outcome = Outcome;

    /// Check the listener, connect, check the connection, then send the probe request and classify the
    /// answer.
    async fn probe(&mut self, timeout: Duration) -> Outcome {
        let exchange = self.gated_exchange(timeout);
        tokio::time::timeout(timeout, exchange).await.unwrap_or(Err(Failure::Http(crate::http::Failure::Timeout)))
    }
}

impl Target {
    async fn gated_exchange(&mut self, timeout: Duration) -> Outcome {
        if let Some(gate) = &mut self.gate {
            if let Clearance::Withheld(withheld) = gate.check(timeout).await {
                return Err(Failure::Withheld { why: withheld.why, verdict: withheld.verdict });
            }
        }
        let mut stream = match self.route.dial(timeout).await {
            Ok(dialed) => dialed.stream,
            // A certificate that did not verify: the token stays here, and that is what the round says.
            Err(failure) if failure.presented().is_some() => {
                let verdict = match failure.presented() {
                    Some(certificate) => format!("certificate:{}", certificate.sha256),
                    None => "certificate".to_owned(),
                };
                let why = format!("the gateway's certificate did not verify: {failure}");
                return Err(Failure::Withheld { why, verdict });
            }
            Err(failure) => return Err(Failure::Http(crate::http::dial_failure(failure))),
        };
        if let Some(gate) = &mut self.gate {
            if let Clearance::Withheld(withheld) = gate.confirm(&stream, timeout).await {
                stream.close_without_time_wait();
                return Err(Failure::Withheld { why: withheld.why, verdict: withheld.verdict });
            }
        }
        let mut bearer = b"Bearer ".to_vec();
        bearer.extend_from_slice(self.token.expose());
        let headers: [(&str, &[u8]); 3] =
            [("Content-Type", b"application/json"), ("Content-Length", b"2"), ("Authorization", &bearer)];
        let request = crate::http::request("POST", "/tools/invoke", &self.route.authority(), "*/*", &headers, b"{}");
        let head = crate::http::read_head(&mut stream, &request).await;
        stream.close_without_time_wait();
        let head = head?;
        Ok(match head.status {
            401 | 403 | 429 => Answer::Rejected(head.status),
            status => Answer::Accepted(status),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn a_401_is_rejected_and_a_400_accepted_and_the_token_is_sent_as_bearer() {
        for (reply, expected) in [
            (&b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n"[..], Answer::Rejected(401)),
            (b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", Answer::Accepted(400)),
        ] {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server = tokio::spawn(async move {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut buf = vec![0u8; 4096];
                let n = socket.read(&mut buf).await.unwrap();
                socket.write_all(reply).await.unwrap();
                String::from_utf8_lossy(&buf[..n]).into_owned()
            });
            let mut target = Target { route: Route::Local(addr), token: Secret::new("tok-xyz"), gate: None };
            assert_eq!(crate::Probe::probe(&mut target, Duration::from_secs(2)).await, Ok(expected));
            let request = server.await.unwrap();
            assert!(request.starts_with("POST /tools/invoke HTTP/1.1\r\n"), "{request}");
            assert!(request.contains("\r\nAuthorization: Bearer tok-xyz\r\n") && request.ends_with("\r\n\r\n{}"));
            assert!(!format!("{target:?}").contains("tok-xyz"));
        }
    }
}
