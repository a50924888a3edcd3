//! Parsing the output of `reaction show`: the actions waiting to run, per match.
//!
//! ```yaml
//! ssh:                      # stream
//!   failedlogin:            # filter
//!     "1.2.3.4":            # match values joined by ONE space
//!       matches: 2          # omitted when 0
//!       actions:            # omitted when none pending
//!         unban: ["2026-11-27 10:00:00"]   # one entry per pending execution
//! ```

use serde_yaml::{Mapping, Value};

use super::ReactionError;

/// Pending executions of one action for one match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PendingEntry {
    pub stream: String,
    pub filter: String,
    /// Match values joined by ONE space, as reaction shows them (see [`split_key`]).
    pub key: String,
    pub action: String,
    /// Number of pending executions of that action for that match (always > 0).
    pub count: u64,
}

/// Parses `reaction show` YAML: stream → filter → key → `{ matches: N?, actions: { name:
/// [times...] }? }`, in document order.
///
/// Keys are taken as strings whatever they contain (spaces, quotes, unicode); a key YAML
/// types as a number or a boolean is turned back into its text. Entries with no pending
/// action produce nothing. Unknown fields are ignored, and so is any part that does not have
/// the expected shape (logged at debug level). An action's value may be a list (one item per
/// pending execution), a count, or a single time. An empty output means nothing is pending.
///
/// Errors: invalid YAML, or a document whose top level is neither empty nor a mapping.
pub(crate) fn parse_show(yaml: &str) -> Result<Vec<PendingEntry>, ReactionError> {
    let root: Value = serde_yaml::from_str(yaml).map_err(|e| ReactionError::Syntax {
        origin: "`reaction show` output".to_owned(),
        detail: e.to_string(),
    })?;
    let streams = match &root {
        Value::Null => return Ok(Vec::new()),
        Value::Mapping(map) => map,
        other => {
            return Err(ReactionError::Output {
                command: "show",
                detail: format!("expected a mapping of streams, got {}", type_name(other)),
            })
        }
    };
    let mut out = Vec::new();
    for (stream, filters) in streams {
        let (Some(stream), Some(filters)) = (key_string(stream), mapping(filters)) else {
            tracing::debug!("`reaction show`: skipping a stream entry of unexpected shape");
            continue;
        };
        for (filter, matches) in filters {
            let (Some(filter), Some(matches)) = (key_string(filter), mapping(matches)) else {
                tracing::debug!(stream = %stream, "`reaction show`: skipping a filter entry of unexpected shape");
                continue;
            };
            for (key, entry) in matches {
                let (Some(key), Some(entry)) = (key_string(key), mapping(entry)) else {
                    tracing::debug!(stream = %stream, filter = %filter, "`reaction show`: skipping a match entry of unexpected shape");
                    continue;
                };
                let Some(actions) = entry.get("actions").and_then(mapping) else {
                    continue;
                };
                for (action, pending) in actions {
                    let Some(action) = key_string(action) else {
                        continue;
                    };
                    let count = pending_count(pending);
                    if count > 0 {
                        out.push(PendingEntry {
                            stream: stream.clone(),
                            filter: filter.clone(),
                            key: key.clone(),
                            action,
                            count,
                        });
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Number of pending executions in an action's value.
fn pending_count(value: &Value) -> u64 {
    match value {
        Value::Sequence(items) => items.len() as u64,
        Value::Number(n) => n.as_u64().unwrap_or(0),
        Value::String(_) => 1,
        Value::Mapping(map) => map.len() as u64,
        Value::Tagged(tagged) => pending_count(&tagged.value),
        Value::Null | Value::Bool(_) => 0,
    }
}

fn mapping(value: &Value) -> Option<&Mapping> {
    match value {
        Value::Mapping(map) => Some(map),
        Value::Tagged(tagged) => mapping(&tagged.value),
        _ => None,
    }
}

/// A mapping key as text. A key YAML types as a number or boolean (an unquoted `1234`) is
/// given back as written as far as serde_yaml allows.
fn key_string(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some(String::new()),
        _ => None,
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// Splits a `show` key back into `n` pattern values.
///
/// 1. `n == 0` gives no value and `n == 1` the whole key.
/// 2. If the key splits on `' '` into exactly `n` parts, those are the values.
/// 3. Otherwise a value contains a space: the first of the `known` candidates (e.g. value
///    tuples recently seen in match lines) with `n` values whose `join(" ")` equals the key.
/// 4. Otherwise, the documented fallback: the first `n - 1` space-separated words, then the
///    rest of the key (spaces included) as the last value; if the key has fewer than `n`
///    words, the missing values are empty strings.
pub(crate) fn split_key<'a, S: AsRef<str> + 'a>(
    key: &str,
    n: usize,
    known: impl IntoIterator<Item = &'a [S]>,
) -> Vec<String> {
    match n {
        0 => return Vec::new(),
        1 => return vec![key.to_owned()],
        _ => {}
    }
    let parts: Vec<&str> = key.split(' ').collect();
    if parts.len() == n {
        return parts.into_iter().map(str::to_owned).collect();
    }
    for candidate in known {
        if candidate.len() == n && joins_to(candidate, key) {
            return candidate.iter().map(|v| v.as_ref().to_owned()).collect();
        }
    }
    let mut values: Vec<String> = key.splitn(n, ' ').map(str::to_owned).collect();
    values.resize(n, String::new());
    values
}

/// Whether `values.join(" ") == key`, without allocating.
fn joins_to<S: AsRef<str>>(values: &[S], key: &str) -> bool {
    let mut rest = key;
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            match rest.strip_prefix(' ') {
                Some(r) => rest = r,
                None => return false,
            }
        }
        match rest.strip_prefix(value.as_ref()) {
            Some(r) => rest = r,
            None => return false,
        }
    }
    rest.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(stream: &str, filter: &str, key: &str, action: &str, count: u64) -> PendingEntry {
        PendingEntry {
            stream: stream.into(),
            filter: filter.into(),
            key: key.into(),
            action: action.into(),
            count,
        }
    }

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_documented_shape() {
        let yaml = r#"
ssh:
  failedlogin:
    "1.2.3.4":
      matches: 2
      actions:
        unban: ["2026-11-27 10:00:00"]
    "5.6.7.8":
      matches: 1
"#;
        assert_eq!(
            parse_show(yaml).unwrap(),
            vec![entry("ssh", "failedlogin", "1.2.3.4", "unban", 1)]
        );
    }

    #[test]
    fn count_is_number_of_pending_executions_not_action_names() {
        let yaml = r#"
web:
  bots:
    "1.2.3.4 GPTBot/1.0":
      actions:
        unban:
          - "2026-11-27 10:00:00"
          - "2026-11-28 10:00:00"
          - "2026-11-29 10:00:00"
        notify: ["2026-11-27 10:00:00"]
"#;
        assert_eq!(
            parse_show(yaml).unwrap(),
            vec![
                entry("web", "bots", "1.2.3.4 GPTBot/1.0", "unban", 3),
                entry("web", "bots", "1.2.3.4 GPTBot/1.0", "notify", 1),
            ]
        );
    }

    #[test]
    fn keys_with_spaces_quotes_unicode_and_escapes() {
        let yaml = "s.1:\n  f.2:\n    \"a b \\\"c\\\" d\":\n      actions: {x: [t]}\n    \"日本語 ü\":\n      actions: {x: [t, t]}\n    'it''s: # here':\n      actions: {x: [t]}\n    \"tab\\there\\u00e9\":\n      actions: {x: [t]}\n";
        let got = parse_show(yaml).unwrap();
        let keys: Vec<(&str, u64)> = got.iter().map(|e| (e.key.as_str(), e.count)).collect();
        assert_eq!(
            keys,
            vec![
                ("a b \"c\" d", 1),
                ("日本語 ü", 2),
                ("it's: # here", 1),
                ("tab\there\u{e9}", 1)
            ]
        );
        assert!(got.iter().all(|e| e.stream == "s.1" && e.filter == "f.2"));
    }

    #[test]
    fn tolerates_counts_unknown_fields_and_odd_shapes() {
        let yaml = r#"
ssh:
  failedlogin:
    "1.2.3.4":
      matches: 3
      first_seen: whenever
      actions:
        unban: 4
        zero: 0
        empty: []
        nothing: null
        single: "2026-11-27 10:00:00"
    "5.6.7.8": "not a mapping"
    "9.9.9.9":
      actions: ["not", "a", "mapping"]
  weird: 12
other: [1, 2]
1234:
  true:
    42:
      actions: {ban: [t]}
"#;
        assert_eq!(
            parse_show(yaml).unwrap(),
            vec![
                entry("ssh", "failedlogin", "1.2.3.4", "unban", 4),
                entry("ssh", "failedlogin", "1.2.3.4", "single", 1),
                entry("1234", "true", "42", "ban", 1),
            ]
        );
    }

    #[test]
    fn empty_outputs_mean_nothing_pending() {
        assert_eq!(parse_show("").unwrap(), vec![]);
        assert_eq!(parse_show("{}\n").unwrap(), vec![]);
        assert_eq!(parse_show("~\n").unwrap(), vec![]);
        assert_eq!(parse_show("ssh: {}\n").unwrap(), vec![]);
    }

    #[test]
    fn json_output_is_accepted() {
        let json = r#"{"ssh": {"f": {"1.2.3.4": {"matches": 1, "actions": {"unban": ["t"]}}}}}"#;
        assert_eq!(
            parse_show(json).unwrap(),
            vec![entry("ssh", "f", "1.2.3.4", "unban", 1)]
        );
    }

    #[test]
    fn errors_on_invalid_yaml_or_wrong_top_level() {
        let err = parse_show("ssh: [unclosed").unwrap_err();
        assert_eq!(err.kind(), "yaml");
        let err = parse_show("- a\n- b\n").unwrap_err();
        assert_eq!(err.kind(), "output");
        let err = parse_show("connection refused\n").unwrap_err();
        assert_eq!(err.kind(), "output");
    }

    #[test]
    fn split_key_exact_number_of_words() {
        let mut none = std::iter::empty::<&[String]>();
        assert_eq!(
            split_key("1.2.3.4 root", 2, &mut none),
            strings(&["1.2.3.4", "root"])
        );
        let mut none = std::iter::empty::<&[String]>();
        assert_eq!(split_key("a  b", 3, &mut none), strings(&["a", "", "b"]));
    }

    #[test]
    fn split_key_small_n() {
        let mut none = std::iter::empty::<&[String]>();
        assert_eq!(split_key("a b c", 1, &mut none), strings(&["a b c"]));
        let mut none = std::iter::empty::<&[String]>();
        assert_eq!(split_key("a b c", 0, &mut none), Vec::<String>::new());
    }

    #[test]
    fn split_key_uses_known_candidates_when_a_value_has_spaces() {
        let known = [
            strings(&["1.2.3.4", "Mozilla/5.0 (X11)"]),
            strings(&["1.2.3.4 Mozilla/5.0", "(X11)"]),
            strings(&["5.6.7.8", "curl"]),
        ];
        // The candidate with a wrong length or join is skipped; the first fitting one wins.
        let mut it = known.iter().map(|v| v.as_slice());
        assert_eq!(
            split_key("1.2.3.4 Mozilla/5.0 (X11)", 2, &mut it),
            strings(&["1.2.3.4", "Mozilla/5.0 (X11)"])
        );
        let known = [strings(&["a b", "c"])];
        let mut it = known.iter().map(|v| v.as_slice());
        assert_eq!(split_key("a b c", 2, &mut it), strings(&["a b", "c"]));
        // Same words, different spacing: not a fit.
        let known = [strings(&["a", "b c"]), strings(&["a b", "c", "d"])];
        let mut it = known.iter().map(|v| v.as_slice());
        assert_eq!(split_key("a  b c", 2, &mut it), strings(&["a", " b c"]));
    }

    #[test]
    fn split_key_fallback_puts_the_rest_in_the_last_value() {
        let mut none = std::iter::empty::<&[String]>();
        assert_eq!(
            split_key("1.2.3.4 Mozilla/5.0 (X11; Linux)", 2, &mut none),
            strings(&["1.2.3.4", "Mozilla/5.0 (X11; Linux)"])
        );
        let mut none = std::iter::empty::<&[String]>();
        assert_eq!(
            split_key("a b c d", 3, &mut none),
            strings(&["a", "b", "c d"])
        );
        // Fewer words than values: padded with empty values.
        let mut none = std::iter::empty::<&[String]>();
        assert_eq!(split_key("only", 3, &mut none), strings(&["only", "", ""]));
    }

    #[test]
    fn joins_to_matches_join() {
        assert!(joins_to(&strings(&["a", "b c"]), "a b c"));
        assert!(joins_to(&strings(&["", "x"]), " x"));
        assert!(!joins_to(&strings(&["a", "b"]), "a b "));
        assert!(!joins_to(&strings(&["a", "b"]), "ab"));
    }
}
