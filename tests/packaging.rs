//! The systemd unit is valid for systemd itself (`systemd-analyze verify`, Debian `systemd`).

use std::process::Command;

#[test]
fn systemd_unit_verifies() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/reaction-metrics-exporter.service"
    ))
    .unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/reaction-metrics-exporter -c "));
    assert!(unit.contains("StateDirectory=reaction-metrics-exporter"));
    // Verify the unit as installed, with the binary this build made in place of
    // /usr/local/bin (verify checks that ExecStart is executable).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reaction-metrics-exporter.service");
    std::fs::write(
        &path,
        unit.replace(
            "/usr/local/bin/reaction-metrics-exporter",
            env!("CARGO_BIN_EXE_reaction-metrics-exporter"),
        ),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze not found: install the Debian package `systemd`");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.trim().is_empty(),
        "systemd-analyze complained:\n{stderr}"
    );
}
