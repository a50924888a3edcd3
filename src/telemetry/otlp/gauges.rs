//! Gauge series that stop existing get one final point.
//!
//! Our gauges are observable: the SDK exports only the series observed at a collection,
//! whatever the temporality (opentelemetry_sdk 0.33.1 builds every ObservableGauge with
//! `last_value(Some(Temporality::Delta))`). When nothing is pending for an action any
//! more, its `reaction.action.pending` series is simply absent from the next export, and
//! receivers keep showing its last value: the Collector's `prometheus` exporter until
//! `metric_expiration`, Prometheus for its 5-minute lookback.
//!
//! So each export is compared with the previous one, and every gauge series that vanished
//! gets one more point: **value 0 with the `NoRecordedValue` flag**, at this export's time.
//! The flag is what ends the series at once downstream: the Collector's `prometheus`
//! exporter deletes it (`accumulator.go`: `if ip.Flags().NoRecordedValue() {
//! a.registeredMetrics.Delete(signature) ...}`), `prometheusremotewrite`, Prometheus' own
//! OTLP receiver (`storage/remote/otlptranslator/.../number_data_points.go`), Alloy and
//! VictoriaMetrics write a Prometheus staleness marker (`StaleNaN`); `deltatocumulative`
//! passes gauges through untouched. The value 0 is for a receiver that ignores the flag:
//! it then shows 0, which is also true ("nothing pending"). The flagged point is sent
//! once (again only if its request failed), each alone in its metric message (see
//! `buffer::take_requests`).

use std::collections::{BTreeMap, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point, DataPointFlags, Gauge, Metric, NumberDataPoint, ScopeMetrics,
};

use super::buffer::{point_key, PointKey};
use crate::telemetry::collect::Attrs;
use crate::telemetry::observed::{is_state_gauge, Observed};

/// A series last seen: its attributes and whether its values are integers.
#[derive(Debug, Clone)]
struct Seen {
    attributes: Vec<KeyValue>,
    int: bool,
}

/// The gauge series of the previous export, per scope and metric.
#[derive(Debug, Default)]
pub(crate) struct VanishedGauges {
    /// (scope name, metric name) → (the scope, the metric without points, its series).
    #[allow(clippy::type_complexity)]
    last: BTreeMap<
        (String, String),
        (
            Option<InstrumentationScope>,
            Metric,
            HashMap<PointKey, Seen>,
        ),
    >,
}

/// Keep, of the state gauges in `req`, only the series this collection observed itself:
/// the SDK also records into this reader what the other readers' collections observe (see
/// `telemetry::observed`), and a series gone since would be exported again, then ended
/// again by [`VanishedGauges::mark`], at every other reader's collection.
pub(crate) fn retain_observed(req: &mut ExportMetricsServiceRequest, observed: &Observed) {
    for rm in &mut req.resource_metrics {
        for sm in &mut rm.scope_metrics {
            for m in &mut sm.metrics {
                let Some(metric) = crate::metric::Metric::from_otel_name(&m.name) else {
                    continue;
                };
                if !is_state_gauge(metric) {
                    continue;
                }
                let Some(Data::Gauge(g)) = &mut m.data else {
                    continue;
                };
                g.data_points
                    .retain(|p| observed.keeps_attrs(metric, &string_attrs(&p.attributes)));
            }
        }
    }
}

/// Attributes as (key, value) strings sorted by key, as `telemetry::collect::attrs` makes
/// them (ours are all strings).
fn string_attrs(kvs: &[KeyValue]) -> Attrs {
    kvs.iter()
        .map(|kv| {
            let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                Some(other) => format!("{other:?}"),
                None => String::new(),
            };
            (kv.key.clone(), v)
        })
        .collect()
}

impl VanishedGauges {
    /// Gauge series remembered from the last export (tests).
    #[cfg(test)]
    pub(crate) fn remembered(&self) -> usize {
        self.last.values().map(|(_, _, series)| series.len()).sum()
    }

    /// Add the final point of every gauge series that was in the previous export and is
    /// not in `req`; remember `req`'s series for the next one. Returns how many were added.
    pub(crate) fn mark(&mut self, req: &mut ExportMetricsServiceRequest) -> usize {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let mut previous = std::mem::take(&mut self.last);
        let mut added = 0;
        let Some(rm) = req.resource_metrics.first_mut() else {
            // Nothing collected at all: keep what we knew for the next export.
            self.last = previous;
            return 0;
        };
        for sm in &mut rm.scope_metrics {
            let scope = sm
                .scope
                .as_ref()
                .map(|s| s.name.clone())
                .unwrap_or_default();
            for m in &mut sm.metrics {
                let Some(Data::Gauge(g)) = &mut m.data else {
                    continue;
                };
                let now_seen: HashMap<PointKey, Seen> = g
                    .data_points
                    .iter()
                    .map(|p| {
                        let int = matches!(p.value, Some(number_data_point::Value::AsInt(_)));
                        let seen = Seen {
                            attributes: p.attributes.clone(),
                            int,
                        };
                        (point_key(&p.attributes), seen)
                    })
                    .collect();
                let key = (scope.clone(), m.name.clone());
                if let Some((_, _, before)) = previous.remove(&key) {
                    for (k, seen) in before {
                        if !now_seen.contains_key(&k) {
                            g.data_points.push(final_point(seen, now));
                            added += 1;
                        }
                    }
                }
                let template = Metric {
                    data: Some(Data::Gauge(Gauge::default())),
                    ..without_data(m)
                };
                self.last
                    .insert(key, (sm.scope.clone(), template, now_seen));
            }
        }
        // Metrics with no series at all this time: every series vanished.
        for ((scope, _), (scope_message, template, before)) in previous {
            let points: Vec<NumberDataPoint> =
                before.into_values().map(|s| final_point(s, now)).collect();
            added += points.len();
            let sm =
                match rm.scope_metrics.iter_mut().position(|sm| {
                    sm.scope.as_ref().map(|s| s.name.as_str()).unwrap_or("") == scope
                }) {
                    Some(i) => &mut rm.scope_metrics[i],
                    None => {
                        rm.scope_metrics.push(ScopeMetrics {
                            scope: scope_message,
                            ..Default::default()
                        });
                        rm.scope_metrics.last_mut().expect("pushed")
                    }
                };
            sm.metrics.push(Metric {
                data: Some(Data::Gauge(Gauge {
                    data_points: points,
                })),
                ..template
            });
        }
        added
    }
}

fn without_data(m: &Metric) -> Metric {
    Metric {
        name: m.name.clone(),
        description: m.description.clone(),
        unit: m.unit.clone(),
        metadata: m.metadata.clone(),
        data: None,
    }
}

fn final_point(seen: Seen, now: u64) -> NumberDataPoint {
    NumberDataPoint {
        attributes: seen.attributes,
        start_time_unix_nano: 0,
        time_unix_nano: now,
        exemplars: Vec::new(),
        flags: DataPointFlags::NoRecordedValueMask as u32,
        value: Some(if seen.int {
            number_data_point::Value::AsInt(0)
        } else {
            number_data_point::Value::AsDouble(0.0)
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::otlp::buffer::no_recorded_value;
    use crate::telemetry::otlp::test_requests::{gauge, point, request};

    fn pending(ips: &[&str]) -> ExportMetricsServiceRequest {
        let points: Vec<NumberDataPoint> = ips
            .iter()
            .map(|ip| point(&[("action", "unban"), ("ip", ip)], 1, 0, 1))
            .collect();
        request(if points.is_empty() {
            vec![]
        } else {
            vec![gauge("reaction.action.pending", "{execution}", points)]
        })
    }

    fn flagged(req: &ExportMetricsServiceRequest) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for m in &req.resource_metrics[0].scope_metrics[0].metrics {
            let Some(Data::Gauge(g)) = &m.data else {
                continue;
            };
            for p in g.data_points.iter().filter(|p| no_recorded_value(p)) {
                assert_eq!(p.value, Some(number_data_point::Value::AsInt(0)));
                assert!(p.time_unix_nano > 1);
                let ip = point_key(&p.attributes)
                    .into_iter()
                    .find(|(k, _)| k == "ip")
                    .unwrap()
                    .1;
                out.push((m.unit.clone(), ip));
            }
        }
        out.sort();
        out
    }

    #[test]
    fn a_vanished_series_gets_one_flagged_zero() {
        let mut v = VanishedGauges::default();
        let mut r = pending(&["1.1.1.1", "2.2.2.2"]);
        assert_eq!(v.mark(&mut r), 0);
        let mut r = pending(&["2.2.2.2"]);
        assert_eq!(v.mark(&mut r), 1);
        assert_eq!(flagged(&r), vec![("{execution}".into(), "1.1.1.1".into())]);
        // Once only.
        let mut r = pending(&["2.2.2.2"]);
        assert_eq!(v.mark(&mut r), 0);
        // The whole metric gone (nothing pending anywhere): its template is kept.
        let mut r = pending(&[]);
        assert_eq!(v.mark(&mut r), 1);
        assert_eq!(flagged(&r), vec![("{execution}".into(), "2.2.2.2".into())]);
        let mut r = pending(&[]);
        assert_eq!(v.mark(&mut r), 0);
        // Back, then gone again.
        let mut r = pending(&["1.1.1.1"]);
        assert_eq!(v.mark(&mut r), 0);
        let mut r = pending(&[]);
        assert_eq!(v.mark(&mut r), 1);
    }
}
