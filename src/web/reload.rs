//! The web configuration in force, reloadable: read again when the file or a file it names
//! (certificate, key, CA) changes, which is looked at (one `stat` per file) at every new
//! connection — the toolkit re-reads everything at every handshake and request; this is the
//! same freshness at the cost of a few `stat`s. A changed configuration that fails to load
//! is refused with an error line and the one in force stays (the toolkit instead fails the
//! handshakes or answers 500): a certificate renewal that writes the new certificate before
//! the new key never breaks scrapes in between. [`WebHandle::reload`] is for a reload of
//! the whole configuration (SIGHUP), which may also name another file or none.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::internal::events::{WebConfigLoaded, WebConfigRefused};
use crate::internal::Internal;
use crate::web_config::{WebConfig, WebConfigError};

/// What a file looked like: device, inode, size, modification time (ns); None if absent.
type Stamp = Option<(u64, u64, u64, i64, i64)>;

fn stamp(path: &Path) -> Stamp {
    std::fs::metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec()))
}

fn stamps(files: &[PathBuf]) -> Vec<Stamp> {
    files.iter().map(|f| stamp(f)).collect()
}

/// The configuration connections are served with.
#[derive(Default)]
pub(crate) struct Active {
    pub(crate) config: Option<WebConfig>,
    pub(crate) tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Active {
    fn new(config: Option<WebConfig>) -> Active {
        let tls = config
            .as_ref()
            .and_then(|c| c.tls.clone())
            .map(tokio_rustls::TlsAcceptor::from);
        Active { config, tls }
    }

    /// The users and their hashes, when authentication is on.
    pub(crate) fn users(&self) -> Option<&std::collections::BTreeMap<String, String>> {
        self.config
            .as_ref()
            .map(|c| &c.users)
            .filter(|u| !u.is_empty())
    }

    /// The extra response headers.
    pub(crate) fn headers(&self) -> &[(String, String)] {
        self.config.as_ref().map_or(&[], |c| &c.headers)
    }
}

struct State {
    active: Arc<Active>,
    /// The files of the configuration in force and their stamps when it was loaded.
    files: Vec<PathBuf>,
    seen: Vec<Stamp>,
    /// Stamps of a changed configuration that failed to load: not tried again until the
    /// files change again.
    refused: Option<Vec<Stamp>>,
}

/// The web configuration in force; cheap to clone, shared by the server and whoever
/// reloads the configuration.
#[derive(Clone)]
pub(crate) struct WebHandle {
    state: Arc<Mutex<State>>,
    internal: Arc<Internal>,
}

impl WebHandle {
    /// Load the web configuration at `path` (None: plain HTTP, no authentication).
    pub(crate) fn new(
        path: Option<&Path>,
        internal: Arc<Internal>,
    ) -> Result<WebHandle, WebConfigError> {
        let config = path.map(WebConfig::load).transpose()?;
        let files = config.as_ref().map_or_else(Vec::new, |c| c.files.clone());
        let seen = stamps(&files);
        if let Some(c) = &config {
            internal.emit(WebConfigLoaded {
                path: &c.path,
                tls: c.tls.is_some(),
                users: c.users.len(),
            });
        }
        Ok(WebHandle {
            state: Arc::new(Mutex::new(State {
                active: Arc::new(Active::new(config)),
                files,
                seen,
                refused: None,
            })),
            internal,
        })
    }

    /// Load `path` (None: none) and put it in force; on an error the configuration in force
    /// stays and the error is returned. For the reload of the whole configuration (SIGHUP),
    /// which is not wired yet.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn reload(&self, path: Option<&Path>) -> Result<(), WebConfigError> {
        let config = path.map(WebConfig::load).transpose()?;
        self.install(config);
        Ok(())
    }

    fn install(&self, config: Option<WebConfig>) {
        if let Some(c) = &config {
            self.internal.emit(WebConfigLoaded {
                path: &c.path,
                tls: c.tls.is_some(),
                users: c.users.len(),
            });
        }
        let files = config.as_ref().map_or_else(Vec::new, |c| c.files.clone());
        let seen = stamps(&files);
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        *s = State {
            active: Arc::new(Active::new(config)),
            files,
            seen,
            refused: None,
        };
    }

    /// Whether the configuration in force serves TLS.
    pub(crate) fn tls(&self) -> bool {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.active.tls.is_some()
    }

    /// The configuration for a new connection, loaded again first if a file changed.
    pub(crate) fn current(&self) -> Arc<Active> {
        let (path, now) = {
            let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let Some(path) = s.active.config.as_ref().map(|c| c.path.clone()) else {
                return s.active.clone();
            };
            let now = stamps(&s.files);
            if now == s.seen || s.refused.as_ref() == Some(&now) {
                return s.active.clone();
            }
            (path, now)
        };
        match WebConfig::load(&path) {
            Ok(c) => self.install(Some(c)),
            Err(e) => {
                self.internal.emit(WebConfigRefused { error: &e });
                let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
                s.refused = Some(now);
            }
        }
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .active
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$2b$04$Y1gv0YPLTxQ63bjVTzi85ev7J/eF2mqRNO70DEimuzLnpMF5IWHXa";

    fn users(h: &WebHandle) -> Vec<String> {
        h.current()
            .users()
            .map(|u| u.keys().cloned().collect())
            .unwrap_or_default()
    }

    #[test]
    fn a_changed_file_is_loaded_at_the_next_connection_a_broken_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.yml");
        std::fs::write(&path, format!("basic_auth_users:\n  alice: '{HASH}'\n")).unwrap();
        let h = WebHandle::new(Some(&path), Arc::new(Internal::new())).unwrap();
        assert_eq!(users(&h), ["alice"]);
        // Same size, another name: the stamp (mtime, size) changes with the length here.
        std::fs::write(
            &path,
            format!("basic_auth_users:\n  bob: '{HASH}'\n  carol: '{HASH}'\n"),
        )
        .unwrap();
        assert_eq!(users(&h), ["bob", "carol"]);
        // Broken: refused, the one in force stays.
        std::fs::write(&path, "basic_auth_users:\n  bob: nohash\n").unwrap();
        assert_eq!(users(&h), ["bob", "carol"]);
        std::fs::write(&path, "").unwrap();
        assert!(users(&h).is_empty());
        // A reload names another file, or none.
        let other = dir.path().join("other.yml");
        std::fs::write(&other, format!("basic_auth_users:\n  dave: '{HASH}'\n")).unwrap();
        h.reload(Some(&other)).unwrap();
        assert_eq!(users(&h), ["dave"]);
        assert!(h.reload(Some(&dir.path().join("missing.yml"))).is_err());
        assert_eq!(users(&h), ["dave"]);
        h.reload(None).unwrap();
        assert!(h.current().config.is_none());
    }
}
