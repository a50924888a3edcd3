//! The exporter's own counts: a running total per series of each internal counter. They
//! are kept here, not in the SDK, so that everything can count from the start (the OTLP
//! exporter exists before the meter provider does); `telemetry` shows them as observable
//! counters.
//!
//! Bounded: a series is a counter and label values taken from fixed sets, except the
//! `pattern` of a transform error and the `label` of a truncated value, which are pattern
//! or label names of reaction's configuration (never a value read from a log).

use std::collections::HashMap;
use std::sync::Mutex;

/// An internal counter: one per counter family of the exporter's own metrics
/// (`reaction_exporter_*_total`); the metric table says which instrument shows which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Counter {
    /// Log lines read from the source.
    LinesRead,
    /// Log lines not (or not fully) understood, by `reason`.
    LinesRejected,
    /// Failures of the source or of the state file, by `source`.
    SourceErrors,
    /// Times the log file was replaced.
    FileRotations,
    /// Times the log file was truncated in place.
    FileTruncations,
    /// Failed calls to the reaction CLI, by `command` and `kind`.
    CliFailures,
    /// Action lines ignored within `hold`.
    ActionsHeld,
    /// Transforms that failed at run time, by `pattern`.
    TransformErrors,
    /// Label values cut to `metrics.max_label_value_length`, by `label`.
    LabelValuesTruncated,
    /// Entries dropped from a bounded cache, by `cache` and `reason`.
    CacheEvictions,
    /// `/metrics` responses not delivered completely.
    ScrapesUndelivered,
    /// Saved positions that could not be used.
    PositionsInvalid,
    /// Failed OTLP exports and rejections, by `kind`.
    OtlpFailures,
    /// Events recorded in an overflow series instead of their own, by `reader`.
    CardinalityOverflows,
    /// OTLP points dropped, by `reason`.
    OtlpPointsDropped,
    /// OTLP requests dropped on a non-retryable answer, by `reason`.
    OtlpRequestsDropped,
    /// HTTP connections and requests refused or cut short, by `kind`.
    HttpFailures,
    /// Configuration reloads (SIGHUP), by `result`.
    ConfigReloads,
}

/// The `reason` a line was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Reject {
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
    pub(crate) fn as_str(self) -> &'static str {
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

/// What failed, the `source` of a source error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Failing {
    /// The log file.
    File,
    /// `journalctl`.
    Journald,
    /// The state file.
    State,
}

impl Failing {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Failing::File => "file",
            Failing::Journald => "journald",
            Failing::State => "state",
        }
    }
}

/// The `kind` of an OTLP failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum OtlpFailure {
    /// An export request failed with a retryable error (its data is kept and sent again).
    Export,
    /// The collector answered with a partial success: it rejected points.
    Rejected,
}

impl OtlpFailure {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            OtlpFailure::Export => "export",
            OtlpFailure::Rejected => "rejected",
        }
    }
}

/// The `reader` whose instrument (or buffer) overflowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Reader {
    /// The `/metrics` pull reader.
    Prometheus,
    /// The OTLP push exporter.
    Otlp,
    /// The reader of `/metrics/otel`.
    Cumulative,
}

impl Reader {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Reader::Prometheus => "prometheus",
            Reader::Otlp => "otlp",
            Reader::Cumulative => "cumulative",
        }
    }
}

/// The `kind` of an HTTP failure: why a connection or a request was refused or cut short.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum HttpFailure {
    /// accept() failed (out of file descriptors, ...).
    Accept,
    /// A new connection past `listen.max_connections`, or an idle one closed for it.
    ConnectionLimit,
    /// No complete request head (or TLS handshake) within `listen.header_timeout`.
    HeaderTimeout,
    /// A response not handed over completely within `listen.response_timeout`.
    ResponseTimeout,
    /// The TLS handshake failed.
    TlsHandshake,
    /// Plain HTTP sent to the TLS port.
    PlainHttp,
    /// Missing or wrong basic-auth credentials (401).
    Unauthorized,
    /// A new credential could not be checked in time: bcrypt was busy (429).
    AuthBusy,
}

impl HttpFailure {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            HttpFailure::Accept => "accept",
            HttpFailure::ConnectionLimit => "connection_limit",
            HttpFailure::HeaderTimeout => "header_timeout",
            HttpFailure::ResponseTimeout => "response_timeout",
            HttpFailure::TlsHandshake => "tls_handshake",
            HttpFailure::PlainHttp => "plain_http",
            HttpFailure::Unauthorized => "unauthorized",
            HttpFailure::AuthBusy => "auth_busy",
        }
    }
}

/// The `result` of a configuration reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ReloadResult {
    /// The configuration loaded and what can change while running is in force.
    Ok,
    /// The configuration was refused: the running one stays.
    Failed,
}

impl ReloadResult {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ReloadResult::Ok => "ok",
            ReloadResult::Failed => "failed",
        }
    }
}

/// A cache bounded in entries and bytes, the `cache` of an eviction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Cache {
    /// The attribution memory (recent matches, to label actions).
    Attribution,
    /// The cache of rendered transforms.
    Transform,
}

impl Cache {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Cache::Attribution => "attribution",
            Cache::Transform => "transform",
        }
    }
}

/// The bound a cache reached, the `reason` of an eviction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Bound {
    /// Its number of entries: ordinary turnover.
    Entries,
    /// Its byte budget: long values.
    Bytes,
}

impl Bound {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Bound::Entries => "entries",
            Bound::Bytes => "bytes",
        }
    }
}

/// A series' attributes, (key, value), in `/metrics` label order.
pub(crate) type Attributes<'a> = [(&'static str, &'a str)];

/// One series of an internal counter: the counter and its label values.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Series {
    LinesRead,
    LinesRejected(Reject),
    SourceErrors(Failing),
    FileRotations,
    FileTruncations,
    CliFailures {
        command: &'static str,
        kind: &'static str,
    },
    ActionsHeld,
    TransformErrors {
        pattern: String,
    },
    /// `label`: the label name (a pattern's, or a fixed one), from the configuration.
    LabelValuesTruncated {
        label: String,
    },
    CacheEvictions(Cache, Bound),
    ScrapesUndelivered,
    PositionsInvalid,
    OtlpFailures(OtlpFailure),
    CardinalityOverflows(Reader),
    /// `reason`: `buffer_full`, or the reason of a dropped request.
    OtlpPointsDropped {
        reason: String,
    },
    /// `reason`: `http_<status>` or a gRPC code (`invalid_argument`), `too_large`.
    OtlpRequestsDropped {
        reason: String,
    },
    HttpFailures(HttpFailure),
    ConfigReloads(ReloadResult),
}

impl Series {
    pub(crate) fn counter(&self) -> Counter {
        match self {
            Series::LinesRead => Counter::LinesRead,
            Series::LinesRejected(_) => Counter::LinesRejected,
            Series::SourceErrors(_) => Counter::SourceErrors,
            Series::FileRotations => Counter::FileRotations,
            Series::FileTruncations => Counter::FileTruncations,
            Series::CliFailures { .. } => Counter::CliFailures,
            Series::ActionsHeld => Counter::ActionsHeld,
            Series::TransformErrors { .. } => Counter::TransformErrors,
            Series::LabelValuesTruncated { .. } => Counter::LabelValuesTruncated,
            Series::CacheEvictions(..) => Counter::CacheEvictions,
            Series::ScrapesUndelivered => Counter::ScrapesUndelivered,
            Series::PositionsInvalid => Counter::PositionsInvalid,
            Series::OtlpFailures(_) => Counter::OtlpFailures,
            Series::CardinalityOverflows(_) => Counter::CardinalityOverflows,
            Series::OtlpPointsDropped { .. } => Counter::OtlpPointsDropped,
            Series::OtlpRequestsDropped { .. } => Counter::OtlpRequestsDropped,
            Series::HttpFailures(_) => Counter::HttpFailures,
            Series::ConfigReloads(_) => Counter::ConfigReloads,
        }
    }

    /// The series' attributes, (key, value), in `/metrics` label order.
    pub(crate) fn attributes(&self) -> Vec<(&'static str, &str)> {
        match self {
            Series::LinesRead
            | Series::FileRotations
            | Series::FileTruncations
            | Series::ActionsHeld
            | Series::ScrapesUndelivered
            | Series::PositionsInvalid => Vec::new(),
            Series::LinesRejected(reason) => vec![("reason", reason.as_str())],
            Series::SourceErrors(source) => vec![("source", source.as_str())],
            Series::CliFailures { command, kind } => vec![("command", command), ("kind", kind)],
            Series::TransformErrors { pattern } => vec![("pattern", pattern)],
            Series::LabelValuesTruncated { label } => vec![("label", label)],
            Series::CacheEvictions(cache, bound) => {
                vec![("cache", cache.as_str()), ("reason", bound.as_str())]
            }
            Series::OtlpFailures(kind) => vec![("kind", kind.as_str())],
            Series::CardinalityOverflows(reader) => vec![("reader", reader.as_str())],
            Series::OtlpPointsDropped { reason } | Series::OtlpRequestsDropped { reason } => {
                vec![("reason", reason)]
            }
            Series::HttpFailures(kind) => vec![("kind", kind.as_str())],
            Series::ConfigReloads(result) => vec![("result", result.as_str())],
        }
    }
}

/// The running totals.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    totals: Mutex<HashMap<Series, u64>>,
}

impl Counts {
    pub(crate) fn add(&self, series: Series, n: u64) {
        if n == 0 {
            return;
        }
        let mut totals = self.totals.lock().expect("internal counts");
        let total = totals.entry(series).or_default();
        *total = total.saturating_add(n);
    }

    /// Calls `f` with the total and attributes of every series of `counter` that counted
    /// something (a series appears with its first count, as a synchronous counter's would).
    pub(crate) fn observe(&self, counter: Counter, f: &mut dyn FnMut(u64, &Attributes<'_>)) {
        let totals = self.totals.lock().expect("internal counts");
        for (series, total) in totals.iter() {
            if series.counter() == counter {
                f(*total, &series.attributes());
            }
        }
    }

    /// The total of one series (0 if it never counted).
    #[cfg(test)]
    pub(crate) fn get(&self, series: &Series) -> u64 {
        let totals = self.totals.lock().expect("internal counts");
        totals.get(series).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_per_series_observed_per_counter() {
        let c = Counts::default();
        c.add(Series::LinesRejected(Reject::Unknown), 2);
        c.add(Series::LinesRejected(Reject::TooLong), 1);
        c.add(Series::LinesRejected(Reject::Unknown), 3);
        c.add(Series::LinesRead, 0);
        let mut seen = Vec::new();
        c.observe(Counter::LinesRejected, &mut |v, attrs| {
            seen.push((v, attrs[0].1.to_string()))
        });
        seen.sort();
        assert_eq!(seen, vec![(1, "too_long".into()), (5, "unknown".into())]);
        let mut none = 0;
        c.observe(Counter::LinesRead, &mut |_, _| none += 1);
        assert_eq!(none, 0, "a series appears with its first count");
    }
}
