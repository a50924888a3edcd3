//! Hostile HTTP clients against the real binary (issue 8's HTTP rows, with its figures):
//! idle connections past the descriptor limit, a trickled request head, a client that never
//! reads its page while 50 others scrape, a flood of HEAD requests. Every bound is the
//! README's "Limits and hostile input" table.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// A wrapper that starts the exporter with at most `nofile` file descriptors.
fn with_nofile(dir: &Path, nofile: u32) -> std::path::PathBuf {
    let path = dir.join("exporter-limited");
    std::fs::write(
        &path,
        format!("#!/bin/sh\nulimit -n {nofile} || exit 99\nexec '{BIN}' \"$@\"\n"),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path
}

/// An exporter on a log of `matches` distinct match lines, all counted before it returns,
/// with its own families shown; `listen` adds keys to `listen` (indented lines). Without
/// `cli`, reaction's binary is absent (each `show` fails at once, the configuration is read
/// from its file): the time a `show` takes is out of the picture.
fn loaded(dir: &Path, matches: usize, listen: &str, program: Option<&Path>, cli: bool) -> Exporter {
    let reaction = Reaction::new(dir, &reaction_config());
    let log = dir.join("reaction.log");
    let mut text = String::with_capacity(matches * 60 + 100);
    for i in 0..matches {
        text.push_str(&ssh_match(
            &format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255),
            "root",
        ));
    }
    text.push_str("the last line\n");
    append(&log, &text);
    let config_path = dir.join("config.yml");
    let config = file_config(
        &log,
        &reaction,
        "metrics:\n  export:\n    internals: true\n",
    )
    .replace("  port: 0\n", &format!("  port: 0\n{listen}"));
    let config = if cli {
        config
    } else {
        config.replace(
            &format!("binary: {}", reaction.bin.display()),
            &format!("binary: {}", dir.join("no-reaction-here").display()),
        )
    };
    std::fs::write(&config_path, config).unwrap();
    let exp = match program {
        Some(p) => Exporter::start_program(p, &config_path, &[]),
        None => Exporter::start_with(&config_path, &[]),
    };
    exp.wait_log("\"the last line\"", Duration::from_secs(120));
    // The fixture lives as long as the test directory.
    std::mem::forget(reaction);
    exp
}

/// A GET that must answer 200 within `within`: its body.
fn timed_scrape(addr: &str, within: Duration) -> (Duration, String) {
    let start = Instant::now();
    let (status, _, body) = get(addr, "/metrics", Some("text/plain"));
    let took = start.elapsed();
    assert_eq!(status, 200);
    assert!(took <= within, "scrape took {took:?}");
    (took, body)
}

/// A GET of `/metrics` that may fail: the body of a 200, or what went wrong.
fn try_get(addr: &str) -> Result<String, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(
        format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: text/plain\r\n\r\n")
            .as_bytes(),
    )
    .map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    match text.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200 ") => {
            let length = head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())?
            });
            match length {
                Some(n) if n == body.len() => Ok(body.to_string()),
                _ => Err(format!(
                    "a body of {} bytes, content-length {length:?}",
                    body.len()
                )),
            }
        }
        Some((head, _)) => Err(format!("answered {head:?}")),
        None => Err(format!("no HTTP response ({} bytes)", raw.len())),
    }
}

fn failures(page: &str, kind: &str) -> f64 {
    total(
        page,
        "reaction_exporter_http_failures_total",
        &[("kind", kind)],
    )
}

/// Issue 8: "idle or trickling connections never closed (no header-read timeout); with
/// 128 descriptors, 200 idle connections make scrapes time out". Now: 200 idle connections
/// to an exporter limited to 128 descriptors never keep a scrape out (the cap, fitted to the
/// descriptors, closes the longest idle connection for a new one), and every one of them
/// is closed within 60 s (the default `listen.header_timeout`, 10 s, for those left).
#[test]
fn idle_connections_past_the_descriptor_limit_never_keep_scrapes_out() {
    let dir = tempfile::tempdir().unwrap();
    let program = with_nofile(dir.path(), 128);
    let exp = loaded(
        dir.path(),
        10,
        "  max_connections: 1000\n",
        Some(&program),
        true,
    );
    // 1000 does not fit in 128 descriptors: lowered, and said so.
    exp.wait_log(
        "listen.max_connections lowered to 96",
        Duration::from_secs(5),
    );

    let opened = Instant::now();
    let mut idle: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(&exp.addr).unwrap())
        .collect();
    // Scrapes go through at once, the 200 idle connections notwithstanding.
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        slowest = slowest.max(timed_scrape(&exp.addr, Duration::from_secs(2)).0);
    }
    // Every idle connection is closed by the exporter (EOF or reset) within 60 s.
    let mut last_closed = Duration::ZERO;
    for s in idle.iter_mut() {
        let left = Duration::from_secs(60).saturating_sub(opened.elapsed());
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        let mut b = [0u8; 1];
        match s.read(&mut b) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!(
                "an idle connection still open after {:?}: {other:?}",
                opened.elapsed()
            ),
        }
        last_closed = last_closed.max(opened.elapsed());
    }
    assert!(last_closed <= Duration::from_secs(60), "{last_closed:?}");
    let page = exp.scrape();
    assert!(failures(&page, "connection_limit") >= 104.0, "{page}");
    assert!(failures(&page, "header_timeout") >= 1.0, "{page}");
    // Rate-limited: a few lines per kind, not one per connection.
    let logs = exp.logs();
    let lines = logs.matches("kind=\"connection_limit\"").count()
        + logs.matches("kind=connection_limit").count();
    assert!((1..=3).contains(&lines), "{lines} lines:\n{logs}");
    eprintln!("slowest scrape {slowest:?}; all 200 idle connections closed after {last_closed:?}");
}

/// Issue 8: "one client sends GET /metrics on a 100k-series page and never reads: every
/// later scrape waits (100 concurrent: median 28 s...); RSS 16 → 445 MB; that page's counts
/// are withheld until the client leaves". Now, with one stalled reader and 50 concurrent
/// scrapers: p99 scrape latency ≤ 2 s, RSS ≤ 3× its value before, and the stalled page is
/// dropped at `listen.response_timeout` (20 s here, past the 200 scrapes) with its counts in
/// a later scrape,
/// exactly once.
#[test]
fn a_stalled_reader_delays_no_scrape_and_its_counts_come_later() {
    const SERIES: usize = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let exp = loaded(
        dir.path(),
        SERIES,
        "  response_timeout: 20\n",
        None,
        // What a slow `reaction show` does to concurrent scrapes is the subject of the
        // scrape tests (at most one `show` in flight); here, only the stalled client.
        false,
    );
    let pid = exp.child.id();
    let rss_before = rss_kib(pid);

    // The stalled request takes every count (its page is the 100k series).
    let counted = |page: &str| total(page, "reaction_match_count", &[]);
    let mut seen = 0.0;
    let stalled_at = Instant::now();
    let stalled = stalled_reader(&exp.addr);
    // Its page is made (the collect and the render of 100k series, seconds in a debug build,
    // which concurrent scrapes would wait for whatever the client does) once its first
    // bytes arrive; from then on, the client just does not read.
    let mut first = [0u8; 1];
    stalled
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    assert_eq!(stalled.peek(&mut first).unwrap(), 1);
    // The first collect after a 100k-series one frees that one's series in the SDK (1.5 to
    // 2.5 s in a debug build on this loaded machine, measured with perf: OtelString drops),
    // whoever the client: not what this test measures, so it is done before.
    let warm_up = Instant::now();
    seen += counted(&exp.scrape());
    eprintln!(
        "first scrape after the 100k-series one: {:?}",
        warm_up.elapsed()
    );
    let mut latencies = Vec::new();
    let mut rss_peak = 0;
    let mut failed = Vec::new();
    std::thread::scope(|scope| {
        let addr = &exp.addr;
        let workers: Vec<_> = (0..50)
            .map(|_| {
                scope.spawn(move || {
                    let mut out = Vec::new();
                    for _ in 0..4 {
                        let start = Instant::now();
                        let answer = try_get(addr);
                        out.push((start.elapsed(), answer));
                    }
                    out
                })
            })
            .collect();
        while !workers.iter().all(|w| w.is_finished()) {
            rss_peak = rss_peak.max(rss_kib(pid));
            std::thread::sleep(Duration::from_millis(20));
        }
        for w in workers {
            for (took, answer) in w.join().unwrap() {
                latencies.push(took);
                match answer {
                    Ok(body) => seen += counted(&body),
                    Err(e) => failed.push(format!("after {took:?}: {e}")),
                }
            }
        }
    });
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100 - 1];
    eprintln!(
        "{} scrapes beside a stalled reader: p50 {:?}, p99 {:?}, max {:?}; RSS {rss_before} KiB \
         before, {rss_peak} KiB peak",
        latencies.len(),
        latencies[latencies.len() / 2],
        p99,
        latencies.last().unwrap()
    );
    assert!(
        failed.is_empty(),
        "{} scrapes failed: {failed:?}\n{}",
        failed.len(),
        exp.logs()
    );
    assert!(p99 <= Duration::from_secs(2), "p99 {p99:?}");
    assert!(
        rss_peak <= 3 * rss_before,
        "{rss_peak} KiB > 3 × {rss_before} KiB"
    );

    // Past the response deadline the stalled page is dropped and the connection closed
    // (the client still reads nothing until then); its counts come in a later scrape.
    exp.wait_log(
        "response not handed over within listen.response_timeout",
        Duration::from_secs(60),
    );
    let cut_after = stalled_at.elapsed();
    assert!(
        cut_after >= Duration::from_secs(20) && cut_after < Duration::from_secs(40),
        "{cut_after:?}"
    );
    // What was in the buffers, then the end: far less than the page.
    let mut stalled = stalled;
    let mut sink = vec![0u8; 1 << 16];
    let mut read = 0;
    loop {
        match stalled.read(&mut sink) {
            Ok(0) => break,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Ok(n) => read += n,
            Err(e) => panic!("the stalled connection is still open: {e}"),
        }
    }
    assert!(
        read < 4 << 20,
        "{read} bytes delivered to the stalled client"
    );
    // The exporter's own counters are read when a scrape collects, the carried-over counts
    // taken after that: a scrape that collects while the dropped page gives its counts back
    // shows them before the undelivered scrape is counted, which the next scrape shows (it
    // failed so once in the full suite, on a loaded machine).
    let page = wait_for(
        Duration::from_secs(10),
        "the undelivered scrape counted",
        || {
            let page = exp.scrape();
            seen += counted(&page);
            let undelivered = total(&page, "reaction_exporter_scrapes_undelivered_total", &[]);
            (undelivered == 1.0).then_some(page)
        },
    );
    assert_eq!(seen, SERIES as f64, "every match exactly once");
    assert_eq!(failures(&page, "response_timeout"), 1.0, "{page}");
}

/// Issue 8: "2,000 HEAD requests: 2,000 WARN lines, not rate-limited". A HEAD request no
/// longer scrapes (nothing is taken, so nothing goes undelivered), and the warnings that a
/// client can cause per request are rate-limited.
#[test]
fn a_head_flood_takes_nothing_and_logs_little() {
    let dir = tempfile::tempdir().unwrap();
    let exp = loaded(dir.path(), 3, "", None, true);
    let warnings_before = exp.logs().matches(" WARN ").count();
    let mut s = TcpStream::connect(&exp.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut buf = Vec::new();
    for i in 0..2000 {
        // Kept alive, and a fresh connection now and then.
        if i % 100 == 99 {
            s = TcpStream::connect(&exp.addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        }
        s.write_all(b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        buf.clear();
        let mut b = [0u8; 512];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut b).unwrap();
            assert!(n > 0);
            buf.extend_from_slice(&b[..n]);
        }
        assert!(buf.starts_with(b"HTTP/1.1 200 OK\r\n"));
        assert!(String::from_utf8_lossy(&buf).contains("content-type: text/plain"));
    }
    let page = exp.scrape();
    assert_eq!(total(&page, "reaction_match_count", &[]), 3.0, "{page}");
    assert_eq!(
        total(&page, "reaction_exporter_scrapes_undelivered_total", &[]),
        0.0
    );
    let warnings = exp.logs().matches(" WARN ").count() - warnings_before;
    assert!(warnings <= 2, "{warnings} warnings:\n{}", exp.logs());
}

/// Issue 8: "idle or trickling connections: never closed (no header-read timeout)". The
/// idle ones are above; a client that trickles an endless request head, a byte every
/// 100 ms, is closed at `listen.header_timeout` (2 s here) counted from its first byte, not
/// from its last: the timeout bounds the whole head. Scrapes go on meanwhile.
#[test]
fn a_trickled_request_head_is_cut_at_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let exp = loaded(dir.path(), 3, "  header_timeout: 2\n", None, true);
    let mut s = TcpStream::connect(&exp.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let opened = Instant::now();
    let head = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Trickle: ";
    let mut sent = 0usize;
    let mut answer = Vec::new();
    let closed_after = loop {
        let byte = head.get(sent).copied().unwrap_or(b'a');
        match s.write_all(&[byte]) {
            Ok(()) => sent += 1,
            Err(_) => break opened.elapsed(),
        }
        let mut b = [0u8; 512];
        match s.read(&mut b) {
            Ok(0) => break opened.elapsed(),
            Ok(n) => answer.extend_from_slice(&b[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break opened.elapsed(),
        }
        assert!(
            opened.elapsed() < Duration::from_secs(30),
            "a trickled head still open after {:?} ({sent} bytes sent)",
            opened.elapsed()
        );
        if sent % 10 == 0 {
            // Scrapes are answered while it trickles.
            timed_scrape(&exp.addr, Duration::from_secs(10));
        }
    };
    eprintln!(
        "a head trickled a byte per 100 ms: closed after {closed_after:?}, {sent} bytes sent, \
         answered {:?}",
        String::from_utf8_lossy(&answer)
    );
    assert!(
        closed_after >= Duration::from_secs(2),
        "closed before the timeout: {closed_after:?}"
    );
    assert!(
        !String::from_utf8_lossy(&answer).contains(" 200 "),
        "never answered as a request"
    );
    let page = exp.scrape();
    assert_eq!(failures(&page, "header_timeout"), 1.0, "{page}");
}
