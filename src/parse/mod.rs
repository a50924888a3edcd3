//! Parser for the lines reaction logs: one line in, at most one [`Event`] out.
//!
//! The forms are those reaction 2.x logs: each [`Event`] variant (and [`StreamErrorKind`])
//! shows its line, and the tests below hold the variations seen. Names are kept as logged:
//! `a.b.c` is not split here, because stream, filter and action names may contain dots; the
//! caller resolves them against reaction's configuration.
//!
//! A line is first cleaned (ANSI colour sequences removed, surrounding whitespace trimmed), then
//! its first word must be a level. Known forms are parsed exactly; a known form whose payload is
//! broken is [`ParseError::Malformed`], anything else at INFO/WARN/ERROR is
//! [`ParseError::Unknown`]. Nothing here panics on any input.

pub(crate) mod debug_str;

use std::borrow::Cow;

use debug_str::{parse_list, DebugStrError, Separator};

/// One event of reaction's log, names as logged (dots not yet resolved against reaction's config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `INFO <stream>.<filter>: match ["v1", "v2"]`.
    Match {
        /// `stream.filter`, verbatim.
        target: String,
        /// The pattern values, in the order of the filter's pattern names.
        values: Vec<String>,
    },
    /// `INFO <stream>.<filter>.<action>: run ["prog" "arg" ...]`.
    Action {
        /// `stream.filter.action`, verbatim.
        target: String,
        /// The command run.
        argv: Vec<String>,
    },
    /// `INFO start command: run ["a", "b"]`, `ERROR stop command: run ["a"]: exit code: 1`
    Command {
        /// Which list the command belongs to.
        state: CommandState,
        /// The command run.
        argv: Vec<String>,
        /// Whether it succeeded (an INFO line).
        ok: bool,
        /// Its exit code, when reaction logged one.
        code: Option<i64>,
    },
    /// `INFO ssh: start ["journalctl", "-fn0"]`
    StreamStart {
        /// The stream's name.
        stream: String,
        /// Its command.
        argv: Vec<String>,
    },
    /// One of the four stream failures reaction logs (see [`StreamErrorKind`]).
    StreamError {
        /// The stream's name.
        stream: String,
        /// Which failure.
        kind: StreamErrorKind,
    },
    /// `INFO received SIGTERM, closing streams...` (also SIGINT / other signal names)
    Stopping {
        /// The signal's name.
        signal: String,
    },
    /// `WARN plugin <name>: <text>` (known, carries no metric)
    Plugin {
        /// The plugin's name.
        name: String,
    },
}

/// Which of reaction's global command lists a command belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommandState {
    /// Run when reaction starts.
    Start,
    /// Run when reaction stops.
    Stop,
}

impl CommandState {
    /// `"start"` or `"stop"`.
    pub fn as_str(self) -> &'static str {
        match self {
            CommandState::Start => "start",
            CommandState::Stop => "stop",
        }
    }
}

/// The four stream failures reaction logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamErrorKind {
    /// `could not execute stream <s> cmd: <text>`
    Exec,
    /// `stream <s> exited: <text>`
    Exit,
    /// `impossible to read output from stream <s>: <text>`
    Read,
    /// `child process of stream <s> did not terminate`
    Timeout,
}

impl StreamErrorKind {
    /// `"exec"`, `"exit"`, `"read"` or `"timeout"`.
    pub fn as_str(self) -> &'static str {
        match self {
            StreamErrorKind::Exec => "exec",
            StreamErrorKind::Exit => "exit",
            StreamErrorKind::Read => "read",
            StreamErrorKind::Timeout => "timeout",
        }
    }
}

/// Why a line gave no event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// No known line form (first word not a level, or a level followed by an unknown message).
    #[error("unknown line form")]
    Unknown,
    /// A known form whose payload is broken (bad escape, unterminated string, trailing garbage...).
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// Which form (`match`, `action`, `command`, ...).
        what: &'static str,
        /// What is wrong.
        detail: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Info,
    Warn,
    Error,
}

/// Ok(None): a line that is known but carries nothing (blank, DEBUG level, ...).
pub fn parse_line(line: &str) -> Result<Option<Event>, ParseError> {
    let cleaned = strip_ansi(line);
    let text = cleaned.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let (word, msg) = match text.find(|c: char| c.is_ascii_whitespace()) {
        Some(i) => (&text[..i], text[i..].trim_start()),
        None => (text, ""),
    };
    let level = match word {
        "DEBUG" | "TRACE" => return Ok(None),
        "INFO" => Level::Info,
        "WARN" | "WARNING" => Level::Warn,
        "ERROR" => Level::Error,
        _ => return Err(ParseError::Unknown),
    };
    parse_message(level, msg)
}

/// Remove ANSI escape sequences (`ESC [ params final`); borrows when the line has no ESC.
///
/// A raw ESC cannot be part of a value (`Debug` writes it `\u{1b}`), so removing every one is
/// safe. An ESC not followed by `[` is dropped alone; a CSI cut short (no final byte in
/// `@`..`~` after its parameter bytes) is dropped up to where it stops.
fn strip_ansi(line: &str) -> Cow<'_, str> {
    if memchr::memchr(0x1b, line.as_bytes()).is_none() {
        return Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(i) = rest.find('\x1b') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(csi) = rest.strip_prefix('[') {
            let bytes = csi.as_bytes();
            // Parameter bytes 0x30..=0x3F and intermediate bytes 0x20..=0x2F, then a final byte.
            let params = bytes
                .iter()
                .position(|b| !(0x20..=0x3f).contains(b))
                .unwrap_or(bytes.len());
            let end = match bytes.get(params) {
                Some(b) if (0x40..=0x7e).contains(b) => params + 1,
                _ => params,
            };
            // Every byte skipped is ASCII, so `end` is a char boundary.
            rest = &csi[end..];
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

fn parse_message(level: Level, msg: &str) -> Result<Option<Event>, ParseError> {
    if let Some((target, keyword, list)) = find_keyword(msg) {
        if let Some(result) = keyword_form(level, target, keyword, list) {
            return result.map(Some);
        }
    }
    match level {
        Level::Info => {
            if let Some(signal) = stopping(msg) {
                return Ok(Some(Event::Stopping {
                    signal: signal.to_string(),
                }));
            }
        }
        Level::Error => {
            if let Some(result) = stream_error(msg) {
                return result.map(Some);
            }
        }
        Level::Warn => {}
    }
    // Plugin relays are documented at WARN; a relay at another level is still a plugin line.
    if let Some(name) = plugin(msg) {
        return Ok(Some(Event::Plugin {
            name: name.to_string(),
        }));
    }
    Err(ParseError::Unknown)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keyword {
    Match,
    Run,
    Start,
}

/// The first `: match [`, `: run [` or `: start [` of the message: (target before it, keyword,
/// list from its `[`). Values only come after such a keyword, so the first one is the real one
/// even when a value contains another.
fn find_keyword(msg: &str) -> Option<(&str, Keyword, &str)> {
    // Each `: `, found by a plain byte loop: `match_indices(": ")` builds a two-way substring
    // searcher for every line, and a character search costs about as much on the few bytes
    // before the keyword (~5 % of the ingest's instructions for either, measured).
    let bytes = msg.as_bytes();
    for i in 0..bytes.len().saturating_sub(1) {
        if bytes[i] != b':' || bytes[i + 1] != b' ' {
            continue;
        }
        // Both ASCII: `i + 2` is a char boundary.
        let after = &msg[i + 2..];
        for (word, keyword) in [
            ("match [", Keyword::Match),
            ("run [", Keyword::Run),
            ("start [", Keyword::Start),
        ] {
            if after.starts_with(word) {
                let list = &after[word.len() - 1..];
                return Some((&msg[..i], keyword, list));
            }
        }
    }
    None
}

/// The event of a keyword line, or None when that keyword is not a known form at this level.
fn keyword_form(
    level: Level,
    target: &str,
    keyword: Keyword,
    list: &str,
) -> Option<Result<Event, ParseError>> {
    let command = match target {
        "start command" => Some(CommandState::Start),
        "stop command" => Some(CommandState::Stop),
        _ => None,
    };
    let result = match (level, keyword, command) {
        (Level::Info | Level::Error, Keyword::Run, Some(state)) => command_line(level, state, list),
        (Level::Info, Keyword::Run, None) => require_target("action", target).and_then(|()| {
            let (argv, rest) =
                list_either(list, Separator::Space).map_err(|e| malformed("action", &e))?;
            require_end("action", rest)?;
            Ok(Event::Action {
                target: target.to_string(),
                argv,
            })
        }),
        (Level::Info, Keyword::Match, _) => require_target("match", target).and_then(|()| {
            let (values, rest) =
                parse_list(list, Separator::Comma).map_err(|e| malformed("match", &e))?;
            require_end("match", rest)?;
            Ok(Event::Match {
                target: target.to_string(),
                values,
            })
        }),
        (Level::Info, Keyword::Start, _) => require_target("stream start", target).and_then(|()| {
            let (argv, rest) =
                list_either(list, Separator::Comma).map_err(|e| malformed("stream start", &e))?;
            require_end("stream start", rest)?;
            Ok(Event::StreamStart {
                stream: target.to_string(),
                argv,
            })
        }),
        _ => return None,
    };
    Some(result)
}

/// `start command: run [..]` at INFO (success, nothing after the list) or ERROR (failure,
/// optionally `: exit code: N` or another `: <text>` after the list).
fn command_line(level: Level, state: CommandState, list: &str) -> Result<Event, ParseError> {
    let (argv, rest) = list_either(list, Separator::Comma).map_err(|e| malformed("command", &e))?;
    let (ok, code) = if level == Level::Info {
        require_end("command", rest)?;
        (true, None)
    } else if rest.is_empty() {
        (false, None)
    } else if let Some(text) = rest.strip_prefix(':') {
        let code = text
            .trim_start()
            .strip_prefix("exit code:")
            .and_then(|n| n.trim().parse::<i64>().ok());
        (false, code)
    } else {
        return Err(trailing("command", rest));
    };
    Ok(Event::Command {
        state,
        argv,
        ok,
        code,
    })
}

/// Parse with the expected separator, then with the other one; the first error is reported.
/// Both cannot succeed on lists of two or more values, since separators lie outside strings.
fn list_either(list: &str, sep: Separator) -> Result<(Vec<String>, &str), DebugStrError> {
    let other = match sep {
        Separator::Comma => Separator::Space,
        Separator::Space => Separator::Comma,
    };
    parse_list(list, sep).or_else(|first| parse_list(list, other).map_err(|_| first))
}

fn require_target(what: &'static str, target: &str) -> Result<(), ParseError> {
    if target.is_empty() {
        Err(ParseError::Malformed {
            what,
            detail: "empty name".to_string(),
        })
    } else {
        Ok(())
    }
}

/// After a list only whitespace may follow (the line is already trimmed at its end).
fn require_end(what: &'static str, rest: &str) -> Result<(), ParseError> {
    if rest.is_empty() {
        Ok(())
    } else {
        Err(trailing(what, rest))
    }
}

fn trailing(what: &'static str, rest: &str) -> ParseError {
    const SHOWN: usize = 40;
    let shown = match rest.char_indices().nth(SHOWN) {
        Some((i, _)) => &rest[..i],
        None => rest,
    };
    ParseError::Malformed {
        what,
        detail: format!("unexpected text after the list: {shown:?}"),
    }
}

fn malformed(what: &'static str, e: &DebugStrError) -> ParseError {
    ParseError::Malformed {
        what,
        detail: format!("{e} of the list"),
    }
}

/// `received SIGTERM, closing streams...` → the signal word.
fn stopping(msg: &str) -> Option<&str> {
    let rest = msg.strip_prefix("received ")?;
    let i = rest.find(", closing streams")?;
    let signal = &rest[..i];
    (!signal.is_empty() && !signal.contains(char::is_whitespace)).then_some(signal)
}

/// `plugin <name>: <text>` (or `plugin <name>:`) → the name, a single non-empty word.
fn plugin(msg: &str) -> Option<&str> {
    let rest = msg.strip_prefix("plugin ")?;
    let i = rest.find(':')?;
    let name = &rest[..i];
    let after = &rest[i + 1..];
    (!name.is_empty()
        && !name.contains(char::is_whitespace)
        && (after.is_empty() || after.starts_with(' ')))
    .then_some(name)
}

/// The four stream error forms of ERROR lines. None: not a stream error line; Some(Err): a
/// distinctive prefix whose rest does not fit.
fn stream_error(msg: &str) -> Option<Result<Event, ParseError>> {
    let found = |stream: &str, kind| {
        Ok(Event::StreamError {
            stream: stream.to_string(),
            kind,
        })
    };
    let broken = |detail: &str| {
        Err(ParseError::Malformed {
            what: "stream error",
            detail: detail.to_string(),
        })
    };
    let end_or_space = |after: &str| after.is_empty() || after.starts_with(' ');
    if let Some(rest) = msg.strip_prefix("could not execute stream ") {
        return Some(match shortest_name(rest, " cmd:", end_or_space) {
            Some(s) => found(s, StreamErrorKind::Exec),
            None => broken("no `<stream> cmd:` after `could not execute stream`"),
        });
    }
    if let Some(rest) = msg.strip_prefix("impossible to read output from stream ") {
        return Some(match shortest_name(rest, ":", end_or_space) {
            Some(s) => found(s, StreamErrorKind::Read),
            None => broken("no `<stream>:` after `impossible to read output from stream`"),
        });
    }
    if let Some(rest) = msg.strip_prefix("child process of stream ") {
        return Some(match rest.strip_suffix(" did not terminate") {
            Some(s) if !s.is_empty() => found(s, StreamErrorKind::Timeout),
            _ => broken("no `<stream> did not terminate` after `child process of stream`"),
        });
    }
    if let Some(rest) = msg.strip_prefix("stream ") {
        let exited = |after: &str| after.is_empty() || after.starts_with(':');
        if let Some(s) = shortest_name(rest, " exited", exited) {
            return Some(found(s, StreamErrorKind::Exit));
        }
    }
    None
}

/// The shortest non-empty prefix of `s` followed by `sep`, where what follows `sep` passes `ok`.
fn shortest_name<'a>(s: &'a str, sep: &str, ok: impl Fn(&str) -> bool) -> Option<&'a str> {
    s.match_indices(sep)
        .find(|&(i, _)| i > 0 && ok(&s[i + sep.len()..]))
        .map(|(i, _)| &s[..i])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn strings(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn keyword_after_the_first_colon_space_that_has_one() {
        // Colons without a space, `: ` not followed by a keyword, a colon at the very end.
        assert_eq!(
            find_keyword("a:b:: c: x: match [1]"),
            Some(("a:b:: c: x", Keyword::Match, "[1]"))
        );
        assert_eq!(
            find_keyword("s.f: run [x"),
            Some(("s.f", Keyword::Run, "[x"))
        );
        assert_eq!(
            find_keyword("s: start []"),
            Some(("s", Keyword::Start, "[]"))
        );
        assert_eq!(find_keyword("s.f:match [1]"), None);
        assert_eq!(find_keyword("s.f: matched [1]"), None);
        assert_eq!(find_keyword("s.f:"), None);
        assert_eq!(find_keyword(":"), None);
        assert_eq!(find_keyword(""), None);
        // Not a char boundary problem: multi-byte characters around the colons.
        assert_eq!(
            find_keyword("é:é: match [\"ü\"]"),
            Some(("é:é", Keyword::Match, "[\"ü\"]"))
        );
    }

    fn event(line: &str) -> Event {
        match parse_line(line) {
            Ok(Some(e)) => e,
            other => panic!("{line:?} gave {other:?}"),
        }
    }

    fn matched(target: &str, values: &[&str]) -> Event {
        Event::Match {
            target: target.to_string(),
            values: strings(values),
        }
    }

    fn action(target: &str, argv: &[&str]) -> Event {
        Event::Action {
            target: target.to_string(),
            argv: strings(argv),
        }
    }

    fn command(state: CommandState, argv: &[&str], ok: bool, code: Option<i64>) -> Event {
        Event::Command {
            state,
            argv: strings(argv),
            ok,
            code,
        }
    }

    fn stream_err(stream: &str, kind: StreamErrorKind) -> Event {
        Event::StreamError {
            stream: stream.to_string(),
            kind,
        }
    }

    fn assert_malformed(line: &str, want: &str) {
        match parse_line(line) {
            Err(ParseError::Malformed { what, .. }) => assert_eq!(what, want, "line {line:?}"),
            other => panic!("{line:?} gave {other:?}, expected malformed {want}"),
        }
    }

    #[test]
    fn matches() {
        assert_eq!(
            event(r#"INFO ssh.failedlogin: match ["1.2.3.4"]"#),
            matched("ssh.failedlogin", &["1.2.3.4"])
        );
        assert_eq!(
            event(r#"INFO traefik.aiBots: match ["1.2.3.4", "GPTBot/1.0"]"#),
            matched("traefik.aiBots", &["1.2.3.4", "GPTBot/1.0"])
        );
        assert_eq!(
            event(r#"INFO a.b.c.d: match ["x"]"#),
            matched("a.b.c.d", &["x"])
        );
        assert_eq!(event("INFO s.f: match []"), matched("s.f", &[]));
        assert_eq!(
            event(r#"INFO s.f: match ["2001:db8:85a3:9de5::/64"]"#),
            matched("s.f", &["2001:db8:85a3:9de5::/64"])
        );
        // Trailing whitespace and \r after the list are fine.
        assert_eq!(event("INFO s.f: match [\"a\"]  \r"), matched("s.f", &["a"]));
    }

    #[test]
    fn match_values_with_everything() {
        assert_eq!(
            event(
                r#"INFO s.f: match ["a b", "say \"hi\"", "x\", \"y", "k: v", "[1]", "😀 é", "\u{1b}[31m", "a\\b", "", "tab\there"]"#
            ),
            matched(
                "s.f",
                &[
                    "a b",
                    "say \"hi\"",
                    "x\", \"y",
                    "k: v",
                    "[1]",
                    "😀 é",
                    "\u{1b}[31m",
                    "a\\b",
                    "",
                    "tab\there"
                ]
            )
        );
        // A value that looks like another keyword does not confuse the target.
        assert_eq!(
            event(r#"INFO s.f: match [": run [\"x\"]", ": start []"]"#),
            matched("s.f", &[": run [\"x\"]", ": start []"])
        );
    }

    #[test]
    fn leading_space_and_colours() {
        assert_eq!(
            event(r#" INFO ssh.fail: match ["1.2.3.4"]"#),
            matched("ssh.fail", &["1.2.3.4"])
        );
        assert_eq!(
            event("\u{1b}[32mINFO\u{1b}[0m ssh.fail: match [\"1.2.3.4\"]"),
            matched("ssh.fail", &["1.2.3.4"])
        );
        assert_eq!(
            event(
                "\u{1b}[1;32m INFO\u{1b}[0m \u{1b}[2mssh.fail\u{1b}[0m: match [\"\\u{1b}[0m\"]\r"
            ),
            matched("ssh.fail", &["\u{1b}[0m"])
        );
        assert_eq!(
            event("\u{1b}[31mERROR\u{1b}[0m stream ssh exited: boom"),
            stream_err("ssh", StreamErrorKind::Exit)
        );
        // Level padded on the right.
        assert_eq!(
            event("WARN  plugin ipset: hello"),
            Event::Plugin {
                name: "ipset".into()
            }
        );
        // Lone ESC and a CSI cut short are dropped, the text around them kept.
        assert_eq!(strip_ansi("a\u{1b}b"), "ab");
        assert_eq!(strip_ansi("a\u{1b}[12;"), "a");
        assert_eq!(strip_ansi("a\u{1b}[1é"), "aé");
        assert_eq!(strip_ansi("\u{1b}[0mé\u{1b}[K"), "é");
        assert!(matches!(strip_ansi("plain"), Cow::Borrowed("plain")));
    }

    #[test]
    fn actions() {
        assert_eq!(
            event(
                r#"INFO ssh.failedlogin.ban: run ["iptables" "-w" "-I" "reaction" "1" "-s" "1.2.3.4" "-j" "DROP"]"#
            ),
            action(
                "ssh.failedlogin.ban",
                &["iptables", "-w", "-I", "reaction", "1", "-s", "1.2.3.4", "-j", "DROP"]
            )
        );
        assert_eq!(
            event(r#"INFO a.b.c.d.e: run ["sh" "-c" "echo \"a b\" > /tmp/x; true"]"#),
            action("a.b.c.d.e", &["sh", "-c", "echo \"a b\" > /tmp/x; true"])
        );
        // Comma form tolerated.
        assert_eq!(
            event(r#"INFO s.f.a: run ["ip", "route", "a\" \"b"]"#),
            action("s.f.a", &["ip", "route", "a\" \"b"])
        );
        assert_eq!(
            event(r#"INFO s.f.a: run ["only"]"#),
            action("s.f.a", &["only"])
        );
        // Arguments printed as C strings by older toolchains: bytes escaped as `\xNN`.
        assert_eq!(
            event(
                r#"INFO s.f.a: run ["/usr/bin/notify\x1b" "jos\xc3\xa9" "\'q\'" "\xf0\x9f\x98\x80"]"#
            ),
            action("s.f.a", &["/usr/bin/notify\u{1b}", "josé", "'q'", "😀"])
        );
        assert_eq!(
            event(r#"INFO s.f.a: run ["x" ", " "\", \"" "]"]"#),
            action("s.f.a", &["x", ", ", "\", \"", "]"])
        );
    }

    #[test]
    fn commands() {
        use CommandState::*;
        assert_eq!(
            event(r#"INFO start command: run ["iptables", "-w", "-N", "reaction"]"#),
            command(Start, &["iptables", "-w", "-N", "reaction"], true, None)
        );
        assert_eq!(
            event(r#"INFO stop command: run ["iptables", "-w", "-X", "reaction"]"#),
            command(Stop, &["iptables", "-w", "-X", "reaction"], true, None)
        );
        assert_eq!(
            event(r#"ERROR stop command: run ["iptables", "-w", "-X", "reaction"]: exit code: 1"#),
            command(Stop, &["iptables", "-w", "-X", "reaction"], false, Some(1))
        );
        assert_eq!(
            event(r#"ERROR start command: run ["false"]: exit code: -1"#),
            command(Start, &["false"], false, Some(-1))
        );
        assert_eq!(
            event(r#"ERROR start command: run ["nft", "-f", "x"]"#),
            command(Start, &["nft", "-f", "x"], false, None)
        );
        assert_eq!(
            event(
                r#"ERROR start command: run ["nope"]: could not execute: No such file or directory (os error 2)"#
            ),
            command(Start, &["nope"], false, None)
        );
        assert_eq!(
            event(r#"ERROR stop command: run ["x"]: exit code: killed"#),
            command(Stop, &["x"], false, None)
        );
        assert_eq!(
            event(r#"ERROR stop command: run ["x"]:"#),
            command(Stop, &["x"], false, None)
        );
        // Space form tolerated.
        assert_eq!(
            event(r#"INFO start command: run ["a" "b c"]"#),
            command(Start, &["a", "b c"], true, None)
        );
        assert_eq!(CommandState::Start.as_str(), "start");
        assert_eq!(CommandState::Stop.as_str(), "stop");
    }

    #[test]
    fn stream_starts() {
        assert_eq!(
            event(r#"INFO ssh: start ["journalctl", "-fn0", "-u", "sshd.service"]"#),
            Event::StreamStart {
                stream: "ssh".into(),
                argv: strings(&["journalctl", "-fn0", "-u", "sshd.service"])
            }
        );
        assert_eq!(
            event(r#"INFO my.web.logs: start ["tail", "-F", "/var/log/a b.log"]"#),
            Event::StreamStart {
                stream: "my.web.logs".into(),
                argv: strings(&["tail", "-F", "/var/log/a b.log"])
            }
        );
    }

    #[test]
    fn stream_errors() {
        use StreamErrorKind::*;
        assert_eq!(
            event("ERROR could not execute stream ssh cmd: No such file or directory (os error 2)"),
            stream_err("ssh", Exec)
        );
        assert_eq!(
            event("ERROR could not execute stream a.b cmd: x cmd: y"),
            stream_err("a.b", Exec)
        );
        assert_eq!(
            event("ERROR stream ssh exited: exit status: 1"),
            stream_err("ssh", Exit)
        );
        assert_eq!(
            event("ERROR stream web.x exited"),
            stream_err("web.x", Exit)
        );
        assert_eq!(
            event("ERROR stream a exitedb exited: x"),
            stream_err("a exitedb", Exit)
        );
        assert_eq!(
            event("ERROR impossible to read output from stream ssh: stream did not contain valid UTF-8"),
            stream_err("ssh", Read)
        );
        assert_eq!(
            event("ERROR impossible to read output from stream a.b.c: x: y"),
            stream_err("a.b.c", Read)
        );
        assert_eq!(
            event("ERROR child process of stream ssh did not terminate"),
            stream_err("ssh", Timeout)
        );
        assert_eq!(
            event("ERROR child process of stream s.t did not terminate"),
            stream_err("s.t", Timeout)
        );
        // An error text that contains a keyword is still a stream error.
        assert_eq!(
            event(r#"ERROR stream ssh exited: oops: run ["x"]"#),
            stream_err("ssh", Exit)
        );
        assert_eq!(Exec.as_str(), "exec");
        assert_eq!(Exit.as_str(), "exit");
        assert_eq!(Read.as_str(), "read");
        assert_eq!(Timeout.as_str(), "timeout");
    }

    #[test]
    fn stopping_and_plugins() {
        assert_eq!(
            event("INFO received SIGTERM, closing streams..."),
            Event::Stopping {
                signal: "SIGTERM".into()
            }
        );
        assert_eq!(
            event("INFO received SIGINT, closing streams..."),
            Event::Stopping {
                signal: "SIGINT".into()
            }
        );
        assert_eq!(
            event("WARN plugin ipset: could not create set: x"),
            Event::Plugin {
                name: "ipset".into()
            }
        );
        assert_eq!(
            event("WARNING plugin virt.x:"),
            Event::Plugin {
                name: "virt.x".into()
            }
        );
    }

    #[test]
    fn nothing_to_count() {
        for line in [
            "",
            "   ",
            "\r",
            "\u{1b}[0m",
            " \u{1b}[32m \u{1b}[0m \r",
            "DEBUG anything at all: match [broken",
            " DEBUG",
            "\u{1b}[34mDEBUG\u{1b}[0m x",
            "TRACE whatever",
        ] {
            assert_eq!(parse_line(line), Ok(None), "line {line:?}");
        }
    }

    #[test]
    fn unknown_lines() {
        for line in [
            "INFO database: started ok",
            "INFO ssh: started [\"x\"]",
            "INFO",
            "ERROR",
            "hello world",
            "info ssh.f: match [\"a\"]",
            "INFO: ssh.f: match [\"a\"]",
            "NOTICE something",
            "2024-01-01 INFO ssh.f: match [\"a\"]",
            "INFO ssh.f: matched [\"a\"]",
            "INFO ssh.f match [\"a\"]",
            "INFO ssh.f:match [\"a\"]",
            "INFO something happened",
            "INFO received SIGTERM",
            "INFO received , closing streams...",
            "WARN ssh.f: match [\"a\"]",
            "ERROR ssh.f: match [\"a\"]",
            "ERROR ssh.f.ban: run [\"a\"]: exit code: 1",
            "ERROR ssh: start [\"a\"]",
            "WARN start command: run [\"a\"]",
            "ERROR stream ssh stopped",
            "ERROR stream  exited: x",
            "ERROR something broke",
            "WARN plugin",
            "WARN plugin : x",
            "WARN plugin x y: z",
            "WARN plugin x:y",
            "WARN config reloaded",
            "INFO flushing",
        ] {
            assert_eq!(parse_line(line), Err(ParseError::Unknown), "line {line:?}");
        }
    }

    #[test]
    fn malformed_lines() {
        for (line, what) in [
            (r#"INFO s.f: match ["a"#, "match"),
            (r#"INFO s.f: match ["a", "b"#, "match"),
            (r#"INFO s.f: match ["a\q"]"#, "match"),
            (r#"INFO s.f: match ["\u{110000}"]"#, "match"),
            (r#"INFO s.f: match ["\u{d800}"]"#, "match"),
            (r#"INFO s.f: match ["a"] trailing"#, "match"),
            (r#"INFO s.f: match ["a"]]"#, "match"),
            (r#"INFO s.f: match ["a" "b"]"#, "match"),
            (r#"INFO s.f: match ["a","b"]"#, "match"),
            (r#"INFO s.f: match [a]"#, "match"),
            (r#"INFO s.f: match ["a", ]"#, "match"),
            (r#"INFO s.f: match ["a"#, "match"),
            (r#"INFO : match ["a"]"#, "match"),
            (r#"INFO s.f.a: run ["a" "b"#, "action"),
            (r#"INFO s.f.a: run ["a"] x"#, "action"),
            (r#"INFO s.f.a: run ["a" "\y41"]"#, "action"),
            (r#"INFO s.f.a: run ["a" "\xc3"]"#, "action"),
            (r#"INFO s.f.a: run ["a",  "b"]"#, "action"),
            (r#"INFO s.f.a: run ["a", "b" "c"]"#, "action"),
            (r#"INFO start command: run ["a"]: exit code: 0"#, "command"),
            (r#"INFO stop command: run ["a"#, "command"),
            (r#"ERROR stop command: run ["a"] exit code: 1"#, "command"),
            (
                r#"ERROR start command: run [oops]: exit code: 1"#,
                "command",
            ),
            (r#"INFO ssh: start ["a", "b"] now"#, "stream start"),
            (r#"INFO ssh: start [broken"#, "stream start"),
            (r#"INFO ssh: start ["\u{}"]"#, "stream start"),
            (
                "ERROR could not execute stream ssh: no such file",
                "stream error",
            ),
            ("ERROR could not execute stream  cmd: x", "stream error"),
            (
                "ERROR impossible to read output from stream ssh",
                "stream error",
            ),
            (
                "ERROR child process of stream ssh did terminate",
                "stream error",
            ),
            (
                "ERROR child process of stream  did not terminate",
                "stream error",
            ),
        ] {
            assert_malformed(line, what);
        }
        let e = parse_line(r#"INFO s.f: match ["a\q"]"#).unwrap_err();
        assert!(matches!(e, ParseError::Malformed { what: "match", .. }));
        assert_eq!(
            e.to_string(),
            "malformed match: invalid escape at byte 3 of the list"
        );
    }

    /// Unicode strings rich in control chars, quotes, backslashes and separators.
    fn tricky_string() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            4 => any::<char>().prop_map(String::from),
            2 => prop::sample::select(vec![
                '"', '\\', '\'', '\n', '\r', '\t', '\0', '\u{1b}', '\u{7f}', '\u{9b}', ' ', ',',
                '[', ']', ':', '.', '\u{301}', '\u{200b}', '\u{feff}', '😀', '\u{10ffff}', 'é',
            ])
            .prop_map(String::from),
            1 => prop::sample::select(vec![
                "\", \"", "\"]", "\" \"", "\\u{1b}", ": match [", ": run [", ": start [",
                "]: exit code: 1", " INFO ", "\u{1b}[0m",
            ])
            .prop_map(String::from),
        ];
        prop::collection::vec(piece, 0..12).prop_map(|v| v.concat())
    }

    fn tricky_vec() -> impl Strategy<Value = Vec<String>> {
        prop::collection::vec(tricky_string(), 0..6)
    }

    proptest! {
        #[test]
        fn match_round_trips(v in tricky_vec()) {
            let line = format!("INFO s.f: match {v:?}");
            prop_assert_eq!(
                parse_line(&line),
                Ok(Some(Event::Match { target: "s.f".into(), values: v }))
            );
        }

        #[test]
        fn match_round_trips_any_strings(v in prop::collection::vec(any::<String>(), 0..4)) {
            let line = format!("\u{1b}[32m INFO\u{1b}[0m s.f: match {v:?}\r");
            prop_assert_eq!(
                parse_line(&line),
                Ok(Some(Event::Match { target: "s.f".into(), values: v }))
            );
        }

        #[test]
        fn action_round_trips_bracketed(v in tricky_vec()) {
            let joined = v.iter().map(|a| format!("{a:?}")).collect::<Vec<_>>().join(" ");
            let line = format!("INFO s.f.a: run [{joined}]");
            prop_assert_eq!(
                parse_line(&line),
                Ok(Some(Event::Action { target: "s.f.a".into(), argv: v }))
            );
        }

        /// `Debug` of `std::process::Command` on this toolchain (1.95) is `"prog" "arg" ...`
        /// (quoted, single spaces, no brackets; reaction puts it inside `[...]`). The program is
        /// printed as a C string (`\x1b`, `\'`), the other arguments like `str`. A NUL makes it
        /// print `"<string-with-nul>"`, so NULs are left out of this one.
        #[test]
        fn action_round_trips_process_command(v in tricky_vec()) {
            let v: Vec<String> = v.into_iter().map(|s| s.replace('\0', "")).collect();
            let (program, args) = match v.split_first() {
                Some((p, rest)) => (p.clone(), rest.to_vec()),
                None => ("prog".to_string(), Vec::new()),
            };
            let mut cmd = std::process::Command::new(&program);
            cmd.args(&args);
            let line = format!("INFO s.f.a: run [{cmd:?}]");
            let mut argv = vec![program];
            argv.extend(args);
            prop_assert_eq!(
                parse_line(&line),
                Ok(Some(Event::Action { target: "s.f.a".into(), argv }))
            );
        }

        /// Arguments as older toolchains print them (C strings: bytes escaped as `\xNN`).
        #[test]
        fn action_round_trips_escaped_bytes(v in tricky_vec()) {
            let joined = v
                .iter()
                .map(|a| format!("\"{}\"", a.as_bytes().escape_ascii()))
                .collect::<Vec<_>>()
                .join(" ");
            let line = format!("INFO s.f.a: run [{joined}]");
            prop_assert_eq!(
                parse_line(&line),
                Ok(Some(Event::Action { target: "s.f.a".into(), argv: v }))
            );
        }

        #[test]
        fn command_round_trips(v in tricky_vec(), code in any::<i32>(), stop in any::<bool>()) {
            let (state, word) = if stop {
                (CommandState::Stop, "stop")
            } else {
                (CommandState::Start, "start")
            };
            let ok_line = format!("INFO {word} command: run {v:?}");
            prop_assert_eq!(
                parse_line(&ok_line),
                Ok(Some(Event::Command { state, argv: v.clone(), ok: true, code: None }))
            );
            let err_line = format!("ERROR {word} command: run {v:?}: exit code: {code}");
            prop_assert_eq!(
                parse_line(&err_line),
                Ok(Some(Event::Command { state, argv: v, ok: false, code: Some(code.into()) }))
            );
        }

        #[test]
        fn stream_start_round_trips(v in tricky_vec()) {
            let line = format!("INFO my.stream: start {v:?}");
            prop_assert_eq!(
                parse_line(&line),
                Ok(Some(Event::StreamStart { stream: "my.stream".into(), argv: v }))
            );
        }

        #[test]
        fn parse_line_never_panics(s in "\\PC*") {
            let _ = parse_line(&s);
            let _ = parse_line(&format!("INFO {s}"));
            let _ = parse_line(&format!("ERROR {s}"));
            let _ = parse_line(&format!("INFO s.f: match [{s}"));
        }

        #[test]
        fn truncated_match_lines_never_parse(v in prop::collection::vec(tricky_string(), 1..4),
                                             cut in any::<prop::sample::Index>()) {
            let line = format!("INFO s.f: match {v:?}");
            let start = "INFO s.f: match [".len();
            let mut at = start + cut.index(line.len() - start);
            while !line.is_char_boundary(at) {
                at -= 1;
            }
            let r = parse_line(&line[..at]);
            prop_assert!(
                matches!(r, Err(ParseError::Malformed { what: "match", .. })),
                "{:?} gave {:?}", &line[..at], r
            );
        }
    }
}
