//! What reaction says about itself: whether it answers (`reaction show`), its version
//! (`reaction -V`, cached until reaction restarts) and its pending actions. Refreshed once
//! per scrape, each call bounded by `reaction.timeout`, and written to the gauge state the
//! observable instruments read. At most one refresh runs at a time: a scrape that comes
//! while one runs waits for that one's answer instead of asking again (issue 8: five scrapes
//! during a 2 s `reaction show` were answered at 2, 4, 6, 8 and 10 s; now all after it).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

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
    /// The refresh running now, if any: its receiver is told `true` when it is done.
    running: Mutex<Option<tokio::sync::watch::Receiver<bool>>>,
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
            running: Mutex::new(None),
        }
    }

    /// reaction restarted: ask its version again at the next refresh.
    pub(crate) fn reaction_restarted(&self) {
        self.version_stale.store(true, Ordering::Relaxed);
    }

    /// Refresh (see [`Self::refresh_now`]), or wait for the refresh already running and
    /// share its answer. The refresh runs in a task of its own, so a caller that goes away
    /// (its client gone) does not cancel it for the others.
    pub async fn refresh(self: &Arc<Self>) {
        let mut done = {
            let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
            match &*running {
                Some(done) => done.clone(),
                None => {
                    let (tx, rx) = tokio::sync::watch::channel(false);
                    *running = Some(rx.clone());
                    let this = self.clone();
                    tokio::spawn(async move {
                        let finished = Finished(this);
                        finished.0.refresh_now().await;
                        drop(finished);
                        let _ = tx.send(true);
                    });
                    rx
                }
            }
        };
        // An error means the refresh task is gone (panicked, runtime stopping): there is
        // nothing more to wait for.
        let _ = done.wait_for(|finished| *finished).await;
    }

    /// Ask reaction (`-V` when its version is not known, `show`), each call bounded by
    /// `reaction.timeout`, and update what the gauges observe.
    pub async fn refresh_now(&self) {
        let version = self.version().await;
        let (up, pending) = match self.client.show().await {
            Ok(entries) => {
                let pending = self
                    .labeller
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
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
        *self
            .gauges
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = pending;
        *self
            .gauges
            .reaction
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = ReactionStatus { version, up };
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

/// Lets the next caller start a refresh once this one ends, also if it panics.
struct Finished(Arc<StatusRefresher>);

impl Drop for Finished {
    fn drop(&mut self) {
        *self
            .0
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }
}
