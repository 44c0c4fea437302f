//! The HTML status page at `/`: one table row per relay, no scripts, no external assets.
//! Relay URLs and worker names come from untrusted input, so every text is escaped.

use std::fmt::Write;

use crate::view::RelaySummary;

/// Totals shown above the table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    pub tracked: usize,
    pub connected: usize,
    pub dead: usize,
    pub workers: usize,
    pub sink_lag: Option<u64>,
}

pub fn render(relays: &[RelaySummary], totals: &Totals, now_ms: u64) -> String {
    let mut out = String::with_capacity(1024 + relays.len() * 256);
    out.push_str(concat!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<title>ngit-sync relays</title><style>",
        "body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}",
        "th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}",
        "td.n{text-align:right}</style></head><body>\n<h1>ngit-sync relays</h1>\n"
    ));
    let lag = totals
        .sink_lag
        .map_or_else(|| "unknown".to_string(), |l| l.to_string());
    let _ = writeln!(
        out,
        "<p>{} tracked, {} connected, {} dead; {} workers; sink lag {}; as of {}.</p>",
        totals.tracked,
        totals.connected,
        totals.dead,
        totals.workers,
        lag,
        utc(now_ms)
    );
    out.push_str(concat!(
        "<table>\n<thead><tr><th>Relay</th><th>Status</th><th>Health</th><th>Failures</th>",
        "<th>Open batches</th><th>Owner</th><th>Since</th></tr></thead>\n<tbody>\n"
    ));
    for r in relays {
        let health = r.health.as_ref();
        let since = r.since_ms.map_or_else(
            || "-".to_string(),
            |ms| format!("{} ({} ago)", utc(ms), ago(now_ms.saturating_sub(ms))),
        );
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td></tr>",
            escape(r.url.as_str()),
            r.status.as_str(),
            health.map_or("-", |h| h.state.as_str()),
            health.map_or(0, |h| h.consecutive_failures),
            r.open_batches,
            escape(r.owner.as_deref().unwrap_or("-")),
            since,
        );
    }
    if relays.is_empty() {
        out.push_str("<tr><td colspan=\"7\">No relays yet.</td></tr>\n");
    }
    out.push_str("</tbody></table>\n</body></html>\n");
    out
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `2024-03-01 12:00:05 UTC` from milliseconds since the epoch.
fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Howard Hinnant's `civil_from_days`: proleptic Gregorian date of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn ago(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86_399 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ngit_sync_shared::messages::HealthReport;
    use ngit_sync_shared::status::{ConnectionStatus, Health};
    use ngit_sync_shared::RelayUrl;

    fn relay(url: &str, owner: &str) -> RelaySummary {
        RelaySummary {
            url: RelayUrl::parse(url).unwrap(),
            tracked: true,
            status: ConnectionStatus::ConnectedDegraded,
            since_ms: Some(1_700_000_000_000),
            health: Some(HealthReport {
                state: Health::RateLimited,
                consecutive_failures: 4,
                next_attempt_ms: None,
                rate_limited_until_ms: None,
            }),
            open_batches: 2,
            owner: Some(owner.into()),
            attempts_success: 0,
            attempts_failure: 0,
            dropped: Default::default(),
        }
    }

    #[test]
    fn untrusted_text_is_escaped() {
        assert_eq!(
            escape(r#"<script>alert("x" & 'y')</script>"#),
            "&lt;script&gt;alert(&quot;x&quot; &amp; &#39;y&#39;)&lt;/script&gt;"
        );
        let html = render(
            &[relay("wss://r.example/?a=1&b=2", "<b>w1</b>")],
            &Totals::default(),
            1_700_000_090_000,
        );
        assert!(html.contains("?a=1&amp;b=2"), "{html}");
        assert!(!html.contains("a=1&b"), "{html}");
        assert!(html.contains("&lt;b&gt;w1&lt;/b&gt;"), "{html}");
        assert!(!html.contains("<script"), "{html}");
    }

    #[test]
    fn rows_show_every_column() {
        let html = render(
            &[relay("wss://r.example", "w1")],
            &Totals {
                tracked: 1,
                sink_lag: Some(7),
                ..Default::default()
            },
            1_700_000_090_000,
        );
        for expected in [
            "connected_degraded",
            "rate_limited",
            "<td class=\"n\">4</td>",
            "<td class=\"n\">2</td>",
            "<td>w1</td>",
            "2023-11-14 22:13:20 UTC (1m ago)",
            "sink lag 7",
        ] {
            assert!(html.contains(expected), "{expected} missing from {html}");
        }
    }

    #[test]
    fn dates_convert_to_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(4_102_444_799_000), "2099-12-31 23:59:59 UTC");
    }
}
