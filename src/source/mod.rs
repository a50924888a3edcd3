//! Log line producers. A source turns bytes somewhere (a file, the journal) into
//! [`LogLine`]s and reports what happened to it through a [`SourceObserver`].

use std::fmt::{self, Display};
use std::io;
use std::path::Path;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

pub mod file;
pub(crate) mod journald;

/// One complete line of reaction's output, as read from a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// When the line was logged: the journal's timestamp, or the read time for a file
    /// (a file has no timestamps of its own).
    pub time: SystemTime,
    /// The line without its trailing newline (and without a trailing `\r`).
    pub text: String,
    /// The source's bytes were not valid UTF-8: `text` has U+FFFD in place of the invalid
    /// ones, and the source counted the line as `invalid_utf8`. It is still parsed and
    /// counted, but not rejected a second time under another reason.
    pub lossy: bool,
}

/// Where a source is in its input, after the last line it emitted: what a checkpoint saves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Position {
    /// A file: its identity, the offset after the last line emitted, and a fingerprint of
    /// its head (FNV-1a 64 of its first `head_len` bytes, at most 256) to detect a file
    /// truncated and rewritten, or an inode number reused by another file.
    File {
        /// The file's device.
        dev: u64,
        /// The file's inode.
        ino: u64,
        /// The offset of the first byte not emitted as a line.
        offset: u64,
        /// How many first bytes the fingerprint covers.
        head_len: u64,
        /// Their FNV-1a 64 hash.
        head_hash: u64,
    },
    /// The journal.
    Journal {
        /// The cursor of the last record read.
        cursor: String,
    },
}

/// Lines in order, and the position after the last of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Batch {
    pub(crate) lines: Vec<LogLine>,
    pub(crate) position: Option<Position>,
    /// More lines were waiting at the source when this batch was made (a backlog being
    /// read): the file had more than a poll's budget, the journal a full batch.
    pub(crate) backlog: bool,
}

/// Where a line comes from, to name it in the self-monitoring's log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin<'a> {
    /// A log file.
    File(&'a Path),
    /// The journal entries of a systemd unit.
    Journal {
        /// The unit, as matched (`reaction.service`).
        unit: &'a str,
    },
}

impl Display for Origin<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::Journal { unit } => write!(f, "the journal of {unit}"),
        }
    }
}

/// What a source tells the self-monitoring about itself. The implementation logs
/// (rate-limited) and counts; sources only call it.
pub trait SourceObserver: Send + Sync {
    /// The path now names another file (rename-and-create rotation, delete and re-create).
    fn rotated(&self, path: &Path);
    /// The file got shorter or its head changed in place (copytruncate, truncation).
    fn truncated(&self, path: &Path);
    /// The path could not be opened, read or stat'ed. Called at every failed attempt;
    /// the implementation rate-limits its logging.
    fn error(&self, path: &Path, err: &io::Error);
    /// The path is readable again after one or more errors.
    fn recovered(&self, path: &Path);
    /// A line was not valid UTF-8; it is still emitted, decoded lossily.
    fn invalid_utf8(&self, origin: Origin<'_>);
    /// A line longer than the configured maximum was dropped (`len` bytes seen so far).
    fn line_too_long(&self, origin: Origin<'_>, len: usize);
    /// A helper process (journalctl) could not start, exited or failed; `what` says which
    /// (e.g. "journalctl not found", "journalctl exited with status 1").
    fn child_failed(&self, what: &str, detail: &dyn Display);
    /// A line the helper process wrote on its stderr (logged, rate-limited).
    fn child_stderr(&self, line: &str);
    /// A saved position could not be used (a journal cursor that journalctl rejects or that
    /// no longer exists); the source fell back to `fallback` (e.g. "the end of the journal").
    fn position_invalid(&self, position: &str, fallback: &str);
    /// The source works again after `child_failed`.
    fn child_recovered(&self, what: &str);
}
