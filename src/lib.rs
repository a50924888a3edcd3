//! reaction-metrics-exporter: reaction's logs to OpenTelemetry instruments, shown on a
//! legacy-compatible `/metrics` endpoint and pushed over OTLP.
//!
//! Data flows one way: [`source`] (file tailer, journald) → [`parse`] → `label` (names,
//! pattern labels, transforms, attribution, hold) → [`telemetry`] instruments → readers
//! ([`scrape`] for `/metrics` and [`otel_endpoint`] for `/metrics/otel`, served by `server`;
//! `telemetry::otlp` for the push).
//! [`ingest`] is where a batch of lines becomes metrics; [`app`] wires it all, [`cli`] and
//! [`logging`] serve `main`; [`notify`] tells systemd (readiness, status, watchdog).
//!
//! Beside the flow: [`metric`], the table of every instrument (names, kinds, legacy shape);
//! [`internal`], the self-monitoring (every event about the exporter, counted and logged in
//! one place); [`status`], what reaction says about itself; `state`, the state file;
//! `reaction`, its CLI and configuration; [`config`], the exporter's configuration, with
//! `defaults` and `template` below it.
//!
//! Layers, bottom up (a module imports only from lower ones; `tests/layers.rs` fails on a
//! cycle): `defaults`, `fault`, `memory`, `template`, `bounded`, [`notify`], [`parse`], `reaction` → [`source`],
//! [`config`] → [`internal`] → [`metric`] → [`telemetry`] → `label` → [`status`] →
//! [`ingest`], `state` → [`scrape`], [`otel_endpoint`], `push_checkpoint` (OTLP-only
//! continuity) → `server` → [`app`]; [`cli`] and [`logging`] need only [`config`];
//! [`fuzz`] (the fuzz targets and their harness) sits beside [`app`].

#![warn(unreachable_pub, missing_docs)]

pub mod app;
pub(crate) mod bounded;
pub mod cli;
pub mod config;
pub(crate) mod defaults;
pub(crate) mod fault;
pub mod fuzz;
pub mod ingest;
pub mod internal;
pub(crate) mod label;
pub mod logging;
pub(crate) mod memory;
pub mod metric;
pub mod notify;
pub mod otel_endpoint;
pub mod parse;
pub(crate) mod push_checkpoint;
pub(crate) mod reaction;
pub mod reload;
pub mod scrape;
pub(crate) mod server;
pub mod source;
pub(crate) mod state;
pub mod status;
pub mod telemetry;
pub(crate) mod template;
pub(crate) mod web;
pub(crate) mod web_config;
