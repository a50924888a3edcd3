//! OTLP/HTTP (opentelemetry-proto `docs/specification.md`, "OTLP/HTTP"): `POST` of an
//! `ExportMetricsServiceRequest`, binary protobuf (`Content-Type: application/x-protobuf`)
//! or JSON (`application/json`), gzip with `Content-Encoding: gzip` when configured, over
//! one kept-alive HTTP/1.1 connection ("The client SHOULD keep the connection alive";
//! HTTP/1.1 is what every receiver serves), TLS by rustls for `https://`.

use std::io::Write as _;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use prost::Message as _;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use super::super::outcome::{self, Outcome};
use super::super::settings::Settings;
use super::super::OtlpError;
use crate::config::{OtlpCompression, OtlpProtocol};
use crate::defaults;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub(crate) struct Http {
    /// `host:port` to connect to.
    address: (String, u16),
    /// The request target (`/v1/metrics`) and the `Host` header.
    path: String,
    host: HeaderValue,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    /// Content-Type, User-Agent, the configured headers.
    headers: HeaderMap,
    json: bool,
    gzip: bool,
    /// The kept-alive connection, if any. One request at a time.
    conn: tokio::sync::Mutex<Option<SendRequest<Full<Bytes>>>>,
}

/// How far a request got, to tell "never sent" from "in doubt" when it fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Connecting,
    Sent,
}

impl Http {
    pub(crate) fn new(settings: &Settings) -> Result<Http, OtlpError> {
        let uri: hyper::Uri = settings
            .url
            .parse()
            .map_err(|e| OtlpError::Invalid(format!("endpoint {}: {e}", settings.url)))?;
        let secure = settings.secure();
        let host = uri.host().unwrap_or_default();
        let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
        // `[::1]` in a URL, `::1` to connect and in the server name.
        let bare = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let authority = uri
            .authority()
            .map(|a| a.as_str().rsplit_once('@').map_or(a.as_str(), |(_, h)| h))
            .unwrap_or(host);
        let tls = if secure {
            let config = super::tls::client_config(&settings.tls)?;
            let name = ServerName::try_from(bare.clone())
                .map_err(|e| OtlpError::Invalid(format!("TLS server name {bare:?}: {e}")))?;
            Some((TlsConnector::from(config), name))
        } else {
            None
        };
        let json = settings.protocol == OtlpProtocol::HttpJson;
        let mut headers = HeaderMap::new();
        for (k, v) in &settings.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| OtlpError::Invalid(format!("header name {k:?} is not valid")))?;
            // The value is not shown: it is often a credential.
            let mut value = HeaderValue::from_str(v)
                .map_err(|_| OtlpError::Invalid(format!("header {k:?} has an invalid value")))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        // Ours last: the protocol's headers cannot be overridden by a configured one.
        headers.insert(
            hyper::header::CONTENT_TYPE,
            HeaderValue::from_static(if json {
                "application/json"
            } else {
                "application/x-protobuf"
            }),
        );
        headers.insert(
            hyper::header::USER_AGENT,
            HeaderValue::from_str(&super::user_agent()).expect("ASCII"),
        );
        let gzip = settings.compression == OtlpCompression::Gzip;
        if gzip {
            headers.insert(
                hyper::header::CONTENT_ENCODING,
                HeaderValue::from_static("gzip"),
            );
        }
        Ok(Http {
            address: (bare, port),
            path: uri
                .path_and_query()
                .map_or("/".to_string(), |p| p.as_str().to_string()),
            host: HeaderValue::from_str(authority)
                .map_err(|e| OtlpError::Invalid(format!("endpoint host: {e}")))?,
            tls,
            headers,
            json,
            gzip,
            conn: tokio::sync::Mutex::new(None),
        })
    }

    /// The body of a request: protobuf or JSON, gzipped if configured. Deterministic, so
    /// a request re-sent after a doubt is byte for byte the same.
    fn body(&self, req: &ExportMetricsServiceRequest) -> Bytes {
        let raw = if self.json {
            serde_json::to_vec(req).expect("a request serializes")
        } else {
            req.encode_to_vec()
        };
        if !self.gzip {
            return raw.into();
        }
        let mut gz = flate2::write::GzEncoder::new(
            Vec::with_capacity(raw.len() / 4),
            flate2::Compression::default(),
        );
        gz.write_all(&raw).expect("writing to memory");
        gz.finish().expect("writing to memory").into()
    }

    pub(crate) async fn send(
        &self,
        req: &ExportMetricsServiceRequest,
        timeout: Duration,
    ) -> Outcome {
        let body = self.body(req);
        let mut stage = Stage::Connecting;
        let attempt = self.attempt(body, &mut stage);
        match tokio::time::timeout(timeout, attempt).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::Retry {
                reached: stage == Stage::Sent,
                after: None,
                what: format!("no answer within {timeout:?}"),
            },
        }
    }

    async fn attempt(&self, body: Bytes, stage: &mut Stage) -> Outcome {
        let mut conn = self.conn.lock().await;
        // A kept-alive connection may have been closed by the receiver meanwhile: then the
        // request is not sent on it (hyper says "canceled") and a new connection is made.
        for _ in 0..2 {
            let reused = match conn.take() {
                Some(mut s) => s.ready().await.is_ok().then_some(s),
                None => None,
            };
            let mut sender = match reused {
                Some(s) => s,
                None => {
                    *stage = Stage::Connecting;
                    match self.connect().await {
                        Ok(s) => s,
                        Err(e) => {
                            return Outcome::Retry {
                                reached: false,
                                after: None,
                                what: format!(
                                    "cannot connect to {}:{}: {e}",
                                    self.address.0, self.address.1
                                ),
                            }
                        }
                    }
                }
            };
            let mut request = hyper::Request::post(self.path.as_str())
                .body(Full::new(body.clone()))
                .expect("a valid request");
            *request.headers_mut() = self.headers.clone();
            request
                .headers_mut()
                .insert(hyper::header::HOST, self.host.clone());
            *stage = Stage::Sent;
            let response = match sender.send_request(request).await {
                Ok(r) => r,
                Err(e) if e.is_canceled() => continue,
                // "If the server disconnects without returning a response, the client SHOULD
                // retry and send the same request."
                Err(e) => {
                    return Outcome::Retry {
                        reached: true,
                        after: None,
                        what: format!("no answer: {e}"),
                    }
                }
            };
            let (parts, body) = response.into_parts();
            let header = |name| {
                parts
                    .headers
                    .get(name)
                    .and_then(|v: &HeaderValue| v.to_str().ok())
            };
            let retry_after = header(hyper::header::RETRY_AFTER).map(str::to_string);
            let content_type = header(hyper::header::CONTENT_TYPE).map(str::to_string);
            let body = match Limited::new(body, defaults::OTLP_MAX_RESPONSE_BYTES)
                .collect()
                .await
            {
                Ok(b) => b.to_bytes(),
                // The status is known; a body that is cut or too large only loses the message.
                Err(_) => Bytes::new(),
            };
            if !sender.is_closed() {
                *conn = Some(sender);
            }
            return outcome::http(
                parts.status.as_u16(),
                retry_after.as_deref(),
                content_type.as_deref(),
                &body,
            );
        }
        Outcome::Retry {
            reached: false,
            after: None,
            what: "the connection closed before the request was sent".into(),
        }
    }

    async fn connect(
        &self,
    ) -> Result<SendRequest<Full<Bytes>>, Box<dyn std::error::Error + Send + Sync>> {
        let tcp = tokio::net::TcpStream::connect((self.address.0.as_str(), self.address.1)).await?;
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = match &self.tls {
            Some((connector, name)) => Box::new(connector.connect(name.clone(), tcp).await?),
            None => Box::new(tcp),
        };
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("OTLP/HTTP connection closed: {e}");
            }
        });
        Ok(sender)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::otlp::settings::{resolve, tests::env};

    fn http(protocol: &str, compression: &str) -> Http {
        let s = resolve(
            &crate::config::Otlp::default(),
            &env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://[::1]:4318/base"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
                ("OTEL_EXPORTER_OTLP_COMPRESSION", compression),
                (
                    "OTEL_EXPORTER_OTLP_HEADERS",
                    "authorization=Basic%20eA%3D%3D",
                ),
            ]),
        )
        .unwrap()
        .settings
        .unwrap();
        Http::new(&s).unwrap()
    }

    #[test]
    fn target_host_and_headers() {
        let h = http("http/protobuf", "gzip");
        assert_eq!(h.address, ("::1".to_string(), 4318));
        assert_eq!(h.path, "/base/v1/metrics");
        assert_eq!(h.host, "[::1]:4318");
        assert_eq!(h.headers["content-type"], "application/x-protobuf");
        assert_eq!(h.headers["content-encoding"], "gzip");
        assert_eq!(h.headers["authorization"], "Basic eA==");
        assert!(h.headers["authorization"].is_sensitive());
        assert!(h.headers["user-agent"]
            .to_str()
            .unwrap()
            .starts_with("reaction-metrics-exporter/"));
        let h = http("http/json", "none");
        assert_eq!(h.headers["content-type"], "application/json");
        assert!(!h.headers.contains_key("content-encoding"));
    }

    /// The JSON body is the OTLP JSON mapping (docs/specification.md, "JSON Protobuf
    /// Encoding"): lowerCamelCase keys, enums as integers, 64-bit integers as strings.
    #[test]
    fn json_bodies_follow_the_otlp_json_encoding() {
        use crate::telemetry::otlp::test_requests::{point, request, sum};
        use opentelemetry_proto::tonic::metrics::v1::AggregationTemporality;
        let req = request(vec![sum(
            "reaction.filter.matches",
            "",
            vec![point(
                &[("ip", "1.2.3.4")],
                5,
                1_700_000_000_000_000_001,
                1_700_000_000_000_000_002,
            )],
            AggregationTemporality::Delta,
        )]);
        let body = http("http/json", "none").body(&req);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let m = &v["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0];
        assert_eq!(m["name"], "reaction.filter.matches");
        assert_eq!(m["sum"]["aggregationTemporality"], 1);
        assert_eq!(m["sum"]["isMonotonic"], true);
        let p = &m["sum"]["dataPoints"][0];
        assert_eq!(p["startTimeUnixNano"], "1700000000000000001");
        assert_eq!(p["timeUnixNano"], "1700000000000000002");
        assert_eq!(p["asInt"], "5");
        assert_eq!(p["attributes"][0]["key"], "ip");
        assert_eq!(p["attributes"][0]["value"]["stringValue"], "1.2.3.4");
        // gzip: the same bytes once inflated.
        let gz = http("http/json", "gzip").body(&req);
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut raw).unwrap();
        assert_eq!(raw, body);
    }
}
