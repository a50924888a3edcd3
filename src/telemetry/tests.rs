//! What a real `Telemetry` collects is what the metric table says: every metric, with its
//! unit, instrument kind and attribute keys (`tests/registry.rs` checks the table against
//! `otel/`). Each counter gets a point, each internal counter one event of every series it
//! has, each gauge something to observe.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use opentelemetry::KeyValue;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::Resource;

use super::collect::Collected;
use super::instruments::ReactionStatus;
use super::{SharedReader, Telemetry};
use crate::internal::counts::{Reader, Reject};
use crate::internal::events;
use crate::internal::{Counter, Internal};
use crate::metric::{is_valid_label_name, Kind, Metric};
use crate::source::Origin;

/// Emits an event of every series of `counter`.
fn emit_every_series(internal: &Internal, counter: Counter) {
    let path = Path::new("/var/log/reaction.log");
    let io = std::io::Error::other("test");
    match counter {
        Counter::LinesRead => internal.lines_read(1, SystemTime::now()),
        Counter::LinesRejected => {
            for reason in [
                Reject::Unknown,
                Reject::Malformed,
                Reject::UnknownName,
                Reject::PatternMismatch,
            ] {
                internal.emit(events::LineRejected {
                    reason,
                    line: "x",
                    detail: &"test",
                });
            }
            internal.emit(events::LineNotUtf8 {
                origin: Origin::File(path),
            });
            internal.emit(events::LineTooLong {
                origin: Origin::Journal { unit: "r.service" },
                len: 1,
            });
        }
        Counter::SourceErrors => {
            internal.emit(events::FileUnreadable { path, error: &io });
            internal.emit(events::JournalctlFailed {
                what: "journalctl not found",
                detail: &"test",
            });
            internal.emit(events::StateFileFailed { error: &"test" });
        }
        Counter::FileRotations => internal.emit(events::FileRotated { path }),
        Counter::FileTruncations => internal.emit(events::FileTruncated { path }),
        Counter::CliFailures => internal.emit(events::CliFailed {
            command: "show",
            kind: "timeout",
            error: &"test",
        }),
        Counter::ActionsHeld => internal.emit(events::ActionHeld { target: "s.f.a" }),
        Counter::TransformErrors => internal.emit(events::TransformFailed {
            pattern: "ip",
            error: "test",
        }),
        Counter::LabelValuesTruncated => internal.emit(events::LabelValueTruncated {
            label: "ua",
            len: 2000,
            max: 1024,
        }),
        Counter::CacheEvictions => internal.emit(events::CacheEvicted {
            cache: crate::internal::counts::Cache::Transform,
            bound: crate::internal::counts::Bound::Bytes,
            entries: 1,
            owner: "transforms",
        }),
        Counter::ScrapesUndelivered => internal.emit(events::ScrapeUndelivered { series: 1 }),
        Counter::PositionsInvalid => internal.emit(events::PositionInvalid {
            position: "x",
            fallback: "y",
        }),
        Counter::OtlpFailures => {
            internal.emit(events::OtlpExportFailed {
                endpoint: "http://c:4317",
                status: &"unavailable",
                points_kept: 1,
                series_kept: 1,
                retry_in: std::time::Duration::from_secs(1),
            });
            internal.emit(events::OtlpPointsRejected {
                points: 1,
                message: "test",
            });
        }
        Counter::CardinalityOverflows => {
            for reader in [Reader::Prometheus, Reader::Otlp] {
                internal.emit(events::CardinalityOverflow { reader, events: 2 });
            }
        }
        Counter::OtlpPointsDropped => {
            internal.emit(events::OtlpPointsDropped {
                reason: events::BUFFER_FULL,
                points: 3,
            });
            internal.emit(events::OtlpPointsDropped {
                reason: "http_400",
                points: 2,
            });
        }
        Counter::OtlpRequestsDropped => internal.emit(events::OtlpRequestDropped {
            endpoint: "http://c:4318/v1/metrics",
            reason: "http_400",
            status: &"HTTP 400: bad",
            points: 2,
        }),
        Counter::HttpFailures => internal.emit(events::HttpFailed {
            kind: crate::internal::counts::HttpFailure::HeaderTimeout,
            peer: None,
            detail: &"test",
        }),
        Counter::ConfigReloads => internal.emit(events::ConfigReloadFailed { error: &"test" }),
    }
}

#[test]
fn collected_metrics_are_the_table() {
    let internal = Arc::new(Internal::new());
    let telemetry = Telemetry::new(
        2000,
        Resource::builder().build(),
        true,
        None,
        internal.clone(),
    );
    // Pattern attributes as the labeller names them (`label::label_name`).
    let patterns = [
        ("ip", "203.0.113.7"),
        ("_1ip", "192.0.2.1"),
        ("pattern_stream", "x"),
    ];
    let attrs_of = |m: Metric| -> Vec<KeyValue> {
        let spec = m.spec();
        let mut kv: Vec<KeyValue> = spec
            .attributes
            .iter()
            .map(|k| KeyValue::new(*k, "v"))
            .collect();
        if spec.patterns {
            kv.extend(
                patterns
                    .iter()
                    .map(|(k, v)| KeyValue::new(*k, v.to_string())),
            );
        }
        kv
    };
    for &m in Metric::ALL {
        match m.spec().kind {
            Kind::Counter => telemetry.instruments().add(m, 1, &attrs_of(m)),
            Kind::ObservableCounter(c) => emit_every_series(&internal, c),
            Kind::ObservableGauge(_)
            | Kind::ObservableGaugeF64(_)
            | Kind::ObservableCounterF64(_) => {}
        }
    }
    telemetry
        .gauges
        .pending
        .lock()
        .unwrap()
        .push((attrs_of(Metric::PendingActions), 2));
    telemetry.gauges.reaction.lock().unwrap().up = true;

    let (collections, error) = telemetry.pull_reader.as_ref().unwrap().collect();
    assert!(error.is_none(), "{error:?}");
    let mut problems = Vec::new();
    let mut collected = BTreeSet::new();
    for scope in collections.iter().flat_map(|c| c.rm.scope_metrics()) {
        for metric in scope.metrics() {
            let name = metric.name();
            let Some(m) = Metric::from_otel_name(name) else {
                problems.push(format!("{name}: collected, not in the table"));
                continue;
            };
            collected.insert(m);
            let spec = m.spec();
            if metric.unit() != spec.unit {
                problems.push(format!("{name}: unit {:?}", metric.unit()));
            }
            let (counter, keys) = describe(metric.data());
            let want_counter = matches!(
                spec.kind,
                Kind::Counter | Kind::ObservableCounter(_) | Kind::ObservableCounterF64(_)
            );
            if counter != want_counter {
                problems.push(format!("{name}: collected as a counter: {counter}"));
            }
            if keys.is_empty() {
                problems.push(format!("{name}: no data point"));
            }
            for keys in keys {
                let fixed: Vec<&str> = spec.attributes.to_vec();
                for k in &fixed {
                    if !keys.contains(*k) {
                        problems.push(format!("{name}: attribute `{k}` missing"));
                    }
                }
                for k in &keys {
                    let pattern = spec.patterns && is_valid_label_name(k);
                    if !fixed.contains(&k.as_str()) && !pattern {
                        problems.push(format!("{name}: attribute `{k}` not in the table"));
                    }
                }
            }
        }
    }
    for m in Metric::ALL {
        if !collected.contains(m) {
            problems.push(format!("{}: not collected", m.spec().otel));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// Whether collected data is a (monotonic) sum, and the attribute keys of each point, as
/// the consumers read them (unpacked: see `telemetry::packed`).
fn describe(data: &AggregatedMetrics) -> (bool, Vec<BTreeSet<String>>) {
    fn keys<'a>(kvs: impl Iterator<Item = &'a KeyValue>) -> BTreeSet<String> {
        super::packed::pairs(kvs)
            .map(|(k, _)| k.to_string())
            .collect()
    }
    macro_rules! of {
        ($d:expr) => {
            match $d {
                MetricData::Gauge(g) => (
                    false,
                    g.data_points().map(|p| keys(p.attributes())).collect(),
                ),
                MetricData::Sum(s) => (
                    s.is_monotonic(),
                    s.data_points().map(|p| keys(p.attributes())).collect(),
                ),
                MetricData::Histogram(_) | MetricData::ExponentialHistogram(_) => {
                    (false, Vec::new())
                }
            }
        };
    }
    match data {
        AggregatedMetrics::F64(d) => of!(d),
        AggregatedMetrics::U64(d) => of!(d),
        AggregatedMetrics::I64(d) => of!(d),
    }
}

/// Regression (found when `/metrics/otel`'s reader came in): opentelemetry_sdk records
/// what an observable callback observes into every reader, so another reader's collection
/// left its series in this reader's gauges, and a series gone since (here reaction's
/// version `N/A` before it was known, a pending action executed) came back in this
/// reader's next collection: a scrape showed `reaction_status_info{version="N/A",
/// status="0"}` after a successful `reaction show`. Each collection keeps only what it
/// observed itself (`telemetry::observed`).
#[test]
fn a_collection_keeps_only_the_gauge_series_it_observed_itself() {
    let internal = Arc::new(Internal::new());
    let other = SharedReader::delta();
    let telemetry = Telemetry::new_with(
        2000,
        Resource::builder().build(),
        true,
        None,
        Some(other.clone()),
        internal,
    );
    let pending = |ip: &str| {
        vec![
            KeyValue::new("stream", "ssh"),
            KeyValue::new("filter", "failedlogin"),
            KeyValue::new("action", "ban"),
            KeyValue::new("ip", ip.to_string()),
        ]
    };
    *telemetry.gauges.pending.lock().unwrap() = vec![(pending("192.0.2.1"), 1)];
    // The other reader collects: its callbacks observe into every reader.
    let _ = other.collect();
    // Then reaction answers: the version is known, the pending action is executed.
    *telemetry.gauges.pending.lock().unwrap() = vec![(pending("192.0.2.2"), 1)];
    *telemetry.gauges.reaction.lock().unwrap() = ReactionStatus {
        version: "2.2.0".into(),
        up: true,
    };
    let reader = telemetry.pull_reader.as_ref().unwrap();
    let (collections, error) = reader.collect();
    assert!(error.is_none(), "{error:?}");
    // What the SDK gave, every gauge series it holds.
    let mut raw = Collected::default();
    for c in &collections {
        raw.gauges
            .extend(Collected::from_resource_metrics(&c.rm).gauges);
    }
    let stale = |c: &Collected| {
        c.gauges.keys().any(|(m, attrs)| {
            attrs.iter().any(|(_, v)| v == "N/A" || v == "192.0.2.1")
                && matches!(m, Metric::Up | Metric::PendingActions)
        })
    };
    assert!(
        stale(&raw),
        "the SDK no longer leaks observations across readers: {:?}; telemetry::observed \
         can go",
        raw.gauges
    );
    // What a consumer keeps (`Collected::from_collections`, as a scrape does).
    let kept = Collected::from_collections(&collections);
    assert!(!stale(&kept), "{:?}", kept.gauges);
    let series = |m: Metric| kept.gauges.keys().filter(|(k, _)| *k == m).count();
    assert_eq!(series(Metric::PendingActions), 1, "{:?}", kept.gauges);
    assert_eq!(series(Metric::Up), 1, "{:?}", kept.gauges);
}

/// Guards a reload of `metrics.cardinality_limit` (issue 10): the events provider is
/// replaced while counts wait in the old one's readers, and a collection after takes them
/// once, beside what the new provider holds, each series once, and the exporter's own
/// counters (observable running totals, in the provider never rebuilt) are not counted
/// again.
#[test]
fn a_rebuilt_provider_loses_and_doubles_nothing() {
    let internal = Arc::new(Internal::new());
    let otel = SharedReader::delta();
    let telemetry = Telemetry::new_with(
        2,
        Resource::builder().build(),
        true,
        None,
        Some(otel.clone()),
        internal.clone(),
    );
    let ip = |v: &str| {
        vec![
            KeyValue::new("stream", "s"),
            KeyValue::new("ip", v.to_string()),
        ]
    };
    let record = |ips: &[&str]| {
        let instruments = telemetry.instruments();
        for v in ips {
            instruments.add(Metric::Matches, 1, &ip(v));
        }
    };
    let sums = |reader: &SharedReader| {
        let (collections, error) = reader.collect();
        assert!(error.is_none(), "{error:?}");
        let c = Collected::from_collections(&collections);
        let mut by: std::collections::BTreeMap<String, u64> = Default::default();
        for ((m, attrs), v) in c.sums {
            let name = match m {
                Metric::Matches if attrs.is_overflow() => "overflow".to_string(),
                Metric::Matches => attrs.get("ip").unwrap_or("?").to_string(),
                other => other.spec().otel.to_string(),
            };
            assert!(by.insert(name.clone(), v).is_none(), "{name} twice");
        }
        by
    };
    let pull = telemetry.pull_reader.clone().unwrap();
    record(&["a", "b"]);
    internal.lines_read(2, SystemTime::now());
    assert_eq!(sums(&pull)["a"], 1, "a first collection");
    let _ = sums(&otel);
    // Past the limit of 2: `c` goes to the overflow series.
    record(&["a", "c"]);
    internal.lines_read(2, SystemTime::now());
    let rebuilt = telemetry.rebuild(10);
    telemetry.put_in_force(rebuilt);
    assert_eq!((pull.retired(), otel.retired()), (1, 1));
    // After the reload: the new limit of 10 takes `c`, `d`, `e` as series of their own.
    record(&["a", "c", "d", "e"]);
    internal.lines_read(4, SystemTime::now());
    let lines = "reaction.exporter.lines.read";
    for reader in [&pull, &otel] {
        let got = sums(reader);
        assert_eq!(
            reader.retired(),
            0,
            "retired readers are dropped once collected"
        );
        assert_eq!(got["a"], 2, "a before and after the reload, once: {got:?}");
        assert_eq!(got["overflow"], 1, "c before the reload: {got:?}");
        assert_eq!(
            got["c"], 1,
            "c after the reload has its own series: {got:?}"
        );
        assert_eq!((got["d"], got["e"]), (1, 1), "{got:?}");
        assert_eq!(
            got[lines], 6,
            "lines read since the last collection, once: {got:?}"
        );
        // Nothing left behind.
        let again = sums(reader);
        assert!(
            again.values().all(|v| *v == 0) || again.is_empty(),
            "{again:?}"
        );
    }
}

/// Guards the SDK tables' size (issue 13: 2 MiB of control bytes per instrument and reader
/// at a limit of 1,000,000, before any series): only the instruments whose series come
/// from the logs and reaction's pending actions take `metrics.cardinality_limit`.
#[test]
fn only_event_counters_and_pending_actions_take_the_configured_limit() {
    use super::series_limit;
    for &m in Metric::ALL {
        let big = matches!(m.spec().kind, Kind::Counter) || m == Metric::PendingActions;
        let want = if big { 1_000_000 } else { 1_000 };
        assert_eq!(series_limit(m, 1_000_000), want, "{}", m.spec().otel);
        assert_eq!(
            series_limit(m, 10),
            10,
            "a lower limit applies to every instrument"
        );
    }
}

/// Guards `Collected::overflowed` (issue 13: it was found by reading the attributes of every
/// series at each scrape): it is the sum of every overflow series' events, the SDK's past
/// the limit and one whose attributes hold `otel.metric.overflow` themselves (such a set is
/// not packed, so that a packed one never needs reading), and nothing else.
#[test]
fn overflowed_events_are_the_overflow_series_events() {
    let telemetry = Telemetry::new_with(
        4,
        Resource::builder().build(),
        true,
        None,
        None,
        Arc::new(Internal::new()),
    );
    let instruments = telemetry.instruments();
    let ip = |v: &str| {
        vec![
            KeyValue::new("ip", v.to_string()),
            KeyValue::new("stream", "s"),
        ]
    };
    let own = vec![
        KeyValue::new("ip", "x"),
        KeyValue::new(crate::metric::OVERFLOW_KEY, "true"),
    ];
    instruments.add(Metric::Matches, 5, &own);
    for v in ["a", "b", "c", "d", "e", "f"] {
        instruments.add(Metric::Matches, 2, &ip(v));
    }
    let (collections, error) = telemetry.pull_reader.clone().unwrap().collect();
    assert!(error.is_none(), "{error:?}");
    let c = Collected::from_collections(&collections);
    let in_overflow: u64 = (c.sums.iter())
        .filter(|((m, attrs), _)| *m == Metric::Matches && attrs.is_overflow())
        .map(|(_, v)| v)
        .sum();
    let matches: u64 = (c.sums.iter())
        .filter(|((m, _), _)| *m == Metric::Matches)
        .map(|(_, v)| v)
        .sum();
    assert_eq!(matches, 17, "{:?}", c.sums);
    assert!(
        in_overflow > 5,
        "some went to the SDK's overflow series: {:?}",
        c.sums
    );
    assert_eq!(c.overflowed, in_overflow, "{:?}", c.sums);
}
