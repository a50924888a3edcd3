//! The metric table: every instrument the exporter creates, as one enum ([`Metric`]) and
//! what each one is ([`Spec`]): its OpenTelemetry name, kind, unit and description, its
//! fixed attributes, how the legacy `/metrics` endpoint shows it, and, for an observable
//! instrument, what it observes ([`ObservedU64`], [`ObservedF64`], an internal [`Counter`]).
//!
//! Adding a metric is one entry in the table below (the compiler then asks for nothing
//! else here: the enum, [`Metric::ALL`] and [`Metric::spec`] come from the same entry),
//! one group in `otel/registry` and a line in the READMEs: `tests/registry.rs` and
//! `tests/readme.rs` fail until those agree. The entries are in `/metrics` order.
//!
//! Also here, because the table's users share them: the rules for label names
//! (`is_valid_label_name`, `sanitize_label_name`) and the attribute the SDK puts on an
//! overflow series (`OVERFLOW_KEY`).

use crate::internal::Counter;

/// How an instrument is created and where its values come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Synchronous monotonic counter (u64): the pipeline adds to it as events happen.
    Counter,
    /// Asynchronous monotonic counter (u64): a running total of the self-monitoring
    /// ([`crate::internal`]), observed at each collection.
    ObservableCounter(Counter),
    /// Asynchronous gauge (u64), observed at each collection.
    ObservableGauge(ObservedU64),
    /// Asynchronous gauge (f64), observed at each collection.
    ObservableGaugeF64(ObservedF64),
    /// Asynchronous monotonic counter (f64), observed as a running total.
    ObservableCounterF64(ObservedF64),
}

/// What an integer observable instrument reads at each collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObservedU64 {
    /// The labelled pending executions of the last `reaction show`.
    PendingActions,
    /// Whether `reaction show` answered, with reaction's version.
    ReactionStatus,
}

/// What a floating-point observable instrument reads at each collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObservedF64 {
    /// The time of the last log line read.
    LastEvent,
    /// The exporter's CPU time (`/proc/self/stat`).
    CpuTime,
    /// The exporter's resident memory (`/proc/self/statm`).
    ResidentMemory,
    /// The exporter's open file descriptors (`/proc/self/fd`).
    OpenFds,
}

/// How `/metrics` shows a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Legacy {
    /// A gauge holding what happened since the last scrape (the legacy counts).
    DeltaGauge,
    /// A gauge holding the current value (pending actions, status, timestamps, memory).
    Gauge,
    /// A cumulative counter (`_total`), for the exporter's own metrics.
    Counter,
}

/// What a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    /// The OpenTelemetry instrument name.
    pub otel: &'static str,
    /// The instrument kind, and what an observable one observes.
    pub kind: Kind,
    /// The UCUM unit (`{match}`, `s`, `By`).
    pub unit: &'static str,
    /// The instrument's description (the registry's `brief`, word for word).
    pub description: &'static str,
    /// Attribute keys in `/metrics` label order; pattern attributes (if any) follow, sorted.
    pub attributes: &'static [&'static str],
    /// Whether pattern attributes (one per reaction pattern) follow the fixed ones.
    pub patterns: bool,
    /// The family name on `/metrics` (the Python exporter's, for its families).
    pub legacy: &'static str,
    /// The `# HELP` text on `/metrics`.
    pub help: &'static str,
    /// The type on `/metrics`.
    pub legacy_kind: Legacy,
    /// Shown on `/metrics` only with `metrics.export.internals` (always pushed over OTLP).
    pub internal: bool,
}

/// The family `/metrics` always shows first (it is not an instrument: the OTLP resource
/// carries the version as `service.version`).
pub const BUILD_INFO: &str = "reaction_exporter_build_info";
/// Its `# HELP` text (the Python exporter's).
pub(crate) const BUILD_INFO_HELP: &str =
    "A metric with a constant '1' value labelled by version of reaction_metrics_exporter.";

/// The attribute the SDK (and the OTLP exporter's buffer) puts, alone, on the series that
/// takes what comes past `metrics.cardinality_limit`.
pub(crate) const OVERFLOW_KEY: &str = "otel.metric.overflow";

/// Generates [`Metric`], [`Metric::ALL`] (in table order) and [`Metric::spec`] from one
/// list, so that they cannot disagree.
macro_rules! metric_table {
    ($($(#[doc = $doc:literal])* $variant:ident => $spec:expr,)*) => {
        /// Every instrument of the exporter; [`Metric::spec`] says what each one is.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Metric {
            $($(#[doc = $doc])* $variant,)*
        }

        impl Metric {
            /// Every metric, in `/metrics` order.
            pub const ALL: &'static [Metric] = &[$(Metric::$variant,)*];

            /// What this metric is.
            pub fn spec(self) -> &'static Spec {
                match self {
                    $(Metric::$variant => {
                        static SPEC: Spec = $spec;
                        &SPEC
                    })*
                }
            }
        }
    };
}

metric_table! {
    /// `reaction_status_info` (shown first, in its legacy shape: see `telemetry::render`).
    Up => Spec {
        otel: "reaction.up",
        kind: Kind::ObservableGauge(ObservedU64::ReactionStatus),
        unit: "{status}",
        description: "1 when `reaction show` answers, 0 otherwise, with reaction's version (N/A if unknown).",
        attributes: &["version"],
        patterns: false,
        legacy: "reaction_status_info",
        help: "A metric with a constant '1' value labelled by version of reaction and its status.",
        legacy_kind: Legacy::Gauge,
        internal: false,
    },
    /// `reaction_commands_count`.
    CommandRuns => Spec {
        otel: "reaction.command.runs",
        kind: Kind::Counter,
        unit: "{run}",
        description: "Start and stop commands run by reaction, by state, program, success and exit code.",
        attributes: &["state", "command", "status", "code"],
        patterns: false,
        legacy: "reaction_commands_count",
        help: "Number of commands launched by reaction, labelled with moment, success status and exit code.",
        legacy_kind: Legacy::DeltaGauge,
        internal: false,
    },
    /// `reaction_stream_event_count`.
    StreamEvents => Spec {
        otel: "reaction.stream.events",
        kind: Kind::Counter,
        unit: "{event}",
        description: "Stream lifecycle events (start, exit, exec, read, timeout), by stream and type.",
        attributes: &["stream", "type"],
        patterns: false,
        legacy: "reaction_stream_event_count",
        help: "Number of stream events, labelled by stream name and type of event.",
        legacy_kind: Legacy::DeltaGauge,
        internal: false,
    },
    /// `reaction_match_count`.
    Matches => Spec {
        otel: "reaction.filter.matches",
        kind: Kind::Counter,
        unit: "{match}",
        description: "Matches of a reaction filter, by stream, filter and pattern values.",
        attributes: &["stream", "filter"],
        patterns: true,
        legacy: "reaction_match_count",
        help: "Number of matches, labelled by stream and filter names, with pattern=match extra labels.",
        legacy_kind: Legacy::DeltaGauge,
        internal: false,
    },
    /// `reaction_action_count`.
    ActionRuns => Spec {
        otel: "reaction.action.runs",
        kind: Kind::Counter,
        unit: "{run}",
        description: "Actions run by reaction, by stream, filter, action and pattern values.",
        attributes: &["stream", "filter", "action"],
        patterns: true,
        legacy: "reaction_action_count",
        help: "Number of actions, labelled by stream, filter and action names, with pattern=match extra labels.",
        legacy_kind: Legacy::DeltaGauge,
        internal: false,
    },
    /// `reaction_pending_count`.
    PendingActions => Spec {
        otel: "reaction.action.pending",
        kind: Kind::ObservableGauge(ObservedU64::PendingActions),
        unit: "{execution}",
        description: "Pending executions of an action (from `reaction show`), by stream, filter, action and pattern values.",
        attributes: &["stream", "filter", "action"],
        patterns: true,
        legacy: "reaction_pending_count",
        help: "Number of pending actions, labelled by stream, filter and action names, with pattern=match extra labels.",
        legacy_kind: Legacy::Gauge,
        internal: false,
    },
    /// `reaction_exporter_lines_read_total`.
    LinesRead => Spec {
        otel: "reaction.exporter.lines.read",
        kind: Kind::ObservableCounter(Counter::LinesRead),
        unit: "{line}",
        description: "Log lines read from the source.",
        attributes: &[],
        patterns: false,
        legacy: "reaction_exporter_lines_read_total",
        help: "Log lines read from the source.",
        legacy_kind: Legacy::Counter,
        internal: true,
    },
    /// `reaction_exporter_lines_rejected_total`.
    LinesRejected => Spec {
        otel: "reaction.exporter.lines.rejected",
        kind: Kind::ObservableCounter(Counter::LinesRejected),
        unit: "{line}",
        description: "Log lines not (or not fully) understood, by reason.",
        attributes: &["reason"],
        patterns: false,
        legacy: "reaction_exporter_lines_rejected_total",
        help: "Log lines not (or not fully) understood, by reason.",
        legacy_kind: Legacy::Counter,
        internal: true,
    },
    /// `reaction_exporter_source_errors_total`.
    SourceErrors => Spec {
        otel: "reaction.exporter.source.errors",
        kind: Kind::ObservableCounter(Counter::SourceErrors),
        unit: "{error}",
        description: "Failures to open or read the log source.",
        attributes: &["source"],
        patterns: false,
        legacy: "reaction_exporter_source_errors_total",
        help: "Failures to open or read the log source.",
        legacy_kind: Legacy::Counter,
        internal: true,
    },
    /// `reaction_exporter_file_rotations_total`.
    FileRotations => Spec {
        otel: "reaction.exporter.file.rotations",
        kind: Kind::ObservableCounter(Counter::FileRotations),
        unit: "{rotation}",
        description: "Times the log file was replaced (rotated, deleted and re-created).",
        attributes: &[],
        patterns: false,
        legacy: "reaction_exporter_file_rotations_total",
        help: "Times the log file was replaced (rotated, deleted and re-created).",
        legacy_kind: Legacy::Counter,
        internal: true,
    },
    /// `reaction_exporter_file_truncations_total`.
    FileTruncations => Spec {
        otel: "reaction.exporter.file.truncations",
        kind: Kind::ObservableCounter(Counter::FileTruncations),
        unit: "{truncation}",
        description: "Times the log file was truncated in place (copytruncate).",
        attributes: &[],
        patterns: false,
        legacy: "reaction_exporter_file_truncations_total",
        help: "Times the log file was truncated in place (copytruncate).",
        legacy_kind: Legacy::Counter,
        internal: true,
    },
    /// `reaction_exporter_reaction_cli_failures_total`.
    CliFailures => Spec {
        otel: "reaction.exporter.cli.failures",
        kind: Kind::ObservableCounter(Counter::CliFailures),
        unit: "{failure}",
        description: "Failed calls to the reaction CLI, by command and kind of failure.",
        attributes: &["command", "kind"],
        patterns: false,
        legacy: "reaction_exporter_reaction_cli_failures_total",
        help: "Failed calls to the reaction CLI, by command and kind of failure.",
        legacy_kind: Legacy::Counter,
        internal: true,
    },
    /// `reaction_exporter_actions_held_total`.
    ActionsHeld => Spec {
        otel: "reaction.exporter.actions.held",
        kind: Kind::ObservableCounter(Counter::ActionsHeld),
        unit: "{run}",
        description: "Action lines ignored because reaction had just started (hold).",
        attributes: &[],
        patterns: false,
        legacy: "reaction_exporter_actions_held_total",
        help: "Action lines ignored because reaction had just started (hold).",
        legacy_kind: Legacy::Counter,
        internal: true,
    },
    /// `reaction_exporter_transform_errors_total`.
    TransformErrors => Spec {
        otel: "reaction.exporter.transform.errors",
        kind: Kind::ObservableCounter(Counter::TransformErrors),
        unit: "{error}",
        description: "Pattern transforms that failed at run time (the raw value was kept), by pattern.",
        attributes: &["pattern"],
        patterns: false,
        legacy: "reaction_exporter_transform_errors_total",
        help: "Pattern transforms that failed at run time (the raw value was kept), by pattern.",
        legacy_kind: Legacy::Counter,
        internal: true,
    },
    /// `reaction_exporter_label_values_truncated_total`.
    LabelValuesTruncated => Spec {
        otel: "reaction.exporter.label_values.truncated",
        kind: Kind::ObservableCounter(Counter::LabelValuesTruncated),
        unit: "{value}",
        description: "Label values read from a log that were cut to `metrics.max_label_value_length` bytes, by label.",
        attributes: &["label"],
        patterns: false,
        legacy: "reaction_exporter_label_values_truncated_total",
        help: "Label values read from a log that were cut to metrics.max_label_value_length bytes, by label.",
        legacy_kind: Legacy::Counter,
        internal: true,
    },
    /// `reaction_exporter_cache_evictions_total`.
    CacheEvictions => Spec {
        otel: "reaction.exporter.cache.evictions",
        kind: Kind::ObservableCounter(Counter::CacheEvictions),
        unit: "{entry}",
        description: "Entries dropped from the attribution memory or the transform cache to keep it within its bounds, by cache and by the bound reached (`entries` or `bytes`).",
        attributes: &["cache", "reason"],
        patterns: false,
        legacy: "reaction_exporter_cache_evictions_total",
        help: "Entries dropped from the attribution memory or the transform cache to keep it within its bounds, by cache and by the bound reached (entries or bytes).",
        legacy_kind: Legacy::Counter,
        internal: true,
    },
    /// `reaction_exporter_scrapes_undelivered_total`.
    ScrapesUndelivered => Spec {
        otel: "reaction.exporter.scrapes.undelivered",
        kind: Kind::ObservableCounter(Counter::ScrapesUndelivered),
        unit: "{scrape}",
        description: "/metrics responses not delivered completely; their counts went to the next scrape.",
        attributes: &[],
        patterns: false,
        legacy: "reaction_exporter_scrapes_undelivered_total",
        help: "/metrics responses not delivered completely; their counts went to the next scrape.",
        legacy_kind: Legacy::Counter,
        internal: true,
    },
    /// `reaction_exporter_positions_invalid_total`.
    PositionsInvalid => Spec {
        otel: "reaction.exporter.positions.invalid",
        kind: Kind::ObservableCounter(Counter::PositionsInvalid),
        unit: "{position}",
        description: "Saved source positions (journal cursors, file checkpoints) that could not be used.",
        attributes: &[],
        patterns: false,
        legacy: "reaction_exporter_positions_invalid_total",
        help: "Saved source positions (journal cursors, file checkpoints) that could not be used.",
        legacy_kind: Legacy::Counter,
        internal: true,
    },
    /// `reaction_exporter_otlp_failures_total`.
    OtlpFailures => Spec {
        otel: "reaction.exporter.otlp.failures",
        kind: Kind::ObservableCounter(Counter::OtlpFailures),
        unit: "{failure}",
        description: "Failed OTLP export requests that are retried (their data is kept) and partial successes (the receiver rejected points), by kind.",
        attributes: &["kind"],
        patterns: false,
        legacy: "reaction_exporter_otlp_failures_total",
        help: "Failed OTLP export requests that are retried (their data is kept) and partial successes (the receiver rejected points), by kind.",
        legacy_kind: Legacy::Counter,
        internal: true,
    },
    /// `reaction_exporter_cardinality_overflows_total`.
    CardinalityOverflows => Spec {
        otel: "reaction.exporter.cardinality.overflows",
        kind: Kind::ObservableCounter(Counter::CardinalityOverflows),
        unit: "{event}",
        description: "Events counted in an overflow series instead of their own because an instrument, or the OTLP buffer, reached `metrics.cardinality_limit`, by reader.",
        attributes: &["reader"],
        patterns: false,
        legacy: "reaction_exporter_cardinality_overflows_total",
        help: "Events counted in an overflow series instead of their own because an instrument, or the OTLP buffer, reached metrics.cardinality_limit, by reader.",
        legacy_kind: Legacy::Counter,
        internal: true,
    },
    /// `reaction_exporter_otlp_points_dropped_total`.
    OtlpPointsDropped => Spec {
        otel: "reaction.exporter.otlp.points.dropped",
        kind: Kind::ObservableCounter(Counter::OtlpPointsDropped),
        unit: "{point}",
        description: "OTLP points dropped, by reason: `buffer_full` (gauge and cumulative points past `metrics.cardinality_limit` in the buffer of unsent points), or the reason the receiver refused their request.",
        attributes: &["reason"],
        patterns: false,
        legacy: "reaction_exporter_otlp_points_dropped_total",
        help: "OTLP points dropped, by reason: buffer_full (gauge and cumulative points past metrics.cardinality_limit in the buffer of unsent points), or the reason the receiver refused their request.",
        legacy_kind: Legacy::Counter,
        internal: true,
    },
    /// `reaction_exporter_otlp_requests_dropped_total`.
    OtlpRequestsDropped => Spec {
        otel: "reaction.exporter.otlp.requests.dropped",
        kind: Kind::ObservableCounter(Counter::OtlpRequestsDropped),
        unit: "{request}",
        description: "OTLP requests the receiver refused with a non-retryable answer (their points were dropped), by reason.",
        attributes: &["reason"],
        patterns: false,
        legacy: "reaction_exporter_otlp_requests_dropped_total",
        help: "OTLP requests the receiver refused with a non-retryable answer (their points were dropped), by reason.",
        legacy_kind: Legacy::Counter,
        internal: true,
    },
    /// `reaction_exporter_http_failures_total`.
    HttpFailures => Spec {
        otel: "reaction.exporter.http.failures",
        kind: Kind::ObservableCounter(Counter::HttpFailures),
        unit: "{failure}",
        description: "HTTP connections and requests of the `/metrics` endpoint refused or cut short (limits, timeouts, TLS, authentication), by kind.",
        attributes: &["kind"],
        patterns: false,
        legacy: "reaction_exporter_http_failures_total",
        help: "HTTP connections and requests of the /metrics endpoint refused or cut short (limits, timeouts, TLS, authentication), by kind.",
        legacy_kind: Legacy::Counter,
        internal: true,
    },
    /// `reaction_exporter_config_reloads_total`.
    ConfigReloads => Spec {
        otel: "reaction.exporter.config.reloads",
        kind: Kind::ObservableCounter(Counter::ConfigReloads),
        unit: "{reload}",
        description: "Configuration reloads (SIGHUP), by result: `ok` (what can change while running is in force) or `failed` (refused, the running configuration stays).",
        attributes: &["result"],
        patterns: false,
        legacy: "reaction_exporter_config_reloads_total",
        help: "Configuration reloads (SIGHUP), by result: ok (what can change while running is in force) or failed (refused, the running configuration stays).",
        legacy_kind: Legacy::Counter,
        internal: true,
    },
    /// `reaction_exporter_last_event_timestamp_seconds`.
    LastEventTime => Spec {
        otel: "reaction.exporter.last_event.time",
        kind: Kind::ObservableGaugeF64(ObservedF64::LastEvent),
        unit: "s",
        description: "Time of the last log line read, in seconds since the Unix epoch.",
        attributes: &[],
        patterns: false,
        legacy: "reaction_exporter_last_event_timestamp_seconds",
        help: "Time of the last log line read, in seconds since the Unix epoch.",
        legacy_kind: Legacy::Gauge,
        internal: true,
    },
    /// `process_cpu_seconds_total`.
    CpuTime => Spec {
        otel: "process.cpu.time",
        kind: Kind::ObservableCounterF64(ObservedF64::CpuTime),
        unit: "s",
        description: "CPU time used by the exporter.",
        attributes: &[],
        patterns: false,
        legacy: "process_cpu_seconds_total",
        help: "Total user and system CPU time spent in seconds.",
        legacy_kind: Legacy::Counter,
        internal: true,
    },
    /// `process_resident_memory_bytes`.
    MemoryUsage => Spec {
        otel: "process.memory.usage",
        kind: Kind::ObservableGaugeF64(ObservedF64::ResidentMemory),
        unit: "By",
        description: "Resident memory of the exporter.",
        attributes: &[],
        patterns: false,
        legacy: "process_resident_memory_bytes",
        help: "Resident memory size in bytes.",
        legacy_kind: Legacy::Gauge,
        internal: true,
    },
    /// `process_open_fds`.
    OpenFileDescriptors => Spec {
        otel: "process.open_file_descriptor.count",
        kind: Kind::ObservableGaugeF64(ObservedF64::OpenFds),
        unit: "{file_descriptor}",
        description: "Open file descriptors of the exporter.",
        attributes: &[],
        patterns: false,
        legacy: "process_open_fds",
        help: "Number of open file descriptors.",
        legacy_kind: Legacy::Gauge,
        internal: true,
    },
}

impl Metric {
    /// The metric of an OpenTelemetry instrument name.
    pub fn from_otel_name(name: &str) -> Option<Metric> {
        Metric::ALL.iter().copied().find(|m| m.spec().otel == name)
    }
}

/// Whether `name` is a valid Prometheus label name, `[a-zA-Z_][a-zA-Z0-9_]*`.
pub(crate) fn is_valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'A'..=b'Z' | b'_'))
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Replace every character outside `[a-zA-Z0-9_]` by `_`, and prefix `_` when the name
/// starts with a digit (or is empty).
pub(crate) fn sanitize_label_name(name: &str) -> String {
    let mut s = String::with_capacity(name.len() + 1);
    if !name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        s.push('_');
    }
    for c in name.chars() {
        s.push(if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        });
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_found_back() {
        for (i, m) in Metric::ALL.iter().enumerate() {
            let s = m.spec();
            assert_eq!(Metric::from_otel_name(s.otel), Some(*m));
            assert!(
                Metric::ALL[..i].iter().all(|o| o.spec().legacy != s.legacy),
                "{} twice",
                s.legacy
            );
            if s.legacy_kind == Legacy::Counter {
                assert!(s.legacy.ends_with("_total"), "{}", s.legacy);
            }
        }
    }

    #[test]
    fn the_legacy_families_come_first_and_the_internal_ones_after() {
        let internal: Vec<bool> = Metric::ALL.iter().map(|m| m.spec().internal).collect();
        let first_internal = internal.iter().position(|i| *i).unwrap();
        assert!(internal[first_internal..].iter().all(|i| *i));
        assert_eq!(
            Metric::ALL[0],
            Metric::Up,
            "the status line follows build_info"
        );
    }

    #[test]
    fn label_names() {
        assert_eq!(sanitize_label_name("1ip"), "_1ip");
        assert_eq!(sanitize_label_name("adresse_é"), "adresse__");
        assert!(is_valid_label_name("_x9"));
        assert!(!is_valid_label_name("9x"));
    }
}
