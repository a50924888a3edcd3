//! Every instrument the exporter creates, with its OpenTelemetry name, kind, unit and
//! description, and how the legacy `/metrics` endpoint shows it. This table is the code's
//! side of the `otel/` registry: a test compares the two.

/// How an instrument is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Synchronous monotonic counter (u64).
    Counter,
    /// Asynchronous gauge (u64), observed at each collection.
    ObservableGauge,
    /// Asynchronous gauge (f64), observed at each collection.
    ObservableGaugeF64,
    /// Asynchronous monotonic counter (f64), observed as a running total.
    ObservableCounterF64,
}

/// How `/metrics` shows a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Legacy {
    /// A gauge holding what happened since the last scrape (the legacy counts).
    DeltaGauge,
    /// A gauge holding the current value (pending actions, status, timestamps, memory).
    Gauge,
    /// A cumulative counter (`_total`), for the exporter's own metrics.
    Counter,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Family {
    pub otel: &'static str,
    pub kind: Kind,
    pub unit: &'static str,
    pub description: &'static str,
    /// Attribute keys in `/metrics` label order; pattern attributes (if any) follow, sorted.
    pub attributes: &'static [&'static str],
    /// Whether pattern attributes (one per reaction pattern) follow the fixed ones.
    pub patterns: bool,
    pub legacy: &'static str,
    pub help: &'static str,
    pub legacy_kind: Legacy,
    /// Shown on `/metrics` only with `metrics.export.internals`.
    pub internal: bool,
}

/// Indexes into [`FAMILIES`].
pub mod id {
    pub const MATCHES: usize = 0;
    pub const ACTIONS: usize = 1;
    pub const PENDING: usize = 2;
    pub const COMMANDS: usize = 3;
    pub const STREAM_EVENTS: usize = 4;
    pub const UP: usize = 5;
    pub const LINES_READ: usize = 6;
    pub const LINES_REJECTED: usize = 7;
    pub const SOURCE_ERRORS: usize = 8;
    pub const ROTATIONS: usize = 9;
    pub const TRUNCATIONS: usize = 10;
    pub const CLI_FAILURES: usize = 11;
    pub const ACTIONS_HELD: usize = 12;
    pub const TRANSFORM_ERRORS: usize = 13;
    pub const UNDELIVERED: usize = 14;
    pub const LAST_EVENT: usize = 15;
    pub const CPU: usize = 16;
    pub const RSS: usize = 17;
    pub const FDS: usize = 18;
    pub const POSITIONS_INVALID: usize = 19;
    pub const OTLP_FAILURES: usize = 20;
    pub const OVERFLOWS: usize = 21;
}

pub const BUILD_INFO: &str = "reaction_exporter_build_info";
pub const BUILD_INFO_HELP: &str =
    "A metric with a constant '1' value labelled by version of reaction_metrics_exporter.";
pub const STATUS_INFO_HELP: &str =
    "A metric with a constant '1' value labelled by version of reaction and its status.";

pub static FAMILIES: [Family; 22] = [
    Family {
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
    Family {
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
    Family {
        otel: "reaction.action.pending",
        kind: Kind::ObservableGauge,
        unit: "{execution}",
        description: "Pending executions of an action (from `reaction show`), by stream, filter, action and pattern values.",
        attributes: &["stream", "filter", "action"],
        patterns: true,
        legacy: "reaction_pending_count",
        help: "Number of pending actions, labelled by stream, filter and action names, with pattern=match extra labels.",
        legacy_kind: Legacy::Gauge,
        internal: false,
    },
    Family {
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
    Family {
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
    Family {
        otel: "reaction.up",
        kind: Kind::ObservableGauge,
        unit: "{status}",
        description: "1 when `reaction show` answers, 0 otherwise, with reaction's version (N/A if unknown).",
        attributes: &["version"],
        patterns: false,
        legacy: "reaction_status_info",
        help: STATUS_INFO_HELP,
        legacy_kind: Legacy::Gauge,
        internal: false,
    },
    Family {
        otel: "reaction.exporter.lines.read",
        kind: Kind::Counter,
        unit: "{line}",
        description: "Log lines read from the source.",
        attributes: &[],
        patterns: false,
        legacy: "reaction_exporter_lines_read_total",
        help: "Log lines read from the source.",
        legacy_kind: Legacy::Counter,
        internal: true,
    },
    Family {
        otel: "reaction.exporter.lines.rejected",
        kind: Kind::Counter,
        unit: "{line}",
        description: "Log lines not (or not fully) understood, by reason.",
        attributes: &["reason"],
        patterns: false,
        legacy: "reaction_exporter_lines_rejected_total",
        help: "Log lines not (or not fully) understood, by reason.",
        legacy_kind: Legacy::Counter,
        internal: true,
    },
    Family {
        otel: "reaction.exporter.source.errors",
        kind: Kind::Counter,
        unit: "{error}",
        description: "Failures to open or read the log source.",
        attributes: &["source"],
        patterns: false,
        legacy: "reaction_exporter_source_errors_total",
        help: "Failures to open or read the log source.",
        legacy_kind: Legacy::Counter,
        internal: true,
    },
    Family {
        otel: "reaction.exporter.file.rotations",
        kind: Kind::Counter,
        unit: "{rotation}",
        description: "Times the log file was replaced (rotated, deleted and re-created).",
        attributes: &[],
        patterns: false,
        legacy: "reaction_exporter_file_rotations_total",
        help: "Times the log file was replaced (rotated, deleted and re-created).",
        legacy_kind: Legacy::Counter,
        internal: true,
    },
    Family {
        otel: "reaction.exporter.file.truncations",
        kind: Kind::Counter,
        unit: "{truncation}",
        description: "Times the log file was truncated in place (copytruncate).",
        attributes: &[],
        patterns: false,
        legacy: "reaction_exporter_file_truncations_total",
        help: "Times the log file was truncated in place (copytruncate).",
        legacy_kind: Legacy::Counter,
        internal: true,
    },
    Family {
        otel: "reaction.exporter.cli.failures",
        kind: Kind::Counter,
        unit: "{failure}",
        description: "Failed calls to the reaction CLI, by command and kind of failure.",
        attributes: &["command", "kind"],
        patterns: false,
        legacy: "reaction_exporter_reaction_cli_failures_total",
        help: "Failed calls to the reaction CLI, by command and kind of failure.",
        legacy_kind: Legacy::Counter,
        internal: true,
    },
    Family {
        otel: "reaction.exporter.actions.held",
        kind: Kind::Counter,
        unit: "{run}",
        description: "Action lines ignored because reaction had just started (hold).",
        attributes: &[],
        patterns: false,
        legacy: "reaction_exporter_actions_held_total",
        help: "Action lines ignored because reaction had just started (hold).",
        legacy_kind: Legacy::Counter,
        internal: true,
    },
    Family {
        otel: "reaction.exporter.transform.errors",
        kind: Kind::Counter,
        unit: "{error}",
        description: "Pattern transforms that failed at run time (the raw value was kept), by pattern.",
        attributes: &["pattern"],
        patterns: false,
        legacy: "reaction_exporter_transform_errors_total",
        help: "Pattern transforms that failed at run time (the raw value was kept), by pattern.",
        legacy_kind: Legacy::Counter,
        internal: true,
    },
    Family {
        otel: "reaction.exporter.scrapes.undelivered",
        kind: Kind::Counter,
        unit: "{scrape}",
        description: "/metrics responses not delivered completely; their counts went to the next scrape.",
        attributes: &[],
        patterns: false,
        legacy: "reaction_exporter_scrapes_undelivered_total",
        help: "/metrics responses not delivered completely; their counts went to the next scrape.",
        legacy_kind: Legacy::Counter,
        internal: true,
    },
    Family {
        otel: "reaction.exporter.last_event.time",
        kind: Kind::ObservableGaugeF64,
        unit: "s",
        description: "Time of the last log line read, in seconds since the Unix epoch.",
        attributes: &[],
        patterns: false,
        legacy: "reaction_exporter_last_event_timestamp_seconds",
        help: "Time of the last log line read, in seconds since the Unix epoch.",
        legacy_kind: Legacy::Gauge,
        internal: true,
    },
    Family {
        otel: "process.cpu.time",
        kind: Kind::ObservableCounterF64,
        unit: "s",
        description: "CPU time used by the exporter.",
        attributes: &[],
        patterns: false,
        legacy: "process_cpu_seconds_total",
        help: "Total user and system CPU time spent in seconds.",
        legacy_kind: Legacy::Counter,
        internal: true,
    },
    Family {
        otel: "process.memory.usage",
        kind: Kind::ObservableGaugeF64,
        unit: "By",
        description: "Resident memory of the exporter.",
        attributes: &[],
        patterns: false,
        legacy: "process_resident_memory_bytes",
        help: "Resident memory size in bytes.",
        legacy_kind: Legacy::Gauge,
        internal: true,
    },
    Family {
        otel: "process.open_file_descriptor.count",
        kind: Kind::ObservableGaugeF64,
        unit: "{file_descriptor}",
        description: "Open file descriptors of the exporter.",
        attributes: &[],
        patterns: false,
        legacy: "process_open_fds",
        help: "Number of open file descriptors.",
        legacy_kind: Legacy::Gauge,
        internal: true,
    },
    Family {
        otel: "reaction.exporter.positions.invalid",
        kind: Kind::Counter,
        unit: "{position}",
        description: "Saved source positions (journal cursors, file checkpoints) that could not be used.",
        attributes: &[],
        patterns: false,
        legacy: "reaction_exporter_positions_invalid_total",
        help: "Saved source positions (journal cursors, file checkpoints) that could not be used.",
        legacy_kind: Legacy::Counter,
        internal: true,
    },
    Family {
        otel: "reaction.exporter.otlp.failures",
        kind: Kind::Counter,
        unit: "{failure}",
        description: "Failed OTLP exports (their data is kept for the next export) and points the collector rejected, by kind.",
        attributes: &["kind"],
        patterns: false,
        legacy: "reaction_exporter_otlp_failures_total",
        help: "Failed OTLP exports (their data is kept for the next export) and points the collector rejected, by kind.",
        legacy_kind: Legacy::Counter,
        internal: true,
    },
    Family {
        otel: "reaction.exporter.cardinality.overflows",
        kind: Kind::Counter,
        unit: "{point}",
        description: "Data points that went to an overflow series because an instrument hit `metrics.cardinality_limit`, by reader.",
        attributes: &["reader"],
        patterns: false,
        legacy: "reaction_exporter_cardinality_overflows_total",
        help: "Data points that went to an overflow series because an instrument hit metrics.cardinality_limit, by reader.",
        legacy_kind: Legacy::Counter,
        internal: true,
    },
];

/// The family of an instrument name.
pub fn by_otel_name(name: &str) -> Option<usize> {
    FAMILIES.iter().position(|f| f.otel == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_match_table() {
        assert_eq!(FAMILIES[id::MATCHES].legacy, "reaction_match_count");
        assert_eq!(FAMILIES[id::ACTIONS].legacy, "reaction_action_count");
        assert_eq!(FAMILIES[id::PENDING].legacy, "reaction_pending_count");
        assert_eq!(FAMILIES[id::COMMANDS].legacy, "reaction_commands_count");
        assert_eq!(
            FAMILIES[id::STREAM_EVENTS].legacy,
            "reaction_stream_event_count"
        );
        assert_eq!(FAMILIES[id::UP].legacy, "reaction_status_info");
        assert_eq!(FAMILIES[id::FDS].legacy, "process_open_fds");
        for (i, f) in FAMILIES.iter().enumerate() {
            assert_eq!(by_otel_name(f.otel), Some(i));
            assert_eq!(f.internal, i >= id::LINES_READ);
            if f.legacy_kind == Legacy::Counter {
                assert!(f.legacy.ends_with("_total"), "{}", f.legacy);
            }
        }
    }
}
