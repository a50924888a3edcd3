//! Defaults and fixed bounds, in one place, each with why it is what it is. The
//! configuration's `Default` impls (what the `defaults` command prints) take their values
//! from here, and the code uses the rest directly. Constants that belong to one algorithm
//! (the journalctl backoff, the tailer's read size) stay beside it.

use std::time::Duration;

// ---- The configuration's defaults (the Python exporter's, for its keys) ----------------

/// `listen.address`: local only; exposing `/metrics` is the operator's choice.
pub(crate) const LISTEN_ADDRESS: &str = "127.0.0.1";
/// `listen.port`: the Python exporter's.
pub(crate) const LISTEN_PORT: u16 = 8080;
/// `reaction.config`: where reaction's packages put its configuration.
pub(crate) const REACTION_CONFIG: &str = "/etc/reaction";
/// `reaction.socket`: reaction's default control socket.
pub(crate) const REACTION_SOCKET: &str = "/run/reaction/reaction.sock";
/// `reaction.hold`, seconds: reaction replays its persisted actions when it starts, within
/// about a minute.
pub(crate) const REACTION_HOLD_SECONDS: u64 = 60;
/// The largest `reaction.hold`: a day, far above the minute a replay takes, and small
/// enough that a log time plus it never overflows.
pub(crate) const MAX_HOLD_SECONDS: u64 = 86_400;
/// `reaction.binary`: looked up in `PATH`.
pub(crate) const REACTION_BINARY: &str = "reaction";
/// `reaction.timeout`, seconds: a healthy `reaction show` answers in milliseconds; a hung
/// one must not hang a scrape past Prometheus' default 10 s scrape timeout.
pub(crate) const REACTION_TIMEOUT_SECONDS: f64 = 5.0;
/// The largest `reaction.timeout`: an hour (a scrape would wait that long for `show`).
pub(crate) const MAX_REACTION_TIMEOUT_SECONDS: f64 = 3600.0;
/// The smallest `reaction.timeout` and `otlp.timeout`: a millisecond (a shorter one would
/// be zero once turned into a timer, and always fire).
pub(crate) const MIN_TIMEOUT_SECONDS: f64 = 0.001;
/// `reaction.logs.systemd` left empty: reaction's unit.
pub(crate) const SYSTEMD_UNIT: &str = "reaction.service";
/// `reaction.logs.file` left empty: the Python exporter's default path.
pub(crate) const LOG_FILE: &str = "/var/log/reaction.log";
/// `reaction.logs.max_line_length`, bytes: far above any line reaction writes (a match of
/// a few long values), small enough that a hostile line costs little memory.
pub(crate) const MAX_LINE_LENGTH: usize = 64 * 1024;
/// The smallest `reaction.logs.max_line_length` accepted: below, ordinary lines would be
/// dropped.
pub(crate) const MIN_MAX_LINE_LENGTH: usize = 256;
/// The largest `reaction.logs.max_line_length`: 16 MiB, far above any line of reaction's
/// (journald itself keeps at most 64 MiB a field), and what a line may cost in memory.
pub(crate) const MAX_MAX_LINE_LENGTH: usize = 16 * 1024 * 1024;
/// `reaction.logs.journalctl`: looked up in `PATH`.
pub(crate) const JOURNALCTL: &str = "journalctl";
/// The journal directory read in a container (`DOCKER` set) when none is configured: where
/// the host's journal is usually mounted.
pub(crate) const CONTAINER_JOURNAL_DIRECTORY: &str = "/var/log/journal";
/// `listen.max_connections`: open HTTP connections at once. A few scrapers and a browser
/// need a handful; 64 stays far below the 1024 descriptors a service gets by default (and
/// is lowered to fit a smaller `RLIMIT_NOFILE`, see [`FD_RESERVE`]).
pub(crate) const MAX_CONNECTIONS: usize = 64;
/// `listen.header_timeout`, seconds: for a TLS handshake and a complete request head, also
/// between two requests of a kept-alive connection. A scraper sends its request at once.
pub(crate) const HEADER_TIMEOUT_SECONDS: f64 = 10.0;
/// `listen.response_timeout`, seconds: from a request to the last byte of its response
/// handed to the connection. Above Prometheus' 10 s default scrape timeout, with room for
/// a slow `reaction show` and a large page on a slow link.
pub(crate) const RESPONSE_TIMEOUT_SECONDS: f64 = 30.0;
/// The largest `listen.header_timeout` and `listen.response_timeout` accepted: a day.
pub(crate) const MAX_HTTP_TIMEOUT_SECONDS: f64 = 86_400.0;
/// The largest `listen.max_connections` accepted.
pub(crate) const MAX_MAX_CONNECTIONS: usize = 1_000_000;
/// `metrics.cardinality_limit`: series per instrument and collection; 100,000 is a large
/// attack's worth of IPs while keeping a `/metrics` page near 10 MB.
pub(crate) const CARDINALITY_LIMIT: usize = 100_000;
/// The largest `metrics.cardinality_limit`: a million series per instrument is a page of
/// hundreds of MB, beyond what a scrape can take.
pub(crate) const MAX_CARDINALITY_LIMIT: usize = 1_000_000;
/// Series per instrument of the exporter's own counters, reaction's status and the process
/// gauges (or `metrics.cardinality_limit` if lower): their attributes are reasons,
/// commands, pattern names and readers, a few dozen series at most, and the SDK sizes each
/// instrument's table for its limit at once.
pub(crate) const OWN_CARDINALITY_LIMIT: usize = 1_000;
/// `metrics.attribution_memory`: recent distinct matches remembered per filter, to label
/// the actions that follow them; bounded so that memory is.
pub(crate) const ATTRIBUTION_MEMORY: usize = 10_000;
/// The largest `metrics.attribution_memory`, per filter.
pub(crate) const MAX_ATTRIBUTION_MEMORY: usize = 1_000_000;
/// `metrics.max_label_value_length`, bytes: a label value read from a log (after its
/// transform) longer than this is cut. Far above an IP, a user name or an ordinary user
/// agent (100 to 300 bytes); a hostile 60 KB value costs 1 KiB per copy of its series
/// instead (the SDK, the scrape's copies, the page).
pub(crate) const MAX_LABEL_VALUE_LENGTH: usize = 1024;
/// The smallest `metrics.max_label_value_length`: an IPv6 network with its mask (43 bytes)
/// and the marker fit.
pub(crate) const MIN_MAX_LABEL_VALUE_LENGTH: usize = 64;
/// The largest `metrics.max_label_value_length`: the longest output of a transform.
pub(crate) const MAX_MAX_LABEL_VALUE_LENGTH: usize = TEMPLATE_OUTPUT_MAX;
/// What ends a label value that was cut (U+2026, 3 bytes), so that it cannot be taken for
/// the whole value.
pub(crate) const TRUNCATION_MARKER: &str = "\u{2026}";
/// `otlp.max_request_size`, bytes: receivers refuse gRPC messages over 4 MiB by default.
pub(crate) const OTLP_MAX_REQUEST_SIZE: usize = 3 * 1024 * 1024;
/// The smallest `otlp.max_request_size` accepted: a request must hold a few points.
pub(crate) const MIN_OTLP_MAX_REQUEST_SIZE: usize = 64 * 1024;
/// The largest `otlp.max_request_size`: 64 MiB, what a receiver configured for big
/// messages takes; a request is built in memory.
pub(crate) const MAX_OTLP_MAX_REQUEST_SIZE: usize = 64 * 1024 * 1024;
/// `otlp.protocol` and `OTEL_EXPORTER_OTLP_(METRICS_)PROTOCOL` unset. The specification's
/// default is `http/protobuf` "unless there are strong reasons for SDKs to select grpc as
/// the default. For instance, maintaining backward compatibility": ours was gRPC only,
/// and every configuration written for it (`endpoint: http://collector:4317`) would POST
/// HTTP to a gRPC port if the default changed.
pub(crate) const OTLP_PROTOCOL: &str = "grpc";
/// The gRPC endpoint when `OTEL_METRICS_EXPORTER=otlp` asks for the push without one (the
/// specification's default).
pub(crate) const OTLP_GRPC_ENDPOINT: &str = "http://localhost:4317";
/// The same for OTLP/HTTP.
pub(crate) const OTLP_HTTP_ENDPOINT: &str = "http://localhost:4318/v1/metrics";
/// `OTEL_EXPORTER_OTLP_TIMEOUT=0`, "no limit": a century.
pub(crate) const OTLP_NO_TIMEOUT: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
/// First wait after a failed export before retrying; doubled at each failure in a row, up
/// to [`OTLP_MAX_BACKOFF`], each wait drawn at random in its upper half (the jitter the
/// specification asks for, so that exporters restarted together do not retry together).
pub(crate) const OTLP_INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between retries without a receiver's instruction: the interval of
/// most deployments is 60 s, so data is at most one interval late once the receiver is
/// back.
pub(crate) const OTLP_MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The longest `Retry-After` or `RetryInfo` delay honoured: a receiver asking for more
/// gets this (the buffer keeps everything meanwhile).
pub(crate) const OTLP_MAX_RETRY_DELAY: Duration = Duration::from_secs(300);
/// At most this much of an error answer's body is read and logged.
pub(crate) const OTLP_MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
/// `otlp.interval` and `OTEL_METRIC_EXPORT_INTERVAL` unset: the OpenTelemetry default.
pub(crate) const OTLP_INTERVAL: Duration = Duration::from_secs(60);
/// The smallest `otlp.interval`: 10 ms (zero is no interval at all).
pub(crate) const MIN_OTLP_INTERVAL_SECONDS: f64 = 0.01;
/// The largest `otlp.interval`: a day.
pub(crate) const MAX_OTLP_INTERVAL_SECONDS: f64 = 86_400.0;
/// `otlp.timeout` and `OTEL_EXPORTER_OTLP_TIMEOUT` unset: the OpenTelemetry default.
pub(crate) const OTLP_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest `otlp.timeout`: an hour.
pub(crate) const MAX_OTLP_TIMEOUT_SECONDS: f64 = 3600.0;
/// `otlp.service_name` and `OTEL_SERVICE_NAME` unset.
pub(crate) const SERVICE_NAME: &str = "reaction-metrics-exporter";
/// `state.recall`, seconds: the Python exporter's 15-minute window.
pub(crate) const STATE_RECALL_SECONDS: u64 = 900;
/// The largest `state.recall`: a week covers any planned stop; counts older than that would
/// land in one scrape as if they had just happened.
pub(crate) const MAX_STATE_RECALL_SECONDS: u64 = 7 * 86_400;
/// `metrics.otel_endpoint.enabled`: off, as it is not cheap. Its reader is a second reader
/// of every instrument, into which the SDK records every event as well (another attribute
/// set lookup per event, another map preallocated for the cardinality limit per
/// instrument), and its folds collect those maps every 2 s: measured with `cargo bench
/// --bench e2e` (benches/README.md), 65-70 % more CPU and 1.8-2x the RSS before the scrape
/// on the moderate workload (1M lines, 5,000 IPs), 2x the CPU and 1.5x the RSS on 600k
/// series. Those who scrape it (an HA pair) turn it on.
pub(crate) const OTEL_ENDPOINT_ENABLED: bool = false;
/// The path of the cumulative endpoint (fixed, so that dashboards and scrape jobs can rely
/// on it).
pub(crate) const OTEL_ENDPOINT_PATH: &str = "/metrics/otel";
/// How often the cumulative endpoint's reader adds what the SDK collected into its totals
/// when no scrape does it: the reader collects deltas, whose per-IP series pile up in the
/// SDK until then (measured: folds every 10 s held hundreds of MiB more while a 1M-line
/// backlog was read; the cost of a fold is that of the series it finds).
pub(crate) const OTEL_ENDPOINT_FOLD_INTERVAL: Duration = Duration::from_secs(2);
/// The state directory in a container (`DOCKER` set), as the Python exporter had it.
pub(crate) const CONTAINER_STATE_DIRECTORY: &str = "/data";

// ---- Fixed, not configurable ------------------------------------------------------------

/// The largest state file read (and written with its counts): 64 MiB, over 4 times the
/// 14 MB of a state of 100,000 series of IPs and user names (issue 8). A larger one is
/// refused at start (the source starts per `start_at`); one that would be larger is saved
/// with its position only.
pub(crate) const STATE_FILE_MAX_BYTES: usize = 64 * 1024 * 1024;
/// A state saved at most this far in the future is taken as just saved (the clock was set
/// back a little meanwhile); further, it is refused.
pub(crate) const STATE_CLOCK_SKEW: Duration = Duration::from_secs(60);

/// How often the log file is looked at: reaction writes a few lines per event, and 200 ms
/// keeps `/metrics` current without a measurable cost.
pub(crate) const FILE_POLL_INTERVAL: Duration = Duration::from_millis(200);
/// At most this many bytes are read by one poll of the file, so that a backlog (a big file
/// read from its start) never becomes one huge batch.
pub(crate) const FILE_BYTES_PER_POLL: u64 = 1024 * 1024;
/// At most this many journal lines per batch, for the same reason.
pub(crate) const JOURNAL_LINES_PER_BATCH: usize = 1000;
/// Batches waiting between the source and the pipeline: a few batches of at most 1 MiB, so
/// a backlog stays bounded in memory and the source waits when the pipeline is behind.
pub(crate) const BATCH_CHANNEL_DEPTH: usize = 4;
/// Once the pipeline has caught up (no lines waiting at the source, no batch waiting for
/// the pipeline) after at least this many bytes of lines since it last did, it gives the
/// memory those batches freed back to the system at once rather than within the
/// allocator's next second (`memory::release_freed`): a scrape right after a backlog then
/// does not peak on top of it. Below it (a few lines now and then), the allocator's own
/// second is left to do it.
pub(crate) const RELEASE_AFTER_BYTES: u64 = FILE_BYTES_PER_POLL;
/// Rendered transforms cached (the same values come back again and again).
pub(crate) const TEMPLATE_CACHE: usize = 16_384;
/// Bytes of inputs and outputs the cache of rendered transforms keeps at most, beside its
/// [`TEMPLATE_CACHE`] renders: 16,384 renders of IPs and user names weigh under 1 MB, of
/// 150-byte user agents about 5 MB; renders of 60 KB values are kept for a few dozen values
/// instead of 16,384 (2 GB).
pub(crate) const TEMPLATE_CACHE_BYTES: usize = 8 * 1024 * 1024;
/// minijinja's fuel for one render of a transform: each instruction costs one, and every
/// 64 bytes a template creates, reads through a filter or writes cost one more. An ordinary
/// transform uses a few dozen (a few thousand for a 64 KiB value through `split`); 100,000
/// bounds a render to a few milliseconds and about 6 MB.
pub(crate) const TEMPLATE_FUEL: u64 = 100_000;
/// The longest output of one render of a transform, bytes; past it the render fails (the
/// raw value is kept and the failure counted). Above `metrics.max_label_value_length`'s
/// default, so that a long output is cut like a long value, not refused.
pub(crate) const TEMPLATE_OUTPUT_MAX: usize = 64 * 1024;
/// Bytes of pattern values the attribution memory of one filter keeps at most, beside its
/// `metrics.attribution_memory` matches (each pattern's share is budget / patterns): 10,000
/// matches of an IP and a user name hold about 210 KB of values, of an IP and a 150-byte user
/// agent 1.6 MB, so ordinary values never reach it; with 60 KB values (a hostile user agent)
/// the last few dozen matches are remembered instead of 10,000 (600 MB).
pub(crate) const ATTRIBUTION_MEMORY_BYTES: usize = 4 * 1024 * 1024;
/// How often a line that does not fit reaction's configuration may make it reload: a
/// stream of unknown names must not run `reaction test-config` for each line.
pub(crate) const STALE_RELOAD_COOLDOWN: Duration = Duration::from_secs(10);
/// Self-monitoring log lines of one kind (a reason, a pattern, a command) are written at
/// most once per this period; the next one says how many were suppressed. Enough to see
/// that something keeps happening without a hostile log flooding ours.
pub(crate) const LOG_RATE_LIMIT_PERIOD: Duration = Duration::from_secs(10);
/// At most this many rate-limit keys are remembered (there are a few dozen in practice).
pub(crate) const LOG_RATE_LIMIT_KEYS: usize = 1024;
/// The most a `reaction` CLI call may print on stdout, bytes: 16 MiB is `reaction show`
/// with about 100,000 pending actions (far more than the cardinality limit lets through);
/// past it the call fails and its child is killed, so a runaway output costs at most this.
pub(crate) const REACTION_OUTPUT_MAX: usize = 16 * 1024 * 1024;
/// File descriptors kept for everything but HTTP connections (the log file, journalctl's
/// pipes, reaction's CLI, the state file, OTLP, the runtime): `listen.max_connections` is
/// lowered to `RLIMIT_NOFILE` minus this, so that connections cannot exhaust descriptors.
pub(crate) const FD_RESERVE: u64 = 32;
/// After accept() fails (out of descriptors), wait this long before the next one instead
/// of spinning.
pub(crate) const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// A connection's read and write buffers are bounded by this: a request head larger than
/// it is refused (431), and a response waits for the client when this much is buffered.
pub(crate) const HTTP_MAX_BUFFER: usize = 64 * 1024;
/// Verified basic-auth credentials remembered (a keyed digest, not the password): a few
/// scrapers' worth; only successes go here, so failures cannot evict them.
pub(crate) const AUTH_CACHE_OK: usize = 64;
/// Failed basic-auth credentials remembered, so that repeating a wrong password costs no
/// bcrypt.
pub(crate) const AUTH_CACHE_FAILED: usize = 4096;
/// bcrypt runs one at a time within a CPU budget that fills at this share of one core...
pub(crate) const BCRYPT_CPU_SHARE: f64 = 0.25;
/// ...and holds at most this much CPU time: a few verifications at once never wait, a flood
/// of distinct passwords gets a quarter of one core however fast it comes.
pub(crate) const BCRYPT_BURST: Duration = Duration::from_secs(2);
/// How long a request with new credentials may wait for its turn at bcrypt before it is
/// answered 429 (a flood of distinct passwords does not queue without end).
pub(crate) const AUTH_WAIT: Duration = Duration::from_secs(2);
/// At shutdown, how long the requests in flight may take to finish.
pub(crate) const HTTP_STOP_WAIT: Duration = Duration::from_secs(5);
/// At shutdown, how long the final OTLP export may take (within systemd's 90 s stop
/// timeout, with room for the rest).
pub(crate) const FINAL_EXPORT_WAIT: Duration = Duration::from_secs(15);
