//! OTLP-only deployments (`listen.enabled: false`): restarts continue where the last run
//! stopped, as the `/metrics` checkpoints make them do when it is on. Each collection of
//! the OTLP reader happens while the pipeline is between two batches, so it reaches a
//! known source position; after each request the receiver accepts (and each failed round,
//! so that the position stays fresh through an outage) the position of the latest
//! collection is saved
//! with every count collected and not delivered yet ([`super::queue::Queue::undelivered`]).
//! A restart reads the source again from that position and records the saved counts anew:
//! nothing is lost; what can come twice is a request in doubt (sent, no answer) or a request
//! delivered right before a crash and before its checkpoint was on disk, at most one
//! request's worth.
//!
//! The push reports through [`Continuity`]; the application implements it over the
//! pipeline's position and the state file.

use std::collections::HashMap;

use crate::metric::{Legacy, Metric};
use crate::source::Position;
use crate::telemetry::collect::{Attrs, SeriesKey};

use super::queue::SeriesName;

/// What the push needs from the application to make restarts continuous.
pub(crate) trait Continuity: Send + Sync {
    /// Run `collect` while the pipeline is between two batches, and return the source
    /// position every event it collected reaches. Blocking.
    fn between_batches(&self, collect: &mut dyn FnMut()) -> Option<Position>;

    /// Save checkpoint number `seq` (an older one than the newest saved is skipped):
    /// `position` with the counts collected and not delivered. Blocking; whether it was
    /// saved.
    fn save(
        &self,
        seq: u64,
        position: Option<Position>,
        outstanding: Vec<(SeriesKey, u64)>,
    ) -> bool;
}

/// Whether a metric's counts are saved in a checkpoint: the event counters (`/metrics`
/// shows them since the last scrape), not the exporter's own counters.
pub(super) fn saved(name: &str) -> bool {
    Metric::from_otel_name(name).is_some_and(|m| m.spec().legacy_kind == Legacy::DeltaGauge)
}

/// The queue's undelivered counts as series.
pub(super) fn series(undelivered: HashMap<SeriesName, u64>) -> Vec<(SeriesKey, u64)> {
    undelivered
        .into_iter()
        .filter_map(|((name, attrs), v)| {
            Some((
                (Metric::from_otel_name(&name)?, Attrs::from_pairs(attrs)),
                v,
            ))
        })
        .collect()
}
