//! Self-monitoring: every event about the exporter itself (`events`) is counted and
//! logged (rate-limited) by `Internal::emit`, in one place. The counts are kept here
//! (`counts`), so this module needs nothing above it: everything can report from its
//! construction on, and `telemetry` shows the counts as the `reaction_exporter_*`
//! instruments.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) mod counts;
pub(crate) mod events;
mod rate_limit;

pub use counts::Counter;

use crate::defaults;
use crate::source::{Origin, SourceObserver};
use counts::Counts;
#[cfg(test)]
use counts::Series;
use events::InternalEvent;
use rate_limit::RateLimit;

/// The exporter's self-monitoring: its counts, the time of the last line read, and the
/// rate limit of its log lines. Shared (`Arc`) by everything that reports.
#[derive(Debug)]
pub struct Internal {
    counts: Counts,
    limit: RateLimit,
    /// Time of the last log line read (f64 seconds since the epoch, as bits; 0 = none yet).
    last_line: AtomicU64,
}

impl Internal {
    /// Nothing counted yet.
    pub(crate) fn new() -> Internal {
        Internal {
            counts: Counts::default(),
            limit: RateLimit::new(
                defaults::LOG_RATE_LIMIT_PERIOD,
                defaults::LOG_RATE_LIMIT_KEYS,
            ),
            last_line: AtomicU64::new(0),
        }
    }

    /// Count and log `event`.
    pub(crate) fn emit(&self, event: impl InternalEvent) {
        if let Some((series, n)) = event.count() {
            self.counts.add(series, n);
        }
        match event.rate_limit_key() {
            None => event.log(0),
            Some(key) => {
                if let Some(suppressed) = self.limit.allow(&key) {
                    event.log(suppressed);
                }
            }
        }
    }

    /// `n` lines taken from the source, the last one logged at `last`.
    pub(crate) fn lines_read(&self, n: u64, last: SystemTime) {
        self.emit(events::LinesRead { lines: n });
        if let Ok(d) = last.duration_since(UNIX_EPOCH) {
            self.last_line
                .store(d.as_secs_f64().to_bits(), Ordering::Relaxed);
        }
    }

    /// When the last line read was logged (seconds since the epoch), once there is one.
    pub(crate) fn last_line_time(&self) -> Option<f64> {
        Some(f64::from_bits(self.last_line.load(Ordering::Relaxed))).filter(|t| *t > 0.0)
    }

    /// Calls `f` with the running total and attributes of every series of `counter`.
    pub(crate) fn observe(
        &self,
        counter: Counter,
        f: &mut dyn FnMut(u64, &counts::Attributes<'_>),
    ) {
        self.counts.observe(counter, f);
    }

    /// The running total of one series.
    #[cfg(test)]
    pub(crate) fn count(&self, series: &Series) -> u64 {
        self.counts.get(series)
    }
}

/// What the sources report, as events.
impl SourceObserver for Internal {
    fn rotated(&self, path: &Path) {
        self.emit(events::FileRotated { path });
    }
    fn truncated(&self, path: &Path) {
        self.emit(events::FileTruncated { path });
    }
    fn error(&self, path: &Path, error: &std::io::Error) {
        self.emit(events::FileUnreadable { path, error });
    }
    fn recovered(&self, path: &Path) {
        self.emit(events::FileReadable { path });
    }
    fn invalid_utf8(&self, origin: Origin<'_>) {
        self.emit(events::LineNotUtf8 { origin });
    }
    fn line_too_long(&self, origin: Origin<'_>, len: usize) {
        self.emit(events::LineTooLong { origin, len });
    }
    fn child_failed(&self, what: &str, detail: &dyn std::fmt::Display) {
        self.emit(events::JournalctlFailed { what, detail });
    }
    fn child_stderr(&self, line: &str) {
        self.emit(events::JournalctlStderr { line });
    }
    fn position_invalid(&self, position: &str, fallback: &str) {
        self.emit(events::PositionInvalid { position, fallback });
    }
    fn child_recovered(&self, what: &str) {
        self.emit(events::JournalctlRecovered { what });
    }
}

#[cfg(test)]
mod tests {
    use super::counts::Reject;
    use super::*;

    #[test]
    fn an_event_counts_even_when_its_log_line_is_suppressed() {
        let internal = Internal::new();
        let origin = Origin::File(Path::new("/var/log/reaction.log"));
        for _ in 0..5 {
            internal.line_too_long(origin, 70_000);
        }
        internal.invalid_utf8(Origin::Journal {
            unit: "reaction.service",
        });
        assert_eq!(internal.count(&Series::LinesRejected(Reject::TooLong)), 5);
        assert_eq!(
            internal.count(&Series::LinesRejected(Reject::InvalidUtf8)),
            1
        );
    }

    #[test]
    fn the_time_of_the_last_line() {
        let internal = Internal::new();
        assert_eq!(internal.last_line_time(), None);
        internal.lines_read(3, UNIX_EPOCH + std::time::Duration::from_millis(1500));
        assert_eq!(internal.last_line_time(), Some(1.5));
        assert_eq!(internal.count(&Series::LinesRead), 3);
    }
}
