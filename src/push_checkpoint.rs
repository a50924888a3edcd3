//! OTLP-only continuity (`listen.enabled: false`): the pipeline's position and the state
//! file behind the push's [`Continuity`] (see `telemetry::otlp::continuity`). With
//! `/metrics` on, the scrapes checkpoint instead (`scrape`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use crate::ingest::Processed;
use crate::label::{Labeller, MemorySnapshot};
use crate::source::Position;
use crate::state::{self, saved_counts, Checkpointer};
use crate::telemetry::collect::SeriesKey;
use crate::telemetry::otlp::Continuity;

/// How many collections' memories [`PushCheckpoint`] keeps (Arc clones of the maps).
const MEMORIES_KEPT: usize = 4;

/// How often a collection waiting for the end of a batch looks again.
const MID_BATCH_POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// Collects between batches of the pipeline, saves to the state file.
pub(crate) struct PushCheckpoint {
    pub(crate) processed: Processed,
    pub(crate) checkpoint: Arc<Checkpointer>,
    /// Whose attribution memory a checkpoint saves (issue 10 item 1).
    pub(crate) labeller: Arc<Mutex<Labeller>>,
    /// The attribution memory at the positions of the latest collections, newest last: a
    /// checkpoint saves the one taken at its position.
    pub(crate) memories: Mutex<VecDeque<(Option<Position>, Arc<MemorySnapshot>)>>,
    /// `state.recall`, for the log line of the last checkpoint.
    pub(crate) recall: u64,
}

impl Continuity for PushCheckpoint {
    fn between_batches(&self, collect: &mut dyn FnMut()) -> Option<Position> {
        // Called on the blocking pool: the pipeline holds this lock while it records a
        // batch, so the collection sees whole batches only.
        let batches = loop {
            let batches = self.processed.blocking_lock();
            if batches.mid_batch.is_none() {
                break batches;
            }
            // The pipeline waits for reaction's configuration in the middle of a batch (at
            // most reaction.timeout): collecting part of a batch would deliver counts past
            // the saved position, counted again after a restart.
            drop(batches);
            std::thread::sleep(MID_BATCH_POLL);
        };
        collect();
        let position = batches.position.clone();
        let memory = Arc::new(
            self.labeller
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .memory_snapshot(),
        );
        drop(batches);
        let mut memories = self.memories.lock().unwrap_or_else(PoisonError::into_inner);
        if memories.len() == MEMORIES_KEPT {
            memories.pop_front();
        }
        memories.push_back((position.clone(), memory));
        position
    }

    fn save(
        &self,
        seq: u64,
        position: Option<Position>,
        outstanding: Vec<(SeriesKey, u64)>,
    ) -> bool {
        let counts = saved_counts(outstanding.iter().map(|(k, v)| (k, v)));
        let n = counts.len();
        // The memory of the collection at `position` (a newer collection may have come
        // between the checkpoint's and this call); none found: saved without a memory.
        let memory = self
            .memories
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .rev()
            .find(|(p, _)| *p == position)
            .map(|(_, m)| m.clone());
        let saved = self.checkpoint.save_now(seq, position, counts, memory);
        if saved && seq == u64::MAX {
            tracing::info!(
                series = n,
                file = %state::path(self.checkpoint.dir()).display(),
                "saved the position and the counts not yet delivered over OTLP: a restart \
                 within {} s continues from here",
                self.recall
            );
        }
        saved
    }
}
