//! Read reaction's output from journald, by running `journalctl --follow --output=json` as a
//! child process and cutting its records into [`LogLine`]s.
//!
//! # The command line
//!
//! ```text
//! journalctl [-D DIR] --follow --output=json --all --output-fields=MESSAGE --no-pager --merge
//!            <start> _SYSTEMD_UNIT=<unit> [_MACHINE_ID=<id>]
//! ```
//! where `<start>` is one of
//! - new entries only: `--lines=0`
//! - from the beginning: `--lines=all`
//! - after a cursor C: `--lines=all --cursor=C` (the record whose `__CURSOR` is C, the first
//!   one printed when it still exists, is dropped here; see below)
//! - at or after a time (fallback for a rejected cursor): `--lines=all --since=@SEC.USEC`
//!
//! Why each option (checked with systemd 252's journalctl):
//! - `--follow` alone implies `--lines=10`, even with a cursor: only the 10 entries after it
//!   would be printed and the rest silently skipped. So the number of lines is always explicit.
//! - On systemd 250–257, `--follow` also implies `--boot` (the current boot only) unless
//!   `--merge` is given: the code is `if (arg_follow && !arg_merge && !arg_boot) arg_boot =
//!   true`, so even an explicit `--boot=all` is overridden (it only clears `arg_boot`).
//!   `--merge` is the only switch that keeps older boots (entries logged before a reboot,
//!   e.g. when resuming from a checkpoint). It is accepted by every version.
//! - `--merge` has a second effect, on the system journal only (not with `-D`): it also opens
//!   journals of other machines (`/var/log/journal/remote/`, other machine-id directories),
//!   whose reaction.service entries would match too. `_MACHINE_ID=<id of /etc/machine-id>`
//!   restores "this machine only" (fields of different names are ANDed); when
//!   /etc/machine-id cannot be read, no such match is added. With `-D DIR` the directory is
//!   what the user chose (journalctl also reads its machine-id subdirectories) and no
//!   machine match is added.
//! - `--output=json` prints fields larger than 4096 bytes as `null`; `--all` prints them in
//!   full, and `--output-fields=MESSAGE` keeps the records small (`__CURSOR` and
//!   `__REALTIME_TIMESTAMP` are always printed). A MESSAGE that is not printable UTF-8 (not
//!   UTF-8 at all, but also one holding control characters such as ANSI colour codes) is
//!   printed as an array of byte values.
//! - `--cursor=C` instead of `--after-cursor=C`: systemd 252's `--after-cursor` seeks to C and
//!   then always skips one entry, so when the entry of C no longer exists (vacuumed, or a
//!   journal directory that does not hold it) the first entry after it is lost. With
//!   `--cursor` journalctl prints from the entry at C, or the next one when it is gone, and
//!   this module drops the first record only when its `__CURSOR` is exactly C.
//! - `_SYSTEMD_UNIT=<unit>` matches only the unit's own output (`-u` would also match
//!   systemd's messages about the unit). A unit given without a suffix gets `.service`.
//!
//! # Long entries
//!
//! A MESSAGE longer than `reaction.logs.max_line_length` bytes is dropped and reported
//! ([`SourceObserver::line_too_long`]), as the file source does. journalctl's output is
//! read with a bound too, so that a huge entry never sits in memory: a record longer than
//! 4 × the limit + 4 KiB (what a MESSAGE of the limit can take in JSON, see
//! [`json_record_bound`]) is skipped to its newline without being kept. Such a record's
//! cursor is not read: the position stays at the record before it, so after a restart it
//! is read (and reported) again.
//!
//! # Restarts and positions
//!
//! Each batch's position is the cursor of the last record read (a line, or a record without
//! MESSAGE after it). When journalctl cannot start or exits (it never exits by itself with
//! `--follow`), the failure goes to [`SourceObserver::child_failed`] and it is started again
//! after a backoff (0.5 s doubling to 30 s, back to 0.5 s once a child ran for 10 s), from
//! the cursor of the last record read, so nothing is sent twice or skipped. The observer
//! hears [`SourceObserver::child_recovered`] once a child printed a record or ran for 1 s.
//!
//! A cursor that journalctl rejects (it exits with `Failed to seek to cursor: ...` on stderr
//! and prints nothing) goes to [`SourceObserver::position_invalid`]; the fallback is, at once
//! and without backoff: when the cursor holds its entry's realtime (`t=<hex µs>`), the
//! entries at or after that microsecond (`--since=@SEC.USEC`; the cursor's own entry and any
//! other entry of that same microsecond may be sent again), otherwise from the beginning of
//! the journal if `from_beginning`, else new entries only. A well-formed cursor whose entry
//! no longer exists is not rejected by journalctl: it starts at the next entry.

use std::borrow::Cow;
use std::ffi::OsString;
use std::fmt::{self, Display};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, ChildStderr, ChildStdout, Command};
use tokio::sync::{mpsc, watch};

use super::{Batch, Lines, Origin, Position, SourceObserver};
use crate::defaults;

/// Backoff before restarting a failed journalctl: doubles from the first to the last.
const INITIAL_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A child that ran this long resets the backoff when it fails.
const STABLE_AFTER: Duration = Duration::from_secs(10);
/// A child that runs this long (or prints a record) means the source works again.
const RECOVERED_AFTER: Duration = Duration::from_secs(1);
/// How long to wait, once stdout is closed, for the child to exit and its stderr to close.
const EXIT_GRACE: Duration = Duration::from_secs(2);
/// Longest stderr line or record excerpt passed to the observer.
const MAX_REPORTED_BYTES: usize = 1024;
/// Where the local machine's id is (the `_MACHINE_ID` match of the system journal).
const MACHINE_ID_PATH: &str = "/etc/machine-id";
/// What [`SourceObserver::child_failed`] and `child_recovered` are told.
const CHILD: &str = "journalctl";
const OUTPUT: &str = "journalctl output";

#[derive(Debug, Clone)]
pub(crate) struct JournaldConfig {
    /// The unit whose own output we read: server-side match `_SYSTEMD_UNIT=<unit>`.
    pub unit: String,
    /// Read journal files from this directory (`journalctl -D DIR`; containers mount
    /// /var/log/journal); None = the system journal.
    pub directory: Option<PathBuf>,
    /// The journalctl executable (default "journalctl", looked up in PATH).
    pub journalctl: PathBuf,
    /// Without a cursor: start at the beginning of the journal (else only new entries).
    pub from_beginning: bool,
    /// Resume right after this cursor (from a checkpoint).
    pub after_cursor: Option<String>,
    /// Lines (MESSAGEs) longer than this many bytes are dropped and reported, and records
    /// that cannot hold a shorter one are skipped without being kept (see
    /// [`json_record_bound`]).
    pub max_line_bytes: usize,
}

/// Where the next journalctl starts.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Start {
    /// New entries only.
    Tail,
    /// The beginning of the journal.
    Head,
    /// After this cursor.
    Cursor(String),
    /// Entries at or after this realtime (µs since the epoch).
    Since(u64),
}

impl Start {
    fn initial(config: &JournaldConfig) -> Self {
        match &config.after_cursor {
            Some(cursor) => Start::Cursor(cursor.clone()),
            None if config.from_beginning => Start::Head,
            None => Start::Tail,
        }
    }
}

/// The unit name as a `_SYSTEMD_UNIT` value: one without a suffix is a service.
fn unit_name(unit: &str) -> String {
    if unit.contains('.') {
        unit.to_owned()
    } else {
        format!("{unit}.service")
    }
}

/// journalctl's arguments (see the module documentation).
fn command_args(config: &JournaldConfig, start: &Start, machine_id: Option<&str>) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    if let Some(dir) = &config.directory {
        args.push("-D".into());
        args.push(dir.clone().into_os_string());
    }
    for a in [
        "--follow",
        "--output=json",
        "--all",
        "--output-fields=MESSAGE",
        "--no-pager",
        "--merge",
    ] {
        args.push(a.into());
    }
    match start {
        Start::Tail => args.push("--lines=0".into()),
        Start::Head => args.push("--lines=all".into()),
        Start::Cursor(cursor) => {
            args.push("--lines=all".into());
            args.push(format!("--cursor={cursor}").into());
        }
        Start::Since(usec) => {
            args.push("--lines=all".into());
            args.push(format!("--since=@{}.{:06}", usec / 1_000_000, usec % 1_000_000).into());
        }
    }
    args.push(format!("_SYSTEMD_UNIT={}", unit_name(&config.unit)).into());
    if config.directory.is_none() {
        if let Some(id) = machine_id {
            args.push(format!("_MACHINE_ID={id}").into());
        }
    }
    args
}

/// The local machine id, if /etc/machine-id holds one.
fn read_machine_id(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let id = text.trim();
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_owned())
}

/// The longest cursor passed to journalctl: its own are about 130 bytes.
const MAX_CURSOR_BYTES: usize = 1024;

/// Whether `cursor` could be one journalctl prints (`s=<id>;i=<hex>;b=<id>;m=<hex>;
/// t=<hex>;x=<hex>`): ASCII letters and digits, `=`, `;`, `-`, `_`, at most
/// [`MAX_CURSOR_BYTES`]. Another (a NUL byte could not even be passed to journalctl, which
/// would then never start) is not used: the source falls back at once, as for a cursor
/// journalctl rejects, and the state file refuses it.
pub(crate) fn valid_cursor(cursor: &str) -> bool {
    !cursor.is_empty()
        && cursor.len() <= MAX_CURSOR_BYTES
        && cursor
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b';' | b'-' | b'_'))
}

/// The realtime (µs) a cursor records in its `t=` field.
fn cursor_realtime(cursor: &str) -> Option<u64> {
    cursor
        .split(';')
        .find_map(|field| field.trim().strip_prefix("t="))
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
}

/// At most `MAX_REPORTED_BYTES` of `text`, for the observer.
fn excerpt(text: &str) -> &str {
    if text.len() <= MAX_REPORTED_BYTES {
        return text;
    }
    let mut end = MAX_REPORTED_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Runs `journalctl` as a child and sends its records as batches (position = the cursor of
/// the last line) until `shutdown` is true (a dropped sender counts as true) or the receiver
/// is gone. See the module documentation.
pub(crate) async fn run(
    config: JournaldConfig,
    observer: Arc<dyn SourceObserver>,
    tx: mpsc::Sender<Batch>,
    shutdown: watch::Receiver<bool>,
) {
    let machine_id = if config.directory.is_none() {
        read_machine_id(Path::new(MACHINE_ID_PATH))
    } else {
        None
    };
    let mut source = Source {
        unit: unit_name(&config.unit),
        start: Start::initial(&config),
        config,
        machine_id,
        observer,
        tx,
        shutdown,
        failing: false,
    };
    if let Start::Cursor(cursor) = &source.start {
        if !valid_cursor(cursor) {
            let cursor = cursor.clone();
            let (fallback, description) = source.fallback(&cursor);
            source
                .observer
                .position_invalid(excerpt(&cursor), &description);
            source.start = fallback;
        }
    }
    let mut backoff = INITIAL_BACKOFF;
    loop {
        if source.stop_requested() || source.tx.is_closed() {
            return;
        }
        match source.run_child().await {
            Exit::Stop => return,
            Exit::CursorRejected => {}
            Exit::Failed { ran } => {
                if ran >= STABLE_AFTER {
                    backoff = INITIAL_BACKOFF;
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = source.shutdown.changed() => {}
                    _ = source.tx.closed() => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// How one child ended.
enum Exit {
    /// Asked to stop, or the receiver is gone: return.
    Stop,
    /// The start cursor was rejected; `start` holds the fallback: start again at once.
    CursorRejected,
    /// It could not start or it exited after running for `ran`: start again after a backoff.
    Failed { ran: Duration },
}

/// What the main loop waits for.
enum Event {
    Stop,
    Gone,
    Recovered,
    Read(std::io::Result<Read>),
}

/// What a child wrote on stderr, as far as deciding what its exit means.
#[derive(Default)]
struct StderrSummary {
    /// A line mentioned the cursor (`Failed to seek to cursor: Invalid argument`).
    cursor_error: bool,
    last: Option<String>,
}

/// Forwards the child's stderr lines to the observer (read concurrently with stdout so that
/// a chatty stderr never blocks the child).
async fn read_stderr(stderr: ChildStderr, observer: Arc<dyn SourceObserver>) -> StderrSummary {
    let mut reader = BufReader::new(stderr);
    let mut summary = StderrSummary::default();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return summary,
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&buf);
        let line = excerpt(line.trim_end());
        if line.is_empty() {
            continue;
        }
        observer.child_stderr(line);
        if line.to_ascii_lowercase().contains("cursor") {
            summary.cursor_error = true;
        }
        summary.last = Some(line.to_owned());
    }
}

struct ExitDescription(Option<ExitStatus>);

impl Display for ExitDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use std::os::unix::process::ExitStatusExt;
        match self.0 {
            None => f.write_str("journalctl did not exit after closing its output"),
            Some(status) => match (status.code(), status.signal()) {
                (Some(code), _) => write!(f, "journalctl exited with status {code}"),
                (None, Some(signal)) => write!(f, "journalctl was killed by signal {signal}"),
                (None, None) => write!(f, "journalctl exited ({status})"),
            },
        }
    }
}

/// The state kept across children.
struct Source {
    config: JournaldConfig,
    machine_id: Option<String>,
    observer: Arc<dyn SourceObserver>,
    tx: mpsc::Sender<Batch>,
    shutdown: watch::Receiver<bool>,
    /// Where the next child starts: the cursor of the last record read, once there is one.
    start: Start,
    /// `child_failed` was reported and nothing worked since.
    failing: bool,
    /// The unit, as matched: where the lines come from.
    unit: String,
}

/// Lines read and not sent yet, and the cursor of the last record read.
#[derive(Default)]
struct Unsent {
    lines: Lines,
    cursor: Option<String>,
}

impl Source {
    fn stop_requested(&mut self) -> bool {
        match self.shutdown.has_changed() {
            Ok(_) => *self.shutdown.borrow_and_update(),
            Err(_) => true,
        }
    }

    fn fail(&mut self, what: &str, detail: &dyn Display) {
        self.observer.child_failed(what, detail);
        self.failing = true;
    }

    fn recovered(&mut self) {
        if self.failing {
            self.failing = false;
            self.observer.child_recovered(CHILD);
        }
    }

    /// Starts one journalctl and reads it until it ends or we are asked to stop.
    async fn run_child(&mut self) -> Exit {
        let used = self.start.clone();
        let args = command_args(&self.config, &used, self.machine_id.as_deref());
        let started = Instant::now();
        let mut child = match Command::new(&self.config.journalctl)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
        {
            Ok(child) => child,
            Err(e) => {
                let what = if e.kind() == std::io::ErrorKind::NotFound {
                    "journalctl not found"
                } else {
                    "journalctl could not start"
                };
                let detail = format!("{}: {e}", self.config.journalctl.display());
                self.fail(what, &detail);
                return Exit::Failed {
                    ran: Duration::ZERO,
                };
            }
        };
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let stderr = tokio::spawn(read_stderr(stderr, self.observer.clone()));
        let mut reader = Records::new(stdout, json_record_bound(self.config.max_line_bytes));
        let mut skip = match &used {
            Start::Cursor(cursor) => Some(cursor.clone()),
            _ => None,
        };
        let mut records = 0u64;
        let recovery = tokio::time::sleep(RECOVERED_AFTER);
        tokio::pin!(recovery);

        let read_error = loop {
            let event = tokio::select! {
                biased;
                changed = self.shutdown.changed() => {
                    if changed.is_err() || *self.shutdown.borrow_and_update() {
                        Event::Stop
                    } else {
                        continue;
                    }
                }
                _ = self.tx.closed() => Event::Gone,
                _ = &mut recovery, if self.failing => Event::Recovered,
                read = reader.next() => Event::Read(read),
            };
            match event {
                Event::Gone => return stop(child).await,
                Event::Recovered => self.recovered(),
                Event::Stop => {
                    // Send what is already there (one batch at most), up to the last
                    // complete line, then stop.
                    let mut unsent = Unsent::default();
                    let _ = self
                        .read_available(&mut reader, &mut unsent, &mut skip, &mut records)
                        .await;
                    let _ = self.send(unsent).await;
                    return stop(child).await;
                }
                Event::Read(Ok(Read::Eof)) => break None,
                Event::Read(Err(e)) => break Some(e),
                Event::Read(Ok(read)) => {
                    let mut unsent = Unsent::default();
                    self.handle(read, &mut reader, &mut unsent, &mut skip, &mut records);
                    let end = self
                        .read_available(&mut reader, &mut unsent, &mut skip, &mut records)
                        .await;
                    if !self.send(unsent).await {
                        return stop(child).await;
                    }
                    match end {
                        Ok(true) => {}
                        Ok(false) => break None,
                        Err(e) => break Some(e),
                    }
                }
            }
        };

        // stdout is closed (or unreadable): the child is exiting. A last record without
        // its newline is still handled.
        if read_error.is_none() {
            if let Some(last) = reader.last() {
                let mut unsent = Unsent::default();
                self.handle(last, &mut reader, &mut unsent, &mut skip, &mut records);
                if !self.send(unsent).await {
                    return stop(child).await;
                }
            }
        }
        if let Some(e) = &read_error {
            let _ = child.start_kill();
            self.fail(
                OUTPUT,
                &format_args!("cannot read journalctl's output: {e}"),
            );
        }
        let status = match tokio::time::timeout(EXIT_GRACE, child.wait()).await {
            Ok(Ok(status)) => Some(status),
            Ok(Err(_)) | Err(_) => {
                let _ = child.kill().await;
                None
            }
        };
        let summary = match tokio::time::timeout(EXIT_GRACE, stderr).await {
            Ok(Ok(summary)) => summary,
            _ => StderrSummary::default(),
        };
        if read_error.is_some() {
            return Exit::Failed {
                ran: started.elapsed(),
            };
        }
        let failed = status.is_none_or(|s| !s.success());
        if let Start::Cursor(cursor) = &used {
            if failed && records == 0 && summary.cursor_error {
                let (fallback, description) = self.fallback(cursor);
                self.observer.position_invalid(cursor, &description);
                self.start = fallback;
                return Exit::CursorRejected;
            }
        }
        let what = ExitDescription(status).to_string();
        match &summary.last {
            Some(line) => self.fail(&what, &format_args!("{line}")),
            None => self.fail(&what, &"nothing on stderr"),
        }
        Exit::Failed {
            ran: started.elapsed(),
        }
    }

    /// Where to start instead of a rejected cursor, and how to say so.
    fn fallback(&self, cursor: &str) -> (Start, String) {
        if let Some(usec) = cursor_realtime(cursor) {
            let description = format!(
                "its time, @{}.{:06} (entries at or after it; that microsecond's entries \
                 may be sent again)",
                usec / 1_000_000,
                usec % 1_000_000
            );
            (Start::Since(usec), description)
        } else if self.config.from_beginning {
            (Start::Head, "the beginning of the journal".to_owned())
        } else {
            (
                Start::Tail,
                "the end of the journal (new entries only)".to_owned(),
            )
        }
    }

    /// Reads the records that are already available (without waiting), up to a full batch.
    /// Returns whether stdout is still open.
    async fn read_available(
        &mut self,
        reader: &mut Records<ChildStdout>,
        unsent: &mut Unsent,
        skip: &mut Option<String>,
        records: &mut u64,
    ) -> std::io::Result<bool> {
        while unsent.lines.len() < defaults::JOURNAL_LINES_PER_BATCH {
            match read_now(reader).await {
                None => return Ok(true),
                Some(Ok(Read::Eof)) => return Ok(false),
                Some(Ok(read)) => self.handle(read, reader, unsent, skip, records),
                Some(Err(e)) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Handles what `reader` read: a record (in its buffer) or an oversized one, skipped.
    fn handle<R>(
        &mut self,
        read: Read,
        reader: &mut Records<R>,
        unsent: &mut Unsent,
        skip: &mut Option<String>,
        records: &mut u64,
    ) {
        match read {
            Read::Record => self.record(&mut reader.record, unsent, skip, records),
            Read::TooLong(len) => {
                // A record all the same (it counts as journalctl working), but its cursor is
                // unknown: the position stays at the record before it.
                skip.take();
                *records += 1;
                self.recovered();
                self.observer
                    .line_too_long(Origin::Journal { unit: &self.unit }, len);
            }
            Read::Eof => {}
        }
    }

    /// Sends the lines read, if any. Returns false when the receiver is gone.
    async fn send(&mut self, unsent: Unsent) -> bool {
        if unsent.lines.is_empty() {
            return true;
        }
        let batch = Batch {
            // Full: `read_available` stopped at the batch's size, not at the end of what
            // journalctl had written.
            backlog: unsent.lines.len() >= defaults::JOURNAL_LINES_PER_BATCH,
            lines: unsent.lines,
            position: unsent.cursor.map(|cursor| Position::Journal { cursor }),
        };
        self.tx.send(batch).await.is_ok()
    }

    /// Handles one record (`buf`, which is cleared). `skip`: the cursor the child started
    /// at, until the first record.
    fn record(
        &mut self,
        buf: &mut Vec<u8>,
        unsent: &mut Unsent,
        skip: &mut Option<String>,
        records: &mut u64,
    ) {
        let raw = buf.strip_suffix(b"\n").unwrap_or(buf);
        if raw.iter().all(u8::is_ascii_whitespace) {
            buf.clear();
            return;
        }
        let object = match serde_json::from_slice::<Value>(raw) {
            Ok(Value::Object(object)) => object,
            Ok(_) => {
                let text = String::from_utf8_lossy(raw);
                self.observer.child_failed(
                    OUTPUT,
                    &format_args!("not a JSON object: {}", excerpt(&text)),
                );
                buf.clear();
                return;
            }
            Err(e) => {
                let text = String::from_utf8_lossy(raw);
                self.observer.child_failed(
                    OUTPUT,
                    &format_args!("not a JSON record ({e}): {}", excerpt(&text)),
                );
                buf.clear();
                return;
            }
        };
        buf.clear();
        *records += 1;
        self.recovered();
        let cursor = object.get("__CURSOR").and_then(Value::as_str);
        if let Some(start) = skip.take() {
            if cursor == Some(start.as_str()) {
                return; // the entry of the cursor we resume after
            }
        }
        if let Some(cursor) = cursor {
            unsent.cursor = Some(cursor.to_owned());
            self.start = Start::Cursor(cursor.to_owned());
        }
        let mut lossy = false;
        let text: Cow<'_, str> = match object.get("MESSAGE") {
            None | Some(Value::Null) => return,
            Some(Value::String(text)) => Cow::Borrowed(text),
            Some(Value::Array(values)) => {
                let bytes: Option<Vec<u8>> = values
                    .iter()
                    .map(|v| v.as_u64().and_then(|b| u8::try_from(b).ok()))
                    .collect();
                let Some(bytes) = bytes else {
                    self.observer.child_failed(
                        OUTPUT,
                        &"a MESSAGE array holds something else than byte values",
                    );
                    return;
                };
                // Measured before decoding: a line dropped is not also reported as invalid.
                if bytes.strip_suffix(b"\n").unwrap_or(&bytes).len() > self.config.max_line_bytes {
                    let origin = Origin::Journal { unit: &self.unit };
                    self.observer.line_too_long(origin, bytes.len());
                    return;
                }
                match String::from_utf8(bytes) {
                    Ok(text) => Cow::Owned(text),
                    Err(e) => {
                        self.observer
                            .invalid_utf8(Origin::Journal { unit: &self.unit });
                        lossy = true;
                        Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned())
                    }
                }
            }
            Some(other) => {
                self.observer.child_failed(
                    OUTPUT,
                    &format_args!("MESSAGE is neither a string nor bytes: {other}"),
                );
                return;
            }
        };
        let time = object
            .get("__REALTIME_TIMESTAMP")
            .and_then(Value::as_str)
            .and_then(|usec| usec.parse::<u64>().ok())
            .map_or_else(SystemTime::now, |usec| {
                UNIX_EPOCH + Duration::from_micros(usec)
            });
        // Without its line ends: a MESSAGE may end with several (`"x\r\n\n"`, found by
        // fuzzing), and a line never ends with one.
        let text = text.trim_end_matches(['\n', '\r']);
        if text.len() > self.config.max_line_bytes {
            let origin = Origin::Journal { unit: &self.unit };
            self.observer.line_too_long(origin, text.len());
            return;
        }
        unsent.lines.push(time, text, lossy);
    }
}

/// What the reader makes of journalctl's whole `output` (its records cut and bounded by
/// [`Records`], each decoded as a running source does, from the configured start): the
/// lines, and the cursor a checkpoint would save. For the fuzz target; reading from
/// memory never waits, so each read is polled once.
pub(crate) fn read_output(
    output: &[u8],
    max_line_bytes: usize,
    observer: Arc<dyn SourceObserver>,
) -> (Lines, Option<String>) {
    let (tx, _rx) = mpsc::channel(1);
    let (_stop, shutdown) = watch::channel(false);
    let config = JournaldConfig {
        unit: "reaction.service".into(),
        directory: None,
        journalctl: PathBuf::from("journalctl"),
        from_beginning: true,
        after_cursor: None,
        max_line_bytes,
    };
    let mut source = Source {
        unit: unit_name(&config.unit),
        start: Start::initial(&config),
        config,
        machine_id: None,
        observer,
        tx,
        shutdown,
        failing: false,
    };
    let mut reader = Records::new(output, json_record_bound(max_line_bytes));
    let (mut unsent, mut skip, mut records) = (Unsent::default(), None, 0);
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        let next = std::future::Future::poll(std::pin::pin!(reader.next()), &mut context);
        let read = match next {
            std::task::Poll::Ready(Ok(Read::Eof)) => match reader.last() {
                Some(last) => {
                    source.handle(last, &mut reader, &mut unsent, &mut skip, &mut records);
                    break;
                }
                None => break,
            },
            std::task::Poll::Ready(Ok(read)) => read,
            // A slice neither fails nor waits.
            std::task::Poll::Ready(Err(_)) | std::task::Poll::Pending => break,
        };
        source.handle(read, &mut reader, &mut unsent, &mut skip, &mut records);
    }
    (unsent.lines, unsent.cursor)
}

/// The longest journalctl record that can hold a MESSAGE of `max_line_bytes`: journalctl
/// prints a MESSAGE that is not printable UTF-8 as an array of byte values (at most 4
/// characters a byte, `255,`) and a printable one as a JSON string (at most 2 characters a
/// byte, `\"`), and adds its cursor and timestamps (a few hundred bytes). A longer record
/// holds a line that would be dropped anyway: it is skipped without being kept.
fn json_record_bound(max_line_bytes: usize) -> usize {
    max_line_bytes.saturating_mul(4).saturating_add(4096)
}

/// What [`Records::next`] read.
#[derive(Debug, PartialEq, Eq)]
enum Read {
    /// A record, in [`Records::record`] (without its newline).
    Record,
    /// A record longer than the bound, skipped: this many bytes.
    TooLong(usize),
    /// The end of the output.
    Eof,
}

/// journalctl's output cut into records (one a line), each kept only up to a bound: a
/// longer one is read to its newline without being kept, so a huge entry costs no memory.
/// Every byte read is accounted for in `self` before the next await, so [`Records::next`]
/// can be cancelled (in a `select!`) and called again without losing anything.
struct Records<R> {
    reader: BufReader<R>,
    /// The record being read, then the record read.
    record: Vec<u8>,
    max: usize,
    /// While a record longer than `max` is skipped: its bytes seen so far.
    skipping: Option<usize>,
}

impl<R: AsyncRead + Unpin> Records<R> {
    fn new(reader: R, max: usize) -> Self {
        Records {
            reader: BufReader::with_capacity(64 * 1024, reader),
            record: Vec::new(),
            max,
            skipping: None,
        }
    }

    /// The next record. After `Read::Record`, the caller takes it from `record` (and
    /// clears it).
    async fn next(&mut self) -> std::io::Result<Read> {
        loop {
            let available = self.reader.fill_buf().await?;
            if available.is_empty() {
                return Ok(Read::Eof);
            }
            let newline = available.iter().position(|&b| b == b'\n');
            let part = &available[..newline.unwrap_or(available.len())];
            let read = match self.skipping.as_mut() {
                Some(seen) => {
                    *seen += part.len();
                    newline.map(|_| Read::TooLong(*seen))
                }
                None if self.record.len() + part.len() > self.max => {
                    let seen = self.record.len() + part.len();
                    self.record.clear();
                    self.skipping = Some(seen);
                    newline.map(|_| Read::TooLong(seen))
                }
                None => {
                    self.record.extend_from_slice(part);
                    newline.map(|_| Read::Record)
                }
            };
            let used = newline.map_or(available.len(), |i| i + 1);
            self.reader.consume(used);
            if let Some(read) = read {
                if matches!(read, Read::TooLong(_)) {
                    self.skipping = None;
                }
                return Ok(read);
            }
        }
    }

    /// At the end of the output: the last record if it had no newline.
    fn last(&mut self) -> Option<Read> {
        if let Some(seen) = self.skipping.take() {
            return Some(Read::TooLong(seen));
        }
        (!self.record.is_empty()).then_some(Read::Record)
    }
}

/// Reads the next record if it can be read without waiting (it is buffered or in the
/// pipe). `None`: it would wait (what was read of a record so far stays in `reader`).
async fn read_now<R: AsyncRead + Unpin>(reader: &mut Records<R>) -> Option<std::io::Result<Read>> {
    tokio::select! {
        biased;
        read = reader.next() => Some(read),
        _ = std::future::ready(()) => None,
    }
}

/// Kills the child and reaps it.
async fn stop(mut child: Child) -> Exit {
    let _ = child.kill().await;
    Exit::Stop
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use tokio::io::AsyncWriteExt;
    use tokio::task::JoinHandle;
    use tokio::time::timeout;

    /// Base of the test entries' timestamps (µs), 2023-11-14T22:13:20Z.
    const BASE_USEC: u64 = 1_700_000_000_000_000;
    const OLD_BOOT: &str = "0123456789abcdef0123456789abcdef";
    const UNIT: &str = "reaction.service";
    const WAIT: Duration = Duration::from_secs(10);

    // ---- Environment ------------------------------------------------------------------

    fn find_in_path(name: &str) -> Option<PathBuf> {
        std::env::split_paths(&std::env::var_os("PATH")?)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    }

    /// The real journalctl; the test fails (never skips) without it.
    fn journalctl() -> PathBuf {
        find_in_path("journalctl").expect(
            "journalctl not found in PATH: these tests need systemd's journalctl \
             (apt-get install systemd)",
        )
    }

    /// systemd-journal-remote (not in PATH on Debian); the test fails without it.
    fn journal_remote() -> PathBuf {
        [
            "/usr/lib/systemd/systemd-journal-remote",
            "/lib/systemd/systemd-journal-remote",
        ]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .or_else(|| find_in_path("systemd-journal-remote"))
        .expect(
            "systemd-journal-remote not found: these tests write real journal files with it \
             (apt-get install -y systemd-journal-remote)",
        )
    }

    fn current_boot() -> String {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .expect("reading /proc/sys/kernel/random/boot_id")
            .trim()
            .replace('-', "")
    }

    // ---- Journal files ----------------------------------------------------------------

    #[derive(Clone)]
    struct Entry {
        unit: &'static str,
        /// None: an entry without MESSAGE.
        message: Option<Vec<u8>>,
        boot: String,
    }

    fn entry(message: &str) -> Entry {
        Entry {
            unit: UNIT,
            message: Some(message.as_bytes().to_vec()),
            boot: OLD_BOOT.to_owned(),
        }
    }

    fn entries(messages: &[&str]) -> Vec<Entry> {
        messages.iter().map(|m| entry(m)).collect()
    }

    /// A directory of journal files written by systemd-journal-remote. Each entry gets the
    /// next timestamp (1 ms apart).
    struct Journal {
        _root: tempfile::TempDir,
        /// The journal directory: the temporary directory or a subdirectory of it.
        dir: PathBuf,
        next_usec: u64,
    }

    fn export_field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
        if value.contains(&b'\n') || std::str::from_utf8(value).is_err() {
            // Binary form: NAME\n<u64 LE length><bytes>\n
            out.extend_from_slice(name.as_bytes());
            out.push(b'\n');
            out.extend_from_slice(&(value.len() as u64).to_le_bytes());
            out.extend_from_slice(value);
            out.push(b'\n');
        } else {
            out.extend_from_slice(name.as_bytes());
            out.push(b'=');
            out.extend_from_slice(value);
            out.push(b'\n');
        }
    }

    impl Journal {
        fn new() -> Self {
            let root = tempfile::tempdir().unwrap();
            Journal {
                dir: root.path().to_owned(),
                _root: root,
                next_usec: BASE_USEC,
            }
        }

        /// A journal in the directory `name` of a temporary directory, not created yet.
        fn in_subdir(name: &str) -> Self {
            let mut j = Journal::new();
            j.dir = j.dir.join(name);
            j
        }

        fn path(&self) -> PathBuf {
            self.dir.clone()
        }

        /// Appends `entries` to `<dir>/<file>.journal` (created if needed); returns their
        /// timestamps (µs).
        async fn write(&mut self, file: &str, entries: &[Entry]) -> Vec<u64> {
            let mut export = Vec::new();
            let mut times = Vec::new();
            for e in entries {
                let usec = self.next_usec;
                self.next_usec += 1000;
                times.push(usec);
                let mono = usec - BASE_USEC + 1;
                export_field(
                    &mut export,
                    "__REALTIME_TIMESTAMP",
                    usec.to_string().as_bytes(),
                );
                export_field(
                    &mut export,
                    "__MONOTONIC_TIMESTAMP",
                    mono.to_string().as_bytes(),
                );
                export_field(&mut export, "_BOOT_ID", e.boot.as_bytes());
                export_field(&mut export, "_HOSTNAME", b"testhost");
                export_field(&mut export, "_SYSTEMD_UNIT", e.unit.as_bytes());
                export_field(&mut export, "PRIORITY", b"6");
                if let Some(m) = &e.message {
                    export_field(&mut export, "MESSAGE", m);
                }
                export.push(b'\n');
            }
            let target = self.dir.join(format!("{file}.journal"));
            let mut child = tokio::process::Command::new(journal_remote())
                .arg("-o")
                .arg(&target)
                .arg("-")
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("running systemd-journal-remote");
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(&export).await.unwrap();
            drop(stdin);
            let out = child.wait_with_output().await.unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "systemd-journal-remote: {stderr}");
            assert!(
                stderr.contains(&format!("writing {} entries", entries.len())),
                "systemd-journal-remote did not write every entry: {stderr}"
            );
            times
        }

        /// The cursors of the unit's entries, read with journalctl directly.
        async fn cursors(&self) -> Vec<String> {
            let out = tokio::process::Command::new(journalctl())
                .arg("-D")
                .arg(&self.dir)
                .args(["--output=json", "--no-pager", "--merge"])
                .arg(format!("_SYSTEMD_UNIT={UNIT}"))
                .output()
                .await
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout)
                .unwrap()
                .lines()
                .map(|l| {
                    let v: Value = serde_json::from_str(l).unwrap();
                    v["__CURSOR"].as_str().unwrap().to_owned()
                })
                .collect()
        }

        fn config(&self) -> JournaldConfig {
            JournaldConfig {
                unit: UNIT.to_owned(),
                directory: Some(self.path()),
                journalctl: journalctl(),
                from_beginning: false,
                after_cursor: None,
                max_line_bytes: defaults::MAX_LINE_LENGTH,
            }
        }
    }

    // ---- Observer ---------------------------------------------------------------------

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Ev {
        ChildFailed(String, String),
        Stderr(String),
        PositionInvalid(String, String),
        Recovered(String),
        InvalidUtf8(String),
        Other(&'static str),
    }

    #[derive(Default)]
    struct Recorder(Mutex<Vec<Ev>>);

    impl Recorder {
        fn push(&self, e: Ev) {
            self.0.lock().unwrap().push(e);
        }
        fn events(&self) -> Vec<Ev> {
            self.0.lock().unwrap().clone()
        }
        /// Waits until an event satisfies `pred`.
        async fn wait_for(&self, what: &str, pred: impl Fn(&Ev) -> bool) {
            let deadline = Instant::now() + WAIT;
            while !self.events().iter().any(&pred) {
                assert!(
                    Instant::now() < deadline,
                    "no {what} event; events: {:?}",
                    self.events()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    impl SourceObserver for Recorder {
        fn rotated(&self, _: &Path) {
            self.push(Ev::Other("rotated"));
        }
        fn truncated(&self, _: &Path) {
            self.push(Ev::Other("truncated"));
        }
        fn error(&self, _: &Path, _: &std::io::Error) {
            self.push(Ev::Other("error"));
        }
        fn recovered(&self, _: &Path) {
            self.push(Ev::Other("recovered"));
        }
        fn invalid_utf8(&self, origin: Origin<'_>) {
            self.push(Ev::InvalidUtf8(origin.to_string()));
        }
        fn line_too_long(&self, _: Origin<'_>, _: usize) {
            self.push(Ev::Other("line_too_long"));
        }
        fn child_failed(&self, what: &str, detail: &dyn Display) {
            self.push(Ev::ChildFailed(what.to_owned(), detail.to_string()));
        }
        fn child_stderr(&self, line: &str) {
            self.push(Ev::Stderr(line.to_owned()));
        }
        fn position_invalid(&self, position: &str, fallback: &str) {
            self.push(Ev::PositionInvalid(
                position.to_owned(),
                fallback.to_owned(),
            ));
        }
        fn child_recovered(&self, what: &str) {
            self.push(Ev::Recovered(what.to_owned()));
        }
    }

    // ---- The running source -----------------------------------------------------------

    struct Running {
        rx: mpsc::Receiver<Batch>,
        stop: watch::Sender<bool>,
        task: JoinHandle<()>,
        obs: Arc<Recorder>,
        /// Position of the last batch received.
        position: Option<Position>,
    }

    fn texts(lines: &Lines) -> Vec<String> {
        lines.iter().map(|l| l.text.to_owned()).collect()
    }

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    impl Running {
        fn start(config: JournaldConfig) -> Self {
            let obs = Arc::new(Recorder::default());
            let (tx, rx) = mpsc::channel(16);
            let (stop, stop_rx) = watch::channel(false);
            let task = tokio::spawn(run(config, obs.clone(), tx, stop_rx));
            Running {
                rx,
                stop,
                task,
                obs,
                position: None,
            }
        }

        fn take(&mut self, batch: Batch) -> Lines {
            assert!(batch.position.is_some(), "a batch without a position");
            self.position = batch.position;
            batch.lines
        }

        /// Receives batches until `n` lines arrived.
        async fn lines(&mut self, n: usize) -> Lines {
            let mut got = Lines::new();
            while got.len() < n {
                match timeout(WAIT, self.rx.recv()).await {
                    Ok(Some(batch)) => {
                        let lines = self.take(batch);
                        got.extend(lines.iter());
                    }
                    Ok(None) => panic!("the source stopped; got {:?}", texts(&got)),
                    Err(_) => panic!(
                        "timeout: {} of {n} lines: {:?}; events: {:?}",
                        got.len(),
                        texts(&got),
                        self.obs.events()
                    ),
                }
            }
            assert_eq!(got.len(), n, "more lines than expected: {:?}", texts(&got));
            got
        }

        async fn texts(&mut self, n: usize) -> Vec<String> {
            texts(&self.lines(n).await)
        }

        /// Asserts that nothing arrives for `d`.
        async fn quiet(&mut self, d: Duration) {
            if let Ok(batch) = timeout(d, self.rx.recv()).await {
                panic!("unexpected batch: {batch:?}");
            }
        }

        fn cursor(&self) -> String {
            match &self.position {
                Some(Position::Journal { cursor }) => cursor.clone(),
                other => panic!("no journal position: {other:?}"),
            }
        }

        /// For a source started at the end of the journal: appends `sync N` entries until
        /// one arrives, so that entries written from then on must arrive. Returns the
        /// lines received (all `sync N`).
        async fn sync(&mut self, journal: &mut Journal) -> Vec<String> {
            let mut got = Vec::new();
            for i in 0..100 {
                let last = format!("sync {i}");
                journal.write("a", &[entry(&last)]).await;
                if let Ok(batch) = timeout(Duration::from_millis(200), self.rx.recv()).await {
                    got.extend(texts(&self.take(batch.expect("the source stopped"))));
                    // Every sync written after the first one received arrives too.
                    while !got.contains(&last) {
                        let batch = timeout(WAIT, self.rx.recv()).await.unwrap().unwrap();
                        got.extend(texts(&self.take(batch)));
                    }
                    return got;
                }
            }
            panic!("journalctl never followed; events: {:?}", self.obs.events());
        }

        /// Asks to stop; returns the lines sent after that, and checks that the task ends
        /// promptly.
        async fn stop(mut self) -> (Vec<String>, Arc<Recorder>) {
            self.stop.send(true).unwrap();
            let mut rest = Vec::new();
            while let Some(batch) = timeout(WAIT, self.rx.recv()).await.expect("no shutdown") {
                rest.extend(texts(&batch.lines));
            }
            timeout(Duration::from_secs(5), self.task)
                .await
                .expect("run did not return")
                .unwrap();
            (rest, self.obs)
        }
    }

    fn no_failures(obs: &Recorder) {
        let events = obs.events();
        assert!(
            events
                .iter()
                .all(|e| matches!(e, Ev::Stderr(_) | Ev::Recovered(_))),
            "unexpected events: {events:?}"
        );
    }

    // ---- Tests ------------------------------------------------------------------------

    #[test]
    fn command_lines() {
        let mut config = JournaldConfig {
            unit: "reaction".into(),
            directory: None,
            journalctl: PathBuf::from(defaults::JOURNALCTL),
            from_beginning: false,
            after_cursor: None,
            max_line_bytes: defaults::MAX_LINE_LENGTH,
        };
        let line = |c: &JournaldConfig, s: &Start, m: Option<&str>| {
            command_args(c, s, m)
                .iter()
                .map(|a| a.to_str().unwrap().to_owned())
                .collect::<Vec<_>>()
                .join(" ")
        };
        let common = "--follow --output=json --all --output-fields=MESSAGE --no-pager --merge";
        let id = "3d1219c7c4c5404aaa1f6d2a48adfda4";
        assert_eq!(
            line(&config, &Start::Tail, Some(id)),
            format!("{common} --lines=0 _SYSTEMD_UNIT=reaction.service _MACHINE_ID={id}")
        );
        assert_eq!(
            line(&config, &Start::Head, None),
            format!("{common} --lines=all _SYSTEMD_UNIT=reaction.service")
        );
        config.directory = Some(PathBuf::from("/var/log/journal"));
        config.unit = "reaction.service".into();
        assert_eq!(
            line(&config, &Start::Cursor("s=1;i=2".into()), Some(id)),
            format!(
                "-D /var/log/journal {common} --lines=all --cursor=s=1;i=2 \
                 _SYSTEMD_UNIT=reaction.service"
            )
        );
        assert_eq!(
            line(&config, &Start::Since(1_700_000_000_000_042), None),
            format!(
                "-D /var/log/journal {common} --lines=all --since=@1700000000.000042 \
                 _SYSTEMD_UNIT=reaction.service"
            )
        );
        assert_eq!(Start::initial(&config), Start::Tail);
        config.from_beginning = true;
        assert_eq!(Start::initial(&config), Start::Head);
        config.after_cursor = Some("c".into());
        assert_eq!(Start::initial(&config), Start::Cursor("c".into()));
        assert_eq!(
            cursor_realtime("s=a;i=3;b=0;m=3;t=60a24181e4003;x=6a"),
            Some(1_700_000_000_000_003)
        );
        assert_eq!(cursor_realtime("garbage"), None);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("machine-id");
        std::fs::write(&path, format!("{id}\n")).unwrap();
        assert_eq!(read_machine_id(&path).as_deref(), Some(id));
        std::fs::write(&path, "uninitialized\n").unwrap();
        assert_eq!(read_machine_id(&path), None);
    }

    #[tokio::test]
    async fn from_beginning_reads_all_boots_only_the_unit_with_journal_timestamps() {
        let mut j = Journal::new();
        let mut other = entry("not reaction");
        other.unit = "other.service";
        let mut current = entry("INFO current boot");
        current.boot = current_boot();
        let times = j
            .write(
                "a",
                &[
                    entry("INFO old boot 1"),
                    other,
                    entry("INFO old boot 2"),
                    current,
                ],
            )
            .await;
        let mut r = Running::start(JournaldConfig {
            from_beginning: true,
            ..j.config()
        });
        let lines = r.lines(3).await;
        assert_eq!(
            texts(&lines),
            strings(&["INFO old boot 1", "INFO old boot 2", "INFO current boot"]),
            "--merge keeps the entries of older boots, the match keeps only the unit's"
        );
        let want: Vec<SystemTime> = [times[0], times[2], times[3]]
            .iter()
            .map(|&us| UNIX_EPOCH + Duration::from_micros(us))
            .collect();
        let got: Vec<SystemTime> = lines.iter().map(|l| l.time).collect();
        assert_eq!(got, want, "times come from __REALTIME_TIMESTAMP");
        assert_eq!(
            r.cursor(),
            j.cursors().await[2],
            "position: the last line's cursor"
        );
        r.quiet(Duration::from_millis(300)).await;
        let (rest, obs) = r.stop().await;
        assert!(rest.is_empty());
        no_failures(&obs);
    }

    #[tokio::test]
    async fn new_only_skips_existing_entries_and_follows_appended_ones() {
        let mut j = Journal::new();
        j.write("a", &entries(&["old 1", "old 2"])).await;
        let mut r = Running::start(j.config());
        let synced = r.sync(&mut j).await;
        assert!(
            synced.iter().all(|l| l.starts_with("sync ")),
            "existing entries were sent: {synced:?}"
        );
        // Appended to the same file, and in a second file of the same directory.
        j.write("a", &entries(&["new 1", "new 2"])).await;
        assert_eq!(r.texts(2).await, strings(&["new 1", "new 2"]));
        let mut other = entry("other unit");
        other.unit = "other.service";
        j.write("b", &[other, entry("new 3")]).await;
        assert_eq!(r.texts(1).await, strings(&["new 3"]));
        assert_eq!(r.cursor(), *j.cursors().await.last().unwrap());
        let (rest, obs) = r.stop().await;
        assert!(rest.is_empty());
        no_failures(&obs);
    }

    #[tokio::test]
    async fn resume_after_a_cursor_sends_exactly_the_entries_after_it() {
        let mut j = Journal::new();
        j.write("a", &entries(&["e1", "e2", "e3", "e4"])).await;
        let cursors = j.cursors().await;
        // After e2: e3 and e4, then what is appended.
        let mut r = Running::start(JournaldConfig {
            after_cursor: Some(cursors[1].clone()),
            ..j.config()
        });
        assert_eq!(r.texts(2).await, strings(&["e3", "e4"]));
        r.quiet(Duration::from_millis(300)).await;
        j.write("a", &entries(&["e5"])).await;
        assert_eq!(r.texts(1).await, strings(&["e5"]));
        let (_, obs) = r.stop().await;
        no_failures(&obs);

        // After the last entry: nothing until something is appended (from_beginning does
        // not matter when there is a cursor).
        let last = j.cursors().await.pop().unwrap();
        let mut r = Running::start(JournaldConfig {
            after_cursor: Some(last),
            from_beginning: true,
            ..j.config()
        });
        r.quiet(Duration::from_millis(500)).await;
        j.write("a", &entries(&["e6"])).await;
        assert_eq!(r.texts(1).await, strings(&["e6"]));
        r.stop().await;

        // The cursor's entry no longer exists (another journal holds the later entries
        // only): nothing after it is skipped (systemd 252's --after-cursor would skip e3).
        let mut k = Journal::new();
        k.next_usec = BASE_USEC + 2000; // e3's time
        k.write("a", &entries(&["e3", "e4"])).await;
        let mut r = Running::start(JournaldConfig {
            after_cursor: Some(cursors[1].clone()),
            ..k.config()
        });
        assert_eq!(r.texts(2).await, strings(&["e3", "e4"]));
        let (_, obs) = r.stop().await;
        no_failures(&obs);
    }

    #[tokio::test]
    async fn rejected_cursor_falls_back_to_its_time_or_to_the_configured_start() {
        let mut j = Journal::new();
        let times = j.write("a", &entries(&["e1", "e2", "e3", "e4"])).await;

        // A damaged cursor that still holds e3's time: from e3 on.
        let damaged = format!("s=not-an-id;i=3;t={:x}", times[2]);
        let mut r = Running::start(JournaldConfig {
            after_cursor: Some(damaged.clone()),
            ..j.config()
        });
        assert_eq!(r.texts(2).await, strings(&["e3", "e4"]));
        let (_, obs) = r.stop().await;
        let events = obs.events();
        assert!(
            events.iter().any(|e| matches!(e,
                Ev::PositionInvalid(c, f) if *c == damaged && f.contains("@1700000000.002000"))),
            "{events:?}"
        );
        assert!(
            !events.iter().any(|e| matches!(e, Ev::ChildFailed(..))),
            "{events:?}"
        );

        // Without a time: the beginning of the journal with from_beginning...
        let mut r = Running::start(JournaldConfig {
            after_cursor: Some("garbage".into()),
            from_beginning: true,
            ..j.config()
        });
        assert_eq!(r.texts(4).await, strings(&["e1", "e2", "e3", "e4"]));
        let (_, obs) = r.stop().await;
        let events = obs.events();
        assert!(
            events.iter().any(|e| matches!(e,
                Ev::PositionInvalid(c, f) if c == "garbage" && f.contains("beginning"))),
            "{events:?}"
        );

        // ... else new entries only.
        let mut r = Running::start(JournaldConfig {
            after_cursor: Some("garbage".into()),
            ..j.config()
        });
        r.obs
            .wait_for("position_invalid", |e| matches!(e, Ev::PositionInvalid(..)))
            .await;
        let synced = r.sync(&mut j).await;
        assert!(synced.iter().all(|l| l.starts_with("sync ")), "{synced:?}");
        let (_, obs) = r.stop().await;
        let invalid = obs
            .events()
            .into_iter()
            .filter(|e| matches!(e, Ev::PositionInvalid(..)))
            .count();
        assert_eq!(invalid, 1);
    }

    /// Guards issue 8: a cursor with a NUL byte (from a damaged or forged state file) could
    /// not be passed to journalctl, which then never started and was retried forever. It
    /// falls back at once, to its time when it has one, without running journalctl on it.
    #[tokio::test]
    async fn a_cursor_that_cannot_be_passed_falls_back_at_once() {
        let mut j = Journal::new();
        let times = j.write("a", &entries(&["e1", "e2", "e3"])).await;
        let nul = format!("s=0\0;i=2;t={:x}", times[1]);
        let mut r = Running::start(JournaldConfig {
            after_cursor: Some(nul),
            ..j.config()
        });
        assert_eq!(r.texts(2).await, strings(&["e2", "e3"]));
        let (_, obs) = r.stop().await;
        let events = obs.events();
        assert!(
            events.iter().any(|e| matches!(e,
                Ev::PositionInvalid(c, f) if c.contains('\0') && f.contains("@1700000000.001000"))),
            "{events:?}"
        );
        assert!(
            !events.iter().any(|e| matches!(e, Ev::ChildFailed(..))),
            "{events:?}"
        );
        for (cursor, valid) in [
            ("s=0123456789abcdef0123456789abcdef;i=1;b=0123456789abcdef0123456789abcdef;m=1;t=60a1c1e8ab000;x=1", true),
            ("garbage", true),
            ("", false),
            ("a b", false),
            ("a\0", false),
            ("é", false),
        ] {
            assert_eq!(valid_cursor(cursor), valid, "{cursor:?}");
        }
        assert!(!valid_cursor(&"a".repeat(MAX_CURSOR_BYTES + 1)));
    }

    #[tokio::test]
    async fn messages_bytes_newlines_and_missing_messages() {
        let mut j = Journal::new();
        let mut no_message = entry("");
        no_message.message = None;
        let mut bad = entry("");
        bad.message = Some(b"INFO bad \xff byte".to_vec());
        let mut ansi = entry("");
        ansi.message = Some(b"\x1b[32m INFO coloured\x1b[0m".to_vec());
        let mut newline = entry("");
        newline.message = Some(b"INFO with newline\n".to_vec());
        let long = format!("INFO {}", "x".repeat(5000));
        j.write(
            "a",
            &[no_message, bad, ansi, newline, entry(&long), entry("last")],
        )
        .await;
        let mut r = Running::start(JournaldConfig {
            from_beginning: true,
            ..j.config()
        });
        let got = r.texts(5).await;
        assert_eq!(
            got,
            vec![
                "INFO bad \u{fffd} byte".to_owned(),
                "\x1b[32m INFO coloured\x1b[0m".to_owned(),
                "INFO with newline".to_owned(),
                long,
                "last".to_owned(),
            ]
        );
        let (_, obs) = r.stop().await;
        let events = obs.events();
        let invalid: Vec<&Ev> = events
            .iter()
            .filter(|e| matches!(e, Ev::InvalidUtf8(_)))
            .collect();
        assert_eq!(
            invalid,
            vec![&Ev::InvalidUtf8("the journal of reaction.service".into())],
            "only the non-UTF-8 message is reported (the coloured one is a byte array too)"
        );
    }

    /// Guards `reaction.logs.max_line_length` on journald: a MESSAGE longer than the limit
    /// is dropped and reported, the lines around it are read, and a record too long to hold
    /// an acceptable line is skipped without being kept.
    #[tokio::test]
    async fn messages_longer_than_the_limit_are_dropped_and_reported() {
        let mut j = Journal::new();
        let max = 1000;
        // Past the limit once decoded, within the bound on the JSON record.
        let long = format!("INFO {}", "x".repeat(2 * max));
        // Past the bound on the record itself: never kept.
        let huge = format!("INFO {}", "y".repeat(4 * max + 8192));
        let mut binary = entry("");
        binary.message = Some([b"INFO \xff".as_slice(), &[b'z'; 1500]].concat());
        j.write(
            "a",
            &[
                entry("before"),
                entry(&long),
                entry(&huge),
                binary,
                entry("after"),
            ],
        )
        .await;
        let mut r = Running::start(JournaldConfig {
            from_beginning: true,
            max_line_bytes: max,
            ..j.config()
        });
        assert_eq!(r.texts(2).await, strings(&["before", "after"]));
        assert_eq!(r.cursor(), *j.cursors().await.last().unwrap());
        let (_, obs) = r.stop().await;
        let too_long: Vec<Ev> = obs
            .events()
            .into_iter()
            .filter(|e| matches!(e, Ev::Other("line_too_long")))
            .collect();
        assert_eq!(too_long.len(), 3, "{:?}", obs.events());
        assert!(
            !obs.events().iter().any(|e| matches!(e, Ev::InvalidUtf8(_))),
            "a line dropped is not also invalid UTF-8: {:?}",
            obs.events()
        );
    }

    #[tokio::test]
    async fn records_are_bounded_and_survive_cancellation() {
        let (mut tx, rx) = tokio::io::duplex(64);
        let mut records = Records::new(rx, 10);
        tx.write_all(b"short\n0123456789abcdef\npart")
            .await
            .unwrap();
        assert_eq!(records.next().await.unwrap(), Read::Record);
        assert_eq!(records.record, b"short");
        records.record.clear();
        assert_eq!(records.next().await.unwrap(), Read::TooLong(16));
        assert!(records.record.is_empty());
        // "part" is read, then the read waits: cancelled, it keeps what it read.
        assert!(read_now(&mut records).await.is_none());
        tx.write_all(b"ial\nlonger than ten").await.unwrap();
        assert_eq!(records.next().await.unwrap(), Read::Record);
        assert_eq!(records.record, b"partial");
        records.record.clear();
        assert!(read_now(&mut records).await.is_none());
        assert!(records.record.is_empty(), "an oversized record is not kept");
        drop(tx);
        assert_eq!(records.next().await.unwrap(), Read::Eof);
        assert_eq!(records.last(), Some(Read::TooLong(15)));
        assert_eq!(records.last(), None);
    }

    #[tokio::test]
    async fn missing_journalctl_is_reported_then_recovers() {
        let mut j = Journal::new();
        j.write("a", &entries(&["e1", "e2"])).await;
        let bin = tempfile::tempdir().unwrap();
        let link = bin.path().join("journalctl");
        let mut r = Running::start(JournaldConfig {
            journalctl: link.clone(),
            from_beginning: true,
            ..j.config()
        });
        r.obs
            .wait_for(
                "child_failed",
                |e| matches!(e, Ev::ChildFailed(w, _) if w == "journalctl not found"),
            )
            .await;
        std::os::unix::fs::symlink(journalctl(), &link).unwrap();
        assert_eq!(r.texts(2).await, strings(&["e1", "e2"]));
        r.obs
            .wait_for("child_recovered", |e| matches!(e, Ev::Recovered(_)))
            .await;
        let (_, obs) = r.stop().await;
        let events = obs.events();
        let recovered = events.iter().position(|e| matches!(e, Ev::Recovered(_)));
        let last_failure = events
            .iter()
            .rposition(|e| matches!(e, Ev::ChildFailed(..)));
        assert!(last_failure < recovered, "{events:?}");
    }

    #[tokio::test]
    async fn unreadable_journal_is_reported_then_recovers() {
        let mut j = Journal::in_subdir("later");
        let mut r = Running::start(JournaldConfig {
            from_beginning: true,
            ..j.config()
        });
        r.obs
            .wait_for("child_failed", |e| {
                matches!(e, Ev::ChildFailed(w, d)
                    if w == "journalctl exited with status 1" && d.contains("later"))
            })
            .await;
        std::fs::create_dir(j.path()).unwrap();
        j.write("a", &entries(&["e1"])).await;
        assert_eq!(r.texts(1).await, strings(&["e1"]));
        r.obs
            .wait_for("child_recovered", |e| matches!(e, Ev::Recovered(_)))
            .await;
        r.stop().await;
    }

    /// A journalctl that fails once: the first run prints `lines` (real records and one that
    /// is not JSON), says `boom` on stderr and exits with status 3; the next runs record
    /// their arguments and run the real journalctl.
    fn flaky_journalctl(dir: &Path, lines: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(dir.join("first-output"), lines).unwrap();
        let script = dir.join("journalctl");
        let d = dir.display();
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\n\
                 if [ ! -e '{d}/ran' ]; then\n\
                 \x20 touch '{d}/ran'\n\
                 \x20 cat '{d}/first-output'\n\
                 \x20 echo boom >&2\n\
                 \x20 exit 3\n\
                 fi\n\
                 printf '%s\\n' \"$@\" > '{d}/args'\n\
                 exec '{}' \"$@\"\n",
                journalctl().display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        script
    }

    #[tokio::test]
    async fn exited_child_is_restarted_after_the_last_cursor() {
        let mut j = Journal::new();
        j.write("a", &entries(&["e1", "e2", "e3", "e4"])).await;
        // The real records of e1 and e2, as journalctl prints them to the source.
        let all = tokio::process::Command::new(journalctl())
            .arg("-D")
            .arg(j.path())
            .args([
                "--output=json",
                "--all",
                "--output-fields=MESSAGE",
                "--no-pager",
            ])
            .arg(format!("_SYSTEMD_UNIT={UNIT}"))
            .output()
            .await
            .unwrap();
        let records: Vec<String> = String::from_utf8(all.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        assert_eq!(records.len(), 4);
        let bin = tempfile::tempdir().unwrap();
        let first = format!("{}\nnot json\n{}\n", records[0], records[1]);
        let script = flaky_journalctl(bin.path(), &first);
        let mut r = Running::start(JournaldConfig {
            journalctl: script,
            from_beginning: true,
            ..j.config()
        });
        assert_eq!(r.texts(4).await, strings(&["e1", "e2", "e3", "e4"]));
        let cursors = j.cursors().await;
        let args = std::fs::read_to_string(bin.path().join("args")).unwrap();
        assert!(
            args.lines()
                .any(|a| a == format!("--cursor={}", cursors[1])),
            "restarted after e2: {args}"
        );
        j.write("a", &entries(&["e5"])).await;
        assert_eq!(r.texts(1).await, strings(&["e5"]));
        let (_, obs) = r.stop().await;
        let events = obs.events();
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Ev::ChildFailed(w, _) if w == "journalctl output")),
            "the record that is not JSON is reported: {events:?}"
        );
        assert!(events.contains(&Ev::Stderr("boom".into())), "{events:?}");
        assert!(
            events.contains(&Ev::ChildFailed(
                "journalctl exited with status 3".into(),
                "boom".into()
            )),
            "{events:?}"
        );
        assert!(
            events.contains(&Ev::Recovered("journalctl".into())),
            "{events:?}"
        );
    }

    #[tokio::test]
    async fn shutdown_returns_promptly_with_what_was_read() {
        let mut j = Journal::new();
        let many: Vec<String> = (0..2500).map(|i| format!("line {i}")).collect();
        let many_refs: Vec<&str> = many.iter().map(String::as_str).collect();
        j.write("a", &entries(&many_refs)).await;
        let mut r = Running::start(JournaldConfig {
            from_beginning: true,
            ..j.config()
        });
        // Batches hold at most defaults::JOURNAL_LINES_PER_BATCH lines, in order.
        let mut got = Vec::new();
        while got.len() < 2500 {
            let batch = timeout(WAIT, r.rx.recv()).await.unwrap().unwrap();
            assert!(
                !batch.lines.is_empty() && batch.lines.len() <= defaults::JOURNAL_LINES_PER_BATCH
            );
            // A full batch says more may be waiting (the pipeline has not caught up).
            assert_eq!(
                batch.backlog,
                batch.lines.len() == defaults::JOURNAL_LINES_PER_BATCH
            );
            got.extend(r.take(batch).iter().map(|l| l.text.to_owned()));
        }
        assert_eq!(got, many);
        j.write("a", &entries(&["before stop"])).await;
        let started = Instant::now();
        let (rest, obs) = r.stop().await;
        assert!(started.elapsed() < Duration::from_secs(3));
        assert!(
            rest.is_empty() || rest == strings(&["before stop"]),
            "{rest:?}"
        );
        no_failures(&obs);
    }

    #[tokio::test]
    async fn returns_when_the_receiver_is_gone() {
        let j = Journal::new();
        let r = Running::start(j.config());
        drop(r.rx);
        timeout(Duration::from_secs(5), r.task)
            .await
            .expect("run did not return")
            .unwrap();
        // And while journalctl is missing (waiting in the backoff).
        let obs: Arc<Recorder> = Arc::default();
        let (tx, rx) = mpsc::channel(1);
        let (_stop, stop_rx) = watch::channel(false);
        let config = JournaldConfig {
            journalctl: PathBuf::from("/nonexistent/journalctl"),
            ..j.config()
        };
        let task = tokio::spawn(run(config, obs.clone(), tx, stop_rx));
        obs.wait_for("child_failed", |e| matches!(e, Ev::ChildFailed(..)))
            .await;
        drop(rx);
        timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }
}
