//! Counts are "since the last scrape": every event must be in exactly one delivered
//! response, whatever the timing of writes and scrapes, and whatever happens to a response
//! on its way (client gone before it, client gone in the middle of it).

use crate::common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

const INTERNALS: &str = "metrics:\n  export:\n    internals: true\n";
const LAST_LINE: &str = "this line is not from reaction\n";
const LAST_LINE_WARNING: &str = "\"this line is not from reaction\"";

/// Match counts by IP in one page.
fn matches_by_ip(page: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for ((name, labels), v) in samples(page) {
        if name == "reaction_match_count" {
            let ip = labels
                .iter()
                .find(|(k, _)| k == "ip")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            *out.entry(ip).or_default() += v;
        }
    }
    out
}

fn add(into: &mut BTreeMap<String, f64>, page: &BTreeMap<String, f64>) {
    for (k, v) in page {
        *into.entry(k.clone()).or_default() += v;
    }
}

fn start(dir: &Path, extra_yaml: &str) -> (Reaction, Exporter, std::path::PathBuf) {
    let reaction = Reaction::new(dir, &reaction_config());
    let log = dir.join("reaction.log");
    append(&log, "");
    let exp = Exporter::start(dir, &file_config(&log, &reaction, extra_yaml));
    (reaction, exp, log)
}

#[test]
fn concurrent_writer_and_scraper_lose_and_duplicate_nothing() {
    const LINES: usize = 20_000;
    const IPS: usize = 1_000;
    const BURST: usize = 250;

    let dir = tempfile::tempdir().unwrap();
    let (_reaction, exp, log) = start(dir.path(), "");
    let exp = Arc::new(exp);

    let mut expected: BTreeMap<String, f64> = BTreeMap::new();
    let mut bursts: Vec<String> = Vec::new();
    let mut burst = String::new();
    for i in 0..LINES {
        // Spread each IP over the whole run.
        let ip = format!("10.{}.{}.{}", i % 7, (i % IPS) / 250, (i % IPS) % 250);
        *expected.entry(ip.clone()).or_default() += 1.0;
        burst.push_str(&ssh_match(&ip, "root"));
        if (i + 1) % BURST == 0 {
            bursts.push(std::mem::take(&mut burst));
        }
    }
    assert!(burst.is_empty());

    let writing = Arc::new(AtomicBool::new(true));
    let scrapes = Arc::new(AtomicUsize::new(0));
    let scraper = {
        let exp = exp.clone();
        let writing = writing.clone();
        let scrapes = scrapes.clone();
        std::thread::spawn(move || {
            let mut seen = BTreeMap::new();
            while writing.load(Ordering::Relaxed) {
                add(&mut seen, &matches_by_ip(&exp.scrape()));
                scrapes.fetch_add(1, Ordering::Relaxed);
            }
            seen
        })
    };
    let writer = {
        let log = log.clone();
        let writing = writing.clone();
        let scrapes = scrapes.clone();
        std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
            for (i, b) in bursts.iter().enumerate() {
                // Every 8 bursts, let at least one more scrape happen (on a busy machine
                // scrapes are slow): the scrapes are spread over the whole writing.
                if i % 8 == 0 {
                    let now = scrapes.load(Ordering::Relaxed);
                    wait_for(Duration::from_secs(30), "a scrape", || {
                        (scrapes.load(Ordering::Relaxed) > now).then_some(())
                    });
                }
                // Some bursts end in the middle of a line, finished by the next write.
                if i % 3 == 0 {
                    let cut = b.len() - 7;
                    f.write_all(&b.as_bytes()[..cut]).unwrap();
                    f.flush().unwrap();
                    std::thread::sleep(Duration::from_millis(3));
                    f.write_all(&b.as_bytes()[cut..]).unwrap();
                } else {
                    f.write_all(b.as_bytes()).unwrap();
                }
                std::thread::sleep(Duration::from_millis(15));
            }
            writing.store(false, Ordering::Relaxed);
        })
    };
    writer.join().unwrap();
    let mut seen = scraper.join().unwrap();
    assert!(scrapes.load(Ordering::Relaxed) >= LINES / BURST / 8);

    // Then until everything is in: never more than written.
    let deadline = Instant::now() + Duration::from_secs(40);
    while seen != expected {
        for (ip, n) in &seen {
            assert!(
                *n <= expected[ip],
                "{ip} counted {n} times, written {}",
                expected[ip]
            );
        }
        assert!(
            Instant::now() < deadline,
            "{} of {LINES} matches seen",
            seen.values().sum::<f64>()
        );
        std::thread::sleep(Duration::from_millis(100));
        add(&mut seen, &matches_by_ip(&exp.scrape()));
    }
    assert_eq!(seen.values().sum::<f64>(), LINES as f64);
    // And nothing is left to report.
    std::thread::sleep(Duration::from_millis(500));
    let page = exp.scrape();
    assert!(
        matches_by_ip(&page).is_empty(),
        "a final scrape still has matches:\n{page}"
    );
}

/// The exporter's own count of responses not delivered.
fn undelivered(page: &str) -> f64 {
    total(page, "reaction_exporter_scrapes_undelivered_total", &[])
}

#[test]
fn scrape_abandoned_while_reaction_is_slow_is_carried_over() {
    let dir = tempfile::tempdir().unwrap();
    let (reaction, exp, log) = start(dir.path(), INTERNALS);
    // A first scrape: reaction's version is known from now on (only `show` is slow below).
    exp.scrape();
    let mut written = BTreeMap::new();
    for (ip, n) in [("192.0.2.1", 3), ("192.0.2.2", 1), ("198.51.100.3", 2)] {
        for _ in 0..n {
            append(&log, &ssh_match(ip, "root"));
        }
        written.insert(ip.to_string(), n as f64);
    }
    append(&log, LAST_LINE);
    exp.wait_log(LAST_LINE_WARNING, Duration::from_secs(20));

    // reaction answers `show` slowly; the client gives up before the response.
    reaction.set_state(serde_json::json!({"delay": {"show": 1.5}}));
    let mut s = TcpStream::connect(&exp.addr).unwrap();
    s.write_all(
        format!(
            "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            exp.addr
        )
        .as_bytes(),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    s.shutdown(Shutdown::Both).unwrap();
    drop(s);

    reaction.set_state(serde_json::json!({}));
    let page = exp.scrape();
    assert_eq!(
        matches_by_ip(&page),
        written,
        "the next complete scrape lacks the counts; log:\n{}\n{page}",
        exp.logs()
    );
    let page = exp.scrape();
    assert!(matches_by_ip(&page).is_empty(), "counted twice:\n{page}");
    assert_eq!(undelivered(&page), 1.0, "{page}\nlog:\n{}", exp.logs());
}

#[test]
fn response_cut_short_is_carried_over() {
    const IPS: usize = 50_000;
    let dir = tempfile::tempdir().unwrap();
    let (_reaction, exp, log) = start(dir.path(), INTERNALS);
    // Long values: a page of ~10 MB, far more than the socket buffers hold.
    let user = "u".repeat(120);
    let mut text = String::with_capacity(IPS * 200);
    for i in 0..IPS {
        text.push_str(&ssh_match(
            &format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256),
            &user,
        ));
    }
    text.push_str(LAST_LINE);
    append(&log, &text);
    exp.wait_log(LAST_LINE_WARNING, Duration::from_secs(60));

    // Read the first few KiB of the response, then go away.
    let mut s = TcpStream::connect(&exp.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(
        format!(
            "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            exp.addr
        )
        .as_bytes(),
    )
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while got.len() < 4096 {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "response ended after {} bytes", got.len());
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 200"));
    drop(s);
    exp.wait_log("not delivered completely", Duration::from_secs(30));

    let page = exp.scrape();
    let seen = matches_by_ip(&page);
    assert_eq!(seen.len(), IPS);
    assert!(seen.values().all(|v| *v == 1.0));
    assert_eq!(undelivered(&page), 1.0);
    let page = exp.scrape();
    assert!(matches_by_ip(&page).is_empty(), "counted twice");
    assert_eq!(undelivered(&page), 1.0);
}
