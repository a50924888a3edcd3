//! The fuzz targets: each runs one input through a reader of hostile input exactly as the
//! exporter does, checks what must hold of its answer, and returns a signature of that
//! answer (its kind, error class, shape: digits left out) that the campaign uses as a cheap
//! stand-in for coverage. A panic is a crash.

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::{Config, ConfigFormat};
use crate::internal::Internal;
use crate::label::attribution::{SavedMap, SavedMemory};
use crate::parse::debug_str::{parse_list, parse_str, Separator};
use crate::parse::{parse_line, Event, ParseError};
use crate::reaction::parse_show;
use crate::source::journald::read_output;
use crate::source::Position;
use crate::state::{self, SavedCount, SourceId, State};
use crate::telemetry::collect::Attrs;

/// FNV-1a 64 over what describes an answer; digits are left out, so that positions and
/// counts do not make every answer new.
#[derive(Debug, Clone, Copy)]
struct Signature(u64);

impl Signature {
    fn new(kind: u64) -> Signature {
        let mut s = Signature(0xcbf2_9ce4_8422_2325);
        s.add(&kind.to_le_bytes());
        s
    }

    fn add(&mut self, bytes: &[u8]) -> &mut Signature {
        for &b in bytes.iter().filter(|b| !b.is_ascii_digit()) {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        self
    }

    fn number(&mut self, n: usize) -> &mut Signature {
        // Small counts as such, larger ones by magnitude.
        let class = if n < 8 { n } else { 8 + n.ilog2() as usize };
        self.0 = (self.0 ^ class as u64).wrapping_mul(0x0100_0000_01b3);
        self
    }
}

/// The shape of an error message: its words without what it quotes (values differ from
/// one input to the next), except the first backquoted part (a configuration key).
fn shape(message: &str) -> String {
    let mut out = String::new();
    let mut quote: Option<char> = None;
    let mut keys = 0;
    for c in message.chars().take(200) {
        match quote {
            Some(q) if c == q => quote = None,
            Some('`') if keys == 1 => out.push(c),
            Some(_) => {}
            None if c == '"' || c == '\'' || c == '`' => {
                quote = Some(c);
                if c == '`' {
                    keys += 1;
                }
                out.push(c);
            }
            None => out.push(c),
        }
    }
    out
}

/// A line as the sources give it to the parser (lossy UTF-8, no newline).
fn text(input: &[u8]) -> String {
    String::from_utf8_lossy(input).into_owned()
}

/// `parse_line`, on reaction's log lines; what it decodes round-trips through `Debug`.
pub(super) fn line(input: &[u8]) -> u64 {
    let line = text(input);
    match parse_line(&line) {
        Ok(None) => Signature::new(0).0,
        Ok(Some(event)) => {
            let mut s = Signature::new(1);
            match &event {
                Event::Match { target, values } => {
                    s.add(b"match").number(values.len());
                    // Rendered as reaction renders it, the event reads back the same.
                    let again = format!("INFO {target}: match {values:?}");
                    if !target.contains(':') && target.trim() == target && !target.is_empty() {
                        assert_eq!(
                            parse_line(&again),
                            Ok(Some(event.clone())),
                            "{again:?} from {line:?}"
                        );
                    }
                }
                Event::Action { argv, .. } => {
                    s.add(b"action").number(argv.len());
                }
                Event::Command {
                    state,
                    argv,
                    ok,
                    code,
                } => {
                    s.add(b"command")
                        .add(state.as_str().as_bytes())
                        .number(argv.len())
                        .number(usize::from(*ok))
                        .number(usize::from(code.is_some()));
                }
                Event::StreamStart { argv, .. } => {
                    s.add(b"start").number(argv.len());
                }
                Event::StreamError { kind, .. } => {
                    s.add(b"stream error").add(kind.as_str().as_bytes());
                }
                Event::Stopping { .. } => {
                    s.add(b"stopping");
                }
                Event::Plugin { .. } => {
                    s.add(b"plugin");
                }
            }
            s.0
        }
        Err(ParseError::Unknown) => Signature::new(2).0,
        Err(ParseError::Malformed { what, detail }) => {
            Signature::new(3)
                .add(what.as_bytes())
                .add(shape(&detail).as_bytes())
                .0
        }
    }
}

/// The `Debug` tokenizer: any input is decoded or refused; any string `Debug`-encoded
/// decodes to itself, alone and in lists of both separators.
pub(super) fn debug_str(input: &[u8]) -> u64 {
    let s = text(input);
    let mut sig = Signature::new(4);
    match parse_str(&s) {
        Ok((_, rest)) => sig.add(b"ok").number(rest.len()),
        Err(e) => sig.add(e.to_string().as_bytes()),
    };
    for sep in [Separator::Comma, Separator::Space] {
        match parse_list(&s, sep) {
            Ok((values, rest)) => sig.add(b"list").number(values.len()).number(rest.len()),
            Err(e) => sig.add(e.to_string().as_bytes()),
        };
    }
    // The input as values: NUL separates them.
    let values: Vec<String> = s.split('\0').map(str::to_owned).collect();
    let encoded = format!("{:?}", values[0]);
    assert_eq!(
        parse_str(&encoded),
        Ok((values[0].clone(), "")),
        "{encoded:?}"
    );
    let comma = format!("{values:?}");
    assert_eq!(
        parse_list(&comma, Separator::Comma),
        Ok((values.clone(), "")),
        "{comma:?}"
    );
    let space = format!(
        "[{}]",
        values
            .iter()
            .map(|v| format!("{v:?}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    assert_eq!(
        parse_list(&space, Separator::Space),
        Ok((values, "")),
        "{space:?}"
    );
    sig.0
}

/// The configuration loader (YAML, or JSON when the input starts with `{`), templates
/// test-rendered included; a configuration it accepts prints as text it accepts again,
/// unchanged (what `test-config` and `defaults` print).
pub(super) fn config(input: &[u8]) -> u64 {
    let text = text(input);
    let format = if text.trim_start().starts_with('{') {
        ConfigFormat::Json
    } else {
        ConfigFormat::Yaml
    };
    match Config::parse(&text, format, "fuzz.yml") {
        Ok(config) => {
            // What `start` makes of the values before anything runs.
            let _ = crate::app::client_config(&config);
            let _ = crate::telemetry::otlp::settings::resolve(&config.otlp, &|_| None);
            let _ = config.state.resolve_directory(&|_| None);
            let printed = config.to_text(format);
            let again = Config::parse(&printed, format, "printed.yml")
                .unwrap_or_else(|e| panic!("printed configuration refused: {e}\n{printed}"));
            assert!(again == config, "printed configuration differs:\n{printed}");
            Signature::new(5).number(printed.len() / 64).0
        }
        Err(e) => Signature::new(6).add(shape(&e.to_string()).as_bytes()).0,
    }
}

/// `reaction show`'s YAML.
pub(super) fn show(input: &[u8]) -> u64 {
    match parse_show(&text(input)) {
        Ok(entries) => {
            assert!(entries.iter().all(|e| e.count > 0), "{entries:?}");
            Signature::new(7).number(entries.len()).0
        }
        Err(e) => Signature::new(8).add(shape(&e.to_string()).as_bytes()).0,
    }
}

/// The longest line of the journal target (small, so that the bound is exercised).
pub(super) const JOURNAL_MAX_LINE: usize = 200;

/// journalctl's JSON output, records cut and bounded, each decoded: every line kept fits
/// the bound.
pub(super) fn journal(input: &[u8]) -> u64 {
    let internal = Arc::new(Internal::new());
    let (lines, cursor) = read_output(input, JOURNAL_MAX_LINE, internal);
    let mut sig = Signature::new(9);
    sig.number(lines.len())
        .number(usize::from(cursor.is_some()));
    for line in lines.iter() {
        assert!(line.text.len() <= JOURNAL_MAX_LINE, "{line:?}");
        assert!(!line.text.ends_with(['\n', '\r']), "{line:?}");
        sig.number(usize::from(line.lossy));
    }
    sig.0
}

/// The source a state file must have been saved for, in the state target.
fn expected_source() -> SourceId {
    SourceId::File {
        path: PathBuf::from("/var/log/reaction.log"),
    }
}

/// The state file's checks, then what a restore reads of it.
pub(super) fn state(input: &[u8]) -> u64 {
    match state::decode(PathBuf::from("fuzz.state.json"), input, &expected_source()) {
        Ok(state) => {
            let series = state.series();
            let _ = state.age();
            Signature::new(10).number(series.len()).0
        }
        Err(e) => Signature::new(11).add(shape(&e.to_string()).as_bytes()).0,
    }
}

/// Seeds of the state target: states as the exporter saves them.
pub(super) fn state_seeds() -> Vec<Vec<u8>> {
    let counts = vec![SavedCount {
        family: "reaction.matches".into(),
        attributes: Attrs::from_pairs([
            ("stream", "ssh"),
            ("filter", "failedlogin"),
            ("ip", "192.0.2.1"),
        ]),
        value: 3,
    }];
    let file = State::new(
        expected_source(),
        Some(Position::File {
            dev: 2049,
            ino: 1234,
            offset: 4096,
            head_len: 256,
            head_hash: 0x1234_5678_9abc_def0,
        }),
        counts.clone(),
        // Two patterns (ip, user), two matches: the older one behind the old generation.
        vec![SavedMemory {
            filter: "ssh.failedlogin".into(),
            tuples: vec![
                vec!["192.0.2.1".into(), "root".into()],
                vec!["192.0.2.2".into(), "admin".into()],
            ],
            maps: vec![
                SavedMap {
                    old: vec![0],
                    young: vec![1],
                },
                SavedMap {
                    old: vec![0],
                    young: vec![1],
                },
            ],
            last: Some(1),
        }],
    );
    let journal = State::new(
        SourceId::Journal {
            unit: "reaction.service".into(),
            directory: None,
        },
        Some(Position::Journal {
            cursor: "s=0123456789abcdef0123456789abcdef;i=1a;b=0123456789abcdef0123456789abcdef;m=1f;t=5f0a;x=ab".into(),
        }),
        counts,
        Vec::new(),
    );
    let empty = State::new(expected_source(), None, Vec::new(), Vec::new());
    [file, journal, empty]
        .iter()
        .map(|s| serde_json::to_vec_pretty(s).expect("a state serializes"))
        .collect()
}
