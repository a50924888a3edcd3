//! Every instrument, created in one place from the metric table ([`Metric::ALL`]), so the
//! registry test is one comparison. Counters are recorded by the pipeline; observable
//! instruments read what their [`Kind`] says: the self-monitoring's counts ([`Internal`]),
//! [`GaugeState`] (filled by the reaction status refresh) or `/proc/self`.

use std::sync::{Arc, Mutex, PoisonError};

use opentelemetry::metrics::{AsyncInstrument, Counter, Meter};
use opentelemetry::KeyValue;

use super::Provider;
use super::{observed, packed};
use crate::internal::{Counter as InternalCounter, Internal};
use crate::metric::{Kind, Metric, ObservedF64, ObservedU64};

/// What reaction says about itself, as last observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReactionStatus {
    /// reaction's version, `N/A` when unknown.
    pub(crate) version: String,
    /// Whether the last `reaction show` succeeded.
    pub(crate) up: bool,
}

impl Default for ReactionStatus {
    fn default() -> Self {
        ReactionStatus {
            version: "N/A".into(),
            up: false,
        }
    }
}

/// Values the observable gauges report at each collection.
#[derive(Debug, Default)]
pub(crate) struct GaugeState {
    /// Labelled pending executions (from the last `reaction show`).
    pub(crate) pending: Mutex<Vec<(Vec<KeyValue>, u64)>>,
    pub(crate) reaction: Mutex<ReactionStatus>,
}

impl GaugeState {
    /// Report what `observed` reads, noting each series for this collection (see
    /// `telemetry::observed`: the SDK also records it into the other readers).
    fn observe_u64(&self, metric: Metric, observed: ObservedU64, o: &dyn AsyncInstrument<u64>) {
        match observed {
            ObservedU64::PendingActions => {
                let pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
                for (attrs, n) in pending.iter() {
                    o.observe(*n, attrs);
                    observed::note(metric, attrs);
                }
            }
            ObservedU64::ReactionStatus => {
                let s = self
                    .reaction
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                let attrs = [KeyValue::new("version", s.version)];
                o.observe(u64::from(s.up), &attrs);
                observed::note(metric, &attrs);
            }
        }
    }
}

/// Report what `observed` reads.
fn observe_f64(internal: &Internal, observed: ObservedF64, o: &dyn AsyncInstrument<f64>) {
    let value = match observed {
        ObservedF64::LastEvent => internal.last_line_time(),
        ObservedF64::CpuTime => process::cpu_seconds(),
        ObservedF64::ResidentMemory => process::resident_bytes(),
        ObservedF64::OpenFds => process::open_fds(),
    };
    if let Some(v) = value {
        o.observe(v, &[]);
    }
}

/// Report the running totals of an internal counter.
fn observe_internal(internal: &Internal, counter: InternalCounter, o: &dyn AsyncInstrument<u64>) {
    internal.observe(counter, &mut |total, attrs| {
        let attrs: Vec<KeyValue> = attrs
            .iter()
            .map(|(k, v)| KeyValue::new(*k, v.to_string()))
            .collect();
        o.observe(total, &attrs);
    });
}

/// The instruments: a counter per [`Kind::Counter`] metric, and the registrations of the
/// observable ones.
pub struct Instruments {
    /// Indexed by `Metric as usize` (its place in [`Metric::ALL`]); `None` for observables.
    counters: Vec<Option<Counter<u64>>>,
    // Observable instruments stay registered as long as their handles live.
    _observables: Vec<Box<dyn std::any::Any + Send + Sync>>,
}

impl Instruments {
    /// The instruments of `provider`'s metrics (see [`provider_of`]) on `meter`.
    pub(crate) fn new(
        meter: &Meter,
        provider: Provider,
        gauges: Arc<GaugeState>,
        internal: Arc<Internal>,
    ) -> Instruments {
        let mut counters = Vec::with_capacity(Metric::ALL.len());
        let mut observables: Vec<Box<dyn std::any::Any + Send + Sync>> = Vec::new();
        for &metric in Metric::ALL {
            let f = metric.spec();
            debug_assert_eq!(
                metric as usize,
                counters.len(),
                "Metric::ALL is in enum order"
            );
            let (g, i) = (gauges.clone(), internal.clone());
            // An observable instrument of this metric, made by `$builder`, reading `$read`.
            macro_rules! observable {
                ($builder:ident, $read:expr) => {
                    observables.push(Box::new(
                        meter
                            .$builder(f.otel)
                            .with_unit(f.unit)
                            .with_description(f.description)
                            .with_callback($read)
                            .build(),
                    ))
                };
            }
            let mut counter = None;
            if provider_of(f.kind) != provider {
                counters.push(counter);
                continue;
            }
            match f.kind {
                Kind::Counter => {
                    counter = Some(
                        meter
                            .u64_counter(f.otel)
                            .with_unit(f.unit)
                            .with_description(f.description)
                            .build(),
                    )
                }
                Kind::ObservableCounter(c) => {
                    observable!(u64_observable_counter, move |o| observe_internal(&i, c, o))
                }
                Kind::ObservableGauge(observed) => {
                    observable!(u64_observable_gauge, move |o| g
                        .observe_u64(metric, observed, o))
                }
                Kind::ObservableGaugeF64(observed) => {
                    observable!(f64_observable_gauge, move |o| observe_f64(&i, observed, o))
                }
                Kind::ObservableCounterF64(observed) => {
                    observable!(f64_observable_counter, move |o| observe_f64(
                        &i, observed, o
                    ))
                }
            }
            counters.push(counter);
        }
        Instruments {
            counters,
            _observables: observables,
        }
    }

    /// Add `n` to a counter, its attributes packed (see `telemetry::packed`).
    #[inline]
    pub fn add(&self, metric: Metric, n: u64, attrs: &[KeyValue]) {
        match &self.counters[metric as usize] {
            Some(c) => match packed::pack(attrs) {
                Some(one) => c.add(n, std::slice::from_ref(&one)),
                None => c.add(n, attrs),
            },
            None => debug_assert!(false, "{} is not a counter", metric.spec().otel),
        }
    }
}

/// Which provider holds the instruments of a kind: the exporter's own counters (running
/// totals, observed) are in [`Provider::Own`], never rebuilt (see `telemetry::readers`).
pub(crate) fn provider_of(kind: Kind) -> Provider {
    match kind {
        Kind::ObservableCounter(_) | Kind::ObservableCounterF64(_) => Provider::Own,
        Kind::Counter | Kind::ObservableGauge(_) | Kind::ObservableGaugeF64(_) => Provider::Events,
    }
}

/// The exporter's own process, read from `/proc/self`.
pub(crate) mod process {
    pub(crate) fn cpu_seconds() -> Option<f64> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name, which is in parentheses and may contain spaces.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split(' ').collect();
        // utime and stime are fields 14 and 15 of the whole line: 12 and 13 here.
        let ticks: f64 =
            fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        (hz > 0).then(|| ticks / hz as f64)
    }

    pub(crate) fn resident_bytes() -> Option<f64> {
        let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
        let pages: f64 = statm.split_whitespace().nth(1)?.parse().ok()?;
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        (page > 0).then_some(pages * page as f64)
    }

    pub(crate) fn open_fds() -> Option<f64> {
        Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as f64)
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn reads_proc() {
            assert!(super::cpu_seconds().unwrap() >= 0.0);
            assert!(super::resident_bytes().unwrap() > 1e5);
            assert!(super::open_fds().unwrap() >= 3.0);
        }
    }
}
