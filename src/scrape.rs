//! One `/metrics` scrape: refresh what reaction says about itself, collect the delta pull
//! reader, add the counts of undelivered earlier responses, render.
//!
//! No scrape waits behind slow work: the status refresh runs before the scrape lock and is
//! shared by the scrapes that come while it runs (see `status`); the pipeline does not hold
//! its lock while reaction's configuration reloads (a scrape then does not collect, see
//! `ingest::Batches`). Counts carried over from undelivered responses or restored from the
//! state file are capped at `metrics.cardinality_limit` series per metric, like a
//! collection: past it they go into the metric's overflow series, counted as overflowed.
//!
//! Exactly once, also across crashes. The collect happens while the pipeline is between two
//! batches, so every scrape knows the source position its counts reach. A `Ledger` keeps
//! the counts of every response in flight and of every response that was not delivered
//! (carried into the next scrape). At each delivered response, a checkpoint saves the
//! position of the latest collect with every count still outstanding: after a crash, the
//! exporter adds those counts and reads the source again from that position, so each event
//! is counted once (see the README for the one narrow window).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::ingest::Processed;
use crate::internal::counts::Reader;
use crate::internal::events::{CardinalityOverflow, ScrapeUndelivered};
use crate::internal::Internal;
use crate::label::{Labeller, MemorySnapshot};
use crate::metric::{Legacy, Metric};
use crate::source::Position;
use crate::state::{saved_counts, Checkpointer, SavedCount};
use crate::status::StatusRefresher;
use crate::telemetry::collect::{merge_sums, Attrs, Collected, SeriesKey};
use crate::telemetry::render::{render, Exposition, ExpositionFormat};
use crate::telemetry::{SharedReader, VERSION};

type Counts = HashMap<SeriesKey, u64>;
/// The counts of one response: one entry per series.
type Sums = Vec<(SeriesKey, u64)>;

/// Counts carried into the next scrape, at most `limit` series per metric: what comes past
/// it is added into the metric's overflow series (issue 8: carried-over counts of
/// undelivered scrapes reached 3× the cardinality limit while new IPs arrived).
#[derive(Debug)]
struct Carry {
    counts: Counts,
    /// Series per metric in `counts`, overflow series left out.
    series: HashMap<Metric, usize>,
    limit: usize,
}

impl Carry {
    fn new(limit: usize) -> Carry {
        Carry {
            counts: Counts::new(),
            series: HashMap::new(),
            limit,
        }
    }

    fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Add `from` (saturating); returns the events that went into an overflow series
    /// because their own series did not fit.
    fn add(&mut self, from: impl IntoIterator<Item = (SeriesKey, u64)>) -> u64 {
        let mut overflowed = 0u64;
        for (key, v) in from {
            if let Some(c) = self.counts.get_mut(&key) {
                *c = c.saturating_add(v);
                continue;
            }
            let key = if key.1.is_overflow() {
                key
            } else {
                let n = self.series.entry(key.0).or_default();
                if *n < self.limit {
                    *n += 1;
                    key
                } else {
                    overflowed = overflowed.saturating_add(v);
                    (key.0, Attrs::overflow())
                }
            };
            let c = self.counts.entry(key).or_default();
            *c = c.saturating_add(v);
        }
        overflowed
    }

    /// Everything, leaving the carry empty.
    fn take(&mut self) -> Counts {
        self.series.clear();
        std::mem::take(&mut self.counts)
    }
}

/// Counts collected but not delivered yet, and the position they reach.
#[derive(Debug)]
struct Ledger {
    next_id: u64,
    in_flight: HashMap<u64, Arc<Sums>>,
    carry: Carry,
    /// Position of the latest collect: every event up to it is delivered or outstanding.
    position: Option<Position>,
    /// The attribution memory at the latest collect (so at `position`).
    memory: Option<Arc<MemorySnapshot>>,
    /// Numbers the checkpoints.
    seq: u64,
}

impl Ledger {
    fn outstanding(&self) -> Vec<SavedCount> {
        let mut all = self.carry.counts.clone();
        for c in self.in_flight.values() {
            merge_sums(&mut all, c.iter().cloned());
        }
        saved_counts(all.iter())
    }
}

/// A checkpoint's number, position and outstanding counts. Under the ledger's lock only
/// the carry is copied (the pages in flight are shared): the merge runs outside it, so
/// scrapes do not wait for it.
fn snapshot(
    ledger: &Mutex<Ledger>,
) -> (
    u64,
    Option<Position>,
    Vec<SavedCount>,
    Option<Arc<MemorySnapshot>>,
) {
    let (seq, position, mut all, pages, memory) = {
        let mut l = lock(ledger);
        l.seq += 1;
        let pages: Vec<Arc<Sums>> = l.in_flight.values().cloned().collect();
        (
            l.seq,
            l.position.clone(),
            l.carry.counts.clone(),
            pages,
            l.memory.clone(),
        )
    };
    for c in pages {
        merge_sums(&mut all, c.iter().cloned());
    }
    (seq, position, saved_counts(all.iter()), memory)
}

/// Answers `/metrics`: one scrape at a time, with the counts of undelivered responses
/// carried over and a checkpoint at each delivered one. See the module documentation.
pub struct Scraper {
    reader: SharedReader,
    status: Arc<StatusRefresher>,
    internal: Arc<Internal>,
    /// `metrics.export.internals`, which a reload may change.
    internals: AtomicBool,
    processed: Processed,
    ledger: Arc<Mutex<Ledger>>,
    checkpoint: Option<Arc<Checkpointer>>,
    /// Whose attribution memory a checkpoint saves, taken at each collect (with a
    /// checkpoint only).
    labeller: Option<Arc<Mutex<Labeller>>>,
    /// What the scrapes keep between them, behind the lock that serializes their collects.
    kept: tokio::sync::Mutex<Kept>,
}

/// See [`Scraper::kept`].
#[derive(Debug, Default)]
struct Kept {
    /// Running totals of the exporter's own counters (shown cumulative).
    totals: HashMap<SeriesKey, f64>,
    /// The gauges of the last collect, shown again by a scrape that cannot collect.
    gauges: HashMap<SeriesKey, f64>,
}

/// Where a scraper's checkpoints go, and whose attribution memory they save.
pub(crate) struct Checkpoints {
    pub(crate) writer: Arc<Checkpointer>,
    pub(crate) labeller: Arc<Mutex<Labeller>>,
}

/// A page and the counts it carries.
pub struct Page {
    /// The `/metrics` text, as a stream of chunks.
    pub body: PageBody,
    pub(crate) format: ExpositionFormat,
    /// Its counts, to mark delivered once the body is handed over.
    pub delivery: Delivery,
}

/// A page's text (`/metrics`, `/metrics/otel`) as a stream of chunks of at most
/// [`PageBody::CHUNK`] bytes: its length is known before the first chunk, and each chunk
/// is made when it is asked for.
pub struct PageBody {
    text: bytes::Bytes,
    len: u64,
}

impl PageBody {
    /// Chunks are at most this long, so a client that stops reading leaves most of a large
    /// page unmade (and its counts carried over).
    pub const CHUNK: usize = 16 * 1024;

    pub(crate) fn new(text: String) -> PageBody {
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
    /// `restored`: counts saved by a previous run, shown in the first scrape (at most
    /// `limit` series per metric, the rest in the overflow series).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        reader: SharedReader,
        status: Arc<StatusRefresher>,
        internal: Arc<Internal>,
        internals: bool,
        processed: Processed,
        restored: Counts,
        limit: usize,
        checkpoints: Option<Checkpoints>,
    ) -> Scraper {
        let mut carry = Carry::new(limit);
        let overflowed = carry.add(restored);
        overflowed_events(&internal, overflowed);
        let (checkpoint, labeller) = match checkpoints {
            Some(c) => (Some(c.writer), Some(c.labeller)),
            None => (None, None),
        };
        Scraper {
            reader,
            status,
            internal,
            internals: AtomicBool::new(internals),
            processed,
            ledger: Arc::new(Mutex::new(Ledger {
                next_id: 0,
                in_flight: HashMap::new(),
                carry,
                position: None,
                memory: None,
                seq: 0,
            })),
            checkpoint,
            labeller,
            kept: tokio::sync::Mutex::new(Kept::default()),
        }
    }

    /// Carry over at most `limit` series per metric from now on (a reload of
    /// `metrics.cardinality_limit`): series carried already stay.
    pub(crate) fn set_limit(&self, limit: usize) {
        self.ledger().carry.limit = limit;
    }

    /// Show the exporter's own families from the next page on, or not (a reload of
    /// `metrics.export.internals`).
    pub(crate) fn set_internals(&self, on: bool) {
        self.internals.store(on, Ordering::Relaxed);
    }

    /// Refresh reaction's status, collect, and render a page in `format`.
    pub async fn scrape(&self, format: ExpositionFormat) -> Page {
        // Dropped at an await below (client gone while reaction is slow): nothing was
        // collected, the counts wait for the next scrape, but this one was not delivered.
        let mut abandoned = Abandoned(Some(&self.internal));
        // Not under the scrape lock: concurrent scrapes share one `reaction show`.
        self.status.refresh().await;
        let mut kept = self.kept.lock().await;
        let (collected, position, memory) = {
            let batches = self.processed.lock().await;
            if batches.mid_batch.is_some() {
                // The pipeline waits for reaction's configuration in the middle of a batch:
                // what it recorded of it goes with the next scrape.
                (None, None, None)
            } else {
                (
                    Some(self.collect()),
                    batches.position.clone(),
                    self.memory(),
                )
            }
        };
        abandoned.0 = None;

        let (own, gauges) = match collected {
            Some(c) => {
                let (own, gauges) = self.split(c, &mut kept.totals);
                kept.gauges.clone_from(&gauges);
                (own, gauges)
            }
            None => (Sums::new(), kept.gauges.clone()),
        };
        let totals = kept.totals.clone();
        let (id, counts) = {
            let mut ledger = self.ledger();
            let counts = if ledger.carry.is_empty() {
                own
            } else {
                let overflowed = ledger.carry.add(own);
                overflowed_events(&self.internal, overflowed);
                ledger.carry.take().into_iter().collect()
            };
            let counts = Arc::new(counts);
            let id = ledger.next_id;
            ledger.next_id += 1;
            ledger.in_flight.insert(id, counts.clone());
            // The memory goes with the position it was taken at (a batch without a position,
            // possible from journald, leaves both as they were).
            if position.is_some() {
                ledger.position = position;
                ledger.memory = memory;
            }
            (id, counts)
        };
        // Released only now: the ledger takes collects in the order they were made (its
        // position only moves forward). Rendering needs no lock.
        drop(kept);
        // What the split freed (and the SDK's output, if already dropped aside): its pages
        // given back before the page is rendered, rather than held at the scrape's peak
        // (see `memory`).
        crate::memory::release_freed();
        // From here on the counts are owned by the delivery: dropped undelivered, they are
        // carried over.
        let delivery = Delivery {
            id,
            ledger: self.ledger.clone(),
            checkpoint: self.checkpoint.clone(),
            internal: self.internal.clone(),
            done: false,
        };
        let exp = Exposition::of(
            gauges
                .iter()
                .map(|((f, attrs), v)| (*f, attrs, *v))
                .chain(counts.iter().map(|((f, attrs), v)| (*f, attrs, *v as f64)))
                .chain(totals.iter().map(|((f, attrs), v)| (*f, attrs, *v))),
        );
        let body = PageBody::new(render(
            &exp,
            VERSION,
            self.internals.load(Ordering::Relaxed),
            format,
        ));
        drop(exp);
        drop(counts);
        Page {
            body,
            format,
            delivery,
        }
    }

    /// The attribution memory now, if a checkpoint will save it: called with the pipeline
    /// between two batches, like the collect, so that it is the memory at the position.
    fn memory(&self) -> Option<Arc<MemorySnapshot>> {
        self.checkpoint.as_ref()?;
        let labeller = self.labeller.as_ref()?;
        // A panic while the labeller was locked stops the ingest (and the process): the
        // memory is read as it is.
        let labeller = labeller
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Some(Arc::new(labeller.memory_snapshot()))
    }

    fn collect(&self) -> Collected {
        let (collections, error) = self.reader.collect();
        if let Some(e) = error {
            tracing::error!("collecting metrics failed: {e}");
        }
        let collected = Collected::from_collections(&collections);
        // What the SDK gave (every point with its own attribute list) is no longer needed:
        // freed while the page is made rather than before (~70 ms at 600,000 series).
        crate::memory::drop_aside(collections);
        collected
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
            overflowed,
        } = c;
        overflowed_events(&self.internal, overflowed);
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
    /// scrape took, and return the final position with every undelivered count and the
    /// attribution memory there.
    pub(crate) async fn final_state(&self) -> FinalState {
        let mut kept = self.kept.lock().await;
        let (collected, position, memory) = {
            let batches = self.processed.lock().await;
            (self.collect(), batches.position.clone(), self.memory())
        };
        let (own, _) = self.split(collected, &mut kept.totals);
        let mut ledger = self.ledger();
        let overflowed = ledger.carry.add(own);
        overflowed_events(&self.internal, overflowed);
        // The memory goes with the position it was taken at (a batch without a position,
        // possible from journald, leaves both as they were).
        if position.is_some() {
            ledger.position = position;
            ledger.memory = memory;
        }
        (
            ledger.position.clone(),
            ledger.outstanding(),
            ledger.memory.clone(),
        )
    }

    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        lock(&self.ledger)
    }
}

/// The ledger, also after a panic elsewhere while it was locked: every change to it is
/// complete before anything that could panic, and a panic per scrape from then on would be
/// worse (issue 8: a poisoned lock made every later scrape panic).
fn lock(ledger: &Mutex<Ledger>) -> MutexGuard<'_, Ledger> {
    ledger.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Count `events` put into an overflow series on the `/metrics` side.
fn overflowed_events(internal: &Internal, events: u64) {
    if events > 0 {
        internal.emit(CardinalityOverflow {
            reader: Reader::Prometheus,
            events,
        });
    }
}

/// What the exporter saves at shutdown: the position, the counts outstanding there, the
/// attribution memory there.
pub(crate) type FinalState = (
    Option<Position>,
    Vec<SavedCount>,
    Option<Arc<MemorySnapshot>>,
);

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
        let mut ledger = lock(&self.ledger);
        let counts = ledger.in_flight.remove(&self.id);
        drop(ledger);
        // Freeing a large page's labels is not worth delaying the response for.
        if let Some(c) = counts {
            crate::memory::drop_aside(c);
        }
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
        let mut ledger = lock(&self.ledger);
        let Some(counts) = ledger.in_flight.remove(&self.id) else {
            return;
        };
        let counts = Arc::try_unwrap(counts).unwrap_or_else(|c| (*c).clone());
        if counts.is_empty() {
            return;
        }
        let n = counts.len();
        let overflowed = ledger.carry.add(counts);
        drop(ledger);
        overflowed_events(&self.internal, overflowed);
        self.internal.emit(ScrapeUndelivered { series: n });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(metric: Metric, ip: &str) -> SeriesKey {
        (metric, Attrs::from_pairs([("ip", ip)]))
    }

    fn overflow(metric: Metric) -> SeriesKey {
        (metric, Attrs::overflow())
    }

    #[test]
    fn carry_keeps_at_most_the_limit_per_metric_and_counts_the_rest() {
        let m = Metric::Matches;
        let mut carry = Carry::new(2);
        let over = carry.add([(key(m, "a"), 1), (key(m, "b"), 2), (key(m, "c"), 3)]);
        assert_eq!(over, 3);
        // An existing series still adds up; a new one goes to the overflow series; counts
        // already in an overflow series are not counted again.
        let over = carry.add([(key(m, "a"), 1), (key(m, "d"), 4), (overflow(m), 5)]);
        assert_eq!(over, 4);
        // Another metric has a limit of its own.
        assert_eq!(carry.add([(key(Metric::ActionRuns, "x"), 1)]), 0);
        let all = carry.take();
        assert_eq!(all[&key(m, "a")], 2);
        assert_eq!(all[&key(m, "b")], 2);
        assert_eq!(all[&overflow(m)], 12);
        assert_eq!(all.len(), 4);
        // Taken: empty, and the limit starts over.
        assert!(carry.is_empty());
        assert_eq!(carry.add([(key(m, "e"), 1), (key(m, "f"), 1)]), 0);
    }

    #[test]
    fn carry_saturates() {
        let m = Metric::Matches;
        let mut carry = Carry::new(10);
        carry.add([(key(m, "a"), u64::MAX)]);
        carry.add([(key(m, "a"), 2)]);
        assert_eq!(carry.take()[&key(m, "a")], u64::MAX);
    }

    /// Issue 8: after a panic while the ledger was locked, every later scrape panicked on
    /// the poisoned lock. The ledger stays usable.
    #[test]
    fn a_poisoned_ledger_is_still_usable() {
        let ledger = Arc::new(Mutex::new(Ledger {
            next_id: 0,
            in_flight: HashMap::new(),
            carry: Carry::new(10),
            position: None,
            memory: None,
            seq: 0,
        }));
        let l = ledger.clone();
        let _ = std::thread::spawn(move || {
            let _guard = l.lock().unwrap();
            panic!("a panic while the ledger is locked");
        })
        .join();
        assert!(ledger.is_poisoned());
        lock(&ledger).next_id += 1;
        assert_eq!(lock(&ledger).next_id, 1);
    }
}
