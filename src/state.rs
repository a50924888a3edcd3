//! The state file: where the source was and which counts were not yet delivered on
//! `/metrics`, saved atomically (temporary file, fsync, rename, fsync of the directory) at
//! each delivered scrape and at shutdown, and read back at start within the recall window.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::internal::events::StateFileFailed;
use crate::internal::Internal;
use crate::metric::Metric;
use crate::source::Position;
use crate::telemetry::collect::{Attrs, SeriesKey};

/// Names this file format; anything else is refused.
pub(crate) const FORMAT: &str = "reaction-metrics-exporter/state/1";
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
}

impl State {
    pub(crate) fn new(
        source: SourceId,
        position: Option<Position>,
        counts: Vec<SavedCount>,
    ) -> State {
        State {
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

    /// How long ago it was saved (zero if in the future).
    pub(crate) fn age(&self) -> Duration {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Duration::from_millis(now.saturating_sub(self.saved_at_ms))
    }

    /// The counts as series of the delta families (unknown families are skipped).
    pub(crate) fn series(&self) -> Vec<(SeriesKey, u64)> {
        self.counts
            .iter()
            .filter_map(|c| {
                let f = Metric::from_otel_name(&c.family)?;
                let mut attrs = c.attributes.clone();
                attrs.sort_unstable();
                Some(((f, attrs), c.value))
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

pub(crate) fn path(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// Read the state of `dir`, if any, checking its format and that it belongs to `expected`.
pub(crate) fn load(dir: &Path, expected: &SourceId) -> Result<Option<State>, StateError> {
    let path = path(dir);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(StateError::Read { path, source }),
    };
    let state: State = serde_json::from_str(&text).map_err(|e| StateError::Corrupt {
        path: path.clone(),
        detail: e.to_string(),
    })?;
    if state.format != FORMAT {
        return Err(StateError::Corrupt {
            path,
            detail: format!("format {:?}, expected {FORMAT:?}", state.format),
        });
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
    if &state.source != expected {
        return Err(StateError::Foreign {
            path,
            saved: Box::new(state.source),
            expected: Box::new(expected.clone()),
        });
    }
    Ok(Some(state))
}

/// Replace the state of `dir` atomically.
pub(crate) fn save(dir: &Path, state: &State) -> Result<(), StateError> {
    let path = path(dir);
    let tmp = dir.join(format!(".{FILE_NAME}.tmp"));
    let werr = |source| StateError::Write {
        path: path.clone(),
        source,
    };
    let text = serde_json::to_vec(state).expect("state serializes");
    let mut f = File::create(&tmp).map_err(werr)?;
    f.write_all(&text).map_err(werr)?;
    f.sync_all().map_err(werr)?;
    drop(f);
    fs::rename(&tmp, &path).map_err(werr)?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Writes checkpoints in the background, newest wins: a snapshot older than the last one
/// written is skipped.
pub(crate) struct Checkpointer {
    dir: PathBuf,
    source: SourceId,
    written: std::sync::Mutex<u64>,
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
            internal,
        }
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Save snapshot number `seq` (increasing) now, on this thread.
    pub(crate) fn save_now(
        &self,
        seq: u64,
        position: Option<Position>,
        counts: Vec<SavedCount>,
    ) -> bool {
        let mut written = self.written.lock().expect("checkpointer");
        if seq <= *written {
            return true;
        }
        let state = State::new(self.source.clone(), position, counts);
        match save(&self.dir, &state) {
            Ok(()) => {
                *written = seq;
                true
            }
            Err(e) => {
                self.internal.emit(StateFileFailed { error: &e });
                false
            }
        }
    }

    /// Save snapshot number `seq` on the blocking pool.
    pub(crate) fn save_later(
        self: &std::sync::Arc<Self>,
        seq: u64,
        position: Option<Position>,
        counts: Vec<SavedCount>,
    ) {
        let this = self.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn_blocking(move || this.save_now(seq, position, counts));
            }
            Err(_) => {
                this.save_now(seq, position, counts);
            }
        }
    }
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
            vec![
                ("ip".into(), "1.2.3.4".into()),
                ("stream".into(), "ssh".into()),
            ],
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
        let s = State::new(file_id(), None, vec![]);
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
}
