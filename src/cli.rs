//! The command line, compatible with the Python exporter's: a command (`start`, `defaults`,
//! `test-config`, `version`) and `-c/--config FILE` before or after it.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::ConfigFormat;

/// The parsed command line.
#[derive(Debug, Parser)]
#[command(
    name = "reaction-metrics-exporter",
    version,
    about = "Metrics for reaction: a legacy-compatible /metrics endpoint, modelled in OpenTelemetry"
)]
pub struct Cli {
    /// Configuration file (YAML or JSON). Without it, the defaults are used.
    #[arg(short, long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Format of `defaults` (and of `test-config`'s output).
    #[arg(short, long, global = true, value_enum)]
    pub format: Option<ConfigFormat>,
    /// Web configuration file (TLS, basic auth, headers) in the format of Prometheus'
    /// exporter-toolkit; overrides `listen.web_config`.
    #[arg(long = "web.config.file", global = true, value_name = "FILE")]
    pub web_config_file: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand, PartialEq, Eq)]
pub enum Command {
    /// Read reaction's logs, compute metrics and serve them over HTTP.
    Start,
    /// Print the default configuration (YAML unless -f json) and exit.
    Defaults,
    /// Validate the configuration, print it with defaults added (JSON unless -f yaml), exit.
    TestConfig,
    /// Print the exporter's version and exit.
    Version,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_before_or_after_command() {
        let a = Cli::try_parse_from(["x", "-c", "a.yml", "start"]).unwrap();
        let b = Cli::try_parse_from(["x", "start", "--config", "a.yml"]).unwrap();
        assert_eq!(a.config, b.config);
        assert_eq!(a.command, Command::Start);
        let d = Cli::try_parse_from(["x", "-f", "json", "defaults"]).unwrap();
        assert_eq!(d.format, Some(ConfigFormat::Json));
        let d = Cli::try_parse_from(["x", "defaults", "-f", "yaml"]).unwrap();
        assert_eq!(d.format, Some(ConfigFormat::Yaml));
        assert!(Cli::try_parse_from(["x", "frobnicate"]).is_err());
        assert!(Cli::try_parse_from(["x", "test-config", "-c", "c.json"]).is_ok());
        let w = Cli::try_parse_from(["x", "start", "--web.config.file", "web.yml"]).unwrap();
        assert_eq!(w.web_config_file, Some(PathBuf::from("web.yml")));
        let w = Cli::try_parse_from(["x", "--web.config.file=w.yml", "test-config"]).unwrap();
        assert_eq!(w.web_config_file, Some(PathBuf::from("w.yml")));
    }
}
