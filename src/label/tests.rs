//! The labeller over real configurations (`ReactionConfig::from_yaml`, `Config::parse`),
//! real parsed lines (`parse_line`) and a real `Telemetry` for the self-monitoring counts.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_sdk::Resource;

use super::*;
use crate::config::ConfigFormat;
use crate::parse::parse_line;
use crate::telemetry::collect::{Collected, SeriesKey};
use crate::telemetry::Telemetry;

/// reaction's configuration as `reaction test-config` prints it (YAML).
const REACTION: &str = r#"
patterns:
  ip: {regex: '[0-9a-f.:]+', type: ip}
  user: {regex: '\S+'}
  ua: {regex: '[^"]*'}
  agent: {regex: '[^"]*'}
  email: {regex: '\S+@\S+'}
  1ip: {regex: '[0-9.]+'}
  stream: {regex: '\S+'}
start:
  - [iptables, -w, -N, reaction]
stop:
  - [iptables, -w, -X, reaction]
streams:
  ssh:
    cmd: [journalctl, -fn0, -u, sshd.service]
    filters:
      failedlogin:
        regex: ['Failed password for <user> from <ip>']
        retry: 3
        retryperiod: 6h
        actions:
          ban: {cmd: [iptables, -w, -A, reaction, -s, '<ip>', -j, DROP]}
          unban: {cmd: [iptables, -w, -D, reaction, -s, '<ip>', -j, DROP], after: 48h}
          notify: {cmd: [logger, someone failed to log in]}
          plugged: {type: ipset, options: {set: reaction4, action: add}}
  web.nginx:
    cmd: [tail, -fn0, /var/log/nginx/access.log]
    filters:
      aiBots:
        regex: ['^<ip> .* "<ua>"$']
        actions:
          ban: {cmd: [nft, add, element, inet, reaction, bots, '{ <ip> }']}
  http:
    cmd: [tail, -fn0, /var/log/http.log]
    filters:
      agents:
        regex: ['^<ip> "<agent>"$']
        actions:
          block: {cmd: [block, '<ip>'], after: 1h}
  mail:
    cmd: [journalctl, -fn0, -u, postfix.service]
    filters:
      spam:
        regex: ['spam from <email>']
        actions:
          notify: {cmd: [logger, 'spam from <email>']}
  odd:
    cmd: [cat]
    filters:
      names:
        regex: ['<1ip> on <stream>']
"#;

/// The same streams without top-level `start` commands.
fn reaction_without_start() -> String {
    REACTION.replace("start:\n  - [iptables, -w, -N, reaction]\n", "")
}

const T0: u64 = 1_800_000_000;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(T0 + secs)
}

struct Env {
    telemetry: Telemetry,
    internal: Arc<Internal>,
    labeller: Labeller,
}

impl Env {
    /// An exporter configuration (YAML) and reaction's configuration (YAML).
    fn new(config: &str, reaction: &str) -> Env {
        let config =
            Config::parse(config, ConfigFormat::Yaml, "test.yml").expect("exporter config");
        let internal = Arc::new(Internal::new());
        let telemetry = Telemetry::new(
            config.metrics.cardinality_limit,
            Resource::builder().build(),
            true,
            None,
            internal.clone(),
        );
        let mut labeller = Labeller::new(Arc::new(config));
        labeller.set_reaction_config(
            &ReactionConfig::from_yaml(reaction).expect("reaction config"),
            &internal,
        );
        Env {
            telemetry,
            internal,
            labeller,
        }
    }

    fn standard() -> Env {
        Env::new("", REACTION)
    }

    /// Label a line at `time` on a first try.
    fn label_at(&mut self, time: SystemTime, line: &str, last_try: bool) -> Labelled {
        let event = parse_line(line)
            .unwrap_or_else(|e| panic!("{line:?}: {e}"))
            .unwrap_or_else(|| panic!("{line:?} gives no event"));
        self.labeller
            .label(time, &event, &self.internal, last_try, false)
    }

    /// Label a line that fits reaction's configuration: (family, attributes) or None.
    fn record_at(
        &mut self,
        time: SystemTime,
        line: &str,
    ) -> Option<(Metric, Vec<(String, String)>)> {
        let out = self.label_at(time, line, false);
        assert!(!out.stale_config, "{line:?} does not fit the configuration");
        out.record.map(|(f, attrs)| (f, pairs(f, &attrs)))
    }

    fn record(&mut self, line: &str) -> Option<(Metric, Vec<(String, String)>)> {
        self.record_at(at(0), line)
    }

    /// The attributes of a line that must be recorded in `family`.
    fn attrs(&mut self, family: Metric, line: &str) -> Vec<(String, String)> {
        let (f, attrs) = self
            .record(line)
            .unwrap_or_else(|| panic!("{line:?} not recorded"));
        assert_eq!(f, family, "{line:?}");
        attrs
    }

    /// The exporter's own counters since the last call (a delta reader).
    fn own_counts(&self) -> HashMap<SeriesKey, u64> {
        let (collections, error) = self.telemetry.pull_reader.as_ref().unwrap().collect();
        assert!(error.is_none(), "{error:?}");
        Collected::from_collections(&collections)
            .sums
            .into_iter()
            .collect()
    }
}

/// The attributes of a series of `family`, in `/metrics` label order (its fixed labels,
/// then the pattern labels by name). Checks what the SDK is given: attributes sorted by
/// key, each key once (sorted, the SDK stores one copy of a series; a key twice would be a
/// duplicate label that makes Prometheus refuse the whole scrape).
fn pairs(family: Metric, attrs: &[KeyValue]) -> Vec<(String, String)> {
    let keys: Vec<&str> = attrs.iter().map(|kv| kv.key.as_str()).collect();
    assert!(
        keys.windows(2).all(|w| w[0] < w[1]),
        "attributes not sorted by key, or a key twice: {keys:?}"
    );
    let fixed = family.spec().attributes;
    let mut v: Vec<(String, String)> = attrs
        .iter()
        .map(|kv| (kv.key.as_str().to_string(), kv.value.as_str().into_owned()))
        .collect();
    v.sort_by_key(|(k, _)| fixed.iter().position(|f| f == k).unwrap_or(fixed.len()));
    v
}

fn expect(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn count(counts: &HashMap<SeriesKey, u64>, family: Metric, attrs: &[(&str, &str)]) -> u64 {
    let key = Attrs::from_pairs(attrs.iter().copied());
    counts.get(&(family, key)).copied().unwrap_or(0)
}

const BAN_1234: &str =
    r#"INFO ssh.failedlogin.ban: run ["iptables" "-w" "-A" "reaction" "-s" "1.2.3.4" "-j" "DROP"]"#;

fn unban(ip: &str) -> String {
    format!(
        r#"INFO ssh.failedlogin.unban: run ["iptables" "-w" "-D" "reaction" "-s" "{ip}" "-j" "DROP"]"#
    )
}

fn ssh_match(ip: &str, user: &str) -> String {
    format!(r#"INFO ssh.failedlogin: match ["{ip}", "{user}"]"#)
}

// ------------------------------------------------------------------------ pattern labels

#[test]
fn pattern_labels_are_sorted_by_name_and_zipped_with_values() {
    let mut env = Env::standard();
    // The regex names <user> first; reaction orders the values by pattern name: ip, user.
    assert_eq!(
        env.attrs(Metric::Matches, &ssh_match("1.2.3.4", "root")),
        expect(&[
            ("stream", "ssh"),
            ("filter", "failedlogin"),
            ("ip", "1.2.3.4"),
            ("user", "root"),
        ])
    );
    // agent < ip: the agent value comes first.
    assert_eq!(
        env.attrs(
            Metric::Matches,
            r#"INFO http.agents: match ["curl/8.0", "5.6.7.8"]"#
        ),
        expect(&[
            ("stream", "http"),
            ("filter", "agents"),
            ("agent", "curl/8.0"),
            ("ip", "5.6.7.8"),
        ])
    );
    assert_eq!(
        env.attrs(Metric::ActionRuns, BAN_1234),
        expect(&[
            ("stream", "ssh"),
            ("filter", "failedlogin"),
            ("action", "ban"),
            ("ip", "1.2.3.4"),
            ("user", "root"),
        ])
    );
}

#[test]
fn matches_without_extra_have_no_pattern_labels() {
    let mut env = Env::new(
        "metrics:\n  export:\n    matches: {extra: false}\n",
        REACTION,
    );
    assert_eq!(
        env.attrs(Metric::Matches, &ssh_match("1.2.3.4", "root")),
        expect(&[("stream", "ssh"), ("filter", "failedlogin")])
    );
    // actions keep theirs
    assert_eq!(
        env.attrs(Metric::ActionRuns, BAN_1234),
        expect(&[
            ("stream", "ssh"),
            ("filter", "failedlogin"),
            ("action", "ban"),
            ("ip", "1.2.3.4"),
            ("user", "root"),
        ])
    );
}

#[test]
fn matches_false_records_nothing_but_still_attributes_actions() {
    let mut env = Env::new("metrics:\n  export:\n    matches: false\n", REACTION);
    assert_eq!(env.record(&ssh_match("1.2.3.4", "root")), None);
    assert_eq!(
        env.attrs(Metric::ActionRuns, BAN_1234),
        expect(&[
            ("stream", "ssh"),
            ("filter", "failedlogin"),
            ("action", "ban"),
            ("ip", "1.2.3.4"),
            ("user", "root"),
        ])
    );
}

#[test]
fn actions_false_and_actions_without_extra() {
    let mut env = Env::new("metrics:\n  export:\n    actions: false\n", REACTION);
    env.record(&ssh_match("1.2.3.4", "root"));
    assert_eq!(env.record(BAN_1234), None);
    let mut env = Env::new(
        "metrics:\n  export:\n    actions: {extra: false}\n",
        REACTION,
    );
    env.record(&ssh_match("1.2.3.4", "root"));
    assert_eq!(
        env.attrs(Metric::ActionRuns, BAN_1234),
        expect(&[
            ("stream", "ssh"),
            ("filter", "failedlogin"),
            ("action", "ban")
        ])
    );
}

// ------------------------------------------------------------------------ transforms

#[test]
fn transforms_from_all_and_for_where_for_wins() {
    let config = r#"
metrics:
  all:
    ip: "{{ ip.split('.')[0] }}.x"
    user: false
  for:
    ssh:
      failedlogin:
        ip: null
        user: true
"#;
    let mut env = Env::new(config, REACTION);
    // `for` keeps both (null and true mean "as is")
    assert_eq!(
        env.attrs(Metric::Matches, &ssh_match("1.2.3.4", "root")),
        expect(&[
            ("stream", "ssh"),
            ("filter", "failedlogin"),
            ("ip", "1.2.3.4"),
            ("user", "root"),
        ])
    );
    // elsewhere `all` applies: the template, and no `user`-like label to drop here
    assert_eq!(
        env.attrs(
            Metric::Matches,
            r#"INFO web.nginx.aiBots: match ["203.0.113.9", "GPTBot/1.0"]"#
        ),
        expect(&[
            ("stream", "web.nginx"),
            ("filter", "aiBots"),
            ("ip", "203.x"),
            ("ua", "GPTBot/1.0"),
        ])
    );
}

/// A reload: the next event is labelled with the new transforms and export switches, the
/// memory of recent matches stays (an unban after the reload still gets its `user`).
#[test]
fn set_config_relabels_from_the_next_event_and_keeps_the_memory() {
    let mut env = Env::standard();
    assert_eq!(
        env.attrs(Metric::Matches, &ssh_match("1.2.3.4", "root")),
        expect(&[
            ("stream", "ssh"),
            ("filter", "failedlogin"),
            ("ip", "1.2.3.4"),
            ("user", "root"),
        ])
    );
    let reloaded = Config::parse(
        "metrics:\n  all:\n    ip: \"{{ ip.split('.')[0] }}.x\"\n  export:\n    actions:\n      extra: true\n    matches: false\n",
        ConfigFormat::Yaml,
        "test.yml",
    )
    .unwrap();
    env.labeller
        .set_config(Arc::new(reloaded), &env.internal.clone());
    assert_eq!(
        env.record(&ssh_match("5.6.7.8", "bob")),
        None,
        "matches: false"
    );
    let (family, attrs) = env.record(&unban("1.2.3.4")).expect("an action");
    assert_eq!(family, Metric::ActionRuns);
    assert!(
        attrs.contains(&("ip".to_string(), "1.x".to_string()))
            && attrs.contains(&("user".to_string(), "root".to_string())),
        "{attrs:?}"
    );
    // Back to the defaults: the raw value again.
    env.labeller
        .set_config(Arc::new(Config::default()), &env.internal.clone());
    assert!(env
        .attrs(Metric::Matches, &ssh_match("9.9.9.9", "eve"))
        .contains(&("ip".to_string(), "9.9.9.9".to_string())));
}

#[test]
fn false_drops_the_label_and_for_can_drop_what_all_keeps() {
    let config = r#"
metrics:
  all:
    user: false
    ua: null
  for:
    web.nginx:
      aiBots:
        ua: false
"#;
    let mut env = Env::new(config, REACTION);
    assert_eq!(
        env.attrs(Metric::Matches, &ssh_match("1.2.3.4", "root")),
        expect(&[
            ("stream", "ssh"),
            ("filter", "failedlogin"),
            ("ip", "1.2.3.4")
        ])
    );
    assert_eq!(
        env.attrs(Metric::ActionRuns, BAN_1234),
        expect(&[
            ("stream", "ssh"),
            ("filter", "failedlogin"),
            ("action", "ban"),
            ("ip", "1.2.3.4"),
        ])
    );
    assert_eq!(
        env.attrs(
            Metric::Matches,
            r#"INFO web.nginx.aiBots: match ["203.0.113.9", "GPTBot/1.0"]"#
        ),
        expect(&[
            ("stream", "web.nginx"),
            ("filter", "aiBots"),
            ("ip", "203.0.113.9")
        ])
    );
}

#[test]
fn readme_template_keeps_the_domain() {
    let config = "metrics:\n  all:\n    email: \"{{ email.split('@') | last }}\"\n";
    let mut env = Env::new(config, REACTION);
    assert_eq!(
        env.attrs(
            Metric::Matches,
            r#"INFO mail.spam: match ["spammer@example.org"]"#
        ),
        expect(&[
            ("stream", "mail"),
            ("filter", "spam"),
            ("email", "example.org")
        ])
    );
    assert_eq!(
        env.attrs(
            Metric::ActionRuns,
            r#"INFO mail.spam.notify: run ["logger" "spam from other@example.net"]"#
        ),
        expect(&[
            ("stream", "mail"),
            ("filter", "spam"),
            ("action", "notify"),
            ("email", "example.net")
        ])
    );
}

#[test]
fn runtime_template_error_keeps_the_raw_value_and_the_label_set() {
    let config = "metrics:\n  all:\n    user: \"{{ user.nosuchmethod() }}\"\n";
    let mut env = Env::new(config, REACTION);
    let a = env.attrs(Metric::Matches, &ssh_match("1.2.3.4", "root"));
    let b = env.attrs(Metric::Matches, &ssh_match("5.6.7.8", "admin"));
    assert_eq!(
        a,
        expect(&[
            ("stream", "ssh"),
            ("filter", "failedlogin"),
            ("ip", "1.2.3.4"),
            ("user", "root"),
        ])
    );
    let keys = |v: &[(String, String)]| v.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
    assert_eq!(keys(&a), keys(&b));
    let counts = env.own_counts();
    assert_eq!(
        count(&counts, Metric::TransformErrors, &[("pattern", "user")]),
        2
    );
}

// ------------------------------------------------------------------------ names

#[test]
fn pattern_names_are_sanitized() {
    assert_eq!(label_name("1ip"), "_1ip");
    assert_eq!(label_name("stream"), "pattern_stream");
    assert_eq!(label_name("filter"), "pattern_filter");
    assert_eq!(label_name("action"), "pattern_action");
    assert_eq!(label_name("ip"), "ip");
    let mut env = Env::standard();
    assert_eq!(
        env.attrs(
            Metric::Matches,
            r#"INFO odd.names: match ["10.0.0.1", "eth0"]"#
        ),
        expect(&[
            ("stream", "odd"),
            ("filter", "names"),
            ("_1ip", "10.0.0.1"),
            ("pattern_stream", "eth0"),
        ])
    );
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Guards issue 8: `a-b` and `a_b` gave a series with the label name `a_b` twice, which
/// Prometheus refuses (the whole scrape), while it counted as delivered.
#[test]
fn label_names_that_collide_once_sanitized_are_made_unique() {
    // The name that is already a label name keeps it, whatever the order.
    for patterns in [["a-b", "a_b"], ["a_b", "a-b"]] {
        let (names, renamed) = label_names(&strings(&patterns));
        let want: Vec<&str> = patterns
            .iter()
            .map(|p| if *p == "a_b" { "a_b" } else { "a_b_2" })
            .collect();
        assert_eq!(names, strings(&want));
        assert_eq!(renamed, vec![("a-b".to_string(), "a_b_2".to_string())]);
    }
    // Sanitized ones among themselves: in pattern name order; a numbered name already
    // taken by a pattern is skipped; reserved names too.
    let (names, _) = label_names(&strings(&[
        "a.b",
        "a-b",
        "a_b_2",
        "stream",
        "pattern_stream",
    ]));
    assert_eq!(
        names,
        strings(&[
            "a_b_3",
            "a_b",
            "a_b_2",
            "pattern_stream_2",
            "pattern_stream"
        ])
    );
    // Prometheus reserves names starting with `__`.
    assert_eq!(label_name("__name__"), "pattern___name__");

    // Through the labeller: placeholders are `\w+` (see `reaction::config`), so the
    // collision a configuration can have is `1ip` (labelled `_1ip`) beside `_1ip`.
    let reaction = "patterns:\n  1ip: {regex: '[a-z]+'}\n  _1ip: {regex: '[0-9]+'}\n\
                    streams:\n  s:\n    cmd: [x]\n    filters:\n      f:\n        \
                    regex: ['<1ip> <_1ip>']\n        actions:\n          ban: {cmd: [ban, '<_1ip>']}\n";
    let mut env = Env::new("", reaction);
    // Values in pattern name order: `1ip` sorts before `_1ip`.
    assert_eq!(
        env.attrs(Metric::Matches, r#"INFO s.f: match ["x", "1"]"#),
        expect(&[
            ("stream", "s"),
            ("filter", "f"),
            ("_1ip", "1"),
            ("_1ip_2", "x")
        ])
    );
    assert_eq!(
        env.attrs(Metric::ActionRuns, r#"INFO s.f.ban: run ["ban" "1"]"#),
        expect(&[
            ("stream", "s"),
            ("filter", "f"),
            ("action", "ban"),
            ("_1ip", "1"),
            ("_1ip_2", "x")
        ])
    );
}

#[test]
fn truncate_cuts_at_a_character_boundary_and_marks_it() {
    assert_eq!(truncate("short", 64), None);
    assert_eq!(truncate(&"x".repeat(64), 64), None);
    let cut = truncate(&"x".repeat(65), 64).unwrap();
    assert_eq!(cut, format!("{}\u{2026}", "x".repeat(61)));
    assert_eq!(cut.len(), 64);
    // "é" is 2 bytes: 61 bytes would split one; the cut is at 60.
    let cut = truncate(&"é".repeat(100), 64).unwrap();
    assert_eq!(cut, format!("{}\u{2026}", "é".repeat(30)));
    assert!(cut.len() <= 64);
}

/// Guards issue 8: 60 KB values became 60 KB labels in every copy of their series.
#[test]
fn long_label_values_are_cut_and_counted() {
    let mut env = Env::new("metrics:\n  max_label_value_length: 100\n", REACTION);
    let ua = "Mozilla/5.0 ".repeat(5000);
    let attrs = env.attrs(
        Metric::Matches,
        &format!(r#"INFO web.nginx.aiBots: match ["203.0.113.9", "{ua}"]"#),
    );
    let cut = format!("{}\u{2026}", &ua[..97]);
    assert_eq!(
        attrs,
        expect(&[
            ("stream", "web.nginx"),
            ("filter", "aiBots"),
            ("ip", "203.0.113.9"),
            ("ua", &cut),
        ])
    );
    // The action takes the whole value from the memory, and is cut the same way.
    let attrs = env.attrs(
        Metric::ActionRuns,
        r#"INFO web.nginx.aiBots.ban: run ["nft" "add" "element" "inet" "reaction" "bots" "{ 203.0.113.9 }"]"#,
    );
    assert_eq!(attrs[4], ("ua".to_string(), cut));
    // Values from the line itself (a command) are cut too.
    let long_cmd = "c".repeat(200);
    let attrs = env.attrs(
        Metric::CommandRuns,
        &format!(r#"INFO start command: run ["{long_cmd}", "-w"]"#),
    );
    assert_eq!(attrs[1].1.len(), 100);
    let counts = env.own_counts();
    assert_eq!(
        count(&counts, Metric::LabelValuesTruncated, &[("label", "ua")]),
        2
    );
    assert_eq!(
        count(
            &counts,
            Metric::LabelValuesTruncated,
            &[("label", "command")]
        ),
        1
    );
}

/// Guards issue 8: the attribution memory's byte budget drops old long values, and the
/// drops are counted by bound.
#[test]
fn attribution_memory_evictions_are_counted() {
    let mut env = Env::standard();
    let ua = "x".repeat(60 * 1024);
    for i in 0..200 {
        env.record(&format!(
            r#"INFO web.nginx.aiBots: match ["10.0.0.{i}", "{ua}{i}"]"#
        ));
    }
    let counts = env.own_counts();
    let bytes = count(
        &counts,
        Metric::CacheEvictions,
        &[("cache", "attribution"), ("reason", "bytes")],
    );
    assert!(bytes > 0, "{counts:?}");
    assert_eq!(
        count(
            &counts,
            Metric::CacheEvictions,
            &[("cache", "attribution"), ("reason", "entries")],
        ),
        0
    );
}

#[test]
fn dotted_names_are_resolved_against_the_configuration() {
    let mut env = Env::standard();
    assert_eq!(
        env.attrs(
            Metric::Matches,
            r#"INFO web.nginx.aiBots: match ["203.0.113.9", "GPTBot/1.0 (+https://openai.com/gptbot)"]"#
        ),
        expect(&[
            ("stream", "web.nginx"),
            ("filter", "aiBots"),
            ("ip", "203.0.113.9"),
            ("ua", "GPTBot/1.0 (+https://openai.com/gptbot)"),
        ])
    );
    // the ip is inside an argument (`{ <ip> }`); the ua comes from the match
    assert_eq!(
        env.attrs(
            Metric::ActionRuns,
            r#"INFO web.nginx.aiBots.ban: run ["nft" "add" "element" "inet" "reaction" "bots" "{ 203.0.113.9 }"]"#
        ),
        expect(&[
            ("stream", "web.nginx"),
            ("filter", "aiBots"),
            ("action", "ban"),
            ("ip", "203.0.113.9"),
            ("ua", "GPTBot/1.0 (+https://openai.com/gptbot)"),
        ])
    );
    assert_eq!(
        env.attrs(
            Metric::StreamEvents,
            r#"INFO web.nginx: start ["tail", "-fn0", "x"]"#
        ),
        expect(&[("stream", "web.nginx"), ("type", "start")])
    );
}

#[test]
fn unknown_filter_asks_for_the_config_then_is_recorded_split() {
    let mut env = Env::standard();
    let line = r#"INFO ghost.some.filter: match ["1.2.3.4"]"#;
    let first = env.label_at(at(0), line, false);
    assert!(first.stale_config);
    assert!(first.record.is_none());
    let last = env.label_at(at(0), line, true);
    assert!(!last.stale_config);
    let (f, attrs) = last.record.expect("recorded on the last try");
    assert_eq!(f, Metric::Matches);
    assert_eq!(
        pairs(f, &attrs),
        expect(&[("stream", "ghost"), ("filter", "some.filter")])
    );

    let action = r#"INFO ghost.f.ban: run ["true"]"#;
    assert!(env.label_at(at(0), action, false).stale_config);
    let (f, attrs) = env.label_at(at(0), action, true).record.unwrap();
    assert_eq!(f, Metric::ActionRuns);
    assert_eq!(
        pairs(f, &attrs),
        expect(&[("stream", "ghost"), ("filter", "f"), ("action", "ban")])
    );
    let counts = env.own_counts();
    assert_eq!(
        count(
            &counts,
            Metric::LinesRejected,
            &[("reason", "unknown_name")]
        ),
        2
    );
}

/// Guards issue 8: a line that was not valid UTF-8 (its source counted it as
/// `invalid_utf8`) was counted a second time under another reason. It still counts as
/// the event it is, under one reason only.
#[test]
fn a_lossy_line_is_not_rejected_a_second_time() {
    use crate::internal::counts::Reject;
    use crate::internal::counts::Series;
    let mut env = Env::standard();
    for line in [
        "INFO nope.\u{fffd}: match [\"1.2.3.4\"]",
        "INFO ssh.failedlogin: match [\"1.2.3.4\", \"22\", \"\u{fffd}\"]",
        "INFO nope.\u{fffd}.ban: run [\"true\"]",
    ] {
        let event = parse_line(line).unwrap().unwrap();
        let out = env.labeller.label(at(0), &event, &env.internal, true, true);
        assert!(out.record.is_some(), "{line}: still counted");
    }
    for reason in [Reject::UnknownName, Reject::PatternMismatch] {
        assert_eq!(
            env.internal.count(&Series::LinesRejected(reason)),
            0,
            "{reason:?}"
        );
    }
}

#[test]
fn value_count_mismatch_asks_for_the_config_then_is_recorded_without_patterns() {
    let mut env = Env::standard();
    let line = r#"INFO ssh.failedlogin: match ["1.2.3.4", "22", "root"]"#;
    let first = env.label_at(at(0), line, false);
    assert!(first.stale_config);
    assert!(first.record.is_none());
    let (f, attrs) = env.label_at(at(0), line, true).record.unwrap();
    assert_eq!(f, Metric::Matches);
    assert_eq!(
        pairs(f, &attrs),
        expect(&[("stream", "ssh"), ("filter", "failedlogin")])
    );
    let counts = env.own_counts();
    assert_eq!(
        count(
            &counts,
            Metric::LinesRejected,
            &[("reason", "pattern_mismatch")]
        ),
        1
    );

    // The refreshed configuration has the third pattern: the same line fits.
    let refreshed = REACTION.replace(
        "'Failed password for <user> from <ip>'",
        "'Failed password for <user> from <ip> port <port>'",
    );
    let refreshed = refreshed.replace(
        "  user: {regex: '\\S+'}",
        "  user: {regex: '\\S+'}\n  port: {regex: '[0-9]+'}",
    );
    env.labeller.set_reaction_config(
        &ReactionConfig::from_yaml(&refreshed).unwrap(),
        &env.internal,
    );
    assert_eq!(
        env.attrs(Metric::Matches, line),
        expect(&[
            ("stream", "ssh"),
            ("filter", "failedlogin"),
            ("ip", "1.2.3.4"),
            ("port", "22"),
            ("user", "root"),
        ])
    );
}

// ------------------------------------------------------------------------ commands, streams

#[test]
fn commands_and_stream_events() {
    let mut env = Env::standard();
    assert_eq!(
        env.attrs(
            Metric::CommandRuns,
            r#"INFO start command: run ["iptables", "-w", "-N", "reaction"]"#
        ),
        expect(&[
            ("state", "start"),
            ("command", "iptables"),
            ("status", "True"),
            ("code", "0"),
        ])
    );
    assert_eq!(
        env.attrs(
            Metric::CommandRuns,
            r#"ERROR stop command: run ["iptables", "-w", "-X", "reaction"]: exit code: 1"#
        ),
        expect(&[
            ("state", "stop"),
            ("command", "iptables"),
            ("status", "False"),
            ("code", "1"),
        ])
    );
    assert_eq!(
        env.attrs(
            Metric::StreamEvents,
            "ERROR stream ssh exited: exit status: 1"
        ),
        expect(&[("stream", "ssh"), ("type", "exit")])
    );
    let mut env = Env::new(
        "metrics:\n  export:\n    commands: false\n    streams: false\n",
        REACTION,
    );
    assert_eq!(
        env.record(r#"INFO start command: run ["iptables", "-w", "-N", "reaction"]"#),
        None
    );
    assert_eq!(env.record(r#"INFO ssh: start ["journalctl"]"#), None);
}

// ------------------------------------------------------------------------ hold

const START_CMD: &str = r#"INFO start command: run ["iptables", "-w", "-N", "reaction"]"#;
const SSH_START: &str = r#"INFO ssh: start ["journalctl", "-fn0", "-u", "sshd.service"]"#;
const WEB_START: &str = r#"INFO web.nginx: start ["tail", "-fn0", "/var/log/nginx/access.log"]"#;
const SIGTERM: &str = "INFO received SIGTERM, closing streams...";

fn held(env: &Env) -> u64 {
    count(&env.own_counts(), Metric::ActionsHeld, &[])
}

#[test]
fn actions_within_hold_of_a_start_command_are_ignored_and_counted() {
    let mut env = Env::new("reaction:\n  hold: 60\n", REACTION);
    // before any start: counted
    assert!(env.record_at(at(0), BAN_1234).is_some());
    let start = env.label_at(at(100), START_CMD, false);
    assert!(start.restarted);
    assert!(start.record.is_some());
    // matches are never held
    assert!(env
        .record_at(at(101), &ssh_match("1.2.3.4", "root"))
        .is_some());
    assert_eq!(env.record_at(at(101), BAN_1234), None);
    assert_eq!(env.record_at(at(159), &unban("1.2.3.4")), None);
    assert_eq!(held(&env), 2);
    // at and after 100 + 60 s of log time they count
    assert!(env.record_at(at(160), BAN_1234).is_some());
    assert!(env.record_at(at(200), &unban("1.2.3.4")).is_some());
    assert_eq!(held(&env), 0);
    // a second start command while running does not say "restarted" again
    assert!(!env.label_at(at(201), START_CMD, false).restarted);
    // ... but it arms the hold again
    assert_eq!(env.record_at(at(202), BAN_1234), None);
}

#[test]
fn hold_zero_holds_nothing() {
    let mut env = Env::new("reaction:\n  hold: 0\n", REACTION);
    env.label_at(at(0), START_CMD, false);
    assert!(env.record_at(at(0), BAN_1234).is_some());
    assert_eq!(held(&env), 0);
}

#[test]
fn without_start_commands_the_first_stream_start_arms_the_hold() {
    let mut env = Env::new("reaction:\n  hold: 60\n", &reaction_without_start());
    // the first stream start after the exporter starts
    let first = env.label_at(at(0), SSH_START, false);
    assert!(first.restarted);
    assert_eq!(env.record_at(at(1), BAN_1234), None);
    assert_eq!(held(&env), 1);
    // a second stream start while running: no restart, no new hold
    let second = env.label_at(at(100), WEB_START, false);
    assert!(!second.restarted);
    assert!(second.record.is_some());
    assert!(env.record_at(at(101), BAN_1234).is_some());
    // reaction stops, then starts again: the first stream start arms the hold
    assert!(!env.label_at(at(200), SIGTERM, false).restarted);
    let again = env.label_at(at(300), SSH_START, false);
    assert!(again.restarted);
    assert_eq!(env.record_at(at(301), BAN_1234), None);
    assert!(!env.label_at(at(302), WEB_START, false).restarted);
    assert_eq!(env.record_at(at(359), BAN_1234), None);
    assert_eq!(held(&env), 2);
    assert!(env.record_at(at(360), BAN_1234).is_some());
}

#[test]
fn stop_command_then_stream_start_is_a_restart() {
    let mut env = Env::new("reaction:\n  hold: 10\n", REACTION);
    assert!(env.label_at(at(0), START_CMD, false).restarted);
    assert!(!env.label_at(at(1), SSH_START, false).restarted);
    env.label_at(
        at(50),
        r#"INFO stop command: run ["iptables", "-w", "-X", "reaction"]"#,
        false,
    );
    assert!(env.label_at(at(60), SSH_START, false).restarted);
    assert_eq!(env.record_at(at(65), BAN_1234), None);
    assert!(env.record_at(at(70), BAN_1234).is_some());
}

// ------------------------------------------------------------------------ attribution

#[test]
fn unban_is_labelled_with_its_own_ip() {
    let mut env = Env::standard();
    for (ip, user) in [
        ("1.1.1.1", "alice"),
        ("2.2.2.2", "bob"),
        ("3.3.3.3", "carol"),
    ] {
        env.record(&ssh_match(ip, user));
    }
    assert_eq!(
        env.attrs(Metric::ActionRuns, &unban("1.1.1.1")),
        expect(&[
            ("stream", "ssh"),
            ("filter", "failedlogin"),
            ("action", "unban"),
            ("ip", "1.1.1.1"),
            ("user", "alice"),
        ])
    );
    assert_eq!(
        env.attrs(Metric::ActionRuns, &unban("2.2.2.2")),
        expect(&[
            ("stream", "ssh"),
            ("filter", "failedlogin"),
            ("action", "unban"),
            ("ip", "2.2.2.2"),
            ("user", "bob"),
        ])
    );
}

#[test]
fn command_with_an_ip_never_matched_has_an_empty_user() {
    let mut env = Env::standard();
    env.record(&ssh_match("1.1.1.1", "alice"));
    assert_eq!(
        env.attrs(Metric::ActionRuns, &unban("9.9.9.9")),
        expect(&[
            ("stream", "ssh"),
            ("filter", "failedlogin"),
            ("action", "unban"),
            ("ip", "9.9.9.9"),
            ("user", ""),
        ])
    );
}

#[test]
fn command_without_placeholders_takes_the_last_match() {
    let mut env = Env::standard();
    // nothing matched yet: empty values, labels present
    assert_eq!(
        env.attrs(
            Metric::ActionRuns,
            r#"INFO ssh.failedlogin.notify: run ["logger" "someone failed to log in"]"#
        ),
        expect(&[
            ("stream", "ssh"),
            ("filter", "failedlogin"),
            ("action", "notify"),
            ("ip", ""),
            ("user", ""),
        ])
    );
    for (ip, user) in [
        ("1.1.1.1", "alice"),
        ("2.2.2.2", "bob"),
        ("3.3.3.3", "carol"),
    ] {
        env.record(&ssh_match(ip, user));
    }
    let last = [("ip", "3.3.3.3"), ("user", "carol")];
    // template without `<..>`
    let a = env.attrs(
        Metric::ActionRuns,
        r#"INFO ssh.failedlogin.notify: run ["logger" "someone failed to log in"]"#,
    );
    assert_eq!(a[3..], expect(&last)[..]);
    // plugin action (no template at all)
    let a = env.attrs(
        Metric::ActionRuns,
        r#"INFO ssh.failedlogin.plugged: run ["ipset" "add" "reaction4" "3.3.3.3"]"#,
    );
    assert_eq!(
        a[2..],
        expect(&[("action", "plugged"), last[0], last[1]])[..]
    );
}

// ------------------------------------------------------------------------ pending

fn pending(stream: &str, filter: &str, key: &str, action: &str, count: u64) -> PendingEntry {
    PendingEntry {
        stream: stream.into(),
        filter: filter.into(),
        key: key.into(),
        action: action.into(),
        count,
    }
}

fn sorted(mut v: Vec<(Vec<KeyValue>, u64)>) -> Vec<(Vec<(String, String)>, u64)> {
    let mut out: Vec<_> = v
        .drain(..)
        .map(|(a, n)| (pairs(Metric::PendingActions, &a), n))
        .collect();
    out.sort();
    out
}

#[test]
fn pending_keys_with_spaces_are_split_with_remembered_matches() {
    let mut env = Env::standard();
    // agent < ip: the value with spaces comes first, the naive split would be wrong
    env.record(r#"INFO http.agents: match ["Mozilla/5.0 (X11; Linux)", "1.2.3.4"]"#);
    let entries = [
        pending(
            "http",
            "agents",
            "Mozilla/5.0 (X11; Linux) 1.2.3.4",
            "block",
            2,
        ),
        pending("ssh", "failedlogin", "5.6.7.8 root", "unban", 1),
    ];
    let out = sorted(env.labeller.label_pending(&entries, &env.internal));
    assert_eq!(
        out,
        vec![
            (
                expect(&[
                    ("stream", "http"),
                    ("filter", "agents"),
                    ("action", "block"),
                    ("agent", "Mozilla/5.0 (X11; Linux)"),
                    ("ip", "1.2.3.4"),
                ]),
                2
            ),
            (
                expect(&[
                    ("stream", "ssh"),
                    ("filter", "failedlogin"),
                    ("action", "unban"),
                    ("ip", "5.6.7.8"),
                    ("user", "root"),
                ]),
                1
            ),
        ]
    );
}

#[test]
fn pending_executions_with_the_same_labels_are_added_up() {
    let config = "metrics:\n  for:\n    ssh:\n      failedlogin:\n        user: false\n";
    let mut env = Env::new(config, REACTION);
    let entries = [
        pending("ssh", "failedlogin", "1.1.1.1 alice", "unban", 2),
        pending("ssh", "failedlogin", "1.1.1.1 bob", "unban", 3),
        pending("ssh", "failedlogin", "2.2.2.2 bob", "unban", 1),
        pending("ghost", "filter", "x", "a", 4),
        pending("ghost", "filter", "y", "a", 1),
    ];
    let out = sorted(env.labeller.label_pending(&entries, &env.internal));
    assert_eq!(
        out,
        vec![
            (
                expect(&[("stream", "ghost"), ("filter", "filter"), ("action", "a")]),
                5
            ),
            (
                expect(&[
                    ("stream", "ssh"),
                    ("filter", "failedlogin"),
                    ("action", "unban"),
                    ("ip", "1.1.1.1"),
                ]),
                5
            ),
            (
                expect(&[
                    ("stream", "ssh"),
                    ("filter", "failedlogin"),
                    ("action", "unban"),
                    ("ip", "2.2.2.2"),
                ]),
                1
            ),
        ]
    );
}

#[test]
fn pending_without_extra_and_pending_false() {
    let entries = [
        pending("ssh", "failedlogin", "1.1.1.1 alice", "unban", 2),
        pending("ssh", "failedlogin", "2.2.2.2 bob", "unban", 1),
    ];
    let mut env = Env::new(
        "metrics:\n  export:\n    pending: {extra: false}\n",
        REACTION,
    );
    assert_eq!(
        sorted(env.labeller.label_pending(&entries, &env.internal)),
        vec![(
            expect(&[
                ("stream", "ssh"),
                ("filter", "failedlogin"),
                ("action", "unban")
            ]),
            3
        )]
    );
    let mut env = Env::new("metrics:\n  export:\n    pending: false\n", REACTION);
    assert!(env
        .labeller
        .label_pending(&entries, &env.internal)
        .is_empty());
}

#[test]
fn an_ambiguous_dotted_name_resolves_to_the_first_pair_in_sorted_order() {
    // `a.b.c` is stream `a.b` filter `c`, or stream `a` filter `b.c`: the first in sorted
    // order, stream `a` (and its filter `b.c`).
    let reaction = "streams:\n  a.b: {cmd: [x], filters: {c: {regex: ['<ip>']}}}\n  \
                    a: {cmd: [x], filters: {b.c: {regex: ['<ip>']}}}\n\
                    patterns: {ip: {regex: '.*'}}\n";
    let mut env = Env::new("", reaction);
    assert_eq!(
        env.attrs(Metric::Matches, r#"INFO a.b.c: match ["1.2.3.4"]"#),
        expect(&[("stream", "a"), ("filter", "b.c"), ("ip", "1.2.3.4")])
    );
}
