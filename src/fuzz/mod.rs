//! Fuzzing on the stable toolchain (issue 8): `cargo fuzz` needs nightly, so this crate
//! carries its own harness. Each [`Target`] is a reader of hostile input (a log line, a
//! `Debug` string, the configuration, `reaction show`, journalctl's JSON, the state file).
//! A [`Campaign`] starts from the target's seeds (valid inputs), mutates them with the
//! target's tokens ([`mutate`]), keeps in its corpus each input whose answer has a
//! signature not seen before (a cheap stand-in for coverage), and stops at the first panic
//! ([`Crash`]), which names the input.
//!
//! Drivers: `tests/fuzz.rs` runs a short campaign of each target at every `cargo test`,
//! and replays every crash kept in `fuzz/regressions/<target>/`; `examples/fuzz.rs` runs
//! long ones on demand (see the README's "Limits and hostile input").

pub mod mutate;
mod targets;

use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use mutate::{mutate, Rng};

/// What is fuzzed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `parse_line`: reaction's log lines.
    Line,
    /// The Rust-`Debug` string and list tokenizer.
    DebugStr,
    /// The configuration loader (YAML and JSON, templates test-rendered).
    Config,
    /// `reaction show`'s YAML.
    Show,
    /// journalctl's JSON output, cut into bounded records and decoded.
    Journal,
    /// The state file's checks and what a restore reads of it.
    State,
}

impl Target {
    /// Every target.
    pub const ALL: [Target; 6] = [
        Target::Line,
        Target::DebugStr,
        Target::Config,
        Target::Show,
        Target::Journal,
        Target::State,
    ];

    /// Its name (also its directory under `fuzz/regressions/`).
    pub fn name(self) -> &'static str {
        match self {
            Target::Line => "line",
            Target::DebugStr => "debug_str",
            Target::Config => "config",
            Target::Show => "show",
            Target::Journal => "journal",
            Target::State => "state",
        }
    }

    /// The target named `name`.
    pub fn from_name(name: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Runs one input; returns the signature of the answer (panics on a crash).
    pub fn run(self, input: &[u8]) -> u64 {
        match self {
            Target::Line => targets::line(input),
            Target::DebugStr => targets::debug_str(input),
            Target::Config => targets::config(input),
            Target::Show => targets::show(input),
            Target::Journal => targets::journal(input),
            Target::State => targets::state(input),
        }
    }

    /// The longest input generated.
    fn max_len(self) -> usize {
        match self {
            Target::Line | Target::DebugStr => 1024,
            Target::Config | Target::Show | Target::State => 4096,
            Target::Journal => 8192,
        }
    }

    /// Valid inputs to start from.
    pub fn seeds(self) -> Vec<Vec<u8>> {
        let lines = || {
            include_str!("../../examples/demo/reaction.log")
                .lines()
                .chain(EXTRA_LINES.iter().copied())
                .map(|l| l.as_bytes().to_vec())
                .collect::<Vec<_>>()
        };
        match self {
            Target::Line => lines(),
            Target::DebugStr => DEBUG_SEEDS.iter().map(|s| s.as_bytes().to_vec()).collect(),
            Target::Config => [
                include_str!("../../examples/config.defaults.yml"),
                include_str!("../../examples/demo/config.yml"),
            ]
            .into_iter()
            .chain(CONFIG_SEEDS.iter().copied())
            .map(|s| s.as_bytes().to_vec())
            .collect(),
            Target::Show => SHOW_SEEDS.iter().map(|s| s.as_bytes().to_vec()).collect(),
            Target::Journal => JOURNAL_SEEDS
                .iter()
                .map(|s| s.as_bytes().to_vec())
                .collect(),
            Target::State => targets::state_seeds(),
        }
    }

    /// The target's tokens, inserted by the mutator.
    fn dictionary(self) -> &'static [&'static [u8]] {
        match self {
            Target::Line => LINE_TOKENS,
            Target::DebugStr => DEBUG_TOKENS,
            Target::Config => CONFIG_TOKENS,
            Target::Show => SHOW_TOKENS,
            Target::Journal => JOURNAL_TOKENS,
            Target::State => STATE_TOKENS,
        }
    }
}

/// A fuzzing run of one target.
#[derive(Debug, Clone)]
pub struct Campaign {
    /// What is fuzzed.
    pub target: Target,
    /// How many inputs to run (the seeds included).
    pub inputs: u64,
    /// The mutator's seed: the same seed runs the same inputs.
    pub seed: u64,
}

/// What a campaign did, when nothing crashed.
#[derive(Debug, Clone)]
pub struct Report {
    /// Inputs run.
    pub inputs: u64,
    /// Distinct answer signatures seen.
    pub signatures: usize,
    /// Inputs kept in the corpus (the seeds included).
    pub corpus: usize,
    /// The whole run.
    pub elapsed: Duration,
    /// The slowest input, and how long it took.
    pub slowest: (Duration, Vec<u8>),
}

/// An input that panicked.
#[derive(Debug, Clone)]
pub struct Crash {
    /// The target that crashed.
    pub target: Target,
    /// The input.
    pub input: Vec<u8>,
    /// The panic's message.
    pub message: String,
}

impl std::fmt::Display for Crash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "target {} panicked ({}) on {:?}",
            self.target.name(),
            self.message,
            String::from_utf8_lossy(&self.input)
        )
    }
}

/// Runs one input of `target`, a panic caught as a [`Crash`].
pub fn replay(target: Target, input: &[u8]) -> Result<u64, Crash> {
    catch_unwind(AssertUnwindSafe(|| target.run(input))).map_err(|panic| Crash {
        target,
        input: input.to_vec(),
        message: panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_owned()),
    })
}

/// At most this many inputs are kept in a corpus.
const CORPUS_MAX: usize = 20_000;

impl Campaign {
    /// Runs the seeds, then mutated inputs, until `inputs` have run or one crashes.
    pub fn run(&self) -> Result<Report, Crash> {
        let target = self.target;
        let started = Instant::now();
        let mut rng = Rng::new(self.seed);
        let mut corpus = target.seeds();
        let mut seen = HashSet::new();
        let mut slowest = (Duration::ZERO, Vec::new());
        let timed = |input: &[u8], slowest: &mut (Duration, Vec<u8>)| {
            let t = Instant::now();
            let signature = replay(target, input)?;
            let took = t.elapsed();
            if took > slowest.0 {
                *slowest = (took, input.to_vec());
            }
            Ok::<_, Crash>(signature)
        };
        for seed in &corpus {
            seen.insert(timed(seed, &mut slowest)?);
        }
        let mut run = corpus.len() as u64;
        let dictionary = target.dictionary();
        let mut input = Vec::new();
        while run < self.inputs {
            input.clear();
            input.extend_from_slice(&corpus[rng.below(corpus.len())]);
            mutate(&mut rng, &mut input, dictionary, &corpus, target.max_len());
            let signature = timed(&input, &mut slowest)?;
            run += 1;
            if seen.insert(signature) && corpus.len() < CORPUS_MAX {
                corpus.push(input.clone());
            }
        }
        Ok(Report {
            inputs: run,
            signatures: seen.len(),
            corpus: corpus.len(),
            elapsed: started.elapsed(),
            slowest,
        })
    }
}

/// Lines the demo log does not have: colours, escapes, every stream failure.
const EXTRA_LINES: &[&str] = &[
    "\u{1b}[1;32m INFO\u{1b}[0m \u{1b}[2mssh.fail\u{1b}[0m: match [\"\\u{1b}[0m\"]\r",
    r#"INFO s.f: match ["a b", "say \"hi\"", "x\", \"y", "k: v", "[1]", "😀 é", "\u{1b}[31m", "a\\b", "", "tab\there"]"#,
    r#"INFO s.f.a: run ["/usr/bin/notify\x1b" "jos\xc3\xa9" "\'q\'" "\xf0\x9f\x98\x80"]"#,
    r#"ERROR start command: run ["nope"]: could not execute: No such file or directory (os error 2)"#,
    r#"ERROR stop command: run ["x"]: exit code: killed"#,
    "ERROR could not execute stream a.b cmd: x cmd: y",
    "ERROR stream ssh exited: exit status: 1",
    "ERROR impossible to read output from stream ssh: stream did not contain valid UTF-8",
    "ERROR child process of stream ssh did not terminate",
    "INFO received SIGINT, closing streams...",
    "DEBUG anything",
];

const LINE_TOKENS: &[&[u8]] = &[
    b"INFO ",
    b"WARN ",
    b"ERROR ",
    b"DEBUG ",
    b": match ",
    b": run ",
    b": start ",
    b"start command",
    b"stop command",
    b": exit code: ",
    b"could not execute",
    b"stream ",
    b" exited",
    b"impossible to read output from stream ",
    b"child process of stream ",
    b" did not terminate",
    b"received SIGTERM, closing streams...",
    b"plugin ",
    b"[\"",
    b"\"]",
    b"\", \"",
    b"\" \"",
    b"\\u{",
    b"\\u{10ffff}",
    b"\\u{d800}",
    b"\\x",
    b"\\xc3\\xa9",
    b"\\\"",
    b"\\\\",
    b"\\n",
    b"\x1b[31m",
    b"\x1b[0m",
    b"ssh.failedlogin",
    b"a.b.c",
    b"\xef\xbf\xbd",
];

const DEBUG_SEEDS: &[&str] = &[
    r#""abc""#,
    r#""say \"hi\" \\ \n \t \r \0 \' \u{1b} \u{10ffff} é 😀""#,
    r#"["a", "b c", "\"x\", \"y\""]"#,
    r#"["iptables" "-w" "-I" "reaction" "1"]"#,
    r#"["\xc3\xa9" "\xf0\x9f\x98\x80"]"#,
    "[]",
    "a\0b c\0\u{1b}[0m\0",
];

const DEBUG_TOKENS: &[&[u8]] = &[
    b"\"",
    b"\\",
    b"\\\"",
    b"\\u{",
    b"}",
    b"\\u{0}",
    b"\\u{110000}",
    b"\\u{dfff}",
    b"\\u{1F600}",
    b"\\x",
    b"\\xff",
    b"\\xc3",
    b"\\xe2\\x82",
    b"\\n",
    b"\\'",
    b"[",
    b"]",
    b", ",
    b" ",
    b"\0",
    b"\xcc\x81",
];

const CONFIG_SEEDS: &[&str] = &[
    r#"{"listen": {"port": 9000}, "reaction": {"hold": 5, "timeout": 2.5}}"#,
    "metrics:\n  all:\n    ip:\n      template: \"{{ value | upper }}\"\n  for:\n    ssh:\n      failedlogin:\n        user:\n          template: \"{% for i in range(3) %}{{ i }}{% endfor %}\"\n",
    "reaction:\n  logs:\n    systemd: reaction.service\n    max_line_length: 4096\n",
];

const CONFIG_TOKENS: &[&[u8]] = &[
    b"listen:\n",
    b"  port: ",
    b"  address: ",
    b"reaction:\n",
    b"  hold: ",
    b"  timeout: ",
    b"  logs:\n",
    b"    max_line_length: ",
    b"    file: ",
    b"    systemd: ",
    b"    start_at: ",
    b"state:\n",
    b"  recall: ",
    b"  directory: ",
    b"metrics:\n",
    b"  cardinality_limit: ",
    b"  attribution_memory: ",
    b"  export:\n",
    b"  all:\n",
    b"  for:\n",
    b"      template: ",
    b"      rename: ",
    b"otlp:\n",
    b"  interval: ",
    b"  endpoint: ",
    b"loglevel: ",
    b"{{ ",
    b" }}",
    b"{% for i in range(100000) %}",
    b"{% endfor %}",
    b"{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}",
    b"'x' * 100000000",
    b" | upper",
    b"&a ",
    b"*a",
    b"!!binary ",
    b"- ",
    b": ",
    b"\n  ",
    b"\"",
    b"{\"",
    b"\": ",
    b"~",
    b"\0",
];

const SHOW_SEEDS: &[&str] = &[
    "ssh:\n  failedlogin:\n    \"1.2.3.4\":\n      matches: 2\n      actions:\n        unban: [\"2026-11-27 10:00:00\"]\n    \"5.6.7.8\":\n      matches: 1\n",
    "web:\n  bots:\n    \"1.2.3.4 GPTBot/1.0\":\n      actions:\n        unban:\n          - \"2026-11-27 10:00:00\"\n          - \"2026-11-28 10:00:00\"\n        notify: [\"2026-11-27 10:00:00\"]\n",
    "s.1:\n  f.2:\n    \"a b \\\"c\\\" d\":\n      actions: {x: [t]}\n    \"日本語 ü\":\n      actions: {x: [t, t]}\n    'it''s: # here':\n      actions: {x: [t]}\n",
    "{}\n",
];

const SHOW_TOKENS: &[&[u8]] = &[
    b"matches: ",
    b"actions:\n",
    b"  ",
    b"- ",
    b": ",
    b"[",
    b"]",
    b"{",
    b"}",
    b"\"",
    b"'",
    b"&a ",
    b"*a",
    b"!!str ",
    b"? ",
    b"<<: *a",
    b"\n",
    b"~",
];

const JOURNAL_SEEDS: &[&str] = &[
    "{\"__CURSOR\":\"s=0123456789abcdef0123456789abcdef;i=1;b=0123456789abcdef0123456789abcdef;m=1;t=5f0a;x=ab\",\"__REALTIME_TIMESTAMP\":\"1764237600000000\",\"MESSAGE\":\"INFO ssh.failedlogin: match [\\\"192.0.2.1\\\", \\\"root\\\"]\"}\n{\"__CURSOR\":\"s=1;i=2\",\"__REALTIME_TIMESTAMP\":\"1764237600000001\",\"MESSAGE\":[73,78,70,79,32,255,10]}\n",
    "{\"MESSAGE\":null}\n{\"MESSAGE\":\"x\\r\\n\"}\n\n[1,2]\nnot json\n{\"MESSAGE\":[256]}\n{\"MESSAGE\":{\"a\":1}}",
];

const JOURNAL_TOKENS: &[&[u8]] = &[
    b"{\"MESSAGE\":\"",
    b"{\"MESSAGE\":[",
    b"\"__CURSOR\":\"",
    b"\"__REALTIME_TIMESTAMP\":\"",
    b"18446744073709551615",
    b"\",",
    b"\"}\n",
    b"]}\n",
    b"255,",
    b"10,",
    b"\\u0000",
    b"\\ud800",
    b"\\\"",
    b"\n",
    b"null",
];

const STATE_TOKENS: &[&[u8]] = &[
    b"\"format\":",
    b"\"reaction-metrics-exporter/state/1\"",
    b"\"saved_at_ms\":",
    b"\"source\":",
    b"\"position\":",
    b"\"counts\":",
    b"{\"kind\":\"file\",\"path\":\"/var/log/reaction.log\"}",
    b"{\"kind\":\"journal\",\"unit\":\"reaction.service\",\"directory\":null}",
    b"{\"kind\":\"journal\",\"cursor\":\"",
    b"\"family\":\"reaction.matches\"",
    b"\"attributes\":[[\"ip\",\"1\"]]",
    b"\"value\":",
    b"18446744073709551615",
    b"\\u0000",
    b"null",
    b"[",
    b"]",
    b"{",
    b"}",
];
