//! The exporter's log: `tracing` events on stderr. Logging starts before the configuration
//! is read (reading it can say something), at INFO; [`Logging::set_level`] then applies
//! `loglevel` through a reload handle, which a configuration reload (SIGHUP) uses again.
//! `RUST_LOG`, when set, decides instead of `loglevel`.

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{fmt, reload, EnvFilter, Registry};

use crate::config::LogLevel;

/// The installed logger, and what changes its level.
pub struct Logging {
    filter: reload::Handle<EnvFilter, Registry>,
    /// `RUST_LOG` was set: it wins over `loglevel`.
    from_env: bool,
}

impl Logging {
    /// Install the logger for the whole process: `RUST_LOG` if set, else INFO.
    pub fn init() -> Logging {
        let (filter, from_env) = match EnvFilter::try_from_env("RUST_LOG") {
            Ok(f) => (f, true),
            Err(_) => (filter(LogLevel::Info), false),
        };
        let (filter, handle) = reload::Layer::new(filter);
        // Fails only if a logger is installed already (tests): that one keeps logging.
        let _ = tracing_subscriber::registry()
            .with(filter)
            .with(
                fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
            )
            .try_init();
        Logging {
            filter: handle,
            from_env,
        }
    }

    /// Log at `level` from now on (`loglevel`), unless `RUST_LOG` decides: then nothing
    /// changes and it returns false.
    pub fn set_level(&self, level: LogLevel) -> bool {
        if self.from_env {
            return false;
        }
        if let Err(e) = self.filter.reload(filter(level)) {
            tracing::warn!("cannot change the log level to {}: {e}", level.as_str());
        }
        true
    }
}

/// The filter of `level`: the exporter's events at that level, its libraries' only from
/// WARN (their INFO and DEBUG lines are about connections, not about reaction).
fn filter(level: LogLevel) -> EnvFilter {
    EnvFilter::new(format!(
        "{},h2=warn,hyper=warn,tower=warn,opentelemetry=warn",
        level.directive()
    ))
}
