//! The state file: where the source was, which counts were not yet delivered on
//! `/metrics` and the attribution memory at that position (so that actions are labelled
//! after a restart as without it), saved atomically (temporary file, fsync, rename, fsync of the directory) at
//! each delivered scrape and at shutdown, and read back at start within the recall window.
//!
//! It holds IP addresses and user names, and its directory may be writable by others:
//! - the temporary file is created new (`O_CREAT | O_EXCL | O_NOFOLLOW`, mode 0600), after
//!   removing whatever has its name (a symbolic link planted there is removed, never
//!   followed: its target is not touched), so the state file is always mode 0600, even
//!   where an older one was 0644;
//! - it is read only if it is a regular file (not followed if it is a symbolic link; a FIFO
//!   or a device is refused without blocking on it) of at most
//!   [`defaults::STATE_FILE_MAX_BYTES`]; a state saved more than
//!   [`defaults::STATE_CLOCK_SKEW`] in the future, or whose journal cursor is not one
//!   journalctl prints, or whose attribution memory does not hold together, is refused. A
//!   refused state is logged and counted, and the source starts per
//!   `reaction.logs.start_at`;
//! - the format is versioned ([`FORMAT`]); a state file of an older format that this one
//!   extends ([`OLDER_FORMATS`]) is read too.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::defaults;
use crate::internal::events::StateFileFailed;
use crate::internal::Internal;
use crate::label::attribution::SavedMemory;
use crate::label::MemorySnapshot;
use crate::metric::Metric;
use crate::source::journald::valid_cursor;
use crate::source::Position;
use crate::telemetry::collect::{Attrs, SeriesKey};

/// Names this file format; anything else but [`OLDER_FORMATS`] is refused. Format 2 adds
/// `memory`.
pub(crate) const FORMAT: &str = "reaction-metrics-exporter/state/2";
/// Older formats read as well: what they lack is empty (format 1: no attribution memory).
pub(crate) const OLDER_FORMATS: [&str; 1] = ["reaction-metrics-exporter/state/1"];
pub(crate) const FILE_NAME: &str = "reaction-metrics-exporter.state.json";

/// Which input a state belongs to: a state saved for another file or unit is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub(crate) enum SourceId {
    File {
        path: PathBuf,
    },
    Journal {
        unit: String,
        directory: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SavedCount {
    pub family: String,
    pub attributes: Attrs,
    pub value: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct State {
    pub format: String,
    /// Milliseconds since the epoch (an integer: it round-trips exactly).
    pub saved_at_ms: u64,
    pub source: SourceId,
    /// After the last line whose counts are delivered or in `counts`.
    pub position: Option<Position>,
    /// Counts not delivered on `/metrics` yet.
    pub counts: Vec<SavedCount>,
    /// The attribution memory of each filter at `position` (format 2; empty in format 1,
    /// or when it did not fit under the size cap).
    #[serde(default)]
    pub memory: Vec<SavedMemory>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum StateError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid state file ({detail}): ignored")]
    Corrupt { path: PathBuf, detail: String },
    #[error("{path} was saved for {saved:?}, not for {expected:?}: ignored")]
    Foreign {
        path: PathBuf,
        saved: Box<SourceId>,
        expected: Box<SourceId>,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} would be larger than {max} bytes: saved without the attribution memory of \
         its {filters} filters (actions whose match was before the position lack the values \
         their command does not show) and without {series} of its undelivered series"
    )]
    TooLarge {
        path: PathBuf,
        max: usize,
        /// Filters whose memory was left out.
        filters: usize,
        /// Undelivered series left out (0: all kept).
        series: usize,
    },
}

impl State {
    pub(crate) fn new(
        source: SourceId,
        position: Option<Position>,
        counts: Vec<SavedCount>,
        memory: Vec<SavedMemory>,
    ) -> State {
        State {
            memory,
            format: FORMAT.to_string(),
            saved_at_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            source,
            position,
            counts,
        }
    }

    /// How long ago it was saved (zero if in the future: [`load`] refuses a state saved
    /// more than the clock skew it allows in the future).
    pub(crate) fn age(&self) -> Duration {
        Duration::from_millis(now_ms().saturating_sub(self.saved_at_ms))
    }

    /// The counts as series of the delta families (unknown families are skipped).
    pub(crate) fn series(&self) -> Vec<(SeriesKey, u64)> {
        self.counts
            .iter()
            .filter_map(|c| {
                let f = Metric::from_otel_name(&c.family)?;
                Some(((f, c.attributes.clone()), c.value))
            })
            .collect()
    }
}

/// Counts as saved entries.
pub(crate) fn saved_counts<'a>(
    counts: impl Iterator<Item = (&'a SeriesKey, &'a u64)>,
) -> Vec<SavedCount> {
    let mut v: Vec<SavedCount> = counts
        .filter(|(_, v)| **v > 0)
        .map(|((f, attrs), v)| SavedCount {
            family: f.spec().otel.to_string(),
            attributes: attrs.clone(),
            value: *v,
        })
        .collect();
    v.sort_by(|a, b| (&a.family, &a.attributes).cmp(&(&b.family, &b.attributes)));
    v
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

pub(crate) fn path(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// The bytes of the state file, if it is a regular file of at most `max` bytes: opened
/// without following a symbolic link and without blocking (a FIFO), checked with `fstat`
/// before anything is read, and read with a bound (a file that grows meanwhile).
fn read_bounded(path: &Path, max: usize) -> Result<Option<Vec<u8>>, StateError> {
    let read_err = |source| StateError::Read {
        path: path.to_owned(),
        source,
    };
    let corrupt = |detail: String| StateError::Corrupt {
        path: path.to_owned(),
        detail,
    };
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        // O_NOFOLLOW on a symbolic link: ELOOP.
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(corrupt("it is a symbolic link".into()))
        }
        Err(e) => return Err(read_err(e)),
    };
    let meta = file.metadata().map_err(read_err)?;
    let kind = meta.file_type();
    if !kind.is_file() {
        let what = if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else if kind.is_dir() {
            "a directory"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        };
        return Err(corrupt(format!("it is {what}, not a regular file")));
    }
    if meta.len() > max as u64 {
        return Err(corrupt(format!(
            "{} bytes, more than the {max} a state file may have",
            meta.len()
        )));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() > max {
        return Err(corrupt(format!(
            "more than the {max} bytes a state file may have"
        )));
    }
    Ok(Some(bytes))
}

/// Read the state of `dir`, if any, checking its format and that it belongs to `expected`.
pub(crate) fn load(dir: &Path, expected: &SourceId) -> Result<Option<State>, StateError> {
    let path = path(dir);
    let Some(bytes) = read_bounded(&path, defaults::STATE_FILE_MAX_BYTES)? else {
        return Ok(None);
    };
    decode(path, &bytes, expected).map(Some)
}

/// The checks of [`load`] on the bytes read from `path` (also a fuzz target).
pub(crate) fn decode(
    path: PathBuf,
    bytes: &[u8],
    expected: &SourceId,
) -> Result<State, StateError> {
    let state: State = serde_json::from_slice(bytes).map_err(|e| StateError::Corrupt {
        path: path.clone(),
        detail: e.to_string(),
    })?;
    if state.format != FORMAT && !OLDER_FORMATS.contains(&state.format.as_str()) {
        return Err(StateError::Corrupt {
            path,
            detail: format!("format {:?}, expected {FORMAT:?}", state.format),
        });
    }
    if let Some(e) = state.memory.iter().find_map(|m| m.check().err()) {
        return Err(StateError::Corrupt { path, detail: e });
    }
    let position_fits = matches!(
        (&state.source, &state.position),
        (_, None)
            | (SourceId::File { .. }, Some(Position::File { .. }))
            | (SourceId::Journal { .. }, Some(Position::Journal { .. }))
    );
    if !position_fits {
        return Err(StateError::Corrupt {
            path,
            detail: "the position does not fit the source".into(),
        });
    }
    if let Some(Position::Journal { cursor }) = &state.position {
        if !valid_cursor(cursor) {
            return Err(StateError::Corrupt {
                path,
                detail: format!(
                    "its journal cursor {:?} is not one journalctl prints",
                    cursor.chars().take(100).collect::<String>()
                ),
            });
        }
    }
    let skew = u64::try_from(defaults::STATE_CLOCK_SKEW.as_millis()).unwrap_or(u64::MAX);
    if state.saved_at_ms > now_ms().saturating_add(skew) {
        return Err(StateError::Corrupt {
            path,
            detail: format!(
                "it was saved {} s in the future (the clock went back, or it was forged)",
                state.saved_at_ms.saturating_sub(now_ms()) / 1000
            ),
        });
    }
    if &state.source != expected {
        return Err(StateError::Foreign {
            path,
            saved: Box::new(state.source),
            expected: Box::new(expected.clone()),
        });
    }
    Ok(state)
}

/// Replace the state of `dir` atomically. A state larger than
/// [`defaults::STATE_FILE_MAX_BYTES`] (which [`load`] would refuse) is saved without its
/// attribution memory, then if need be without its counts, so that the position is kept
/// (and the counts before the memory: a lost label is better than a lost count); that is
/// reported as [`StateError::TooLarge`] after the save.
pub(crate) fn save(dir: &Path, state: &State) -> Result<(), StateError> {
    save_bounded(dir, state, defaults::STATE_FILE_MAX_BYTES)
}

fn save_bounded(dir: &Path, state: &State, max: usize) -> Result<(), StateError> {
    let path = path(dir);
    let tmp = dir.join(format!(".{FILE_NAME}.tmp"));
    let werr = |source| StateError::Write {
        path: path.clone(),
        source,
    };
    let serialize = |state: &State| {
        serde_json::to_vec(state).map_err(|e| StateError::Write {
            path: path.clone(),
            source: std::io::Error::other(e),
        })
    };
    let mut text = serialize(state)?;
    let (mut filters, mut series) = (0, 0);
    if text.len() > max && !state.memory.is_empty() {
        filters = state.memory.len();
        text = serialize(&State {
            memory: Vec::new(),
            ..state.clone()
        })?;
    }
    if text.len() > max {
        series = state.counts.len();
        text = serialize(&State {
            counts: Vec::new(),
            memory: Vec::new(),
            ..state.clone()
        })?;
    }
    // Whatever has the temporary name (a file left by a crash, or a symbolic link planted
    // there) is removed, never followed; the file is then created new, or not at all.
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(werr(e)),
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .map_err(werr)?;
    f.write_all(&text).map_err(werr)?;
    f.sync_all().map_err(werr)?;
    drop(f);
    fs::rename(&tmp, &path).map_err(werr)?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    if filters > 0 || series > 0 {
        return Err(StateError::TooLarge {
            path,
            max,
            filters,
            series,
        });
    }
    Ok(())
}

/// Writes checkpoints in the background, newest wins: a snapshot older than the last one
/// written is skipped.
pub(crate) struct Checkpointer {
    dir: PathBuf,
    source: SourceId,
    written: std::sync::Mutex<u64>,
    pending: std::sync::Mutex<Pending>,
    internal: std::sync::Arc<Internal>,
}

impl Checkpointer {
    pub(crate) fn new(
        dir: PathBuf,
        source: SourceId,
        internal: std::sync::Arc<Internal>,
    ) -> Checkpointer {
        Checkpointer {
            dir,
            source,
            written: std::sync::Mutex::new(0),
            pending: std::sync::Mutex::new(Pending::default()),
            internal,
        }
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Save snapshot number `seq` (increasing) now, on this thread: the position, the
    /// counts outstanding there and the attribution memory taken with the position.
    pub(crate) fn save_now(
        &self,
        seq: u64,
        position: Option<Position>,
        counts: Vec<SavedCount>,
        memory: Option<Arc<MemorySnapshot>>,
    ) -> bool {
        // A panic while this lock was held cannot have left the number half-written: the
        // guard of a poisoned lock is used as is.
        let mut written = self
            .written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if seq <= *written {
            return true;
        }
        let memory = memory.map(|m| m.to_saved()).unwrap_or_default();
        let state = State::new(self.source.clone(), position, counts, memory);
        match save(&self.dir, &state) {
            Ok(()) => {
                *written = seq;
                true
            }
            Err(e @ StateError::TooLarge { .. }) => {
                // Saved, without the counts: the position is safe.
                *written = seq;
                self.internal.emit(StateFileFailed { error: &e });
                true
            }
            Err(e) => {
                self.internal.emit(StateFileFailed { error: &e });
                false
            }
        }
    }

    /// Save a snapshot soon, on the blocking pool: `snapshot` is taken when the save runs,
    /// and while one save runs, requests coalesce (the newest waits, older ones are
    /// dropped). So a burst of scrapes writes the state file at most twice, and the
    /// snapshot's copy of the outstanding counts is made once per write, off the scrapes'
    /// path (issue 8: each scrape rewrote a 14 MB state file while a stalled client held a
    /// 100k-series page, and the scrapes queued behind those copies).
    pub(crate) fn save_soon(self: &std::sync::Arc<Self>, snapshot: Snapshot) {
        {
            let mut p = self
                .pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if p.running {
                p.again = Some(snapshot);
                return;
            }
            p.running = true;
        }
        let this = self.clone();
        let run = move || {
            let mut next = Some(snapshot);
            while let Some(take) = next {
                let (seq, position, counts, memory) = take();
                this.save_now(seq, position, counts, memory);
                let mut p = this
                    .pending
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                next = p.again.take();
                if next.is_none() {
                    p.running = false;
                }
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn_blocking(run);
            }
            Err(_) => run(),
        }
    }
}

/// Takes a checkpoint's snapshot: its number (increasing), position, counts, and the
/// attribution memory at the position.
pub(crate) type Snapshot = Box<
    dyn FnOnce() -> (
            u64,
            Option<Position>,
            Vec<SavedCount>,
            Option<Arc<MemorySnapshot>>,
        ) + Send
        + 'static,
>;

/// Whether a save runs, and the request that came meanwhile.
#[derive(Default)]
struct Pending {
    running: bool,
    again: Option<Snapshot>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_id() -> SourceId {
        SourceId::File {
            path: "/var/log/reaction.log".into(),
        }
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let key: SeriesKey = (
            Metric::Matches,
            Attrs::from_pairs([("ip", "1.2.3.4"), ("stream", "ssh")]),
        );
        let s = State::new(
            file_id(),
            Some(Position::File {
                dev: 1,
                ino: 2,
                offset: 3,
                head_len: 4,
                head_hash: 5,
            }),
            saved_counts([(&key, &5u64)].into_iter()),
            vec![],
        );
        save(dir.path(), &s).unwrap();
        let back = load(dir.path(), &file_id()).unwrap().unwrap();
        assert_eq!(back, s);
        assert_eq!(back.series(), vec![(key, 5)]);
        assert!(back.age() < Duration::from_secs(5));
    }

    #[test]
    fn missing_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path(), &file_id()).unwrap().is_none());
    }

    #[test]
    fn corrupt_truncated_and_foreign_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let s = State::new(file_id(), None, vec![], vec![]);
        save(dir.path(), &s).unwrap();
        let text = fs::read_to_string(path(dir.path())).unwrap();
        fs::write(path(dir.path()), &text[..text.len() / 2]).unwrap();
        assert!(matches!(
            load(dir.path(), &file_id()),
            Err(StateError::Corrupt { .. })
        ));
        fs::write(path(dir.path()), b"\x00\x01garbage").unwrap();
        assert!(matches!(
            load(dir.path(), &file_id()),
            Err(StateError::Corrupt { .. })
        ));
        fs::write(path(dir.path()), text.replace(FORMAT, "other/1")).unwrap();
        assert!(matches!(
            load(dir.path(), &file_id()),
            Err(StateError::Corrupt { .. })
        ));
        fs::write(path(dir.path()), &text).unwrap();
        let other = SourceId::Journal {
            unit: "reaction.service".into(),
            directory: None,
        };
        assert!(matches!(
            load(dir.path(), &other),
            Err(StateError::Foreign { .. })
        ));
    }

    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// Guards issue 8: a symbolic link planted at the temporary name had its target
    /// overwritten, and the state file (IPs, user names) was mode 0644.
    #[test]
    fn a_planted_link_is_not_followed_and_the_file_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "precious").unwrap();
        let tmp = dir.path().join(format!(".{FILE_NAME}.tmp"));
        std::os::unix::fs::symlink(&victim, &tmp).unwrap();
        // An older state file, readable by all.
        fs::write(path(dir.path()), "{}").unwrap();
        fs::set_permissions(
            path(dir.path()),
            std::os::unix::fs::PermissionsExt::from_mode(0o644),
        )
        .unwrap();
        let s = State::new(file_id(), None, vec![], vec![]);
        save(dir.path(), &s).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(mode(&path(dir.path())), 0o600);
        assert!(!tmp.exists());
        assert_eq!(load(dir.path(), &file_id()).unwrap().unwrap(), s);
    }

    /// Guards issue 8: a FIFO at the state path hung the start; /dev/zero was read for
    /// ~1 GB. Neither is a regular file: refused without reading, and so is a link.
    #[test]
    fn only_a_regular_file_of_bounded_size_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path());
        let status = std::process::Command::new("mkfifo")
            .arg(&p)
            .status()
            .unwrap();
        assert!(status.success());
        let e = load(dir.path(), &file_id()).unwrap_err().to_string();
        assert!(e.contains("it is a FIFO, not a regular file"), "{e}");
        fs::remove_file(&p).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &p).unwrap();
        let e = load(dir.path(), &file_id()).unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        fs::remove_file(&p).unwrap();
        fs::create_dir(&p).unwrap();
        let e = load(dir.path(), &file_id()).unwrap_err().to_string();
        assert!(e.contains("directory"), "{e}");
        fs::remove_dir(&p).unwrap();
        // Over the cap: refused from its size, and a save keeps only the position.
        let key: SeriesKey = (Metric::Matches, Attrs::from_pairs([("ip", "1.2.3.4")]));
        let position = Some(Position::File {
            dev: 1,
            ino: 2,
            offset: 3,
            head_len: 0,
            head_hash: 0,
        });
        let big = State::new(
            file_id(),
            position.clone(),
            saved_counts([(&key, &1u64)].into_iter()),
            vec![],
        );
        let e = save_bounded(dir.path(), &big, 100).unwrap_err();
        assert!(
            matches!(
                e,
                StateError::TooLarge {
                    series: 1,
                    filters: 0,
                    ..
                }
            ),
            "{e}"
        );
        let back = load(dir.path(), &file_id()).unwrap().unwrap();
        assert_eq!((back.position, back.counts.len()), (position, 0));
        assert!(read_bounded(&p, 10)
            .unwrap_err()
            .to_string()
            .contains("more than the 10"));
    }

    /// Guards issue 8: a state saved far in the future was taken as saved "0 s ago"; a
    /// journal cursor with a NUL byte was kept and journalctl could never start.
    #[test]
    fn future_states_and_unusable_cursors_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = State::new(file_id(), None, vec![], vec![]);
        s.saved_at_ms += 3_600_000;
        save(dir.path(), &s).unwrap();
        let e = load(dir.path(), &file_id()).unwrap_err().to_string();
        assert!(e.contains("in the future"), "{e}");
        // Within the allowed skew: taken as just saved.
        s.saved_at_ms = now_ms() + 10_000;
        save(dir.path(), &s).unwrap();
        assert_eq!(
            load(dir.path(), &file_id()).unwrap().unwrap().age(),
            Duration::ZERO
        );
        let journal = SourceId::Journal {
            unit: "reaction.service".into(),
            directory: None,
        };
        for cursor in ["s=1\0;i=2", "", "x y"] {
            let s = State::new(
                journal.clone(),
                Some(Position::Journal {
                    cursor: cursor.into(),
                }),
                vec![],
                vec![],
            );
            save(dir.path(), &s).unwrap();
            let e = load(dir.path(), &journal).unwrap_err().to_string();
            assert!(
                e.contains("is not one journalctl prints"),
                "{cursor:?}: {e}"
            );
        }
    }

    fn memory() -> Vec<SavedMemory> {
        let mut labeller_memory = crate::label::attribution::Recent::new(100, 2, 1 << 20);
        labeller_memory.remember(&["1.2.3.4", "root"]);
        labeller_memory.remember(&["5.6.7.8", "admin"]);
        vec![labeller_memory.snapshot().to_saved("ssh.failedlogin")]
    }

    /// Guards issue 10 item 1: the attribution memory is saved with the position, and a
    /// state file of format 1 (no memory) still loads.
    #[test]
    fn the_memory_round_trips_and_format_1_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let s = State::new(file_id(), None, vec![], memory());
        save(dir.path(), &s).unwrap();
        let back = load(dir.path(), &file_id()).unwrap().unwrap();
        assert_eq!(back.memory, s.memory);
        assert_eq!(back.format, FORMAT);
        // Format 1, as the previous version wrote it (no `memory` key).
        let v1 = format!(
            r#"{{"format":"reaction-metrics-exporter/state/1","saved_at_ms":{},"source":{{"kind":"file","path":"/var/log/reaction.log"}},"position":{{"kind":"file","dev":1,"ino":2,"offset":3,"head_len":4,"head_hash":5}},"counts":[{{"family":"reaction.filter.matches","attributes":[["filter","f"],["stream","s"]],"value":2}}]}}"#,
            now_ms()
        );
        fs::write(path(dir.path()), v1).unwrap();
        let back = load(dir.path(), &file_id()).unwrap().unwrap();
        assert_eq!((back.counts.len(), back.memory.len()), (1, 0));
        // A memory that does not hold together is refused with the whole state.
        let mut bad = State::new(file_id(), None, vec![], memory());
        bad.memory[0].maps[0].old.push(99);
        save(dir.path(), &bad).unwrap();
        let e = load(dir.path(), &file_id()).unwrap_err().to_string();
        assert!(e.contains("match 99 of 2"), "{e}");
    }

    /// The memory goes first when the state would not fit: counts are worth more.
    #[test]
    fn over_the_cap_the_memory_is_dropped_before_the_counts() {
        let dir = tempfile::tempdir().unwrap();
        let key: SeriesKey = (Metric::Matches, Attrs::from_pairs([("ip", "1.2.3.4")]));
        let s = State::new(
            file_id(),
            None,
            saved_counts([(&key, &1u64)].into_iter()),
            memory(),
        );
        let with_counts = serde_json::to_vec(&State {
            memory: vec![],
            ..s.clone()
        })
        .unwrap()
        .len();
        let e = save_bounded(dir.path(), &s, with_counts).unwrap_err();
        assert!(
            matches!(
                e,
                StateError::TooLarge {
                    filters: 1,
                    series: 0,
                    ..
                }
            ),
            "{e}"
        );
        let back = load(dir.path(), &file_id()).unwrap().unwrap();
        assert_eq!((back.counts.len(), back.memory.len()), (1, 0));
    }
}
