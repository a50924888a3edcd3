//! reaction-metrics-exporter: reaction's logs to OpenTelemetry instruments, shown on a
//! legacy-compatible `/metrics` endpoint.
//!
//! Data flows one way: [`source`] → [`parse`] → [`label`] → [`telemetry`] instruments →
//! readers ([`scrape`] for `/metrics`, served by [`server`]). [`metric`] is the table of
//! every instrument; [`ingest`] is where a line becomes a metric; [`app`] wires it all;
//! [`internal`] is the self-monitoring.

#![warn(unreachable_pub, missing_docs)]

pub mod app;
pub(crate) mod bounded;
pub mod cli;
pub mod config;
pub(crate) mod defaults;
pub mod ingest;
pub mod internal;
pub(crate) mod label;
pub mod logging;
pub mod metric;
pub mod parse;
pub(crate) mod reaction;
pub mod scrape;
pub(crate) mod server;
pub mod source;
pub(crate) mod state;
pub mod status;
pub mod telemetry;
pub(crate) mod template;
