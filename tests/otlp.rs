//! OTLP push against a real gRPC receiver (opentelemetry-proto's tonic service): totals,
//! temporality on the wire, resource, cumulative mode, independence from `/metrics`, an
//! outage of the receiver, the final flush on SIGTERM and a 100,000-IP attack.

use crate::common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point, AggregationTemporality,
};

#[derive(Clone, Default)]
struct Store(
    Arc<Mutex<Vec<ExportMetricsServiceRequest>>>,
    /// The `x-team` metadata of each request.
    Arc<Mutex<Vec<Option<String>>>>,
);

#[tonic::async_trait]
impl MetricsService for Store {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let team = request
            .metadata()
            .get("x-team")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        self.1.lock().unwrap().push(team);
        self.0.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse {
            partial_success: None,
        }))
    }
}

/// A real OTLP gRPC receiver on loopback, with the default 4 MiB message limit.
struct Receiver {
    addr: SocketAddr,
    store: Store,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start(addr: Option<SocketAddr>, store: Store) -> Receiver {
        Self::start_with(addr, store, None).await
    }

    /// With `tls` (certificate and key, PEM), a TLS receiver.
    async fn start_with(
        addr: Option<SocketAddr>,
        store: Store,
        tls: Option<(String, String)>,
    ) -> Receiver {
        let listener = tokio::net::TcpListener::bind(addr.unwrap_or(([127, 0, 0, 1], 0).into()))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let svc = MetricsServiceServer::new(store.clone());
        let mut builder = tonic::transport::Server::builder();
        if let Some((cert, key)) = tls {
            builder = builder
                .tls_config(
                    tonic::transport::ServerTlsConfig::new()
                        .identity(tonic::transport::Identity::from_pem(cert, key)),
                )
                .unwrap();
        }
        let task = tokio::spawn(async move {
            builder
                .add_service(svc)
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener),
                    async {
                        let _ = rx.await;
                    },
                )
                .await
                .unwrap();
        });
        Receiver {
            addr,
            store,
            stop: Some(tx),
            task,
        }
    }

    async fn stop(mut self) -> (SocketAddr, Store) {
        let _ = self.stop.take().unwrap().send(());
        let _ = self.task.await;
        (self.addr, self.store)
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// One point as received.
#[derive(Debug, Clone)]
struct Point {
    metric: String,
    attrs: BTreeMap<String, String>,
    value: f64,
    temporality: Option<i32>,
    monotonic: bool,
    start: u64,
    time: u64,
}

fn points(store: &Store) -> Vec<Point> {
    let mut out = Vec::new();
    for req in store.0.lock().unwrap().iter() {
        for rm in &req.resource_metrics {
            for sm in &rm.scope_metrics {
                for m in &sm.metrics {
                    let (dps, temporality, monotonic) = match &m.data {
                        Some(Data::Sum(s)) => (
                            &s.data_points,
                            Some(s.aggregation_temporality),
                            s.is_monotonic,
                        ),
                        Some(Data::Gauge(g)) => (&g.data_points, None, false),
                        other => panic!("unexpected {other:?}"),
                    };
                    for p in dps {
                        let attrs = p
                            .attributes
                            .iter()
                            .map(|kv| {
                                let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                                    Some(any_value::Value::StringValue(s)) => s.clone(),
                                    other => format!("{other:?}"),
                                };
                                (kv.key.clone(), v)
                            })
                            .collect();
                        let value = match p.value {
                            Some(number_data_point::Value::AsInt(i)) => i as f64,
                            Some(number_data_point::Value::AsDouble(d)) => d,
                            None => f64::NAN,
                        };
                        out.push(Point {
                            metric: m.name.clone(),
                            attrs,
                            value,
                            temporality,
                            monotonic,
                            start: p.start_time_unix_nano,
                            time: p.time_unix_nano,
                        });
                    }
                }
            }
        }
    }
    out
}

/// Sum of a delta sum metric's points whose attributes include `having`.
fn sum(store: &Store, metric: &str, having: &[(&str, &str)]) -> f64 {
    points(store)
        .iter()
        .filter(|p| {
            p.metric == metric
                && having
                    .iter()
                    .all(|(k, v)| p.attrs.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|p| p.value)
        .sum()
}

fn otlp_config(log: &std::path::Path, r: &Reaction, endpoint: &str, extra: &str) -> String {
    file_config(
        log,
        r,
        &format!("otlp:\n  endpoint: {endpoint}\n  interval: 0.3\n  timeout: 2\n  instance_id: test-host\n{extra}"),
    )
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..400 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_sums_on_the_wire_match_the_events_exactly() {
    let rx = Receiver::start(None, Store::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let r = Reaction::new(dir.path(), &reaction_config());
    let log = dir.path().join("reaction.log");
    let mut text = String::new();
    for i in 0..30 {
        text.push_str(&ssh_match(&format!("10.0.0.{}", i % 3), "root"));
    }
    text.push_str("INFO ssh.failedlogin.ban: run [\"iptables\" \"-w\" \"-A\" \"reaction\" \"-s\" \"10.0.0.1\" \"-j\" \"DROP\"]\n");
    append(&log, &text);
    let cfg = otlp_config(&log, &r, &rx.endpoint(), "");
    let dirp = dir.path().to_owned();
    let e = blocking(move || Exporter::start(&dirp, &cfg)).await;
    let store = rx.store.clone();
    eventually("30 matches", || {
        sum(&store, "reaction.filter.matches", &[]) >= 30.0
    })
    .await;
    // A second burst, to see a second delta.
    append(&log, &ssh_match("10.0.0.9", "bob"));
    eventually("31 matches", || {
        sum(&store, "reaction.filter.matches", &[]) >= 31.0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;

    for i in 0..3 {
        let ip = format!("10.0.0.{i}");
        assert_eq!(
            sum(
                &store,
                "reaction.filter.matches",
                &[
                    ("ip", &ip),
                    ("user", "root"),
                    ("stream", "ssh"),
                    ("filter", "failedlogin")
                ]
            ),
            10.0,
            "{ip}"
        );
    }
    assert_eq!(
        sum(&store, "reaction.filter.matches", &[("ip", "10.0.0.9")]),
        1.0
    );
    assert_eq!(
        sum(&store, "reaction.filter.matches", &[]),
        31.0,
        "nothing twice"
    );
    assert_eq!(
        sum(
            &store,
            "reaction.action.runs",
            &[("action", "ban"), ("ip", "10.0.0.1"), ("user", "root")]
        ),
        1.0
    );

    let pts = points(&store);
    let matches: Vec<&Point> = pts
        .iter()
        .filter(|p| p.metric == "reaction.filter.matches")
        .collect();
    for p in &matches {
        assert_eq!(p.temporality, Some(AggregationTemporality::Delta as i32));
        assert!(p.monotonic);
        assert!(p.start <= p.time);
    }
    // Only changed series in each delta export: the 10.0.0.9 point is the only match
    // point after the first burst, and no series is ever sent with 0.
    assert!(matches.iter().all(|p| p.value > 0.0));
    let later: Vec<&&Point> = matches
        .iter()
        .filter(|p| p.attrs["ip"] == "10.0.0.9")
        .collect();
    assert_eq!(later.len(), 1);
    let after_first: Vec<&&Point> = matches.iter().filter(|p| p.time >= later[0].time).collect();
    assert_eq!(
        after_first.len(),
        1,
        "unchanged series are not re-sent: {after_first:?}"
    );

    // Resource.
    let req = rx.store.0.lock().unwrap()[0].clone();
    let res = req.resource_metrics[0].resource.as_ref().unwrap();
    let attr = |k: &str| {
        res.attributes.iter().find(|kv| kv.key == k).and_then(|kv| {
            match kv.value.as_ref()?.value.as_ref()? {
                any_value::Value::StringValue(s) => Some(s.clone()),
                _ => None,
            }
        })
    };
    assert_eq!(
        attr("service.name").as_deref(),
        Some("reaction-metrics-exporter")
    );
    assert_eq!(
        attr("service.version").as_deref(),
        Some(env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(attr("service.instance.id").as_deref(), Some("test-host"));
    // Gauges: reaction's status, once a status refresh (`reaction -V` and `reaction show`,
    // two runs of the Python stand-in: slow on a loaded machine) has completed.
    eventually("reaction.up with reaction's version", || {
        points(&store)
            .iter()
            .any(|p| p.metric == "reaction.up" && p.value == 1.0 && p.attrs["version"] == "2.2.0")
    })
    .await;
    drop(e);
    rx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cumulative_mode_sends_running_totals() {
    let rx = Receiver::start(None, Store::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let r = Reaction::new(dir.path(), &reaction_config());
    let log = dir.path().join("reaction.log");
    append(&log, &ssh_match("10.0.0.1", "root").repeat(4));
    let cfg = otlp_config(&log, &r, &rx.endpoint(), "  temporality: cumulative\n");
    let dirp = dir.path().to_owned();
    let e = blocking(move || Exporter::start(&dirp, &cfg)).await;
    let store = rx.store.clone();
    let latest = |store: &Store| {
        points(store)
            .into_iter()
            .filter(|p| p.metric == "reaction.filter.matches")
            .max_by_key(|p| p.time)
    };
    eventually("4 matches", || {
        latest(&store).is_some_and(|p| p.value == 4.0)
    })
    .await;
    append(&log, &ssh_match("10.0.0.1", "root").repeat(2));
    eventually("6 matches", || {
        latest(&store).is_some_and(|p| p.value == 6.0)
    })
    .await;
    let pts: Vec<Point> = points(&store)
        .into_iter()
        .filter(|p| p.metric == "reaction.filter.matches")
        .collect();
    assert!(pts
        .iter()
        .all(|p| p.temporality == Some(AggregationTemporality::Cumulative as i32) && p.monotonic));
    let start = pts[0].start;
    assert!(
        pts.iter().all(|p| p.start == start),
        "one start time for a cumulative series"
    );
    // Values never go down.
    let mut by_time = pts.clone();
    by_time.sort_by_key(|p| p.time);
    assert!(by_time.windows(2).all(|w| w[0].value <= w[1].value));
    drop(e);
    rx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_and_otlp_each_see_every_event() {
    let rx = Receiver::start(None, Store::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let r = Reaction::new(dir.path(), &reaction_config());
    let log = dir.path().join("reaction.log");
    append(&log, "");
    let cfg = otlp_config(&log, &r, &rx.endpoint(), "");
    let dirp = dir.path().to_owned();
    let e = Arc::new(blocking(move || Exporter::start(&dirp, &cfg)).await);
    let store = rx.store.clone();
    // Scrape continuously while lines arrive: both must see all 200.
    let scraped = Arc::new(Mutex::new(0.0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let scraper = {
        let (e, scraped, stop) = (e.clone(), scraped.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let body = e.scrape();
                *scraped.lock().unwrap() += total(&body, "reaction_match_count", &[]);
                std::thread::sleep(Duration::from_millis(37));
            }
        })
    };
    for i in 0..200 {
        append(&log, &ssh_match(&format!("10.1.0.{}", i % 50), "u"));
        if i % 20 == 0 {
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
    }
    eventually("OTLP has 200", || {
        sum(&store, "reaction.filter.matches", &[]) >= 200.0
    })
    .await;
    eventually("/metrics has 200", || *scraped.lock().unwrap() >= 200.0).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    scraper.join().unwrap();
    let last = e.scrape();
    assert_eq!(
        *scraped.lock().unwrap() + total(&last, "reaction_match_count", &[]),
        200.0
    );
    assert_eq!(sum(&store, "reaction.filter.matches", &[]), 200.0);
    rx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_outage_loses_nothing_and_sigterm_flushes_the_rest() {
    let rx = Receiver::start(None, Store::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let r = Reaction::new(dir.path(), &reaction_config());
    let log = dir.path().join("reaction.log");
    append(&log, &ssh_match("10.2.0.1", "a").repeat(5));
    let cfg = otlp_config(&log, &r, &rx.endpoint(), "  timeout: 0.5\n");
    let cfg = cfg.replace("  timeout: 2\n  instance_id", "  instance_id");
    let dirp = dir.path().to_owned();
    let e = blocking(move || Exporter::start(&dirp, &cfg)).await;
    let store = rx.store.clone();
    eventually("first 5", || {
        sum(&store, "reaction.filter.matches", &[]) >= 5.0
    })
    .await;

    // The receiver goes away; events keep coming.
    let (addr, store) = rx.stop().await;
    for i in 0..40 {
        append(&log, &ssh_match(&format!("10.2.1.{}", i % 7), "b"));
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    tokio::time::sleep(Duration::from_millis(1200)).await; // several failed exports
    assert_eq!(sum(&store, "reaction.filter.matches", &[]), 5.0);
    // It comes back on the same address: everything arrives, once.
    let rx = Receiver::start(Some(addr), store.clone()).await;
    eventually("45 matches", || {
        sum(&store, "reaction.filter.matches", &[]) >= 45.0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(sum(&store, "reaction.filter.matches", &[]), 45.0);
    for i in 0..7 {
        let ip = format!("10.2.1.{i}");
        let expected = (0..40).filter(|j| j % 7 == i).count() as f64;
        assert_eq!(
            sum(&store, "reaction.filter.matches", &[("ip", &ip)]),
            expected,
            "{ip}"
        );
    }
    let body = e.scrape_openmetrics();
    let _ = body;

    // Lines read right before SIGTERM are flushed by the final export, not lost.
    let status = blocking({
        let log = log.clone();
        move || {
            append(&log, &ssh_match("10.2.9.9", "last").repeat(3));
            std::thread::sleep(Duration::from_millis(300));
            e.terminate()
        }
    })
    .await;
    assert!(status.success());
    assert_eq!(
        sum(&store, "reaction.filter.matches", &[("ip", "10.2.9.9")]),
        3.0
    );
    assert_eq!(sum(&store, "reaction.filter.matches", &[]), 48.0);
    rx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_of_100k_ips_in_one_interval_arrives_whole() {
    let rx = Receiver::start(None, Store::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let r = Reaction::new(dir.path(), &reaction_config());
    let log = dir.path().join("reaction.log");
    let n = 100_000u32;
    let mut text = String::with_capacity(n as usize * 60);
    for i in 0..n {
        text.push_str(&ssh_match(
            &format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255),
            "root",
        ));
    }
    append(&log, &text);
    // One long interval: the whole attack lands in one export.
    let cfg = file_config(
        &log,
        &r,
        &format!(
            "otlp:\n  endpoint: {}\n  interval: 3\n  timeout: 10\nmetrics:\n  export:\n    internals: true\n",
            rx.endpoint()
        ),
    );
    let dirp = dir.path().to_owned();
    let e = blocking(move || Exporter::start(&dirp, &cfg)).await;
    let store = rx.store.clone();
    eventually("100k matches", || {
        sum(&store, "reaction.filter.matches", &[]) >= n as f64
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pts: Vec<Point> = points(&store)
        .into_iter()
        .filter(|p| p.metric == "reaction.filter.matches")
        .collect();
    assert_eq!(
        pts.len(),
        n as usize,
        "one point per IP, no overflow series"
    );
    assert!(pts.iter().all(|p| p.value == 1.0));
    let requests = store.0.lock().unwrap().len();
    assert!(requests > 1, "split into several requests under 4 MiB");
    let body = blocking(move || {
        let b = e.scrape();
        drop(e);
        b
    })
    .await;
    assert_eq!(
        total(&body, "reaction_exporter_otlp_failures_total", &[]),
        0.0
    );
    rx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_private_ca_and_headers() {
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert_pem, key_pem) = (cert.cert.pem(), cert.signing_key.serialize_pem());
    let rx = Receiver::start_with(None, Store::default(), Some((cert_pem.clone(), key_pem))).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &cert_pem).unwrap();
    let r = Reaction::new(dir.path(), &reaction_config());
    let log = dir.path().join("reaction.log");
    append(&log, &ssh_match("10.3.0.1", "tls").repeat(2));
    let endpoint = format!("https://127.0.0.1:{}", rx.addr.port());
    let cfg = otlp_config(
        &log,
        &r,
        &endpoint,
        &format!("  ca: {}\n  headers:\n    x-team: sec\n", ca.display()),
    );
    let dirp = dir.path().to_owned();
    let e = blocking(move || Exporter::start(&dirp, &cfg)).await;
    let store = rx.store.clone();
    eventually("2 matches over TLS", || {
        sum(&store, "reaction.filter.matches", &[]) >= 2.0
    })
    .await;
    assert_eq!(
        sum(&store, "reaction.filter.matches", &[("ip", "10.3.0.1")]),
        2.0
    );
    let teams = store.1.lock().unwrap().clone();
    assert!(
        !teams.is_empty() && teams.iter().all(|t| t.as_deref() == Some("sec")),
        "{teams:?}"
    );
    drop(e);

    // Without the CA, the system roots do not trust the receiver: nothing arrives, and the
    // failure is counted, never fatal.
    let dir2 = tempfile::tempdir().unwrap();
    let r2 = Reaction::new(dir2.path(), &reaction_config());
    let log2 = dir2.path().join("reaction.log");
    append(&log2, &ssh_match("10.3.0.2", "untrusted"));
    let cfg2 = otlp_config(
        &log2,
        &r2,
        &endpoint,
        "metrics:\n  export:\n    internals: true\n",
    );
    let dirp2 = dir2.path().to_owned();
    let e2 = Arc::new(blocking(move || Exporter::start(&dirp2, &cfg2)).await);
    let e2c = e2.clone();
    let failures = blocking(move || {
        wait_for(Duration::from_secs(20), "an OTLP failure", || {
            let body = e2c.scrape();
            let f = total(&body, "reaction_exporter_otlp_failures_total", &[]);
            (f > 0.0).then_some(f)
        })
    })
    .await;
    assert!(failures > 0.0);
    assert_eq!(
        sum(&store, "reaction.filter.matches", &[("ip", "10.3.0.2")]),
        0.0
    );
    rx.stop().await;
}
