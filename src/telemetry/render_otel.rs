//! The `/metrics/otel` page: the cumulative totals named and shaped as an OpenTelemetry
//! Collector's `prometheus` exporter shows them, so that `dashboards/reaction-otel.json`
//! works on it unchanged, in OpenMetrics 1.0 or Prometheus text 0.0.4.
//!
//! The Collector's rules, as applied here (opentelemetry-collector-contrib
//! `exporter/prometheusexporter`, `collector.go`; names by prometheus/otlptranslator
//! `metric_namer.go`, labels by `label_namer.go`):
//! - names: the instrument name's words joined by `_`, the unit's word appended (`s` ->
//!   `seconds`, `By` -> `bytes`; a unit in braces such as `{match}` is dropped), `_total`
//!   on monotonic counters, `_ratio` on gauges of unit `1`;
//! - labels: the attributes, every character other than a letter, digit or `_` turned into
//!   `_`, a leading digit prefixed with `key_`;
//! - HELP: the instrument's description; counters are `counter`, the rest `gauge`;
//! - the resource: one `target_info` of value 1 with its attributes but `service.name`,
//!   `service.namespace` and `service.instance.id` (the Collector turns those into `job`
//!   and `instance`; here the scraping Prometheus sets `job` and `instance` itself, and
//!   labels of those names on the page would become `exported_job`/`exported_instance`);
//! - no `otel_scope_*` labels (the Collector's `without_scope_info: true`: nothing uses them
//!   and they would make every series longer), no timestamps.
//!
//! Differences, chosen: OpenMetrics counters carry `_created` (the Collector knows the start
//! time but its handler does not write it in text), `target_info` comes first (OpenMetrics'
//! SHOULD; client_golang sorts it among the others), and `process.open_file_descriptor.count`
//! is left out (its Collector name, `..._count`, is refused by `promtool check metrics`).

use std::fmt::Write as _;
use std::time::UNIX_EPOCH;

use super::collect::Attrs;
use super::cumulative::Totals;
use super::render::ExpositionFormat;
use crate::metric::{Kind, Metric};

/// The resource attributes that are not `target_info` labels.
const NOT_TARGET_LABELS: [&str; 3] = ["service.name", "service.namespace", "service.instance.id"];

/// Whether a metric is on `/metrics/otel`.
pub(crate) fn shown(m: Metric) -> bool {
    m != Metric::OpenFileDescriptors
}

/// Whether the Collector shows a metric as a counter (a monotonic sum).
fn is_counter(m: Metric) -> bool {
    matches!(
        m.spec().kind,
        Kind::Counter | Kind::ObservableCounter(_) | Kind::ObservableCounterF64(_)
    )
}

/// A metric's name on `/metrics/otel`, by the Collector's rules (module documentation).
pub fn prometheus_name(m: Metric) -> String {
    let spec = m.spec();
    let words = |s: &str| -> Vec<String> {
        s.split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_string)
            .collect()
    };
    let mut tokens = words(spec.otel);
    let unit = match spec.unit {
        u if u.contains(['{', '}']) => "",
        "s" => "seconds",
        "ms" => "milliseconds",
        "By" => "bytes",
        "1" => "",
        "%" => "percent",
        u => u,
    };
    for w in words(unit) {
        if !tokens.contains(&w) {
            tokens.push(w);
        }
    }
    if is_counter(m) {
        tokens.retain(|t| t != "total");
        tokens.push("total".into());
    } else if spec.unit == "1" {
        tokens.retain(|t| t != "ratio");
        tokens.push("ratio".into());
    }
    let mut name = tokens.join("_");
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, '_');
    }
    name
}

/// An attribute key as a label name (`label_namer.go`).
fn label_name(out: &mut String, key: &str) {
    if key.starts_with(|c: char| c.is_ascii_digit()) {
        out.push_str("key_");
    }
    out.extend(key.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        }
    }));
}

/// `{k="v",...}` with the labels sorted by name (as client_golang writes them), or nothing.
fn labels<'a>(out: &mut String, attrs: impl IntoIterator<Item = (&'a str, &'a str)>) {
    let mut named: Vec<(String, &str)> = attrs
        .into_iter()
        .map(|(k, v)| {
            let mut n = String::with_capacity(k.len());
            label_name(&mut n, k);
            (n, v)
        })
        .collect();
    if named.is_empty() {
        return;
    }
    named.sort_unstable();
    out.push('{');
    for (i, (k, v)) in named.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push_str("=\"");
        escape(out, v, true);
        out.push('"');
    }
    out.push('}');
}

/// Label values escape `\`, `"` and newlines; HELP text `\` and newlines, and `"` too in
/// OpenMetrics (`quote`).
fn escape(out: &mut String, v: &str, quote: bool) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

fn float(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{v}");
    }
}

/// `# TYPE` and `# HELP` (OpenMetrics order and family name) or `# HELP` and `# TYPE`.
fn header(out: &mut String, name: &str, help: &str, ty: &str, format: ExpositionFormat) {
    let om = format == ExpositionFormat::OpenMetrics;
    let family = match (om, ty) {
        (true, "counter") => name.strip_suffix("_total").unwrap_or(name),
        (true, "info") => name.strip_suffix("_info").unwrap_or(name),
        _ => name,
    };
    let mut help_line = format!("# HELP {family} ");
    escape(&mut help_line, help, om);
    help_line.push('\n');
    let type_line = format!("# TYPE {family} {ty}\n");
    if om {
        out.push_str(&type_line);
        out.push_str(&help_line);
    } else {
        out.push_str(&help_line);
        out.push_str(&type_line);
    }
}

/// The page of `totals` in `format`.
pub fn render(totals: &Totals, format: ExpositionFormat) -> String {
    let om = format == ExpositionFormat::OpenMetrics;
    let series = totals.ints.len() + totals.floats.len() + totals.gauges.len();
    let mut out = String::with_capacity(1024 + series * if om { 160 } else { 96 });

    // The resource.
    let mut target: Vec<(String, String)> = Vec::new();
    for (k, v) in &totals.resource {
        if NOT_TARGET_LABELS.contains(&k) {
            continue;
        }
        // Keys that become the same label name: values joined with `;` (collector.go).
        let mut name = String::new();
        label_name(&mut name, k);
        match target.iter_mut().find(|(n, _)| *n == name) {
            Some((_, val)) => {
                val.push(';');
                val.push_str(v);
            }
            None => target.push((name, v.to_string())),
        }
    }
    header(
        &mut out,
        "target_info",
        "Target metadata",
        if om { "info" } else { "gauge" },
        format,
    );
    out.push_str("target_info");
    labels(
        &mut out,
        target.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    );
    out.push_str(" 1\n");

    let created = totals
        .start
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_millis() as f64 / 1000.0);
    let mut families: Vec<(String, Metric)> = Metric::ALL
        .iter()
        .filter(|m| shown(**m))
        .map(|m| (prometheus_name(*m), *m))
        .collect();
    families.sort_unstable();
    for (name, m) in families {
        let counter = is_counter(m);
        // (labels, value) of each series, sorted by labels.
        let mut rows: Vec<(String, String)> = Vec::new();
        let mut push = |attrs: &Attrs, value: &dyn Fn(&mut String)| {
            let mut l = String::new();
            labels(&mut l, attrs);
            let mut v = String::new();
            value(&mut v);
            rows.push((l, v));
        };
        if counter {
            for ((_, a), v) in totals.ints.iter().filter(|(k, _)| k.0 == m) {
                push(a, &|s| {
                    let _ = write!(s, "{v}");
                });
            }
            for ((_, a), v) in totals.floats.iter().filter(|(k, _)| k.0 == m) {
                push(a, &|s| float(s, *v));
            }
        } else {
            for ((_, a), v) in totals.gauges.iter().filter(|(k, _)| k.0 == m) {
                push(a, &|s| float(s, *v));
            }
        }
        if rows.is_empty() {
            continue;
        }
        rows.sort_unstable();
        let spec = m.spec();
        header(
            &mut out,
            &name,
            spec.description,
            if counter { "counter" } else { "gauge" },
            format,
        );
        let base = name.strip_suffix("_total").unwrap_or(&name);
        for (l, v) in &rows {
            out.push_str(&name);
            out.push_str(l);
            out.push(' ');
            out.push_str(v);
            out.push('\n');
            if counter && om {
                out.push_str(base);
                out.push_str("_created");
                out.push_str(l);
                out.push(' ');
                float(&mut out, created);
                out.push('\n');
            }
        }
    }
    if om {
        out.push_str("# EOF\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    use crate::telemetry::collect::attrs_of as a;

    #[test]
    fn names_as_the_collector_gives_them() {
        let n = |m| prometheus_name(m);
        assert_eq!(n(Metric::Matches), "reaction_filter_matches_total");
        assert_eq!(n(Metric::ActionRuns), "reaction_action_runs_total");
        assert_eq!(n(Metric::PendingActions), "reaction_action_pending");
        assert_eq!(n(Metric::CommandRuns), "reaction_command_runs_total");
        assert_eq!(n(Metric::StreamEvents), "reaction_stream_events_total");
        assert_eq!(n(Metric::Up), "reaction_up");
        assert_eq!(
            n(Metric::LastEventTime),
            "reaction_exporter_last_event_time_seconds"
        );
        assert_eq!(n(Metric::CpuTime), "process_cpu_time_seconds_total");
        assert_eq!(n(Metric::MemoryUsage), "process_memory_usage_bytes");
        assert!(!shown(Metric::OpenFileDescriptors));
    }

    fn totals() -> Totals {
        let mut t = Totals {
            start: SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_250),
            resource: a(&[
                ("service.name", "reaction-metrics-exporter"),
                ("service.instance.id", "host1"),
                ("service.version", "0.1.0"),
                ("telemetry.sdk.name", "opentelemetry"),
            ]),
            ..Totals::default()
        };
        t.ints.insert(
            (Metric::Matches, a(&[("stream", "ssh"), ("filter", "fail")])),
            7,
        );
        t.ints
            .insert((Metric::Matches, a(&[("otel.metric.overflow", "true")])), 1);
        t.floats.insert((Metric::CpuTime, Attrs::new()), 0.25);
        t.gauges
            .insert((Metric::Up, a(&[("version", "2.\"2\"")])), 1.0);
        t
    }

    #[test]
    fn text_page_exactly() {
        assert_eq!(
            render(&totals(), ExpositionFormat::Text),
            "# HELP target_info Target metadata\n\
             # TYPE target_info gauge\n\
             target_info{service_version=\"0.1.0\",telemetry_sdk_name=\"opentelemetry\"} 1\n\
             # HELP process_cpu_time_seconds_total CPU time used by the exporter.\n\
             # TYPE process_cpu_time_seconds_total counter\n\
             process_cpu_time_seconds_total 0.25\n\
             # HELP reaction_filter_matches_total Matches of a reaction filter, by stream, filter and pattern values.\n\
             # TYPE reaction_filter_matches_total counter\n\
             reaction_filter_matches_total{filter=\"fail\",stream=\"ssh\"} 7\n\
             reaction_filter_matches_total{otel_metric_overflow=\"true\"} 1\n\
             # HELP reaction_up 1 when `reaction show` answers, 0 otherwise, with reaction's version (N/A if unknown).\n\
             # TYPE reaction_up gauge\n\
             reaction_up{version=\"2.\\\"2\\\"\"} 1\n"
        );
    }

    #[test]
    fn openmetrics_page_exactly() {
        assert_eq!(
            render(&totals(), ExpositionFormat::OpenMetrics),
            "# TYPE target info\n\
             # HELP target Target metadata\n\
             target_info{service_version=\"0.1.0\",telemetry_sdk_name=\"opentelemetry\"} 1\n\
             # TYPE process_cpu_time_seconds counter\n\
             # HELP process_cpu_time_seconds CPU time used by the exporter.\n\
             process_cpu_time_seconds_total 0.25\n\
             process_cpu_time_seconds_created 1700000000.25\n\
             # TYPE reaction_filter_matches counter\n\
             # HELP reaction_filter_matches Matches of a reaction filter, by stream, filter and pattern values.\n\
             reaction_filter_matches_total{filter=\"fail\",stream=\"ssh\"} 7\n\
             reaction_filter_matches_created{filter=\"fail\",stream=\"ssh\"} 1700000000.25\n\
             reaction_filter_matches_total{otel_metric_overflow=\"true\"} 1\n\
             reaction_filter_matches_created{otel_metric_overflow=\"true\"} 1700000000.25\n\
             # TYPE reaction_up gauge\n\
             # HELP reaction_up 1 when `reaction show` answers, 0 otherwise, with reaction's version (N/A if unknown).\n\
             reaction_up{version=\"2.\\\"2\\\"\"} 1\n\
             # EOF\n"
        );
    }

    #[test]
    fn label_names_like_the_collector() {
        let mut s = String::new();
        label_name(&mut s, "1ip");
        s.push(' ');
        label_name(&mut s, "a.b-c");
        assert_eq!(s, "key_1ip a_b_c");
    }
}
