//! Events become (instrument, attributes): reaction's names resolved against its
//! configuration, pattern labels (names sorted, transforms applied), actions attributed to
//! their pattern values, actions replayed at reaction's start held back.
//!
//! Pure over its inputs (event, log time, configurations): no I/O besides its log lines
//! (through `tracing` and the self-monitoring). What it needs from the outside (a refreshed
//! reaction configuration) it asks for in its result.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use opentelemetry::{Key, KeyValue, Value};

use crate::config::{Config, FamilyExport, Transform};
use crate::defaults;
use crate::internal::counts::Reject;
use crate::internal::events::{ActionHeld, LineRejected, TransformFailed};
use crate::internal::Internal;
use crate::metric::{is_valid_label_name, sanitize_label_name, Metric};
use crate::parse::{CommandState, Event};
use crate::reaction::config::{ActionDef, ReactionConfig};
use crate::reaction::show::{split_key, PendingEntry};
use crate::telemetry::collect::{attrs as sorted_attrs, Attrs};

pub(crate) mod attribution;
pub(crate) mod transform;

use attribution::Recent;
use transform::{TemplateId, Templates};

/// Attribute keys that are not patterns; a pattern with one of these names is renamed.
const RESERVED: [&str; 3] = ["stream", "filter", "action"];

/// The label name of a pattern: invalid characters become `_`, a leading digit gets a `_`
/// prefix, and `stream`, `filter`, `action` become `pattern_stream`, ...
pub(crate) fn label_name(pattern: &str) -> String {
    if RESERVED.contains(&pattern) {
        return format!("pattern_{pattern}");
    }
    if is_valid_label_name(pattern) {
        pattern.to_string()
    } else {
        sanitize_label_name(pattern)
    }
}

#[derive(Debug, Clone)]
enum PatternRule {
    Keep,
    Drop,
    Template(TemplateId),
}

#[derive(Debug, Clone)]
struct Pattern {
    name: String,
    key: Key,
    rule: PatternRule,
}

#[derive(Debug)]
struct FilterInfo {
    stream: Value,
    filter: Value,
    patterns: Vec<Pattern>,
}

#[derive(Debug)]
struct ActionInfo {
    filter: Arc<FilterInfo>,
    /// "stream.filter", the key of the filter's memory.
    filter_target: Arc<str>,
    action: Value,
    def: ActionDef,
}

/// The result of labelling one event.
#[derive(Debug, Default)]
pub(crate) struct Labelled {
    /// Add 1 to this counter with these attributes.
    pub record: Option<(Metric, Vec<KeyValue>)>,
    /// reaction (re)started: refresh its configuration and version.
    pub restarted: bool,
    /// A name or the number of values does not fit reaction's configuration: refresh it
    /// and label the event again with `last_try`.
    pub stale_config: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The exporter just started: reaction's state is unknown.
    Unknown,
    Running,
    Stopped,
}

pub(crate) struct Labeller {
    config: Arc<Config>,
    filters: HashMap<Arc<str>, Arc<FilterInfo>>,
    actions: HashMap<String, ActionInfo>,
    templates: Templates,
    memory: HashMap<Arc<str>, Recent>,
    phase: Phase,
    hold_until: Option<SystemTime>,
}

impl Labeller {
    pub(crate) fn new(config: Arc<Config>) -> Labeller {
        Labeller {
            config,
            filters: HashMap::new(),
            actions: HashMap::new(),
            templates: Templates::new(defaults::TEMPLATE_CACHE),
            memory: HashMap::new(),
            phase: Phase::Unknown,
            hold_until: None,
        }
    }

    /// Use a (new) reaction configuration. Memory of recent matches is kept.
    pub(crate) fn set_reaction_config(&mut self, rc: &ReactionConfig) {
        self.filters.clear();
        self.actions.clear();
        for s in &rc.streams {
            for f in &s.filters {
                let patterns = f
                    .patterns
                    .iter()
                    .map(|p| Pattern {
                        name: p.clone(),
                        key: Key::from(label_name(p)),
                        rule: match self.config.transform(&s.name, &f.name, p) {
                            Transform::Keep => PatternRule::Keep,
                            Transform::Drop => PatternRule::Drop,
                            // Syntax was checked when the configuration was loaded.
                            Transform::Template(t) => match self.templates.add(t) {
                                Ok(id) => PatternRule::Template(id),
                                Err(_) => PatternRule::Keep,
                            },
                        },
                    })
                    .collect();
                let info = Arc::new(FilterInfo {
                    stream: Value::from(Arc::<str>::from(s.name.as_str())),
                    filter: Value::from(Arc::<str>::from(f.name.as_str())),
                    patterns,
                });
                let target: Arc<str> = format!("{}.{}", s.name, f.name).into();
                // Names may contain dots: two (stream, filter) pairs can give the same dotted
                // name (`a.b` + `c`, `a` + `b.c`). Such a name resolves to the first pair in
                // sorted order (the configuration is sorted), with a warning.
                for a in &f.actions {
                    match self.actions.entry(format!("{target}.{}", a.name)) {
                        Entry::Occupied(e) => tracing::warn!(
                            name = %e.key(),
                            "two actions of reaction's configuration have the same dotted name; \
                             the first one is used"
                        ),
                        Entry::Vacant(e) => {
                            e.insert(ActionInfo {
                                filter: info.clone(),
                                filter_target: target.clone(),
                                action: Value::from(Arc::<str>::from(a.name.as_str())),
                                def: a.clone(),
                            });
                        }
                    }
                }
                match self.filters.entry(target) {
                    Entry::Occupied(e) => tracing::warn!(
                        name = %e.key(),
                        "two filters of reaction's configuration have the same dotted name; \
                         the first one is used"
                    ),
                    Entry::Vacant(e) => {
                        e.insert(info);
                    }
                }
            }
        }
    }

    /// Label one event logged at `time`. With `last_try` false, an event whose names do not
    /// fit reaction's configuration is returned with `stale_config` and nothing else done.
    pub(crate) fn label(
        &mut self,
        time: SystemTime,
        event: &Event,
        internal: &Internal,
        last_try: bool,
    ) -> Labelled {
        let config = self.config.clone();
        let export = &config.metrics.export;
        let mut out = Labelled::default();
        match event {
            Event::Match { target, values } => {
                let Some(info) = self.filters.get(target.as_str()).cloned() else {
                    if !last_try {
                        out.stale_config = true;
                        return out;
                    }
                    internal.emit(LineRejected {
                        reason: Reject::UnknownName,
                        line: target,
                        detail: &"filter not in reaction's configuration",
                    });
                    if export.matches.enabled() {
                        let (s, f) = split_first(target);
                        out.record =
                            Some((Metric::Matches, vec![kv("stream", s), kv("filter", f)]));
                    }
                    return out;
                };
                if values.len() != info.patterns.len() {
                    if !last_try {
                        out.stale_config = true;
                        return out;
                    }
                    internal.emit(LineRejected {
                        reason: Reject::PatternMismatch,
                        line: target,
                        detail: &format_args!(
                            "{} values for {} patterns",
                            values.len(),
                            info.patterns.len()
                        ),
                    });
                    if export.matches.enabled() {
                        out.record = Some((Metric::Matches, self.base(&info, None)));
                    }
                    return out;
                }
                match self.memory.get_mut(target.as_str()) {
                    Some(recent) => recent.remember(values),
                    None => {
                        let capacity = self.config.metrics.attribution_memory;
                        let mut recent = Recent::new(capacity, values.len());
                        recent.remember(values);
                        self.memory.insert(target.as_str().into(), recent);
                    }
                }
                if let FamilyExport::On { extra } = export.matches {
                    let mut attrs = self.base(&info, None);
                    if extra {
                        self.patterns(&info, values, &mut attrs, internal);
                    }
                    out.record = Some((Metric::Matches, attrs));
                }
            }
            Event::Action { target, argv } => {
                if !self.actions.contains_key(target.as_str()) {
                    if !last_try {
                        out.stale_config = true;
                        return out;
                    }
                    internal.emit(LineRejected {
                        reason: Reject::UnknownName,
                        line: target,
                        detail: &"action not in reaction's configuration",
                    });
                    if self.held(time, target, internal) {
                        return out;
                    }
                    if export.actions.enabled() {
                        let (s, rest) = split_first(target);
                        let (f, a) = rest.rsplit_once('.').unwrap_or((rest, ""));
                        out.record = Some((
                            Metric::ActionRuns,
                            vec![kv("stream", s), kv("filter", f), kv("action", a)],
                        ));
                    }
                    return out;
                }
                if self.held(time, target, internal) {
                    return out;
                }
                let FamilyExport::On { extra } = export.actions else {
                    return out;
                };
                let action = &self.actions[target.as_str()];
                let info = action.filter.clone();
                let mut attrs = self.base(&info, Some(action.action.clone()));
                if extra {
                    let values = self.attribute(target, argv);
                    self.patterns(&info, &values, &mut attrs, internal);
                }
                out.record = Some((Metric::ActionRuns, attrs));
            }
            Event::Command {
                state,
                argv,
                ok,
                code,
            } => {
                match state {
                    CommandState::Start => {
                        self.arm_hold(time);
                        if self.phase != Phase::Running {
                            self.phase = Phase::Running;
                            out.restarted = true;
                        }
                    }
                    CommandState::Stop => self.phase = Phase::Stopped,
                }
                if export.commands() {
                    let code = match (ok, code) {
                        (true, _) => "0".to_string(),
                        (false, Some(c)) => c.to_string(),
                        (false, None) => "N/A".to_string(),
                    };
                    out.record = Some((
                        Metric::CommandRuns,
                        vec![
                            kv("state", state.as_str()),
                            kv("command", argv.first().map(String::as_str).unwrap_or("")),
                            kv("status", if *ok { "True" } else { "False" }),
                            kv("code", &code),
                        ],
                    ));
                }
            }
            Event::StreamStart { stream, .. } => {
                if self.phase != Phase::Running {
                    self.phase = Phase::Running;
                    self.arm_hold(time);
                    out.restarted = true;
                }
                if export.streams() {
                    out.record = Some((
                        Metric::StreamEvents,
                        vec![kv("stream", stream), kv("type", "start")],
                    ));
                }
            }
            Event::StreamError { stream, kind } => {
                if export.streams() {
                    out.record = Some((
                        Metric::StreamEvents,
                        vec![kv("stream", stream), kv("type", kind.as_str())],
                    ));
                }
            }
            Event::Stopping { signal } => {
                tracing::warn!(signal, "reaction is stopping");
                self.phase = Phase::Stopped;
            }
            Event::Plugin { .. } => {}
        }
        out
    }

    fn arm_hold(&mut self, time: SystemTime) {
        let hold = self.config.reaction.hold;
        // `hold` is at most a day (checked at load) and log times are real ones, but the
        // sum is checked all the same: a panic here would stop the ingest.
        if hold > 0 {
            let until = time.checked_add(Duration::from_secs(hold)).unwrap_or(time);
            if self.hold_until.is_none_or(|u| u < until) {
                tracing::info!(
                    hold_seconds = hold,
                    "reaction started: ignoring the actions it replays"
                );
                self.hold_until = Some(until);
            }
        }
    }

    fn held(&self, time: SystemTime, target: &str, internal: &Internal) -> bool {
        let held = self.hold_until.is_some_and(|u| time < u);
        if held {
            internal.emit(ActionHeld { target });
        }
        held
    }

    /// The raw pattern values of an action (see [`attribution`]).
    fn attribute(&mut self, target: &str, argv: &[String]) -> Vec<String> {
        let action = &self.actions[target];
        let n = action.filter.patterns.len();
        let mut known: Vec<Option<String>> = vec![None; n];
        if let Some(pairs) = action.def.extract(argv) {
            for (name, value) in pairs {
                if let Some(i) = action.filter.patterns.iter().position(|p| p.name == name) {
                    known[i] = Some(value);
                }
            }
        }
        let capacity = self.config.metrics.attribution_memory;
        let (values, source) = self
            .memory
            .entry(action.filter_target.clone())
            .or_insert_with(|| Recent::new(capacity, n))
            .attribute(known);
        tracing::trace!(target, ?source, "action attributed");
        values
    }

    fn base(&self, info: &FilterInfo, action: Option<Value>) -> Vec<KeyValue> {
        let mut v = Vec::with_capacity(3 + info.patterns.len());
        v.push(KeyValue::new("stream", info.stream.clone()));
        v.push(KeyValue::new("filter", info.filter.clone()));
        if let Some(a) = action {
            v.push(KeyValue::new("action", a));
        }
        v
    }

    /// Append pattern labels: transforms applied, dropped ones left out.
    fn patterns(
        &mut self,
        info: &FilterInfo,
        values: &[String],
        attrs: &mut Vec<KeyValue>,
        internal: &Internal,
    ) {
        for (p, v) in info.patterns.iter().zip(values) {
            let value = match p.rule {
                PatternRule::Drop => continue,
                PatternRule::Keep => v.clone(),
                PatternRule::Template(t) => match self.templates.render(t, &p.name, v) {
                    Ok(s) => s,
                    Err(e) => {
                        internal.emit(TransformFailed {
                            pattern: &p.name,
                            error: &e,
                        });
                        v.clone()
                    }
                },
            };
            attrs.push(KeyValue::new(p.key.clone(), value));
        }
    }

    /// Label what `reaction show` reports as pending: one gauge value per attribute set
    /// (executions of the same labels are added up).
    pub(crate) fn label_pending(
        &mut self,
        entries: &[PendingEntry],
        internal: &Internal,
    ) -> Vec<(Vec<KeyValue>, u64)> {
        let FamilyExport::On { extra } = self.config.metrics.export.pending else {
            return Vec::new();
        };
        let mut sums: HashMap<Attrs, (Vec<KeyValue>, u64)> = HashMap::new();
        for e in entries {
            let target = format!("{}.{}", e.stream, e.filter);
            let attrs = match self.filters.get(target.as_str()).cloned() {
                Some(info) => {
                    let mut attrs = self.base(&info, Some(Value::from(e.action.clone())));
                    if extra {
                        let n = info.patterns.len();
                        let values = match self.memory.get(target.as_str()) {
                            Some(r) => split_key(&e.key, n, &mut r.tuples()),
                            None => split_key(&e.key, n, &mut std::iter::empty()),
                        };
                        self.patterns(&info, &values, &mut attrs, internal);
                    }
                    attrs
                }
                None => vec![
                    kv("stream", &e.stream),
                    kv("filter", &e.filter),
                    kv("action", &e.action),
                ],
            };
            let key = sorted_attrs(attrs.iter());
            sums.entry(key).or_insert((attrs, 0)).1 += e.count;
        }
        sums.into_values().collect()
    }
}

fn kv(key: &'static str, value: &str) -> KeyValue {
    KeyValue::new(key, value.to_string())
}

/// Without reaction's configuration: the stream is up to the first dot.
fn split_first(target: &str) -> (&str, &str) {
    target.split_once('.').unwrap_or((target, ""))
}

#[cfg(test)]
mod tests;
