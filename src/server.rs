//! HTTP: `/metrics` (negotiated format) and a small `/` page linking it. A `/metrics` body
//! reports its own delivery: its counts are only forgotten once the whole body has been
//! handed to the connection. A `HEAD` request gets the headers without a scrape (so it
//! takes no counts). The connections under these routes (limits, timeouts) are `web`'s.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{Html, Response};
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

async fn index() -> Html<String> {
    Html(format!(
        "<!DOCTYPE html>\n<html><head><title>reaction metrics exporter</title></head>\
         <body><h1>reaction metrics exporter {}</h1>\
         <p><a href=\"/metrics\">Metrics</a></p></body></html>\n",
        crate::telemetry::VERSION
    ))
}

async fn metrics(
    State(scraper): State<Arc<Scraper>>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = ExpositionFormat::from_accept(accept);
    let (mut resp, format) = if method == Method::HEAD {
        // What a GET would answer, without scraping: hyper sends no body for HEAD, so a
        // page made for it would never be delivered (issue 8: each HEAD request took the
        // counts, returned them undelivered and logged a warning).
        (Response::new(Body::empty()), format)
    } else {
        let page = scraper.scrape(format).await;
        let body = TrackedBody::new(page.body, page.delivery);
        (Response::new(Body::new(body)), page.format)
    };
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    resp
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
