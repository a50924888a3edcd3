//! A configuration reload (SIGHUP): what of a newly loaded configuration can be put in force
//! while the exporter runs, and what keeps its running value until a restart.
//!
//! Which keys change is pure over two configurations ([`plan`]); the `Reloader` applies
//! the plan (log level, labeller, `/metrics`' self-monitoring switch, web configuration,
//! the events provider, the OTLP push's settings) and `internal::events` logs and counts it.
//!
//! Reloaded, because each is read afresh for every event, scrape or connection, so that an
//! event is labelled wholly by the configuration before or wholly by the one after:
//! - `loglevel` (unless `RUST_LOG` is set: it decides, as at start);
//! - `metrics.all`, `metrics.for` (transforms), `metrics.export.*`,
//!   `metrics.max_label_value_length`, `reaction.hold`: the labeller's, swapped between two
//!   batches of lines;
//! - `listen.web_config`: the web configuration of the next connection.
//!
//! Reloaded by replacing what holds them, with nothing lost or counted twice:
//! - `metrics.cardinality_limit`: a new events meter provider is built with it and put in
//!   force between two batches (the OpenTelemetry SDK sets an instrument's limit when it
//!   makes it); each reader's next collection takes what the old one still holds (see
//!   `telemetry::readers`), so nothing is lost or counted twice. The carry-over of
//!   undelivered scrapes, `/metrics/otel`'s totals and the OTLP buffer take the new limit;
//!   series past a lowered limit stay, new ones go to the overflow series;
//! - `otlp.*` (with the `OTEL_*` variables, read again) but the two below: the endpoint,
//!   protocol, headers, compression, TLS files, timeout, interval and request size from
//!   the next request on, what is queued included; the resource from the next collection.
//!
//! Kept until a restart (each logged, naming the key), because something built at start
//! holds it and rebuilding it would lose or double counts:
//! - `listen.*` but `web_config`: the bound socket and the server's limits;
//! - `reaction.logs.*`: the source and its saved position;
//! - `reaction.config`, `.socket`, `.binary`, `.timeout`: the reaction client;
//! - `metrics.attribution_memory`: the size of memories already filled, and of the state
//!   file's;
//! - `metrics.otel_endpoint.*`: the second reader, built with the meter provider;
//! - `otlp` turning the push on or off (its reader is built with the providers, its
//!   tasks with the exporter), and `otlp.temporality` (a reader's temporality is fixed);
//! - `metrics.cardinality_limit` while the OTLP push has cumulative temporality: a new
//!   reader would restart every counter it sends at zero;
//! - `state.*`: the state file the running exporter checkpoints to.

use std::sync::{Arc, Mutex, PoisonError};

use opentelemetry_sdk::metrics::Temporality;

use crate::config::{Config, Listen, Metrics, Reaction, StateConfig};
use crate::ingest::Processed;
use crate::internal::events::{ConfigReloadFailed, ConfigReloaded, ReloadKeyKept};
use crate::internal::Internal;
use crate::label::Labeller;
use crate::logging::Logging;
use crate::notify::Notifier;
use crate::scrape::Scraper;
use crate::telemetry::cumulative::Cumulative;
use crate::telemetry::otlp::{self, OtlpPush};
use crate::telemetry::Telemetry;
use crate::web::WebHandle;

/// How `main` loads the configuration again: the same file and command-line overrides as
/// at start, with the same checks as `test-config`.
pub type Loader = Arc<dyn Fn() -> anyhow::Result<Config> + Send + Sync>;

/// What a reload needs from `main`: the loader, the file's name (for the log), the logger
/// and the SIGHUP stream (installed before the exporter is built, so that a SIGHUP during
/// start-up is handled once it runs instead of killing it).
pub struct Reloads {
    /// Loads the configuration again.
    pub load: Loader,
    /// The configuration file, as the log names it.
    pub file: String,
    /// The logger whose level `loglevel` sets.
    pub logging: Logging,
    /// SIGHUP.
    pub signal: tokio::signal::unix::Signal,
}

/// Resolves at each SIGHUP; installed from now on.
pub fn sighup() -> std::io::Result<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
}

/// What a reload changes in the running exporter.
pub(crate) struct Reloader {
    pub(crate) running: Config,
    pub(crate) labeller: Arc<Mutex<Labeller>>,
    /// Taken while the labeller changes: between two batches of lines.
    pub(crate) processed: Processed,
    pub(crate) scraper: Option<Arc<Scraper>>,
    pub(crate) web: WebHandle,
    pub(crate) internal: Arc<Internal>,
    pub(crate) notifier: Arc<Notifier>,
    /// The providers, rebuilt by a change of the cardinality limit.
    pub(crate) telemetry: Arc<Telemetry>,
    /// `/metrics/otel`'s totals, when on.
    pub(crate) cumulative: Option<Arc<Cumulative>>,
    /// The OTLP push, when on.
    pub(crate) push: Option<OtlpPush>,
}

impl Reloader {
    /// Reload at each SIGHUP, one at a time, until aborted.
    pub(crate) async fn run(mut self, mut reloads: Reloads) {
        while reloads.signal.recv().await.is_some() {
            tracing::info!(
                file = reloads.file,
                "SIGHUP received: reloading the configuration"
            );
            self.notifier.reloading("reloading the configuration");
            let status = self.reload(&reloads).await;
            self.notifier.ready(status);
        }
    }

    /// One reload; returns the service status to show after it.
    async fn reload(&mut self, reloads: &Reloads) -> &'static str {
        // Reading files: off the async threads (scrapes go on meanwhile).
        let load = reloads.load.clone();
        let loaded = match tokio::task::spawn_blocking(move || load()).await {
            Ok(r) => r,
            Err(e) => Err(anyhow::anyhow!("loading the configuration failed: {e}")),
        };
        let loaded = match loaded {
            Ok(c) => c,
            Err(e) => {
                self.internal.emit(ConfigReloadFailed {
                    error: &format!("{e:#}"),
                });
                return "configuration reload refused (see the log): running on the previous one";
            }
        };
        let mut plan = plan(&self.running, loaded);
        // Prepared before anything is applied: a transport can still fail (a TLS file).
        let otlp = match self.otlp(&mut plan) {
            Ok(o) => o,
            Err(e) => {
                self.internal.emit(ConfigReloadFailed {
                    error: &format!("key `otlp`: {e}"),
                });
                return "configuration reload refused (see the log): running on the previous one";
            }
        };
        if plan.changed("listen.web_config") {
            // The last step that can still fail (its file may have changed since the check
            // at load), and the first to apply anything: nothing else is applied if it does.
            if let Err(e) = self.web.reload(plan.config.listen.web_config.as_deref()) {
                self.internal.emit(ConfigReloadFailed {
                    error: &format!("key `listen.web_config`: {e}"),
                });
                return "configuration reload refused (see the log): running on the previous one";
            }
        }
        for key in &plan.kept {
            let why = plan.why.iter().find(|(k, _)| k == key).map(|(_, w)| *w);
            self.internal.emit(ReloadKeyKept { key, why });
        }
        if plan.changed("metrics.cardinality_limit") {
            self.set_cardinality_limit(plan.config.metrics.cardinality_limit)
                .await;
        }
        if let (Some(push), Some(prepared)) = (&self.push, otlp) {
            push.apply(prepared);
        }
        if plan.changed("otlp") {
            let resource = resource(&plan.config);
            if let Some(push) = &self.push {
                push.set_resource(&resource);
            }
            if let Some(cumulative) = &self.cumulative {
                cumulative.set_resource(&resource);
            }
        }
        if labels_change(&plan) {
            let config = Arc::new(plan.config.clone());
            // Between two batches: a batch is labelled wholly before or wholly after (but
            // one that waits for reaction's configuration in its middle, without the lock:
            // each of its lines is still labelled wholly by one configuration).
            let _between = self.processed.lock().await;
            self.labeller
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .set_config(config, &self.internal);
        }
        if let Some(scraper) = &self.scraper {
            scraper.set_internals(plan.config.metrics.export.internals());
        }
        self.internal.emit(ConfigReloaded {
            file: &reloads.file,
            changed: &plan.changed,
        });
        // Last, so that the line above is written at the level it was sent at.
        if plan.changed("loglevel") && !reloads.logging.set_level(plan.config.loglevel) {
            tracing::info!(
                "loglevel changed to {}, but RUST_LOG is set and decides the log level",
                plan.config.loglevel.as_str()
            );
        }
        self.running = plan.config;
        "configuration reloaded"
    }

    /// What of `otlp` can change: the push's new settings, prepared; what cannot is kept
    /// in `plan` (turning the push on or off, its temporality), and so is a new cardinality
    /// limit while the push has cumulative temporality.
    fn otlp(&self, plan: &mut Plan) -> Result<Option<otlp::Prepared>, otlp::OtlpError> {
        let running = self.push.as_ref().map(OtlpPush::temporality);
        if running == Some(Temporality::Cumulative) {
            plan.keep(
                "metrics.cardinality_limit",
                "the OTLP push has cumulative temporality (a new reader would restart its \
                 counters at zero)",
                |c| &mut c.metrics.cardinality_limit,
                &self.running,
            );
        }
        if !plan.changed("otlp") {
            return Ok(None);
        }
        let env = |k: &str| std::env::var(k).ok();
        let loaded = otlp::settings::resolve(&plan.config.otlp, &env)?;
        for w in &loaded.warnings {
            tracing::warn!("OTLP: {w}");
        }
        let (push, mut settings) = match (&self.push, loaded.settings) {
            (Some(push), Some(settings)) => (push, settings),
            // Off and staying off: only the resource (`/metrics/otel`) changes.
            (None, None) => return Ok(None),
            _ => {
                plan.keep(
                    "otlp",
                    "it turns the OTLP push on or off, which needs a restart",
                    |c| &mut c.otlp,
                    &self.running,
                );
                return Ok(None);
            }
        };
        if settings.temporality != push.temporality() {
            plan.keep(
                "otlp.temporality",
                "a reader's temporality is set when it is built",
                |c| &mut c.otlp.temporality,
                &self.running,
            );
            settings.temporality = push.temporality();
            if plan.config.otlp == self.running.otlp {
                // Nothing else changed in it.
                plan.changed.retain(|k| *k != "otlp");
                return Ok(None);
            }
        }
        push.prepare(settings).map(Some)
    }

    /// Put a new events provider with `limit` in force between two batches, and the limit
    /// in every reader's own bounds.
    async fn set_cardinality_limit(&self, limit: usize) {
        // Building allocates the SDK's tables for the limit: off the async threads.
        let telemetry = self.telemetry.clone();
        let rebuilt = match tokio::task::spawn_blocking(move || telemetry.rebuild(limit)).await {
            Ok(r) => r,
            Err(e) => {
                // A panic (a bug): the running provider and limit stay.
                tracing::error!("metrics.cardinality_limit: building the provider failed: {e}");
                return;
            }
        };
        {
            let _between = self.processed.lock().await;
            self.telemetry.put_in_force(rebuilt);
        }
        if let Some(scraper) = &self.scraper {
            scraper.set_limit(limit);
        }
        if let Some(cumulative) = &self.cumulative {
            cumulative.set_limit(limit);
        }
        if let Some(push) = &self.push {
            push.set_limit(limit);
        }
    }
}

/// The resource `config` and the environment give (as at start).
fn resource(config: &Config) -> opentelemetry_sdk::Resource {
    let env = |k: &str| std::env::var(k).ok();
    let (attributes, warnings) =
        otlp::resource::attributes(&config.otlp, &env, &otlp::resource::Host::detect());
    for w in &warnings {
        tracing::warn!("OTLP: {w}");
    }
    otlp::resource::build(&attributes)
}

/// What a reload puts in force.
#[derive(Debug)]
pub(crate) struct Plan {
    /// The configuration to run with: the loaded one, with every key that cannot change
    /// while running set back to its running value.
    pub(crate) config: Config,
    /// Reloadable keys whose value changed, in the order of the file's sections.
    pub(crate) changed: Vec<&'static str>,
    /// Keys whose value changed in the file but cannot change while running: kept.
    pub(crate) kept: Vec<&'static str>,
    /// Why a key is kept, when it is not that it never changes while running.
    pub(crate) why: Vec<(&'static str, &'static str)>,
}

impl Plan {
    /// Keep the running value of `key` (the part of a configuration `field` gives) because
    /// of `why`, if it changed: it is no longer among the changed keys.
    pub(crate) fn keep<T: PartialEq + Clone>(
        &mut self,
        key: &'static str,
        why: &'static str,
        field: impl Fn(&mut Config) -> &mut T,
        running: &Config,
    ) {
        let before = field(&mut running.clone()).clone();
        let now = field(&mut self.config);
        if *now == before {
            return;
        }
        *now = before;
        self.changed.retain(|k| *k != key);
        self.kept.push(key);
        self.why.push((key, why));
    }

    /// Whether `key` (as listed in `changed`) changed.
    pub(crate) fn changed(&self, key: &str) -> bool {
        self.changed.contains(&key)
    }
}

/// Compare the running configuration with a newly loaded one (already checked as `start`
/// and `test-config` check it).
pub(crate) fn plan(running: &Config, loaded: Config) -> Plan {
    let mut config = loaded;
    let mut changed = Vec::new();
    let mut kept = Vec::new();
    // Every field, named: a new key does not compile until it is sorted here.
    let Config {
        loglevel: _,
        listen:
            Listen {
                enabled: _,
                address: _,
                port: _,
                web_config: _,
                max_connections: _,
                header_timeout: _,
                response_timeout: _,
            },
        reaction:
            Reaction {
                config: _,
                logs: _,
                socket: _,
                hold: _,
                binary: _,
                timeout: _,
            },
        metrics:
            Metrics {
                all: _,
                for_: _,
                export: _,
                cardinality_limit: _,
                attribution_memory: _,
                max_label_value_length: _,
                otel_endpoint: _,
            },
        otlp: _,
        state: StateConfig {
            directory: _,
            recall: _,
        },
    } = running;
    macro_rules! reload {
        ($key:literal, $($field:ident).+) => {
            if config.$($field).+ != running.$($field).+ {
                changed.push($key);
            }
        };
    }
    macro_rules! keep {
        ($key:literal, $($field:ident).+) => {
            if config.$($field).+ != running.$($field).+ {
                kept.push($key);
                config.$($field).+ = running.$($field).+.clone();
            }
        };
    }
    reload!("loglevel", loglevel);
    keep!("listen.enabled", listen.enabled);
    keep!("listen.address", listen.address);
    keep!("listen.port", listen.port);
    reload!("listen.web_config", listen.web_config);
    keep!("listen.max_connections", listen.max_connections);
    keep!("listen.header_timeout", listen.header_timeout);
    keep!("listen.response_timeout", listen.response_timeout);
    keep!("reaction.config", reaction.config);
    keep!("reaction.logs", reaction.logs);
    keep!("reaction.socket", reaction.socket);
    reload!("reaction.hold", reaction.hold);
    keep!("reaction.binary", reaction.binary);
    keep!("reaction.timeout", reaction.timeout);
    reload!("metrics.all", metrics.all);
    reload!("metrics.for", metrics.for_);
    reload!("metrics.export", metrics.export);
    reload!("metrics.cardinality_limit", metrics.cardinality_limit);
    keep!("metrics.attribution_memory", metrics.attribution_memory);
    reload!(
        "metrics.max_label_value_length",
        metrics.max_label_value_length
    );
    keep!("metrics.otel_endpoint", metrics.otel_endpoint);
    reload!("otlp", otlp);
    keep!("state", state);
    Plan {
        config,
        changed,
        kept,
        why: Vec::new(),
    }
}

/// The labeller's part of a plan: whether it must take the new configuration.
pub(crate) fn labels_change(plan: &Plan) -> bool {
    [
        "reaction.hold",
        "metrics.all",
        "metrics.for",
        "metrics.export",
        "metrics.max_label_value_length",
    ]
    .iter()
    .any(|k| plan.changed(k))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigFormat, FamilyExport, LogLevel, LogSource, Transform};

    fn yaml(text: &str) -> Config {
        Config::parse(text, ConfigFormat::Yaml, "test").unwrap()
    }

    #[test]
    fn the_same_configuration_changes_nothing() {
        let c = yaml("metrics:\n  all:\n    ip: '{{ ip }}'\n");
        let p = plan(&c, c.clone());
        assert!(p.changed.is_empty() && p.kept.is_empty(), "{p:?}");
        assert_eq!(p.config, c);
    }

    #[test]
    fn reloadable_keys_are_taken() {
        let running = Config::default();
        let loaded = yaml(
            "loglevel: DEBUG\nlisten:\n  web_config: /etc/w.yml\nreaction:\n  hold: 7\n\
             metrics:\n  all:\n    ip: '{{ ip[:3] }}'\n  for:\n    s:\n      f:\n        u: false\n  \
             export:\n    matches: false\n    internals: true\n  max_label_value_length: 64\n",
        );
        let p = plan(&running, loaded.clone());
        assert_eq!(
            p.changed,
            [
                "loglevel",
                "listen.web_config",
                "reaction.hold",
                "metrics.all",
                "metrics.for",
                "metrics.export",
                "metrics.max_label_value_length"
            ]
        );
        assert!(p.kept.is_empty(), "{:?}", p.kept);
        assert_eq!(p.config, loaded);
        assert_eq!(p.config.loglevel, LogLevel::Debug);
        assert_eq!(p.config.metrics.export.matches, FamilyExport::Off);
        assert_eq!(
            p.config.transform("s", "f", "u"),
            &Transform::Drop,
            "the per-filter transform is the new one"
        );
        assert!(labels_change(&p));
    }

    #[test]
    fn keys_that_need_a_restart_keep_their_running_value() {
        let running = yaml("listen:\n  port: 9100\nreaction:\n  logs:\n    file: /var/log/r.log\n");
        let loaded = yaml(
            "listen:\n  address: 0.0.0.0\n  port: 9200\n  max_connections: 8\n\
             reaction:\n  timeout: 1\n  logs:\n    systemd: reaction.service\n\
             metrics:\n  cardinality_limit: 10\n  attribution_memory: 5\n  \
             otel_endpoint:\n    patterns: [ip]\n  all:\n    ip: false\n\
             otlp:\n  endpoint: http://c:4317\nstate:\n  recall: 60\n",
        );
        let p = plan(&running, loaded);
        assert_eq!(
            p.kept,
            [
                "listen.address",
                "listen.port",
                "listen.max_connections",
                "reaction.logs",
                "reaction.timeout",
                "metrics.attribution_memory",
                "metrics.otel_endpoint",
                "state"
            ]
        );
        assert_eq!(
            p.changed,
            ["metrics.all", "metrics.cardinality_limit", "otlp"],
            "whether the OTLP part can change is decided with the running push"
        );
        // Everything kept is the running value; the reloadable changes are in.
        let mut expected = running.clone();
        expected.metrics.all = p.config.metrics.all.clone();
        expected.metrics.cardinality_limit = 10;
        expected.otlp = p.config.otlp.clone();
        assert_eq!(p.config, expected);
        assert_eq!(p.config.listen.port, 9100);
        assert_eq!(
            p.config.reaction.logs.source,
            LogSource::File("/var/log/r.log".into())
        );
        assert!(labels_change(&p));
    }

    #[test]
    fn a_log_level_or_web_change_alone_leaves_the_labels() {
        let p = plan(&Config::default(), yaml("loglevel: ERROR\n"));
        assert_eq!(p.changed, ["loglevel"]);
        assert!(!labels_change(&p));
    }
}
