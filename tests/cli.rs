//! The binary's commands: `defaults`, `version`, `test-config`, configuration errors, and
//! `start` failing to listen.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{wait_timeout, BIN};
use reaction_metrics_exporter::config::Config;

const DEFAULTS_FILE: &str = "examples/config.defaults.yml";

fn manifest_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Run the binary to completion (bounded), without backtraces: what a user sees.
fn run(args: &[&str]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Outputs are small: waiting before reading cannot fill a pipe.
    if wait_timeout(&mut child, Duration::from_secs(30)).is_none() {
        let _ = child.kill();
        panic!("{args:?} did not exit within 30 s");
    }
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// Run and expect success: stdout.
fn ok(args: &[&str]) -> String {
    let o = run(args);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    stdout(&o)
}

/// Run and expect failure: stderr.
fn fails(args: &[&str]) -> String {
    let o = run(args);
    assert!(!o.status.success(), "{args:?} succeeded: {}", stdout(&o));
    assert_ne!(o.status.code(), Some(0));
    stderr(&o)
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

fn yaml(text: &str) -> serde_json::Value {
    serde_yaml::from_str(text).unwrap_or_else(|e| panic!("not YAML ({e}):\n{text}"))
}

#[test]
fn defaults_prints_the_documented_example() {
    let printed = ok(&["defaults"]);
    let example = std::fs::read_to_string(manifest_path(DEFAULTS_FILE)).unwrap();
    assert_eq!(
        printed, example,
        "`defaults` and {DEFAULTS_FILE} differ: regenerate the file with \
         `cargo run -q -- defaults > {DEFAULTS_FILE}`"
    );
    assert_eq!(ok(&["defaults", "-f", "yaml"]), printed);
    // it parses back to the defaults, through the library and through the binary
    assert_eq!(
        Config::load(&manifest_path(DEFAULTS_FILE)).unwrap(),
        Config::default()
    );
    let file = manifest_path(DEFAULTS_FILE).display().to_string();
    assert_eq!(ok(&["test-config", "-c", &file, "-f", "yaml"]), printed);
}

#[test]
fn defaults_json_equals_the_yaml() {
    let j = ok(&["defaults", "-f", "json"]);
    let y = ok(&["defaults"]);
    let j = json(&j);
    assert_eq!(j, yaml(&y));
    assert_eq!(j["listen"]["port"], 8080);
    assert_eq!(j["reaction"]["hold"], 60);
    assert_eq!(j["reaction"]["logs"]["systemd"], "reaction.service");
    assert_eq!(j["metrics"]["export"]["matches"]["extra"], true);
    assert!(j["metrics"]["export"]["commands"].is_null());
    // JSON parses back too
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "defaults.json",
        &ok(&["defaults", "-f", "json"]),
    );
    assert_eq!(json(&ok(&["test-config", "-c", &path])), j);
}

#[test]
fn config_option_before_or_after_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "c.yml",
        "reaction:\n  hold: 7\n  logs:\n    file: /tmp/r.log\n",
    );
    let a = ok(&["-c", &path, "test-config"]);
    let b = ok(&["test-config", "-c", &path]);
    let c = ok(&["test-config", "--config", &path]);
    let d = ok(&["--config", &path, "test-config"]);
    assert_eq!(a, b);
    assert_eq!(a, c);
    assert_eq!(a, d);
    assert_eq!(json(&a)["reaction"]["hold"], 7);
    assert_eq!(
        ok(&["-f", "json", "defaults"]),
        ok(&["defaults", "-f", "json"])
    );
}

#[test]
fn version_prints_the_cargo_version() {
    assert_eq!(ok(&["version"]), format!("{}\n", env!("CARGO_PKG_VERSION")));
}

#[test]
fn test_config_prints_the_effective_config_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "c.yml",
        "loglevel: debug\nreaction:\n  hold: 5\n  logs:\n    file: /var/log/r.log\n\
         metrics:\n  all:\n    ip: false\n",
    );
    let out = ok(&["test-config", "-c", &path]);
    let c = json(&out);
    // given
    assert_eq!(c["loglevel"], "DEBUG");
    assert_eq!(c["reaction"]["hold"], 5);
    assert_eq!(c["reaction"]["logs"]["file"], "/var/log/r.log");
    assert!(c["reaction"]["logs"].get("systemd").is_none());
    assert_eq!(c["metrics"]["all"]["ip"], false);
    // defaults added
    assert_eq!(c["listen"]["address"], "127.0.0.1");
    assert_eq!(c["listen"]["port"], 8080);
    assert_eq!(c["reaction"]["socket"], "/run/reaction/reaction.sock");
    assert_eq!(c["metrics"]["export"]["pending"]["extra"], true);
    // the printed configuration is itself valid and means the same
    let again = write(dir.path(), "again.json", &out);
    assert_eq!(ok(&["test-config", "-c", &again]), out);
    // without a file: the defaults, with a warning
    let o = run(&["test-config"]);
    assert!(o.status.success());
    assert_eq!(json(&stdout(&o)), json(&ok(&["defaults", "-f", "json"])));
    assert!(
        stderr(&o).contains("no configuration file"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn unknown_key_names_the_key_path_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "c.yml", "reaction:\n  hold: 3\n  holdd: 4\n");
    for command in ["test-config", "start"] {
        let err = fails(&["-c", &path, command]);
        assert!(err.contains("key `reaction.holdd` (line 3)"), "{err}");
        assert!(err.contains("holdd"), "{err}");
        assert!(err.contains("c.yml"), "{err}");
    }
}

#[test]
fn template_syntax_error_names_the_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "c.yml",
        "metrics:\n  all:\n    email: \"{{ email.split('@') | \"\n",
    );
    let err = fails(&["-c", &path, "test-config"]);
    assert!(err.contains("metrics.all.email"), "{err}");
    assert!(err.contains("(line 3)"), "{err}");
    assert!(err.contains("template"), "{err}");
}

/// Guards issue 8's configuration rows: each passed `test-config`, then panicked at start
/// or at the first start command (`hold`, `timeout`, `interval` out of range), or hung the
/// exporter at the first match (nested `range(100000)` loops) or made 100 MB label values
/// (`'x' * 100000000`). `test-config` and `start` now refuse each, naming the key and line.
#[test]
fn out_of_range_numbers_and_costly_templates_are_refused_with_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("reaction:\n  hold: 18446744073709551615\n", "reaction.hold", 2),
        ("reaction:\n  timeout: 1e300\n", "reaction.timeout", 2),
        (
            "otlp:\n  endpoint: http://127.0.0.1:4317\n  interval: 1e300\n",
            "otlp.interval",
            3,
        ),
        (
            "metrics:\n  all:\n    ip: \"{% for a in range(100000) %}{% for b in range(100000) \
             %}{% endfor %}{% endfor %}\"\n",
            "metrics.all.ip",
            3,
        ),
        (
            "metrics:\n  for:\n    ssh:\n      failedlogin:\n        ip: \"{{ 'x' * 100000000 }}\"\n",
            "metrics.for.ssh.failedlogin.ip",
            5,
        ),
    ];
    for (i, (text, key, line)) in cases.into_iter().enumerate() {
        let path = write(dir.path(), &format!("c{i}.yml"), text);
        for command in ["test-config", "start"] {
            let started = std::time::Instant::now();
            let err = fails(&["-c", &path, command]);
            assert!(
                err.contains(&format!("key `{key}` (line {line})")),
                "{command} {text:?}: {err}"
            );
            assert!(!err.contains("panicked"), "{err}");
            // Refused at once: the costly templates are stopped by their fuel.
            assert!(started.elapsed() < Duration::from_secs(10), "{text:?}");
        }
    }
}

#[test]
fn systemd_and_file_together_name_reaction_logs() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "c.yml",
        "reaction:\n  logs:\n    systemd: reaction.service\n    file: /var/log/reaction.log\n",
    );
    let err = fails(&["-c", &path, "test-config"]);
    assert!(err.contains("reaction.logs"), "{err}");
    assert!(err.contains("systemd") && err.contains("file"), "{err}");
}

#[test]
fn missing_config_file_is_an_error() {
    let err = fails(&["-c", "/nonexistent/config.yml", "test-config"]);
    assert!(err.contains("/nonexistent/config.yml"), "{err}");
}

/// A configuration file of the Python exporter (1.0.1) using every key it knows.
const LEGACY: &str = r#"# reaction-metrics-exporter (Python) configuration
loglevel: WARNING
listen:
  address: 0.0.0.0
  port: 9100
reaction:
  config: /etc/reaction/
  logs:
    file: /var/log/reaction.log
  socket: /run/reaction/reaction.sock
  hold: 30
metrics:
  all:
    email: "{{ email.split('@') | last }}"
    ip: false
  for:
    ssh:
      failedlogin:
        ip: true
    web:
      aiBots:
        ip: null
        ua: "{{ ua.split('/') | first }}"
  export:
    matches:
      extra: true
    actions:
      extra: false
    pending: false
    commands:
    streams: false
    internals:
"#;

#[test]
fn legacy_python_config_loads_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "config.yml", LEGACY);
    let c = json(&ok(&["test-config", "-c", &path]));
    assert_eq!(c["loglevel"], "WARNING");
    assert_eq!(c["listen"]["address"], "0.0.0.0");
    assert_eq!(c["listen"]["port"], 9100);
    assert_eq!(c["reaction"]["config"], "/etc/reaction/");
    assert_eq!(c["reaction"]["logs"]["file"], "/var/log/reaction.log");
    assert_eq!(c["reaction"]["socket"], "/run/reaction/reaction.sock");
    assert_eq!(c["reaction"]["hold"], 30);
    assert_eq!(
        c["metrics"]["all"]["email"],
        "{{ email.split('@') | last }}"
    );
    assert_eq!(c["metrics"]["all"]["ip"], false);
    // `true` and `null` both mean "keep the value"
    assert!(c["metrics"]["for"]["ssh"]["failedlogin"]["ip"].is_null());
    assert!(c["metrics"]["for"]["web"]["aiBots"]["ip"].is_null());
    assert_eq!(
        c["metrics"]["for"]["web"]["aiBots"]["ua"],
        "{{ ua.split('/') | first }}"
    );
    let export = &c["metrics"]["export"];
    assert_eq!(export["matches"]["extra"], true);
    assert_eq!(export["actions"]["extra"], false);
    assert_eq!(export["pending"], false);
    assert!(export["commands"].is_null());
    assert_eq!(export["streams"], false);
    // present and empty: on, as the legacy README shows
    assert_ne!(export["internals"], false);
    let config = Config::load(Path::new(&path)).unwrap();
    assert!(config.metrics.export.internals());
    assert!(config.metrics.export.commands());
    assert!(!config.metrics.export.streams());

    // the legacy default configuration is exactly the defaults
    let default = write(
        dir.path(),
        "default.yml",
        "loglevel: INFO\nlisten:\n  address: 127.0.0.1\n  port: 8080\nreaction:\n  \
         config: /etc/reaction\n  logs:\n    systemd: reaction.service\n  \
         socket: /run/reaction/reaction.sock\n  hold: 60\nmetrics:\n  all: {}\n  for: {}\n  \
         export:\n    matches:\n      extra: true\n    actions:\n      extra: true\n    \
         pending:\n      extra: true\n    commands:\n    streams:\n",
    );
    assert_eq!(
        json(&ok(&["test-config", "-c", &default])),
        json(&ok(&["defaults", "-f", "json"]))
    );
}

#[test]
fn start_with_an_address_in_use_exits_with_a_clear_message() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("reaction.log");
    std::fs::write(&log, "").unwrap();
    let path = write(
        dir.path(),
        "c.yml",
        &format!(
            "listen:\n  address: 127.0.0.1\n  port: {port}\nreaction:\n  \
             binary: /nonexistent/reaction\n  logs:\n    file: {}\n",
            log.display()
        ),
    );
    // `-c` after the command, as well
    let err = fails(&["start", "-c", &path]);
    assert!(
        err.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{err}"
    );
    assert!(
        err.to_lowercase().contains("address already in use"),
        "{err}"
    );
    drop(taken);
}

#[test]
fn start_with_an_invalid_address_exits_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "c.yml",
        "listen:\n  address: 300.1.2.3\n  port: 0\nreaction:\n  \
         binary: /nonexistent/reaction\n  logs:\n    file: /nonexistent/reaction.log\n",
    );
    let err = fails(&["-c", &path, "start"]);
    assert!(err.contains("cannot listen on 300.1.2.3:0"), "{err}");
}

#[test]
fn sigterm_while_starting_up_stops_cleanly() {
    // reaction's `test-config` is slow, so the exporter is still starting up (loading
    // reaction's configuration) when SIGTERM arrives: it must stop cleanly, not die of it.
    let dir = tempfile::tempdir().unwrap();
    let r = common::Reaction::new(dir.path(), &common::reaction_config());
    r.set_state(serde_json::json!({"delay": {"test-config": 1.5}}));
    let log = dir.path().join("reaction.log");
    common::append(&log, "");
    let config = dir.path().join("config.yml");
    std::fs::write(&config, common::file_config(&log, &r, "")).unwrap();
    let mut child = Command::new(BIN)
        .args(["-c", config.to_str().unwrap(), "start"])
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    common::wait_for(Duration::from_secs(10), "test-config to be running", || {
        (r.calls("test-config") > 0).then_some(())
    });
    common::signal(&child, 15);
    let status = wait_timeout(&mut child, Duration::from_secs(20)).expect("the exporter exits");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{status:?}\n{stderr}");
    assert!(stderr.contains("SIGTERM received"), "{stderr}");
}

/// What `start` refuses, `test-config` refuses too: an OTLP CA file that is not PEM for a
/// TLS endpoint (it failed only when the push was built), naming the key and the file.
/// The same file for a plain endpoint, which does not read it, is accepted, with the
/// warning `start` gives (regression: `test-config` said nothing), on stderr, the
/// configuration still printed on stdout.
#[test]
fn test_config_refuses_otlp_tls_files_that_do_not_load() {
    let dir = tempfile::tempdir().unwrap();
    let ca = write(dir.path(), "ca.pem", "not a certificate\n");
    let tls = write(
        dir.path(),
        "tls.yml",
        &format!("otlp:\n  endpoint: https://127.0.0.1:4317\n  ca: {ca}\n"),
    );
    let err = fails(&["test-config", "-c", &tls]);
    assert!(
        err.contains("key `otlp`") && err.contains(&format!("TLS file {ca}")),
        "{err}"
    );
    let plain = write(
        dir.path(),
        "plain.yml",
        &format!("otlp:\n  endpoint: http://127.0.0.1:4317\n  ca: {ca}\n"),
    );
    let o = run(&["test-config", "-c", &plain]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("WARN") && err.contains("the CA or client certificate is not used"),
        "{err}"
    );
    json(&stdout(&o));
    // A configuration without anything to warn about: no warning.
    let quiet = write(
        dir.path(),
        "quiet.yml",
        "otlp:\n  endpoint: http://127.0.0.1:4317\n",
    );
    let o = run(&["test-config", "-c", &quiet]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("WARN"), "{}", stderr(&o));
}
