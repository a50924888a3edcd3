//! One `SdkMeterProvider` holding every instrument, and the readers that take from it:
//! a delta pull reader for `/metrics` (legacy "since the last scrape" semantics), the
//! OTLP push's reader when it is on (`otlp`), and the reader of `/metrics/otel` when it is
//! on ([`cumulative`], rendered by [`render_otel`]).

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry::InstrumentationScope;
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{
    data::ResourceMetrics, InstrumentKind, ManualReader, Pipeline, SdkMeterProvider, Stream,
    Temporality,
};
use opentelemetry_sdk::Resource;

use crate::internal::Internal;

pub mod collect;
pub mod cumulative;
pub(crate) mod instruments;
pub(crate) mod observed;
pub(crate) mod otlp;
pub mod render;
pub mod render_otel;

pub(crate) use instruments::GaugeState;
pub use instruments::Instruments;

/// The instrumentation scope of every instrument.
pub(crate) const SCOPE: &str = "reaction-metrics-exporter";
/// The exporter's version, in `reaction_exporter_build_info` and the OTLP resource.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A `ManualReader` that can be shared: the provider owns one handle, the scraper another.
#[derive(Debug, Clone)]
pub struct SharedReader(pub(crate) Arc<ManualReader>);

impl SharedReader {
    /// A new manual reader of delta temporality.
    pub(crate) fn delta() -> SharedReader {
        SharedReader(Arc::new(
            ManualReader::builder()
                .with_temporality(Temporality::Delta)
                .build(),
        ))
    }
}

impl SharedReader {
    /// Collect into `rm`, with the gauge series this collection itself observed (the only
    /// ones of the state gauges to keep: `observed`).
    pub(crate) fn collect_own(
        &self,
        rm: &mut ResourceMetrics,
    ) -> Result<observed::Observed, opentelemetry_sdk::error::OTelSdkError> {
        observed::collect(&self.0, rm)
    }
}

impl MetricReader for SharedReader {
    fn register_pipeline(&self, pipeline: std::sync::Weak<Pipeline>) {
        self.0.register_pipeline(pipeline)
    }
    fn collect(&self, rm: &mut ResourceMetrics) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0.collect(rm)
    }
    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }
    fn temporality(&self, kind: InstrumentKind) -> Temporality {
        self.0.temporality(kind)
    }
}

/// The provider, its instruments and the `/metrics` reader.
pub struct Telemetry {
    pub(crate) provider: SdkMeterProvider,
    /// The counters the pipeline records into.
    pub instruments: Arc<Instruments>,
    pub(crate) gauges: Arc<GaugeState>,
    /// The delta reader `/metrics` collects from; none when `/metrics` is off (a reader
    /// nobody collects would keep every series it ever saw, up to the cardinality limit).
    pub pull_reader: Option<SharedReader>,
}

impl Telemetry {
    /// Build the provider with the delta pull reader if `pull` and, when given, the OTLP
    /// reader. `cardinality_limit` applies to every instrument, per reader.
    #[cfg(test)]
    pub(crate) fn new(
        cardinality_limit: usize,
        resource: Resource,
        pull: bool,
        otlp: Option<SharedReader>,
        internal: Arc<Internal>,
    ) -> Telemetry {
        Telemetry::new_with(cardinality_limit, resource, pull, otlp, None, internal)
    }

    /// As [`Telemetry::new`], with the reader of `/metrics/otel` too when given.
    pub(crate) fn new_with(
        cardinality_limit: usize,
        resource: Resource,
        pull: bool,
        otlp: Option<SharedReader>,
        cumulative: Option<SharedReader>,
        internal: Arc<Internal>,
    ) -> Telemetry {
        let pull_reader = pull.then(|| {
            SharedReader(Arc::new(
                ManualReader::builder()
                    .with_temporality(Temporality::Delta)
                    .build(),
            ))
        });
        let mut builder = SdkMeterProvider::builder().with_resource(resource);
        if let Some(reader) = &pull_reader {
            builder = builder.with_reader(reader.clone());
        }
        for reader in otlp.into_iter().chain(cumulative) {
            builder = builder.with_reader(reader);
        }
        let provider = builder
            .with_view(move |_: &opentelemetry_sdk::metrics::Instrument| {
                Stream::builder()
                    .with_cardinality_limit(cardinality_limit)
                    .build()
                    .ok()
            })
            .build();
        let meter = meter(&provider);
        let gauges = Arc::new(GaugeState::default());
        let instruments = Arc::new(Instruments::new(&meter, gauges.clone(), internal));
        Telemetry {
            provider,
            instruments,
            gauges,
            pull_reader,
        }
    }
}

/// The exporter's meter on a provider.
pub(crate) fn meter(provider: &SdkMeterProvider) -> Meter {
    provider.meter_with_scope(
        InstrumentationScope::builder(SCOPE)
            .with_version(VERSION)
            .build(),
    )
}

#[cfg(test)]
mod tests;
