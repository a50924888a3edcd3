//! One `/metrics` scrape: refresh what reaction says about itself, collect the delta pull
//! reader, add the counts of undelivered earlier responses, render.
//!
//! Exactly once, also across crashes. The collect happens while the pipeline is between two
//! batches, so every scrape knows the source position its counts reach. A `Ledger` keeps
//! the counts of every response in flight and of every response that was not delivered
//! (carried into the next scrape). At each delivered response, a checkpoint saves the
//! position of the latest collect with every count still outstanding: after a crash, the
//! exporter adds those counts and reads the source again from that position, so each event
//! is counted once (see the README for the one narrow window).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::reader::MetricReader;

use crate::ingest::Processed;
use crate::internal::counts::Reader;
use crate::internal::events::{CardinalityOverflow, ScrapeUndelivered};
use crate::internal::Internal;
use crate::metric::{Legacy, OVERFLOW_KEY};
use crate::source::Position;
use crate::state::{saved_counts, Checkpointer, SavedCount};
use crate::status::StatusRefresher;
use crate::telemetry::collect::{merge_sums, Collected, SeriesKey};
use crate::telemetry::render::{render, Exposition, ExpositionFormat};
use crate::telemetry::{SharedReader, VERSION};

type Counts = HashMap<SeriesKey, u64>;
/// The counts of one response: one entry per series.
type Sums = Vec<(SeriesKey, u64)>;

/// Counts collected but not delivered yet, and the position they reach.
#[derive(Debug, Default)]
struct Ledger {
    next_id: u64,
    in_flight: HashMap<u64, Arc<Sums>>,
    carry: Counts,
    /// Position of the latest collect: every event up to it is delivered or outstanding.
    position: Option<Position>,
    /// Numbers the checkpoints.
    seq: u64,
}

impl Ledger {
    fn outstanding(&self) -> Vec<SavedCount> {
        let mut all = self.carry.clone();
        for c in self.in_flight.values() {
            merge_sums(&mut all, c.iter().cloned());
        }
        saved_counts(all.iter())
    }
}

/// A checkpoint's number, position and outstanding counts. Under the ledger's lock only
/// the carry is copied (the pages in flight are shared): the merge runs outside it, so
/// scrapes do not wait for it.
fn snapshot(ledger: &Mutex<Ledger>) -> (u64, Option<Position>, Vec<SavedCount>) {
    let (seq, position, mut all, pages) = {
        let mut l = ledger.lock().expect("ledger");
        l.seq += 1;
        let pages: Vec<Arc<Sums>> = l.in_flight.values().cloned().collect();
        (l.seq, l.position.clone(), l.carry.clone(), pages)
    };
    for c in pages {
        merge_sums(&mut all, c.iter().cloned());
    }
    (seq, position, saved_counts(all.iter()))
}

/// Answers `/metrics`: one scrape at a time, with the counts of undelivered responses
/// carried over and a checkpoint at each delivered one. See the module documentation.
pub struct Scraper {
    reader: SharedReader,
    status: Arc<StatusRefresher>,
    internal: Arc<Internal>,
    internals: bool,
    processed: Processed,
    ledger: Arc<Mutex<Ledger>>,
    checkpoint: Option<Arc<Checkpointer>>,
    /// Running totals of the exporter's own counters (shown cumulative), behind the lock
    /// that serializes scrapes.
    totals: tokio::sync::Mutex<HashMap<SeriesKey, f64>>,
}

/// A page and the counts it carries.
pub struct Page {
    /// The `/metrics` text, as a stream of chunks.
    pub body: PageBody,
    pub(crate) format: ExpositionFormat,
    /// Its counts, to mark delivered once the body is handed over.
    pub delivery: Delivery,
}

/// The `/metrics` text as a stream of chunks of at most [`PageBody::CHUNK`] bytes: its
/// length is known before the first chunk, and each chunk is made when it is asked for.
pub struct PageBody {
    text: bytes::Bytes,
    len: u64,
}

impl PageBody {
    /// Chunks are at most this long, so a client that stops reading leaves most of a large
    /// page unmade (and its counts carried over).
    pub const CHUNK: usize = 16 * 1024;

    fn new(text: String) -> PageBody {
        let text = bytes::Bytes::from(text);
        PageBody {
            len: text.len() as u64,
            text,
        }
    }

    /// Bytes of the whole page (its `Content-Length`).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the page has no bytes at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The next chunk, `None` once every byte was given out.
    pub fn next_chunk(&mut self) -> Option<bytes::Bytes> {
        if self.text.is_empty() {
            return None;
        }
        let n = self.text.len().min(Self::CHUNK);
        Some(self.text.split_to(n))
    }

    /// The whole page at once (tests, benchmarks).
    pub fn into_string(mut self) -> String {
        let mut v = Vec::with_capacity(self.len as usize);
        while let Some(c) = self.next_chunk() {
            v.extend_from_slice(&c);
        }
        String::from_utf8(v).expect("the page is UTF-8")
    }
}

impl Scraper {
    /// `restored`: counts saved by a previous run, shown in the first scrape.
    pub(crate) fn new(
        reader: SharedReader,
        status: Arc<StatusRefresher>,
        internal: Arc<Internal>,
        internals: bool,
        processed: Processed,
        restored: Counts,
        checkpoint: Option<Arc<Checkpointer>>,
    ) -> Scraper {
        Scraper {
            reader,
            status,
            internal,
            internals,
            processed,
            ledger: Arc::new(Mutex::new(Ledger {
                carry: restored,
                ..Ledger::default()
            })),
            checkpoint,
            totals: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Refresh reaction's status, collect, and render a page in `format`.
    pub async fn scrape(&self, format: ExpositionFormat) -> Page {
        // Dropped at an await below (client gone while reaction is slow): nothing was
        // collected, the counts wait for the next scrape, but this one was not delivered.
        let mut abandoned = Abandoned(Some(&self.internal));
        let mut totals = self.totals.lock().await;
        self.status.refresh().await;
        let (collected, position) = {
            let position = self.processed.lock().await;
            (self.collect(), position.clone())
        };
        abandoned.0 = None;

        let (own, gauges) = self.split(collected, &mut totals);
        let (id, counts) = {
            let mut ledger = self.ledger.lock().expect("ledger");
            let counts = if ledger.carry.is_empty() {
                own
            } else {
                let mut all = std::mem::take(&mut ledger.carry);
                merge_sums(&mut all, own);
                all.into_iter().collect()
            };
            let counts = Arc::new(counts);
            let id = ledger.next_id;
            ledger.next_id += 1;
            ledger.in_flight.insert(id, counts.clone());
            if position.is_some() {
                ledger.position = position;
            }
            (id, counts)
        };
        // From here on the counts are owned by the delivery: dropped undelivered, they are
        // carried over.
        let delivery = Delivery {
            id,
            ledger: self.ledger.clone(),
            checkpoint: self.checkpoint.clone(),
            internal: self.internal.clone(),
            done: false,
        };
        let mut exp = Exposition::default();
        for ((f, attrs), v) in gauges.iter() {
            exp.push(*f, attrs, *v);
        }
        for ((f, attrs), v) in counts.iter() {
            exp.push(*f, attrs, *v as f64);
        }
        for ((f, attrs), v) in totals.iter() {
            exp.push(*f, attrs, *v);
        }
        let body = PageBody::new(render(&exp, VERSION, self.internals, format));
        drop(exp);
        drop(counts);
        Page {
            body,
            format,
            delivery,
        }
    }

    fn collect(&self) -> Collected {
        let mut rm = ResourceMetrics::default();
        if let Err(e) = self.reader.collect(&mut rm) {
            tracing::error!("collecting metrics failed: {e}");
        }
        Collected::from_resource_metrics(&rm)
    }

    /// Legacy delta families on one side; the exporter's own counters added to their
    /// totals; gauges as they are.
    fn split(
        &self,
        c: Collected,
        totals: &mut HashMap<SeriesKey, f64>,
    ) -> (Sums, HashMap<SeriesKey, f64>) {
        let Collected {
            mut sums,
            sums_f64,
            gauges,
        } = c;
        let overflowed: u64 = sums
            .iter()
            .filter(|((_, attrs), _)| attrs.iter().any(|(k, _)| k == OVERFLOW_KEY))
            .map(|(_, v)| v)
            .sum();
        if overflowed > 0 {
            self.internal.emit(CardinalityOverflow {
                reader: Reader::Prometheus,
                events: overflowed,
            });
        }
        // In place: a 100k-series delta is not rehashed.
        sums.retain(|(k, v)| match k.0.spec().legacy_kind {
            Legacy::DeltaGauge => true,
            _ => {
                *totals.entry(k.clone()).or_default() += *v as f64;
                false
            }
        });
        for (k, v) in sums_f64 {
            *totals.entry(k).or_default() += v;
        }
        (sums, gauges)
    }

    /// At shutdown, once the source is stopped and the pipeline drained: collect what no
    /// scrape took, and return the final position with every undelivered count.
    pub(crate) async fn final_state(&self) -> (Option<Position>, Vec<SavedCount>) {
        let mut totals = self.totals.lock().await;
        let (collected, position) = {
            let position = self.processed.lock().await;
            (self.collect(), position.clone())
        };
        let (own, _) = self.split(collected, &mut totals);
        let mut ledger = self.ledger.lock().expect("ledger");
        merge_sums(&mut ledger.carry, own);
        if position.is_some() {
            ledger.position = position;
        }
        (ledger.position.clone(), ledger.outstanding())
    }
}

/// Counts a scrape dropped before it collected anything as undelivered.
struct Abandoned<'a>(Option<&'a Internal>);

impl Drop for Abandoned<'_> {
    fn drop(&mut self) {
        if let Some(internal) = self.0 {
            internal.emit(ScrapeUndelivered { series: 0 });
        }
    }
}

/// The counts of one response. Call [`Delivery::delivered`] once the response is handed to
/// the connection completely; dropped before that, the counts return to the carry-over.
pub struct Delivery {
    id: u64,
    ledger: Arc<Mutex<Ledger>>,
    checkpoint: Option<Arc<Checkpointer>>,
    internal: Arc<Internal>,
    done: bool,
}

impl Delivery {
    /// The whole body was handed to the connection: its counts are delivered (and a
    /// checkpoint saves what is still outstanding).
    pub fn delivered(mut self) {
        self.done = true;
        let mut ledger = self.ledger.lock().expect("ledger");
        let counts = ledger.in_flight.remove(&self.id);
        // Freeing a large page's labels is not worth delaying the response for.
        if let (Some(c), Ok(rt)) = (counts, tokio::runtime::Handle::try_current()) {
            rt.spawn_blocking(move || drop(c));
        }
        drop(ledger);
        if let Some(cp) = &self.checkpoint {
            let ledger = self.ledger.clone();
            cp.save_soon(Box::new(move || snapshot(&ledger)));
        }
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut ledger = self.ledger.lock().expect("ledger");
        let Some(counts) = ledger.in_flight.remove(&self.id) else {
            return;
        };
        let counts = Arc::try_unwrap(counts).unwrap_or_else(|c| (*c).clone());
        if counts.is_empty() {
            return;
        }
        let n = counts.len();
        merge_sums(&mut ledger.carry, counts);
        drop(ledger);
        self.internal.emit(ScrapeUndelivered { series: n });
    }
}
