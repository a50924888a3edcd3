//! Deserializers that check a value while it is read, so that a value out of range is a
//! configuration error naming its key and, for YAML, its line: `test-config` refuses it.
//! Every number of the configuration goes through one of them: a number that passes can be
//! turned into a `Duration`, added to a time or used as a size without overflow or panic.
//! The bounds are in `defaults`, with why each is what it is.
//!
//! The checks run inside serde visitors on purpose: serde_yaml gives an error raised by the
//! visitor of a scalar that scalar's line, and an error raised after the value was read the
//! line of the enclosing mapping (its first key), which would be wrong.
//!
//! Paths and names that reach the operating system (a program, a directory, a unit) may not
//! hold a NUL byte: they could never be passed to it, and would fail at every attempt
//! instead of once, here.

use std::fmt;
use std::marker::PhantomData;
use std::path::PathBuf;

use serde::de::{self, Deserializer, Visitor};

use crate::defaults;

/// An error saying that `v` is not within `[min, max]` of `unit`.
fn out_of_range<E: de::Error>(
    v: impl fmt::Debug,
    min: impl fmt::Debug,
    max: impl fmt::Debug,
    unit: &str,
) -> E {
    E::custom(format!(
        "{v:?} is out of range: must be from {min:?} to {max:?} {unit}"
    ))
}

/// An integer within `[min, max]`.
struct Int {
    min: u64,
    max: u64,
    unit: &'static str,
}

impl Visitor<'_> for Int {
    type Value = u64;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "an integer from {} to {} ({})",
            self.min, self.max, self.unit
        )
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        if (self.min..=self.max).contains(&v) {
            Ok(v)
        } else {
            Err(out_of_range(v, self.min, self.max, self.unit))
        }
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(out_of_range(v, self.min, self.max, self.unit)),
        }
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<u64, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(out_of_range(v, self.min, self.max, self.unit)),
        }
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<u64, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(out_of_range(v, self.min, self.max, self.unit)),
        }
    }
}

/// A number of seconds that may be fractional (`1.5`), within `[min, max]` (NaN is not).
struct Seconds {
    min: f64,
    max: f64,
}

impl Visitor<'_> for Seconds {
    type Value = f64;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a number of seconds from {} to {}", self.min, self.max)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
        if v >= self.min && v <= self.max {
            Ok(v)
        } else {
            Err(out_of_range(v, self.min, self.max, "seconds"))
        }
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
        self.visit_f64(v as f64)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
        self.visit_f64(v as f64)
    }
}

/// `None` for `null`, else the inner visitor's value.
struct Optional<V>(V);

impl<'de, V: Visitor<'de>> Visitor<'de> for Optional<V>
where
    V::Value: 'de,
{
    type Value = Option<V::Value>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)?;
        f.write_str(" or null")
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self.0).map(Some)
    }
}

fn int<'de, D: Deserializer<'de>>(
    d: D,
    min: u64,
    max: u64,
    unit: &'static str,
) -> Result<u64, D::Error> {
    d.deserialize_u64(Int { min, max, unit })
}

fn size<'de, D: Deserializer<'de>>(
    d: D,
    min: usize,
    max: usize,
    unit: &'static str,
) -> Result<usize, D::Error> {
    // usize is u64 on the targets we build for; the bounds are far below either.
    int(d, min as u64, max as u64, unit).map(|v| v as usize)
}

/// `reaction.hold`.
pub(super) fn hold<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    int(d, 0, defaults::MAX_HOLD_SECONDS, "seconds")
}

/// `reaction.timeout`.
pub(super) fn reaction_timeout<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    d.deserialize_f64(Seconds {
        min: defaults::MIN_TIMEOUT_SECONDS,
        max: defaults::MAX_REACTION_TIMEOUT_SECONDS,
    })
}

/// `otlp.interval`.
pub(super) fn otlp_interval<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    d.deserialize_option(Optional(Seconds {
        min: defaults::MIN_OTLP_INTERVAL_SECONDS,
        max: defaults::MAX_OTLP_INTERVAL_SECONDS,
    }))
}

/// `otlp.timeout`.
pub(super) fn otlp_timeout<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    d.deserialize_option(Optional(Seconds {
        min: defaults::MIN_TIMEOUT_SECONDS,
        max: defaults::MAX_OTLP_TIMEOUT_SECONDS,
    }))
}

/// `listen.header_timeout`, `listen.response_timeout`.
pub(super) fn http_timeout<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    d.deserialize_f64(Seconds {
        min: defaults::MIN_TIMEOUT_SECONDS,
        max: defaults::MAX_HTTP_TIMEOUT_SECONDS,
    })
}

/// `listen.max_connections`.
pub(super) fn max_connections<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    size(d, 1, defaults::MAX_MAX_CONNECTIONS, "connections")
}

/// `otlp.max_request_size`.
pub(super) fn max_request_size<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    size(
        d,
        defaults::MIN_OTLP_MAX_REQUEST_SIZE,
        defaults::MAX_OTLP_MAX_REQUEST_SIZE,
        "bytes",
    )
}

/// `metrics.cardinality_limit`.
pub(super) fn cardinality_limit<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    size(d, 1, defaults::MAX_CARDINALITY_LIMIT, "series")
}

/// `metrics.attribution_memory`.
pub(super) fn attribution_memory<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    size(d, 0, defaults::MAX_ATTRIBUTION_MEMORY, "matches")
}

/// `metrics.max_label_value_length`.
pub(super) fn max_label_value_length<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    size(
        d,
        defaults::MIN_MAX_LABEL_VALUE_LENGTH,
        defaults::MAX_MAX_LABEL_VALUE_LENGTH,
        "bytes",
    )
}

/// `reaction.logs.max_line_length` (read through `LogsRaw`, hence the `Option`).
pub(super) fn max_line_length<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    let v = d.deserialize_option(Optional(Int {
        min: defaults::MIN_MAX_LINE_LENGTH as u64,
        max: defaults::MAX_MAX_LINE_LENGTH as u64,
        unit: "bytes",
    }))?;
    Ok(v.map(|v| v as usize))
}

/// `state.recall`.
pub(super) fn recall<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    int(d, 0, defaults::MAX_STATE_RECALL_SECONDS, "seconds")
}

/// `metrics.otel_endpoint.patterns`: reaction pattern names, each non-empty and listed
/// once (`null` is the empty list).
pub(super) fn pattern_names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    use serde::Deserialize;
    let names = Option::<Vec<String>>::deserialize(d)?.unwrap_or_default();
    for (i, n) in names.iter().enumerate() {
        if n.is_empty() || n.contains('\0') {
            return Err(de::Error::custom(format!(
                "{n:?} is not a pattern name (empty, or with a NUL byte)"
            )));
        }
        if names[..i].contains(n) {
            return Err(de::Error::custom(format!("{n:?} is listed twice")));
        }
    }
    Ok(names)
}

/// A text without NUL byte: a unit name or a path (`T` is `String` or `PathBuf`).
struct NoNul<T>(PhantomData<T>);

impl<T: From<String>> Visitor<'_> for NoNul<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string without NUL byte")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        if v.contains('\0') {
            Err(E::custom(
                "contains a NUL byte, which cannot be passed to the operating system",
            ))
        } else {
            Ok(T::from(v.to_owned()))
        }
    }
}

/// A path: no NUL byte.
pub(super) fn path<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    d.deserialize_str(NoNul(PhantomData))
}

/// An optional path: no NUL byte.
pub(super) fn optional_path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    d.deserialize_option(Optional(NoNul(PhantomData)))
}

/// An optional unit name: no NUL byte.
pub(super) fn optional_unit<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    d.deserialize_option(Optional(NoNul(PhantomData)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a checked deserializer on a JSON text: the value or the error's message.
    macro_rules! json {
        ($f:expr, $text:expr) => {{
            let mut d = serde_json::Deserializer::from_str($text);
            $f(&mut d).map_err(|e| e.to_string())
        }};
    }

    #[test]
    fn ranges_are_inclusive_and_nan_and_negatives_are_out() {
        assert_eq!(json!(hold, "86400"), Ok(86_400));
        assert_eq!(json!(hold, "0"), Ok(0));
        let e = json!(hold, "18446744073709551615").unwrap_err();
        assert!(
            e.contains("18446744073709551615 is out of range: must be from 0 to 86400 seconds"),
            "{e}"
        );
        assert!(json!(hold, "-1").is_err());
        assert!(json!(hold, "1.5").is_err());
        assert_eq!(json!(reaction_timeout, "0.001"), Ok(0.001));
        assert_eq!(json!(reaction_timeout, "3600"), Ok(3600.0));
        let e = json!(reaction_timeout, "1e300").unwrap_err();
        assert!(e.contains("1e300 is out of range"), "{e}");
        assert!(json!(reaction_timeout, "0").is_err());
        assert_eq!(json!(otlp_interval, "null"), Ok(None));
        assert_eq!(json!(otlp_interval, "1.5"), Ok(Some(1.5)));
        assert!(json!(otlp_interval, "0").is_err());
        assert_eq!(json!(http_timeout, "0.5"), Ok(0.5));
        assert!(json!(http_timeout, "0").is_err());
        assert!(json!(http_timeout, "1e300").is_err());
        assert_eq!(json!(max_connections, "1"), Ok(1));
        assert!(json!(max_connections, "0").is_err());
        assert!(json!(max_connections, "1000001").is_err());
        assert_eq!(json!(path, r#""/a/b""#), Ok(PathBuf::from("/a/b")));
        assert!(json!(path, r#""/a\u0000b""#)
            .unwrap_err()
            .contains("NUL byte"));
        assert_eq!(json!(optional_unit, "null"), Ok(None));
        assert_eq!(json!(pattern_names, "null"), Ok(vec![]));
        assert_eq!(
            json!(pattern_names, r#"["ip"]"#),
            Ok(vec!["ip".to_string()])
        );
        assert!(json!(pattern_names, r#"["ip", "ip"]"#)
            .unwrap_err()
            .contains("listed twice"));
        assert!(json!(pattern_names, r#"[""]"#).is_err());
    }
}
