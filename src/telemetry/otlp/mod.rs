//! The OTLP push: a reader of the providers (`ManualReader`s with the configured
//! temporality), collected every `otlp.interval` by a task of ours, and a sender task that
//! delivers over gRPC or HTTP without losing or doubling anything while the receiver is
//! down, slow or refusing (see [`queue`]).
//!
//! The SDK's `PeriodicReader` is not used: its shutdown waits a hard-coded 5 s
//! (opentelemetry_sdk 0.33.1 `periodic_reader.rs`, "TODO: Make this timeout configurable")
//! whatever deadline it is given, so a large final export was lost (issue 8). Here the
//! final export is ours and has a deadline that holds ([`Running::shutdown`]).
//!
//! - [`settings`]: the `otlp` keys and `OTEL_*` variables; [`resource`]: the resource and
//!   its precedence; `env`: the variables' value formats.
//! - `buffer`: points never sent, merged per series; `queue`: what is sent next, what is
//!   in doubt; `gauges`: final points of vanished gauge series.
//! - `transport`: one request over gRPC or HTTP; `outcome`: what its answer means.
//! - [`continuity`]: with `/metrics` off, a checkpoint after each delivered request.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::internal::counts::Reader;
use crate::internal::events::{
    CardinalityOverflow, OtlpExportFailed, OtlpPointsDropped, OtlpPointsRejected,
    OtlpRequestDropped, OtlpRequestSplit, OtlpUndelivered, BUFFER_FULL,
};
use crate::internal::Internal;
use crate::source::Position;
use crate::telemetry::SharedReader;

mod buffer;
pub(crate) mod continuity;
mod env;
mod gauges;
mod outcome;
mod queue;
pub(crate) mod resource;
pub(crate) mod settings;
#[cfg(test)]
pub(crate) mod test_requests;
mod transport;

pub(crate) use continuity::Continuity;
use gauges::VanishedGauges;
use outcome::{Backoff, Outcome};
use queue::Queue;
pub(crate) use settings::Settings;
pub(crate) use transport::check_tls;
use transport::Transport;

/// Why the OTLP push could not be set up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OtlpError {
    #[error("otlp: {0}")]
    Invalid(String),
    #[error("otlp: TLS file {path}: {error}")]
    Tls {
        path: std::path::PathBuf,
        error: String,
    },
    #[error("otlp: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// OTLP-only: what the queue's counts reach, and whether a checkpoint would say anything new.
#[derive(Debug, Default)]
struct Ledger {
    /// The source position of the latest collection: every event up to it is delivered
    /// or in the queue.
    position: Option<Position>,
    /// Bumped by every collection and every resolved request (numbers the checkpoints).
    changes: u64,
    /// `changes` at the last checkpoint.
    saved: u64,
}

/// New connection settings, ready to be put in force ([`OtlpPush::prepare`]).
pub(crate) struct Prepared(Conn);

/// The OTLP push, built and not started (clones are the same push).
#[derive(Clone)]
pub(crate) struct OtlpPush {
    shared: Arc<Shared>,
}

/// Where and how requests go: replaced whole by a reload.
struct Conn {
    settings: Settings,
    transport: Transport,
}

/// Shared by the collecting and the sending tasks.
struct Shared {
    /// Read afresh by every request and every interval.
    conn: Mutex<Arc<Conn>>,
    /// The resource a reload put in force (the providers keep the one they were built
    /// with): stamped on every collection from then on.
    resource: Mutex<Option<opentelemetry_proto::tonic::resource::v1::Resource>>,
    reader: SharedReader,
    queue: Mutex<Queue>,
    /// OTLP-only: where the queued counts reach; locked inside `queue` only.
    ledger: Mutex<Ledger>,
    /// One collection at a time (the last one at shutdown may follow an abandoned one).
    collecting: Mutex<()>,
    /// OTLP-only: how checkpoints are taken and saved (set before the push starts).
    continuity: OnceLock<Arc<dyn Continuity>>,
    gauges: Mutex<VanishedGauges>,
    /// Where failures, overflows and dropped points are reported.
    internal: Arc<Internal>,
    /// Something new to send.
    wake: Notify,
    /// A reload put new connection settings in force.
    reconfigured: Notify,
}

impl OtlpPush {
    /// Must be called inside the Tokio runtime the sends will use. Failures, overflows and
    /// dropped points are reported to `internal` from the first export on.
    pub(crate) fn new(
        settings: Settings,
        cardinality_limit: usize,
        internal: Arc<Internal>,
    ) -> Result<OtlpPush, OtlpError> {
        let transport = Transport::new(&settings)?;
        let reader = SharedReader::new(settings.temporality);
        Ok(OtlpPush {
            shared: Arc::new(Shared {
                queue: Mutex::new(Queue::new(cardinality_limit, settings.max_request_size)),
                ledger: Mutex::default(),
                collecting: Mutex::default(),
                continuity: OnceLock::new(),
                gauges: Mutex::new(VanishedGauges::default()),
                reader,
                internal,
                wake: Notify::new(),
                reconfigured: Notify::new(),
                conn: Mutex::new(Arc::new(Conn {
                    settings,
                    transport,
                })),
                resource: Mutex::new(None),
            }),
        })
    }

    /// The reader to register with the meter provider.
    pub(crate) fn reader(&self) -> SharedReader {
        self.shared.reader.clone()
    }

    /// Make restarts continuous without `/metrics` (see [`continuity`]): collect between
    /// batches and checkpoint after each delivered request. Call before [`OtlpPush::start`].
    pub(crate) fn continue_with(&self, continuity: Arc<dyn Continuity>) {
        if self.shared.continuity.set(continuity).is_ok() {
            self.shared.queue.lock().expect("queue").track_delivered();
        }
    }

    /// How often it exports (a reload may change it).
    pub(crate) fn interval(&self) -> Duration {
        self.shared.conn().settings.interval
    }

    /// The temporality its reader was built with (a reload cannot change it).
    pub(crate) fn temporality(&self) -> opentelemetry_sdk::metrics::Temporality {
        self.shared.conn().settings.temporality
    }

    /// The connection `settings` make (their temporality must be the running one), for
    /// [`OtlpPush::apply`]; fails if their transport cannot be built (a TLS file).
    pub(crate) fn prepare(&self, settings: Settings) -> Result<Prepared, OtlpError> {
        let transport = Transport::new(&settings)?;
        Ok(Prepared(Conn {
            settings,
            transport,
        }))
    }

    /// Send over `prepared` from the next request on, what is queued included, and collect
    /// at its interval from the next collection on (a reload).
    pub(crate) fn apply(&self, prepared: Prepared) {
        let conn = prepared.0;
        self.shared
            .queue
            .lock()
            .expect("queue")
            .set_max_bytes(conn.settings.max_request_size);
        *self.shared.conn.lock().expect("conn") = Arc::new(conn);
        // A sender waiting out a backoff tries the new connection at once.
        self.shared.reconfigured.notify_one();
    }

    /// Stamp `resource` on every collection from now on (a reload of the resource).
    pub(crate) fn set_resource(&self, resource: &opentelemetry_sdk::Resource) {
        *self.shared.resource.lock().expect("resource") = Some(resource.into());
    }

    /// Keep at most `limit` series per metric in the buffer from now on (a reload).
    pub(crate) fn set_limit(&self, limit: usize) {
        self.shared.queue.lock().expect("queue").set_limit(limit);
    }

    /// Start collecting every interval and sending.
    pub(crate) fn start(&self) -> Running {
        let (deadline, deadline_rx) = watch::channel(None);
        let shared = self.shared.clone();
        let collector = tokio::spawn(async move {
            // Each wait is the interval in force when it starts (a reload may change it).
            let mut next = Instant::now() + shared.conn().settings.interval;
            loop {
                tokio::time::sleep_until(next).await;
                // As `MissedTickBehavior::Delay`: a late collection delays the next ones.
                next = Instant::now() + shared.conn().settings.interval;
                let s = shared.clone();
                if let Err(e) = tokio::task::spawn_blocking(move || s.collect()).await {
                    // A panic (a bug): the push stops, and so does the exporter (issue 8:
                    // a dead task must not leave a process up that delivers nothing).
                    std::panic::resume_unwind(e.into_panic());
                }
            }
        });
        let sender = tokio::spawn(send_loop(self.shared.clone(), deadline_rx));
        Running {
            shared: self.shared.clone(),
            collector,
            sender,
            deadline,
        }
    }
}

/// The running push.
pub(crate) struct Running {
    shared: Arc<Shared>,
    collector: tokio::task::JoinHandle<()>,
    sender: tokio::task::JoinHandle<()>,
    deadline: watch::Sender<Option<Instant>>,
}

impl Running {
    /// Ends if the collector or the sender ends before [`Running::shutdown`] (a panic:
    /// they only end by being stopped), saying how; the push is then dead, and must not be
    /// shut down (its handles are spent).
    pub(crate) async fn failed(&mut self) -> String {
        let (task, result) = tokio::select! {
            r = &mut self.collector => ("collector", r),
            r = &mut self.sender => ("sender", r),
        };
        self.collector.abort();
        self.sender.abort();
        match result {
            Err(e) if e.is_panic() => {
                let message = e
                    .into_panic()
                    .downcast::<String>()
                    .map(|s| *s)
                    .or_else(|p| p.downcast::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|_| "?".to_string());
                format!("{task} panicked: {message}")
            }
            Err(e) => format!("{task} ended: {e}"),
            Ok(()) => format!("{task} ended"),
        }
    }

    /// Collect one last time (every event recorded so far) and deliver everything within
    /// `wait`, counted from now: requests are given at most what is left of it, and what
    /// is not delivered then is logged and dropped (OTLP only, and if `save_state`: saved
    /// with the position for the restart). Returns whether everything was delivered.
    pub(crate) async fn shutdown(self, wait: Duration, save_state: bool) -> bool {
        let deadline = Instant::now() + wait;
        self.collector.abort();
        let _ = self.collector.await;
        let shared = self.shared.clone();
        let _ = tokio::task::spawn_blocking(move || shared.collect()).await;
        let _ = self.deadline.send(Some(deadline));
        // The sender stops by itself at the deadline (every request is bounded by what is
        // left); the margin covers a request being written when it passes.
        let mut sender = self.sender;
        if tokio::time::timeout_at(deadline + Duration::from_millis(500), &mut sender)
            .await
            .is_err()
        {
            sender.abort();
        }
        let (points, series) = self.shared.queue.lock().expect("queue").pending();
        // OTLP-only: the position reached with what is still undelivered, for the restart.
        let shared = self.shared.clone();
        let saved = save_state
            && tokio::task::spawn_blocking(move || shared.checkpoint(true))
                .await
                .unwrap_or(false);
        if points == 0 && series == 0 {
            return true;
        }
        self.shared.internal.emit(OtlpUndelivered {
            endpoint: &self.shared.conn().settings.url,
            points,
            series,
            wait,
            saved: saved && self.shared.continuity.get().is_some(),
        });
        false
    }
}

/// One request of a reader's collections (see `telemetry::readers`): one `ResourceMetrics`
/// with every provider's scope, the state gauges as each collection's own callbacks
/// observed them, a retired provider's sums only, and `resource` if a reload set one.
fn request(
    collections: Vec<crate::telemetry::readers::Collection>,
    resource: Option<opentelemetry_proto::tonic::resource::v1::Resource>,
) -> ExportMetricsServiceRequest {
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    let mut req = ExportMetricsServiceRequest::default();
    for c in collections {
        let mut one = ExportMetricsServiceRequest::from(&c.rm);
        drop(c.rm);
        crate::telemetry::packed::unpack_request(&mut one);
        if c.retired {
            for rm in &mut one.resource_metrics {
                for sm in &mut rm.scope_metrics {
                    sm.metrics.retain(|m| matches!(m.data, Some(Data::Sum(_))));
                }
            }
        } else {
            gauges::retain_observed(&mut one, &c.observed);
        }
        // One `ResourceMetrics`: `VanishedGauges::mark` reads the first one only.
        match req.resource_metrics.first_mut() {
            None => req.resource_metrics = one.resource_metrics,
            Some(first) => {
                for rm in one.resource_metrics {
                    first.scope_metrics.extend(rm.scope_metrics);
                }
            }
        }
    }
    if let (Some(resource), Some(first)) = (resource, req.resource_metrics.first_mut()) {
        first.resource = Some(resource);
    }
    req
}

/// The result of sending what is queued.
enum Delivery {
    /// Everything sent (or dropped as the receiver asked).
    Done,
    /// A retryable failure: the data is kept; wait `after` if the receiver said so.
    Failed {
        after: Option<Duration>,
        what: String,
    },
    /// The final deadline passed.
    Deadline,
}

/// Sends whenever there is something new, retries with backoff after a failure, and at
/// shutdown sends what is left until the deadline.
async fn send_loop(shared: Arc<Shared>, mut deadline: watch::Receiver<Option<Instant>>) {
    let mut backoff = Backoff::default();
    let mut retrying = false;
    loop {
        if !retrying && deadline.borrow().is_none() {
            tokio::select! {
                _ = shared.wake.notified() => {}
                _ = deadline.changed() => {}
            }
        }
        let until = *deadline.borrow();
        match shared.deliver(until).await {
            Delivery::Done => {
                backoff.reset();
                retrying = false;
                if until.is_some() {
                    return;
                }
                shared.checkpoint_later().await;
            }
            Delivery::Deadline => return,
            Delivery::Failed { after, what } => {
                let wait = backoff.next(after);
                let (points_kept, series_kept) = shared.queue.lock().expect("queue").pending();
                shared.internal.emit(OtlpExportFailed {
                    endpoint: &shared.conn().settings.url,
                    status: &what,
                    points_kept,
                    series_kept,
                    retry_in: wait,
                });
                retrying = true;
                if until.is_none() {
                    // Through an outage, the position stays fresh (the counts are kept).
                    shared.checkpoint_later().await;
                }
                let sleep = tokio::time::sleep(wait);
                match until {
                    Some(d) => {
                        if d <= Instant::now() + wait {
                            tokio::time::sleep_until(d).await;
                            return;
                        }
                        sleep.await;
                    }
                    None => {
                        tokio::select! {
                            _ = sleep => {}
                            // Stopping: the final export starts at once.
                            _ = deadline.changed() => {}
                            // A reload's connection (a corrected endpoint): tried at once.
                            _ = shared.reconfigured.notified() => backoff.reset(),
                        }
                    }
                }
            }
        }
    }
}

impl Shared {
    /// The connection settings in force.
    fn conn(&self) -> Arc<Conn> {
        self.conn.lock().expect("conn").clone()
    }

    /// Collect the reader, mark vanished gauges, and queue the export (a blocking call:
    /// collecting 100,000 series takes a while). OTLP-only, the collection happens between
    /// two batches of the pipeline, and its position is what the queue then reaches.
    fn collect(&self) {
        if crate::fault::armed("otlp") {
            panic!("injected fault (a test's REACTION_METRICS_EXPORTER_FAULT)");
        }
        let _one = self
            .collecting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut collected = (Vec::new(), None);
        let position = match self.continuity.get() {
            Some(c) => c.between_batches(&mut || collected = self.reader.collect()),
            None => {
                collected = self.reader.collect();
                None
            }
        };
        let (collections, error) = collected;
        let resource = self.resource.lock().expect("resource").clone();
        let mut req = request(collections, resource);
        match error {
            // What the other readers gave is queued (a retired reader's sums are not given
            // twice), but no gauge is ended for lack of a collection that would show it.
            Some(e) => tracing::error!("OTLP: collecting metrics failed: {e}"),
            None => {
                self.gauges.lock().expect("gauges").mark(&mut req);
            }
        }
        let stats = {
            let mut queue = self.queue.lock().expect("queue");
            let stats = queue.merge(req);
            let mut ledger = self.ledger.lock().expect("ledger");
            ledger.changes += 1;
            if position.is_some() {
                ledger.position = position;
            }
            stats
        };
        if stats.overflow_events > 0 {
            self.internal.emit(CardinalityOverflow {
                reader: Reader::Otlp,
                events: stats.overflow_events,
            });
        }
        if stats.dropped_points > 0 {
            self.internal.emit(OtlpPointsDropped {
                reason: BUFFER_FULL,
                points: stats.dropped_points,
            });
        }
        self.wake.notify_one();
    }

    /// Send the queue in order until it is empty, a retryable failure, or `deadline`.
    async fn deliver(self: &Arc<Self>, deadline: Option<Instant>) -> Delivery {
        loop {
            let conn = self.conn();
            let timeout = match deadline {
                None => conn.settings.timeout,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Delivery::Deadline;
                    }
                    left.min(conn.settings.timeout)
                }
            };
            let s = self.clone();
            // Taking a round out of the buffer is heavy with many series: off the runtime.
            let next = tokio::task::spawn_blocking(move || s.queue.lock().expect("queue").next())
                .await
                .unwrap_or(None);
            let Some(req) = next else {
                return Delivery::Done;
            };
            let outcome = conn.transport.send(&req, timeout).await;
            let bytes = prost::Message::encoded_len(&req);
            drop(req);
            let s = self.clone();
            let o = outcome.clone();
            let resolved = tokio::task::spawn_blocking(move || {
                let mut queue = s.queue.lock().expect("queue");
                let resolved = queue.resolve(&o);
                s.ledger.lock().expect("ledger").changes += 1;
                resolved
            })
            .await
            .unwrap_or_default();
            match outcome {
                Outcome::Delivered { rejected, message } => {
                    if rejected > 0 {
                        self.internal.emit(OtlpPointsRejected {
                            points: rejected,
                            message: &message,
                        });
                    } else if !message.is_empty() {
                        tracing::debug!("OTLP: the receiver warns: {message}");
                    }
                    // OTLP-only: a round may hold several requests (a request in doubt
                    // re-sent before the newer ones, a split one). Saved after each, a
                    // SIGKILL counts at most the last one twice, not the whole round (seen
                    // under load: twice the bound of one request). The final export saves
                    // once, at its end.
                    if deadline.is_none() {
                        self.checkpoint_later().await;
                    }
                }
                Outcome::Refused { reason, what } => self.dropped(&reason, &what, resolved.dropped),
                Outcome::TooLarge { what } if resolved.split => {
                    self.internal.emit(OtlpRequestSplit {
                        status: &what,
                        bytes,
                    });
                }
                Outcome::TooLarge { what } => self.dropped("too_large", &what, resolved.dropped),
                Outcome::Retry { after, what, .. } => return Delivery::Failed { after, what },
            }
        }
    }

    /// OTLP-only: save the position of the latest collection with every count not
    /// delivered yet, if anything changed since the last checkpoint (`last`: the final
    /// one, saved whatever the number of the others). Blocking; whether it was saved (true
    /// without continuity: there is nothing to save).
    fn checkpoint(&self, last: bool) -> bool {
        let Some(continuity) = self.continuity.get() else {
            return true;
        };
        let (seq, position, undelivered) = {
            let queue = self.queue.lock().expect("queue");
            let mut ledger = self.ledger.lock().expect("ledger");
            if !last && ledger.changes == ledger.saved {
                return true;
            }
            ledger.saved = ledger.changes;
            let seq = if last { u64::MAX } else { ledger.changes };
            (
                seq,
                ledger.position.clone(),
                queue.undelivered(continuity::saved),
            )
        };
        continuity.save(seq, position, continuity::series(undelivered))
    }

    /// [`Shared::checkpoint`] on the blocking pool, waited for.
    async fn checkpoint_later(self: &Arc<Self>) {
        if self.continuity.get().is_none() {
            return;
        }
        let s = self.clone();
        let _ = tokio::task::spawn_blocking(move || s.checkpoint(false)).await;
    }

    fn dropped(&self, reason: &str, what: &str, points: u64) {
        self.internal.emit(OtlpRequestDropped {
            endpoint: &self.conn().settings.url,
            reason,
            status: &what,
            points,
        });
        self.internal.emit(OtlpPointsDropped { reason, points });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Otlp;
    use opentelemetry::KeyValue;
    use opentelemetry_sdk::Resource;

    /// A push configured by `cfg` (no environment) as the only reader of a `Telemetry`
    /// (limit 100, empty resource), and their self-monitoring. Inside a Tokio runtime.
    fn push_to(cfg: Otlp) -> (OtlpPush, crate::telemetry::Telemetry, Arc<Internal>) {
        let settings = settings::resolve(&cfg, &|_| None)
            .unwrap()
            .settings
            .unwrap();
        let internal = Arc::new(Internal::new());
        let push = OtlpPush::new(settings, 100, internal.clone()).unwrap();
        let telemetry = crate::telemetry::Telemetry::new(
            100,
            Resource::builder_empty().build(),
            false,
            Some(push.reader()),
            internal.clone(),
        );
        (push, telemetry, internal)
    }

    /// Guards the wiring: the exporter reports to the self-monitoring it is built with, so a
    /// failed export is counted before anything else ran (no scrape, no later set-up step).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_export_failure_before_any_scrape_is_counted() {
        use crate::internal::counts::{OtlpFailure, Series};
        use crate::metric::Metric;

        // A port nothing listens on: the export is refused.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let (push, telemetry, internal) = push_to(Otlp {
            endpoint: Some(format!("http://127.0.0.1:{port}")),
            timeout: Some(2.0),
            interval: Some(0.1),
            ..Otlp::default()
        });
        telemetry
            .instruments()
            .add(Metric::Matches, 1, &[KeyValue::new("stream", "ssh")]);
        let running = push.start();
        for _ in 0..100 {
            if internal.count(&Series::OtlpFailures(OtlpFailure::Export)) > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            internal.count(&Series::OtlpFailures(OtlpFailure::Export)),
            1,
            "one failure, then the backoff waits"
        );
        // The deadline holds although nothing can be delivered.
        let started = std::time::Instant::now();
        assert!(!running.shutdown(Duration::from_millis(700), true).await);
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    /// Guards a collection that fails in part (the events provider shut down): what the
    /// other readers gave is queued, and no gauge series is ended for lack of a collection
    /// that would show it (an error used to drop the whole collection; with the readers of a
    /// replaced provider in it, that would lose their counts).
    #[test]
    fn a_failed_collection_ends_no_gauge_series() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let _inside = runtime.enter();
        let (push, telemetry, _) = push_to(Otlp {
            endpoint: Some("http://127.0.0.1:9".into()),
            ..Otlp::default()
        });
        *telemetry.gauges.pending.lock().unwrap() = vec![(
            vec![
                KeyValue::new("stream", "ssh"),
                KeyValue::new("filter", "failedlogin"),
                KeyValue::new("action", "ban"),
            ],
            1,
        )];
        push.shared.collect();
        let remembered = push.shared.gauges.lock().unwrap().remembered();
        assert!(remembered > 0, "the pending action's series is remembered");
        // The events provider fails, the own counters' provider still answers.
        telemetry.events.lock().unwrap().shutdown().unwrap();
        push.shared.collect();
        assert_eq!(
            push.shared.gauges.lock().unwrap().remembered(),
            remembered,
            "no series ended by a failed collection"
        );
    }
}
