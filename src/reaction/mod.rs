//! The reaction command-line client, and what the exporter learns from reaction.
//!
//! Every call runs `reaction` as a child process with an argv (no shell), bounded by the
//! configured timeout: a hung `reaction` is killed (`kill_on_drop`) and reported as
//! [`ReactionError::Timeout`]; and by [`defaults::REACTION_OUTPUT_MAX`] bytes of output: a
//! longer one is not read further, the child is killed, and the call fails
//! ([`ReactionError::Output`]). Parsing of large outputs runs on the blocking pool so the
//! async runtime is never blocked.

pub(crate) mod config;
pub(crate) mod show;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::Command;

use crate::defaults;

pub(crate) use config::ReactionConfig;
pub(crate) use show::{parse_show, PendingEntry};

/// Longest stderr kept in [`ReactionError::Failed`], in bytes.
const MAX_STDERR: usize = 500;
/// stderr read into memory, in bytes (the rest is read and dropped).
const MAX_STDERR_READ: usize = 64 * 1024;

/// How to reach reaction.
#[derive(Debug, Clone)]
pub(crate) struct ClientConfig {
    /// The `reaction` binary: a path, or a bare name looked up in `PATH`.
    pub binary: PathBuf,
    /// reaction's configuration (file or directory), passed to `test-config -c`.
    pub config: PathBuf,
    /// reaction's control socket, passed to `show --socket`.
    pub socket: PathBuf,
    /// Upper bound for each call, from spawn to exit.
    pub timeout: Duration,
}

/// Where a [`ReactionConfig`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConfigOrigin {
    /// `reaction test-config` printed it.
    TestConfig,
    /// The `reaction` binary is absent: reaction's files were read directly.
    Direct,
}

/// Everything that can go wrong talking to reaction or reading its configuration.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReactionError {
    #[error("the reaction binary {0:?} was not found")]
    BinaryNotFound(PathBuf),
    #[error("could not run `{binary:?} {command}`: {source}")]
    Spawn {
        command: &'static str,
        binary: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`reaction {command}` did not finish within {after:?}; it was killed")]
    Timeout {
        command: &'static str,
        after: Duration,
    },
    #[error("`reaction {command}` failed ({}): {stderr}", exit_text(*.code))]
    Failed {
        command: &'static str,
        /// `None` when killed by a signal.
        code: Option<i32>,
        /// Its stderr (or stdout when stderr is empty), trimmed, at most ~500 bytes.
        stderr: String,
    },
    #[error("unexpected output from `reaction {command}`: {detail}")]
    Output {
        command: &'static str,
        detail: String,
    },
    /// YAML or JSON (reaction's files, `test-config` and `show` output) that does not parse.
    #[error("cannot parse {origin}: {detail}")]
    Syntax { origin: String, detail: String },
    #[error("{0:?} is a JSONnet configuration: it cannot be read without the reaction binary (install reaction, or point the exporter at a YAML/JSON configuration)")]
    Jsonnet(PathBuf),
    #[error("cannot read {path:?}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("stream {name:?} is defined in both {first:?} and {second:?}")]
    DuplicateStream {
        name: String,
        first: PathBuf,
        second: PathBuf,
    },
    #[error("pattern {name:?} is defined in both {first:?} and {second:?}")]
    DuplicatePattern {
        name: String,
        first: PathBuf,
        second: PathBuf,
    },
    #[error("invalid reaction configuration: {0}")]
    Config(String),
}

fn exit_text(code: Option<i32>) -> String {
    match code {
        Some(code) => format!("exit code {code}"),
        None => "killed by a signal".to_owned(),
    }
}

impl ReactionError {
    /// Short stable label for self-metrics.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::BinaryNotFound(_) => "not_found",
            Self::Spawn { .. } => "spawn",
            Self::Timeout { .. } => "timeout",
            Self::Failed { .. } => "failed",
            Self::Output { .. } => "output",
            // The label value predates JSON files: kept, dashboards and alerts may use it.
            Self::Syntax { .. } => "yaml",
            Self::Jsonnet(_) => "jsonnet",
            Self::Io { .. } => "io",
            Self::DuplicateStream { .. } | Self::DuplicatePattern { .. } => "duplicate",
            Self::Config(_) => "config",
        }
    }
}

/// Runs reaction's command line.
#[derive(Debug, Clone)]
pub(crate) struct ReactionClient {
    cfg: ClientConfig,
}

impl ReactionClient {
    pub(crate) fn new(cfg: ClientConfig) -> Self {
        ReactionClient { cfg }
    }

    /// `reaction test-config -c CONFIG`. When the binary is absent (spawning it gives
    /// NotFound), reads the configuration directly with [`ReactionConfig::from_path`] and
    /// returns [`ConfigOrigin::Direct`] (the caller logs it).
    pub(crate) async fn load_config(
        &self,
    ) -> Result<(ReactionConfig, ConfigOrigin), ReactionError> {
        let args = [
            OsString::from("test-config"),
            OsString::from("-c"),
            self.cfg.config.clone().into_os_string(),
        ];
        match self.run("test-config", &args).await {
            Ok(stdout) => {
                let config =
                    blocking(move || ReactionConfig::from_yaml(&stdout), "test-config").await?;
                Ok((config, ConfigOrigin::TestConfig))
            }
            Err(ReactionError::BinaryNotFound(_)) => {
                let path = self.cfg.config.clone();
                let config =
                    blocking(move || ReactionConfig::from_path(&path), "test-config").await?;
                Ok((config, ConfigOrigin::Direct))
            }
            Err(err) => Err(err),
        }
    }

    /// `reaction show --socket SOCKET`: the pending actions.
    pub(crate) async fn show(&self) -> Result<Vec<PendingEntry>, ReactionError> {
        let args = [
            OsString::from("show"),
            OsString::from("--socket"),
            self.cfg.socket.clone().into_os_string(),
        ];
        let stdout = self.run("show", &args).await?;
        blocking(move || parse_show(&stdout), "show").await
    }

    /// `reaction -V` → `"2.2.0"` (the second word of `reaction 2.2.0`).
    pub(crate) async fn version(&self) -> Result<String, ReactionError> {
        let stdout = self.run("-V", &[OsString::from("-V")]).await?;
        parse_version(&stdout).ok_or_else(|| ReactionError::Output {
            command: "-V",
            detail: format!(
                "expected `reaction <version>`, got {:?}",
                truncate(stdout.trim())
            ),
        })
    }

    /// Runs `binary args...` with the timeout; Ok(stdout) when it exits with status 0.
    /// stdout is read up to [`defaults::REACTION_OUTPUT_MAX`] bytes: past it the child is
    /// killed and the call fails ([`ReactionError::Output`]), so a runaway `reaction show`
    /// (or a stand-in printing forever) costs at most that much memory. stderr is kept up to
    /// [`MAX_STDERR_READ`] bytes and the rest is read and dropped.
    async fn run(&self, command: &'static str, args: &[OsString]) -> Result<String, ReactionError> {
        let mut child = Command::new(&self.cfg.binary)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| {
                if source.kind() == std::io::ErrorKind::NotFound {
                    ReactionError::BinaryNotFound(self.cfg.binary.clone())
                } else {
                    ReactionError::Spawn {
                        command,
                        binary: self.cfg.binary.clone(),
                        source,
                    }
                }
            })?;
        let spawn_err = |source| ReactionError::Spawn {
            command,
            binary: self.cfg.binary.clone(),
            source,
        };
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(spawn_err(std::io::Error::other("no pipe to the child")));
        };
        let max = defaults::REACTION_OUTPUT_MAX;
        // On timeout (or an output too long) the future is dropped, and the child with it:
        // kill_on_drop kills it and tokio reaps it in the background.
        let work = async {
            let (stdout, stderr) = tokio::try_join!(
                async {
                    let mut out = Vec::new();
                    stdout
                        .take(max as u64 + 1)
                        .read_to_end(&mut out)
                        .await
                        .map_err(spawn_err)?;
                    if out.len() > max {
                        return Err(ReactionError::Output {
                            command,
                            detail: format!("more than {max} bytes on stdout: not read further"),
                        });
                    }
                    Ok(out)
                },
                async {
                    let mut err = Vec::new();
                    let mut stderr = stderr;
                    (&mut stderr)
                        .take(MAX_STDERR_READ as u64)
                        .read_to_end(&mut err)
                        .await
                        .map_err(spawn_err)?;
                    tokio::io::copy(&mut stderr, &mut tokio::io::sink())
                        .await
                        .map_err(spawn_err)?;
                    Ok(err)
                }
            )?;
            let status = child.wait().await.map_err(spawn_err)?;
            Ok::<_, ReactionError>((status, stdout, stderr))
        };
        let (status, stdout, stderr) = tokio::time::timeout(self.cfg.timeout, work)
            .await
            .map_err(|_| ReactionError::Timeout {
                command,
                after: self.cfg.timeout,
            })??;
        if !status.success() {
            let stderr = String::from_utf8_lossy(&stderr);
            let message = if stderr.trim().is_empty() {
                String::from_utf8_lossy(&stdout)
            } else {
                stderr
            };
            return Err(ReactionError::Failed {
                command,
                code: status.code(),
                stderr: truncate(message.trim()),
            });
        }
        // reaction prints Rust strings, always UTF-8; be lenient all the same.
        Ok(match String::from_utf8(stdout) {
            Ok(text) => text,
            Err(err) => String::from_utf8_lossy(err.as_bytes()).into_owned(),
        })
    }
}

/// Runs a parser on the blocking pool.
async fn blocking<T, F>(f: F, command: &'static str) -> Result<T, ReactionError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, ReactionError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|err| ReactionError::Output {
            command,
            detail: format!("parser task failed: {err}"),
        })?
}

/// `reaction 2.2.0` → `2.2.0`: the first line must be `reaction` followed by a version.
fn parse_version(stdout: &str) -> Option<String> {
    let line = stdout.lines().next()?;
    let mut words = line.split_whitespace();
    if words.next()? != "reaction" {
        return None;
    }
    let version = words.next()?;
    version
        .starts_with(|c: char| c.is_ascii_digit())
        .then(|| version.to_owned())
}

/// At most [`MAX_STDERR`] bytes, cut on a character boundary, with `…` when cut.
fn truncate(text: &str) -> String {
    if text.len() <= MAX_STDERR {
        return text.to_owned();
    }
    let mut end = MAX_STDERR;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::time::Instant;

    /// The reaction CLI stand-in, `tests/fixtures/reaction`.
    fn fixture_script() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reaction")
    }

    /// A private fixture: the script symlinked into a temporary directory, where it reads
    /// `reaction-fixture-state.json` (no process-wide environment variable, so tests can run
    /// in parallel), and a stand-in socket file.
    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new(state: serde_json::Value) -> Self {
            let dir = tempfile::tempdir().unwrap();
            std::os::unix::fs::symlink(fixture_script(), dir.path().join("reaction")).unwrap();
            std::fs::write(dir.path().join("reaction.sock"), "").unwrap();
            let fx = Fixture { dir };
            fx.set_state(state);
            fx
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        fn set_state(&self, mut state: serde_json::Value) {
            state["calls_log"] = self.path("calls.log").to_string_lossy().into();
            state["pid_log"] = self.path("pids.log").to_string_lossy().into();
            let tmp = self.path("state.tmp");
            std::fs::write(&tmp, state.to_string()).unwrap();
            std::fs::rename(tmp, self.path("reaction-fixture-state.json")).unwrap();
        }

        fn client(&self, config: &Path) -> ReactionClient {
            ReactionClient::new(ClientConfig {
                binary: self.path("reaction"),
                config: config.to_owned(),
                socket: self.path("reaction.sock"),
                timeout: Duration::from_secs(10),
            })
        }

        fn calls(&self) -> Vec<String> {
            std::fs::read_to_string(self.path("calls.log"))
                .unwrap_or_default()
                .lines()
                .map(str::to_owned)
                .collect()
        }
    }

    fn write_json(path: &Path, value: serde_json::Value) {
        std::fs::write(path, serde_json::to_string_pretty(&value).unwrap()).unwrap();
    }

    #[tokio::test]
    async fn load_config_through_test_config() {
        let fx = Fixture::new(serde_json::json!({}));
        let conf = fx.path("conf");
        std::fs::create_dir(&conf).unwrap();
        write_json(
            &conf.join("10-patterns.json"),
            serde_json::json!({
                "patterns": {
                    "ip": {"regex": r"(?:\d+\.){3}\d+", "type": "ip", "ipv6mask": 64},
                    "user": {"regex": r#"[^\s"':]+"#}
                },
                "start": [["iptables", "-w", "-N", "reaction"]],
                "state_rotation_interval": "1d"
            }),
        );
        write_json(
            &conf.join("20-ssh.json"),
            serde_json::json!({"streams": {"ssh.journal": {
                "cmd": ["journalctl", "-fn0", "-u", "sshd.service"],
                "filters": {"failed.login": {
                    "regex": [
                        r"Failed password for <user> from <ip> port (?P<port>\d+)",
                        r#"Invalid user "<user>" from <ip>: \t"#
                    ],
                    "retry": 3, "retryperiod": "6h",
                    "actions": {
                        "ban.now": {"cmd": ["iptables", "-w", "-I", "reaction", "1", "-s", "<ip>",
                                            "-m", "comment", "--comment", "user <user> at <ip>"]},
                        "unban": {"cmd": ["iptables", "-w", "-D", "reaction", "1", "-s", "<ip>"],
                                  "after": "48h"}
                    }
                }}
            }}}),
        );

        let (cfg, origin) = fx.client(&conf).load_config().await.unwrap();
        assert_eq!(origin, ConfigOrigin::TestConfig);
        let stream = &cfg.streams[0];
        assert_eq!(stream.name, "ssh.journal");
        let filter = &stream.filters[0];
        assert_eq!(filter.name, "failed.login");
        let action = &filter.actions[0];
        assert_eq!(action.name, "ban.now");
        assert_eq!(filter.patterns, vec!["ip".to_string(), "user".to_string()]);
        let argv: Vec<String> = [
            "iptables",
            "-w",
            "-I",
            "reaction",
            "1",
            "-s",
            "1.2.3.4",
            "-m",
            "comment",
            "--comment",
            "user bob at 1.2.3.4",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            action.extract(&argv),
            Some(vec![
                ("ip".to_string(), "1.2.3.4".to_string()),
                ("user".to_string(), "bob".to_string())
            ])
        );
        assert_eq!(fx.calls(), vec!["test-config"]);
    }

    #[tokio::test]
    async fn fixture_yaml_round_trips_tricky_strings() {
        let fx = Fixture::new(serde_json::json!({}));
        let input = serde_json::json!({
            "streams": {"s": {"cmd": ["sh", "-c", "echo 'a: b' # not a comment"], "filters": {}}},
            "patterns": {"p": {"regex": r#"^\d+\.[a-z]{2,}$|"q"\\ 'x'"#}},
            "strings": ["", " lead", "trail ", "yes", "No", "null", "~", "1.10", "0x1F", "-", "- x",
                        "@at", "`tick", "%pct", "!tag", "&anchor", "*alias", "|", ">", "[", "{",
                        "a\nb", "tab\there", "é日本", "\u{2028}", "\u{85}", "\u{7f}", "\u{1b}[0m",
                        "#hash", "a #b", "a: b", "?", ": x", "\\"],
            "numbers": [0, -1, 1.5, true, null],
            "nested": [[], {}, [["a"]], {"k": [1, {"x": "y"}]}],
            "": "empty key",
            "key with: colon": "v"
        });
        let file = fx.path("in.json");
        write_json(&file, input.clone());
        let out = fx
            .client(&file)
            .run(
                "test-config",
                &[
                    OsString::from("test-config"),
                    OsString::from("-c"),
                    file.into_os_string(),
                ],
            )
            .await
            .unwrap();
        let back: serde_json::Value = serde_yaml::from_str(&out).unwrap();
        assert_eq!(back, input, "fixture printed:\n{out}");
    }

    #[tokio::test]
    async fn show_with_awkward_keys_and_several_pending_executions() {
        let fx = Fixture::new(serde_json::json!({"show": {
            "ssh.journal": {"failed.login": {
                "1.2.3.4 bob": {"matches": 2, "actions": {"unban": ["2026-11-27 10:00:00", "2026-11-28 10:00:00"]}},
                "5.6.7.8 \"o'neil\" smith": {"matches": 1, "actions": {"unban": ["t"], "notify": 3}},
                "2001:db8::/64 日本語 ü": {"actions": {"unban": ["t"]}},
                "only.matches": {"matches": 5},
                "nothing.pending": {"matches": 0, "actions": {"unban": []}}
            }}
        }}));
        let client = fx.client(&fx.path("unused"));
        let mut got = client.show().await.unwrap();
        got.sort_by(|a, b| (&a.key, &a.action).cmp(&(&b.key, &b.action)));
        let summary: Vec<(&str, &str, u64)> = got
            .iter()
            .map(|e| (e.key.as_str(), e.action.as_str(), e.count))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("1.2.3.4 bob", "unban", 2),
                ("2001:db8::/64 日本語 ü", "unban", 1),
                ("5.6.7.8 \"o'neil\" smith", "notify", 3),
                ("5.6.7.8 \"o'neil\" smith", "unban", 1),
            ]
        );
        assert!(got
            .iter()
            .all(|e| e.stream == "ssh.journal" && e.filter == "failed.login"));

        // The state is read at each call.
        fx.set_state(serde_json::json!({}));
        assert_eq!(client.show().await.unwrap(), vec![]);
        assert_eq!(fx.calls(), vec!["show", "show"]);
    }

    /// Whether the process is gone or a zombie (killed, not yet reaped).
    /// Wait up to 5 s for process `pid` to be gone (or a zombie), else fail.
    async fn wait_dead(pid: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !is_dead(pid) {
            assert!(
                Instant::now() < deadline,
                "reaction child {pid} still running"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn is_dead(pid: &str) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
        }
    }

    #[tokio::test]
    async fn hung_show_times_out_and_is_killed() {
        let fx = Fixture::new(serde_json::json!({"delay": {"show": 30}}));
        let mut cfg = fx.client(&fx.path("unused")).cfg;
        // Long enough for the stand-in (Python) to start and write its pid even on a loaded
        // machine, far shorter than its 30 s delay.
        cfg.timeout = Duration::from_secs(2);
        let client = ReactionClient::new(cfg);
        let started = Instant::now();
        let err = client.show().await.unwrap_err();
        assert!(
            matches!(err, ReactionError::Timeout { command: "show", after } if after == Duration::from_secs(2)),
            "{err:?}"
        );
        assert_eq!(err.kind(), "timeout");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );

        let pids = std::fs::read_to_string(fx.path("pids.log")).unwrap();
        let pid = pids.trim().to_owned();
        wait_dead(&pid).await;
    }

    #[tokio::test]
    async fn slow_but_in_time_is_fine() {
        let fx = Fixture::new(serde_json::json!({"delay": {"version": 0.2}}));
        assert_eq!(fx.client(&fx.path("x")).version().await.unwrap(), "2.2.0");
    }

    #[tokio::test]
    async fn failures_carry_exit_code_and_stderr() {
        let long = "x".repeat(2000);
        let fx = Fixture::new(serde_json::json!({"fail": {
            "show": "Error: the daemon said no",
            "test-config": long,
            "version": "boom"
        }}));
        let client = fx.client(&fx.path("conf.json"));
        match client.show().await.unwrap_err() {
            ReactionError::Failed {
                command: "show",
                code: Some(1),
                stderr,
            } => assert_eq!(stderr, "Error: the daemon said no"),
            other => panic!("unexpected {other:?}"),
        }
        match client.load_config().await.unwrap_err() {
            err @ ReactionError::Failed { .. } => {
                assert_eq!(err.kind(), "failed");
                let ReactionError::Failed { stderr, .. } = err else {
                    unreachable!()
                };
                assert!(
                    stderr.len() <= MAX_STDERR + '…'.len_utf8(),
                    "{}",
                    stderr.len()
                );
                assert!(stderr.ends_with('…'));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(client.version().await.unwrap_err().kind(), "failed");
    }

    #[tokio::test]
    async fn missing_config_is_a_failure_of_test_config() {
        let fx = Fixture::new(serde_json::json!({}));
        let err = fx
            .client(&fx.path("missing"))
            .load_config()
            .await
            .unwrap_err();
        match &err {
            ReactionError::Failed {
                command,
                code,
                stderr,
            } => {
                assert_eq!((*command, *code), ("test-config", Some(1)));
                assert!(stderr.contains("missing"), "{stderr}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn missing_socket_is_a_failure() {
        let fx = Fixture::new(serde_json::json!({}));
        let mut cfg = fx.client(&fx.path("x")).cfg;
        cfg.socket = fx.path("no-such.sock");
        let err = ReactionClient::new(cfg).show().await.unwrap_err();
        match &err {
            ReactionError::Failed {
                command: "show",
                code: Some(1),
                stderr,
            } => {
                assert!(stderr.contains("no-such.sock"), "{stderr}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn version_is_parsed_and_checked() {
        let fx = Fixture::new(serde_json::json!({}));
        let client = fx.client(&fx.path("x"));
        assert_eq!(client.version().await.unwrap(), "2.2.0");
        fx.set_state(serde_json::json!({"version": "2.5.1"}));
        assert_eq!(client.version().await.unwrap(), "2.5.1");
        fx.set_state(serde_json::json!({"version": ""}));
        let err = client.version().await.unwrap_err();
        assert!(
            matches!(err, ReactionError::Output { command: "-V", .. }),
            "{err:?}"
        );
        assert_eq!(err.kind(), "output");
        assert_eq!(fx.calls(), vec!["-V", "-V", "-V"]);

        assert_eq!(parse_version("reaction 2.2.0\n").as_deref(), Some("2.2.0"));
        assert_eq!(
            parse_version("reaction 2.4.0-rc1 (abc)\nmore").as_deref(),
            Some("2.4.0-rc1")
        );
        assert_eq!(parse_version("reactionx 2.2.0"), None);
        assert_eq!(parse_version("reaction version"), None);
        assert_eq!(parse_version(""), None);
    }

    #[tokio::test]
    async fn absent_binary_reads_the_config_directly() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("reaction.d");
        std::fs::create_dir(&conf).unwrap();
        std::fs::write(
            conf.join("a.yml"),
            "patterns: {ip: {regex: 'x'}}\nstreams:\n  ssh:\n    cmd: [x]\n    filters:\n      f.1: {regex: ['<ip>'], actions: {ban: {cmd: [b, <ip>]}}}\n",
        )
        .unwrap();
        std::fs::write(conf.join("b.yaml"), "start: [[a]]\n").unwrap();
        let client = ReactionClient::new(ClientConfig {
            binary: dir.path().join("no-reaction-here"),
            config: conf,
            socket: dir.path().join("sock"),
            timeout: Duration::from_secs(5),
        });
        let (cfg, origin) = client.load_config().await.unwrap();
        assert_eq!(origin, ConfigOrigin::Direct);
        let filter = &cfg.streams[0].filters[0];
        assert_eq!(
            ("ssh", "f.1"),
            (cfg.streams[0].name.as_str(), filter.name.as_str())
        );
        assert_eq!(filter.actions[0].name, "ban");

        // The other calls report the absent binary.
        let err = client.show().await.unwrap_err();
        assert!(
            matches!(&err, ReactionError::BinaryNotFound(p) if p.ends_with("no-reaction-here"))
        );
        assert_eq!(err.kind(), "not_found");
        assert_eq!(client.version().await.unwrap_err().kind(), "not_found");
    }

    #[tokio::test]
    async fn absent_binary_and_jsonnet_config_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("reaction.jsonnet");
        std::fs::write(&conf, "{ streams: {} }").unwrap();
        let client = ReactionClient::new(ClientConfig {
            binary: dir.path().join("no-reaction-here"),
            config: conf.clone(),
            socket: dir.path().join("sock"),
            timeout: Duration::from_secs(5),
        });
        let err = client.load_config().await.unwrap_err();
        assert!(
            matches!(&err, ReactionError::Jsonnet(p) if p == &conf),
            "{err:?}"
        );
        assert!(err
            .to_string()
            .contains("cannot be read without the reaction binary"));
    }

    #[tokio::test]
    async fn fixture_reports_jsonnet_and_duplicate_streams_like_a_cli_error() {
        let fx = Fixture::new(serde_json::json!({}));
        let jsonnet = fx.path("c.jsonnet");
        std::fs::write(&jsonnet, "{}").unwrap();
        assert_eq!(
            fx.client(&jsonnet).load_config().await.unwrap_err().kind(),
            "failed"
        );

        let conf = fx.path("dup");
        std::fs::create_dir(&conf).unwrap();
        write_json(
            &conf.join("a.json"),
            serde_json::json!({"streams": {"s": {"cmd": ["x"]}}}),
        );
        write_json(
            &conf.join("b.json"),
            serde_json::json!({"streams": {"s": {"cmd": ["y"]}}}),
        );
        match fx.client(&conf).load_config().await.unwrap_err() {
            ReactionError::Failed { stderr, .. } => {
                assert!(
                    stderr.contains("a.json") && stderr.contains("b.json"),
                    "{stderr}"
                )
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn not_executable_is_a_spawn_error() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("reaction");
        std::fs::write(&bin, "not a program").unwrap();
        let client = ReactionClient::new(ClientConfig {
            binary: bin,
            config: dir.path().join("conf"),
            socket: dir.path().join("sock"),
            timeout: Duration::from_secs(5),
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let err = rt.block_on(client.version()).unwrap_err();
        assert_eq!(err.kind(), "spawn", "{err:?}");
    }

    /// A stand-in `reaction` that is a shell script.
    fn script(dir: &Path, body: &str) -> ReactionClient {
        let bin = dir.join("reaction");
        std::fs::write(&bin, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        ReactionClient::new(ClientConfig {
            binary: bin,
            config: dir.join("conf"),
            socket: dir.join("sock"),
            timeout: Duration::from_secs(20),
        })
    }

    /// Guards issue 8: `reaction show`'s output was read whole, however long. Past the cap
    /// the call fails at once and the child is killed (here one that prints forever).
    #[tokio::test]
    async fn endless_output_is_cut_at_the_cap_and_the_child_killed() {
        let dir = tempfile::tempdir().unwrap();
        let client = script(
            dir.path(),
            &format!(
                "echo $$ > {}/pid\nexec yes 'ssh: {{}}'",
                dir.path().display()
            ),
        );
        let started = Instant::now();
        let err = client.show().await.unwrap_err();
        assert!(
            matches!(&err, ReactionError::Output { command: "show", detail } if detail.contains("more than 16777216 bytes")),
            "{err:?}"
        );
        assert_eq!(err.kind(), "output");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        let pid = std::fs::read_to_string(dir.path().join("pid")).unwrap();
        let pid = pid.trim().to_owned();
        wait_dead(&pid).await;
        // An output just under the cap is read (and parsed).
        let client = script(
            dir.path(),
            &format!(
                "printf 'ssh: {{}}\\n'; head -c {} /dev/zero | tr '\\0' ' '",
                defaults::REACTION_OUTPUT_MAX - 100
            ),
        );
        assert_eq!(client.show().await.unwrap(), vec![]);
    }

    /// A chatty stderr is drained (the child never blocks on it) and kept short.
    #[tokio::test]
    async fn a_long_stderr_is_drained_and_cut() {
        let dir = tempfile::tempdir().unwrap();
        let client = script(dir.path(), "yes error | head -c 10000000 >&2; exit 3");
        match client.version().await.unwrap_err() {
            ReactionError::Failed {
                code: Some(3),
                stderr,
                ..
            } => assert!(
                stderr.len() <= MAX_STDERR + '…'.len_utf8(),
                "{}",
                stderr.len()
            ),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn truncate_cuts_on_a_char_boundary() {
        assert_eq!(truncate("short"), "short");
        let text = "é".repeat(400); // 800 bytes
        let cut = truncate(&text);
        assert!(cut.ends_with('…'));
        assert_eq!(cut.len(), MAX_STDERR + '…'.len_utf8());
        let odd = format!("a{}", "é".repeat(400));
        assert!(truncate(&odd).len() <= MAX_STDERR + '…'.len_utf8());
    }
}
