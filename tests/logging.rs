//! `loglevel` decides what the exporter logs, and `RUST_LOG` decides instead when it is set.
//! Guards a regression: the logger used to be installed before the configuration was read,
//! and `loglevel` had no effect.

use crate::common;
use crate::tools;

use std::path::Path;
use std::time::Duration;

use common::*;

/// A log with a start command and, within `hold`, an action (logged at DEBUG as held).
fn setup(dir: &Path, loglevel: &str, port: u16) -> std::path::PathBuf {
    let reaction = Reaction::new(dir, &reaction_config());
    let log = dir.join("reaction.log");
    std::fs::write(
        &log,
        format!(
            "INFO start command: run [\"iptables\", \"-w\", \"-N\", \"reaction\"]\n{}{}",
            ssh_match("1.2.3.4", "root"),
            ssh_action("ban", "1.2.3.4")
        ),
    )
    .unwrap();
    let config = file_config(&log, &reaction, "")
        .replace("loglevel: INFO\n", &format!("loglevel: {loglevel}\n"))
        .replace("  port: 0\n", &format!("  port: {port}\n"))
        .replace("  hold: 0\n", "  hold: 60\n");
    assert!(config.contains(&format!("loglevel: {loglevel}\n")));
    let path = dir.join("config.yml");
    std::fs::write(&path, config).unwrap();
    path
}

/// Runs the binary with `loglevel` and no `RUST_LOG` until it counted the match, stops it,
/// and returns its stderr.
fn run(loglevel: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let port = tools::free_port();
    let config = setup(dir.path(), loglevel, port);
    let e = Exporter::start_without_rust_log(&config, port);
    wait_for(Duration::from_secs(30), "the match on /metrics", || {
        e.scrape().contains("reaction_match_count{").then_some(())
    });
    let (status, log) = e.terminate_with_logs();
    assert!(status.success(), "{log}");
    log
}

#[test]
fn loglevel_error_logs_no_info_line() {
    let log = run("ERROR");
    assert!(
        !log.contains(" INFO ") && !log.contains(" DEBUG ") && !log.contains(" WARN "),
        "{log}"
    );
}

#[test]
fn loglevel_debug_logs_debug_lines() {
    let log = run("DEBUG");
    assert!(
        log.contains(" DEBUG ") && log.contains("action ignored"),
        "the held action is logged at DEBUG:\n{log}"
    );
    assert!(log.contains(" INFO "), "{log}");
}

#[test]
fn rust_log_wins_over_loglevel() {
    // The harness sets RUST_LOG=info and finds the address in the INFO line "serving ...".
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), "ERROR", 0);
    let e = Exporter::start_with(&config, &[]);
    assert!(e.logs().contains(" INFO "), "{}", e.logs());
    assert!(e.terminate().success());
}
