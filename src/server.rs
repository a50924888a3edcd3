//! HTTP: `/metrics` and `/metrics/otel` (negotiated format, gzip when accepted) and a small
//! `/` page linking them. A `/metrics` body reports its own delivery: its counts are only
//! forgotten once the whole body, compressed or not, has been handed to the connection. A
//! `HEAD` request to either gets the headers without a scrape (so it takes no counts and
//! folds nothing). The connections under these routes (limits, timeouts, TLS,
//! authentication) are `web`'s.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http_body::{Frame, SizeHint};

use crate::otel_endpoint::OtelEndpoint;
use crate::scrape::{Delivery, PageBody, Scraper};
use crate::telemetry::render::ExpositionFormat;
use crate::web::gzip::{accepts_gzip, Gzip};

pub(crate) fn router(scraper: Arc<Scraper>, otel: Option<Arc<OtelEndpoint>>) -> Router {
    let otel_link = otel.is_some();
    let router = Router::new()
        .route("/", get(move || index(otel_link)))
        .route("/metrics", get(metrics));
    let router = match otel {
        Some(otel) => router.route(
            crate::defaults::OTEL_ENDPOINT_PATH,
            get(move |method: Method, headers: HeaderMap| otel_metrics(otel, method, headers)),
        ),
        None => router,
    };
    router.with_state(scraper)
}

async fn index(otel: bool) -> Html<String> {
    let otel = if otel {
        format!(
            "<p><a href=\"{0}\">Cumulative metrics (OpenTelemetry names)</a></p>",
            crate::defaults::OTEL_ENDPOINT_PATH
        )
    } else {
        String::new()
    };
    Html(format!(
        "<!DOCTYPE html>\n<html><head><title>reaction metrics exporter</title></head>\
         <body><h1>reaction metrics exporter {}</h1>\
         <p><a href=\"/metrics\">Metrics</a></p>{otel}</body></html>\n",
        crate::telemetry::VERSION
    ))
}

/// `/metrics/otel`: the cumulative page, in the negotiated format, gzip when accepted. Its
/// body has no delivery to report: scraping it takes nothing.
async fn otel_metrics(otel: Arc<OtelEndpoint>, method: Method, headers: HeaderMap) -> Response {
    let (format, gzip) = negotiate(&headers);
    let body = if method == Method::HEAD {
        // As for `/metrics`: hyper sends no body for HEAD, so no fold and no render.
        Body::empty()
    } else {
        match otel.scrape(format).await {
            Some(page) => Body::new(TrackedBody::new(PageBody::new(page), None, gzip)),
            None => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        }
    };
    respond(body, format, gzip)
}

async fn metrics(
    State(scraper): State<Arc<Scraper>>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let (format, gzip) = negotiate(&headers);
    let (body, format) = if method == Method::HEAD {
        // What a GET would answer, without scraping: hyper sends no body for HEAD, so a
        // page made for it would never be delivered (issue 8: each HEAD request took the
        // counts, returned them undelivered and logged a warning).
        (Body::empty(), format)
    } else {
        let page = scraper.scrape(format).await;
        let body = TrackedBody::new(page.body, Some(page.delivery), gzip);
        (Body::new(body), page.format)
    };
    respond(body, format, gzip)
}

/// The format `Accept` asks for, and whether `Accept-Encoding` takes gzip.
fn negotiate(headers: &HeaderMap) -> (ExpositionFormat, bool) {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let gzip = accepts_gzip(
        headers
            .get(header::ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok()),
    );
    (ExpositionFormat::from_accept(accept), gzip)
}

/// A page's response: 200, its content type, `Vary`, and `Content-Encoding: gzip` when the
/// body compresses.
fn respond(body: Body, format: ExpositionFormat, gzip: bool) -> Response {
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    h.insert(
        header::VARY,
        HeaderValue::from_static("Accept, Accept-Encoding"),
    );
    if gzip {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    resp
}

/// A body that pulls its chunks from the page as hyper asks for them (compressing them
/// when `gzip`), and marks its [`Delivery`] (if any) delivered when hyper takes the last
/// one (with gzip, the one that ends with the gzip trailer), i.e. once every byte has been
/// handed to the connection. Dropped before that (client gone, write error, timeout), the delivery
/// returns its counts. Bytes handed over but still in hyper's or the kernel's buffers when
/// the client goes away are not seen: see README.
struct TrackedBody {
    page: PageBody,
    /// Bytes of the page not taken from it yet.
    left: u64,
    gzip: Option<Gzip>,
    delivery: Option<Delivery>,
}

impl TrackedBody {
    fn new(page: PageBody, delivery: Option<Delivery>, gzip: bool) -> TrackedBody {
        TrackedBody {
            left: page.len(),
            page,
            gzip: gzip.then(Gzip::new),
            delivery,
        }
    }

    fn delivered(&mut self) {
        if let Some(d) = self.delivery.take() {
            d.delivered();
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
        loop {
            let chunk = self.page.next_chunk();
            if let Some(c) = &chunk {
                self.left = self.left.saturating_sub(c.len() as u64);
            }
            let last = self.left == 0;
            let out = match (self.gzip.as_mut(), chunk) {
                (None, Some(c)) => c,
                (Some(g), Some(c)) => {
                    let mut out = g.push(&c);
                    if last {
                        let tail = self.gzip.take().map(Gzip::finish).unwrap_or_default();
                        out = [out, tail].concat().into();
                    } else if out.is_empty() {
                        // The compressor holds it all so far: take more of the page.
                        continue;
                    }
                    out
                }
                (Some(_), None) => self.gzip.take().map(Gzip::finish).unwrap_or_default(),
                (None, None) => {
                    self.delivered();
                    return Poll::Ready(None);
                }
            };
            if last && self.gzip.is_none() {
                // The last bytes: hyper stops polling once Content-Length is reached (or
                // takes this as the end of a chunked body).
                self.delivered();
            }
            return Poll::Ready(Some(Ok(Frame::data(out))));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0 && self.gzip.is_none() && self.delivery.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match self.gzip {
            // Compressed: the length is known at the end only (chunked encoding).
            Some(_) => SizeHint::default(),
            None => SizeHint::with_exact(self.left),
        }
    }
}
