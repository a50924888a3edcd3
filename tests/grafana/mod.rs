//! Shared by the dashboard and alert tests: the dashboards' queries and variables, Grafana's
//! variable substitution, a PromQL tokenizer for the name checks, the external programs
//! (promtool, prometheus, victoria-metrics) and a small HTTP client for their APIs.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// The three dashboards: (kind, file).
pub const DASHBOARDS: [(&str, &str); 3] = [
    ("prometheus", "dashboards/reaction-prometheus.json"),
    (
        "victoriametrics",
        "dashboards/reaction-victoriametrics.json",
    ),
    ("otel", "dashboards/reaction-otel.json"),
];

pub fn load_json(rel: &str) -> Value {
    let p = root().join(rel);
    let text =
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{rel} is not JSON: {e}"))
}

/// One query of a panel.
#[derive(Debug, Clone)]
pub struct Query {
    pub panel: String,
    pub panel_type: String,
    pub ref_id: String,
    pub expr: String,
    pub instant: bool,
}

/// Every panel, rows' nested panels included, in order.
pub fn all_panels(dashboard: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().expect("panels") {
        out.push(p.clone());
        if let Some(nested) = p["panels"].as_array() {
            out.extend(nested.iter().cloned());
        }
    }
    out
}

/// Every query of every panel.
pub fn queries(dashboard: &Value) -> Vec<Query> {
    let mut out = Vec::new();
    for p in all_panels(dashboard) {
        if p["type"] == "row" {
            continue;
        }
        for t in p["targets"].as_array().cloned().unwrap_or_default() {
            out.push(Query {
                panel: p["title"].as_str().unwrap_or("").to_string(),
                panel_type: p["type"].as_str().unwrap_or("").to_string(),
                ref_id: t["refId"].as_str().unwrap_or("").to_string(),
                expr: t["expr"].as_str().unwrap_or("").to_string(),
                instant: t["instant"].as_bool().unwrap_or(false),
            });
        }
    }
    out
}

/// The template variables by name.
pub fn variables(dashboard: &Value) -> Vec<Value> {
    dashboard["templating"]["list"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// A variable's query (`label_values(selector, label)`), split.
pub fn label_values_query(var: &Value) -> Option<(String, String)> {
    let q = var["query"]["query"]
        .as_str()
        .or_else(|| var["query"].as_str())?;
    let inner = q.strip_prefix("label_values(")?.strip_suffix(')')?;
    let (sel, label) = inner.rsplit_once(',')?;
    Some((sel.trim().to_string(), label.trim().to_string()))
}

/// Run the variable queries of `dashboard` (`label_values(selector, label)`) on the
/// database at `addr` over `[from, to]`, with `vars` substituted, and compare each one's
/// values with `want(label)`. Returns how many ran and a line per mismatch, each starting
/// with `what`.
pub fn check_variable_queries(
    addr: &str,
    dashboard: &Value,
    (from, to, scrape): (i64, i64, i64),
    vars: &[(&str, String)],
    what: &str,
    want: impl Fn(&str) -> std::collections::BTreeSet<String>,
) -> (usize, Vec<String>) {
    let (mut evaluated, mut failures) = (0, Vec::new());
    for var in variables(dashboard) {
        let Some((sel, label)) = label_values_query(&var) else {
            continue;
        };
        let sub = Substitution {
            from,
            to,
            interval: scrape,
            scrape_interval: scrape,
            vars,
        };
        let sel = sub.apply(&sel);
        let r = api_get(
            addr,
            &format!("/api/v1/label/{label}/values"),
            &[
                ("match[]", sel.clone()),
                ("start", from.to_string()),
                ("end", to.to_string()),
            ],
        );
        evaluated += 1;
        let got: std::collections::BTreeSet<String> = r["data"]
            .as_array()
            .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
            .unwrap_or_default();
        let want = want(&label);
        if got != want {
            failures.push(format!(
                "{what}, variable {label} ({sel}): got {got:?}, want {want:?}"
            ));
        }
    }
    (evaluated, failures)
}

/// Values Grafana gives its variables when it runs a query; `vars` are the template
/// variables (`instance`, ... already formatted as regexes).
pub struct Substitution<'a> {
    pub from: i64,
    pub to: i64,
    /// `$__interval` in seconds (the graph's step).
    pub interval: i64,
    /// The data source's scrape interval, for `$__rate_interval`.
    pub scrape_interval: i64,
    pub vars: &'a [(&'a str, String)],
}

impl Substitution<'_> {
    pub fn apply(&self, expr: &str) -> String {
        let rate = (self.interval + self.scrape_interval).max(4 * self.scrape_interval);
        let range = self.to - self.from;
        // Longest names first: `$__interval_ms` before `$__interval`.
        let mut pairs: Vec<(String, String)> = vec![
            ("$__rate_interval".into(), format!("{rate}s")),
            ("$__interval_ms".into(), (self.interval * 1000).to_string()),
            ("$__interval".into(), format!("{}s", self.interval)),
            ("$__range_ms".into(), (range * 1000).to_string()),
            ("$__range_s".into(), range.to_string()),
            ("$__range".into(), format!("{range}s")),
            ("$__from".into(), (self.from * 1000).to_string()),
            ("$__to".into(), (self.to * 1000).to_string()),
        ];
        for (k, v) in self.vars {
            pairs.push((format!("${{{k}}}"), v.clone()));
            pairs.push((format!("${k}"), v.clone()));
        }
        pairs.sort_by_key(|(k, _)| std::cmp::Reverse(k.len()));
        let mut out = expr.to_string();
        for (k, v) in pairs {
            out = out.replace(&k, &v);
        }
        assert!(
            !out.contains('$'),
            "a Grafana variable was left in {out:?} (from {expr:?})"
        );
        out
    }
}

/// How Grafana's Prometheus data source writes the values of a multi-value (or "All")
/// query variable into a query: each value with the regex metacharacters escaped for a
/// PromQL string (`.` becomes `\\.`), several values as `(a|b)`.
pub fn grafana_multi(values: &[&str]) -> String {
    let esc: Vec<String> = values
        .iter()
        .map(|v| {
            let mut out = String::new();
            for c in v.chars() {
                match c {
                    '\\' => out.push_str("\\\\\\\\"),
                    '$' | '^' | '*' | '{' | '}' | '[' | ']' | '\'' | '+' | '?' | '.' | '('
                    | ')' | '|' => {
                        out.push_str("\\\\");
                        out.push(c);
                    }
                    c => out.push(c),
                }
            }
            out
        })
        .collect();
    if esc.len() == 1 {
        esc[0].clone()
    } else {
        format!("({})", esc.join("|"))
    }
}

/// The regex those values stand for (what the database matches).
pub fn values_regex(values: &[&str]) -> String {
    let esc: Vec<String> = values.iter().map(|v| regex::escape(v)).collect();
    format!("({})", esc.join("|"))
}

/// How Grafana writes the value of a single-value variable (the `ip` text box) into a
/// Prometheus query: backslashes doubled, so that the PromQL string holds what was typed.
pub fn grafana_text(typed: &str) -> String {
    typed.replace('\\', "\\\\").replace('\'', "\\\\'")
}

// ---------------------------------------------------------------------------------------
// PromQL tokens, enough to list metric names and label names

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    Ident(String),
    Str(String),
    Num(String),
    Duration(String),
    Var(String),
    Punct(String),
}

pub fn tokenize(q: &str) -> Vec<Tok> {
    let c: Vec<char> = q.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() {
            i += 1;
        } else if ch == '"' || ch == '\'' || ch == '`' {
            let quote = ch;
            let mut s = String::new();
            i += 1;
            while i < c.len() && c[i] != quote {
                if c[i] == '\\' && quote != '`' && i + 1 < c.len() {
                    s.push(c[i]);
                    i += 1;
                }
                s.push(c[i]);
                i += 1;
            }
            i += 1;
            out.push(Tok::Str(s));
        } else if ch == '$' {
            let mut s = String::from("$");
            i += 1;
            if i < c.len() && c[i] == '{' {
                while i < c.len() && c[i] != '}' {
                    s.push(c[i]);
                    i += 1;
                }
                s.push('}');
                i += 1;
            } else {
                while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                    s.push(c[i]);
                    i += 1;
                }
            }
            out.push(Tok::Var(s));
        } else if ch.is_ascii_digit() || (ch == '.' && i + 1 < c.len() && c[i + 1].is_ascii_digit())
        {
            let mut s = String::new();
            while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '.') {
                s.push(c[i]);
                i += 1;
            }
            if s.chars().any(|x| x.is_ascii_alphabetic()) {
                out.push(Tok::Duration(s));
            } else {
                out.push(Tok::Num(s));
            }
        } else if ch.is_alphabetic() || ch == '_' {
            let mut s = String::new();
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_' || c[i] == ':') {
                s.push(c[i]);
                i += 1;
            }
            out.push(Tok::Ident(s));
        } else {
            let two: String = c[i..(i + 2).min(c.len())].iter().collect();
            if ["==", "!=", "=~", "!~", ">=", "<="].contains(&two.as_str()) {
                out.push(Tok::Punct(two));
                i += 2;
            } else {
                out.push(Tok::Punct(ch.to_string()));
                i += 1;
            }
        }
    }
    out
}

/// Keywords of PromQL and MetricsQL that look like identifiers.
const KEYWORDS: [&str; 16] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
    "start",
    "end",
    "atan2",
];

/// Functions the dashboards may call (PromQL, and the MetricsQL ones the VictoriaMetrics
/// dashboard uses).
pub const FUNCTIONS: [&str; 31] = [
    "sum",
    "count",
    "max",
    "min",
    "avg",
    "topk",
    "bottomk",
    "sort_desc",
    "sort",
    "sum_over_time",
    "max_over_time",
    "min_over_time",
    "count_over_time",
    "last_over_time",
    "increase",
    "rate",
    "irate",
    "timestamp",
    "time",
    "vector",
    "clamp_min",
    "abs",
    "absent",
    "label_values",
    // MetricsQL
    "running_sum",
    "running_max",
    "running_min",
    "tfirst_over_time",
    "tlast_over_time",
    "topk_last",
    "lifetime",
];

/// A label matcher: (label, operator, value).
pub type Matcher = (String, String, String);

/// What a query refers to: metric names (with the label names selected on each), and the
/// label names used in `by`, `without`, `on`, `ignoring`, `group_left` and `group_right`.
#[derive(Debug, Default)]
pub struct Refs {
    /// (metric, its selector's matchers)
    pub selectors: Vec<(String, Vec<Matcher>)>,
    pub grouping: Vec<String>,
    pub functions: Vec<String>,
    /// Selectors without a metric name (`{job="x"}`): not allowed here.
    pub nameless: usize,
}

pub fn refs(q: &str) -> Refs {
    let toks = tokenize(q);
    let mut r = Refs::default();
    let mut i = 0;
    let matchers = |start: usize, toks: &[Tok]| -> (Vec<Matcher>, usize) {
        // toks[start] == "{"
        let mut j = start + 1;
        let mut out = Vec::new();
        while j < toks.len() && toks[j] != Tok::Punct("}".into()) {
            if let Tok::Ident(name) = &toks[j] {
                let op = match toks.get(j + 1) {
                    Some(Tok::Punct(p)) => p.clone(),
                    other => panic!("bad matcher after {name} in {q}: {other:?}"),
                };
                let value = match toks.get(j + 2) {
                    Some(Tok::Str(s)) => s.clone(),
                    other => panic!("bad matcher value for {name} in {q}: {other:?}"),
                };
                out.push((name.clone(), op, value));
                j += 3;
            } else {
                j += 1;
            }
        }
        (out, j + 1)
    };
    while i < toks.len() {
        match &toks[i] {
            Tok::Ident(id) => {
                let next = toks.get(i + 1);
                let lower = id.to_ascii_lowercase();
                if [
                    "by",
                    "without",
                    "on",
                    "ignoring",
                    "group_left",
                    "group_right",
                ]
                .contains(&lower.as_str())
                {
                    if next == Some(&Tok::Punct("(".into())) {
                        let mut j = i + 2;
                        while j < toks.len() && toks[j] != Tok::Punct(")".into()) {
                            if let Tok::Ident(l) = &toks[j] {
                                r.grouping.push(l.clone());
                            }
                            j += 1;
                        }
                        i = j + 1;
                        continue;
                    }
                    i += 1;
                    continue;
                }
                if KEYWORDS.contains(&lower.as_str()) {
                    i += 1;
                    continue;
                }
                // A function call, or an aggregation with its grouping first
                // (`sum by (x) (...)`).
                let grouping_next = matches!(next, Some(Tok::Ident(n))
                    if n.eq_ignore_ascii_case("by") || n.eq_ignore_ascii_case("without"));
                if next == Some(&Tok::Punct("(".into())) || grouping_next {
                    r.functions.push(id.clone());
                    i += 1;
                    continue;
                }
                // A metric name, with or without a selector.
                if next == Some(&Tok::Punct("{".into())) {
                    let (m, j) = matchers(i + 1, &toks);
                    r.selectors.push((id.clone(), m));
                    i = j;
                } else {
                    r.selectors.push((id.clone(), vec![]));
                    i += 1;
                }
            }
            Tok::Punct(p) if p == "{" => {
                let (_, j) = matchers(i, &toks);
                r.nameless += 1;
                i = j;
            }
            _ => i += 1,
        }
    }
    r
}

// ---------------------------------------------------------------------------------------
// External programs

fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn form(params: &[(&str, String)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// An HTTP/1.0 request (no chunked answers) to 127.0.0.1: (status, body).
pub fn http(addr: &str, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n");
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        ));
    } else {
        req.push_str("\r\n");
    }
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, body.to_string())
}

/// POST a form to a Prometheus-compatible API; the JSON answer (success or error).
pub fn api(addr: &str, path: &str, params: &[(&str, String)]) -> Value {
    let (status, body) = http(addr, "POST", path, Some(&form(params)));
    serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("{path} on {addr}: HTTP {status}, not JSON ({e}): {body}"))
}

/// GET a Prometheus-compatible API with query parameters; the JSON answer.
pub fn api_get(addr: &str, path: &str, params: &[(&str, String)]) -> Value {
    let full = format!("{path}?{}", form(params));
    let (status, body) = http(addr, "GET", &full, None);
    serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("{path} on {addr}: HTTP {status}, not JSON ({e}): {body}"))
}
