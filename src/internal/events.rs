//! Every self-monitoring event, as a value that knows its counter and its log line (level,
//! message, rate-limit key): [`Internal::emit`](super::Internal::emit) counts it and logs it,
//! in that one place. The habit of Vector's `internal_events`.

use std::borrow::Cow;
use std::fmt::Display;
use std::path::Path;

use super::counts::{
    Bound, Cache, Failing, HttpFailure, OtlpFailure, Reader, Reject, ReloadResult, Series,
};
use crate::source::Origin;

/// A self-monitoring event.
pub(crate) trait InternalEvent {
    /// The series it adds to, and how much; `None` for an event that is only logged.
    fn count(&self) -> Option<(Series, u64)> {
        None
    }
    /// The key of its rate limit: at most one line per key and period. `None`: every one
    /// is logged.
    fn rate_limit_key(&self) -> Option<Cow<'_, str>> {
        None
    }
    /// Writes its log line, if it has one; `suppressed` lines of the same key were not
    /// written since the last one.
    fn log(&self, _suppressed: u64) {}
}

/// At most this much of a rejected line is logged.
const SHOWN_CHARS: usize = 300;

/// Lines taken from the source (their time is kept apart: see `Internal::lines_read`).
pub(crate) struct LinesRead {
    pub(crate) lines: u64,
}

impl InternalEvent for LinesRead {
    fn count(&self) -> Option<(Series, u64)> {
        Some((Series::LinesRead, self.lines))
    }
}

/// A line that is not (fully) understood: an unknown form, a broken payload, a name or a
/// number of values that reaction's configuration does not have. The line is logged.
pub(crate) struct LineRejected<'a> {
    pub(crate) reason: Reject,
    pub(crate) line: &'a str,
    pub(crate) detail: &'a dyn Display,
}

impl InternalEvent for LineRejected<'_> {
    fn count(&self) -> Option<(Series, u64)> {
        Some((Series::LinesRejected(self.reason), 1))
    }
    fn rate_limit_key(&self) -> Option<Cow<'_, str>> {
        Some(self.reason.as_str().into())
    }
    fn log(&self, suppressed: u64) {
        let shown: String = self.line.chars().take(SHOWN_CHARS).collect();
        tracing::warn!(
            reason = self.reason.as_str(),
            suppressed,
            "line not understood ({}): {shown:?}",
            self.detail
        );
    }
}

/// A line that is not valid UTF-8: it is still processed, decoded lossily.
pub(crate) struct LineNotUtf8<'a> {
    pub(crate) origin: Origin<'a>,
}

impl InternalEvent for LineNotUtf8<'_> {
    fn count(&self) -> Option<(Series, u64)> {
        Some((Series::LinesRejected(Reject::InvalidUtf8), 1))
    }
    fn rate_limit_key(&self) -> Option<Cow<'_, str>> {
        Some(Reject::InvalidUtf8.as_str().into())
    }
    fn log(&self, suppressed: u64) {
        tracing::warn!(
            reason = Reject::InvalidUtf8.as_str(),
            suppressed,
            "a line from {} is not valid UTF-8: read with U+FFFD in place of the invalid bytes",
            self.origin
        );
    }
}

/// A line longer than `reaction.logs.max_line_length`: dropped.
pub(crate) struct LineTooLong<'a> {
    pub(crate) origin: Origin<'a>,
    /// Its length, or the bytes seen when it crossed the limit.
    pub(crate) len: usize,
}

impl InternalEvent for LineTooLong<'_> {
    fn count(&self) -> Option<(Series, u64)> {
        Some((Series::LinesRejected(Reject::TooLong), 1))
    }
    fn rate_limit_key(&self) -> Option<Cow<'_, str>> {
        Some(Reject::TooLong.as_str().into())
    }
    fn log(&self, suppressed: u64) {
        tracing::warn!(
            reason = Reject::TooLong.as_str(),
            suppressed,
            "a line of {}+ bytes from {} was dropped: longer than reaction.logs.max_line_length",
            self.len,
            self.origin
        );
    }
}

/// An action line ignored because reaction started less than `hold` ago.
pub(crate) struct ActionHeld<'a> {
    pub(crate) target: &'a str,
}

impl InternalEvent for ActionHeld<'_> {
    fn count(&self) -> Option<(Series, u64)> {
        Some((Series::ActionsHeld, 1))
    }
    fn log(&self, _: u64) {
        tracing::debug!(
            target = self.target,
            "action ignored: reaction started less than `hold` ago"
        );
    }
}

/// A pattern transform failed at run time: the raw value is kept.
pub(crate) struct TransformFailed<'a> {
    pub(crate) pattern: &'a str,
    pub(crate) error: &'a str,
}

impl InternalEvent for TransformFailed<'_> {
    fn count(&self) -> Option<(Series, u64)> {
        let pattern = self.pattern.to_string();
        Some((Series::TransformErrors { pattern }, 1))
    }
    fn rate_limit_key(&self) -> Option<Cow<'_, str>> {
        Some(format!("transform:{}", self.pattern).into())
    }
    fn log(&self, suppressed: u64) {
        tracing::warn!(
            pattern = self.pattern,
            suppressed,
            "transform failed, the raw value is kept: {}",
            self.error
        );
    }
}

/// A label value read from a log was longer than `metrics.max_label_value_length`: it was
/// cut (see `label::truncate`).
pub(crate) struct LabelValueTruncated<'a> {
    /// The label's name.
    pub(crate) label: &'a str,
    /// The value's length, bytes.
    pub(crate) len: usize,
    pub(crate) max: usize,
}

impl InternalEvent for LabelValueTruncated<'_> {
    fn count(&self) -> Option<(Series, u64)> {
        let label = self.label.to_string();
        Some((Series::LabelValuesTruncated { label }, 1))
    }
    fn rate_limit_key(&self) -> Option<Cow<'_, str>> {
        Some(format!("truncated:{}", self.label).into())
    }
    fn log(&self, suppressed: u64) {
        tracing::warn!(
            label = self.label,
            suppressed,
            "a value of {} bytes for label {} was cut to metrics.max_label_value_length ({} \
             bytes)",
            self.len,
            self.label,
            self.max
        );
    }
}

/// Entries dropped from a bounded cache to keep it within its bounds: its number of entries
/// (ordinary turnover, logged at debug level) or its byte budget (long values, a warning).
pub(crate) struct CacheEvicted<'a> {
    pub(crate) cache: Cache,
    pub(crate) bound: Bound,
    pub(crate) entries: u64,
    /// Whose cache (a filter's attribution memory): for the log line.
    pub(crate) owner: &'a str,
}

impl InternalEvent for CacheEvicted<'_> {
    fn count(&self) -> Option<(Series, u64)> {
        Some((Series::CacheEvictions(self.cache, self.bound), self.entries))
    }
    fn rate_limit_key(&self) -> Option<Cow<'_, str>> {
        Some(format!("evicted:{}:{}", self.cache.as_str(), self.bound.as_str()).into())
    }
    fn log(&self, suppressed: u64) {
        match self.bound {
            Bound::Entries => tracing::debug!(
                cache = self.cache.as_str(),
                owner = self.owner,
                entries = self.entries,
                "the oldest entries of a full cache were dropped"
            ),
            Bound::Bytes => tracing::warn!(
                cache = self.cache.as_str(),
                owner = self.owner,
                entries = self.entries,
                suppressed,
                "the {} cache reached its byte budget (long values): its oldest entries \
                 were dropped",
                self.cache.as_str()
            ),
        }
    }
}

/// Two pattern names of a filter give the same label name once sanitized (`a-b`, `a_b`):
/// one of them gets a numbered label name (see `label::label_names`).
pub(crate) struct LabelNamesCollide<'a> {
    pub(crate) filter: &'a str,
    pub(crate) pattern: &'a str,
    pub(crate) label: &'a str,
}

impl InternalEvent for LabelNamesCollide<'_> {
    fn log(&self, _: u64) {
        tracing::warn!(
            filter = self.filter,
            pattern = self.pattern,
            label = self.label,
            "the label name of pattern {:?} is taken by another pattern of the filter once \
             sanitized: it is labelled {:?}",
            self.pattern,
            self.label
        );
    }
}

/// A call to the reaction CLI failed.
pub(crate) struct CliFailed<'a> {
    /// `test-config`, `show` or `version`.
    pub(crate) command: &'static str,
    /// The kind of failure (`timeout`, `not_found`, ...).
    pub(crate) kind: &'static str,
    pub(crate) error: &'a dyn Display,
}

impl InternalEvent for CliFailed<'_> {
    fn count(&self) -> Option<(Series, u64)> {
        let (command, kind) = (self.command, self.kind);
        Some((Series::CliFailures { command, kind }, 1))
    }
    fn rate_limit_key(&self) -> Option<Cow<'_, str>> {
        Some(format!("cli:{}:{}", self.command, self.kind).into())
    }
    fn log(&self, suppressed: u64) {
        tracing::warn!(
            command = self.command,
            suppressed,
            "reaction {} failed: {}",
            self.command,
            self.error
        );
    }
}

/// A `/metrics` response was not delivered completely: its counts go to the next scrape.
pub(crate) struct ScrapeUndelivered {
    /// The series it carried (0: dropped before it collected anything).
    pub(crate) series: usize,
}

impl InternalEvent for ScrapeUndelivered {
    fn count(&self) -> Option<(Series, u64)> {
        Some((Series::ScrapesUndelivered, 1))
    }
    // A client can cause one per request (HEAD, a reset, a stall): rate-limited.
    fn rate_limit_key(&self) -> Option<Cow<'_, str>> {
        Some("scrape-undelivered".into())
    }
    fn log(&self, suppressed: u64) {
        tracing::warn!(
            series = self.series,
            suppressed,
            "a /metrics response was not delivered completely: its counts go to the next scrape"
        );
    }
}

/// An OTLP export request failed with a retryable error; its data is kept and sent again
/// after `retry_in`.
pub(crate) struct OtlpExportFailed<'a> {
    pub(crate) endpoint: &'a str,
    /// The status or error, with the receiver's message.
    pub(crate) status: &'a dyn Display,
    /// Points kept (in the failed request and the rest of this round) and series in the
    /// buffer of points never sent.
    pub(crate) points_kept: u64,
    pub(crate) series_kept: usize,
    pub(crate) retry_in: std::time::Duration,
}

impl InternalEvent for OtlpExportFailed<'_> {
    fn count(&self) -> Option<(Series, u64)> {
        Some((Series::OtlpFailures(OtlpFailure::Export), 1))
    }
    fn rate_limit_key(&self) -> Option<Cow<'_, str>> {
        Some("otlp:export".into())
    }
    fn log(&self, suppressed: u64) {
        tracing::warn!(
            suppressed,
            "OTLP: export to {} failed ({}): {} points and {} series kept, retrying in {:.1} s",
            self.endpoint,
            self.status,
            self.points_kept,
            self.series_kept,
            self.retry_in.as_secs_f64()
        );
    }
}

/// The receiver refused an OTLP request with a non-retryable answer: its points are
/// dropped (the specification: "The client MUST drop the telemetry data"), delivery goes
/// on with the next request. Counts the request; its points are [`OtlpPointsDropped`].
pub(crate) struct OtlpRequestDropped<'a> {
    pub(crate) endpoint: &'a str,
    /// `http_400`, `invalid_argument`, `too_large`...
    pub(crate) reason: &'a str,
    /// The receiver's message.
    pub(crate) status: &'a dyn Display,
    pub(crate) points: u64,
}

impl InternalEvent for OtlpRequestDropped<'_> {
    fn count(&self) -> Option<(Series, u64)> {
        let reason = self.reason.to_string();
        Some((Series::OtlpRequestsDropped { reason }, 1))
    }
    fn rate_limit_key(&self) -> Option<Cow<'_, str>> {
        Some(format!("otlp:dropped:{}", self.reason).into())
    }
    fn log(&self, suppressed: u64) {
        tracing::error!(
            reason = self.reason,
            suppressed,
            "OTLP: {} refused a request ({}): its {} points are dropped, not retried",
            self.endpoint,
            self.status,
            self.points
        );
    }
}

/// The receiver answered "too large": the request is sent again as two smaller ones.
pub(crate) struct OtlpRequestSplit<'a> {
    pub(crate) status: &'a dyn Display,
    pub(crate) bytes: usize,
}

impl InternalEvent for OtlpRequestSplit<'_> {
    fn rate_limit_key(&self) -> Option<Cow<'_, str>> {
        Some("otlp:split".into())
    }
    fn log(&self, suppressed: u64) {
        tracing::warn!(
            suppressed,
            "OTLP: the receiver refused a request of {} bytes as too large ({}): sending its \
             points in smaller requests (lower otlp.max_request_size?)",
            self.bytes,
            self.status
        );
    }
}

/// At shutdown, what could not be delivered within the final export's deadline.
pub(crate) struct OtlpUndelivered<'a> {
    pub(crate) endpoint: &'a str,
    pub(crate) points: u64,
    pub(crate) series: usize,
    pub(crate) wait: std::time::Duration,
    /// They are in the state file (OTLP only: sent after a restart within `state.recall`).
    pub(crate) saved: bool,
}

impl InternalEvent for OtlpUndelivered<'_> {
    fn log(&self, _: u64) {
        let fate = if self.saved {
            "saved in the state file, sent after a restart within state.recall"
        } else {
            "lost for OTLP"
        };
        tracing::warn!(
            "OTLP: {} points and {} series could not be delivered to {} within {} s: {fate}",
            self.points,
            self.series,
            self.endpoint,
            self.wait.as_secs()
        );
    }
}

/// The collector answered an export with a partial success: it rejected points.
pub(crate) struct OtlpPointsRejected<'a> {
    pub(crate) points: i64,
    pub(crate) message: &'a str,
}

impl InternalEvent for OtlpPointsRejected<'_> {
    fn count(&self) -> Option<(Series, u64)> {
        Some((Series::OtlpFailures(OtlpFailure::Rejected), 1))
    }
    fn rate_limit_key(&self) -> Option<Cow<'_, str>> {
        Some("otlp:rejected".into())
    }
    fn log(&self, suppressed: u64) {
        tracing::warn!(
            suppressed,
            "OTLP: the collector rejected {} data points: {}",
            self.points,
            self.message
        );
    }
}

/// Events were recorded in an overflow series (`otel.metric.overflow=true`) instead of
/// their own, because an instrument (or the OTLP buffer) reached `metrics.cardinality_limit`.
pub(crate) struct CardinalityOverflow {
    pub(crate) reader: Reader,
    /// The events: the value the overflowed measurements added.
    pub(crate) events: u64,
}

impl InternalEvent for CardinalityOverflow {
    fn count(&self) -> Option<(Series, u64)> {
        Some((Series::CardinalityOverflows(self.reader), self.events))
    }
    fn rate_limit_key(&self) -> Option<Cow<'_, str>> {
        Some(format!("overflow:{}", self.reader.as_str()).into())
    }
    fn log(&self, suppressed: u64) {
        tracing::warn!(
            reader = self.reader.as_str(),
            suppressed,
            "cardinality limit reached: {} events were counted in the overflow series \
             (raise metrics.cardinality_limit?)",
            self.events
        );
    }
}

/// OTLP points dropped: the buffer could not keep them (`buffer_full`: gauge and
/// cumulative points past `metrics.cardinality_limit` while exports fail), or their request
/// was refused (the reason of [`OtlpRequestDropped`], which logs it).
pub(crate) struct OtlpPointsDropped<'a> {
    pub(crate) reason: &'a str,
    pub(crate) points: u64,
}

/// The reason of points the buffer could not keep.
pub(crate) const BUFFER_FULL: &str = "buffer_full";

impl InternalEvent for OtlpPointsDropped<'_> {
    fn count(&self) -> Option<(Series, u64)> {
        let reason = self.reason.to_string();
        Some((Series::OtlpPointsDropped { reason }, self.points))
    }
    fn rate_limit_key(&self) -> Option<Cow<'_, str>> {
        (self.reason == BUFFER_FULL).then(|| "otlp:buffer_full".into())
    }
    fn log(&self, suppressed: u64) {
        if self.reason != BUFFER_FULL {
            return;
        }
        tracing::warn!(
            suppressed,
            "OTLP: {} gauge or cumulative points dropped: the buffer of unsent points holds \
             metrics.cardinality_limit series per metric",
            self.points
        );
    }
}

/// The state file could not be written (or read): continuity is at risk.
pub(crate) struct StateFileFailed<'a> {
    pub(crate) error: &'a dyn Display,
}

impl InternalEvent for StateFileFailed<'_> {
    fn count(&self) -> Option<(Series, u64)> {
        Some((Series::SourceErrors(Failing::State), 1))
    }
    fn rate_limit_key(&self) -> Option<Cow<'_, str>> {
        Some("state".into())
    }
    fn log(&self, suppressed: u64) {
        tracing::error!(suppressed, "state file: {}", self.error);
    }
}

/// The log file could not be opened, read or stat'ed (retried at the next poll).
pub(crate) struct FileUnreadable<'a> {
    pub(crate) path: &'a Path,
    pub(crate) error: &'a std::io::Error,
}

impl InternalEvent for FileUnreadable<'_> {
    fn count(&self) -> Option<(Series, u64)> {
        Some((Series::SourceErrors(Failing::File), 1))
    }
    fn rate_limit_key(&self) -> Option<Cow<'_, str>> {
        Some(format!("source:{}", self.path.display()).into())
    }
    fn log(&self, suppressed: u64) {
        tracing::error!(
            source = Failing::File.as_str(),
            suppressed,
            "cannot read {}: {} (retrying)",
            self.path.display(),
            self.error
        );
    }
}

/// The log file is readable again.
pub(crate) struct FileReadable<'a> {
    pub(crate) path: &'a Path,
}

impl InternalEvent for FileReadable<'_> {
    fn log(&self, _: u64) {
        tracing::info!(path = %self.path.display(), "log file readable again");
    }
}

/// The log file's path names another file now (rotated, or deleted and re-created).
pub(crate) struct FileRotated<'a> {
    pub(crate) path: &'a Path,
}

impl InternalEvent for FileRotated<'_> {
    fn count(&self) -> Option<(Series, u64)> {
        Some((Series::FileRotations, 1))
    }
    fn log(&self, _: u64) {
        tracing::info!(path = %self.path.display(), "log file replaced: following the new file");
    }
}

/// The log file got shorter or its head changed in place.
pub(crate) struct FileTruncated<'a> {
    pub(crate) path: &'a Path,
}

impl InternalEvent for FileTruncated<'_> {
    fn count(&self) -> Option<(Series, u64)> {
        Some((Series::FileTruncations, 1))
    }
    fn log(&self, _: u64) {
        tracing::info!(path = %self.path.display(), "log file truncated: reading from its start");
    }
}

/// `journalctl` could not start, exited, or printed something unreadable (restarted after
/// a backoff).
pub(crate) struct JournalctlFailed<'a> {
    /// Which failure (`journalctl not found`, `journalctl exited with status 1`, ...).
    pub(crate) what: &'a str,
    pub(crate) detail: &'a dyn Display,
}

impl InternalEvent for JournalctlFailed<'_> {
    fn count(&self) -> Option<(Series, u64)> {
        Some((Series::SourceErrors(Failing::Journald), 1))
    }
    fn rate_limit_key(&self) -> Option<Cow<'_, str>> {
        Some(format!("source:{}", self.what).into())
    }
    fn log(&self, suppressed: u64) {
        tracing::error!(
            source = Failing::Journald.as_str(),
            suppressed,
            "{}: {} (retrying)",
            self.what,
            self.detail
        );
    }
}

/// A line `journalctl` wrote on its stderr.
pub(crate) struct JournalctlStderr<'a> {
    pub(crate) line: &'a str,
}

impl InternalEvent for JournalctlStderr<'_> {
    fn rate_limit_key(&self) -> Option<Cow<'_, str>> {
        Some("journalctl-stderr".into())
    }
    fn log(&self, suppressed: u64) {
        tracing::warn!(suppressed, "journalctl: {}", self.line);
    }
}

/// `journalctl` works again after a failure.
pub(crate) struct JournalctlRecovered<'a> {
    pub(crate) what: &'a str,
}

impl InternalEvent for JournalctlRecovered<'_> {
    fn log(&self, _: u64) {
        tracing::info!("{}: working again", self.what);
    }
}

/// A saved position (journal cursor, file checkpoint, the state file) could not be used.
pub(crate) struct PositionInvalid<'a> {
    pub(crate) position: &'a str,
    /// Where the source starts instead.
    pub(crate) fallback: &'a str,
}

impl InternalEvent for PositionInvalid<'_> {
    fn count(&self) -> Option<(Series, u64)> {
        Some((Series::PositionsInvalid, 1))
    }
    fn log(&self, _: u64) {
        tracing::warn!(
            "saved position {:?} cannot be used: starting from {}",
            self.position,
            self.fallback
        );
    }
}

/// An HTTP connection or request refused or cut short (see [`HttpFailure`]): counted by
/// kind, logged at most once per kind and period, since a client can cause one per request.
pub(crate) struct HttpFailed<'a> {
    pub(crate) kind: HttpFailure,
    /// The client, when known.
    pub(crate) peer: Option<std::net::SocketAddr>,
    pub(crate) detail: &'a dyn Display,
}

impl InternalEvent for HttpFailed<'_> {
    fn count(&self) -> Option<(Series, u64)> {
        Some((Series::HttpFailures(self.kind), 1))
    }
    fn rate_limit_key(&self) -> Option<Cow<'_, str>> {
        Some(format!("http:{}", self.kind.as_str()).into())
    }
    fn log(&self, suppressed: u64) {
        let peer = self
            .peer
            .map(|p| p.to_string())
            .unwrap_or_else(|| "?".into());
        tracing::warn!(
            kind = self.kind.as_str(),
            peer,
            suppressed,
            "HTTP: {}",
            self.detail
        );
    }
}

/// The web configuration file (or a file it names) changed and was loaded again.
pub(crate) struct WebConfigLoaded<'a> {
    pub(crate) path: &'a Path,
    pub(crate) tls: bool,
    pub(crate) users: usize,
}

impl InternalEvent for WebConfigLoaded<'_> {
    fn log(&self, _: u64) {
        tracing::info!(
            path = %self.path.display(),
            tls = self.tls,
            users = self.users,
            "web configuration loaded"
        );
    }
}

/// A changed web configuration could not be loaded: the previous one stays in force.
pub(crate) struct WebConfigRefused<'a> {
    pub(crate) error: &'a dyn Display,
}

impl InternalEvent for WebConfigRefused<'_> {
    fn rate_limit_key(&self) -> Option<Cow<'_, str>> {
        Some("web-config".into())
    }
    fn log(&self, suppressed: u64) {
        tracing::error!(
            suppressed,
            "the changed web configuration is refused, the previous one stays in force: {}",
            self.error
        );
    }
}

/// A configuration reload (SIGHUP) put the new configuration in force: `changed` are the
/// reloadable keys whose value changed (the keys kept until a restart are logged apart,
/// [`ReloadKeyKept`]).
pub(crate) struct ConfigReloaded<'a> {
    pub(crate) file: &'a str,
    pub(crate) changed: &'a [&'a str],
}

impl InternalEvent for ConfigReloaded<'_> {
    fn count(&self) -> Option<(Series, u64)> {
        Some((Series::ConfigReloads(ReloadResult::Ok), 1))
    }
    fn log(&self, _: u64) {
        if self.changed.is_empty() {
            tracing::info!(
                file = self.file,
                "configuration reloaded: nothing that can change while running changed"
            );
        } else {
            tracing::info!(
                file = self.file,
                "configuration reloaded: now in force: {}",
                self.changed.join(", ")
            );
        }
    }
}

/// A configuration reload refused (unreadable file, parse, range or template error, a web
/// configuration that does not load): the running configuration stays, all of it.
pub(crate) struct ConfigReloadFailed<'a> {
    pub(crate) error: &'a dyn Display,
}

impl InternalEvent for ConfigReloadFailed<'_> {
    fn count(&self) -> Option<(Series, u64)> {
        Some((Series::ConfigReloads(ReloadResult::Failed), 1))
    }
    fn log(&self, _: u64) {
        tracing::error!(
            "configuration reload refused, the running configuration stays: {}",
            self.error
        );
    }
}

/// A key changed in the reloaded file that cannot change while the exporter runs: its
/// running value stays until a restart. Values are not logged (`otlp.headers` may hold a
/// token).
pub(crate) struct ReloadKeyKept<'a> {
    pub(crate) key: &'a str,
    /// Why, when it is not that the key never changes while running.
    pub(crate) why: Option<&'a str>,
}

impl InternalEvent for ReloadKeyKept<'_> {
    fn log(&self, _: u64) {
        let why = self.why.unwrap_or("cannot change while the exporter runs");
        tracing::warn!(
            key = self.key,
            "key `{}` changed in the configuration file but {why}: the running value stays \
             until a restart",
            self.key
        );
    }
}
