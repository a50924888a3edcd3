//! Follow reaction's log file by name, like `tail -F`, and cut it into [`LogLine`]s.
//!
//! [`FileTailer::poll`] is a synchronous, deterministic step (everything the model tests
//! need); `run` drives it on a timer and sends the lines to a channel.
//!
//! What one poll does:
//! 1. If a file is open: detect an in-place truncation (the file got shorter than our
//!    offset, or its first bytes changed), restart at 0 if so, then read it to its end.
//! 2. Look at the path. If it names another file than the open one (rename-and-create
//!    rotation, delete and re-create, the file appearing for the first time), read the open
//!    one to its end once more, emit its unterminated last line if any, and switch to the
//!    new file from offset 0. A path that vanished while a file is open is not an error:
//!    the open (deleted or renamed) file keeps being read until the path reappears.
//!
//! Errors (missing file, permission denied, read errors) go to the [`SourceObserver`] and
//! the step is retried at the next poll, forever.
//!
//! Where the first file starts: at its end (unless `from_beginning`) only if the path named
//! it at the first poll; a file that appears later is read from its start. Starting at the
//! end of a file that ends in the middle of a line drops the tail of that line.
//!
//! Truncation is detected by size (shorter than our offset) and by a fingerprint of the
//! first 256 bytes, checked at every poll; a truncation that rewrites the very same first
//! bytes is invisible (impossible with timestamped lines). An unfinished line pending at
//! a truncation is dropped (its end went to the copy); one pending at a rotation is emitted.
//!
//! Restarts: `FileTailer::checkpoint` is the position after the last line emitted, with
//! a fingerprint of the file's head (FNV-1a 64 of its first bytes seen, at most 256). A
//! tailer given it as [`FileSourceConfig::resume`] checks it at its first poll, before
//! anything else (and whatever `from_beginning` says):
//! - the path still names that file (same device and inode, at least `offset` bytes, same
//!   head): reading goes on at `offset`;
//! - another regular file of the path's directory is that file (it was rotated while the
//!   exporter was down, e.g. to `reaction.log.1`): it is finished from `offset`, then the
//!   file at the path is read from its start, as after any rotation;
//! - otherwise (the file is gone, shorter than `offset`, or its head differs: truncated and
//!   rewritten, or its inode reused): [`SourceObserver::position_invalid`], and the file at
//!   the path is read from its start. That file was created (or rewritten) after the
//!   saved file was last read, so its lines are new: starting at its end would lose the
//!   lines logged while the exporter was down. Lines of a file that came and went while it
//!   was down (two rotations) are lost all the same.
//!
//! A saved position that is not a file position is reported the same way and ignored. An
//! I/O error while checking (other than a missing file) is reported and the check retried
//! at the next poll, a few times, before it is given up as invalid.

use std::fs::{self, File, Metadata};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{Batch, Lines, Origin, Position, SourceObserver};
use crate::defaults;

/// Size of one read.
const CHUNK_BYTES: usize = 64 * 1024;
/// Length of the head fingerprint used to detect a truncation followed by a rewrite.
const HEAD_BYTES: usize = 256;
/// After this many consecutive polls failing to read the open file, a rotation is followed
/// even though the old file could not be finished. Also how many polls may fail to check a
/// saved position before it is given up.
const MAX_OLD_READ_FAILURES: u32 = 3;

#[derive(Debug, Clone)]
/// What to follow and how.
pub struct FileSourceConfig {
    /// The log file.
    pub path: PathBuf,
    /// Start at the beginning of the file found at startup (default false: at its end).
    pub from_beginning: bool,
    /// How often to look for new data and for rotation (default 200 ms).
    pub poll_interval: Duration,
    /// Lines longer than this many bytes are dropped and reported (default 64 KiB).
    pub max_line_bytes: usize,
    /// A `FileTailer::checkpoint` saved by a previous run, to continue exactly after it
    /// (default none). Only the first file opened uses it; see the module documentation.
    pub resume: Option<Position>,
}

/// Where to start in the first file opened, decided at the first poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Startup {
    /// The first poll has not looked at the path yet.
    NotChecked,
    /// The path named a file at startup, which could not be opened yet: when it is
    /// opened, start at its end. `Some(id)`: only if it is still that file (otherwise
    /// the file appeared after startup and is read from 0); `None`: its identity is unknown
    /// (the stat failed), start at the end of whatever is opened first.
    AtEndOf(Option<(u64, u64)>),
    /// Every file opened from now on is read from its start.
    Done,
}

/// The file currently being read.
struct OpenFile {
    file: File,
    dev: u64,
    ino: u64,
    /// Offset of the next byte to read.
    offset: u64,
    /// Up to [`HEAD_BYTES`] first bytes of the file, as last seen.
    head: Vec<u8>,
}

/// What to do with the bytes up to the next newline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skip {
    /// Keep them: they form the next line.
    No,
    /// The current line is too long; it was reported already.
    TooLong,
    /// We started in the middle of a line (at the end of a file ending without a newline):
    /// drop its tail silently.
    Resync,
}

/// Cuts a byte stream into lines, with bounded memory.
struct LineAssembler {
    /// The beginning of the current line, not terminated yet. Never longer than `max`.
    pending: Vec<u8>,
    skip: Skip,
    max: usize,
    /// File offset of the first byte of the current (incomplete) line.
    line_start: u64,
}

impl LineAssembler {
    fn reset(&mut self, offset: u64, skip: Skip) {
        self.pending.clear();
        self.skip = skip;
        self.line_start = offset;
    }

    /// Feed `chunk`, read at file offset `chunk_offset`; complete lines go to `out`.
    fn feed(
        &mut self,
        chunk: &[u8],
        chunk_offset: u64,
        now: SystemTime,
        out: &mut Lines,
        ctx: &Ctx<'_>,
    ) {
        let mut rest = chunk;
        let mut pos = chunk_offset;
        // memchr: a byte-at-a-time search costs ~7 instructions a byte (callgrind: ~480 a
        // line of the e2e workloads, more than parsing the line).
        while let Some(i) = memchr::memchr(b'\n', rest) {
            let line = &rest[..i];
            match self.skip {
                Skip::TooLong | Skip::Resync => self.skip = Skip::No,
                Skip::No if self.pending.is_empty() => {
                    if line.len() > self.max {
                        ctx.observer
                            .line_too_long(Origin::File(ctx.path), line.len());
                    } else {
                        emit(line, now, out, ctx);
                    }
                }
                Skip::No => {
                    let len = self.pending.len() + line.len();
                    if len > self.max {
                        ctx.observer.line_too_long(Origin::File(ctx.path), len);
                    } else {
                        self.pending.extend_from_slice(line);
                        emit(&self.pending, now, out, ctx);
                    }
                    self.pending.clear();
                }
            }
            pos += i as u64 + 1;
            self.line_start = pos;
            rest = &rest[i + 1..];
        }
        if !rest.is_empty() && self.skip == Skip::No {
            let len = self.pending.len() + rest.len();
            if len > self.max {
                ctx.observer.line_too_long(Origin::File(ctx.path), len);
                self.pending.clear();
                self.skip = Skip::TooLong;
            } else {
                self.pending.extend_from_slice(rest);
            }
        }
    }

    /// The file is finished (rotated away): emit its unterminated last line, if any.
    fn flush(&mut self, now: SystemTime, out: &mut Lines, ctx: &Ctx<'_>) {
        if self.skip == Skip::No && !self.pending.is_empty() {
            emit(&self.pending, now, out, ctx);
        }
        self.pending.clear();
        self.skip = Skip::No;
    }
}

/// What the reading functions need besides the state they change.
struct Ctx<'a> {
    path: &'a Path,
    observer: &'a dyn SourceObserver,
}

fn emit(line: &[u8], now: SystemTime, out: &mut Lines, ctx: &Ctx<'_>) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    match std::str::from_utf8(line) {
        Ok(text) => out.push(now, text, false),
        Err(_) => {
            ctx.observer.invalid_utf8(Origin::File(ctx.path));
            out.push(now, &String::from_utf8_lossy(line), true);
        }
    }
}

/// `pread` until `buf` is full or the end of the file.
fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

fn identity(meta: &Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

fn not_a_regular_file() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "not a regular file")
}

/// FNV-1a, 64 bits: the hash of the head fingerprint of a [`Position::File`].
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// How to start reading `file` at `offset`: in the middle of a line (the byte before is not
/// a newline), the tail of that line is not a line.
fn skip_at(file: &File, offset: u64) -> io::Result<Skip> {
    if offset == 0 {
        return Ok(Skip::No);
    }
    let mut last = [0u8; 1];
    if read_full_at(file, &mut last, offset - 1)? == 1 && last[0] != b'\n' {
        Ok(Skip::Resync)
    } else {
        Ok(Skip::No)
    }
}

/// A saved position, for [`SourceObserver::position_invalid`].
fn describe(saved: &Position, reason: &str) -> String {
    match saved {
        Position::File {
            dev, ino, offset, ..
        } => format!("file (device {dev}, inode {ino}) at offset {offset}: {reason}"),
        Position::Journal { cursor } => format!("journal cursor {cursor}: {reason}"),
    }
}

/// What a candidate file is with respect to a saved [`Position::File`].
enum Candidate {
    /// Another file (or it was replaced while we looked).
    Other,
    /// The saved file, but the position cannot be used in it (why).
    Unusable(&'static str),
    /// The saved file, opened at the saved offset.
    Usable(OpenFile, Skip),
}

/// Opens `path` and checks it against the saved position: identity, size, head.
fn check_candidate(path: &Path, saved: (u64, u64, u64, u64, u64)) -> io::Result<Candidate> {
    let (dev, ino, offset, head_len, head_hash) = saved;
    let file = File::open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() || identity(&meta) != (dev, ino) {
        return Ok(Candidate::Other);
    }
    if meta.len() < offset {
        return Ok(Candidate::Unusable("the file is shorter than the offset"));
    }
    let Some(len) = usize::try_from(head_len).ok().filter(|&l| l <= HEAD_BYTES) else {
        return Ok(Candidate::Unusable("invalid head length"));
    };
    let mut head = vec![0u8; len];
    if read_full_at(&file, &mut head, 0)? < len || fnv1a64(&head) != head_hash {
        return Ok(Candidate::Unusable("the file's head changed"));
    }
    let skip = skip_at(&file, offset)?;
    Ok(Candidate::Usable(
        OpenFile {
            file,
            dev,
            ino,
            offset,
            head,
        },
        skip,
    ))
}

/// Follows one log file by name. See the module documentation.
pub struct FileTailer {
    config: FileSourceConfig,
    observer: Arc<dyn SourceObserver>,
    current: Option<OpenFile>,
    lines: LineAssembler,
    buf: Vec<u8>,
    startup: Startup,
    /// An error was reported and nothing worked since.
    in_error: bool,
    /// Consecutive polls whose read of the open file failed.
    read_failures: u32,
    /// The last poll stopped at its byte budget, more data is waiting.
    backlog: bool,
    /// Read size and per-poll budget (constants, smaller in tests).
    chunk_bytes: usize,
    max_bytes_per_poll: u64,
    /// The saved position, until the first poll that could check it.
    resume: Option<Position>,
    /// Consecutive polls that failed to check `resume`.
    resume_failures: u32,
}

impl FileTailer {
    /// A tailer that reports to `observer`; it looks at the file at its first poll.
    pub fn new(config: FileSourceConfig, observer: Arc<dyn SourceObserver>) -> Self {
        let startup = if config.from_beginning {
            Startup::Done
        } else {
            Startup::NotChecked
        };
        let max = config.max_line_bytes;
        let resume = config.resume.clone();
        FileTailer {
            config,
            observer,
            current: None,
            lines: LineAssembler {
                pending: Vec::new(),
                skip: Skip::No,
                max,
                line_start: 0,
            },
            buf: Vec::new(),
            startup,
            in_error: false,
            read_failures: 0,
            backlog: false,
            chunk_bytes: CHUNK_BYTES,
            max_bytes_per_poll: defaults::FILE_BYTES_PER_POLL,
            resume,
            resume_failures: 0,
        }
    }

    /// Synchronous step: look at the path, read everything available, append every
    /// complete line to `out` (time = `SystemTime::now()`). Never fails: errors go to the
    /// observer and are retried at the next call. Deterministic, for model tests.
    ///
    /// One call reads at most 1 MiB; [`has_backlog`](Self::has_backlog) then says that
    /// more is waiting (a rotation is only followed once the old file is finished).
    pub fn poll(&mut self, out: &mut Lines) {
        if self.buf.len() != self.chunk_bytes {
            self.buf = vec![0; self.chunk_bytes];
        }
        self.backlog = false;
        let mut budget = self.max_bytes_per_poll;
        let mut ok = true;
        let mut old_readable = true;
        if let Err(e) = self.resume_saved() {
            self.report(&e);
            return;
        }
        if self.current.is_some() {
            match self.drain(&mut budget, out) {
                Ok(true) => self.read_failures = 0,
                Ok(false) => {
                    self.read_failures = 0;
                    self.backlog = true;
                    return;
                }
                Err(e) => {
                    self.read_failures += 1;
                    self.report(&e);
                    ok = false;
                    old_readable = false;
                }
            }
        }
        if let Err(e) = self.follow_path(&mut budget, out, old_readable) {
            self.report(&e);
            ok = false;
        }
        if ok && self.in_error && self.current.is_some() {
            self.in_error = false;
            self.observer.recovered(&self.config.path);
        }
    }

    /// Position for the state file: the file's identity, the offset of the first byte not
    /// yet emitted as a line, and the fingerprint of the file's head, i.e. of its first
    /// bytes the tailer has seen (at most 256: `head_len`, `head_hash` = FNV-1a 64 of
    /// them). `None` while no file is open. Give it back as [`FileSourceConfig::resume`] to
    /// continue after a restart.
    pub(crate) fn checkpoint(&self) -> Option<Position> {
        self.current.as_ref().map(|f| Position::File {
            dev: f.dev,
            ino: f.ino,
            offset: self.lines.line_start,
            head_len: f.head.len() as u64,
            head_hash: fnv1a64(&f.head),
        })
    }

    /// The last [`poll`](Self::poll) stopped at its byte budget: more data is already
    /// waiting, poll again without sleeping.
    pub fn has_backlog(&self) -> bool {
        self.backlog
    }

    fn report(&mut self, err: &io::Error) {
        self.in_error = true;
        self.observer.error(&self.config.path, err);
    }

    /// At the first poll(s): use the saved position, or report it invalid. `Err`: it could
    /// not be checked, retry at the next poll. See the module documentation.
    fn resume_saved(&mut self) -> io::Result<()> {
        let Some(saved) = self.resume.clone() else {
            return Ok(());
        };
        let Position::File {
            dev,
            ino,
            offset,
            head_len,
            head_hash,
        } = saved
        else {
            self.resume = None;
            let fallback = if self.config.from_beginning {
                "the start of the file"
            } else {
                "the end of the file"
            };
            let position = describe(&saved, "not a file position");
            self.observer.position_invalid(&position, fallback);
            return Ok(());
        };
        let found = match self.find_saved((dev, ino, offset, head_len, head_hash)) {
            Ok(found) => found,
            Err(e) => {
                self.resume_failures += 1;
                if self.resume_failures < MAX_OLD_READ_FAILURES {
                    return Err(e);
                }
                self.report(&e);
                Err("it could not be checked")
            }
        };
        self.resume = None;
        self.startup = Startup::Done;
        match found {
            Ok((open, skip)) => {
                self.lines.reset(open.offset, skip);
                self.current = Some(open);
            }
            Err(reason) => {
                let position = describe(&saved, reason);
                let fallback = "the start of the current file";
                self.observer.position_invalid(&position, fallback);
            }
        }
        Ok(())
    }

    /// Looks for the saved file at the path, then among the other files of its directory.
    /// `Ok(Err(why))`: the position cannot be used.
    fn find_saved(
        &self,
        saved: (u64, u64, u64, u64, u64),
    ) -> io::Result<Result<(OpenFile, Skip), &'static str>> {
        let path = &self.config.path;
        let gone = "the file is gone";
        match fs::metadata(path) {
            Ok(meta) if meta.is_file() && identity(&meta) == (saved.0, saved.1) => {
                match check_candidate(path, saved)? {
                    Candidate::Usable(open, skip) => return Ok(Ok((open, skip))),
                    Candidate::Unusable(why) => return Ok(Err(why)),
                    Candidate::Other => {} // just renamed away: look in the directory
                }
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Err(gone)),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            if path.file_name() == Some(entry.file_name().as_os_str()) {
                continue; // checked above
            }
            // Not following symbolic links; an entry that vanished is not it.
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if !meta.is_file() || identity(&meta) != (saved.0, saved.1) {
                continue;
            }
            match check_candidate(&entry.path(), saved)? {
                Candidate::Usable(open, skip) => return Ok(Ok((open, skip))),
                Candidate::Unusable(why) => return Ok(Err(why)),
                Candidate::Other => {}
            }
        }
        Ok(Err(gone))
    }

    /// Check the open file for truncation, then read it up to its end or the budget.
    /// `Ok(true)`: at the end of the file.
    fn drain(&mut self, budget: &mut u64, out: &mut Lines) -> io::Result<bool> {
        let ctx = Ctx {
            path: &self.config.path,
            observer: &*self.observer,
        };
        let Some(cur) = self.current.as_mut() else {
            return Ok(true);
        };
        let size = cur.file.metadata()?.len();
        let mut head = [0u8; HEAD_BYTES];
        let head_len = if size == 0 {
            0
        } else {
            read_full_at(&cur.file, &mut head, 0)?
        };
        let head = &head[..head_len];
        if size < cur.offset || !head.starts_with(&cur.head) {
            ctx.observer.truncated(ctx.path);
            cur.offset = 0;
            self.lines.reset(0, Skip::No);
        }
        if head.len() > cur.head.len() || cur.offset == 0 {
            cur.head.clear();
            cur.head.extend_from_slice(head);
        }
        // Room for what this poll will read, asked for once: grown as lines come, the
        // batch's buffer would double past it and be copied on the way.
        let waiting = size.saturating_sub(cur.offset).min(*budget);
        out.reserve(usize::try_from(waiting).unwrap_or(0));
        loop {
            if *budget == 0 {
                return Ok(false);
            }
            let want = self
                .buf
                .len()
                .min(usize::try_from(*budget).unwrap_or(usize::MAX));
            let n = match cur.file.read_at(&mut self.buf[..want], cur.offset) {
                Ok(0) => return Ok(true),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let at = cur.offset;
            cur.offset += n as u64;
            *budget -= n as u64;
            // Keep the fingerprint as long as what was read: checkpoints save it.
            let seen = cur.head.len() as u64;
            if seen < HEAD_BYTES as u64 && (at..cur.offset).contains(&seen) {
                let from = (seen - at) as usize;
                let to = n.min(from + HEAD_BYTES - cur.head.len());
                cur.head.extend_from_slice(&self.buf[from..to]);
            }
            self.lines
                .feed(&self.buf[..n], at, SystemTime::now(), out, &ctx);
        }
    }

    /// Look at the path and switch to the file it names if that is another one.
    fn follow_path(
        &mut self,
        budget: &mut u64,
        out: &mut Lines,
        old_readable: bool,
    ) -> io::Result<()> {
        let meta = match fs::metadata(&self.config.path) {
            Ok(meta) => meta,
            Err(e) => {
                if self.startup == Startup::NotChecked {
                    self.startup = if e.kind() == io::ErrorKind::NotFound {
                        Startup::Done
                    } else {
                        Startup::AtEndOf(None)
                    };
                }
                if e.kind() == io::ErrorKind::NotFound && self.current.is_some() {
                    // Deleted or renamed away: keep reading the open file.
                    return Ok(());
                }
                return Err(e);
            }
        };
        if self.startup == Startup::NotChecked {
            self.startup = Startup::AtEndOf(Some(identity(&meta)));
        }
        let same = |cur: &Option<OpenFile>, id: (u64, u64)| {
            cur.as_ref().is_some_and(|f| (f.dev, f.ino) == id)
        };
        if same(&self.current, identity(&meta)) {
            return Ok(());
        }
        if !meta.is_file() {
            return Err(not_a_regular_file());
        }
        let file = File::open(&self.config.path)?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(not_a_regular_file());
        }
        let id = identity(&meta);
        if same(&self.current, id) {
            return Ok(());
        }
        if self.current.is_some() {
            if !old_readable && self.read_failures < MAX_OLD_READ_FAILURES {
                // Retry finishing the old file at the next poll before switching.
                return Ok(());
            }
            // Finish the old file: the writer may have appended since our last read.
            match self.drain(budget, out) {
                Ok(true) => {}
                Ok(false) => {
                    self.backlog = true;
                    return Ok(());
                }
                Err(e) if old_readable => return Err(e),
                Err(_) => {} // already reported, given up on
            }
            let ctx = Ctx {
                path: &self.config.path,
                observer: &*self.observer,
            };
            self.lines.flush(SystemTime::now(), out, &ctx);
            self.observer.rotated(&self.config.path);
        }
        let at_end = match self.startup {
            Startup::AtEndOf(None) => true,
            Startup::AtEndOf(Some(startup_id)) => startup_id == id,
            Startup::NotChecked | Startup::Done => false,
        };
        self.startup = Startup::Done;
        let mut open = OpenFile {
            file,
            dev: id.0,
            ino: id.1,
            offset: 0,
            head: Vec::new(),
        };
        let mut skip = Skip::No;
        if at_end {
            open.offset = meta.len();
            skip = skip_at(&open.file, open.offset)?;
        }
        self.lines.reset(open.offset, skip);
        self.current = Some(open);
        self.read_failures = 0;
        match self.drain(budget, out)? {
            true => {}
            false => self.backlog = true,
        }
        Ok(())
    }
}

/// Runs `poll` every `poll_interval` (on tokio's blocking pool: poll does small sync reads)
/// and sends lines in order to `tx`; returns when `shutdown` becomes true (after one last
/// poll, so that what was written before the shutdown is sent; a backlog beyond that poll's
/// budget is left unread) or when the receiver is gone. A dropped shutdown sender counts as
/// a shutdown.
pub(crate) async fn run(
    tailer: FileTailer,
    tx: tokio::sync::mpsc::Sender<Batch>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let interval = tailer.config.poll_interval.max(Duration::from_millis(1));
    let mut tailer = Some(tailer);
    let mut stopping = *shutdown.borrow_and_update();
    loop {
        let Some(mut t) = tailer.take() else { return };
        let polled = tokio::task::spawn_blocking(move || {
            let mut out = Lines::new();
            t.poll(&mut out);
            (t, out)
        })
        .await;
        let (t, lines) = match polled {
            Ok(polled) => polled,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => return, // the runtime is shutting down
        };
        let backlog = t.has_backlog();
        let position = t.checkpoint();
        tailer = Some(t);
        let batch = Batch {
            lines,
            position,
            backlog,
        };
        if !batch.lines.is_empty() && tx.send(batch).await.is_err() {
            return;
        }
        if stopping {
            return;
        }
        if backlog {
            // More is waiting: poll again at once, unless asked to stop.
            match shutdown.has_changed() {
                Ok(true) => stopping = *shutdown.borrow_and_update(),
                Ok(false) => {}
                Err(_) => stopping = true,
            }
            if tx.is_closed() {
                return;
            }
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            changed = shutdown.changed() => {
                stopping = changed.is_err() || *shutdown.borrow_and_update();
            }
            _ = tx.closed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;
    use std::io::Write;
    use std::sync::Mutex;

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Event {
        Rotated,
        Truncated,
        Error(io::ErrorKind),
        Recovered,
        InvalidUtf8,
        TooLong(usize),
        /// The saved position as described, and the fallback.
        PositionInvalid(String, String),
    }

    #[derive(Default)]
    struct Recorder(Mutex<Vec<Event>>);

    impl Recorder {
        fn push(&self, e: Event) {
            self.0.lock().unwrap().push(e);
        }
        fn take(&self) -> Vec<Event> {
            std::mem::take(&mut *self.0.lock().unwrap())
        }
    }

    impl SourceObserver for Recorder {
        fn rotated(&self, _: &Path) {
            self.push(Event::Rotated);
        }
        fn truncated(&self, _: &Path) {
            self.push(Event::Truncated);
        }
        fn error(&self, _: &Path, err: &io::Error) {
            self.push(Event::Error(err.kind()));
        }
        fn recovered(&self, _: &Path) {
            self.push(Event::Recovered);
        }
        fn invalid_utf8(&self, _: Origin<'_>) {
            self.push(Event::InvalidUtf8);
        }
        fn line_too_long(&self, _: Origin<'_>, len: usize) {
            self.push(Event::TooLong(len));
        }
        fn child_failed(&self, what: &str, _: &dyn std::fmt::Display) {
            unreachable!("the file source has no child: {what}")
        }
        fn child_stderr(&self, line: &str) {
            unreachable!("the file source has no child: {line}")
        }
        fn position_invalid(&self, position: &str, fallback: &str) {
            self.push(Event::PositionInvalid(position.into(), fallback.into()));
        }
        fn child_recovered(&self, what: &str) {
            unreachable!("the file source has no child: {what}")
        }
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        path: PathBuf,
        obs: Arc<Recorder>,
        tailer: FileTailer,
    }

    impl Fixture {
        fn new(from_beginning: bool) -> Self {
            Self::with(|c| c.from_beginning = from_beginning)
        }

        fn with(edit: impl FnOnce(&mut FileSourceConfig)) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("reaction.log");
            let mut config = config_for(&path);
            edit(&mut config);
            let obs = Arc::new(Recorder::default());
            let tailer = FileTailer::new(config, obs.clone());
            Fixture {
                _dir: dir,
                path,
                obs,
                tailer,
            }
        }

        /// The tailer is created lazily relative to the file: it only looks at the path
        /// at its first poll, so files written before the first poll exist "at startup".
        fn poll(&mut self) -> Vec<String> {
            let mut out = Lines::new();
            self.tailer.poll(&mut out);
            out.iter().map(|l| l.text.to_owned()).collect()
        }

        fn append(&self, bytes: &[u8]) {
            append(&self.path, bytes);
        }

        fn sibling(&self, name: &str) -> PathBuf {
            self.path.with_file_name(name)
        }
    }

    fn append(path: &Path, bytes: &[u8]) {
        let mut f = OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .unwrap();
        f.write_all(bytes).unwrap();
    }

    fn truncate(path: &Path) {
        OpenOptions::new()
            .write(true)
            .open(path)
            .unwrap()
            .set_len(0)
            .unwrap();
    }

    /// A configuration for `path`: start at its end, poll every 200 ms, the default line
    /// limit, no saved position.
    fn config_for(path: &Path) -> FileSourceConfig {
        FileSourceConfig {
            path: path.to_owned(),
            from_beginning: false,
            poll_interval: Duration::from_millis(200),
            max_line_bytes: defaults::MAX_LINE_LENGTH,
            resume: None,
        }
    }

    /// The file the tailer reads and the offset of the first byte not yet emitted as a line.
    fn position(t: &FileTailer) -> Option<(u64, u64, u64)> {
        match t.checkpoint()? {
            Position::File {
                dev, ino, offset, ..
            } => Some((dev, ino, offset)),
            Position::Journal { .. } => None,
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn starts_at_end_by_default() {
        let mut f = Fixture::new(false);
        f.append(b"old 1\nold 2\n");
        assert!(f.poll().is_empty());
        f.append(b"new\n");
        assert_eq!(f.poll(), strings(&["new"]));
        assert!(f.obs.take().is_empty());
    }

    #[test]
    fn start_at_end_in_the_middle_of_a_line_skips_its_tail() {
        let mut f = Fixture::new(false);
        f.append(b"old\nhalf a li");
        assert!(f.poll().is_empty());
        f.append(b"ne\nnew\n");
        assert_eq!(f.poll(), strings(&["new"]));
        assert!(f.obs.take().is_empty());
    }

    #[test]
    fn from_beginning_reads_existing() {
        let mut f = Fixture::new(true);
        f.append(b"old 1\nold 2\n");
        assert_eq!(f.poll(), strings(&["old 1", "old 2"]));
        f.append(b"new\n");
        assert_eq!(f.poll(), strings(&["new"]));
        assert!(f.obs.take().is_empty());
    }

    #[test]
    fn partial_line_waits_for_newline() {
        let mut f = Fixture::new(true);
        f.append(b"first\nhel");
        assert_eq!(f.poll(), strings(&["first"]));
        let (dev, ino, off) = position(&f.tailer).unwrap();
        assert_eq!(off, 6, "position is the start of the unfinished line");
        f.append(b"lo wor");
        assert!(f.poll().is_empty());
        f.append(b"ld\nnext");
        assert_eq!(f.poll(), strings(&["hello world"]));
        assert!(f.poll().is_empty());
        f.append(b"\n");
        assert_eq!(f.poll(), strings(&["next"]));
        assert!(f.poll().is_empty());
        assert_eq!(position(&f.tailer), Some((dev, ino, 23)));
        assert!(f.obs.take().is_empty());
    }

    #[test]
    fn crlf_and_empty_lines() {
        let mut f = Fixture::new(true);
        f.append(b"a\r\n\r\n\nb\r\r\n");
        assert_eq!(f.poll(), strings(&["a", "", "", "b\r"]));
    }

    #[test]
    fn invalid_utf8_is_lossy_and_reported() {
        let mut f = Fixture::new(true);
        f.append(b"ok\n\xff\xfebad\nok again\n");
        assert_eq!(
            f.poll(),
            strings(&["ok", "\u{FFFD}\u{FFFD}bad", "ok again"])
        );
        assert_eq!(f.obs.take(), vec![Event::InvalidUtf8]);
    }

    #[test]
    fn overlong_line_dropped_next_intact() {
        let mut f = Fixture::with(|c| {
            c.from_beginning = true;
            c.max_line_bytes = 10;
        });
        f.tailer.chunk_bytes = 4;
        f.append(b"0123456789\n");
        assert_eq!(f.poll(), strings(&["0123456789"]), "exactly max is kept");
        for _ in 0..100 {
            f.append(&[b'x'; 100]);
            assert!(f.poll().is_empty());
            assert!(f.tailer.lines.pending.len() <= 10, "memory stays bounded");
        }
        f.append(b"xx\nnext\n");
        assert_eq!(f.poll(), strings(&["next"]));
        // Reported once, with the length seen when the limit was crossed.
        assert!(matches!(f.obs.take()[..], [Event::TooLong(n)] if n > 10));
        // A long line within a single chunk, and one made of several partial lines.
        f.tailer.chunk_bytes = CHUNK_BYTES;
        f.append(b"0123456789AB\nok\n01234");
        assert_eq!(f.poll(), strings(&["ok"]));
        f.append(b"56789A\nok 2\n");
        assert_eq!(f.poll(), strings(&["ok 2"]));
        assert_eq!(f.obs.take(), vec![Event::TooLong(12), Event::TooLong(11)]);
    }

    #[test]
    fn rename_rotation_finishes_old_file_first() {
        let mut f = Fixture::new(true);
        f.append(b"a\n");
        assert_eq!(f.poll(), strings(&["a"]));
        let old = position(&f.tailer).unwrap();
        f.append(b"b\nc\n");
        fs::rename(&f.path, f.sibling("reaction.log.1")).unwrap();
        f.append(b"d\n");
        assert_eq!(f.poll(), strings(&["b", "c", "d"]));
        assert_eq!(f.obs.take(), vec![Event::Rotated]);
        let new = position(&f.tailer).unwrap();
        assert_ne!((old.0, old.1), (new.0, new.1));
        assert_eq!(new.2, 2);
        // The old file is no longer followed.
        append(&f.sibling("reaction.log.1"), b"late\n");
        f.append(b"e\n");
        assert_eq!(f.poll(), strings(&["e"]));
        assert!(f.obs.take().is_empty());
    }

    #[test]
    fn partial_line_at_rotation_is_emitted() {
        let mut f = Fixture::new(true);
        f.append(b"a\nunfinish");
        assert_eq!(f.poll(), strings(&["a"]));
        f.append(b"ed");
        fs::rename(&f.path, f.sibling("reaction.log.1")).unwrap();
        f.append(b"b\n");
        assert_eq!(f.poll(), strings(&["unfinished", "b"]));
        assert_eq!(f.obs.take(), vec![Event::Rotated]);
    }

    #[test]
    fn copytruncate_restarts_at_zero() {
        let mut f = Fixture::new(true);
        f.append(b"a 1\na 2\n");
        assert_eq!(f.poll(), strings(&["a 1", "a 2"]));
        let (dev, ino, _) = position(&f.tailer).unwrap();
        fs::copy(&f.path, f.sibling("reaction.log.1")).unwrap();
        truncate(&f.path);
        f.append(b"b\n");
        assert_eq!(f.poll(), strings(&["b"]));
        assert_eq!(f.obs.take(), vec![Event::Truncated]);
        assert_eq!(position(&f.tailer), Some((dev, ino, 2)));
        f.append(b"c\n");
        assert_eq!(f.poll(), strings(&["c"]));
        assert!(f.obs.take().is_empty());
    }

    #[test]
    fn truncated_to_empty_then_written_after_a_poll() {
        let mut f = Fixture::new(true);
        f.append(b"a\nb\n");
        assert_eq!(f.poll(), strings(&["a", "b"]));
        truncate(&f.path);
        assert!(f.poll().is_empty());
        assert_eq!(f.obs.take(), vec![Event::Truncated]);
        f.append(b"c\n");
        assert_eq!(f.poll(), strings(&["c"]));
        assert!(f.obs.take().is_empty());
    }

    #[test]
    fn truncate_and_rewrite_past_offset_detected_by_head() {
        let mut f = Fixture::new(true);
        f.append(b"a 1\n");
        assert_eq!(f.poll(), strings(&["a 1"]));
        truncate(&f.path);
        f.append(b"b 1\nb 2 is longer\n");
        assert_eq!(f.poll(), strings(&["b 1", "b 2 is longer"]));
        assert_eq!(f.obs.take(), vec![Event::Truncated]);
        // Same with a head longer than the fingerprint: only its first bytes change.
        let long = format!("{}\n", "x".repeat(600));
        f.append(long.as_bytes());
        assert_eq!(f.poll().len(), 1);
        truncate(&f.path);
        let other = format!("y{}\n{}\n", "x".repeat(599), "x".repeat(700));
        f.append(other.as_bytes());
        let got = f.poll();
        assert_eq!(got.len(), 2);
        assert!(got[0].starts_with('y'));
        assert_eq!(f.obs.take(), vec![Event::Truncated]);
    }

    #[test]
    fn deleted_then_recreated() {
        let mut f = Fixture::new(true);
        f.append(b"a\n");
        assert_eq!(f.poll(), strings(&["a"]));
        f.append(b"b\n");
        fs::remove_file(&f.path).unwrap();
        assert_eq!(f.poll(), strings(&["b"]), "the deleted file is finished");
        assert!(f.poll().is_empty());
        assert!(position(&f.tailer).is_some());
        assert!(f.obs.take().is_empty(), "a deleted file is not an error");
        f.append(b"c\n");
        assert_eq!(f.poll(), strings(&["c"]));
        assert_eq!(f.obs.take(), vec![Event::Rotated]);
    }

    #[test]
    fn missing_at_start_then_created() {
        // Not from the beginning: a file that appears later is still read from its start.
        let mut f = Fixture::new(false);
        assert!(f.poll().is_empty());
        assert!(f.poll().is_empty());
        assert_eq!(position(&f.tailer), None);
        assert_eq!(
            f.obs.take(),
            vec![
                Event::Error(io::ErrorKind::NotFound),
                Event::Error(io::ErrorKind::NotFound)
            ]
        );
        f.append(b"a\nb\n");
        assert_eq!(f.poll(), strings(&["a", "b"]));
        assert_eq!(f.obs.take(), vec![Event::Recovered]);
        f.append(b"c\n");
        assert_eq!(f.poll(), strings(&["c"]));
        assert!(f.obs.take().is_empty());
    }

    /// Makes `path` unreadable. Returns whether it did so with permissions (the same file
    /// is then readable again after `make_readable`) rather than by putting a directory
    /// in its place (when running as root, permissions do not deny reads).
    fn make_unreadable(path: &Path) -> bool {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o000)).unwrap();
        if File::open(path).is_err() {
            return true;
        }
        println!("privileged: chmod 000 does not deny reads, using a directory instead");
        fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
        fs::remove_file(path).unwrap();
        fs::create_dir(path).unwrap();
        false
    }

    #[test]
    fn unreadable_then_readable() {
        use std::os::unix::fs::PermissionsExt;
        let mut f = Fixture::new(true);
        f.append(b"a\n");
        let by_permissions = make_unreadable(&f.path);
        assert!(f.poll().is_empty());
        assert!(f.poll().is_empty());
        assert_eq!(position(&f.tailer), None);
        let events = f.obs.take();
        assert_eq!(events.len(), 2);
        assert!(events.iter().all(|e| matches!(e, Event::Error(_))));
        if by_permissions {
            fs::set_permissions(&f.path, fs::Permissions::from_mode(0o644)).unwrap();
        } else {
            fs::remove_dir(&f.path).unwrap();
            f.append(b"a\n");
        }
        f.append(b"b\n");
        assert_eq!(f.poll(), strings(&["a", "b"]));
        assert_eq!(f.obs.take(), vec![Event::Recovered]);
        f.append(b"c\n");
        assert_eq!(f.poll(), strings(&["c"]));
        assert!(f.obs.take().is_empty());
    }

    #[test]
    fn unreadable_new_file_keeps_the_old_one_until_readable() {
        let mut f = Fixture::new(true);
        f.append(b"a\n");
        assert_eq!(f.poll(), strings(&["a"]));
        fs::rename(&f.path, f.sibling("reaction.log.1")).unwrap();
        f.append(b"b\n");
        let by_permissions = make_unreadable(&f.path);
        append(&f.sibling("reaction.log.1"), b"late\n");
        assert_eq!(f.poll(), strings(&["late"]));
        assert!(matches!(f.obs.take()[..], [Event::Error(_)]));
        if by_permissions {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&f.path, fs::Permissions::from_mode(0o644)).unwrap();
        } else {
            fs::remove_dir(&f.path).unwrap();
            f.append(b"b\n");
        }
        assert_eq!(f.poll(), strings(&["b"]));
        assert_eq!(f.obs.take(), vec![Event::Rotated, Event::Recovered]);
    }

    #[test]
    fn backlog_is_read_in_bounded_steps() {
        let mut f = Fixture::new(true);
        f.tailer.max_bytes_per_poll = 10;
        f.tailer.chunk_bytes = 4;
        f.append(b"line 1\nline 2\nline 3\n");
        let mut got = f.poll();
        assert!(f.tailer.has_backlog());
        // A rotation waits until the old file is finished.
        fs::rename(&f.path, f.sibling("reaction.log.1")).unwrap();
        f.append(b"line 4\n");
        while f.tailer.has_backlog() {
            got.extend(f.poll());
        }
        assert_eq!(got, strings(&["line 1", "line 2", "line 3", "line 4"]));
        assert_eq!(f.obs.take(), vec![Event::Rotated]);
    }

    #[tokio::test]
    async fn run_sends_lines_and_stops_on_shutdown() {
        use tokio::sync::{mpsc, watch};
        use tokio::time::timeout;
        let f = Fixture::with(|c| {
            c.from_beginning = true;
            c.poll_interval = Duration::from_millis(10);
        });
        f.append(b"a\nb\n");
        let (tx, mut rx) = mpsc::channel(4);
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run(f.tailer, tx, stop_rx));
        let first = timeout(Duration::from_secs(10), rx.recv()).await.unwrap();
        let texts = |b: Batch| {
            b.lines
                .iter()
                .map(|l| l.text.to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(texts(first.unwrap()), strings(&["a", "b"]));
        append(&f.path, b"c\n");
        stop.send(true).unwrap();
        let mut rest = Vec::new();
        while let Some(batch) = timeout(Duration::from_secs(10), rx.recv()).await.unwrap() {
            rest.extend(texts(batch));
        }
        assert_eq!(rest, strings(&["c"]), "written before the shutdown: sent");
        timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap();
    }

    /// Guards the poll's one reservation (issue 13): a batch's buffer is asked for at the
    /// size of what the poll will read, not grown (and copied) line by line.
    #[test]
    fn a_poll_asks_for_its_buffer_once_at_the_size_it_reads() {
        let mut f = Fixture::new(true);
        f.tailer.max_bytes_per_poll = 1000;
        let line = "x".repeat(99);
        for _ in 0..30 {
            f.append(format!("{line}\n").as_bytes());
        }
        let mut out = Lines::new();
        f.tailer.poll(&mut out);
        assert_eq!(out.len(), 10, "the budget: 10 lines of 100 bytes");
        assert_eq!(out.text_capacity(), 1000, "the budget, asked for once");
        let mut out = Lines::new();
        f.tailer.poll(&mut out);
        assert_eq!(out.len(), 10);
        assert_eq!(out.text_capacity(), 1000);
        // The last 10 lines, then one short line alone.
        let mut out = Lines::new();
        f.tailer.poll(&mut out);
        f.append(b"short\n");
        let mut out = Lines::new();
        f.tailer.poll(&mut out);
        assert_eq!(out.len(), 1);
        // What was waiting, under the budget (a `String` holds at least 8 bytes).
        assert_eq!(out.text_capacity(), 8);
    }

    /// Guards `Batch::backlog`, which tells the pipeline when it has caught up (then it
    /// gives back what the backlog's batches freed: `ingest`).
    #[tokio::test]
    async fn batches_of_a_backlog_say_more_is_waiting_and_the_last_one_does_not() {
        use tokio::sync::{mpsc, watch};
        use tokio::time::timeout;
        let mut f = Fixture::with(|c| {
            c.from_beginning = true;
            c.poll_interval = Duration::from_millis(10);
        });
        f.tailer.max_bytes_per_poll = 10;
        f.append(b"aaaa\nbbbb\ncccc\ndddd\neeee\n");
        let (tx, mut rx) = mpsc::channel(8);
        let (_stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run(f.tailer, tx, stop_rx));
        let mut lines = 0;
        let mut backlog = Vec::new();
        while lines < 5 {
            let batch = timeout(Duration::from_secs(10), rx.recv())
                .await
                .unwrap()
                .unwrap();
            lines += batch.lines.len();
            backlog.push(batch.backlog);
        }
        assert_eq!(
            backlog,
            [true, true, false],
            "two lines (10 bytes) per poll"
        );
        task.abort();
    }

    #[tokio::test]
    async fn run_returns_when_receiver_is_gone() {
        use tokio::sync::{mpsc, watch};
        let f = Fixture::with(|c| c.poll_interval = Duration::from_secs(3600));
        let (tx, rx) = mpsc::channel(1);
        let (_stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run(f.tailer, tx, stop_rx));
        drop(rx);
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap();
    }

    // ---- Checkpoints and resuming -----------------------------------------------------

    #[test]
    fn fnv1a64_known_vectors() {
        // From the FNV reference test suite (Fowler, Noll, Vo).
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    impl Fixture {
        /// Drops the tailer (the exporter stops) and makes a new one resuming from `saved`.
        fn restart(&mut self, saved: Option<Position>, from_beginning: bool) {
            let mut config = self.tailer.config.clone();
            config.resume = saved;
            config.from_beginning = from_beginning;
            self.tailer = FileTailer::new(config, self.obs.clone());
        }
    }

    /// The saved position's description and fallback, if the events are exactly one
    /// `position_invalid` followed by `rest`.
    fn invalid_then(events: Vec<Event>, rest: &[Event]) -> (String, String) {
        match &events[..] {
            [Event::PositionInvalid(p, f), tail @ ..] if tail == rest => (p.clone(), f.clone()),
            _ => panic!("expected position_invalid then {rest:?}, got {events:?}"),
        }
    }

    #[test]
    fn checkpoint_fingerprints_the_head_seen() {
        let mut f = Fixture::new(true);
        assert_eq!(f.tailer.checkpoint(), None);
        f.append(b"a\nbc");
        assert_eq!(f.poll(), strings(&["a"]));
        let (dev, ino, _) = position(&f.tailer).unwrap();
        assert_eq!(
            f.tailer.checkpoint(),
            Some(Position::File {
                dev,
                ino,
                offset: 2,
                head_len: 4,
                head_hash: fnv1a64(b"a\nbc"),
            })
        );
        // At most 256 bytes, even when read in small chunks.
        f.tailer.chunk_bytes = 7;
        let long = format!("{}\n", "x".repeat(600));
        f.append(long.as_bytes());
        assert_eq!(f.poll().len(), 1);
        let content = fs::read(&f.path).unwrap();
        assert_eq!(
            f.tailer.checkpoint(),
            Some(Position::File {
                dev,
                ino,
                offset: content.len() as u64,
                head_len: 256,
                head_hash: fnv1a64(&content[..256]),
            })
        );
    }

    #[test]
    fn checkpoint_then_resume_continues_exactly() {
        let mut f = Fixture::new(true);
        f.append(b"a\nb\n");
        assert_eq!(f.poll(), strings(&["a", "b"]));
        f.append(b"c\npart");
        assert_eq!(f.poll(), strings(&["c"]));
        let saved = f.tailer.checkpoint();
        // Written while the exporter is down.
        f.append(b"ial\nd\n");
        // Neither the start nor the end of the file: exactly after "c".
        f.restart(saved.clone(), false);
        assert_eq!(f.poll(), strings(&["partial", "d"]));
        f.append(b"e\n");
        assert_eq!(f.poll(), strings(&["e"]));
        f.restart(saved, true);
        assert_eq!(f.poll(), strings(&["partial", "d", "e"]));
        assert!(f.obs.take().is_empty());
    }

    #[test]
    fn resume_in_a_skipped_line_still_skips_it() {
        // Started at the end of a file ending in the middle of a line: the checkpoint is
        // in that line, whose tail is still not a line after a restart.
        let mut f = Fixture::new(false);
        f.append(b"old\nhalf a li");
        assert!(f.poll().is_empty());
        let saved = f.tailer.checkpoint();
        f.append(b"ne\nnew\n");
        f.restart(saved, false);
        assert_eq!(f.poll(), strings(&["new"]));
        assert!(f.obs.take().is_empty());
    }

    #[test]
    fn resume_after_rotation_finishes_the_rotated_file() {
        let mut f = Fixture::new(true);
        f.append(b"a\n");
        assert_eq!(f.poll(), strings(&["a"]));
        let saved = f.tailer.checkpoint();
        f.append(b"b\nunfinish");
        fs::rename(&f.path, f.sibling("reaction.log.1")).unwrap();
        f.append(b"c\n");
        fs::write(f.sibling("other.log"), b"not ours\n").unwrap();
        f.restart(saved, false);
        assert_eq!(f.poll(), strings(&["b", "unfinish", "c"]));
        assert_eq!(f.obs.take(), vec![Event::Rotated]);
        append(&f.sibling("reaction.log.1"), b"late\n");
        f.append(b"d\n");
        assert_eq!(f.poll(), strings(&["d"]));
        assert!(f.obs.take().is_empty());
    }

    #[test]
    fn resume_after_rotation_before_the_new_file_exists() {
        let mut f = Fixture::new(true);
        f.append(b"a\n");
        assert_eq!(f.poll(), strings(&["a"]));
        let saved = f.tailer.checkpoint();
        f.append(b"b\n");
        fs::rename(&f.path, f.sibling("reaction.log.1")).unwrap();
        f.restart(saved, false);
        assert_eq!(f.poll(), strings(&["b"]));
        assert!(
            f.obs.take().is_empty(),
            "the path missing is not an error then"
        );
        f.append(b"c\n");
        assert_eq!(f.poll(), strings(&["c"]));
        assert_eq!(f.obs.take(), vec![Event::Rotated]);
    }

    #[test]
    fn resume_after_truncation_starts_over() {
        let mut f = Fixture::new(true);
        f.append(b"a 1\na 2\n");
        assert_eq!(f.poll(), strings(&["a 1", "a 2"]));
        let saved = f.tailer.checkpoint();
        truncate(&f.path);
        f.append(b"b\n");
        f.restart(saved, false);
        assert_eq!(f.poll(), strings(&["b"]));
        let (position, fallback) = invalid_then(f.obs.take(), &[]);
        assert!(position.ends_with("at offset 8: the file is shorter than the offset"));
        assert_eq!(fallback, "the start of the current file");
        f.append(b"c\n");
        assert_eq!(f.poll(), strings(&["c"]));
        assert!(f.obs.take().is_empty());
    }

    #[test]
    fn resume_with_other_head_starts_over() {
        // Rewritten in place (same inode), longer than the saved offset: only the head
        // tells, even beyond the fingerprint's 256 bytes.
        let mut f = Fixture::new(true);
        let first = format!("a{}\n", "x".repeat(299));
        f.append(first.as_bytes());
        assert_eq!(f.poll().len(), 1);
        let saved = f.tailer.checkpoint();
        truncate(&f.path);
        let other = format!("b{}\nnext\n", "x".repeat(299));
        f.append(other.as_bytes());
        let (dev, ino, _) = position(&f.tailer).unwrap();
        f.restart(saved, false);
        let got = f.poll();
        assert_eq!(got.len(), 2);
        assert!(got[0].starts_with('b'));
        assert_eq!(position(&f.tailer), Some((dev, ino, 306)));
        let (position, _) = invalid_then(f.obs.take(), &[]);
        assert!(position.ends_with("the file's head changed"), "{position}");
    }

    #[test]
    fn resume_of_missing_file_waits_and_reads_new_file() {
        let mut f = Fixture::new(true);
        f.append(b"a\n");
        assert_eq!(f.poll(), strings(&["a"]));
        let saved = f.tailer.checkpoint();
        fs::remove_file(&f.path).unwrap();
        f.restart(saved, false);
        assert!(f.poll().is_empty());
        let (position, _) = invalid_then(f.obs.take(), &[Event::Error(io::ErrorKind::NotFound)]);
        assert!(position.ends_with("the file is gone"), "{position}");
        assert!(f.poll().is_empty());
        assert_eq!(f.obs.take(), vec![Event::Error(io::ErrorKind::NotFound)]);
        // Everything in the new file is new: from its start, though not `from_beginning`.
        f.append(b"b\nc\n");
        assert_eq!(f.poll(), strings(&["b", "c"]));
        assert_eq!(f.obs.take(), vec![Event::Recovered]);
    }

    #[test]
    fn resume_of_a_journal_position_is_invalid() {
        let mut f = Fixture::new(false);
        f.append(b"old\n");
        let cursor = "s=0;i=1".to_string();
        f.restart(Some(Position::Journal { cursor }), false);
        assert!(f.poll().is_empty(), "the normal start: at the end");
        let (position, fallback) = invalid_then(f.obs.take(), &[]);
        assert_eq!(position, "journal cursor s=0;i=1: not a file position");
        assert_eq!(fallback, "the end of the file");
        f.append(b"new\n");
        assert_eq!(f.poll(), strings(&["new"]));
        assert!(f.obs.take().is_empty());
    }

    #[test]
    fn resume_check_failing_is_retried_then_given_up() {
        // The log directory replaced by a file: the path cannot even be stat'ed (ENOTDIR),
        // whatever our privileges.
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        let away = dir.path().join("away");
        fs::create_dir(&logs).unwrap();
        let path = logs.join("reaction.log");
        let obs = Arc::new(Recorder::default());
        let mut config = config_for(&path);
        config.from_beginning = true;
        let mut tailer = FileTailer::new(config.clone(), obs.clone());
        let poll = |t: &mut FileTailer| {
            let mut out = Lines::new();
            t.poll(&mut out);
            out.iter().map(|l| l.text.to_owned()).collect::<Vec<_>>()
        };
        append(&path, b"a\n");
        assert_eq!(poll(&mut tailer), strings(&["a"]));
        config.resume = tailer.checkpoint();
        config.from_beginning = false;
        append(&path, b"b\n");
        let break_dir = || {
            fs::rename(&logs, &away).unwrap();
            fs::write(&logs, b"").unwrap();
        };
        let repair_dir = || {
            fs::remove_file(&logs).unwrap();
            fs::rename(&away, &logs).unwrap();
        };
        let failed = |e: &Event| matches!(e, Event::Error(k) if *k != io::ErrorKind::NotFound);
        break_dir();
        let mut tailer = FileTailer::new(config.clone(), obs.clone());
        assert!(poll(&mut tailer).is_empty());
        assert!(matches!(&obs.take()[..], [e] if failed(e)));
        repair_dir();
        assert_eq!(
            poll(&mut tailer),
            strings(&["b"]),
            "resumed once it can be checked"
        );
        assert_eq!(obs.take(), vec![Event::Recovered]);
        // Never checkable: given up after a few polls (reported), then the normal errors.
        break_dir();
        let mut tailer = FileTailer::new(config, obs.clone());
        for _ in 0..MAX_OLD_READ_FAILURES {
            assert!(poll(&mut tailer).is_empty());
        }
        let mut events = obs.take();
        let last = events.split_off(MAX_OLD_READ_FAILURES as usize);
        assert!(events.iter().all(failed), "{events:?}");
        let (position, _) = match &last[..] {
            [Event::PositionInvalid(p, f), e] if failed(e) => (p.clone(), f.clone()),
            _ => panic!("{last:?}"),
        };
        assert!(position.ends_with("it could not be checked"), "{position}");
        repair_dir();
        append(&path, b"c\n");
        assert_eq!(
            poll(&mut tailer),
            strings(&["a", "b", "c"]),
            "from the start"
        );
        assert_eq!(obs.take(), vec![Event::Recovered]);
    }

    // ---- Model-based test -------------------------------------------------------------

    use proptest::prelude::*;

    /// What the test does to the file, as a logger and logrotate would.
    #[derive(Debug, Clone)]
    enum Op {
        /// Write the next `n` bytes of the log (may end in the middle of a line).
        Write(usize),
        /// Finish the current line and write `n` more whole lines, in one write.
        WriteLines(usize),
        Poll,
        /// Rename the file away and create an empty one (the logger reopens the path).
        RenameRotate,
        /// Copy the file away and truncate it in place (the logger keeps its descriptor).
        CopyTruncate,
        /// Truncate the file in place.
        Truncate,
        /// Unlink the file; the next write (the logger reopening the path) re-creates it.
        Delete,
        /// Create the file, empty, if it is missing.
        Recreate,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (1usize..200).prop_map(Op::Write),
            3 => (1usize..5).prop_map(Op::WriteLines),
            4 => Just(Op::Poll),
            1 => Just(Op::RenameRotate),
            1 => Just(Op::CopyTruncate),
            1 => Just(Op::Truncate),
            1 => Just(Op::Delete),
            1 => Just(Op::Recreate),
        ]
    }

    /// Line `id` of the log, with its newline. Lines are unique and start with their id,
    /// so a file whose content was replaced has a different head.
    fn line(id: usize, seed: u64) -> Vec<u8> {
        let len = (id as u64).wrapping_mul(2_654_435_761).wrapping_add(seed) % 300;
        let payload: String = (0..len).map(|i| (b'a' + (i % 26) as u8) as char).collect();
        format!("{id:06} {payload}\n").into_bytes()
    }

    /// The model: which lines each file holds, which file the path names, and which
    /// file the tailer should be reading and how far it got.
    ///
    /// The guarantee checked, poll by poll and exactly (no line missing, none extra,
    /// none duplicated, in order): a poll emits
    /// 1. the complete lines of the file the tailer had open that it has not emitted yet
    ///    (that file may since have been renamed away or deleted), and then,
    /// 2. if the path now names another file, all the complete lines of that file
    ///    (except at the very first poll without `from_beginning`: none of them).
    ///
    /// Lines lost, inherently: those of a file truncated in place before a poll saw them,
    /// and those of a file that was rotated away or deleted before any poll opened it.
    /// Lines longer than `max_line_bytes` are never emitted. Destructive operations
    /// happen between lines (the logger writes whole lines), so no unfinished line
    /// crosses a rotation or truncation, and the first poll is the first operation (the
    /// initial file holds whole lines), so the tailer never starts in a line.
    struct Harness {
        path: PathBuf,
        seed: u64,
        from_beginning: bool,
        max: usize,
        /// Complete line ids of every file the model created, by file number.
        files: Vec<Vec<usize>>,
        at_path: Option<usize>,
        tailer_file: Option<usize>,
        tailer_pos: usize,
        polled: bool,
        /// Next line to write, and how many of its bytes are written already.
        next_line: usize,
        written: usize,
        rotations: usize,
    }

    impl Harness {
        fn create(&mut self) -> usize {
            File::create(&self.path).unwrap();
            self.files.push(Vec::new());
            self.at_path = Some(self.files.len() - 1);
            self.files.len() - 1
        }

        /// Write the next `n` bytes of the log by path (O_APPEND|O_CREAT).
        fn write(&mut self, mut n: usize) {
            let file = match self.at_path {
                Some(f) => f,
                None => self.create(),
            };
            let mut bytes = Vec::new();
            while n > 0 {
                let l = line(self.next_line, self.seed);
                let take = n.min(l.len() - self.written);
                bytes.extend_from_slice(&l[self.written..self.written + take]);
                self.written += take;
                n -= take;
                if self.written == l.len() {
                    self.files[file].push(self.next_line);
                    self.next_line += 1;
                    self.written = 0;
                }
            }
            append(&self.path, &bytes);
        }

        fn finish_line(&mut self) {
            if self.written > 0 {
                let rest = line(self.next_line, self.seed).len() - self.written;
                self.write(rest);
            }
        }

        fn expected(&self, file: usize, from: usize) -> Vec<String> {
            self.expected_ids(self.files[file][from..].iter().copied())
        }

        /// The text of lines `ids`, as emitted (lines too long are not).
        fn expected_ids(&self, ids: impl IntoIterator<Item = usize>) -> Vec<String> {
            ids.into_iter()
                .map(|id| line(id, self.seed))
                .filter(|l| l.len() - 1 <= self.max)
                .map(|l| String::from_utf8(l[..l.len() - 1].to_vec()).unwrap())
                .collect()
        }

        /// What the model says a poll emits.
        fn poll(&mut self) -> Vec<String> {
            let mut want = Vec::new();
            if let Some(t) = self.tailer_file {
                want.extend(self.expected(t, self.tailer_pos));
                self.tailer_pos = self.files[t].len();
            }
            if let Some(p) = self.at_path {
                if self.tailer_file != Some(p) {
                    if self.polled || self.from_beginning {
                        want.extend(self.expected(p, 0));
                    }
                    self.tailer_file = Some(p);
                    self.tailer_pos = self.files[p].len();
                }
            }
            self.polled = true;
            want
        }

        fn apply(&mut self, op: &Op) {
            match *op {
                Op::Write(n) => self.write(n),
                Op::WriteLines(k) => {
                    self.finish_line();
                    let n = (0..k)
                        .map(|i| line(self.next_line + i, self.seed).len())
                        .sum();
                    self.write(n);
                }
                Op::Poll => unreachable!(),
                Op::RenameRotate => {
                    self.finish_line();
                    if self.at_path.is_some() {
                        self.rotations += 1;
                        let to = self.path.with_extension(format!("r{}", self.rotations));
                        fs::rename(&self.path, to).unwrap();
                    }
                    self.create();
                }
                Op::CopyTruncate | Op::Truncate => {
                    self.finish_line();
                    if let Some(f) = self.at_path {
                        if matches!(op, Op::CopyTruncate) {
                            self.rotations += 1;
                            let to = self.path.with_extension(format!("c{}", self.rotations));
                            fs::copy(&self.path, to).unwrap();
                        }
                        truncate(&self.path);
                        self.files[f].clear();
                        if self.tailer_file == Some(f) {
                            self.tailer_pos = 0;
                        }
                    }
                }
                Op::Delete => {
                    self.finish_line();
                    if self.at_path.take().is_some() {
                        fs::remove_file(&self.path).unwrap();
                    }
                }
                Op::Recreate => {
                    if self.at_path.is_none() {
                        self.create();
                    }
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        #[test]
        fn model_based_rotation_truncation_and_partial_writes(
            initial in proptest::option::of(0usize..4),
            from_beginning in any::<bool>(),
            chunk in proptest::sample::select(vec![1usize, 3, 7, 64, 300, CHUNK_BYTES]),
            max in proptest::sample::select(vec![40usize, 200, defaults::MAX_LINE_LENGTH]),
            seed in any::<u64>(),
            ops in proptest::collection::vec(op(), 1..60),
        ) {
            let mut f = Fixture::with(|c| {
                c.from_beginning = from_beginning;
                c.max_line_bytes = max;
            });
            f.tailer.chunk_bytes = chunk;
            let mut h = Harness {
                path: f.path.clone(),
                seed,
                from_beginning,
                max,
                files: Vec::new(),
                at_path: None,
                tailer_file: None,
                tailer_pos: 0,
                polled: false,
                next_line: 0,
                written: 0,
                rotations: 0,
            };
            if let Some(n) = initial {
                h.create();
                h.apply(&Op::WriteLines(n));
            }
            let ops = std::iter::once(Op::Poll).chain(ops).chain([Op::WriteLines(0), Op::Poll]);
            for (i, op) in ops.enumerate() {
                if let Op::Poll = op {
                    let want = h.poll();
                    let got = f.poll();
                    prop_assert_eq!(got, want, "at poll (operation {})", i);
                } else {
                    h.apply(&op);
                }
            }
            for e in f.obs.take() {
                prop_assert!(
                    matches!(e, Event::Rotated | Event::Truncated | Event::Recovered
                        | Event::TooLong(_) | Event::Error(io::ErrorKind::NotFound)),
                    "unexpected event {:?}", e
                );
            }
        }
    }

    /// What happens to the log around a restart, none of it losing lines by itself.
    fn lossless_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (1usize..200).prop_map(Op::Write),
            3 => (1usize..5).prop_map(Op::WriteLines),
            4 => Just(Op::Poll),
            1 => Just(Op::RenameRotate),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        /// A run of the tailer, a checkpoint right after one of its polls (as `run` takes
        /// it), the exporter down while the log goes on, a new tailer resuming from the
        /// checkpoint.
        ///
        /// The guarantee checked: the lines emitted before the checkpoint followed by those
        /// emitted after the restart are exactly every line written, in order, each once:
        /// none lost, none repeated, whatever the partial writes, chunk sizes and
        /// `from_beginning` (except, without it, the lines of the file found at the very
        /// first startup, which are skipped). Lines are lost inherently only when a file is
        /// rotated away before the tailer ever opened it, so the model rotates only a file
        /// the tailer had open at its last poll (at most one rotation between two polls,
        /// the restart's first poll included). A checkpoint is `None` only when no file
        /// existed yet; the restarted tailer then reads from the beginning (what the
        /// exporter does without a saved position is its business).
        #[test]
        fn model_based_checkpoint_and_resume(
            initial in proptest::option::of(0usize..4),
            from_beginning in any::<bool>(),
            chunks in (
                proptest::sample::select(vec![1usize, 3, 7, 64, 300, CHUNK_BYTES]),
                proptest::sample::select(vec![1usize, 3, 7, 64, 300, CHUNK_BYTES]),
            ),
            seed in any::<u64>(),
            before in proptest::collection::vec(lossless_op(), 0..40),
            down in proptest::collection::vec(lossless_op(), 0..20),
            after in proptest::collection::vec(lossless_op(), 0..20),
        ) {
            let mut f = Fixture::new(from_beginning);
            f.tailer.chunk_bytes = chunks.0;
            let mut h = Harness {
                path: f.path.clone(),
                seed,
                from_beginning,
                max: defaults::MAX_LINE_LENGTH,
                files: Vec::new(),
                at_path: None,
                tailer_file: None,
                tailer_pos: 0,
                polled: false,
                next_line: 0,
                written: 0,
                rotations: 0,
            };
            if let Some(n) = initial {
                h.create();
                h.apply(&Op::WriteLines(n));
            }
            let first = if from_beginning { 0 } else { h.next_line };
            let mut got = Vec::new();
            // The file at the path when the tailer last polled.
            let mut seen = None;
            let mut step = |f: &mut Fixture, h: &mut Harness, op: &Op, got: &mut Vec<String>| {
                match op {
                    Op::Poll => {
                        got.extend(f.poll());
                        seen = h.at_path;
                    }
                    Op::RenameRotate => {
                        if h.at_path.is_some() && h.at_path == seen {
                            h.apply(op);
                        }
                    }
                    _ => h.apply(op),
                }
            };
            for op in std::iter::once(&Op::Poll).chain(&before).chain([&Op::Poll]) {
                step(&mut f, &mut h, op, &mut got);
            }
            let saved = f.tailer.checkpoint();
            prop_assert_eq!(saved.is_some(), h.at_path.is_some());
            if let Some(Position::File { offset, head_len, .. }) = saved {
                // The fingerprint covers at least what was emitted of the head.
                prop_assert!(head_len >= offset.min(HEAD_BYTES as u64));
            }
            for op in down.iter().filter(|op| !matches!(op, Op::Poll)) {
                step(&mut f, &mut h, op, &mut got);
            }
            let resume_from_beginning = saved.is_none() || from_beginning;
            f.restart(saved, resume_from_beginning);
            f.tailer.chunk_bytes = chunks.1;
            let end = [Op::WriteLines(0), Op::Poll];
            for op in std::iter::once(&Op::Poll).chain(&after).chain(&end) {
                step(&mut f, &mut h, op, &mut got);
            }
            let want = h.expected_ids(first..h.next_line);
            prop_assert_eq!(got, want);
            for e in f.obs.take() {
                prop_assert!(
                    matches!(e, Event::Rotated | Event::Recovered
                        | Event::Error(io::ErrorKind::NotFound)),
                    "unexpected event {:?}", e
                );
            }
        }
    }
}
