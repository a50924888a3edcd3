//! SIGHUP reloads the configuration (the real binary, a real log file, real signals): what
//! can change while running changes from the next event on, with nothing lost or counted
//! twice around it; a configuration that fails to load is refused and the running one
//! stays; what cannot change while running is logged and kept.

use crate::common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

const SIGHUP: i32 = 1;
const WAIT: Duration = Duration::from_secs(30);

/// The exporter's own families on, to read `reaction_exporter_config_reloads_total`.
const INTERNALS: &str = "metrics:\n  export:\n    internals: true\n";

/// Write `config` over the exporter's configuration file.
fn rewrite(e: &Exporter, config: &str) {
    std::fs::write(&e.config_path, config).unwrap();
}

/// Send SIGHUP and wait until the reload counted `result` `n` times in all. The counter is
/// cumulative on `/metrics` (the exporter's own families are), so one scrape shows it.
fn reload(e: &Exporter, result: &str, n: f64, pages: &Pages) {
    signal(&e.child, SIGHUP);
    wait_for(WAIT, &format!("{n} reloads {result}"), || {
        let body = pages.scrape(e);
        let got = total(
            &body,
            "reaction_exporter_config_reloads_total",
            &[("result", result)],
        );
        (got >= n).then_some(())
    });
}

/// Label sets → total.
type Sums = BTreeMap<Vec<(String, String)>, f64>;

/// Every scrape's samples of the (delta) match family, added up: series → total.
#[derive(Default, Clone)]
struct Pages(Arc<Mutex<Sums>>);

impl Pages {
    /// Scrape once (it must be answered), add its matches, return the page.
    fn scrape(&self, e: &Exporter) -> String {
        let body = e.scrape();
        self.add(&body);
        body
    }

    /// Add the matches of a page.
    fn add(&self, body: &str) {
        let mut sums = self.0.lock().unwrap();
        for ((name, labels), v) in samples(body) {
            if name == "reaction_match_count" {
                *sums.entry(labels).or_default() += v;
            }
        }
    }

    /// The total count of the series whose `ip` label is `ip`.
    fn ip(&self, ip: &str) -> f64 {
        let sums = self.0.lock().unwrap();
        sums.iter()
            .filter(|(labels, _)| labels.iter().any(|(k, v)| k == "ip" && v == ip))
            .map(|(_, v)| v)
            .sum()
    }

    fn all(&self) -> Sums {
        self.0.lock().unwrap().clone()
    }
}

/// A thread appending `n` matches, 3 ms apart, of the IPs `10.1.x.y` (`i / 250`, `i % 250`):
/// lines written while a reload happens.
fn write_during(log: &std::path::Path, n: usize) -> std::thread::JoinHandle<()> {
    let log = log.to_owned();
    std::thread::spawn(move || {
        for i in 0..n {
            append(
                &log,
                &ssh_match(&format!("10.1.{}.{}", i / 250, i % 250), "root"),
            );
            std::thread::sleep(Duration::from_millis(3));
        }
    })
}

/// A thread scraping `/metrics` without pause into `pages` until `stop`: each scrape must
/// be answered. Returns how many were.
fn scrape_until(
    pages: &Pages,
    e: &Exporter,
    stop: &Arc<AtomicBool>,
) -> std::thread::JoinHandle<usize> {
    let (pages, stop, addr) = (pages.clone(), stop.clone(), e.addr.clone());
    std::thread::spawn(move || {
        let mut answered = 0;
        while !stop.load(Ordering::Relaxed) {
            let (status, _, body) = get(&addr, "/metrics", Some("text/plain"));
            assert_eq!(status, 200, "{body}");
            pages.add(&body);
            answered += 1;
        }
        answered
    })
}

/// The `ip` label of every series counted, with its total.
fn ips(pages: &Pages) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for (labels, v) in pages.all() {
        if let Some((_, ip)) = labels.iter().find(|(k, _)| k == "ip") {
            *out.entry(ip.clone()).or_default() += v;
        }
    }
    out
}

/// A transform changed on SIGHUP while lines are written and `/metrics` is scraped without
/// pause: every line is counted exactly once, lines counted before the reload keep their
/// raw `ip`, lines written after it is done get the new transform, and no line is
/// labelled by the old configuration after one was labelled by the new (the switch is
/// between two batches). Every scrape during the reload is answered.
#[test]
fn a_changed_transform_labels_the_events_after_the_reload() {
    let dir = tempfile::tempdir().unwrap();
    let reaction = Reaction::new(dir.path(), &reaction_config());
    let log = dir.path().join("reaction.log");
    let config = file_config(&log, &reaction, INTERNALS);
    let e = Exporter::start(dir.path(), &config);
    let pages = Pages::default();

    // Before: raw values, counted before the reload.
    for i in 0..20 {
        append(&log, &ssh_match(&format!("10.0.0.{i}"), "root"));
    }
    wait_for(WAIT, "the first 20 matches", || {
        pages.scrape(&e);
        (pages.ip("10.0.0.19") == 1.0).then_some(())
    });

    // During: a writer and a scraper run while the reload happens.
    let with_transform = format!("{config}  all:\n    ip: \"new-{{{{ ip }}}}\"\n");
    assert!(with_transform.contains("internals: true\n  all:\n"));
    rewrite(&e, &with_transform);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = write_during(&log, 300);
    let scraper = scrape_until(&pages, &e, &stop);
    std::thread::sleep(Duration::from_millis(300));
    reload(&e, "ok", 1.0, &pages);
    writer.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    let answered = scraper.join().unwrap();
    assert!(answered > 0);

    // After: the new transform.
    for i in 0..20 {
        append(&log, &ssh_match(&format!("10.2.0.{i}"), "root"));
    }
    wait_for(WAIT, "every line counted", || {
        pages.scrape(&e);
        (ips(&pages).values().sum::<f64>() >= 340.0).then_some(())
    });
    let counted = ips(&pages);
    assert_eq!(counted.values().sum::<f64>(), 340.0, "{counted:?}");
    assert!(
        counted.values().all(|v| *v == 1.0),
        "a line counted twice: {counted:?}"
    );
    for i in 0..20 {
        assert_eq!(
            counted.get(&format!("10.0.0.{i}")),
            Some(&1.0),
            "{counted:?}"
        );
        assert_eq!(
            counted.get(&format!("new-10.2.0.{i}")),
            Some(&1.0),
            "{counted:?}"
        );
    }
    // The lines written during the reload: each once, raw up to some line, new after it.
    let mut switched = false;
    let mut raw_during = 0;
    for i in 0..300 {
        let ip = format!("10.1.{}.{}", i / 250, i % 250);
        let raw = counted.get(&ip).copied().unwrap_or(0.0);
        let new = counted.get(&format!("new-{ip}")).copied().unwrap_or(0.0);
        assert_eq!(raw + new, 1.0, "{ip}: raw {raw}, new {new}");
        if new == 1.0 {
            switched = true;
        } else {
            assert!(
                !switched,
                "{ip} labelled by the old configuration after the new one"
            );
            raw_during += 1;
        }
    }
    let logs = e.logs();
    assert!(
        logs.contains("configuration reloaded: now in force: metrics.all"),
        "{logs}"
    );
    eprintln!("{raw_during} of the 300 lines written around the reload were labelled before it; {answered} scrapes answered meanwhile");
    assert!(e.terminate().success());
}

/// A configuration that fails to load is refused with the key and the line, counted, and
/// the running one stays: the exporter serves and labels as before; a good one after it
/// is taken.
#[test]
fn a_broken_configuration_is_refused_and_the_running_one_stays() {
    let dir = tempfile::tempdir().unwrap();
    let reaction = Reaction::new(dir.path(), &reaction_config());
    let log = dir.path().join("reaction.log");
    let config = format!(
        "{}  all:\n    user: false\n",
        file_config(&log, &reaction, INTERNALS)
    );
    let e = Exporter::start(dir.path(), &config);
    let pages = Pages::default();

    // A template that does not compile, and a value out of range.
    let broken_template = config.replace("user: false", "user: \"{{ user \"");
    let line = broken_template
        .lines()
        .position(|l| l.contains("{{ user"))
        .unwrap()
        + 1;
    rewrite(&e, &broken_template);
    reload(&e, "failed", 1.0, &pages);
    let logs = e.logs();
    let refused = logs
        .lines()
        .find(|l| l.contains("configuration reload refused"))
        .unwrap_or_else(|| panic!("{logs}"));
    assert!(refused.contains(" ERROR "), "{refused}");
    assert!(
        refused.contains("key `metrics.all.user`") && refused.contains(&format!("(line {line})")),
        "{refused}"
    );
    rewrite(&e, &config.replace("  hold: 0\n", "  hold: 999999999\n"));
    reload(&e, "failed", 2.0, &pages);
    assert!(e.logs().contains("key `reaction.hold`"), "{}", e.logs());

    // Still running on the old configuration: `user` dropped.
    append(&log, &ssh_match("192.0.2.7", "root"));
    wait_for(WAIT, "the match", || {
        pages.scrape(&e);
        (pages.ip("192.0.2.7") == 1.0).then_some(())
    });
    assert!(pages
        .all()
        .keys()
        .all(|labels| labels.iter().all(|(k, _)| k != "user")));

    // A good one is taken.
    rewrite(&e, &config.replace("user: false", "user: true"));
    reload(&e, "ok", 1.0, &pages);
    append(&log, &ssh_match("192.0.2.8", "admin"));
    wait_for(WAIT, "the second match", || {
        pages.scrape(&e);
        (pages.ip("192.0.2.8") == 1.0).then_some(())
    });
    let with_user: Vec<_> = pages
        .all()
        .into_keys()
        .filter(|labels| labels.iter().any(|(k, v)| k == "user" && v == "admin"))
        .collect();
    assert_eq!(with_user.len(), 1, "{:?}", pages.all());
    assert!(e.terminate().success());
}

/// Keys that cannot change while running are logged by name and keep their running value:
/// the exporter still serves where it did and still reads the file it read.
#[test]
fn keys_that_need_a_restart_are_logged_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let reaction = Reaction::new(dir.path(), &reaction_config());
    let log = dir.path().join("reaction.log");
    let config = file_config(&log, &reaction, INTERNALS);
    let e = Exporter::start(dir.path(), &config);
    let pages = Pages::default();
    let other_log = dir.path().join("other.log");
    let changed = config
        .replace("  port: 0\n", "  port: 1\n")
        .replace(
            &format!("file: {}", log.display()),
            &format!("file: {}", other_log.display()),
        )
        .replace(
            "internals: true\n",
            "internals: true\n  attribution_memory: 50\n",
        );
    assert_ne!(changed, config);
    rewrite(&e, &changed);
    reload(&e, "ok", 1.0, &pages);
    let logs = e.logs();
    for key in ["listen.port", "reaction.logs", "metrics.attribution_memory"] {
        assert!(
            logs.lines().any(|l| l.contains(" WARN ")
                && l.contains(&format!("key `{key}` changed in the configuration file but cannot change while the exporter runs"))),
            "{key}: {logs}"
        );
    }
    assert!(
        logs.contains("configuration reloaded: nothing that can change while running changed"),
        "{logs}"
    );
    append(&log, &ssh_match("192.0.2.9", "root"));
    append(&other_log, &ssh_match("192.0.2.10", "root"));
    wait_for(WAIT, "the match of the file read at start", || {
        pages.scrape(&e);
        (pages.ip("192.0.2.9") == 1.0).then_some(())
    });
    assert_eq!(pages.ip("192.0.2.10"), 0.0);
    assert!(e.terminate().success());
}

/// reaction's log line for its stop on `signal`: the exporter logs it at WARN, every time
/// (not rate-limited).
fn stop_line(signal: &str) -> String {
    format!("INFO received {signal}, closing streams...\n")
}

/// `loglevel` reloads (without `RUST_LOG`): at ERROR, a WARN line is no longer written, at
/// INFO again it is; with `RUST_LOG` set, it decides and the reload says so.
#[test]
fn loglevel_reloads_unless_rust_log_decides() {
    let dir = tempfile::tempdir().unwrap();
    let reaction = Reaction::new(dir.path(), &reaction_config());
    let log = dir.path().join("reaction.log");
    let port = crate::tools::free_port();
    let config = file_config(&log, &reaction, INTERNALS)
        .replace("  port: 0\n", &format!("  port: {port}\n"));
    let config_path = dir.path().join("config.yml");
    std::fs::write(&config_path, &config).unwrap();
    let e = Exporter::start_without_rust_log(&config_path, port);
    let pages = Pages::default();
    append(&log, &stop_line("SIGUSR1"));
    e.wait_log("SIGUSR1", WAIT);

    rewrite(&e, &config.replace("loglevel: INFO", "loglevel: ERROR"));
    reload(&e, "ok", 1.0, &pages);
    assert!(e.logs().contains("now in force: loglevel"), "{}", e.logs());
    append(&log, &stop_line("SIGUSR2"));
    wait_for(WAIT, "the second line read", || {
        (total(&e.scrape(), "reaction_exporter_lines_read_total", &[]) == 2.0).then_some(())
    });
    // Back to INFO: written again.
    rewrite(&e, &config);
    reload(&e, "ok", 2.0, &pages);
    append(&log, &stop_line("SIGQUIT"));
    e.wait_log("SIGQUIT", WAIT);
    let (status, logs) = e.terminate_with_logs();
    assert!(status.success(), "{logs}");
    assert!(!logs.contains("SIGUSR2"), "{logs}");

    // RUST_LOG set: it wins, and the reload says so.
    let dir = tempfile::tempdir().unwrap();
    let reaction = Reaction::new(dir.path(), &reaction_config());
    let log = dir.path().join("reaction.log");
    let config = file_config(&log, &reaction, INTERNALS);
    let e = Exporter::start(dir.path(), &config);
    rewrite(&e, &config.replace("loglevel: INFO", "loglevel: ERROR"));
    reload(&e, "ok", 1.0, &Pages::default());
    e.wait_log(
        "loglevel changed to ERROR, but RUST_LOG is set and decides the log level",
        WAIT,
    );
    append(&log, &stop_line("SIGPWR"));
    e.wait_log("SIGPWR", WAIT);
    assert!(e.terminate().success());
}

/// `GET /metrics` with basic-auth credentials, if any: the status.
fn status_with(addr: &str, auth: Option<&str>) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(a) = auth {
        req.push_str(&format!("Authorization: Basic {a}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw);
    text.split(' ').nth(1).unwrap().parse().unwrap()
}

/// `listen.web_config` reloads: basic auth turned on by SIGHUP applies to the next
/// connection, and off again.
#[test]
fn web_config_reloads() {
    // bcrypt (cost 4) of "secret", as in tests/secure_endpoint.rs.
    const HASH: &str = "$2b$04$Y1gv0YPLTxQ63bjVTzi85ev7J/eF2mqRNO70DEimuzLnpMF5IWHXa";
    // base64("prometheus:secret")
    const CREDENTIALS: &str = "cHJvbWV0aGV1czpzZWNyZXQ=";
    let dir = tempfile::tempdir().unwrap();
    let reaction = Reaction::new(dir.path(), &reaction_config());
    let log = dir.path().join("reaction.log");
    let config = file_config(&log, &reaction, INTERNALS);
    let e = Exporter::start(dir.path(), &config);
    assert_eq!(status_with(&e.addr, None), 200);
    let web = dir.path().join("web.yml");
    std::fs::write(&web, format!("basic_auth_users:\n  prometheus: '{HASH}'\n")).unwrap();
    rewrite(
        &e,
        &config.replace(
            "  port: 0\n",
            &format!("  port: 0\n  web_config: {}\n", web.display()),
        ),
    );
    signal(&e.child, SIGHUP);
    e.wait_log("now in force: listen.web_config", WAIT);
    assert_eq!(status_with(&e.addr, None), 401);
    assert_eq!(status_with(&e.addr, Some(CREDENTIALS)), 200);
    // A web configuration that does not load: refused, auth stays on.
    std::fs::write(&web, "basic_auth_users:\n  prometheus: nohash\n").unwrap();
    rewrite(
        &e,
        &config.replace(
            "  port: 0\n",
            &format!(
                "  port: 0\n  web_config: {}\n  max_connections: 9\n",
                web.display()
            ),
        ),
    );
    signal(&e.child, SIGHUP);
    e.wait_log("configuration reload refused", WAIT);
    assert!(e.logs().contains("key `listen.web_config"), "{}", e.logs());
    assert_eq!(status_with(&e.addr, None), 401);
    // Off again.
    rewrite(&e, &config);
    signal(&e.child, SIGHUP);
    wait_for(WAIT, "plain /metrics again", || {
        (status_with(&e.addr, None) == 200).then_some(())
    });
    assert!(e.terminate().success());
}

/// The total of every series of the (delta) match family counted so far, overflow series
/// included.
fn all_matches(pages: &Pages) -> f64 {
    pages.all().values().sum()
}

/// Whether a series is the overflow series.
fn is_overflow(labels: &[(String, String)]) -> bool {
    labels
        .iter()
        .any(|(k, v)| k == "otel_metric_overflow" && v == "true")
}

/// `metrics.cardinality_limit` reloads (issue 10): with a limit of 2, five new IPs in one
/// batch give two series and the overflow series; raised to 1,000 by SIGHUP while lines are
/// written and `/metrics` is scraped without pause, twenty new IPs in one batch get a series
/// each. Every line is counted exactly once across the reload (the old provider's readers
/// are collected once more), and so is the exporter's own count of lines read.
#[test]
fn a_raised_cardinality_limit_takes_effect_and_nothing_is_lost_or_doubled() {
    let dir = tempfile::tempdir().unwrap();
    let reaction = Reaction::new(dir.path(), &reaction_config());
    let log = dir.path().join("reaction.log");
    let config = file_config(
        &log,
        &reaction,
        &format!("{INTERNALS}  cardinality_limit: 2\n"),
    );
    let e = Exporter::start(dir.path(), &config);
    let pages = Pages::default();

    let burst = |prefix: &str, n: usize| {
        let text: String = (0..n)
            .map(|i| ssh_match(&format!("{prefix}.{i}"), "root"))
            .collect();
        append(&log, &text);
    };
    burst("10.0.0", 5);
    wait_for(WAIT, "the first 5 matches", || {
        pages.scrape(&e);
        (all_matches(&pages) >= 5.0).then_some(())
    });
    let overflowed: f64 = (pages.all().iter())
        .filter(|(labels, _)| is_overflow(labels))
        .map(|(_, v)| v)
        .sum();
    assert!(overflowed >= 3.0, "{:?}", pages.all());

    // During: a writer and a scraper run while the reload happens.
    rewrite(
        &e,
        &config.replace("cardinality_limit: 2\n", "cardinality_limit: 1000\n"),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let writer = write_during(&log, 200);
    let scraper = scrape_until(&pages, &e, &stop);
    std::thread::sleep(Duration::from_millis(200));
    reload(&e, "ok", 1.0, &pages);
    writer.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    scraper.join().unwrap();
    assert!(
        e.logs().contains("now in force: metrics.cardinality_limit"),
        "{}",
        e.logs()
    );

    // After: twenty new IPs in one batch, each in its own series.
    burst("10.2.0", 20);
    wait_for(WAIT, "every line counted", || {
        pages.scrape(&e);
        (all_matches(&pages) >= 225.0).then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    let body = pages.scrape(&e);
    assert_eq!(
        all_matches(&pages),
        225.0,
        "nothing lost or twice: {:?}",
        pages.all()
    );
    let counted = ips(&pages);
    for i in 0..20 {
        assert_eq!(
            counted.get(&format!("10.2.0.{i}")),
            Some(&1.0),
            "{counted:?}"
        );
    }
    assert!(counted.values().all(|v| *v == 1.0), "{counted:?}");
    assert_eq!(
        total(&body, "reaction_exporter_lines_read_total", &[]),
        225.0,
        "the exporter's own counters are not counted again by the new provider"
    );
    assert!(e.terminate().success());
}

/// `otlp.*` reloads (issue 10): SIGHUP moves the push from a gRPC receiver to an HTTP one
/// with another service name, and raises the cardinality limit, while lines are written.
/// Every match arrives exactly once across the two receivers (what was queued for the old
/// one goes to the new one), the exporter's own count of lines read too (a delta sum, not
/// sent again whole by the new provider), and every point the new receiver gets carries
/// the new resource. A CA file that does not load refuses the whole reload; turning the push
/// off is kept until a restart, and logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_settings_reload_to_a_new_endpoint_with_nothing_lost_or_doubled() {
    use crate::otlp::{blocking, eventually, otlp_config, setup, start, Protocol};
    use crate::receivers::{Receiver, Store};

    let a = Protocol::Grpc.receiver(None, Store::default()).await;
    let b = Receiver::http(None, Store::default(), "/v1/metrics", 64 << 20, None).await;
    let (dir, r, log) = setup();
    let config = otlp_config(
        &log,
        &r,
        &a,
        Protocol::Grpc,
        &format!("{INTERNALS}  otel_endpoint:\n    enabled: true\n"),
    );
    let e = start(&dir, config.clone(), &[]).await;
    let (sa, sb) = (a.store.clone(), b.store.clone());
    let matches = "reaction.filter.matches";
    let both = move |m: &str| sa.sum(m, &[]) + sb.sum(m, &[]);

    let text: String = (0..50)
        .map(|i| ssh_match(&format!("10.0.0.{i}"), "root"))
        .collect();
    append(&log, &text);
    let sa = a.store.clone();
    eventually("50 matches at the first receiver", || {
        sa.sum(matches, &[]) >= 50.0
    })
    .await;

    let moved = config
        .replace(&a.endpoint(), &b.endpoint())
        .replace("protocol: grpc", "protocol: http/protobuf")
        .replace(
            "  instance_id:",
            "  service_name: renamed\n  resource:\n    deployment.environment: after\n  instance_id:",
        )
        .replace(
            "internals: true\n",
            "internals: true\n  cardinality_limit: 1000\n",
        );
    assert!(moved.contains("service_name: renamed") && moved.contains("cardinality_limit"));
    std::fs::write(&e.config_path, &moved).unwrap();
    let writer = write_during(&log, 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    signal(&e.child, SIGHUP);
    eventually("the reload", || e.logs().contains("now in force:")).await;
    blocking(move || writer.join().unwrap()).await;
    append(&log, &ssh_match("10.2.0.1", "root"));
    let total = both.clone();
    eventually("every match at one receiver or the other", || {
        total(matches) >= 251.0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let logs = e.logs();
    let reloaded = logs
        .lines()
        .find(|l| l.contains("now in force:"))
        .unwrap_or_else(|| panic!("{logs}"));
    assert!(
        reloaded.contains("metrics.cardinality_limit") && reloaded.contains("otlp"),
        "{reloaded}"
    );
    assert_eq!(both(matches), 251.0, "each match once across the reload");
    for i in 0..200 {
        let ip = format!("10.1.0.{i}");
        let n = a.store.sum(matches, &[("ip", &ip)]) + b.store.sum(matches, &[("ip", &ip)]);
        assert_eq!(n, 1.0, "{ip}");
    }
    assert_eq!(
        both("reaction.exporter.lines.read"),
        251.0,
        "lines read, once (a delta sum over both receivers)"
    );
    let at_b = b.store.points();
    assert!(
        at_b.iter().any(|p| p.metric == matches),
        "the new receiver got matches"
    );
    assert!(
        at_b.iter().all(|p| p.resource["service.name"] == "renamed"),
        "the new resource on every point the new receiver got"
    );
    assert_eq!(b.store.sum(matches, &[("ip", "10.2.0.1")]), 1.0);
    // The resource on `/metrics/otel` too (`target_info` leaves out the service's name).
    let (status, _, otel) = get(&e.addr, "/metrics/otel", None);
    assert_eq!(status, 200);
    let target = otel
        .lines()
        .find(|l| l.starts_with("target_info{"))
        .unwrap_or_else(|| panic!("{otel}"));
    assert!(
        target.contains("deployment_environment=\"after\""),
        "{target}"
    );

    // TLS with a CA file that is not PEM: the whole reload is refused (the transport is
    // built before anything is applied), and the push goes on as it was.
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "not a certificate\n").unwrap();
    let bad = moved.replace("http://", "https://").replace(
        "  instance_id:",
        &format!("  ca: {}\n  instance_id:", ca.display()),
    );
    assert!(bad.contains("https://"));
    std::fs::write(&e.config_path, &bad).unwrap();
    signal(&e.child, SIGHUP);
    eventually("the reload refused", || {
        e.logs().contains("configuration reload refused")
    })
    .await;
    let logs = e.logs();
    let refused = logs
        .lines()
        .find(|l| l.contains("configuration reload refused"))
        .unwrap();
    assert!(
        refused.contains("key `otlp`") && refused.contains("ca.pem"),
        "{refused}"
    );
    append(&log, &ssh_match("10.2.0.2", "root"));
    let sb = b.store.clone();
    eventually("the push still on the HTTP receiver", || {
        sb.sum(matches, &[("ip", "10.2.0.2")]) == 1.0
    })
    .await;

    // Off: kept until a restart, and said so.
    let off = moved.replace(&format!("  endpoint: {}\n", b.endpoint()), "");
    assert_ne!(off, moved);
    std::fs::write(&e.config_path, &off).unwrap();
    signal(&e.child, SIGHUP);
    eventually("the push kept on", || {
        e.logs().contains(
            "key `otlp` changed in the configuration file but it turns the OTLP push on or off",
        )
    })
    .await;
    append(&log, &ssh_match("10.3.0.1", "root"));
    let sb = b.store.clone();
    eventually("the push goes on", || {
        sb.sum(matches, &[("ip", "10.3.0.1")]) == 1.0
    })
    .await;
    assert!(blocking(move || e.terminate().success()).await);
}

/// With the OTLP push in cumulative temporality, a new cardinality limit is kept until a
/// restart and the log says why (a new reader would restart the counters it sends at zero),
/// and so is a new temporality; the rest of the reload is in force, and the push goes on
/// as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_cumulative_otlp_the_cardinality_limit_and_temporality_are_kept() {
    use crate::otlp::{blocking, eventually, otlp_config, setup, start, Protocol};
    use crate::receivers::Store;

    let rx = Protocol::Grpc.receiver(None, Store::default()).await;
    let (dir, r, log) = setup();
    let config = otlp_config(
        &log,
        &r,
        &rx,
        Protocol::Grpc,
        &format!("  temporality: cumulative\n{INTERNALS}"),
    );
    let e = start(&dir, config.clone(), &[]).await;
    let changed = config
        .replace("temporality: cumulative", "temporality: delta")
        .replace(
            "internals: true\n",
            "internals: true\n  cardinality_limit: 1000\n",
        )
        .replace("loglevel: INFO", "loglevel: DEBUG");
    std::fs::write(&e.config_path, &changed).unwrap();
    signal(&e.child, SIGHUP);
    eventually("the reload", || e.logs().contains("configuration reloaded")).await;
    let logs = e.logs();
    assert!(
        logs.contains(
            "key `metrics.cardinality_limit` changed in the configuration file but the OTLP \
             push has cumulative temporality"
        ),
        "{logs}"
    );
    assert!(
        logs.contains(
            "key `otlp.temporality` changed in the configuration file but a reader's \
             temporality is set when it is built"
        ),
        "{logs}"
    );
    let reloaded = logs
        .lines()
        .find(|l| l.contains("configuration reloaded"))
        .unwrap();
    assert!(
        reloaded.contains("now in force: loglevel")
            && !reloaded.contains("otlp")
            && !reloaded.contains("cardinality"),
        "{reloaded}"
    );
    append(&log, &ssh_match("10.0.0.1", "root"));
    let store = rx.store.clone();
    eventually("the match, still cumulative", || {
        store
            .points_of("reaction.filter.matches")
            .iter()
            .any(|p| !p.is_delta() && p.value == 1.0)
    })
    .await;
    assert!(blocking(move || e.terminate().success()).await);
}
