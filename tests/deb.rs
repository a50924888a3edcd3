//! The Debian package, built by `packaging/build-deb` from this build's (debug) binary —
//! a release build would cost minutes here; the script builds one by default — then checked
//! by lintian, installed with `dpkg -i` on this machine, its unit verified by systemd, its
//! binary run on the demo, and removed and purged with nothing left behind but what Debian
//! keeps (the conffile until purge; the `reaction` group, which other files may use).
//!
//! No systemd runs as PID 1 here, so the maintainer scripts take their "not booted with
//! systemd" branch: they enable the unit (links made by deb-systemd-helper) and start
//! nothing. Starting it under systemd is not tested.

use crate::common;
use crate::packaging::assert_verifies;
use crate::tools::{run, tool};

use std::collections::BTreeSet;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const PKG: &str = "reaction-metrics-exporter";

/// Every path under the directories a package or its scripts may touch whose name has the
/// package's name in it.
fn traces() -> BTreeSet<String> {
    let out = Command::new("find")
        .args(["/etc", "/usr", "/var/lib", "/run"])
        .args(["-xdev", "-name", &format!("*{PKG}*")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn dpkg(args: &[&str]) -> String {
    let (ok, out) = run(Command::new(tool("dpkg", "dpkg")).args(args));
    assert!(ok, "dpkg {args:?}:\n{out}");
    out
}

#[test]
fn package_builds_passes_lintian_installs_runs_and_purges() {
    // One test process at a time installs the package on this machine (several worktrees
    // may run their suites at once).
    let lock = std::fs::File::create("/tmp/reaction-metrics-exporter-deb-test.lock").unwrap();
    // SAFETY: flock on a file descriptor owned by `lock`, released when it is dropped.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    // A previous run that failed half-way.
    let _ = Command::new("dpkg").args(["--purge", PKG]).output();
    let before = traces();

    let root = env!("CARGO_MANIFEST_DIR");
    let out = tempfile::tempdir().unwrap();
    let (ok, built) = run(Command::new(format!("{root}/packaging/build-deb"))
        .arg(env!("CARGO_BIN_EXE_reaction-metrics-exporter"))
        .arg(out.path())
        .env("DEB_COMPRESSION", "gzip")
        .env("DEB_COMPRESSION_LEVEL", "1"));
    assert!(ok, "build-deb:\n{built}");
    let deb = built
        .lines()
        .find(|l| l.ends_with(".deb"))
        .unwrap_or_else(|| panic!("no .deb path printed:\n{built}"))
        .to_owned();
    assert!(Path::new(&deb).is_file(), "{deb}");
    // The README's install commands name this file.
    let file = Path::new(&deb)
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    assert!(
        readme.contains(&format!("apt install ./target/debian/{file}")),
        "README should install {file}"
    );

    // lintian: no error and no warning; the two overridden tags are justified in
    // packaging/debian/lintian-overrides; informational tags are shown, not failed on
    // (--show-overrides would make lintian 2.116 exit 2 whatever the tags).
    let (ok, lint) = run(Command::new(tool("lintian", "lintian"))
        .args(["--fail-on", "error,warning", "--display-info"])
        .arg(&deb));
    assert!(ok, "lintian:\n{lint}");
    let tags: Vec<&str> = lint
        .lines()
        .filter(|l| l.starts_with("E: ") || l.starts_with("W: "))
        .collect();
    assert!(tags.is_empty(), "lintian:\n{lint}");
    eprintln!("lintian:\n{lint}");

    let fields = dpkg(&["--field", &deb]);
    assert!(fields.contains("Depends: libc6"), "{fields}");
    let contents = dpkg(&["--contents", &deb]);
    for path in [
        "./usr/bin/reaction-metrics-exporter",
        "./usr/lib/systemd/system/reaction-metrics-exporter.service",
        "./etc/reaction-metrics-exporter/config.yml",
        "./usr/share/doc/reaction-metrics-exporter/README.md",
        "./usr/share/doc/reaction-metrics-exporter/copyright",
        "./usr/share/man/man1/reaction-metrics-exporter.1.gz",
    ] {
        assert!(contents.contains(path), "{path} missing from\n{contents}");
    }

    dpkg(&["-i", &deb]);
    let result = std::panic::catch_unwind(installed_checks);
    dpkg(&["-r", PKG]);
    let removed = traces();
    let conffile_kept = Path::new("/etc/reaction-metrics-exporter/config.yml").is_file();
    let binary_kept = Path::new("/usr/bin/reaction-metrics-exporter").exists();
    dpkg(&["--purge", PKG]);
    let purged = traces();
    drop(lock);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }

    // Removed: the conffile and the unit's enablement stay until purge (Debian policy and
    // deb-systemd-helper), nothing else.
    assert!(conffile_kept, "the conffile stays until purge");
    assert!(!binary_kept, "the binary is removed");
    let kept: BTreeSet<_> = removed.difference(&before).cloned().collect();
    for k in &kept {
        assert!(
            k == "/etc/reaction-metrics-exporter"
                || k.starts_with("/etc/systemd/system/")
                || k.starts_with("/var/lib/systemd/deb-systemd-helper-")
                || k.starts_with("/var/lib/dpkg/info/"),
            "left after dpkg -r: {k} (all: {kept:?})"
        );
    }
    // Purged: nothing left.
    assert_eq!(purged, before, "left after dpkg --purge");
}

/// While installed: files in place, the unit verified as installed, enabled but not started
/// (no systemd here), the group created, the default configuration valid, the installed
/// binary serving the demo.
fn installed_checks() {
    let status = dpkg(&["-s", PKG]);
    assert!(status.contains("Status: install ok installed"), "{status}");
    assert!(
        status.contains("/etc/reaction-metrics-exporter/config.yml"),
        "the configuration is a conffile: {status}"
    );
    let unit = Path::new("/usr/lib/systemd/system/reaction-metrics-exporter.service");
    assert_verifies(unit);
    assert!(
        Path::new("/etc/systemd/system/multi-user.target.wants/reaction-metrics-exporter.service")
            .is_symlink(),
        "postinst enables the unit"
    );
    let (ok, out) = run(Command::new("getent").args(["group", "reaction"]));
    assert!(ok, "postinst creates the group reaction: {out}");

    let bin = Path::new("/usr/bin/reaction-metrics-exporter");
    let (ok, out) = run(Command::new(bin).arg("version"));
    assert!(ok && out.trim() == env!("CARGO_PKG_VERSION"), "{out}");
    let (ok, out) = run(Command::new(bin).args([
        "-c",
        "/etc/reaction-metrics-exporter/config.yml",
        "test-config",
    ]));
    assert!(ok, "the shipped configuration is invalid:\n{out}");

    // The demo of the README, run by the installed binary.
    let dir = tempfile::tempdir().unwrap();
    let config = common::demo_config(dir.path());
    let config_path = dir.path().join("config.yml");
    std::fs::write(&config_path, config).unwrap();
    let e = common::Exporter::start_program(bin, &config_path, &[]);
    let body = common::wait_for(Duration::from_secs(10), "the demo's matches", || {
        let b = e.scrape();
        b.contains("reaction_match_count").then_some(b)
    });
    assert!(
        body.contains("reaction_exporter_lines_read_total 24.0"),
        "{body}"
    );
    assert!(e.terminate().success());
}
