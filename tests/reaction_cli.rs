//! The exporter talking to reaction's command line (the `tests/fixtures/reaction` stand-in):
//! pending actions, a hung or absent reaction, the version cache and configuration reloads.

use crate::common;
use crate::counts;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use counts::*;
use serde_json::json;

const RESTART: &str = "INFO received SIGTERM, closing streams...\n\
INFO stop command: run [\"iptables\", \"-w\", \"-X\", \"reaction\"]\n\
INFO start command: run [\"iptables\", \"-w\", \"-N\", \"reaction\"]\n\
INFO ssh: start [\"journalctl\", \"-fn0\", \"-u\", \"sshd.service\"]\n\
INFO web.nginx: start [\"tail\", \"-fn0\", \"/var/log/nginx/access.log\"]\n";

/// A fixture with the harness configuration plus a filter whose first pattern (`agent`,
/// sorted before `ip`) may contain spaces.
fn config_with_agents() -> serde_json::Value {
    let mut c = reaction_config();
    c["patterns"]["agent"] = json!({"regex": "[^\"]*"});
    c["streams"]["http"] = json!({
        "cmd": ["tail", "-fn0", "/var/log/http.log"],
        "filters": {"agents": {
            "regex": ["^<ip> \"<agent>\"$"],
            "actions": {"block": {"cmd": ["block", "<ip>"], "after": "1h"}}
        }}
    });
    c
}

fn pending_of(body: &str, labels: &[(&str, &str)]) -> f64 {
    value(body, "reaction_pending_count", labels).unwrap_or(0.0)
}

#[test]
fn pending_count_is_number_of_pending_executions() {
    let dir = tempfile::tempdir().unwrap();
    let r = Reaction::new(dir.path(), &config_with_agents());
    r.set_state(json!({"show": {
        "ssh": {"failedlogin": {
            "1.2.3.4 root": {"matches": 3, "actions": {"unban": 2, "ban": 1}},
            "5.6.7.8 bob": {"actions": {"unban": ["2026-11-27 10:00:00"]}},
            "9.9.9.9 eve": {"matches": 1}
        }},
        "http": {"agents": {
            "Mozilla/5.0 (X11; Linux) 10.0.0.1": {"actions": {"block": 3}}
        }}
    }}));
    let log = dir.path().join("reaction.log");
    append(&log, "");
    let e = Exporter::start(dir.path(), &file_config(&log, &r, ""));
    append(
        &log,
        "INFO http.agents: match [\"Mozilla/5.0 (X11; Linux)\", \"10.0.0.1\"]\n",
    );
    let mut counts = Counts::default();
    counts.until(&e, "the agents match", |c| {
        c.total("reaction_match_count") >= 1.0
    });
    // The page after the match was seen: the key with spaces is split with its values.
    let body = e.scrape();
    let ssh = |action, ip, user| {
        pending_of(
            &body,
            &[
                ("stream", "ssh"),
                ("filter", "failedlogin"),
                ("action", action),
                ("ip", ip),
                ("user", user),
            ],
        )
    };
    assert_eq!(ssh("unban", "1.2.3.4", "root"), 2.0, "{body}");
    assert_eq!(ssh("ban", "1.2.3.4", "root"), 1.0, "{body}");
    assert_eq!(ssh("unban", "5.6.7.8", "bob"), 1.0, "{body}");
    assert_eq!(
        pending_of(
            &body,
            &[
                ("stream", "http"),
                ("filter", "agents"),
                ("action", "block"),
                ("agent", "Mozilla/5.0 (X11; Linux)"),
                ("ip", "10.0.0.1"),
            ],
        ),
        3.0,
        "{body}"
    );
    // A match without pending actions is no pending series; nothing else is there.
    assert_eq!(total(&body, "reaction_pending_count", &[]), 7.0, "{body}");
    // Pending is a current value: the same on the next page.
    let again = e.scrape();
    assert_eq!(total(&again, "reaction_pending_count", &[]), 7.0, "{again}");
    assert_eq!(status(&again), ("2.2.0".into(), "1".into()));
}

#[test]
fn hung_reaction_show_never_hangs_a_scrape() {
    let dir = tempfile::tempdir().unwrap();
    let r = Reaction::new(dir.path(), &reaction_config());
    r.set_state(json!({"delay": {"show": 30}}));
    let log = dir.path().join("reaction.log");
    append(&log, "");
    let config = file_config(&log, &r, "").replace("  timeout: 2\n", "  timeout: 1\n");
    assert!(config.contains("timeout: 1\n"));
    let e = Exporter::start(dir.path(), &config);
    append(
        &log,
        &[
            ssh_match("1.2.3.4", "root"),
            ssh_match("1.2.3.4", "admin"),
            ssh_match("5.6.7.8", "root"),
        ]
        .concat(),
    );
    let mut counts = Counts::default();
    let mut pages = 0;
    wait_for(WAIT, "the three matches", || {
        let started = Instant::now();
        let body = e.scrape();
        let took = started.elapsed();
        // show is killed after 1 s; 30 s would mean the scrape waited for it
        assert!(took < Duration::from_secs(15), "a scrape took {took:?}");
        assert_eq!(status(&body), ("2.2.0".into(), "0".into()), "{body}");
        pages += 1;
        counts.add(body);
        (counts.total("reaction_match_count") >= 3.0).then_some(())
    });
    assert_eq!(counts.total("reaction_match_count"), 3.0);
    assert_eq!(
        counts.exact(
            "reaction_match_count",
            &[
                ("stream", "ssh"),
                ("filter", "failedlogin"),
                ("ip", "1.2.3.4"),
                ("user", "root")
            ]
        ),
        1.0
    );
    assert!(pages >= 1);
    // the killed call is logged
    e.wait_log("did not finish within", WAIT);
}

#[test]
fn reaction_down_then_up_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let r = Reaction::new(dir.path(), &reaction_config());
    let log = dir.path().join("reaction.log");
    append(&log, "");
    let e = Exporter::start(dir.path(), &file_config(&log, &r, ""));
    assert_eq!(status(&e.scrape()), ("2.2.0".into(), "1".into()));
    r.set_up(false);
    assert_eq!(status(&e.scrape()).1, "0");
    assert_eq!(status(&e.scrape()).1, "0");
    r.set_up(true);
    assert_eq!(status(&e.scrape()), ("2.2.0".into(), "1".into()));
    // still counting all along
    append(&log, &ssh_match("1.2.3.4", "root"));
    let mut counts = Counts::default();
    counts.until(&e, "the match", |c| c.total("reaction_match_count") >= 1.0);
}

#[test]
fn version_is_cached_until_reaction_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let r = Reaction::new(dir.path(), &reaction_config());
    let log = dir.path().join("reaction.log");
    append(&log, &ssh_match("1.2.3.4", "root"));
    let e = Exporter::start(dir.path(), &file_config(&log, &r, ""));
    for _ in 0..3 {
        assert_eq!(status(&e.scrape()).0, "2.2.0");
    }
    assert_eq!(r.calls("-V"), 1, "-V is asked once");
    assert_eq!(r.calls("show"), 3, "show is asked once per scrape");
    assert_eq!(r.calls("test-config"), 1);

    // reaction restarts, with a new version: stop lines, then a stream starts
    r.set_state(json!({"version": "2.3.0"}));
    append(
        &log,
        "INFO received SIGTERM, closing streams...\n\
         INFO stop command: run [\"iptables\", \"-w\", \"-X\", \"reaction\"]\n\
         INFO ssh: start [\"journalctl\", \"-fn0\", \"-u\", \"sshd.service\"]\n\
         INFO web.nginx: start [\"tail\", \"-fn0\", \"/var/log/nginx/access.log\"]\n",
    );
    wait_for(WAIT, "the configuration reload after the restart", || {
        (r.calls("test-config") == 2).then_some(())
    });
    for _ in 0..3 {
        assert_eq!(status(&e.scrape()).0, "2.3.0");
    }
    assert_eq!(r.calls("-V"), 2, "-V asked again once after the restart");
    assert_eq!(r.calls("show"), 6);
    assert_eq!(r.calls("test-config"), 2);
}

#[test]
fn version_failure_is_not_cached() {
    let dir = tempfile::tempdir().unwrap();
    let r = Reaction::new(dir.path(), &reaction_config());
    r.set_state(json!({"fail": {"version": "boom"}}));
    let log = dir.path().join("reaction.log");
    append(&log, "");
    let e = Exporter::start(dir.path(), &file_config(&log, &r, ""));
    assert_eq!(status(&e.scrape()), ("N/A".into(), "1".into()));
    r.set_state(json!({}));
    assert_eq!(status(&e.scrape()), ("2.2.0".into(), "1".into()));
    assert_eq!(status(&e.scrape()), ("2.2.0".into(), "1".into()));
    assert_eq!(r.calls("-V"), 2);
}

#[test]
fn config_is_reloaded_when_reaction_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let r = Reaction::new(dir.path(), &reaction_config());
    let log = dir.path().join("reaction.log");
    append(&log, &ssh_match("1.2.3.4", "root"));
    let e = Exporter::start(dir.path(), &file_config(&log, &r, ""));
    let mut counts = Counts::default();
    counts.until(&e, "the first match", |c| {
        c.total("reaction_match_count") >= 1.0
    });
    assert_eq!(
        counts.exact(
            "reaction_match_count",
            &[
                ("stream", "ssh"),
                ("filter", "failedlogin"),
                ("ip", "1.2.3.4"),
                ("user", "root")
            ]
        ),
        1.0
    );
    assert_eq!(r.calls("test-config"), 1);

    // reaction's configuration gets a third pattern, then reaction restarts
    let mut c = reaction_config();
    c["patterns"]["port"] = json!({"regex": "[0-9]+"});
    c["streams"]["ssh"]["filters"]["failedlogin"]["regex"] =
        json!(["Failed password for <user> from <ip> port <port>"]);
    std::fs::write(&r.config, serde_json::to_string_pretty(&c).unwrap()).unwrap();
    append(
        &log,
        &format!("{RESTART}INFO ssh.failedlogin: match [\"5.6.7.8\", \"2222\", \"admin\"]\n"),
    );
    counts.until(&e, "the match with three values", |c| {
        c.total("reaction_match_count") >= 2.0
    });
    assert_eq!(
        counts.exact(
            "reaction_match_count",
            &[
                ("stream", "ssh"),
                ("filter", "failedlogin"),
                ("ip", "5.6.7.8"),
                ("port", "2222"),
                ("user", "admin")
            ]
        ),
        1.0,
        "{:?}",
        counts.sums
    );
    assert_eq!(r.calls("test-config"), 2, "reloaded once, on the restart");
}

/// An exporter configuration without the fixture: `reaction.binary` does not exist.
fn config_without_binary(dir: &Path, log: &Path, reaction_files: &Path) -> String {
    let r = Reaction::new(dir, &reaction_config());
    file_config(log, &r, "")
        .replace(
            &format!("binary: {}", r.bin.display()),
            &format!("binary: {}", dir.join("nowhere/reaction").display()),
        )
        .replace(
            &format!("config: {}", r.config.display()),
            &format!("config: {}", reaction_files.display()),
        )
}

#[test]
fn absent_reaction_binary_reads_config_directly() {
    let dir = tempfile::tempdir().unwrap();
    let yml = dir.path().join("reaction.yml");
    std::fs::write(&yml, serde_yaml::to_string(&reaction_config()).unwrap()).unwrap();
    let log = dir.path().join("reaction.log");
    append(
        &log,
        &[
            ssh_match("1.2.3.4", "root"),
            "INFO web.nginx.aiBots: match [\"203.0.113.9\", \"GPTBot/1.0\"]\n".into(),
        ]
        .concat(),
    );
    let config = config_without_binary(dir.path(), &log, &yml);
    assert!(config.contains("nowhere/reaction"));
    let e = Exporter::start(dir.path(), &config);
    let mut counts = Counts::default();
    counts.until(&e, "the two matches", |c| {
        c.total("reaction_match_count") >= 2.0
    });
    assert_eq!(
        counts.exact(
            "reaction_match_count",
            &[
                ("stream", "ssh"),
                ("filter", "failedlogin"),
                ("ip", "1.2.3.4"),
                ("user", "root")
            ]
        ),
        1.0
    );
    assert_eq!(
        counts.exact(
            "reaction_match_count",
            &[
                ("stream", "web.nginx"),
                ("filter", "aiBots"),
                ("ip", "203.0.113.9"),
                ("ua", "GPTBot/1.0")
            ]
        ),
        1.0
    );
    e.wait_log(
        "`reaction` not found: read reaction's configuration directly",
        WAIT,
    );
    // no reaction to ask: status 0, version unknown
    assert_eq!(status(&counts.last), ("N/A".into(), "0".into()));
}

#[test]
fn jsonnet_config_without_reaction_is_a_clear_error_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let jsonnet = dir.path().join("reaction.jsonnet");
    std::fs::write(&jsonnet, "local ip = 'x';\n{ streams: {} }\n").unwrap();
    let log = dir.path().join("reaction.log");
    append(&log, &ssh_match("1.2.3.4", "root"));
    let mut e = Exporter::start(
        dir.path(),
        &config_without_binary(dir.path(), &log, &jsonnet),
    );
    let mut counts = Counts::default();
    counts.until(&e, "the match", |c| c.total("reaction_match_count") >= 1.0);
    // counted, without pattern labels
    assert_eq!(
        counts.exact(
            "reaction_match_count",
            &[("stream", "ssh"), ("filter", "failedlogin")]
        ),
        1.0,
        "{:?}",
        counts.sums
    );
    e.wait_log(
        "is a JSONnet configuration: it cannot be read without the reaction binary",
        WAIT,
    );
    let logs = e.logs();
    assert!(logs.contains("reaction.jsonnet"), "{logs}");
    // and it keeps running
    append(&log, &ssh_match("5.6.7.8", "root"));
    counts.until(&e, "the second match", |c| {
        c.total("reaction_match_count") >= 2.0
    });
    assert!(e.child.try_wait().unwrap().is_none(), "the exporter exited");
}
