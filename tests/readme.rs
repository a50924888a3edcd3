//! The README stays true: its defaults block is what `defaults` prints, its test command is
//! what CI runs, and it names every family the exporter shows on /metrics.

use std::process::Command;

use reaction_metrics_exporter::telemetry::families::FAMILIES;

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

#[test]
fn every_family_is_documented() {
    let readme = readme();
    for f in FAMILIES.iter() {
        assert!(
            readme.contains(f.legacy),
            "README does not mention {}",
            f.legacy
        );
    }
    assert!(readme.contains("reaction_exporter_build_info"));
}
