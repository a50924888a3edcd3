//! The `start` command: wire source → pipeline → instruments → readers → HTTP, and stop in
//! order on SIGTERM/SIGINT (source first, so every line read is counted before exit). A
//! core task (source, ingest, HTTP server, OTLP push) that ends before the stop stops the
//! exporter the same way, and `run` then returns an error: the process exits non-zero, and
//! systemd's `Restart=on-failure` restarts it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::{mpsc, watch};

use crate::config::{Config, LogSource, StartAt};
use crate::defaults;
use crate::ingest::Ingest;
use crate::internal::events::{PositionInvalid, StateFileFailed};
use crate::internal::{Counter, Internal};
use crate::label::attribution::SavedMemory;
use crate::label::Labeller;
use crate::notify::{self, Notifier};
use crate::otel_endpoint::OtelEndpoint;
use crate::push_checkpoint::PushCheckpoint;
use crate::reaction::{ClientConfig, ReactionClient};
use crate::reload::{Reloader, Reloads};
use crate::scrape::{Checkpoints, Scraper};
use crate::source::file::{run as run_file, FileSourceConfig, FileTailer};
use crate::source::journald::{run as run_journald, JournaldConfig};
use crate::source::{Position, SourceObserver};
use crate::state::{self, Checkpointer, SourceId};
use crate::status::StatusRefresher;
use crate::telemetry::cumulative::Cumulative;
use crate::telemetry::{otlp, SharedReader, Telemetry};
use crate::web::WebHandle;

/// Everything `start` runs, built from a configuration.
pub struct App {
    pub(crate) config: Arc<Config>,
    /// The meter providers, their instruments and the `/metrics` reader.
    pub telemetry: Arc<Telemetry>,
    /// The self-monitoring (also the sources' observer).
    pub internal: Arc<Internal>,
    /// What answers `/metrics`; none when it is off (`listen.enabled: false`).
    pub scraper: Option<Arc<Scraper>>,
    /// Where the source's batches become metrics.
    pub ingest: Ingest,
    /// Where to resume the source (from the state file, within the recall window).
    pub(crate) resume: Option<Position>,
    pub(crate) checkpoint: Arc<Checkpointer>,
    /// With OTLP on: reaction's status and pending actions are refreshed for it every
    /// interval of the push (scrapes refresh them too).
    status_refresh: Option<(Arc<StatusRefresher>, otlp::OtlpPush)>,
    /// The OTLP push, when on.
    otlp: Option<otlp::OtlpPush>,
    /// The web configuration (TLS, basic auth, headers) in force; `reload` puts another in
    /// force (a reload of the whole configuration calls it).
    pub(crate) web: WebHandle,
    /// `/metrics/otel` and its reader, when on.
    otel_endpoint: Option<(Arc<OtelEndpoint>, Arc<Cumulative>)>,
}

impl App {
    /// Build everything (inside the Tokio runtime): the OTLP exporter if configured, the
    /// instruments, the state to resume from, reaction's configuration (a failure to load
    /// it is logged, and retried when a line needs it).
    pub async fn build(config: Config) -> anyhow::Result<App> {
        let config = Arc::new(config);
        let env = |k: &str| std::env::var(k).ok();
        let internal = Arc::new(Internal::new());
        let (otlp, resource) = otlp_push(&config, &env, &internal)?;
        let serving = config.listen.enabled;
        if !serving && otlp.is_none() {
            anyhow::bail!(
                "listen.enabled is false and OTLP is off: nothing would be exported (set an \
                 OTLP endpoint, or serve /metrics)"
            );
        }
        let web = WebHandle::new(config.listen.web_config.as_deref(), internal.clone())
            .context("listen.web_config")?;
        // Only with the HTTP server on: nothing else reads it.
        let cumulative_reader =
            (serving && config.metrics.otel_endpoint.enabled).then(SharedReader::delta);
        let telemetry = Arc::new(Telemetry::new_with(
            config.metrics.cardinality_limit,
            resource,
            serving,
            otlp.as_ref().map(|o| o.reader()),
            cumulative_reader.clone(),
            internal.clone(),
        ));
        let client = Arc::new(ReactionClient::new(client_config(&config)));
        let labeller = Arc::new(Mutex::new(Labeller::new(config.clone())));
        let status = Arc::new(StatusRefresher::new(
            client.clone(),
            labeller.clone(),
            telemetry.gauges.clone(),
            internal.clone(),
        ));
        let otel_endpoint = cumulative_reader.map(|reader| {
            // The attributes name patterns by their label names (`1ip` is `_1ip`).
            let keep = (config.metrics.otel_endpoint.patterns.iter())
                .map(|p| crate::label::label_name(p))
                .collect();
            let cumulative = Arc::new(Cumulative::new(
                reader,
                keep,
                config.metrics.cardinality_limit,
                internal.clone(),
            ));
            (
                Arc::new(OtelEndpoint::new(cumulative.clone(), status.clone())),
                cumulative,
            )
        });
        let mut ingest = Ingest::new(
            labeller.clone(),
            telemetry.current_instruments(),
            internal.clone(),
            client,
            status.clone(),
        );
        let source_id = source_id(&config, &env);
        let state_dir = config.state.resolve_directory(&env);
        let (resume, restored, memory) = restore(&config, &state_dir, &source_id, &internal);
        // Before any line is read again from `resume`: the memory is the one at `resume`.
        labeller.lock().expect("labeller").restore_memory(&memory);
        // Until the source reads a line, it is at the saved position: a scrape or a stop
        // before that must save this position again, not none (which restarts per start_at).
        ingest
            .processed
            .try_lock()
            .expect("not shared yet")
            .position = resume.clone();
        let checkpoint = Arc::new(Checkpointer::new(state_dir, source_id, internal.clone()));
        let scraper = match (&telemetry.pull_reader, &otlp) {
            (Some(reader), _) => Some(Arc::new(Scraper::new(
                reader.clone(),
                status.clone(),
                internal.clone(),
                config.metrics.export.internals(),
                ingest.processed.clone(),
                restored,
                config.metrics.cardinality_limit,
                Some(Checkpoints {
                    writer: checkpoint.clone(),
                    labeller: labeller.clone(),
                }),
            ))),
            (None, Some(push)) => {
                // OTLP only: the push checkpoints after each delivered request, and the counts
                // a previous run did not deliver are recorded anew (the OTLP reader is the
                // only one: its next export carries them).
                for ((metric, attrs), n) in restored {
                    let attrs: Vec<opentelemetry::KeyValue> = attrs
                        .iter()
                        .map(|(k, v)| opentelemetry::KeyValue::new(k.to_string(), v.to_string()))
                        .collect();
                    telemetry.instruments().add(metric, n, &attrs);
                }
                push.continue_with(Arc::new(PushCheckpoint {
                    processed: ingest.processed.clone(),
                    checkpoint: checkpoint.clone(),
                    labeller: labeller.clone(),
                    memories: Default::default(),
                    recall: config.state.recall,
                }));
                tracing::info!(
                    "/metrics is off (listen.enabled: false): OTLP only, the state file is \
                     saved after each export"
                );
                None
            }
            (None, None) => None, // refused above
        };
        if !ingest.reload_reaction_config().await {
            tracing::warn!(
                "running without reaction's configuration for now: pattern labels are \
                 missing until it can be loaded (retried when a line needs it)"
            );
        }
        Ok(App {
            config,
            telemetry,
            internal,
            scraper,
            ingest,
            resume,
            checkpoint,
            status_refresh: otlp.clone().map(|push| (status, push)),
            otlp,
            web,
            otel_endpoint,
        })
    }

    /// Serve on `listener` (none when `/metrics` is off) until `shutdown` resolves,
    /// telling systemd through `notifier` (readiness, status, watchdog, reloads, stopping),
    /// reloading the configuration at each SIGHUP of `reloads`.
    pub async fn run(
        self,
        listener: Option<tokio::net::TcpListener>,
        notifier: Notifier,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
        reloads: Reloads,
    ) -> anyhow::Result<()> {
        let App {
            config,
            telemetry,
            internal,
            scraper,
            ingest,
            resume,
            checkpoint,
            status_refresh,
            otlp,
            web,
            otel_endpoint,
        } = self;
        let folding = otel_endpoint.as_ref().map(|(_, cumulative)| {
            tokio::spawn(
                cumulative
                    .clone()
                    .fold_every(defaults::OTEL_ENDPOINT_FOLD_INTERVAL),
            )
        });
        let mut pushing = otlp.as_ref().map(otlp::OtlpPush::start);
        let refresher = status_refresh.map(|(status, push)| {
            tokio::spawn(async move {
                loop {
                    status.refresh().await;
                    // The interval in force (a reload may change it).
                    tokio::time::sleep(push.interval()).await;
                }
            })
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let (tx, rx) = mpsc::channel(defaults::BATCH_CHANNEL_DEPTH);
        let logs = &config.reaction.logs;
        let from_beginning = logs.start_at == StartAt::Beginning;
        let reading = match &logs.source {
            LogSource::File(path) => format!("reading {}", path.display()),
            LogSource::Systemd(unit) => format!("reading the journal of {unit}"),
        };
        let source = match &logs.source {
            LogSource::File(path) => {
                tracing::info!(path = %path.display(), "reading reaction's log file");
                let tailer = FileTailer::new(
                    FileSourceConfig {
                        path: path.clone(),
                        from_beginning,
                        poll_interval: defaults::FILE_POLL_INTERVAL,
                        max_line_bytes: logs.max_line_length,
                        resume,
                    },
                    internal.clone(),
                );
                tokio::spawn(run_file(tailer, tx, stop_rx))
            }
            LogSource::Systemd(unit) => {
                let env = |k: &str| std::env::var(k).ok();
                let directory = journal_directory(&config, &env);
                let after_cursor = match resume {
                    Some(Position::Journal { cursor }) => Some(cursor),
                    Some(other) => {
                        internal.emit(PositionInvalid {
                            position: &format!("{other:?}"),
                            fallback: "the configured start",
                        });
                        None
                    }
                    None => None,
                };
                tracing::info!(
                    unit,
                    directory = ?directory,
                    "reading reaction's journal through journalctl"
                );
                let journald = JournaldConfig {
                    unit: unit.clone(),
                    directory,
                    journalctl: logs.journalctl.clone(),
                    from_beginning,
                    after_cursor,
                    max_line_bytes: logs.max_line_length,
                };
                let observer: Arc<dyn SourceObserver> = internal.clone();
                tokio::spawn(run_journald(journald, observer, tx, stop_rx))
            }
        };
        let batches = ingest.processed.clone();
        let labeller = ingest.labeller.clone();
        let ingest = tokio::spawn(ingest.run(rx));
        let reload_web = web.clone();

        let (http_stop_tx, http_stop_rx) = tokio::sync::oneshot::channel::<()>();
        let mut tasks = vec![
            ("source", source.abort_handle()),
            ("ingest", ingest.abort_handle()),
        ];
        let (server, serving) = match (listener, &scraper) {
            (Some(listener), Some(scraper)) => {
                let addr = listener.local_addr().ok();
                // The scheme of the configuration at start (a reload may turn TLS on or off).
                let scheme = if web.tls() { "https" } else { "http" };
                let serving = addr.map_or("?".into(), |a| format!("{scheme}://{a}/metrics"));
                tracing::info!("serving {serving}");
                let limits = crate::web::Limits {
                    max_connections: config.listen.max_connections,
                    header_timeout: Duration::from_secs_f64(config.listen.header_timeout),
                    response_timeout: Duration::from_secs_f64(config.listen.response_timeout),
                };
                let server = tokio::spawn(crate::web::serve(
                    listener,
                    crate::server::router(
                        scraper.clone(),
                        otel_endpoint.as_ref().map(|(endpoint, _)| endpoint.clone()),
                    ),
                    web,
                    limits,
                    internal.clone(),
                    async {
                        let _ = http_stop_rx.await;
                    },
                ));
                tasks.push(("HTTP server", server.abort_handle()));
                (Some(server), format!("serving {serving}"))
            }
            _ => (None, "pushing over OTLP only".to_string()),
        };
        // READY=1 now: the port is bound and served (when /metrics is on), the source and
        // ingest run.
        let notifier = Arc::new(notifier);
        let batches_of_reload = batches.clone();
        let core = notify::Core { tasks, batches };
        let lines = internal.clone();
        let notifying = notify::start(notifier.clone(), core, move || {
            let mut read = 0;
            lines.observe(Counter::LinesRead, &mut |n, _| read += n);
            format!("{reading}, {serving}, {read} lines read")
        });
        let reloading = tokio::spawn(
            Reloader {
                running: (*config).clone(),
                labeller,
                processed: batches_of_reload,
                scraper: scraper.clone(),
                web: reload_web,
                internal: internal.clone(),
                notifier: notifier.clone(),
                telemetry: telemetry.clone(),
                cumulative: otel_endpoint.as_ref().map(|(_, c)| c.clone()),
                push: otlp.clone(),
            }
            .run(reloads),
        );

        // The core tasks run until the stop. One that ends before it (a panic: a bug) stops
        // the exporter, which then exits with an error so that systemd restarts it.
        let (mut source, mut ingest, mut server) = (source, ingest, server);
        // No server (OTLP only): never ends.
        let server_ends = async {
            match &mut server {
                Some(s) => s.await,
                None => std::future::pending().await,
            }
        };
        // No OTLP: never ends.
        let push_ends = async {
            match &mut pushing {
                Some(p) => p.failed().await,
                None => std::future::pending().await,
            }
        };
        let failed: Option<(CoreTask, String)> = tokio::select! {
            _ = shutdown => None,
            r = &mut source => Some((CoreTask::Source, ended(r.map(|()| Ok(()))))),
            r = &mut ingest => Some((CoreTask::Ingest, ended(r.map(|()| Ok(()))))),
            r = server_ends => Some((CoreTask::Server, ended(r.map(|r| r.map_err(|e| e.to_string()))))),
            why = push_ends => Some((CoreTask::Push, why)),
        };
        // A dead push has no final export (its tasks are gone): the last checkpoint stays.
        if matches!(failed, Some((CoreTask::Push, _))) {
            pushing = None;
        }
        // When ingest dies, its channel closes and the source ends too, maybe first: then
        // ingest is the cause. It ends soon after the source (its channel is closed), so
        // waiting for it is bounded.
        let (source_done, mut ingest_done, server_done) = match &failed {
            None => (false, false, false),
            Some((CoreTask::Source, _)) => (true, false, false),
            Some((CoreTask::Ingest, _)) => (false, true, false),
            Some((CoreTask::Server, _)) => (false, false, true),
            Some((CoreTask::Push, _)) => (false, false, false),
        };
        let failed = match failed {
            Some((CoreTask::Source, why)) => {
                ingest_done = true;
                match (&mut ingest).await {
                    Err(e) if e.is_panic() => Some((CoreTask::Ingest, ended(Err(e)))),
                    _ => Some((CoreTask::Source, why)),
                }
            }
            other => other,
        };
        if let Some(n) = notifying {
            n.abort();
        }
        // No reload while stopping (SIGHUP is still caught: it no longer kills).
        reloading.abort();
        match &failed {
            None => {
                notifier.stopping("stopping: reading what the source has, saving the state");
                tracing::info!("stopping: reading what the source has, then exiting");
            }
            Some((task, why)) => {
                notifier.stopping(&format!("failed: the {} task {why}", task.name()));
                tracing::error!(
                    "the {} task {why}: stopping, to exit with an error (a service manager \
                     restarts the exporter)",
                    task.name()
                );
            }
        }
        let _ = stop_tx.send(true);
        if !source_done {
            let _ = source.await;
        }
        if !ingest_done {
            let _ = ingest.await;
        }
        let _ = http_stop_tx.send(());
        if let Some(r) = refresher {
            r.abort();
        }
        if let Some(f) = folding {
            f.abort();
        }
        if let (false, Some(server)) = (server_done, server) {
            match tokio::time::timeout(defaults::HTTP_STOP_WAIT, server).await {
                Ok(Ok(Err(e))) => tracing::warn!("http server: {e}"),
                Err(_) => tracing::warn!(
                    "http server did not stop within {} s",
                    defaults::HTTP_STOP_WAIT.as_secs()
                ),
                _ => {}
            }
        }
        let save_state = failed.as_ref().map(|f| f.0) != Some(CoreTask::Ingest);
        if !save_state {
            // Ingest died inside a batch: part of it may be recorded, and its position is
            // not. The state is not saved: the last checkpoint (of a delivered scrape or
            // OTLP export) stays, from which a restart counts every line once (as after a
            // crash).
            tracing::error!("the state is not saved: a restart continues from the last checkpoint");
        } else if let Some(scraper) = &scraper {
            // Every line read is recorded: save the position with what no scrape delivered.
            let (position, counts, memory) = scraper.final_state().await;
            let n = counts.len();
            let saved = {
                let checkpoint = checkpoint.clone();
                tokio::task::spawn_blocking(move || {
                    checkpoint.save_now(u64::MAX, position, counts, memory)
                })
                .await
                .unwrap_or(false)
            };
            if saved {
                tracing::info!(
                    series = n,
                    file = %state::path(checkpoint.dir()).display(),
                    "saved the position and the counts not yet scraped: a restart within {} s \
                     continues from here",
                    config.state.recall
                );
            }
        }
        // The last OTLP export: every line read is recorded; bounded by its deadline.
        // OTLP only, it then saves the position with what it could not deliver.
        if let Some(p) = pushing {
            p.shutdown(defaults::FINAL_EXPORT_WAIT, save_state).await;
        }
        // Nothing left for the readers to do: both are manual.
        let providers = telemetry.clone();
        match tokio::task::spawn_blocking(move || providers.shutdown()).await {
            Ok(Err(e)) => tracing::debug!("meter provider shutdown: {e}"),
            Err(e) => tracing::warn!("meter provider shutdown: {e}"),
            Ok(Ok(())) => {}
        }
        match failed {
            None => Ok(()),
            Some((task, why)) => Err(anyhow::anyhow!("the {} task {why}", task.name())),
        }
    }
}

/// The tasks the exporter cannot run without.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CoreTask {
    Source,
    Ingest,
    Server,
    /// The OTLP push's collector or sender.
    Push,
}

impl CoreTask {
    fn name(self) -> &'static str {
        match self {
            CoreTask::Source => "source",
            CoreTask::Ingest => "ingest",
            CoreTask::Server => "HTTP server",
            CoreTask::Push => "OTLP push",
        }
    }
}

/// How a core task ended before the stop, in words: its panic's message, its error, or
/// that it returned.
fn ended(result: Result<Result<(), String>, tokio::task::JoinError>) -> String {
    match result {
        Ok(Ok(())) => "ended before the stop".to_owned(),
        Ok(Err(e)) => format!("failed: {e}"),
        Err(e) if e.is_panic() => {
            let panic = e.into_panic();
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".to_owned());
            format!("panicked: {message}")
        }
        Err(e) => format!("was cancelled: {e}"),
    }
}

/// How to reach reaction (`reaction.timeout` is range-checked at load: no panic here).
pub(crate) fn client_config(config: &Config) -> ClientConfig {
    ClientConfig {
        binary: config.reaction.binary.clone(),
        config: config.reaction.config.clone(),
        socket: config.reaction.socket.clone(),
        timeout: Duration::from_secs_f64(config.reaction.timeout),
    }
}

/// The OTLP push if it is on (logged either way it is decided), and the resource.
fn otlp_push(
    config: &Config,
    env: &dyn Fn(&str) -> Option<String>,
    internal: &Arc<Internal>,
) -> anyhow::Result<(Option<otlp::OtlpPush>, opentelemetry_sdk::Resource)> {
    let resolution = otlp::settings::resolve(&config.otlp, env)?;
    let (attributes, resource_warnings) =
        otlp::resource::attributes(&config.otlp, env, &otlp::resource::Host::detect());
    for w in otlp_warnings(&resolution.warnings, &resource_warnings) {
        tracing::warn!("{w}");
    }
    if let Some(off) = &resolution.off {
        tracing::info!("{off}");
    }
    let resource = otlp::resource::build(&attributes);
    let Some(settings) = resolution.settings else {
        return Ok((None, resource));
    };
    let attr = |k: &str| attributes.get(k).map_or("", String::as_str);
    tracing::info!(
        url = settings.url,
        protocol = crate::config::Word::word(settings.protocol),
        temporality = ?settings.temporality,
        compression = crate::config::Word::word(settings.compression),
        interval_seconds = settings.interval.as_secs_f64(),
        service_name = attr("service.name"),
        service_instance_id = attr("service.instance.id"),
        "pushing metrics over OTLP"
    );
    let push = otlp::OtlpPush::new(settings, config.metrics.cardinality_limit, internal.clone())?;
    Ok((Some(push), resource))
}

/// The OTLP settings' warnings as the log says them (a variable that does not parse, TLS
/// files for a plain `http://` endpoint, ...).
fn otlp_warnings<'a>(
    settings: &'a [String],
    resource: &'a [String],
) -> impl Iterator<Item = String> + 'a {
    settings
        .iter()
        .chain(resource)
        .map(|w| format!("OTLP: {w}"))
}

/// What `start` would warn about with this configuration and this environment, for
/// `test-config` to say too (an `otlp.ca` over plain `http://` is accepted, and unused).
/// Nothing when [`check`] refuses the configuration.
pub fn warnings(config: &Config) -> Vec<String> {
    let env = |k: &str| std::env::var(k).ok();
    let Ok(resolution) = otlp::settings::resolve(&config.otlp, &env) else {
        return Vec::new();
    };
    let (_, resource) =
        otlp::resource::attributes(&config.otlp, &env, &otlp::resource::Host::detect());
    otlp_warnings(&resolution.warnings, &resource).collect()
}

/// What `start` refuses beyond the file's own checks: the OTLP settings as the environment
/// completes them, and the TLS files they name (a CA that is not PEM fails only when the
/// push is built). `test-config`, `start` and a reload run it after loading the file.
pub fn check(config: &Config) -> anyhow::Result<()> {
    let env = |k: &str| std::env::var(k).ok();
    let resolution = otlp::settings::resolve(&config.otlp, &env).context("key `otlp`")?;
    if let Some(settings) = resolution.settings {
        otlp::check_tls(&settings).context("key `otlp`")?;
    }
    Ok(())
}

/// What the state file is for: a state saved for another input is refused.
fn source_id(config: &Config, env: &dyn Fn(&str) -> Option<String>) -> SourceId {
    match &config.reaction.logs.source {
        LogSource::File(path) => SourceId::File { path: path.clone() },
        LogSource::Systemd(unit) => SourceId::Journal {
            unit: unit.clone(),
            directory: journal_directory(config, env),
        },
    }
}

/// `reaction.logs.directory`, or `/var/log/journal` in a container (`DOCKER` set).
fn journal_directory(
    config: &Config,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<std::path::PathBuf> {
    config
        .reaction
        .logs
        .directory
        .clone()
        .or_else(|| env("DOCKER").map(|_| defaults::CONTAINER_JOURNAL_DIRECTORY.into()))
}

/// Read the state file: within the recall window, the position to resume from, the counts
/// to show in the first scrape and the attribution memory at that position; otherwise
/// nothing (and say why).
fn restore(
    config: &Config,
    dir: &std::path::Path,
    source: &SourceId,
    internal: &Internal,
) -> (
    Option<Position>,
    std::collections::HashMap<crate::telemetry::collect::SeriesKey, u64>,
    Vec<SavedMemory>,
) {
    let recall = Duration::from_secs(config.state.recall);
    // Where the source starts instead, said in the log.
    let policy = match config.reaction.logs.start_at {
        StartAt::End => "reaction.logs.start_at: end",
        StartAt::Beginning => "reaction.logs.start_at: beginning",
    };
    match state::load(dir, source) {
        Ok(None) => (None, Default::default(), Vec::new()),
        Ok(Some(s)) if s.age() <= recall => {
            let counts: std::collections::HashMap<_, _> = s.series().into_iter().collect();
            tracing::info!(
                saved_seconds_ago = s.age().as_secs(),
                series = counts.len(),
                remembered_filters = s.memory.len(),
                position = ?s.position,
                "continuing from the saved state"
            );
            (s.position, counts, s.memory)
        }
        Ok(Some(s)) => {
            tracing::warn!(
                saved_seconds_ago = s.age().as_secs(),
                recall_seconds = config.state.recall,
                "the saved state is older than state.recall: starting per {policy}, \
                 its {} undelivered series are dropped",
                s.counts.len()
            );
            internal.emit(PositionInvalid {
                position: "the saved state (too old)",
                fallback: policy,
            });
            (None, Default::default(), Vec::new())
        }
        Err(e) => {
            internal.emit(StateFileFailed { error: &e });
            internal.emit(PositionInvalid {
                position: "the saved state (unreadable)",
                fallback: policy,
            });
            (None, Default::default(), Vec::new())
        }
    }
}

/// Resolves at the first SIGTERM or SIGINT. The handlers are installed when this is called
/// (before the exporter is built), so a signal during start-up is not fatal either.
pub fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()> + Send> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}

/// Bind the configured address (a host name, an IPv4 or a bare IPv6 address like `::1`);
/// nothing when `/metrics` is off (`listen.enabled: false`).
pub async fn bind(config: &Config) -> anyhow::Result<Option<tokio::net::TcpListener>> {
    if !config.listen.enabled {
        return Ok(None);
    }
    let (host, port) = (config.listen.address.as_str(), config.listen.port);
    let shown = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    tokio::net::TcpListener::bind((host, port))
        .await
        .map(Some)
        .with_context(|| format!("cannot listen on {shown}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn binds_ipv4_ipv6_and_names() {
        for address in ["127.0.0.1", "::1", "localhost"] {
            let mut config = Config::default();
            config.listen.address = address.into();
            config.listen.port = 0;
            let l = bind(&config)
                .await
                .unwrap_or_else(|e| panic!("{address}: {e:#}"))
                .expect("listen.enabled");
            assert!(l.local_addr().unwrap().ip().is_loopback());
        }
    }
}
