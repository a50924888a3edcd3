//! OTLP gRPC push: a second reader (the SDK's `PeriodicReader`) on the same provider, with
//! an exporter of our own so that nothing is lost while the collector is down (see
//! [`buffer`]) and large exports are split into requests a receiver accepts.
//!
//! Settings come from the `otlp` config section, then the standard `OTEL_*` variables, then
//! defaults ([`Settings::resolve`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{PeriodicReader, Temporality};
use opentelemetry_sdk::Resource;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::config::{Otlp, TemporalityPref};
use crate::defaults;
use crate::internal::counts::Reader;
use crate::internal::events::{
    CardinalityOverflow, OtlpExportFailed, OtlpPointsDropped, OtlpPointsRejected,
};
use crate::internal::Internal;
use crate::telemetry::VERSION;

mod buffer;

use buffer::UnsentBuffer;

/// Resolved OTLP settings.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Settings {
    pub endpoint: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub headers: BTreeMap<String, String>,
    pub ca: Option<PathBuf>,
    pub temporality: Temporality,
    pub max_request_size: usize,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum OtlpError {
    #[error("otlp: {0}")]
    Invalid(String),
    #[error("otlp: cannot read the CA file {path}: {source}")]
    Ca {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("otlp: {0}")]
    Transport(#[from] tonic::transport::Error),
}

impl Settings {
    /// None when no endpoint is configured anywhere (OTLP off). `env` looks up a variable.
    pub(crate) fn resolve(
        cfg: &Otlp,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Settings>, OtlpError> {
        let var = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| env(n).filter(|v| !v.trim().is_empty()))
        };
        let Some(endpoint) = cfg.endpoint.clone().or_else(|| {
            var(&[
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            ])
        }) else {
            return Ok(None);
        };
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(OtlpError::Invalid(format!(
                "endpoint {endpoint:?} must start with http:// or https://"
            )));
        }
        let millis = |names: &[&str]| -> Result<Option<Duration>, OtlpError> {
            match var(names) {
                None => Ok(None),
                Some(v) => v
                    .trim()
                    .parse::<u64>()
                    .map(|ms| Some(Duration::from_millis(ms)))
                    .map_err(|_| {
                        OtlpError::Invalid(format!("{}={v:?} is not milliseconds", names[0]))
                    }),
            }
        };
        let interval = match cfg.interval {
            Some(s) => Duration::from_secs_f64(s),
            None => millis(&["OTEL_METRIC_EXPORT_INTERVAL"])?.unwrap_or(defaults::OTLP_INTERVAL),
        };
        let timeout = match cfg.timeout {
            Some(s) => Duration::from_secs_f64(s),
            None => millis(&[
                "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT",
                "OTEL_EXPORTER_OTLP_TIMEOUT",
            ])?
            .unwrap_or(defaults::OTLP_TIMEOUT),
        };
        let mut headers = BTreeMap::new();
        if let Some(h) = var(&[
            "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
            "OTEL_EXPORTER_OTLP_HEADERS",
        ]) {
            for pair in h.split(',').filter(|p| !p.trim().is_empty()) {
                let (k, v) = pair.split_once('=').ok_or_else(|| {
                    OtlpError::Invalid(format!(
                        "OTEL_EXPORTER_OTLP_HEADERS: {pair:?} is not key=value"
                    ))
                })?;
                headers.insert(k.trim().to_string(), percent_decode(v.trim()));
            }
        }
        headers.extend(cfg.headers.clone());
        let temporality = match cfg.temporality {
            Some(TemporalityPref::Delta) => Temporality::Delta,
            Some(TemporalityPref::Cumulative) => Temporality::Cumulative,
            None => match var(&["OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE"])
                .map(|v| v.trim().to_ascii_lowercase())
                .as_deref()
            {
                None | Some("delta") => Temporality::Delta,
                Some("cumulative") => Temporality::Cumulative,
                Some(other) => {
                    return Err(OtlpError::Invalid(format!(
                        "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE={other:?}: use delta or cumulative"
                    )))
                }
            },
        };
        Ok(Some(Settings {
            endpoint,
            interval,
            timeout,
            headers,
            ca: cfg
                .ca
                .clone()
                .or_else(|| var(&["OTEL_EXPORTER_OTLP_CERTIFICATE"]).map(PathBuf::from)),
            temporality,
            max_request_size: cfg.max_request_size,
        }))
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The resource of every metric: service name, version, instance id, then the configured
/// and `OTEL_RESOURCE_ATTRIBUTES` attributes (the SDK reads that variable; config wins).
pub(crate) fn resource(cfg: &Otlp, env: &dyn Fn(&str) -> Option<String>) -> Resource {
    let mut b = Resource::builder();
    let service_name = cfg
        .service_name
        .clone()
        .or_else(|| env("OTEL_SERVICE_NAME").filter(|s| !s.is_empty()))
        .unwrap_or_else(|| defaults::SERVICE_NAME.to_string());
    b = b.with_service_name(service_name);
    let mut attrs = vec![KeyValue::new("service.version", VERSION)];
    let instance = cfg.instance_id.clone().or_else(instance_id);
    if let Some(id) = instance {
        attrs.push(KeyValue::new("service.instance.id", id));
    }
    for (k, v) in &cfg.resource {
        attrs.push(KeyValue::new(k.clone(), v.clone()));
    }
    b.with_attributes(attrs).build()
}

/// The host name, else the machine id.
pub(crate) fn instance_id() -> Option<String> {
    [
        "/proc/sys/kernel/hostname",
        "/etc/hostname",
        "/etc/machine-id",
    ]
    .iter()
    .filter_map(|p| std::fs::read_to_string(p).ok())
    .map(|s| s.trim().to_string())
    .find(|s| !s.is_empty())
}

/// Shared by the exporter and the sends it spawns.
struct Shared {
    settings: Settings,
    client: MetricsServiceClient<Channel>,
    metadata: MetadataMap,
    unsent: Mutex<UnsentBuffer>,
    /// Where failures, overflows and dropped points are reported.
    internal: Arc<Internal>,
    /// Serializes sends (the periodic reader exports one at a time; shutdown too).
    sending: tokio::sync::Mutex<()>,
}

/// The OTLP push exporter.
pub(crate) struct OtlpExporter {
    shared: Arc<Shared>,
    runtime: tokio::runtime::Handle,
}

impl OtlpExporter {
    /// Must be called inside the Tokio runtime the sends will use. Failures, overflows and
    /// dropped points are reported to `internal` from the first export on.
    pub(crate) fn new(
        settings: Settings,
        cardinality_limit: usize,
        internal: Arc<Internal>,
    ) -> Result<OtlpExporter, OtlpError> {
        let mut endpoint = Endpoint::from_shared(settings.endpoint.clone())?
            .connect_timeout(settings.timeout)
            .timeout(settings.timeout);
        if settings.endpoint.starts_with("https://") {
            let mut tls = ClientTlsConfig::new().with_native_roots();
            if let Some(path) = &settings.ca {
                let pem = std::fs::read(path).map_err(|source| OtlpError::Ca {
                    path: path.clone(),
                    source,
                })?;
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            endpoint = endpoint.tls_config(tls)?;
        }
        let channel = endpoint.connect_lazy();
        let mut metadata = MetadataMap::new();
        for (k, v) in &settings.headers {
            let key = MetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes())
                .map_err(|_| OtlpError::Invalid(format!("header name {k:?} is not valid")))?;
            let value = MetadataValue::try_from(v.as_str())
                .map_err(|_| OtlpError::Invalid(format!("header {k:?} has an invalid value")))?;
            metadata.insert(key, value);
        }
        Ok(OtlpExporter {
            shared: Arc::new(Shared {
                client: MetricsServiceClient::new(channel),
                metadata,
                unsent: Mutex::new(UnsentBuffer::new(cardinality_limit)),
                internal,
                sending: tokio::sync::Mutex::new(()),
                settings,
            }),
            runtime: tokio::runtime::Handle::current(),
        })
    }

    /// The periodic reader that drives this exporter.
    pub(crate) fn reader(&self) -> PeriodicReader<OtlpExporter> {
        PeriodicReader::builder(self.clone_handle())
            .with_interval(self.shared.settings.interval)
            .build()
    }

    fn clone_handle(&self) -> OtlpExporter {
        OtlpExporter {
            shared: self.shared.clone(),
            runtime: self.runtime.clone(),
        }
    }
}

impl Shared {
    /// Send everything pending, in requests under the size limit; what fails goes back.
    async fn send_pending(&self) -> Result<usize, String> {
        let _one_at_a_time = self.sending.lock().await;
        let requests = self
            .unsent
            .lock()
            .expect("unsent")
            .take_requests(self.settings.max_request_size);
        let mut sent = 0;
        let mut iter = requests.into_iter();
        while let Some(req) = iter.next() {
            let mut client = self.client.clone();
            let mut request = tonic::Request::new(req.clone());
            *request.metadata_mut() = self.metadata.clone();
            match client.export(request).await {
                Ok(resp) => {
                    sent += 1;
                    if let Some(ps) = resp.into_inner().partial_success {
                        if ps.rejected_data_points > 0 {
                            self.internal.emit(OtlpPointsRejected {
                                points: ps.rejected_data_points,
                                message: &ps.error_message,
                            });
                        }
                    }
                }
                Err(status) => {
                    let mut unsent = self.unsent.lock().expect("unsent");
                    unsent.merge(req);
                    for r in iter {
                        unsent.merge(r);
                    }
                    let series_kept = unsent.series();
                    drop(unsent);
                    self.internal.emit(OtlpExportFailed {
                        endpoint: &self.settings.endpoint,
                        status: &status.code(),
                        series_kept,
                    });
                    return Err(status.to_string());
                }
            }
        }
        Ok(sent)
    }
}

impl PushMetricExporter for OtlpExporter {
    fn export(&self, metrics: &ResourceMetrics) -> impl Future<Output = OTelSdkResult> + Send {
        let req = ExportMetricsServiceRequest::from(metrics);
        let stats = self.shared.unsent.lock().expect("unsent").merge(req);
        if stats.overflow_events > 0 {
            self.shared.internal.emit(CardinalityOverflow {
                reader: Reader::Otlp,
                events: stats.overflow_events,
            });
        }
        if stats.dropped_points > 0 {
            self.shared.internal.emit(OtlpPointsDropped {
                points: stats.dropped_points,
            });
        }
        let shared = self.shared.clone();
        let task = self
            .runtime
            .spawn(async move { shared.send_pending().await });
        async move {
            match task.await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(OTelSdkError::InternalFailure(e)),
                Err(e) => Err(OTelSdkError::InternalFailure(e.to_string())),
            }
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }

    fn temporality(&self) -> Temporality {
        self.shared.settings.temporality
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| vars.get(k).cloned()
    }

    /// Guards the wiring: the exporter reports to the self-monitoring it is built with, so a
    /// failed export is counted before anything else ran (no scrape, no later set-up step).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_export_failure_before_any_scrape_is_counted() {
        use crate::internal::counts::{OtlpFailure, Series};
        use crate::metric::Metric;
        use crate::telemetry::Telemetry;

        // A port nothing listens on: the export is refused.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let cfg = Otlp {
            endpoint: Some(format!("http://127.0.0.1:{port}")),
            timeout: Some(2.0),
            interval: Some(3600.0),
            ..Otlp::default()
        };
        let settings = Settings::resolve(&cfg, &|_| None).unwrap().unwrap();
        let internal = Arc::new(Internal::new());
        let exporter = OtlpExporter::new(settings, 100, internal.clone()).unwrap();
        let telemetry = Telemetry::new(
            100,
            Resource::builder().build(),
            Some(exporter.reader()),
            internal.clone(),
        );
        telemetry
            .instruments
            .add(Metric::Matches, 1, &[KeyValue::new("stream", "ssh")]);
        let provider = telemetry.provider.clone();
        let flushed = tokio::task::spawn_blocking(move || provider.force_flush())
            .await
            .unwrap();
        assert!(flushed.is_err(), "the export cannot succeed");
        assert_eq!(
            internal.count(&Series::OtlpFailures(OtlpFailure::Export)),
            1
        );
    }

    #[test]
    fn off_without_endpoint() {
        assert_eq!(
            Settings::resolve(&Otlp::default(), &env(&[])).unwrap(),
            None
        );
    }

    #[test]
    fn env_vars_apply_and_config_wins() {
        let e = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "5000"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "authorization=Bearer%20x,x-team=sec",
            ),
            (
                "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
                "Cumulative",
            ),
        ]);
        let s = Settings::resolve(&Otlp::default(), &e).unwrap().unwrap();
        assert_eq!(s.endpoint, "http://collector:4317");
        assert_eq!(s.interval, Duration::from_secs(5));
        assert_eq!(s.headers["authorization"], "Bearer x");
        assert_eq!(s.temporality, Temporality::Cumulative);
        assert_eq!(s.timeout, Duration::from_secs(10));

        let cfg = Otlp {
            endpoint: Some("https://other:4317".into()),
            interval: Some(1.5),
            temporality: Some(TemporalityPref::Delta),
            headers: BTreeMap::from([("x-team".to_string(), "ops".to_string())]),
            ..Otlp::default()
        };
        let s = Settings::resolve(&cfg, &e).unwrap().unwrap();
        assert_eq!(s.endpoint, "https://other:4317");
        assert_eq!(s.interval, Duration::from_millis(1500));
        assert_eq!(s.temporality, Temporality::Delta);
        assert_eq!(s.headers["x-team"], "ops");
        assert_eq!(s.headers["authorization"], "Bearer x");
    }

    #[test]
    fn bad_values_are_errors() {
        let cfg = Otlp {
            endpoint: Some("collector:4317".into()),
            ..Otlp::default()
        };
        assert!(Settings::resolve(&cfg, &env(&[])).is_err());
        let e = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "soon"),
        ]);
        assert!(Settings::resolve(&Otlp::default(), &e).is_err());
    }

    #[test]
    fn resource_has_service_and_instance() {
        let r = resource(&Otlp::default(), &env(&[("OTEL_SERVICE_NAME", "edge-1")]));
        let get = |k: &str| {
            r.get(&opentelemetry::Key::from(k.to_string()))
                .map(|v| v.to_string())
        };
        assert_eq!(get("service.name").as_deref(), Some("edge-1"));
        assert_eq!(get("service.version").as_deref(), Some(VERSION));
        assert!(get("service.instance.id").is_some());
        let cfg = Otlp {
            service_name: Some("cfg".into()),
            instance_id: Some("host-a".into()),
            ..Otlp::default()
        };
        let r = resource(&cfg, &env(&[("OTEL_SERVICE_NAME", "edge-1")]));
        let get = |k: &str| {
            r.get(&opentelemetry::Key::from(k.to_string()))
                .map(|v| v.to_string())
        };
        assert_eq!(get("service.name").as_deref(), Some("cfg"));
        assert_eq!(get("service.instance.id").as_deref(), Some("host-a"));
    }
}
