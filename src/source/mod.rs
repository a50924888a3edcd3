//! Log line producers. A source turns bytes somewhere (a file, the journal) into
//! [`LogLine`]s and reports what happened to it through a [`SourceObserver`].

use std::fmt::{self, Display};
use std::io;
use std::path::Path;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

pub mod file;
pub(crate) mod journald;

/// One complete line of reaction's output, as read from a source: a line of [`Lines`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLine<'a> {
    /// When the line was logged: the journal's timestamp, or the read time for a file
    /// (a file has no timestamps of its own).
    pub time: SystemTime,
    /// The line without its trailing newline (and without a trailing `\r`).
    pub text: &'a str,
    /// The source's bytes were not valid UTF-8: `text` has U+FFFD in place of the invalid
    /// ones, and the source counted the line as `invalid_utf8`. It is still parsed and
    /// counted, but not rejected a second time under another reason.
    pub lossy: bool,
}

/// Lines in order, their texts one after the other in one buffer.
///
/// Why one buffer (issue 13): a source reads on one thread (the file on tokio's blocking
/// pool, the journal in its task) and the pipeline frees each line on another. With a
/// string per line, jemalloc's thread caches gave the places the lines were freed from to
/// the pipeline's series (the SDK's entries, the packed attributes: the same 64-128-byte
/// size classes), while the source took new places for its lines: pages left half empty
/// and resident, 8.8 MiB of (b)'s 48 MiB held before its scrape, 69 bytes a series
/// (jemalloc's own counts, `benches/README.md`). A batch's text is now one allocation,
/// asked for once at the size the poll reads, and freed whole.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lines {
    text: String,
    lines: Vec<LineAt>,
}

/// Where a line of [`Lines`] ends in its text, and what else is known of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LineAt {
    end: usize,
    time: SystemTime,
    lossy: bool,
}

impl Lines {
    /// No lines.
    pub fn new() -> Lines {
        Lines::default()
    }

    /// Room for `bytes` more bytes of text, asked for at once rather than as lines come.
    pub(crate) fn reserve(&mut self, bytes: usize) {
        self.text.reserve(bytes);
    }

    /// Add a line after the others (see [`LogLine`] for what its parts mean).
    pub(crate) fn push(&mut self, time: SystemTime, text: &str, lossy: bool) {
        self.text.push_str(text);
        self.lines.push(LineAt {
            end: self.text.len(),
            time,
            lossy,
        });
    }

    /// The bytes the text has room for.
    #[cfg(test)]
    pub(crate) fn text_capacity(&self) -> usize {
        self.text.capacity()
    }

    /// How many lines.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// No lines at all.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The bytes of the lines, with a newline each (as read).
    pub(crate) fn bytes(&self) -> u64 {
        (self.text.len() + self.lines.len()) as u64
    }

    /// The lines, in order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = LogLine<'_>> + ExactSizeIterator {
        (0..self.lines.len()).map(|i| self.line(i))
    }

    /// The last line.
    pub(crate) fn last(&self) -> Option<LogLine<'_>> {
        self.iter().next_back()
    }

    fn line(&self, i: usize) -> LogLine<'_> {
        let start = i.checked_sub(1).map_or(0, |p| self.lines[p].end);
        let l = &self.lines[i];
        LogLine {
            time: l.time,
            // (Each end is the text's length after a whole `&str` was pushed: a char
            // boundary, and never before the previous one.)
            text: &self.text[start..l.end],
            lossy: l.lossy,
        }
    }
}

impl<'a> Extend<LogLine<'a>> for Lines {
    fn extend<I: IntoIterator<Item = LogLine<'a>>>(&mut self, lines: I) {
        for l in lines {
            self.push(l.time, l.text, l.lossy);
        }
    }
}

impl<'a> FromIterator<LogLine<'a>> for Lines {
    fn from_iter<I: IntoIterator<Item = LogLine<'a>>>(lines: I) -> Lines {
        let mut out = Lines::new();
        out.extend(lines);
        out
    }
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
    pub(crate) lines: Lines,
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    #[test]
    fn lines_come_back_as_pushed_in_order() {
        let mut lines = Lines::new();
        assert!(lines.is_empty() && lines.last().is_none());
        lines.push(at(1), "first", false);
        lines.push(at(2), "", false);
        lines.push(at(3), "é \u{fffd} – ok", true);
        lines.push(at(4), "last", false);
        let got: Vec<(SystemTime, &str, bool)> =
            lines.iter().map(|l| (l.time, l.text, l.lossy)).collect();
        assert_eq!(
            got,
            [
                (at(1), "first", false),
                (at(2), "", false),
                (at(3), "é \u{fffd} – ok", true),
                (at(4), "last", false),
            ]
        );
        assert_eq!(lines.len(), 4);
        assert_eq!(lines.last().map(|l| l.text), Some("last"));
        assert_eq!(lines.iter().nth_back(1).map(|l| l.time), Some(at(3)));
        // As read: each with its newline.
        assert_eq!(
            lines.bytes(),
            ("first\n\né \u{fffd} – ok\nlast\n".len()) as u64
        );
        let copy: Lines = lines.iter().collect();
        assert_eq!(copy, lines);
    }

    /// Guards the reason `Lines` exists (issue 13): a batch's texts are one buffer, not a
    /// string per line freed on another thread than the one that made it.
    #[test]
    fn a_batch_keeps_its_texts_in_one_buffer() {
        let mut lines = Lines::new();
        for i in 0..100 {
            lines.push(at(i), &format!("line {i}"), false);
        }
        let texts: Vec<&str> = lines.iter().map(|l| l.text).collect();
        for pair in texts.windows(2) {
            let end = pair[0].as_ptr().wrapping_add(pair[0].len());
            assert_eq!(
                end,
                pair[1].as_ptr(),
                "{:?} and {:?} are apart",
                pair[0],
                pair[1]
            );
        }
    }
}
