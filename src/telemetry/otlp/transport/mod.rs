//! Sending one export request, over gRPC (tonic) or HTTP (hyper, HTTP/1.1), and saying
//! what came of it ([`Outcome`]). Nothing here keeps data: the caller decides what to do
//! with a request that failed.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;

use super::outcome::Outcome;
use super::settings::Settings;
use super::OtlpError;
use crate::config::OtlpProtocol;

mod grpc;
mod http;
mod tls;

/// The transport of the configured protocol.
pub(crate) enum Transport {
    Grpc(grpc::Grpc),
    Http(http::Http),
}

impl Transport {
    /// Must be called inside the Tokio runtime the sends will use. Reads the TLS files;
    /// refuses header names or values that cannot be sent.
    pub(crate) fn new(settings: &Settings) -> Result<Transport, OtlpError> {
        Ok(match settings.protocol {
            OtlpProtocol::Grpc => Transport::Grpc(grpc::Grpc::new(settings)?),
            OtlpProtocol::HttpProtobuf | OtlpProtocol::HttpJson => {
                Transport::Http(http::Http::new(settings)?)
            }
        })
    }

    /// Send one request, waiting at most `timeout` (connecting included).
    pub(crate) async fn send(
        &self,
        req: &ExportMetricsServiceRequest,
        timeout: Duration,
    ) -> Outcome {
        match self {
            Transport::Grpc(g) => g.send(req, timeout).await,
            Transport::Http(h) => h.send(req, timeout).await,
        }
    }
}

/// Load the TLS files `settings` name (CA, client certificate and key), as a transport
/// does when it is built, without building one: what `test-config` checks.
pub(crate) fn check_tls(settings: &Settings) -> Result<(), OtlpError> {
    if settings.secure() {
        tls::client_config(&settings.tls)?;
    }
    Ok(())
}

/// The `User-Agent` of every request ("OTLP exporters SHOULD emit a User-Agent header to
/// at a minimum identify the exporter, the language of its implementation, and the
/// version of the exporter").
pub(crate) fn user_agent() -> String {
    format!(
        "reaction-metrics-exporter/{} (Rust; OTLP)",
        crate::telemetry::VERSION
    )
}
