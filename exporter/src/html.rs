//! The small HTML pieces the status page and the kinds' page rows share: escaping, a duration in the unit
//! that reads best, and a state badge.

/// Escape text for HTML element content and attribute values.
pub fn esc(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// Seconds in the unit that reads best (µs, ms, s); a dash when there is no value.
pub fn seconds(value: Option<f64>) -> String {
    match value {
        Some(0.0) => "0 s".into(),
        Some(s) if s < 1e-3 => format!("{:.0} µs", s * 1e6),
        Some(s) if s < 1.0 => format!("{:.1} ms", s * 1e3),
        Some(s) => format!("{s:.2} s"),
        None => "–".into(),
    }
}

/// A green `yes`, a red `no`, or a grey "unknown" badge.
pub fn state_badge(ok: Option<bool>, yes: &str, no: &str) -> String {
    match ok {
        Some(true) => format!("<span class=\"badge ok\">{yes}</span>"),
        Some(false) => format!("<span class=\"badge bad\">{no}</span>"),
        None => "<span class=\"badge unknown\">unknown</span>".into(),
    }
}
