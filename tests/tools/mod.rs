//! External programs for the tests (promtool, Prometheus, VictoriaMetrics, vmagent...),
//! from Debian packages that `./scripts/test` installs. A missing one fails the test with
//! the package to install: never a skip.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// A program on PATH, or a failure that says which Debian package brings it.
pub fn tool(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for d in std::env::split_paths(&path) {
        let p = d.join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "`{name}` is not installed: install the Debian package `{package}` \
         (apt-get install -y {package}, or run ./scripts/test which installs it)"
    );
}

/// Run to completion: (success, stdout then stderr).
pub fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}
