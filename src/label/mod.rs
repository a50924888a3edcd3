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

use crate::bounded::Evicted;
use crate::config::{Config, FamilyExport, Transform};
use crate::defaults;
use crate::internal::counts::{Bound, Cache, Reject};
use crate::internal::events::{
    ActionHeld, CacheEvicted, LabelNamesCollide, LabelValueTruncated, LineRejected, TransformFailed,
};
use crate::internal::Internal;
use crate::metric::{is_valid_label_name, sanitize_label_name, Metric};
use crate::parse::{CommandState, Event};
use crate::reaction::config::{ActionDef, ReactionConfig};
use crate::reaction::show::{split_key, PendingEntry};
use crate::telemetry::collect::{attrs as sorted_attrs, Attrs};

pub(crate) mod attribution;
mod names;
pub(crate) mod transform;

use attribution::{Recent, SavedMemory, Snapshot, Values};
use names::NameMap;
use transform::{TemplateId, Templates};

/// Attribute keys that are not patterns; a pattern with one of these names is renamed.
const RESERVED: [&str; 3] = ["stream", "filter", "action"];

/// The label name of a pattern: invalid characters become `_`, a leading digit gets a `_`
/// prefix, and `stream`, `filter`, `action` (and names starting with `__`, which Prometheus
/// reserves) get a `pattern_` prefix. Two patterns of a filter may end up with the same
/// name: [`label_names`] makes them unique.
pub(crate) fn label_name(pattern: &str) -> String {
    if RESERVED.contains(&pattern) || pattern.starts_with("__") {
        return format!("pattern_{pattern}");
    }
    if is_valid_label_name(pattern) {
        pattern.to_string()
    } else {
        sanitize_label_name(pattern)
    }
}

/// The label names of a filter's patterns, unique (a series with a label name twice makes
/// Prometheus refuse the whole scrape), decided from the pattern names alone: a pattern
/// whose name is its label name keeps it; the others, in pattern name order, take
/// [`label_name`], or, if a pattern before them has it, that name followed by `_2`, `_3`...
/// (the first free one): `a_b` and `a-b` are labelled `a_b` and `a_b_2`. Returns the names
/// in the order of `patterns`, and the (pattern, label) pairs that were renumbered.
pub(crate) fn label_names(patterns: &[String]) -> (Vec<String>, Vec<(String, String)>) {
    let mut taken: std::collections::HashSet<String> =
        RESERVED.iter().map(|s| s.to_string()).collect();
    let mut names: Vec<Option<String>> = vec![None; patterns.len()];
    for (i, p) in patterns.iter().enumerate() {
        if label_name(p) == *p && taken.insert(p.clone()) {
            names[i] = Some(p.clone());
        }
    }
    let mut order: Vec<usize> = (0..patterns.len()).collect();
    order.sort_by(|a, b| patterns[*a].cmp(&patterns[*b]));
    let mut renamed = Vec::new();
    for i in order {
        if names[i].is_some() {
            continue;
        }
        let base = label_name(&patterns[i]);
        let mut name = base.clone();
        let mut n = 2;
        while taken.contains(&name) {
            name = format!("{base}_{n}");
            n += 1;
        }
        if name != base {
            renamed.push((patterns[i].clone(), name.clone()));
        }
        taken.insert(name.clone());
        names[i] = Some(name);
    }
    (
        names.into_iter().map(Option::unwrap_or_default).collect(),
        renamed,
    )
}

/// `value` cut to at most `max` bytes if it is longer: at the last character boundary
/// that leaves room for [`defaults::TRUNCATION_MARKER`], which ends it.
pub(crate) fn truncate(value: &str, max: usize) -> Option<String> {
    if value.len() <= max {
        return None;
    }
    let marker = defaults::TRUNCATION_MARKER;
    let mut cut = max.saturating_sub(marker.len());
    while !value.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut out = String::with_capacity(cut + marker.len());
    out.push_str(&value[..cut]);
    out.push_str(marker);
    Some(out)
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

/// Where an attribute of a filter's series comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Stream,
    Filter,
    Action,
    /// The value of the filter's pattern at this index (transformed).
    Pattern(usize),
}

#[derive(Debug)]
struct FilterInfo {
    stream: Value,
    filter: Value,
    patterns: Vec<Pattern>,
    /// The attributes of a match with its pattern labels, in key order.
    match_layout: Vec<Slot>,
    /// The attributes of an action (or pending execution) with its pattern labels, in key
    /// order.
    action_layout: Vec<Slot>,
}

/// The attributes of a series without pattern labels, in key order.
const MATCH_BASE: [Slot; 2] = [Slot::Filter, Slot::Stream];
const ACTION_BASE: [Slot; 3] = [Slot::Action, Slot::Filter, Slot::Stream];

/// The attribute order of a filter's series, sorted by key: the SDK stores an attribute set
/// in the order it is given and, when that order is not sorted, a second sorted copy of it
/// (opentelemetry_sdk 0.33 `ValueMap::measure`); given sorted, each series is stored once.
/// Equal keys (two patterns sanitized to the same name) keep their pattern order.
fn layout(base: &[Slot], patterns: &[Pattern]) -> Vec<Slot> {
    let key = |slot: &Slot| match *slot {
        Slot::Stream => "stream",
        Slot::Filter => "filter",
        Slot::Action => "action",
        Slot::Pattern(i) => patterns[i].key.as_str(),
    };
    let mut slots: Vec<Slot> = base.to_vec();
    slots.extend(
        patterns
            .iter()
            .enumerate()
            .filter(|(_, p)| !matches!(p.rule, PatternRule::Drop))
            .map(|(i, _)| Slot::Pattern(i)),
    );
    slots.sort_by(|a, b| key(a).cmp(key(b)));
    slots
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
    filters: NameMap<Arc<str>, Arc<FilterInfo>>,
    actions: NameMap<String, ActionInfo>,
    templates: Templates,
    memory: NameMap<Arc<str>, Recent>,
    phase: Phase,
    hold_until: Option<SystemTime>,
    /// reaction's configuration in use, to label with another exporter configuration
    /// (a reload) without asking reaction again.
    reaction: Option<ReactionConfig>,
}

impl Labeller {
    pub(crate) fn new(config: Arc<Config>) -> Labeller {
        Labeller {
            config,
            filters: NameMap::default(),
            actions: NameMap::default(),
            templates: Templates::new(defaults::TEMPLATE_CACHE, defaults::TEMPLATE_CACHE_BYTES),
            memory: NameMap::default(),
            phase: Phase::Unknown,
            hold_until: None,
            reaction: None,
        }
    }

    /// Label with another exporter configuration from now on (a reload: transforms, export
    /// switches, `hold`, the label value cap). The memory of recent matches is kept, with
    /// its size (`metrics.attribution_memory` is not reloaded); the transforms are compiled
    /// again, their cache starts empty.
    pub(crate) fn set_config(&mut self, config: Arc<Config>, internal: &Internal) {
        self.config = config;
        self.templates = Templates::new(defaults::TEMPLATE_CACHE, defaults::TEMPLATE_CACHE_BYTES);
        if let Some(rc) = self.reaction.take() {
            self.set_reaction_config(&rc, internal);
        }
    }

    /// Use a (new) reaction configuration. Memory of recent matches is kept.
    pub(crate) fn set_reaction_config(&mut self, rc: &ReactionConfig, internal: &Internal) {
        self.filters.clear();
        self.actions.clear();
        if self.reaction.as_ref() != Some(rc) {
            self.reaction = Some(rc.clone());
        }
        for s in &rc.streams {
            for f in &s.filters {
                let (names, renamed) = label_names(&f.patterns);
                for (pattern, label) in &renamed {
                    internal.emit(LabelNamesCollide {
                        filter: &format!("{}.{}", s.name, f.name),
                        pattern,
                        label,
                    });
                }
                let patterns = f
                    .patterns
                    .iter()
                    .zip(names)
                    .map(|(p, name)| Pattern {
                        name: p.clone(),
                        // Shared by every series: cloning it allocates nothing.
                        key: Key::from(Arc::<str>::from(name)),
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
                    .collect::<Vec<_>>();
                let info = Arc::new(FilterInfo {
                    stream: Value::from(Arc::<str>::from(s.name.as_str())),
                    filter: Value::from(Arc::<str>::from(f.name.as_str())),
                    match_layout: layout(&MATCH_BASE, &patterns),
                    action_layout: layout(&ACTION_BASE, &patterns),
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
    /// `lossy`: the line was not valid UTF-8, and its source counted it so: a name that
    /// does not fit is then not counted again (a line counts under one reason at most).
    pub(crate) fn label(
        &mut self,
        time: SystemTime,
        event: &Event,
        internal: &Internal,
        last_try: bool,
        lossy: bool,
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
                    reject(
                        internal,
                        lossy,
                        LineRejected {
                            reason: Reject::UnknownName,
                            line: target,
                            detail: &"filter not in reaction's configuration",
                        },
                    );
                    if export.matches.enabled() {
                        let (s, f) = split_first(target);
                        out.record = Some((
                            Metric::Matches,
                            vec![
                                self.line_kv("filter", f, internal),
                                self.line_kv("stream", s, internal),
                            ],
                        ));
                    }
                    return out;
                };
                if values.len() != info.patterns.len() {
                    if !last_try {
                        out.stale_config = true;
                        return out;
                    }
                    reject(
                        internal,
                        lossy,
                        LineRejected {
                            reason: Reject::PatternMismatch,
                            line: target,
                            detail: &format_args!(
                                "{} values for {} patterns",
                                values.len(),
                                info.patterns.len()
                            ),
                        },
                    );
                    if export.matches.enabled() {
                        out.record = Some((Metric::Matches, self.base(&info, None)));
                    }
                    return out;
                }
                // What the memory dropped is taken with the values (one lookup of the
                // filter's memory per match) and reported after the labels, as before.
                let (values, evicted) = match self.memory.get_mut(target.as_str()) {
                    Some(recent) => (recent.remember(values), recent.take_evicted()),
                    None => {
                        let mut recent = self.new_memory(values.len());
                        let values = recent.remember(values);
                        let evicted = recent.take_evicted();
                        self.memory.insert(target.as_str().into(), recent);
                        (values, evicted)
                    }
                };
                if let FamilyExport::On { extra } = export.matches {
                    out.record = Some((
                        Metric::Matches,
                        match extra {
                            true => self.with_patterns(&info, None, &values, internal),
                            false => self.base(&info, None),
                        },
                    ));
                }
                self.report_evicted(target, evicted, internal);
            }
            Event::Action { target, argv } => {
                if !self.actions.contains_key(target.as_str()) {
                    if !last_try {
                        out.stale_config = true;
                        return out;
                    }
                    reject(
                        internal,
                        lossy,
                        LineRejected {
                            reason: Reject::UnknownName,
                            line: target,
                            detail: &"action not in reaction's configuration",
                        },
                    );
                    if self.held(time, target, internal) {
                        return out;
                    }
                    if export.actions.enabled() {
                        let (s, rest) = split_first(target);
                        let (f, a) = rest.rsplit_once('.').unwrap_or((rest, ""));
                        out.record = Some((
                            Metric::ActionRuns,
                            vec![
                                self.line_kv("action", a, internal),
                                self.line_kv("filter", f, internal),
                                self.line_kv("stream", s, internal),
                            ],
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
                let (info, name) = (action.filter.clone(), action.action.clone());
                let attrs = match extra {
                    true => {
                        let values = self.attribute(target, argv);
                        let attrs = self.with_patterns(&info, Some(name), &values, internal);
                        let filter_target = self.actions[target.as_str()].filter_target.clone();
                        self.report_evictions(&filter_target, internal);
                        attrs
                    }
                    false => self.base(&info, Some(name)),
                };
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
                    // In key order (see `layout`).
                    out.record = Some((
                        Metric::CommandRuns,
                        vec![
                            kv("code", &code),
                            self.line_kv(
                                "command",
                                argv.first().map(String::as_str).unwrap_or(""),
                                internal,
                            ),
                            kv("state", state.as_str()),
                            kv("status", if *ok { "True" } else { "False" }),
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
                        vec![
                            self.line_kv("stream", stream, internal),
                            kv("type", "start"),
                        ],
                    ));
                }
            }
            Event::StreamError { stream, kind } => {
                if export.streams() {
                    out.record = Some((
                        Metric::StreamEvents,
                        vec![
                            self.line_kv("stream", stream, internal),
                            kv("type", kind.as_str()),
                        ],
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

    /// The attribution memory of every filter now, for a checkpoint: taken with the source
    /// position it reaches, so that a restart from that position attributes as this run
    /// would.
    pub(crate) fn memory_snapshot(&self) -> MemorySnapshot {
        MemorySnapshot(
            self.memory
                .iter()
                .map(|(filter, recent)| (filter.clone(), recent.snapshot()))
                .collect(),
        )
    }

    /// Put back the attribution memory a previous run saved (checked when it was read).
    pub(crate) fn restore_memory(&mut self, saved: &[SavedMemory]) {
        for m in saved {
            let recent = Recent::restore(
                self.config.metrics.attribution_memory,
                defaults::ATTRIBUTION_MEMORY_BYTES,
                m,
            );
            self.memory.insert(m.filter.as_str().into(), recent);
        }
    }

    /// An empty memory of recent matches for a filter with `patterns` patterns.
    fn new_memory(&self, patterns: usize) -> Recent {
        Recent::new(
            self.config.metrics.attribution_memory,
            patterns,
            defaults::ATTRIBUTION_MEMORY_BYTES,
        )
    }

    /// The raw pattern values of an action (see [`attribution`]).
    fn attribute(&mut self, target: &str, argv: &[String]) -> Values {
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
        let (target_key, new) = (action.filter_target.clone(), self.new_memory(n));
        let (values, source) = self
            .memory
            .entry(target_key)
            .or_insert(new)
            .attribute(known);
        tracing::trace!(target, ?source, "action attributed");
        values
    }

    /// The attributes of a series without pattern labels, in key order.
    fn base(&self, info: &FilterInfo, action: Option<Value>) -> Vec<KeyValue> {
        let mut v = Vec::with_capacity(3);
        if let Some(a) = action {
            v.push(KeyValue::new("action", a));
        }
        v.push(KeyValue::new("filter", info.filter.clone()));
        v.push(KeyValue::new("stream", info.stream.clone()));
        v
    }

    /// The attributes of a series with its pattern labels (transforms applied, dropped ones
    /// left out), in key order. `values` has one value per pattern (checked by the callers).
    fn with_patterns(
        &mut self,
        info: &FilterInfo,
        action: Option<Value>,
        values: &[Arc<str>],
        internal: &Internal,
    ) -> Vec<KeyValue> {
        let layout = match action {
            Some(_) => &info.action_layout,
            None => &info.match_layout,
        };
        let mut attrs = Vec::with_capacity(layout.len());
        for slot in layout {
            attrs.push(match *slot {
                Slot::Stream => KeyValue::new("stream", info.stream.clone()),
                Slot::Filter => KeyValue::new("filter", info.filter.clone()),
                Slot::Action => match &action {
                    Some(a) => KeyValue::new("action", a.clone()),
                    None => continue,
                },
                Slot::Pattern(i) => {
                    let (p, v) = (&info.patterns[i], &values[i]);
                    let value = match p.rule {
                        // (A dropped pattern has no slot.)
                        PatternRule::Keep | PatternRule::Drop => Value::from(v.clone()),
                        PatternRule::Template(t) => match self.templates.render(t, &p.name, v) {
                            Ok(s) => Value::from(s),
                            Err(e) => {
                                internal.emit(TransformFailed {
                                    pattern: &p.name,
                                    error: &e,
                                });
                                Value::from(v.clone())
                            }
                        },
                    };
                    KeyValue::new(p.key.clone(), self.capped(p.key.as_str(), value, internal))
                }
            });
        }
        attrs
    }

    /// `value`, cut to `metrics.max_label_value_length` (counted and logged) if longer.
    fn capped(&self, label: &str, value: Value, internal: &Internal) -> Value {
        let max = self.config.metrics.max_label_value_length;
        let s = value.as_str();
        match truncate(&s, max) {
            None => value,
            Some(cut) => {
                internal.emit(LabelValueTruncated {
                    label,
                    len: s.len(),
                    max,
                });
                Value::from(cut)
            }
        }
    }

    /// A label whose value was read from a log line (not from reaction's configuration),
    /// cut if it is too long.
    fn line_kv(&self, key: &'static str, value: &str, internal: &Internal) -> KeyValue {
        let max = self.config.metrics.max_label_value_length;
        match truncate(value, max) {
            None => kv(key, value),
            Some(cut) => {
                internal.emit(LabelValueTruncated {
                    label: key,
                    len: value.len(),
                    max,
                });
                KeyValue::new(key, cut)
            }
        }
    }

    /// Report what the bounded caches dropped since the last call (the attribution memory of
    /// `target`, the transforms' cache).
    fn report_evictions(&mut self, target: &str, internal: &Internal) {
        let memory = match self.memory.get_mut(target) {
            Some(r) => r.take_evicted(),
            None => Evicted::default(),
        };
        self.report_evicted(target, memory, internal);
    }

    /// Report what the attribution memory of `target` dropped (`memory`, already taken from
    /// it) and what the transforms' cache dropped since the last call.
    fn report_evicted(&mut self, target: &str, memory: Evicted, internal: &Internal) {
        let transforms = self.templates.take_evicted();
        for (cache, evicted, owner) in [
            (Cache::Attribution, memory, target),
            (Cache::Transform, transforms, "transforms"),
        ] {
            for (bound, entries) in [
                (Bound::Entries, evicted.entries),
                (Bound::Bytes, evicted.bytes),
            ] {
                if entries > 0 {
                    internal.emit(CacheEvicted {
                        cache,
                        bound,
                        entries,
                        owner,
                    });
                }
            }
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
                    let action = Some(Value::from(e.action.clone()));
                    if extra {
                        let n = info.patterns.len();
                        let values: Vec<Arc<str>> = match self.memory.get(target.as_str()) {
                            Some(r) => split_key(&e.key, n, r.tuples()),
                            None => split_key(&e.key, n, std::iter::empty::<&[Arc<str>]>()),
                        }
                        .into_iter()
                        .map(Arc::from)
                        .collect();
                        self.with_patterns(&info, action, &values, internal)
                    } else {
                        self.base(&info, action)
                    }
                }
                None => vec![
                    self.line_kv("action", &e.action, internal),
                    self.line_kv("filter", &e.filter, internal),
                    self.line_kv("stream", &e.stream, internal),
                ],
            };
            let key = sorted_attrs(attrs.iter());
            sums.entry(key).or_insert((attrs, 0)).1 += e.count;
        }
        sums.into_values().collect()
    }
}

/// The attribution memory of every filter at one moment (see
/// [`Labeller::memory_snapshot`]).
#[derive(Debug, Clone, Default)]
pub(crate) struct MemorySnapshot(Vec<(Arc<str>, Snapshot)>);

impl MemorySnapshot {
    /// As the state file holds it, by filter name.
    pub(crate) fn to_saved(&self) -> Vec<SavedMemory> {
        let mut v: Vec<SavedMemory> = self.0.iter().map(|(f, s)| s.to_saved(f)).collect();
        v.sort_by(|a, b| a.filter.cmp(&b.filter));
        v
    }
}

fn kv(key: &'static str, value: &str) -> KeyValue {
    KeyValue::new(key, value.to_string())
}

/// Counts and logs `rejected`, unless the line was lossy (already counted as
/// `invalid_utf8` by its source: a line counts under one reason at most).
fn reject(internal: &Internal, lossy: bool, rejected: LineRejected<'_>) {
    if lossy {
        tracing::debug!(
            reason = rejected.reason.as_str(),
            "line not understood, already counted as invalid_utf8"
        );
    } else {
        internal.emit(rejected);
    }
}

/// Without reaction's configuration: the stream is up to the first dot.
fn split_first(target: &str) -> (&str, &str) {
    target.split_once('.').unwrap_or((target, ""))
}

#[cfg(test)]
mod tests;
