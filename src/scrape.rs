//! One `/metrics` scrape: refresh what reaction says about itself, collect the delta pull
//! reader, add the counts of undelivered earlier responses, render. Scrapes are serialized
//! (a collect consumes the deltas). The counts of a response travel with it in a
//! [`Delivery`]: if the response is not handed to the connection completely, they go back
//! to the carry-over and appear in the next scrape, so nothing is lost or counted twice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::reader::MetricReader;

use crate::internal::Internal;
use crate::status::StatusRefresher;
use crate::telemetry::collect::{merge_sums, Collected, SeriesKey};
use crate::telemetry::families::{Legacy, FAMILIES};
use crate::telemetry::otlp::pending::OVERFLOW_KEY;
use crate::telemetry::render::{render, Exposition, Format};
use crate::telemetry::{SharedReader, VERSION};

/// Counts of responses that were not delivered.
type Carry = Arc<Mutex<HashMap<SeriesKey, u64>>>;

pub struct Scraper {
    reader: SharedReader,
    status: Arc<StatusRefresher>,
    internal: Arc<Internal>,
    internals: bool,
    carry: Carry,
    /// Running totals of the exporter's own counters (shown cumulative), behind the lock
    /// that serializes scrapes.
    totals: tokio::sync::Mutex<HashMap<SeriesKey, f64>>,
}

/// A rendered page and the counts it carries.
pub struct Page {
    pub body: String,
    pub format: Format,
    pub delivery: Delivery,
}

impl Scraper {
    pub fn new(
        reader: SharedReader,
        status: Arc<StatusRefresher>,
        internal: Arc<Internal>,
        internals: bool,
    ) -> Scraper {
        Scraper {
            reader,
            status,
            internal,
            internals,
            carry: Arc::default(),
            totals: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    pub async fn scrape(&self, format: Format) -> Page {
        // Dropped at an await below (client gone while reaction is slow): nothing was
        // collected, the counts wait for the next scrape, but this one was not delivered.
        let mut abandoned = Abandoned(Some(&self.internal));
        let mut totals = self.totals.lock().await;
        self.status.refresh().await;
        abandoned.0 = None;

        let mut rm = ResourceMetrics::default();
        if let Err(e) = self.reader.collect(&mut rm) {
            tracing::error!("collecting metrics failed: {e}");
        }
        let collected = Collected::from_resource_metrics(&rm);
        drop(rm);
        let (counts, rest) = self.split(collected, &mut totals);
        // From here on the counts are owned by the delivery: dropped undelivered, they are
        // carried over.
        let delivery = Delivery {
            counts: Some(counts),
            carry: self.carry.clone(),
            internal: self.internal.clone(),
        };
        let counts = delivery.counts.as_ref().expect("just set");

        let mut exp = rest;
        for ((f, attrs), v) in counts {
            exp.push(*f, attrs.clone(), *v as f64);
        }
        for ((f, attrs), v) in totals.iter() {
            exp.push(*f, attrs.clone(), *v);
        }
        let body = render(&exp, VERSION, self.internals, format);
        Page {
            body,
            format,
            delivery,
        }
    }

    /// Legacy delta families (plus carried counts) on one side; the exporter's own counters
    /// added to their totals; gauges as they are.
    fn split(
        &self,
        c: Collected,
        totals: &mut HashMap<SeriesKey, f64>,
    ) -> (HashMap<SeriesKey, u64>, Exposition) {
        let mut counts = std::mem::take(&mut *self.carry.lock().expect("carry"));
        let mut own = HashMap::new();
        let overflowed: u64 = c
            .sums
            .iter()
            .filter(|((_, attrs), _)| attrs.iter().any(|(k, _)| k == OVERFLOW_KEY))
            .map(|(_, v)| v)
            .sum();
        if overflowed > 0 {
            self.internal.overflow("prometheus", overflowed);
        }
        for (k, v) in c.sums {
            match FAMILIES[k.0].legacy_kind {
                Legacy::DeltaGauge => {
                    own.insert(k, v);
                }
                _ => *totals.entry(k).or_default() += v as f64,
            }
        }
        merge_sums(&mut counts, own);
        for (k, v) in c.sums_f64 {
            *totals.entry(k).or_default() += v;
        }
        let mut exp = Exposition::default();
        for ((f, attrs), v) in c.gauges {
            exp.push(f, attrs, v);
        }
        (counts, exp)
    }

    /// Counts collected but not yet delivered (for tests and shutdown).
    pub fn carried(&self) -> HashMap<SeriesKey, u64> {
        self.carry.lock().expect("carry").clone()
    }
}

/// Counts a scrape dropped before it collected anything as undelivered.
struct Abandoned<'a>(Option<&'a Internal>);

impl Drop for Abandoned<'_> {
    fn drop(&mut self) {
        if let Some(internal) = self.0 {
            internal.undelivered(0);
        }
    }
}

/// The counts of one response. Call [`Delivery::delivered`] once the response is handed to
/// the connection completely; dropped before that, the counts return to the carry-over.
pub struct Delivery {
    counts: Option<HashMap<SeriesKey, u64>>,
    carry: Carry,
    internal: Arc<Internal>,
}

impl Delivery {
    pub fn delivered(mut self) {
        self.counts = None;
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        if let Some(counts) = self.counts.take() {
            if counts.is_empty() {
                return;
            }
            self.internal.undelivered(counts.len());
            merge_sums(&mut self.carry.lock().expect("carry"), counts);
        }
    }
}
