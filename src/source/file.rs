//! Follow reaction's log file by name, like `tail -F`, and cut it into [`LogLine`]s.
//!
//! [`FileTailer::poll`] is a synchronous, deterministic step (everything the model tests
//! need); [`run`] drives it on a timer and sends the lines to a channel.
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

use std::fs::{self, File, Metadata};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{Batch, LogLine, Position, SourceObserver};

/// Default for [`FileSourceConfig::poll_interval`].
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Default for [`FileSourceConfig::max_line_bytes`].
pub const DEFAULT_MAX_LINE_BYTES: usize = 64 * 1024;

/// Size of one read.
const CHUNK_BYTES: usize = 64 * 1024;
/// At most this many bytes are read by one [`FileTailer::poll`], so that a large backlog
/// (a big file read from its beginning, a long stall) never turns into one huge batch.
/// [`FileTailer::has_backlog`] tells whether more was left.
const MAX_BYTES_PER_POLL: u64 = 16 * 1024 * 1024;
/// Length of the head fingerprint used to detect a truncation followed by a rewrite.
const HEAD_BYTES: usize = 256;
/// After this many consecutive polls failing to read the open file, a rotation is followed
/// even though the old file could not be finished.
const MAX_OLD_READ_FAILURES: u32 = 3;

#[derive(Debug, Clone)]
pub struct FileSourceConfig {
    pub path: PathBuf,
    /// Start at the beginning of the file found at startup (default false: at its end).
    pub from_beginning: bool,
    /// How often to look for new data and for rotation (default 200 ms).
    pub poll_interval: Duration,
    /// Lines longer than this many bytes are dropped and reported (default 64 KiB).
    pub max_line_bytes: usize,
}

impl FileSourceConfig {
    /// A configuration for `path` with the defaults: start at the end of the file, poll
    /// every 200 ms, drop lines longer than 64 KiB.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileSourceConfig {
            path: path.into(),
            from_beginning: false,
            poll_interval: DEFAULT_POLL_INTERVAL,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
        }
    }
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
        out: &mut Vec<LogLine>,
        ctx: &Ctx<'_>,
    ) {
        let mut rest = chunk;
        let mut pos = chunk_offset;
        while let Some(i) = rest.iter().position(|&b| b == b'\n') {
            let line = &rest[..i];
            match self.skip {
                Skip::TooLong | Skip::Resync => self.skip = Skip::No,
                Skip::No if self.pending.is_empty() => {
                    if line.len() > self.max {
                        ctx.observer.line_too_long(ctx.path, line.len());
                    } else {
                        emit(line, now, out, ctx);
                    }
                }
                Skip::No => {
                    let len = self.pending.len() + line.len();
                    if len > self.max {
                        ctx.observer.line_too_long(ctx.path, len);
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
                ctx.observer.line_too_long(ctx.path, len);
                self.pending.clear();
                self.skip = Skip::TooLong;
            } else {
                self.pending.extend_from_slice(rest);
            }
        }
    }

    /// The file is finished (rotated away): emit its unterminated last line, if any.
    fn flush(&mut self, now: SystemTime, out: &mut Vec<LogLine>, ctx: &Ctx<'_>) {
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

fn emit(line: &[u8], now: SystemTime, out: &mut Vec<LogLine>, ctx: &Ctx<'_>) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let text = match std::str::from_utf8(line) {
        Ok(text) => text.to_owned(),
        Err(_) => {
            ctx.observer.invalid_utf8(ctx.path);
            String::from_utf8_lossy(line).into_owned()
        }
    };
    out.push(LogLine { time: now, text });
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
}

impl FileTailer {
    pub fn new(config: FileSourceConfig, observer: Arc<dyn SourceObserver>) -> Self {
        let startup = if config.from_beginning {
            Startup::Done
        } else {
            Startup::NotChecked
        };
        let max = config.max_line_bytes;
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
            max_bytes_per_poll: MAX_BYTES_PER_POLL,
        }
    }

    /// Synchronous step: look at the path, read everything available, append every
    /// complete line to `out` (time = `SystemTime::now()`). Never fails: errors go to the
    /// observer and are retried at the next call. Deterministic, for model tests.
    ///
    /// One call reads at most 16 MiB; [`has_backlog`](Self::has_backlog) then says that
    /// more is waiting (a rotation is only followed once the old file is finished).
    pub fn poll(&mut self, out: &mut Vec<LogLine>) {
        if self.buf.len() != self.chunk_bytes {
            self.buf = vec![0; self.chunk_bytes];
        }
        self.backlog = false;
        let mut budget = self.max_bytes_per_poll;
        let mut ok = true;
        let mut old_readable = true;
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

    /// Position for checkpoints: (dev, ino, offset of the first byte not yet emitted as a
    /// line). `None` while no file is open.
    pub fn position(&self) -> Option<(u64, u64, u64)> {
        self.current
            .as_ref()
            .map(|f| (f.dev, f.ino, self.lines.line_start))
    }

    /// The last [`poll`](Self::poll) stopped at its byte budget: more data is already
    /// waiting, poll again without sleeping.
    pub fn has_backlog(&self) -> bool {
        self.backlog
    }

    /// The configuration this tailer was built with.
    pub fn config(&self) -> &FileSourceConfig {
        &self.config
    }

    fn report(&mut self, err: &io::Error) {
        self.in_error = true;
        self.observer.error(&self.config.path, err);
    }

    /// Check the open file for truncation, then read it up to its end or the budget.
    /// `Ok(true)`: at the end of the file.
    fn drain(&mut self, budget: &mut u64, out: &mut Vec<LogLine>) -> io::Result<bool> {
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
            self.lines
                .feed(&self.buf[..n], at, SystemTime::now(), out, &ctx);
        }
    }

    /// Look at the path and switch to the file it names if that is another one.
    fn follow_path(
        &mut self,
        budget: &mut u64,
        out: &mut Vec<LogLine>,
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
            if open.offset > 0 {
                let mut last = [0u8; 1];
                if read_full_at(&open.file, &mut last, open.offset - 1)? == 1 && last[0] != b'\n' {
                    // We are in the middle of a line: its tail is not a line.
                    skip = Skip::Resync;
                }
            }
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
pub async fn run(
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
            let mut out = Vec::new();
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
        let position = t.position().map(|(dev, ino, offset)| Position::File {
            dev,
            ino,
            offset,
            head_len: 0,
            head_hash: 0,
        });
        tailer = Some(t);
        if !lines.is_empty() && tx.send(Batch { lines, position }).await.is_err() {
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
        fn invalid_utf8(&self, _: &Path) {
            self.push(Event::InvalidUtf8);
        }
        fn line_too_long(&self, _: &Path, len: usize) {
            self.push(Event::TooLong(len));
        }
        fn child_failed(&self, what: &str, _: &dyn std::fmt::Display) {
            unreachable!("the file source has no child: {what}")
        }
        fn child_stderr(&self, line: &str) {
            unreachable!("the file source has no child: {line}")
        }
        fn position_invalid(&self, position: &str, _: &str) {
            unreachable!("not used by the file source: {position}")
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
            let mut config = FileSourceConfig::new(&path);
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
            let mut out = Vec::new();
            self.tailer.poll(&mut out);
            out.into_iter().map(|l| l.text).collect()
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
        let (dev, ino, off) = f.tailer.position().unwrap();
        assert_eq!(off, 6, "position is the start of the unfinished line");
        f.append(b"lo wor");
        assert!(f.poll().is_empty());
        f.append(b"ld\nnext");
        assert_eq!(f.poll(), strings(&["hello world"]));
        assert!(f.poll().is_empty());
        f.append(b"\n");
        assert_eq!(f.poll(), strings(&["next"]));
        assert!(f.poll().is_empty());
        assert_eq!(f.tailer.position(), Some((dev, ino, 23)));
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
        let old = f.tailer.position().unwrap();
        f.append(b"b\nc\n");
        fs::rename(&f.path, f.sibling("reaction.log.1")).unwrap();
        f.append(b"d\n");
        assert_eq!(f.poll(), strings(&["b", "c", "d"]));
        assert_eq!(f.obs.take(), vec![Event::Rotated]);
        let new = f.tailer.position().unwrap();
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
        let (dev, ino, _) = f.tailer.position().unwrap();
        fs::copy(&f.path, f.sibling("reaction.log.1")).unwrap();
        truncate(&f.path);
        f.append(b"b\n");
        assert_eq!(f.poll(), strings(&["b"]));
        assert_eq!(f.obs.take(), vec![Event::Truncated]);
        assert_eq!(f.tailer.position(), Some((dev, ino, 2)));
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
        assert!(f.tailer.position().is_some());
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
        assert_eq!(f.tailer.position(), None);
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
        assert_eq!(f.tailer.position(), None);
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
        let texts = |b: Batch| b.lines.into_iter().map(|l| l.text).collect::<Vec<_>>();
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
            self.files[file][from..]
                .iter()
                .map(|&id| line(id, self.seed))
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
            max in proptest::sample::select(vec![40usize, 200, DEFAULT_MAX_LINE_BYTES]),
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
}
