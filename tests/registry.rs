//! The semantic-convention registry in `otel/` (Weaver format) against the code.
//!
//! Weaver cannot be installed here, so this test does what `weaver registry check` would
//! not: it compares the registry with the metric table (`metric::Metric`, from which every
//! instrument is created).
//! - every metric of the table has a metric of the same name, instrument, unit, brief (the
//!   instrument's description) and attributes, and the registry has no other metric;
//! - every attribute referenced is defined once, and every defined attribute is used;
//! - the legacy and Prometheus names in the registry's annotations and in otel/README.md
//!   are the code's legacy names and the Collector's translation of the OTel names.
//!
//! That what a real `Telemetry` collects (names, units, kinds, attribute keys) is what the
//! table says is a unit test beside it (`telemetry::tests`): together, collected = table =
//! registry.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_yaml::Value;

use reaction_metrics_exporter::metric::{Kind, Legacy, Metric, Spec};

/// The template attribute standing for the pattern attributes.
const TEMPLATE: &str = "reaction.pattern";
/// Where the annotations of this project live in a metric group.
const ANNOTATION: &str = "reaction_metrics_exporter";

fn otel_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("otel")
}

// ---------------------------------------------------------------------------------------
// Loading the registry (plain serde_yaml::Value walking, no schema types)

#[derive(Debug, Clone)]
struct AttrDef {
    file: String,
    group: String,
    /// `string`, `template[string]`, `enum`, ...
    ty: String,
}

#[derive(Debug, Clone)]
struct AttrRef {
    key: String,
    requirement_level: Option<Value>,
}

#[derive(Debug, Clone)]
struct MetricDef {
    file: String,
    group: String,
    name: String,
    instrument: String,
    unit: String,
    brief: String,
    attributes: Vec<AttrRef>,
    annotations: Value,
}

impl MetricDef {
    fn annotation(&self, key: &str) -> Option<&Value> {
        self.annotations.get(ANNOTATION).and_then(|a| a.get(key))
    }
    fn annotation_str(&self, key: &str) -> String {
        match self.annotation(key) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Bool(b)) => b.to_string(),
            Some(other) => format!("{other:?}"),
            None => "<missing>".into(),
        }
    }
    fn value_type(&self) -> String {
        self.annotations
            .get("code_generation")
            .and_then(|c| c.get("metric_value_type"))
            .and_then(Value::as_str)
            .unwrap_or("<missing>")
            .to_string()
    }
    fn fixed_keys(&self) -> Vec<&str> {
        self.attributes
            .iter()
            .map(|a| a.key.as_str())
            .filter(|k| *k != TEMPLATE)
            .collect()
    }
    fn has_template(&self) -> bool {
        self.attributes.iter().any(|a| a.key == TEMPLATE)
    }
}

#[derive(Debug, Default)]
struct Registry {
    metrics: Vec<MetricDef>,
    attributes: BTreeMap<String, Vec<AttrDef>>,
    group_ids: Vec<(String, String)>,
    /// Problems found while reading (a field of the wrong type, a missing field).
    problems: Vec<String>,
}

impl Registry {
    fn metric(&self, name: &str) -> Option<&MetricDef> {
        self.metrics.iter().find(|m| m.name == name)
    }
    fn attr(&self, key: &str) -> Option<&AttrDef> {
        self.attributes.get(key).and_then(|v| v.first())
    }
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            yaml_files(&p, out);
        } else if matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("yaml") | Some("yml")
        ) {
            out.push(p);
        }
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => format!("{other:?}"),
    }
}

fn load() -> Registry {
    let mut files = Vec::new();
    yaml_files(&otel_dir().join("registry"), &mut files);
    assert!(!files.is_empty(), "no YAML file under otel/registry");
    let mut reg = Registry::default();
    for path in files {
        let file = path
            .strip_prefix(otel_dir())
            .unwrap_or(&path)
            .display()
            .to_string();
        let text = std::fs::read_to_string(&path).expect("read registry file");
        let doc: Value = serde_yaml::from_str(&text)
            .unwrap_or_else(|e| panic!("otel/{file} is not valid YAML: {e}"));
        let Some(groups) = doc.get("groups").and_then(Value::as_sequence) else {
            reg.problems.push(format!("otel/{file}: no `groups` list"));
            continue;
        };
        for g in groups {
            let gid = g
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let where_ = format!("otel/{file}, group `{gid}`");
            if gid.is_empty() {
                reg.problems
                    .push(format!("otel/{file}: a group has no `id`"));
            }
            reg.group_ids.push((gid.clone(), file.clone()));
            let ty = g.get("type").and_then(Value::as_str).unwrap_or("");
            match ty {
                "attribute_group" => load_attribute_group(&mut reg, g, &file, &gid, &where_),
                "metric" => load_metric(&mut reg, g, &file, &gid, &where_),
                other => reg.problems.push(format!(
                    "{where_}: type `{other}` (expected metric or attribute_group)"
                )),
            }
        }
    }
    reg
}

fn str_field(reg: &mut Registry, g: &Value, key: &str, where_: &str) -> String {
    match g.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
        _ => {
            reg.problems.push(format!(
                "{where_}: `{key}` missing or not a non-empty string"
            ));
            String::new()
        }
    }
}

fn load_attribute_group(reg: &mut Registry, g: &Value, file: &str, gid: &str, where_: &str) {
    str_field(reg, g, "brief", where_);
    let Some(attrs) = g.get("attributes").and_then(Value::as_sequence) else {
        reg.problems
            .push(format!("{where_}: attribute group without `attributes`"));
        return;
    };
    for a in attrs {
        if a.get("ref").is_some() {
            reg.problems.push(format!(
                "{where_}: attribute groups here define attributes; `ref` belongs in metrics"
            ));
            continue;
        }
        let key = a
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let w = format!("{where_}, attribute `{key}`");
        if key.is_empty() {
            reg.problems
                .push(format!("{where_}: an attribute has no `id`"));
            continue;
        }
        str_field(reg, a, "brief", &w);
        let stability = str_field(reg, a, "stability", &w);
        check_stability(reg, &stability, &w);
        if a.get("requirement_level").is_some() {
            reg.problems.push(format!(
                "{w}: the requirement level is set where the attribute is referenced, not here"
            ));
        }
        // The values (enum members or examples) are checked for presence only.
        let (ty, _values) = match a.get("type") {
            Some(Value::String(t)) => {
                let examples: Vec<String> = match a.get("examples") {
                    Some(Value::Sequence(s)) => s.iter().map(scalar).collect(),
                    Some(v @ (Value::String(_) | Value::Number(_) | Value::Bool(_))) => {
                        vec![scalar(v)]
                    }
                    _ => Vec::new(),
                };
                if examples.is_empty() {
                    reg.problems.push(format!("{w}: no `examples`"));
                }
                (t.clone(), examples)
            }
            Some(Value::Mapping(m)) => {
                let members = m
                    .get(Value::from("members"))
                    .and_then(Value::as_sequence)
                    .cloned()
                    .unwrap_or_default();
                if members.is_empty() {
                    reg.problems.push(format!(
                        "{w}: an enum type needs a non-empty `members` list"
                    ));
                }
                let mut values = Vec::new();
                for m in &members {
                    let mid = m.get("id").and_then(Value::as_str).unwrap_or("");
                    let mw = format!("{w}, member `{mid}`");
                    if mid.is_empty() {
                        reg.problems.push(format!("{w}: a member has no `id`"));
                    }
                    match m.get("value") {
                        Some(v @ Value::String(_)) => values.push(scalar(v)),
                        _ => reg
                            .problems
                            .push(format!("{mw}: `value` missing or not a string")),
                    }
                    let s = str_field(reg, m, "stability", &mw);
                    check_stability(reg, &s, &mw);
                }
                ("enum".to_string(), values)
            }
            _ => {
                reg.problems.push(format!("{w}: `type` missing"));
                (String::new(), Vec::new())
            }
        };
        reg.attributes.entry(key).or_default().push(AttrDef {
            file: file.to_string(),
            group: gid.to_string(),
            ty,
        });
    }
}

fn load_metric(reg: &mut Registry, g: &Value, file: &str, gid: &str, where_: &str) {
    let name = str_field(reg, g, "metric_name", where_);
    let instrument = str_field(reg, g, "instrument", where_);
    let unit = match g.get("unit") {
        Some(Value::String(s)) => s.clone(),
        _ => {
            reg.problems
                .push(format!("{where_}: `unit` missing or not a string"));
            String::new()
        }
    };
    let brief = str_field(reg, g, "brief", where_);
    let stability = str_field(reg, g, "stability", where_);
    check_stability(reg, &stability, where_);
    if !name.is_empty() && gid != format!("metric.{name}") {
        reg.problems.push(format!(
            "{where_}: the id of a metric group is `metric.<metric_name>` (`metric.{name}`)"
        ));
    }
    let mut attributes = Vec::new();
    match g.get("attributes") {
        None => {}
        Some(Value::Sequence(refs)) => {
            for r in refs {
                let Some(key) = r.get("ref").and_then(Value::as_str) else {
                    reg.problems.push(format!(
                        "{where_}: metrics reference attributes (`ref:`) defined in attribute groups"
                    ));
                    continue;
                };
                attributes.push(AttrRef {
                    key: key.to_string(),
                    requirement_level: r.get("requirement_level").cloned(),
                });
            }
        }
        Some(_) => reg
            .problems
            .push(format!("{where_}: `attributes` is not a list")),
    }
    reg.metrics.push(MetricDef {
        file: file.to_string(),
        group: gid.to_string(),
        name,
        instrument,
        unit,
        brief,
        attributes,
        annotations: g.get("annotations").cloned().unwrap_or(Value::Null),
    });
}

fn check_stability(reg: &mut Registry, s: &str, where_: &str) {
    const LEVELS: [&str; 5] = [
        "stable",
        "development",
        "alpha",
        "beta",
        "release_candidate",
    ];
    if !s.is_empty() && !LEVELS.contains(&s) {
        reg.problems.push(format!(
            "{where_}: stability `{s}` is not one of {LEVELS:?}"
        ));
    }
}

// ---------------------------------------------------------------------------------------
// The code's side, in the registry's vocabulary

/// The Weaver instrument of a kind (semantic conventions use the synchronous names).
fn instrument_of(kind: Kind) -> &'static str {
    match kind {
        Kind::Counter | Kind::ObservableCounter(_) | Kind::ObservableCounterF64(_) => "counter",
        Kind::ObservableGauge(_) | Kind::ObservableGaugeF64(_) => "gauge",
    }
}

fn value_type_of(kind: Kind) -> &'static str {
    match kind {
        Kind::Counter | Kind::ObservableCounter(_) | Kind::ObservableGauge(_) => "int",
        Kind::ObservableGaugeF64(_) | Kind::ObservableCounterF64(_) => "double",
    }
}

fn legacy_type_of(l: Legacy) -> &'static str {
    match l {
        Legacy::DeltaGauge => "delta_gauge",
        Legacy::Gauge => "gauge",
        Legacy::Counter => "counter",
    }
}

/// The Prometheus name an OpenTelemetry Collector gives a metric by default
/// (pkg/translator/prometheus, `add_metric_suffixes: true`, i.e. translation strategy
/// `UnderscoreEscapingWithSuffixes`): characters outside `[a-zA-Z0-9_:]` become `_`, a unit
/// in braces is dropped, `1` becomes `_ratio` on gauges only, UCUM units become their
/// Prometheus base unit, and monotonic sums get `_total`.
fn prometheus_name(name: &str, unit: &str, instrument: &str) -> Result<String, String> {
    let mut base: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect();
    while base.contains("__") {
        base = base.replace("__", "_");
    }
    let suffix = if unit.starts_with('{') && unit.ends_with('}') || unit.is_empty() {
        None
    } else {
        match unit {
            "1" => (instrument == "gauge").then_some("ratio"),
            "s" => Some("seconds"),
            "ms" => Some("milliseconds"),
            "By" => Some("bytes"),
            "%" => Some("percent"),
            other => {
                return Err(format!(
                    "unit `{other}` is not in this test's table of the Collector's unit names"
                ))
            }
        }
    };
    if let Some(s) = suffix {
        if !base.split('_').any(|w| w == s) {
            base = format!("{base}_{s}");
        }
    }
    if instrument == "counter" && !base.ends_with("_total") {
        base.push_str("_total");
    }
    Ok(base)
}

/// A registry group for a family, to paste when one is missing.
fn suggested_group(f: &Spec) -> String {
    let mut s = format!(
        "  - id: metric.{n}\n    type: metric\n    metric_name: {n}\n    stability: development\n    brief: {b:?}\n    instrument: {i}\n    unit: {u:?}\n",
        n = f.otel,
        b = f.description,
        i = instrument_of(f.kind),
        u = f.unit
    );
    let prom = prometheus_name(f.otel, f.unit, instrument_of(f.kind)).unwrap_or_default();
    let _ = write!(
        s,
        "    annotations:\n      code_generation:\n        metric_value_type: {}\n      {ANNOTATION}:\n        legacy_name: {}\n        legacy_type: {}\n        internal: {}\n        prometheus_name: {prom}\n",
        value_type_of(f.kind),
        f.legacy,
        legacy_type_of(f.legacy_kind),
        f.internal
    );
    if f.attributes.is_empty() && !f.patterns {
        s.push_str("    attributes: []\n");
    } else {
        s.push_str("    attributes:\n");
        for a in f.attributes {
            let _ = writeln!(s, "      - ref: {a}\n        requirement_level: required");
        }
        if f.patterns {
            let _ = writeln!(
                s,
                "      - ref: {TEMPLATE}\n        requirement_level:\n          conditionally_required: ..."
            );
        }
    }
    s
}

fn fail_if_any(title: &str, problems: &[String]) {
    if !problems.is_empty() {
        let mut msg = format!("{title}\n");
        for p in problems {
            for (i, line) in p.lines().enumerate() {
                msg.push_str(if i == 0 { "  - " } else { "    " });
                msg.push_str(line);
                msg.push('\n');
            }
        }
        panic!("{msg}");
    }
}

fn diff(out: &mut Vec<String>, metric: &str, field: &str, code: &str, registry: &str) {
    diff_from(out, "code (src/metric.rs)", metric, field, code, registry);
}

/// `what` (the code's table, or what was collected) against the registry.
fn diff_from(
    out: &mut Vec<String>,
    what: &str,
    metric: &str,
    field: &str,
    left: &str,
    registry: &str,
) {
    if left != registry {
        out.push(format!(
            "{metric}: {field} differs\n    {what:<33} {left:?}\n    {:<33} {registry:?}",
            "registry (otel/registry):",
            what = format!("{what}:")
        ));
    }
}

// ---------------------------------------------------------------------------------------
// Tests

#[test]
fn manifest_is_complete() {
    let path = otel_dir().join("registry_manifest.yaml");
    let text = std::fs::read_to_string(&path).expect("otel/registry_manifest.yaml");
    let doc: Value = serde_yaml::from_str(&text).expect("manifest is YAML");
    let mut problems = Vec::new();
    for key in ["name", "semconv_version", "schema_base_url"] {
        if doc
            .get(key)
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            problems.push(format!("`{key}` missing or empty"));
        }
    }
    if let Some(v) = doc.get("semconv_version").and_then(Value::as_str) {
        let parts: Vec<&str> = v.split('.').collect();
        if parts.len() != 3 || parts.iter().any(|p| p.parse::<u32>().is_err()) {
            problems.push(format!("semconv_version `{v}` is not MAJOR.MINOR.PATCH"));
        }
    }
    fail_if_any("otel/registry_manifest.yaml:", &problems);
}

#[test]
fn registry_is_well_formed() {
    let reg = load();
    let mut problems = reg.problems.clone();

    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for (gid, file) in &reg.group_ids {
        if let Some(first) = seen.insert(gid, file) {
            problems.push(format!(
                "group id `{gid}` is defined twice (otel/{first} and otel/{file})"
            ));
        }
    }
    for (key, defs) in &reg.attributes {
        if defs.len() > 1 {
            let places: Vec<String> = defs
                .iter()
                .map(|d| format!("otel/{} ({})", d.file, d.group))
                .collect();
            problems.push(format!(
                "attribute `{key}` is defined {} times: {}",
                defs.len(),
                places.join(", ")
            ));
        }
        let d = &defs[0];
        let templated = d.ty.starts_with("template[");
        if templated != (key == TEMPLATE) {
            problems.push(format!(
                "attribute `{key}` has type `{}`: `{TEMPLATE}` (and only it) is the template[string] of the pattern attributes",
                d.ty
            ));
        }
        if key == TEMPLATE && d.ty != "template[string]" {
            problems.push(format!(
                "`{TEMPLATE}` must be template[string], not `{}`",
                d.ty
            ));
        }
    }

    let mut used: BTreeSet<&str> = BTreeSet::new();
    let mut names: BTreeMap<&str, &str> = BTreeMap::new();
    for m in &reg.metrics {
        if let Some(first) = names.insert(&m.name, &m.file) {
            problems.push(format!(
                "metric `{}` is defined twice (otel/{first} and otel/{})",
                m.name, m.file
            ));
        }
        if !["counter", "gauge", "updowncounter", "histogram"].contains(&m.instrument.as_str()) {
            problems.push(format!(
                "{}: instrument `{}` is not one of Weaver's counter, gauge, updowncounter, histogram",
                m.name, m.instrument
            ));
        }
        let mut keys = BTreeSet::new();
        for a in &m.attributes {
            used.insert(&a.key);
            if !keys.insert(&a.key) {
                problems.push(format!(
                    "{}: attribute `{}` referenced twice",
                    m.name, a.key
                ));
            }
            if reg.attr(&a.key).is_none() {
                problems.push(format!(
                    "{} (otel/{}): attribute `{}` is referenced but defined in no attribute group",
                    m.name, m.file, a.key
                ));
            }
            match &a.requirement_level {
                Some(Value::String(s))
                    if ["required", "recommended", "opt_in"].contains(&s.as_str()) => {}
                Some(Value::Mapping(map))
                    if map.len() == 1
                        && (map.contains_key(Value::from("conditionally_required"))
                            || map.contains_key(Value::from("recommended"))) => {}
                other => problems.push(format!(
                    "{}: attribute `{}` needs a requirement_level (required, recommended, opt_in or conditionally_required: <condition>), has {other:?}",
                    m.name, a.key
                )),
            }
        }
        if m.has_template() && m.attributes.last().map(|a| a.key.as_str()) != Some(TEMPLATE) {
            problems.push(format!(
                "{}: `{TEMPLATE}` comes last, as the pattern labels follow the fixed ones on /metrics",
                m.name
            ));
        }
    }
    for key in reg.attributes.keys() {
        if !used.contains(key.as_str()) {
            problems.push(format!(
                "attribute `{key}` is defined but no metric references it"
            ));
        }
    }
    fail_if_any("the registry in otel/ is not well formed:", &problems);
}

#[test]
fn registry_matches_the_instruments_of_the_code() {
    let reg = load();
    let mut problems = Vec::new();
    for f in Metric::ALL.iter().map(|m| m.spec()) {
        let Some(m) = reg.metric(f.otel) else {
            problems.push(format!(
                "{}: created by the code, missing from the registry. A group to add:\n{}",
                f.otel,
                suggested_group(f)
            ));
            continue;
        };
        let n = f.otel;
        diff(
            &mut problems,
            n,
            "instrument",
            instrument_of(f.kind),
            &m.instrument,
        );
        diff(&mut problems, n, "unit", f.unit, &m.unit);
        diff(
            &mut problems,
            n,
            "brief (the instrument's description)",
            f.description,
            &m.brief,
        );
        diff(
            &mut problems,
            n,
            "fixed attributes, in /metrics label order",
            &f.attributes.join(", "),
            &m.fixed_keys().join(", "),
        );
        diff(
            &mut problems,
            n,
            &format!("pattern attributes (`{TEMPLATE}` referenced)"),
            &f.patterns.to_string(),
            &m.has_template().to_string(),
        );
        diff(
            &mut problems,
            n,
            "code_generation.metric_value_type",
            value_type_of(f.kind),
            &m.value_type(),
        );
        diff(
            &mut problems,
            n,
            "legacy /metrics name",
            f.legacy,
            &m.annotation_str("legacy_name"),
        );
        diff(
            &mut problems,
            n,
            "legacy /metrics type",
            legacy_type_of(f.legacy_kind),
            &m.annotation_str("legacy_type"),
        );
        diff(
            &mut problems,
            n,
            "shown on /metrics only with internals",
            &f.internal.to_string(),
            &m.annotation_str("internal"),
        );
        match prometheus_name(f.otel, f.unit, instrument_of(f.kind)) {
            Ok(p) => diff(
                &mut problems,
                n,
                "Prometheus name after a Collector",
                &p,
                &m.annotation_str("prometheus_name"),
            ),
            Err(e) => problems.push(format!("{n}: {e}")),
        }
    }
    for m in &reg.metrics {
        if Metric::from_otel_name(&m.name).is_none() {
            problems.push(format!(
                "{} (otel/{}, group `{}`): in the registry, but the code creates no such instrument",
                m.name, m.file, m.group
            ));
        }
    }
    fail_if_any(
        "the registry (otel/registry) and the instruments of the code (src/metric.rs) disagree:",
        &problems,
    );
}

#[test]
fn readme_mapping_table_lists_every_family() {
    let readme = std::fs::read_to_string(otel_dir().join("README.md")).expect("otel/README.md");
    let rows: Vec<&str> = readme.lines().filter(|l| l.starts_with('|')).collect();
    let mut problems = Vec::new();
    for f in Metric::ALL.iter().map(|m| m.spec()) {
        let prom = prometheus_name(f.otel, f.unit, instrument_of(f.kind)).unwrap_or_default();
        let cells = [
            format!("`{}`", f.otel),
            format!("`{}`", f.unit),
            format!("`{}`", f.legacy),
            format!("`{prom}`"),
        ];
        if !rows
            .iter()
            .any(|r| cells.iter().all(|c| r.contains(c.as_str())))
        {
            problems.push(format!(
                "no table row of otel/README.md holds all of {}",
                cells.join(" ")
            ));
        }
    }
    fail_if_any("otel/README.md's mapping table is out of date:", &problems);
}

#[test]
fn prometheus_names_follow_the_collector_rules() {
    // The translator's own examples (pkg/translator/prometheus/README.md).
    assert_eq!(
        prometheus_name("system.filesystem.usage", "By", "gauge").unwrap(),
        "system_filesystem_usage_bytes"
    );
    assert_eq!(
        prometheus_name("system.network.dropped", "{packets}", "gauge").unwrap(),
        "system_network_dropped"
    );
    assert_eq!(
        prometheus_name("system.memory.utilization", "1", "gauge").unwrap(),
        "system_memory_utilization_ratio"
    );
    assert_eq!(
        prometheus_name("system.processes.created", "{process}", "counter").unwrap(),
        "system_processes_created_total"
    );
    assert_eq!(
        prometheus_name("reaction.filter.matches", "{match}", "counter").unwrap(),
        "reaction_filter_matches_total"
    );
    assert_eq!(
        prometheus_name("process.cpu.time", "s", "counter").unwrap(),
        "process_cpu_time_seconds_total"
    );
}
