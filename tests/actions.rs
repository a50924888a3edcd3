//! Actions end to end through the log file: attribution of an action to its own match, and
//! actions reaction replays when it starts held back.

use crate::common;
use crate::counts;

use std::time::Duration;

use common::*;
use counts::*;

fn action_labels<'a>(action: &'a str, ip: &'a str, user: &'a str) -> [(&'a str, &'a str); 5] {
    [
        ("stream", "ssh"),
        ("filter", "failedlogin"),
        ("action", action),
        ("ip", ip),
        ("user", user),
    ]
}

#[test]
fn unban_is_labelled_with_its_own_ip() {
    let dir = tempfile::tempdir().unwrap();
    let r = Reaction::new(dir.path(), &reaction_config());
    let log = dir.path().join("reaction.log");
    append(&log, "");
    let e = Exporter::start(dir.path(), &file_config(&log, &r, ""));
    let mut lines = String::new();
    for (ip, user) in [
        ("1.1.1.1", "alice"),
        ("2.2.2.2", "bob"),
        ("3.3.3.3", "carol"),
    ] {
        for _ in 0..3 {
            lines.push_str(&ssh_match(ip, user));
        }
        lines.push_str(&ssh_action("ban", ip));
    }
    append(&log, &lines);
    let mut counts = Counts::default();
    counts.until(&e, "the bans", |c| c.total("reaction_action_count") >= 3.0);
    // 48 hours later, as far as the log can tell
    append(&log, &ssh_action("unban", "1.1.1.1"));
    counts.until(&e, "the unban", |c| c.total("reaction_action_count") >= 4.0);

    assert_eq!(
        counts.exact(
            "reaction_action_count",
            &action_labels("unban", "1.1.1.1", "alice")
        ),
        1.0,
        "{:?}",
        counts.series("reaction_action_count")
    );
    for (ip, user) in [
        ("1.1.1.1", "alice"),
        ("2.2.2.2", "bob"),
        ("3.3.3.3", "carol"),
    ] {
        assert_eq!(
            counts.exact("reaction_action_count", &action_labels("ban", ip, user)),
            1.0
        );
        assert_eq!(
            counts.exact(
                "reaction_match_count",
                &[
                    ("stream", "ssh"),
                    ("filter", "failedlogin"),
                    ("ip", ip),
                    ("user", user)
                ]
            ),
            3.0
        );
    }
    assert_eq!(counts.total("reaction_action_count"), 4.0);
}

#[test]
fn actions_replayed_at_start_are_held() {
    let dir = tempfile::tempdir().unwrap();
    let r = Reaction::new(dir.path(), &reaction_config());
    let log = dir.path().join("reaction.log");
    append(&log, "");
    let config = file_config(&log, &r, "metrics:\n  export:\n    internals: true\n")
        .replace("  hold: 0\n", "  hold: 1\n");
    assert!(config.contains("  hold: 1\n"));
    let e = Exporter::start(dir.path(), &config);

    // reaction starts and replays its persisted state, all read at once
    append(
        &log,
        &[
            "INFO start command: run [\"iptables\", \"-w\", \"-N\", \"reaction\"]\n",
            "INFO ssh: start [\"journalctl\", \"-fn0\", \"-u\", \"sshd.service\"]\n",
            &ssh_action("ban", "1.1.1.1"),
            &ssh_action("ban", "2.2.2.2"),
            &ssh_action("unban", "3.3.3.3"),
        ]
        .concat(),
    );
    let held = |body: &str| value(body, "reaction_exporter_actions_held_total", &[]);
    let mut counts = Counts::default();
    counts.until(&e, "the held actions", |c| held(&c.last) == Some(3.0));
    assert_eq!(counts.total("reaction_action_count"), 0.0);

    // past the hold window, a new ban counts
    std::thread::sleep(Duration::from_millis(1500));
    append(
        &log,
        &[ssh_match("4.4.4.4", "dave"), ssh_action("ban", "4.4.4.4")].concat(),
    );
    counts.until(&e, "the new ban", |c| {
        c.total("reaction_action_count") >= 1.0
    });
    assert_eq!(
        counts.series("reaction_action_count"),
        vec![(owned(&action_labels("ban", "4.4.4.4", "dave")), 1.0)]
    );
    assert_eq!(held(&counts.last), Some(3.0), "{}", counts.last);
    assert_eq!(
        counts.exact(
            "reaction_commands_count",
            &[
                ("state", "start"),
                ("command", "iptables"),
                ("status", "True"),
                ("code", "0")
            ]
        ),
        1.0
    );
}
