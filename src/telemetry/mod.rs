//! The instruments, in two `SdkMeterProvider`s (the exporter's own counters, built once;
//! the event counters and the gauges, rebuilt by a reload of the cardinality limit: see
//! [`readers`]), and the readers that take from them: a delta pull reader
//! for `/metrics` (legacy "since the last scrape" semantics), the OTLP push's reader when
//! it is on (`otlp`), and the reader of `/metrics/otel` when it is on ([`cumulative`],
//! rendered by [`render_otel`]). Each reader is one [`SharedReader`] over both providers.

use std::sync::{Arc, Mutex, PoisonError};

use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry::InstrumentationScope;
use opentelemetry_sdk::metrics::{SdkMeterProvider, Stream};
use opentelemetry_sdk::Resource;

use crate::internal::Internal;
use crate::metric::Metric;

pub mod collect;
pub mod cumulative;
pub(crate) mod instruments;
pub(crate) mod observed;
pub(crate) mod otlp;
pub(crate) mod packed;
pub mod readers;
pub mod render;
pub mod render_otel;

pub(crate) use instruments::GaugeState;
pub use instruments::Instruments;
pub(crate) use readers::Provider;
pub use readers::SharedReader;

/// The instrumentation scope of every instrument.
pub(crate) const SCOPE: &str = "reaction-metrics-exporter";
/// The exporter's version, in `reaction_exporter_build_info` and the OTLP resource.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The instruments the pipeline records into now: a reload that rebuilds the events
/// provider replaces them (between two batches).
pub(crate) type CurrentInstruments = Arc<Mutex<Arc<Instruments>>>;

/// The providers, their instruments and the `/metrics` reader (see [`readers`] for why
/// there are two providers).
pub struct Telemetry {
    /// The exporter's own counters: built once.
    own: SdkMeterProvider,
    /// Keeps the own counters' callbacks registered.
    _own_instruments: Instruments,
    /// The event counters and the gauges: replaced by [`Telemetry::put_in_force`].
    events: Mutex<SdkMeterProvider>,
    instruments: CurrentInstruments,
    pub(crate) gauges: Arc<GaugeState>,
    /// The delta reader `/metrics` collects from; none when `/metrics` is off (a reader
    /// nobody collects would keep every series it ever saw, up to the cardinality limit).
    pub pull_reader: Option<SharedReader>,
    /// Every reader (pull, OTLP, `/metrics/otel`), for a rebuild.
    readers: Vec<SharedReader>,
    /// The providers' resource (a reload of it is stamped by the consumers instead).
    resource: Resource,
    internal: Arc<Internal>,
}

/// A new events provider and its instruments, built and not in force yet.
pub(crate) struct Rebuilt {
    provider: SdkMeterProvider,
    instruments: Arc<Instruments>,
    handles: Vec<(SharedReader, readers::Handle)>,
}

impl Telemetry {
    /// Build the providers with the delta pull reader if `pull` and, when given, the OTLP
    /// reader. `cardinality_limit` is the event counters' and pending actions' limit, per
    /// reader (see [`series_limit`]).
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
        let pull_reader = pull.then(SharedReader::delta);
        let readers: Vec<SharedReader> = (pull_reader.iter().cloned())
            .chain(otlp)
            .chain(cumulative)
            .collect();
        let gauges = Arc::new(GaugeState::default());
        let handles = |p| readers.iter().map(move |r| r.handle(p));
        let own = provider(cardinality_limit, resource.clone(), handles(Provider::Own));
        let own_instruments = Instruments::new(
            &meter(&own),
            Provider::Own,
            gauges.clone(),
            internal.clone(),
        );
        let events = provider(
            cardinality_limit,
            resource.clone(),
            handles(Provider::Events),
        );
        let instruments = Arc::new(Instruments::new(
            &meter(&events),
            Provider::Events,
            gauges.clone(),
            internal.clone(),
        ));
        Telemetry {
            own,
            _own_instruments: own_instruments,
            events: Mutex::new(events),
            instruments: Arc::new(Mutex::new(instruments)),
            gauges,
            pull_reader,
            readers,
            resource,
            internal,
        }
    }

    /// The instruments the pipeline records into now.
    pub fn instruments(&self) -> Arc<Instruments> {
        current(&self.instruments)
    }

    /// The pipeline's way to the instruments in force.
    pub(crate) fn current_instruments(&self) -> CurrentInstruments {
        self.instruments.clone()
    }

    /// A new events provider with this limit, every reader with a new reader of it:
    /// [`Telemetry::put_in_force`] puts it in force.
    pub(crate) fn rebuild(&self, cardinality_limit: usize) -> Rebuilt {
        let handles: Vec<_> = (self.readers.iter())
            .map(|r| (r.clone(), r.next()))
            .collect();
        let provider = provider(
            cardinality_limit,
            self.resource.clone(),
            handles.iter().map(|(_, h)| h.clone()),
        );
        let instruments = Arc::new(Instruments::new(
            &meter(&provider),
            Provider::Events,
            self.gauges.clone(),
            self.internal.clone(),
        ));
        Rebuilt {
            provider,
            instruments,
            handles,
        }
    }

    /// Record into `rebuilt` from now on; the readers it replaces are retired (their next
    /// collection takes what they hold). Call with the pipeline between two batches, so
    /// that no event is recorded into the old instruments after this.
    pub(crate) fn put_in_force(&self, rebuilt: Rebuilt) {
        let Rebuilt {
            provider,
            instruments,
            handles,
        } = rebuilt;
        let old = std::mem::replace(
            &mut *self.events.lock().unwrap_or_else(PoisonError::into_inner),
            provider,
        );
        for (reader, handle) in handles {
            reader.replace(handle, old.clone());
        }
        *self
            .instruments
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = instruments;
    }

    /// Shut both providers down (blocking): at exit, once every reader was collected.
    pub(crate) fn shutdown(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        let events = self
            .events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let own = self.own.shutdown();
        events.shutdown().and(own)
    }
}

/// The instruments in force in `slot`.
pub(crate) fn current(slot: &CurrentInstruments) -> Arc<Instruments> {
    slot.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

/// The series limit of `metric`'s instrument. Only the event counters and the pending
/// actions have series named by what the logs and reaction hold (an IP, a user): they
/// take `metrics.cardinality_limit`. The others (the exporter's own counters, reaction's
/// status, the process gauges) have a few series named by the exporter's code and by
/// reaction's configuration (a reason, a command, a pattern name), so their limit is
/// `defaults::OWN_CARDINALITY_LIMIT` (or the configured one if lower): the SDK sizes each
/// instrument's table for its limit at once, per reader (opentelemetry_sdk 0.33.1
/// `ValueMap::new`: 2 MiB of control bytes per table at a limit of 1,000,000).
pub(crate) fn series_limit(metric: Metric, cardinality_limit: usize) -> usize {
    use crate::metric::{Kind, ObservedU64};
    match metric.spec().kind {
        Kind::Counter | Kind::ObservableGauge(ObservedU64::PendingActions) => cardinality_limit,
        _ => cardinality_limit.min(crate::defaults::OWN_CARDINALITY_LIMIT),
    }
}

/// A provider with `readers`, every instrument capped at its [`series_limit`].
fn provider(
    cardinality_limit: usize,
    resource: Resource,
    readers: impl Iterator<Item = readers::Handle>,
) -> SdkMeterProvider {
    let mut builder = SdkMeterProvider::builder().with_resource(resource);
    for reader in readers {
        builder = builder.with_reader(reader);
    }
    builder
        .with_view(move |i: &opentelemetry_sdk::metrics::Instrument| {
            let limit = Metric::from_otel_name(i.name())
                .map_or(cardinality_limit, |m| series_limit(m, cardinality_limit));
            Stream::builder().with_cardinality_limit(limit).build().ok()
        })
        .build()
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
