//! The rustls server configuration from `tls_server_config`: the certificate chain and key
//! (checked to match), protocol versions, cipher suites and curves mapped from Go's names,
//! and the client-certificate policy.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CipherSuite, DigitallySignedStruct, DistinguishedName, NamedGroup, RootCertStore,
    SignatureScheme,
};

use super::{read_bounded, ClientAuth, Errors, TlsSettings, TlsVersion, WebConfigError};

/// TLS 1.2 suites by Go's name (`tls.CipherSuites()`) that rustls implements: Go names
/// them as IANA does. The other names Go accepts (CBC and RSA key exchange suites) are
/// refused with this list.
const TLS12_SUITES: [CipherSuite; 6] = [
    CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
];

/// TLS 1.3 suites: Go does not let `cipher_suites` change them (nor do we), but accepts
/// their names.
const TLS13_NAMES: [&str; 3] = [
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
];

/// Go's curve names (the toolkit's `curves` map) that rustls' ring provider has; Go's
/// `CurveP521` is refused.
const CURVES: [(&str, NamedGroup); 3] = [
    ("CurveP256", NamedGroup::secp256r1),
    ("CurveP384", NamedGroup::secp384r1),
    ("X25519", NamedGroup::X25519),
];

fn suite_name(s: CipherSuite) -> &'static str {
    s.as_str().unwrap_or("?")
}

pub(super) fn server_config(
    t: &TlsSettings,
    e: &Errors<'_>,
) -> Result<rustls::ServerConfig, WebConfigError> {
    let k = |name: &str| format!("tls_server_config.{name}");
    let provider = Arc::new(provider(t, e)?);

    let certs = read_certs(&t.cert_file).map_err(|m| e.at(&k("cert_file"), None, m))?;
    if certs.is_empty() {
        return Err(e.at(
            &k("cert_file"),
            None,
            format!("{}: no certificate in it", t.cert_file.display()),
        ));
    }
    let key_pem = read_bounded(&t.key_file).map_err(|m| e.at(&k("key_file"), None, m))?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|err| {
        e.at(
            &k("key_file"),
            None,
            format!("{}: no private key in it ({err})", t.key_file.display()),
        )
    })?;

    let mut versions: Vec<&'static rustls::SupportedProtocolVersion> = Vec::new();
    if t.min_version <= TlsVersion::Tls12 {
        versions.push(&rustls::version::TLS12);
    }
    if t.max_version >= TlsVersion::Tls13 {
        versions.push(&rustls::version::TLS13);
    }
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|err| e.at(&k("min_version"), None, err))?;

    let verifier: Option<Arc<dyn ClientCertVerifier>> = match t.client_auth {
        ClientAuth::None => None,
        ClientAuth::Request | ClientAuth::RequireAny => Some(Arc::new(AnyClientCert {
            mandatory: t.client_auth == ClientAuth::RequireAny,
            provider: provider.clone(),
        })),
        ClientAuth::VerifyIfGiven | ClientAuth::RequireAndVerify => {
            let ca = t.client_ca_file.as_ref().expect("checked by settings()");
            let mut roots = RootCertStore::empty();
            let certs = read_certs(ca).map_err(|m| e.at(&k("client_ca_file"), None, m))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(e.at(
                    &k("client_ca_file"),
                    None,
                    format!("{}: no CA certificate in it", ca.display()),
                ));
            }
            let b = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let b = if t.client_auth == ClientAuth::VerifyIfGiven {
                b.allow_unauthenticated()
            } else {
                b
            };
            Some(
                b.build()
                    .map_err(|err| e.at(&k("client_ca_file"), None, err))?,
            )
        }
    };
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|err| {
        e.at(
            &k("key_file"),
            None,
            format!(
                "{} and {} do not make a certificate and its key: {err}",
                t.cert_file.display(),
                t.key_file.display()
            ),
        )
    })?;
    config.ignore_client_order = t.prefer_server_cipher_suites;
    // HTTP/1.1 only (see the module documentation of `web_config`).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// ring's provider restricted to the configured TLS 1.2 suites and curves (in the file's
/// order, which is the server's preference when `prefer_server_cipher_suites` holds).
fn provider(t: &TlsSettings, e: &Errors<'_>) -> Result<CryptoProvider, WebConfigError> {
    let k = |name: &str| format!("tls_server_config.{name}");
    let mut p = rustls::crypto::ring::default_provider();
    if !t.cipher_suites.is_empty() {
        let mut wanted = Vec::new();
        for name in &t.cipher_suites {
            if TLS13_NAMES.contains(&name.as_str()) {
                continue;
            }
            let Some(s) = TLS12_SUITES.iter().find(|s| suite_name(**s) == name) else {
                return Err(e.at(
                    &k("cipher_suites"),
                    None,
                    format!(
                        "cipher suite {name} is not supported: one of {} (TLS 1.3 suites are \
                         always on)",
                        TLS12_SUITES.map(suite_name).join(", ")
                    ),
                ));
            };
            wanted.push(*s);
        }
        let all = std::mem::take(&mut p.cipher_suites);
        let (tls13, tls12): (Vec<_>, Vec<_>) = all
            .into_iter()
            .partition(|s| s.version() == &rustls::version::TLS13);
        p.cipher_suites = tls13;
        for w in wanted {
            if let Some(s) = tls12.iter().find(|s| s.suite() == w) {
                p.cipher_suites.push(*s);
            }
        }
    }
    if !t.curve_preferences.is_empty() {
        let all = std::mem::take(&mut p.kx_groups);
        for name in &t.curve_preferences {
            let Some((_, group)) = CURVES.iter().find(|(n, _)| n == name) else {
                return Err(e.at(
                    &k("curve_preferences"),
                    None,
                    format!(
                        "curve {name} is not supported: one of {}",
                        CURVES.map(|(n, _)| n).join(", ")
                    ),
                ));
            };
            if let Some(g) = all.iter().find(|g| g.name() == *group) {
                p.kx_groups.push(*g);
            }
        }
    }
    Ok(p)
}

/// Every certificate in a PEM file (bounded in size).
fn read_certs(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read_bounded(path)?;
    CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| format!("{}: {err}", path.display()))
}

/// `RequestClientCert` and `RequireAnyClientCert`: a client certificate is asked for (and
/// with the second, required) but not verified against any CA, as Go does; the client must
/// still prove it holds the certificate's key (the handshake signature is checked). The
/// toolkit's documentation calls both insecure.
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for AnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
