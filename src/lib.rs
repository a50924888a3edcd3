//! reaction-metrics-exporter: reaction's logs to OpenTelemetry instruments, shown on a
//! legacy-compatible `/metrics` endpoint.
//!
//! Data flows one way: [`source`] → [`parse`] → [`label`] → [`telemetry`] instruments →
//! readers ([`scrape`] for `/metrics`, served by [`server`]). [`metric`] is the table of
//! every instrument; [`pipeline`] is where a line becomes a metric; [`app`] wires it all;
//! [`internal`] is the self-monitoring.

pub mod app;
pub mod bounded;
pub mod cli;
pub mod config;
pub mod defaults;
pub mod internal;
pub mod label;
pub mod metric;
pub mod parse;
pub mod pipeline;
pub mod reaction;
pub mod scrape;
pub mod server;
pub mod source;
pub mod state;
pub mod status;
pub mod telemetry;
pub mod template;
