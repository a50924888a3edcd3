//! The HTTP server under the routes: accepting connections within a cap, TLS, timeouts,
//! basic authentication and the web configuration's headers, then HTTP/1.1 (hyper) to the
//! router. What each bound does and what happens past it is in the README ("Limits and
//! hostile input"); in short:
//!
//! - at most `listen.max_connections` connections (lowered to fit `RLIMIT_NOFILE`); at the
//!   cap a new connection replaces the longest idle one, or is closed if none is idle
//!   ([`conns`]);
//! - `listen.header_timeout` for the TLS handshake and each request head (also between
//!   requests of a kept-alive connection): then the connection is closed;
//! - `listen.response_timeout` from a request to the last byte of its response handed to
//!   the connection: then the connection is closed and the response dropped (a `/metrics`
//!   page's counts go to the next scrape);
//! - every connection runs in its own task and a response never holds a lock while it is
//!   sent, so a slow or stalled client delays nobody else;
//! - every refusal is counted (`reaction_exporter_http_failures_total{kind}`) and logged
//!   at most once per kind and period.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, HeaderName, HeaderValue, Request, Response, StatusCode};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::defaults;
use crate::internal::counts::HttpFailure;
use crate::internal::events::HttpFailed;
use crate::internal::Internal;

mod auth;
mod conns;
pub(crate) mod gzip;
mod reload;

pub(crate) use reload::WebHandle;

use auth::{Verdict, Verifier};
use conns::{Admission, Conn, Table};
use reload::Active;

/// The bounds of the server (from `listen`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_connections: usize,
    pub(crate) header_timeout: Duration,
    pub(crate) response_timeout: Duration,
}

/// What every connection shares.
struct Shared {
    router: axum::Router,
    limits: Limits,
    internal: Arc<Internal>,
    verifier: Verifier,
}

impl Shared {
    fn failed(&self, kind: HttpFailure, peer: Option<SocketAddr>, detail: &dyn std::fmt::Display) {
        self.internal.emit(HttpFailed { kind, peer, detail });
    }
}

/// `max_connections` lowered so that connections leave [`defaults::FD_RESERVE`] file
/// descriptors of `RLIMIT_NOFILE` for the rest.
fn fitted_max_connections(max: usize) -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0
        || lim.rlim_cur == libc::RLIM_INFINITY
    {
        return max;
    }
    let room = lim.rlim_cur.saturating_sub(defaults::FD_RESERVE).max(1);
    let fitted = max.min(usize::try_from(room).unwrap_or(usize::MAX));
    if fitted < max {
        tracing::warn!(
            max_connections = max,
            nofile = lim.rlim_cur,
            "listen.max_connections lowered to {fitted}: RLIMIT_NOFILE ({}) minus {} \
             descriptors kept for the rest",
            lim.rlim_cur,
            defaults::FD_RESERVE
        );
    }
    fitted
}

/// Serve `router` on `listener` until `shutdown` completes, then finish the requests in
/// flight (each within its deadline) and return.
pub(crate) async fn serve(
    listener: TcpListener,
    router: axum::Router,
    web: WebHandle,
    limits: Limits,
    internal: Arc<Internal>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = Limits {
        max_connections: fitted_max_connections(limits.max_connections),
        ..limits
    };
    let shared = Arc::new(Shared {
        router,
        limits,
        internal,
        verifier: Verifier::new(),
    });
    let table = Table::new(limits.max_connections);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors, most likely: wait instead of spinning.
                        shared.failed(HttpFailure::Accept, None, &format!("accept failed: {e}"));
                        tokio::time::sleep(defaults::ACCEPT_BACKOFF).await;
                        continue;
                    }
                };
                let slot = match table.admit() {
                    Admission::Admitted(s) => s,
                    Admission::Evicting(s, idle) => {
                        shared.failed(
                            HttpFailure::ConnectionLimit,
                            Some(peer),
                            &format!(
                                "{} connections open (listen.max_connections): closed the one \
                                 idle for {} ms to make room",
                                limits.max_connections,
                                idle.as_millis()
                            ),
                        );
                        s
                    }
                    Admission::Refused => {
                        shared.failed(
                            HttpFailure::ConnectionLimit,
                            Some(peer),
                            &format!(
                                "{} connections open (listen.max_connections), all answering \
                                 requests: new connection closed",
                                limits.max_connections
                            ),
                        );
                        drop(stream);
                        continue;
                    }
                };
                let active = web.current();
                let shared = shared.clone();
                let stop = stop_rx.clone();
                tasks.spawn(async move {
                    connection(stream, peer, &shared, &slot.conn, active, stop).await;
                    drop(slot);
                });
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// Both kinds of connection, for hyper.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Go's answer to plain HTTP on a TLS port (net/http `server.go`), for the same reason: a
/// clear error instead of a reset.
const PLAIN_HTTP_ANSWER: &[u8] =
    b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";

/// The first byte of a TLS record carrying a handshake (a ClientHello).
const TLS_HANDSHAKE: u8 = 0x16;

/// TLS (if configured) then HTTP/1.1 on one connection, within its deadlines, until the
/// client leaves, a deadline passes, the table evicts it or the server stops.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    conn: &Arc<Conn>,
    active: Arc<Active>,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let limits = shared.limits;
    let handshake_by = tokio::time::Instant::now() + limits.header_timeout;
    let io: Box<dyn Io> = match &active.tls {
        None => Box::new(stream),
        Some(acceptor) => {
            let handshake = async {
                let mut first = [0u8; 1];
                match stream.peek(&mut first).await {
                    Ok(1) if first[0] != TLS_HANDSHAKE => {
                        let mut stream = stream;
                        let _ = stream.write_all(PLAIN_HTTP_ANSWER).await;
                        let _ = stream.shutdown().await;
                        shared.failed(
                            HttpFailure::PlainHttp,
                            Some(peer),
                            &"plain HTTP sent to the TLS port: answered 400",
                        );
                        return None;
                    }
                    Ok(1) => {}
                    _ => return None,
                }
                match acceptor.accept(stream).await {
                    Ok(tls) => Some(tls),
                    Err(e) => {
                        shared.failed(
                            HttpFailure::TlsHandshake,
                            Some(peer),
                            &format!("TLS handshake failed: {e}"),
                        );
                        None
                    }
                }
            };
            tokio::select! {
                r = tokio::time::timeout_at(handshake_by, handshake) => match r {
                    Ok(Some(tls)) => Box::new(tls),
                    Ok(None) => return,
                    Err(_) => {
                        shared.failed(
                            HttpFailure::HeaderTimeout,
                            Some(peer),
                            &format!(
                                "no TLS handshake within listen.header_timeout ({} s): closed",
                                limits.header_timeout.as_secs_f64()
                            ),
                        );
                        return;
                    }
                },
                _ = conn.evicted() => return,
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    };

    let service = {
        let shared = shared.clone();
        let conn = conn.clone();
        hyper::service::service_fn(move |req| {
            handle(req, shared.clone(), active.clone(), conn.clone(), peer)
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(defaults::HTTP_MAX_BUFFER)
        .keep_alive(true);
    let http = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(http);
    let mut stopping = false;
    loop {
        let deadline = conn.deadline();
        tokio::select! {
            r = http.as_mut() => {
                if let Err(e) = r {
                    // A timeout after a request is a kept-alive connection left idle, as
                    // clients do between scrapes: not a failure.
                    if e.is_timeout() && conn.requests() == 0 {
                        shared.failed(
                            HttpFailure::HeaderTimeout,
                            Some(peer),
                            &format!(
                                "no complete request within listen.header_timeout ({} s): closed",
                                limits.header_timeout.as_secs_f64()
                            ),
                        );
                    } else if !e.is_timeout() {
                        tracing::debug!(%peer, "HTTP connection: {e}");
                    }
                }
                return;
            }
            _ = tokio::time::sleep_until(deadline.map_or_else(tokio::time::Instant::now, Into::into)),
                if deadline.is_some() =>
            {
                if conn.deadline().is_some_and(|d| d <= Instant::now()) {
                    shared.failed(
                        HttpFailure::ResponseTimeout,
                        Some(peer),
                        &format!(
                            "response not handed over within listen.response_timeout ({} s): \
                             connection closed, response dropped",
                            limits.response_timeout.as_secs_f64()
                        ),
                    );
                    return;
                }
            }
            _ = conn.changed() => {}
            _ = conn.evicted() => return,
            _ = stop.wait_for(|s| *s), if !stopping => {
                stopping = true;
                http.as_mut().graceful_shutdown();
            }
        }
    }
}

/// One request: authentication, the route, the configured headers; the response's body
/// tells the connection when it is handed over.
async fn handle(
    req: Request<Incoming>,
    shared: Arc<Shared>,
    active: Arc<Active>,
    conn: Arc<Conn>,
    peer: SocketAddr,
) -> Result<Response<Tracked>, Infallible> {
    conn.request_started(Instant::now() + shared.limits.response_timeout);
    // Dropped with the request (client gone while the page is computed) or with the
    // response's body once handed over.
    let answering = Answering(conn);
    let refusal = match active.users() {
        None => None,
        Some(users) => {
            let authorization = req
                .headers()
                .get(header::AUTHORIZATION)
                .map(|v| v.as_bytes());
            match shared.verifier.check(users, authorization).await {
                Verdict::Allowed => None,
                Verdict::Denied => {
                    shared.failed(
                        HttpFailure::Unauthorized,
                        Some(peer),
                        &"missing or wrong basic-auth credentials: answered 401",
                    );
                    Some(refuse(StatusCode::UNAUTHORIZED))
                }
                Verdict::Busy => {
                    shared.failed(
                        HttpFailure::AuthBusy,
                        Some(peer),
                        &"new credentials could not be checked in time (bcrypt busy): answered 429",
                    );
                    Some(refuse(StatusCode::TOO_MANY_REQUESTS))
                }
            }
        }
    };
    let mut response = match refusal {
        Some(r) => r,
        None => {
            let mut router = shared.router.clone();
            match tower_service::Service::call(&mut router, req.map(Body::new)).await {
                Ok(r) => r,
                Err(e) => match e {},
            }
        }
    };
    for (name, value) in active.headers() {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            response.headers_mut().insert(n, v);
        }
    }
    Ok(response.map(|body| Tracked {
        body,
        _answering: answering,
    }))
}

/// A 401 (with `WWW-Authenticate: Basic`) or 429, as the toolkit words them.
fn refuse(status: StatusCode) -> Response<Body> {
    let text = format!("{}\n", status.canonical_reason().unwrap_or(""));
    let mut r = Response::new(Body::from(text));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if status == StatusCode::UNAUTHORIZED {
        h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
    }
    r
}

/// The connection is answering a request until this is dropped.
struct Answering(Arc<Conn>);

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.response_done();
    }
}

/// A response body that, dropped by hyper once handed over (or given up), ends its
/// connection's "answering" phase and so its deadline.
struct Tracked {
    body: Body,
    _answering: Answering,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
