//! What is sent next, and what becomes of a request after its outcome: the rule that
//! loses nothing and counts nothing twice behind a Collector's `deltatocumulative`.
//!
//! That processor (contrib `processor/deltatocumulativeprocessor`, `internal/delta/delta.go`
//! `Aggregate`) keeps per series the start of its first point, the time of the latest
//! accepted one and the running sum; a point whose time is not after the latest is dropped
//! as out of order, one whose start is before the series' start is dropped as older, any
//! other is added. After an export that timed out, the receiver may or may not have
//! processed it:
//! - re-sending the **same points** (same start, time and value) is exact in both cases:
//!   processed, they are dropped as out of order; not processed, they are added;
//! - merging them into newer deltas (a point from the old start to the new time) counts
//!   them twice when they had been processed;
//! - sending a newer point of a series before an older pending one loses the older one if
//!   the newer one starts the series there (after a Collector restart or expiry).
//!
//! Hence: a request that may have reached the receiver is **in doubt**, kept as it is and
//! re-sent identical before anything else; only points never attempted (collected since,
//! or in requests that could not even connect) are merged per series in the buffer, and
//! they are sent only once nothing is in doubt. Memory stays bounded: at most one
//! request's worth of points is in doubt at a time (sending stops at the first failure),
//! beside the buffer's cardinality limit.

use std::collections::{HashMap, VecDeque};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point, AggregationTemporality, Metric, NumberDataPoint,
};
use prost::Message as _;

use super::buffer::{point_key, MergeStats, PointKey, UnsentBuffer};
use super::outcome::Outcome;
use crate::defaults;

/// A request and the number of points in it.
#[derive(Debug, Clone)]
struct Request {
    body: ExportMetricsServiceRequest,
    points: u64,
    /// It was sent (or was being sent) and its fate is unknown.
    in_doubt: bool,
}

/// What [`Queue::resolve`] did with a request, for the self-monitoring.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Resolved {
    /// Points delivered.
    pub(crate) delivered: u64,
    /// Points dropped (a non-retryable answer, or too large to split further).
    pub(crate) dropped: u64,
    /// The request was split in two after a "too large" answer.
    pub(crate) split: bool,
}

/// The unsent points: never attempted (merged in `fresh`), taken for this round (`ready`),
/// in doubt, and the one being sent.
#[derive(Debug)]
pub(crate) struct Queue {
    fresh: UnsentBuffer,
    ready: VecDeque<Request>,
    in_doubt: VecDeque<Request>,
    sending: Option<Request>,
    /// Requests are made at most this large: `otlp.max_request_size`, lowered when a
    /// receiver answers "too large".
    max_bytes: usize,
    /// When [`Queue::track_delivered`] asked for it (OTLP-only continuity): the last value
    /// of each cumulative sum series that left the queue (delivered, or dropped as the
    /// receiver asked), so that [`Queue::undelivered`] knows what a newer point adds.
    delivered_totals: Option<HashMap<SeriesName, u64>>,
}

/// A series: its metric's name and its attributes.
pub(crate) type SeriesName = (String, PointKey);

impl Queue {
    /// `limit`: series per metric in the buffer; `max_bytes`: `otlp.max_request_size`.
    pub(crate) fn new(limit: usize, max_bytes: usize) -> Queue {
        Queue {
            fresh: UnsentBuffer::new(limit),
            ready: VecDeque::new(),
            in_doubt: VecDeque::new(),
            sending: None,
            max_bytes,
            delivered_totals: None,
        }
    }

    /// At most `limit` series per metric in the buffer from now on (a reload).
    pub(crate) fn set_limit(&mut self, limit: usize) {
        self.fresh.set_limit(limit);
    }

    /// Requests of at most `max_bytes` from the next round on (a reload of
    /// `otlp.max_request_size`).
    pub(crate) fn set_max_bytes(&mut self, max_bytes: usize) {
        self.max_bytes = max_bytes;
    }

    /// Keep what [`Queue::undelivered`] needs for cumulative sums.
    pub(crate) fn track_delivered(&mut self) {
        self.delivered_totals.get_or_insert_with(HashMap::new);
    }

    /// The integer sum counts collected and not delivered yet, per series of the metrics
    /// `keep` accepts: every delta point still held (in doubt, this round's, being sent,
    /// never attempted), and for a cumulative series what its latest point held adds to
    /// the last value that left the queue. Saved with the position of the latest collect,
    /// they make a restart continuous: a request in doubt is among them (it may come twice
    /// after the restart, never be lost).
    pub(crate) fn undelivered(&self, keep: impl Fn(&str) -> bool) -> HashMap<SeriesName, u64> {
        let mut out: HashMap<SeriesName, u64> = HashMap::new();
        let mut latest: HashMap<SeriesName, u64> = HashMap::new();
        let mut add = |name: &str, delta: bool, p: &NumberDataPoint| {
            if !keep(name) {
                return;
            }
            let Some(number_data_point::Value::AsInt(v)) = p.value else {
                return;
            };
            let v = v.max(0) as u64;
            if v == 0 {
                return;
            }
            let key = (name.to_string(), point_key(&p.attributes));
            if delta {
                let e = out.entry(key).or_default();
                *e = e.saturating_add(v);
            } else {
                let e = latest.entry(key).or_default();
                *e = (*e).max(v);
            }
        };
        for r in self.in_doubt.iter().chain(&self.ready).chain(&self.sending) {
            for_each_sum_point(&r.body, &mut add);
        }
        self.fresh.for_each_sum_point(&mut add);
        for (key, v) in latest {
            let before = self
                .delivered_totals
                .as_ref()
                .and_then(|d| d.get(&key))
                .copied()
                .unwrap_or(0);
            if v > before {
                *out.entry(key).or_default() += v - before;
            }
        }
        out
    }

    /// A request left the queue for good: remember its cumulative values.
    fn left(&mut self, r: &Request) {
        let Some(totals) = &mut self.delivered_totals else {
            return;
        };
        for_each_sum_point(&r.body, &mut |name, delta, p| {
            if let (false, Some(number_data_point::Value::AsInt(v))) = (delta, p.value) {
                let e = totals
                    .entry((name.to_string(), point_key(&p.attributes)))
                    .or_default();
                *e = (*e).max(v.max(0) as u64);
            }
        });
    }

    /// Add a new export (never attempted).
    pub(crate) fn merge(&mut self, req: ExportMetricsServiceRequest) -> MergeStats {
        self.fresh.merge(req)
    }

    /// The next request to send, in order: one whose send was interrupted, those in doubt,
    /// those of this round, then a new round from the buffer. It stays "being sent" until
    /// [`Queue::resolve`]; if that never comes (the send was abandoned), it is in doubt.
    pub(crate) fn next(&mut self) -> Option<ExportMetricsServiceRequest> {
        if let Some(mut r) = self.sending.take() {
            r.in_doubt = true;
            self.in_doubt.push_front(r);
        }
        let r = match self.in_doubt.pop_front() {
            Some(r) => r,
            None => {
                if self.ready.is_empty() {
                    self.ready = self
                        .fresh
                        .take_requests(self.max_bytes)
                        .into_iter()
                        .map(|(body, points)| Request {
                            body,
                            points,
                            in_doubt: false,
                        })
                        .collect();
                }
                self.ready.pop_front()?
            }
        };
        let body = r.body.clone();
        self.sending = Some(r);
        Some(body)
    }

    /// What became of the request [`Queue::next`] returned.
    pub(crate) fn resolve(&mut self, outcome: &Outcome) -> Resolved {
        let Some(r) = self.sending.take() else {
            return Resolved::default();
        };
        let mut done = Resolved::default();
        match outcome {
            Outcome::Delivered { .. } => {
                self.left(&r);
                done.delivered = r.points;
            }
            Outcome::Refused { .. } => {
                self.left(&r);
                done.dropped = r.points;
            }
            Outcome::TooLarge { .. } => {
                let len = r.body.encoded_len();
                match split(&r.body) {
                    // The same points in smaller requests: other requests, not a retry of
                    // "the same telemetry data" the specification forbids; safe behind
                    // deltatocumulative, the points are identical.
                    Some((a, b)) if len > defaults::MIN_OTLP_MAX_REQUEST_SIZE => {
                        self.max_bytes = (len / 2).max(defaults::MIN_OTLP_MAX_REQUEST_SIZE);
                        let queue = if r.in_doubt {
                            &mut self.in_doubt
                        } else {
                            &mut self.ready
                        };
                        for half in [b, a] {
                            queue.push_front(Request {
                                points: count_points(&half),
                                body: half,
                                in_doubt: r.in_doubt,
                            });
                        }
                        done.split = true;
                    }
                    _ => {
                        self.left(&r);
                        done.dropped = r.points;
                    }
                }
            }
            Outcome::Retry { reached, .. } => {
                if *reached || r.in_doubt {
                    self.in_doubt.push_front(Request {
                        in_doubt: true,
                        ..r
                    });
                } else {
                    self.fresh.merge(r.body);
                }
                // The rest of the round was never attempted: back to the buffer, where it
                // adds up with what was collected since.
                for r in std::mem::take(&mut self.ready) {
                    self.fresh.merge(r.body);
                }
            }
        }
        done
    }

    /// Points not delivered yet (in doubt, this round's, being sent), and series in the
    /// buffer: for the log when the last chance has passed.
    pub(crate) fn pending(&self) -> (u64, usize) {
        let points = self
            .in_doubt
            .iter()
            .chain(&self.ready)
            .chain(&self.sending)
            .map(|r| r.points)
            .sum();
        (points, self.fresh.series())
    }

    /// Nothing left to send.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.pending() == (0, 0)
    }
}

/// Each sum point of a request, with its metric's name and whether it is a delta.
fn for_each_sum_point(
    req: &ExportMetricsServiceRequest,
    f: &mut impl FnMut(&str, bool, &NumberDataPoint),
) {
    for m in req
        .resource_metrics
        .iter()
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|sm| &sm.metrics)
    {
        if let Some(Data::Sum(s)) = &m.data {
            let delta = s.aggregation_temporality == AggregationTemporality::Delta as i32;
            for p in &s.data_points {
                f(&m.name, delta, p);
            }
        }
    }
}

fn count_points(req: &ExportMetricsServiceRequest) -> u64 {
    req.resource_metrics
        .iter()
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|sm| &sm.metrics)
        .map(|m| match &m.data {
            Some(Data::Sum(s)) => s.data_points.len(),
            Some(Data::Gauge(g)) => g.data_points.len(),
            _ => 0,
        } as u64)
        .sum()
}

/// The request in two halves of its points (in order), or None if it has fewer than two.
fn split(
    req: &ExportMetricsServiceRequest,
) -> Option<(ExportMetricsServiceRequest, ExportMetricsServiceRequest)> {
    let total = count_points(req);
    if total < 2 {
        return None;
    }
    let half = total / 2;
    let (mut first, mut second) = (req.clone(), req.clone());
    // `first` keeps the points [0, half), `second` the others, metric by metric.
    let mut seen = 0u64;
    for (rm1, rm2) in first
        .resource_metrics
        .iter_mut()
        .zip(&mut second.resource_metrics)
    {
        for (sm1, sm2) in rm1.scope_metrics.iter_mut().zip(&mut rm2.scope_metrics) {
            for (m1, m2) in sm1.metrics.iter_mut().zip(&mut sm2.metrics) {
                let (Some(p1), Some(p2)) = (data_points(m1), data_points(m2)) else {
                    continue;
                };
                let n = p1.len() as u64;
                let keep = half.saturating_sub(seen).min(n) as usize;
                p1.truncate(keep);
                p2.drain(..keep);
                seen += n;
            }
            sm1.metrics
                .retain_mut(|m| data_points(m).is_some_and(|p| !p.is_empty()));
            sm2.metrics
                .retain_mut(|m| data_points(m).is_some_and(|p| !p.is_empty()));
        }
    }
    for r in [&mut first, &mut second] {
        for rm in &mut r.resource_metrics {
            rm.scope_metrics.retain(|sm| !sm.metrics.is_empty());
        }
        r.resource_metrics.retain(|rm| !rm.scope_metrics.is_empty());
    }
    Some((first, second))
}

fn data_points(m: &mut Metric) -> Option<&mut Vec<NumberDataPoint>> {
    match &mut m.data {
        Some(Data::Sum(s)) => Some(&mut s.data_points),
        Some(Data::Gauge(g)) => Some(&mut g.data_points),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::otlp::test_requests::{point, request, sum};
    use opentelemetry_proto::tonic::common::v1::any_value;
    use opentelemetry_proto::tonic::metrics::v1::{number_data_point, AggregationTemporality};

    /// One delta export: `ip` → (value, start, time).
    fn export(points: &[(&str, i64, u64, u64)]) -> ExportMetricsServiceRequest {
        let points = points
            .iter()
            .map(|(ip, v, start, time)| point(&[("ip", ip)], *v, *start, *time))
            .collect();
        request(vec![sum(
            "reaction.filter.matches",
            "",
            points,
            AggregationTemporality::Delta,
        )])
    }

    /// The points of a request: (ip, value, start, time).
    fn points(req: &ExportMetricsServiceRequest) -> Vec<(String, i64, u64, u64)> {
        let mut out = Vec::new();
        for m in &req.resource_metrics[0].scope_metrics[0].metrics {
            let Some(Data::Sum(s)) = &m.data else {
                panic!()
            };
            for p in &s.data_points {
                let Some(any_value::Value::StringValue(ip)) =
                    p.attributes[0].value.as_ref().and_then(|v| v.value.clone())
                else {
                    panic!()
                };
                let Some(number_data_point::Value::AsInt(v)) = p.value else {
                    panic!()
                };
                out.push((ip, v, p.start_time_unix_nano, p.time_unix_nano));
            }
        }
        out
    }

    fn retry(reached: bool) -> Outcome {
        Outcome::Retry {
            reached,
            after: None,
            what: String::new(),
        }
    }

    fn ok() -> Outcome {
        Outcome::Delivered {
            rejected: 0,
            message: String::new(),
        }
    }

    #[test]
    fn a_request_in_doubt_is_resent_identical_and_before_newer_points() {
        let mut q = Queue::new(100, 1 << 20);
        q.merge(export(&[("a", 2, 0, 10)]));
        let first = q.next().unwrap();
        assert_eq!(points(&first), vec![("a".into(), 2, 0, 10)]);
        q.resolve(&retry(true));
        // Newer deltas for the same series are not merged into it.
        q.merge(export(&[("a", 3, 10, 20)]));
        let again = q.next().unwrap();
        assert_eq!(again, first, "identical");
        assert_eq!(q.resolve(&ok()).delivered, 1);
        let newer = q.next().unwrap();
        assert_eq!(points(&newer), vec![("a".into(), 3, 10, 20)]);
        q.resolve(&ok());
        assert!(q.next().is_none());
        assert!(q.is_empty());
    }

    #[test]
    fn a_request_that_never_connected_merges_with_newer_points() {
        let mut q = Queue::new(100, 1 << 20);
        q.merge(export(&[("a", 2, 0, 10)]));
        q.next().unwrap();
        q.resolve(&retry(false));
        q.merge(export(&[("a", 3, 10, 20)]));
        let merged = q.next().unwrap();
        assert_eq!(points(&merged), vec![("a".into(), 5, 0, 20)]);
    }

    #[test]
    fn once_in_doubt_always_in_doubt() {
        let mut q = Queue::new(100, 1 << 20);
        q.merge(export(&[("a", 2, 0, 10)]));
        let first = q.next().unwrap();
        q.resolve(&retry(true));
        // The retry cannot connect: still in doubt (the first attempt may have arrived).
        assert_eq!(q.next().unwrap(), first);
        q.resolve(&retry(false));
        q.merge(export(&[("a", 3, 10, 20)]));
        assert_eq!(q.next().unwrap(), first);
    }

    #[test]
    fn an_abandoned_send_is_in_doubt() {
        let mut q = Queue::new(100, 1 << 20);
        q.merge(export(&[("a", 2, 0, 10)]));
        let first = q.next().unwrap();
        // No resolve: the task sending it was stopped.
        q.merge(export(&[("a", 3, 10, 20)]));
        assert_eq!(q.next().unwrap(), first);
        assert_eq!(q.pending().0, 1);
    }

    #[test]
    fn after_a_failure_the_rest_of_the_round_goes_back_to_the_buffer() {
        let mut q = Queue::new(100, 200);
        let many: Vec<(String, i64, u64, u64)> =
            (0..30).map(|i| (format!("10.0.0.{i}"), 1, 0, 10)).collect();
        let refs: Vec<(&str, i64, u64, u64)> = many
            .iter()
            .map(|(a, b, c, d)| (a.as_str(), *b, *c, *d))
            .collect();
        q.merge(export(&refs));
        let first = q.next().unwrap();
        let n_first = points(&first).len();
        assert!(n_first < 30, "split in several requests");
        q.resolve(&retry(true));
        assert_eq!(q.pending(), (n_first as u64, 30 - n_first));
        // In doubt first, then everything else, once each.
        let mut total = 0;
        while let Some(r) = q.next() {
            total += points(&r).iter().map(|p| p.1).sum::<i64>();
            q.resolve(&ok());
        }
        assert_eq!(total, 30);
    }

    #[test]
    fn a_refused_request_is_dropped_and_delivery_goes_on() {
        let mut q = Queue::new(100, 1 << 20);
        q.merge(export(&[("a", 2, 0, 10), ("b", 1, 0, 10)]));
        q.next().unwrap();
        let r = q.resolve(&Outcome::Refused {
            reason: "http_400".into(),
            what: String::new(),
        });
        assert_eq!(r.dropped, 2);
        q.merge(export(&[("a", 3, 10, 20)]));
        assert_eq!(points(&q.next().unwrap()), vec![("a".into(), 3, 10, 20)]);
    }

    /// `export` in cumulative temporality.
    fn cumulative(points: &[(&str, i64, u64, u64)]) -> ExportMetricsServiceRequest {
        let mut req = export(points);
        for m in &mut req.resource_metrics[0].scope_metrics[0].metrics {
            if let Some(Data::Sum(s)) = &mut m.data {
                s.aggregation_temporality = AggregationTemporality::Cumulative as i32;
            }
        }
        req
    }

    fn undelivered(q: &Queue) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = q
            .undelivered(|_| true)
            .into_iter()
            .map(|((_, attrs), n)| (attrs[0].1.clone(), n))
            .collect();
        v.sort();
        v
    }

    /// Guards OTLP-only continuity: what a checkpoint saves is every delta count not
    /// delivered (in doubt included: it may come twice after a restart, never be lost),
    /// and nothing delivered or dropped as the receiver asked.
    #[test]
    fn undelivered_delta_counts_are_those_not_delivered_in_doubt_included() {
        let mut q = Queue::new(100, 1 << 20);
        q.track_delivered();
        q.merge(export(&[("a", 2, 0, 10), ("b", 1, 0, 10)]));
        assert_eq!(undelivered(&q), [("a".into(), 2), ("b".into(), 1)]);
        q.next().unwrap();
        // Being sent: still undelivered.
        assert_eq!(undelivered(&q), [("a".into(), 2), ("b".into(), 1)]);
        q.resolve(&retry(true));
        q.merge(export(&[("a", 3, 10, 20)]));
        // In doubt (2 + 1) and never attempted (3), added up per series.
        assert_eq!(undelivered(&q), [("a".into(), 5), ("b".into(), 1)]);
        q.next().unwrap();
        q.resolve(&ok());
        assert_eq!(undelivered(&q), [("a".into(), 3)]);
        q.next().unwrap();
        q.resolve(&Outcome::Refused {
            reason: "http_400".into(),
            what: String::new(),
        });
        assert_eq!(undelivered(&q), []);
    }

    /// Cumulative sums: what the latest value held adds to the last one that left the
    /// queue (a restart starts a new cumulative series from the saved counts).
    #[test]
    fn undelivered_cumulative_counts_are_the_increase_since_the_last_delivered_value() {
        let mut q = Queue::new(100, 1 << 20);
        q.track_delivered();
        q.merge(cumulative(&[("a", 4, 0, 10)]));
        assert_eq!(undelivered(&q), [("a".into(), 4)]);
        q.next().unwrap();
        q.resolve(&ok());
        assert_eq!(undelivered(&q), []);
        q.merge(cumulative(&[("a", 6, 0, 20)]));
        q.next().unwrap();
        q.resolve(&retry(true));
        q.merge(cumulative(&[("a", 9, 0, 30)]));
        // The latest (9, never attempted) over the last delivered (4); the one in doubt
        // (6) is below it.
        assert_eq!(undelivered(&q), [("a".into(), 5)]);
        while q.next().is_some() {
            q.resolve(&ok());
        }
        assert_eq!(undelivered(&q), []);
    }

    #[test]
    fn too_large_is_split_in_order_then_dropped_when_it_cannot_be() {
        let mut q = Queue::new(100_000, 1 << 24);
        let many: Vec<(String, i64, u64, u64)> = (0..20_000)
            .map(|i| (format!("10.0.{}.{}", i / 256, i % 256), 1, 0, 10))
            .collect();
        let refs: Vec<(&str, i64, u64, u64)> = many
            .iter()
            .map(|(a, b, c, d)| (a.as_str(), *b, *c, *d))
            .collect();
        q.merge(export(&refs));
        let whole = q.next().unwrap();
        let len = whole.encoded_len();
        assert!(len > 2 * defaults::MIN_OTLP_MAX_REQUEST_SIZE);
        assert!(
            q.resolve(&Outcome::TooLarge {
                what: String::new()
            })
            .split
        );
        let a = q.next().unwrap();
        assert!(a.encoded_len() <= len / 2 + 64);
        q.resolve(&ok());
        let b = q.next().unwrap();
        q.resolve(&ok());
        let mut all = points(&a);
        all.extend(points(&b));
        assert_eq!(all, points(&whole), "the same points, in the same order");
        // Later rounds use the lowered size.
        q.merge(export(&refs));
        let next = q.next().unwrap();
        assert!(next.encoded_len() <= len / 2 + 64);
        q.resolve(&ok());
        while q.next().is_some() {
            q.resolve(&ok());
        }
        // A small request refused as too large: dropped, counted.
        q.merge(export(&[("a", 1, 0, 10), ("b", 1, 0, 10)]));
        q.next().unwrap();
        let r = q.resolve(&Outcome::TooLarge {
            what: String::new(),
        });
        assert_eq!(r.dropped, 2);
    }
}
