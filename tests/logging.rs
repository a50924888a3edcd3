//! `loglevel` decides what the exporter logs, and `RUST_LOG` decides instead when it is set.
//! Guards a regression: the logger used to be installed before the configuration was read,
//! and `loglevel` had no effect.

use crate::common;
use crate::tools;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
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
    let mut child = Command::new(BIN)
        .arg("-c")
        .arg(&config)
        .arg("start")
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = Arc::new(Mutex::new(String::new()));
    let pipe = child.stderr.take().unwrap();
    let sink = stderr.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            let mut s = sink.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
    });
    let addr = format!("127.0.0.1:{port}");
    wait_for(Duration::from_secs(30), "the match on /metrics", || {
        std::net::TcpStream::connect(&addr).ok()?;
        let (_, _, body) = get(&addr, "/metrics", None);
        body.contains("reaction_match_count{").then_some(())
    });
    signal(&child, 15);
    let status = wait_timeout(&mut child, Duration::from_secs(20)).expect("exits on SIGTERM");
    reader.join().unwrap();
    assert!(status.success(), "{}", stderr.lock().unwrap());
    let log = stderr.lock().unwrap().clone();
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
