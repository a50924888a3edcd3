//! Where a log line becomes a metric: source → parse → label → instruments, in order, one
//! line at a time. reaction's configuration is loaded here at start and again when reaction
//! restarts or when a line names something the configuration does not have.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio::sync::{mpsc, OwnedMutexGuard};

use crate::defaults;
use crate::internal::counts::Reject;
use crate::internal::events::{CliFailed, LineRejected};
use crate::internal::Internal;
use crate::label::Labeller;
use crate::notify::InsideBatch;
use crate::parse::{parse_line, ParseError};
use crate::reaction::{ConfigOrigin, ReactionClient};
use crate::source::{Batch, Lines, Position};
use crate::status::StatusRefresher;
use crate::telemetry::{current, CurrentInstruments};

/// The pipeline between batches: locked by the pipeline while it records a batch (and
/// released while it waits for reaction's configuration in the middle of one), and by a
/// scrape while it collects (so a scrape's counts reach a known position).
pub(crate) type Processed = Arc<tokio::sync::Mutex<Batches>>;

/// What the lock over the pipeline guards; see [`Processed`].
#[derive(Debug, Default)]
pub(crate) struct Batches {
    /// The source position after the last batch recorded completely.
    pub(crate) position: Option<Position>,
    /// Since when a batch is partly recorded, while the pipeline released the lock to wait
    /// for reaction's configuration (`reaction test-config` can take up to
    /// `reaction.timeout`). A collect now would take events past `position`, which a crash
    /// would then count twice, so a scrape does not collect meanwhile (it answers with what
    /// it has; the rest comes with the next scrape). The watchdog sees it too.
    pub(crate) mid_batch: Option<Instant>,
}

impl InsideBatch for Batches {
    fn inside_since(&self) -> Option<Instant> {
        self.mid_batch
    }
}

/// Parses, labels and records the lines of each batch, and reloads reaction's configuration
/// when it has to.
pub struct Ingest {
    pub(crate) labeller: Arc<Mutex<Labeller>>,
    /// The instruments in force (a reload may replace them between two batches).
    pub(crate) instruments: CurrentInstruments,
    pub(crate) internal: Arc<Internal>,
    pub(crate) client: Arc<ReactionClient>,
    /// What reaction says about itself (told when reaction restarts).
    pub status: Arc<StatusRefresher>,
    /// The source position after the last batch processed (what a checkpoint saves);
    /// locked while a batch is recorded, so a scrape collects between batches.
    /// See [`Batches`].
    pub(crate) processed: Processed,
    last_reload: Option<Instant>,
    /// When to give back what recorded batches freed.
    freed: FreedByBatches,
}

/// Bytes of lines recorded since the memory their batches freed was last given back: it is
/// given back once the pipeline has caught up with the source (no more lines waiting there,
/// no batch waiting here) after at least [`defaults::RELEASE_AFTER_BYTES`], not after every
/// few lines nor after each batch of a backlog (whose memory the next batch reuses: given
/// back, it would be faulted in again).
#[derive(Debug, Default)]
struct FreedByBatches {
    since: u64,
}

impl FreedByBatches {
    /// A batch of `bytes` was recorded; `caught_up`: no lines were waiting at the source
    /// when it was made, and no batch waits after it. Whether to give the memory back now.
    fn after_batch(&mut self, bytes: u64, caught_up: bool) -> bool {
        self.since = self.since.saturating_add(bytes);
        let due = caught_up && self.since >= defaults::RELEASE_AFTER_BYTES;
        if due {
            self.since = 0;
        }
        due
    }
}

impl Ingest {
    pub(crate) fn new(
        labeller: Arc<Mutex<Labeller>>,
        instruments: CurrentInstruments,
        internal: Arc<Internal>,
        client: Arc<ReactionClient>,
        status: Arc<StatusRefresher>,
    ) -> Ingest {
        Ingest {
            labeller,
            instruments,
            internal,
            client,
            status,
            processed: Arc::default(),
            last_reload: None,
            freed: FreedByBatches::default(),
        }
    }

    /// Consume batches until the source closes the channel.
    pub(crate) async fn run(mut self, mut rx: mpsc::Receiver<Batch>) {
        let fault = crate::fault::armed("ingest");
        while let Some(batch) = rx.recv().await {
            if fault {
                let _position = self.processed.clone().lock_owned().await;
                let _poisoned = self.labeller.lock();
                panic!("injected fault (a test's REACTION_METRICS_EXPORTER_FAULT)");
            }
            let bytes = batch.lines.bytes();
            let caught_up = !batch.backlog && rx.is_empty();
            self.process_batch(batch.lines, batch.position).await;
            if self.freed.after_batch(bytes, caught_up) {
                crate::memory::release_freed();
            }
        }
    }

    /// Record a batch, then set the position after it (unless `None`).
    async fn process_batch(&mut self, lines: Lines, position: Option<Position>) {
        let mut held = Some(self.processed.clone().lock_owned().await);
        self.record(lines, &mut held).await;
        let mut batches = match held {
            Some(b) => b,
            None => self.processed.clone().lock_owned().await,
        };
        if position.is_some() {
            batches.position = position;
        }
        batches.mid_batch = None;
    }

    /// Load reaction's configuration (at start, on restart, on a stale name).
    pub async fn reload_reaction_config(&mut self) -> bool {
        self.last_reload = Some(Instant::now());
        match self.client.load_config().await {
            Ok((rc, origin)) => {
                if origin == ConfigOrigin::Direct {
                    tracing::info!(
                        "`reaction` not found: read reaction's configuration directly \
                         (YAML/JSON only; JSONnet needs the reaction binary)"
                    );
                }
                let filters: usize = rc.streams.iter().map(|s| s.filters.len()).sum();
                tracing::info!(
                    streams = rc.streams.len(),
                    filters,
                    "reaction's configuration loaded"
                );
                self.labeller
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .set_reaction_config(&rc, &self.internal);
                true
            }
            Err(e) => {
                self.internal.emit(CliFailed {
                    command: "test-config",
                    kind: e.kind(),
                    error: &e,
                });
                false
            }
        }
    }

    /// Parse, label and record `batch`, in order (the source position stays as it is).
    pub async fn process(&mut self, batch: Lines) {
        self.process_batch(batch, None).await;
    }

    /// Reload reaction's configuration in the middle of a batch without the lock over the
    /// pipeline (issue 8: a scrape waited 80 s behind a slow `test-config`), marked as
    /// partly recorded so that no scrape collects meanwhile; the lock is taken back after.
    async fn reload_mid_batch(&mut self, held: &mut Option<OwnedMutexGuard<Batches>>) {
        if let Some(mut batches) = held.take() {
            batches.mid_batch = Some(Instant::now());
        }
        self.reload_reaction_config().await;
        *held = Some(self.processed.clone().lock_owned().await);
    }

    /// Parse, label and record `batch`, in order, holding `held` (the lock over the
    /// pipeline) except while reaction's configuration reloads.
    async fn record(&mut self, batch: Lines, held: &mut Option<OwnedMutexGuard<Batches>>) {
        let Some(last) = batch.last() else {
            return;
        };
        self.internal.lines_read(batch.len() as u64, last.time);
        // Replaced only while the pipeline's lock is free: taken again after each wait
        // without it, so that nothing is recorded into instruments a reload retired.
        let mut instruments = current(&self.instruments);
        for line in batch.iter() {
            let event = match parse_line(line.text) {
                Ok(Some(e)) => e,
                Ok(None) => continue,
                // A lossy line was counted as `invalid_utf8` by its source: once is enough.
                Err(e) if line.lossy => {
                    tracing::debug!("line not understood ({e}), already counted as invalid_utf8");
                    continue;
                }
                Err(e) => {
                    let reason = match e {
                        ParseError::Unknown => Reject::Unknown,
                        ParseError::Malformed { .. } => Reject::Malformed,
                    };
                    self.internal.emit(LineRejected {
                        reason,
                        line: line.text,
                        detail: &e,
                    });
                    continue;
                }
            };
            // Labelled first as if a reload were allowed: with `last_try` false, a name that
            // does not fit returns `stale_config` with nothing done, so the reload cooldown
            // (a clock read, ~2 % of the ingest CPU when read for every line) is only looked
            // at for such a name.
            let mut labelled =
                self.labeller()
                    .label(line.time, &event, &self.internal, false, line.lossy);
            if labelled.stale_config {
                let can_reload = self
                    .last_reload
                    .is_none_or(|t| t.elapsed() >= defaults::STALE_RELOAD_COOLDOWN);
                if can_reload {
                    self.reload_mid_batch(held).await;
                    instruments = current(&self.instruments);
                }
                labelled =
                    self.labeller()
                        .label(line.time, &event, &self.internal, true, line.lossy);
            }
            if let Some((family, attrs)) = labelled.record {
                instruments.add(family, 1, &attrs);
            }
            if labelled.restarted {
                self.status.reaction_restarted();
                self.reload_mid_batch(held).await;
                instruments = current(&self.instruments);
            }
        }
    }

    /// The labeller; a panic elsewhere while it was locked leaves it usable (its state is
    /// caches and memory of recent matches), rather than a panic per line from then on.
    fn labeller(&self) -> std::sync::MutexGuard<'_, Labeller> {
        self.labeller.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_memory_is_given_back_once_caught_up_after_a_backlog_not_after_every_line() {
        let mut f = FreedByBatches::default();
        let poll = defaults::RELEASE_AFTER_BYTES;
        // A backlog: full batches with more waiting, then the last one.
        assert!(!f.after_batch(poll, false));
        assert!(!f.after_batch(poll, false));
        assert!(f.after_batch(10, true), "caught up after a backlog");
        // Then a few lines now and then: left to the allocator's own second...
        for _ in 0..100 {
            assert!(!f.after_batch(100, true));
        }
        // ...until they add up to a backlog's worth.
        assert!(f.after_batch(poll, true));
        assert!(!f.after_batch(100, true));
    }
}
