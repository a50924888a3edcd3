//! Hostile input and faults on the real binary (issue 8's rows about the state file, the
//! journal, templates, labels and `reaction show`): each is bounded, logged and counted,
//! never fatal, and what the exporter shows stays true. The configuration rows are in
//! `cli` (test-config refuses them).

use crate::common;
use crate::journal;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use journal::*;

const INTERNALS: &str = "metrics:\n  export:\n    internals: true\n";
const STATE_FILE: &str = "reaction-metrics-exporter.state.json";
const LAST_LINE: &str = "this line is not from reaction\n";
const LAST_LINE_WARNING: &str = "\"this line is not from reaction\"";

fn state_path(dir: &Path) -> PathBuf {
    dir.join(STATE_FILE)
}

fn counter(page: &str, family: &str, labels: &[(&str, &str)]) -> f64 {
    total(page, family, labels)
}

/// A log file, the reaction fixture and the exporter's configuration (internals on).
/// Writes a state file (format 1) for the journal in `directory` at `cursor`, saved now.
fn write_journal_state(dir: &Path, directory: &str, cursor: &str) {
    let state = serde_json::json!({
        "format": "reaction-metrics-exporter/state/1",
        "saved_at_ms": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64,
        "source": {"kind": "journal", "unit": UNIT, "directory": directory},
        "position": {"kind": "journal", "cursor": cursor},
        "counts": []
    });
    std::fs::write(state_path(dir), state.to_string()).unwrap();
}

/// A page after a saved journal cursor was given up: once, counted as an invalid
/// position, and journalctl not failing (restarted) on it.
fn assert_cursor_given_up_once(page: &str) {
    assert_eq!(
        counter(page, "reaction_exporter_positions_invalid_total", &[]),
        1.0,
        "{page}"
    );
    assert_eq!(
        counter(
            page,
            "reaction_exporter_source_errors_total",
            &[("source", "journald")]
        ),
        0.0,
        "journalctl was not retried on the cursor: {page}"
    );
}

/// The cursor of the state file the exporter saved.
fn saved_cursor(dir: &Path) -> String {
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(state_path(dir)).unwrap()).unwrap();
    saved["position"]["cursor"].as_str().unwrap().to_string()
}

fn file_setup(dir: &Path) -> (Reaction, PathBuf, String) {
    let r = Reaction::new(dir, &reaction_config());
    let log = dir.join("reaction.log");
    append(&log, "");
    let config = file_config(&log, &r, INTERNALS);
    (r, log, config)
}

// ---- The state file ---------------------------------------------------------------------

/// Guards issue 8: a symbolic link planted at the state file's temporary name had its
/// target overwritten by the next checkpoint, and the state file (IPs, user names) was
/// mode 0644. Now the link is removed, never followed, and the state file is 0600, also
/// when an older one was 0644.
#[test]
fn a_link_planted_at_the_temporary_name_is_not_followed_and_the_state_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let (_r, log, config) = file_setup(dir.path());
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    std::os::unix::fs::symlink(&victim, dir.path().join(format!(".{STATE_FILE}.tmp"))).unwrap();
    // An older state file, readable by everyone (and not a valid state: it is refused).
    std::fs::write(state_path(dir.path()), "{}").unwrap();
    std::fs::set_permissions(state_path(dir.path()), PermissionsExt::from_mode(0o644)).unwrap();

    let e = Exporter::start(dir.path(), &config);
    append(&log, &ssh_match("192.0.2.1", "root"));
    let page = wait_for(Duration::from_secs(20), "the match", || {
        let page = e.scrape();
        (counter(&page, "reaction_match_count", &[]) == 1.0).then_some(page)
    });
    assert!(page.contains("reaction_match_count"), "{page}");
    // The delivered scrape wrote a checkpoint; the stop writes the last one.
    assert!(e.terminate().success());
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    let meta = std::fs::symlink_metadata(state_path(dir.path())).unwrap();
    assert!(meta.file_type().is_file());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(state_path(dir.path())).unwrap()).unwrap();
    assert_eq!(state["source"]["kind"], "file", "{state}");
}

/// Guards issue 8: a FIFO at the state path hung the start (and SIGTERM was ignored); a
/// path to `/dev/zero` was read for about 1 GB before failing. Both are refused at once,
/// logged and counted; the exporter starts per `start_at`, serves, and stops on SIGTERM.
/// So is a state file over the 64 MiB cap ("a size cap on the state file"), without
/// being read.
#[test]
fn a_fifo_or_a_link_to_dev_zero_at_the_state_path_is_refused_without_blocking() {
    for what in ["fifo", "/dev/zero", "over 64 MiB"] {
        let dir = tempfile::tempdir().unwrap();
        let (_r, log, config) = file_setup(dir.path());
        if what == "fifo" {
            let status = std::process::Command::new("mkfifo")
                .arg(state_path(dir.path()))
                .status()
                .unwrap();
            assert!(status.success());
        } else if what == "/dev/zero" {
            std::os::unix::fs::symlink("/dev/zero", state_path(dir.path())).unwrap();
        } else {
            // A sparse file: 64 MiB + 1 byte long, no disk used.
            let f = std::fs::File::create(state_path(dir.path())).unwrap();
            f.set_len(64 * 1024 * 1024 + 1).unwrap();
        }
        append(
            &log,
            &format!("{}{LAST_LINE}", ssh_match("192.0.2.2", "root")),
        );
        // Exporter::start returns once it serves: the start did not block.
        let e = Exporter::start(dir.path(), &config);
        e.wait_log(LAST_LINE_WARNING, Duration::from_secs(20));
        let page = e.scrape();
        assert_eq!(
            counter(&page, "reaction_match_count", &[]),
            1.0,
            "{what}: {page}"
        );
        assert_eq!(
            counter(&page, "reaction_exporter_positions_invalid_total", &[]),
            1.0,
            "{what}: {page}"
        );
        assert_eq!(
            counter(
                &page,
                "reaction_exporter_source_errors_total",
                &[("source", "state")]
            ),
            1.0,
            "{what}: {page}"
        );
        let says = match what {
            "fifo" => "it is a FIFO, not a regular file",
            "/dev/zero" => "it is a symbolic link",
            _ => "67108865 bytes, more than the 67108864 a state file may have",
        };
        let (status, logs) = e.terminate_with_logs();
        assert!(status.success(), "{what}: {logs}");
        assert!(logs.contains(says), "{what}: {logs}");
        // The state saved at the stop replaced what was there.
        assert!(std::fs::symlink_metadata(state_path(dir.path()))
            .unwrap()
            .file_type()
            .is_file());
    }
}

/// Guards issue 8: a state file saved far in the future (here a year, with 300 series) was
/// taken as saved "0 s ago", and its counts shown. It is refused: nothing of it is shown,
/// the log is read per `start_at`, and that is logged and counted.
#[test]
fn a_state_saved_in_the_future_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_r, log, config) = file_setup(dir.path());
    // A real state first: one series, saved at the stop.
    append(
        &log,
        &format!("{}{LAST_LINE}", ssh_match("192.0.2.3", "root")),
    );
    let e = Exporter::start(dir.path(), &config);
    e.wait_log(LAST_LINE_WARNING, Duration::from_secs(20));
    assert!(e.terminate().success());
    let mut state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(state_path(dir.path())).unwrap()).unwrap();
    let one = state["counts"][0].clone();
    assert_eq!(one["family"], "reaction.filter.matches", "{state}");
    state["counts"] = (0..300)
        .map(|i| {
            let mut c = one.clone();
            c["attributes"][1][1] = format!("198.51.{}.{}", i / 256, i % 256).into();
            c
        })
        .collect();
    let year_ms = 365 * 86_400 * 1000u64;
    state["saved_at_ms"] = (state["saved_at_ms"].as_u64().unwrap() + year_ms).into();
    std::fs::write(state_path(dir.path()), state.to_string()).unwrap();

    let e = Exporter::start(dir.path(), &config);
    e.wait_log(LAST_LINE_WARNING, Duration::from_secs(20));
    let page = e.scrape();
    // start_at: beginning: the one line of the log, none of the 300 saved series.
    assert_eq!(counter(&page, "reaction_match_count", &[]), 1.0, "{page}");
    assert_eq!(
        counter(&page, "reaction_exporter_positions_invalid_total", &[]),
        1.0
    );
    let (status, logs) = e.terminate_with_logs();
    assert!(status.success());
    assert!(logs.contains("in the future"), "{logs}");
    assert!(!logs.contains("continuing from the saved state"), "{logs}");
}

/// Guards issue 8: a NUL byte in a saved journald cursor: journalctl never started, it was
/// retried forever, and the cursor was saved again with a fresh time so that it never
/// expired (nothing was ever read again). The state is refused at start (logged, counted),
/// journalctl starts per `start_at`, every entry is counted, and the next state holds a
/// real cursor.
#[test]
fn a_nul_byte_in_a_saved_journal_cursor_is_refused_and_the_journal_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let r = Reaction::new(dir.path(), &reaction_config());
    let mut journal = Journal::new(&dir.path().join("journal"));
    let entries = [
        journal.next(ssh_match("192.0.2.4", "root").trim_end()),
        journal.next(LAST_LINE.trim_end()),
    ];
    journal.write(&entries);
    let config = journald_config(&journal.dir, &journalctl(), &r, dir.path(), INTERNALS);
    write_journal_state(
        dir.path(),
        &journal.dir.display().to_string(),
        "s=0123\u{0};i=1",
    );

    let e = Exporter::start(dir.path(), &config);
    e.wait_log(LAST_LINE_WARNING, Duration::from_secs(20));
    let page = e.scrape();
    assert_eq!(counter(&page, "reaction_match_count", &[]), 1.0, "{page}");
    assert_cursor_given_up_once(&page);
    let (status, logs) = e.terminate_with_logs();
    assert!(status.success());
    assert!(logs.contains("is not one journalctl prints"), "{logs}");
    let cursor = saved_cursor(dir.path());
    assert!(
        cursor.starts_with("s=") && !cursor.contains('\0'),
        "{cursor}"
    );
}

/// Guards issue 8's "a cursor journalctl refuses falls back (logged, counted) instead of
/// retrying forever": a saved cursor that looks like one journalctl prints but that it
/// refuses (`Failed to seek to cursor`) is given up at once for the time it records
/// (`t=`): the entries from that time on are counted, the one before it is not counted
/// again, journalctl is not restarted on the cursor, and the next state holds a real
/// cursor.
#[test]
fn a_cursor_journalctl_refuses_falls_back_to_its_time() {
    let dir = tempfile::tempdir().unwrap();
    let r = Reaction::new(dir.path(), &reaction_config());
    let mut journal = Journal::new(&dir.path().join("journal"));
    let entries = [
        journal.next(ssh_match("192.0.2.5", "before").trim_end()),
        journal.next(ssh_match("192.0.2.6", "at").trim_end()),
        journal.next(LAST_LINE.trim_end()),
    ];
    journal.write(&entries);
    let config = journald_config(&journal.dir, &journalctl(), &r, dir.path(), INTERNALS);
    // Syntactically a cursor (the state file takes it), but no journal's: journalctl
    // refuses it. It records the second entry's time.
    let refused = format!("s=not-an-id;i=2;t={:x}", entries[1].usec);
    write_journal_state(dir.path(), &journal.dir.display().to_string(), &refused);

    let e = Exporter::start(dir.path(), &config);
    e.wait_log(LAST_LINE_WARNING, Duration::from_secs(20));
    let page = e.scrape();
    assert_eq!(
        counter(&page, "reaction_match_count", &[("user", "at")]),
        1.0,
        "{page}"
    );
    assert_eq!(counter(&page, "reaction_match_count", &[]), 1.0, "{page}");
    assert_cursor_given_up_once(&page);
    let (status, logs) = e.terminate_with_logs();
    assert!(status.success());
    assert!(
        logs.contains(&format!("saved position {refused:?} cannot be used")),
        "{logs}"
    );
    assert!(logs.contains("@1700000000.001000"), "{logs}");
    let cursor = saved_cursor(dir.path());
    assert!(cursor.starts_with("s=") && cursor != refused, "{cursor}");
}

// ---- Faults of the exporter itself ------------------------------------------------------

/// Guards issue 8: a panic in the ingest task (there, `hold: 18446744073709551615`) left
/// the process up with ingest stopped and the labeller's lock poisoned, so systemd's
/// `Restart=on-failure` never fired. Now a core task that dies stops the exporter, which
/// exits non-zero. The panic comes from the debug-only hook of `src/fault.rs` (compiled out
/// of release builds): no input reaches a panic any more, which is what the fuzz targets
/// check.
#[test]
fn a_core_task_that_dies_ends_the_process_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (_r, log, config) = file_setup(dir.path());
    std::fs::write(dir.path().join("config.yml"), &config).unwrap();
    let e = Exporter::start_with(
        &dir.path().join("config.yml"),
        &[("REACTION_METRICS_EXPORTER_FAULT", "ingest")],
    );
    append(&log, &ssh_match("192.0.2.1", "root"));
    let (status, logs) = e
        .wait_exit(Duration::from_secs(20))
        .unwrap_or_else(|logs| panic!("still running after ingest died:\n{logs}"));
    assert_eq!(status.code(), Some(1), "{logs}");
    assert!(
        logs.contains("the ingest task panicked: injected fault"),
        "{logs}"
    );
    // The batch that died is not checkpointed: a restart reads it again.
    assert!(!state_path(dir.path()).exists(), "{logs}");
}

/// Guards issue 8's "if a core task dies, the process dies" for the OTLP push: its
/// collector ignored a panic of its collection, so one panic (a bug) stopped OTLP delivery
/// while the process stayed up and systemd never restarted it (OTLP only: nothing was
/// delivered any more). Now the push's collector and sender are core tasks.
#[test]
fn a_dead_otlp_push_ends_the_process_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (_r, _log, config) = file_setup(dir.path());
    // No receiver is needed: the collection panics before anything is sent.
    let port = crate::tools::free_port();
    let config = format!("{config}otlp:\n  endpoint: http://127.0.0.1:{port}\n  interval: 0.3\n");
    std::fs::write(dir.path().join("config.yml"), &config).unwrap();
    let e = Exporter::start_with(
        &dir.path().join("config.yml"),
        &[("REACTION_METRICS_EXPORTER_FAULT", "otlp")],
    );
    let (status, logs) = e
        .wait_exit(Duration::from_secs(20))
        .unwrap_or_else(|logs| panic!("still running after the OTLP push died:\n{logs}"));
    assert_eq!(status.code(), Some(1), "{logs}");
    assert!(
        logs.contains("the OTLP push task collector panicked: injected fault"),
        "{logs}"
    );
}

/// Guards issue 8: `reaction show`'s output was read whole, however long. A `reaction`
/// whose `show` prints forever now costs at most `REACTION_OUTPUT_MAX` (16 MiB): the call
/// fails, is counted (`kind="output"`) and logged, and every scrape is still answered,
/// with reaction shown down.
#[test]
fn an_endless_reaction_show_is_cut_and_the_scrape_answered() {
    let dir = tempfile::tempdir().unwrap();
    let r = Reaction::new(dir.path(), &reaction_config());
    // `show` prints forever; every other command is the fixture's.
    let endless = dir.path().join("endless-reaction");
    std::fs::write(
        &endless,
        format!(
            "#!/bin/sh\nif [ \"$1\" = show ]; then exec yes 'ssh: {{}}'; fi\nexec {} \"$@\"\n",
            r.bin.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&endless, PermissionsExt::from_mode(0o755)).unwrap();
    let log = dir.path().join("reaction.log");
    append(&log, "");
    let config = file_config(&log, &r, INTERNALS).replace(
        &format!("binary: {}", r.bin.display()),
        &format!("binary: {}", endless.display()),
    );
    let e = Exporter::start(dir.path(), &config);
    for scrape in 1..=2 {
        let page = e.scrape();
        assert_eq!(status(&page).1, "0", "reaction is shown down: {page}");
        assert_eq!(
            counter(
                &page,
                "reaction_exporter_reaction_cli_failures_total",
                &[("command", "show"), ("kind", "output")]
            ),
            scrape as f64,
            "{page}"
        );
    }
    let (status, logs) = e.terminate_with_logs();
    assert!(status.success(), "{logs}");
    assert!(
        logs.contains("more than 16777216 bytes on stdout"),
        "{logs}"
    );
}
