//! The value formats of the `OTEL_*` environment variables, as the OpenTelemetry
//! specification defines them (`specification/configuration/sdk-environment-variables.md`
//! and `common.md`): an empty value is unset, booleans are `true` in any case, lists of
//! `key=value` pairs are comma-separated with percent-encoded values.
//!
//! Nothing here slices a `&str` at a byte index that could fall inside a character: a
//! value such as `k=%aé` (issue 8) is handled byte by byte.

/// Looks a variable up: how the process environment (or a test's map) is read.
pub(crate) type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The first of `names` that is set to something other than blanks, with its name (the
/// metrics-specific variable comes first where there is one).
pub(crate) fn first(env: Env<'_>, names: &[&'static str]) -> Option<(&'static str, String)> {
    names
        .iter()
        .find_map(|n| env(n).filter(|v| !v.trim().is_empty()).map(|v| (*n, v)))
}

/// A boolean: `true` in any case is true; anything else is false, and a warning unless it
/// is `false` ("Any value not explicitly defined here as a true value, including unset and
/// empty values, MUST be interpreted as false").
pub(crate) fn boolean(name: &str, value: &str, warnings: &mut Vec<String>) -> bool {
    let v = value.trim();
    if v.eq_ignore_ascii_case("true") {
        return true;
    }
    if !v.eq_ignore_ascii_case("false") {
        warnings.push(format!("{name}={v:?} is not true or false: taken as false"));
    }
    false
}

/// Percent-decode `s` (`%41` → `A`). None when a `%` is not followed by two hex digits or
/// the result is not UTF-8.
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = bytes.get(i + 1).and_then(|b| hex(*b))?;
            let lo = bytes.get(i + 2).and_then(|b| hex(*b))?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// One `key=value` entry of a list variable that could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PairError {
    /// The entry (1-based) has no `=`.
    NoEquals(usize),
    /// The entry (1-based) has an empty key.
    EmptyKey(usize),
    /// The entry (1-based) does not percent-decode.
    Encoding(usize),
}

impl std::fmt::Display for PairError {
    // The entries themselves are not shown: header values are credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PairError::NoEquals(n) => write!(f, "entry {n} is not key=value"),
            PairError::EmptyKey(n) => write!(f, "entry {n} has an empty key"),
            PairError::Encoding(n) => write!(f, "entry {n} has an invalid percent-encoding"),
        }
    }
}

/// The `key=value,key=value` entries of `s`, split at the first `=` and trimmed, not
/// decoded. Empty entries (a trailing comma) are skipped. Each entry is either a pair or
/// the reason it is not one.
pub(crate) fn pairs(s: &str) -> Vec<Result<(&str, &str), PairError>> {
    s.split(',')
        .enumerate()
        .filter(|(_, e)| !e.trim().is_empty())
        .map(|(i, e)| {
            let n = i + 1;
            let (k, v) = e.split_once('=').ok_or(PairError::NoEquals(n))?;
            let k = k.trim();
            if k.is_empty() {
                return Err(PairError::EmptyKey(n));
            }
            Ok((k, v.trim()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_never_slices_inside_a_character() {
        // Regression (issue 8): `k=%aé` panicked at start, `&s[i+1..i+3]` cut the `é`.
        assert_eq!(percent_decode("%aé"), None);
        assert_eq!(percent_decode("é%"), None);
        assert_eq!(percent_decode("%é"), None);
        assert_eq!(percent_decode("%%"), None);
        assert_eq!(
            percent_decode("Basic%20abc%3D%3d"),
            Some("Basic abc==".into())
        );
        assert_eq!(percent_decode("caf%C3%A9"), Some("café".into()));
        assert_eq!(percent_decode("%FF"), None, "not UTF-8");
        assert_eq!(percent_decode("plain é"), Some("plain é".into()));
    }

    #[test]
    fn pairs_are_split_at_the_first_equals_and_trimmed() {
        let p = pairs(" a = 1 ,b=x%2Cy=z,, c ,=v,e=");
        assert_eq!(
            p,
            vec![
                Ok(("a", "1")),
                Ok(("b", "x%2Cy=z")),
                Err(PairError::NoEquals(4)),
                Err(PairError::EmptyKey(5)),
                Ok(("e", "")),
            ]
        );
        assert_eq!(pairs("k=%aé"), vec![Ok(("k", "%aé"))]);
    }

    #[test]
    fn booleans() {
        let mut w = Vec::new();
        assert!(boolean("X", "TRUE", &mut w));
        assert!(boolean("X", " true ", &mut w));
        assert!(!boolean("X", "False", &mut w));
        assert!(w.is_empty());
        assert!(!boolean("X", "yes", &mut w));
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn the_first_non_blank_variable_wins() {
        let env = |k: &str| match k {
            "A" => Some("  ".to_string()),
            "B" => Some("b".to_string()),
            "C" => Some("c".to_string()),
            _ => None,
        };
        assert_eq!(first(&env, &["A", "B", "C"]), Some(("B", "b".into())));
        assert_eq!(first(&env, &["Z"]), None);
    }
}
