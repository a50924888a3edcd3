//! The README stays true: its defaults block is what `defaults` prints, its test command is
//! what CI runs, its tables of /metrics families are the metric table (every family,
//! nothing else, with its labels in order), and its table of limits names every bound of
//! `src/defaults.rs`.

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

/// The constants of `src/defaults.rs` that bound nothing: addresses, paths, names, the
/// protocol, how often things are polled or folded. Every other constant there is a bound
/// and has its row in "Limits and hostile input"; a constant added to `src/defaults.rs`
/// goes in one or the other.
const NOT_BOUNDS: &[&str] = &[
    "LISTEN_ADDRESS",
    "LISTEN_PORT",
    "REACTION_CONFIG",
    "REACTION_SOCKET",
    "REACTION_BINARY",
    "SYSTEMD_UNIT",
    "LOG_FILE",
    "JOURNALCTL",
    "CONTAINER_JOURNAL_DIRECTORY",
    "CONTAINER_STATE_DIRECTORY",
    "OTLP_PROTOCOL",
    "OTLP_GRPC_ENDPOINT",
    "OTLP_HTTP_ENDPOINT",
    "SERVICE_NAME",
    "OTEL_ENDPOINT_ENABLED",
    "OTEL_ENDPOINT_PATH",
    "OTEL_ENDPOINT_FOLD_INTERVAL",
    "FILE_POLL_INTERVAL",
    "RELEASE_AFTER_BYTES",
];

/// The section of the README under `heading` (a `## ` heading), up to the next one.
fn section<'a>(readme: &'a str, heading: &str) -> &'a str {
    let start = readme
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("no {heading:?} in the README"));
    let body = &readme[start + heading.len() + 2..];
    &body[..body.find("\n## ").unwrap_or(body.len())]
}

/// The names of the constants (`const NAME:`) of a source file.
fn constants(source: &str) -> Vec<String> {
    source
        .lines()
        .filter_map(|l| {
            l.trim_start()
                .strip_prefix("pub(crate) ")
                .or(Some(l.trim_start()))
        })
        .filter_map(|l| l.strip_prefix("const "))
        .filter_map(|l| l.split_once(':').map(|(name, _)| name.trim().to_string()))
        .collect()
}

/// Whether `name` of the limits table is a constant: `NAME` of `src/defaults.rs`, or
/// `module::NAME` of `src/module.rs` or `src/module/mod.rs`.
fn is_constant(name: &str, defaults: &[String]) -> bool {
    match name.rsplit_once("::") {
        None => defaults.iter().any(|d| d == name),
        Some((module, name)) => {
            let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/");
            let module = module.replace("::", "/");
            [format!("{dir}{module}.rs"), format!("{dir}{module}/mod.rs")]
                .iter()
                .filter_map(|p| std::fs::read_to_string(p).ok())
                .any(|source| constants(&source).iter().any(|c| c == name))
        }
    }
}

/// "Limits and hostile input" is one table whose last column names constants; every
/// constant of `src/defaults.rs` that bounds something (all but [`NOT_BOUNDS`]) is named
/// there, and every name there is a constant. A bound added without its row fails here.
#[test]
fn every_bound_of_defaults_is_in_the_limits_table() {
    let readme = readme();
    let limits = section(&readme, "## Limits and hostile input");
    let defaults = constants(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/defaults.rs")).unwrap(),
    );
    assert!(defaults.len() > 60, "{defaults:?}");
    for name in NOT_BOUNDS {
        assert!(
            defaults.iter().any(|d| d == name),
            "NOT_BOUNDS names {name}, which is not a constant of src/defaults.rs"
        );
    }
    let rows: Vec<&str> = limits.lines().filter(|l| l.starts_with("| ")).collect();
    assert!(
        rows.first().is_some_and(|h| h.ends_with("| in the code |")),
        "one table, whose last column is \"in the code\": {rows:?}"
    );
    // Everything between the table's first and last row is the table: one table.
    let first = limits.find("\n| ").unwrap();
    let last = limits.rfind("\n| ").unwrap();
    assert!(
        limits[first + 1..last].lines().all(|l| l.starts_with('|')),
        "the section has one table"
    );
    let mut named = Vec::new();
    for row in &rows[2..] {
        // No cell holds a `|`: the row's cells are what lies between them.
        let inner = row
            .trim()
            .strip_prefix('|')
            .and_then(|r| r.strip_suffix('|'));
        let cells: Vec<&str> = inner.unwrap_or(row).split('|').map(str::trim).collect();
        assert_eq!(cells.len(), 5, "five cells: {row}");
        let last = cells[4].trim();
        if last.is_empty() || last == "—" {
            continue;
        }
        for name in last.split(", ") {
            let name = name
                .strip_prefix('`')
                .and_then(|n| n.strip_suffix('`'))
                .unwrap_or_else(|| panic!("{name:?} in {row}: a name in backquotes"));
            assert!(
                is_constant(name, &defaults),
                "{name} (in the README's limits table) is not a constant of src/defaults.rs"
            );
            named.push(name.to_string());
        }
    }
    let missing: Vec<&String> = defaults
        .iter()
        .filter(|d| !NOT_BOUNDS.contains(&d.as_str()) && !named.contains(d))
        .collect();
    assert!(
        missing.is_empty(),
        "bounds of src/defaults.rs missing from the README's \"Limits and hostile input\" \
         (or, if they bound nothing, from NOT_BOUNDS in tests/readme.rs): {missing:?}"
    );
    let both: Vec<&&str> = NOT_BOUNDS
        .iter()
        .filter(|n| named.iter().any(|d| d == *n))
        .collect();
    assert!(both.is_empty(), "in the table and in NOT_BOUNDS: {both:?}");
}
