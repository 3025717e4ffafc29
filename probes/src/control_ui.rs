//! Control UI probe: `GET /` through the forward must answer 200 with an HTML page (the gateway's Control
//! UI), which tells the doctor that the browser side of the gateway works, not just /healthz.

use std::net::SocketAddr;
use std::time::Duration;

pub use crate::first_byte::{Failure, Response};

/// Where to ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// The forward's local address.
    pub addr: SocketAddr,
}

/// What a Control UI probe returns: the response when it is 200 text/html.
pub type Outcome = Result<Response, Failure>;

/// Fetch `/` and check it is an HTML page.
pub async fn probe(target: &Target, timeout: Duration) -> Outcome {
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {}\r\nUser-Agent: openclaw-tunnel-exporter/{}\r\nAccept: text/html\r\nConnection: close\r\n\r\n",
        target.addr,
        env!("CARGO_PKG_VERSION")
    );
    let response =
        match tokio::time::timeout(timeout, crate::first_byte::exchange(target.addr, request.as_bytes())).await {
            Ok(response) => response?,
            Err(_) => return Err(Failure::Timeout),
        };
    let html =
        response.content_type.as_deref().is_some_and(|t| t.trim_start().to_ascii_lowercase().starts_with("text/html"));
    if response.status == 200 && html {
        Ok(response)
    } else {
        Err(Failure::BadStatus {
            status: Some(response.status),
            first_byte: Some(response.first_byte),
            detail: format!(
                "HTTP {} with Content-Type {}",
                response.status,
                response.content_type.as_deref().unwrap_or("(none)")
            ),
        })
    }
}
