//! What answers `/metrics/otel`: refresh what reaction says about itself (as `/metrics`
//! does), fold the cumulative reader ([`crate::telemetry::cumulative`]) and render its
//! totals ([`crate::telemetry::render_otel`]). Nothing here touches `/metrics`' reader or
//! ledger, nor the OTLP push's reader.

use std::sync::Arc;

use crate::status::StatusRefresher;
use crate::telemetry::cumulative::Cumulative;
use crate::telemetry::render::ExpositionFormat;
use crate::telemetry::render_otel;

/// Answers `/metrics/otel`.
pub struct OtelEndpoint {
    cumulative: Arc<Cumulative>,
    status: Arc<StatusRefresher>,
}

impl OtelEndpoint {
    pub(crate) fn new(cumulative: Arc<Cumulative>, status: Arc<StatusRefresher>) -> OtelEndpoint {
        OtelEndpoint { cumulative, status }
    }

    /// Refresh reaction's status, fold and render a page in `format` (`None`: the render
    /// failed, which is a bug, logged).
    pub async fn scrape(&self, format: ExpositionFormat) -> Option<String> {
        self.status.refresh().await;
        let cumulative = self.cumulative.clone();
        // A fold and a render of many series take a while: not on the runtime's threads.
        tokio::task::spawn_blocking(move || {
            cumulative.fold_then(|totals| render_otel::render(totals, format))
        })
        .await
        .map_err(|e| tracing::error!("rendering /metrics/otel failed: {e}"))
        .ok()
    }
}
