//! Every event reaction logged is counted exactly once on `/metrics`, across restarts of the
//! exporter: SIGTERM (a clean stop saves the position and the counts no scrape took), SIGKILL
//! (the checkpoint of the last delivered scrape), a state older than `state.recall`, a state
//! file that cannot be used, and a log rotated while the exporter was stopped. Actions keep
//! the labels of their match across restarts (the attribution memory is saved with the
//! position): the restart tests compare every series' labels, not only counts.

use crate::common;
use crate::counts;
use crate::journal;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use counts::*;
use journal::*;

const INTERNALS: &str = "metrics:\n  export:\n    internals: true\n";
const STATE_FILE: &str = "reaction-metrics-exporter.state.json";
const LAST_LINE: &str = "this line is not from reaction\n";
const LAST_LINE_WARNING: &str = "\"this line is not from reaction\"";

/// A GET /metrics that tolerates an exporter that is gone or going: the body only if the
/// whole response arrived (its Content-Length).
fn try_scrape(addr: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    s.write_all(
        format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nAccept: text/plain\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .ok()?;
    let mut raw = Vec::new();
    if s.read_to_end(&mut raw).is_err() {
        return None;
    }
    let text = String::from_utf8(raw).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().unwrap())
        })
        .expect("/metrics responses have a Content-Length");
    (body.len() == length).then(|| body.to_string())
}

/// A small deterministic generator (xorshift64*), seeded from the clock and printed.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(name: &str) -> Rng {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1;
        eprintln!("{name}: seed {seed}");
        Rng(seed)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// In `lo..=hi`.
    pub(crate) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

// ---- The input: a log file or journal files -------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Kind {
    File,
    Journald,
}

/// Appends reaction's lines to its log file or to the journal.
pub(crate) enum Input {
    File(PathBuf),
    Journal(Journal),
}

impl Input {
    pub(crate) fn write(&mut self, lines: &[String]) {
        match self {
            Input::File(path) => {
                let mut text = lines.join("\n");
                text.push('\n');
                append(path, &text);
            }
            Input::Journal(j) => {
                let entries: Vec<Entry> = lines.iter().map(|l| j.next(l)).collect();
                j.write(&entries);
            }
        }
    }
}

/// A test directory: the reaction fixture, the input, the exporter's configuration (state
/// file in the directory).
pub(crate) struct Bench {
    pub(crate) dir: tempfile::TempDir,
    _reaction: Reaction,
    pub(crate) config: String,
    pub(crate) input: Option<Input>,
}

impl Bench {
    pub(crate) fn new(kind: Kind, extra_yaml: &str) -> Bench {
        let dir = tempfile::tempdir().unwrap();
        let reaction = Reaction::new(dir.path(), &reaction_config());
        let (config, input) = match kind {
            Kind::File => {
                let log = dir.path().join("reaction.log");
                append(&log, "");
                (file_config(&log, &reaction, extra_yaml), Input::File(log))
            }
            Kind::Journald => {
                let journal = Journal::new(&dir.path().join("journal"));
                (
                    journald_config(
                        &journal.dir,
                        &journalctl(),
                        &reaction,
                        dir.path(),
                        extra_yaml,
                    ),
                    Input::Journal(journal),
                )
            }
        };
        Bench {
            dir,
            _reaction: reaction,
            config,
            input: Some(input),
        }
    }

    pub(crate) fn start(&self) -> Exporter {
        Exporter::start(self.dir.path(), &self.config)
    }
}

/// Appends `lines` to `input` on a thread, in bursts of 1 to 50 lines 15 to 75 ms apart (a
/// seeded random from `name`), as reaction writes under a steady attack; the thread gives
/// the input back when everything is written.
pub(crate) fn spawn_writer(
    name: &str,
    mut input: Input,
    lines: Vec<String>,
) -> std::thread::JoinHandle<Input> {
    let mut rng = Rng::new(&format!("{name} writer"));
    std::thread::spawn(move || {
        let mut i = 0;
        while i < lines.len() {
            let n = (rng.range(1, 50) as usize).min(lines.len() - i);
            input.write(&lines[i..i + n]);
            i += n;
            std::thread::sleep(Duration::from_millis(rng.range(15, 75)));
        }
        input
    })
}

/// Distance, in match lines, from a match to the `unban` of its IP (the writer takes about
/// a second for it: most unbans come after a restart of the exporter).
const UNBAN_AFTER: usize = 700;

/// `n` match lines over 1,500 distinct IPs, a `ban` after every fifth match and an `unban`
/// of the IP matched `UNBAN_AFTER` lines earlier after every fifth; and what they count,
/// labels included (see `counts::events`). An IP comes back once every 1,500 matches, with
/// another user each time, and its actions show only the IP: each action must be labelled
/// with the user of its IP's latest match before it, which the exporter knows only from its
/// attribution memory, also when that match was read by an earlier exporter.
pub(crate) fn workload(n: usize) -> (Vec<String>, Tally) {
    let (lines, keys) = workload_lines(n);
    (lines, tally(&keys))
}

/// What `keys` count: each line is one event.
fn tally(keys: &[Labels]) -> Tally {
    let mut t = Tally::new();
    for k in keys {
        *t.entry(k.clone()).or_default() += 1.0;
    }
    t
}

/// [`workload`]'s lines, each with the one event it counts.
fn workload_lines(n: usize) -> (Vec<String>, Vec<Labels>) {
    let mut lines = Vec::with_capacity(n * 7 / 5);
    let mut keys = Vec::with_capacity(n * 7 / 5);
    let mut matched: Vec<(String, String)> = Vec::with_capacity(n);
    let mut count = |key: Labels| keys.push(key);
    for i in 0..n {
        // 7919 is prime to 1500: every IP once per 1,500 lines.
        let k = (i * 7919) % 1500;
        let ip = format!("10.{}.{}.{}", k / 65536, (k / 256) % 256, k % 256);
        let user = format!("u{}", (i / 1500 + k) % 7);
        lines.push(ssh_match(&ip, &user).trim_end().to_string());
        count(event(None, &ip, &user));
        if i % 5 == 0 {
            lines.push(ssh_action("ban", &ip).trim_end().to_string());
            count(event(Some("ban"), &ip, &user));
        }
        if i % 5 == 2 && i >= UNBAN_AFTER {
            // Its IP was not matched since (it comes back 1,500 lines later).
            let (ip, user) = &matched[i - UNBAN_AFTER];
            lines.push(ssh_action("unban", ip).trim_end().to_string());
            count(event(Some("unban"), ip, user));
        }
        matched.push((ip, user));
    }
    (lines, keys)
}

/// Where the next exporter starts reading, as a line index of the workload, and the events
/// it restores as outstanding: from the state file the last exporter left (none: the start
/// of the input, as `start_at: beginning`). A file position is an offset (the lines before
/// it), a journal one the cursor of the last entry read (its sequence number `i=`, in hex:
/// one entry per line, numbered from 1).
fn restart_point(bench: &Bench) -> (usize, f64) {
    let path = bench
        .dir
        .path()
        .join("reaction-metrics-exporter.state.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return (0, 0.0);
    };
    let state: serde_json::Value = serde_json::from_str(&text).expect("a state file");
    let restored: f64 = state["counts"]
        .as_array()
        .map(|c| c.iter().filter_map(|c| c["value"].as_f64()).sum())
        .unwrap_or(0.0);
    let position = &state["position"];
    let line = match position["kind"].as_str() {
        Some("file") => {
            let offset = position["offset"].as_u64().expect("an offset") as usize;
            let log = std::fs::read(bench.dir.path().join("reaction.log")).unwrap();
            log[..offset].iter().filter(|&&b| b == b'\n').count()
        }
        Some("journal") => {
            let cursor = position["cursor"].as_str().expect("a cursor");
            let seqnum = cursor
                .split(';')
                .find_map(|f| f.strip_prefix("i="))
                .expect("a sequence number in the cursor");
            usize::from_str_radix(seqnum, 16).unwrap()
        }
        _ => 0,
    };
    (line, restored)
}

// ---- Stopping ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Stop {
    Term,
    Kill,
}

/// The children of a process (all its threads).
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(c) = std::fs::read_to_string(t.path().join("children")) {
                out.extend(c.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
            }
        }
    }
    out
}

/// Stop the exporter with `how` and wait for it; after a SIGKILL, also end the journalctl
/// child it leaves behind.
pub(crate) fn stop(mut e: Exporter, how: Stop) -> String {
    match how {
        Stop::Term => {
            signal(&e.child, 15);
            let status = wait_timeout(&mut e.child, Duration::from_secs(20))
                .expect("the exporter exits on SIGTERM");
            assert!(status.success(), "{status}; log:\n{}", e.logs());
        }
        Stop::Kill => {
            let orphans = children(e.child.id());
            signal(&e.child, 9);
            wait_timeout(&mut e.child, Duration::from_secs(20)).expect("killed");
            for pid in orphans {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                if comm.trim() == "journalctl" {
                    let _ = std::process::Command::new("kill")
                        .arg("-9")
                        .arg(pid.to_string())
                        .status();
                }
            }
        }
    }
    // The stderr reader thread sees the end of the pipe.
    std::thread::sleep(Duration::from_millis(50));
    e.logs()
}

// ---- Restarts while reaction logs --------------------------------------------------------

/// What the scraper saw: the counts of each complete page, with the exporter generation
/// that served it.
#[derive(Default)]
struct Seen {
    pages: Vec<(usize, Tally)>,
}

impl Seen {
    fn total(&self) -> Tally {
        let mut all = Tally::new();
        for (_, p) in &self.pages {
            add(&mut all, p);
        }
        all
    }
}

const ROUNDS: usize = 8;
const LINES: usize = 4_000;

/// A writer appends the lines of `LINES` matches (and their actions) in small bursts while
/// the exporter is stopped with `how` and started again `ROUNDS` times with the same
/// configuration and state directory, and a scraper scrapes whichever exporter runs. Fails
/// if anything is lost, counted twice beyond the documented SIGKILL window (the last page
/// with events of each killed exporter) or labelled otherwise than without restarts (an
/// action without its user is a series lost and one counted in excess); returns (counted
/// twice, that bound), both 0 with SIGTERM.
fn restarts(kind: Kind, how: Stop) -> (f64, f64) {
    let name = format!("{kind:?}/{how:?}");
    let started = Instant::now();
    let mut bench = Bench::new(kind, "");
    let (lines, keys) = workload_lines(LINES);
    let expected = tally(&keys);
    let writer = spawn_writer(&name, bench.input.take().unwrap(), lines);
    // Where each exporter started reading (a line index) and what it restored.
    let mut starts: Vec<(usize, f64)> = vec![restart_point(&bench)];

    let current: Arc<Mutex<Option<(usize, String)>>> = Arc::default();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let scraping = Arc::new(AtomicBool::new(true));
    let scraper = {
        let current = current.clone();
        let seen = seen.clone();
        let scraping = scraping.clone();
        let mut rng = Rng::new(&format!("{name} scraper"));
        std::thread::spawn(move || {
            while scraping.load(Ordering::Relaxed) {
                let target = current.lock().unwrap().clone();
                if let Some((generation, addr)) = target {
                    if let Some(page) = try_scrape(&addr) {
                        seen.lock().unwrap().pages.push((generation, events(&page)));
                    }
                }
                std::thread::sleep(Duration::from_millis(rng.range(10, 120)));
            }
        })
    };

    let mut logs = Vec::new();
    let mut rng = Rng::new(&format!("{name} stops"));
    for generation in 0..ROUNDS {
        let e = bench.start();
        *current.lock().unwrap() = Some((generation, e.addr.clone()));
        std::thread::sleep(Duration::from_millis(rng.range(300, 900)));
        logs.push(stop(e, how));
        *current.lock().unwrap() = None;
        starts.push(restart_point(&bench));
    }
    let input = writer.join().unwrap();
    let writing_done = started.elapsed();

    // The writer is done: one more exporter takes everything in.
    let e = bench.start();
    *current.lock().unwrap() = Some((ROUNDS, e.addr.clone()));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let all = seen.lock().unwrap().total();
        let (lost, _) = compare(&all, &expected);
        if lost == 0.0 {
            break;
        }
        if Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    scraping.store(false, Ordering::Relaxed);
    scraper.join().unwrap();
    let mut seen = Arc::try_unwrap(seen).ok().unwrap().into_inner().unwrap();

    // Then nothing more: a few polls later, and across two more restarts with nothing new
    // logged (each stopped 300 ms after its last scrape: its checkpoint is written).
    let mut e = e;
    for restart in 0..3 {
        std::thread::sleep(Duration::from_millis(700));
        for _ in 0..2 {
            let page = try_scrape(&e.addr).expect("a scrape");
            seen.pages.push((ROUNDS + restart, events(&page)));
        }
        if restart == 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
        logs.push(stop(e, how));
        starts.push(restart_point(&bench));
        e = bench.start();
    }
    logs.push(stop(e, Stop::Term));
    bench.input = Some(input);
    let last = &seen.pages[seen.pages.len() - 2..];
    assert!(
        last.iter().all(|(_, p)| p.is_empty()),
        "{name}: the final scrapes are not empty: {last:?}"
    );

    let all = seen.total();
    let (lost, extra) = compare(&all, &expected);
    // The documented window: what a killed exporter delivered after its last checkpoint
    // on disk is counted again, since the restart reads on from that checkpoint. That is
    // the page delivered just before the kill at ordinary scrape rates, but more when
    // checkpoints lag: the scrapes delivered while one is written (with its fsync) share
    // the next (README, Continuity), and this scraper scrapes every 10-120 ms. Under the
    // whole suite's disk load a write took several pages: seen in CI, a window of "the
    // last page" failed by 38 events, one of "the last page with events" by 203. So the
    // window is computed from the checkpoint each restart actually resumed from: exporter
    // `g` started at line `s` and delivered `d` events, `r` of them restored from the state
    // file (events before `s`), so it read up to line `s + d - r`; what the next one read
    // again is the lines from its own start up to there, series by series. The test
    // checks that nothing else is counted twice, that nothing is lost, and the labels.
    let mut allowed = Tally::new();
    let mut pages_behind = Vec::new();
    if how == Stop::Kill {
        for (g, pair) in starts.windows(2).enumerate() {
            let ((start, restored), (next, _)) = (pair[0], pair[1]);
            let pages: Vec<f64> = seen
                .pages
                .iter()
                .filter(|(p, _)| *p == g)
                .map(|(_, page)| sum(page))
                .collect();
            let delivered: f64 = pages.iter().sum();
            let reached = (start as f64 + delivered - restored).max(0.0) as usize;
            if next < reached {
                add(&mut allowed, &tally(&keys[next..reached.min(keys.len())]));
                // How many of its last pages with events that was, for the report.
                let mut behind = 0;
                let mut left = (reached - next) as f64;
                for p in pages.iter().rev().filter(|p| **p > 0.0) {
                    if left <= 0.0 {
                        break;
                    }
                    left -= p;
                    behind += 1;
                }
                pages_behind.push((g, behind));
            }
        }
    }
    let beyond = beyond(&all, &expected, &allowed);
    let bound = sum(&allowed);
    let scrapes = seen.pages.len();
    eprintln!(
        "{name}: {LINES} lines, {ROUNDS} restarts, {scrapes} complete scrapes; lost {lost}, \
         counted twice {extra} (documented bound {bound}, the pages with events each killed \
         exporter delivered after its last checkpoint on disk: {pages_behind:?}); writing \
         took {writing_done:?}, the test {:?}",
        started.elapsed()
    );
    if extra > 0.0 {
        eprintln!(
            "{name}: pages (exporter, matches): {:?}",
            seen.pages
                .iter()
                .map(|(g, p)| (*g, sum(p)))
                .collect::<Vec<_>>()
        );
    }
    if lost > 0.0 || !beyond.is_empty() {
        let mut report = String::new();
        for (g, l) in logs.iter().enumerate() {
            report.push_str(&format!("---- exporter {g} ----\n{l}"));
        }
        panic!(
            "{name}: lost {lost}, counted twice {extra} (bound {bound}) of {} written; \
             beyond the bound: {beyond:?}; per page: {:?}\n{report}",
            sum(&expected),
            seen.pages
                .iter()
                .map(|(g, p)| (*g, sum(p)))
                .collect::<Vec<_>>()
        );
    }
    (extra, bound)
}

#[test]
fn restarts_with_sigterm_count_every_line_once_file() {
    assert_eq!(restarts(Kind::File, Stop::Term), (0.0, 0.0));
}

#[test]
fn restarts_with_sigterm_count_every_line_once_journald() {
    assert_eq!(restarts(Kind::Journald, Stop::Term), (0.0, 0.0));
}

// With SIGKILL at random times, no duplicate was seen in dozens of runs, but one is
// possible: see `sigkill_right_after_a_scrape_counts_at_most_that_scrape_again`.

#[test]
fn restarts_with_sigkill_count_every_line_once_file() {
    restarts(Kind::File, Stop::Kill);
}

#[test]
fn restarts_with_sigkill_count_every_line_once_journald() {
    restarts(Kind::Journald, Stop::Kill);
}

/// The documented window, on purpose: each exporter is killed as soon as a scrape returned,
/// before that scrape's checkpoint is (likely) written. Nothing is lost; the killed
/// scrape's events may come again, never more.
#[test]
fn sigkill_right_after_a_scrape_counts_at_most_that_scrape_again() {
    const KILLS: u32 = 8;
    let bench = Bench::new(Kind::File, "");
    let Some(Input::File(log)) = &bench.input else {
        unreachable!()
    };
    let mut expected = Tally::new();
    let mut seen = Tally::new();
    let mut allowed = Tally::new();
    for k in 0..KILLS {
        let e = bench.start();
        let (text, counts) = block(100 + k, 20);
        append(log, &text);
        add(&mut expected, &counts);
        // scrape until this round's lines are in, then kill at once
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let page = matches(&e.scrape());
            add(&mut seen, &page);
            if counts.keys().all(|k| seen.contains_key(k)) {
                add(&mut allowed, &page);
                break;
            }
            assert!(Instant::now() < deadline, "log:\n{}", e.logs());
            std::thread::sleep(Duration::from_millis(50));
        }
        stop(e, Stop::Kill);
    }
    let e = bench.start();
    let mut s = Scrapes::new(&e);
    let deadline = Instant::now() + Duration::from_secs(20);
    while compare(&merged(&[&seen, &s.seen]), &expected).0 > 0.0 && Instant::now() < deadline {
        s.scrape();
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(700));
    s.scrape();
    add(&mut seen, &s.seen);
    let (lost, twice) = compare(&seen, &expected);
    eprintln!(
        "SIGKILL right after a scrape, {KILLS} times: {} lines, lost {lost}, counted twice \
         {twice} (bound: the killed scrapes, {})",
        sum(&expected),
        sum(&allowed)
    );
    assert_eq!(lost, 0.0, "log:\n{}", e.logs());
    for (k, got) in &seen {
        let twice = got - expected[k];
        assert!(
            twice <= allowed.get(k).copied().unwrap_or(0.0),
            "{k:?} counted {got} times; log:\n{}",
            e.logs()
        );
    }
}

/// Guards issue 10 item 1: an `unban` read by the next exporter (after SIGTERM, or after
/// SIGKILL once a scrape's checkpoint is written) has the user of its match, read by the
/// previous one; before, the memory was empty after a restart and the user was "".
#[test]
fn an_unban_after_a_restart_has_the_labels_of_its_match() {
    for how in [Stop::Term, Stop::Kill] {
        let bench = Bench::new(Kind::File, "");
        let Some(Input::File(log)) = &bench.input else {
            unreachable!()
        };
        let e = bench.start();
        append(log, &ssh_match("192.0.2.7", "alice"));
        append(log, &ssh_match("192.0.2.8", "bob"));
        let mut first = Tally::new();
        first.insert(event(None, "192.0.2.7", "alice"), 1.0);
        first.insert(event(None, "192.0.2.8", "bob"), 1.0);
        let mut seen = Tally::new();
        wait_for(Duration::from_secs(20), "the matches", || {
            add(&mut seen, &events(&e.scrape()));
            (seen == first).then_some(())
        });
        // The checkpoint of the delivered scrape is written in the background.
        std::thread::sleep(Duration::from_millis(500));
        stop(e, how);
        let e = bench.start();
        append(log, &ssh_action("unban", "192.0.2.7"));
        let mut after = Tally::new();
        let want = event(Some("unban"), "192.0.2.7", "alice");
        wait_for(Duration::from_secs(20), "the unban", || {
            add(&mut after, &events(&e.scrape()));
            after.contains_key(&want).then_some(())
        });
        assert_eq!(
            after.get(&want),
            Some(&1.0),
            "{how:?}: {after:?}
{}",
            e.logs()
        );
        assert!(
            after.keys().all(|k| k == &want),
            "{how:?}: nothing else: {after:?}"
        );
    }
}

// ---- Saved states that are not used -----------------------------------------------------

/// `n` match lines for the IPs `192.0.<block>.0..n` (user `root`), and what they count.
fn positions_invalid(page: &str) -> f64 {
    total(page, "reaction_exporter_positions_invalid_total", &[])
}

/// Let the file source take its starting point (its first poll is at once; with
/// `start_at: end`, a line appended before it would be skipped).
fn settle_start() {
    std::thread::sleep(Duration::from_millis(1000));
}

#[test]
fn past_the_recall_window_starts_per_policy_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let r = Reaction::new(dir.path(), &reaction_config());
    let log = dir.path().join("reaction.log");
    append(&log, "");
    let config = file_config(&log, &r, INTERNALS)
        .replace("    start_at: beginning\n", "    start_at: end\n")
        .replace("state:\n", "state:\n  recall: 1\n");
    assert!(config.contains("start_at: end") && config.contains("  recall: 1\n"));

    // a first run: a scraped, then b read but not scraped when it stops
    let e = Exporter::start(dir.path(), &config);
    settle_start();
    let (a, a_counts) = block(1, 5);
    let (b, _) = block(2, 7);
    append(&log, &a);
    Scrapes::new(&e).expect(&a_counts);
    append(&log, &format!("{b}{LAST_LINE}"));
    e.wait_log(LAST_LINE_WARNING, Duration::from_secs(20));
    let logs = stop(e, Stop::Term);
    assert!(logs.contains("saved the position"), "{logs}");
    assert!(logs.contains("series=7"), "{logs}");

    // stopped longer than state.recall, while reaction logs c
    std::thread::sleep(Duration::from_millis(2100));
    let (c, _) = block(3, 4);
    append(&log, &c);
    let e = Exporter::start(dir.path(), &config);
    settle_start();
    let (d, d_counts) = block(4, 3);
    append(&log, &d);
    let mut s = Scrapes::new(&e);
    s.expect(&d_counts);
    let logs = e.logs();
    assert!(
        logs.contains("the saved state is older than state.recall"),
        "{logs}"
    );
    // where it starts, in the warning and in the line about the position
    assert!(
        logs.contains("starting per reaction.logs.start_at: end,"),
        "{logs}"
    );
    assert!(
        logs.contains("cannot be used: starting from reaction.logs.start_at: end"),
        "{logs}"
    );
    assert!(
        logs.contains("its 7 undelivered series are dropped"),
        "{logs}"
    );
    assert!(!logs.contains("continuing from the saved state"), "{logs}");
    assert_eq!(positions_invalid(&s.last), 1.0, "{}", s.last);
}

/// The state file of `dir`.
fn state_path(dir: &Path) -> PathBuf {
    dir.join(STATE_FILE)
}

#[test]
fn corrupt_truncated_or_foreign_state_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let r = Reaction::new(dir.path(), &reaction_config());
    let log = dir.path().join("reaction.log");
    let beginning = file_config(&log, &r, INTERNALS);
    let end = beginning.replace("    start_at: beginning\n", "    start_at: end\n");
    assert_ne!(beginning, end);

    // A real state file, with 6 series read but not scraped, at the end of the log.
    let (l, mut in_file) = block(1, 6);
    append(&log, &format!("{l}{LAST_LINE}"));
    let e = Exporter::start(dir.path(), &beginning);
    e.wait_log(LAST_LINE_WARNING, Duration::from_secs(20));
    let logs = stop(e, Stop::Term);
    assert!(logs.contains("series=6"), "{logs}");
    let valid = std::fs::read_to_string(state_path(dir.path())).unwrap();
    let state: serde_json::Value = serde_json::from_str(&valid).unwrap();
    assert_eq!(state["counts"].as_array().unwrap().len(), 6, "{valid}");

    let mut other_path = state.clone();
    other_path["source"]["path"] = "/var/log/other-reaction.log".into();
    let mut journal_state = state.clone();
    journal_state["source"] = serde_json::json!({
        "kind": "journal", "unit": "reaction.service", "directory": null
    });
    journal_state["position"] = serde_json::json!({
        "kind": "journal",
        "cursor": "s=0123456789abcdef0123456789abcdef;i=1;b=0123456789abcdef0123456789abcdef;\
                   m=1;t=60a1c1e8ab000;x=1"
    });
    let cases: [(&str, Vec<u8>, &str, &str); 4] = [
        (
            "garbage",
            b"\x00\x01 not json {".to_vec(),
            "is not a valid state file",
            &beginning,
        ),
        (
            "truncated",
            valid.as_bytes()[..valid.len() / 2].to_vec(),
            "is not a valid state file",
            &end,
        ),
        (
            "another log file",
            serde_json::to_vec(&other_path).unwrap(),
            "was saved for",
            &beginning,
        ),
        (
            "a journald source",
            serde_json::to_vec(&journal_state).unwrap(),
            "was saved for",
            &end,
        ),
    ];
    for (round, (what, bytes, says, config)) in cases.into_iter().enumerate() {
        std::fs::write(state_path(dir.path()), &bytes).unwrap();
        let e = Exporter::start(dir.path(), config);
        let from_start = config.contains("start_at: beginning");
        if !from_start {
            settle_start();
        }
        let (new, new_counts) = block(10 + round as u32, 3);
        append(&log, &new);
        // The saved counts are never shown; the log is read per start_at.
        let expected = if from_start {
            merged(&[&in_file, &new_counts])
        } else {
            new_counts.clone()
        };
        let mut s = Scrapes::new(&e);
        s.expect(&expected);
        let logs = e.logs();
        assert!(logs.contains(says), "{what}: {logs}");
        let policy = if from_start { "beginning" } else { "end" };
        assert!(
            logs.contains(&format!(
                "cannot be used: starting from reaction.logs.start_at: {policy}"
            )),
            "{what}: {logs}"
        );
        assert!(
            !logs.contains("continuing from the saved state"),
            "{what}: {logs}"
        );
        assert_eq!(positions_invalid(&s.last), 1.0, "{what}: {}", s.last);
        assert_eq!(
            total(
                &s.last,
                "reaction_exporter_source_errors_total",
                &[("source", "state")]
            ),
            1.0,
            "{what}: {}",
            s.last
        );
        let logs = stop(e, Stop::Term);
        assert!(logs.contains("saved the position"), "{what}: {logs}");
        add(&mut in_file, &new_counts);
    }
}

#[test]
fn rotation_while_stopped_finishes_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let r = Reaction::new(dir.path(), &reaction_config());
    let log = dir.path().join("reaction.log");
    append(&log, "");
    let config = file_config(&log, &r, INTERNALS);
    let (a, a_counts) = block(1, 5);
    let (b, b_counts) = block(2, 6);
    let (c, c_counts) = block(3, 7);
    let (d, d_counts) = block(4, 8);

    let e = Exporter::start(dir.path(), &config);
    append(&log, &a);
    let mut s = Scrapes::new(&e);
    s.expect(&a_counts);
    let mut seen = s.seen;
    // b is read, not scraped, when the exporter stops
    append(&log, &format!("{b}{LAST_LINE}"));
    e.wait_log(LAST_LINE_WARNING, Duration::from_secs(20));
    let logs = stop(e, Stop::Term);
    assert!(logs.contains("series=6"), "{logs}");

    // while it is stopped: rotation, reaction goes on logging to the old file a bit (c),
    // then to the new one (d)
    let rotated = dir.path().join("reaction.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    append(&rotated, &c);
    append(&log, &d);

    let e = Exporter::start(dir.path(), &config);
    let mut s = Scrapes::new(&e);
    s.expect(&merged(&[&b_counts, &c_counts, &d_counts]));
    add(&mut seen, &s.seen);
    assert_eq!(seen, merged(&[&a_counts, &b_counts, &c_counts, &d_counts]));
    let logs = e.logs();
    assert!(logs.contains("continuing from the saved state"), "{logs}");
    assert!(logs.contains("log file replaced"), "{logs}");
    assert_eq!(positions_invalid(&s.last), 0.0, "{}", s.last);
}
