//! Real OTLP receivers on the loopback, for the OTLP tests:
//! - gRPC: opentelemetry-proto's tonic `MetricsService` server (with tonic's real message
//!   size limit, gzip, TLS and mutual TLS);
//! - HTTP: an HTTP/1.1 server (hyper) decoding `ExportMetricsServiceRequest` as the
//!   OTLP/HTTP specification says (opentelemetry-proto `docs/specification.md`,
//!   "OTLP/HTTP"): `POST` on one path, `Content-Type: application/x-protobuf` or
//!   `application/json`, `Content-Encoding: gzip` honoured, a body size limit answered
//!   with 413, errors as a protobuf `google.rpc.Status`.
//!
//! Each answers as its [`Script`] says, request after request: success, partial success,
//! an error status (with `RetryInfo` or `Retry-After`), or no answer at all, having
//! processed the request or not (the two cases of a timed-out export). What it processed
//! is kept in a [`Store`]; every attempt is logged with its time, size and headers.
//!
//! Downstream stand-ins, each behaving as the cited source does (no OpenTelemetry
//! Collector can be installed here):
//! - [`DeltaToCumulative`]: the Collector's `deltatocumulative` processor;
//! - [`PrometheusExporter`]: the series the Collector's `prometheus` exporter keeps.

use std::collections::{BTreeMap, VecDeque};
use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point, AggregationTemporality,
};
use prost::Message as _;

/// How the receiver answers one request.
#[derive(Debug, Clone)]
pub enum Answer {
    /// Processed; full success.
    Ok,
    /// Processed; partial success with this many rejected points.
    Partial(i64, &'static str),
    /// Not processed; this gRPC status (with `RetryInfo` of so many seconds) or, over HTTP,
    /// the HTTP status of the specification's mapping is not implied: use `Http` there.
    Grpc(tonic::Code, &'static str, Option<i64>),
    /// Not processed; this HTTP status, `Retry-After` value and plain-text message.
    Http(u16, Option<&'static str>, &'static str),
    /// No answer, ever: the request is processed first if `processed` (the receiver had it
    /// and the answer was lost), or not.
    Hang { processed: bool },
}

/// What to answer: the first rule whose IP the request carries (a point with that `ip`
/// attribute) and that has answers left, else the default (`Ok` unless set).
#[derive(Clone)]
pub struct Script(Arc<Mutex<ScriptState>>);

struct ScriptState {
    rules: Vec<(String, VecDeque<Answer>)>,
    default: Answer,
}

impl Default for Script {
    fn default() -> Self {
        Script(Arc::new(Mutex::new(ScriptState {
            rules: Vec::new(),
            default: Answer::Ok,
        })))
    }
}

impl Script {
    /// Answer every request (once the others are used up) so.
    pub fn always(&self, answer: Answer) {
        self.0.lock().unwrap().default = answer;
    }
    /// Answer the next requests carrying `ip` so, in order.
    pub fn for_ip(&self, ip: &str, answers: impl IntoIterator<Item = Answer>) {
        self.0
            .lock()
            .unwrap()
            .rules
            .push((ip.to_string(), answers.into_iter().collect()));
    }
    fn next(&self, req: &ExportMetricsServiceRequest) -> Answer {
        let mut s = self.0.lock().unwrap();
        let ips: std::collections::BTreeSet<String> = points(std::slice::from_ref(req))
            .into_iter()
            .filter_map(|p| p.attrs.get("ip").cloned())
            .collect();
        for (ip, answers) in &mut s.rules {
            if ips.contains(ip.as_str()) {
                if let Some(a) = answers.pop_front() {
                    return a;
                }
            }
        }
        s.default.clone()
    }
}

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub at: Instant,
    /// Bytes on the wire (compressed if it was).
    pub bytes: usize,
    /// Request headers (HTTP) or metadata (gRPC), lower-case names.
    pub headers: BTreeMap<String, String>,
    pub path: String,
    /// The decoded request.
    pub request: ExportMetricsServiceRequest,
}

/// What a receiver saw and processed.
#[derive(Clone, Default)]
pub struct Store {
    pub processed: Arc<Mutex<Vec<ExportMetricsServiceRequest>>>,
    pub attempts: Arc<Mutex<Vec<Attempt>>>,
    pub script: Script,
}

impl Store {
    pub fn attempts(&self) -> Vec<Attempt> {
        self.attempts.lock().unwrap().clone()
    }
    /// The points received of one metric.
    pub fn points_of(&self, metric: &str) -> Vec<Point> {
        self.points()
            .into_iter()
            .filter(|p| p.metric == metric)
            .collect()
    }

    pub fn points(&self) -> Vec<Point> {
        points(&self.processed.lock().unwrap())
    }
    /// Sum of a metric's points whose attributes include `having`.
    pub fn sum(&self, metric: &str, having: &[(&str, &str)]) -> f64 {
        self.points()
            .iter()
            .filter(|p| p.metric == metric && p.has(having))
            .map(|p| p.value)
            .sum()
    }

    /// Record an attempt refused before the script is asked (a receiver's own rule).
    fn refused(&self, attempt: Attempt) {
        self.attempts.lock().unwrap().push(attempt);
    }

    /// Record an attempt and decide: Some(answer) once processed (or not).
    fn arrive(&self, attempt: Attempt) -> Answer {
        let stored = attempt.request.clone();
        self.arrive_storing(attempt, stored)
    }

    /// [`Store::arrive`], storing `stored` (what the receiver keeps of the request) when it
    /// is processed.
    fn arrive_storing(&self, attempt: Attempt, stored: ExportMetricsServiceRequest) -> Answer {
        let answer = self.script.next(&attempt.request);
        let processed = matches!(
            answer,
            Answer::Ok | Answer::Partial(..) | Answer::Hang { processed: true }
        );
        if processed {
            self.processed.lock().unwrap().push(stored);
        }
        self.attempts.lock().unwrap().push(attempt);
        answer
    }
}

/// One point as received.
#[derive(Debug, Clone)]
pub struct Point {
    pub metric: String,
    pub resource: BTreeMap<String, String>,
    pub scope: String,
    pub attrs: BTreeMap<String, String>,
    pub value: f64,
    /// `None` for a gauge.
    pub temporality: Option<i32>,
    pub monotonic: bool,
    pub start: u64,
    pub time: u64,
    pub flags: u32,
    /// Its position: (request, metric message) it came in.
    pub message: (usize, usize),
}

impl Point {
    pub fn has(&self, having: &[(&str, &str)]) -> bool {
        having
            .iter()
            .all(|(k, v)| self.attrs.get(*k).map(String::as_str) == Some(*v))
    }
    pub fn is_delta(&self) -> bool {
        self.temporality == Some(AggregationTemporality::Delta as i32)
    }
}

pub fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| {
            let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                Some(any_value::Value::BoolValue(b)) => b.to_string(),
                Some(any_value::Value::IntValue(i)) => i.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), v)
        })
        .collect()
}

/// Every point of `requests`, in order.
pub fn points(requests: &[ExportMetricsServiceRequest]) -> Vec<Point> {
    let mut out = Vec::new();
    for (r, req) in requests.iter().enumerate() {
        let mut message = 0;
        for rm in &req.resource_metrics {
            let resource = rm
                .resource
                .as_ref()
                .map(|r| attributes(&r.attributes))
                .unwrap_or_default();
            for sm in &rm.scope_metrics {
                let scope = sm
                    .scope
                    .as_ref()
                    .map(|s| s.name.clone())
                    .unwrap_or_default();
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
                        out.push(Point {
                            metric: m.name.clone(),
                            resource: resource.clone(),
                            scope: scope.clone(),
                            attrs: attributes(&p.attributes),
                            value: match p.value {
                                Some(number_data_point::Value::AsInt(i)) => i as f64,
                                Some(number_data_point::Value::AsDouble(d)) => d,
                                None => f64::NAN,
                            },
                            temporality,
                            monotonic,
                            start: p.start_time_unix_nano,
                            time: p.time_unix_nano,
                            flags: p.flags,
                            message: (r, message),
                        });
                    }
                    message += 1;
                }
            }
        }
    }
    out
}

/// The `google.rpc.Status` and `RetryInfo` messages (as the exporter decodes them).
mod rpc {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Status {
        #[prost(int32, tag = "1")]
        pub code: i32,
        #[prost(string, tag = "2")]
        pub message: String,
        #[prost(message, repeated, tag = "3")]
        pub details: Vec<Any>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Any {
        #[prost(string, tag = "1")]
        pub type_url: String,
        #[prost(bytes = "vec", tag = "2")]
        pub value: Vec<u8>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RetryInfo {
        #[prost(message, optional, tag = "1")]
        pub retry_delay: Option<Duration>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Duration {
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }
}

fn grpc_status(code: tonic::Code, message: &str, retry: Option<i64>) -> tonic::Status {
    let details = retry
        .map(|s| rpc::Any {
            type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
            value: rpc::RetryInfo {
                retry_delay: Some(rpc::Duration {
                    seconds: s,
                    nanos: 0,
                }),
            }
            .encode_to_vec(),
        })
        .into_iter()
        .collect();
    let body = rpc::Status {
        code: code as i32,
        message: message.into(),
        details,
    };
    tonic::Status::with_details(code, message, body.encode_to_vec().into())
}

/// How long a hung receiver waits before giving up on a request (longer than any test).
const HANG: Duration = Duration::from_secs(3600);

#[tonic::async_trait]
impl MetricsService for Store {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let headers = request
            .metadata()
            .clone()
            .into_headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").to_string()))
            .collect();
        let req = request.into_inner();
        let attempt = Attempt {
            at: Instant::now(),
            bytes: req.encoded_len(),
            headers,
            path: String::new(),
            request: req,
        };
        match self.arrive(attempt) {
            Answer::Ok => Ok(tonic::Response::new(ExportMetricsServiceResponse::default())),
            Answer::Partial(n, m) => Ok(tonic::Response::new(ExportMetricsServiceResponse {
                partial_success: Some(ExportMetricsPartialSuccess {
                    rejected_data_points: n,
                    error_message: m.into(),
                }),
            })),
            Answer::Grpc(code, m, retry) => Err(grpc_status(code, m, retry)),
            Answer::Http(..) => panic!("an HTTP answer for a gRPC receiver"),
            Answer::Hang { .. } => {
                tokio::time::sleep(HANG).await;
                Err(tonic::Status::cancelled("hung"))
            }
        }
    }
}

/// Which receiver an HTTP stand-in behaves as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpKind {
    /// The OTLP/HTTP specification (an OpenTelemetry Collector's `otlp` receiver): success
    /// with an `ExportMetricsServiceResponse`, errors as a protobuf `google.rpc.Status`.
    Otlp,
    /// Prometheus 3's OTLP receiver (prometheus/prometheus `storage/remote/codec.go`
    /// `DecodeOTLPWriteRequest`, `write_otlp_handler.go`, `otlptranslator/
    /// prometheusremotewrite/metrics_to_prw.go`), without feature flags: Content-Type must
    /// be exactly `application/x-protobuf` or `application/json`; a delta sum makes the
    /// whole request fail ("invalid temporality and type combination", HTTP 500, rolled
    /// back); success is `200` with an empty body; errors are plain text.
    Prometheus3,
    /// VictoriaMetrics (`app/vminsert/opentelemetry/request_handler.go`,
    /// `lib/protoparser/opentelemetry/stream/metrics.go`): JSON refused ("json encoding
    /// isn't supported for opentelemetry format. Use protobuf encoding"); delta sums
    /// skipped silently (counted in `vm_protoparser_rows_dropped_total`), the rest stored;
    /// success `204` with no body.
    VictoriaMetrics,
    /// Mimir / Grafana Cloud's OTLP gateway: basic authentication required (`401`
    /// otherwise); delta sums rejected (grafana/mimir `pkg/util/validation/limits.go`:
    /// `-distributor.otel-native-delta-ingestion` "If disabled, delta metrics will be
    /// rejected"), here as a 400 for the request; success `200`.
    Mimir {
        /// The expected `Authorization` header.
        authorization: &'static str,
    },
}

/// TLS material of a receiver: its certificate and key, and a CA that client certificates
/// must chain to (mutual TLS).
pub struct ServerTls {
    pub cert: String,
    pub key: String,
    pub client_ca: Option<String>,
}

/// A running receiver.
pub struct Receiver {
    pub addr: SocketAddr,
    pub store: Store,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    pub scheme: &'static str,
}

impl Receiver {
    /// A gRPC receiver (tonic's default 4 MiB message limit, gzip accepted).
    pub async fn grpc(addr: Option<SocketAddr>, store: Store, tls: Option<ServerTls>) -> Receiver {
        Self::grpc_limited(addr, store, tls, 4 << 20).await
    }

    /// A gRPC receiver refusing messages over `max_message` bytes (tonic's own check:
    /// OUT_OF_RANGE "decoded message length too large").
    pub async fn grpc_limited(
        addr: Option<SocketAddr>,
        store: Store,
        tls: Option<ServerTls>,
        max_message: usize,
    ) -> Receiver {
        let listener = bind(addr).await;
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let svc = MetricsServiceServer::new(store.clone())
            .max_decoding_message_size(max_message)
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
            .send_compressed(tonic::codec::CompressionEncoding::Gzip);
        let mut builder = tonic::transport::Server::builder();
        let scheme = if tls.is_some() { "https" } else { "http" };
        if let Some(tls) = tls {
            let mut config = tonic::transport::ServerTlsConfig::new()
                .identity(tonic::transport::Identity::from_pem(tls.cert, tls.key));
            if let Some(ca) = tls.client_ca {
                config = config.client_ca_root(tonic::transport::Certificate::from_pem(ca));
            }
            builder = builder.tls_config(config).unwrap();
        }
        let task = tokio::spawn(async move {
            let _ = builder
                .add_service(svc)
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener),
                    async {
                        let _ = rx.await;
                    },
                )
                .await;
        });
        Receiver {
            addr,
            store,
            stop: Some(tx),
            task,
            scheme,
        }
    }

    /// An OTLP/HTTP receiver serving `path`, refusing bodies over `max_body` bytes (413).
    pub async fn http(
        addr: Option<SocketAddr>,
        store: Store,
        path: &'static str,
        max_body: usize,
        tls: Option<ServerTls>,
    ) -> Receiver {
        Self::http_as(addr, store, path, max_body, tls, HttpKind::Otlp).await
    }

    /// An HTTP receiver that behaves as `kind` does.
    pub async fn http_as(
        addr: Option<SocketAddr>,
        store: Store,
        path: &'static str,
        max_body: usize,
        tls: Option<ServerTls>,
        kind: HttpKind,
    ) -> Receiver {
        let listener = bind(addr).await;
        let addr = listener.local_addr().unwrap();
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let acceptor = tls.map(|t| tls_acceptor(&t));
        let s = store.clone();
        let task = tokio::spawn(async move {
            // The connections die with this task: a stopped receiver keeps no kept-alive
            // connection working.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let (tcp, _) = tokio::select! {
                    c = listener.accept() => match c { Ok(c) => c, Err(_) => continue },
                    _ = &mut rx => return,
                };
                while connections.try_join_next().is_some() {}
                let store = s.clone();
                let acceptor = acceptor.clone();
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let store = store.clone();
                        async move {
                            Ok::<_, std::convert::Infallible>(
                                serve(store, path, max_body, kind, req).await,
                            )
                        }
                    });
                    let builder = hyper::server::conn::http1::Builder::new();
                    match acceptor {
                        Some(a) => {
                            if let Ok(tls) = a.accept(tcp).await {
                                let _ = builder
                                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                                    .await;
                            }
                        }
                        None => {
                            let _ = builder
                                .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                                .await;
                        }
                    }
                });
            }
        });
        Receiver {
            addr,
            store,
            stop: Some(tx),
            task,
            scheme,
        }
    }

    /// Stop listening (connections in progress are dropped); the address and the store
    /// stay for a receiver that comes back.
    pub async fn stop(mut self) -> (SocketAddr, Store) {
        let _ = self.stop.take().unwrap().send(());
        self.task.abort();
        let _ = (&mut self.task).await;
        (self.addr, self.store.clone())
    }

    pub fn endpoint(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }
}

async fn bind(addr: Option<SocketAddr>) -> tokio::net::TcpListener {
    let addr = addr.unwrap_or(([127, 0, 0, 1], 0).into());
    // The address of a receiver that went away may take a moment to be free again.
    for _ in 0..100 {
        if let Ok(l) = tokio::net::TcpListener::bind(addr).await {
            return l;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("cannot bind {addr}");
}

fn tls_acceptor(t: &ServerTls) -> tokio_rustls::TlsAcceptor {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls::{self, server::WebPkiClientVerifier, RootCertStore, ServerConfig};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(t.cert.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(t.key.as_bytes()).unwrap();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let config = match &t.client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(ca.as_bytes()) {
                roots.add(c.unwrap()).unwrap();
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    }
    .with_single_cert(certs, key)
    .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

fn response(status: u16, content_type: &str, body: Vec<u8>) -> hyper::Response<Full<Bytes>> {
    hyper::Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(body.into()))
        .unwrap()
}

/// One OTLP/HTTP request, as a receiver following the specification answers it.
async fn serve(
    store: Store,
    path: &'static str,
    max_body: usize,
    kind: HttpKind,
    req: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<Full<Bytes>> {
    if req.method() != hyper::Method::POST || req.uri().path() != path {
        return response(404, "text/plain", b"404 page not found".to_vec());
    }
    let headers: BTreeMap<String, String> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").to_string()))
        .collect();
    // The whole body is read, also past the limit, before answering: a server that
    // answers 413 and closes with the body half read makes the client's write fail before
    // it sees the answer.
    let mut body = req.into_body();
    let mut wire = Vec::new();
    let mut len = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return response(400, "text/plain", b"broken body".to_vec());
        };
        if let Ok(data) = frame.into_data() {
            len += data.len();
            if len <= max_body {
                wire.extend_from_slice(&data);
            }
        }
    }
    if len > max_body {
        return response(413, "text/plain", b"request body too large".to_vec());
    }
    let raw = if headers.get("content-encoding").map(String::as_str) == Some("gzip") {
        let mut out = Vec::new();
        if flate2::read::GzDecoder::new(&wire[..])
            .read_to_end(&mut out)
            .is_err()
        {
            return response(400, "text/plain", b"bad gzip".to_vec());
        }
        out
    } else {
        wire.to_vec()
    };
    let json = match headers.get("content-type").map(String::as_str) {
        Some("application/x-protobuf") => false,
        Some("application/json") => true,
        other => {
            return response(
                415,
                "text/plain",
                format!("unsupported content type {other:?}").into_bytes(),
            )
        }
    };
    let decoded = if json {
        serde_json::from_slice::<ExportMetricsServiceRequest>(&raw).map_err(|e| e.to_string())
    } else {
        ExportMetricsServiceRequest::decode(&raw[..]).map_err(|e| e.to_string())
    };
    let request = match decoded {
        Ok(r) => r,
        Err(e) => return response(400, "text/plain", e.into_bytes()),
    };
    let attempt = Attempt {
        at: Instant::now(),
        bytes: wire.len(),
        headers,
        path: path.to_string(),
        request,
    };
    let mut stored = attempt.request.clone();
    let has_delta_sum = points(std::slice::from_ref(&attempt.request))
        .iter()
        .any(Point::is_delta);
    match kind {
        HttpKind::Otlp => {}
        HttpKind::Prometheus3 => {
            if has_delta_sum {
                store.refused(attempt);
                return response(
                    500,
                    "text/plain; charset=utf-8",
                    b"invalid temporality and type combination for metric \"reaction.filter.matches\"\n".to_vec(),
                );
            }
        }
        HttpKind::VictoriaMetrics => {
            if json {
                store.refused(attempt);
                return response(
                    400,
                    "text/plain; charset=utf-8",
                    b"json encoding isn't supported for opentelemetry format. Use protobuf encoding".to_vec(),
                );
            }
            for rm in &mut stored.resource_metrics {
                for sm in &mut rm.scope_metrics {
                    sm.metrics.retain(|m| {
                        !matches!(&m.data, Some(Data::Sum(s)) if s.aggregation_temporality == AggregationTemporality::Delta as i32)
                    });
                }
            }
        }
        HttpKind::Mimir { authorization } => {
            if attempt.headers.get("authorization").map(String::as_str) != Some(authorization) {
                store.refused(attempt);
                return response(401, "text/plain", b"authentication failed".to_vec());
            }
            if has_delta_sum {
                store.refused(attempt);
                return response(
                    400,
                    "text/plain",
                    b"otlp parse error: invalid temporality and type combination".to_vec(),
                );
            }
        }
    }
    let content_type = if json {
        "application/json"
    } else {
        "application/x-protobuf"
    };
    let ok = |partial: Option<ExportMetricsPartialSuccess>| {
        let r = ExportMetricsServiceResponse {
            partial_success: partial,
        };
        let body = if json {
            serde_json::to_vec(&r).unwrap()
        } else {
            r.encode_to_vec()
        };
        response(200, content_type, body)
    };
    match store.arrive_storing(attempt, stored) {
        Answer::Ok => match kind {
            HttpKind::Otlp => ok(None),
            HttpKind::Prometheus3 | HttpKind::Mimir { .. } => response(200, "text/plain", vec![]),
            HttpKind::VictoriaMetrics => response(204, "text/plain", vec![]),
        },
        Answer::Partial(n, m) => ok(Some(ExportMetricsPartialSuccess {
            rejected_data_points: n,
            error_message: m.into(),
        })),
        Answer::Http(status, retry_after, message) => {
            let body = rpc::Status {
                code: 0,
                message: message.into(),
                details: vec![],
            };
            let mut r = response(status, "application/x-protobuf", body.encode_to_vec());
            if let Some(ra) = retry_after {
                r.headers_mut().insert("retry-after", ra.parse().unwrap());
            }
            r
        }
        Answer::Grpc(..) => panic!("a gRPC answer for an HTTP receiver"),
        Answer::Hang { .. } => {
            tokio::time::sleep(HANG).await;
            response(504, "text/plain", vec![])
        }
    }
}

/// A stream of the `deltatocumulative` processor: resource, scope, metric, attributes
/// (`identity.Stream`).
type StreamId = (
    BTreeMap<String, String>,
    String,
    String,
    BTreeMap<String, String>,
);

/// The Collector's `deltatocumulative` processor, as its source does it
/// (opentelemetry-collector-contrib `processor/deltatocumulativeprocessor`: `processor.go`
/// `ConsumeMetrics`, and `internal/delta/delta.go` `Aggregate`):
///
/// ```text
/// case state.Timestamp() == 0:                       first sample: dp.CopyTo(state)
/// case dp.StartTimestamp() < state.StartTimestamp(): ErrOlderStart, dropped
/// case dp.Timestamp() <= state.Timestamp():          ErrOutOfOrder, dropped
/// otherwise: state += dp; state.SetTimestamp(dp.Timestamp())
/// ```
///
/// Only delta sums are aggregated (metrics of another temporality, gauges included, pass
/// untouched); points are taken in request order. Drops are counted per error, as
/// `otelcol_deltatocumulative_datapoints{error}` does; the sender is never told.
#[derive(Debug, Default)]
pub struct DeltaToCumulative {
    /// Per stream: (start, time, sum).
    pub streams: BTreeMap<StreamId, (u64, u64, f64)>,
    pub out_of_order: usize,
    pub older_start: usize,
}

impl DeltaToCumulative {
    pub fn consume(&mut self, req: &ExportMetricsServiceRequest) {
        for p in points(std::slice::from_ref(req)) {
            if !p.is_delta() {
                continue;
            }
            let id = (
                p.resource.clone(),
                p.scope.clone(),
                p.metric.clone(),
                p.attrs.clone(),
            );
            let state = self.streams.entry(id).or_insert((0, 0, 0.0));
            if state.1 == 0 {
                *state = (p.start, p.time, p.value);
            } else if p.start < state.0 {
                self.older_start += 1;
            } else if p.time <= state.1 {
                self.out_of_order += 1;
            } else {
                state.2 += p.value;
                state.1 = p.time;
            }
        }
    }

    /// Run every request a receiver processed, in order.
    pub fn of(store: &Store) -> DeltaToCumulative {
        let mut d = DeltaToCumulative::default();
        for req in store.processed.lock().unwrap().iter() {
            d.consume(req);
        }
        d
    }

    /// The running total of the streams of `metric` whose attributes include `having`.
    pub fn total(&self, metric: &str, having: &[(&str, &str)]) -> f64 {
        self.streams
            .iter()
            .filter(|((_, _, m, attrs), _)| {
                m == metric
                    && having
                        .iter()
                        .all(|(k, v)| attrs.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, s)| s.2)
            .sum()
    }
}

/// The gauge series the Collector's `prometheus` exporter keeps (contrib
/// `exporter/prometheusexporter/accumulator.go`, `accumulateGauge`): for each point of a
/// metric message in order, a point flagged "no recorded value" deletes its series and
/// **ends the processing of that metric message** (`return 0`), an older point than the
/// one kept is skipped, any other replaces it.
#[derive(Debug, Default)]
pub struct PrometheusExporter {
    /// (metric, attributes) → (time, value).
    pub gauges: BTreeMap<(String, BTreeMap<String, String>), (u64, f64)>,
}

impl PrometheusExporter {
    pub fn consume(&mut self, req: &ExportMetricsServiceRequest) {
        let points = points(std::slice::from_ref(req));
        let mut stopped: Option<(usize, usize)> = None;
        for p in points.iter().filter(|p| p.temporality.is_none()) {
            if stopped == Some(p.message) {
                continue;
            }
            let key = (p.metric.clone(), p.attrs.clone());
            if p.flags & 1 != 0 {
                self.gauges.remove(&key);
                stopped = Some(p.message);
                continue;
            }
            if self.gauges.get(&key).is_some_and(|(t, _)| p.time < *t) {
                continue;
            }
            self.gauges.insert(key, (p.time, p.value));
        }
    }

    pub fn of(store: &Store) -> PrometheusExporter {
        let mut e = PrometheusExporter::default();
        for req in store.processed.lock().unwrap().iter() {
            e.consume(req);
        }
        e
    }

    /// The series of `metric` it shows.
    pub fn series(&self, metric: &str) -> Vec<BTreeMap<String, String>> {
        self.gauges
            .keys()
            .filter(|(m, _)| m == metric)
            .map(|(_, a)| a.clone())
            .collect()
    }
}
