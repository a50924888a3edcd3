use anyhow::Context as _;
use clap::Parser;

use reaction_metrics_exporter::app::{bind, shutdown_signal, App};
use reaction_metrics_exporter::cli::{Cli, Command};
use reaction_metrics_exporter::config::{Config, ConfigFormat};
use reaction_metrics_exporter::logging::Logging;
use reaction_metrics_exporter::notify::Notifier;
use reaction_metrics_exporter::reload::{sighup, Reloads};

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
