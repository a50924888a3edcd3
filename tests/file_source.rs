//! The real binary following reaction's log file through rotation, truncation, deletion,
//! a late start, partial writes and garbage. Counts are "since the last scrape", so every
//! test adds them up over its scrapes.

use crate::common;
use crate::counts;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use counts::*;

const INTERNALS: &str = "metrics:\n  export:\n    internals: true\n";

fn start(dir: &Path, extra_yaml: &str) -> (Reaction, Exporter, std::path::PathBuf) {
    let reaction = Reaction::new(dir, &reaction_config());
    let log = dir.join("reaction.log");
    let exp = Exporter::start(dir, &file_config(&log, &reaction, extra_yaml));
    (reaction, exp, log)
}

/// The process exists and is not a zombie.
fn running(exp: &Exporter) -> bool {
    std::fs::read_to_string(format!("/proc/{}/stat", exp.child.id()))
        .ok()
        .and_then(|stat| {
            let state = stat.rsplit_once(") ")?.1.chars().next()?;
            Some(state != 'Z' && state != 'X')
        })
        .unwrap_or(false)
}

#[test]
fn rotated_file_keeps_counting() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("reaction.log");
    let (one, c1) = block(1, 5);
    append(&log, &one);
    let (_reaction, exp, _) = start(dir.path(), "");
    let mut tally = Scrapes::new(&exp);
    tally.expect(&c1);

    // reaction writes more, then logrotate renames the file at once and a new one is
    // created: the end of the old file is read before switching.
    let (two, c2) = block(2, 7);
    append(&log, &two);
    std::fs::rename(&log, dir.path().join("reaction.log.1")).unwrap();
    let (three, c3) = block(3, 4);
    append(&log, &three);
    tally.expect(&merged(&[&c1, &c2, &c3]));

    // And once more, the new file being written to in two steps.
    let (four, c4) = block(4, 3);
    std::fs::rename(&log, dir.path().join("reaction.log.2")).unwrap();
    append(&log, &four[..10]);
    std::thread::sleep(Duration::from_millis(300));
    append(&log, &four[10..]);
    tally.expect(&merged(&[&c1, &c2, &c3, &c4]));
}

fn copy_truncate(log: &Path, to: &Path) {
    std::fs::copy(log, to).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(log)
        .unwrap()
        .set_len(0)
        .unwrap();
}

#[test]
fn copytruncate_keeps_counting() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("reaction.log");
    let (one, c1) = block(1, 5);
    append(&log, &one);
    let (_reaction, exp, _) = start(dir.path(), "");
    let mut tally = Scrapes::new(&exp);
    tally.expect(&c1);

    // Truncated, then at once more written than there was (not seen by size: by content).
    copy_truncate(&log, &dir.path().join("reaction.log.1"));
    let (two, c2) = block(2, 12);
    append(&log, &two);
    tally.expect(&merged(&[&c1, &c2]));

    // Truncated again, less written than there was.
    copy_truncate(&log, &dir.path().join("reaction.log.2"));
    let (three, c3) = block(3, 2);
    append(&log, &three);
    tally.expect(&merged(&[&c1, &c2, &c3]));
}

#[test]
fn deleted_and_recreated_file_keeps_counting() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("reaction.log");
    let (one, c1) = block(1, 5);
    append(&log, &one);
    let (_reaction, exp, _) = start(dir.path(), "");
    let mut tally = Scrapes::new(&exp);
    tally.expect(&c1);

    // Deleted for a while (several polls), then created again.
    std::fs::remove_file(&log).unwrap();
    std::thread::sleep(Duration::from_millis(700));
    tally.scrape();
    let (two, c2) = block(2, 6);
    append(&log, &two);
    tally.expect(&merged(&[&c1, &c2]));

    // Deleted and created again at once.
    std::fs::remove_file(&log).unwrap();
    let (three, c3) = block(3, 3);
    append(&log, &three);
    tally.expect(&merged(&[&c1, &c2, &c3]));
}

#[test]
fn missing_file_at_start_is_followed_when_created() {
    let dir = tempfile::tempdir().unwrap();
    let (_reaction, exp, log) = start(dir.path(), INTERNALS);
    let mut tally = Scrapes::new(&exp);
    // Meanwhile the exporter serves, and says it cannot read the file.
    wait_for(Duration::from_secs(20), "a source error", || {
        let page = tally.scrape();
        (total(
            page,
            "reaction_exporter_source_errors_total",
            &[("source", "file")],
        ) > 0.0)
            .then_some(())
    });
    assert!(exp.logs().contains("cannot read"), "{}", exp.logs());

    // Created later: read from its beginning.
    let (one, c1) = block(1, 5);
    append(&log, &one);
    tally.expect(&c1);
    let (two, c2) = block(2, 2);
    append(&log, &two);
    tally.expect(&merged(&[&c1, &c2]));
}

#[test]
fn partial_line_is_counted_once_complete() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("reaction.log");
    append(&log, "");
    let (_reaction, exp, _) = start(dir.path(), "");
    let mut tally = Scrapes::new(&exp);

    let line = ssh_match("10.0.0.1", "a user");
    let (first, second) = line.split_at(line.find("a us").unwrap() + 4);
    append(&log, first);
    // Several polls see the unfinished line: nothing is counted.
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(200));
        tally.scrape();
    }
    assert!(tally.seen.is_empty(), "{:?}", tally.seen);

    append(&log, second);
    tally.expect(&Tally::from([(labels("10.0.0.1", "a user"), 1.0)]));
}

#[test]
fn bad_lines_are_counted_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("reaction.log");
    append(&log, "");
    let reaction = Reaction::new(dir.path(), &reaction_config());
    let config = file_config(&log, &reaction, INTERNALS).replace(
        "    start_at: beginning\n",
        "    start_at: beginning\n    max_line_length: 256\n",
    );
    let exp = Exporter::start(dir.path(), &config);
    let mut tally = Scrapes::new(&exp);

    let mut bad: Vec<u8> = Vec::new();
    // Binary garbage (invalid UTF-8, a NUL, an ANSI sequence): invalid_utf8 only (issue 8:
    // it was also counted as unknown).
    bad.extend_from_slice(b"\x00\x01\x02\xfe\xff\x1b[31m garbage \x80\x81\n");
    // A match with invalid UTF-8 in a value: invalid_utf8, counted decoded lossily.
    bad.extend_from_slice(b"INFO ssh.failedlogin: match [\"10.0.0.1\", \"caf\xe9\"]\n");
    // Longer than max_line_length: too_long, dropped.
    bad.extend_from_slice(ssh_match("10.0.0.2", &"x".repeat(1000)).as_bytes());
    // Not a line of reaction: unknown.
    bad.extend_from_slice(b"hello world\n");
    // A match list cut short: malformed.
    bad.extend_from_slice(b"INFO ssh.failedlogin: match [\"10.0.0.3\", \"bob]\n");
    // An empty line: nothing at all.
    bad.extend_from_slice(b"\n");
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(&bad).unwrap();
    }
    let (good, c_good) = block(9, 3);
    append(&log, &good);

    let mut expected = c_good.clone();
    expected.insert(labels("10.0.0.1", "caf\u{fffd}"), 1.0);
    tally.expect(&expected);
    assert!(running(&exp), "the exporter exited:\n{}", exp.logs());

    let page = tally.scrape().to_string();
    let rejected = |reason: &str| {
        total(
            &page,
            "reaction_exporter_lines_rejected_total",
            &[("reason", reason)],
        )
    };
    let reasons: BTreeMap<&str, f64> = [
        "invalid_utf8",
        "too_long",
        "unknown",
        "malformed",
        "unknown_name",
        "pattern_mismatch",
    ]
    .into_iter()
    .map(|r| (r, rejected(r)))
    .collect();
    assert_eq!(
        reasons,
        BTreeMap::from([
            ("invalid_utf8", 2.0),
            ("too_long", 1.0),
            ("unknown", 1.0),
            ("malformed", 1.0),
            ("unknown_name", 0.0),
            ("pattern_mismatch", 0.0),
        ]),
        "{page}"
    );
    assert_eq!(
        total(&page, "reaction_exporter_lines_rejected_total", &[]),
        5.0,
        "{page}"
    );
    // The dropped line is not a line read; the empty one is.
    assert_eq!(
        total(&page, "reaction_exporter_lines_read_total", &[]),
        5.0 + 3.0,
        "{page}"
    );

    // Still counting after all that.
    let (more, c_more) = block(10, 2);
    append(&log, &more);
    tally.expect(&merged(&[&expected, &c_more]));
    assert!(running(&exp), "the exporter exited:\n{}", exp.logs());
}

#[test]
fn new_line_visible_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("reaction.log");
    let (one, c1) = block(1, 1);
    append(&log, &one);
    let (_reaction, exp, _) = start(dir.path(), "");
    let mut tally = Scrapes::new(&exp);
    tally.expect(&c1);

    for attempt in 0..3 {
        let ip = format!("10.0.2.{attempt}");
        let appended = Instant::now();
        append(&log, &ssh_match(&ip, "root"));
        let seen_after = wait_for(Duration::from_secs(10), "the new line", || {
            let page = exp.scrape();
            let done = appended.elapsed();
            (total(&page, "reaction_match_count", &[("ip", &ip)]) == 1.0).then_some(done)
        });
        assert!(
            seen_after <= Duration::from_millis(1500),
            "a line appended was on /metrics only {seen_after:?} later"
        );
    }
}
