//! A tokenizer for Rust `Debug`-formatted strings (`"a\"b\u{1b}"`) and bracketed lists of them.
//!
//! reaction logs match values as the `Debug` of a `Vec<String>` (`["a", "b"]`) and commands as
//! the `Debug` of a process command inside brackets (`["prog" "arg"]`). Values can contain
//! anything, so they are decoded here with the escapes of Rust's `Debug`, never split on text.
//!
//! Escapes decoded: those of `str`'s `Debug` (`\"` `\\` `\n` `\r` `\t` `\0` `\'` and `\u{X}` with 1
//! to 6 hex digits), and also `\xNN`. `str` never writes `\xNN`, but the `Debug` of a process
//! command prints C strings, which escape bytes: toolchains before rust-lang/rust PR 141491
//! (mid-2025, about Rust 1.89) print every argument that way, with each non-ASCII byte and each
//! ASCII control as `\xNN` (`"jos\xc3\xa9"`, `"\x1b"`); newer ones still print the program name
//! with `\x1b`-style escapes. A `\xNN` is therefore decoded as a byte: one ASCII byte, or with
//! the next escapes the 2 to 4 bytes of one UTF-8 char, which must be valid. Any other escape is
//! an error.
//!
//! Error positions are byte offsets into the `s` given to [`parse_str`] or [`parse_list`].

/// Separator between the strings of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Separator {
    /// `", "`: the `Debug` of a `Vec<String>`.
    Comma,
    /// `" "`: the `Debug` of a `std::process::Command`.
    Space,
}

impl Separator {
    fn as_str(self) -> &'static str {
        match self {
            Separator::Comma => ", ",
            Separator::Space => " ",
        }
    }

    fn expected(self) -> &'static str {
        match self {
            Separator::Comma => "`, ` or `]`",
            Separator::Space => "` ` or `]`",
        }
    }
}

/// Why a `Debug` string or list could not be decoded; `pos` is a byte offset into the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DebugStrError {
    /// Something else than the expected token (`"`, `[`, a separator, `]`).
    #[error("expected {expected} at byte {pos}")]
    Expected { pos: usize, expected: &'static str },
    /// The string opened at `pos` has no closing quote.
    #[error("unterminated string starting at byte {pos}")]
    Unterminated { pos: usize },
    /// A backslash at `pos` followed by a character that `Debug` never escapes.
    #[error("invalid escape at byte {pos}")]
    InvalidEscape { pos: usize },
    /// A `\u{...}` at `pos` that is not 1 to 6 hex digits forming a valid `char`.
    #[error("invalid unicode escape at byte {pos}")]
    InvalidUnicode { pos: usize },
    /// `\xNN` escapes at `pos` whose bytes do not form one UTF-8 char.
    #[error("invalid UTF-8 byte escapes at byte {pos}")]
    InvalidUtf8 { pos: usize },
}

impl DebugStrError {
    /// Byte offset of the error in the input.
    #[cfg(test)]
    pub(crate) fn pos(&self) -> usize {
        match *self {
            DebugStrError::Expected { pos, .. }
            | DebugStrError::Unterminated { pos }
            | DebugStrError::InvalidEscape { pos }
            | DebugStrError::InvalidUnicode { pos }
            | DebugStrError::InvalidUtf8 { pos } => pos,
        }
    }

    /// The same error, its position shifted by `by` bytes.
    fn shifted(self, by: usize) -> Self {
        match self {
            DebugStrError::Expected { pos, expected } => DebugStrError::Expected {
                pos: pos + by,
                expected,
            },
            DebugStrError::Unterminated { pos } => DebugStrError::Unterminated { pos: pos + by },
            DebugStrError::InvalidEscape { pos } => DebugStrError::InvalidEscape { pos: pos + by },
            DebugStrError::InvalidUnicode { pos } => {
                DebugStrError::InvalidUnicode { pos: pos + by }
            }
            DebugStrError::InvalidUtf8 { pos } => DebugStrError::InvalidUtf8 { pos: pos + by },
        }
    }
}

/// Parse one Rust-Debug string literal at the start of `s` (which starts with `"`); returns the
/// decoded value and the rest of the input after the closing quote.
pub(crate) fn parse_str(s: &str) -> Result<(String, &str), DebugStrError> {
    let bytes = s.as_bytes();
    if bytes.first() != Some(&b'"') {
        return Err(DebugStrError::Expected {
            pos: 0,
            expected: "`\"`",
        });
    }
    let mut out = String::new();
    let mut i = 1;
    loop {
        // Copy everything up to the next quote or backslash (both ASCII, so char boundaries).
        let Some(off) = memchr::memchr2(b'"', b'\\', &bytes[i..]) else {
            return Err(DebugStrError::Unterminated { pos: 0 });
        };
        out.push_str(&s[i..i + off]);
        i += off;
        if bytes[i] == b'"' {
            return Ok((out, &s[i + 1..]));
        }
        let esc = i;
        let (decoded, len) = match bytes.get(i + 1) {
            None => return Err(DebugStrError::Unterminated { pos: 0 }),
            Some(b'"') => ('"', 2),
            Some(b'\\') => ('\\', 2),
            Some(b'n') => ('\n', 2),
            Some(b'r') => ('\r', 2),
            Some(b't') => ('\t', 2),
            Some(b'0') => ('\0', 2),
            Some(b'\'') => ('\'', 2),
            Some(b'u') => {
                let (c, len) = unicode_escape(&bytes[i + 2..])
                    .ok_or(DebugStrError::InvalidUnicode { pos: esc })?;
                (c, len + 2)
            }
            Some(b'x') => byte_escape(&bytes[i..], esc)?,
            Some(_) => return Err(DebugStrError::InvalidEscape { pos: esc }),
        };
        out.push(decoded);
        i += len;
    }
}

/// Decode the `{X}` part of a `\u{X}` escape at the start of `b` (1 to 6 hex digits); returns
/// the char and the number of bytes used, braces included.
fn unicode_escape(b: &[u8]) -> Option<(char, usize)> {
    if b.first() != Some(&b'{') {
        return None;
    }
    let mut value: u32 = 0;
    for (digits, &d) in b[1..].iter().enumerate() {
        if d == b'}' {
            if digits == 0 {
                return None;
            }
            return char::from_u32(value).map(|c| (c, digits + 2));
        }
        if digits == 6 {
            return None;
        }
        value = value * 16 + char::from(d).to_digit(16)?;
    }
    None
}

/// Decode `\xNN` escapes at the start of `b` (which starts with `\x`): one ASCII byte, or the 2
/// to 4 escaped bytes of one UTF-8 char. Returns the char and the number of input bytes used.
fn byte_escape(b: &[u8], pos: usize) -> Result<(char, usize), DebugStrError> {
    let first = hex_byte(b).ok_or(DebugStrError::InvalidEscape { pos })?;
    let len = match first {
        0x00..=0x7f => return Ok((char::from(first), 4)),
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => return Err(DebugStrError::InvalidUtf8 { pos }),
    };
    let mut buf = [first, 0, 0, 0];
    for (k, slot) in buf.iter_mut().enumerate().take(len).skip(1) {
        *slot = b
            .get(4 * k..)
            .and_then(hex_byte)
            .ok_or(DebugStrError::InvalidUtf8 { pos })?;
    }
    match std::str::from_utf8(&buf[..len]).map(|s| s.chars().next()) {
        Ok(Some(c)) => Ok((c, 4 * len)),
        _ => Err(DebugStrError::InvalidUtf8 { pos }),
    }
}

/// The byte of a `\xNN` escape (exactly two hex digits) at the start of `b`.
fn hex_byte(b: &[u8]) -> Option<u8> {
    match b {
        [b'\\', b'x', hi, lo, ..] => {
            let hi = char::from(*hi).to_digit(16)?;
            let lo = char::from(*lo).to_digit(16)?;
            u8::try_from(hi * 16 + lo).ok()
        }
        _ => None,
    }
}

/// Parse a bracketed list `[..]` of Debug strings at the start of `s`; separator is `", "`
/// (Vec<String> Debug) or a single space (process Command Debug); returns the values and the rest.
pub(crate) fn parse_list(s: &str, sep: Separator) -> Result<(Vec<String>, &str), DebugStrError> {
    let Some(mut rest) = s.strip_prefix('[') else {
        return Err(DebugStrError::Expected {
            pos: 0,
            expected: "`[`",
        });
    };
    let mut values = Vec::new();
    if let Some(after) = rest.strip_prefix(']') {
        return Ok((values, after));
    }
    loop {
        let pos = s.len() - rest.len();
        if !rest.starts_with('"') {
            return Err(DebugStrError::Expected {
                pos,
                expected: if values.is_empty() {
                    "`\"` or `]`"
                } else {
                    "`\"`"
                },
            });
        }
        let (value, after) = parse_str(rest).map_err(|e| e.shifted(pos))?;
        values.push(value);
        if let Some(after) = after.strip_prefix(']') {
            return Ok((values, after));
        }
        match after.strip_prefix(sep.as_str()) {
            Some(next) => rest = next,
            None => {
                return Err(DebugStrError::Expected {
                    pos: s.len() - after.len(),
                    expected: sep.expected(),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ok(s: &str) -> String {
        let (v, rest) = parse_str(s).unwrap();
        assert_eq!(rest, "");
        v
    }

    #[test]
    fn plain_strings() {
        assert_eq!(ok(r#""""#), "");
        assert_eq!(ok(r#""1.2.3.4""#), "1.2.3.4");
        assert_eq!(ok(r#""a b: c.d [x]""#), "a b: c.d [x]");
        assert_eq!(ok("\"héllo 😀 日本\""), "héllo 😀 日本");
    }

    #[test]
    fn escapes() {
        assert_eq!(ok(r#""a\"b""#), "a\"b");
        assert_eq!(ok(r#""a\\b""#), "a\\b");
        assert_eq!(ok(r#""\n\r\t\0\'""#), "\n\r\t\0'");
        assert_eq!(ok(r#""\\\"""#), "\\\"");
        assert_eq!(ok(r#""x\u{1b}[0m""#), "x\u{1b}[0m");
        assert_eq!(ok(r#""\u{200b}""#), "\u{200b}");
        assert_eq!(ok(r#""\u{10ffff}""#), "\u{10ffff}");
        assert_eq!(ok(r#""\u{0}\u{7F}""#), "\0\u{7f}");
        assert_eq!(ok(r#""e\u{301}""#), "e\u{301}");
    }

    #[test]
    fn byte_escapes() {
        assert_eq!(ok(r#""\x1b[0m\x7f\x00\x41""#), "\u{1b}[0m\u{7f}\0A");
        assert_eq!(ok(r#""jos\xc3\xa9@x""#), "josé@x");
        assert_eq!(ok(r#""\xC3\xA9""#), "é");
        assert_eq!(ok(r#""\xe2\x80\x8b""#), "\u{200b}");
        assert_eq!(ok(r#""\xf0\x9f\x98\x80!""#), "😀!");
        assert_eq!(ok(r#""\xf4\x8f\xbf\xbf""#), "\u{10ffff}");
        // Mixed with raw UTF-8 and other escapes, as printed by newer toolchains.
        assert_eq!(ok(r#""\x1bé\u{9b}\'""#), "\u{1b}é\u{9b}'");
    }

    #[test]
    fn returns_rest() {
        assert_eq!(
            parse_str(r#""a", "b"]"#).unwrap(),
            ("a".to_string(), r#", "b"]"#)
        );
        assert_eq!(parse_str(r#""\"" x"#).unwrap(), ("\"".to_string(), " x"));
    }

    #[test]
    fn string_errors() {
        use DebugStrError::*;
        let cases: &[(&str, DebugStrError)] = &[
            (
                "",
                Expected {
                    pos: 0,
                    expected: "`\"`",
                },
            ),
            (
                "abc",
                Expected {
                    pos: 0,
                    expected: "`\"`",
                },
            ),
            (
                " \"a\"",
                Expected {
                    pos: 0,
                    expected: "`\"`",
                },
            ),
            ("\"abc", Unterminated { pos: 0 }),
            ("\"", Unterminated { pos: 0 }),
            ("\"abc\\", Unterminated { pos: 0 }),
            ("\"abc\\\"", Unterminated { pos: 0 }),
            (r#""a\x4""#, InvalidEscape { pos: 2 }),
            (r#""a\xg1""#, InvalidEscape { pos: 2 }),
            (r#""a\x""#, InvalidEscape { pos: 2 }),
            (r#""\x80""#, InvalidUtf8 { pos: 1 }),
            (r#""\xc3""#, InvalidUtf8 { pos: 1 }),
            (r#""\xc3a9""#, InvalidUtf8 { pos: 1 }),
            (r#""\xc3\x41""#, InvalidUtf8 { pos: 1 }),
            (r#""\xc3\xzz""#, InvalidUtf8 { pos: 1 }),
            (r#""\xed\xa0\x80""#, InvalidUtf8 { pos: 1 }),
            (r#""\xf5\x80\x80\x80""#, InvalidUtf8 { pos: 1 }),
            (r#""\xc0\x80""#, InvalidUtf8 { pos: 1 }),
            (r#""a\a""#, InvalidEscape { pos: 2 }),
            (r#""\ ""#, InvalidEscape { pos: 1 }),
            (r#""ab\é""#, InvalidEscape { pos: 3 }),
            (r#""\u{110000}""#, InvalidUnicode { pos: 1 }),
            (r#""\u{d800}""#, InvalidUnicode { pos: 1 }),
            (r#""\u{}""#, InvalidUnicode { pos: 1 }),
            (r#""\u{0000001}""#, InvalidUnicode { pos: 1 }),
            (r#""\u1b""#, InvalidUnicode { pos: 1 }),
            (r#""\u{1g}""#, InvalidUnicode { pos: 1 }),
            (r#""\u{-1}""#, InvalidUnicode { pos: 1 }),
            (r#""\u{1b""#, InvalidUnicode { pos: 1 }),
            ("\"\\u{1b", InvalidUnicode { pos: 1 }),
            ("\"\\u", InvalidUnicode { pos: 1 }),
        ];
        for (input, want) in cases {
            assert_eq!(parse_str(input).unwrap_err(), *want, "input {input:?}");
        }
    }

    #[test]
    fn error_display_has_position() {
        let e = parse_str(r#""ab\q""#).unwrap_err();
        assert_eq!(e.pos(), 3);
        assert_eq!(e.to_string(), "invalid escape at byte 3");
    }

    #[test]
    fn lists() {
        let v = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(parse_list("[]", Separator::Comma).unwrap(), (v(&[]), ""));
        assert_eq!(
            parse_list("[] x", Separator::Space).unwrap(),
            (v(&[]), " x")
        );
        assert_eq!(
            parse_list(r#"["a"]"#, Separator::Comma).unwrap(),
            (v(&["a"]), "")
        );
        assert_eq!(
            parse_list(r#"["a", "b, c", "\"]"]: rest"#, Separator::Comma).unwrap(),
            (v(&["a", "b, c", "\"]"]), ": rest")
        );
        assert_eq!(
            parse_list(r#"["iptables" "-w" "a \" b" ""]"#, Separator::Space).unwrap(),
            (v(&["iptables", "-w", "a \" b", ""]), "")
        );
    }

    #[test]
    fn list_errors() {
        use DebugStrError::*;
        let cases: &[(&str, Separator, DebugStrError)] = &[
            (
                "",
                Separator::Comma,
                Expected {
                    pos: 0,
                    expected: "`[`",
                },
            ),
            (
                "(\"a\")",
                Separator::Comma,
                Expected {
                    pos: 0,
                    expected: "`[`",
                },
            ),
            (
                "[",
                Separator::Comma,
                Expected {
                    pos: 1,
                    expected: "`\"` or `]`",
                },
            ),
            (
                "[a]",
                Separator::Comma,
                Expected {
                    pos: 1,
                    expected: "`\"` or `]`",
                },
            ),
            (
                "[ \"a\"]",
                Separator::Comma,
                Expected {
                    pos: 1,
                    expected: "`\"` or `]`",
                },
            ),
            (
                "[\"a\"",
                Separator::Comma,
                Expected {
                    pos: 4,
                    expected: "`, ` or `]`",
                },
            ),
            (
                "[\"a\" \"b\"]",
                Separator::Comma,
                Expected {
                    pos: 4,
                    expected: "`, ` or `]`",
                },
            ),
            (
                "[\"a\", \"b\"]",
                Separator::Space,
                Expected {
                    pos: 4,
                    expected: "` ` or `]`",
                },
            ),
            (
                "[\"a\",\"b\"]",
                Separator::Comma,
                Expected {
                    pos: 4,
                    expected: "`, ` or `]`",
                },
            ),
            (
                "[\"a\", ]",
                Separator::Comma,
                Expected {
                    pos: 6,
                    expected: "`\"`",
                },
            ),
            (
                "[\"a\"  \"b\"]",
                Separator::Space,
                Expected {
                    pos: 5,
                    expected: "`\"`",
                },
            ),
            ("[\"a\", \"b", Separator::Comma, Unterminated { pos: 6 }),
            (
                "[\"a\", \"b\\q\"]",
                Separator::Comma,
                InvalidEscape { pos: 8 },
            ),
            (
                "[\"é\" \"\\u{ffffff}\"]",
                Separator::Space,
                InvalidUnicode { pos: 7 },
            ),
        ];
        for (input, sep, want) in cases {
            assert_eq!(
                parse_list(input, *sep).unwrap_err(),
                *want,
                "input {input:?}"
            );
        }
    }

    /// Strings rich in what a Debug tokenizer can get wrong.
    fn tricky_string() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            4 => any::<char>().prop_map(String::from),
            2 => prop::sample::select(vec![
                '"', '\\', '\'', '\n', '\r', '\t', '\0', '\u{1b}', '\u{7f}', '\u{80}', ' ', ',',
                '[', ']', ':', '.', '{', '}', 'u', '\u{301}', '\u{200b}', '\u{feff}', '😀',
                '\u{10ffff}', 'é',
            ])
            .prop_map(String::from),
            1 => prop::sample::select(vec![
                "\", \"", "\"]", "\\u{1b}", "\\\"", ": match [", ": run [", "[\"", "\" \"",
            ])
            .prop_map(String::from),
        ];
        prop::collection::vec(piece, 0..16).prop_map(|v| v.concat())
    }

    proptest! {
        #[test]
        fn debug_string_round_trips(s in tricky_string()) {
            let dbg = format!("{s:?}");
            let (back, rest) = parse_str(&dbg).unwrap();
            prop_assert_eq!(back, s);
            prop_assert_eq!(rest, "");
        }

        #[test]
        fn any_string_round_trips(s in any::<String>()) {
            let dbg = format!("{s:?}tail");
            prop_assert_eq!(parse_str(&dbg).unwrap(), (s, "tail"));
        }

        #[test]
        fn vec_debug_round_trips(v in prop::collection::vec(tricky_string(), 0..6)) {
            let dbg = format!("{v:?}");
            let (back, rest) = parse_list(&dbg, Separator::Comma).unwrap();
            prop_assert_eq!(back, v);
            prop_assert_eq!(rest, "");
        }

        #[test]
        fn space_list_round_trips(v in prop::collection::vec(tricky_string(), 0..6)) {
            let joined = v.iter().map(|a| format!("{a:?}")).collect::<Vec<_>>().join(" ");
            let dbg = format!("[{joined}]!");
            let (back, rest) = parse_list(&dbg, Separator::Space).unwrap();
            prop_assert_eq!(back, v);
            prop_assert_eq!(rest, "!");
        }

        /// The `Debug` of a C string before Rust 1.89: every byte outside printable ASCII as `\xNN`.
        #[test]
        fn escaped_bytes_round_trip(s in tricky_string()) {
            let dbg = format!("\"{}\"", s.as_bytes().escape_ascii());
            let (back, rest) = parse_str(&dbg).unwrap();
            prop_assert_eq!(back, s);
            prop_assert_eq!(rest, "");
        }

        /// The `Debug` of a `CString` on this toolchain.
        #[test]
        fn c_string_round_trips(s in tricky_string()) {
            let s = s.replace('\0', "");
            let c = std::ffi::CString::new(s.clone()).unwrap();
            let dbg = format!("{c:?}");
            let (back, rest) = parse_str(&dbg).unwrap();
            prop_assert_eq!(back, s);
            prop_assert_eq!(rest, "");
        }

        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = parse_str(&s);
            let _ = parse_list(&s, Separator::Comma);
            let _ = parse_list(&s, Separator::Space);
        }

        #[test]
        fn never_panics_on_near_misses(s in "[\\[\\]\"\\\\ux{}0-9a-f, é]{0,24}") {
            for input in [format!("\"{s}"), format!("[{s}"), format!("[\"{s}")] {
                let _ = parse_str(&input);
                if let Err(e) = parse_list(&input, Separator::Comma) {
                    prop_assert!(e.pos() <= input.len());
                }
                if let Err(e) = parse_list(&input, Separator::Space) {
                    prop_assert!(e.pos() <= input.len());
                }
            }
        }
    }
}
