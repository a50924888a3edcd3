//! TLS for OTLP/HTTP: rustls with the system roots plus the configured CA, and the client
//! certificate for mutual TLS. (OTLP/gRPC configures the same files through tonic.)

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

use super::super::settings::Tls;
use super::super::OtlpError;

/// The certificates of a PEM file (at least one).
pub(crate) fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, OtlpError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| OtlpError::Tls {
            path: path.to_owned(),
            error: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(OtlpError::Tls {
            path: path.to_owned(),
            error: "no certificate in it".into(),
        });
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, OtlpError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| OtlpError::Tls {
        path: path.to_owned(),
        error: e.to_string(),
    })
}

/// The client configuration of these settings.
pub(crate) fn client_config(tls: &Tls) -> Result<Arc<ClientConfig>, OtlpError> {
    let mut roots = RootCertStore::empty();
    // Unreadable system certificates are skipped, as tonic's native roots do.
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(ca) = &tls.ca {
        for cert in certificates(ca)? {
            roots.add(cert).map_err(|e| OtlpError::Tls {
                path: ca.clone(),
                error: e.to_string(),
            })?;
        }
    }
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| OtlpError::Invalid(format!("TLS: {e}")))?
            .with_root_certificates(roots);
    let config = match &tls.client {
        Some((cert, key_path)) => builder
            .with_client_auth_cert(certificates(cert)?, key(key_path)?)
            .map_err(|e| OtlpError::Tls {
                path: key_path.clone(),
                error: e.to_string(),
            })?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}
