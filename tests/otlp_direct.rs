//! The direct recipes of `collector-configs/` (OTLP without a Collector): Prometheus 3,
//! VictoriaMetrics, Grafana Cloud / Mimir.
//!
//! None of these receivers can run here: Prometheus 2.42 and VictoriaMetrics 1.79 (the
//! Debian packages) predate OTLP ingestion, Mimir is not packaged. Each is a stand-in of
//! `tests/receivers` (`HttpKind`) behaving as its cited source does at the points that
//! decide whether data gets in: path, content type, temporality, authentication, answers.
//! The exporter side runs for real with each recipe's `otlp` section (only the host
//! replaced); each recipe also passes the exporter's own `test-config`. What can run here
//! does: the VictoriaMetrics relabel file on real VictoriaMetrics, and the Prometheus 3
//! configuration through promtool for the keys promtool 2.42 knows.

use crate::common;
use crate::grafana;
use crate::otlp::{blocking, eventually, setup, start};
use crate::receivers;
use crate::tools;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use receivers::*;
use tools::*;

fn recipe(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("collector-configs")
        .join(name)
}

/// The recipe's `otlp` section, its endpoint pointed at `addr` (scheme and host replaced,
/// the path kept), as YAML; and the path of that endpoint.
fn otlp_section(name: &str, addr: std::net::SocketAddr, extra: &str) -> (String, String) {
    let text = std::fs::read_to_string(recipe(name)).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let mut otlp = doc["otlp"].clone();
    let endpoint = otlp["endpoint"].as_str().unwrap().to_string();
    let rest = endpoint.split_once("://").unwrap().1;
    let path = rest.find('/').map_or("", |i| &rest[i..]).to_string();
    otlp["endpoint"] = format!("http://{addr}{path}").into();
    otlp["interval"] = 0.3.into();
    otlp["instance_id"] = "edge-1".into();
    let section =
        serde_yaml::to_string(&serde_yaml::Mapping::from_iter([("otlp".into(), otlp)])).unwrap();
    (format!("{section}{extra}"), path)
}

/// The last value of each cumulative or gauge series of `metric`, by its `ip`.
fn latest(store: &Store, metric: &str) -> BTreeMap<String, f64> {
    let mut pts: Vec<Point> = store.points_of(metric);
    pts.sort_by_key(|p| p.time);
    pts.into_iter()
        .map(|p| (p.attrs.get("ip").cloned().unwrap_or_default(), p.value))
        .collect()
}

const AUTH: &str = "Basic dXNlcjp0b2tlbg==";

struct Case {
    file: &'static str,
    kind: HttpKind,
    /// Where the receiver listens (what the recipe's endpoint gives with `/v1/metrics`).
    path: &'static str,
    env: &'static [(&'static str, &'static str)],
}

const CASES: [Case; 3] = [
    Case {
        file: "exporter-prometheus3.yml",
        kind: HttpKind::Prometheus3,
        path: "/api/v1/otlp/v1/metrics",
        env: &[],
    },
    Case {
        file: "exporter-victoriametrics.yml",
        kind: HttpKind::VictoriaMetrics,
        path: "/opentelemetry/v1/metrics",
        env: &[],
    },
    Case {
        file: "exporter-grafana-cloud.yml",
        kind: HttpKind::Mimir {
            authorization: AUTH,
        },
        path: "/otlp/v1/metrics",
        env: &[(
            "OTEL_EXPORTER_OTLP_HEADERS",
            "Authorization=Basic%20dXNlcjp0b2tlbg%3D%3D",
        )],
    },
];

#[test]
fn every_direct_recipe_passes_test_config() {
    for case in &CASES {
        let (ok, out) = run(Command::new(BIN)
            .arg("test-config")
            .arg("-c")
            .arg(recipe(case.file)));
        assert!(ok, "{}: {out}", case.file);
        assert!(
            out.contains("\"temporality\": \"cumulative\""),
            "{}: {out}",
            case.file
        );
        assert!(
            out.contains("\"protocol\": \"http/protobuf\""),
            "{}: {out}",
            case.file
        );
    }
}

/// Each recipe against its receiver's stand-in: every request accepted, the running
/// totals exact, gauges present, nothing dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_direct_recipe_delivers_exact_totals() {
    for case in &CASES {
        let rx =
            Receiver::http_as(None, Store::default(), case.path, 64 << 20, None, case.kind).await;
        let (dir, r, log) = setup();
        r.set_state(serde_json::json!({
            "version": "2.2.0",
            "show": {"ssh": {"failedlogin": {"192.0.2.7 root": {"actions": {"unban": ["2026-12-01 10:00:00"]}}}}}
        }));
        append(&log, &ssh_match("192.0.2.7", "root").repeat(4));
        append(&log, &ssh_match("192.0.2.8", "root").repeat(2));
        append(&log, &ssh_action("ban", "192.0.2.7"));
        let (section, path) = otlp_section(
            case.file,
            rx.addr,
            "metrics:\n  export:\n    internals: true\n",
        );
        assert_eq!(format!("{path}/v1/metrics"), case.path, "{}", case.file);
        let e = start(&dir, file_config(&log, &r, &section), case.env).await;
        let store = rx.store.clone();
        eventually(case.file, || {
            let m = latest(&store, "reaction.filter.matches");
            m.get("192.0.2.7") == Some(&4.0)
                && m.get("192.0.2.8") == Some(&2.0)
                && latest(&store, "reaction.action.runs").get("192.0.2.7") == Some(&1.0)
                && latest(&store, "reaction.action.pending").get("192.0.2.7") == Some(&1.0)
        })
        .await;
        let attempts = store.attempts();
        assert!(attempts.iter().all(|a| a.path == case.path));
        assert!(attempts
            .iter()
            .all(|a| a.headers["content-type"] == "application/x-protobuf"));
        let e = std::sync::Arc::new(e);
        let e2 = e.clone();
        let body = blocking(move || e2.scrape()).await;
        assert_eq!(
            total(&body, "reaction_exporter_otlp_requests_dropped_total", &[]),
            0.0,
            "{}",
            case.file
        );
        assert_eq!(
            total(&body, "reaction_exporter_otlp_failures_total", &[]),
            0.0,
            "{}",
            case.file
        );
        let res = &store.points()[0].resource;
        assert_eq!(res["service.name"], "reaction-metrics-exporter");
        assert_eq!(res["service.instance.id"], "edge-1");
        drop(e);
        rx.stop().await;
    }
}

/// Why the recipes say `cumulative`: with the default delta temporality, Prometheus 3
/// refuses every request that carries matches (HTTP 500, the whole request; counted as
/// dropped), Mimir too (400), and VictoriaMetrics accepts the request but stores no match.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_temporality_does_not_get_through_the_direct_receivers() {
    for case in &CASES {
        let rx =
            Receiver::http_as(None, Store::default(), case.path, 64 << 20, None, case.kind).await;
        let (dir, r, log) = setup();
        append(&log, &ssh_match("192.0.2.9", "root").repeat(3));
        let (section, _) = otlp_section(
            case.file,
            rx.addr,
            "metrics:\n  export:\n    internals: true\n",
        );
        let section = section.replace("temporality: cumulative", "temporality: delta");
        let e = start(&dir, file_config(&log, &r, &section), case.env).await;
        let store = rx.store.clone();
        eventually("an attempt with the matches", || {
            store.attempts().iter().any(|a| {
                points(std::slice::from_ref(&a.request))
                    .iter()
                    .any(|p| p.metric == "reaction.filter.matches")
            })
        })
        .await;
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(
            store.sum("reaction.filter.matches", &[]),
            0.0,
            "{}",
            case.file
        );
        let e = std::sync::Arc::new(e);
        let e2 = e.clone();
        let dropped = blocking(move || {
            total(
                &e2.scrape(),
                "reaction_exporter_otlp_requests_dropped_total",
                &[],
            )
        })
        .await;
        match case.kind {
            HttpKind::VictoriaMetrics => assert_eq!(dropped, 0.0, "accepted, silently dropped"),
            _ => assert!(dropped >= 1.0, "{}: refused and counted", case.file),
        }
        drop(e);
        rx.stop().await;
    }
}

/// The relabel file on real VictoriaMetrics (1.79, Debian): series with the labels
/// `-opentelemetry.usePrometheusNaming` gives the resource attributes (`service_name`,
/// `service_instance_id`) get the `job` and `instance` the dashboard selects on.
#[test]
fn the_victoriametrics_relabel_file_gives_job_and_instance() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut vm = Command::new(tool("victoria-metrics", "victoria-metrics"))
        .arg(format!("-storageDataPath={}", data.path().display()))
        .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
        .arg(format!(
            "-relabelConfig={}",
            recipe("victoriametrics-otlp-relabel.yml").display()
        ))
        .arg("-loggerLevel=ERROR")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut vm = Kill(std::mem::replace(
        &mut vm,
        Command::new("true").spawn().unwrap(),
    ));
    let addr = format!("127.0.0.1:{port}");
    wait_for(Duration::from_secs(30), "VictoriaMetrics", || {
        if let Ok(Some(status)) = vm.0.try_wait() {
            let mut err = String::new();
            use std::io::Read as _;
            vm.0.stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("victoria-metrics exited ({status}): {err}");
        }
        (std::net::TcpStream::connect(&addr).is_ok()
            && grafana::http(&addr, "GET", "/health", None).0 == 200)
            .then_some(())
    });
    let lines = "reaction_up{service_name=\"reaction-metrics-exporter\",service_instance_id=\"edge-1\",host_name=\"web\",version=\"2.2.0\"} 1\n\
                 reaction_filter_matches_total{service_name=\"reaction-metrics-exporter\",service_instance_id=\"edge-1\",stream=\"ssh\",filter=\"failedlogin\",ip=\"192.0.2.7\"} 4\n";
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    use std::io::Write as _;
    write!(
        s,
        "POST /api/v1/import/prometheus HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{lines}",
        lines.len()
    )
    .unwrap();
    let mut answer = String::new();
    use std::io::Read as _;
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
    let _ = grafana::http(&addr, "GET", "/internal/force_flush", None);
    let query = |q: &str| grafana::api_get(&addr, "/api/v1/query", &[("query", q.to_string())]);
    wait_for(Duration::from_secs(30), "the relabelled series", || {
        let v = query("reaction_up{job=\"reaction-metrics-exporter\",instance=\"edge-1\"}");
        (v["data"]["result"].as_array().is_some_and(|r| r.len() == 1)).then_some(())
    });
    let v = query("sum(reaction_filter_matches_total{job=~\"reaction.*\",instance=~\"edge-1\"})");
    assert_eq!(v["data"]["result"][0]["value"][1], "4");
}

/// The Prometheus 3 side: only keys of Prometheus 3's configuration reference
/// (`docs/configuration/configuration.md`: `otlp.promote_resource_attributes` 2.55,
/// `storage.tsdb.out_of_order_time_window` 2.39), and what promtool 2.42 knows of it
/// (everything but the `otlp` block) passes `promtool check config`.
#[test]
fn the_prometheus3_configuration_has_documented_keys_and_passes_promtool_without_otlp() {
    let text = std::fs::read_to_string(recipe("prometheus3-otlp.yml")).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let keys: Vec<String> = doc
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    assert_eq!(keys, ["global", "storage", "otlp", "scrape_configs"]);
    assert_eq!(
        doc["storage"]["tsdb"]["out_of_order_time_window"].as_str(),
        Some("30m")
    );
    let promoted = doc["otlp"]["promote_resource_attributes"]
        .as_sequence()
        .unwrap();
    assert!(promoted.iter().all(|a| a.as_str().is_some()));
    assert_eq!(doc["otlp"].as_mapping().unwrap().len(), 1);
    assert!(text.contains("--web.enable-otlp-receiver"));
    let mut without = doc.clone();
    without.as_mapping_mut().unwrap().remove("otlp");
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("p.yml");
    std::fs::write(&file, serde_yaml::to_string(&without).unwrap()).unwrap();
    let (ok, out) = run(Command::new(tool("promtool", "prometheus"))
        .arg("check")
        .arg("config")
        .arg(&file));
    assert!(ok, "{out}");
}
