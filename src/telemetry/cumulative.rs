//! The reader behind `/metrics/otel`: running totals ("cumulative" counters) of every
//! instrument of the provider, with only the low-cardinality attributes and the pattern
//! attributes asked for, each instrument capped at the cardinality limit.
//!
//! Why the totals are kept here instead of by a reader of cumulative temporality with SDK
//! views dropping the pattern values: the SDK applies a provider's views to every reader of
//! it (opentelemetry_sdk 0.33, `pipeline.rs`: `Pipelines::new` gives each reader's pipeline
//! the same `views`, and a view sees the instrument, not the reader), so a view that drops
//! the IPs for this endpoint would drop them from `/metrics` and OTLP too, and a cumulative
//! reader without one would keep every IP series it ever saw, forever. So this reader has
//! delta temporality (each collection empties the SDK's maps) and [`Cumulative::fold`]
//! adds what it collects, projected on the kept attributes, into totals that only ever hold
//! kept series: bounded by design, whatever the SDK saw. Folds happen at every scrape and,
//! so that nothing piles up in the SDK while nobody scrapes, every
//! `defaults::OTEL_ENDPOINT_FOLD_INTERVAL`.
//!
//! A fold never takes anything from another reader: `/metrics` and the OTLP push have their
//! own. Totals only grow, so any number of scrapers see the same counts; they start at 0
//! when the exporter starts, with that time as their start (`_created`) time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use opentelemetry::KeyValue;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};

use super::collect::{Attrs, SeriesKey};
use super::observed::Observed;
use super::SharedReader;
use crate::internal::counts::Reader;
use crate::internal::events::CardinalityOverflow;
use crate::internal::Internal;
use crate::metric::{Metric, OVERFLOW_KEY};

/// What `/metrics/otel` shows: the totals, the gauges of the latest fold, the resource.
#[derive(Debug)]
pub struct Totals {
    /// Integer counters (events): running totals.
    pub(crate) ints: HashMap<SeriesKey, u64>,
    /// Floating counters (CPU time): running totals.
    pub(crate) floats: HashMap<SeriesKey, f64>,
    /// Gauges: the values of the latest fold (pattern values dropped are summed over).
    pub(crate) gauges: HashMap<SeriesKey, f64>,
    /// The resource's attributes (for `target_info`), sorted by key.
    pub(crate) resource: Attrs,
    /// When the totals started (the exporter's start): every counter's created time.
    pub(crate) start: SystemTime,
    /// Counter series per metric, the overflow series not included.
    pub(super) series: HashMap<Metric, usize>,
}

/// The reader of `/metrics/otel` and its totals. See the module documentation.
pub struct Cumulative {
    reader: SharedReader,
    /// Pattern attribute keys kept (as the attributes name them: sanitized label names).
    keep: Vec<String>,
    /// Counter series per metric before the overflow series takes the rest.
    /// (`metrics.cardinality_limit`, which a reload may change.)
    limit: AtomicUsize,
    internal: Arc<Internal>,
    totals: Mutex<Totals>,
}

impl Cumulative {
    /// `reader` must be a delta reader of the provider; `keep`: the pattern attribute keys
    /// kept; `limit`: series per metric.
    pub(crate) fn new(
        reader: SharedReader,
        keep: Vec<String>,
        limit: usize,
        internal: Arc<Internal>,
    ) -> Cumulative {
        Cumulative {
            reader,
            keep,
            limit: AtomicUsize::new(limit.max(1)),
            internal,
            totals: Mutex::new(Totals::default()),
        }
    }

    /// Series per metric from the next fold on (a reload): series past a lower limit stay,
    /// new ones go to the overflow series.
    pub(crate) fn set_limit(&self, limit: usize) {
        self.limit.store(limit.max(1), Ordering::Relaxed);
    }

    /// Show `resource` in `target_info` from now on (a reload of the resource; the
    /// providers keep the one they were built with).
    pub(crate) fn set_resource(&self, resource: &opentelemetry_sdk::Resource) {
        self.totals.lock().expect("cumulative totals").resource = resource
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
    }

    /// Collect the reader and add what it holds into the totals.
    pub fn fold(&self) {
        self.fold_then(|_| ());
    }

    /// Fold, then run `f` on the totals (under their lock: scrapes see one state).
    pub fn fold_then<R>(&self, f: impl FnOnce(&Totals) -> R) -> R {
        let mut totals = self.totals.lock().expect("cumulative totals");
        let (collections, error) = self.reader.collect();
        if let Some(e) = error {
            tracing::error!("collecting metrics for /metrics/otel failed: {e}");
        }
        // The providers' resource, unless a reload set another.
        if totals.resource.is_empty() {
            if let Some(c) = collections.first() {
                totals.resource = (c.rm.resource().iter())
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
            }
        }
        // Every collection runs every gauge's callback: what it did not see is gone.
        totals.gauges.clear();
        let mut overflowed = 0;
        for c in &collections {
            overflowed += self.add(&mut totals, &c.rm, &c.observed, c.retired);
        }
        drop(collections);
        if overflowed > 0 {
            self.internal.emit(CardinalityOverflow {
                reader: Reader::Cumulative,
                events: overflowed,
            });
        }
        f(&totals)
    }

    /// Add a collection (its sums only if `retired`); returns the events that went to an
    /// overflow series. Straight from the SDK's data, each point reduced to its kept
    /// attributes before anything is copied: a fold of many IP series allocates only for the
    /// few series they fold into.
    fn add(
        &self,
        totals: &mut Totals,
        rm: &ResourceMetrics,
        observed: &Observed,
        retired: bool,
    ) -> u64 {
        let mut overflowed = 0;
        for scope in rm.scope_metrics() {
            for metric in scope.metrics() {
                let Some(m) = Metric::from_otel_name(metric.name()) else {
                    continue;
                };
                match metric.data() {
                    AggregatedMetrics::U64(MetricData::Sum(s)) => {
                        for p in s.data_points().filter(|p| p.value() > 0) {
                            let key = self.project(m, p.attributes());
                            if self.add_one(totals, key, p.value(), |t| &mut t.ints) {
                                overflowed += p.value();
                            }
                        }
                    }
                    AggregatedMetrics::F64(MetricData::Sum(s)) => {
                        for p in s.data_points() {
                            let key = self.project(m, p.attributes());
                            self.add_one(totals, key, p.value(), |t| &mut t.floats);
                        }
                    }
                    // A retired provider's gauges are not current.
                    AggregatedMetrics::U64(MetricData::Gauge(_))
                    | AggregatedMetrics::F64(MetricData::Gauge(_))
                        if retired => {}
                    AggregatedMetrics::U64(MetricData::Gauge(g)) => {
                        // Not what another reader's collection observed (see
                        // `telemetry::observed`).
                        for p in g
                            .data_points()
                            .filter(|p| observed.keeps(m, p.attributes()))
                        {
                            let key = self.project(m, p.attributes());
                            *totals.gauges.entry(key).or_default() += p.value() as f64;
                        }
                    }
                    AggregatedMetrics::F64(MetricData::Gauge(g)) => {
                        for p in g.data_points() {
                            let key = self.project(m, p.attributes());
                            *totals.gauges.entry(key).or_default() += p.value();
                        }
                    }
                    other => {
                        tracing::debug!(name = metric.name(), ?other, "unexpected metric data");
                    }
                }
            }
        }
        overflowed
    }

    /// Add `v` to the series `key` of the map `map` picks, or to its metric's overflow
    /// series when the metric has `limit` series already. Returns whether it went to an
    /// overflow series (the SDK's or ours).
    fn add_one<V>(
        &self,
        totals: &mut Totals,
        key: SeriesKey,
        v: V,
        map: impl Fn(&mut Totals) -> &mut HashMap<SeriesKey, V>,
    ) -> bool
    where
        V: std::ops::AddAssign + Default + Copy,
    {
        let overflow = key.1.is_overflow();
        if let Some(t) = map(totals).get_mut(&key) {
            *t += v;
            return overflow;
        }
        if overflow {
            map(totals).insert(key, v);
            return true;
        }
        let n = totals.series.entry(key.0).or_default();
        if *n >= self.limit.load(Ordering::Relaxed) {
            let key = (key.0, Attrs::overflow());
            *map(totals).entry(key).or_default() += v;
            return true;
        }
        *n += 1;
        map(totals).insert(key, v);
        false
    }

    /// The series of a point on this endpoint: a metric with pattern attributes keeps its
    /// fixed ones, the kept patterns and the overflow marker; the others keep everything.
    fn project<'a>(&self, m: Metric, kvs: impl Iterator<Item = &'a KeyValue>) -> SeriesKey {
        let spec = m.spec();
        let attrs: Attrs = super::packed::pairs(kvs)
            .filter(|(k, _)| {
                !spec.patterns
                    || spec.attributes.contains(k)
                    || *k == OVERFLOW_KEY
                    || self.keep.iter().any(|p| p == k)
            })
            .collect();
        (m, attrs)
    }

    /// Fold every `every` until dropped (aborted): keeps the SDK's delta maps small while
    /// nobody scrapes.
    pub(crate) async fn fold_every(self: Arc<Self>, every: std::time::Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let me = self.clone();
            // A collect of many series takes a while: not on the runtime's threads.
            let _ = tokio::task::spawn_blocking(move || me.fold()).await;
        }
    }
}

impl Default for Totals {
    fn default() -> Self {
        Totals {
            ints: HashMap::new(),
            floats: HashMap::new(),
            gauges: HashMap::new(),
            resource: Attrs::new(),
            start: SystemTime::now(),
            series: HashMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_sdk::Resource;

    use crate::telemetry::Telemetry;

    fn setup(keep: &[&str], limit: usize) -> (Telemetry, Cumulative, Arc<Internal>) {
        let internal = Arc::new(Internal::new());
        let reader = SharedReader::delta();
        let telemetry = Telemetry::new_with(
            2000,
            Resource::builder_empty()
                .with_attribute(KeyValue::new("service.version", "9.9"))
                .build(),
            true,
            None,
            Some(reader.clone()),
            internal.clone(),
        );
        let c = Cumulative::new(
            reader,
            keep.iter().map(|s| s.to_string()).collect(),
            limit,
            internal.clone(),
        );
        (telemetry, c, internal)
    }

    fn kv(pairs: &[(&'static str, &str)]) -> Vec<KeyValue> {
        pairs
            .iter()
            .map(|(k, v)| KeyValue::new(*k, v.to_string()))
            .collect()
    }

    use crate::telemetry::collect::attrs_of as a;

    #[test]
    fn totals_only_grow_drop_unkept_patterns_and_see_the_resource() {
        let (t, c, _) = setup(&[], 100);
        let m = |ip| kv(&[("stream", "s"), ("filter", "f"), ("ip", ip), ("user", "u")]);
        t.instruments().add(Metric::Matches, 2, &m("1.1.1.1"));
        t.instruments().add(Metric::Matches, 3, &m("2.2.2.2"));
        let key = (Metric::Matches, a(&[("stream", "s"), ("filter", "f")]));
        assert_eq!(c.fold_then(|t| t.ints[&key]), 5);
        // A fold with nothing new changes nothing: every scraper sees the same.
        assert_eq!(c.fold_then(|t| t.ints[&key]), 5);
        t.instruments().add(Metric::Matches, 1, &m("3.3.3.3"));
        c.fold_then(|totals| {
            assert_eq!(totals.ints[&key], 6);
            assert_eq!(
                totals
                    .ints
                    .keys()
                    .filter(|k| k.0 == Metric::Matches)
                    .count(),
                1,
                "no IP series: {:?}",
                totals.ints
            );
            assert_eq!(totals.resource.get("service.version"), Some("9.9"));
        });
    }

    #[test]
    fn kept_patterns_stay_and_the_limit_sends_the_rest_to_overflow() {
        let (t, c, internal) = setup(&["ip"], 2);
        for (ip, n) in [("a", 1), ("b", 2), ("c", 4), ("d", 8)] {
            t.instruments().add(
                Metric::Matches,
                n,
                &kv(&[("stream", "s"), ("filter", "f"), ("ip", ip), ("user", "u")]),
            );
        }
        c.fold_then(|totals| {
            let matches: HashMap<&Attrs, u64> = totals
                .ints
                .iter()
                .filter(|(k, _)| k.0 == Metric::Matches)
                .map(|(k, v)| (&k.1, *v))
                .collect();
            assert_eq!(matches.len(), 3, "{matches:?}");
            assert_eq!(matches.values().sum::<u64>(), 15);
            let overflow = a(&[(OVERFLOW_KEY, "true")]);
            // Two IPs have their series, the other two went to the overflow series (the
            // HashMap order of the SDK decides which).
            assert!(matches[&overflow] >= 3, "{matches:?}");
        });
        let mut counted = 0;
        internal.observe(
            crate::internal::Counter::CardinalityOverflows,
            &mut |n, at| {
                if at.iter().any(|(_, v)| *v == "cumulative") {
                    counted += n;
                }
            },
        );
        assert!(counted >= 3, "{counted}");
    }

    #[test]
    fn gauges_are_current_and_summed_over_dropped_patterns() {
        let (t, c, _) = setup(&[], 10);
        *t.gauges.pending.lock().unwrap() = vec![
            (
                kv(&[
                    ("stream", "s"),
                    ("filter", "f"),
                    ("action", "a"),
                    ("ip", "1"),
                ]),
                2,
            ),
            (
                kv(&[
                    ("stream", "s"),
                    ("filter", "f"),
                    ("action", "a"),
                    ("ip", "2"),
                ]),
                3,
            ),
        ];
        let key = (
            Metric::PendingActions,
            a(&[("stream", "s"), ("filter", "f"), ("action", "a")]),
        );
        assert_eq!(c.fold_then(|t| t.gauges[&key]), 5.0);
        t.gauges.pending.lock().unwrap().clear();
        assert_eq!(c.fold_then(|t| t.gauges.get(&key).copied()), None);
    }
}
