//! The shipped systemd unit: valid for systemd itself (`systemd-analyze verify`, Debian 12's
//! systemd 252), rated "OK" by `systemd-analyze security`, and its restrictions do not stop
//! the exporter from reading the journal (emulated here: no systemd runs as PID 1 on the
//! test machine, so the unit itself cannot be started).

use crate::common;
use crate::journal;
use crate::tools::{free_port, run, tool};

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const UNIT: &str = "reaction-metrics-exporter.service";

fn unit_text() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/reaction-metrics-exporter.service"
    ))
    .unwrap()
}

/// The unit with the binary this build made in place of /usr/bin (`verify` checks that
/// ExecStart is executable), in a temporary directory under its own name.
fn unit_for_this_build(dir: &Path) -> std::path::PathBuf {
    let path = dir.join(UNIT);
    std::fs::write(
        &path,
        unit_text().replace(
            "/usr/bin/reaction-metrics-exporter",
            env!("CARGO_BIN_EXE_reaction-metrics-exporter"),
        ),
    )
    .unwrap();
    path
}

/// `systemd-analyze verify` on a unit file: exit 0 and nothing on stderr (warnings such as
/// an unknown key or an unparsable value exit 0 too, so stderr must be empty).
pub fn assert_verifies(path: &Path) {
    let out = Command::new(tool("systemd-analyze", "systemd"))
        .arg("verify")
        .arg("--man=no")
        .arg(path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.trim().is_empty(),
        "systemd-analyze verify complained:\n{stderr}"
    );
}

#[test]
fn systemd_unit_verifies() {
    let unit = unit_text();
    assert!(unit.contains(
        "ExecStart=/usr/bin/reaction-metrics-exporter -c /etc/reaction-metrics-exporter/config.yml start"
    ));
    assert!(unit.contains("StateDirectory=reaction-metrics-exporter"));
    assert!(unit.contains("\nType=notify\n"));
    assert!(unit.contains("\nWatchdogSec="));
    // Ordered after reaction, never starting it.
    assert!(unit.contains("\nAfter=network.target reaction.service\n"));
    for starts_it in ["Wants=", "Requires=", "BindsTo=", "Requisite="] {
        assert!(
            !unit.lines().any(|l| l.starts_with(starts_it)),
            "{starts_it} would start (or need) another unit"
        );
    }
    // `systemctl reload` sends SIGHUP, which reloads the configuration (tests/reload.rs).
    assert!(unit.contains("\nExecReload=/bin/kill -HUP $MAINPID\n"));
    let dir = tempfile::tempdir().unwrap();
    assert_verifies(&unit_for_this_build(dir.path()));
}

/// `systemd-analyze security --offline=true` rates the unit 2.0 ("OK") or better; the
/// figure in the unit's header comment is the measured one.
#[test]
fn systemd_unit_security_is_ok() {
    let dir = tempfile::tempdir().unwrap();
    let path = unit_for_this_build(dir.path());
    let (ok, out) = run(Command::new(tool("systemd-analyze", "systemd"))
        .args(["security", "--offline=true", "--threshold=20", "--no-pager"])
        .arg(&path));
    let line = out
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no overall exposure level in:\n{out}"));
    assert!(ok, "exposure above 2.0: {line}\n{out}");
    let score: f64 = line
        .split(": ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the score in {line:?}"));
    assert!(score <= 2.0, "{line}");
    let claim = format!("rates this unit {score:.1} \"OK\"");
    assert!(
        unit_text().replace("\n# ", " ").contains(&claim),
        "the unit's header should say: {claim} ({line})"
    );
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let claim = format!("rates it {score:.1} \"OK\"");
    assert!(
        readme.replace('\n', " ").contains(&claim),
        "README should say: {claim}"
    );
}

/// The exporter reads the system journal (no `-D`: /var/log/journal/<machine-id>) as an
/// unprivileged user whose only way in is the `systemd-journal` group, under the views the
/// unit gives it: procfs mounted `subset=pid,hidepid=invisible` (ProcSubset=pid,
/// ProtectProc=invisible), a user namespace mapping only its own uid and gid so that the
/// supplementary group shows as `nogroup` (PrivateUsers=yes), no capabilities, and a
/// read-only root with only the state directory writable (ProtectSystem=strict). It is an
/// emulation with util-linux's `unshare` and `setpriv` of what systemd sets up (it needs
/// root, as ./scripts/test runs); not covered: the system call filter, and systemd's own
/// mounts.
#[test]
fn reads_the_system_journal_under_the_units_restrictions() {
    let machine_id = std::fs::read_to_string("/etc/machine-id")
        .expect("/etc/machine-id: the system journal is found by the machine id");
    let machine_id = machine_id.trim();
    let journal_gid = group_id("systemd-journal");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // Entries of reaction.service on this machine, as journald writes them.
    let mut export = String::new();
    for i in 0..3 {
        export.push_str(&format!(
            "__REALTIME_TIMESTAMP={}\n__MONOTONIC_TIMESTAMP={}\n\
             _BOOT_ID=0123456789abcdef0123456789abcdef\n_MACHINE_ID={machine_id}\n\
             _SYSTEMD_UNIT=reaction.service\nPRIORITY=6\n\
             MESSAGE=INFO ssh.failedlogin: match [\"192.0.2.{i}\", \"root\"]\n\n",
            journal::BASE_USEC + i,
            i + 1
        ));
    }
    let journal_file = root.join("system.journal");
    let mut remote = Command::new(journal::journal_remote())
        .arg("-o")
        .arg(&journal_file)
        .arg("-")
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut remote.stdin.take().unwrap(), export.as_bytes()).unwrap();
    assert!(remote.wait().unwrap().success());

    let uid = 61234; // in DynamicUser='s range (61184-65519), owning nothing on this machine
    let state = root.join("state");
    std::fs::create_dir(&state).unwrap();
    std::os::unix::fs::chown(&state, Some(uid), Some(uid)).unwrap();
    let reaction = common::Reaction::new(root, &common::reaction_config());
    let port = free_port();
    let config = root.join("config.yml");
    std::fs::write(
        &config,
        format!(
            "listen:\n  address: 127.0.0.1\n  port: {port}\nreaction:\n  config: {}\n  \
             binary: {}/no-reaction\n  hold: 0\n  logs:\n    systemd: reaction.service\n    \
             start_at: beginning\nstate:\n  directory: {}\n",
            reaction.config.display(),
            root.display(),
            state.display()
        ),
    )
    .unwrap();
    for p in [root, &reaction.config, &config] {
        std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let bin = root.join("reaction-metrics-exporter");
    std::fs::copy(env!("CARGO_BIN_EXE_reaction-metrics-exporter"), &bin).unwrap();

    // In new mount and PID namespaces (private to this test): a journal directory as
    // journald keeps it, a fresh procfs, a read-only root, then the unprivileged user.
    let script = r#"set -e
mount -t tmpfs -o mode=0755 tmpfs /var/log
mkdir -p /var/log/journal/$MACHINE_ID
cp "$JOURNAL" /var/log/journal/$MACHINE_ID/system.journal
chown -R root:systemd-journal /var/log/journal
chmod 2755 /var/log/journal /var/log/journal/$MACHINE_ID
chmod 0640 /var/log/journal/$MACHINE_ID/system.journal
mount -t proc -o subset=pid,hidepid=invisible proc /proc
test ! -e /proc/sys
mount --bind "$STATE" "$STATE"
mount -o remount,bind,ro /
exec setpriv --reuid=$SERVICE_UID --regid=$SERVICE_UID --groups=$JOURNAL_GID \
    --inh-caps=-all --bounding-set=-all --no-new-privs -- \
    unshare --user --map-current-user "$BIN" -c "$CONFIG" start
"#;
    let mut child = Command::new(tool("unshare", "util-linux"))
        .args(["--mount", "--pid", "--fork", "--kill-child"])
        .args(["sh", "-c", script])
        .env("MACHINE_ID", machine_id)
        .env("JOURNAL", &journal_file)
        .env("STATE", &state)
        .env("SERVICE_UID", uid.to_string())
        .env("JOURNAL_GID", journal_gid.to_string())
        .env("BIN", &bin)
        .env("CONFIG", &config)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let logs = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = logs.clone();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().unwrap().push_str(&(line + "\n"));
        }
    });
    let addr = format!("127.0.0.1:{port}");
    let result = std::panic::catch_unwind(|| {
        common::wait_for(
            Duration::from_secs(20),
            "the journal's three matches",
            || {
                let up = std::net::TcpStream::connect(&addr).is_ok();
                let body = up.then(|| common::get(&addr, "/metrics", None).2)?;
                (common::total(&body, "reaction_match_count", &[]) >= 3.0).then_some(body)
            },
        )
    });
    let _ = child.kill();
    let _ = child.wait();
    let logs = logs.lock().unwrap().clone();
    let body = result.unwrap_or_else(|_| panic!("exporter log:\n{logs}"));
    assert_eq!(common::total(&body, "reaction_match_count", &[]), 3.0);
    for i in 0..3 {
        assert!(body.contains(&format!("ip=\"192.0.2.{i}\"")), "{body}");
    }
    assert!(
        !logs.contains("journalctl:"),
        "journalctl complained:\n{logs}"
    );
}

fn group_id(name: &str) -> u32 {
    let out = Command::new("getent")
        .args(["group", name])
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    line.split(':')
        .nth(2)
        .and_then(|g| g.parse().ok())
        .unwrap_or_else(|| panic!("no group {name} (the Debian package systemd creates it)"))
}
