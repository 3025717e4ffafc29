//! The tunnel round of a route without ssh (`ws://`, `wss://`): connect to the gateway's address and, for
//! `wss://`, complete the TLS handshake with the certificate verified, each phase timed apart. It is the uptime
//! KPI's round for such a route, as the SYN and the ssh session are for an ssh forward: up when the connect
//! succeeds and, for `wss://`, the handshake completes and the certificate verifies. Nothing is written on the
//! connection; it is closed with a RST (no TIME_WAIT per round).

use std::time::Duration;

use crate::route::{DialFailure, Handshake, Route};

/// The route a round reaches.
#[derive(Debug, Clone)]
pub struct Target {
    /// The direct route.
    pub route: Route,
}

/// What a round that reached the gateway saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reached {
    /// connect() to established.
    pub connect: Duration,
    /// The TLS handshake and the verified certificate, for `wss://`.
    pub tls: Option<Handshake>,
}

/// What one round returns: reached, or the phase that failed.
pub type Outcome = Result<Reached, DialFailure>;

impl From<crate::CutOff> for Outcome {
    /// A round its caller's hard timeout ended: no connection within the time (the dial's own deadline names
    /// the phase; this only happens when it overran).
    fn from(_: crate::CutOff) -> Self {
        Err(DialFailure::ConnectTimeout)
    }
}

impl crate::Probe for Target {
    /// The lag histogram's label for tunnel rounds, whatever the route.
    const KIND: &'static str = "syn";
    type Outcome = Outcome;

    async fn probe(&mut self, timeout: Duration) -> Outcome {
        let dialed = self.route.dial(timeout).await?;
        dialed.stream.close_without_time_wait();
        Ok(Reached { connect: dialed.connect, tls: dialed.tls })
    }
}
