//! The resource every metric is exported with, built here rather than by the SDK's
//! `Resource::builder()`: in opentelemetry_sdk 0.33.1 its environment detector runs last,
//! so `OTEL_RESOURCE_ATTRIBUTES=service.name=...` beats `OTEL_SERVICE_NAME` and values are
//! not percent-decoded, against the specification (checked by running it; the test
//! `otlp::resource_attributes_from_the_environment_and_their_precedence` holds ours to the
//! table below).
//!
//! Precedence, highest first, for each attribute:
//!
//! | source | attributes |
//! |---|---|
//! | `otlp.service_name`, `otlp.instance_id` | `service.name`, `service.instance.id` |
//! | `otlp.resource` | any |
//! | `OTEL_SERVICE_NAME` | `service.name` ("If `service.name` is also provided in `OTEL_RESOURCE_ATTRIBUTES`, then `OTEL_SERVICE_NAME` takes precedence", sdk-environment-variables.md) |
//! | `OTEL_RESOURCE_ATTRIBUTES` (percent-decoded; on any error the whole variable is discarded and the error reported, resource/sdk.md) | any |
//! | detected | `service.name=reaction-metrics-exporter`, `service.version` (ours), `host.name`, `service.instance.id` = the host name, else the machine id (only when nothing above names the instance), `telemetry.sdk.*` |

use std::collections::BTreeMap;

use opentelemetry::KeyValue;
use opentelemetry_sdk::resource::{ResourceDetector, TelemetryResourceDetector};
use opentelemetry_sdk::Resource;

use super::env::{self, Env, PairError};
use crate::config::Otlp;
use crate::defaults;
use crate::telemetry::VERSION;

/// What the host is called, from the system (`None` in tests that pin it).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Host {
    /// `/proc/sys/kernel/hostname`, else `/etc/hostname`.
    pub(crate) name: Option<String>,
    /// `/etc/machine-id`.
    pub(crate) machine_id: Option<String>,
}

impl Host {
    /// Read from the system.
    pub(crate) fn detect() -> Host {
        let read = |paths: &[&str]| {
            paths
                .iter()
                .filter_map(|p| std::fs::read_to_string(p).ok())
                .map(|s| s.trim().to_string())
                .find(|s| !s.is_empty())
        };
        Host {
            name: read(&["/proc/sys/kernel/hostname", "/etc/hostname"]),
            machine_id: read(&["/etc/machine-id"]),
        }
    }
}

/// The attributes, resolved as the module documentation says, sorted by key; and the
/// warnings for the log (an `OTEL_RESOURCE_ATTRIBUTES` that was discarded).
pub(crate) fn attributes(
    cfg: &Otlp,
    env: Env<'_>,
    host: &Host,
) -> (BTreeMap<String, String>, Vec<String>) {
    let mut warnings = Vec::new();
    let mut attrs = BTreeMap::new();
    let set = |attrs: &mut BTreeMap<String, String>, k: &str, v: &str| {
        attrs.insert(k.to_string(), v.to_string());
    };
    // Lowest first: each source overwrites the ones below it.
    for kv in TelemetryResourceDetector.detect().iter() {
        set(&mut attrs, kv.0.as_str(), &kv.1.as_str());
    }
    set(&mut attrs, "service.name", defaults::SERVICE_NAME);
    set(&mut attrs, "service.version", VERSION);
    if let Some(h) = &host.name {
        set(&mut attrs, "host.name", h);
    }
    let detected_instance = host.name.clone().or_else(|| host.machine_id.clone());

    if let Some((name, v)) = env::first(env, &["OTEL_RESOURCE_ATTRIBUTES"]) {
        match resource_attributes(&v) {
            Ok(pairs) => {
                for (k, v) in pairs {
                    set(&mut attrs, &k, &v);
                }
            }
            Err(e) => warnings.push(format!(
                "{name}: {e}: the whole variable is ignored (as the specification says)"
            )),
        }
    }
    if let Some((_, v)) = env::first(env, &["OTEL_SERVICE_NAME"]) {
        set(&mut attrs, "service.name", v.trim());
    }
    for (k, v) in &cfg.resource {
        set(&mut attrs, k, v);
    }
    if let Some(v) = &cfg.service_name {
        set(&mut attrs, "service.name", v);
    }
    if let Some(v) = &cfg.instance_id {
        set(&mut attrs, "service.instance.id", v);
    }
    if !attrs.contains_key("service.instance.id") {
        if let Some(id) = detected_instance {
            set(&mut attrs, "service.instance.id", &id);
        }
    }
    (attrs, warnings)
}

/// `OTEL_RESOURCE_ATTRIBUTES`: "The `,` and `=` characters in keys and values MUST be
/// percent encoded"; any error discards the whole value.
fn resource_attributes(v: &str) -> Result<Vec<(String, String)>, PairError> {
    env::pairs(v)
        .into_iter()
        .enumerate()
        .map(|(i, pair)| {
            let (k, v) = pair?;
            let decode = |s: &str| env::percent_decode(s).ok_or(PairError::Encoding(i + 1));
            Ok((decode(k)?, decode(v)?))
        })
        .collect()
}

/// The SDK resource of these attributes.
pub(crate) fn build(attrs: &BTreeMap<String, String>) -> Resource {
    Resource::builder_empty()
        .with_attributes(
            attrs
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
        )
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::otlp::settings::tests::env;

    fn host() -> Host {
        Host {
            name: Some("web-1".into()),
            machine_id: Some("0123abcd".into()),
        }
    }

    fn get(cfg: &Otlp, vars: &[(&str, &str)], key: &str) -> Option<String> {
        attributes(cfg, &env(vars), &host()).0.get(key).cloned()
    }

    /// The precedence table of the module documentation, pair by pair, for the two
    /// attributes that identify a writer.
    #[test]
    fn service_name_precedence() {
        let cfg = Otlp {
            service_name: Some("from-config".into()),
            ..Otlp::default()
        };
        let svc = ("OTEL_SERVICE_NAME", "from-service-var");
        let attrs = ("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs");
        let none = Otlp::default();
        let name = |cfg: &Otlp, vars: &[(&str, &str)]| get(cfg, vars, "service.name").unwrap();
        assert_eq!(name(&none, &[]), "reaction-metrics-exporter");
        assert_eq!(name(&none, &[attrs]), "from-attrs");
        assert_eq!(name(&none, &[svc]), "from-service-var");
        // Regression: the SDK builder let OTEL_RESOURCE_ATTRIBUTES win here.
        assert_eq!(name(&none, &[attrs, svc]), "from-service-var");
        assert_eq!(name(&cfg, &[attrs, svc]), "from-config");
        let in_resource = Otlp {
            resource: BTreeMap::from([("service.name".into(), "from-resource-key".into())]),
            ..Otlp::default()
        };
        assert_eq!(name(&in_resource, &[attrs, svc]), "from-resource-key");
        assert_eq!(
            name(
                &Otlp {
                    service_name: Some("from-config".into()),
                    ..in_resource
                },
                &[]
            ),
            "from-config"
        );
    }

    #[test]
    fn instance_id_precedence() {
        let attrs = ("OTEL_RESOURCE_ATTRIBUTES", "service.instance.id=from-attrs");
        let cfg = Otlp {
            instance_id: Some("from-config".into()),
            ..Otlp::default()
        };
        let id = |cfg: &Otlp, vars: &[(&str, &str)]| get(cfg, vars, "service.instance.id");
        // Regression (issue 9): the host name overrode OTEL_RESOURCE_ATTRIBUTES.
        assert_eq!(
            id(&Otlp::default(), &[attrs]).as_deref(),
            Some("from-attrs")
        );
        assert_eq!(id(&cfg, &[attrs]).as_deref(), Some("from-config"));
        assert_eq!(id(&Otlp::default(), &[]).as_deref(), Some("web-1"));
        // The machine id only when there is no host name.
        let no_name = Host {
            name: None,
            ..host()
        };
        let (a, _) = attributes(&Otlp::default(), &env(&[]), &no_name);
        assert_eq!(a["service.instance.id"], "0123abcd");
        assert!(!a.contains_key("host.name"));
        let (a, _) = attributes(&Otlp::default(), &env(&[]), &Host::default());
        assert!(!a.contains_key("service.instance.id"));
    }

    #[test]
    fn resource_attributes_are_decoded_and_a_bad_value_is_dropped_whole() {
        let (a, w) = attributes(
            &Otlp::default(),
            &env(&[(
                "OTEL_RESOURCE_ATTRIBUTES",
                " deployment.environment = prod , team=sec%2Cops, k%3Dx=a%3Db ",
            )]),
            &host(),
        );
        assert!(w.is_empty());
        assert_eq!(a["deployment.environment"], "prod");
        assert_eq!(a["team"], "sec,ops");
        assert_eq!(a["k=x"], "a=b");
        for bad in ["team=sec,broken", "a=%zz,team=sec", "a=%aé", "=x,team=sec"] {
            let (a, w) = attributes(
                &Otlp::default(),
                &env(&[("OTEL_RESOURCE_ATTRIBUTES", bad)]),
                &host(),
            );
            assert_eq!(w.len(), 1, "{bad}: reported");
            assert!(
                !a.contains_key("team") && !a.contains_key("a"),
                "{bad}: {a:?}"
            );
        }
    }

    #[test]
    fn detected_defaults_and_config_attributes() {
        let cfg = Otlp {
            resource: BTreeMap::from([
                ("deployment.environment".into(), "cfg".into()),
                ("host.name".into(), "public-name".into()),
            ]),
            ..Otlp::default()
        };
        let (a, _) = attributes(
            &cfg,
            &env(&[("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=env,x=1")]),
            &host(),
        );
        assert_eq!(a["deployment.environment"], "cfg");
        assert_eq!(a["x"], "1");
        assert_eq!(a["host.name"], "public-name");
        assert_eq!(a["service.version"], VERSION);
        assert_eq!(a["telemetry.sdk.language"], "rust");
        let r = build(&a);
        assert_eq!(
            r.get(&opentelemetry::Key::from_static_str("service.name"))
                .map(|v| v.to_string())
                .as_deref(),
            Some("reaction-metrics-exporter")
        );
    }
}
