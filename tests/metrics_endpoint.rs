//! The `/metrics` page as a Prometheus server sees it: exact content for a fixed workload,
//! validity for promtool and for the Python client's parsers, content negotiation.

use crate::common;
use crate::tools::{python_parse, run_with_stdin};

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;

/// Every kind of line reaction writes, once or more, with the last line unknown (its
/// warning in the exporter's log tells that every line before it was counted).
const WORKLOAD: &str = concat!(
    "INFO start command: run [\"iptables\", \"-w\", \"-N\", \"reaction\"]\n",
    "ERROR start command: run [\"ip6tables\", \"-w\", \"-N\", \"reaction\"]: exit code: 2\n",
    "INFO ssh: start [\"journalctl\", \"-fn0\", \"-u\", \"sshd.service\"]\n",
    "INFO web.nginx: start [\"tail\", \"-fn0\", \"/var/log/nginx/access.log\"]\n",
    "DEBUG nothing to see\n",
    // On a TTY the level is coloured.
    "\x1b[32mINFO\x1b[0m ssh.failedlogin: match [\"192.0.2.1\", \"admin\"]\n",
    "INFO ssh.failedlogin: match [\"192.0.2.1\", \"root\"]\n",
    " INFO ssh.failedlogin: match [\"192.0.2.1\", \"root\"]\n",
    // Rust Debug escapes: \u{..}, \", \\, \t, \n; raw non-ASCII.
    r#"INFO ssh.failedlogin: match ["198.51.100.7", "jos\u{e9} \"the boss\""]"#,
    "\n",
    r#"INFO ssh.failedlogin: match ["2001:db8::1", "caf\u{e9} C:\\Users\t\"q\" ü\n!"]"#,
    "\n",
    r#"INFO ssh.failedlogin.ban: run ["iptables" "-w" "-A" "reaction" "-s" "192.0.2.1" "-j" "DROP"]"#,
    "\n",
    r#"INFO web.nginx.aiBots: match ["203.0.113.9", "GPTBot/1.0 (+https://openai.com/gptbot)"]"#,
    "\n",
    r#"INFO web.nginx.aiBots.ban: run ["nft" "add" "element" "inet" "reaction" "bots" "{ 203.0.113.9 }"]"#,
    "\n",
    "WARN plugin ipset: set reaction4 created\n",
    "ERROR stream ssh exited: exit status: 1\n",
    "ERROR could not execute stream web.nginx cmd: No such file or directory (os error 2)\n",
    "ERROR impossible to read output from stream ssh: stream did not contain valid UTF-8\n",
    "ERROR child process of stream web.nginx did not terminate\n",
    r#"INFO ssh.failedlogin.unban: run ["iptables" "-w" "-D" "reaction" "-s" "198.51.100.7" "-j" "DROP"]"#,
    "\n",
    "INFO received SIGTERM, closing streams...\n",
    "INFO stop command: run [\"iptables\", \"-w\", \"-D\", \"INPUT\", \"-p\", \"all\", \"-j\", \"reaction\"]\n",
    "ERROR stop command: run [\"iptables\", \"-w\", \"-X\", \"reaction\"]: exit code: 1\n",
);

/// Lines the parser or the labeller cannot take, for the self-monitoring families.
const BAD_LINES: &str = concat!(
    // malformed: the list is not closed
    "INFO ssh.failedlogin: match [\"192.0.2.50\", \"root\"\n",
    // pattern_mismatch: one value for two patterns
    "INFO ssh.failedlogin: match [\"192.0.2.51\"]\n",
    // unknown_name: no such filter in reaction's configuration
    "INFO nosuch.filter: match [\"192.0.2.52\"]\n",
);

const LAST_LINE: &str = "this line is not from reaction\n";
const LAST_LINE_WARNING: &str = "\"this line is not from reaction\"";

/// `reaction show`: two pending unbans for one match, one for another (whose user has a
/// space, so the key is ambiguous and is resolved against the matches seen).
fn show_state() -> serde_json::Value {
    serde_json::json!({
        "version": "2.2.0",
        "show": {
            "ssh": {
                "failedlogin": {
                    "192.0.2.1 root": {
                        "matches": 1,
                        "actions": {"unban": ["2026-11-27 10:00:00", "2026-11-27 11:00:00"]}
                    },
                    "198.51.100.7 jos\u{e9} \"the boss\"": {
                        "actions": {"unban": ["2026-11-28 10:00:00"]}
                    }
                }
            }
        }
    })
}

/// An exporter that has counted `log` (whose last line must be [`LAST_LINE`]).
fn loaded(
    dir: &Path,
    log: &str,
    state: serde_json::Value,
    extra_yaml: &str,
) -> (Reaction, Exporter) {
    let reaction = Reaction::new(dir, &reaction_config());
    reaction.set_state(state);
    let path = dir.join("reaction.log");
    append(&path, log);
    let exp = Exporter::start(dir, &file_config(&path, &reaction, extra_yaml));
    exp.wait_log(LAST_LINE_WARNING, Duration::from_secs(30));
    (reaction, exp)
}

fn head(version: &str) -> String {
    format!(
        "# HELP reaction_exporter_build_info A metric with a constant '1' value labelled by version of reaction_metrics_exporter.\n\
         # TYPE reaction_exporter_build_info gauge\n\
         reaction_exporter_build_info{{version=\"{}\"}} 1.0\n\
         # HELP reaction_status_info A metric with a constant '1' value labelled by version of reaction and its status.\n\
         # TYPE reaction_status_info gauge\n\
         reaction_status_info{{version=\"{version}\",status=\"1\"}} 1.0\n",
        env!("CARGO_PKG_VERSION")
    )
}

const PENDING: &str = "\
# HELP reaction_pending_count Number of pending actions, labelled by stream, filter and action names, with pattern=match extra labels.
# TYPE reaction_pending_count gauge
reaction_pending_count{stream=\"ssh\",filter=\"failedlogin\",action=\"unban\",ip=\"192.0.2.1\",user=\"root\"} 2.0
reaction_pending_count{stream=\"ssh\",filter=\"failedlogin\",action=\"unban\",ip=\"198.51.100.7\",user=\"josé \\\"the boss\\\"\"} 1.0
";

/// The first scrape after [`WORKLOAD`] + [`LAST_LINE`], text format.
fn expected_page() -> String {
    head("2.2.0")
        + "\
# HELP reaction_commands_count Number of commands launched by reaction, labelled with moment, success status and exit code.
# TYPE reaction_commands_count gauge
reaction_commands_count{state=\"start\",command=\"ip6tables\",status=\"False\",code=\"2\"} 1.0
reaction_commands_count{state=\"start\",command=\"iptables\",status=\"True\",code=\"0\"} 1.0
reaction_commands_count{state=\"stop\",command=\"iptables\",status=\"False\",code=\"1\"} 1.0
reaction_commands_count{state=\"stop\",command=\"iptables\",status=\"True\",code=\"0\"} 1.0
# HELP reaction_stream_event_count Number of stream events, labelled by stream name and type of event.
# TYPE reaction_stream_event_count gauge
reaction_stream_event_count{stream=\"ssh\",type=\"exit\"} 1.0
reaction_stream_event_count{stream=\"ssh\",type=\"read\"} 1.0
reaction_stream_event_count{stream=\"ssh\",type=\"start\"} 1.0
reaction_stream_event_count{stream=\"web.nginx\",type=\"exec\"} 1.0
reaction_stream_event_count{stream=\"web.nginx\",type=\"start\"} 1.0
reaction_stream_event_count{stream=\"web.nginx\",type=\"timeout\"} 1.0
# HELP reaction_match_count Number of matches, labelled by stream and filter names, with pattern=match extra labels.
# TYPE reaction_match_count gauge
reaction_match_count{stream=\"ssh\",filter=\"failedlogin\",ip=\"192.0.2.1\",user=\"admin\"} 1.0
reaction_match_count{stream=\"ssh\",filter=\"failedlogin\",ip=\"192.0.2.1\",user=\"root\"} 2.0
reaction_match_count{stream=\"ssh\",filter=\"failedlogin\",ip=\"198.51.100.7\",user=\"josé \\\"the boss\\\"\"} 1.0
reaction_match_count{stream=\"ssh\",filter=\"failedlogin\",ip=\"2001:db8::1\",user=\"café C:\\\\Users\t\\\"q\\\" ü\\n!\"} 1.0
reaction_match_count{stream=\"web.nginx\",filter=\"aiBots\",ip=\"203.0.113.9\",ua=\"GPTBot/1.0 (+https://openai.com/gptbot)\"} 1.0
# HELP reaction_action_count Number of actions, labelled by stream, filter and action names, with pattern=match extra labels.
# TYPE reaction_action_count gauge
reaction_action_count{stream=\"ssh\",filter=\"failedlogin\",action=\"ban\",ip=\"192.0.2.1\",user=\"root\"} 1.0
reaction_action_count{stream=\"ssh\",filter=\"failedlogin\",action=\"unban\",ip=\"198.51.100.7\",user=\"josé \\\"the boss\\\"\"} 1.0
reaction_action_count{stream=\"web.nginx\",filter=\"aiBots\",action=\"ban\",ip=\"203.0.113.9\",ua=\"GPTBot/1.0 (+https://openai.com/gptbot)\"} 1.0
"
        + PENDING
}

#[test]
fn fixed_workload_gives_exact_page_in_both_formats() {
    let log = format!("{WORKLOAD}{LAST_LINE}");

    // Text format.
    let dir = tempfile::tempdir().unwrap();
    let (_reaction, exp) = loaded(dir.path(), &log, show_state(), "");
    assert_eq!(exp.scrape(), expected_page());
    // Counts are since the last scrape: only the current values are left.
    let quiet = head("2.2.0") + PENDING;
    assert_eq!(exp.scrape(), quiet);
    assert_eq!(exp.scrape(), quiet);

    // OpenMetrics, from a second exporter given the same workload: the same page (no
    // counter in it) ending with `# EOF`.
    let dir = tempfile::tempdir().unwrap();
    let (_reaction, exp) = loaded(dir.path(), &log, show_state(), "");
    assert_eq!(exp.scrape_openmetrics(), expected_page() + "# EOF\n");
    assert_eq!(exp.scrape_openmetrics(), quiet.clone() + "# EOF\n");
    assert_eq!(exp.scrape(), quiet);
}

#[test]
fn internals_count_lines_rejections_and_cli_failures() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = show_state();
    state["fail"] = serde_json::json!({"version": "reaction: cannot tell"});
    let log = format!("{WORKLOAD}{BAD_LINES}{LAST_LINE}");
    let lines = log.lines().count() as f64;
    let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let (_reaction, exp) = loaded(
        dir.path(),
        &log,
        state,
        "metrics:\n  export:\n    internals: true\n",
    );
    let page = exp.scrape();
    let after = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();

    // `-V` failed: the version is unknown, reaction is still up.
    assert!(
        page.contains("reaction_status_info{version=\"N/A\",status=\"1\"} 1.0\n"),
        "{page}"
    );
    let own = |page: &str| -> BTreeMap<String, f64> {
        samples(page)
            .into_iter()
            .filter(|((name, _), _)| {
                name.starts_with("reaction_exporter_")
                    && name != "reaction_exporter_build_info"
                    && name != "reaction_exporter_last_event_timestamp_seconds"
            })
            .map(|((name, labels), v)| {
                let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                (format!("{name}{{{}}}", labels.join(",")), v)
            })
            .collect()
    };
    let expected = |cli_failures: f64| -> BTreeMap<String, f64> {
        [
            ("reaction_exporter_lines_read_total{}", lines),
            (
                "reaction_exporter_lines_rejected_total{reason=malformed}",
                1.0,
            ),
            (
                "reaction_exporter_lines_rejected_total{reason=pattern_mismatch}",
                1.0,
            ),
            (
                "reaction_exporter_lines_rejected_total{reason=unknown}",
                1.0,
            ),
            (
                "reaction_exporter_lines_rejected_total{reason=unknown_name}",
                1.0,
            ),
            (
                "reaction_exporter_reaction_cli_failures_total{command=version,kind=failed}",
                cli_failures,
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    };
    assert_eq!(own(&page), expected(1.0), "{page}");
    // The families are counters, with their HELP and TYPE, in this order.
    let order: Vec<&str> = page
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .collect();
    assert_eq!(
        order,
        [
            "reaction_exporter_build_info gauge",
            "reaction_status_info gauge",
            "reaction_commands_count gauge",
            "reaction_stream_event_count gauge",
            "reaction_match_count gauge",
            "reaction_action_count gauge",
            "reaction_pending_count gauge",
            "reaction_exporter_lines_read_total counter",
            "reaction_exporter_lines_rejected_total counter",
            "reaction_exporter_reaction_cli_failures_total counter",
            "reaction_exporter_last_event_timestamp_seconds gauge",
            "process_cpu_seconds_total counter",
            "process_resident_memory_bytes gauge",
            "process_open_fds gauge",
        ]
    );
    // The lines that were not understood are still counted where they can be.
    assert_eq!(
        total(
            &page,
            "reaction_match_count",
            &[("stream", "nosuch"), ("filter", "filter")]
        ),
        1.0
    );
    assert!(
        page.contains("reaction_match_count{stream=\"ssh\",filter=\"failedlogin\"} 1.0\n"),
        "{page}"
    );
    // The time of the last line read: during this test.
    let last = total(&page, "reaction_exporter_last_event_timestamp_seconds", &[]);
    assert!(
        last >= before.as_secs_f64() - 1.0 && last <= after.as_secs_f64() + 1.0,
        "last event {last} not within [{before:?}, {after:?}]"
    );

    // The exporter's own counters are cumulative: unchanged by a scrape, except the `-V`
    // retried at each scrape.
    let page = exp.scrape();
    assert_eq!(own(&page), expected(2.0), "{page}");
    assert_eq!(
        total(&page, "reaction_exporter_last_event_timestamp_seconds", &[]),
        last
    );
}

/// A page with every family: the workload, the bad lines, a failing `reaction -V`,
/// internals on.
fn rich_page(format_openmetrics: bool) -> String {
    let dir = tempfile::tempdir().unwrap();
    let log = format!("{WORKLOAD}{BAD_LINES}{LAST_LINE}");
    let mut state = show_state();
    state["fail"] = serde_json::json!({"version": "reaction: cannot tell"});
    let (_reaction, exp) = loaded(
        dir.path(),
        &log,
        state,
        "metrics:\n  export:\n    internals: true\n",
    );
    let page = if format_openmetrics {
        exp.scrape_openmetrics()
    } else {
        exp.scrape()
    };
    for family in [
        "reaction_commands_count",
        "reaction_stream_event_count",
        "reaction_match_count",
        "reaction_action_count",
        "reaction_pending_count",
        "reaction_exporter_lines_rejected",
        "reaction_exporter_reaction_cli_failures",
    ] {
        assert!(
            page.contains(&format!("# TYPE {family}")),
            "{family}:\n{page}"
        );
    }
    page
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}

#[test]
fn output_passes_promtool_in_both_formats() {
    assert!(
        on_path("promtool"),
        "promtool is not on PATH: install the Debian package `prometheus` \
         (apt-get install prometheus) to run this test"
    );
    // The legacy families keep their names byte for byte; promtool's linter dislikes the
    // `_count` suffix on gauges. That, and nothing else, is allowed.
    let legacy_count = [
        "reaction_action_count",
        "reaction_commands_count",
        "reaction_match_count",
        "reaction_pending_count",
        "reaction_stream_event_count",
    ];
    let count_lint = |f: &str| {
        format!("{f} non-histogram and non-summary metrics should not have \"_count\" suffix")
    };
    for openmetrics in [false, true] {
        let page = rich_page(openmetrics);
        let out = run_with_stdin("promtool", &["check", "metrics"], &page);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let mut problems: Vec<String> = stdout
            .lines()
            .chain(stderr.lines())
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect();
        problems.sort();
        let mut expected: Vec<String> = legacy_count.iter().map(|f| count_lint(f)).collect();
        if openmetrics {
            // promtool 2.42 reads its input as text format 0.0.4 only: an OpenMetrics
            // counter family `x` (samples `x_total`) is seen as an untyped `x_total` with
            // no HELP. The OpenMetrics page is right (checked by the Python parser below).
            for counter in [
                "process_cpu_seconds_total",
                "reaction_exporter_lines_read_total",
                "reaction_exporter_lines_rejected_total",
                "reaction_exporter_reaction_cli_failures_total",
            ] {
                expected.push(format!("{counter} no help text"));
            }
        }
        expected.sort();
        assert_eq!(
            problems,
            expected,
            "promtool on the {} page (exit {:?}):\n{page}",
            if openmetrics { "OpenMetrics" } else { "text" },
            out.status.code()
        );
    }
}

#[test]
fn output_parses_with_prometheus_client() {
    // name (as each parser names the family), type, number of samples
    // Both parsers name a counter family without its `_total`.
    let families = || -> Vec<(String, String, u64)> {
        let counter = |name: &str| name.trim_end_matches("_total").to_string();
        vec![
            ("reaction_exporter_build_info".into(), "gauge".into(), 1),
            ("reaction_status_info".into(), "gauge".into(), 1),
            ("reaction_commands_count".into(), "gauge".into(), 4),
            ("reaction_stream_event_count".into(), "gauge".into(), 6),
            ("reaction_match_count".into(), "gauge".into(), 7),
            ("reaction_action_count".into(), "gauge".into(), 3),
            ("reaction_pending_count".into(), "gauge".into(), 2),
            (
                counter("reaction_exporter_lines_read_total"),
                "counter".into(),
                1,
            ),
            (
                counter("reaction_exporter_lines_rejected_total"),
                "counter".into(),
                4,
            ),
            (
                counter("reaction_exporter_reaction_cli_failures_total"),
                "counter".into(),
                1,
            ),
            (
                "reaction_exporter_last_event_timestamp_seconds".into(),
                "gauge".into(),
                1,
            ),
            (counter("process_cpu_seconds_total"), "counter".into(), 1),
            ("process_resident_memory_bytes".into(), "gauge".into(), 1),
            ("process_open_fds".into(), "gauge".into(), 1),
        ]
    };
    for openmetrics in [false, true] {
        let page = rich_page(openmetrics);
        let arg = if openmetrics { "openmetrics" } else { "text" };
        let got = python_parse(&page, openmetrics);
        assert_eq!(got, families(), "{arg} page:\n{page}");
    }
}

#[test]
fn accept_negotiation() {
    let dir = tempfile::tempdir().unwrap();
    let reaction = Reaction::new(dir.path(), &reaction_config());
    let log = dir.path().join("reaction.log");
    append(&log, "");
    let exp = Exporter::start(dir.path(), &file_config(&log, &reaction, ""));

    let (status, ct, body) = get(&exp.addr, "/metrics", None);
    assert_eq!((status, ct.as_str()), (200, TEXT));
    assert!(!body.contains("# EOF"), "{body}");

    let prometheus_accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let (status, ct, body) = get(&exp.addr, "/metrics", Some(prometheus_accept));
    assert_eq!((status, ct.as_str()), (200, OPENMETRICS));
    assert!(body.ends_with("# EOF\n"), "{body}");

    let (status, ct, body) = get(&exp.addr, "/metrics", Some("*/*"));
    assert_eq!((status, ct.as_str()), (200, TEXT));
    assert!(
        body.starts_with("# HELP reaction_exporter_build_info "),
        "{body}"
    );

    let (status, ct, _) = get(
        &exp.addr,
        "/metrics",
        Some("text/plain;version=0.0.4;q=0.9,application/openmetrics-text;q=0.5"),
    );
    assert_eq!((status, ct.as_str()), (200, TEXT));

    let (status, ct, body) = get(&exp.addr, "/", None);
    assert_eq!(status, 200);
    assert!(ct.starts_with("text/html"), "{ct}");
    assert!(body.contains("<a href=\"/metrics\">"), "{body}");

    let (status, _, _) = get(&exp.addr, "/nothing-here", None);
    assert_eq!(status, 404);
}
