//! The web configuration file of Prometheus' exporter-toolkit (`--web.config.file`, our
//! `listen.web_config`): TLS, basic-auth users with bcrypt hashes and extra response
//! headers, in the format every official exporter reads. We accept exactly the keys that
//! Prometheus 2.42's toolkit (v0.8.2) accepts, with its defaults and value sets, so that
//! `promtool check web-config` and this module agree on what is valid (a test checks it);
//! an unknown key is refused with its name and line.
//!
//! Where rustls cannot do what Go's TLS stack does, the file is refused with a message that
//! says so rather than served differently: TLS 1.0/1.1 as `max_version`, cipher suites and
//! curves rustls lacks (CBC suites, P-521), `Verify*` client authentication without a
//! `client_ca_file` (Go falls back to the system's roots). `min_version: TLS10` or `TLS11`
//! is accepted and means TLS 1.2 (the oldest rustls speaks). `http2` is accepted and
//! ignored: only HTTP/1.1 is served (a scrape is one request; HTTP/2 brings nothing).
//!
//! Loading reads every file it names (bounded in size), checks the bcrypt hashes, and
//! builds the rustls configuration, so what loads here also serves.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

mod tls;

/// At most this many bytes are read from the web configuration file and from each
/// certificate, key and CA file: far above any real one, and a path mistakenly pointing
/// at a device or a huge file fails fast instead of filling memory.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Why a web configuration file was refused.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub(crate) struct WebConfigError {
    /// The web configuration file.
    pub(crate) file: String,
    /// The dotted key the problem is at (`tls_server_config.min_version`), empty for the
    /// file as a whole.
    pub(crate) key: String,
    /// The whole message: the key, the line when known, and what is wrong.
    pub(crate) message: String,
}

/// A loaded and checked web configuration.
#[derive(Clone)]
pub(crate) struct WebConfig {
    /// The file it was read from.
    pub(crate) path: PathBuf,
    /// TLS, when the file configures it.
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    /// User name → bcrypt hash. Empty: no authentication.
    pub(crate) users: BTreeMap<String, String>,
    /// Headers added to every response (401s included), validated names and values.
    pub(crate) headers: Vec<(String, String)>,
    /// What a reload must look at: the file itself and every file it names.
    pub(crate) files: Vec<PathBuf>,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No hashes in logs.
        f.debug_struct("WebConfig")
            .field("path", &self.path)
            .field("tls", &self.tls.is_some())
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .field("headers", &self.headers)
            .finish()
    }
}

/// The file as written: only the keys of exporter-toolkit v0.8.2.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    tls_server_config: Option<RawTls>,
    #[serde(default)]
    http_server_config: Option<RawHttp>,
    #[serde(default)]
    basic_auth_users: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    #[serde(default)]
    cert_file: Option<String>,
    #[serde(default)]
    key_file: Option<String>,
    #[serde(default)]
    client_auth_type: Option<String>,
    #[serde(default)]
    client_ca_file: Option<String>,
    #[serde(default)]
    cipher_suites: Option<Vec<String>>,
    #[serde(default)]
    curve_preferences: Option<Vec<String>>,
    #[serde(default)]
    min_version: Option<String>,
    #[serde(default)]
    max_version: Option<String>,
    #[serde(default)]
    prefer_server_cipher_suites: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    /// Accepted and ignored: only HTTP/1.1 is served.
    #[serde(default)]
    #[allow(dead_code)]
    http2: Option<bool>,
    #[serde(default)]
    headers: Option<BTreeMap<String, String>>,
}

/// The headers the toolkit lets a file set, with their allowed values (none: any value).
/// `web/handler.go`'s `extraHTTPHeaders`: "private on purpose to ensure consistency in
/// the Prometheus ecosystem".
const HEADERS: [(&str, &[&str]); 5] = [
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
    ("Content-Security-Policy", &[]),
];

/// The client authentication policies (`client_auth_type`), as Go's `tls.ClientAuthType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientAuth {
    /// `NoClientCert` (or empty): no certificate asked.
    None,
    /// `RequestClientCert`: asked for, not required, not verified.
    Request,
    /// `RequireAnyClientCert` (alias `RequireClientCert`): required, not verified.
    RequireAny,
    /// `VerifyClientCertIfGiven`: verified against the CA when given.
    VerifyIfGiven,
    /// `RequireAndVerifyClientCert`: required and verified against the CA.
    RequireAndVerify,
}

impl ClientAuth {
    fn parse(s: &str) -> Option<ClientAuth> {
        Some(match s {
            "" | "NoClientCert" => ClientAuth::None,
            "RequestClientCert" => ClientAuth::Request,
            "RequireAnyClientCert" | "RequireClientCert" => ClientAuth::RequireAny,
            "VerifyClientCertIfGiven" => ClientAuth::VerifyIfGiven,
            "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerify,
            _ => return None,
        })
    }
}

/// A TLS version as the file names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum TlsVersion {
    Tls10,
    Tls11,
    Tls12,
    Tls13,
}

impl TlsVersion {
    fn parse(s: &str) -> Option<TlsVersion> {
        Some(match s {
            "TLS10" => TlsVersion::Tls10,
            "TLS11" => TlsVersion::Tls11,
            "TLS12" => TlsVersion::Tls12,
            "TLS13" => TlsVersion::Tls13,
            _ => return None,
        })
    }
}

/// The TLS settings, resolved: paths joined to the file's directory, defaults applied.
#[derive(Debug, Clone)]
pub(crate) struct TlsSettings {
    pub(crate) cert_file: PathBuf,
    pub(crate) key_file: PathBuf,
    pub(crate) client_auth: ClientAuth,
    pub(crate) client_ca_file: Option<PathBuf>,
    pub(crate) cipher_suites: Vec<String>,
    pub(crate) curve_preferences: Vec<String>,
    pub(crate) min_version: TlsVersion,
    pub(crate) max_version: TlsVersion,
    pub(crate) prefer_server_cipher_suites: bool,
}

/// Builds errors that name the file, the key and, when known, the line.
struct Errors<'a> {
    file: &'a str,
}

impl Errors<'_> {
    fn at(
        &self,
        key: &str,
        line: Option<usize>,
        message: impl std::fmt::Display,
    ) -> WebConfigError {
        let at = line.map(|l| format!(" (line {l})")).unwrap_or_default();
        let what = if key.is_empty() || key == "." {
            "web configuration".to_string()
        } else {
            format!("key `{key}`")
        };
        WebConfigError {
            file: self.file.to_string(),
            key: key.to_string(),
            message: format!("{what}{at}: {message}"),
        }
    }
}

impl WebConfig {
    /// Read, check and build the web configuration in `path`.
    pub(crate) fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
        let file = path.display().to_string();
        let e = Errors { file: &file };
        let text = read_bounded(path).map_err(|m| e.at("", None, m))?;
        let text = String::from_utf8(text).map_err(|_| e.at("", None, "not valid UTF-8"))?;
        let raw = parse(&text, &e)?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut files = vec![path.to_path_buf()];

        let users = raw.basic_auth_users.unwrap_or_default();
        for (user, hash) in &users {
            check_hash(hash).map_err(|m| e.at(&format!("basic_auth_users.{user}"), None, m))?;
        }

        let http = raw.http_server_config.unwrap_or_default();
        let mut headers = Vec::new();
        for (name, value) in http.headers.unwrap_or_default() {
            let key = format!("http_server_config.headers.{name}");
            let Some((_, allowed)) = HEADERS.iter().find(|(n, _)| *n == name) else {
                return Err(e.at(
                    &key,
                    None,
                    format!(
                        "HTTP header {name:?} can not be configured (one of {})",
                        HEADERS.map(|(n, _)| n).join(", ")
                    ),
                ));
            };
            if !allowed.is_empty() && !allowed.contains(&value.as_str()) {
                return Err(e.at(
                    &key,
                    None,
                    format!("invalid value {value:?}: expected one of {allowed:?}"),
                ));
            }
            if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
                return Err(e.at(&key, None, "control characters in a header value"));
            }
            headers.push((name, value));
        }

        let tls = match raw.tls_server_config {
            Some(t) => match settings(t, dir, &e)? {
                Some(settings) => {
                    files.push(settings.cert_file.clone());
                    files.push(settings.key_file.clone());
                    files.extend(settings.client_ca_file.clone());
                    Some(Arc::new(tls::server_config(&settings, &e)?))
                }
                None => None,
            },
            None => None,
        };
        Ok(WebConfig {
            path: path.to_path_buf(),
            tls,
            users,
            headers,
            files,
        })
    }
}

/// Strict YAML (the toolkit uses `yaml.UnmarshalStrict`); an empty file is an empty
/// configuration.
fn parse(text: &str, e: &Errors<'_>) -> Result<Raw, WebConfigError> {
    if text.trim().is_empty() {
        return Ok(Raw::default());
    }
    let de = serde_yaml::Deserializer::from_str(text);
    match serde_path_to_error::deserialize::<_, Option<Raw>>(de) {
        Ok(raw) => Ok(raw.unwrap_or_default()),
        Err(err) => {
            let key = err.path().to_string();
            let inner = err.into_inner();
            let line = inner.location().map(|l| l.line());
            let mut msg = inner.to_string();
            if let Some(i) = msg.find(" at line ") {
                msg.truncate(i);
            }
            if let Some((head, rest)) = msg.split_once(": ") {
                if !head.contains(' ') && !head.is_empty() {
                    msg = rest.to_string();
                }
            }
            Err(e.at(&key, line, msg))
        }
    }
}

/// The toolkit's `validateUsers` (`bcrypt.Cost` must accept the hash): a bcrypt hash of a
/// known version with a cost bcrypt allows.
fn check_hash(hash: &str) -> Result<(), String> {
    let parts: bcrypt::HashParts = hash
        .parse()
        .map_err(|err| format!("not a bcrypt hash: {err}"))?;
    if !(4..=31).contains(&parts.get_cost()) {
        return Err(format!(
            "not a bcrypt hash: cost {} outside 4..=31",
            parts.get_cost()
        ));
    }
    Ok(())
}

/// The TLS settings, or None when the section configures no TLS at all (the toolkit then
/// serves plain HTTP, still with authentication and headers).
fn settings(t: RawTls, dir: &Path, e: &Errors<'_>) -> Result<Option<TlsSettings>, WebConfigError> {
    let nonempty = |s: Option<String>| s.filter(|s| !s.is_empty());
    let cert = nonempty(t.cert_file);
    let key = nonempty(t.key_file);
    let ca = nonempty(t.client_ca_file);
    let auth_name = nonempty(t.client_auth_type);
    if cert.is_none() && key.is_none() && ca.is_none() && auth_name.is_none() {
        return Ok(None);
    }
    let k = |name: &str| format!("tls_server_config.{name}");
    let cert = cert.ok_or_else(|| e.at(&k("cert_file"), None, "missing cert_file"))?;
    let key = key.ok_or_else(|| e.at(&k("key_file"), None, "missing key_file"))?;
    let client_auth = match &auth_name {
        None => ClientAuth::None,
        Some(a) => ClientAuth::parse(a).ok_or_else(|| {
            e.at(
                &k("client_auth_type"),
                None,
                format!(
                    "invalid ClientAuth: {a} (one of NoClientCert, RequestClientCert, \
                     RequireAnyClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert)"
                ),
            )
        })?,
    };
    if ca.is_some() && client_auth == ClientAuth::None {
        return Err(e.at(
            &k("client_ca_file"),
            None,
            "client CA's have been configured without a Client Auth Policy",
        ));
    }
    if ca.is_none()
        && matches!(
            client_auth,
            ClientAuth::VerifyIfGiven | ClientAuth::RequireAndVerify
        )
    {
        return Err(e.at(
            &k("client_ca_file"),
            None,
            format!(
                "client_auth_type {} needs a client_ca_file (the CA that signs client \
                 certificates; system roots are not used for clients)",
                auth_name.as_deref().unwrap_or_default()
            ),
        ));
    }
    let version = |name: &str, v: Option<String>, default: TlsVersion| match v {
        None => Ok(default),
        Some(s) => TlsVersion::parse(&s).ok_or_else(|| {
            e.at(
                &k(name),
                None,
                format!("unknown TLS version: {s} (one of TLS10, TLS11, TLS12, TLS13)"),
            )
        }),
    };
    let min_version = version("min_version", t.min_version, TlsVersion::Tls12)?;
    let max_version = version("max_version", t.max_version, TlsVersion::Tls13)?;
    if max_version < TlsVersion::Tls12 {
        return Err(e.at(
            &k("max_version"),
            None,
            "TLS 1.0 and 1.1 are not supported (rustls speaks TLS 1.2 and 1.3)",
        ));
    }
    if min_version > max_version {
        return Err(e.at(&k("min_version"), None, "min_version is above max_version"));
    }
    Ok(Some(TlsSettings {
        cert_file: join(dir, &cert),
        key_file: join(dir, &key),
        client_auth,
        client_ca_file: ca.map(|c| join(dir, &c)),
        cipher_suites: t.cipher_suites.unwrap_or_default(),
        curve_preferences: t.curve_preferences.unwrap_or_default(),
        min_version,
        max_version,
        prefer_server_cipher_suites: t.prefer_server_cipher_suites.unwrap_or(true),
    }))
}

/// A relative path is relative to the web configuration file's directory (the toolkit's
/// `SetDirectory`).
fn join(dir: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    }
}

/// A whole file of at most [`MAX_FILE_BYTES`], or why not.
fn read_bounded(path: &Path) -> Result<Vec<u8>, String> {
    let f = std::fs::File::open(path)
        .map_err(|err| format!("cannot read {}: {err}", path.display()))?;
    let meta = f
        .metadata()
        .map_err(|err| format!("cannot read {}: {err}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    let mut buf = Vec::new();
    f.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|err| format!("cannot read {}: {err}", path.display()))?;
    if buf.len() as u64 > MAX_FILE_BYTES {
        return Err(format!(
            "{} is larger than {MAX_FILE_BYTES} bytes",
            path.display()
        ));
    }
    Ok(buf)
}

#[cfg(test)]
mod tests;
