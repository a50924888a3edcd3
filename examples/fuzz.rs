//! Long fuzzing runs on the stable toolchain (the short ones run in `cargo test`):
//!
//! ```text
//! cargo run --release --example fuzz                  # every target, the issue-8 counts
//! cargo run --release --example fuzz -- line 1e8 42   # one target, 10^8 inputs, seed 42
//! ```
//!
//! Arguments, all optional: the target (`all`, or one of `line`, `debug_str`, `config`,
//! `show`, `journal`, `state`), the number of inputs (default: 10^7 for the two parsers,
//! `line` and `debug_str`, 10^5 for the others), the seed (default: the time). A crash
//! stops the run: its input is written to `fuzz/crashes/<target>-<hash>`; once fixed, move
//! it to `fuzz/regressions/<target>/` where `cargo test` replays it for ever.

use std::process::ExitCode;

use reaction_metrics_exporter::fuzz::{Campaign, Crash, Target};

fn default_inputs(target: Target) -> u64 {
    match target {
        Target::Line | Target::DebugStr => 10_000_000,
        _ => 100_000,
    }
}

fn keep(crash: &Crash) -> std::io::Result<std::path::PathBuf> {
    let hash = crash.input.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/crashes");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{}-{hash:016x}", crash.target.name()));
    std::fs::write(&path, &crash.input)?;
    Ok(path)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let targets: Vec<Target> = match args.first().map(String::as_str) {
        None | Some("all") => Target::ALL.to_vec(),
        Some(name) => match Target::from_name(name) {
            Some(t) => vec![t],
            None => {
                eprintln!("unknown target {name:?}");
                return ExitCode::from(2);
            }
        },
    };
    let inputs: Option<u64> = match args.get(1) {
        None => None,
        Some(n) => match n.parse::<f64>() {
            Ok(n) if n >= 1.0 => Some(n as u64),
            _ => {
                eprintln!("not a number of inputs: {n:?}");
                return ExitCode::from(2);
            }
        },
    };
    let seed = match args.get(2) {
        Some(s) => match s.parse() {
            Ok(s) => s,
            Err(_) => {
                eprintln!("not a seed: {s:?}");
                return ExitCode::from(2);
            }
        },
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    };
    // Panics are caught and reported once, with their input.
    std::panic::set_hook(Box::new(|_| {}));
    for target in targets {
        let campaign = Campaign {
            target,
            inputs: inputs.unwrap_or_else(|| default_inputs(target)),
            seed,
        };
        match campaign.run() {
            Ok(r) => println!(
                "{:<10} {:>11} inputs in {:>8.1} s ({:>7.0}/s), no panic; seed {seed}, {} signatures, corpus {}, slowest input {:.1} ms ({} bytes)",
                target.name(),
                r.inputs,
                r.elapsed.as_secs_f64(),
                r.inputs as f64 / r.elapsed.as_secs_f64(),
                r.signatures,
                r.corpus,
                r.slowest.0.as_secs_f64() * 1000.0,
                r.slowest.1.len(),
            ),
            Err(crash) => {
                eprintln!("CRASH (seed {seed}): {crash}");
                match keep(&crash) {
                    Ok(path) => eprintln!("input written to {}", path.display()),
                    Err(e) => eprintln!("cannot write the input: {e}"),
                }
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
