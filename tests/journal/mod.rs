//! Real journal files for the exporter's journald source: entries written in journal export
//! format through `systemd-journal-remote`, read back by the exporter's `journalctl` child
//! (`reaction.logs.directory`). The tests fail (never skip) when either tool is missing.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::Reaction;

pub const UNIT: &str = "reaction.service";
/// 2023-11-14T22:13:20Z, in µs: the entries' default base time.
pub const BASE_USEC: u64 = 1_700_000_000_000_000;
/// The boot of every entry (journalctl runs with `--merge`: any boot is read).
const BOOT: &str = "0123456789abcdef0123456789abcdef";

fn find_in_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The real journalctl.
pub fn journalctl() -> PathBuf {
    find_in_path("journalctl").expect(
        "journalctl not found in PATH: these tests read real journal files with systemd's \
         journalctl (apt-get install -y systemd)",
    )
}

/// systemd-journal-remote (not in PATH on Debian).
pub fn journal_remote() -> PathBuf {
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

/// One journal entry.
#[derive(Debug, Clone)]
pub struct Entry {
    pub unit: String,
    pub message: String,
    /// `__REALTIME_TIMESTAMP`, µs since the epoch.
    pub usec: u64,
    pub priority: u8,
}

/// An entry of reaction.service at `usec`.
pub fn entry(usec: u64, message: &str) -> Entry {
    Entry {
        unit: UNIT.to_string(),
        message: message.to_string(),
        usec,
        priority: 6,
    }
}

/// The same entry, of another unit.
pub fn of_unit(unit: &str, e: Entry) -> Entry {
    Entry {
        unit: unit.to_string(),
        ..e
    }
}

/// A directory of journal files, written with systemd-journal-remote.
pub struct Journal {
    pub dir: PathBuf,
    remote: PathBuf,
    /// Timestamp of the next entry given by [`Journal::next`].
    next_usec: u64,
}

impl Journal {
    /// A journal in `dir` (created). Checks both tools first.
    pub fn new(dir: &Path) -> Journal {
        journalctl();
        std::fs::create_dir_all(dir).unwrap();
        Journal {
            dir: dir.to_owned(),
            remote: journal_remote(),
            next_usec: BASE_USEC,
        }
    }

    /// A reaction.service entry 1 ms after the previous one given by this function.
    pub fn next(&mut self, message: &str) -> Entry {
        let e = entry(self.next_usec, message);
        self.next_usec += 1000;
        e
    }

    /// Appends `entries` to `<dir>/reaction.journal`, in one systemd-journal-remote run.
    pub fn write(&self, entries: &[Entry]) {
        let mut export = Vec::new();
        for e in entries {
            assert!(!e.message.contains('\n'), "one-line messages only");
            for (name, value) in [
                ("__REALTIME_TIMESTAMP", e.usec.to_string()),
                (
                    "__MONOTONIC_TIMESTAMP",
                    (e.usec.saturating_sub(BASE_USEC) + 1).to_string(),
                ),
                ("_BOOT_ID", BOOT.to_string()),
                ("_HOSTNAME", "testhost".to_string()),
                ("_SYSTEMD_UNIT", e.unit.clone()),
                ("PRIORITY", e.priority.to_string()),
                ("SYSLOG_IDENTIFIER", "reaction".to_string()),
                ("MESSAGE", e.message.clone()),
            ] {
                export.extend_from_slice(name.as_bytes());
                export.push(b'=');
                export.extend_from_slice(value.as_bytes());
                export.push(b'\n');
            }
            export.push(b'\n');
        }
        let mut child = Command::new(&self.remote)
            .arg("-o")
            .arg(self.dir.join("reaction.journal"))
            .arg("-")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running systemd-journal-remote");
        child.stdin.take().unwrap().write_all(&export).unwrap();
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "systemd-journal-remote: {stderr}");
        assert!(
            stderr.contains(&format!("writing {} entries", entries.len())),
            "systemd-journal-remote did not write every entry: {stderr}"
        );
    }
}

/// An exporter configuration reading `unit` from the journal files of `journal_dir` with
/// `journalctl`, from the beginning of the journal, hold 0, the state file in `state_dir`,
/// and `extra_yaml` appended (top-level keys other than `loglevel`, `listen`, `reaction`,
/// `state`).
pub fn journald_config(
    journal_dir: &Path,
    journalctl: &Path,
    reaction: &Reaction,
    state_dir: &Path,
    extra_yaml: &str,
) -> String {
    format!(
        "loglevel: INFO\nlisten:\n  address: 127.0.0.1\n  port: 0\nreaction:\n  config: {}\n  \
         binary: {}\n  socket: {}\n  timeout: 2\n  hold: 0\n  logs:\n    systemd: {UNIT}\n    \
         directory: {}\n    journalctl: {}\n    start_at: beginning\nstate:\n  directory: {}\n{}",
        reaction.config.display(),
        reaction.bin.display(),
        reaction.socket.display(),
        journal_dir.display(),
        journalctl.display(),
        state_dir.display(),
        extra_yaml
    )
}
