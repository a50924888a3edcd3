//! What one export request came to, classified as the OTLP specification says
//! (opentelemetry-proto `docs/specification.md`, "Failures" for OTLP/gRPC and OTLP/HTTP,
//! "Throttling", "Partial Success"; opentelemetry-specification `protocol/exporter.md`,
//! "Retry"), and the backoff between retries.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use prost::Message;

use crate::defaults;

/// The outcome of one request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// Accepted. A partial success reports points the receiver rejected: "The client MUST
    /// NOT retry the request when it receives a partial success response".
    Delivered {
        /// `partial_success.rejected_data_points`.
        rejected: i64,
        /// `partial_success.error_message` (a warning may come with 0 rejected points).
        message: String,
    },
    /// A retryable failure: keep the data and retry, after `after` if the receiver said
    /// (`Retry-After`, `RetryInfo`), else after the backoff.
    Retry {
        /// The request may have reached the receiver (it may have been processed): it is
        /// in doubt and must be re-sent identical. False only when no connection could be
        /// made, so nothing was sent.
        reached: bool,
        after: Option<Duration>,
        /// For the log: the status or error.
        what: String,
    },
    /// The receiver refused the request for its size (HTTP 413, gRPC `RESOURCE_EXHAUSTED`
    /// without `RetryInfo`). Non-retryable as it is, but the same points in smaller
    /// requests are other requests: they may be tried.
    TooLarge { what: String },
    /// Not retryable: the data is dropped ("The client MUST drop the telemetry data").
    Refused {
        /// A short label for the self-metrics (`http_400`, `invalid_argument`).
        reason: String,
        /// What the receiver said (its `Status.message`, or a bounded text body).
        what: String,
    },
}

/// The `partial_success` of a success answer, as an outcome.
pub(crate) fn delivered(response: Option<ExportMetricsServiceResponse>) -> Outcome {
    let (rejected, message) = response
        .and_then(|r| r.partial_success)
        .map_or((0, String::new()), |p| {
            (p.rejected_data_points, p.error_message)
        });
    Outcome::Delivered { rejected, message }
}

/// `google.rpc.Status`, the body of an OTLP/HTTP error answer ("MUST be a
/// Protobuf-encoded Status") and the details of a gRPC status.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub(crate) code: i32,
    #[prost(string, tag = "2")]
    pub(crate) message: String,
    #[prost(message, repeated, tag = "3")]
    pub(crate) details: Vec<Any>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct Any {
    #[prost(string, tag = "1")]
    pub(crate) type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub(crate) value: Vec<u8>,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    pub(crate) retry_delay: Option<ProtoDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct ProtoDuration {
    #[prost(int64, tag = "1")]
    pub(crate) seconds: i64,
    #[prost(int32, tag = "2")]
    pub(crate) nanos: i32,
}

pub(crate) const RETRY_INFO_TYPE: &str = "type.googleapis.com/google.rpc.RetryInfo";

impl RpcStatus {
    /// The `RetryInfo` delay among the details, if any ("the server SHOULD include
    /// RetryInfo"), capped at [`defaults::OTLP_MAX_RETRY_DELAY`].
    pub(crate) fn retry_delay(&self) -> Option<Duration> {
        self.details
            .iter()
            .filter(|d| d.type_url == RETRY_INFO_TYPE)
            .find_map(|d| RetryInfo::decode(d.value.as_slice()).ok()?.retry_delay)
            .map(|d| {
                let d = Duration::from_secs(d.seconds.max(0) as u64)
                    + Duration::from_nanos(d.nanos.max(0) as u64);
                d.min(defaults::OTLP_MAX_RETRY_DELAY)
            })
    }
}

/// A gRPC status as an outcome ("OTLP/gRPC Response › Failures": the retryable codes;
/// `RESOURCE_EXHAUSTED` only with `RetryInfo`, "If no such status is returned, then the
/// RESOURCE_EXHAUSTED code SHOULD be treated as non-retryable" — a size limit answers so).
pub(crate) fn grpc(status: &tonic::Status) -> Outcome {
    use tonic::Code;
    let details = RpcStatus::decode(status.details()).ok();
    let retry_delay = details.as_ref().and_then(RpcStatus::retry_delay);
    let what = format!("{:?}: {}", status.code(), bounded(status.message()));
    match status.code() {
        Code::Ok => delivered(None),
        // tonic's server answers a message over its limit with OUT_OF_RANGE "decoded message
        // length too large" (tonic `codec/decode.rs`) where grpc-go says RESOURCE_EXHAUSTED:
        // retrying it unchanged would never succeed; smaller requests may.
        Code::OutOfRange if status.message().contains("message length too large") => {
            Outcome::TooLarge { what }
        }
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => Outcome::Retry {
            reached: !never_connected(status),
            after: retry_delay,
            what,
        },
        Code::ResourceExhausted if retry_delay.is_some() => Outcome::Retry {
            reached: true,
            after: retry_delay,
            what,
        },
        Code::ResourceExhausted => Outcome::TooLarge { what },
        code => Outcome::Refused {
            reason: grpc_reason(code).to_string(),
            what,
        },
    }
}

/// Whether the error is tonic's "could not connect" (so the request was never sent).
fn never_connected(status: &tonic::Status) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(e) = source {
        if e.is::<tonic::ConnectError>() {
            return true;
        }
        source = e.source();
    }
    false
}

fn grpc_reason(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

/// An HTTP answer as an outcome ("OTLP/HTTP Response › Failures": "The requests that
/// receive a response status code listed in following table SHOULD be retried. All other
/// 4xx or 5xx response status codes MUST NOT be retried": 429, 502, 503, 504; throttling
/// with `Retry-After`, "either an HTTP-date or a number of seconds").
///
/// `body` is what was read of the answer (bounded), `content_type` its type: the error
/// message is the `google.rpc.Status` message of a protobuf body, the `message` of a JSON
/// one, else a bounded prefix of the text (Prometheus and VictoriaMetrics answer errors in
/// plain text).
pub(crate) fn http(
    status: u16,
    retry_after: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
) -> Outcome {
    let kind = content_type
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase());
    if (200..300).contains(&status) {
        // Prometheus answers an empty body: full success.
        let response = match kind.as_deref() {
            _ if body.is_empty() => None,
            Some("application/json") => json_response(body),
            _ => ExportMetricsServiceResponse::decode(body).ok(),
        };
        return delivered(response);
    }
    let message = match kind.as_deref() {
        Some("application/x-protobuf") => RpcStatus::decode(body)
            .map(|s| s.message)
            .unwrap_or_else(|_| text(body)),
        Some("application/json") => serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("message")?.as_str().map(str::to_string))
            .unwrap_or_else(|| text(body)),
        _ => text(body),
    };
    let what = format!("HTTP {status}: {}", bounded(&message));
    match status {
        429 | 502 | 503 | 504 => Outcome::Retry {
            reached: true,
            after: retry_after.and_then(parse_retry_after),
            what,
        },
        413 => Outcome::TooLarge { what },
        _ => Outcome::Refused {
            reason: format!("http_{status}"),
            what,
        },
    }
}

/// A JSON `ExportMetricsServiceResponse`, read by hand: the OTLP JSON encoding writes
/// 64-bit integers as strings (`"rejectedDataPoints": "3"`), and decoders must accept
/// numbers too, which the generated serde code does not do for this field.
fn json_response(body: &[u8]) -> Option<ExportMetricsServiceResponse> {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsPartialSuccess;
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let Some(p) = v.get("partialSuccess") else {
        return Some(ExportMetricsServiceResponse::default());
    };
    let rejected = match p.get("rejectedDataPoints") {
        Some(serde_json::Value::String(s)) => s.parse().unwrap_or(0),
        Some(n) => n.as_i64().unwrap_or(0),
        None => 0,
    };
    let message = p
        .get("errorMessage")
        .and_then(|m| m.as_str())
        .unwrap_or_default()
        .to_string();
    Some(ExportMetricsServiceResponse {
        partial_success: Some(ExportMetricsPartialSuccess {
            rejected_data_points: rejected,
            error_message: message,
        }),
    })
}

/// `Retry-After`: delay-seconds or an HTTP-date (RFC 9110 §10.2.3), capped.
pub(crate) fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    let d = match v.parse::<u64>() {
        Ok(s) => Duration::from_secs(s),
        Err(_) => {
            let at = httpdate::parse_http_date(v).ok()?;
            at.duration_since(std::time::SystemTime::now())
                .unwrap_or(Duration::ZERO)
        }
    };
    Some(d.min(defaults::OTLP_MAX_RETRY_DELAY))
}

/// At most this many characters of a receiver's message are logged.
const SHOWN_CHARS: usize = 300;

fn text(body: &[u8]) -> String {
    let end = body.len().min(SHOWN_CHARS * 4);
    String::from_utf8_lossy(&body[..end]).trim().to_string()
}

fn bounded(s: &str) -> String {
    let mut out: String = s.chars().take(SHOWN_CHARS).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

/// Exponential backoff with jitter ("exporter.md › Retry": "MUST implement an exponential
/// back-off with jitter"): [`defaults::OTLP_INITIAL_BACKOFF`] doubled per failure in a
/// row up to [`defaults::OTLP_MAX_BACKOFF`], each wait drawn in the upper half of its
/// step; a receiver's delay (`Retry-After`, `RetryInfo`) is followed instead.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    failures: u32,
}

impl Backoff {
    /// The wait before the next attempt after one more failure.
    pub(crate) fn next(&mut self, after: Option<Duration>) -> Duration {
        let step = defaults::OTLP_INITIAL_BACKOFF
            .saturating_mul(1u32 << self.failures.min(16))
            .min(defaults::OTLP_MAX_BACKOFF);
        self.failures = self.failures.saturating_add(1);
        if let Some(a) = after {
            return a;
        }
        let half = step / 2;
        half + Duration::from_nanos(fastrand::u64(0..=half.as_nanos() as u64))
    }

    /// A success: the next failure starts over.
    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsPartialSuccess;

    fn retry_info(secs: i64) -> Any {
        Any {
            type_url: RETRY_INFO_TYPE.into(),
            value: RetryInfo {
                retry_delay: Some(ProtoDuration {
                    seconds: secs,
                    nanos: 0,
                }),
            }
            .encode_to_vec(),
        }
    }

    fn status(code: tonic::Code, details: Vec<Any>) -> tonic::Status {
        let body = RpcStatus {
            code: code as i32,
            message: "m".into(),
            details,
        };
        tonic::Status::with_details(code, "m", body.encode_to_vec().into())
    }

    /// The specification's gRPC table, code by code.
    #[test]
    fn grpc_codes_are_classified_as_the_table_says() {
        use tonic::Code::*;
        for code in [
            Cancelled,
            DeadlineExceeded,
            Aborted,
            OutOfRange,
            Unavailable,
            DataLoss,
        ] {
            assert!(
                matches!(
                    grpc(&status(code, vec![])),
                    Outcome::Retry {
                        reached: true,
                        after: None,
                        ..
                    }
                ),
                "{code:?}"
            );
        }
        for code in [
            Unknown,
            InvalidArgument,
            NotFound,
            AlreadyExists,
            PermissionDenied,
            FailedPrecondition,
            Unimplemented,
            Internal,
            Unauthenticated,
        ] {
            assert!(
                matches!(grpc(&status(code, vec![])), Outcome::Refused { .. }),
                "{code:?}"
            );
        }
        assert_eq!(
            grpc(&status(InvalidArgument, vec![])),
            Outcome::Refused {
                reason: "invalid_argument".into(),
                what: "InvalidArgument: m".into()
            }
        );
        // tonic's size refusal.
        assert!(matches!(
            grpc(&tonic::Status::out_of_range(
                "Error, decoded message length too large: found 5 bytes, the limit is: 4 bytes"
            )),
            Outcome::TooLarge { .. }
        ));
        // RESOURCE_EXHAUSTED: retryable only with RetryInfo; else a size refusal.
        assert!(matches!(
            grpc(&status(ResourceExhausted, vec![])),
            Outcome::TooLarge { .. }
        ));
        assert_eq!(
            grpc(&status(ResourceExhausted, vec![retry_info(7)])),
            Outcome::Retry {
                reached: true,
                after: Some(Duration::from_secs(7)),
                what: "ResourceExhausted: m".into()
            }
        );
        // RetryInfo on UNAVAILABLE is followed, and capped.
        assert!(matches!(
            grpc(&status(Unavailable, vec![retry_info(100_000)])),
            Outcome::Retry { after: Some(d), .. } if d == defaults::OTLP_MAX_RETRY_DELAY
        ));
    }

    /// The specification's HTTP table.
    #[test]
    fn http_statuses_are_classified_as_the_table_says() {
        for s in [429, 502, 503, 504] {
            assert!(
                matches!(
                    http(s, None, None, b""),
                    Outcome::Retry {
                        reached: true,
                        after: None,
                        ..
                    }
                ),
                "{s}"
            );
        }
        for s in [400, 401, 403, 404, 405, 408, 415, 500, 501, 505, 301] {
            assert!(
                matches!(http(s, None, None, b""), Outcome::Refused { ref reason, .. } if *reason == format!("http_{s}")),
                "{s}"
            );
        }
        assert!(matches!(
            http(413, None, None, b""),
            Outcome::TooLarge { .. }
        ));
        assert!(matches!(
            http(503, Some("12"), None, b""),
            Outcome::Retry { after: Some(d), .. } if d == Duration::from_secs(12)
        ));
        // An HTTP-date in the past: retry now.
        assert!(matches!(
            http(429, Some("Wed, 21 Oct 2015 07:28:00 GMT"), None, b""),
            Outcome::Retry {
                after: Some(Duration::ZERO),
                ..
            }
        ));
        let future =
            httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(60));
        assert!(matches!(
            http(429, Some(&future), None, b""),
            Outcome::Retry { after: Some(d), .. } if d > Duration::from_secs(55) && d <= Duration::from_secs(60)
        ));
        // Garbage: the backoff decides.
        assert!(matches!(
            http(503, Some("soon"), None, b""),
            Outcome::Retry { after: None, .. }
        ));
    }

    #[test]
    fn http_messages_come_from_the_body() {
        let pb = RpcStatus {
            code: 3,
            message: "bad points".into(),
            details: vec![],
        }
        .encode_to_vec();
        assert_eq!(
            http(400, None, Some("application/x-protobuf"), &pb),
            Outcome::Refused {
                reason: "http_400".into(),
                what: "HTTP 400: bad points".into()
            }
        );
        assert!(matches!(
            http(400, None, Some("application/json; charset=utf-8"), br#"{"code":3,"message":"bad json"}"#),
            Outcome::Refused { what, .. } if what == "HTTP 400: bad json"
        ));
        // Prometheus: plain text from http.Error.
        assert!(matches!(
            http(400, None, Some("text/plain; charset=utf-8"), b"out of order sample\n"),
            Outcome::Refused { what, .. } if what == "HTTP 400: out of order sample"
        ));
        let long = "é".repeat(10_000);
        assert!(matches!(
            http(400, None, None, long.as_bytes()),
            Outcome::Refused { what, .. } if what.chars().count() < 400
        ));
    }

    #[test]
    fn success_bodies_empty_protobuf_json() {
        let none = Outcome::Delivered {
            rejected: 0,
            message: String::new(),
        };
        assert_eq!(http(200, None, None, b""), none);
        assert_eq!(http(204, None, Some("application/x-protobuf"), b""), none);
        let partial = ExportMetricsServiceResponse {
            partial_success: Some(ExportMetricsPartialSuccess {
                rejected_data_points: 3,
                error_message: "dup".into(),
            }),
        };
        let expected = Outcome::Delivered {
            rejected: 3,
            message: "dup".into(),
        };
        assert_eq!(
            http(
                200,
                None,
                Some("application/x-protobuf"),
                &partial.encode_to_vec()
            ),
            expected
        );
        assert_eq!(
            http(
                200,
                None,
                Some("application/json"),
                br#"{"partialSuccess":{"rejectedDataPoints":"3","errorMessage":"dup"}}"#
            ),
            expected
        );
        assert_eq!(
            http(
                200,
                None,
                Some("application/json"),
                br#"{"partialSuccess":{"rejectedDataPoints":3,"errorMessage":"dup"}}"#
            ),
            expected
        );
        // Unreadable success body: still a success.
        assert_eq!(
            http(200, None, Some("application/x-protobuf"), b"\xff\xff"),
            none
        );
    }

    #[test]
    fn backoff_doubles_with_jitter_and_follows_the_receiver() {
        let mut b = Backoff::default();
        let waits: Vec<Duration> = (0..8).map(|_| b.next(None)).collect();
        for (i, w) in waits.iter().enumerate() {
            let step = (defaults::OTLP_INITIAL_BACKOFF * (1 << i)).min(defaults::OTLP_MAX_BACKOFF);
            assert!(
                *w >= step / 2 && *w <= step,
                "{i}: {w:?} for a step of {step:?}"
            );
        }
        assert_eq!(b.next(Some(Duration::from_secs(3))), Duration::from_secs(3));
        b.reset();
        assert!(b.next(None) <= defaults::OTLP_INITIAL_BACKOFF);
    }
}
