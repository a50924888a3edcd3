use anyhow::Context as _;
use clap::Parser;

use reaction_metrics_exporter::app::{bind, shutdown_signal, App};
use reaction_metrics_exporter::cli::{Cli, Command};
use reaction_metrics_exporter::config::{Config, ConfigFormat};
use reaction_metrics_exporter::logging::Logging;
use reaction_metrics_exporter::notify::Notifier;
use reaction_metrics_exporter::reload::{sighup, Reloads};

/// jemalloc, with a background thread that gives memory freed for a second back to the
/// system (issue 13, measured with benches/e2e.rs against glibc, glibc with `malloc_trim`
/// after each page, and mimalloc: benches/README.md). A scrape allocates about as much as
/// the series it shows and frees it once the page is sent: glibc kept it (RSS 1.4-1.6x its
/// pre-scrape value 5 s later, 0.9-1.2x with a trim after each page); jemalloc with these
/// settings is back under the pre-scrape value within the 5 s, holds less before the
/// scrape and peaks lower during it.
#[cfg(target_os = "linux")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read at its start (`_rjem_`: tikv-jemalloc-sys prefixes jemalloc's
/// symbols): purge dirty pages after 1 s (default 10 s) straight to the system (no "muzzy"
/// stage), from a background thread, so that an idle exporter gives back without waiting
/// for its next allocation.
#[cfg(target_os = "linux")]
#[export_name = "_rjem_malloc_conf"]
static JEMALLOC_CONF: JemallocConf =
    JemallocConf(c"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0".as_ptr());

/// A C string pointer jemalloc reads (`const char *malloc_conf`).
#[cfg(target_os = "linux")]
#[repr(transparent)]
struct JemallocConf(*const std::ffi::c_char);

// SAFETY: it points to a constant string, never written.
#[cfg(target_os = "linux")]
unsafe impl Sync for JemallocConf {}

fn load(cli: &Cli) -> anyhow::Result<Config> {
    let mut config = match &cli.config {
        Some(path) => Config::load(path)?,
        None => {
            tracing::warn!("no configuration file given (-c FILE): running on the defaults");
            Config::default()
        }
    };
    if let Some(web) = &cli.web_config_file {
        config.listen.web_config = Some(web.clone());
        config.check_web_config("--web.config.file")?;
    }
    reaction_metrics_exporter::app::check(&config)?;
    Ok(config)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("{}", reaction_metrics_exporter::telemetry::VERSION);
            Ok(())
        }
        Command::Defaults => {
            let f = cli.format.unwrap_or(ConfigFormat::Yaml);
            print!("{}", Config::default().to_text(f));
            Ok(())
        }
        Command::TestConfig => {
            // At INFO whatever `loglevel` says: its one INFO line is the command's answer.
            let _logging = Logging::init();
            let config = load(&cli)?;
            for w in reaction_metrics_exporter::app::warnings(&config) {
                tracing::warn!("{w}");
            }
            let f = cli.format.unwrap_or(ConfigFormat::Json);
            tracing::info!("valid configuration; printing it with defaults added");
            print!("{}", config.to_text(f));
            Ok(())
        }
        Command::Start => {
            let logging = Logging::init();
            let config = load(&cli)?;
            let file = cli
                .config
                .as_ref()
                .map_or("(none: the defaults)".to_string(), |p| {
                    p.display().to_string()
                });
            logging.set_level(config.loglevel);
            // Before the runtime's threads start: it takes NOTIFY_SOCKET and the watchdog
            // variables out of the environment.
            let notifier = Notifier::from_env();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            runtime.block_on(async move {
                let shutdown = shutdown_signal().context("cannot handle SIGTERM/SIGINT")?;
                // Before READY=1 (and before anything is built): from now on SIGHUP reloads
                // instead of killing the process.
                let signal = sighup().context("cannot handle SIGHUP")?;
                let reloads = Reloads {
                    load: std::sync::Arc::new(move || load(&cli)),
                    file,
                    logging,
                    signal,
                };
                let listener = bind(&config).await?;
                let app = App::build(config).await?;
                app.run(listener, notifier, shutdown, reloads).await
            })
        }
    }
}
