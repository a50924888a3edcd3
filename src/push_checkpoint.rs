//! OTLP-only continuity (`listen.enabled: false`): the pipeline's position and the state
//! file behind the push's [`Continuity`] (see `telemetry::otlp::continuity`). With
//! `/metrics` on, the scrapes checkpoint instead (`scrape`).

use std::sync::Arc;

use crate::ingest::Processed;
use crate::source::Position;
use crate::state::{self, saved_counts, Checkpointer};
use crate::telemetry::collect::SeriesKey;
use crate::telemetry::otlp::Continuity;

/// Collects between batches of the pipeline, saves to the state file.
pub(crate) struct PushCheckpoint {
    pub(crate) processed: Processed,
    pub(crate) checkpoint: Arc<Checkpointer>,
    /// `state.recall`, for the log line of the last checkpoint.
    pub(crate) recall: u64,
}

impl Continuity for PushCheckpoint {
    fn between_batches(&self, collect: &mut dyn FnMut()) -> Option<Position> {
        // Called on the blocking pool: the pipeline holds this lock while it records a
        // batch, so the collection sees whole batches only.
        let position = self.processed.blocking_lock();
        collect();
        position.clone()
    }

    fn save(
        &self,
        seq: u64,
        position: Option<Position>,
        outstanding: Vec<(SeriesKey, u64)>,
    ) -> bool {
        let counts = saved_counts(outstanding.iter().map(|(k, v)| (k, v)));
        let n = counts.len();
        let saved = self.checkpoint.save_now(seq, position, counts);
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
