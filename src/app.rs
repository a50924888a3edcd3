//! The `start` command: wire source → pipeline → instruments → readers → HTTP, and stop in
//! order on SIGTERM/SIGINT (source first, so every line read is counted before exit).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::{mpsc, watch};

use crate::config::{Config, LogSource, StartAt};
use crate::internal::Internal;
use crate::label::Labeller;
use crate::pipeline::Pipeline;
use crate::reaction::{ClientConfig, ReactionClient};
use crate::scrape::Scraper;
use crate::source::file::{run as run_file, FileSourceConfig, FileTailer};
use crate::status::StatusRefresher;
use crate::telemetry::{otlp, Telemetry};

/// Everything `start` runs, built from a configuration.
pub struct App {
    pub config: Arc<Config>,
    pub telemetry: Telemetry,
    pub internal: Arc<Internal>,
    pub scraper: Arc<Scraper>,
    pipeline: Pipeline,
    /// With OTLP on: how often reaction's status and pending actions are refreshed for it
    /// (scrapes refresh them too).
    status_refresh: Option<(Arc<StatusRefresher>, Duration)>,
}

impl App {
    pub async fn build(config: Config) -> anyhow::Result<App> {
        let config = Arc::new(config);
        let env = |k: &str| std::env::var(k).ok();
        let resource = otlp::resource(&config.otlp, &env);
        let otlp_settings = otlp::Settings::resolve(&config.otlp, &env)?;
        let refresh_every = otlp_settings
            .as_ref()
            .map(|s| s.interval.unwrap_or(Duration::from_secs(60)));
        let otlp = match otlp_settings {
            Some(settings) => {
                tracing::info!(
                    endpoint = settings.endpoint,
                    temporality = ?settings.temporality,
                    "pushing metrics over OTLP gRPC"
                );
                Some(otlp::OtlpExporter::new(
                    settings,
                    config.metrics.cardinality_limit,
                )?)
            }
            None => None,
        };
        let telemetry = Telemetry::new(
            config.metrics.cardinality_limit,
            resource,
            otlp.as_ref().map(|e| e.reader()),
        );
        let internal = Arc::new(Internal::new(
            telemetry.instruments.clone(),
            telemetry.gauges.clone(),
        ));
        if let Some(e) = &otlp {
            e.attach(internal.clone());
        }
        let client = Arc::new(ReactionClient::new(ClientConfig {
            binary: config.reaction.binary.clone(),
            config: config.reaction.config.clone(),
            socket: config.reaction.socket.clone(),
            timeout: Duration::from_secs_f64(config.reaction.timeout),
        }));
        let labeller = Arc::new(Mutex::new(Labeller::new(config.clone())));
        let status = Arc::new(StatusRefresher::new(
            client.clone(),
            labeller.clone(),
            telemetry.gauges.clone(),
            internal.clone(),
        ));
        let scraper = Arc::new(Scraper::new(
            telemetry.pull_reader.clone(),
            status.clone(),
            internal.clone(),
            config.metrics.export.internals(),
        ));
        let mut pipeline = Pipeline::new(
            labeller,
            telemetry.instruments.clone(),
            internal.clone(),
            client,
            status.clone(),
        );
        if !pipeline.reload_reaction_config().await {
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
            pipeline,
            status_refresh: refresh_every.map(|every| (status, every)),
        })
    }

    /// Serve on `listener` until `shutdown` resolves.
    pub async fn run(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let App {
            config,
            telemetry,
            internal,
            scraper,
            pipeline,
            status_refresh,
        } = self;
        let refresher = status_refresh.map(|(status, every)| {
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    status.refresh().await;
                }
            })
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let (tx, rx) = mpsc::channel(64);
        let source = match &config.reaction.logs.source {
            LogSource::File(path) => {
                tracing::info!(path = %path.display(), "reading reaction's log file");
                let tailer = FileTailer::new(
                    FileSourceConfig {
                        path: path.clone(),
                        from_beginning: config.reaction.logs.start_at == StartAt::Beginning,
                        poll_interval: Duration::from_millis(200),
                        max_line_bytes: config.reaction.logs.max_line_length,
                    },
                    internal.clone(),
                );
                tokio::spawn(run_file(tailer, tx, stop_rx))
            }
            LogSource::Systemd(unit) => {
                anyhow::bail!(
                    "reaction.logs.systemd ({unit}): the journald source is not available in \
                     this version; use `reaction.logs.file`"
                );
            }
        };
        let pipeline = tokio::spawn(pipeline.run(rx));

        let addr = listener.local_addr().ok();
        tracing::info!(
            "serving http://{}/metrics",
            addr.map_or("?".into(), |a| a.to_string())
        );
        let (http_stop_tx, http_stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(crate::server::serve(listener, scraper.clone(), async {
            let _ = http_stop_rx.await;
        }));

        shutdown.await;
        tracing::info!("stopping: reading what the source has, then exiting");
        let _ = stop_tx.send(true);
        let _ = source.await;
        let _ = pipeline.await;
        let _ = http_stop_tx.send(());
        if let Some(r) = refresher {
            r.abort();
        }
        match tokio::time::timeout(Duration::from_secs(5), server).await {
            Ok(Ok(Err(e))) => tracing::warn!("http server: {e}"),
            Err(_) => tracing::warn!("http server did not stop within 5 s"),
            _ => {}
        }
        // Flushes the OTLP reader's last deltas (bounded); the pull reader has nothing to do.
        let provider = telemetry.provider.clone();
        let wait = Duration::from_secs(15);
        match tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(wait)).await {
            Ok(Err(e)) => tracing::warn!("final export: {e}"),
            Err(e) => tracing::warn!("final export: {e}"),
            Ok(Ok(())) => {}
        }
        Ok(())
    }
}

/// Resolves at the first SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}

/// Bind the configured address.
pub async fn bind(config: &Config) -> anyhow::Result<tokio::net::TcpListener> {
    let addr = format!("{}:{}", config.listen.address, config.listen.port);
    tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}
