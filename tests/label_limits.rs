//! Issue 8's label rows on the real binary: label values bounded in bytes (cut, counted),
//! the attribution memory and the transform cache bounded in bytes, and pattern names that
//! collide once sanitized given unique label names (checked with real promtool, the
//! Prometheus text parser).

use crate::common;
use crate::tools;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const INTERNALS: &str = "metrics:\n  export:\n    internals: true\n";

/// Guards issue 8: 30,000 distinct 8 KB user agents made a 242 MB page and a 1.87 GB peak
/// (label values, the attribution memory and the transform cache were bounded in entries
/// only). The check: 3,000 distinct 60 KB values (each with a ban attributed from
/// the memory, and a transform), peak RSS ≤ 300 MiB; each value cut to 1,024 bytes and
/// counted.
#[test]
fn three_thousand_60_kb_values_stay_within_300_mib() {
    const VALUES: usize = 3_000;
    const LEN: usize = 60 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let r = Reaction::new(dir.path(), &reaction_config());
    let log = dir.path().join("reaction.log");
    // A transform (the cache sees every 60 KB value) that keeps the value.
    let extra =
        format!("{INTERNALS}  for:\n    web.nginx:\n      aiBots:\n        ua: '{{{{ ua }}}}'\n");
    let config = file_config(&log, &r, &extra);
    {
        let mut f = std::fs::File::create(&log).unwrap();
        let filler = "A".repeat(LEN);
        for i in 0..VALUES {
            // Distinct from the first bytes, so that the cut values stay distinct.
            let ip = format!("10.0.{}.{}", i / 256, i % 256);
            let ua = format!("{i:05} {}", &filler[6..]);
            writeln!(f, "INFO web.nginx.aiBots: match [\"{ip}\", \"{ua}\"]").unwrap();
            writeln!(
                f,
                "INFO web.nginx.aiBots.ban: run [\"nft\" \"add\" \"element\" \"inet\" \"reaction\" \"bots\" \"{{ {ip} }}\"]"
            )
            .unwrap();
        }
        f.write_all(b"this line is not from reaction\n").unwrap();
    }
    let e = Exporter::start(dir.path(), &config);
    e.wait_log(
        "\"this line is not from reaction\"",
        Duration::from_secs(240),
    );
    let page = e.scrape();
    let peak = peak_rss(e.child.id());
    eprintln!(
        "{VALUES} distinct {LEN}-byte values (match + ban each): peak RSS {:.1} MiB, page {} bytes",
        peak as f64 / 1048576.0,
        page.len()
    );
    let samples = samples(&page);
    let uas = |family: &str| -> Vec<String> {
        samples
            .keys()
            .filter(|(name, _)| name == family)
            .filter_map(|(_, labels)| labels.iter().find(|(k, _)| k == "ua"))
            .map(|(_, v)| v.clone())
            .collect()
    };
    for family in ["reaction_match_count", "reaction_action_count"] {
        let values = uas(family);
        assert_eq!(values.len(), VALUES, "{family}");
        for v in &values {
            assert_eq!(v.len(), 1024, "{family}: {v}");
            assert!(v.ends_with('\u{2026}'), "{family}: {v}");
        }
    }
    assert_eq!(
        total(
            &page,
            "reaction_exporter_label_values_truncated_total",
            &[("label", "ua")]
        ),
        2.0 * VALUES as f64
    );
    // The attribution memory dropped old 60 KB values by bytes, not by count.
    let evicted = |cache: &str, reason: &str| {
        total(
            &page,
            "reaction_exporter_cache_evictions_total",
            &[("cache", cache), ("reason", reason)],
        )
    };
    assert!(evicted("attribution", "bytes") > 0.0, "{page}");
    assert_eq!(evicted("attribution", "entries"), 0.0);
    assert!(evicted("transform", "bytes") > 0.0, "{page}");
    assert!(
        peak <= 300 * 1024 * 1024,
        "peak RSS {peak} bytes > 300 MiB\n{}",
        e.logs()
    );
    let logs = e.logs();
    assert!(
        logs.contains("was cut to metrics.max_label_value_length (1024 bytes)"),
        "{logs}"
    );
    // Rate-limited: far fewer log lines than values cut.
    assert!(
        logs.matches("was cut to metrics.max_label_value_length")
            .count()
            < 10,
        "{logs}"
    );
}

/// `promtool check metrics` on `page`: its complaints, one per line.
fn promtool(page: &str) -> Vec<String> {
    let mut child = Command::new(tools::tool("promtool", "prometheus"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&out.stderr).lines())
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// Guards issue 8: two patterns whose names give the same label name once sanitized gave
/// a series with that label twice; Prometheus refuses the whole scrape ("duplicate label
/// names"), yet the scrape counted as delivered. Here `1ip` (labelled `_1ip`) and `_1ip`:
/// placeholders are `\w+`, the collision a reaction configuration can have.
#[test]
fn pattern_names_that_collide_once_sanitized_give_a_page_prometheus_parses() {
    let dir = tempfile::tempdir().unwrap();
    let reaction = serde_json::json!({
        "patterns": {"1ip": {"regex": "[a-z]+"}, "_1ip": {"regex": "[0-9.]+"}},
        "streams": {"s": {"cmd": ["x"], "filters": {"f": {
            "regex": ["<1ip> from <_1ip>"],
            "actions": {"ban": {"cmd": ["ban", "<_1ip>"]}}
        }}}}
    });
    let r = Reaction::new(dir.path(), &reaction);
    let log = dir.path().join("reaction.log");
    append(
        &log,
        "INFO s.f: match [\"root\", \"192.0.2.1\"]\nINFO s.f.ban: run [\"ban\" \"192.0.2.1\"]\n",
    );
    let e = Exporter::start(dir.path(), &file_config(&log, &r, ""));
    let page = wait_for(Duration::from_secs(20), "the match and the ban", || {
        let page = e.scrape();
        (page.contains("reaction_action_count{")).then_some(page)
    });
    assert!(
        page.contains(
            "reaction_match_count{stream=\"s\",filter=\"f\",_1ip=\"192.0.2.1\",_1ip_2=\"root\"} 1"
        ),
        "{page}"
    );
    assert!(
        page.contains(
            "reaction_action_count{stream=\"s\",filter=\"f\",action=\"ban\",_1ip=\"192.0.2.1\",\
             _1ip_2=\"root\"} 1"
        ),
        "{page}"
    );
    // What promtool says is only the known lint of the legacy `_count` names.
    let problems = promtool(&page);
    assert!(
        problems
            .iter()
            .all(|p| p.contains("should not have \"_count\" suffix")),
        "{problems:?}\n{page}"
    );
    assert!(!problems.is_empty(), "promtool ran and linted the page");
    let logs = e.logs();
    assert!(
        logs.contains("the label name of pattern \"1ip\" is taken by another pattern"),
        "{logs}"
    );
    assert!(logs.contains("it is labelled \"_1ip_2\""), "{logs}");
}
