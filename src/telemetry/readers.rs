//! A reader as its consumer (`/metrics`, `/metrics/otel`, the OTLP push) sees it: one
//! handle over a reader of each meter provider, that a reload can move to a new provider
//! without losing or doubling a count.
//!
//! Why two providers: a reload that changes `metrics.cardinality_limit` needs a new
//! provider (opentelemetry_sdk 0.33 sets a stream's cardinality limit when the instrument
//! is made, `ValueMap::new`; a reloaded resource is stamped by the consumers instead). A new
//! provider's readers start empty, which is right for the event counters (the old readers
//! hold the rest, collected once more below) but not for the exporter's own counters: they
//! are observable counters of running totals, and a new delta reader reports a total it
//! sees for the first time whole, so every consumer would count them twice. So the own
//! counters live in a provider of their own, built once (`Provider::Own`), and the event
//! counters and gauges in one a reload replaces (`Provider::Events`).
//!
//! A replaced reader is retired, not dropped: its consumer's next collection takes what it
//! still holds (its sums: the gauges come from the current provider) and then drops it,
//! with its provider once no consumer needs it.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{
    InstrumentKind, ManualReader, Pipeline, SdkMeterProvider, Temporality,
};

use super::observed::{self, Observed};

/// The two meter providers (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Provider {
    /// The exporter's own counters (observable, running totals): built once.
    Own,
    /// The event counters and every gauge: replaced by a reload of the cardinality limit.
    Events,
}

/// A consumer's reader: cheap to clone, every clone the same reader.
#[derive(Debug, Clone)]
pub struct SharedReader(Arc<Slots>);

#[derive(Debug)]
struct Slots {
    temporality: Temporality,
    own: Arc<ManualReader>,
    events: Mutex<Events>,
}

#[derive(Debug)]
struct Events {
    current: Arc<ManualReader>,
    /// Readers of replaced providers not collected since, each with its provider (dropping
    /// the last handle of a provider shuts it down, and its readers with it).
    retired: Vec<(Arc<ManualReader>, SdkMeterProvider)>,
}

/// What one provider's reader gave a collection.
pub struct Collection {
    pub(crate) rm: ResourceMetrics,
    /// The gauge series its own callbacks observed (see `telemetry::observed`).
    pub(crate) observed: Observed,
    /// From a replaced provider: only its sums count (its gauges are not current).
    pub(crate) retired: bool,
}

fn manual(temporality: Temporality) -> Arc<ManualReader> {
    Arc::new(
        ManualReader::builder()
            .with_temporality(temporality)
            .build(),
    )
}

impl SharedReader {
    /// A new reader of `temporality`.
    pub(crate) fn new(temporality: Temporality) -> SharedReader {
        SharedReader(Arc::new(Slots {
            temporality,
            own: manual(temporality),
            events: Mutex::new(Events {
                current: manual(temporality),
                retired: Vec::new(),
            }),
        }))
    }

    /// A new reader of delta temporality.
    pub(crate) fn delta() -> SharedReader {
        SharedReader::new(Temporality::Delta)
    }

    fn events(&self) -> std::sync::MutexGuard<'_, Events> {
        // Collections and replacements complete their changes before anything can panic.
        self.0.events.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What to register with `provider` when it is built.
    pub(crate) fn handle(&self, provider: Provider) -> Handle {
        match provider {
            Provider::Own => Handle(self.0.own.clone()),
            Provider::Events => Handle(self.events().current.clone()),
        }
    }

    /// A new reader for a new events provider, to be put in force by [`Self::replace`].
    pub(crate) fn next(&self) -> Handle {
        Handle(manual(self.0.temporality))
    }

    /// Put `next` (registered with `provider`) in force; the current reader is retired
    /// with `old`, the provider it belongs to.
    pub(crate) fn replace(&self, next: Handle, old: SdkMeterProvider) {
        let mut events = self.events();
        let previous = std::mem::replace(&mut events.current, next.0);
        events.retired.push((previous, old));
    }

    /// Collect every reader: the retired ones (then dropped), the own counters' and the
    /// current one, in this order. A reader that fails is logged by the caller through the
    /// error returned beside what the others gave.
    pub fn collect(&self) -> (Vec<Collection>, Option<OTelSdkError>) {
        // Held throughout: a replacement waits for a collection under way, so that none
        // sees a reader retired and current at once.
        let mut events = self.events();
        let mut out = Vec::with_capacity(2 + events.retired.len());
        let mut error = None;
        let mut one = |reader: &ManualReader, retired: bool| {
            let mut rm = ResourceMetrics::default();
            match observed::collect(reader, &mut rm) {
                Ok(observed) => out.push(Collection {
                    rm,
                    observed,
                    retired,
                }),
                Err(e) => error = Some(e),
            }
        };
        for (reader, _provider) in std::mem::take(&mut events.retired) {
            one(&reader, true);
        }
        one(&self.0.own, false);
        one(&events.current, false);
        (out, error)
    }

    /// Readers retired and not collected yet (tests).
    #[cfg(test)]
    pub(crate) fn retired(&self) -> usize {
        self.events().retired.len()
    }
}

/// One reader as a provider holds it.
#[derive(Debug, Clone)]
pub(crate) struct Handle(Arc<ManualReader>);

impl MetricReader for Handle {
    fn register_pipeline(&self, pipeline: std::sync::Weak<Pipeline>) {
        self.0.register_pipeline(pipeline)
    }
    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.0.collect(rm)
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }
    fn temporality(&self, kind: InstrumentKind) -> Temporality {
        self.0.temporality(kind)
    }
}
