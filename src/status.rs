//! What reaction says about itself: whether it answers (`reaction show`), its version
//! (`reaction -V`, cached until reaction restarts) and its pending actions. Refreshed once
//! per scrape, each call bounded by `reaction.timeout`, and written to the gauge state the
//! observable instruments read.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::internal::events::CliFailed;
use crate::internal::Internal;
use crate::label::Labeller;
use crate::reaction::ReactionClient;
use crate::telemetry::instruments::ReactionStatus;
use crate::telemetry::GaugeState;

/// Refreshes reaction's status, version and pending actions (see the module documentation).
pub struct StatusRefresher {
    client: Arc<ReactionClient>,
    labeller: Arc<Mutex<Labeller>>,
    gauges: Arc<GaugeState>,
    internal: Arc<Internal>,
    version: tokio::sync::Mutex<Option<String>>,
    version_stale: AtomicBool,
}

impl StatusRefresher {
    pub(crate) fn new(
        client: Arc<ReactionClient>,
        labeller: Arc<Mutex<Labeller>>,
        gauges: Arc<GaugeState>,
        internal: Arc<Internal>,
    ) -> StatusRefresher {
        StatusRefresher {
            client,
            labeller,
            gauges,
            internal,
            version: tokio::sync::Mutex::new(None),
            version_stale: AtomicBool::new(true),
        }
    }

    /// reaction restarted: ask its version again at the next refresh.
    pub(crate) fn reaction_restarted(&self) {
        self.version_stale.store(true, Ordering::Relaxed);
    }

    /// Ask reaction (`-V` when its version is not known, `show`), each call bounded by
    /// `reaction.timeout`, and update what the gauges observe.
    pub async fn refresh(&self) {
        let version = self.version().await;
        let (up, pending) = match self.client.show().await {
            Ok(entries) => {
                let pending = self
                    .labeller
                    .lock()
                    .expect("labeller")
                    .label_pending(&entries, &self.internal);
                (true, pending)
            }
            Err(e) => {
                self.internal.emit(CliFailed {
                    command: "show",
                    kind: e.kind(),
                    error: &e,
                });
                (false, Vec::new())
            }
        };
        *self.gauges.pending.lock().expect("gauges") = pending;
        *self.gauges.reaction.lock().expect("gauges") = ReactionStatus { version, up };
    }

    async fn version(&self) -> String {
        let mut cached = self.version.lock().await;
        if self.version_stale.swap(false, Ordering::Relaxed) {
            *cached = None;
        }
        if let Some(v) = cached.as_ref() {
            return v.clone();
        }
        match self.client.version().await {
            Ok(v) => {
                *cached = Some(v.clone());
                v
            }
            Err(e) => {
                // Not cached: asked again at the next scrape.
                self.internal.emit(CliFailed {
                    command: "version",
                    kind: e.kind(),
                    error: &e,
                });
                "N/A".to_string()
            }
        }
    }
}
