//! OTLP push against real receivers on the loopback (`tests/receivers`: opentelemetry-proto's
//! tonic gRPC service, and an HTTP server decoding `ExportMetricsServiceRequest`): totals,
//! temporality on the wire, resource, cumulative mode, independence from `/metrics`, an
//! outage of the receiver and the final flush on SIGTERM over both protocols, a
//! 100,000-IP attack over both, TLS with a private CA and mutual TLS.
//!
//! The receivers' failure answers, the timeout cases behind `deltatocumulative`, vanished
//! gauges and the final deadline are in `otlp_faults`; HTTP encodings and the direct
//! recipes in `otlp_http`.

use crate::common;
use crate::receivers;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use opentelemetry_proto::tonic::metrics::v1::AggregationTemporality;
use receivers::*;

/// The two transports, each test runs on both where the issue asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    Http,
}

pub const BOTH: [Protocol; 2] = [Protocol::Grpc, Protocol::Http];

impl Protocol {
    /// A receiver for this protocol (HTTP: the default path, 64 MiB bodies).
    pub async fn receiver(self, addr: Option<std::net::SocketAddr>, store: Store) -> Receiver {
        self.receiver_tls(addr, store, None).await
    }

    pub async fn receiver_tls(
        self,
        addr: Option<std::net::SocketAddr>,
        store: Store,
        tls: Option<ServerTls>,
    ) -> Receiver {
        match self {
            Protocol::Grpc => Receiver::grpc(addr, store, tls).await,
            Protocol::Http => Receiver::http(addr, store, "/v1/metrics", 64 << 20, tls).await,
        }
    }

    /// `otlp.protocol`, as written in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::Http => "http/protobuf",
        }
    }
}

/// The `otlp` section: `endpoint`, `protocol`, a short interval and timeout, a fixed
/// instance id, then `extra` (more `otlp` keys, indented, or other top-level sections).
pub fn otlp_section(endpoint: &str, protocol: Protocol, extra: &str) -> String {
    format!(
        "otlp:\n  endpoint: {endpoint}\n  protocol: {}\n  interval: 0.3\n  timeout: 2\n  instance_id: test-host\n{extra}",
        protocol.name()
    )
}

pub fn otlp_config(
    log: &std::path::Path,
    r: &Reaction,
    rx: &Receiver,
    protocol: Protocol,
    extra: &str,
) -> String {
    file_config(log, r, &otlp_section(&rx.endpoint(), protocol, extra))
}

pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

pub async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..600 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

/// A fresh directory, reaction fixture and log.
pub fn setup() -> (tempfile::TempDir, Reaction, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let r = Reaction::new(dir.path(), &reaction_config());
    let log = dir.path().join("reaction.log");
    append(&log, "");
    (dir, r, log)
}

pub async fn start(dir: &tempfile::TempDir, cfg: String, env: &[(&str, &str)]) -> Exporter {
    let path = dir.path().join("config.yml");
    std::fs::write(&path, cfg).unwrap();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    blocking(move || {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Exporter::start_with(&path, &env)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_sums_on_the_wire_match_the_events_exactly() {
    let rx = Protocol::Grpc.receiver(None, Store::default()).await;
    let (dir, r, log) = setup();
    let mut text = String::new();
    for i in 0..30 {
        text.push_str(&ssh_match(&format!("10.0.0.{}", i % 3), "root"));
    }
    text.push_str(&ssh_action("ban", "10.0.0.1"));
    append(&log, &text);
    let e = start(&dir, otlp_config(&log, &r, &rx, Protocol::Grpc, ""), &[]).await;
    let store = rx.store.clone();
    eventually("30 matches", || {
        store.sum("reaction.filter.matches", &[]) >= 30.0
    })
    .await;
    // A second burst, to see a second delta.
    append(&log, &ssh_match("10.0.0.9", "bob"));
    eventually("31 matches", || {
        store.sum("reaction.filter.matches", &[]) >= 31.0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;

    for i in 0..3 {
        let ip = format!("10.0.0.{i}");
        let having = [
            ("ip", ip.as_str()),
            ("user", "root"),
            ("stream", "ssh"),
            ("filter", "failedlogin"),
        ];
        assert_eq!(store.sum("reaction.filter.matches", &having), 10.0, "{ip}");
    }
    assert_eq!(
        store.sum("reaction.filter.matches", &[("ip", "10.0.0.9")]),
        1.0
    );
    assert_eq!(
        store.sum("reaction.filter.matches", &[]),
        31.0,
        "nothing twice"
    );
    assert_eq!(
        store.sum(
            "reaction.action.runs",
            &[("action", "ban"), ("ip", "10.0.0.1"), ("user", "root")]
        ),
        1.0
    );

    let pts = store.points();
    let matches: Vec<&Point> = pts
        .iter()
        .filter(|p| p.metric == "reaction.filter.matches")
        .collect();
    for p in &matches {
        assert_eq!(p.temporality, Some(AggregationTemporality::Delta as i32));
        assert!(p.monotonic);
        assert!(p.start <= p.time);
        // One attribute per label on the wire: the SDK holds them packed in one
        // (`telemetry::packed`), and the request unpacks them.
        let keys: Vec<&str> = p.attrs.keys().map(String::as_str).collect();
        assert_eq!(keys, ["filter", "ip", "stream", "user"], "{p:?}");
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
    let res = &pts[0].resource;
    assert_eq!(res["service.name"], "reaction-metrics-exporter");
    assert_eq!(res["service.version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(res["service.instance.id"], "test-host");
    assert_eq!(res["telemetry.sdk.language"], "rust");
    // The User-Agent names the exporter.
    let ua = &store.attempts()[0].headers["user-agent"];
    assert!(ua.starts_with("reaction-metrics-exporter/"), "{ua}");
    // Gauges: reaction's status, once a status refresh (`reaction -V` and `reaction show`,
    // two runs of the Python stand-in: slow on a loaded machine) has completed.
    eventually("reaction.up with reaction's version", || {
        store
            .points()
            .iter()
            .any(|p| p.metric == "reaction.up" && p.value == 1.0 && p.attrs["version"] == "2.2.0")
    })
    .await;
    drop(e);
    rx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cumulative_mode_sends_running_totals() {
    let rx = Protocol::Http.receiver(None, Store::default()).await;
    let (dir, r, log) = setup();
    append(&log, &ssh_match("10.0.0.1", "root").repeat(4));
    let cfg = otlp_config(&log, &r, &rx, Protocol::Http, "  temporality: Cumulative\n");
    let e = start(&dir, cfg, &[]).await;
    let store = rx.store.clone();
    let latest = |store: &Store| {
        store
            .points()
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
    let pts: Vec<Point> = store.points_of("reaction.filter.matches");
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

/// `lowmemory` has the specification's meaning per instrument kind
/// (`metrics/sdk_exporters/otlp.md`): delta for (synchronous) counters, cumulative for
/// asynchronous counters (the exporter's own, e.g. lines read); `delta` makes both delta.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lowmemory_is_delta_for_counters_and_cumulative_for_observable_counters() {
    for (pref, own) in [
        ("LOWMEMORY", AggregationTemporality::Cumulative),
        ("delta", AggregationTemporality::Delta),
    ] {
        let rx = Protocol::Grpc.receiver(None, Store::default()).await;
        let (dir, r, log) = setup();
        append(&log, &ssh_match("10.9.0.1", "root").repeat(3));
        let cfg = otlp_config(&log, &r, &rx, Protocol::Grpc, "");
        let e = start(
            &dir,
            cfg,
            &[("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", pref)],
        )
        .await;
        let store = rx.store.clone();
        eventually("3 matches", || {
            store.sum("reaction.filter.matches", &[]) >= 3.0
        })
        .await;
        eventually("lines read", || {
            store
                .points()
                .iter()
                .any(|p| p.metric == "reaction.exporter.lines.read")
        })
        .await;
        let pts = store.points();
        let kind = |metric: &str| {
            let ts: std::collections::BTreeSet<i32> = pts
                .iter()
                .filter(|p| p.metric == metric)
                .filter_map(|p| p.temporality)
                .collect();
            assert_eq!(ts.len(), 1, "{pref}: {metric}: {ts:?}");
            *ts.iter().next().unwrap()
        };
        assert_eq!(
            kind("reaction.filter.matches"),
            AggregationTemporality::Delta as i32,
            "{pref}"
        );
        assert_eq!(kind("reaction.exporter.lines.read"), own as i32, "{pref}");
        drop(e);
        rx.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_and_otlp_each_see_every_event() {
    let rx = Protocol::Grpc.receiver(None, Store::default()).await;
    let (dir, r, log) = setup();
    let e = Arc::new(start(&dir, otlp_config(&log, &r, &rx, Protocol::Grpc, ""), &[]).await);
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
        store.sum("reaction.filter.matches", &[]) >= 200.0
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
    assert_eq!(store.sum("reaction.filter.matches", &[]), 200.0);
    rx.stop().await;
}

/// Over both protocols: the receiver goes away while events keep coming (connections
/// refused), comes back on the same address: everything arrives, once; lines read right
/// before SIGTERM are flushed by the final export.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_outage_loses_nothing_and_sigterm_flushes_the_rest() {
    for protocol in BOTH {
        let rx = protocol.receiver(None, Store::default()).await;
        let (dir, r, log) = setup();
        append(&log, &ssh_match("10.2.0.1", "a").repeat(5));
        let cfg = otlp_config(
            &log,
            &r,
            &rx,
            protocol,
            "metrics:\n  export:\n    internals: true\n",
        );
        let cfg = cfg.replace("  timeout: 2\n", "  timeout: 0.5\n");
        let e = start(&dir, cfg, &[]).await;
        let store = rx.store.clone();
        eventually("first 5", || {
            store.sum("reaction.filter.matches", &[]) >= 5.0
        })
        .await;

        let (addr, store) = rx.stop().await;
        for i in 0..40 {
            append(&log, &ssh_match(&format!("10.2.1.{}", i % 7), "b"));
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        tokio::time::sleep(Duration::from_millis(1500)).await; // failed exports
        assert_eq!(
            store.sum("reaction.filter.matches", &[]),
            5.0,
            "{protocol:?}"
        );
        let failures = total(
            &e.scrape(),
            "reaction_exporter_otlp_failures_total",
            &[("kind", "export")],
        );
        assert!(failures >= 1.0, "{protocol:?}: the failures are counted");
        let rx = protocol.receiver(Some(addr), store.clone()).await;
        eventually("45 matches", || {
            store.sum("reaction.filter.matches", &[]) >= 45.0
        })
        .await;
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(
            store.sum("reaction.filter.matches", &[]),
            45.0,
            "{protocol:?}"
        );
        for i in 0..7 {
            let ip = format!("10.2.1.{i}");
            let expected = (0..40).filter(|j| j % 7 == i).count() as f64;
            assert_eq!(
                store.sum("reaction.filter.matches", &[("ip", &ip)]),
                expected,
                "{protocol:?} {ip}: {:#?}",
                store
                    .points_of("reaction.filter.matches")
                    .iter()
                    .map(|p| (
                        p.attrs.get("ip").cloned(),
                        p.value,
                        p.start,
                        p.time,
                        p.message
                    ))
                    .collect::<Vec<_>>()
            );
        }
        // Nothing was dropped.
        let body = e.scrape();
        assert_eq!(
            total(&body, "reaction_exporter_otlp_points_dropped_total", &[]),
            0.0
        );
        assert_eq!(
            total(&body, "reaction_exporter_otlp_requests_dropped_total", &[]),
            0.0
        );

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
            store.sum("reaction.filter.matches", &[("ip", "10.2.9.9")]),
            3.0,
            "{protocol:?}"
        );
        assert_eq!(
            store.sum("reaction.filter.matches", &[]),
            48.0,
            "{protocol:?}"
        );
        rx.stop().await;
    }
}

/// 100,000 distinct IPs in one interval, over both protocols: split into requests under
/// the receivers' limits (gRPC: tonic's 4 MiB), every point once, no overflow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_of_100k_ips_in_one_interval_arrives_whole() {
    let n = 100_000u32;
    let mut text = String::with_capacity(n as usize * 60);
    for i in 0..n {
        text.push_str(&ssh_match(
            &format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255),
            "root",
        ));
    }
    for protocol in BOTH {
        let rx = protocol.receiver(None, Store::default()).await;
        let (dir, r, log) = setup();
        append(&log, &text);
        // One long interval: the whole attack lands in one export.
        let cfg = file_config(
            &log,
            &r,
            &format!(
                "otlp:\n  endpoint: {}\n  protocol: {}\n  interval: 3\n  timeout: 10\nmetrics:\n  export:\n    internals: true\n",
                rx.endpoint(),
                protocol.name()
            ),
        );
        let e = start(&dir, cfg, &[]).await;
        let store = rx.store.clone();
        eventually("100k matches", || {
            store.sum("reaction.filter.matches", &[]) >= n as f64
        })
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let pts: Vec<Point> = store.points_of("reaction.filter.matches");
        assert_eq!(
            pts.len(),
            n as usize,
            "{protocol:?}: one point per IP, no overflow series"
        );
        assert!(pts.iter().all(|p| p.value == 1.0));
        let attempts = store.attempts();
        assert!(
            attempts.len() > 1,
            "split into several requests under 4 MiB"
        );
        assert!(attempts.iter().all(|a| a.bytes <= 3 << 20), "{protocol:?}");
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
}

/// A CA, a server certificate for 127.0.0.1 and localhost, and a client certificate, PEM.
pub struct Pki {
    pub ca: String,
    pub server: (String, String),
    pub client: (String, String),
}

pub fn pki() -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.distinguished_name
        .push(DnType::CommonName, "reaction test CA");
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca, ca_key);
    let leaf = |names: Vec<String>, purpose: ExtendedKeyUsagePurpose| {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(names).unwrap();
        p.extended_key_usages = vec![purpose];
        p.distinguished_name
            .push(DnType::CommonName, "reaction test");
        (
            p.signed_by(&key, &issuer).unwrap().pem(),
            key.serialize_pem(),
        )
    };
    Pki {
        server: leaf(
            vec!["localhost".into(), "127.0.0.1".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
        ),
        client: leaf(vec!["exporter".into()], ExtendedKeyUsagePurpose::ClientAuth),
        ca: ca_pem,
    }
}

/// Over both protocols: TLS with a private CA, headers, and a client certificate the
/// receiver requires (mutual TLS). Without the client certificate, or without the CA,
/// nothing arrives and the failures are counted, never fatal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_private_ca_client_certificates_and_headers() {
    let pki = pki();
    for protocol in BOTH {
        let tls = ServerTls {
            cert: pki.server.0.clone(),
            key: pki.server.1.clone(),
            client_ca: Some(pki.ca.clone()),
        };
        let rx = protocol
            .receiver_tls(None, Store::default(), Some(tls))
            .await;
        let (dir, r, log) = setup();
        let file = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p.display().to_string()
        };
        let ca = file("ca.pem", &pki.ca);
        let cert = file("client.pem", &pki.client.0);
        let key = file("client.key", &pki.client.1);
        append(&log, &ssh_match("10.3.0.1", "tls").repeat(2));
        let endpoint = format!("https://127.0.0.1:{}", rx.addr.port());
        let cfg = file_config(
            &log,
            &r,
            &otlp_section(
                &endpoint,
                protocol,
                &format!(
                    "  ca: {ca}\n  client_certificate: {cert}\n  client_key: {key}\n  headers:\n    X-Team: sec\n"
                ),
            ),
        );
        let e = start(&dir, cfg, &[]).await;
        let store = rx.store.clone();
        eventually("2 matches over mutual TLS", || {
            store.sum("reaction.filter.matches", &[]) >= 2.0
        })
        .await;
        assert_eq!(
            store.sum("reaction.filter.matches", &[("ip", "10.3.0.1")]),
            2.0
        );
        let teams: Vec<Option<String>> = store
            .attempts()
            .iter()
            .map(|a| a.headers.get("x-team").cloned())
            .collect();
        assert!(
            teams.iter().all(|t| t.as_deref() == Some("sec")),
            "{protocol:?}: {teams:?}"
        );
        drop(e);

        // The same CA from the environment, without the client certificate: refused by the
        // receiver, counted.
        let (dir2, r2, log2) = setup();
        append(&log2, &ssh_match("10.3.0.2", "no-client-cert"));
        let cfg2 = file_config(
            &log2,
            &r2,
            &otlp_section(
                &endpoint,
                protocol,
                "metrics:\n  export:\n    internals: true\n",
            ),
        );
        let e2 = Arc::new(start(&dir2, cfg2, &[("OTEL_EXPORTER_OTLP_CERTIFICATE", &ca)]).await);
        let e2c = e2.clone();
        let failures = blocking(move || {
            wait_for(Duration::from_secs(20), "an OTLP failure", || {
                let f = total(&e2c.scrape(), "reaction_exporter_otlp_failures_total", &[]);
                (f > 0.0).then_some(f)
            })
        })
        .await;
        assert!(failures > 0.0);
        assert_eq!(
            store.sum("reaction.filter.matches", &[("ip", "10.3.0.2")]),
            0.0
        );
        drop(e2);
        rx.stop().await;
    }
}

/// A bare `host:port` gRPC endpoint (the specification: any form the gRPC client accepts)
/// is TLS unless `OTEL_EXPORTER_OTLP_INSECURE=true`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_host_port_grpc_endpoint_is_tls_unless_insecure() {
    // Plain text, insecure.
    let rx = Protocol::Grpc.receiver(None, Store::default()).await;
    let (dir, r, log) = setup();
    append(&log, &ssh_match("10.4.0.1", "bare"));
    let cfg = file_config(
        &log,
        &r,
        &otlp_section(&rx.addr.to_string(), Protocol::Grpc, ""),
    );
    let e = start(&dir, cfg, &[("OTEL_EXPORTER_OTLP_INSECURE", "TRUE")]).await;
    let store = rx.store.clone();
    eventually("1 match", || {
        store.sum("reaction.filter.matches", &[]) >= 1.0
    })
    .await;
    drop(e);
    rx.stop().await;
    // TLS by default: `localhost:port` against a TLS receiver, with the CA.
    let pki = pki();
    let tls = ServerTls {
        cert: pki.server.0.clone(),
        key: pki.server.1.clone(),
        client_ca: None,
    };
    let rx = Protocol::Grpc
        .receiver_tls(None, Store::default(), Some(tls))
        .await;
    let (dir, r, log) = setup();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca).unwrap();
    append(&log, &ssh_match("10.4.0.2", "bare-tls"));
    let endpoint = format!("localhost:{}", rx.addr.port());
    let cfg = file_config(
        &log,
        &r,
        &otlp_section(
            &endpoint,
            Protocol::Grpc,
            &format!("  ca: {}\n", ca.display()),
        ),
    );
    let e = start(&dir, cfg, &[]).await;
    let store = rx.store.clone();
    eventually("1 match over TLS", || {
        store.sum("reaction.filter.matches", &[("ip", "10.4.0.2")]) >= 1.0
    })
    .await;
    drop(e);
    rx.stop().await;
}

/// Resource precedence, on the wire: configuration keys > `OTEL_SERVICE_NAME` >
/// `OTEL_RESOURCE_ATTRIBUTES` (percent-decoded) > detected defaults.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_attributes_from_the_environment_and_their_precedence() {
    let rx = Protocol::Grpc.receiver(None, Store::default()).await;
    let (dir, r, log) = setup();
    append(&log, &ssh_match("10.5.0.1", "res"));
    // No instance_id in the configuration: the environment names the instance.
    let cfg = file_config(
        &log,
        &r,
        &format!(
            "otlp:\n  endpoint: {}\n  interval: 0.3\n  resource:\n    deployment.environment: from-config\n",
            rx.endpoint()
        ),
    );
    let e = start(
        &dir,
        cfg,
        &[
            ("OTEL_SERVICE_NAME", "edge-exporter"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.name=from-attributes,service.instance.id=edge-7,team=sec%2Cops,deployment.environment=from-env",
            ),
        ],
    )
    .await;
    let store = rx.store.clone();
    eventually("1 match", || {
        store.sum("reaction.filter.matches", &[]) >= 1.0
    })
    .await;
    let res = store.points()[0].resource.clone();
    assert_eq!(
        res["service.name"], "edge-exporter",
        "OTEL_SERVICE_NAME wins"
    );
    assert_eq!(res["service.instance.id"], "edge-7", "not the host name");
    assert_eq!(res["team"], "sec,ops", "percent-decoded");
    assert_eq!(res["deployment.environment"], "from-config");
    assert!(res.contains_key("host.name"));
    drop(e);
    rx.stop().await;
}

/// `OTEL_SDK_DISABLED=true` and `OTEL_METRICS_EXPORTER=none` switch the push off, even
/// with an endpoint configured; `/metrics` still works. A header value that cannot be
/// decoded (`k=%aé`, which panicked at start: issue 8) is kept as written and, being no
/// valid gRPC metadata, ignored with a warning; the other headers are sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_switches_and_an_undecodable_header() {
    let rx = Protocol::Grpc.receiver(None, Store::default()).await;
    for (k, v) in [
        ("OTEL_SDK_DISABLED", "True"),
        ("OTEL_METRICS_EXPORTER", "none"),
    ] {
        let (dir, r, log) = setup();
        append(&log, &ssh_match("10.6.0.1", "off"));
        let cfg = otlp_config(&log, &r, &rx, Protocol::Grpc, "");
        let e = start(&dir, cfg, &[(k, v)]).await;
        e.wait_log("the OTLP push is off", Duration::from_secs(10));
        let e = Arc::new(e);
        let e2 = e.clone();
        blocking(move || {
            wait_for(Duration::from_secs(20), "the match on /metrics", || {
                (total(&e2.scrape(), "reaction_match_count", &[]) == 1.0).then_some(())
            })
        })
        .await;
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert!(rx.store.attempts().is_empty(), "{k}={v}: nothing pushed");
    }
    let (dir, r, log) = setup();
    append(&log, &ssh_match("10.6.0.2", "headers"));
    let cfg = otlp_config(&log, &r, &rx, Protocol::Grpc, "");
    let e = start(
        &dir,
        cfg,
        &[("OTEL_EXPORTER_OTLP_HEADERS", "k=%aé,x-team=sec")],
    )
    .await;
    let store = rx.store.clone();
    eventually("1 match", || {
        store.sum("reaction.filter.matches", &[]) >= 1.0
    })
    .await;
    let a = &store.attempts()[0];
    assert_eq!(a.headers.get("x-team").map(String::as_str), Some("sec"));
    assert!(!a.headers.contains_key("k"));
    assert!(
        e.logs().contains("OTEL_EXPORTER_OTLP_HEADERS"),
        "{}",
        e.logs()
    );
    drop(e);
    rx.stop().await;
}
