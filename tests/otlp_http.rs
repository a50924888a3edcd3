//! OTLP/HTTP specifics against the HTTP receiver of `tests/receivers`: binary protobuf and
//! JSON bodies, gzip or not, the endpoint rules of the specification's "Endpoint URLs for
//! OTLP/HTTP" from the environment, and the headers on the wire.

use crate::common;
use crate::otlp::{eventually, setup, start};
use crate::receivers;

use std::time::Duration;

use common::*;
use receivers::*;

/// Every body encoding, configured through the environment only: the base endpoint
/// (`OTEL_EXPORTER_OTLP_ENDPOINT`, with a path: `v1/metrics` is appended) or the
/// metrics-specific one (used as is), the protocol and the compression.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_and_json_bodies_gzip_or_not_and_the_endpoint_variables() {
    for (i, (protocol, compression, base)) in [
        ("http/protobuf", "none", true),
        ("http/protobuf", "gzip", false),
        ("http/json", "gzip", true),
        ("http/json", "none", false),
    ]
    .into_iter()
    .enumerate()
    {
        let rx = Receiver::http(None, Store::default(), "/otlp/v1/metrics", 64 << 20, None).await;
        let (dir, r, log) = setup();
        let ip = format!("10.12.0.{i}");
        append(&log, &ssh_match(&ip, "enc").repeat(7));
        let cfg = file_config(&log, &r, "otlp:\n  interval: 0.3\n  instance_id: h\n");
        let endpoint = if base {
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://{}/otlp", rx.addr),
            )
        } else {
            (
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                format!("http://{}/otlp/v1/metrics", rx.addr),
            )
        };
        let e = start(
            &dir,
            cfg,
            &[
                (endpoint.0, &endpoint.1),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
                ("OTEL_EXPORTER_OTLP_COMPRESSION", compression),
                (
                    "OTEL_EXPORTER_OTLP_HEADERS",
                    "authorization=Basic%20dXNlcjp0b2tlbg%3D%3D",
                ),
            ],
        )
        .await;
        let store = rx.store.clone();
        let case = format!("{protocol} {compression} base={base}");
        eventually(&case, || store.sum("reaction.filter.matches", &[]) >= 7.0).await;
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(
            store.sum("reaction.filter.matches", &[("ip", &ip)]),
            7.0,
            "{case}"
        );
        let a = &store.attempts()[0];
        assert_eq!(a.path, "/otlp/v1/metrics", "{case}");
        let content_type = if protocol == "http/json" {
            "application/json"
        } else {
            "application/x-protobuf"
        };
        assert_eq!(a.headers["content-type"], content_type, "{case}");
        assert_eq!(
            a.headers.get("content-encoding").map(String::as_str),
            (compression == "gzip").then_some("gzip"),
            "{case}"
        );
        assert_eq!(
            a.headers["authorization"], "Basic dXNlcjp0b2tlbg==",
            "{case}"
        );
        assert!(a.headers["user-agent"].starts_with("reaction-metrics-exporter/"));
        assert!(
            e.logs()
                .contains(&format!("url=\"http://{}/otlp/v1/metrics\"", rx.addr))
                || e.logs().contains("/otlp/v1/metrics"),
            "{case}: the URL is logged"
        );
        drop(e);
        rx.stop().await;
    }
}

/// A receiver on another path answers 404: not retryable, dropped and counted, and the
/// log says which URL was used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_path_is_a_counted_refusal_not_a_retry_loop() {
    let rx = Receiver::http(
        None,
        Store::default(),
        "/api/v1/otlp/v1/metrics",
        64 << 20,
        None,
    )
    .await;
    let (dir, r, log) = setup();
    append(&log, &ssh_match("10.12.1.1", "lost"));
    let cfg = file_config(
        &log,
        &r,
        &format!(
            "otlp:\n  endpoint: http://{}\n  protocol: http/protobuf\n  interval: 0.3\nmetrics:\n  export:\n    internals: true\n",
            rx.addr
        ),
    );
    let e = start(&dir, cfg, &[]).await;
    let e = std::sync::Arc::new(e);
    let e2 = e.clone();
    crate::otlp::blocking(move || {
        wait_for(Duration::from_secs(20), "a dropped request", || {
            (total(
                &e2.scrape(),
                "reaction_exporter_otlp_requests_dropped_total",
                &[("reason", "http_404")],
            ) >= 1.0)
                .then_some(())
        })
    })
    .await;
    assert!(e.logs().contains("HTTP 404"), "{}", e.logs());
    assert_eq!(
        total(
            &e.scrape(),
            "reaction_exporter_otlp_failures_total",
            &[("kind", "export")]
        ),
        0.0,
        "not retried"
    );
    drop(e);
    rx.stop().await;
}
