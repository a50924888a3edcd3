//! What one collection of a reader holds, as plain data: sums and gauges keyed by family
//! and attributes. The renderer and the carry-over work on this, not on SDK types.

use std::collections::HashMap;

use opentelemetry::KeyValue;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};

use crate::metric::Metric;

/// Attributes as (key, value) strings, sorted by key.
pub type Attrs = Vec<(String, String)>;
/// A series: its metric and attributes.
pub type SeriesKey = (Metric, Attrs);

/// One collection, as plain data.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Collected {
    /// Integer sums (the counters): deltas on a delta reader. One entry per series (the
    /// SDK gives each attribute set once), zeros left out.
    pub sums: Vec<(SeriesKey, u64)>,
    /// Floating sums (CPU time): deltas on a delta reader.
    pub(crate) sums_f64: HashMap<SeriesKey, f64>,
    /// Gauges: the value observed at this collection.
    pub gauges: HashMap<SeriesKey, f64>,
}

pub(crate) fn attrs<'a>(kvs: impl Iterator<Item = &'a KeyValue>) -> Attrs {
    let mut a: Attrs = kvs
        .map(|kv| (kv.key.as_str().to_string(), kv.value.as_str().into_owned()))
        .collect();
    a.sort_unstable();
    a
}

/// Attributes from (key, value) pairs, sorted by key (for tests).
#[cfg(test)]
pub(crate) fn attrs_of(pairs: &[(&str, &str)]) -> Attrs {
    let mut v: Attrs = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    v.sort();
    v
}

impl Collected {
    /// Take everything out of one `ResourceMetrics`. Instruments not in the metric table
    /// are ignored (there are none).
    pub fn from_resource_metrics(rm: &ResourceMetrics) -> Collected {
        let mut c = Collected::default();
        for scope in rm.scope_metrics() {
            for metric in scope.metrics() {
                let Some(family) = Metric::from_otel_name(metric.name()) else {
                    continue;
                };
                match metric.data() {
                    AggregatedMetrics::U64(MetricData::Sum(s)) => {
                        c.sums.reserve(s.data_points().size_hint().0);
                        for p in s.data_points() {
                            if p.value() > 0 {
                                c.sums.push(((family, attrs(p.attributes())), p.value()));
                            }
                        }
                    }
                    AggregatedMetrics::F64(MetricData::Sum(s)) => {
                        for p in s.data_points() {
                            *c.sums_f64
                                .entry((family, attrs(p.attributes())))
                                .or_default() += p.value();
                        }
                    }
                    AggregatedMetrics::U64(MetricData::Gauge(g)) => {
                        for p in g.data_points() {
                            c.gauges
                                .insert((family, attrs(p.attributes())), p.value() as f64);
                        }
                    }
                    AggregatedMetrics::F64(MetricData::Gauge(g)) => {
                        for p in g.data_points() {
                            c.gauges.insert((family, attrs(p.attributes())), p.value());
                        }
                    }
                    other => {
                        tracing::debug!(name = metric.name(), ?other, "unexpected metric data");
                    }
                }
            }
        }
        c
    }
}

/// Add `from` into `into`.
pub(crate) fn merge_sums(
    into: &mut HashMap<SeriesKey, u64>,
    from: impl IntoIterator<Item = (SeriesKey, u64)>,
) {
    for (k, v) in from {
        // Saturating: a count of u64::MAX plus 2 stays at u64::MAX (issue 8: it wrapped).
        let c = into.entry(k).or_default();
        *c = c.saturating_add(v);
    }
}
