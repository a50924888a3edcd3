//! Which gauge series a reader's own collection observed.
//!
//! Why: opentelemetry_sdk 0.33 registers each observable instrument's callback in every
//! reader's pipeline (`Pipelines::register_callback`, src/metrics/pipeline.rs), and the
//! instrument's `observe` records into the aggregators of *all* pipelines
//! (`Observable::observe`, src/metrics/instrument.rs). So a collection by one reader (the
//! OTLP push every interval, `/metrics/otel`'s fold every 2 s) leaves its observations in
//! the other readers' gauges, and a series that has vanished since (a pending action now
//! executed, reaction's version as `N/A` before it was known) comes back in their next
//! collection. opentelemetry-go had the same bug (open-telemetry/opentelemetry-go#4741,
//! fixed by registering each pipeline's callbacks on that pipeline's instruments only).
//!
//! Here each collection notes, on its thread, the series its own callbacks observe for the
//! gauges read from [`super::GaugeState`] (the callbacks run inline in `collect`), and the
//! consumers keep only those: [`Observed::keeps`].

use std::cell::RefCell;
use std::collections::HashSet;

use opentelemetry::KeyValue;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::ManualReader;

use super::collect::{attrs, Attrs};
use crate::metric::{Kind, Metric};

thread_local! {
    /// The series noted by the collection running on this thread, if one is.
    static NOTED: RefCell<Option<HashSet<(Metric, Attrs)>>> = const { RefCell::new(None) };
}

/// The gauge series one collection's callbacks observed.
#[derive(Debug, Default)]
pub(crate) struct Observed(HashSet<(Metric, Attrs)>);

impl Observed {
    /// Whether a point of `metric` with `attributes` belongs to this collection: always for
    /// a metric whose series are not read from the gauge state.
    pub(crate) fn keeps<'a>(
        &self,
        metric: Metric,
        attributes: impl Iterator<Item = &'a KeyValue>,
    ) -> bool {
        !is_state_gauge(metric) || self.0.contains(&(metric, attrs(attributes)))
    }

    /// As [`Observed::keeps`], for attributes already as strings, sorted by key.
    pub(crate) fn keeps_attrs(&self, metric: Metric, attributes: &Attrs) -> bool {
        !is_state_gauge(metric) || self.0.contains(&(metric, attributes.clone()))
    }
}

/// Gauges whose series come and go with the gauge state (pending actions, reaction's
/// status): the ones a stale observation would bring back.
pub(crate) fn is_state_gauge(metric: Metric) -> bool {
    matches!(metric.spec().kind, Kind::ObservableGauge(_))
}

/// Called by the callbacks of the state gauges: note a series observed.
pub(crate) fn note(metric: Metric, attributes: &[KeyValue]) {
    NOTED.with(|n| {
        if let Some(set) = n.borrow_mut().as_mut() {
            set.insert((metric, attrs(attributes.iter())));
        }
    });
}

/// Collect `reader` into `rm`, and return what its own callbacks observed.
pub(crate) fn collect(
    reader: &ManualReader,
    rm: &mut ResourceMetrics,
) -> Result<Observed, opentelemetry_sdk::error::OTelSdkError> {
    struct Scope;
    impl Drop for Scope {
        fn drop(&mut self) {
            NOTED.with(|n| n.borrow_mut().take());
        }
    }
    NOTED.with(|n| *n.borrow_mut() = Some(HashSet::new()));
    let scope = Scope;
    let result = reader.collect(rm);
    let noted = NOTED.with(|n| n.borrow_mut().take()).unwrap_or_default();
    drop(scope);
    result.map(|()| Observed(noted))
}
