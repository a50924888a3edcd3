//! The real binary reading reaction's output from journald: real journal files written with
//! systemd-journal-remote, read through the exporter's `journalctl` child
//! (`reaction.logs.systemd`, `reaction.logs.directory`, `reaction.logs.journalctl`).

use crate::common;
use crate::counts;
use crate::journal;

use std::path::Path;
use std::time::Duration;

use common::*;
use counts::*;
use journal::*;
use serde_json::json;

const INTERNALS: &str = "metrics:\n  export:\n    internals: true\n";
const SEC: u64 = 1_000_000;

const START_COMMAND: &str = "INFO start command: run [\"iptables\", \"-w\", \"-N\", \"reaction\"]";
const STOP_COMMAND: &str = "INFO stop command: run [\"iptables\", \"-w\", \"-X\", \"reaction\"]";
const SSH_START: &str = "INFO ssh: start [\"journalctl\", \"-fn0\", \"-u\", \"sshd.service\"]";
const STOPPING: &str = "INFO received SIGTERM, closing streams...";

fn match_labels<'a>(ip: &'a str, user: &'a str) -> [(&'a str, &'a str); 4] {
    [
        ("stream", "ssh"),
        ("filter", "failedlogin"),
        ("ip", ip),
        ("user", user),
    ]
}

fn action_labels<'a>(action: &'a str, ip: &'a str, user: &'a str) -> [(&'a str, &'a str); 5] {
    [
        ("stream", "ssh"),
        ("filter", "failedlogin"),
        ("action", action),
        ("ip", ip),
        ("user", user),
    ]
}

fn command_labels(state: &str) -> [(&str, &str); 4] {
    [
        ("state", state),
        ("command", "iptables"),
        ("status", "True"),
        ("code", "0"),
    ]
}

const SSH_STARTED: [(&str, &str); 2] = [("stream", "ssh"), ("type", "start")];

/// A reaction fixture, a journal in `dir/journal`, and an exporter reading it (state file in
/// `dir`) with `hold` and `extra_yaml`.
fn setup(dir: &Path, hold: u64, extra_yaml: &str) -> (Reaction, Journal, String) {
    let reaction = Reaction::new(dir, &reaction_config());
    let journal = Journal::new(&dir.join("journal"));
    let config = journald_config(&journal.dir, &journalctl(), &reaction, dir, extra_yaml)
        .replace("  hold: 0\n", &format!("  hold: {hold}\n"));
    assert!(config.contains(&format!("  hold: {hold}\n")));
    (reaction, journal, config)
}

/// Two more scrapes, spaced by a few source reads: nothing more is counted.
fn settles(counts: &mut Counts, e: &Exporter) {
    let before = counts.sums.clone();
    std::thread::sleep(Duration::from_millis(700));
    counts.add(e.scrape());
    counts.add(e.scrape());
    assert_eq!(counts.sums, before, "counted more than written");
}

#[test]
fn unit_entries_are_counted_with_labels_other_units_ignored_appended_followed() {
    let dir = tempfile::tempdir().unwrap();
    let (_r, mut journal, config) = setup(dir.path(), 0, "");
    let first = [
        journal.next(START_COMMAND),
        journal.next(SSH_START),
        journal.next(ssh_match("1.1.1.1", "alice").trim_end()),
        of_unit(
            "sshd.service",
            journal.next(ssh_match("9.9.9.9", "mallory").trim_end()),
        ),
        journal.next(ssh_match("1.1.1.1", "alice").trim_end()),
        journal.next(ssh_match("1.1.1.1", "alice").trim_end()),
        of_unit(
            "other.service",
            journal.next(ssh_action("ban", "9.9.9.9").trim_end()),
        ),
        journal.next(ssh_action("ban", "1.1.1.1").trim_end()),
    ];
    journal.write(&first);
    let e = Exporter::start(dir.path(), &config);
    assert!(
        e.logs()
            .contains("reading reaction's journal through journalctl"),
        "{}",
        e.logs()
    );
    let mut counts = Counts::default();
    counts.until(&e, "the first entries", |c| {
        c.total("reaction_action_count") >= 1.0 && c.total("reaction_match_count") >= 3.0
    });

    // appended while the exporter runs, with another unit's entries between
    let appended = [
        journal.next(ssh_match("2.2.2.2", "bob").trim_end()),
        of_unit(
            "sshd.service",
            journal.next(ssh_match("9.9.9.9", "mallory").trim_end()),
        ),
        journal.next(ssh_match("2.2.2.2", "bob").trim_end()),
        journal.next(ssh_action("ban", "2.2.2.2").trim_end()),
    ];
    journal.write(&appended);
    counts.until(&e, "the appended entries", |c| {
        c.total("reaction_action_count") >= 2.0
    });
    settles(&mut counts, &e);

    assert_eq!(
        counts.series("reaction_match_count"),
        vec![
            (owned(&match_labels("1.1.1.1", "alice")), 3.0),
            (owned(&match_labels("2.2.2.2", "bob")), 2.0),
        ],
        "log:\n{}",
        e.logs()
    );
    assert_eq!(
        counts.series("reaction_action_count"),
        vec![
            (owned(&action_labels("ban", "1.1.1.1", "alice")), 1.0),
            (owned(&action_labels("ban", "2.2.2.2", "bob")), 1.0),
        ]
    );
    assert_eq!(
        counts.series("reaction_commands_count"),
        vec![(owned(&command_labels("start")), 1.0)]
    );
    assert_eq!(
        counts.series("reaction_stream_event_count"),
        vec![(owned(&SSH_STARTED), 1.0)]
    );
    assert!(e.terminate().success());
}

#[test]
fn hold_uses_the_journal_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let (_r, journal, config) = setup(dir.path(), 60, INTERNALS);
    let t = BASE_USEC;
    // reaction starts at t and replays its persisted actions a second later; a real ban
    // comes two minutes later. All of it is written, and so read, at once: only the
    // journal's timestamps tell them apart.
    journal.write(&[
        entry(t, START_COMMAND),
        entry(t, SSH_START),
        entry(t + SEC, ssh_action("ban", "1.1.1.1").trim_end()),
        entry(t + SEC, ssh_action("unban", "2.2.2.2").trim_end()),
        entry(t + 119 * SEC, ssh_match("3.3.3.3", "carol").trim_end()),
        entry(t + 120 * SEC, ssh_action("ban", "3.3.3.3").trim_end()),
    ]);
    let e = Exporter::start(dir.path(), &config);
    let held = |body: &str| value(body, "reaction_exporter_actions_held_total", &[]);
    let mut counts = Counts::default();
    counts.until(&e, "the held actions and the ban", |c| {
        held(&c.last) == Some(2.0) && c.total("reaction_action_count") >= 1.0
    });
    settles(&mut counts, &e);
    assert_eq!(
        counts.series("reaction_action_count"),
        vec![(owned(&action_labels("ban", "3.3.3.3", "carol")), 1.0)],
        "log:\n{}",
        e.logs()
    );
    assert_eq!(held(&counts.last), Some(2.0));
    assert!(
        e.logs()
            .contains("reaction started: ignoring the actions it replays"),
        "{}",
        e.logs()
    );
    assert!(e.terminate().success());
}

#[test]
fn reaction_restart_in_the_journal_is_seen_and_rearms_hold() {
    let dir = tempfile::tempdir().unwrap();
    let (r, journal, config) = setup(dir.path(), 60, INTERNALS);
    let t = BASE_USEC;
    journal.write(&[
        entry(t, START_COMMAND),
        entry(t, SSH_START),
        entry(t + 120 * SEC, ssh_match("3.3.3.3", "carol").trim_end()),
        entry(t + 120 * SEC, ssh_action("ban", "3.3.3.3").trim_end()),
    ]);
    let e = Exporter::start(dir.path(), &config);
    let held = |body: &str| value(body, "reaction_exporter_actions_held_total", &[]);
    let mut counts = Counts::default();
    counts.until(&e, "the first ban", |c| {
        c.total("reaction_action_count") >= 1.0
    });
    // Reading reaction's start makes the exporter ask its version again: once that is
    // done (the scrape after the start was read), the version is cached.
    counts.add(e.scrape());
    assert_eq!(status(&counts.last), ("2.2.0".into(), "1".into()));
    let asked = r.calls("-V");
    // at start, and when the journal shows reaction starting
    let loads = r.calls("test-config");

    // reaction stops, is upgraded, starts again and replays the ban; a new ban follows later
    r.set_state(json!({"version": "2.3.0"}));
    counts.add(e.scrape());
    assert_eq!(status(&counts.last).0, "2.2.0", "the version is cached");
    assert_eq!(r.calls("-V"), asked);
    journal.write(&[
        entry(t + 200 * SEC, STOPPING),
        entry(t + 200 * SEC, STOP_COMMAND),
        entry(t + 300 * SEC, START_COMMAND),
        entry(t + 300 * SEC, SSH_START),
        entry(t + 301 * SEC, ssh_action("ban", "3.3.3.3").trim_end()),
        entry(t + 400 * SEC, ssh_match("4.4.4.4", "dave").trim_end()),
        entry(t + 400 * SEC, ssh_action("ban", "4.4.4.4").trim_end()),
    ]);
    counts.until(&e, "the restart, the replay and the new ban", |c| {
        c.exact("reaction_stream_event_count", &SSH_STARTED) >= 2.0
            && c.total("reaction_action_count") >= 2.0
            && held(&c.last) == Some(1.0)
            && status(&c.last).0 == "2.3.0"
    });
    settles(&mut counts, &e);
    assert_eq!(status(&counts.last), ("2.3.0".into(), "1".into()));
    assert_eq!(
        r.calls("-V"),
        asked + 1,
        "asked again once, after the restart"
    );
    assert_eq!(
        r.calls("test-config"),
        loads + 1,
        "reloaded once, on the restart"
    );
    assert_eq!(
        counts.series("reaction_stream_event_count"),
        vec![(owned(&SSH_STARTED), 2.0)]
    );
    assert_eq!(
        counts.series("reaction_commands_count"),
        vec![
            (owned(&command_labels("start")), 2.0),
            (owned(&command_labels("stop")), 1.0),
        ]
    );
    assert_eq!(
        counts.series("reaction_action_count"),
        vec![
            (owned(&action_labels("ban", "3.3.3.3", "carol")), 1.0),
            (owned(&action_labels("ban", "4.4.4.4", "dave")), 1.0),
        ],
        "the replayed ban is held; log:\n{}",
        e.logs()
    );
    assert_eq!(held(&counts.last), Some(1.0));
    assert!(e.logs().contains("reaction is stopping"), "{}", e.logs());
    assert!(e.terminate().success());
}

#[test]
fn missing_journalctl_is_logged_counted_and_recovers_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let reaction = Reaction::new(dir.path(), &reaction_config());
    let journal = Journal::new(&dir.path().join("journal"));
    let later = dir.path().join("later");
    std::fs::create_dir(&later).unwrap();
    let missing = later.join("journalctl");
    let config = journald_config(&journal.dir, &missing, &reaction, dir.path(), INTERNALS);
    journal.write(&[
        entry(BASE_USEC, ssh_match("1.1.1.1", "alice").trim_end()),
        entry(BASE_USEC + SEC, ssh_match("1.1.1.1", "alice").trim_end()),
    ]);
    let mut e = Exporter::start(dir.path(), &config);
    e.wait_log("journalctl not found", WAIT);
    let errors = |body: &str| {
        value(
            body,
            "reaction_exporter_source_errors_total",
            &[("source", "journald")],
        )
        .unwrap_or(0.0)
    };
    let mut counts = Counts::default();
    counts.add(e.scrape());
    assert!(errors(&counts.last) >= 1.0, "{}", counts.last);
    assert_eq!(counts.total("reaction_match_count"), 0.0);
    assert!(
        e.logs().contains(&missing.display().to_string()),
        "the log names the path: {}",
        e.logs()
    );

    // journalctl appears where configured
    std::os::unix::fs::symlink(journalctl(), &missing).unwrap();
    journal.write(&[entry(
        BASE_USEC + 2 * SEC,
        ssh_match("2.2.2.2", "bob").trim_end(),
    )]);
    counts.until(&e, "the entries, once journalctl is there", |c| {
        c.total("reaction_match_count") >= 3.0
    });
    e.wait_log("journalctl: working again", WAIT);
    settles(&mut counts, &e);
    assert_eq!(
        counts.series("reaction_match_count"),
        vec![
            (owned(&match_labels("1.1.1.1", "alice")), 2.0),
            (owned(&match_labels("2.2.2.2", "bob")), 1.0),
        ]
    );
    let failures = errors(&counts.last);
    assert!(failures >= 1.0);
    std::thread::sleep(Duration::from_millis(1500));
    counts.add(e.scrape());
    assert_eq!(
        errors(&counts.last),
        failures,
        "no new failure once it works"
    );
    assert!(
        e.child.try_wait().unwrap().is_none(),
        "the exporter kept running"
    );
    assert_eq!(
        e.logs().matches("serving http://").count(),
        1,
        "not restarted"
    );
    assert!(e.terminate().success());
}

/// Writes a match, one whose IP has `digits` digits (a MESSAGE past any line limit), and
/// another match, then starts the exporter on them: it counts the two matches, each with
/// its labels, and the long one as a line rejected `too_long`.
fn a_huge_match_between_two(
    journal: &mut Journal,
    dir: &std::path::Path,
    config: &str,
    digits: usize,
) -> Exporter {
    let huge = format!(
        "INFO ssh.failedlogin: match [\"{}\", \"x\"]",
        "9".repeat(digits)
    );
    let entries = [
        journal.next(ssh_match("1.1.1.1", "alice").trim_end()),
        journal.next(&huge),
        journal.next(ssh_match("2.2.2.2", "bob").trim_end()),
    ];
    drop(huge);
    journal.write(&entries);
    drop(entries);
    let e = Exporter::start(dir, config);
    let mut counts = Counts::default();
    counts.until(&e, "the two matches", |c| {
        c.total("reaction_match_count") >= 2.0
    });
    settles(&mut counts, &e);
    assert_eq!(
        counts.series("reaction_match_count"),
        vec![
            (owned(&match_labels("1.1.1.1", "alice")), 1.0),
            (owned(&match_labels("2.2.2.2", "bob")), 1.0),
        ]
    );
    assert_eq!(
        value(
            &counts.last,
            "reaction_exporter_lines_rejected_total",
            &[("reason", "too_long")],
        ),
        Some(1.0),
        "log:\n{}",
        e.logs()
    );
    e
}

/// Guards `reaction.logs.max_line_length` on journald (it once reached only the file
/// tailer): an entry far longer than the limit is dropped and counted, the entries around
/// it are counted as usual.
#[test]
fn an_oversized_entry_is_dropped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (_r, mut journal, config) = setup(dir.path(), 0, INTERNALS);
    let config = config.replace(
        "    start_at: beginning\n",
        "    start_at: beginning\n    max_line_length: 256\n",
    );
    assert!(config.contains("max_line_length: 256"));
    let e = a_huge_match_between_two(&mut journal, dir.path(), &config, 100_000);
    assert!(
        e.logs()
            .contains("was dropped: longer than reaction.logs.max_line_length"),
        "{}",
        e.logs()
    );
    assert!(e.terminate().success());
}

/// Guards issue 8's row "journald entry with a 20 MiB MESSAGE: accepted whole (unbounded
/// `read_until`), 20 MB label, peak 734 MiB; `max_line_length` only applies to files". Its
/// check: "a 20 MiB journal entry with peak RSS ≤ 100 MiB". With the default
/// `max_line_length` (64 KiB), the entry is skipped as journalctl's record is read, never
/// kept whole: counted as `too_long`, the entries around it counted as usual.
#[test]
fn a_20_mib_entry_is_skipped_within_100_mib() {
    let dir = tempfile::tempdir().unwrap();
    let (_r, mut journal, config) = setup(dir.path(), 0, INTERNALS);
    assert!(!config.contains("max_line_length"), "the default applies");
    let e = a_huge_match_between_two(&mut journal, dir.path(), &config, 20 * 1024 * 1024);
    let peak = peak_rss(e.child.id());
    eprintln!(
        "a 20 MiB journal entry skipped: exporter peak RSS {:.1} MiB",
        peak as f64 / 1048576.0
    );
    assert!(
        peak <= 100 * 1024 * 1024,
        "peak RSS {peak} bytes > 100 MiB\n{}",
        e.logs()
    );
    assert!(e.terminate().success());
}
