//! `/metrics/otel` (issue 11) on the real binary: cumulative counters named as an
//! OpenTelemetry Collector's Prometheus exporter names them.
//!
//! - two real Prometheus servers (Debian `prometheus`, 2.42) scrape it every second while
//!   events arrive, and a third client scrapes the legacy `/metrics` meanwhile: each
//!   Prometheus gives the workload's exact totals by `increase()` over the run, both see the
//!   same values, and the legacy client's sum of its deltas is exact (scraping one endpoint
//!   takes nothing from the other);
//! - by default no pattern label (no IP) is on it; `patterns: [ip]` adds it;
//! - its text format passes `promtool check metrics` without a remark, its OpenMetrics
//!   format with the remarks of promtool's text-only parser, Python's `prometheus_client`
//!   parses both formats, OpenMetrics counters carry `_created`;
//! - every family on it is named as `otel/registry` documents (`prometheus_name`);
//! - a restart starts its counters at 0 with a new created time;
//! - it is off by default, and `metrics.otel_endpoint.enabled: false` removes it.
//!
//! `dashboards_otel_e2e` runs every query of `dashboards/reaction-otel.json` on Prometheus
//! scraping this endpoint. Every process is killed at the end, also on failure (Drop).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{self, append, file_config, get, samples, Exporter, Reaction};
use crate::grafana::{api, root};
use crate::tools::{self, python_parse, run_with_stdin, tool};
use crate::workload::{self, lines, now, Ev, LAST_LINE, LAST_LINE_WARNING};

const PATH: &str = "/metrics/otel";
/// What Prometheus 2.42 sends (`scrape/scrape.go`).
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The scrape job of the endpoint (the dashboards select `job=~"reaction.*"`).
const JOB: &str = "reaction-otel";

// ---------------------------------------------------------------------------------------
// Prometheus

/// A Prometheus server scraping every second.
pub struct Prometheus(tools::Prometheus);

impl std::ops::Deref for Prometheus {
    type Target = tools::Prometheus;
    fn deref(&self) -> &tools::Prometheus {
        &self.0
    }
}

impl Prometheus {
    /// Prometheus with `scrape_configs` (YAML lines, indented as under the key), scraping
    /// every second, its files in `dir/<name>`.
    pub fn start(dir: &Path, name: &str, scrape_configs: &str) -> Prometheus {
        Prometheus(tools::Prometheus::start(
            &dir.join(name),
            &format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  \
                 evaluation_interval: 1s\nscrape_configs:\n{scrape_configs}"
            ),
        ))
    }

    /// An instant query at `time` (seconds, ms precision).
    pub fn query(&self, expr: &str, time: f64) -> Value {
        let r = api(
            &self.addr,
            "/api/v1/query",
            &[("query", expr.to_string()), ("time", format!("{time:.3}"))],
        );
        assert_eq!(r["status"], "success", "{expr}: {r}");
        r
    }

    /// The times (ms) of the successful scrapes of `job`, oldest first.
    pub fn scrapes(&self, job: &str) -> Vec<i64> {
        let r = self.query(&format!("up{{job=\"{job}\"}}[10m]"), now() + 1.0);
        let mut t: Vec<i64> = r["data"]["result"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["values"].as_array().cloned().unwrap_or_default())
            .filter(|v| v[1] == "1")
            .map(|v| (v[0].as_f64().unwrap() * 1000.0).round() as i64)
            .collect();
        t.sort_unstable();
        t
    }
}

/// A scrape job of the endpoint of `exporters` (address, `instance` label).
pub fn scrape_job(job: &str, exporters: &[(&str, &str)]) -> String {
    let mut s = format!("  - job_name: {job}\n    metrics_path: {PATH}\n    static_configs:\n");
    for (addr, instance) in exporters {
        s.push_str(&format!(
            "      - targets: ['{addr}']\n        labels:\n          instance: {instance}\n"
        ));
    }
    s
}

/// (labels, value) of an instant vector.
fn vector(r: &Value) -> BTreeMap<BTreeMap<String, String>, f64> {
    r["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let labels = s["metric"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect();
            (labels, workload::num(&s["value"][1]))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Helpers

fn otel_page(e: &Exporter, accept: Option<&str>) -> (String, String) {
    let (status, ct, body) = get(&e.addr, PATH, accept);
    assert_eq!(status, 200, "{body}");
    (ct, body)
}

/// `prometheus_name` of every metric of `otel/registry`.
fn registry_names() -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root().join("otel/registry")).unwrap() {
        let doc: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap()).unwrap();
        for g in doc["groups"].as_sequence().into_iter().flatten() {
            if let Some(p) =
                g["annotations"]["reaction_metrics_exporter"]["prometheus_name"].as_str()
            {
                out.push(p.to_string());
            }
        }
    }
    out
}

/// The families (`# TYPE` names) of a text page.
fn families(page: &str) -> Vec<String> {
    page.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect()
}

// ---------------------------------------------------------------------------------------
// The tests

#[test]
fn formats_names_parsers_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let r = Reaction::new(dir.path(), &workload::reaction_config());
    r.set_state(workload::show_state());
    let log = dir.path().join("reaction.log");
    append(&log, "");
    // `ip` and `user` kept: a user name with a quote, a backslash and a newline-free tail
    // tests the escaping.
    let config = file_config(
        &log,
        &r,
        "metrics:\n  otel_endpoint:\n    enabled: true\n    patterns: [ip, user]\n",
    );
    let t0 = now();
    let exp = Exporter::start(dir.path(), &config);
    let evs = [
        Ev::Command("start", "iptables", 0),
        Ev::Stream("ssh", "start"),
        Ev::Match("ssh", "failedlogin", "192.0.2.2", "admin", 1),
        Ev::Match("web.nginx", "aiBots", "192.0.2.1", "GPTBot/1.0", 2),
        Ev::Action("ssh", "failedlogin", "ban", "192.0.2.1"),
        Ev::Stream("ssh", "exit"),
        Ev::Command("stop", "iptables", 1),
    ];
    // reaction writes values as Rust string literals: `ro"o\t` is `"ro\"o\\t"`.
    let odd = "INFO ssh.failedlogin: match [\"192.0.2.1\", \"ro\\\"o\\\\t\"]\n".repeat(3);
    let text: String = evs.iter().map(lines).collect();
    append(&log, &(odd + &text));
    append(&log, LAST_LINE);
    exp.wait_log(LAST_LINE_WARNING, Duration::from_secs(30));

    // Text 0.0.4 without Accept (and for text/plain), OpenMetrics for Prometheus' Accept.
    let (ct, page) = otel_page(&exp, None);
    assert_eq!(ct, TEXT);
    assert_eq!(otel_page(&exp, Some("text/plain")).0, TEXT);
    let (ct, om) = otel_page(&exp, Some(PROMETHEUS_ACCEPT));
    assert_eq!(ct, OPENMETRICS);
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert!(om.starts_with("# TYPE target info\n# HELP target Target metadata\ntarget_info{"));

    // The values, with the kept pattern labels, and nothing else.
    let s = samples(&page);
    let get = |name: &str, labels: &[(&str, &str)]| -> Option<f64> {
        let mut want: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        want.sort();
        s.get(&(name.to_string(), want)).copied()
    };
    let m = "reaction_filter_matches_total";
    let ssh = [("stream", "ssh"), ("filter", "failedlogin")];
    assert_eq!(
        get(
            m,
            &[ssh[0], ssh[1], ("ip", "192.0.2.1"), ("user", "ro\"o\\t")]
        ),
        Some(3.0),
        "{page}"
    );
    assert_eq!(
        get(m, &[ssh[0], ssh[1], ("ip", "192.0.2.2"), ("user", "admin")]),
        Some(1.0)
    );
    assert_eq!(
        common::total(
            &page,
            "reaction_action_runs_total",
            &[ssh[0], ssh[1], ("action", "ban"), ("ip", "192.0.2.1")]
        ),
        1.0,
        "{page}"
    );
    assert_eq!(
        get(
            "reaction_command_runs_total",
            &[
                ("state", "stop"),
                ("command", "iptables"),
                ("status", "False"),
                ("code", "1")
            ]
        ),
        Some(1.0),
        "{page}"
    );
    assert_eq!(
        get(
            "reaction_stream_events_total",
            &[("stream", "ssh"), ("type", "exit")]
        ),
        Some(1.0)
    );
    assert_eq!(get("reaction_up", &[("version", "2.2.0")]), Some(1.0));
    // Pending: reaction show's entries, by (stream, filter, action, ip, user).
    assert_eq!(
        common::total(&page, "reaction_action_pending", &[("ip", "192.0.2.50")]),
        2.0,
        "{page}"
    );
    assert!(s
        .keys()
        .any(|(n, _)| n == "reaction_exporter_last_event_time_seconds"));
    // No job/instance labels (Prometheus sets them), no scope labels.
    for (name, labels) in s.keys() {
        for (k, _) in labels {
            assert!(
                !["job", "instance"].contains(&k.as_str()) && !k.starts_with("otel_scope"),
                "{name} has {k}"
            );
        }
    }
    // target_info: the resource without service.name/instance.id.
    let target = s
        .keys()
        .find(|(n, _)| n == "target_info")
        .expect("target_info");
    let keys: Vec<&str> = target.1.iter().map(|(k, _)| k.as_str()).collect();
    assert!(keys.contains(&"service_version"), "{keys:?}");
    assert!(!keys.contains(&"service_name") && !keys.contains(&"service_instance_id"));

    // Every family is named as otel/registry says.
    let documented = registry_names();
    for f in families(&page) {
        assert!(
            f == "target_info" || documented.contains(&f),
            "{f} is not a prometheus_name of otel/registry"
        );
    }
    for f in [
        "reaction_filter_matches_total",
        "reaction_action_runs_total",
        "reaction_action_pending",
        "reaction_command_runs_total",
        "reaction_stream_events_total",
        "reaction_up",
    ] {
        assert!(families(&page).contains(&f.to_string()), "{f} missing");
    }

    // OpenMetrics: a `_created` per counter sample, the exporter's start time.
    let om_samples = samples(om.trim_end_matches("# EOF\n"));
    let totals = om_samples
        .keys()
        .filter(|(n, _)| n.ends_with("_total"))
        .count();
    let created: Vec<f64> = om_samples
        .iter()
        .filter(|((n, _), _)| n.ends_with("_created"))
        .map(|(_, v)| *v)
        .collect();
    assert_eq!(created.len(), totals);
    assert!(created
        .iter()
        .all(|c| *c >= t0.floor() - 1.0 && *c <= now()));

    // promtool: no remark on the text page.
    let out = run_with_stdin(
        tool("promtool", "prometheus").to_str().unwrap(),
        &["check", "metrics"],
        &page,
    );
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {:?}\n{}{}\n{page}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // promtool on the OpenMetrics page: promtool 2.42 reads text 0.0.4 only, where the
    // `info` type of `target` (OpenMetrics; the OpenTelemetry specification's "Prometheus and
    // OpenMetrics Compatibility": target_info MUST be info-typed) is a parse error at line 1.
    // Without that family, its only remarks are the missing HELP of each counter's `_total`
    // and `_created` samples (read as text 0.0.4, they are untyped samples outside the
    // `# HELP x` family), as for the OpenMetrics page of `/metrics`.
    let (target, rest) = om.split_at(om.find("\n# TYPE ").unwrap() + 1);
    assert_eq!(target.lines().count(), 3, "{target}");
    let out = run_with_stdin(
        tool("promtool", "prometheus").to_str().unwrap(),
        &["check", "metrics"],
        rest,
    );
    let mut remarks: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&out.stderr).lines())
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    remarks.sort();
    let mut expected: Vec<String> = rest
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .flat_map(|f| {
            [
                format!("{f}_created no help text"),
                format!("{f}_total no help text"),
            ]
        })
        .collect();
    expected.sort();
    assert!(!expected.is_empty());
    assert_eq!(
        remarks, expected,
        "promtool on the OpenMetrics page:\n{rest}"
    );
    // prometheus_client: both formats, the same families (OpenMetrics: counters with their
    // `_created` samples, `target` as info).
    let text_families = python_parse(&page, false);
    let om_families = python_parse(&om, true);
    assert_eq!(text_families.len(), om_families.len());
    for (t, o) in text_families.iter().zip(&om_families) {
        match o.1.as_str() {
            "counter" => assert_eq!((&t.0, &t.1, t.2 * 2), (&o.0, &o.1, o.2)),
            "info" => assert_eq!((t.0.as_str(), o.0.as_str()), ("target_info", "target")),
            _ => assert_eq!(t, o),
        }
    }

    // A restart: counters from 0, a new created time.
    let before = common::total(&page, m, &[]);
    assert_eq!(before, 6.0);
    let created_before = created[0];
    exp.terminate();
    std::thread::sleep(Duration::from_millis(1100));
    let exp = Exporter::start(dir.path(), &config);
    append(
        &log,
        &lines(&Ev::Match("ssh", "failedlogin", "192.0.2.9", "x", 2)),
    );
    append(&log, LAST_LINE);
    exp.wait_log(LAST_LINE_WARNING, Duration::from_secs(30));
    let (_, page) = otel_page(&exp, None);
    assert_eq!(common::total(&page, m, &[]), 2.0, "{page}");
    let (_, om) = otel_page(&exp, Some(PROMETHEUS_ACCEPT));
    let created_after = samples(om.trim_end_matches("# EOF\n"))
        .into_iter()
        .find(|((n, _), _)| n == "reaction_filter_matches_created")
        .unwrap()
        .1;
    assert!(
        created_after > created_before + 1.0,
        "{created_before} -> {created_after}"
    );
}

/// `enabled: false` removes it, and so does the default (off: it costs too much to be on
/// for those who do not scrape it, benches/README.md).
#[test]
fn the_switch_turns_it_off_and_it_is_off_by_default() {
    for metrics in ["metrics:\n  otel_endpoint:\n    enabled: false\n", ""] {
        let dir = tempfile::tempdir().unwrap();
        let r = Reaction::new(dir.path(), &workload::reaction_config());
        let log = dir.path().join("reaction.log");
        append(&log, "");
        let exp = Exporter::start(dir.path(), &file_config(&log, &r, metrics));
        assert_eq!(get(&exp.addr, PATH, None).0, 404, "{metrics:?}");
        assert_eq!(get(&exp.addr, "/metrics", None).0, 200);
    }
}

/// What the legacy client added up: (family, label set) -> sum of its deltas.
type Legacy = BTreeMap<(String, Vec<(String, String)>), f64>;

#[test]
fn two_prometheus_servers_and_a_legacy_scraper_are_all_exact() {
    let begun = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let r = Reaction::new(dir.path(), &workload::reaction_config());
    r.set_state(workload::show_state());
    let log = dir.path().join("reaction.log");
    append(&log, "");
    // No pattern label on /metrics/otel (the default `patterns`).
    let exp = Exporter::start(
        dir.path(),
        &file_config(&log, &r, "metrics:\n  otel_endpoint:\n    enabled: true\n"),
    );
    let job = scrape_job(JOB, &[(&exp.addr, "host1")]);
    let proms = [
        Prometheus::start(dir.path(), "prometheus-a", &job),
        Prometheus::start(dir.path(), "prometheus-b", &job),
    ];

    // The legacy client: /metrics every 300 ms, its deltas added up.
    let legacy: Arc<Mutex<Legacy>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let scraper = {
        let (legacy, stop, addr) = (legacy.clone(), stop.clone(), exp.addr.clone());
        std::thread::spawn(move || {
            let add = |body: &str| {
                let mut l = legacy.lock().unwrap();
                for ((name, labels), v) in samples(body) {
                    if name.ends_with("_count") {
                        *l.entry((name, labels)).or_default() += v;
                    }
                }
            };
            while !stop.load(Ordering::Relaxed) {
                let (status, _, body) = get(&addr, "/metrics", None);
                assert_eq!(status, 200);
                add(&body);
                std::thread::sleep(Duration::from_millis(300));
            }
            // The last one, after everything was counted.
            add(&get(&addr, "/metrics", None).2);
        })
    };

    // The events: a warm-up that creates every series (a counter's first sample is not an
    // increase for Prometheus), then the run, in phases a second apart.
    let warm_up = vec![
        Ev::Command("start", "iptables", 0),
        Ev::Command("stop", "iptables", 1),
        Ev::Stream("ssh", "start"),
        Ev::Stream("ssh", "exit"),
        Ev::Stream("web.nginx", "exec"),
        Ev::Match("ssh", "failedlogin", "192.0.2.1", "root", 1),
        Ev::Match("web.nginx", "aiBots", "192.0.2.9", "GPTBot/1.0", 1),
        Ev::Action("ssh", "failedlogin", "ban", "192.0.2.1"),
        Ev::Action("web.nginx", "aiBots", "ban", "192.0.2.9"),
    ];
    let mut run: Vec<Vec<Ev>> = Vec::new();
    for i in 0..6usize {
        let ips = ["192.0.2.1", "192.0.2.2", "198.51.100.7", "203.0.113.66"];
        let mut phase = vec![
            Ev::Match("ssh", "failedlogin", ips[i % 4], "root", 1 + i * 3),
            Ev::Match("ssh", "failedlogin", ips[(i + 1) % 4], "admin", 2),
            Ev::Match("web.nginx", "aiBots", ips[(i + 2) % 4], "EvilBot", 5 + i),
            Ev::Action("ssh", "failedlogin", "ban", ips[i % 4]),
            Ev::Stream("ssh", "exit"),
        ];
        if i % 2 == 0 {
            phase.push(Ev::Action("web.nginx", "aiBots", "ban", ips[(i + 2) % 4]));
            phase.push(Ev::Command("stop", "iptables", 1));
            phase.push(Ev::Stream("web.nginx", "exec"));
        }
        run.push(phase);
    }
    // Counted: the endpoint's own count of lines read says so (reading it changes nothing).
    let written = std::cell::Cell::new(0usize);
    let write = |evs: &[Ev]| {
        let text: String = evs.iter().map(lines).collect();
        written.set(written.get() + text.lines().count());
        append(&log, &text);
    };
    let counted = || {
        common::wait_for(Duration::from_secs(30), "every line counted", || {
            let page = otel_page(&exp, None).1;
            (common::total(&page, "reaction_exporter_lines_read_total", &[])
                == written.get() as f64)
                .then_some(())
        })
    };
    let scraped_after = |t: f64| {
        for p in &proms {
            common::wait_for(Duration::from_secs(30), "a scrape", || {
                p.scrapes(JOB)
                    .last()
                    .filter(|s| **s as f64 / 1000.0 > t)
                    .map(drop)
            });
        }
    };
    write(&warm_up);
    counted();
    scraped_after(now());
    let t_run = now();
    for phase in &run {
        write(phase);
        counted();
        std::thread::sleep(Duration::from_millis(1000));
    }
    scraped_after(now());
    stop.store(true, Ordering::Relaxed);
    scraper.join().unwrap();

    // What was written: all of it (legacy), and the run alone (increase()).
    let mut expected: BTreeMap<(&str, Vec<&str>), f64> = BTreeMap::new();
    let mut expected_run: BTreeMap<(&str, Vec<&str>), f64> = BTreeMap::new();
    for (evs, in_run) in std::iter::once((&warm_up, false)).chain(run.iter().map(|p| (p, true))) {
        for ev in evs {
            let (fam, key, n) = match *ev {
                Ev::Match(s, f, _, _, n) => ("matches", vec![s, f], n as f64),
                Ev::Action(s, f, a, _) => ("actions", vec![s, f, a], 1.0),
                Ev::Stream(s, t) => ("streams", vec![s, t], 1.0),
                Ev::Command(state, c, code) => (
                    "commands",
                    vec![state, c, if code == 0 { "True" } else { "False" }],
                    1.0,
                ),
            };
            *expected.entry((fam, key.clone())).or_default() += n;
            if in_run {
                *expected_run.entry((fam, key)).or_default() += n;
            }
        }
    }

    // The legacy client is exact.
    let legacy = legacy.lock().unwrap().clone();
    let legacy_sum = |family: &str, keys: &[&str], want: &[&str]| -> f64 {
        legacy
            .iter()
            .filter(|((n, l), _)| {
                n == family
                    && keys
                        .iter()
                        .zip(want)
                        .all(|(k, w)| l.iter().any(|(lk, lv)| lk == k && lv == w))
            })
            .map(|(_, v)| v)
            .sum()
    };
    let shapes: [(&str, &str, &str, &[&str]); 4] = [
        (
            "matches",
            "reaction_match_count",
            "reaction_filter_matches_total",
            &["stream", "filter"],
        ),
        (
            "actions",
            "reaction_action_count",
            "reaction_action_runs_total",
            &["stream", "filter", "action"],
        ),
        (
            "streams",
            "reaction_stream_event_count",
            "reaction_stream_events_total",
            &["stream", "type"],
        ),
        (
            "commands",
            "reaction_commands_count",
            "reaction_command_runs_total",
            &["state", "command", "status"],
        ),
    ];
    let mut failures = Vec::new();
    for ((fam, key), want) in &expected {
        let (_, legacy_name, _, keys) = shapes.iter().find(|s| s.0 == *fam).unwrap();
        let got = legacy_sum(legacy_name, keys, key);
        if got != *want {
            failures.push(format!(
                "legacy /metrics {legacy_name} {key:?}: {got}, written {want}"
            ));
        }
    }

    // Each Prometheus: increase() over the run, from its last scrape before the run to its
    // last one, is the run's events exactly. The range is given in ms and the query made
    // at the last scrape's time, so that it starts and ends on samples: Prometheus 2.x
    // then extrapolates nothing (`extrapolatedRate`, promql/functions.go).
    let mut seen: Vec<BTreeMap<BTreeMap<String, String>, f64>> = Vec::new();
    for (p, name) in proms.iter().zip(["a", "b"]) {
        let scrapes = p.scrapes(JOB);
        let start = *scrapes
            .iter()
            .rfind(|t| (**t as f64) < t_run * 1000.0)
            .expect("a scrape before the run");
        let end = *scrapes.last().unwrap();
        let at = end as f64 / 1000.0;
        for (fam, _, otel_name, keys) in shapes {
            let by = keys.join(",");
            let r = p.query(
                &format!("sum by ({by}) (increase({otel_name}[{}ms]))", end - start),
                at,
            );
            let got = vector(&r);
            for ((f, key), want) in expected_run.iter().filter(|((f, _), _)| *f == fam) {
                let labels: BTreeMap<String, String> = keys
                    .iter()
                    .zip(key)
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                let g = got.get(&labels).copied().unwrap_or(f64::NAN);
                if g != *want {
                    failures.push(format!(
                        "prometheus {name}: increase({otel_name}) {f} {key:?}: {g}, written {want} (scrapes {start}..{end})"
                    ));
                }
            }
        }
        // No IP on the endpoint by default.
        let ips = p.query(
            "count(reaction_filter_matches_total{ip!=\"\"}) or vector(0)",
            at,
        );
        assert_eq!(workload::num(&ips["data"]["result"][0]["value"][1]), 0.0);
        seen.push(vector(&p.query(
            "reaction_filter_matches_total or reaction_action_runs_total",
            at,
        )));
        let logs = p.logs();
        assert!(!logs.contains("panic"), "prometheus {name}:\n{logs}");
    }
    // Both see the same totals at their last scrapes (nothing happened in between).
    assert_eq!(seen[0], seen[1], "the two Prometheus servers disagree");
    assert!(!seen[0].is_empty());
    assert!(
        failures.is_empty(),
        "{} checks failed:\n{}\n\nthe page: {}",
        failures.len(),
        failures.join("\n"),
        otel_page(&exp, None).1
    );
    eprintln!(
        "otel_endpoint HA: {} legacy series, run of {} phases, {:.1} s",
        legacy.len(),
        run.len(),
        begun.elapsed().as_secs_f64()
    );
}
