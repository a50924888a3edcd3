//! The ready-to-use configurations in `collector-configs/`, checked with what this
//! machine has:
//! - `prometheus.yml`: `promtool check config` (Debian package `prometheus`);
//! - `vmagent.yml`: `vmagent -promscrape.config.dryRun` (Debian package `victoria-metrics`)
//!   and `promtool check config` (same format);
//! - `otelcol-contrib.yaml`: its structure against the components' documented keys (no
//!   Collector binary can be installed here);
//! - `alloy/*.alloy`: a small parser of the Alloy syntax, the documented components,
//!   arguments, blocks and exports, and the references between components (no Alloy
//!   binary either).
//!
//! A missing `promtool` or `vmagent` fails the test with the package to install.

use crate::tools;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml::Value;
use tools::*;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("collector-configs")
}

fn read(rel: &str) -> String {
    let p = dir().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

fn yaml(rel: &str) -> Value {
    serde_yaml::from_str(&read(rel)).unwrap_or_else(|e| panic!("collector-configs/{rel}: {e}"))
}

fn promtool_check(file: &Path) -> (bool, String) {
    run(Command::new(tool("promtool", "prometheus"))
        .arg("check")
        .arg("config")
        .arg(file))
}

fn vmagent_check(file: &Path) -> (bool, String) {
    run(Command::new(tool("vmagent", "victoria-metrics"))
        .arg(format!("-promscrape.config={}", file.display()))
        .arg("-promscrape.config.dryRun")
        .arg("-loggerLevel=ERROR"))
}

/// A scrape configuration with a key no scraper knows and a broken regex: both checkers
/// must refuse it, or they check nothing.
const BROKEN_SCRAPE_CONFIG: &str = "scrape_configs:\n  - job_name: reaction\n    not_a_key: 1\n    static_configs:\n      - targets: ['a:8080']\n    relabel_configs:\n      - source_labels: [__address__]\n        regex: '(['\n        target_label: instance\n";

/// What the legacy README asks of a scrape job: a name starting with `reaction`, an
/// interval, and the relabelling example.
fn check_scrape_job(rel: &str) {
    let doc = yaml(rel);
    let jobs = doc
        .get("scrape_configs")
        .and_then(Value::as_sequence)
        .unwrap_or_else(|| panic!("{rel}: no scrape_configs"));
    for job in jobs {
        check_job(rel, &doc, job);
    }
}

/// One job of [`check_scrape_job`].
fn check_job(rel: &str, doc: &Value, job: &Value) {
    let name = job.get("job_name").and_then(Value::as_str).unwrap_or("");
    assert!(
        name.starts_with("reaction"),
        "{rel}: the job name must start with `reaction` (the dashboards select on it), is `{name}`"
    );
    assert!(
        job.get("scrape_interval").is_some()
            || doc
                .get("global")
                .and_then(|g| g.get("scrape_interval"))
                .is_some(),
        "{rel}: set scrape_interval"
    );
    let relabel = job
        .get("relabel_configs")
        .and_then(Value::as_sequence)
        .unwrap_or_else(|| panic!("{rel}: the relabel example is missing"));
    assert!(
        relabel.iter().any(|r| {
            r.get("target_label").and_then(Value::as_str) == Some("instance")
                && r.get("source_labels")
                    .and_then(Value::as_sequence)
                    .is_some_and(|s| s.iter().any(|l| l.as_str() == Some("__address__")))
        }),
        "{rel}: the relabel example sets `instance` from `__address__`"
    );
}

#[test]
fn prometheus_yml_passes_promtool() {
    let file = dir().join("prometheus.yml");
    let (ok, out) = promtool_check(&file);
    assert!(ok, "promtool check config prometheus.yml failed:\n{out}");
    check_scrape_job("prometheus.yml");
    // A job per endpoint: the legacy /metrics and the cumulative /metrics/otel (the path
    // the exporter serves it on, tests/otel_endpoint.rs), with the same targets.
    let doc = yaml("prometheus.yml");
    let jobs = doc["scrape_configs"].as_sequence().unwrap();
    let paths: Vec<&str> = jobs
        .iter()
        .map(|j| {
            j.get("metrics_path")
                .and_then(Value::as_str)
                .unwrap_or("/metrics")
        })
        .collect();
    assert_eq!(
        paths,
        ["/metrics", "/metrics/otel"],
        "prometheus.yml: the jobs' paths"
    );
    assert_eq!(
        jobs[0]["static_configs"], jobs[1]["static_configs"],
        "prometheus.yml: both jobs scrape the same exporters"
    );

    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("broken.yml");
    std::fs::write(&bad, BROKEN_SCRAPE_CONFIG).unwrap();
    let (ok, out) = promtool_check(&bad);
    assert!(!ok, "promtool accepted a broken configuration:\n{out}");
}

#[test]
fn vmagent_yml_passes_vmagent_dry_run_and_promtool() {
    let file = dir().join("vmagent.yml");
    let (ok, out) = vmagent_check(&file);
    assert!(
        ok,
        "vmagent -promscrape.config=vmagent.yml -promscrape.config.dryRun failed:\n{out}"
    );
    let (ok, out) = promtool_check(&file);
    assert!(ok, "promtool check config vmagent.yml failed:\n{out}");
    check_scrape_job("vmagent.yml");
    assert!(
        read("vmagent.yml").contains("-remoteWrite.url="),
        "vmagent.yml: give the command line in a comment"
    );

    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("broken.yml");
    std::fs::write(&bad, BROKEN_SCRAPE_CONFIG).unwrap();
    let (ok, out) = vmagent_check(&bad);
    assert!(
        !ok,
        "vmagent's dry run accepted a broken configuration:\n{out}"
    );
}

// ---------------------------------------------------------------------------------------
// OpenTelemetry Collector

/// Documented keys of each component type, as dotted paths; `x.*` allows any key under
/// `x` (free-form maps such as labels and headers, or settings blocks not used here).
/// Sources: receiver/otlpreceiver and config/configgrpc, confighttp READMEs (collector);
/// processor/batchprocessor README; processor/deltatocumulativeprocessor README and
/// config.go; exporter/prometheusexporter README and config.go;
/// exporter/prometheusremotewriteexporter README and config.go (collector-contrib).
fn collector_keys(kind: &str, ty: &str) -> Option<&'static [&'static str]> {
    Some(match (kind, ty) {
        ("receivers", "otlp") => &[
            "protocols",
            "protocols.grpc",
            "protocols.grpc.endpoint",
            "protocols.grpc.transport",
            "protocols.grpc.tls.*",
            "protocols.grpc.max_recv_msg_size_mib",
            "protocols.grpc.max_concurrent_streams",
            "protocols.grpc.read_buffer_size",
            "protocols.grpc.write_buffer_size",
            "protocols.grpc.keepalive.*",
            "protocols.grpc.auth.*",
            "protocols.grpc.include_metadata",
            "protocols.http",
            "protocols.http.endpoint",
            "protocols.http.tls.*",
            "protocols.http.cors.*",
            "protocols.http.auth.*",
            "protocols.http.include_metadata",
            "protocols.http.max_request_body_size",
            "protocols.http.traces_url_path",
            "protocols.http.metrics_url_path",
            "protocols.http.logs_url_path",
        ],
        ("processors", "deltatocumulative") => &["max_stale", "max_streams"],
        ("processors", "batch") => &[
            "timeout",
            "send_batch_size",
            "send_batch_max_size",
            "metadata_keys",
            "metadata_cardinality_limit",
        ],
        ("exporters", "prometheus") => &[
            "endpoint",
            "tls.*",
            "namespace",
            "const_labels.*",
            "send_timestamps",
            "metric_expiration",
            "resource_to_telemetry_conversion",
            "resource_to_telemetry_conversion.enabled",
            "resource_to_telemetry_conversion.exclude_service_attributes",
            "enable_open_metrics",
            "add_metric_suffixes",
            "translation_strategy",
            "without_scope_info",
            "resource_constant_labels",
            "resource_constant_labels.included",
            "resource_constant_labels.excluded",
        ],
        ("exporters", "prometheusremotewrite") => &[
            "endpoint",
            "tls",
            "tls.insecure",
            "tls.insecure_skip_verify",
            "tls.ca_file",
            "tls.cert_file",
            "tls.key_file",
            "headers.*",
            "namespace",
            "add_metric_suffixes",
            "external_labels.*",
            "remote_write_queue",
            "remote_write_queue.enabled",
            "remote_write_queue.queue_size",
            "remote_write_queue.num_consumers",
            "resource_to_telemetry_conversion",
            "resource_to_telemetry_conversion.enabled",
            "target_info",
            "target_info.enabled",
            "export_created_metric",
            "export_created_metric.enabled",
            "wal",
            "wal.directory",
            "wal.buffer_size",
            "wal.truncate_frequency",
            "timeout",
            "retry_on_failure.*",
        ],
        _ => return None,
    })
}

/// Dotted paths of the keys of a mapping, recursively.
fn key_paths(v: &Value, prefix: &str, out: &mut Vec<String>) {
    if let Value::Mapping(m) = v {
        for (k, child) in m {
            let k = k.as_str().unwrap_or("<non-string key>");
            let path = if prefix.is_empty() {
                k.to_string()
            } else {
                format!("{prefix}.{k}")
            };
            out.push(path.clone());
            key_paths(child, &path, out);
        }
    }
}

fn documented(path: &str, allowed: &[&str]) -> bool {
    allowed.iter().any(|a| match a.strip_suffix(".*") {
        Some(free) => path == free || path.starts_with(&format!("{free}.")),
        None => path == *a,
    })
}

fn names(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_sequence)
        .map(|s| {
            s.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn otelcol_contrib_structure() {
    let rel = "otelcol-contrib.yaml";
    let doc = yaml(rel);
    let mut problems = Vec::new();
    let top: BTreeSet<&str> = [
        "receivers",
        "processors",
        "exporters",
        "connectors",
        "extensions",
        "service",
    ]
    .into();
    for (k, _) in doc.as_mapping().expect("a mapping") {
        let k = k.as_str().unwrap_or("");
        if !top.contains(k) {
            problems.push(format!("unknown top-level key `{k}`"));
        }
    }

    let mut defined: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for kind in ["receivers", "processors", "exporters"] {
        let Some(comps) = doc.get(kind).and_then(Value::as_mapping) else {
            problems.push(format!("no `{kind}`"));
            continue;
        };
        for (id, conf) in comps {
            let id = id.as_str().unwrap_or("").to_string();
            let ty = id.split('/').next().unwrap_or("");
            let Some(allowed) = collector_keys(kind, ty) else {
                problems.push(format!(
                    "{kind}: `{ty}` is not a component this test knows the keys of"
                ));
                continue;
            };
            let mut paths = Vec::new();
            key_paths(conf, "", &mut paths);
            for p in paths {
                if !documented(&p, allowed) {
                    problems.push(format!(
                        "{kind}.{id}: `{p}` is not a documented key of `{ty}` ({allowed:?})"
                    ));
                }
            }
            defined.entry(kind).or_default().insert(id);
        }
    }

    // The OTLP receiver listens for gRPC on 4317.
    let grpc = doc
        .get("receivers")
        .and_then(|r| r.get("otlp"))
        .and_then(|o| o.get("protocols"))
        .and_then(|p| p.get("grpc"));
    match grpc.and_then(|g| g.get("endpoint")).and_then(Value::as_str) {
        Some(e) if e.ends_with(":4317") => {}
        other => problems.push(format!(
            "receivers.otlp.protocols.grpc.endpoint should listen on port 4317, is {other:?}"
        )),
    }

    // Pipelines reference defined components; every component is used.
    let mut used: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let pipelines = doc
        .get("service")
        .and_then(|s| s.get("pipelines"))
        .and_then(Value::as_mapping)
        .cloned()
        .unwrap_or_default();
    if pipelines.is_empty() {
        problems.push("service.pipelines is empty".into());
    }
    for (name, p) in &pipelines {
        let name = name.as_str().unwrap_or("");
        if name != "metrics" && !name.starts_with("metrics/") {
            problems.push(format!(
                "pipeline `{name}`: the exporter sends metrics only (`metrics` or `metrics/<name>`)"
            ));
        }
        for (k, _) in p.as_mapping().into_iter().flatten() {
            let k = k.as_str().unwrap_or("");
            if !["receivers", "processors", "exporters"].contains(&k) {
                problems.push(format!("pipeline `{name}`: unknown key `{k}`"));
            }
        }
        for kind in ["receivers", "processors", "exporters"] {
            for id in names(p.get(kind)) {
                if !defined.get(kind).is_some_and(|d| d.contains(&id)) {
                    problems.push(format!(
                        "pipeline `{name}`: {kind} `{id}` is not defined under `{kind}:`"
                    ));
                }
                used.entry(kind).or_default().insert(id);
            }
        }
        if names(p.get("receivers")).is_empty() || names(p.get("exporters")).is_empty() {
            problems.push(format!("pipeline `{name}` needs receivers and exporters"));
        }
        let processors = names(p.get("processors"));
        let prom = names(p.get("exporters")).iter().any(|e| {
            let ty = e.split('/').next().unwrap_or("");
            ty == "prometheus" || ty == "prometheusremotewrite"
        });
        if prom
            && processors
                .first()
                .map(|p| p.split('/').next() != Some("deltatocumulative"))
                .unwrap_or(true)
        {
            problems.push(format!(
                "pipeline `{name}`: the Prometheus exporters need `deltatocumulative` as the first processor (delta sums are dropped otherwise)"
            ));
        }
    }
    for (kind, ids) in &defined {
        for id in ids {
            if !used.get(kind).is_some_and(|u| u.contains(id)) {
                problems.push(format!("{kind}.{id} is defined but in no pipeline"));
            }
        }
    }
    let text = read(rel);
    for needle in ["service.instance.id", "otelcol-contrib"] {
        if !text.contains(needle) {
            problems.push(format!("{rel}: the comments should explain `{needle}`"));
        }
    }
    assert!(
        problems.is_empty(),
        "collector-configs/{rel}:\n  - {}",
        problems.join("\n  - ")
    );
}

// ---------------------------------------------------------------------------------------
// Grafana Alloy: a small parser of the syntax (blocks, attributes, references)

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(String),
    Punct(char),
    Newline,
}

fn lex(src: &str) -> Result<Vec<(Tok, usize)>, String> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\n' => {
                out.push((Tok::Newline, line));
                line += 1;
                i += 1;
            }
            c if c.is_whitespace() => i += 1,
            '/' if chars.get(i + 1) == Some(&'/') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '/' if chars.get(i + 1) == Some(&'*') => {
                i += 2;
                while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                    if chars[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
                i += 2;
            }
            '"' | '`' => {
                let quote = c;
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(format!("line {line}: unterminated string")),
                        Some(&q) if q == quote => break,
                        Some('\\') if quote == '"' => {
                            s.push(*chars.get(i + 1).unwrap_or(&' '));
                            i += 2;
                        }
                        Some(&ch) => {
                            if ch == '\n' {
                                if quote == '"' {
                                    return Err(format!("line {line}: newline in a string"));
                                }
                                line += 1;
                            }
                            s.push(ch);
                            i += 1;
                        }
                    }
                }
                i += 1;
                out.push((Tok::Str(s), line));
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                out.push((Tok::Ident(chars[start..i].iter().collect()), line));
            }
            c if c.is_ascii_digit() => {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
                out.push((Tok::Num(chars[start..i].iter().collect()), line));
            }
            '{' | '}' | '[' | ']' | '(' | ')' | '=' | ',' | '.' | ':' | '+' | '-' | '*' | '!'
            | '<' | '>' | '|' | '&' | '%' | '/' => {
                out.push((Tok::Punct(c), line));
                i += 1;
            }
            other => return Err(format!("line {line}: unexpected character {other:?}")),
        }
    }
    Ok(out)
}

#[derive(Debug, Default)]
struct Block {
    name: String,
    label: Option<String>,
    line: usize,
    attrs: Vec<Attr>,
    blocks: Vec<Block>,
}

#[derive(Debug)]
struct Attr {
    name: String,
    line: usize,
    /// Dotted references in the value (`a.b.c`, not function calls like `sys.env(..)`).
    refs: Vec<String>,
    /// The value when it is a single string, number or identifier.
    literal: Option<String>,
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.0)
    }
    fn line(&self) -> usize {
        self.toks
            .get(self.pos)
            .or(self.toks.last())
            .map_or(0, |t| t.1)
    }
    fn skip_newlines(&mut self) {
        while self.peek() == Some(&Tok::Newline) {
            self.pos += 1;
        }
    }
    fn dotted(&mut self) -> Result<String, String> {
        let mut name = match self.peek() {
            Some(Tok::Ident(s)) => s.clone(),
            other => {
                return Err(format!(
                    "line {}: expected a name, got {other:?}",
                    self.line()
                ))
            }
        };
        self.pos += 1;
        while self.peek() == Some(&Tok::Punct('.')) {
            self.pos += 1;
            match self.peek() {
                Some(Tok::Ident(s)) => name = format!("{name}.{s}"),
                other => {
                    return Err(format!(
                        "line {}: expected a name after `.`, got {other:?}",
                        self.line()
                    ))
                }
            }
            self.pos += 1;
        }
        Ok(name)
    }
    /// Statements until `}` (or the end of the file at the top level).
    fn body(&mut self, top: bool) -> Result<(Vec<Attr>, Vec<Block>), String> {
        let (mut attrs, mut blocks) = (Vec::new(), Vec::new());
        loop {
            self.skip_newlines();
            match self.peek() {
                None if top => return Ok((attrs, blocks)),
                None => return Err("unexpected end of file: missing `}`".into()),
                Some(Tok::Punct('}')) if !top => {
                    self.pos += 1;
                    return Ok((attrs, blocks));
                }
                _ => {}
            }
            let line = self.line();
            let name = self.dotted()?;
            match self.peek().cloned() {
                Some(Tok::Punct('=')) => {
                    if name.contains('.') {
                        return Err(format!("line {line}: attribute name `{name}` has a dot"));
                    }
                    self.pos += 1;
                    let (refs, literal) = self.expr()?;
                    attrs.push(Attr {
                        name,
                        line,
                        refs,
                        literal,
                    });
                }
                Some(Tok::Str(label)) => {
                    self.pos += 1;
                    blocks.push(self.block(name, Some(label), line)?);
                }
                Some(Tok::Punct('{')) => blocks.push(self.block(name, None, line)?),
                other => {
                    return Err(format!(
                        "line {line}: after `{name}`, expected `=`, a label or `{{`, got {other:?}"
                    ))
                }
            }
        }
    }
    fn block(&mut self, name: String, label: Option<String>, line: usize) -> Result<Block, String> {
        if self.peek() != Some(&Tok::Punct('{')) {
            return Err(format!("line {line}: expected `{{` after `{name}`"));
        }
        self.pos += 1;
        let (attrs, blocks) = self.body(false)?;
        Ok(Block {
            name,
            label,
            line,
            attrs,
            blocks,
        })
    }
    /// An expression, up to the end of its line outside brackets.
    fn expr(&mut self) -> Result<(Vec<String>, Option<String>), String> {
        let start = self.pos;
        let mut depth = 0i32;
        while let Some(t) = self.peek() {
            match t {
                Tok::Punct('[' | '(' | '{') => depth += 1,
                Tok::Punct(']' | ')') => depth -= 1,
                Tok::Punct('}') if depth == 0 => break,
                Tok::Punct('}') => depth -= 1,
                Tok::Newline if depth == 0 => break,
                _ => {}
            }
            if depth < 0 {
                return Err(format!("line {}: unbalanced brackets", self.line()));
            }
            self.pos += 1;
        }
        let toks: Vec<Tok> = self.toks[start..self.pos]
            .iter()
            .map(|t| t.0.clone())
            .filter(|t| *t != Tok::Newline)
            .collect();
        if toks.is_empty() {
            return Err(format!("line {}: missing value", self.line()));
        }
        let literal = match toks.as_slice() {
            [Tok::Str(s)] | [Tok::Num(s)] | [Tok::Ident(s)] => Some(s.clone()),
            _ => None,
        };
        let mut refs = Vec::new();
        let mut i = 0;
        while i < toks.len() {
            if let Tok::Ident(first) = &toks[i] {
                let mut path = first.clone();
                let mut j = i + 1;
                while toks.get(j) == Some(&Tok::Punct('.')) {
                    if let Some(Tok::Ident(s)) = toks.get(j + 1) {
                        path = format!("{path}.{s}");
                        j += 2;
                    } else {
                        break;
                    }
                }
                if path.contains('.') && toks.get(j) != Some(&Tok::Punct('(')) {
                    refs.push(path);
                }
                i = j;
            } else {
                i += 1;
            }
        }
        Ok((refs, literal))
    }
}

fn parse_alloy(src: &str) -> Result<Vec<Block>, String> {
    let mut p = Parser {
        toks: lex(src)?,
        pos: 0,
    };
    let (attrs, blocks) = p.body(true)?;
    if let Some(a) = attrs.first() {
        return Err(format!(
            "line {}: attribute `{}` outside a component",
            a.line, a.name
        ));
    }
    Ok(blocks)
}

/// The documented arguments, blocks and exports of a component (or block).
struct Schema {
    attrs: &'static [&'static str],
    blocks: Vec<(&'static str, Schema)>,
    exports: &'static [&'static str],
    experimental: bool,
}

impl Schema {
    fn leaf(attrs: &'static [&'static str]) -> Schema {
        Schema {
            attrs,
            blocks: Vec::new(),
            exports: &[],
            experimental: false,
        }
    }
}

const OUTPUT: &[&str] = &["metrics", "logs", "traces"];
const DEBUG_METRICS: &[&str] = &[];

/// Sources: Alloy's reference pages (docs/sources/reference/components/...) for
/// otelcol.receiver.otlp, otelcol.processor.deltatocumulative, otelcol.processor.batch,
/// otelcol.exporter.prometheus and prometheus.remote_write.
fn alloy_schema(component: &str) -> Option<Schema> {
    // Blocks whose arguments this project does not use are listed with none: a file that
    // sets one fails here until its documented arguments are added.
    let tls = || Schema::leaf(&[]);
    Some(match component {
        "otelcol.receiver.otlp" => Schema {
            attrs: &[],
            blocks: vec![
                (
                    "grpc",
                    Schema {
                        attrs: &[
                            "auth",
                            "endpoint",
                            "include_metadata",
                            "max_concurrent_streams",
                            "max_recv_msg_size",
                            "read_buffer_size",
                            "transport",
                            "write_buffer_size",
                        ],
                        blocks: vec![
                            (
                                "keepalive",
                                Schema {
                                    attrs: &[],
                                    blocks: vec![
                                        (
                                            "enforcement_policy",
                                            Schema::leaf(&["min_time", "permit_without_stream"]),
                                        ),
                                        (
                                            "server_parameters",
                                            Schema::leaf(&[
                                                "max_connection_age_grace",
                                                "max_connection_age",
                                                "max_connection_idle",
                                                "time",
                                                "timeout",
                                            ]),
                                        ),
                                    ],
                                    exports: &[],
                                    experimental: false,
                                },
                            ),
                            ("tls", tls()),
                        ],
                        exports: &[],
                        experimental: false,
                    },
                ),
                (
                    "http",
                    Schema {
                        attrs: &[
                            "auth",
                            "compression_algorithms",
                            "endpoint",
                            "idle_timeout",
                            "include_metadata",
                            "keep_alives_enabled",
                            "logs_url_path",
                            "max_request_body_size",
                            "metrics_url_path",
                            "read_header_timeout",
                            "read_timeout",
                            "traces_url_path",
                            "write_timeout",
                        ],
                        blocks: vec![
                            (
                                "cors",
                                Schema::leaf(&[
                                    "allowed_origins",
                                    "allowed_headers",
                                    "exposed_headers",
                                    "max_age",
                                ]),
                            ),
                            ("tls", tls()),
                        ],
                        exports: &[],
                        experimental: false,
                    },
                ),
                ("output", Schema::leaf(OUTPUT)),
                ("debug_metrics", Schema::leaf(DEBUG_METRICS)),
            ],
            exports: &[],
            experimental: false,
        },
        "otelcol.processor.deltatocumulative" => Schema {
            attrs: &["max_stale", "max_streams"],
            blocks: vec![
                ("output", Schema::leaf(OUTPUT)),
                ("debug_metrics", Schema::leaf(DEBUG_METRICS)),
            ],
            exports: &["input"],
            experimental: true,
        },
        "otelcol.processor.batch" => Schema {
            attrs: &[
                "metadata_cardinality_limit",
                "metadata_keys",
                "send_batch_max_size",
                "send_batch_size",
                "timeout",
            ],
            blocks: vec![
                ("output", Schema::leaf(OUTPUT)),
                ("debug_metrics", Schema::leaf(DEBUG_METRICS)),
            ],
            exports: &["input"],
            experimental: false,
        },
        "otelcol.exporter.prometheus" => Schema {
            attrs: &[
                "forward_to",
                "add_metric_suffixes",
                "convert_classic_histograms_to_nhcb",
                "start_timestamp_zero_ingestion",
                "gc_frequency",
                "honor_metadata",
                "include_scope_info",
                "include_scope_labels",
                "include_target_info",
                "keep_identifying_resource_attributes",
                "resource_to_telemetry_conversion",
            ],
            blocks: vec![("debug_metrics", Schema::leaf(DEBUG_METRICS))],
            exports: &["input"],
            experimental: false,
        },
        "prometheus.remote_write" => Schema {
            attrs: &["external_labels"],
            blocks: vec![(
                "endpoint",
                Schema {
                    attrs: &[
                        "url",
                        "bearer_token_file",
                        "bearer_token",
                        "enable_http2",
                        "follow_redirects",
                        "http_headers",
                        "headers",
                        "name",
                        "no_proxy",
                        "protobuf_message",
                        "proxy_connect_header",
                        "proxy_from_environment",
                        "proxy_url",
                        "remote_timeout",
                        "round_robin_dns",
                        "send_exemplars",
                        "send_native_histograms",
                    ],
                    blocks: vec![
                        (
                            "queue_config",
                            Schema::leaf(&[
                                "batch_send_deadline",
                                "capacity",
                                "max_backoff",
                                "max_samples_per_send",
                                "max_shards",
                                "min_backoff",
                                "min_shards",
                                "retry_on_http_429",
                                "sample_age_limit",
                            ]),
                        ),
                        (
                            "metadata_config",
                            Schema::leaf(&["max_samples_per_send", "send_interval", "send"]),
                        ),
                    ],
                    exports: &[],
                    experimental: false,
                },
            )],
            exports: &["receiver"],
            experimental: false,
        },
        _ => return None,
    })
}

fn check_block(b: &Block, schema: &Schema, path: &str, problems: &mut Vec<String>) {
    for a in &b.attrs {
        if !schema.attrs.contains(&a.name.as_str()) {
            problems.push(format!(
                "line {}: `{path}` has no documented argument `{}` (known: {:?})",
                a.line, a.name, schema.attrs
            ));
        }
    }
    for inner in &b.blocks {
        if inner.label.is_some() {
            problems.push(format!(
                "line {}: block `{}` takes no label",
                inner.line, inner.name
            ));
        }
        match schema.blocks.iter().find(|(n, _)| *n == inner.name) {
            Some((_, s)) => check_block(inner, s, &format!("{path} > {}", inner.name), problems),
            None => problems.push(format!(
                "line {}: `{path}` has no documented block `{}`",
                inner.line, inner.name
            )),
        }
    }
}

/// Every (argument path, reference) of a block, recursively.
fn all_refs(b: &Block, path: &str, out: &mut Vec<(String, String, usize)>) {
    for a in &b.attrs {
        for r in &a.refs {
            out.push((format!("{path}.{}", a.name), r.clone(), a.line));
        }
    }
    for inner in &b.blocks {
        all_refs(inner, &format!("{path}.{}", inner.name), out);
    }
}

fn find_attr<'a>(b: &'a Block, path: &[&str]) -> Option<&'a Attr> {
    match path {
        [name] => b.attrs.iter().find(|a| a.name == *name),
        [block, rest @ ..] => b
            .blocks
            .iter()
            .find(|x| x.name == *block)
            .and_then(|x| find_attr(x, rest)),
        [] => None,
    }
}

/// Problems of one Alloy file; `delta` says whether it converts delta temporality.
fn check_alloy(rel: &str, delta: bool) -> Vec<String> {
    check_alloy_src(&read(rel), delta)
}

fn check_alloy_src(src: &str, delta: bool) -> Vec<String> {
    let blocks = match parse_alloy(src) {
        Ok(b) => b,
        Err(e) => return vec![format!("cannot parse: {e}")],
    };
    let mut problems = Vec::new();
    let mut defined: BTreeMap<String, &'static [&'static str]> = BTreeMap::new();
    let mut experimental = false;
    for b in &blocks {
        let Some(label) = &b.label else {
            problems.push(format!(
                "line {}: component `{}` needs a label",
                b.line, b.name
            ));
            continue;
        };
        let Some(schema) = alloy_schema(&b.name) else {
            problems.push(format!(
                "line {}: `{}` is not a component this test knows (documented ones: otelcol.receiver.otlp, otelcol.processor.deltatocumulative, otelcol.processor.batch, otelcol.exporter.prometheus, prometheus.remote_write)",
                b.line, b.name
            ));
            continue;
        };
        experimental |= schema.experimental;
        check_block(
            b,
            &schema,
            &format!("{} \"{label}\"", b.name),
            &mut problems,
        );
        let id = format!("{}.{label}", b.name);
        if defined.insert(id.clone(), schema.exports).is_some() {
            problems.push(format!("line {}: `{id}` is defined twice", b.line));
        }
    }

    // References: each names a defined component and a field it exports.
    let mut referenced = BTreeSet::new();
    let mut edges: Vec<(String, String)> = Vec::new();
    for b in &blocks {
        let Some(label) = &b.label else { continue };
        let from = format!("{}.{label}", b.name);
        let mut refs = Vec::new();
        all_refs(b, &from, &mut refs);
        for (arg, r, line) in refs {
            let target = defined
                .iter()
                .find(|(id, _)| r.starts_with(&format!("{id}.")))
                .map(|(id, exports)| (id.clone(), *exports));
            match target {
                Some((id, exports)) => {
                    let field = &r[id.len() + 1..];
                    if !exports.contains(&field) {
                        problems.push(format!(
                            "line {line}: `{arg}` references `{r}`, but `{id}` exports {exports:?}"
                        ));
                    }
                    referenced.insert(id.clone());
                    edges.push((from.clone(), id));
                }
                None => problems.push(format!(
                    "line {line}: `{arg}` references `{r}`, which is no component defined in this file"
                )),
            }
        }
    }
    for b in &blocks {
        let Some(label) = &b.label else { continue };
        let id = format!("{}.{label}", b.name);
        let out_attr = if b.name == "otelcol.exporter.prometheus" {
            find_attr(b, &["forward_to"])
        } else if b.name.starts_with("otelcol.") {
            find_attr(b, &["output", "metrics"])
        } else {
            None
        };
        if b.name.starts_with("otelcol.") && out_attr.is_none_or(|a| a.refs.is_empty()) {
            problems.push(format!(
                "line {}: `{id}` sends its metrics nowhere (`output {{ metrics = [...] }}` or `forward_to`)",
                b.line
            ));
        }
        if !b.name.starts_with("otelcol.receiver.") && !referenced.contains(&id) {
            problems.push(format!("line {}: nothing sends data to `{id}`", b.line));
        }
    }

    // The path from the receiver to remote write, in order.
    let mut chain = Vec::new();
    let mut at = defined
        .keys()
        .find(|k| k.starts_with("otelcol.receiver.otlp."))
        .cloned();
    while let Some(node) = at {
        if chain.contains(&node) {
            problems.push(format!("a loop through `{node}`"));
            break;
        }
        chain.push(node.clone());
        at = edges
            .iter()
            .find(|(f, _)| *f == node)
            .map(|(_, t)| t.clone());
    }
    let kinds: Vec<String> = chain
        .iter()
        .map(|id| {
            id.rsplit_once('.')
                .map_or(id.clone(), |(c, _)| c.to_string())
        })
        .collect();
    let expected: &[&str] = if delta {
        &[
            "otelcol.receiver.otlp",
            "otelcol.processor.deltatocumulative",
            "otelcol.exporter.prometheus",
            "prometheus.remote_write",
        ]
    } else {
        &[
            "otelcol.receiver.otlp",
            "otelcol.exporter.prometheus",
            "prometheus.remote_write",
        ]
    };
    let kinds_no_batch: Vec<&str> = kinds
        .iter()
        .map(String::as_str)
        .filter(|k| *k != "otelcol.processor.batch")
        .collect();
    if kinds_no_batch != expected {
        problems.push(format!(
            "the path from the receiver is {kinds:?}, expected {expected:?} (a batch processor may sit anywhere)"
        ));
    }

    // The receiver listens for gRPC on 4317.
    let endpoint = blocks
        .iter()
        .find(|b| b.name == "otelcol.receiver.otlp")
        .and_then(|b| find_attr(b, &["grpc", "endpoint"]))
        .and_then(|a| a.literal.clone());
    if !endpoint.as_deref().is_some_and(|e| e.ends_with(":4317")) {
        problems.push(format!(
            "otelcol.receiver.otlp > grpc > endpoint should listen on port 4317, is {endpoint:?}"
        ));
    }

    let flag = src.contains("--stability.level=experimental");
    if experimental && !flag {
        problems.push(
            "uses an experimental component: say in a comment to run `alloy run --stability.level=experimental`"
                .into(),
        );
    }
    if !delta && experimental {
        problems.push("the cumulative configuration must not need experimental components".into());
    }
    if delta != experimental {
        problems.push(format!(
            "delta temporality needs otelcol.processor.deltatocumulative (experimental): delta={delta}, experimental={experimental}"
        ));
    }
    problems
}

#[test]
fn alloy_delta_structure() {
    let problems = check_alloy("alloy/delta.alloy", true);
    assert!(
        problems.is_empty(),
        "collector-configs/alloy/delta.alloy:\n  - {}",
        problems.join("\n  - ")
    );
}

#[test]
fn alloy_cumulative_structure() {
    let problems = check_alloy("alloy/cumulative.alloy", false);
    assert!(
        problems.is_empty(),
        "collector-configs/alloy/cumulative.alloy:\n  - {}",
        problems.join("\n  - ")
    );
    assert!(
        read("alloy/cumulative.alloy").contains("temporality: cumulative"),
        "cumulative.alloy: tell how to make the exporter send cumulative temporality"
    );
}

#[test]
fn alloy_checks_catch_mistakes() {
    let src = r#"
// --stability.level=experimental
otelcol.receiver.otlp "a" {
  grpc { endpoint = "0.0.0.0:4318" }
  output { metrics = [otelcol.exporter.prometheus.b.input] }
}
otelcol.exporter.prometheus "b" {
  forward_to = [prometheus.remote_write.c.input]
  not_an_argument = true
}
prometheus.remote_write "c" {
  endpoint { url = sys.env("URL") }
}
otelcol.processor.batch "unused" {
  output { metrics = [otelcol.exporter.otlp.missing.input] }
}
"#;
    let blocks = parse_alloy(src).expect("parses");
    assert_eq!(blocks.len(), 4);
    assert_eq!(
        find_attr(&blocks[0], &["output", "metrics"]).unwrap().refs,
        vec!["otelcol.exporter.prometheus.b.input".to_string()]
    );
    assert!(find_attr(&blocks[2], &["endpoint", "url"])
        .unwrap()
        .refs
        .is_empty());
    let problems = check_alloy_src(src, false).join("\n");
    for expected in [
        "no documented argument `not_an_argument`",
        "references `prometheus.remote_write.c.input`, but `prometheus.remote_write.c` exports [\"receiver\"]",
        "references `otelcol.exporter.otlp.missing.input`, which is no component",
        "nothing sends data to `otelcol.processor.batch.unused`",
        "port 4317",
    ] {
        assert!(problems.contains(expected), "{expected:?} not in:\n{problems}");
    }
    assert!(parse_alloy("a.b \"x\" { y = [1, 2\n").is_err());
    assert!(parse_alloy("a.b \"x\" { y = \"unterminated }\n").is_err());
}
