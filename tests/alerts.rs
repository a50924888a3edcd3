//! The alert rules in `alerts/`, checked with the real tools:
//! - `promtool check rules` (Debian package `prometheus`): valid PromQL, valid rule file;
//! - `promtool test rules`: the unit tests in `alerts/reaction.rules.test.yml` (each alert
//!   firing and not firing, with "since the last scrape" series);
//! - the unit tests catch broken rules: the same tests fail on mutated copies of the rules;
//! - `vmalert -dryRun` (Debian package `victoria-metrics`): vmalert reads the file;
//! - every rule has `for`, a `severity` label, a summary and a description, and the Python
//!   exporter's invalid expressions are not there.
//!
//! The expressions are also evaluated on real Prometheus and VictoriaMetrics fed by the
//! exporter in `tests/dashboards_e2e.rs`. A missing tool fails with the package to install.

use crate::grafana;
use crate::tools;

use std::path::Path;
use std::process::Command;

use grafana::root;
use tools::*;

const RULES: &str = "alerts/reaction.rules.yml";
const TESTS: &str = "alerts/reaction.rules.test.yml";
const ALERTS: [&str; 6] = [
    "ReactionDown",
    "ReactionExporterDown",
    "ReactionHighMatches",
    "ReactionStreamError",
    "ReactionCommandError",
    "ReactionIPUnbanned",
];

fn promtool(args: &[&str], dir: &Path) -> (bool, String) {
    run(Command::new(tool("promtool", "prometheus"))
        .args(args)
        .current_dir(dir))
}

fn rules() -> serde_yaml::Value {
    serde_yaml::from_str(&std::fs::read_to_string(root().join(RULES)).unwrap()).unwrap()
}

#[test]
fn promtool_check_rules_passes() {
    let (ok, out) = promtool(&["check", "rules", RULES], &root());
    assert!(ok, "promtool check rules {RULES}:\n{out}");
    assert!(out.contains("SUCCESS: 6 rules found"), "{out}");
}

#[test]
fn promtool_check_rules_refuses_the_legacy_invalid_rule() {
    // The checker must tell a bad expression, or it checks nothing: the Python exporter's
    // ReactionHighMatches is refused.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("legacy.yml"),
        "groups:\n  - name: legacy\n    rules:\n      - alert: ReactionHighMatches\n        \
         expr: rate(sum(reaction_match_count) by (instance)[5m]) >= 1\n        for: 5m\n",
    )
    .unwrap();
    let (ok, out) = promtool(&["check", "rules", "legacy.yml"], dir.path());
    assert!(!ok, "promtool accepted the invalid legacy rule:\n{out}");
    assert!(
        out.contains("ranges only allowed for vector selectors"),
        "{out}"
    );
}

#[test]
fn promtool_unit_tests_pass() {
    let (ok, out) = promtool(&["test", "rules", TESTS], &root());
    assert!(ok, "promtool test rules {TESTS}:\n{out}");
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn unit_tests_cover_every_alert_firing_and_not_firing() {
    let tests: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(root().join(TESTS)).unwrap()).unwrap();
    let mut firing = std::collections::BTreeSet::new();
    let mut quiet = std::collections::BTreeSet::new();
    for t in tests["tests"].as_sequence().unwrap() {
        for a in t["alert_rule_test"].as_sequence().unwrap() {
            let name = a["alertname"].as_str().unwrap().to_string();
            if a["exp_alerts"].as_sequence().is_some_and(|s| !s.is_empty()) {
                firing.insert(name);
            } else {
                quiet.insert(name);
            }
        }
    }
    for alert in ALERTS {
        assert!(firing.contains(alert), "no test where {alert} fires");
        assert!(quiet.contains(alert), "no test where {alert} does not fire");
    }
}

/// The rules with `from` replaced by `to` in one alert's expression.
fn mutated(from: &str, to: &str) -> String {
    let text = std::fs::read_to_string(root().join(RULES)).unwrap();
    assert!(text.contains(from), "{from:?} is not in {RULES}");
    text.replacen(from, to, 1)
}

#[test]
fn unit_tests_fail_on_broken_rules() {
    let mutations = [
        // The IP check forgets the actions and the pending ones.
        (
            "\n          unless on (ip) (sum by (ip) (sum_over_time(reaction_action_count{ip!=\"\"}[1h])) > 0)\n          unless on (ip) (sum by (ip) (reaction_pending_count{ip!=\"\"}) > 0)",
            "",
        ),
        // An instant value instead of a window: the one-scrape events are missed.
        (
            "sum by (instance, stream, type) (sum_over_time(reaction_stream_event_count{type!=\"start\"}[15m])) > 0",
            "sum by (instance, stream, type) (reaction_stream_event_count{type!=\"start\"}) > 0",
        ),
        // Successful commands alert too.
        ("reaction_commands_count{status!=\"True\"}", "reaction_commands_count"),
        // A threshold ten times lower.
        ("/ 300 >= 1", "/ 300 >= 0.1"),
        // Another job's targets count.
        ("up{job=~\"reaction.*\"} == 0", "up == 0"),
        // Alerts while reaction is up.
        ("reaction_status_info{status=\"0\"} == 1", "reaction_status_info == 1"),
    ];
    for (from, to) in mutations {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("reaction.rules.yml"), mutated(from, to)).unwrap();
        std::fs::copy(
            root().join(TESTS),
            dir.path().join("reaction.rules.test.yml"),
        )
        .unwrap();
        let (ok, out) = promtool(&["check", "rules", "reaction.rules.yml"], dir.path());
        assert!(ok, "the mutation {to:?} should still be valid:\n{out}");
        let (ok, out) = promtool(&["test", "rules", "reaction.rules.test.yml"], dir.path());
        assert!(
            !ok,
            "the unit tests pass with the broken rule {from:?} -> {to:?}:\n{out}"
        );
    }
}

#[test]
fn vmalert_reads_the_rules() {
    let (ok, out) = run(Command::new(tool("vmalert", "victoria-metrics"))
        .arg(format!("-rule={}", root().join(RULES).display()))
        .arg("-dryRun")
        .arg("-loggerLevel=ERROR"));
    assert!(ok, "vmalert -dryRun -rule={RULES}:\n{out}");
    // And it refuses a broken file, or it checks nothing.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yml");
    std::fs::write(
        &bad,
        "groups:\n  - name: x\n    rules:\n      - alert: A\n        expr: sum(\n",
    )
    .unwrap();
    let (ok, out) = run(Command::new(tool("vmalert", "victoria-metrics"))
        .arg(format!("-rule={}", bad.display()))
        .arg("-dryRun")
        .arg("-loggerLevel=ERROR"));
    assert!(!ok, "vmalert accepted a broken rule file:\n{out}");
}

#[test]
fn every_alert_has_for_severity_and_annotations() {
    let doc = rules();
    let mut names = Vec::new();
    for group in doc["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            let name = rule["alert"]
                .as_str()
                .expect("only alerting rules in this file");
            names.push(name.to_string());
            assert!(rule["for"].as_str().is_some(), "{name}: no `for`");
            let severity = rule["labels"]["severity"].as_str().unwrap_or("");
            assert!(
                ["critical", "warning", "info"].contains(&severity),
                "{name}: severity {severity:?}"
            );
            for a in ["summary", "description"] {
                assert!(
                    rule["annotations"][a]
                        .as_str()
                        .is_some_and(|s| !s.trim().is_empty()),
                    "{name}: no {a}"
                );
            }
            let expr = rule["expr"].as_str().unwrap();
            // The counts are gauges since the last scrape: never rate()/increase() on them.
            for f in ["rate(", "increase(", "irate("] {
                assert!(!expr.contains(f), "{name}: {f} on a gauge: {expr}");
            }
        }
    }
    assert_eq!(names, ALERTS, "the alerts, in order");
}
