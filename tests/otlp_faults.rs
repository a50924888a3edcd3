//! OTLP when the receiver refuses, throttles, times out or never answers, against the
//! real receivers of `tests/receivers` answering as a script says, and the Collector
//! stand-ins there (`deltatocumulative`, the `prometheus` exporter's series):
//! - non-retryable answers drop their request (counted by reason, logged with the
//!   receiver's message) and delivery goes on; partial success is counted, not retried;
//! - `RetryInfo` and `Retry-After` are honoured;
//! - "too large" answers (tonic's real limit, HTTP 413, grpc-go's RESOURCE_EXHAUSTED) are
//!   sent again in smaller requests, nothing lost;
//! - a timed-out export is neither lost nor counted twice behind `deltatocumulative`,
//!   whether the receiver had processed it or not;
//! - a gauge series that stops existing ends at once behind the Collector;
//! - the final export at SIGTERM holds its deadline with a receiver that never answers, and
//!   delivers a 100,000-series final export whole.

use crate::common;
use crate::otlp::{blocking, eventually, otlp_config, setup, start, Protocol, BOTH};
use crate::receivers;

use std::time::{Duration, Instant};

use common::*;
use receivers::*;

/// A scrape's value of an internal counter series.
fn counter(e: &Exporter, family: &str, having: &[(&str, &str)]) -> f64 {
    total(&e.scrape(), family, having)
}

const INTERNALS: &str = "metrics:\n  export:\n    internals: true\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_requests_are_dropped_counted_and_delivery_goes_on() {
    for protocol in BOTH {
        let store = Store::default();
        let (refusal, reason) = match protocol {
            Protocol::Grpc => (
                Answer::Grpc(
                    tonic::Code::InvalidArgument,
                    "bad data: invalid metric",
                    None,
                ),
                "invalid_argument",
            ),
            Protocol::Http => (
                Answer::Http(400, None, "bad data: invalid metric"),
                "http_400",
            ),
        };
        store.script.for_ip("10.7.0.1", [refusal]);
        store
            .script
            .for_ip("10.7.0.2", [Answer::Partial(2, "2 points were duplicates")]);
        let rx = protocol.receiver(None, store).await;
        let (dir, r, log) = setup();
        let e = start(&dir, otlp_config(&log, &r, &rx, protocol, INTERNALS), &[]).await;
        let store = rx.store.clone();
        let carrying = |ip: &str| {
            store
                .attempts()
                .iter()
                .filter(|a| {
                    points(std::slice::from_ref(&a.request))
                        .iter()
                        .any(|p| p.has(&[("ip", ip)]))
                })
                .count()
        };
        append(&log, &ssh_match("10.7.0.1", "refused").repeat(5));
        eventually("the refused request", || carrying("10.7.0.1") == 1).await;
        append(&log, &ssh_match("10.7.0.2", "partial").repeat(2));
        eventually("the partial success", || carrying("10.7.0.2") == 1).await;
        append(&log, &ssh_match("10.7.0.3", "ok").repeat(3));
        eventually("3 more", || {
            store.sum("reaction.filter.matches", &[("ip", "10.7.0.3")]) == 3.0
        })
        .await;
        tokio::time::sleep(Duration::from_millis(700)).await;
        // The refused points are gone, never retried; the rest arrived once each.
        assert_eq!(carrying("10.7.0.1"), 1, "{protocol:?}: not retried");
        assert_eq!(
            carrying("10.7.0.2"),
            1,
            "{protocol:?}: a partial success is not retried"
        );
        assert_eq!(
            store.sum("reaction.filter.matches", &[("ip", "10.7.0.1")]),
            0.0
        );
        assert_eq!(
            store.sum("reaction.filter.matches", &[("ip", "10.7.0.2")]),
            2.0
        );
        assert_eq!(store.sum("reaction.filter.matches", &[]), 5.0);
        let e = std::sync::Arc::new(e);
        let e2 = e.clone();
        let (requests, points_dropped, rejected, export_failures) = blocking(move || {
            (
                counter(
                    &e2,
                    "reaction_exporter_otlp_requests_dropped_total",
                    &[("reason", reason)],
                ),
                counter(
                    &e2,
                    "reaction_exporter_otlp_points_dropped_total",
                    &[("reason", reason)],
                ),
                counter(
                    &e2,
                    "reaction_exporter_otlp_failures_total",
                    &[("kind", "rejected")],
                ),
                counter(
                    &e2,
                    "reaction_exporter_otlp_failures_total",
                    &[("kind", "export")],
                ),
            )
        })
        .await;
        assert_eq!(requests, 1.0, "{protocol:?}");
        assert!(
            points_dropped >= 1.0,
            "{protocol:?}: the request's points: {points_dropped}"
        );
        assert_eq!(rejected, 1.0, "{protocol:?}");
        assert_eq!(export_failures, 0.0, "{protocol:?}: nothing to retry");
        let logs = e.logs();
        assert!(
            logs.contains("bad data: invalid metric") && logs.contains("not retried"),
            "{protocol:?}: the receiver's message is logged:\n{logs}"
        );
        drop(e);
        rx.stop().await;
    }
}

/// Throttling: gRPC `UNAVAILABLE` with `RetryInfo` and HTTP 503 with `Retry-After` (2 s):
/// the next attempt waits that long, then the data arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_info_and_retry_after_are_honoured() {
    for protocol in BOTH {
        let store = Store::default();
        let throttle = match protocol {
            Protocol::Grpc => Answer::Grpc(tonic::Code::Unavailable, "slow down", Some(2)),
            Protocol::Http => Answer::Http(503, Some("2"), "slow down"),
        };
        store.script.for_ip("10.8.0.1", [throttle]);
        let rx = protocol.receiver(None, store).await;
        let (dir, r, log) = setup();
        append(&log, &ssh_match("10.8.0.1", "throttled").repeat(4));
        let e = start(&dir, otlp_config(&log, &r, &rx, protocol, ""), &[]).await;
        let store = rx.store.clone();
        eventually("4 matches", || {
            store.sum("reaction.filter.matches", &[]) >= 4.0
        })
        .await;
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(
            store.sum("reaction.filter.matches", &[]),
            4.0,
            "{protocol:?}: once"
        );
        let with_ip: Vec<Instant> = store
            .attempts()
            .iter()
            .filter(|a| {
                points(std::slice::from_ref(&a.request))
                    .iter()
                    .any(|p| p.has(&[("ip", "10.8.0.1")]))
            })
            .map(|a| a.at)
            .collect();
        assert_eq!(with_ip.len(), 2, "{protocol:?}: throttled, then accepted");
        let waited = with_ip[1] - with_ip[0];
        assert!(
            waited >= Duration::from_millis(1950),
            "{protocol:?}: retried after {waited:?}, asked 2 s"
        );
        drop(e);
        rx.stop().await;
    }
}

/// A receiver with a smaller message limit than `otlp.max_request_size`: gRPC with tonic's
/// real check (OUT_OF_RANGE "decoded message length too large"), HTTP answering 413, and
/// grpc-go's answer (RESOURCE_EXHAUSTED without RetryInfo). The points go again in smaller
/// requests: all 20,000 arrive once, nothing is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_large_requests_are_split_and_arrive_whole() {
    let n = 20_000u32;
    let mut text = String::new();
    for i in 0..n {
        text.push_str(&ssh_match(&format!("10.9.{}.{}", i / 256, i % 256), "big"));
    }
    let limit = 256 * 1024;
    for case in ["tonic", "http", "grpc-go"] {
        let store = Store::default();
        let (rx, protocol) = match case {
            "tonic" => (
                Receiver::grpc_limited(None, store, None, limit).await,
                Protocol::Grpc,
            ),
            "http" => (
                Receiver::http(None, store, "/v1/metrics", limit, None).await,
                Protocol::Http,
            ),
            _ => {
                store.script.for_ip(
                    "10.9.0.0",
                    [Answer::Grpc(
                        tonic::Code::ResourceExhausted,
                        "grpc: received message larger than max (1500000 vs. 262144)",
                        None,
                    )],
                );
                (Receiver::grpc(None, store, None).await, Protocol::Grpc)
            }
        };
        let (dir, r, log) = setup();
        append(&log, &text);
        let cfg = otlp_config(&log, &r, &rx, protocol, INTERNALS)
            .replace("  interval: 0.3\n", "  interval: 2\n")
            .replace("  timeout: 2\n", "  timeout: 10\n");
        let e = start(&dir, cfg, &[]).await;
        let store = rx.store.clone();
        eventually("20,000 matches", || {
            store.sum("reaction.filter.matches", &[]) >= n as f64
        })
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let pts: Vec<Point> = store.points_of("reaction.filter.matches");
        assert_eq!(pts.len(), n as usize, "{case}: each once");
        let body = e.scrape();
        assert_eq!(
            total(&body, "reaction_exporter_otlp_points_dropped_total", &[]),
            0.0,
            "{case}"
        );
        assert!(e.logs().contains("as too large"), "{case}: logged");
        drop(e);
        rx.stop().await;
    }
}

/// The stand-in is `delta.Aggregate`: an identical re-send is dropped as out of order, a
/// point merging an already processed delta with newer ones is added — counted twice —
/// and a newer point delivered before an older one makes the older one "older start".
#[test]
fn the_deltatocumulative_stand_in_behaves_as_its_source() {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::metrics::v1::{
        metric::Data, number_data_point, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
        Sum,
    };
    let delta = |v: i64, start: u64, time: u64| ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "m".into(),
                    data: Some(Data::Sum(Sum {
                        data_points: vec![NumberDataPoint {
                            attributes: vec![KeyValue {
                                key: "ip".into(),
                                value: Some(AnyValue {
                                    value: Some(any_value::Value::StringValue("a".into())),
                                }),
                                ..Default::default()
                            }],
                            start_time_unix_nano: start,
                            time_unix_nano: time,
                            value: Some(number_data_point::Value::AsInt(v)),
                            ..Default::default()
                        }],
                        aggregation_temporality: 1,
                        is_monotonic: true,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let run = |reqs: &[ExportMetricsServiceRequest]| {
        let mut d = DeltaToCumulative::default();
        for r in reqs {
            d.consume(r);
        }
        (d.total("m", &[]), d.out_of_order, d.older_start)
    };
    let (e1, e2) = (delta(5, 0, 10), delta(3, 10, 20));
    // Processed, then re-sent identical: dropped. Then the newer delta: added.
    assert_eq!(run(&[e1.clone(), e1.clone(), e2.clone()]), (8.0, 1, 0));
    // Processed, then merged with the newer one and sent: counted twice.
    assert_eq!(run(&[e1.clone(), delta(8, 0, 20)]), (13.0, 0, 0));
    // Newer first (a new stream after a restart), then the older one: lost.
    assert_eq!(run(&[e2.clone(), e1.clone()]), (3.0, 0, 1));
}

/// An export times out. In one case the receiver had processed it (the answer was lost), in
/// the other not. Behind `deltatocumulative` both must end exact: the request is re-sent
/// identical (dropped as out of order when it had been processed), newer deltas follow as
/// their own points, nothing is merged into the request in doubt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_export_is_neither_lost_nor_doubled_behind_deltatocumulative() {
    for protocol in BOTH {
        for processed in [true, false] {
            let store = Store::default();
            store
                .script
                .for_ip("10.10.0.1", [Answer::Hang { processed }]);
            let rx = protocol.receiver(None, store).await;
            let (dir, r, log) = setup();
            let cfg = otlp_config(&log, &r, &rx, protocol, "")
                .replace("  timeout: 2\n", "  timeout: 0.5\n");
            let e = start(&dir, cfg, &[]).await;
            let store = rx.store.clone();
            let carrying = |store: &Store| -> Vec<Attempt> {
                store
                    .attempts()
                    .into_iter()
                    .filter(|a| {
                        points(std::slice::from_ref(&a.request))
                            .iter()
                            .any(|p| p.has(&[("ip", "10.10.0.1")]))
                    })
                    .collect()
            };
            append(&log, &ssh_match("10.10.0.1", "a").repeat(5));
            eventually("the export that hangs", || !carrying(&store).is_empty()).await;
            // Newer events while that export is in doubt.
            append(&log, &ssh_match("10.10.0.1", "a").repeat(3));
            append(&log, &ssh_match("10.10.0.2", "b").repeat(2));
            let d2c = || DeltaToCumulative::of(&store);
            eventually("the totals behind deltatocumulative", || {
                let d = d2c();
                d.total("reaction.filter.matches", &[("ip", "10.10.0.1")]) >= 8.0
                    && d.total("reaction.filter.matches", &[("ip", "10.10.0.2")]) >= 2.0
            })
            .await;
            tokio::time::sleep(Duration::from_millis(1000)).await;
            let d = d2c();
            let case = format!("{protocol:?}, processed: {processed}");
            assert_eq!(
                d.total("reaction.filter.matches", &[("ip", "10.10.0.1")]),
                8.0,
                "{case}"
            );
            assert_eq!(
                d.total("reaction.filter.matches", &[("ip", "10.10.0.2")]),
                2.0,
                "{case}"
            );
            assert_eq!(d.older_start, 0, "{case}: nothing newer went before older");
            let tries = carrying(&store);
            assert!(
                tries.len() >= 3,
                "{case}: the hung one, its re-send, the newer delta"
            );
            assert_eq!(
                tries[1].request, tries[0].request,
                "{case}: re-sent identical"
            );
            if processed {
                assert!(
                    d.out_of_order >= 1,
                    "{case}: the duplicate was dropped downstream"
                );
            }
            drop(e);
            rx.stop().await;
        }
    }
}

/// `reaction show` lists three pending unbans, then only one: the two vanished series get
/// a final point (0, flagged "no recorded value", each in its own metric message), and the
/// Collector's `prometheus` exporter (stand-in) stops showing both at once; with both
/// flagged points in one message it would remove only the first (its `return 0`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vanished_gauge_series_end_at_once_behind_a_collector() {
    let pending = |ips: &[&str]| {
        let mut matches = serde_json::Map::new();
        for ip in ips {
            matches.insert(
                format!("{ip} root"),
                serde_json::json!({"actions": {"unban": ["2026-12-01 10:00:00"]}}),
            );
        }
        serde_json::json!({"version": "2.2.0", "show": {"ssh": {"failedlogin": matches}}})
    };
    let rx = Protocol::Grpc.receiver(None, Store::default()).await;
    let (dir, r, log) = setup();
    r.set_state(pending(&["192.0.2.1", "192.0.2.2", "192.0.2.3"]));
    append(&log, &ssh_match("192.0.2.1", "root"));
    let e = start(&dir, otlp_config(&log, &r, &rx, Protocol::Grpc, ""), &[]).await;
    let store = rx.store.clone();
    let shown = |store: &Store| {
        let mut ips: Vec<String> = PrometheusExporter::of(store)
            .series("reaction.action.pending")
            .iter()
            .map(|a| a["ip"].clone())
            .collect();
        ips.sort();
        ips
    };
    eventually("three pending", || shown(&store).len() == 3).await;
    r.set_state(pending(&["192.0.2.2"]));
    eventually("one pending", || shown(&store) == ["192.0.2.2"]).await;
    let flagged: Vec<Point> = store
        .points()
        .into_iter()
        .filter(|p| p.metric == "reaction.action.pending" && p.flags & 1 != 0)
        .collect();
    assert_eq!(
        flagged.len(),
        2,
        "one final point per vanished series: {flagged:?}"
    );
    assert!(flagged.iter().all(|p| p.value == 0.0));
    assert_ne!(
        flagged[0].message, flagged[1].message,
        "each in its own metric message"
    );
    // Gauges go through deltatocumulative untouched: the stand-in keeps no state for them.
    assert!(DeltaToCumulative::of(&store)
        .streams
        .keys()
        .all(|(_, _, m, _)| m != "reaction.action.pending"));
    // Sent once: later exports do not repeat them.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let again = store
        .points()
        .into_iter()
        .filter(|p| p.metric == "reaction.action.pending" && p.flags & 1 != 0)
        .count();
    assert_eq!(again, 2);
    drop(e);
    rx.stop().await;
}

/// A receiver that accepts connections and never answers: SIGTERM ends the exporter
/// within the final export's 15 s deadline (it gave up after 5 s while the README said
/// 15: issue 8), saying what could not be delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_final_export_deadline_holds_with_a_receiver_that_never_answers() {
    let store = Store::default();
    store.script.always(Answer::Hang { processed: false });
    let rx = Protocol::Http.receiver(None, store).await;
    let (dir, r, log) = setup();
    append(&log, &ssh_match("10.11.0.1", "never").repeat(2));
    let e = start(&dir, otlp_config(&log, &r, &rx, Protocol::Http, ""), &[]).await;
    let store = rx.store.clone();
    eventually("an attempt", || !store.attempts().is_empty()).await;
    let (status, logs, took) = blocking(move || {
        let t = Instant::now();
        let (status, logs) = e.terminate_with_logs();
        (status, logs, t.elapsed())
    })
    .await;
    assert!(status.success());
    assert!(
        took >= Duration::from_secs(14) && took < Duration::from_secs(19),
        "stopped after {took:?}: the deadline is 15 s"
    );
    assert!(logs.contains("could not be delivered"), "{logs}");
    rx.stop().await;
}

/// 100,000 series recorded after the last periodic export are all in the final export
/// at SIGTERM (0 of them arrived with the SDK's PeriodicReader at 600,000: issue 8).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_final_export_arrives_whole() {
    let rx = Protocol::Grpc.receiver(None, Store::default()).await;
    let (dir, r, log) = setup();
    let n = 100_000u32;
    let mut text = String::with_capacity(n as usize * 60);
    for i in 0..n {
        text.push_str(&ssh_match(
            &format!("10.{}.{}.{}", 100 + (i >> 16), (i >> 8) & 255, i & 255),
            "final",
        ));
    }
    append(&log, &text);
    let cfg = otlp_config(&log, &r, &rx, Protocol::Grpc, INTERNALS)
        .replace("  interval: 0.3\n", "  interval: 3600\n")
        .replace("  timeout: 2\n", "  timeout: 10\n");
    let e = start(&dir, cfg, &[]).await;
    let e = blocking(move || {
        wait_for(Duration::from_secs(60), "100,000 lines read", || {
            (total(&e.scrape(), "reaction_exporter_lines_read_total", &[]) >= n as f64)
                .then_some(())
        });
        e
    })
    .await;
    assert!(
        rx.store.attempts().is_empty(),
        "nothing exported before SIGTERM"
    );
    let status = blocking(move || e.terminate()).await;
    assert!(status.success());
    let pts: Vec<Point> = rx.store.points_of("reaction.filter.matches");
    assert_eq!(pts.len(), n as usize);
    assert_eq!(pts.iter().map(|p| p.value).sum::<f64>(), n as f64);
    rx.stop().await;
}
