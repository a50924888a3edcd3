//! The behaviour tests, in one test binary: they link the exporter's library, axum, tonic and
//! the OpenTelemetry SDK once instead of once per topic (ripgrep's layout). One module per
//! topic; `cargo test --test integration <topic>::` runs one of them.
//!
//! Shared helpers: `common` (the real binary on a temporary directory, the reaction CLI
//! fixture, scrapes), `counts` (tallies of expected counts), `journal` (real journal files),
//! `tools` (external programs and free ports), `grafana` (dashboard JSON), `workload` (the
//! dashboard end-to-end workload), `receivers` (OTLP receivers and Collector stand-ins).

mod common;
mod counts;
mod grafana;
mod journal;
mod receivers;
mod tools;
mod workload;

mod actions;
mod alerts;
mod cli;
mod collector_configs;
mod container;
mod continuity;
mod dashboards;
mod dashboards_e2e;
mod dashboards_otel_e2e;
mod deb;
mod demo;
mod file_source;
mod fuzz;
mod hostile;
mod http_limits;
mod journald;
mod label_limits;
mod layers;
mod logging;
mod metrics_endpoint;
mod no_loss;
mod notify;
mod otel_endpoint;
mod otlp;
mod otlp_direct;
mod otlp_faults;
mod otlp_http;
mod otlp_only;
mod packaging;
mod reaction_cli;
mod readme;
mod registry;
mod reload;
mod scrape_faults;
mod secure_endpoint;
