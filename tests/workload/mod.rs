//! The deterministic workload of the dashboard end-to-end tests (reaction's configuration,
//! the events and the log lines reaction writes for them, the pending actions) and how
//! their results are compared with what the databases answer. Shared by
//! `dashboards_e2e.rs` (Prometheus and VictoriaMetrics on `/metrics`) and
//! `dashboards_otel_e2e.rs` (Prometheus behind an OTLP Collector stand-in); each test keeps
//! its own phases and expectations.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::grafana::{grafana_multi, grafana_text, queries, values_regex, Query, Substitution};

pub const SCRAPE: i64 = 1;

pub const STEPS: [i64; 3] = [1, 5, 15];

/// Every timestamp the test uses (from, to) is a multiple of this (of every step).
pub const ALIGN: i64 = 15;

pub const LAST_LINE: &str = "this line is not from reaction\n";

pub const LAST_LINE_WARNING: &str = "\"this line is not from reaction\"";

pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

pub fn reaction_config() -> Value {
    json!({
        "patterns": {
            "ip": {"regex": "[0-9a-f.:]+"},
            "user": {"regex": "[^ ]+"},
            "ua": {"regex": "[^\"]*"}
        },
        "start": [["iptables", "-w", "-N", "reaction"]],
        "stop": [["iptables", "-w", "-X", "reaction"]],
        "streams": {
            "ssh": {
                "cmd": ["journalctl", "-fn0", "-u", "sshd.service"],
                "filters": {
                    "failedlogin": {
                        "regex": ["Failed password for <user> from <ip>"],
                        "retry": 3,
                        "retryperiod": "6h",
                        "actions": {
                            "ban": {"cmd": BAN},
                            "unban": {"cmd": UNBAN, "after": "48h"}
                        }
                    },
                    "invaliduser": {
                        "regex": ["Invalid user from <ip>"],
                        "actions": {"ban": {"cmd": BAN}}
                    }
                }
            },
            "web.nginx": {
                "cmd": ["tail", "-fn0", "/var/log/nginx/access.log"],
                "filters": {
                    "aiBots": {
                        "regex": ["^<ip> .* \"<ua>\"$"],
                        "actions": {"ban": {"cmd": NFT}}
                    }
                }
            }
        }
    })
}

pub const BAN: [&str; 8] = [
    "iptables", "-w", "-A", "reaction", "-s", "<ip>", "-j", "DROP",
];

pub const UNBAN: [&str; 8] = [
    "iptables", "-w", "-D", "reaction", "-s", "<ip>", "-j", "DROP",
];

pub const NFT: [&str; 7] = [
    "nft", "add", "element", "inet", "reaction", "bots", "{ <ip> }",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fam {
    Match,
    Action,
    Pending,
    Stream,
    Command,
}

#[derive(Debug, Clone, Copy)]
pub enum Ev {
    /// stream, filter, ip, the other pattern's value (user or ua; "" for none), count
    Match(
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        usize,
    ),
    /// stream, filter, action, ip
    Action(&'static str, &'static str, &'static str, &'static str),
    /// stream, type
    Stream(&'static str, &'static str),
    /// state, program, exit code
    Command(&'static str, &'static str, i32),
}

/// The log lines of an event, as reaction 2 writes them.
pub fn lines(ev: &Ev) -> String {
    match *ev {
        Ev::Match(stream, filter, ip, other, n) => {
            let values = if other.is_empty() {
                format!("[\"{ip}\"]")
            } else {
                format!("[\"{ip}\", \"{other}\"]")
            };
            format!("INFO {stream}.{filter}: match {values}\n").repeat(n)
        }
        Ev::Action(stream, filter, action, ip) => {
            let cmd: &[&str] = match (filter, action) {
                ("aiBots", _) => &NFT,
                (_, "unban") => &UNBAN,
                _ => &BAN,
            };
            let args: Vec<String> = cmd
                .iter()
                .map(|a| format!("\"{}\"", a.replace("<ip>", ip)))
                .collect();
            format!("INFO {stream}.{filter}.{action}: run [{}]\n", args.join(" "))
        }
        Ev::Stream(stream, ty) => match ty {
            "start" => {
                let cmd = if stream == "ssh" {
                    r#"["journalctl", "-fn0", "-u", "sshd.service"]"#
                } else {
                    r#"["tail", "-fn0", "/var/log/nginx/access.log"]"#
                };
                format!("INFO {stream}: start {cmd}\n")
            }
            "exit" => format!("ERROR stream {stream} exited: exit status: 1\n"),
            "exec" => format!(
                "ERROR could not execute stream {stream} cmd: No such file or directory (os error 2)\n"
            ),
            "read" => format!(
                "ERROR impossible to read output from stream {stream}: stream did not contain valid UTF-8\n"
            ),
            "timeout" => format!("ERROR child process of stream {stream} did not terminate\n"),
            other => panic!("unknown stream event {other}"),
        },
        Ev::Command(state, program, code) => {
            let argv = format!("[\"{program}\", \"-w\", \"-N\", \"reaction\"]");
            if code == 0 {
                format!("INFO {state} command: run {argv}\n")
            } else {
                format!("ERROR {state} command: run {argv}: exit code: {code}\n")
            }
        }
    }
}

/// host1's pending actions (`reaction show`), all unbans of failedlogin: (ip, user, count).
pub const PENDING: [(&str, &str, usize); 3] = [
    ("192.0.2.1", "root", 1),
    ("192.0.2.50", "root", 2),
    ("192.0.2.60", "root", 1),
];

pub fn show_state() -> Value {
    let mut entries = serde_json::Map::new();
    for (ip, user, n) in PENDING {
        entries.insert(format!("{ip} {user}"), json!({"actions": {"unban": n}}));
    }
    json!({"version": "2.2.0", "show": {"ssh": {"failedlogin": entries}}})
}

/// One counted thing: its family, its labels (as the exporter names them, with
/// `instance`), how many, and when it was written.
#[derive(Debug, Clone)]
pub struct Rec {
    pub fam: Fam,
    pub labels: BTreeMap<String, String>,
    pub n: f64,
    pub t: f64,
}

impl Rec {
    pub fn get(&self, k: &str) -> &str {
        self.labels.get(k).map(String::as_str).unwrap_or("")
    }
}

pub fn rec(host: &str, ev: &Ev, t: f64) -> Rec {
    let mut l = BTreeMap::new();
    l.insert("instance".to_string(), host.to_string());
    let mut put = |k: &str, v: &str| {
        l.insert(k.to_string(), v.to_string());
    };
    let (fam, n) = match *ev {
        Ev::Match(stream, filter, ip, _, n) => {
            put("stream", stream);
            put("filter", filter);
            put("ip", ip);
            (Fam::Match, n)
        }
        Ev::Action(stream, filter, action, ip) => {
            put("stream", stream);
            put("filter", filter);
            put("action", action);
            put("ip", ip);
            (Fam::Action, 1)
        }
        Ev::Stream(stream, ty) => {
            put("stream", stream);
            put("type", ty);
            (Fam::Stream, 1)
        }
        Ev::Command(state, program, code) => {
            put("state", state);
            put("command", program);
            put("status", if code == 0 { "True" } else { "False" });
            put("code", &code.to_string());
            (Fam::Command, 1)
        }
    };
    Rec {
        fam,
        labels: l,
        n: n as f64,
        t,
    }
}

pub type Key = Vec<(String, String)>;

pub type Map = BTreeMap<Key, f64>;

/// A selection of the template variables: `None` is "All" (`.*`), else the values chosen;
/// the ip variable is a text box holding a regex.
#[derive(Debug, Clone)]
pub struct Combo {
    pub name: &'static str,
    pub instance: Option<Vec<&'static str>>,
    pub stream: Option<Vec<&'static str>>,
    pub filter: Option<Vec<&'static str>>,
    pub ip: &'static str,
}

impl Combo {
    /// The variables as Grafana writes them into the queries.
    pub fn vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("instance", multi_text(&self.instance)),
            ("stream", multi_text(&self.stream)),
            ("filter", multi_text(&self.filter)),
            ("ip", grafana_text(self.ip)),
        ]
    }

    /// The selection a variable's own query (`label_values`) sees: the variables it
    /// depends on keep their values (`filter` depends on `stream`, every other on none of
    /// the pattern ones), the others are "All".
    pub fn for_variable(&self, label: &str) -> Combo {
        Combo {
            stream: if label == "stream" {
                None
            } else {
                self.stream.clone()
            },
            filter: None,
            ip: ".*",
            ..self.clone()
        }
    }

    /// Whether a label value is selected (the regex the database applies).
    pub fn keeps(&self, var: &str, value: &str) -> bool {
        let re = match var {
            "instance" => multi_regex(&self.instance),
            "stream" => multi_regex(&self.stream),
            "filter" => multi_regex(&self.filter),
            "ip" => self.ip.to_string(),
            other => panic!("no variable {other}"),
        };
        full_match(&re, value)
    }
}

/// Whether `v` matches the whole regex `re` (as PromQL `=~` does).
pub fn full_match(re: &str, v: &str) -> bool {
    regex::Regex::new(&format!("^(?:{re})$"))
        .unwrap()
        .is_match(v)
}

pub fn multi_text(v: &Option<Vec<&str>>) -> String {
    v.as_ref().map_or(".*".to_string(), |v| grafana_multi(v))
}

pub fn multi_regex(v: &Option<Vec<&str>>) -> String {
    v.as_ref().map_or(".*".to_string(), |v| values_regex(v))
}

pub fn combos() -> Vec<Combo> {
    vec![
        Combo {
            name: "all",
            instance: None,
            stream: None,
            filter: None,
            ip: ".*",
        },
        Combo {
            name: "one of each",
            instance: Some(vec!["host1"]),
            stream: Some(vec!["ssh"]),
            filter: Some(vec!["failedlogin"]),
            ip: "192.0.2.1",
        },
        Combo {
            name: "several",
            instance: Some(vec!["host1", "host2"]),
            stream: Some(vec!["ssh", "web.nginx"]),
            filter: Some(vec!["failedlogin", "aiBots"]),
            // Typed in the text box: a regex with escaped dots.
            ip: r"192\.0\.2\..*|203\.0\.113\.9",
        },
    ]
}

pub enum Expect {
    /// An instant vector, exactly.
    Instant(Map),
    /// A range: the last point of each series, exactly.
    Last(Map),
    /// A range: the sum of the points of each series (per-interval bars), exactly.
    Sum(Map),
    /// An instant vector whose values lie within bounds.
    Within(BTreeMap<Key, (f64, f64)>),
    /// A range whose last points lie within bounds.
    LastWithin(BTreeMap<Key, (f64, f64)>),
}

/// A result's labels without `__name__` and `job`.
pub fn key_of(metric: &Value) -> Key {
    metric
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "__name__" && *k != "job")
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect()
}

pub fn num(v: &Value) -> f64 {
    v.as_str().unwrap().parse().unwrap()
}

pub fn instant_map(result: &[Value]) -> Map {
    result
        .iter()
        .map(|s| (key_of(&s["metric"]), num(&s["value"][1])))
        .collect()
}

pub fn range_map(result: &[Value], last: bool) -> Map {
    result
        .iter()
        .map(|s| {
            let values = s["values"].as_array().unwrap();
            let v = if last {
                num(&values.last().unwrap()[1])
            } else {
                values.iter().map(|p| num(&p[1])).sum()
            };
            (key_of(&s["metric"]), v)
        })
        .collect()
}

pub fn same(got: &Map, want: &Map) -> bool {
    got.len() == want.len()
        && got
            .iter()
            .zip(want)
            .all(|((gk, gv), (wk, wv))| gk == wk && (gv - wv).abs() < 1e-9)
}

pub fn within(got: &Map, want: &BTreeMap<Key, (f64, f64)>) -> bool {
    got.len() == want.len()
        && got
            .iter()
            .zip(want)
            .all(|((gk, gv), (wk, (lo, hi)))| gk == wk && lo <= gv && gv <= hi)
}

/// Checks one result against an expectation; a description of the difference otherwise.
pub fn check(result: &Value, expect: &Expect) -> Result<(), String> {
    let data = result["data"]["result"].as_array().unwrap();
    let (ok, got, want) = match expect {
        Expect::Instant(m) => {
            let g = instant_map(data);
            (same(&g, m), g, format!("{m:?}"))
        }
        Expect::Last(m) => {
            let g = range_map(data, true);
            (same(&g, m), g, format!("last points {m:?}"))
        }
        Expect::Sum(m) => {
            let g = range_map(data, false);
            (same(&g, m), g, format!("sums of points {m:?}"))
        }
        Expect::Within(m) => {
            let g = instant_map(data);
            (within(&g, m), g, format!("within {m:?}"))
        }
        Expect::LastWithin(m) => {
            let g = range_map(data, true);
            (within(&g, m), g, format!("last points within {m:?}"))
        }
    };
    if ok {
        Ok(())
    } else {
        Err(format!("got {got:?}\n      want {want}"))
    }
}

/// Evaluates every panel query of `dashboard` under `combo`'s variables at each of `STEPS`
/// over `from..=to` (`query` runs one: at `to` for an instant query, else over the range
/// with the step it is given), skipping an expression already in `done`, and checks each
/// result against `expect(query, step)`: (queries evaluated, failures, each prefixed with
/// `what(query, step, expr)`). Under "all", a query that returns nothing fails too.
pub fn check_panel_queries(
    dashboard: &Value,
    combo: &Combo,
    (from, to): (i64, i64),
    done: &mut HashSet<(String, bool, i64)>,
    query: impl Fn(&str, Option<i64>) -> Value,
    expect: impl Fn(&Query, i64) -> Expect,
    what: impl Fn(&Query, i64, &str) -> String,
) -> (usize, Vec<String>) {
    let vars = combo.vars();
    let mut evaluated = 0;
    let mut failures = Vec::new();
    for step in STEPS {
        let sub = Substitution {
            from,
            to,
            interval: step,
            scrape_interval: SCRAPE,
            vars: &vars,
        };
        for q in queries(dashboard) {
            let expr = sub.apply(&q.expr);
            let step_key = if q.instant { 0 } else { step };
            if !done.insert((expr.clone(), q.instant, step_key)) {
                continue;
            }
            let result = query(&expr, (!q.instant).then_some(step));
            evaluated += 1;
            let what = what(&q, step, &expr);
            if result["status"] != "success" {
                failures.push(format!("{what}\n    error: {}", result["error"]));
                continue;
            }
            let empty = result["data"]["result"]
                .as_array()
                .is_none_or(|a| a.is_empty());
            if combo.name == "all" && empty {
                failures.push(format!("{what}\n    returned no data"));
                continue;
            }
            if let Err(diff) = check(&result, &expect(&q, step)) {
                failures.push(format!("{what}\n    {diff}"));
            }
        }
    }
    (evaluated, failures)
}
