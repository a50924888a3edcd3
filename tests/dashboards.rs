//! The Grafana dashboards in `dashboards/`, read as JSON:
//! - importable: a title, a uid, no `__inputs` to resolve, the data source as a variable
//!   (`${datasource}`) on every panel and every query;
//! - the template variables instance, stream, filter (queries, "All" by default) and ip;
//!   the instance is never hard-coded: every selector of an exporter metric filters on
//!   `instance=~"$instance"` and no query names a host;
//! - every query uses only metric names and label names that reach the database: the
//!   legacy ones from the metric table (`metric::Metric`) (with the pattern labels `ip`, `user`
//!   and `ua` of the test workload, and `job`/`instance` from the scrape) for the Prometheus
//!   and VictoriaMetrics dashboards, the Collector's names from `otel/registry` for the
//!   OpenTelemetry one; MetricsQL functions only in the VictoriaMetrics dashboard;
//! - the sections of the legacy README, unique panel ids, panels that do not overlap;
//! - the JSON is what `dashboards/generate.py` writes.
//!
//! That the queries run and give the right numbers is `tests/dashboards_e2e.rs`.

use crate::grafana;
use crate::tools;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;

use grafana::*;
use reaction_metrics_exporter::metric::{Metric, BUILD_INFO};
use tools::*;

/// The pattern labels of the test workload (reaction's pattern names).
const PATTERNS: [&str; 3] = ["ip", "user", "ua"];
/// Labels the scrape adds.
const SCRAPE_LABELS: [&str; 2] = ["job", "instance"];
/// Labels a Collector's Prometheus exporter adds to every metric.
const COLLECTOR_LABELS: [&str; 4] = ["job", "instance", "otel_scope_name", "otel_scope_version"];
const MATCHERS: [&str; 4] = ["instance", "stream", "filter", "ip"];
const SECTIONS: [&str; 8] = [
    "Status",
    "Totals",
    "Actions",
    "Evolution of events",
    "Filters",
    "reaction's events",
    "IP blame",
    "Lifetime",
];
const METRICSQL: [&str; 7] = [
    "running_sum",
    "running_max",
    "running_min",
    "tfirst_over_time",
    "tlast_over_time",
    "topk_last",
    "lifetime",
];

/// Metric name -> its label names, for the legacy /metrics endpoint as scraped.
fn legacy_names() -> BTreeMap<String, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    for f in Metric::ALL.iter().map(|m| m.spec()) {
        let mut labels: BTreeSet<String> = f.attributes.iter().map(|s| s.to_string()).collect();
        if f.patterns {
            labels.extend(PATTERNS.iter().map(|s| s.to_string()));
        }
        if f.legacy == "reaction_status_info" {
            // The value of reaction.up becomes the `status` label on /metrics.
            labels.insert("status".into());
        }
        labels.extend(SCRAPE_LABELS.iter().map(|s| s.to_string()));
        out.insert(f.legacy.to_string(), labels);
    }
    out.insert(
        BUILD_INFO.to_string(),
        ["version", "job", "instance"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    );
    // Written by the scraper for every target.
    out.insert(
        "up".to_string(),
        SCRAPE_LABELS.iter().map(|s| s.to_string()).collect(),
    );
    out
}

/// Metric name -> its label names after a Collector, from the registry in otel/registry.
fn otel_names() -> BTreeMap<String, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    let dir = root().join("otel/registry");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let doc: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for g in doc["groups"].as_sequence().cloned().unwrap_or_default() {
            if g["type"].as_str() != Some("metric") {
                continue;
            }
            let name = g["annotations"]["reaction_metrics_exporter"]["prometheus_name"]
                .as_str()
                .unwrap_or_else(|| {
                    panic!("{}: no prometheus_name in {:?}", path.display(), g["id"])
                })
                .to_string();
            let mut labels: BTreeSet<String> =
                COLLECTOR_LABELS.iter().map(|s| s.to_string()).collect();
            for a in g["attributes"].as_sequence().cloned().unwrap_or_default() {
                let r = a["ref"].as_str().unwrap();
                if r == "reaction.pattern" {
                    labels.extend(PATTERNS.iter().map(|s| s.to_string()));
                } else {
                    labels.insert(r.replace('.', "_"));
                }
            }
            out.insert(name, labels);
        }
    }
    assert!(
        out.contains_key("reaction_filter_matches_total"),
        "otel/registry has no reaction_filter_matches_total: {:?}",
        out.keys()
    );
    // The exporter's version is the resource's service.version, in target_info.
    let readme = std::fs::read_to_string(root().join("otel/README.md")).unwrap();
    assert!(
        readme.contains("`target_info{service_version}`"),
        "otel/README.md"
    );
    out.insert(
        "target_info".into(),
        ["job", "instance", "service_version"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    );
    out
}

fn names_for(kind: &str) -> BTreeMap<String, BTreeSet<String>> {
    if kind == "otel" {
        otel_names()
    } else {
        legacy_names()
    }
}

/// Checks one PromQL expression; the problems found.
fn check_expr(
    kind: &str,
    where_: &str,
    expr: &str,
    names: &BTreeMap<String, BTreeSet<String>>,
    problems: &mut Vec<String>,
) {
    let r = refs(expr);
    let mut used_labels: BTreeSet<String> = BTreeSet::new();
    if r.nameless > 0 {
        problems.push(format!(
            "{where_}: a selector without a metric name: {expr}"
        ));
    }
    if r.selectors.is_empty() {
        problems.push(format!("{where_}: no metric: {expr}"));
    }
    for (metric, matchers) in &r.selectors {
        let Some(labels) = names.get(metric) else {
            problems.push(format!("{where_}: unknown metric `{metric}` in {expr}"));
            continue;
        };
        used_labels.extend(labels.iter().cloned());
        for (label, op, value) in matchers {
            if !labels.contains(label) {
                problems.push(format!(
                    "{where_}: `{metric}` has no label `{label}` in {expr}"
                ));
            }
            if label == "instance" && (op != "=~" || value != "$instance") {
                problems.push(format!(
                    "{where_}: hard-coded instance `{label}{op}\"{value}\"` in {expr}"
                ));
            }
            if MATCHERS.contains(&label.as_str())
                && value.starts_with('$')
                && (op != "=~" || value != &format!("${label}"))
            {
                problems.push(format!(
                    "{where_}: `{label}` must be matched as {label}=~\"${label}\" in {expr}"
                ));
            }
        }
        // Every exporter metric is filtered on the instance variable.
        if !matchers
            .iter()
            .any(|(l, op, v)| l == "instance" && op == "=~" && v == "$instance")
        {
            problems.push(format!(
                "{where_}: `{metric}` is not filtered on instance=~\"$instance\" in {expr}"
            ));
        }
        // And the per-filter ones on the other variables.
        if labels.contains("filter") && labels.contains("ip") {
            for v in MATCHERS {
                if !matchers
                    .iter()
                    .any(|(l, op, val)| l == v && op == "=~" && val == &format!("${v}"))
                {
                    problems.push(format!(
                        "{where_}: `{metric}` is not filtered on {v}=~\"${v}\" in {expr}"
                    ));
                }
            }
        }
    }
    for l in &r.grouping {
        if !used_labels.contains(l) {
            problems.push(format!(
                "{where_}: grouping label `{l}` is on none of the query's metrics: {expr}"
            ));
        }
    }
    for f in &r.functions {
        if !FUNCTIONS.contains(&f.as_str()) {
            problems.push(format!("{where_}: unknown function `{f}` in {expr}"));
        }
        if kind != "victoriametrics" && METRICSQL.contains(&f.as_str()) {
            problems.push(format!(
                "{where_}: MetricsQL function `{f}` in a PromQL dashboard: {expr}"
            ));
        }
    }
    for tok in tokenize(expr) {
        if let Tok::Var(v) = tok {
            let known = [
                "$instance",
                "$stream",
                "$filter",
                "$ip",
                "$__range",
                "$__interval",
                "$__interval_ms",
                "$__rate_interval",
                "$__from",
                "$__to",
            ];
            if !known.contains(&v.as_str()) {
                problems.push(format!("{where_}: unknown variable {v} in {expr}"));
            }
        }
    }
}

#[test]
fn dashboards_are_importable_with_a_datasource_variable() {
    for (kind, file) in DASHBOARDS {
        let d = load_json(file);
        assert!(
            d["title"].as_str().is_some_and(|t| t.contains("reaction")),
            "{file}: title"
        );
        assert!(
            d["uid"]
                .as_str()
                .is_some_and(|u| !u.is_empty() && u.len() <= 40),
            "{file}: uid"
        );
        assert!(
            d["schemaVersion"].as_u64().is_some(),
            "{file}: schemaVersion"
        );
        assert!(d["id"].is_null(), "{file}: `id` must be null for an import");
        // Nothing to resolve at import time: the data source is a variable.
        assert_eq!(d["__inputs"], serde_json::json!([]), "{file}: __inputs");
        let text = std::fs::read_to_string(root().join(file)).unwrap();
        assert!(
            !text.contains("${DS_"),
            "{file}: an import-time data source reference"
        );

        let mut ids = BTreeSet::new();
        for p in all_panels(&d) {
            let title = p["title"].as_str().unwrap_or("?");
            assert!(
                ids.insert(p["id"].as_u64().expect("panel id")),
                "{file}: duplicate id"
            );
            if p["type"] == "row" {
                continue;
            }
            assert_eq!(
                p["datasource"],
                serde_json::json!({"type": "prometheus", "uid": "${datasource}"}),
                "{file}: panel {title:?}: datasource"
            );
            let targets = p["targets"].as_array().cloned().unwrap_or_default();
            assert!(!targets.is_empty(), "{file}: panel {title:?} has no query");
            for t in targets {
                assert_eq!(
                    t["datasource"]["uid"], "${datasource}",
                    "{file}: panel {title:?}: a query without the datasource variable"
                );
                assert!(
                    t["expr"].as_str().is_some_and(|e| !e.is_empty()),
                    "{file}: {title:?}"
                );
            }
            assert!(
                p["description"].as_str().is_some_and(|s| !s.is_empty()),
                "{file}: panel {title:?} has no description"
            );
        }
        let _ = kind;
    }
}

#[test]
fn dashboards_have_the_variables() {
    for (kind, file) in DASHBOARDS {
        let d = load_json(file);
        let vars: BTreeMap<String, Value> = variables(&d)
            .into_iter()
            .map(|v| (v["name"].as_str().unwrap().to_string(), v))
            .collect();
        let ds = &vars["datasource"];
        assert_eq!(ds["type"], "datasource", "{file}");
        assert_eq!(ds["query"], "prometheus", "{file}");
        assert!(
            ds["current"].as_object().is_none_or(|c| c.is_empty()),
            "{file}: the data source variable must not name a data source"
        );
        let names = names_for(kind);
        for name in ["instance", "stream", "filter"] {
            let v = vars
                .get(name)
                .unwrap_or_else(|| panic!("{file}: no variable {name}"));
            assert_eq!(v["type"], "query", "{file}: {name}");
            assert_eq!(v["datasource"]["uid"], "${datasource}", "{file}: {name}");
            assert_eq!(v["includeAll"], true, "{file}: {name}");
            assert_eq!(v["multi"], true, "{file}: {name}");
            assert_eq!(v["allValue"], ".*", "{file}: {name}");
            assert_eq!(
                v["current"]["value"],
                serde_json::json!(["$__all"]),
                "{file}: {name} must default to All (no hard-coded value)"
            );
            let (sel, label) = label_values_query(v)
                .unwrap_or_else(|| panic!("{file}: {name}: not label_values(selector, label)"));
            assert_eq!(label, name, "{file}");
            let r = refs(&sel);
            assert_eq!(r.selectors.len(), 1, "{file}: {name}: {sel}");
            let (metric, matchers) = &r.selectors[0];
            let labels = names
                .get(metric)
                .unwrap_or_else(|| panic!("{file}: {name}: unknown metric {metric}"));
            assert!(
                labels.contains(name),
                "{file}: {metric} has no label {name}"
            );
            for (l, _, _) in matchers {
                assert!(labels.contains(l), "{file}: {metric} has no label {l}");
            }
            if name != "instance" {
                assert!(
                    sel.contains("instance=~\"$instance\""),
                    "{file}: {name} depends on the instance: {sel}"
                );
            } else {
                // The scrape job's name starts with `reaction` (collector-configs/).
                assert!(sel.contains("job=~\"reaction.*\""), "{file}: {sel}");
            }
        }
        let ip = vars
            .get("ip")
            .unwrap_or_else(|| panic!("{file}: no variable ip"));
        assert_eq!(ip["type"], "textbox", "{file}: ip");
        assert_eq!(ip["query"], ".*", "{file}: ip defaults to every IP");
        assert_eq!(ip["current"]["value"], ".*", "{file}: ip");
    }
}

#[test]
fn queries_use_only_names_the_exporter_produces() {
    let mut problems = Vec::new();
    for (kind, file) in DASHBOARDS {
        let d = load_json(file);
        let names = names_for(kind);
        let qs = queries(&d);
        assert!(qs.len() > 30, "{file}: {} queries", qs.len());
        for q in qs {
            let where_ = format!("{file}: panel {:?} ({})", q.panel, q.ref_id);
            check_expr(kind, &where_, &q.expr, &names, &mut problems);
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn name_check_catches_mistakes() {
    // The check above must see what it is meant to see.
    let names = legacy_names();
    let bad = [
        "sum(sum_over_time(reaction_matches_count{instance=~\"$instance\"}[5m]))",
        "sum(reaction_commands_count{instance=~\"$instance\",exit_code=\"1\"})",
        "sum by (ip) (reaction_commands_count{instance=~\"$instance\"})",
        "sum(reaction_commands_count{instance=\"web1:8080\"})",
        "sum(reaction_commands_count)",
        "sum(reaction_match_count{instance=~\"$instance\"})",
        "running_sum(reaction_commands_count{instance=~\"$instance\"})",
    ];
    for expr in bad {
        let mut problems = Vec::new();
        check_expr("prometheus", "test", expr, &names, &mut problems);
        assert!(!problems.is_empty(), "not caught: {expr}");
    }
    let mut problems = Vec::new();
    check_expr(
        "prometheus",
        "test",
        "sum by (instance, ip) (sum_over_time(reaction_match_count{instance=~\"$instance\",stream=~\"$stream\",filter=~\"$filter\",ip=~\"$ip\",ip!=\"\"}[$__range]))",
        &names,
        &mut problems,
    );
    assert!(problems.is_empty(), "{problems:?}");
}

#[test]
fn no_host_is_hard_coded() {
    let host =
        regex::Regex::new(r"(?i)(localhost|127\.0\.0\.1|\.example\.|:(8080|9090|8428)\b)").unwrap();
    for (_, file) in DASHBOARDS {
        let d = load_json(file);
        for q in queries(&d) {
            assert!(!host.is_match(&q.expr), "{file}: {:?}: {}", q.panel, q.expr);
        }
        for v in variables(&d) {
            let text = v.to_string();
            assert!(!host.is_match(&text), "{file}: variable {text}");
        }
    }
}

#[test]
fn dashboards_have_the_legacy_sections_and_a_sane_layout() {
    for (kind, file) in DASHBOARDS {
        let d = load_json(file);
        let rows: Vec<String> = all_panels(&d)
            .iter()
            .filter(|p| p["type"] == "row")
            .map(|p| p["title"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(rows, SECTIONS, "{file}: sections");
        let mut cells: BTreeSet<(u64, u64)> = BTreeSet::new();
        for p in all_panels(&d) {
            let g = &p["gridPos"];
            let (x, y, w, h) = (
                g["x"].as_u64().unwrap(),
                g["y"].as_u64().unwrap(),
                g["w"].as_u64().unwrap(),
                g["h"].as_u64().unwrap(),
            );
            assert!(x + w <= 24 && w > 0 && h > 0, "{file}: {:?}", p["title"]);
            for cx in x..x + w {
                for cy in y..y + h {
                    assert!(
                        cells.insert((cx, cy)),
                        "{file}: panel {:?} overlaps another",
                        p["title"]
                    );
                }
            }
        }
        // Panels the legacy README describes, in every dashboard.
        let titles: BTreeSet<String> = queries(&d).into_iter().map(|q| q.panel).collect();
        for t in [
            "reaction status",
            "reaction version",
            "Exporter version",
            "Matches in range",
            "Matches, last 365 days",
            "Pending actions",
            "Matches, running total",
            "Matches by filter and instance",
            "Stream errors",
            "Failed commands",
            "Top IPs by matches",
            "Top IPs by matches, last 365 days",
            "IPs seen in several filters",
            "Average lifetime per instance",
            "Lifetime distribution",
        ] {
            assert!(titles.contains(t), "{file}: no panel {t:?}");
        }
        if kind == "victoriametrics" {
            let qs = queries(&d);
            assert!(
                qs.iter().any(|q| q.expr.contains("running_sum(")),
                "{file}: the running totals use running_sum"
            );
        }
    }
}

#[test]
fn json_files_are_what_generate_py_writes() {
    let out = Command::new("python3")
        .arg(root().join("dashboards/generate.py"))
        .arg("--check")
        .output()
        .expect("python3 (Debian package python3) runs dashboards/generate.py");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------
// The demo stack (docs/demo-stack.md): scrape files and Grafana provisioning

fn yaml(rel: &str) -> serde_yaml::Value {
    let text = std::fs::read_to_string(root().join(rel))
        .unwrap_or_else(|e| panic!("cannot read {rel}: {e}"));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn demo_scrape_files_pass_promtool_and_vmagent() {
    let (ok, out) = run(Command::new(tool("promtool", "prometheus"))
        .args(["check", "config", "docs/demo/prometheus.yml"])
        .current_dir(root()));
    assert!(ok, "promtool check config docs/demo/prometheus.yml:\n{out}");
    // promtool followed rule_files to the alert rules.
    assert!(out.contains("alerts/reaction.rules.yml"), "{out}");
    assert!(out.contains("SUCCESS: 6 rules found"), "{out}");
    let (ok, out) = run(Command::new(tool("vmagent", "victoria-metrics"))
        .arg(format!(
            "-promscrape.config={}",
            root().join("docs/demo/vmscrape.yml").display()
        ))
        .arg("-promscrape.config.dryRun")
        .arg("-loggerLevel=ERROR"));
    assert!(ok, "vmagent dry run of docs/demo/vmscrape.yml:\n{out}");
    for rel in ["docs/demo/prometheus.yml", "docs/demo/vmscrape.yml"] {
        let doc = yaml(rel);
        let jobs = doc["scrape_configs"].as_sequence().unwrap();
        assert_eq!(jobs.len(), 1, "{rel}: one job");
        assert!(
            jobs[0]["job_name"]
                .as_str()
                .is_some_and(|j| j.starts_with("reaction")),
            "{rel}: the job name starts with `reaction` (the dashboards select on it)"
        );
    }
}

#[test]
fn grafana_provisioning_names_the_data_sources_and_the_dashboards() {
    let ds = yaml("dashboards/provisioning/datasources/reaction.yml");
    assert_eq!(ds["apiVersion"].as_u64(), Some(1));
    let sources = ds["datasources"].as_sequence().unwrap();
    let mut urls = BTreeMap::new();
    for s in sources {
        assert_eq!(s["type"], "prometheus", "{s:?}");
        assert_eq!(s["access"], "proxy", "{s:?}");
        urls.insert(
            s["uid"].as_str().unwrap().to_string(),
            (
                s["url"].as_str().unwrap().to_string(),
                s["jsonData"]["timeInterval"].as_str().unwrap().to_string(),
            ),
        );
    }
    assert_eq!(
        urls.keys().collect::<Vec<_>>(),
        ["reaction-prometheus", "reaction-victoriametrics"]
    );
    assert_eq!(
        sources.iter().filter(|s| s["isDefault"] == true).count(),
        1,
        "one default data source"
    );
    // The data sources' scrape interval is the scrape files' (the smallest $__interval).
    for (uid, rel, port) in [
        ("reaction-prometheus", "docs/demo/prometheus.yml", ":9090"),
        (
            "reaction-victoriametrics",
            "docs/demo/vmscrape.yml",
            ":8428",
        ),
    ] {
        let doc = yaml(rel);
        let interval = doc["scrape_configs"][0]["scrape_interval"]
            .as_str()
            .or(doc["global"]["scrape_interval"].as_str())
            .unwrap();
        assert_eq!(urls[uid].1, interval, "{uid} timeInterval vs {rel}");
        assert!(urls[uid].0.ends_with(port), "{uid}: {}", urls[uid].0);
    }

    let dash = yaml("dashboards/provisioning/dashboards/reaction.yml");
    let providers = dash["providers"].as_sequence().unwrap();
    assert_eq!(providers.len(), 1);
    let p = &providers[0];
    assert_eq!(p["type"], "file");
    assert_eq!(p["options"]["path"], "${REACTION_DASHBOARDS}");
    // The folder the variable names in the demo holds the three dashboards and no other
    // JSON file a file provider would load.
    let json: BTreeSet<String> = std::fs::read_dir(root().join("dashboards"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".json"))
        .collect();
    let expected: BTreeSet<String> = DASHBOARDS
        .iter()
        .map(|(_, f)| f.trim_start_matches("dashboards/").to_string())
        .collect();
    assert_eq!(json, expected);
    let doc = std::fs::read_to_string(root().join("docs/demo-stack.md")).unwrap();
    for needle in [
        "docs/demo/prometheus.yml",
        "docs/demo/vmscrape.yml",
        "REACTION_DASHBOARDS",
        "GF_PATHS_PROVISIONING",
        "alerts/reaction.rules.yml",
    ] {
        assert!(
            doc.contains(needle),
            "docs/demo-stack.md does not mention {needle}"
        );
    }
}
