//! The fuzz targets (`src/fuzz`) at every test run: a short campaign of each (the long runs
//! are `cargo run --release --example fuzz`), and every crash a campaign found, kept in
//! `fuzz/regressions/<target>/`, replayed without a panic.

use std::path::Path;

use reaction_metrics_exporter::fuzz::{replay, Campaign, Target};

/// A short campaign: a fixed seed (the same inputs every run, so a failure repeats) and a
/// second one that changes every day (new inputs over time, still repeatable: the seed is
/// in the message).
fn campaign(target: Target, inputs: u64) {
    let day = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400);
    for seed in [1, day] {
        let report = Campaign {
            target,
            inputs,
            seed,
        }
        .run()
        .unwrap_or_else(|crash| panic!("seed {seed}: {crash}"));
        assert_eq!(report.inputs, inputs);
        assert!(report.signatures > 1, "{report:?}");
    }
}

#[test]
fn line_parser() {
    campaign(Target::Line, 30_000);
}

#[test]
fn debug_tokenizer() {
    campaign(Target::DebugStr, 30_000);
}

#[test]
fn configuration_loader() {
    campaign(Target::Config, 2_000);
}

#[test]
fn reaction_show() {
    campaign(Target::Show, 5_000);
}

#[test]
fn journalctl_reader() {
    campaign(Target::Journal, 5_000);
}

#[test]
fn state_file_loader() {
    campaign(Target::State, 10_000);
}

#[test]
fn every_crash_found_stays_fixed() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let mut replayed = 0;
    for dir in std::fs::read_dir(&root).unwrap() {
        let dir = dir.unwrap().path();
        if !dir.is_dir() {
            continue; // the README
        }
        let name = dir.file_name().unwrap().to_str().unwrap().to_owned();
        let target = Target::from_name(&name)
            .unwrap_or_else(|| panic!("{}: not a fuzz target", dir.display()));
        for file in std::fs::read_dir(&dir).unwrap() {
            let file = file.unwrap().path();
            let input = std::fs::read(&file).unwrap();
            replay(target, &input).unwrap_or_else(|crash| panic!("{}: {crash}", file.display()));
            replayed += 1;
        }
    }
    assert!(replayed > 0, "no regression input under {}", root.display());
}
