//! OTLP/gRPC with tonic: one lazily connected channel (HTTP/2), TLS for `https://`
//! endpoints with the configured CA and client certificate, gzip when configured.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use tonic::codec::CompressionEncoding;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::super::outcome::{self, Outcome};
use super::super::settings::Settings;
use super::super::OtlpError;
use crate::config::OtlpCompression;

pub(crate) struct Grpc {
    client: MetricsServiceClient<Channel>,
    metadata: MetadataMap,
}

impl Grpc {
    pub(crate) fn new(settings: &Settings) -> Result<Grpc, OtlpError> {
        let mut endpoint = Endpoint::from_shared(settings.url.clone())?
            .connect_timeout(settings.timeout)
            .user_agent(super::user_agent())?;
        if settings.secure() {
            let mut tls = ClientTlsConfig::new().with_native_roots();
            let read = |path: &std::path::Path| {
                std::fs::read(path).map_err(|e| OtlpError::Tls {
                    path: path.to_owned(),
                    error: e.to_string(),
                })
            };
            if let Some(path) = &settings.tls.ca {
                // Parsed here too, so that a file without a certificate is refused at start.
                super::tls::certificates(path)?;
                tls = tls.ca_certificate(Certificate::from_pem(read(path)?));
            }
            if let Some((cert, key)) = &settings.tls.client {
                super::tls::certificates(cert)?;
                tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
            }
            endpoint = endpoint.tls_config(tls)?;
        }
        let mut client = MetricsServiceClient::new(endpoint.connect_lazy())
            // Our requests are split under `max_request_size`; the answers are small.
            .max_decoding_message_size(crate::defaults::OTLP_MAX_RESPONSE_BYTES);
        if settings.compression == OtlpCompression::Gzip {
            client = client
                .send_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Gzip);
        }
        let mut metadata = MetadataMap::new();
        for (k, v) in &settings.headers {
            let key = MetadataKey::from_bytes(k.as_bytes())
                .map_err(|_| OtlpError::Invalid(format!("header name {k:?} is not valid")))?;
            // The value is not shown: it is often a credential.
            let value = MetadataValue::try_from(v.as_str())
                .map_err(|_| OtlpError::Invalid(format!("header {k:?} has an invalid value")))?;
            metadata.insert(key, value);
        }
        Ok(Grpc { client, metadata })
    }

    pub(crate) async fn send(
        &self,
        req: &ExportMetricsServiceRequest,
        timeout: Duration,
    ) -> Outcome {
        let mut client = self.client.clone();
        let mut request = tonic::Request::new(req.clone());
        *request.metadata_mut() = self.metadata.clone();
        match tokio::time::timeout(timeout, client.export(request)).await {
            Ok(Ok(response)) => outcome::delivered(Some(response.into_inner())),
            Ok(Err(status)) => outcome::grpc(&status),
            // Sent (or being sent) and not answered: it may have been processed.
            Err(_) => Outcome::Retry {
                reached: true,
                after: None,
                what: format!("no answer within {timeout:?}"),
            },
        }
    }
}
