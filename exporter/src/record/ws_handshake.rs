//! WebSocket handshakes through a forward (the CLI's own path): the time to the gateway's challenge, and
//! failures by reason.

use probes::ws_handshake;
use probes::Label;

use super::families::{ForwardLabels, ForwardReasonLabels};
use super::Recorder;

impl Recorder {
    /// Every failure reason at zero for `forward`.
    pub fn create_ws_handshake_series(&self, forward: &str) {
        for reason in ws_handshake::Failure::LABELS {
            let labels = ForwardReasonLabels { forward: forward.to_owned(), reason };
            self.metrics.ws_handshake_failures.get_or_create_owned(&labels);
        }
    }

    /// One handshake through `forward`: the time to the challenge, or the failure's reason, and the status line.
    pub fn record_ws_handshake(&self, name: &str, outcome: &ws_handshake::Outcome) {
        match outcome {
            Ok(handshake) => {
                self.metrics
                    .ws_handshake_seconds
                    .get_or_create(&ForwardLabels { forward: name.to_owned() })
                    .observe(handshake.elapsed.as_secs_f64());
            }
            Err(failure) => {
                let labels = ForwardReasonLabels { forward: name.to_owned(), reason: failure.label() };
                self.metrics.ws_handshake_failures.get_or_create(&labels).inc();
            }
        }
        self.with_forward(name, |state| {
            state.last_ws_handshake = Some(match outcome {
                Ok(handshake) => format!(
                    "challenge in {}, connect {}",
                    crate::record::timeline::human_duration(handshake.elapsed.as_secs_f64()),
                    handshake.connect.label()
                ),
                Err(failure) => failure.to_string(),
            });
        });
    }
}
