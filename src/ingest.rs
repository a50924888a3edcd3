//! Where a log line becomes a metric: source → parse → label → instruments, in order, one
//! line at a time. reaction's configuration is loaded here at start and again when reaction
//! restarts or when a line names something the configuration does not have.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::mpsc;

use crate::defaults;
use crate::internal::counts::Reject;
use crate::internal::events::{CliFailed, LineRejected};
use crate::internal::Internal;
use crate::label::Labeller;
use crate::parse::{parse_line, ParseError};
use crate::reaction::{ConfigOrigin, ReactionClient};
use crate::source::{Batch, LogLine, Position};
use crate::status::StatusRefresher;
use crate::telemetry::Instruments;

/// The source position after the last batch processed; locked by the pipeline while it
/// records a batch, and by a scrape while it collects (so a scrape's counts reach a known
/// position).
pub(crate) type Processed = Arc<tokio::sync::Mutex<Option<Position>>>;

/// Parses, labels and records the lines of each batch, and reloads reaction's configuration
/// when it has to.
pub struct Ingest {
    pub(crate) labeller: Arc<Mutex<Labeller>>,
    pub(crate) instruments: Arc<Instruments>,
    pub(crate) internal: Arc<Internal>,
    pub(crate) client: Arc<ReactionClient>,
    /// What reaction says about itself (told when reaction restarts).
    pub status: Arc<StatusRefresher>,
    /// The source position after the last batch processed (what a checkpoint saves);
    /// locked while a batch is recorded, so a scrape collects between batches.
    pub(crate) processed: Processed,
    last_reload: Option<Instant>,
}

impl Ingest {
    pub(crate) fn new(
        labeller: Arc<Mutex<Labeller>>,
        instruments: Arc<Instruments>,
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
        }
    }

    /// Consume batches until the source closes the channel.
    pub(crate) async fn run(mut self, mut rx: mpsc::Receiver<Batch>) {
        let fault = crate::fault::armed("ingest");
        while let Some(batch) = rx.recv().await {
            let mut position = self.processed.clone().lock_owned().await;
            if fault {
                let _poisoned = self.labeller.lock();
                panic!("injected fault (a test's REACTION_METRICS_EXPORTER_FAULT)");
            }
            self.process(batch.lines).await;
            if batch.position.is_some() {
                *position = batch.position;
            }
        }
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
                    .expect("labeller")
                    .set_reaction_config(&rc);
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

    /// Parse, label and record `batch`, in order.
    pub async fn process(&mut self, batch: Vec<LogLine>) {
        let Some(last) = batch.last() else {
            return;
        };
        self.internal.lines_read(batch.len() as u64, last.time);
        for line in batch {
            let event = match parse_line(&line.text) {
                Ok(Some(e)) => e,
                Ok(None) => continue,
                Err(e) => {
                    let reason = match e {
                        ParseError::Unknown => Reject::Unknown,
                        ParseError::Malformed { .. } => Reject::Malformed,
                    };
                    self.internal.emit(LineRejected {
                        reason,
                        line: &line.text,
                        detail: &e,
                    });
                    continue;
                }
            };
            let can_reload = self
                .last_reload
                .is_none_or(|t| t.elapsed() >= defaults::STALE_RELOAD_COOLDOWN);
            let mut labelled = self.labeller.lock().expect("labeller").label(
                line.time,
                &event,
                &self.internal,
                !can_reload,
            );
            if labelled.stale_config {
                self.reload_reaction_config().await;
                labelled = self.labeller.lock().expect("labeller").label(
                    line.time,
                    &event,
                    &self.internal,
                    true,
                );
            }
            if let Some((family, attrs)) = labelled.record {
                self.instruments.add(family, 1, &attrs);
            }
            if labelled.restarted {
                self.status.reaction_restarted();
                self.reload_reaction_config().await;
            }
        }
    }
}
