//! The exporter's configuration: schema, defaults (the `Default` impls below, printed by the
//! `defaults` command, with values from the `defaults` module), loading from YAML or JSON,
//! and errors that name the key path and, for YAML, the line.
//!
//! Every key of the Python exporter keeps its name, default and meaning, so a legacy
//! configuration file loads unchanged. Keys added here are marked "new" and documented in
//! the README.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

use crate::defaults;

mod checked;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The text is not a valid configuration.
    #[error("{file}: {message}")]
    Invalid {
        /// The file (or what the text is called).
        file: String,
        /// Dotted key path (`reaction.logs.file`), empty at the top level.
        key: String,
        /// 1-based line, for YAML.
        line: Option<usize>,
        /// The whole message: the key, the line and what is wrong.
        message: String,
    },
}

/// The whole configuration (README, "Configuration", says what each key means).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// DEBUG, INFO, WARNING (or WARN), ERROR; case-insensitive.
    pub loglevel: LogLevel,
    /// Where `/metrics` is served.
    pub listen: Listen,
    /// How to reach reaction and read its logs.
    pub reaction: Reaction,
    /// What is exported, and how it is labelled.
    pub metrics: Metrics,
    /// New: push the same metrics over OTLP gRPC (off unless an endpoint is configured
    /// here or in `OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub otlp: Otlp,
    /// New: continuity across restarts (the legacy exporter's 15-minute window).
    pub state: StateConfig,
}

/// `state`: where the exporter keeps its position and undelivered counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// Directory of the state file. `null`: `$STATE_DIRECTORY` (systemd's
    /// `StateDirectory=`), else `/data` when `DOCKER` is set, else the working directory.
    #[serde(deserialize_with = "checked::optional_path")]
    pub directory: Option<PathBuf>,
    /// Seconds: a restart within this window resumes from the saved position and counts;
    /// past it, the exporter starts per `reaction.logs.start_at` and says so.
    #[serde(deserialize_with = "checked::recall")]
    pub recall: u64,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            directory: None,
            recall: defaults::STATE_RECALL_SECONDS,
        }
    }
}

impl StateConfig {
    /// The state directory, resolved as documented.
    pub(crate) fn resolve_directory(&self, env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
        if let Some(d) = &self.directory {
            return d.clone();
        }
        if let Some(d) = env("STATE_DIRECTORY").filter(|d| !d.is_empty()) {
            // systemd may pass several, separated by ':'; the first is ours.
            return PathBuf::from(d.split(':').next().unwrap_or(&d));
        }
        if env("DOCKER").is_some() {
            return PathBuf::from(defaults::CONTAINER_STATE_DIRECTORY);
        }
        PathBuf::from(".")
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            loglevel: LogLevel::Info,
            listen: Listen::default(),
            reaction: Reaction::default(),
            metrics: Metrics::default(),
            otlp: Otlp::default(),
            state: StateConfig::default(),
        }
    }
}

/// `otlp`: every key left `null` (or empty) falls back to the standard `OTEL_*` variables
/// named beside it (the metrics-specific `OTEL_EXPORTER_OTLP_METRICS_*` one first), then to
/// the default given there; a key set here wins over the variables. The README's "Sending
/// to an OpenTelemetry pipeline" has the whole table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Otlp {
    /// Where to send. gRPC: `http://host:4317`, `https://host:4317` or `host:4317` (TLS
    /// unless `insecure`). HTTP: a base URL, `/v1/metrics` is appended (`http://host:4318`
    /// sends to `http://host:4318/v1/metrics`), unless the path already ends with it.
    /// `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` (the full URL, used as is),
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (a base URL); none: OTLP off.
    pub endpoint: Option<String>,
    /// `grpc`, `http/protobuf` or `http/json`. `OTEL_EXPORTER_OTLP_(METRICS_)PROTOCOL`;
    /// grpc (the specification's default is http/protobuf: ours stays grpc so that existing
    /// configurations, written for gRPC, keep working).
    pub protocol: Option<OtlpProtocol>,
    /// Seconds between exports. `OTEL_METRIC_EXPORT_INTERVAL` (ms); 60.
    #[serde(deserialize_with = "checked::otlp_interval")]
    pub interval: Option<f64>,
    /// Seconds for one export request. `OTEL_EXPORTER_OTLP_(METRICS_)TIMEOUT` (ms); 10.
    #[serde(deserialize_with = "checked::otlp_timeout")]
    pub timeout: Option<f64>,
    /// Headers (gRPC metadata) sent with each request, added to (and winning over)
    /// `OTEL_EXPORTER_OTLP_(METRICS_)HEADERS`.
    pub headers: BTreeMap<String, String>,
    /// `none` or `gzip`. `OTEL_EXPORTER_OTLP_(METRICS_)COMPRESSION`; none.
    pub compression: Option<OtlpCompression>,
    /// PEM file of the CA that signed the receiver's certificate, trusted besides the
    /// system roots. `OTEL_EXPORTER_OTLP_(METRICS_)CERTIFICATE`.
    #[serde(deserialize_with = "checked::optional_path")]
    pub ca: Option<PathBuf>,
    /// PEM client certificate for mutual TLS (with `client_key`).
    /// `OTEL_EXPORTER_OTLP_(METRICS_)CLIENT_CERTIFICATE`.
    #[serde(deserialize_with = "checked::optional_path")]
    pub client_certificate: Option<PathBuf>,
    /// PEM private key of `client_certificate`. `OTEL_EXPORTER_OTLP_(METRICS_)CLIENT_KEY`.
    #[serde(deserialize_with = "checked::optional_path")]
    pub client_key: Option<PathBuf>,
    /// gRPC only, for an endpoint without `http://` or `https://`: plain text instead of
    /// TLS. `OTEL_EXPORTER_OTLP_(METRICS_)INSECURE`; false.
    pub insecure: Option<bool>,
    /// `delta`, `cumulative` or `lowmemory` (any case).
    /// `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`; delta.
    pub temporality: Option<TemporalityPref>,
    /// `service.name`. `OTEL_SERVICE_NAME`, then `OTEL_RESOURCE_ATTRIBUTES`;
    /// reaction-metrics-exporter.
    pub service_name: Option<String>,
    /// `service.instance.id`. `OTEL_RESOURCE_ATTRIBUTES`; the host name
    /// (`/proc/sys/kernel/hostname`), else the machine id.
    pub instance_id: Option<String>,
    /// Resource attributes, winning over `OTEL_RESOURCE_ATTRIBUTES`.
    pub resource: BTreeMap<String, String>,
    /// Exports are split into requests of at most this many bytes (receivers refuse gRPC
    /// messages over 4 MiB by default).
    #[serde(deserialize_with = "checked::max_request_size")]
    pub max_request_size: usize,
}

impl Default for Otlp {
    fn default() -> Self {
        Otlp {
            endpoint: None,
            protocol: None,
            interval: None,
            timeout: None,
            headers: BTreeMap::new(),
            compression: None,
            ca: None,
            client_certificate: None,
            client_key: None,
            insecure: None,
            temporality: None,
            service_name: None,
            instance_id: None,
            resource: BTreeMap::new(),
            max_request_size: defaults::OTLP_MAX_REQUEST_SIZE,
        }
    }
}

/// An enumerated setting written as one of a few words, in any case (the OpenTelemetry
/// rule for enum values: "interpreted in a case-insensitive manner").
pub(crate) trait Word: Sized + Copy + 'static {
    /// Every value with its canonical word.
    const WORDS: &'static [(&'static str, Self)];
    /// The value of a word, in any case.
    fn from_word(s: &str) -> Option<Self> {
        Self::WORDS
            .iter()
            .find(|(w, _)| w.eq_ignore_ascii_case(s.trim()))
            .map(|(_, v)| *v)
    }
    /// The canonical word.
    fn word(self) -> &'static str
    where
        Self: PartialEq,
    {
        Self::WORDS
            .iter()
            .find(|(_, v)| *v == self)
            .map_or("", |(w, _)| w)
    }
    /// The words, for messages.
    fn expected() -> String {
        Self::WORDS
            .iter()
            .map(|(w, _)| *w)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

macro_rules! word_serde {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.word())
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                <$t>::from_word(&s).ok_or_else(|| {
                    de::Error::custom(format!("{s:?}: expected one of {}", <$t>::expected()))
                })
            }
        }
    };
}

/// `otlp.temporality`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemporalityPref {
    /// Each export carries what happened since the previous one (counters; gauges are
    /// the value observed at the export).
    Delta,
    /// Each export carries the totals since the exporter started.
    Cumulative,
    /// Delta for synchronous counters, cumulative for the rest (the exporter's own
    /// observable counters), as the OTLP exporter specification defines it.
    LowMemory,
}

impl Word for TemporalityPref {
    const WORDS: &'static [(&'static str, Self)] = &[
        ("delta", TemporalityPref::Delta),
        ("cumulative", TemporalityPref::Cumulative),
        ("lowmemory", TemporalityPref::LowMemory),
    ];
}
word_serde!(TemporalityPref);

/// `otlp.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// OTLP/gRPC.
    Grpc,
    /// OTLP/HTTP with binary protobuf bodies.
    HttpProtobuf,
    /// OTLP/HTTP with JSON bodies.
    HttpJson,
}

impl Word for OtlpProtocol {
    const WORDS: &'static [(&'static str, Self)] = &[
        ("grpc", OtlpProtocol::Grpc),
        ("http/protobuf", OtlpProtocol::HttpProtobuf),
        ("http/json", OtlpProtocol::HttpJson),
    ];
}
word_serde!(OtlpProtocol);

/// `otlp.compression`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpCompression {
    /// Bodies as they are.
    None,
    /// gzip (`Content-Encoding: gzip`, or gRPC's `grpc-encoding: gzip`).
    Gzip,
}

impl Word for OtlpCompression {
    const WORDS: &'static [(&'static str, Self)] = &[
        ("none", OtlpCompression::None),
        ("gzip", OtlpCompression::Gzip),
    ];
}
word_serde!(OtlpCompression);

/// `loglevel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Everything, with the debug lines.
    Debug,
    /// What the exporter does (the default).
    Info,
    /// Only what goes wrong.
    Warning,
    /// Only errors.
    Error,
}

impl LogLevel {
    /// The level as written in the configuration (`INFO`).
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "DEBUG",
            LogLevel::Info => "INFO",
            LogLevel::Warning => "WARNING",
            LogLevel::Error => "ERROR",
        }
    }
    /// The `tracing` filter directive for this level.
    pub(crate) fn directive(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warning => "warn",
            LogLevel::Error => "error",
        }
    }
}

impl Serialize for LogLevel {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for LogLevel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.to_ascii_uppercase().as_str() {
            "DEBUG" => Ok(LogLevel::Debug),
            "INFO" => Ok(LogLevel::Info),
            "WARNING" | "WARN" => Ok(LogLevel::Warning),
            "ERROR" => Ok(LogLevel::Error),
            _ => Err(de::Error::custom(format!(
                "invalid log level {s:?}, expected one of DEBUG, INFO, WARNING, ERROR"
            ))),
        }
    }
}

/// `listen`: where `/metrics` is served, how it is secured and bounded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Listen {
    /// New: `false` serves no `/metrics` (no port is bound) for OTLP-only deployments: no
    /// reader accumulates series for a scraper that never comes, and the state file is
    /// written after each OTLP export instead of each scrape. Needs OTLP on.
    pub enabled: bool,
    /// A host name, an IPv4 or a bare IPv6 address (`::1`).
    pub address: String,
    /// The TCP port (0: any free port, said in the log).
    pub port: u16,
    /// New: an exporter-toolkit web configuration file (TLS, basic auth, headers), as
    /// Prometheus exporters' `--web.config.file` (which also sets it). `null`: plain HTTP.
    #[serde(deserialize_with = "checked::optional_path")]
    pub web_config: Option<PathBuf>,
    /// New: open connections at most; past it, a new connection replaces the longest
    /// idle one, or is closed when none is idle.
    #[serde(deserialize_with = "checked::max_connections")]
    pub max_connections: usize,
    /// New: seconds for a TLS handshake and each request head (also between requests of
    /// a kept-alive connection); then the connection is closed.
    #[serde(deserialize_with = "checked::http_timeout")]
    pub header_timeout: f64,
    /// New: seconds from a request to the last byte of its response; then the connection
    /// is closed (an undelivered page's counts go to the next scrape).
    #[serde(deserialize_with = "checked::http_timeout")]
    pub response_timeout: f64,
}

impl Default for Listen {
    fn default() -> Self {
        Listen {
            enabled: true,
            address: defaults::LISTEN_ADDRESS.into(),
            port: defaults::LISTEN_PORT,
            web_config: None,
            max_connections: defaults::MAX_CONNECTIONS,
            header_timeout: defaults::HEADER_TIMEOUT_SECONDS,
            response_timeout: defaults::RESPONSE_TIMEOUT_SECONDS,
        }
    }
}

/// `reaction`: how to reach reaction and read its logs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Reaction {
    /// Passed to `reaction test-config -c`, or read directly when `reaction` is absent.
    #[serde(deserialize_with = "checked::path")]
    pub config: PathBuf,
    /// Where reaction's log lines come from.
    pub logs: Logs,
    /// reaction's control socket, for `reaction show --socket`.
    #[serde(deserialize_with = "checked::path")]
    pub socket: PathBuf,
    /// Seconds of log time during which actions are ignored after reaction starts.
    #[serde(deserialize_with = "checked::hold")]
    pub hold: u64,
    /// New: the `reaction` executable (looked up in PATH when it has no slash).
    #[serde(deserialize_with = "checked::path")]
    pub binary: PathBuf,
    /// New: seconds after which a `reaction` CLI call is abandoned (a hung reaction never
    /// hangs a scrape).
    #[serde(deserialize_with = "checked::reaction_timeout")]
    pub timeout: f64,
}

impl Default for Reaction {
    fn default() -> Self {
        Reaction {
            config: defaults::REACTION_CONFIG.into(),
            logs: Logs::default(),
            socket: defaults::REACTION_SOCKET.into(),
            hold: defaults::REACTION_HOLD_SECONDS,
            binary: defaults::REACTION_BINARY.into(),
            timeout: defaults::REACTION_TIMEOUT_SECONDS,
        }
    }
}

/// Where reaction's log lines come from: exactly one of `systemd` (a unit) or `file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogSource {
    /// The journal entries of this unit (through `journalctl`).
    Systemd(String),
    /// This file, followed through rotations.
    File(PathBuf),
}

/// `reaction.logs.start_at`: where to start without a saved position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    /// New lines only.
    End,
    /// Everything the file (or the journal) holds.
    Beginning,
}

/// `reaction.logs`.
#[derive(Debug, Clone, PartialEq)]
pub struct Logs {
    /// `systemd: <unit>` or `file: <path>`.
    pub source: LogSource,
    /// New: where to start reading a file found at startup.
    pub start_at: StartAt,
    /// New: longer lines are dropped and counted.
    pub max_line_length: usize,
    /// New, journald: read journal files from this directory (`journalctl -D`), e.g. the
    /// host's `/var/log/journal` mounted in a container. `null`: the system journal, or
    /// `/var/log/journal` when `DOCKER` is set (as the legacy exporter did).
    pub directory: Option<PathBuf>,
    /// New, journald: the `journalctl` executable.
    pub journalctl: PathBuf,
}

impl Default for Logs {
    fn default() -> Self {
        Logs {
            source: LogSource::Systemd(defaults::SYSTEMD_UNIT.into()),
            start_at: StartAt::End,
            max_line_length: defaults::MAX_LINE_LENGTH,
            directory: None,
            journalctl: defaults::JOURNALCTL.into(),
        }
    }
}

/// The on-disk shape of `reaction.logs`: `systemd: null` and `file: null` mean the default
/// unit and file, as in the legacy exporter.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct LogsRaw {
    #[serde(
        default,
        deserialize_with = "present_unit",
        skip_serializing_if = "Option::is_none"
    )]
    systemd: Option<Option<String>>,
    #[serde(
        default,
        deserialize_with = "present_path",
        skip_serializing_if = "Option::is_none"
    )]
    file: Option<Option<PathBuf>>,
    #[serde(default)]
    start_at: Option<StartAt>,
    #[serde(default, deserialize_with = "checked::max_line_length")]
    max_line_length: Option<usize>,
    #[serde(default, deserialize_with = "checked::optional_path")]
    directory: Option<PathBuf>,
    #[serde(default, deserialize_with = "checked::optional_path")]
    journalctl: Option<PathBuf>,
}

/// Distinguishes an absent key (None, through `default`) from `key: null` (Some(None)):
/// a unit name, without NUL byte.
fn present_unit<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    checked::optional_unit(d).map(Some)
}

/// As [`present_unit`], for a path.
fn present_path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<PathBuf>>, D::Error> {
    checked::optional_path(d).map(Some)
}

impl<'de> Deserialize<'de> for Logs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = LogsRaw::deserialize(d)?;
        let defaults = Logs::default();
        let source = match (raw.systemd, raw.file) {
            (Some(_), Some(_)) => {
                return Err(de::Error::custom(
                    "give exactly one of `systemd` or `file`, not both",
                ))
            }
            (Some(unit), None) => {
                LogSource::Systemd(unit.unwrap_or_else(|| defaults::SYSTEMD_UNIT.into()))
            }
            (None, Some(path)) => {
                LogSource::File(path.unwrap_or_else(|| defaults::LOG_FILE.into()))
            }
            (None, None) => defaults.source,
        };
        // Range-checked as it was read (`checked::max_line_length`).
        let max_line_length = raw.max_line_length.unwrap_or(defaults.max_line_length);
        Ok(Logs {
            source,
            start_at: raw.start_at.unwrap_or(defaults.start_at),
            max_line_length,
            directory: raw.directory,
            journalctl: raw.journalctl.unwrap_or(defaults.journalctl),
        })
    }
}

impl Serialize for Logs {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (systemd, file) = match &self.source {
            LogSource::Systemd(u) => (Some(Some(u.clone())), None),
            LogSource::File(p) => (None, Some(Some(p.clone()))),
        };
        LogsRaw {
            systemd,
            file,
            start_at: Some(self.start_at),
            max_line_length: Some(self.max_line_length),
            directory: self.directory.clone(),
            journalctl: Some(self.journalctl.clone()),
        }
        .serialize(s)
    }
}

/// `metrics`: what is exported, and how it is labelled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Metrics {
    /// Pattern transforms for every filter: pattern name → template, `false` (drop the label)
    /// or `null`/`true` (keep the value).
    pub all: BTreeMap<String, Transform>,
    /// Per stream and filter: `for.<stream>.<filter>.<pattern>`; wins over `all`.
    #[serde(rename = "for")]
    pub for_: BTreeMap<String, BTreeMap<String, BTreeMap<String, Transform>>>,
    /// Which families are exported.
    pub export: Export,
    /// New: distinct attribute sets per instrument and per collection; past it, events are
    /// counted in one overflow series (see README).
    #[serde(deserialize_with = "checked::cardinality_limit")]
    pub cardinality_limit: usize,
    /// New: recent distinct matches remembered per filter, to give actions the pattern
    /// values their command does not show.
    #[serde(deserialize_with = "checked::attribution_memory")]
    pub attribution_memory: usize,
    /// New: bytes of a label value read from a log (after its transform); a longer one is
    /// cut at a character boundary and ends with `…` (counted, see README).
    #[serde(deserialize_with = "checked::max_label_value_length")]
    pub max_label_value_length: usize,
    /// New: the `/metrics/otel` endpoint (cumulative counters named as an OpenTelemetry
    /// Collector's Prometheus exporter names them).
    pub otel_endpoint: OtelEndpoint,
}

/// `metrics.otel_endpoint`: the second endpoint, `/metrics/otel` (README, "Which endpoint
/// do I scrape").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtelEndpoint {
    /// Whether `/metrics/otel` is served (and its reader collects).
    pub enabled: bool,
    /// Pattern attributes it keeps (e.g. `[ip]`); the others are dropped, so that its
    /// series, which never expire, stay few. Each instrument is still capped at
    /// `metrics.cardinality_limit` series, past which events go to the overflow series.
    #[serde(deserialize_with = "checked::pattern_names")]
    pub patterns: Vec<String>,
}

impl Default for OtelEndpoint {
    fn default() -> Self {
        OtelEndpoint {
            enabled: defaults::OTEL_ENDPOINT_ENABLED,
            patterns: Vec::new(),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            all: BTreeMap::new(),
            for_: BTreeMap::new(),
            export: Export::default(),
            cardinality_limit: defaults::CARDINALITY_LIMIT,
            attribution_memory: defaults::ATTRIBUTION_MEMORY,
            max_label_value_length: defaults::MAX_LABEL_VALUE_LENGTH,
            otel_endpoint: OtelEndpoint::default(),
        }
    }
}

/// A pattern transform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transform {
    /// `null` or `true`: the value as is.
    Keep,
    /// `false`: no label for this pattern.
    Drop,
    /// A minijinja (Jinja2) template; the pattern's value is bound to the pattern's name.
    Template(String),
}

impl Serialize for Transform {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Transform::Keep => s.serialize_none(),
            Transform::Drop => s.serialize_bool(false),
            Transform::Template(t) => s.serialize_str(t),
        }
    }
}

impl<'de> Deserialize<'de> for Transform {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A visitor, so that a template refused by `template::check` is reported at its
        // own line (see `checked`).
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Transform;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a template (string), true, false or null")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Transform, E> {
                Ok(Transform::Keep)
            }
            fn visit_none<E: de::Error>(self) -> Result<Transform, E> {
                Ok(Transform::Keep)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Transform, E> {
                Ok(if v { Transform::Keep } else { Transform::Drop })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Transform, E> {
                crate::template::check(v).map_err(E::custom)?;
                Ok(Transform::Template(v.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

/// `metrics.export`: which families are exported and whether they carry pattern labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Export {
    /// `reaction_match_count`.
    pub matches: FamilyExport,
    /// `reaction_action_count`.
    pub actions: FamilyExport,
    /// `reaction_pending_count`.
    pub pending: FamilyExport,
    /// `reaction_commands_count`: `null` (default) or `true`: exported; `false`: not.
    pub commands: Toggle,
    /// `reaction_stream_event_count`, as `commands`.
    pub streams: Toggle,
    /// Self-monitoring families (`reaction_exporter_*`, `process_*`): on with `true` or with
    /// the key present and empty (as the legacy README shows), off when absent or `false`.
    pub internals: Toggle,
}

impl Default for Export {
    fn default() -> Self {
        Export {
            matches: FamilyExport::On { extra: true },
            actions: FamilyExport::On { extra: true },
            pending: FamilyExport::On { extra: true },
            commands: Toggle::Null,
            streams: Toggle::Null,
            internals: Toggle::Off,
        }
    }
}

impl Export {
    /// Whether `reaction_commands_count` is exported.
    pub fn commands(&self) -> bool {
        self.commands != Toggle::Off
    }
    /// Whether `reaction_stream_event_count` is exported.
    pub fn streams(&self) -> bool {
        self.streams != Toggle::Off
    }
    /// Whether the exporter's own families are shown on `/metrics`.
    pub fn internals(&self) -> bool {
        self.internals != Toggle::Off
    }
}

/// `true`, `false` or `null` (present, empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Toggle {
    /// `true`.
    On,
    /// `false`.
    Off,
    /// Present and empty (or `null`).
    Null,
}

impl Serialize for Toggle {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Toggle::On => s.serialize_bool(true),
            Toggle::Off => s.serialize_bool(false),
            Toggle::Null => s.serialize_none(),
        }
    }
}

impl<'de> Deserialize<'de> for Toggle {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Option::<bool>::deserialize(d)? {
            None => Toggle::Null,
            Some(true) => Toggle::On,
            Some(false) => Toggle::Off,
        })
    }
}

/// A family with pattern labels: `false` (not exported), `null`/`true`/`{}` (exported with
/// labels), `{extra: false}` (exported without pattern labels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FamilyExport {
    /// Not exported.
    Off,
    /// Exported, with the pattern labels if `extra`.
    On {
        /// Whether the pattern labels are added.
        extra: bool,
    },
}

impl FamilyExport {
    /// Whether the family is exported.
    pub(crate) fn enabled(self) -> bool {
        matches!(self, FamilyExport::On { .. })
    }
}

impl Serialize for FamilyExport {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct On {
            extra: bool,
        }
        match self {
            FamilyExport::Off => s.serialize_bool(false),
            FamilyExport::On { extra } => On { extra: *extra }.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for FamilyExport {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Opts {
            #[serde(default)]
            extra: Option<bool>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bool(bool),
            Opts(Opts),
        }
        Ok(match Option::<Raw>::deserialize(d)? {
            None | Some(Raw::Bool(true)) => FamilyExport::On { extra: true },
            Some(Raw::Bool(false)) => FamilyExport::Off,
            Some(Raw::Opts(o)) => FamilyExport::On {
                extra: o.extra.unwrap_or(true),
            },
        })
    }
}

/// The formats the configuration can be written in (and `defaults` / `test-config` print).
// The variants have no doc comments: clap would print them as help text for `-f`.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ConfigFormat {
    Yaml,
    Json,
}

impl Config {
    /// Load a file: JSON when its name ends in `.json`, or when it starts with `{`;
    /// YAML otherwise. An empty file gives the defaults (as the legacy exporter did).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let json =
            path.extension().is_some_and(|e| e == "json") || text.trim_start().starts_with('{');
        let format = if json {
            ConfigFormat::Json
        } else {
            ConfigFormat::Yaml
        };
        let config = Config::parse(&text, format, &path.display().to_string())?;
        config.check_web_config(&path.display().to_string())?;
        Ok(config)
    }

    /// Load the web configuration file named by `listen.web_config`, if any, to refuse now
    /// what would fail at start (`file` names the configuration in the error).
    pub fn check_web_config(&self, file: &str) -> Result<(), ConfigError> {
        let Some(path) = &self.listen.web_config else {
            return Ok(());
        };
        crate::web_config::WebConfig::load(path).map_err(|e| ConfigError::Invalid {
            file: file.to_string(),
            key: format!("listen.web_config:{}", e.key),
            line: None,
            message: format!("key `listen.web_config`: {e}"),
        })?;
        Ok(())
    }

    /// Parse a configuration text; `file` names it in errors.
    pub fn parse(text: &str, format: ConfigFormat, file: &str) -> Result<Config, ConfigError> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        let invalid = |key: String, line: Option<usize>, message: String| {
            let at = match line {
                Some(l) => format!(" (line {l})"),
                None => String::new(),
            };
            let key_txt = if key.is_empty() || key == "." {
                "configuration".to_string()
            } else {
                format!("key `{key}`")
            };
            ConfigError::Invalid {
                file: file.to_string(),
                key: key.clone(),
                line,
                message: format!("{key_txt}{at}: {message}"),
            }
        };
        let config = match format {
            ConfigFormat::Yaml => {
                let de = serde_yaml::Deserializer::from_str(text);
                match serde_path_to_error::deserialize::<_, Option<Config>>(de) {
                    Ok(c) => c.unwrap_or_default(),
                    Err(e) => {
                        let key = e.path().to_string();
                        let inner = e.into_inner();
                        let line = inner.location().map(|l| l.line());
                        return Err(invalid(key, line, strip_yaml_noise(&inner.to_string())));
                    }
                }
            }
            ConfigFormat::Json => {
                let mut de = serde_json::Deserializer::from_str(text);
                match serde_path_to_error::deserialize::<_, Option<Config>>(&mut de) {
                    Ok(c) => c.unwrap_or_default(),
                    Err(e) => {
                        let key = e.path().to_string();
                        let inner = e.into_inner();
                        let line = Some(inner.line()).filter(|l| *l > 0);
                        let mut msg = inner.to_string();
                        if let Some(i) = msg.rfind(" at line ") {
                            msg.truncate(i);
                        }
                        return Err(invalid(key, line, msg));
                    }
                }
            }
        };
        // Every value was checked as it was read (`checked`), where its line is known.
        Ok(config)
    }

    /// The transform of a pattern of a filter: `for` wins over `all`; Keep when neither has it.
    pub(crate) fn transform(&self, stream: &str, filter: &str, pattern: &str) -> &Transform {
        self.metrics
            .for_
            .get(stream)
            .and_then(|f| f.get(filter))
            .and_then(|p| p.get(pattern))
            .or_else(|| self.metrics.all.get(pattern))
            .unwrap_or(&Transform::Keep)
    }

    /// Render in a format (the `defaults` and `test-config` commands).
    pub fn to_text(&self, format: ConfigFormat) -> String {
        match format {
            ConfigFormat::Yaml => serde_yaml::to_string(self).expect("config serializes"),
            ConfigFormat::Json => {
                let mut s = serde_json::to_string_pretty(self).expect("config serializes");
                s.push('\n');
                s
            }
        }
    }
}

/// serde_yaml appends " at line L column C" to messages that carry a location; we print
/// the line ourselves.
fn strip_yaml_noise(msg: &str) -> String {
    let mut m = msg.to_string();
    if let Some(i) = m.find(" at line ") {
        m.truncate(i);
    }
    // serde_yaml prefixes the path itself ("reaction.logs: ..."): we print it already.
    if let Some((head, rest)) = m.split_once(": ") {
        if !head.contains(' ') && !head.is_empty() {
            return rest.to_string();
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(t: &str) -> Result<Config, ConfigError> {
        Config::parse(t, ConfigFormat::Yaml, "test.yml")
    }

    fn err(t: &str) -> (String, Option<usize>, String) {
        match yaml(t).unwrap_err() {
            ConfigError::Invalid {
                key, line, message, ..
            } => (key, line, message),
            e => panic!("unexpected {e}"),
        }
    }

    #[test]
    fn legacy_default_file_loads_unchanged() {
        let legacy = r#"
loglevel: INFO
listen:
  address: 127.0.0.1
  port: 8080
reaction:
  config: /etc/reaction
  logs:
    systemd: reaction.service
  socket: /run/reaction/reaction.sock
  hold: 60
metrics:
  all: {}
  for: {}
  export:
    matches:
      extra: true
    actions:
      extra: true
    pending:
      extra: true
    commands:
    streams:
"#;
        assert_eq!(yaml(legacy).unwrap(), Config::default());
    }

    #[test]
    fn legacy_readme_examples_load() {
        let c = yaml(
            "reaction:\n  config: /etc/reaction\n  logs:\n    systemd:\n\
             metrics:\n  all:\n    email: \"{{ email.split('@') | last }}\"\n    ip: false\n  \
             for:\n    ssh:\n      failedlogin:\n        ip: true\n  export:\n    internals:\n    \
             actions: false\n    pending: {extra: false}\n",
        )
        .unwrap();
        assert_eq!(
            c.reaction.logs.source,
            LogSource::Systemd("reaction.service".into())
        );
        assert_eq!(c.transform("ssh", "failedlogin", "ip"), &Transform::Keep);
        assert_eq!(c.transform("ssh", "other", "ip"), &Transform::Drop);
        assert!(matches!(
            c.transform("x", "y", "email"),
            Transform::Template(_)
        ));
        assert!(c.metrics.export.internals());
        assert_eq!(c.metrics.export.actions, FamilyExport::Off);
        assert_eq!(c.metrics.export.pending, FamilyExport::On { extra: false });
        assert!(c.metrics.export.commands());
    }

    #[test]
    fn file_null_means_default_path() {
        let c = yaml("reaction:\n  logs:\n    file:\n").unwrap();
        assert_eq!(
            c.reaction.logs.source,
            LogSource::File(defaults::LOG_FILE.into())
        );
    }

    #[test]
    fn json_loads() {
        let c = Config::parse(
            r#"{"reaction": {"logs": {"file": "/tmp/r.log"}, "hold": 5}, "loglevel": "debug"}"#,
            ConfigFormat::Json,
            "c.json",
        )
        .unwrap();
        assert_eq!(c.reaction.hold, 5);
        assert_eq!(c.loglevel, LogLevel::Debug);
    }

    #[test]
    fn unknown_key_names_path_and_line() {
        let (key, line, msg) = err("reaction:\n  hold: 3\n  holdd: 4\n");
        assert_eq!(key, "reaction.holdd");
        assert_eq!(line, Some(3));
        assert!(msg.contains("unknown field `holdd`"), "{msg}");
    }

    #[test]
    fn wrong_type_names_path_and_line() {
        let (key, line, msg) = err("listen:\n  port: eighty\n");
        assert_eq!(key, "listen.port");
        assert_eq!(line, Some(2));
        assert!(msg.contains("listen.port"), "{msg}");
    }

    #[test]
    fn both_sources_is_an_error() {
        let (key, line, msg) = err("reaction:\n  logs:\n    systemd: a.service\n    file: /x\n");
        assert_eq!(key, "reaction.logs");
        assert!(line.is_some());
        assert!(msg.contains("exactly one"), "{msg}");
    }

    #[test]
    fn template_syntax_error_is_a_config_error() {
        let (key, line, msg) = err("metrics:\n  all:\n    email: \"{{ email.split('@') | \"\n");
        assert_eq!(key, "metrics.all.email");
        assert_eq!(line, Some(3));
        assert!(msg.contains("template"), "{msg}");
    }

    #[test]
    fn bad_loglevel() {
        let (key, _, msg) = err("loglevel: LOUD\n");
        assert_eq!(key, "loglevel");
        assert!(msg.contains("LOUD"));
    }

    #[test]
    fn json_error_names_path_and_line() {
        let e = Config::parse(
            "{\n \"listen\": {\n  \"prot\": 1}}",
            ConfigFormat::Json,
            "c.json",
        )
        .unwrap_err();
        match e {
            ConfigError::Invalid { key, line, .. } => {
                assert_eq!(key, "listen.prot");
                assert_eq!(line, Some(3));
            }
            e => panic!("{e}"),
        }
    }

    #[test]
    fn defaults_round_trip_in_both_formats() {
        for f in [ConfigFormat::Yaml, ConfigFormat::Json] {
            let text = Config::default().to_text(f);
            assert_eq!(Config::parse(&text, f, "x").unwrap(), Config::default());
        }
    }

    /// Guards issue 8: every number is range-checked where it is read, so `test-config`
    /// refuses it naming the key and the line (`hold: 18446744073709551615` passed and then
    /// panicked at the first start command; `timeout: 1e300` panicked at start).
    #[test]
    fn every_number_is_range_checked_with_its_key_and_line() {
        let cases = [
            (
                "reaction:\n  hold: 18446744073709551615\n",
                "reaction.hold",
                2,
            ),
            ("reaction:\n  hold: 86401\n", "reaction.hold", 2),
            ("reaction:\n  timeout: 1e300\n", "reaction.timeout", 2),
            ("reaction:\n  timeout: 0\n", "reaction.timeout", 2),
            ("reaction:\n  timeout: -1\n", "reaction.timeout", 2),
            ("reaction:\n  timeout: .nan\n", "reaction.timeout", 2),
            ("reaction:\n  timeout: .inf\n", "reaction.timeout", 2),
            ("otlp:\n  interval: 1e300\n", "otlp.interval", 2),
            ("otlp:\n  interval: 0\n", "otlp.interval", 2),
            ("otlp:\n  timeout: 1e300\n", "otlp.timeout", 2),
            (
                "otlp:\n  max_request_size: 1000\n",
                "otlp.max_request_size",
                2,
            ),
            (
                "otlp:\n  max_request_size: 18446744073709551615\n",
                "otlp.max_request_size",
                2,
            ),
            (
                "metrics:\n  cardinality_limit: 0\n",
                "metrics.cardinality_limit",
                2,
            ),
            (
                "metrics:\n  cardinality_limit: 18446744073709551615\n",
                "metrics.cardinality_limit",
                2,
            ),
            (
                "metrics:\n  attribution_memory: 18446744073709551615\n",
                "metrics.attribution_memory",
                2,
            ),
            (
                "metrics:\n  max_label_value_length: 10\n",
                "metrics.max_label_value_length",
                2,
            ),
            (
                "metrics:\n  max_label_value_length: 100000000\n",
                "metrics.max_label_value_length",
                2,
            ),
            (
                "state:\n  recall: 18446744073709551615\n",
                "state.recall",
                2,
            ),
            (
                "reaction:\n  logs:\n    max_line_length: 100\n",
                "reaction.logs.max_line_length",
                3,
            ),
            (
                "reaction:\n  logs:\n    max_line_length: 18446744073709551615\n",
                "reaction.logs.max_line_length",
                3,
            ),
            ("reaction:\n  binary: \"a\\0b\"\n", "reaction.binary", 2),
            (
                "reaction:\n  logs:\n    systemd: \"r\\0\"\n",
                "reaction.logs.systemd",
                3,
            ),
            (
                "reaction:\n  logs:\n    file: \"/r\\0\"\n",
                "reaction.logs.file",
                3,
            ),
            ("state:\n  directory: \"/x\\0\"\n", "state.directory", 2),
        ];
        for (text, key, line) in cases {
            let (k, l, msg) = err(text);
            assert_eq!((k.as_str(), l), (key, Some(line)), "{text:?}: {msg}");
            assert!(msg.contains(key), "{text:?}: {msg}");
            assert!(
                msg.contains("out of range") || msg.contains("NUL byte"),
                "{text:?}: {msg}"
            );
        }
        // A key after others in its mapping: its own line, not the mapping's.
        for (text, key, line) in [
            (
                "otlp:\n  endpoint: x\n  interval: 1e300\n",
                "otlp.interval",
                3,
            ),
            (
                "reaction:\n  binary: x\n  hold: 99999999\n",
                "reaction.hold",
                3,
            ),
            (
                "metrics:\n  all:\n    a: null\n    ip: \"{{ ip * 100000000 }}\"\n",
                "metrics.all.ip",
                4,
            ),
        ] {
            let (k, l, msg) = err(text);
            assert_eq!((k.as_str(), l), (key, Some(line)), "{text:?}: {msg}");
        }
        // The same in JSON: the key is named.
        let e = Config::parse(
            r#"{"reaction": {"hold": 18446744073709551615}}"#,
            ConfigFormat::Json,
            "c.json",
        )
        .unwrap_err();
        assert!(e.to_string().contains("reaction.hold"), "{e}");
        // The bounds themselves are accepted.
        let c = yaml(
            "reaction:\n  hold: 86400\n  timeout: 0.001\notlp:\n  interval: 86400\n  \
             timeout: 3600\nmetrics:\n  cardinality_limit: 1\n  attribution_memory: 0\n\
             state:\n  recall: 604800\n",
        )
        .unwrap();
        assert_eq!(c.reaction.hold, defaults::MAX_HOLD_SECONDS);
    }

    #[test]
    fn empty_file_gives_defaults() {
        assert_eq!(yaml("\n").unwrap(), Config::default());
    }
}
