//! The README stays true: its defaults block is what `defaults` prints, its test command is
//! what CI runs, and its tables of /metrics families are the metric table: every family,
//! nothing else, with its labels in order.

use std::process::Command;

use reaction_metrics_exporter::metric::{Metric, BUILD_INFO};

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap()
}

#[test]
fn defaults_block_equals_the_defaults_command() {
    let readme = readme();
    let start = readme
        .find("<!-- defaults:begin -->")
        .expect("defaults:begin marker");
    let end = readme
        .find("<!-- defaults:end -->")
        .expect("defaults:end marker");
    let block = &readme[start..end];
    let yaml = block
        .split_once("```yaml\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(yaml, _)| yaml)
        .expect("a ```yaml block between the markers");
    let out = Command::new(env!("CARGO_BIN_EXE_reaction-metrics-exporter"))
        .arg("defaults")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(yaml, String::from_utf8(out.stdout).unwrap());
}

#[test]
fn test_command_is_what_ci_runs() {
    let readme = readme();
    assert!(readme.contains("```sh\n./scripts/test\n```"));
    let ci = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/run")).unwrap();
    assert!(
        ci.lines().any(|l| l.trim() == "exec ./scripts/test"),
        "{ci}"
    );
    let demo = "cargo run --release -- -c examples/demo/config.yml start";
    assert!(readme.contains(demo));
}

/// The rows of the README's tables of `/metrics` families: (family, label keys, whether
/// pattern labels follow). Label keys are the backticked words of the labels cell outside
/// parentheses (inside them are the values).
fn documented_families(readme: &str) -> Vec<(String, Vec<String>, bool)> {
    let start = readme
        .find("## Metrics on `/metrics`")
        .expect("the /metrics section");
    let section = &readme[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let backticked = |cell: &str| -> Vec<String> {
        cell.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    };
    let mut rows = Vec::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let name = backticked(cells[1]).remove(0);
        let mut outside = String::new();
        let mut depth = 0;
        for c in cells[2].chars() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                c if depth == 0 => outside.push(c),
                _ => {}
            }
        }
        let patterns = cells[2].contains("pattern label") || cells[2].contains("label per pattern");
        rows.push((name, backticked(&outside), patterns));
    }
    rows
}

#[test]
fn every_family_is_documented_with_its_labels() {
    let rows = documented_families(&readme());
    let mut want: Vec<(String, Vec<String>, bool)> =
        vec![(BUILD_INFO.to_string(), vec!["version".to_string()], false)];
    for m in Metric::ALL {
        let s = m.spec();
        let mut labels: Vec<String> = s.attributes.iter().map(|a| a.to_string()).collect();
        if *m == Metric::Up {
            // The legacy shape: the value is a `status` label of a constant 1.
            labels.push("status".to_string());
        }
        want.push((s.legacy.to_string(), labels, s.patterns));
    }
    let sorted = |mut v: Vec<(String, Vec<String>, bool)>| {
        v.sort();
        v
    };
    assert_eq!(
        sorted(rows),
        sorted(want),
        "the README's tables of /metrics families (family, labels in order, pattern labels) \
         and the metric table (src/metric.rs) disagree"
    );
}
