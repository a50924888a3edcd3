//! The OpenTelemetry dashboard (`dashboards/reaction-otel.json`) against data, on real
//! Prometheus.
//!
//! The dashboard is for the OTLP push through an OpenTelemetry Collector (contrib):
//! `deltatocumulative`, then the `prometheus` exporter, scraped by Prometheus. No Collector
//! can be installed here, so the test puts a **Collector stand-in** in its place:
//!
//! - what it is: a real OTLP gRPC receiver (opentelemetry-proto's tonic service, as in
//!   `tests/otlp.rs`) that keeps the latest point of each series and serves them all, on a
//!   local HTTP port, as a Prometheus text page (format 0.0.4), with the names and labels
//!   the Collector's `prometheus` exporter gives them by default (translation strategy
//!   `UnderscoreEscapingWithSuffixes`). The rules are those of opentelemetry-collector-contrib,
//!   cited where they are applied: `pkg/translator/prometheus` (`normalize_name.go`,
//!   `normalize_label.go`) and `exporter/prometheusexporter` (`accumulator.go`,
//!   `collector.go`, `utils.go`);
//! - what it is not: the Collector. It does not run `deltatocumulative`: the exporters push
//!   with `otlp.temporality: cumulative`, which is what that processor hands downstream
//!   (running totals with a start time). It takes only what this exporter sends (sums and
//!   gauges of numbers: no histograms, exemplars or delta sums; anything else is recorded
//!   as an error and fails the test). It serves the text format only (the exporter's
//!   default `enable_open_metrics: false`: no `_created` lines), without timestamps
//!   (default `send_timestamps: false`), without `namespace` or `const_labels`, and it never
//!   expires a series (`metric_expiration`, 5 min by default, is longer than the test, and
//!   a cumulative exporter re-sends every series at every export anyway).
//!
//! Its names are checked against the `prometheus_name` annotations of `otel/registry` (the
//! table of `otel/README.md`): the stand-in and the documentation agree.
//!
//! Two "hosts" (two reaction logs and CLI fixtures, two exporters with `otlp.instance_id`
//! `host1` and `host2`) get a deterministic workload in three phases a few seconds apart:
//! matches in three filters of two streams, IPs seen in several filters and on both hosts,
//! actions, stream errors, failed start/stop commands, pending actions from the fixture's
//! `reaction show` on host1, and reaction down on host2 at the end. The exporters push every
//! second; real **Prometheus** (Debian `prometheus`) scrapes the stand-in every second with
//! `honor_labels: true`, as the commented job of `collector-configs/prometheus.yml` does.
//!
//! Then every query of the dashboard runs through Prometheus' HTTP API with Grafana's
//! variables substituted (`tests/grafana`), at steps of 1, 5 and 15 s and for three
//! selections of the variables: each must succeed, return data for "all", and give exactly
//! the workload's numbers (totals per filter, per IP, per instance over the range and the
//! year, per-interval bars added up, running totals at the end of the range, pending
//! actions and reaction's status as gauges); times (last log line, first and last match,
//! lifetimes) to the step and the push and scrape delays. The variables' `label_values`
//! queries run through `/api/v1/label/.../values`.
//!
//! The same queries then run, with the same expectations, on a second real Prometheus that
//! scrapes the exporters' own `/metrics/otel` endpoint (cumulative counters with the
//! Collector's names, issue 11; `metrics.otel_endpoint.patterns: [ip]` for the IP panels),
//! `instance` set to the host's name by the scrape job's target labels: the dashboard works
//! on it unchanged, and the OTLP push (the stand-in's data) is exact beside it.
//!
//! A missing `prometheus` fails the test with the package to install. Everything listens
//! on 127.0.0.1; every process is killed at the end, also on failure (Drop).

use crate::common;
use crate::grafana;
use crate::tools;
use crate::workload;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point, AggregationTemporality, NumberDataPoint,
};
use serde_json::Value;

use common::{append, file_config, Exporter, Reaction};
use grafana::*;
use tools::*;
use workload::*;

const HOSTS: [&str; 2] = ["host1", "host2"];
/// The scrape job of the stand-in (the one commented in collector-configs/prometheus.yml).
const JOB: &str = "reaction-otlp";
/// The scrape job of `/metrics/otel` (the `reaction-otel` job of collector-configs/prometheus.yml).
const ENDPOINT_JOB: &str = "reaction-otel";
const DASHBOARD: &str = "dashboards/reaction-otel.json";
/// Upper bound of the time from a log line to its sample in Prometheus: the exporter's
/// poll (0.2 s), one push interval (1 s), one scrape interval (1 s), and some slack.
const DELAY: f64 = 4.0;

// ---------------------------------------------------------------------------------------
// The Collector stand-in: names and labels

/// How the Collector sees a metric: a monotonic sum (a Prometheus counter), another sum,
/// or a gauge (both Prometheus gauges).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Sum,
    Gauge,
}

/// `unitMap` of normalize_name.go: OTLP (UCUM) unit -> Prometheus unit word.
const UNITS: [(&str, &str); 26] = [
    ("d", "days"),
    ("h", "hours"),
    ("min", "minutes"),
    ("s", "seconds"),
    ("ms", "milliseconds"),
    ("us", "microseconds"),
    ("ns", "nanoseconds"),
    ("By", "bytes"),
    ("KiBy", "kibibytes"),
    ("MiBy", "mebibytes"),
    ("GiBy", "gibibytes"),
    ("TiBy", "tibibytes"),
    ("KBy", "kilobytes"),
    ("MBy", "megabytes"),
    ("GBy", "gigabytes"),
    ("TBy", "terabytes"),
    ("m", "meters"),
    ("V", "volts"),
    ("A", "amperes"),
    ("J", "joules"),
    ("W", "watts"),
    ("g", "grams"),
    ("Cel", "celsius"),
    ("Hz", "hertz"),
    ("1", ""),
    ("%", "percent"),
];

/// `perUnitMap` of normalize_name.go: the unit after a `/`.
const PER_UNITS: [(&str, &str); 7] = [
    ("s", "second"),
    ("m", "minute"),
    ("h", "hour"),
    ("d", "day"),
    ("w", "week"),
    ("mo", "month"),
    ("y", "year"),
];

fn lookup<'a>(table: &[(&str, &'a str)], unit: &'a str) -> &'a str {
    table
        .iter()
        .find(|(k, _)| *k == unit)
        .map_or(unit, |(_, v)| v)
}

/// The alphanumeric runs of a string (`strings.FieldsFunc` on non-letters, non-digits).
fn words(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// A metric's Prometheus name: `normalizeName` of normalize_name.go. The name is split
/// into words at every character other than a letter or digit (`.` becomes `_`); the
/// unit before a `/` is appended as its Prometheus word (`s` -> `seconds`, `By` ->
/// `bytes`) unless it is in braces (`{match}`: dropped), empty, or already a word of the
/// name; the unit after a `/` as `per_<word>`; counters (monotonic sums) end in `total`;
/// gauges (only) of unit `1` end in `ratio`; a leading digit gets a `_`.
fn metric_name(name: &str, unit: &str, kind: Kind) -> String {
    let mut tokens = words(name);
    let mut parts = unit.splitn(2, '/');
    let main = parts.next().unwrap_or("").trim();
    if !main.is_empty() && !main.contains(['{', '}']) {
        let word = words(lookup(&UNITS, main)).join("_");
        if !word.is_empty() && !tokens.contains(&word) {
            tokens.push(word);
        }
    }
    if let Some(per) = parts.next().map(str::trim) {
        if !per.is_empty() && !per.contains(['{', '}']) {
            let word = words(lookup(&PER_UNITS, per)).join("_");
            if !word.is_empty() && !tokens.contains(&word) {
                tokens.push("per".into());
                tokens.push(word);
            }
        }
    }
    if kind == Kind::Counter {
        tokens.retain(|t| t != "total");
        tokens.push("total".into());
    }
    if unit == "1" && kind == Kind::Gauge {
        tokens.retain(|t| t != "ratio");
        tokens.push("ratio".into());
    }
    let mut out = tokens.join("_");
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// An attribute key as a label name: `NormalizeLabel` of normalize_label.go. Every
/// character other than a letter or digit becomes `_`; a leading digit gets `key_`, a
/// leading single `_` gets `key`.
fn label_name(key: &str) -> String {
    let mut l: String = key
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { '_' })
        .collect();
    if l.starts_with(|c: char| c.is_ascii_digit()) {
        l.insert_str(0, "key_");
    } else if l.starts_with('_') && !l.starts_with("__") {
        l.insert_str(0, "key");
    }
    l
}

/// An attribute's value as a string (pcommon `Value.AsString`, for the scalar types).
fn attr_value(kv: &KeyValue) -> Result<String, String> {
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => Ok(s.clone()),
        Some(any_value::Value::BoolValue(b)) => Ok(b.to_string()),
        Some(any_value::Value::IntValue(i)) => Ok(i.to_string()),
        Some(any_value::Value::DoubleValue(d)) => Ok(d.to_string()),
        other => Err(format!("attribute {}: {other:?} is not a scalar", kv.key)),
    }
}

// ---------------------------------------------------------------------------------------
// The Collector stand-in: the accumulator and the page

/// The latest point of one series.
struct Sample {
    help: String,
    kind: Kind,
    value: f64,
    time: u64,
}

type Labels = BTreeMap<String, String>;

#[derive(Default)]
struct Page {
    /// (Prometheus name, labels) -> latest point.
    series: BTreeMap<(String, Labels), Sample>,
    /// (job, instance) -> the labels of its `target_info`.
    target_info: BTreeMap<(String, String), Labels>,
    /// OTLP name -> Prometheus name, for the check against the registry.
    names: BTreeMap<String, String>,
    /// instance -> the time of the latest point received (ns since the epoch).
    latest: BTreeMap<String, u64>,
    /// What the stand-in could not take.
    errors: Vec<String>,
}

impl Page {
    /// `lastValueAccumulator.Accumulate` (accumulator.go) and the labels of
    /// `getMetricMetadata` (collector.go).
    fn accumulate(&mut self, req: ExportMetricsServiceRequest) {
        for rm in req.resource_metrics {
            let mut resource = BTreeMap::new();
            for kv in rm.resource.map(|r| r.attributes).unwrap_or_default() {
                match attr_value(&kv) {
                    Ok(v) => {
                        resource.insert(kv.key, v);
                    }
                    Err(e) => self.errors.push(format!("resource: {e}")),
                }
            }
            // utils.go: `job` is service.name (prefixed by `service.namespace/` if any),
            // `instance` is service.instance.id.
            let job =
                resource
                    .get("service.name")
                    .map(|name| match resource.get("service.namespace") {
                        Some(ns) => format!("{ns}/{name}"),
                        None => name.clone(),
                    });
            let instance = resource.get("service.instance.id").cloned();
            // collector.go `createTargetInfoMetrics`: one `target_info` (value 1) per job
            // and instance, labelled with the other resource attributes (keys as label
            // names, values of colliding keys joined with `;`).
            if let (Some(job), Some(instance)) = (&job, &instance) {
                let mut labels = Labels::new();
                for (k, v) in &resource {
                    if ["service.name", "service.namespace", "service.instance.id"]
                        .contains(&k.as_str())
                    {
                        continue;
                    }
                    labels
                        .entry(label_name(k))
                        .and_modify(|e| {
                            e.push(';');
                            e.push_str(v)
                        })
                        .or_insert_with(|| v.clone());
                }
                labels.insert("job".into(), job.clone());
                labels.insert("instance".into(), instance.clone());
                self.target_info
                    .insert((job.clone(), instance.clone()), labels);
            }
            for sm in rm.scope_metrics {
                let scope = sm.scope.unwrap_or_default();
                let mut scope_labels = Labels::new();
                for kv in &scope.attributes {
                    match attr_value(kv) {
                        Ok(v) => {
                            scope_labels.insert(label_name(&format!("otel_scope_{}", kv.key)), v);
                        }
                        Err(e) => self.errors.push(format!("scope: {e}")),
                    }
                }
                scope_labels.insert("otel_scope_name".into(), scope.name.clone());
                scope_labels.insert("otel_scope_version".into(), scope.version.clone());
                // Empty for this exporter; Prometheus drops labels with an empty value.
                scope_labels.insert("otel_scope_schema_url".into(), sm.schema_url.clone());
                if let Some(job) = &job {
                    scope_labels.insert("job".into(), job.clone());
                }
                if let Some(instance) = &instance {
                    scope_labels.insert("instance".into(), instance.clone());
                }
                for m in sm.metrics {
                    let (kind, points) = match m.data {
                        Some(Data::Sum(s))
                            if s.aggregation_temporality
                                == AggregationTemporality::Cumulative as i32 =>
                        {
                            let kind = if s.is_monotonic {
                                Kind::Counter
                            } else {
                                Kind::Sum
                            };
                            (kind, s.data_points)
                        }
                        Some(Data::Gauge(g)) => (Kind::Gauge, g.data_points),
                        other => {
                            self.errors.push(format!(
                                "{}: not a cumulative sum or a gauge (the stand-in takes what \
                                 deltatocumulative hands on): {other:?}",
                                m.name
                            ));
                            continue;
                        }
                    };
                    let name = metric_name(&m.name, &m.unit, kind);
                    self.names.insert(m.name.clone(), name.clone());
                    for p in points {
                        self.point(&name, &m.description, kind, &scope_labels, p);
                    }
                }
            }
        }
    }

    fn point(&mut self, name: &str, help: &str, kind: Kind, base: &Labels, p: NumberDataPoint) {
        let mut labels = base.clone();
        for kv in &p.attributes {
            match attr_value(kv) {
                Ok(v) => {
                    labels.insert(label_name(&kv.key), v);
                }
                Err(e) => self.errors.push(format!("{name}: {e}")),
            }
        }
        let key = (name.to_string(), labels);
        // accumulator.go: a point flagged "no recorded value" removes the series; an older
        // point than the one kept is ignored.
        if p.flags & 1 != 0 {
            self.series.remove(&key);
            return;
        }
        if self
            .series
            .get(&key)
            .is_some_and(|s| p.time_unix_nano < s.time)
        {
            return;
        }
        let value = match p.value {
            Some(number_data_point::Value::AsInt(i)) => i as f64,
            Some(number_data_point::Value::AsDouble(d)) => d,
            None => f64::NAN,
        };
        if let Some(instance) = key.1.get("instance") {
            let t = self.latest.entry(instance.clone()).or_default();
            *t = (*t).max(p.time_unix_nano);
        }
        self.series.insert(
            key,
            Sample {
                help: help.to_string(),
                kind,
                value,
                time: p.time_unix_nano,
            },
        );
    }

    /// The page: `# HELP`, `# TYPE` and the samples of each family, `target_info` first
    /// (help "Target metadata", a gauge of 1), no timestamps.
    fn render(&self) -> String {
        fn line(out: &mut String, name: &str, labels: &Labels, value: f64) {
            let labels: Vec<String> = labels
                .iter()
                .map(|(k, v)| {
                    let v = v
                        .replace('\\', "\\\\")
                        .replace('"', "\\\"")
                        .replace('\n', "\\n");
                    format!("{k}=\"{v}\"")
                })
                .collect();
            let value = if value.is_nan() {
                "NaN".to_string()
            } else if value.is_infinite() {
                if value > 0.0 { "+Inf" } else { "-Inf" }.to_string()
            } else {
                value.to_string()
            };
            let _ = writeln!(out, "{name}{{{}}} {value}", labels.join(","));
        }
        let mut out = String::new();
        if !self.target_info.is_empty() {
            out.push_str("# HELP target_info Target metadata\n# TYPE target_info gauge\n");
            for labels in self.target_info.values() {
                line(&mut out, "target_info", labels, 1.0);
            }
        }
        let mut family = "";
        for ((name, labels), s) in &self.series {
            if name != family {
                let kind = if s.kind == Kind::Counter {
                    "counter"
                } else {
                    "gauge"
                };
                let help = s.help.replace('\\', "\\\\").replace('\n', "\\n");
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
                family = name;
            }
            line(&mut out, name, labels, s.value);
        }
        out
    }

    /// The sum of the samples of `name` whose labels include `having`.
    fn value(&self, name: &str, having: &[(&str, &str)]) -> Option<f64> {
        let v: Vec<f64> = self
            .series
            .iter()
            .filter(|((n, l), _)| {
                n == name
                    && having
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, s)| s.value)
            .collect();
        (!v.is_empty()).then(|| v.iter().sum())
    }
}

#[derive(Clone, Default)]
struct StandIn(Arc<Mutex<Page>>);

#[tonic::async_trait]
impl MetricsService for StandIn {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.0.lock().unwrap().accumulate(request.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse {
            partial_success: None,
        }))
    }
}

async fn page(
    axum::extract::State(s): axum::extract::State<StandIn>,
) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    let body = s.0.lock().unwrap().render();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}

/// The stand-in on `rt`: (OTLP gRPC address, page address). It stops with the runtime.
fn start_stand_in(rt: &tokio::runtime::Runtime, stand: &StandIn) -> (String, String) {
    let (grpc, http) = rt.block_on(async {
        (
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        )
    });
    let addrs = (
        grpc.local_addr().unwrap().to_string(),
        http.local_addr().unwrap().to_string(),
    );
    let svc = MetricsServiceServer::new(stand.clone());
    rt.spawn(async move {
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(grpc))
            .await
            .unwrap();
    });
    let router = axum::Router::new()
        .route("/metrics", axum::routing::get(page))
        .with_state(stand.clone());
    rt.spawn(async move {
        axum::serve(http, router).await.unwrap();
    });
    addrs
}

/// `prometheus_name` of every metric of `otel/registry` (OTLP name -> Prometheus name).
fn registry_names() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(root().join("otel/registry")).unwrap() {
        let path = entry.unwrap().path();
        let doc: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for g in doc["groups"].as_sequence().into_iter().flatten() {
            let (Some(m), Some(p)) = (
                g["metric_name"].as_str(),
                g["annotations"]["reaction_metrics_exporter"]["prometheus_name"].as_str(),
            ) else {
                continue;
            };
            out.insert(m.to_string(), p.to_string());
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// The workload

/// The phases, per host; they are written a few seconds apart.
fn phases() -> Vec<Vec<(&'static str, Ev)>> {
    use Ev::*;
    vec![
        vec![
            ("host1", Command("start", "iptables", 0)),
            ("host1", Command("start", "ip6tables", 2)),
            ("host1", Stream("ssh", "start")),
            ("host1", Stream("web.nginx", "start")),
            ("host1", Match("ssh", "failedlogin", "192.0.2.1", "root", 3)),
            (
                "host1",
                Match("web.nginx", "aiBots", "192.0.2.1", "curl/8.0", 1),
            ),
            ("host1", Match("ssh", "invaliduser", "198.51.100.7", "", 2)),
            (
                "host1",
                Match("web.nginx", "aiBots", "203.0.113.9", "GPTBot/1.0", 1),
            ),
            ("host2", Command("start", "iptables", 0)),
            ("host2", Stream("ssh", "start")),
        ],
        vec![
            (
                "host1",
                Match("ssh", "failedlogin", "192.0.2.1", "admin", 2),
            ),
            ("host1", Action("ssh", "failedlogin", "ban", "192.0.2.1")),
            (
                "host1",
                Match("ssh", "failedlogin", "198.51.100.7", "root", 1),
            ),
            (
                "host1",
                Match("web.nginx", "aiBots", "203.0.113.66", "EvilBot", 40),
            ),
            ("host1", Stream("ssh", "exit")),
            ("host1", Stream("web.nginx", "exec")),
            ("host2", Match("ssh", "failedlogin", "192.0.2.1", "root", 4)),
            (
                "host2",
                Match("web.nginx", "aiBots", "203.0.113.9", "GPTBot/1.0", 2),
            ),
        ],
        vec![
            ("host1", Match("ssh", "failedlogin", "192.0.2.1", "root", 1)),
            ("host1", Action("ssh", "invaliduser", "ban", "198.51.100.7")),
            (
                "host1",
                Match("ssh", "failedlogin", "192.0.2.50", "root", 25),
            ),
            ("host1", Action("ssh", "failedlogin", "ban", "192.0.2.50")),
            (
                "host1",
                Action("ssh", "failedlogin", "unban", "198.51.100.7"),
            ),
            ("host1", Stream("ssh", "read")),
            ("host1", Stream("web.nginx", "timeout")),
            ("host1", Command("stop", "iptables", 0)),
            ("host1", Command("stop", "iptables", 1)),
            ("host2", Action("ssh", "failedlogin", "ban", "192.0.2.1")),
        ],
    ]
}

/// reaction's status at the end: host2's is down (its socket removed in the last phase).
fn up_at_end(host: &str) -> f64 {
    if host == "host2" {
        0.0
    } else {
        1.0
    }
}

struct World {
    recs: Vec<Rec>,
    /// When the last line was appended to every log.
    last_line: f64,
}

impl World {
    /// The records of a family that the dashboard's selectors keep for `c`.
    fn select(&self, fam: Fam, c: &Combo) -> Vec<&Rec> {
        self.recs
            .iter()
            .filter(|r| r.fam == fam)
            .filter(|r| {
                let mut ok = c.keeps("instance", r.get("instance"));
                if matches!(fam, Fam::Match | Fam::Action | Fam::Pending | Fam::Stream) {
                    ok &= c.keeps("stream", r.get("stream"));
                }
                if matches!(fam, Fam::Match | Fam::Action | Fam::Pending) {
                    ok &= c.keeps("filter", r.get("filter")) && c.keeps("ip", r.get("ip"));
                }
                ok
            })
            .collect()
    }

    fn sum_by(&self, fam: Fam, c: &Combo, keys: &[&str], keep: impl Fn(&Rec) -> bool) -> Map {
        let mut out = Map::new();
        for r in self.select(fam, c).into_iter().filter(|r| keep(r)) {
            let key: Key = keys
                .iter()
                .map(|k| (k.to_string(), r.get(k).to_string()))
                .collect();
            *out.entry(key).or_default() += r.n;
        }
        out
    }

    fn total(&self, fam: Fam, c: &Combo, keep: impl Fn(&Rec) -> bool, zero: bool) -> Map {
        let v: f64 = self
            .select(fam, c)
            .into_iter()
            .filter(|r| keep(r))
            .map(|r| r.n)
            .sum();
        if v == 0.0 && !zero {
            Map::new()
        } else {
            Map::from([(vec![], v)])
        }
    }

    /// Distinct values of `of` per `per`, where there is more than one.
    fn distinct(&self, c: &Combo, per: &str, of: &[&str]) -> Map {
        let mut seen: BTreeMap<String, BTreeSet<Vec<String>>> = BTreeMap::new();
        for r in self.select(Fam::Match, c) {
            seen.entry(r.get(per).to_string())
                .or_default()
                .insert(of.iter().map(|k| r.get(k).to_string()).collect());
        }
        seen.into_iter()
            .filter(|(_, s)| s.len() > 1)
            .map(|(v, s)| (vec![(per.to_string(), v)], s.len() as f64))
            .collect()
    }

    /// (first, last) write time of the matches per (filter, instance, ip, stream).
    fn seen(&self, c: &Combo) -> BTreeMap<Key, (f64, f64)> {
        let mut out: BTreeMap<Key, (f64, f64)> = BTreeMap::new();
        for r in self.select(Fam::Match, c) {
            let key: Key = ["filter", "instance", "ip", "stream"]
                .iter()
                .map(|k| (k.to_string(), r.get(k).to_string()))
                .collect();
            let e = out.entry(key).or_insert((r.t, r.t));
            e.0 = e.0.min(r.t);
            e.1 = e.1.max(r.t);
        }
        out
    }
}

// ---------------------------------------------------------------------------------------
// What each panel must show

fn expectation(title: &str, ref_id: &str, w: &World, c: &Combo, step: i64, to: i64) -> Expect {
    use Expect::*;
    use Fam::*;
    let all = |_: &Rec| true;
    let hosts: Vec<&str> = HOSTS
        .iter()
        .copied()
        .filter(|h| c.keeps("instance", h))
        .collect();
    let per_host = |extra: &[(&str, &str)], value: &dyn Fn(&str) -> f64| -> Map {
        hosts
            .iter()
            .map(|h| {
                let mut k: Key = vec![("instance".to_string(), h.to_string())];
                k.extend(extra.iter().map(|(a, b)| (a.to_string(), b.to_string())));
                k.sort();
                (k, value(h))
            })
            .collect()
    };
    let errors = |r: &Rec| r.get("type") != "start";
    let failed = |r: &Rec| r.get("status") == "False";
    let tol = step as f64 + DELAY;
    match (title, ref_id) {
        ("reaction status", _) => Instant(per_host(&[], &up_at_end)),
        ("Last log line", _) => {
            let age = to as f64 - w.last_line;
            Within(
                per_host(&[], &|_| 0.0)
                    .into_keys()
                    .map(|k| (k, (age - DELAY, age + 0.5)))
                    .collect(),
            )
        }
        ("reaction version", _) => Instant(per_host(&[("version", "2.2.0")], &up_at_end)),
        ("Exporter version", _) => Instant(per_host(
            &[("service_version", env!("CARGO_PKG_VERSION"))],
            &|_| 1.0,
        )),
        ("Matches in range" | "Matches, last 365 days", _) => Instant(w.total(Match, c, all, false)),
        ("Actions in range" | "Actions, last 365 days", _) => Instant(w.total(Action, c, all, false)),
        ("Stream errors in range" | "Stream errors, last 365 days", _) => {
            Instant(w.total(Stream, c, errors, true))
        }
        ("Failed commands in range" | "Failed commands, last 365 days", _) => {
            Instant(w.total(Command, c, failed, true))
        }
        ("IPs matched in range" | "IPs matched, last 365 days", _) => {
            let ips: BTreeSet<&str> = w
                .select(Match, c)
                .into_iter()
                .map(|r| r.get("ip"))
                .collect();
            Instant(if ips.is_empty() {
                Map::new()
            } else {
                Map::from([(vec![], ips.len() as f64)])
            })
        }
        ("Actions by filter and action", _) => {
            Instant(w.sum_by(Action, c, &["action", "filter", "instance", "stream"], all))
        }
        ("Pending actions", _) => Instant(w.total(Pending, c, all, true)),
        ("Pending actions by filter and action", _) => {
            Instant(w.sum_by(Pending, c, &["action", "filter", "instance", "stream"], all))
        }
        ("Pending actions over time", _) => Last(w.sum_by(Pending, c, &["instance"], all)),
        ("Matches, running total", _) => Last(w.sum_by(Match, c, &["instance"], all)),
        ("Actions, running total", _) => Last(w.sum_by(Action, c, &["instance"], all)),
        ("Matches per interval", _) => Sum(w.sum_by(Match, c, &["instance"], all)),
        ("Actions per interval", _) => Sum(w.sum_by(Action, c, &["instance"], all)),
        ("Matches by filter and instance" | "Matches by filter and instance, last 365 days", _) => {
            Instant(w.sum_by(Match, c, &["filter", "instance", "stream"], all))
        }
        ("Matches by filter, running total", _) => {
            Last(w.sum_by(Match, c, &["filter", "instance", "stream"], all))
        }
        ("Stream events", _) => Sum(w.sum_by(Stream, c, &["instance", "stream", "type"], all)),
        ("Commands", _) => Sum(w.sum_by(
            Command,
            c,
            &["code", "command", "instance", "state", "status"],
            all,
        )),
        ("Stream errors", _) => Instant(w.sum_by(Stream, c, &["instance", "stream", "type"], errors)),
        ("Failed commands", _) => Instant(w.sum_by(
            Command,
            c,
            &["code", "command", "instance", "state"],
            failed,
        )),
        ("Top IPs by matches" | "Top IPs by matches, last 365 days", _) => {
            Instant(w.sum_by(Match, c, &["ip"], all))
        }
        ("Top IPs by actions" | "Top IPs by actions, last 365 days", _) => {
            Instant(w.sum_by(Action, c, &["action", "ip"], all))
        }
        ("IPs seen in several filters" | "IPs seen in several filters, last 365 days", _) => {
            Instant(w.distinct(c, "ip", &["stream", "filter"]))
        }
        ("IPs seen on several instances", _) => Instant(w.distinct(c, "ip", &["instance"])),
        ("Where and when IPs matched", "A") => {
            Instant(w.sum_by(Match, c, &["filter", "instance", "ip", "stream"], all))
        }
        // First match: the start of the interval that holds its sample, which arrives
        // within DELAY of the line.
        ("Where and when IPs matched", "B") => Within(
            w.seen(c)
                .into_iter()
                .map(|(k, (first, _))| (k, (1000.0 * (first - tol), 1000.0 * (first + DELAY))))
                .collect(),
        ),
        // Last match: the end of that interval.
        ("Where and when IPs matched", "C") => Within(
            w.seen(c)
                .into_iter()
                .map(|(k, (_, last))| (k, (1000.0 * (last - 1.0), 1000.0 * (last + tol))))
                .collect(),
        ),
        ("Lifetime distribution", _) => Within(
            w.seen(c)
                .into_iter()
                .map(|(k, (first, last))| (k, (last - first - tol, last - first + tol)))
                .collect(),
        ),
        ("Average lifetime per instance", _) => {
            let mut per: BTreeMap<String, Vec<f64>> = BTreeMap::new();
            for (k, (first, last)) in w.seen(c) {
                let inst = k.iter().find(|(n, _)| n == "instance").unwrap().1.clone();
                per.entry(inst).or_default().push(last - first);
            }
            LastWithin(
                per.into_iter()
                    .map(|(i, v)| {
                        let avg = v.iter().sum::<f64>() / v.len() as f64;
                        (vec![("instance".to_string(), i)], (avg - tol, avg + tol))
                    })
                    .collect(),
            )
        }
        _ => panic!(
            "no expectation for the panel {title:?} (query {ref_id}): add one to tests/dashboards_otel_e2e.rs"
        ),
    }
}

// ---------------------------------------------------------------------------------------
// Comparing results

// ---------------------------------------------------------------------------------------
// Prometheus

struct Prometheus {
    addr: String,
    /// The job of [`Prometheus::last_scrape`].
    job: String,
    server: tools::Prometheus,
}

impl Prometheus {
    /// Scraping the stand-in's page every second, keeping its job and instance labels.
    fn start(dir: &Path, target: &str) -> Prometheus {
        Prometheus::start_with(
            dir,
            JOB,
            &format!(
                "  - job_name: {JOB}\n    honor_labels: true\n    static_configs:\n      \
                 - targets: ['{target}']\n"
            ),
        )
    }

    /// Scraping every second with `scrape_configs` (YAML, indented as under the key),
    /// `job` being the one whose scrapes [`Prometheus::last_scrape`] sees; its files in
    /// `dir/<job>`.
    fn start_with(dir: &Path, job: &str, scrape_configs: &str) -> Prometheus {
        let server = tools::Prometheus::start(
            &dir.join(job),
            &format!(
                "global:\n  scrape_interval: {SCRAPE}s\n  scrape_timeout: {SCRAPE}s\n  \
                 evaluation_interval: {SCRAPE}s\nscrape_configs:\n{scrape_configs}"
            ),
        );
        Prometheus {
            addr: server.addr.clone(),
            job: job.to_string(),
            server,
        }
    }

    fn query(&self, expr: &str, time: i64) -> Value {
        api(
            &self.addr,
            "/api/v1/query",
            &[("query", expr.to_string()), ("time", time.to_string())],
        )
    }

    fn query_range(&self, expr: &str, start: i64, end: i64, step: i64) -> Value {
        api(
            &self.addr,
            "/api/v1/query_range",
            &[
                ("query", expr.to_string()),
                ("start", start.to_string()),
                ("end", end.to_string()),
                ("step", step.to_string()),
            ],
        )
    }

    /// The time of the latest successful scrape of every target of its job (the oldest of
    /// their latest scrapes).
    fn last_scrape(&self) -> Option<f64> {
        let r = self.query(
            &format!("min(timestamp(up{{job=\"{}\"}} == 1))", self.job),
            now().ceil() as i64 + 1,
        );
        r["data"]["result"]
            .as_array()?
            .first()
            .map(|s| num(&s["value"][1]))
    }
}

/// Every query of the dashboard on `prometheus` (whose data comes from `source`), for every
/// selection of the variables and step: (queries evaluated, failures).
fn evaluate_dashboard(
    prometheus: &Prometheus,
    source: &str,
    world: &World,
    from: i64,
    to: i64,
) -> (usize, Vec<String>) {
    let mut failures: Vec<String> = Vec::new();
    let mut evaluated = 0usize;
    let dashboard = load_json(DASHBOARD);
    let mut done: HashSet<(String, bool, i64)> = HashSet::new();
    for combo in combos() {
        let vars = combo.vars();
        let (n, wrong) = check_panel_queries(
            &dashboard,
            &combo,
            (from, to),
            &mut done,
            |expr, step| match step {
                None => prometheus.query(expr, to),
                Some(step) => prometheus.query_range(expr, from, to, step),
            },
            |q, step| expectation(&q.panel, &q.ref_id, world, &combo, step, to),
            |q, step, expr| {
                format!(
                    "{DASHBOARD}, panel {:?} ({}), variables {:?}, step {step}s:\n    {expr}",
                    q.panel, q.ref_id, combo.name
                )
            },
        );
        evaluated += n;
        failures.extend(wrong);
        // The variables' own queries.
        let (n, wrong) = check_variable_queries(
            &prometheus.addr,
            &dashboard,
            (from, to, SCRAPE),
            &vars,
            &format!("{DASHBOARD}, variables {:?}", combo.name),
            |label| match label {
                "instance" => HOSTS.iter().map(|h| h.to_string()).collect(),
                l => world
                    .select(Fam::Match, &combo.for_variable(l))
                    .into_iter()
                    .map(|r| r.get(l).to_string())
                    .collect(),
            },
        );
        evaluated += n;
        failures.extend(wrong);
    }

    for f in failures.iter_mut() {
        f.insert_str(0, &format!("[{source}] "));
    }
    (evaluated, failures)
}

// ---------------------------------------------------------------------------------------
// The test

#[test]
fn otel_dashboard_queries_on_real_prometheus_behind_a_collector_stand_in() {
    let begun = Instant::now();
    // Fail early, with the package to install, when Prometheus is missing.
    tool("prometheus", "prometheus");

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let stand = StandIn::default();
    let (grpc, page_addr) = start_stand_in(&rt, &stand);
    let prometheus = Prometheus::start(dir, &page_addr);

    // Two hosts: a log file, a reaction CLI fixture and an exporter pushing to the
    // stand-in each.
    let mut hosts = BTreeMap::new();
    for host in HOSTS {
        let hd = dir.join(host);
        std::fs::create_dir_all(&hd).unwrap();
        let r = Reaction::new(&hd, &reaction_config());
        if host == "host1" {
            r.set_state(show_state());
        }
        let log = hd.join("reaction.log");
        append(&log, "");
        // `/metrics/otel` keeps the `ip` pattern label, which the dashboard's IP panels use.
        let config = file_config(
            &log,
            &r,
            &format!(
                "metrics:\n  otel_endpoint:\n    enabled: true\n    patterns: [ip]\n\
                 otlp:\n  endpoint: http://{grpc}\n  interval: 1\n  timeout: 2\n  \
                 temporality: cumulative\n  instance_id: {host}\n"
            ),
        );
        let exporter = Exporter::start(&hd, &config);
        hosts.insert(host, (log, r, exporter));
    }
    // A second Prometheus scrapes the exporters' `/metrics/otel` directly, as the
    // `reaction-otel` job of collector-configs/prometheus.yml does, `instance` set to the
    // host's name (as that job's relabelling does).
    let mut endpoint_job = format!(
        "  - job_name: {ENDPOINT_JOB}\n    metrics_path: /metrics/otel\n    static_configs:\n"
    );
    for host in HOSTS {
        let _ = write!(
            endpoint_job,
            "      - targets: ['{}']\n        labels:\n          instance: {host}\n",
            hosts[host].2.addr
        );
    }
    let endpoint_prometheus = Prometheus::start_with(dir, ENDPOINT_JOB, &endpoint_job);
    let stand_value = |name: &str, having: &[(&str, &str)]| -> Option<f64> {
        stand.0.lock().unwrap().value(name, having)
    };
    // Both exporters have pushed, and Prometheus has scraped it.
    let t_ready = common::wait_for(Duration::from_secs(30), "the first pushes", || {
        HOSTS
            .iter()
            .all(|h| stand_value("reaction_up", &[("instance", h)]).is_some())
            .then(now)
    });
    for p in [&prometheus, &endpoint_prometheus] {
        common::wait_for(Duration::from_secs(30), "a first scrape", || {
            p.last_scrape().filter(|t| *t > t_ready)
        });
    }

    // The workload, in three phases 3 s apart; host2's reaction is down at the end.
    let t_start = now();
    let mut world = World {
        recs: Vec::new(),
        last_line: 0.0,
    };
    for (i, phase) in phases().iter().enumerate() {
        if i > 0 {
            std::thread::sleep(Duration::from_secs(3));
        }
        for host in HOSTS {
            let text: String = phase
                .iter()
                .filter(|(h, _)| *h == host)
                .map(|(_, ev)| lines(ev))
                .collect();
            let t = now();
            append(&hosts[host].0, &text);
            for (h, ev) in phase.iter().filter(|(h, _)| *h == host) {
                world.recs.push(rec(h, ev, t));
            }
        }
    }
    hosts["host2"].1.set_up(false);
    for (ip, _user, n) in PENDING {
        let ev = Ev::Action("ssh", "failedlogin", "unban", ip);
        let mut r = rec("host1", &ev, t_start);
        r.fam = Fam::Pending;
        r.n = n as f64;
        world.recs.push(r);
    }
    world.last_line = now();
    for host in HOSTS {
        append(&hosts[host].0, LAST_LINE);
    }
    let mut counted = BTreeMap::new();
    for host in HOSTS {
        hosts[host]
            .2
            .wait_log(LAST_LINE_WARNING, Duration::from_secs(30));
        counted.insert(host, (now() * 1e9) as u64);
    }

    // Everything is on the page once each exporter has pushed a collection made after it
    // counted its last line, and reaction's status has settled; in Prometheus after the
    // next scrape.
    let t_complete = common::wait_for(Duration::from_secs(30), "the last pushes", || {
        let page = stand.0.lock().unwrap();
        let done = HOSTS.iter().all(|h| {
            page.latest.get(*h).is_some_and(|t| *t > counted[h])
                && page.value("reaction_up", &[("instance", h)]) == Some(up_at_end(h))
        });
        done.then(now)
    });
    // `/metrics/otel` has everything at the first scrape after that (each scrape asks
    // reaction's status and folds what was counted).
    let last = [&prometheus, &endpoint_prometheus]
        .iter()
        .map(|p| {
            common::wait_for(
                Duration::from_secs(30),
                "a scrape after the workload",
                || p.last_scrape().filter(|t| *t > t_complete),
            )
        })
        .fold(0.0, f64::max);
    let from = (t_start as i64 / ALIGN) * ALIGN;
    let to = ((last + 1.0) as i64 / ALIGN + 1) * ALIGN;
    while now() < to as f64 + 1.5 {
        std::thread::sleep(Duration::from_millis(200));
    }
    let workload_done = begun.elapsed();

    let mut failures: Vec<String> = Vec::new();
    let mut evaluated = 0usize;

    // The stand-in took everything, and named it as otel/registry documents.
    {
        let page = stand.0.lock().unwrap();
        failures.extend(page.errors.iter().map(|e| format!("the stand-in: {e}")));
        let documented = registry_names();
        for (otlp, prom) in &page.names {
            if documented.get(otlp) != Some(prom) {
                failures.push(format!(
                    "the stand-in names {otlp} `{prom}`, otel/registry says {:?}",
                    documented.get(otlp)
                ));
            }
        }
        for family in [
            "reaction.filter.matches",
            "reaction.action.runs",
            "reaction.action.pending",
            "reaction.command.runs",
            "reaction.stream.events",
            "reaction.up",
            "reaction.exporter.last_event.time",
        ] {
            if !page.names.contains_key(family) {
                failures.push(format!("the stand-in never received {family}"));
            }
        }
    }

    // ------------------------------------------------------------------ the dashboard
    // On both: behind the Collector stand-in, and scraping /metrics/otel.
    for (p, source) in [
        (&prometheus, "the Collector stand-in"),
        (&endpoint_prometheus, "/metrics/otel"),
    ] {
        let (n, f) = evaluate_dashboard(p, source, &world, from, to);
        evaluated += n;
        failures.extend(f);
    }

    for p in [&prometheus, &endpoint_prometheus] {
        let logs = p.server.logs();
        assert!(
            !logs.contains("panic"),
            "Prometheus logged a panic:\n{logs}"
        );
    }
    eprintln!(
        "dashboards_otel_e2e: range {from}..{to} ({} s), {evaluated} queries, workload and scrapes {:.1} s, total {:.1} s",
        to - from,
        workload_done.as_secs_f64(),
        begun.elapsed().as_secs_f64()
    );
    if !failures.is_empty() {
        let page = stand.0.lock().unwrap().render();
        panic!(
            "{} of {evaluated} checks failed:\n\n{}\n\nThe stand-in's page at the end:\n{page}",
            failures.len(),
            failures.join("\n\n")
        );
    }
    drop(hosts);
    drop(prometheus);
    drop(endpoint_prometheus);
    rt.shutdown_timeout(Duration::from_secs(5));
}
