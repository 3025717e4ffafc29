//! WebSocket handshakes through a forward (the CLI's own path): the time to the gateway's challenge, and
//! failures by reason.
