//! HTTP: `/metrics` (negotiated format) and a small `/` page linking it. A `/metrics` body
//! reports its own delivery: its counts are only forgotten once the whole body has been
//! handed to the connection.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http_body::{Frame, SizeHint};

use crate::scrape::{Delivery, PageBody, Scraper};
use crate::telemetry::render::ExpositionFormat;

pub(crate) fn router(scraper: Arc<Scraper>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/metrics", get(metrics))
        .with_state(scraper)
}

/// Serve until `shutdown` completes, then finish the requests in flight.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    scraper: Arc<Scraper>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(scraper))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn index() -> Html<String> {
    Html(format!(
        "<!DOCTYPE html>\n<html><head><title>reaction metrics exporter</title></head>\
         <body><h1>reaction metrics exporter {}</h1>\
         <p><a href=\"/metrics\">Metrics</a></p></body></html>\n",
        crate::telemetry::VERSION
    ))
}

async fn metrics(State(scraper): State<Arc<Scraper>>, headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = ExpositionFormat::from_accept(accept);
    let page = scraper.scrape(format).await;
    let body = TrackedBody::new(page.body, page.delivery);
    let mut resp = Response::new(Body::new(body));
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(page.format.content_type()),
    );
    resp.into_response()
}

/// A body that pulls its chunks from the page as hyper asks for them, and marks its
/// [`Delivery`] delivered when hyper takes the last one, i.e. once every byte has been
/// handed to the connection. Dropped before that (client gone, write error, timeout), the
/// delivery returns its counts. Bytes handed over but still in hyper's or the kernel's
/// buffers when the client goes away are not seen: see README.
struct TrackedBody {
    page: PageBody,
    /// Bytes not handed over yet.
    left: u64,
    delivery: Option<Delivery>,
}

impl TrackedBody {
    fn new(page: PageBody, delivery: Delivery) -> TrackedBody {
        TrackedBody {
            left: page.len(),
            page,
            delivery: Some(delivery),
        }
    }
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.page.next_chunk() {
            Some(c) => {
                self.left = self.left.saturating_sub(c.len() as u64);
                if self.left == 0 {
                    // The last bytes: hyper stops polling once Content-Length is reached.
                    if let Some(d) = self.delivery.take() {
                        d.delivered();
                    }
                }
                Poll::Ready(Some(Ok(Frame::data(c))))
            }
            None => {
                if let Some(d) = self.delivery.take() {
                    d.delivered();
                }
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0 && self.delivery.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}
