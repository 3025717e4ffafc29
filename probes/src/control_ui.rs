//! Control UI probe: `GET /` through the forward must answer 200 with an HTML page (the gateway's Control
//! UI), which tells the doctor that the browser side of the gateway works, not just /healthz.

use std::time::Duration;

pub use crate::http::{Failure, Response};

/// Where to ask.
#[derive(Debug, Clone)]
pub struct Target {
    /// The forward's route.
    pub route: crate::route::Route,
}

/// What a Control UI probe returns: the response when it is 200 text/html.
pub type Outcome = Result<Response, Failure>;

impl crate::Probe for Target {
    const KIND: &'static str = "control_ui";
    type Outcome = Outcome;

    /// Fetch `/` and check it is an HTML page.
    async fn probe(&mut self, timeout: Duration) -> Outcome {
        let response = crate::http::get(&self.route, "/", "text/html", timeout).await?;
        let html = response
            .content_type
            .as_deref()
            .is_some_and(|t| t.trim_start().to_ascii_lowercase().starts_with("text/html"));
        if response.status == 200 && html {
            Ok(response)
        } else {
            Err(crate::http::bad_head(
                Some(response.status),
                Some(response.first_byte),
                &format!(
                    "HTTP {} with Content-Type {}",
                    response.status,
                    response.content_type.as_deref().unwrap_or("(none)")
                ),
            ))
        }
    }
}
