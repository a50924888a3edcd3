//! What the OTLP exporter has collected and never tried to send. Exports are merged in per
//! series (delta sums add up, keeping the earliest start; cumulative sums and gauges keep the
//! latest point), so a collector outage loses nothing: the next successful export carries
//! everything. Only points never attempted are merged: a request that may have reached the
//! receiver is kept apart and re-sent identical (see `queue`), because merging it into
//! newer deltas would count it twice behind a `deltatocumulative` processor that had
//! processed it. Memory is bounded: past `limit` series per metric, new delta sum series are
//! added into the metric's overflow series (`otel.metric.overflow=true`: their events are
//! still counted) and new gauge and cumulative series are dropped (the next export that
//! fits sends their current value); [`MergeStats`] says how much of each, for the
//! self-monitoring. Sending splits the buffer into requests under a size.

use std::collections::{BTreeMap, HashMap};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point, AggregationTemporality, DataPointFlags, Gauge, Metric,
    NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

use crate::metric::OVERFLOW_KEY;

pub(crate) type PointKey = Vec<(String, String)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    DeltaSum,
    /// Cumulative sums and gauges: the latest point wins.
    Latest,
}

#[derive(Debug)]
struct Entry {
    /// The metric without its points.
    template: Metric,
    kind: Kind,
    points: HashMap<PointKey, NumberDataPoint>,
}

/// What merging one export did that the self-monitoring counts.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MergeStats {
    /// Events counted in an overflow series instead of their own: the value of the delta
    /// sum points this buffer added into a metric's overflow series past its limit, and
    /// what the SDK's overflow series (the instrument's own limit) gained since the
    /// previous export.
    pub(crate) overflow_events: u64,
    /// Gauge and cumulative sum points not kept past the limit.
    pub(crate) dropped_points: u64,
}

/// The points collected and not delivered yet. See the module documentation.
#[derive(Debug)]
pub(crate) struct UnsentBuffer {
    resource: Option<Resource>,
    schema_url: String,
    scopes: BTreeMap<String, (Option<InstrumentationScope>, BTreeMap<String, Entry>)>,
    limit: usize,
    /// The last value of each cumulative metric's SDK overflow series, to count what it
    /// gains from one export to the next.
    sdk_overflow_seen: HashMap<String, u64>,
}

impl UnsentBuffer {
    /// At most `limit` series per metric are kept.
    pub(crate) fn new(limit: usize) -> UnsentBuffer {
        UnsentBuffer {
            resource: None,
            schema_url: String::new(),
            scopes: BTreeMap::new(),
            limit: limit.max(1),
            sdk_overflow_seen: HashMap::new(),
        }
    }

    /// Number of series held.
    pub(crate) fn series(&self) -> usize {
        self.scopes
            .values()
            .flat_map(|(_, m)| m.values())
            .map(|e| e.points.len())
            .sum()
    }

    /// Each sum point held, with its metric's name and whether it is a delta.
    pub(crate) fn for_each_sum_point(&self, mut f: impl FnMut(&str, bool, &NumberDataPoint)) {
        for (_, metrics) in self.scopes.values() {
            for (name, entry) in metrics {
                let delta = match &entry.template.data {
                    Some(Data::Sum(_)) => entry.kind == Kind::DeltaSum,
                    _ => continue,
                };
                for p in entry.points.values() {
                    f(name, delta, p);
                }
            }
        }
    }

    /// At most `limit` series per metric from now on: series past a lower one stay, new
    /// ones go to the overflow series.
    pub(crate) fn set_limit(&mut self, limit: usize) {
        self.limit = limit.max(1);
    }

    /// Merge one export (or a request that failed to send) in.
    pub(crate) fn merge(&mut self, req: ExportMetricsServiceRequest) -> MergeStats {
        let mut stats = MergeStats::default();
        for rm in req.resource_metrics {
            if rm.resource.is_some() {
                self.resource = rm.resource;
            }
            self.schema_url = rm.schema_url;
            for sm in rm.scope_metrics {
                let name = sm
                    .scope
                    .as_ref()
                    .map(|s| s.name.clone())
                    .unwrap_or_default();
                let scope = self
                    .scopes
                    .entry(name)
                    .or_insert_with(|| (sm.scope.clone(), BTreeMap::new()));
                for mut m in sm.metrics {
                    let sum = matches!(m.data, Some(Data::Sum(_)));
                    let (kind, points) = match m.data.take() {
                        Some(Data::Sum(s)) => {
                            let delta =
                                s.aggregation_temporality == AggregationTemporality::Delta as i32;
                            let kind = if delta { Kind::DeltaSum } else { Kind::Latest };
                            m.data = Some(Data::Sum(Sum {
                                data_points: Vec::new(),
                                ..s.clone()
                            }));
                            (kind, s.data_points)
                        }
                        Some(Data::Gauge(g)) => {
                            m.data = Some(Data::Gauge(Gauge {
                                data_points: Vec::new(),
                            }));
                            (Kind::Latest, g.data_points)
                        }
                        other => {
                            tracing::debug!(name = m.name, ?other, "OTLP: unexpected data kind");
                            continue;
                        }
                    };
                    let name = m.name.clone();
                    let entry = scope.1.entry(name.clone()).or_insert_with(|| Entry {
                        template: m,
                        kind,
                        points: HashMap::new(),
                    });
                    for p in points {
                        if sum && is_overflow(&p.attributes) {
                            stats.overflow_events +=
                                sdk_overflow_gain(&mut self.sdk_overflow_seen, &name, kind, &p);
                        }
                        merge_point(entry, p, self.limit, &mut stats);
                    }
                }
            }
        }
        stats
    }

    /// Take everything out as requests of at most about `max_bytes` each (encoded), in a
    /// stable order (scope, metric, attributes), each with its number of points. A gauge
    /// point flagged "no recorded value" (a vanished series, see `gauges`) travels alone in
    /// its own `Metric` message after the metric's live points: the Collector's
    /// `prometheus` exporter stops reading a metric's points at the first flagged one
    /// (contrib `exporter/prometheusexporter/accumulator.go`, `return 0` after
    /// `registeredMetrics.Delete`), so several flagged points in one message would remove
    /// only the first series.
    pub(crate) fn take_requests(
        &mut self,
        max_bytes: usize,
    ) -> Vec<(ExportMetricsServiceRequest, u64)> {
        let resource = self.resource.clone();
        let schema_url = self.schema_url.clone();
        let base = ResourceMetrics {
            resource,
            scope_metrics: Vec::new(),
            schema_url,
        };
        let base_len = base.encoded_len() + 16;
        let mut out = Vec::new();
        let mut current = base.clone();
        let mut size = base_len;
        let mut points_in = 0u64;
        for (_, (scope, metrics)) in std::mem::take(&mut self.scopes) {
            let scope_len = scope.as_ref().map_or(0, |s| s.encoded_len()) + 16;
            for (_, entry) in metrics {
                let metric_len = entry.template.encoded_len() + 16;
                let mut points: Vec<(PointKey, NumberDataPoint)> =
                    entry.points.into_iter().collect();
                // Live points first, then the flagged ones; by attributes within each.
                points.sort_unstable_by(|a, b| {
                    (no_recorded_value(&a.1), &a.0).cmp(&(no_recorded_value(&b.1), &b.0))
                });
                for (_, p) in points {
                    let alone = no_recorded_value(&p);
                    let p_len = p.encoded_len() + 8;
                    let (has_scope, has_metric) = last_open(&current, &scope, &entry.template);
                    let has_metric = has_metric && !alone;
                    let mut need = p_len;
                    if !has_metric {
                        need += metric_len;
                    }
                    if !has_scope {
                        need += scope_len;
                    }
                    if size + need > max_bytes && !current.scope_metrics.is_empty() {
                        out.push((
                            request(std::mem::replace(&mut current, base.clone())),
                            std::mem::take(&mut points_in),
                        ));
                        size = base_len;
                        need = p_len + metric_len + scope_len;
                    }
                    push_point(&mut current, &scope, &entry.template, p, alone);
                    // A flagged point closes its message: the next point opens another.
                    size += need;
                    points_in += 1;
                }
            }
        }
        if !current.scope_metrics.is_empty() {
            out.push((request(current), points_in));
        }
        out
    }
}

/// Whether a point carries the "no recorded value" flag.
pub(crate) fn no_recorded_value(p: &NumberDataPoint) -> bool {
    p.flags & DataPointFlags::NoRecordedValueMask as u32 != 0
}

/// What a point of the SDK's overflow series adds to the events counted there: its value
/// for a delta sum, its increase since the previous export (`seen`, per metric) for a
/// cumulative one.
fn sdk_overflow_gain(
    seen: &mut HashMap<String, u64>,
    metric: &str,
    kind: Kind,
    p: &NumberDataPoint,
) -> u64 {
    let Some(number_data_point::Value::AsInt(v)) = p.value else {
        return 0;
    };
    let v = v.max(0) as u64;
    match kind {
        Kind::DeltaSum => v,
        Kind::Latest => {
            // Only ever up: a failed request merged back carries an older value.
            let last = seen.entry(metric.to_string()).or_default();
            let gain = v.saturating_sub(*last);
            *last = (*last).max(v);
            gain
        }
    }
}

fn request(rm: ResourceMetrics) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![rm],
    }
}

/// Whether the request's last scope is `scope` and its last metric is `template`'s.
fn last_open(
    rm: &ResourceMetrics,
    scope: &Option<InstrumentationScope>,
    template: &Metric,
) -> (bool, bool) {
    match rm.scope_metrics.last() {
        Some(sm) if sm.scope == *scope => (
            true,
            sm.metrics.last().is_some_and(|m| m.name == template.name),
        ),
        _ => (false, false),
    }
}

/// Add `p` to the last metric message if it is `template`'s, else to a new one (always a
/// new one when `alone`).
fn push_point(
    rm: &mut ResourceMetrics,
    scope: &Option<InstrumentationScope>,
    template: &Metric,
    p: NumberDataPoint,
    alone: bool,
) {
    let (has_scope, has_metric) = last_open(rm, scope, template);
    let has_metric = has_metric
        && !alone
        && !rm
            .scope_metrics
            .last()
            .and_then(|sm| sm.metrics.last())
            .is_some_and(|m| match &m.data {
                Some(Data::Gauge(g)) => g.data_points.iter().any(no_recorded_value),
                _ => false,
            });
    if !has_scope {
        rm.scope_metrics.push(ScopeMetrics {
            scope: scope.clone(),
            metrics: Vec::new(),
            schema_url: String::new(),
        });
    }
    let sm = rm.scope_metrics.last_mut().expect("scope pushed");
    if !has_metric {
        sm.metrics.push(template.clone());
    }
    let m = sm.metrics.last_mut().expect("metric pushed");
    match m.data.as_mut() {
        Some(Data::Sum(s)) => s.data_points.push(p),
        Some(Data::Gauge(g)) => g.data_points.push(p),
        _ => {}
    }
}

fn merge_point(entry: &mut Entry, p: NumberDataPoint, limit: usize, stats: &mut MergeStats) {
    let key = point_key(&p.attributes);
    if let Some(old) = entry.points.get_mut(&key) {
        combine(entry.kind, old, p);
        return;
    }
    let overflow = key.len() == 1 && key[0].0 == OVERFLOW_KEY;
    if entry.points.len() < limit || overflow {
        entry.points.insert(key, p);
        return;
    }
    match entry.kind {
        Kind::DeltaSum => {
            if let Some(number_data_point::Value::AsInt(v)) = p.value {
                stats.overflow_events += v.max(0) as u64;
            }
            let okey = vec![(OVERFLOW_KEY.to_string(), "true".to_string())];
            let mut op = p;
            op.attributes = vec![KeyValue {
                key: OVERFLOW_KEY.into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::BoolValue(true)),
                }),
                ..Default::default()
            }];
            match entry.points.get_mut(&okey) {
                Some(old) => combine(entry.kind, old, op),
                None => {
                    entry.points.insert(okey, op);
                }
            }
        }
        Kind::Latest => stats.dropped_points += 1,
    }
}

/// Combine `new` into `old` (an older point of the same series).
fn combine(kind: Kind, old: &mut NumberDataPoint, new: NumberDataPoint) {
    match kind {
        Kind::DeltaSum => {
            use number_data_point::Value::{AsDouble, AsInt};
            old.value = match (old.value, new.value) {
                (Some(AsInt(a)), Some(AsInt(b))) => Some(AsInt(a.saturating_add(b))),
                (Some(AsDouble(a)), Some(AsDouble(b))) => Some(AsDouble(a + b)),
                (a, None) => a,
                (_, b) => b,
            };
            old.start_time_unix_nano = old.start_time_unix_nano.min(new.start_time_unix_nano);
            old.time_unix_nano = old.time_unix_nano.max(new.time_unix_nano);
        }
        Kind::Latest => {
            if new.time_unix_nano >= old.time_unix_nano {
                *old = new;
            }
        }
    }
}

fn is_overflow(attrs: &[KeyValue]) -> bool {
    attrs.len() == 1 && attrs[0].key == OVERFLOW_KEY
}

pub(crate) fn point_key(attrs: &[KeyValue]) -> PointKey {
    let mut k: PointKey = attrs
        .iter()
        .map(|kv| {
            let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                Some(any_value::Value::BoolValue(b)) => b.to_string(),
                Some(any_value::Value::IntValue(i)) => i.to_string(),
                Some(any_value::Value::DoubleValue(d)) => d.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), v)
        })
        .collect();
    k.sort_unstable();
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::telemetry::otlp::test_requests::{gauge as gauge_metric, point as pt, request, sum};

    fn point(ip: &str, v: i64, start: u64, time: u64) -> NumberDataPoint {
        pt(&[("stream", "ssh"), ("ip", ip)], v, start, time)
    }

    fn export(
        points: Vec<NumberDataPoint>,
        temporality: AggregationTemporality,
    ) -> ExportMetricsServiceRequest {
        request(vec![sum(
            "reaction.filter.matches",
            "{match}",
            points,
            temporality,
        )])
    }

    fn values(reqs: &[(ExportMetricsServiceRequest, u64)]) -> BTreeMap<String, (i64, u64, u64)> {
        let n: u64 = reqs.iter().map(|r| r.1).sum();
        let reqs: Vec<ExportMetricsServiceRequest> = reqs.iter().map(|r| r.0.clone()).collect();
        let v = values_of(&reqs);
        assert_eq!(v.len() as u64, n, "the point counts are right");
        v
    }

    fn values_of(reqs: &[ExportMetricsServiceRequest]) -> BTreeMap<String, (i64, u64, u64)> {
        let mut out = BTreeMap::new();
        for r in reqs {
            for rm in &r.resource_metrics {
                for sm in &rm.scope_metrics {
                    for m in &sm.metrics {
                        let Some(Data::Sum(s)) = &m.data else {
                            panic!()
                        };
                        for p in &s.data_points {
                            let key = point_key(&p.attributes)
                                .iter()
                                .map(|(k, v)| format!("{k}={v}"))
                                .collect::<Vec<_>>()
                                .join(",");
                            let Some(number_data_point::Value::AsInt(v)) = p.value else {
                                panic!()
                            };
                            assert!(out
                                .insert(key, (v, p.start_time_unix_nano, p.time_unix_nano))
                                .is_none());
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn failed_deltas_add_up_per_series() {
        let mut p = UnsentBuffer::new(100);
        p.merge(export(
            vec![point("1.1.1.1", 2, 10, 20)],
            AggregationTemporality::Delta,
        ));
        p.merge(export(
            vec![point("1.1.1.1", 3, 20, 30), point("2.2.2.2", 1, 20, 30)],
            AggregationTemporality::Delta,
        ));
        let v = values(&p.take_requests(1 << 20));
        assert_eq!(v["ip=1.1.1.1,stream=ssh"], (5, 10, 30));
        assert_eq!(v["ip=2.2.2.2,stream=ssh"], (1, 20, 30));
        assert_eq!(p.series(), 0);
    }

    #[test]
    fn cumulative_keeps_latest() {
        let mut p = UnsentBuffer::new(100);
        p.merge(export(
            vec![point("1.1.1.1", 2, 10, 20)],
            AggregationTemporality::Cumulative,
        ));
        p.merge(export(
            vec![point("1.1.1.1", 5, 10, 30)],
            AggregationTemporality::Cumulative,
        ));
        let v = values(&p.take_requests(1 << 20));
        assert_eq!(v["ip=1.1.1.1,stream=ssh"], (5, 10, 30));
    }

    #[test]
    fn past_the_limit_sums_go_to_overflow() {
        let mut p = UnsentBuffer::new(2);
        let stats = p.merge(export(
            (0..5)
                .map(|i| point(&format!("10.0.0.{i}"), 1, 0, 1))
                .collect(),
            AggregationTemporality::Delta,
        ));
        assert_eq!(
            stats.overflow_events, 3,
            "the events of the 3 series past the limit"
        );
        let v = values(&p.take_requests(1 << 20));
        assert_eq!(v["otel.metric.overflow=true"].0, 3);
        assert_eq!(v.values().map(|x| x.0).sum::<i64>(), 5, "nothing lost");
    }

    #[test]
    fn requests_are_split_under_the_size_and_lose_nothing() {
        let mut p = UnsentBuffer::new(1_000_000);
        let n = 20_000;
        p.merge(export(
            (0..n)
                .map(|i| {
                    point(
                        &format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256),
                        1,
                        0,
                        1,
                    )
                })
                .collect(),
            AggregationTemporality::Delta,
        ));
        let max = 64 * 1024;
        let reqs = p.take_requests(max);
        assert!(reqs.len() > 5);
        for (r, _) in &reqs {
            assert!(r.encoded_len() <= max, "{} > {max}", r.encoded_len());
        }
        let v = values(&reqs);
        assert_eq!(v.len(), n);
        assert!(v.values().all(|x| x.0 == 1));
    }

    /// A request that was never sent (no connection) goes back and adds up with newer
    /// never-sent deltas.
    #[test]
    fn an_unsent_request_merged_back_is_sent_again() {
        let mut p = UnsentBuffer::new(100);
        p.merge(export(
            vec![point("1.1.1.1", 2, 10, 20)],
            AggregationTemporality::Delta,
        ));
        let reqs = p.take_requests(1 << 20);
        for (r, _) in reqs {
            p.merge(r);
        }
        p.merge(export(
            vec![point("1.1.1.1", 1, 20, 30)],
            AggregationTemporality::Delta,
        ));
        let v = values(&p.take_requests(1 << 20));
        assert_eq!(v["ip=1.1.1.1,stream=ssh"], (3, 10, 30));
    }

    fn gauge(points: Vec<NumberDataPoint>) -> ExportMetricsServiceRequest {
        request(vec![gauge_metric(
            "reaction.action.pending",
            "{match}",
            points,
        )])
    }

    /// Each vanished series' flagged point travels alone in its own metric message, after
    /// the live points (the Collector's accumulator stops at a metric's first flagged point).
    #[test]
    fn flagged_gauge_points_each_get_their_own_metric_message() {
        let mut p = UnsentBuffer::new(100);
        let flagged = |ip: &str| {
            let mut pt = point(ip, 0, 0, 30);
            pt.flags = DataPointFlags::NoRecordedValueMask as u32;
            pt
        };
        p.merge(gauge(vec![
            flagged("1.1.1.1"),
            point("2.2.2.2", 3, 0, 30),
            flagged("3.3.3.3"),
            point("4.4.4.4", 1, 0, 30),
        ]));
        let reqs = p.take_requests(1 << 20);
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs[0].1, 4);
        let metrics = &reqs[0].0.resource_metrics[0].scope_metrics[0].metrics;
        let shape: Vec<Vec<(bool, i64)>> = metrics
            .iter()
            .map(|m| {
                assert_eq!(m.name, "reaction.action.pending");
                let Some(Data::Gauge(g)) = &m.data else {
                    panic!()
                };
                g.data_points
                    .iter()
                    .map(|p| {
                        let Some(number_data_point::Value::AsInt(v)) = p.value else {
                            panic!()
                        };
                        (no_recorded_value(p), v)
                    })
                    .collect()
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                vec![(false, 3), (false, 1)],
                vec![(true, 0)],
                vec![(true, 0)]
            ]
        );
        // A newer live point of a flagged series replaces the flag (the series is back).
        p.merge(gauge(vec![flagged("1.1.1.1")]));
        p.merge(gauge(vec![point("1.1.1.1", 2, 0, 40)]));
        let reqs = p.take_requests(1 << 20);
        let metrics = &reqs[0].0.resource_metrics[0].scope_metrics[0].metrics;
        assert_eq!(metrics.len(), 1);
    }
}
