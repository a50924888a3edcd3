//! The OTLP settings: each `otlp` configuration key, else the standard variables of the
//! OTLP exporter specification (opentelemetry-specification `protocol/exporter.md`,
//! "Configuration Options"; the metrics-specific `OTEL_EXPORTER_OTLP_METRICS_*` variable
//! before the general one), else the default.
//!
//! Variables follow the specification's typing (`configuration/sdk-environment-variables.md`):
//! an empty value is unset, enum values are case-insensitive, and an unusable value "MUST
//! generate a warning and gracefully ignore the setting" — so a bad variable is a warning
//! ([`Resolution::warnings`]) and its default applies, while a bad configuration key (ours)
//! is an error that stops the start.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use opentelemetry_sdk::metrics::Temporality;

use super::env::{self, Env};
use super::OtlpError;
use crate::config::{Otlp, OtlpCompression, OtlpProtocol, TemporalityPref, Word};
use crate::defaults;

/// Resolved OTLP settings.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Settings {
    pub(crate) protocol: OtlpProtocol,
    /// gRPC: `http://authority` or `https://authority`. HTTP: the URL metrics are POSTed to.
    pub(crate) url: String,
    pub(crate) interval: Duration,
    /// Of one request (connecting included).
    pub(crate) timeout: Duration,
    /// Lower-case names; values as given (never logged: they are often credentials).
    pub(crate) headers: BTreeMap<String, String>,
    pub(crate) compression: OtlpCompression,
    pub(crate) tls: Tls,
    pub(crate) temporality: Temporality,
    pub(crate) max_request_size: usize,
}

/// TLS files (PEM). Used only when the URL is `https://`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Tls {
    /// A CA trusted besides the system roots.
    pub(crate) ca: Option<PathBuf>,
    /// Client certificate and its key, for mutual TLS.
    pub(crate) client: Option<(PathBuf, PathBuf)>,
}

impl Settings {
    /// Whether the connection uses TLS.
    pub(crate) fn secure(&self) -> bool {
        self.url.starts_with("https://")
    }
}

/// What [`resolve`] found.
#[derive(Debug, Default)]
pub(crate) struct Resolution {
    /// None: OTLP is off.
    pub(crate) settings: Option<Settings>,
    /// Why it is off although something asked for it (a disabling variable), for the log.
    pub(crate) off: Option<String>,
    /// Variables that could not be used and were ignored, for the log.
    pub(crate) warnings: Vec<String>,
}

const METRICS_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT";
const ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// Where the endpoint came from: each has its own URL rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// `otlp.endpoint`: for HTTP a base URL, unless its path already ends in `/v1/metrics`.
    Config,
    /// `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`: for HTTP, "used as-is without any
    /// modification. The only exception is that if an URL contains no path part, the root
    /// path / MUST be used".
    Signal,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`: for HTTP a base URL, `v1/metrics` appended after
    /// making sure it ends with one `/`.
    Base,
    /// None given, OTLP asked for by `OTEL_METRICS_EXPORTER=otlp`: the default.
    Default,
}

/// Resolve the settings. OTLP is on when an endpoint is configured (`otlp.endpoint` or
/// either endpoint variable) or `OTEL_METRICS_EXPORTER` names `otlp`; `OTEL_SDK_DISABLED=true`
/// and an `OTEL_METRICS_EXPORTER` without `otlp` (`none`) switch it off whatever else says.
pub(crate) fn resolve(cfg: &Otlp, env: Env<'_>) -> Result<Resolution, OtlpError> {
    let mut res = Resolution::default();
    let w = &mut res.warnings;

    let explicit =
        cfg.endpoint.is_some() || env::first(env, &[METRICS_ENDPOINT, ENDPOINT]).is_some();
    if let Some((name, v)) = env::first(env, &["OTEL_SDK_DISABLED"]) {
        if env::boolean(name, &v, w) {
            res.off = explicit.then(|| "OTEL_SDK_DISABLED=true: the OTLP push is off".into());
            return Ok(res);
        }
    }
    let mut asked = false;
    if let Some((name, v)) = env::first(env, &["OTEL_METRICS_EXPORTER"]) {
        let list: Vec<String> = v
            .split(',')
            .map(|e| e.trim().to_ascii_lowercase())
            .filter(|e| !e.is_empty())
            .collect();
        if list.iter().any(|e| e == "none") || !list.iter().any(|e| e == "otlp") {
            res.off = Some(format!(
                "{name}={v:?} does not name otlp: the OTLP push is off (/metrics is served)"
            ));
            return Ok(res);
        }
        asked = true;
    }

    let protocol = match cfg.protocol {
        Some(p) => p,
        None => enum_var(
            env,
            &[
                "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
                "OTEL_EXPORTER_OTLP_PROTOCOL",
            ],
            w,
        )
        .unwrap_or_else(default_protocol),
    };
    let (endpoint, source) = if let Some(e) = &cfg.endpoint {
        (e.trim().to_string(), Source::Config)
    } else if let Some((_, e)) = env::first(env, &[METRICS_ENDPOINT]) {
        (e.trim().to_string(), Source::Signal)
    } else if let Some((_, e)) = env::first(env, &[ENDPOINT]) {
        (e.trim().to_string(), Source::Base)
    } else if asked {
        let e = match protocol {
            OtlpProtocol::Grpc => defaults::OTLP_GRPC_ENDPOINT,
            _ => defaults::OTLP_HTTP_ENDPOINT,
        };
        (e.to_string(), Source::Default)
    } else {
        return Ok(res);
    };

    let insecure = match cfg.insecure {
        Some(b) => b,
        None => env::first(
            env,
            &[
                "OTEL_EXPORTER_OTLP_METRICS_INSECURE",
                // Obsolete, still read as the specification asks ("SHOULD continue to be
                // supported").
                "OTEL_EXPORTER_OTLP_METRIC_INSECURE",
                "OTEL_EXPORTER_OTLP_INSECURE",
            ],
        )
        .is_some_and(|(n, v)| env::boolean(n, &v, w)),
    };
    let url = match protocol {
        OtlpProtocol::Grpc => grpc_url(&endpoint, insecure)?,
        OtlpProtocol::HttpProtobuf | OtlpProtocol::HttpJson => http_url(&endpoint, source)?,
    };

    let interval = match cfg.interval {
        Some(s) => seconds("otlp.interval", s)?,
        None => millis_var(env, &["OTEL_METRIC_EXPORT_INTERVAL"], false, w)
            .unwrap_or(defaults::OTLP_INTERVAL),
    };
    let timeout = match cfg.timeout {
        Some(s) => seconds("otlp.timeout", s)?,
        None => millis_var(
            env,
            &[
                "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT",
                "OTEL_EXPORTER_OTLP_TIMEOUT",
            ],
            true,
            w,
        )
        .unwrap_or(defaults::OTLP_TIMEOUT),
    };

    let mut headers = BTreeMap::new();
    if let Some((name, v)) = env::first(
        env,
        &[
            "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
            "OTEL_EXPORTER_OTLP_HEADERS",
        ],
    ) {
        for pair in env::pairs(&v) {
            match pair {
                // W3C-baggage-like values are percent-encoded (`Basic%20...`); a value that
                // does not decode is taken as written (a raw space works as well).
                Ok((k, v)) => {
                    let value = env::percent_decode(v).unwrap_or_else(|| v.to_string());
                    let key = k.to_ascii_lowercase();
                    match check_header(&key, &value) {
                        Ok(()) => {
                            headers.insert(key, value);
                        }
                        Err(e) => w.push(format!("{name}: header {key:?} {e}: ignored")),
                    }
                }
                Err(e) => w.push(format!("{name}: {e}, ignored")),
            }
        }
    }
    for (k, v) in &cfg.headers {
        let key = k.trim().to_ascii_lowercase();
        check_header(&key, v)
            .map_err(|e| OtlpError::Invalid(format!("otlp.headers: header {key:?} {e}")))?;
        headers.insert(key, v.clone());
    }

    let compression = match cfg.compression {
        Some(c) => c,
        None => enum_var(
            env,
            &[
                "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION",
                "OTEL_EXPORTER_OTLP_COMPRESSION",
            ],
            w,
        )
        .unwrap_or(OtlpCompression::None),
    };

    let path = |cfg: &Option<PathBuf>, names: &[&'static str]| {
        cfg.clone()
            .or_else(|| env::first(env, names).map(|(_, v)| PathBuf::from(v.trim())))
    };
    let ca = path(
        &cfg.ca,
        &[
            "OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE",
            "OTEL_EXPORTER_OTLP_CERTIFICATE",
        ],
    );
    let cert = path(
        &cfg.client_certificate,
        &[
            "OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE",
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
        ],
    );
    let key = path(
        &cfg.client_key,
        &[
            "OTEL_EXPORTER_OTLP_METRICS_CLIENT_KEY",
            "OTEL_EXPORTER_OTLP_CLIENT_KEY",
        ],
    );
    let client = match (cert, key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        (Some(_), None) => {
            return Err(OtlpError::Invalid(
                "a client certificate (otlp.client_certificate) needs its key \
                 (otlp.client_key or OTEL_EXPORTER_OTLP_CLIENT_KEY)"
                    .into(),
            ))
        }
        (None, Some(_)) => {
            return Err(OtlpError::Invalid(
                "a client key (otlp.client_key) needs its certificate \
                 (otlp.client_certificate or OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE)"
                    .into(),
            ))
        }
    };
    let tls = Tls { ca, client };
    if !url.starts_with("https://") && tls != Tls::default() {
        w.push(format!(
            "the CA or client certificate is not used: {url} is not a TLS endpoint"
        ));
    }

    let temporality = match cfg.temporality {
        Some(t) => t,
        None => enum_var(
            env,
            &["OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE"],
            w,
        )
        .unwrap_or(TemporalityPref::Delta),
    };
    let temporality = match temporality {
        TemporalityPref::Delta => Temporality::Delta,
        TemporalityPref::Cumulative => Temporality::Cumulative,
        TemporalityPref::LowMemory => Temporality::LowMemory,
    };

    res.settings = Some(Settings {
        protocol,
        url,
        interval,
        timeout,
        headers,
        compression,
        tls,
        temporality,
        max_request_size: cfg.max_request_size,
    });
    Ok(res)
}

/// Whether a header can be sent over both transports: an HTTP token as its name, and a
/// value of printable ASCII (what gRPC allows in ASCII metadata; HTTP allows it too). The
/// value is never shown: it is often a credential.
fn check_header(name: &str, value: &str) -> Result<(), &'static str> {
    if name.is_empty() || http::HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Err("is not a valid header name");
    }
    if !value.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return Err("has a value that is not printable ASCII");
    }
    Ok(())
}

fn default_protocol() -> OtlpProtocol {
    OtlpProtocol::from_word(defaults::OTLP_PROTOCOL).expect("the default protocol is a protocol")
}

/// An enum variable: unknown words are a warning, and ignored.
fn enum_var<T: Word + PartialEq>(
    env: Env<'_>,
    names: &[&'static str],
    w: &mut Vec<String>,
) -> Option<T> {
    let (name, v) = env::first(env, names)?;
    let parsed = T::from_word(&v);
    if parsed.is_none() {
        w.push(format!(
            "{name}={v:?} is not one of {}: ignored",
            T::expected()
        ));
    }
    parsed
}

/// A duration variable in integer milliseconds. `0` means "no limit" where `zero_is_none`
/// (timeouts, as `configuration/common.md` says), else it is ignored like a negative or
/// unreadable value.
fn millis_var(
    env: Env<'_>,
    names: &[&'static str],
    zero_is_none: bool,
    w: &mut Vec<String>,
) -> Option<Duration> {
    let (name, v) = env::first(env, names)?;
    match v.trim().parse::<u64>() {
        Ok(0) if zero_is_none => Some(defaults::OTLP_NO_TIMEOUT),
        Ok(ms) if ms > 0 => Some(Duration::from_millis(ms)),
        _ => {
            w.push(format!(
                "{name}={v:?} is not a positive number of milliseconds: ignored"
            ));
            None
        }
    }
}

/// A configured number of seconds, without the panic of `Duration::from_secs_f64`.
fn seconds(key: &str, s: f64) -> Result<Duration, OtlpError> {
    Duration::try_from_secs_f64(s)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| OtlpError::Invalid(format!("{key}: {s} is not a usable number of seconds")))
}

/// The scheme (`http`/`https`), authority and the rest (path, query) of a URL, if it has
/// a scheme.
fn split_url(s: &str) -> Option<(&str, &str, &str)> {
    let (scheme, rest) = s.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    Some((scheme, &rest[..end], &rest[end..]))
}

/// The gRPC endpoint: "SHOULD accept any form allowed by the underlying gRPC client
/// implementation. Additionally, the option MUST accept a URL with a scheme of either
/// `http` or `https`" — `https` is TLS and `http` is not, whatever `insecure` says; a bare
/// `host:port` is TLS unless `insecure` (the `OTEL_EXPORTER_OTLP_INSECURE` rule).
fn grpc_url(endpoint: &str, insecure: bool) -> Result<String, OtlpError> {
    let url = match split_url(endpoint) {
        Some(("http" | "https", _, _)) => endpoint.to_string(),
        Some((scheme, _, _)) => {
            return Err(OtlpError::Invalid(format!(
                "gRPC endpoint {endpoint:?}: the scheme {scheme:?} is not http or https"
            )))
        }
        None if insecure => format!("http://{endpoint}"),
        None => format!("https://{endpoint}"),
    };
    check_url(&url, endpoint)?;
    Ok(url)
}

/// The URL metrics are POSTed to, per the specification's "Endpoint URLs for OTLP/HTTP".
fn http_url(endpoint: &str, source: Source) -> Result<String, OtlpError> {
    let Some((scheme @ ("http" | "https"), authority, rest)) = split_url(endpoint) else {
        return Err(OtlpError::Invalid(format!(
            "OTLP/HTTP endpoint {endpoint:?} must be a URL starting with http:// or https://"
        )));
    };
    let base_path = |rest: &str| -> Result<String, OtlpError> {
        if rest.contains(['?', '#']) {
            return Err(OtlpError::Invalid(format!(
                "OTLP/HTTP base endpoint {endpoint:?}: no query or fragment in a base URL \
                 (set the full URL in {METRICS_ENDPOINT} instead)"
            )));
        }
        let mut path = rest.to_string();
        if !path.ends_with('/') {
            path.push('/');
        }
        path.push_str("v1/metrics");
        Ok(path)
    };
    let path = match source {
        Source::Signal if rest.is_empty() => "/".to_string(),
        Source::Signal | Source::Default => rest.to_string(),
        Source::Config if rest.trim_end_matches('/').ends_with("/v1/metrics") => rest.to_string(),
        Source::Config | Source::Base => base_path(rest)?,
    };
    let url = format!("{scheme}://{authority}{path}");
    check_url(&url, endpoint)?;
    Ok(url)
}

fn check_url(url: &str, given: &str) -> Result<(), OtlpError> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| OtlpError::Invalid(format!("endpoint {given:?} is not a valid URL: {e}")))?;
    if uri.host().is_none_or(str::is_empty) {
        return Err(OtlpError::Invalid(format!(
            "endpoint {given:?} has no host"
        )));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| vars.get(k).cloned()
    }

    fn on(cfg: &Otlp, vars: &[(&str, &str)]) -> Settings {
        resolve(cfg, &env(vars)).unwrap().settings.expect("on")
    }

    fn url(cfg: &Otlp, vars: &[(&str, &str)]) -> String {
        on(cfg, vars).url
    }

    fn with_endpoint(e: &str, protocol: OtlpProtocol) -> Otlp {
        Otlp {
            endpoint: Some(e.into()),
            protocol: Some(protocol),
            ..Otlp::default()
        }
    }

    #[test]
    fn off_without_an_endpoint() {
        let r = resolve(&Otlp::default(), &env(&[])).unwrap();
        assert!(r.settings.is_none() && r.off.is_none());
        // Asked for by name: the default endpoint of the protocol.
        let s = on(&Otlp::default(), &[("OTEL_METRICS_EXPORTER", "OTLP")]);
        assert_eq!(s.url, "http://localhost:4317");
        assert_eq!(s.protocol, OtlpProtocol::Grpc);
        let s = on(
            &Otlp::default(),
            &[
                ("OTEL_METRICS_EXPORTER", "otlp"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ],
        );
        assert_eq!(s.url, "http://localhost:4318/v1/metrics");
    }

    #[test]
    fn the_disable_switches_win_over_everything() {
        let cfg = with_endpoint("http://c:4317", OtlpProtocol::Grpc);
        for vars in [
            &[("OTEL_SDK_DISABLED", "TRUE")][..],
            &[("OTEL_METRICS_EXPORTER", "none")],
            &[("OTEL_METRICS_EXPORTER", "prometheus")],
            &[("OTEL_METRICS_EXPORTER", "otlp,none")],
        ] {
            let r = resolve(&cfg, &env(vars)).unwrap();
            assert!(r.settings.is_none(), "{vars:?}");
            assert!(r.off.is_some(), "{vars:?}: said in the log");
        }
        let r = resolve(&cfg, &env(&[("OTEL_SDK_DISABLED", "false")])).unwrap();
        assert!(r.settings.is_some());
        let r = resolve(&cfg, &env(&[("OTEL_SDK_DISABLED", "1")])).unwrap();
        assert!(r.settings.is_some(), "only `true` is true");
        assert_eq!(r.warnings.len(), 1);
    }

    /// The examples of the specification's "Endpoint URLs for OTLP/HTTP".
    #[test]
    fn http_endpoints_follow_the_specification() {
        let http = [("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")];
        let with = |k: &'static str, v: &'static str| [http[0], (k, v)];
        let cfg = Otlp::default();
        assert_eq!(
            url(&cfg, &with(ENDPOINT, "http://collector:4318")),
            "http://collector:4318/v1/metrics"
        );
        assert_eq!(
            url(&cfg, &with(ENDPOINT, "http://collector:4318/mycollector/")),
            "http://collector:4318/mycollector/v1/metrics"
        );
        assert_eq!(
            url(&cfg, &with(ENDPOINT, "https://prom:9090/api/v1/otlp")),
            "https://prom:9090/api/v1/otlp/v1/metrics"
        );
        // The metrics-specific variable is used as is; no path is the root path.
        assert_eq!(
            url(&cfg, &with(METRICS_ENDPOINT, "http://collector:4318")),
            "http://collector:4318/"
        );
        assert_eq!(
            url(
                &cfg,
                &with(METRICS_ENDPOINT, "http://collector:4318/custom/path?x=1")
            ),
            "http://collector:4318/custom/path?x=1"
        );
        // ... and wins over the general one.
        assert_eq!(
            url(
                &cfg,
                &[
                    http[0],
                    (ENDPOINT, "http://a:4318"),
                    (METRICS_ENDPOINT, "http://b:4318/v1/metrics")
                ]
            ),
            "http://b:4318/v1/metrics"
        );
        // otlp.endpoint: a base URL, unless it already ends with /v1/metrics.
        for (given, expected) in [
            ("http://c:4318", "http://c:4318/v1/metrics"),
            ("http://c:4318/", "http://c:4318/v1/metrics"),
            ("http://c:4318/v1/metrics", "http://c:4318/v1/metrics"),
            (
                "https://otlp-gateway-prod-eu-west-2.grafana.net/otlp",
                "https://otlp-gateway-prod-eu-west-2.grafana.net/otlp/v1/metrics",
            ),
        ] {
            assert_eq!(
                url(&with_endpoint(given, OtlpProtocol::HttpProtobuf), &[]),
                expected
            );
        }
        // A URL is required.
        let r = resolve(
            &with_endpoint("collector:4318", OtlpProtocol::HttpProtobuf),
            &env(&[]),
        );
        assert!(r.is_err());
        let r = resolve(&Otlp::default(), &env(&with(ENDPOINT, "http://c:4318/?a")));
        assert!(r.is_err(), "no query in a base URL");
    }

    #[test]
    fn grpc_endpoints_accept_urls_and_host_port() {
        let grpc =
            |e: &str, vars: &[(&str, &str)]| url(&with_endpoint(e, OtlpProtocol::Grpc), vars);
        assert_eq!(grpc("http://c:4317", &[]), "http://c:4317");
        assert_eq!(grpc("https://c:4317", &[]), "https://c:4317");
        // A bare host:port is TLS unless insecure (the scheme wins over insecure).
        assert_eq!(grpc("c:4317", &[]), "https://c:4317");
        assert_eq!(
            grpc("c:4317", &[("OTEL_EXPORTER_OTLP_INSECURE", "true")]),
            "http://c:4317"
        );
        assert_eq!(
            grpc("c:4317", &[("OTEL_EXPORTER_OTLP_METRIC_INSECURE", "True")]),
            "http://c:4317"
        );
        assert_eq!(
            grpc("https://c:4317", &[("OTEL_EXPORTER_OTLP_INSECURE", "true")]),
            "https://c:4317"
        );
        assert_eq!(
            grpc("[::1]:4317", &[("OTEL_EXPORTER_OTLP_INSECURE", "true")]),
            "http://[::1]:4317"
        );
        let cfg = Otlp {
            insecure: Some(true),
            ..with_endpoint("127.0.0.1:4317", OtlpProtocol::Grpc)
        };
        assert_eq!(url(&cfg, &[]), "http://127.0.0.1:4317");
        assert!(resolve(&with_endpoint("unix:///x", OtlpProtocol::Grpc), &env(&[])).is_err());
        assert!(resolve(&with_endpoint("http://", OtlpProtocol::Grpc), &env(&[])).is_err());
    }

    #[test]
    fn variables_apply_metrics_specific_first_and_config_wins() {
        let e = [
            (ENDPOINT, "http://collector:4317"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "5000"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "Authorization=Bearer%20x,x-team=sec",
            ),
            ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "x-team=metrics"),
            (
                "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
                "LowMemory",
            ),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "GZIP"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "1500"),
            ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "2500"),
        ];
        let s = on(&Otlp::default(), &e);
        assert_eq!(s.url, "http://collector:4317");
        assert_eq!(s.interval, Duration::from_secs(5));
        // The metrics-specific headers replace the general ones.
        assert_eq!(
            s.headers,
            BTreeMap::from([("x-team".into(), "metrics".into())])
        );
        assert_eq!(s.temporality, Temporality::LowMemory);
        assert_eq!(s.compression, OtlpCompression::Gzip);
        assert_eq!(s.timeout, Duration::from_millis(2500));

        let cfg = Otlp {
            endpoint: Some("https://other:4317".into()),
            interval: Some(1.5),
            timeout: Some(3.0),
            temporality: Some(TemporalityPref::Delta),
            compression: Some(OtlpCompression::None),
            headers: BTreeMap::from([("X-Team".to_string(), "ops".to_string())]),
            ..Otlp::default()
        };
        let s = on(&cfg, &e);
        assert_eq!(s.url, "https://other:4317");
        assert_eq!(s.interval, Duration::from_millis(1500));
        assert_eq!(s.timeout, Duration::from_secs(3));
        assert_eq!(s.temporality, Temporality::Delta);
        assert_eq!(s.compression, OtlpCompression::None);
        assert_eq!(s.headers["x-team"], "ops");
    }

    #[test]
    fn headers_decode_and_never_panic() {
        let s = on(
            &Otlp::default(),
            &[
                (ENDPOINT, "http://c:4317"),
                (
                    "OTEL_EXPORTER_OTLP_HEADERS",
                    "k=%aé, Authorization = Basic dXNlcjpwYXNz ,b=Basic%20eA%3D%3D,broken,=x",
                ),
            ],
        );
        // Regression (issue 8): `k=%aé` panicked at start. A value that does not decode is
        // kept as written, here not sendable (not ASCII): a warning, ignored. A raw space
        // works too.
        assert!(!s.headers.contains_key("k"));
        assert_eq!(s.headers["authorization"], "Basic dXNlcjpwYXNz");
        assert_eq!(s.headers["b"], "Basic eA==");
        assert_eq!(s.headers.len(), 2);
        let s = on(
            &Otlp::default(),
            &[
                (ENDPOINT, "http://c:4317"),
                ("OTEL_EXPORTER_OTLP_HEADERS", "k=50%,t=%zz"),
            ],
        );
        assert_eq!(s.headers["k"], "50%");
        assert_eq!(s.headers["t"], "%zz");
        // In the configuration: an error naming the header.
        let cfg = Otlp {
            headers: BTreeMap::from([("x-key".to_string(), "caf\u{e9}".to_string())]),
            ..with_endpoint("http://c:4317", OtlpProtocol::Grpc)
        };
        let e = resolve(&cfg, &env(&[])).unwrap_err().to_string();
        assert!(e.contains("x-key") && !e.contains("caf"), "{e}");
    }

    #[test]
    fn unusable_variables_are_warnings_and_defaults_apply() {
        let r = resolve(
            &Otlp::default(),
            &env(&[
                (ENDPOINT, "http://c:4317"),
                ("OTEL_METRIC_EXPORT_INTERVAL", "soon"),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "-5"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon"),
                ("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd"),
                (
                    "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
                    "sometimes",
                ),
            ]),
        )
        .unwrap();
        let s = r.settings.unwrap();
        assert_eq!(s.interval, defaults::OTLP_INTERVAL);
        assert_eq!(s.timeout, defaults::OTLP_TIMEOUT);
        assert_eq!(s.protocol, OtlpProtocol::Grpc);
        assert_eq!(s.compression, OtlpCompression::None);
        assert_eq!(s.temporality, Temporality::Delta);
        assert_eq!(r.warnings.len(), 5, "{:?}", r.warnings);
        // A timeout of 0 is "no limit".
        let s = on(
            &Otlp::default(),
            &[
                (ENDPOINT, "http://c:4317"),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "0"),
            ],
        );
        assert_eq!(s.timeout, defaults::OTLP_NO_TIMEOUT);
    }

    #[test]
    fn bad_configuration_keys_are_errors() {
        for cfg in [
            Otlp {
                interval: Some(1e300),
                ..with_endpoint("http://c:4317", OtlpProtocol::Grpc)
            },
            Otlp {
                timeout: Some(f64::NAN),
                ..with_endpoint("http://c:4317", OtlpProtocol::Grpc)
            },
            Otlp {
                client_certificate: Some("/c.pem".into()),
                ..with_endpoint("https://c:4317", OtlpProtocol::Grpc)
            },
        ] {
            assert!(resolve(&cfg, &env(&[])).is_err(), "{cfg:?}");
        }
    }

    #[test]
    fn tls_files_from_config_or_variables() {
        let s = on(
            &with_endpoint("https://c:4318", OtlpProtocol::HttpProtobuf),
            &[
                ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/ca.pem"),
                ("OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE", "/m.pem"),
                ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "/c.pem"),
                ("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/k.pem"),
            ],
        );
        assert!(s.secure());
        assert_eq!(s.tls.ca, Some("/ca.pem".into()));
        assert_eq!(s.tls.client, Some(("/m.pem".into(), "/k.pem".into())));
    }
}
