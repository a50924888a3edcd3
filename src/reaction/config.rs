//! What the exporter learns from reaction's configuration: streams, filters, the pattern
//! names of each filter (they become metric labels) and the command templates of actions
//! (they let an action's `run` line be attributed to its own match values).
//!
//! The configuration comes either from `reaction test-config` (YAML on stdout) or, when the
//! `reaction` binary is absent, from reaction's own files. Both are read leniently through
//! [`serde_yaml::Value`]: reaction adds keys between versions and an unknown key must never
//! stop the exporter.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use regex::Regex;
use serde_yaml::{Mapping, Value};

use super::ReactionError;

/// reaction's configuration, reduced to what the exporter needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReactionConfig {
    /// Sorted by name.
    pub streams: Vec<StreamDef>,
}

/// One stream of reaction's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StreamDef {
    pub name: String,
    /// Sorted by name.
    pub filters: Vec<FilterDef>,
}

/// One filter of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FilterDef {
    pub name: String,
    /// Pattern names used as `<name>` in the filter's regexes, unique, sorted by name
    /// (reaction orders match values by pattern name).
    pub patterns: Vec<String>,
    /// Sorted by name.
    pub actions: Vec<ActionDef>,
}

/// One action of a filter.
#[derive(Clone)]
pub(crate) struct ActionDef {
    pub name: String,
    /// The argv template with `<pattern>` placeholders; `None` for plugin actions
    /// (`type:` + `options:`), whose run lines cannot be matched against a template.
    pub cmd: Option<Vec<String>>,
    /// `cmd` compiled once against the filter's pattern names, one entry per argument.
    template: Option<Vec<ArgTemplate>>,
}

/// How one argument of an action's command template matches a logged argument.
#[derive(Clone)]
enum ArgTemplate {
    /// No placeholder: the logged argument must be equal.
    Literal(String),
    /// The whole argument is one placeholder, e.g. `"<ip>"`.
    Whole(String),
    /// Placeholders inside literal text, e.g. `"--comment=ban <ip> for <user>"`: an anchored
    /// regex whose capture groups are, in order, the placeholders named in `names`.
    Embedded { re: Regex, names: Vec<String> },
    /// The regex could not be built (it would exceed the regex size limit): never matches.
    Unmatchable(String),
}

impl PartialEq for ArgTemplate {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Literal(a), Self::Literal(b)) => a == b,
            (Self::Whole(a), Self::Whole(b)) => a == b,
            (Self::Embedded { re: a, names: na }, Self::Embedded { re: b, names: nb }) => {
                a.as_str() == b.as_str() && na == nb
            }
            (Self::Unmatchable(a), Self::Unmatchable(b)) => a == b,
            _ => false,
        }
    }
}

impl fmt::Debug for ArgTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Literal(s) => write!(f, "Literal({s:?})"),
            Self::Whole(n) => write!(f, "Whole(<{n}>)"),
            Self::Embedded { re, names } => write!(f, "Embedded({:?}, {names:?})", re.as_str()),
            Self::Unmatchable(s) => write!(f, "Unmatchable({s:?})"),
        }
    }
}

impl fmt::Debug for ActionDef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActionDef")
            .field("name", &self.name)
            .field("cmd", &self.cmd)
            .finish_non_exhaustive()
    }
}

/// Two actions are equal when their names and templates are, the compiled form included
/// (the same `cmd` compiled against different pattern names behaves differently).
impl PartialEq for ActionDef {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.cmd == other.cmd && self.template == other.template
    }
}

impl Eq for ActionDef {}

/// `<name>` with name = `\w+`, as reaction writes patterns in regexes and commands.
fn placeholder_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"<(\w+)>").expect("static regex"))
}

impl ActionDef {
    /// Builds an action and compiles its command template. Only names in `filter_patterns`
    /// count as placeholders; any other `<word>` is literal text.
    pub(crate) fn new(
        name: impl Into<String>,
        cmd: Option<Vec<String>>,
        filter_patterns: &[String],
    ) -> Self {
        let template = cmd.as_ref().map(|argv| {
            argv.iter()
                .map(|arg| compile_arg(arg, filter_patterns))
                .collect()
        });
        ActionDef {
            name: name.into(),
            cmd,
            template,
        }
    }

    /// Given the argv logged by a `run` line, recovers the values of the patterns that appear
    /// in the cmd template: (pattern name, value) pairs sorted by pattern name, each name once.
    ///
    /// Returns `None` when the argv does not fit the template: a different length, a literal
    /// part that differs, a placeholder used twice with different values, or a plugin action
    /// (no template). A template without placeholders that fits gives `Some(vec![])`.
    ///
    /// Placeholders inside an argument are matched lazily, left to right: with two adjacent
    /// placeholders whose values could be split several ways (`<a>-<b>` against `x-y-z`), the
    /// first gets the shortest value. reaction's own values rarely allow such ambiguity.
    pub(crate) fn extract(&self, argv: &[String]) -> Option<Vec<(String, String)>> {
        let template = self.template.as_ref()?;
        if template.len() != argv.len() {
            return None;
        }
        let mut values: BTreeMap<&str, &str> = BTreeMap::new();
        for (tpl, arg) in template.iter().zip(argv) {
            match tpl {
                ArgTemplate::Literal(lit) => {
                    if lit != arg {
                        return None;
                    }
                }
                ArgTemplate::Whole(name) => {
                    if !insert_consistent(&mut values, name, arg) {
                        return None;
                    }
                }
                ArgTemplate::Embedded { re, names } => {
                    let caps = re.captures(arg)?;
                    for (i, name) in names.iter().enumerate() {
                        let value = caps.get(i + 1).map_or("", |m| m.as_str());
                        if !insert_consistent(&mut values, name, value) {
                            return None;
                        }
                    }
                }
                ArgTemplate::Unmatchable(_) => return None,
            }
        }
        Some(
            values
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    }
}

/// Records `name = value`; false when `name` already has another value.
fn insert_consistent<'a>(
    values: &mut BTreeMap<&'a str, &'a str>,
    name: &'a str,
    value: &'a str,
) -> bool {
    match values.insert(name, value) {
        Some(previous) => previous == value,
        None => true,
    }
}

/// Compiles one argument of a command template.
fn compile_arg(arg: &str, patterns: &[String]) -> ArgTemplate {
    let is_pattern = |name: &str| patterns.iter().any(|p| p == name);
    let found: Vec<regex::Captures<'_>> = placeholder_re()
        .captures_iter(arg)
        .filter(|c| is_pattern(&c[1]))
        .collect();
    match found.as_slice() {
        [] => ArgTemplate::Literal(arg.to_owned()),
        [only] if only[0].len() == arg.len() => ArgTemplate::Whole(only[1].to_owned()),
        _ => {
            let mut source = String::from(r"\A(?s:");
            let mut names = Vec::with_capacity(found.len());
            let mut last = 0;
            for caps in &found {
                let whole = caps.get(0).expect("group 0 always matches");
                source.push_str(&regex::escape(&arg[last..whole.start()]));
                source.push_str("(.*?)");
                names.push(caps[1].to_owned());
                last = whole.end();
            }
            source.push_str(&regex::escape(&arg[last..]));
            source.push_str(r")\z");
            match Regex::new(&source) {
                Ok(re) => ArgTemplate::Embedded { re, names },
                Err(err) => {
                    tracing::warn!(argument = arg, error = %err, "cannot compile an action argument template; its run lines will not be attributed");
                    ArgTemplate::Unmatchable(arg.to_owned())
                }
            }
        }
    }
}

/// Pattern names used as `<name>` in a filter regex, skipping named groups `(?P<x>…)` and
/// `(?<x>…)` (an escaped `\(` does not open a group).
fn pattern_names_in(regex: &str, out: &mut BTreeSet<String>) {
    for caps in placeholder_re().captures_iter(regex) {
        let start = caps.get(0).expect("group 0 always matches").start();
        if opens_named_group(&regex[..start]) {
            continue;
        }
        out.insert(caps[1].to_owned());
    }
}

/// Whether `before` ends with an unescaped `(?` or `(?P`.
fn opens_named_group(before: &str) -> bool {
    let rest = before
        .strip_suffix("(?P")
        .or_else(|| before.strip_suffix("(?"));
    match rest {
        // The `(` is escaped when preceded by an odd number of backslashes.
        Some(rest) => rest.bytes().rev().take_while(|&b| b == b'\\').count() % 2 == 0,
        None => false,
    }
}

impl ReactionConfig {
    /// Builds a configuration from its streams, sorted here with their filters and actions
    /// (the labeller resolves dotted names in this order: see `label`).
    pub(crate) fn new(mut streams: Vec<StreamDef>) -> Self {
        streams.sort_by(|a, b| a.name.cmp(&b.name));
        for stream in &mut streams {
            stream.filters.sort_by(|a, b| a.name.cmp(&b.name));
            for filter in &mut stream.filters {
                filter.actions.sort_by(|a, b| a.name.cmp(&b.name));
            }
        }
        ReactionConfig { streams }
    }

    /// From the YAML that `reaction test-config` prints (JSON is accepted too).
    pub(crate) fn from_yaml(text: &str) -> Result<Self, ReactionError> {
        let origin = "reaction's configuration";
        let value = parse_document(text, false, origin)?;
        Self::from_value(&value, origin)
    }

    /// Reads reaction's own configuration directly, for when the `reaction` binary is absent.
    ///
    /// `path` is a file (`.yml`, `.yaml`, `.json`; any other name is read as YAML) or a
    /// directory whose `.yml`/`.yaml`/`.json` files are merged in file-name order: top-level
    /// keys merged (a later file wins for plain values), `streams` and `patterns` unioned (a
    /// stream or pattern defined in two files is an error naming both), `start` and `stop`
    /// concatenated. Hidden files and subdirectories are ignored.
    ///
    /// JSONnet cannot be evaluated without reaction: a `.jsonnet`/`.libsonnet` file given as
    /// `path`, or a `.jsonnet` file in the directory, gives [`ReactionError::Jsonnet`]. A lone
    /// `.libsonnet` in a directory is ignored (it is only ever imported by a `.jsonnet` file).
    pub(crate) fn from_path(path: &Path) -> Result<Self, ReactionError> {
        let io_err = |source| ReactionError::Io {
            path: path.to_owned(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io_err)?;
        let origin = path.display().to_string();
        if !meta.is_dir() {
            if matches!(extension(path).as_deref(), Some("jsonnet" | "libsonnet")) {
                return Err(ReactionError::Jsonnet(path.to_owned()));
            }
            let value = read_file(path)?;
            return Self::from_value(&value, &origin);
        }

        let mut files = Vec::new();
        for entry in std::fs::read_dir(path).map_err(io_err)? {
            let entry = entry.map_err(io_err)?;
            let file = entry.path();
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            if hidden || file.is_dir() {
                continue;
            }
            match extension(&file).as_deref() {
                Some("yml" | "yaml" | "json") => files.push(file),
                Some("jsonnet") => return Err(ReactionError::Jsonnet(file)),
                _ => {}
            }
        }
        files.sort();
        if files.is_empty() {
            return Err(ReactionError::Config(format!(
                "{origin}: no .yml, .yaml or .json file in this directory"
            )));
        }

        let mut merged = Mapping::new();
        let mut streams = Mapping::new();
        // Only a configuration with a `patterns` key restricts placeholders to defined names.
        let mut patterns: Option<Mapping> = None;
        let mut start = Vec::new();
        let mut stop = Vec::new();
        // Which file defined each stream and pattern, for duplicate errors.
        let mut stream_origin: HashMap<String, PathBuf> = HashMap::new();
        let mut pattern_origin: HashMap<String, PathBuf> = HashMap::new();
        for file in &files {
            let map = match read_file(file)? {
                Value::Null => continue,
                Value::Mapping(map) => map,
                _ => {
                    return Err(ReactionError::Config(format!(
                        "{}: the top level is not a mapping",
                        file.display()
                    )))
                }
            };
            for (key, value) in map {
                let key_name = scalar_string(&key).unwrap_or_default();
                match key_name.as_str() {
                    "streams" | "patterns" => {
                        let Some(entries) = mapping_or_null(value) else {
                            return Err(ReactionError::Config(format!(
                                "{}: `{key_name}` is not a mapping",
                                file.display()
                            )));
                        };
                        let is_stream = key_name == "streams";
                        let (target, seen) = if is_stream {
                            (&mut streams, &mut stream_origin)
                        } else {
                            (
                                patterns.get_or_insert_with(Mapping::new),
                                &mut pattern_origin,
                            )
                        };
                        for (name, def) in entries {
                            let name_str = scalar_string(&name).unwrap_or_default();
                            if let Some(first) = seen.get(&name_str) {
                                let (first, second) = (first.clone(), file.clone());
                                return Err(if is_stream {
                                    ReactionError::DuplicateStream {
                                        name: name_str,
                                        first,
                                        second,
                                    }
                                } else {
                                    ReactionError::DuplicatePattern {
                                        name: name_str,
                                        first,
                                        second,
                                    }
                                });
                            }
                            seen.insert(name_str, file.clone());
                            target.insert(name, def);
                        }
                    }
                    "start" | "stop" => {
                        let items = match value {
                            Value::Null => continue,
                            Value::Sequence(items) => items,
                            _ => {
                                return Err(ReactionError::Config(format!(
                                    "{}: `{key_name}` is not a list",
                                    file.display()
                                )))
                            }
                        };
                        if key_name == "start" {
                            start.extend(items);
                        } else {
                            stop.extend(items);
                        }
                    }
                    _ => {
                        if merged.contains_key(&key) {
                            tracing::debug!(key = %key_name, file = %file.display(), "key of reaction's configuration set again by a later file");
                        }
                        merged.insert(key, value);
                    }
                }
            }
        }
        merged.insert("streams".into(), Value::Mapping(streams));
        if let Some(patterns) = patterns {
            merged.insert("patterns".into(), Value::Mapping(patterns));
        }
        merged.insert("start".into(), Value::Sequence(start));
        merged.insert("stop".into(), Value::Sequence(stop));
        Self::from_value(&Value::Mapping(merged), &origin)
    }

    /// Interprets a parsed configuration. Unknown keys are ignored; a wrong type where the
    /// shape matters (`streams` not a mapping) is an error, a wrong type in a detail is
    /// skipped with a warning.
    fn from_value(root: &Value, origin: &str) -> Result<Self, ReactionError> {
        let root = match root {
            Value::Null => return Ok(Self::new(Vec::new())),
            Value::Mapping(map) => map,
            _ => {
                return Err(ReactionError::Config(format!(
                    "{origin}: the top level is not a mapping"
                )))
            }
        };
        let known_patterns: Option<BTreeSet<String>> = match root.get("patterns") {
            Some(Value::Mapping(map)) => Some(map.keys().filter_map(scalar_string).collect()),
            _ => None,
        };
        let streams_map = match root.get("streams") {
            None | Some(Value::Null) => return Ok(Self::new(Vec::new())),
            Some(Value::Mapping(map)) => map,
            Some(_) => {
                return Err(ReactionError::Config(format!(
                    "{origin}: `streams` is not a mapping"
                )))
            }
        };

        let mut streams = Vec::with_capacity(streams_map.len());
        for (stream_name, stream) in streams_map {
            let Some(stream_name) = scalar_string(stream_name) else {
                tracing::warn!("{origin}: skipping a stream whose name is not a string");
                continue;
            };
            let mut filters = Vec::new();
            match stream.get("filters") {
                None | Some(Value::Null) => {}
                Some(Value::Mapping(filters_map)) => {
                    for (filter_name, filter) in filters_map {
                        let Some(filter_name) = scalar_string(filter_name) else {
                            tracing::warn!(stream = %stream_name, "{origin}: skipping a filter whose name is not a string");
                            continue;
                        };
                        filters.push(filter_def(filter_name, filter, known_patterns.as_ref()));
                    }
                }
                Some(_) => {
                    tracing::warn!(stream = %stream_name, "{origin}: `filters` is not a mapping; stream has no filters");
                }
            }
            streams.push(StreamDef {
                name: stream_name,
                filters,
            });
        }
        Ok(Self::new(streams))
    }
}

fn filter_def(
    name: String,
    filter: &Value,
    known_patterns: Option<&BTreeSet<String>>,
) -> FilterDef {
    let mut used = BTreeSet::new();
    match filter.get("regex") {
        Some(Value::Sequence(items)) => {
            for item in items {
                match item.as_str() {
                    Some(re) => pattern_names_in(re, &mut used),
                    None => {
                        tracing::warn!(filter = %name, "a regex of this filter is not a string; ignored")
                    }
                }
            }
        }
        Some(Value::String(re)) => pattern_names_in(re, &mut used),
        None | Some(Value::Null) => {}
        Some(_) => {
            tracing::warn!(filter = %name, "`regex` of this filter is neither a list nor a string; ignored")
        }
    }
    if let Some(known) = known_patterns {
        used.retain(|p| known.contains(p));
    }
    let patterns: Vec<String> = used.into_iter().collect();

    let mut actions = Vec::new();
    match filter.get("actions") {
        Some(Value::Mapping(map)) => {
            for (action_name, action) in map {
                let Some(action_name) = scalar_string(action_name) else {
                    tracing::warn!(filter = %name, "skipping an action whose name is not a string");
                    continue;
                };
                let cmd = match action.get("cmd") {
                    Some(Value::Sequence(argv)) => {
                        let argv: Option<Vec<String>> = argv.iter().map(scalar_string).collect();
                        if argv.is_none() {
                            tracing::warn!(action = %action_name, "`cmd` of this action has a non-scalar argument; its run lines will not be attributed");
                        }
                        argv
                    }
                    Some(Value::String(single)) => Some(vec![single.clone()]),
                    _ => None,
                };
                actions.push(ActionDef::new(action_name, cmd, &patterns));
            }
        }
        None | Some(Value::Null) => {}
        Some(_) => {
            tracing::warn!(filter = %name, "`actions` of this filter is not a mapping; ignored")
        }
    }
    FilterDef {
        name,
        patterns,
        actions,
    }
}

/// A mapping, with null (an empty YAML value) as an empty mapping; None for anything else.
fn mapping_or_null(value: Value) -> Option<Mapping> {
    match value {
        Value::Null => Some(Mapping::new()),
        Value::Mapping(map) => Some(map),
        _ => None,
    }
}

/// A scalar as the string reaction would see (YAML may type `1` or `true` in an argv).
fn scalar_string(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The lowercase extension of a path.
fn extension(path: &Path) -> Option<String> {
    path.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
}

fn read_file(path: &Path) -> Result<Value, ReactionError> {
    let text = std::fs::read_to_string(path).map_err(|source| ReactionError::Io {
        path: path.to_owned(),
        source,
    })?;
    let json = extension(path).as_deref() == Some("json");
    parse_document(&text, json, &path.display().to_string())
}

/// Parses YAML, or JSON with serde_json (`json`), or YAML falling back to JSON for text that
/// looks like JSON (JSON indented with tabs is not valid YAML).
fn parse_document(text: &str, json: bool, origin: &str) -> Result<Value, ReactionError> {
    let yaml_err = |detail: String| ReactionError::Syntax {
        origin: origin.to_owned(),
        detail,
    };
    if json {
        return serde_json::from_str(text).map_err(|e| yaml_err(e.to_string()));
    }
    match serde_yaml::from_str::<Value>(text) {
        Ok(value) => Ok(value),
        Err(yaml) => {
            let trimmed = text.trim_start();
            if trimmed.starts_with('{') || trimmed.starts_with('[') {
                if let Ok(value) = serde_json::from_str::<Value>(text) {
                    return Ok(value);
                }
            }
            Err(yaml_err(yaml.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl ReactionConfig {
        /// The filter of a stream, by their names.
        fn filter(&self, stream: &str, filter: &str) -> Option<&FilterDef> {
            let stream = self.streams.iter().find(|s| s.name == stream)?;
            stream.filters.iter().find(|f| f.name == filter)
        }
    }

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|s| s.to_string()).collect()
    }

    fn pairs(values: &[(&str, &str)]) -> Vec<(String, String)> {
        values
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const DOTTED: &str = r#"
patterns:
  ip: {regex: '(?:\d{1,3}\.){3}\d{1,3}', type: ip, ignore: [127.0.0.1], some_future_key: 1}
  user: {regex: '\S+'}
  ua: {regex: '.*'}
start:
  - [iptables, -w, -N, reaction]
stop: []
state_directory: /var/lib/reaction
concurrency: 0
future_top_level: {anything: [1, 2]}
streams:
  ssh.journal:
    cmd: [journalctl, -fn0, -u, sshd.service]
    future_stream_key: true
    filters:
      failed.login:
        regex:
          - 'authentication failure;.*rhost=<ip>'
          - 'Failed password for <user> from <ip>'
          - 'Invalid user <user> from <ip> port (?P<port>\d+) (?<proto>\w+)<unknown>'
        retry: 3
        retryperiod: 6h
        duplicate: extend
        actions:
          ban:
            cmd: [iptables, -w, -I, reaction, 1, -s, <ip>, -j, DROP]
          unban:
            cmd: [iptables, -w, -D, reaction, 1, -s, <ip>, -j, DROP]
            after: 48h
            onexit: true
  web:
    type: journald
    options: {unit: nginx}
    filters:
      bots:
        regex: '^<ip> .* "<ua>"$'
        actions:
          notify.mail:
            type: mail
            options: {to: admin}
"#;

    #[test]
    fn reads_streams_filters_patterns_and_actions() {
        let cfg = ReactionConfig::from_yaml(DOTTED).unwrap();
        let names: Vec<&str> = cfg.streams.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["ssh.journal", "web"]);

        let filter = cfg.filter("ssh.journal", "failed.login").unwrap();
        // Sorted, unique, and only names defined under `patterns`.
        assert_eq!(filter.patterns, strings(&["ip", "user"]));
        let actions: Vec<&str> = filter.actions.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(actions, ["ban", "unban"]);
        assert_eq!(
            filter.actions[0].cmd.as_deref(),
            Some(
                &strings(&["iptables", "-w", "-I", "reaction", "1", "-s", "<ip>", "-j", "DROP"])[..]
            )
        );

        // A single regex string is accepted; a plugin action has no cmd.
        let bots = cfg.filter("web", "bots").unwrap();
        assert_eq!(bots.patterns, strings(&["ip", "ua"]));
        assert_eq!(bots.actions[0].name, "notify.mail");
        assert_eq!(bots.actions[0].cmd, None);
        assert_eq!(bots.actions[0].extract(&strings(&["anything"])), None);
    }

    #[test]
    fn named_groups_are_not_patterns() {
        let mut found = BTreeSet::new();
        pattern_names_in(
            r"(?P<port>\d+) (?<proto>\w+) <ip> \(?<user>\)? \\(?<esc>x)",
            &mut found,
        );
        // `\(?<user>` is an optional literal paren then a pattern; `\\(?<esc>` is an escaped
        // backslash then a real named group.
        assert_eq!(
            found.into_iter().collect::<Vec<_>>(),
            strings(&["ip", "user"])
        );
    }

    #[test]
    fn without_a_patterns_map_every_placeholder_counts() {
        let yaml = "streams: {s: {cmd: [x], filters: {f: {regex: ['<b> <a> (?P<c>x) <a>']}}}}";
        let cfg = ReactionConfig::from_yaml(yaml).unwrap();
        assert_eq!(cfg.filter("s", "f").unwrap().patterns, strings(&["a", "b"]));
    }

    #[test]
    fn tolerates_odd_shapes_and_reads_json() {
        let json = r#"{"start": [], "streams": {"s": {"cmd": ["x"], "filters": {
            "f": {"regex": ["<ip>", 3], "actions": {"a": {"cmd": ["echo", 1, true, "<ip>"]}, "b": "weird"}},
            "g": "not a mapping"}}}, "patterns": {"ip": {"regex": "x"}}}"#;
        let cfg = ReactionConfig::from_yaml(json).unwrap();
        let f = cfg.filter("s", "f").unwrap();
        assert_eq!(f.patterns, strings(&["ip"]));
        assert_eq!(
            f.actions[0].cmd,
            Some(strings(&["echo", "1", "true", "<ip>"]))
        );
        assert_eq!(f.actions[1].cmd, None);
        let g = cfg.filter("s", "g").unwrap();
        assert!(g.patterns.is_empty() && g.actions.is_empty());

        // JSON indented with tabs is not YAML; it is still read.
        let tabbed = "{\n\t\"streams\": {\n\t\t\"s\": {\"cmd\": [\"x\"]}\n\t}\n}";
        assert_eq!(
            ReactionConfig::from_yaml(tabbed).unwrap().streams[0].name,
            "s"
        );
        assert!(ReactionConfig::from_yaml("").unwrap().streams.is_empty());
    }

    #[test]
    fn structural_errors() {
        assert_eq!(
            ReactionConfig::from_yaml("- a\n").unwrap_err().kind(),
            "config"
        );
        assert_eq!(
            ReactionConfig::from_yaml("streams: [a]")
                .unwrap_err()
                .kind(),
            "config"
        );
        assert_eq!(
            ReactionConfig::from_yaml("streams: {a: [")
                .unwrap_err()
                .kind(),
            "yaml"
        );
    }

    fn action(cmd: &[&str], patterns: &[&str]) -> ActionDef {
        ActionDef::new("a", Some(strings(cmd)), &strings(patterns))
    }

    #[test]
    fn extract_whole_argument_placeholders() {
        let ban = action(&["iptables", "-s", "<ip>", "-j", "DROP"], &["ip"]);
        assert_eq!(
            ban.extract(&strings(&["iptables", "-s", "1.2.3.4", "-j", "DROP"])),
            Some(pairs(&[("ip", "1.2.3.4")]))
        );
        // Values with spaces, quotes and unicode are whole arguments.
        assert_eq!(
            ban.extract(&strings(&["iptables", "-s", "a \"b\" é", "-j", "DROP"])),
            Some(pairs(&[("ip", "a \"b\" é")]))
        );
    }

    #[test]
    fn extract_placeholders_inside_arguments() {
        let a = action(
            &["logger", "--comment=ban <ip> for <user>!", "<user>@<ip>"],
            &["ip", "user"],
        );
        assert_eq!(
            a.extract(&strings(&[
                "logger",
                "--comment=ban 1.2.3.4 for bob smith!",
                "bob smith@1.2.3.4"
            ])),
            Some(pairs(&[("ip", "1.2.3.4"), ("user", "bob smith")]))
        );
        // Regex metacharacters in the literal parts are literal.
        let b = action(&["x", "(<ip>)*.+?"], &["ip"]);
        assert_eq!(
            b.extract(&strings(&["x", "(::1)*.+?"])),
            Some(pairs(&[("ip", "::1")]))
        );
        assert_eq!(b.extract(&strings(&["x", "(::1)a.+?"])), None);
        // Newlines inside values are captured too.
        let c = action(&["x", "v=<ip>;"], &["ip"]);
        assert_eq!(
            c.extract(&strings(&["x", "v=a\nb;"])),
            Some(pairs(&[("ip", "a\nb")]))
        );
    }

    #[test]
    fn extract_repeated_placeholders_must_agree() {
        let a = action(&["x", "<ip>", "--note=<ip>/<ip>"], &["ip"]);
        assert_eq!(
            a.extract(&strings(&["x", "1.2.3.4", "--note=1.2.3.4/1.2.3.4"])),
            Some(pairs(&[("ip", "1.2.3.4")]))
        );
        assert_eq!(
            a.extract(&strings(&["x", "1.2.3.4", "--note=1.2.3.4/5.6.7.8"])),
            None
        );
        assert_eq!(
            a.extract(&strings(&["x", "5.6.7.8", "--note=1.2.3.4/1.2.3.4"])),
            None
        );
    }

    #[test]
    fn extract_mismatches() {
        let a = action(&["iptables", "-s", "<ip>", "--comment=<ip>!"], &["ip"]);
        // Length differs.
        assert_eq!(a.extract(&strings(&["iptables", "-s", "1.2.3.4"])), None);
        assert_eq!(
            a.extract(&strings(&["iptables", "-s", "1", "--comment=1!", "x"])),
            None
        );
        // A literal argument differs.
        assert_eq!(
            a.extract(&strings(&["ip6tables", "-s", "1", "--comment=1!"])),
            None
        );
        // The literal part of an embedded argument differs (anchored at both ends).
        assert_eq!(
            a.extract(&strings(&["iptables", "-s", "1", "--comment=1!x"])),
            None
        );
        assert_eq!(
            a.extract(&strings(&["iptables", "-s", "1", "x--comment=1!"])),
            None
        );
        // A template without placeholders still has to fit.
        let b = action(&["true"], &["ip"]);
        assert_eq!(b.extract(&strings(&["true"])), Some(vec![]));
        assert_eq!(b.extract(&strings(&["false"])), None);
    }

    #[test]
    fn only_filter_patterns_are_placeholders() {
        // `<port>` is not a pattern of this filter: literal text.
        let a = action(&["x", "<ip>:<port>"], &["ip"]);
        assert_eq!(
            a.extract(&strings(&["x", "1.2.3.4:<port>"])),
            Some(pairs(&[("ip", "1.2.3.4")]))
        );
        assert_eq!(a.extract(&strings(&["x", "1.2.3.4:22"])), None);
    }

    #[test]
    fn action_equality_compares_templates() {
        let a = action(&["x", "<ip>"], &["ip"]);
        assert_eq!(a, action(&["x", "<ip>"], &["ip"]));
        assert_ne!(a, action(&["x", "<ip>"], &["user"]));
        assert_ne!(a, action(&["x", "<ip> "], &["ip"]));
        let cfg = ReactionConfig::from_yaml(DOTTED).unwrap();
        assert_eq!(cfg, cfg.clone());
        let dbg = format!("{a:?}");
        assert!(dbg.contains("ActionDef") && dbg.contains("<ip>"), "{dbg}");
    }

    #[test]
    fn extract_through_loaded_config() {
        let cfg = ReactionConfig::from_yaml(DOTTED).unwrap();
        let filter = cfg.filter("ssh.journal", "failed.login").unwrap();
        let ban = &filter.actions[0];
        assert_eq!(ban.name, "ban");
        let argv = strings(&[
            "iptables", "-w", "-I", "reaction", "1", "-s", "10.0.0.1", "-j", "DROP",
        ]);
        assert_eq!(ban.extract(&argv), Some(pairs(&[("ip", "10.0.0.1")])));
        assert_eq!(filter.patterns, strings(&["ip", "user"]));
    }

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn from_path_merges_a_directory_in_file_name_order() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "10-ssh.yml",
            "patterns: {ip: {regex: 'x'}}\nstart: [[a]]\nconcurrency: 1\nstreams:\n  ssh.d:\n    cmd: [x]\n    filters: {f: {regex: ['<ip> <user>']}}\n",
        );
        write(
            dir.path(),
            "20-web.json",
            r#"{"patterns": {"user": {"regex": "y"}}, "start": [["b"]], "concurrency": 2,
               "streams": {"web": {"cmd": ["y"], "filters": {"g": {"regex": ["<user>"]}}}}}"#,
        );
        write(dir.path(), "00-empty.yaml", "");
        write(dir.path(), "README.md", "not read");
        write(dir.path(), ".hidden.yml", "streams: [broken");
        write(dir.path(), "lib.libsonnet", "{}");
        std::fs::create_dir(dir.path().join("sub.yml")).unwrap();

        let cfg = ReactionConfig::from_path(dir.path()).unwrap();
        // Patterns from both files are known, so both names count in the first file's filter.
        assert_eq!(
            cfg.filter("ssh.d", "f").unwrap().patterns,
            strings(&["ip", "user"])
        );
        assert_eq!(cfg.filter("web", "g").unwrap().patterns, strings(&["user"]));
    }

    #[test]
    fn from_path_directory_without_patterns_keeps_every_placeholder() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "a.yml",
            "streams: {s: {cmd: [x], filters: {f: {regex: ['<ip>']}}}}\n",
        );
        write(dir.path(), "b.yml", "stop: [[y]]\n");
        let cfg = ReactionConfig::from_path(dir.path()).unwrap();
        assert_eq!(cfg.filter("s", "f").unwrap().patterns, strings(&["ip"]));
    }

    #[test]
    fn from_path_reads_a_single_file() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "reaction.yml", DOTTED);
        let cfg = ReactionConfig::from_path(&dir.path().join("reaction.yml")).unwrap();
        assert_eq!(cfg, ReactionConfig::from_yaml(DOTTED).unwrap());
    }

    #[test]
    fn duplicate_stream_across_files_names_both() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.yml", "streams: {ssh: {cmd: [x]}}\n");
        write(dir.path(), "b.yaml", "streams: {ssh: {cmd: [y]}}\n");
        let err = ReactionConfig::from_path(dir.path()).unwrap_err();
        match &err {
            ReactionError::DuplicateStream {
                name,
                first,
                second,
            } => {
                assert_eq!(name, "ssh");
                assert_eq!(first, &dir.path().join("a.yml"));
                assert_eq!(second, &dir.path().join("b.yaml"));
            }
            other => panic!("unexpected {other:?}"),
        }
        let text = err.to_string();
        assert!(text.contains("a.yml") && text.contains("b.yaml"), "{text}");
        assert_eq!(err.kind(), "duplicate");

        write(dir.path(), "b.yaml", "patterns: {ip: {}}\n");
        write(dir.path(), "c.yml", "patterns: {ip: {}}\n");
        let err = ReactionConfig::from_path(dir.path()).unwrap_err();
        assert!(
            matches!(err, ReactionError::DuplicatePattern { ref name, .. } if name == "ip"),
            "{err:?}"
        );
    }

    #[test]
    fn jsonnet_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "reaction.jsonnet", "{}");
        let file = dir.path().join("reaction.jsonnet");
        let err = ReactionConfig::from_path(&file).unwrap_err();
        assert!(
            matches!(&err, ReactionError::Jsonnet(p) if p == &file),
            "{err:?}"
        );
        assert_eq!(err.kind(), "jsonnet");
        assert!(err.to_string().contains("JSONnet"), "{err}");
        // In a directory too.
        write(dir.path(), "extra.yml", "streams: {}\n");
        let err = ReactionConfig::from_path(dir.path()).unwrap_err();
        assert!(
            matches!(&err, ReactionError::Jsonnet(p) if p == &file),
            "{err:?}"
        );
        let lib = dir.path().join("x.libsonnet");
        write(dir.path(), "x.libsonnet", "{}");
        assert!(matches!(
            ReactionConfig::from_path(&lib),
            Err(ReactionError::Jsonnet(_))
        ));
    }

    #[test]
    fn from_path_io_and_empty_directory_errors() {
        let dir = tempfile::tempdir().unwrap();
        let err = ReactionConfig::from_path(&dir.path().join("missing")).unwrap_err();
        assert_eq!(err.kind(), "io");
        let err = ReactionConfig::from_path(dir.path()).unwrap_err();
        assert_eq!(err.kind(), "config");
        write(dir.path(), "bad.json", "{\"streams\": ");
        let err = ReactionConfig::from_path(dir.path()).unwrap_err();
        assert_eq!(err.kind(), "yaml");
        assert!(err.to_string().contains("bad.json"), "{err}");
    }
}
