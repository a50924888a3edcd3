//! Every instrument, created in one place from [`FAMILIES`], so the registry test is one
//! comparison. Counters are recorded by the pipeline; observable gauges read [`GaugeState`]
//! (filled by the reaction status refresh) and `/proc/self`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use opentelemetry::metrics::{Counter, Meter};
use opentelemetry::KeyValue;

use super::families::{id, Kind, FAMILIES};

/// What reaction says about itself, as last observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReactionStatus {
    /// reaction's version, `N/A` when unknown.
    pub version: String,
    /// Whether the last `reaction show` succeeded.
    pub up: bool,
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
pub struct GaugeState {
    /// Labelled pending executions (from the last `reaction show`).
    pub pending: Mutex<Vec<(Vec<KeyValue>, u64)>>,
    pub reaction: Mutex<ReactionStatus>,
    /// Time of the last log line read (f64 seconds since the epoch, as bits; 0 = none yet).
    pub last_event: AtomicU64,
}

impl GaugeState {
    pub fn set_last_event(&self, secs: f64) {
        self.last_event.store(secs.to_bits(), Ordering::Relaxed);
    }
}

/// The instruments. Counters are indexed by family id.
pub struct Instruments {
    counters: Vec<Option<Counter<u64>>>,
    // Observable instruments stay registered as long as their handles live.
    _observables: Vec<Box<dyn std::any::Any + Send + Sync>>,
}

impl Instruments {
    pub fn new(meter: &Meter, gauges: Arc<GaugeState>) -> Instruments {
        let mut counters = Vec::with_capacity(FAMILIES.len());
        let mut observables: Vec<Box<dyn std::any::Any + Send + Sync>> = Vec::new();
        for (i, f) in FAMILIES.iter().enumerate() {
            let mut counter = None;
            match f.kind {
                Kind::Counter => {
                    counter = Some(
                        meter
                            .u64_counter(f.otel)
                            .with_unit(f.unit)
                            .with_description(f.description)
                            .build(),
                    );
                }
                Kind::ObservableGauge => {
                    let g = gauges.clone();
                    let b = meter
                        .u64_observable_gauge(f.otel)
                        .with_unit(f.unit)
                        .with_description(f.description);
                    let inst = match i {
                        id::PENDING => b
                            .with_callback(move |o| {
                                let pending = g.pending.lock().expect("gauge state");
                                for (attrs, n) in pending.iter() {
                                    o.observe(*n, attrs);
                                }
                            })
                            .build(),
                        id::UP => b
                            .with_callback(move |o| {
                                let s = g.reaction.lock().expect("gauge state").clone();
                                o.observe(u64::from(s.up), &[KeyValue::new("version", s.version)]);
                            })
                            .build(),
                        _ => unreachable!("no callback for {}", f.otel),
                    };
                    observables.push(Box::new(inst));
                }
                Kind::ObservableGaugeF64 => {
                    let g = gauges.clone();
                    let b = meter
                        .f64_observable_gauge(f.otel)
                        .with_unit(f.unit)
                        .with_description(f.description);
                    let inst = match i {
                        id::LAST_EVENT => b
                            .with_callback(move |o| {
                                let v = f64::from_bits(g.last_event.load(Ordering::Relaxed));
                                if v > 0.0 {
                                    o.observe(v, &[]);
                                }
                            })
                            .build(),
                        id::RSS => b
                            .with_callback(|o| {
                                if let Some(v) = process::resident_bytes() {
                                    o.observe(v, &[]);
                                }
                            })
                            .build(),
                        id::FDS => b
                            .with_callback(|o| {
                                if let Some(v) = process::open_fds() {
                                    o.observe(v, &[]);
                                }
                            })
                            .build(),
                        _ => unreachable!("no callback for {}", f.otel),
                    };
                    observables.push(Box::new(inst));
                }
                Kind::ObservableCounterF64 => {
                    assert_eq!(i, id::CPU, "no callback for {}", f.otel);
                    let inst = meter
                        .f64_observable_counter(f.otel)
                        .with_unit(f.unit)
                        .with_description(f.description)
                        .with_callback(|o| {
                            if let Some(v) = process::cpu_seconds() {
                                o.observe(v, &[]);
                            }
                        })
                        .build();
                    observables.push(Box::new(inst));
                }
            }
            counters.push(counter);
        }
        Instruments {
            counters,
            _observables: observables,
        }
    }

    /// Add `n` to a counter family.
    #[inline]
    pub fn add(&self, family: usize, n: u64, attrs: &[KeyValue]) {
        if let Some(c) = &self.counters[family] {
            c.add(n, attrs);
        } else {
            debug_assert!(false, "{} is not a counter", FAMILIES[family].otel);
        }
    }
}

/// The exporter's own process, read from `/proc/self`.
pub mod process {
    pub fn cpu_seconds() -> Option<f64> {
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

    pub fn resident_bytes() -> Option<f64> {
        let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
        let pages: f64 = statm.split_whitespace().nth(1)?.parse().ok()?;
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        (page > 0).then_some(pages * page as f64)
    }

    pub fn open_fds() -> Option<f64> {
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
