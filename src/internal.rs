//! Self-monitoring: every event about the exporter itself is logged (rate-limited) and
//! counted here, in one place. The counts are the `reaction_exporter_*` families.

use std::collections::HashMap;
use std::fmt::Display;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use opentelemetry::KeyValue;

use crate::metric::Metric;
use crate::source::SourceObserver;
use crate::telemetry::{GaugeState, Instruments};

/// Why a line was not (fully) understood; the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reject {
    /// No known line form.
    Unknown,
    /// A known form with a broken payload.
    Malformed,
    /// A stream, filter or action name that reaction's configuration does not have.
    UnknownName,
    /// A match with a different number of values than the filter has patterns.
    PatternMismatch,
    /// Not valid UTF-8 (still processed, decoded lossily).
    InvalidUtf8,
    /// Longer than `reaction.logs.max_line_length` (dropped).
    TooLong,
}

impl Reject {
    pub fn as_str(self) -> &'static str {
        match self {
            Reject::Unknown => "unknown",
            Reject::Malformed => "malformed",
            Reject::UnknownName => "unknown_name",
            Reject::PatternMismatch => "pattern_mismatch",
            Reject::InvalidUtf8 => "invalid_utf8",
            Reject::TooLong => "too_long",
        }
    }
}

/// At most one log line per key and period; the next one says how many were suppressed.
#[derive(Debug)]
struct RateLimit {
    period: Duration,
    seen: Mutex<HashMap<String, (Instant, u64)>>,
}

impl RateLimit {
    /// Some(suppressed since the last logged one) when this one may be logged.
    fn allow(&self, key: &str) -> Option<u64> {
        let mut seen = self.seen.lock().expect("rate limit");
        let now = Instant::now();
        match seen.get_mut(key) {
            Some((last, suppressed)) if now.duration_since(*last) < self.period => {
                *suppressed += 1;
                None
            }
            Some((last, suppressed)) => {
                let n = *suppressed;
                *last = now;
                *suppressed = 0;
                Some(n)
            }
            None => {
                seen.insert(key.to_string(), (now, 0));
                Some(0)
            }
        }
    }
}

pub struct Internal {
    instruments: Arc<Instruments>,
    gauges: Arc<GaugeState>,
    limit: RateLimit,
}

impl Internal {
    pub fn new(instruments: Arc<Instruments>, gauges: Arc<GaugeState>) -> Internal {
        Internal {
            instruments,
            gauges,
            limit: RateLimit {
                period: Duration::from_secs(10),
                seen: Mutex::new(HashMap::new()),
            },
        }
    }

    /// Lines taken from the source, with the time of the last one.
    pub fn lines_read(&self, n: u64, last: SystemTime) {
        self.instruments.add(Metric::LinesRead, n, &[]);
        if let Ok(d) = last.duration_since(UNIX_EPOCH) {
            self.gauges.set_last_event(d.as_secs_f64());
        }
    }

    pub fn line_rejected(&self, reason: Reject, line: &str, detail: &dyn Display) {
        self.instruments.add(
            Metric::LinesRejected,
            1,
            &[KeyValue::new("reason", reason.as_str())],
        );
        if let Some(suppressed) = self.limit.allow(reason.as_str()) {
            let shown: String = line.chars().take(300).collect();
            tracing::warn!(
                reason = reason.as_str(),
                suppressed,
                "line not understood ({detail}): {shown:?}"
            );
        }
    }

    pub fn action_held(&self, target: &str) {
        self.instruments.add(Metric::ActionsHeld, 1, &[]);
        tracing::debug!(
            target,
            "action ignored: reaction started less than `hold` ago"
        );
    }

    pub fn transform_error(&self, pattern: &str, error: &str) {
        self.instruments.add(
            Metric::TransformErrors,
            1,
            &[KeyValue::new("pattern", pattern.to_string())],
        );
        if let Some(suppressed) = self.limit.allow(&format!("transform:{pattern}")) {
            tracing::warn!(
                pattern,
                suppressed,
                "transform failed, the raw value is kept: {error}"
            );
        }
    }

    pub fn cli_failure(&self, command: &'static str, kind: &'static str, error: &dyn Display) {
        self.instruments.add(
            Metric::CliFailures,
            1,
            &[
                KeyValue::new("command", command),
                KeyValue::new("kind", kind),
            ],
        );
        if let Some(suppressed) = self.limit.allow(&format!("cli:{command}:{kind}")) {
            tracing::warn!(command, suppressed, "reaction {command} failed: {error}");
        }
    }

    pub fn undelivered(&self, series: usize) {
        self.instruments.add(Metric::ScrapesUndelivered, 1, &[]);
        tracing::warn!(
            series,
            "a /metrics response was not delivered completely: its counts go to the next scrape"
        );
    }

    pub fn otlp_failure(&self, kind: &'static str, detail: &dyn Display) {
        self.instruments
            .add(Metric::OtlpFailures, 1, &[KeyValue::new("kind", kind)]);
        if let Some(suppressed) = self.limit.allow(&format!("otlp:{kind}")) {
            tracing::warn!(suppressed, "OTLP: {detail}");
        }
    }

    /// `points` data points went to an overflow series in `reader` ("prometheus", "otlp");
    /// `dropped` gauge points could not be kept.
    pub fn overflow(&self, reader: &'static str, points: u64) {
        self.instruments.add(
            Metric::CardinalityOverflows,
            points,
            &[KeyValue::new("reader", reader)],
        );
        if let Some(suppressed) = self.limit.allow(&format!("overflow:{reader}")) {
            tracing::warn!(
                reader,
                suppressed,
                "cardinality limit reached: {points} data points went to the overflow series \
                 (raise metrics.cardinality_limit?)"
            );
        }
    }

    /// The state file could not be written (or read): continuity is at risk.
    pub fn state_error(&self, err: &dyn Display) {
        self.instruments
            .add(Metric::SourceErrors, 1, &[KeyValue::new("source", "state")]);
        if let Some(suppressed) = self.limit.allow("state") {
            tracing::error!(suppressed, "state file: {err}");
        }
    }

    fn source_error(&self, source: &'static str, what: &str, err: &dyn Display) {
        self.instruments
            .add(Metric::SourceErrors, 1, &[KeyValue::new("source", source)]);
        if let Some(suppressed) = self.limit.allow(&format!("source:{what}")) {
            tracing::error!(source, suppressed, "{what}: {err} (retrying)");
        }
    }
}

impl SourceObserver for Internal {
    fn rotated(&self, path: &Path) {
        self.instruments.add(Metric::FileRotations, 1, &[]);
        tracing::info!(path = %path.display(), "log file replaced: following the new file");
    }
    fn truncated(&self, path: &Path) {
        self.instruments.add(Metric::FileTruncations, 1, &[]);
        tracing::info!(path = %path.display(), "log file truncated: reading from its start");
    }
    fn error(&self, path: &Path, err: &io::Error) {
        self.source_error("file", &format!("cannot read {}", path.display()), err);
    }
    fn recovered(&self, path: &Path) {
        tracing::info!(path = %path.display(), "log file readable again");
    }
    fn invalid_utf8(&self, path: &Path) {
        self.line_rejected(
            Reject::InvalidUtf8,
            "",
            &format_args!("invalid UTF-8 in {}, decoded lossily", path.display()),
        );
    }
    fn child_failed(&self, what: &str, detail: &dyn Display) {
        self.source_error("journald", what, detail);
    }
    fn child_stderr(&self, line: &str) {
        if let Some(suppressed) = self.limit.allow("journalctl-stderr") {
            tracing::warn!(suppressed, "journalctl: {line}");
        }
    }
    fn position_invalid(&self, position: &str, fallback: &str) {
        self.instruments.add(Metric::PositionsInvalid, 1, &[]);
        tracing::warn!("saved position {position:?} cannot be used: starting from {fallback}");
    }
    fn child_recovered(&self, what: &str) {
        tracing::info!("{what}: working again");
    }
    fn line_too_long(&self, path: &Path, len: usize) {
        self.line_rejected(
            Reject::TooLong,
            "",
            &format_args!("a line of {len}+ bytes in {} was dropped", path.display()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_counts_suppressed() {
        let r = RateLimit {
            period: Duration::from_millis(50),
            seen: Mutex::new(HashMap::new()),
        };
        assert_eq!(r.allow("a"), Some(0));
        assert_eq!(r.allow("a"), None);
        assert_eq!(r.allow("a"), None);
        assert_eq!(r.allow("b"), Some(0));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(r.allow("a"), Some(2));
    }
}
