//! An event counter's attribute set, given to the SDK as one attribute: every key and value
//! in one shared string (issue 13).
//!
//! Why: opentelemetry_sdk 0.33 keeps each series of an instrument, per reader, as the
//! `Vec<KeyValue>` it was first given (56 bytes per attribute, and an allocation per value
//! that is not shared), hashes that whole list with SipHash on every add
//! (`ValueMap::measure`), and copies it into every data point of a collection
//! (`collect_and_reset`). One attribute whose value is one `Arc<str>` costs one list entry,
//! one string, one hash of one string, and a collection copies a list of one entry and
//! shares the string. Measured on the end-to-end benchmark: see `benches/README.md`.
//!
//! The packing is the telemetry layer's own: [`super::Instruments::add`] packs, and every
//! consumer of a collection reads attributes through [`pairs`] (`/metrics`, the state
//! file, `/metrics/otel`, the gauges' bookkeeping) or [`unpack_request`] (OTLP), so nothing
//! outside sees the packed form. The same attribute set is always packed the same way (a
//! set that cannot be packed is given as it is, every time), so the SDK aggregates a series
//! as it would unpacked; the overflow series the SDK makes past the cardinality limit is
//! its own, unpacked.
//!
//! Format ([`encode`]): each key and each value after its length in bytes: one byte of that
//! value when it is under 127 (an ASCII character), else the byte 127, the length in
//! decimal and `:`. Any key and value, one way only, read without a search (the
//! consumers read a series' pairs a few times per scrape). Only sets whose keys are in
//! strictly increasing order are packed, so a packed set is sorted:
//! [`super::collect::Attrs`] keeps a series' attributes in the same format, sorted, and
//! takes a collected point's string as it is, without a copy. Sets with a value that is
//! not a string, or not in order (the labeller gives them in order: `label` tests), are
//! given to the SDK as they are.

use std::borrow::Cow;
use std::sync::Arc;

use opentelemetry::{Key, KeyValue, Value};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue as ProtoKeyValue};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;

use crate::metric::OVERFLOW_KEY;

/// The key of a packed attribute set: not a label name (`.` is not allowed in one), so it
/// cannot be an attribute of ours.
pub(crate) const KEY: &str = "reaction_exporter.attributes";

/// `attrs` as one attribute, or `None` when it is empty or cannot be packed (see the
/// module).
pub(crate) fn pack(attrs: &[KeyValue]) -> Option<KeyValue> {
    let strings = attrs.iter().all(|kv| matches!(kv.value, Value::String(_)));
    let in_order = attrs.windows(2).all(|w| w[0].key < w[1].key);
    // A packed set is never an overflow series': see `collect::point_attrs`.
    let overflow = attrs.iter().any(|kv| kv.key.as_str() == OVERFLOW_KEY);
    if attrs.is_empty() || !strings || !in_order || overflow {
        return None;
    }
    let s = encode(attrs.iter().map(|kv| match &kv.value {
        Value::String(v) => (kv.key.as_str(), v.as_str()),
        _ => ("", ""), // (checked above)
    }));
    Some(KeyValue::new(
        Key::from_static_str(KEY),
        Value::from(Arc::<str>::from(s)),
    ))
}

/// Lengths from this one on take more than their one byte.
const LONG: usize = 127;

/// `pairs` in the packed format, in the order given.
pub(crate) fn encode<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)> + Clone) -> String {
    let size = |part: &str| match part.len() {
        n if n < LONG => 1 + n,
        n => 2 + n.to_string().len() + n,
    };
    let len = pairs.clone().map(|(k, v)| size(k) + size(v)).sum();
    let mut s = String::with_capacity(len);
    for (k, v) in pairs {
        for part in [k, v] {
            match part.len() {
                // (An ASCII character: `n` < 127.)
                n if n < LONG => s.push(char::from(n as u8)),
                n => {
                    s.push(char::from(LONG as u8));
                    s.push_str(&n.to_string());
                    s.push(':');
                }
            }
            s.push_str(part);
        }
    }
    debug_assert_eq!(s.len(), len);
    s
}

/// The (key, value) pairs of an attribute list as the SDK gives it back: a packed set
/// unpacked, any other attribute as it is.
pub(crate) fn pairs<'a>(
    kvs: impl Iterator<Item = &'a KeyValue>,
) -> impl Iterator<Item = (&'a str, Cow<'a, str>)> {
    kvs.flat_map(|kv| match (kv.key.as_str(), &kv.value) {
        (KEY, Value::String(s)) => Pairs::Packed(Unpack::new(s.as_str())),
        (k, v) => Pairs::One(Some((k, v.as_str()))),
    })
}

enum Pairs<'a> {
    One(Option<(&'a str, Cow<'a, str>)>),
    Packed(Unpack<'a>),
}

impl<'a> Iterator for Pairs<'a> {
    type Item = (&'a str, Cow<'a, str>);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Pairs::One(one) => one.take(),
            Pairs::Packed(u) => u.next().map(|(k, v)| (k, Cow::Borrowed(v))),
        }
    }
}

/// The pairs of a packed string. Only [`encode`] makes one; a string it did not make ends
/// the pairs where it stops making sense (no panic), and [`Unpack::is_whole`] says so.
#[derive(Clone)]
pub(crate) struct Unpack<'a> {
    rest: &'a str,
    broken: bool,
}

impl<'a> Unpack<'a> {
    pub(crate) fn new(packed: &'a str) -> Unpack<'a> {
        Unpack {
            rest: packed,
            broken: false,
        }
    }

    /// Whether everything read so far was in the format, and nothing is left.
    pub(crate) fn is_whole(&self) -> bool {
        !self.broken && self.rest.is_empty()
    }

    /// The next part: its length, then its text.
    #[inline]
    fn part(&mut self) -> Option<&'a str> {
        let bytes = self.rest.as_bytes();
        let (len, start) = match usize::from(*bytes.first()?) {
            n if n < LONG => (n, 1),
            LONG => {
                let mut len = 0usize;
                let mut i = 1;
                loop {
                    match *bytes.get(i)? {
                        b':' if i > 1 => break,
                        // At most 10 digits: no overflow.
                        c @ b'0'..=b'9' if i <= 10 => len = len * 10 + usize::from(c - b'0'),
                        _ => return None,
                    }
                    i += 1;
                }
                (len, i + 1)
            }
            _ => return None,
        };
        let end = start.checked_add(len)?;
        let part = self.rest.get(start..end)?;
        self.rest = self.rest.get(end..)?;
        Some(part)
    }
}

impl<'a> Iterator for Unpack<'a> {
    type Item = (&'a str, &'a str);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() || self.broken {
            return None;
        }
        let pair = self.part().and_then(|k| Some((k, self.part()?)));
        self.broken = pair.is_none();
        pair
    }
}

/// Unpack every packed attribute set of an OTLP request (made from a collection by
/// opentelemetry-proto, which copies attributes as it finds them).
pub(crate) fn unpack_request(req: &mut ExportMetricsServiceRequest) {
    for rm in &mut req.resource_metrics {
        for sm in &mut rm.scope_metrics {
            for m in &mut sm.metrics {
                let points = match &mut m.data {
                    Some(Data::Sum(s)) => &mut s.data_points,
                    Some(Data::Gauge(g)) => &mut g.data_points,
                    _ => continue,
                };
                for p in points {
                    unpack_proto(&mut p.attributes);
                }
            }
        }
    }
}

fn unpack_proto(attrs: &mut Vec<ProtoKeyValue>) {
    let packed = match attrs.as_mut_slice() {
        [ProtoKeyValue {
            key,
            value:
                Some(AnyValue {
                    value: Some(any_value::Value::StringValue(s)),
                }),
            ..
        }] if key == KEY => std::mem::take(s),
        _ => return,
    };
    *attrs = Unpack::new(&packed)
        .map(|(k, v)| ProtoKeyValue {
            key: k.to_string(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v.to_string())),
            }),
            ..Default::default()
        })
        .collect();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kvs(pairs: &[(&'static str, &str)]) -> Vec<KeyValue> {
        pairs
            .iter()
            .map(|(k, v)| KeyValue::new(*k, v.to_string()))
            .collect()
    }

    fn unpacked(kv: &KeyValue) -> Vec<(String, String)> {
        pairs(std::iter::once(kv))
            .map(|(k, v)| (k.to_string(), v.into_owned()))
            .collect()
    }

    #[test]
    fn packed_pairs_come_back_as_given() {
        // Values with digits and `:`, empty, multi-byte, and around the one-byte lengths'
        // end (126, 127, 128 bytes) and far past it.
        let (l126, l127, l128, long) = (
            "a".repeat(126),
            "\u{e9}".repeat(63) + "b",
            "c".repeat(128),
            "d:1".repeat(30_000),
        );
        let given = [
            ("a126", l126.as_str()),
            ("a127", l127.as_str()),
            ("a128", l128.as_str()),
            ("filter", "failed=login:1"),
            ("ip", ""),
            ("long", long.as_str()),
            ("stream", "ssh"),
            ("ua", "Mozilla/5.0 (compatible; GPTBot/1.0)"),
            ("user", "r\u{f6}\u{f6}t:=12:"),
        ];
        assert_eq!(l127.len(), 127);
        let packed = pack(&kvs(&given)).unwrap();
        assert_eq!(packed.key.as_str(), KEY);
        let expect: Vec<(String, String)> = given
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(unpacked(&packed), expect);
        let Value::String(text) = &packed.value else {
            panic!("a string")
        };
        let mut u = Unpack::new(text.as_str());
        assert_eq!(u.by_ref().count(), given.len());
        assert!(u.is_whole());
    }

    #[test]
    fn what_cannot_be_packed_is_left_as_it_is() {
        assert!(pack(&[]).is_none());
        assert!(pack(&[KeyValue::new("code", 1)]).is_none());
        // Keys out of order, or twice: the SDK sorts them (and keeps one of a key).
        assert!(pack(&kvs(&[("user", "root"), ("ip", "192.0.2.1")])).is_none());
        assert!(pack(&kvs(&[("ip", "192.0.2.1"), ("ip", "192.0.2.2")])).is_none());
        // An overflow series' key: whether a set is an overflow series' is then known
        // without reading a packed string (`collect::point_attrs`).
        let overflow = kvs(&[("ip", "192.0.2.1"), (OVERFLOW_KEY, "true")]);
        assert!(pack(&overflow).is_none());
        // Not packed: read as they are.
        let plain = kvs(&[("stream", "ssh"), ("type", "start")]);
        let got: Vec<(&str, String)> = pairs(plain.iter())
            .map(|(k, v)| (k, v.into_owned()))
            .collect();
        assert_eq!(got, [("stream", "ssh".into()), ("type", "start".into())]);
    }

    #[test]
    fn equal_sets_pack_equal_and_different_ones_differ() {
        let a = pack(&kvs(&[("ip", "1.2.3.4"), ("user", "root")])).unwrap();
        let b = pack(&kvs(&[("ip", "1.2.3.4"), ("user", "root")])).unwrap();
        // The same text split otherwise must not pack the same.
        let c = pack(&kvs(&[("ip", "1.2.3.4\u{4}user\u{4}root")])).unwrap();
        let d = pack(&kvs(&[("ip", "1.2.3.4"), ("t", ""), ("user", "roo")])).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
        assert_eq!(
            unpacked(&c),
            [("ip".into(), "1.2.3.4\u{4}user\u{4}root".into())]
        );
    }

    #[test]
    fn a_string_pack_did_not_make_stops_without_panicking() {
        for s in [
            "\u{1}",
            "\u{1}k",
            "\u{1}k\u{2}v",
            "\u{1}k\u{7f}",
            "\u{1}k\u{7f}:",
            "\u{1}k\u{7f}1",
            "\u{1}k\u{7f}x:",
            "\u{1}k\u{7f}99999999999999999999:a",
            "\u{1}k\u{7f}5:abc",
            "\u{1}k\u{1}\u{e9}",
            "\u{1}k\u{1}v\u{2}",
            "\u{e9}",
        ] {
            let mut u = Unpack::new(s);
            assert!(u.by_ref().count() <= 1);
            assert!(!u.is_whole(), "{s:?}");
        }
        let mut u = Unpack::new("\u{1}a\u{1}x\u{1}b\u{7f}2:yy");
        assert_eq!(u.by_ref().collect::<Vec<_>>(), [("a", "x"), ("b", "yy")]);
        assert!(u.is_whole());
        assert!(Unpack::new("").is_whole());
    }

    #[test]
    fn an_otlp_request_is_unpacked_and_the_overflow_series_kept() {
        use crate::telemetry::otlp::test_requests::{point, request, sum};
        use opentelemetry_proto::tonic::metrics::v1::AggregationTemporality;
        let packed = pack(&kvs(&[("filter", "f"), ("ip", "192.0.2.1")])).unwrap();
        let mut req = request(vec![sum(
            "reaction.matches",
            "{match}",
            vec![
                point(&[(KEY, packed.value.as_str().as_ref())], 3, 0, 1),
                point(&[("otel.metric.overflow", "true")], 2, 0, 1),
            ],
            AggregationTemporality::Delta,
        )]);
        unpack_request(&mut req);
        let attrs: Vec<Vec<(String, String)>> = req.resource_metrics[0].scope_metrics[0].metrics[0]
            .data
            .iter()
            .flat_map(|d| match d {
                Data::Sum(s) => s.data_points.clone(),
                _ => vec![],
            })
            .map(|p| {
                p.attributes
                    .iter()
                    .map(|kv| {
                        let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                            Some(any_value::Value::StringValue(s)) => s.clone(),
                            other => format!("{other:?}"),
                        };
                        (kv.key.clone(), v)
                    })
                    .collect()
            })
            .collect();
        assert_eq!(
            attrs,
            [
                vec![
                    ("filter".into(), "f".into()),
                    ("ip".into(), "192.0.2.1".into())
                ],
                vec![("otel.metric.overflow".into(), "true".into())],
            ]
        );
    }
}
