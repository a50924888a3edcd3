//! Test harness: the real exporter binary on a temporary directory, the reaction CLI fixture,
//! raw HTTP scrapes, and a small exposition parser for sums over scrapes.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_reaction-metrics-exporter");
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The reaction CLI fixture, private to a test directory: `dir/bin/reaction` runs
/// `tests/fixtures/reaction` on `dir/bin/reaction-fixture-state.json`.
pub struct Reaction {
    pub bin: PathBuf,
    pub state_file: PathBuf,
    pub socket: PathBuf,
    pub config: PathBuf,
    pub calls_log: PathBuf,
}

/// The README's demo configuration (`examples/demo/config.yml`) on a free port, with absolute
/// paths (the README runs it from the repository root) and without reaction's binary.
pub fn demo_config(dir: &Path) -> String {
    let root = env!("CARGO_MANIFEST_DIR");
    let demo = std::fs::read_to_string(format!("{root}/examples/demo/config.yml")).unwrap();
    assert!(demo.contains("port: 8080"));
    demo.replace("port: 8080", "port: 0")
        .replace("examples/demo/", &format!("{root}/examples/demo/"))
        .replace(
            "  hold: 0",
            &format!("  hold: 0\n  binary: {}/no-reaction-here", dir.display()),
        )
}

/// The Python interpreter behind `python3` (resolved once: pyenv's shim is slow).
fn python() -> &'static Path {
    static PYTHON: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PYTHON.get_or_init(|| {
        let out = Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .expect("python3 runs the reaction fixture");
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
}

impl Reaction {
    /// A fixture whose `test-config` prints `config` (reaction's config, as JSON), with the
    /// socket present (reaction up), version 2.2.0 and nothing pending.
    pub fn new(dir: &Path, config: &serde_json::Value) -> Reaction {
        let bindir = dir.join("bin");
        std::fs::create_dir_all(&bindir).unwrap();
        let bin = bindir.join("reaction");
        let state_file = bindir.join("reaction-fixture-state.json");
        // A wrapper that runs the fixture with the interpreter itself, without `site`: through
        // `/usr/bin/env python3` and pyenv's shim each call took ~130 ms (10 times more), and
        // over 2 s on a loaded machine, past the tests' `reaction.timeout`. `exec` keeps the
        // pid, which the timeout tests check.
        std::fs::write(
            &bin,
            format!(
                "#!/bin/sh\nREACTION_FIXTURE_STATE='{}' exec '{}' -S '{}' \"$@\"\n",
                state_file.display(),
                python().display(),
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("tests/fixtures/reaction")
                    .display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let r = Reaction {
            state_file,
            socket: dir.join("reaction.sock"),
            config: dir.join("reaction.json"),
            calls_log: dir.join("reaction-calls.log"),
            bin,
        };
        std::fs::write(&r.config, serde_json::to_string_pretty(config).unwrap()).unwrap();
        std::fs::write(&r.socket, "").unwrap();
        r.set_state(serde_json::json!({}));
        r
    }

    /// Replace the fixture's state (`version`, `show`, `delay`, `fail`); `calls_log` is
    /// always set.
    pub fn set_state(&self, mut state: serde_json::Value) {
        state["calls_log"] = serde_json::Value::String(self.calls_log.display().to_string());
        let tmp = self.state_file.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_string(&state).unwrap()).unwrap();
        std::fs::rename(tmp, &self.state_file).unwrap();
    }

    /// How many times each CLI command ran.
    pub fn calls(&self, command: &str) -> usize {
        std::fs::read_to_string(&self.calls_log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.split_whitespace().next() == Some(command))
            .count()
    }

    pub fn set_up(&self, up: bool) {
        if up {
            std::fs::write(&self.socket, "").unwrap();
        } else {
            let _ = std::fs::remove_file(&self.socket);
        }
    }
}

/// A reaction configuration with an `ssh.failedlogin` filter (patterns ip, user; actions
/// ban, unban) and a `web.nginx` stream with dots (filter `aiBots`, patterns ip, ua).
pub fn reaction_config() -> serde_json::Value {
    serde_json::json!({
        "patterns": {
            "ip": {"regex": "[0-9a-f.:]+"},
            "user": {"regex": "[^ ]+"},
            "ua": {"regex": "[^\"]*"}
        },
        "start": [["iptables", "-w", "-N", "reaction"]],
        "stop": [["iptables", "-w", "-X", "reaction"]],
        "streams": {
            "ssh": {
                "cmd": ["journalctl", "-fn0", "-u", "sshd.service"],
                "filters": {
                    "failedlogin": {
                        "regex": ["Failed password for <user> from <ip>"],
                        "retry": 3,
                        "retryperiod": "6h",
                        "actions": {
                            "ban": {"cmd": ["iptables", "-w", "-A", "reaction", "-s", "<ip>", "-j", "DROP"]},
                            "unban": {"cmd": ["iptables", "-w", "-D", "reaction", "-s", "<ip>", "-j", "DROP"], "after": "48h"}
                        }
                    }
                }
            },
            "web.nginx": {
                "cmd": ["tail", "-fn0", "/var/log/nginx/access.log"],
                "filters": {
                    "aiBots": {
                        "regex": ["^<ip> .* \"<ua>\"$"],
                        "actions": {"ban": {"cmd": ["nft", "add", "element", "inet", "reaction", "bots", "{ <ip> }"]}}
                    }
                }
            }
        }
    })
}

/// What the exporter logs at start instead of "serving http://…" when `/metrics` is off.
pub const OTLP_ONLY: &str = "/metrics is off (listen.enabled: false)";

/// A running exporter.
pub struct Exporter {
    pub child: Child,
    pub addr: String,
    pub stderr: Arc<Mutex<String>>,
    pub config_path: PathBuf,
    /// The thread collecting stderr (done when the process has exited).
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Exporter {
    /// Start the binary with `config` (YAML) written to `dir/config.yml`; `listen.port`
    /// should be 0: the harness reads the bound address from the log.
    pub fn start(dir: &Path, config: &str) -> Exporter {
        let config_path = dir.join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        Self::start_with(&config_path, &[])
    }

    pub fn start_with(config_path: &Path, env: &[(&str, &str)]) -> Exporter {
        Self::start_program(Path::new(BIN), config_path, env)
    }

    /// [`Exporter::start_with`] with another build of the exporter (an installed package).
    pub fn start_program(program: &Path, config_path: &Path, env: &[(&str, &str)]) -> Exporter {
        let mut cmd = command_of(program, config_path);
        cmd.env("RUST_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self::start_command(cmd, config_path)
    }

    /// [`Exporter::start_with`] with more arguments after `start` (`--web.config.file F`).
    pub fn start_args(config_path: &Path, args: &[&str]) -> Exporter {
        let mut cmd = command(config_path);
        cmd.args(args).env("RUST_LOG", "info");
        Self::start_command(cmd, config_path)
    }

    fn start_command(cmd: Command, config_path: &Path) -> Exporter {
        let (mut child, stderr, serving, reader) = spawn(cmd);
        let addr = match serving.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "exporter did not start serving; stderr:\n{}",
                    stderr.lock().unwrap()
                );
            }
        };
        Exporter::new(child, addr, stderr, reader, config_path)
    }

    /// Start the binary without `RUST_LOG`, so that the configuration's `loglevel`
    /// decides what it logs; its `listen.port` must be `port` (the log may not say where it
    /// listens). Returns once `/metrics` answers.
    pub fn start_without_rust_log(config_path: &Path, port: u16) -> Exporter {
        let mut cmd = command(config_path);
        cmd.env_remove("RUST_LOG");
        let (child, stderr, _, reader) = spawn(cmd);
        let addr = format!("127.0.0.1:{port}");
        wait_for(Duration::from_secs(30), "/metrics answering", || {
            TcpStream::connect(&addr).ok().map(drop)
        });
        Exporter::new(child, addr, stderr, reader, config_path)
    }

    fn new(
        child: Child,
        addr: String,
        stderr: Arc<Mutex<String>>,
        reader: std::thread::JoinHandle<()>,
        config_path: &Path,
    ) -> Exporter {
        Exporter {
            child,
            addr,
            stderr,
            config_path: config_path.to_owned(),
            reader: Some(reader),
        }
    }

    pub fn logs(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Wait until the exporter's log (stderr) contains `needle`, e.g. the warning about an
    /// unknown line written last: every line before it has been counted by then.
    pub fn wait_log(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.logs().contains(needle) {
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {needle:?} in the log:\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// GET /metrics in Prometheus text format.
    pub fn scrape(&self) -> String {
        let (status, ct, body) = get(&self.addr, "/metrics", Some("text/plain"));
        assert_eq!(status, 200, "{body}");
        assert_eq!(ct, TEXT);
        body
    }

    /// GET /metrics in OpenMetrics format.
    pub fn scrape_openmetrics(&self) -> String {
        let (status, ct, body) = get(
            &self.addr,
            "/metrics",
            Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(ct, OPENMETRICS);
        body
    }

    /// Send SIGTERM and wait for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        signal(&self.child, libc_sigterm());
        wait_timeout(&mut self.child, Duration::from_secs(20)).expect("exporter exits on SIGTERM")
    }

    /// Wait up to `timeout` for the process to exit by itself: its status and whole log.
    pub fn wait_exit(
        mut self,
        timeout: Duration,
    ) -> Result<(std::process::ExitStatus, String), String> {
        let Some(status) = wait_timeout(&mut self.child, timeout) else {
            return Err(self.logs());
        };
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        Ok((status, self.logs()))
    }

    /// Send SIGTERM, wait for the exit status and return it with the whole log.
    pub fn terminate_with_logs(mut self) -> (std::process::ExitStatus, String) {
        signal(&self.child, libc_sigterm());
        let status = wait_timeout(&mut self.child, Duration::from_secs(20))
            .expect("exporter exits on SIGTERM");
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        (status, self.logs())
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `start` with `config_path`, run in its directory (the default state directory), stdout
/// ignored, stderr piped, no colours.
fn command(config_path: &Path) -> Command {
    command_of(Path::new(BIN), config_path)
}

/// [`command`] for another build of the exporter.
fn command_of(program: &Path, config_path: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.arg("-c")
        .arg(config_path)
        .arg("start")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .current_dir(config_path.parent().unwrap())
        .env("NO_COLOR", "1");
    cmd
}

/// Spawns `cmd` and collects its stderr in the background; the receiver gets the address
/// of the first "serving http://" (or https://) line (an empty one if `/metrics` is off).
fn spawn(
    mut cmd: Command,
) -> (
    Child,
    Arc<Mutex<String>>,
    std::sync::mpsc::Receiver<String>,
    std::thread::JoinHandle<()>,
) {
    let mut child = cmd.spawn().expect("start the exporter");
    let stderr = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let pipe = child.stderr.take().unwrap();
    let sink = stderr.clone();
    let reader = std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if !sent {
                let found = ["serving http://", "serving https://"]
                    .iter()
                    .find_map(|p| line.find(p).map(|i| i + p.len()));
                if let Some(i) = found {
                    let rest = &line[i..];
                    let addr = rest.split('/').next().unwrap().to_string();
                    let _ = tx.send(addr);
                    sent = true;
                } else if line.contains(OTLP_ONLY) {
                    // `listen.enabled: false`: no address to scrape.
                    let _ = tx.send(String::new());
                    sent = true;
                }
            }
            let mut s = sink.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
    });
    (child, stderr, rx, reader)
}

fn libc_sigterm() -> i32 {
    15
}

pub fn signal(child: &Child, sig: i32) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A plain HTTP/1.1 GET with `Connection: close`: (status, content type, body).
pub fn get(addr: &str, path: &str, accept: Option<&str>) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(a) = accept {
        req.push_str(&format!("Accept: {a}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("HTTP response");
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let ct = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    (status, ct, body.to_string())
}

/// Poll `f` until it returns Some, or panic after `timeout`.
/// `VmHWM` (the peak resident set) of a process, bytes, as `benches/e2e.rs` reads it.
pub fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kb * 1024
}

pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Append to a file (creating it).
pub fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// One sample: its name and labels in output order.
pub type Series = (String, Vec<(String, String)>);

/// A minimal parser for the exporter's own output (samples only; comments skipped).
/// Label values are unescaped. Enough to add up counts over scrapes; the independent
/// checks are promtool and prometheus_client.
pub fn samples(body: &str) -> BTreeMap<Series, f64> {
    let mut out = BTreeMap::new();
    for line in body.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = value.parse().unwrap();
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), vec![]),
            Some((name, rest)) => {
                let rest = rest.strip_suffix('}').unwrap();
                (name.to_string(), parse_labels(rest))
            }
        };
        out.insert((name, labels), value);
    }
    out
}

fn parse_labels(s: &str) -> Vec<(String, String)> {
    let mut labels = Vec::new();
    let mut chars = s.chars().peekable();
    while chars.peek().is_some() {
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        assert_eq!(chars.next(), Some('"'));
        let mut value = String::new();
        loop {
            match chars.next().unwrap() {
                '\\' => match chars.next().unwrap() {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        labels.push((name, value));
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    labels
}

/// Sum of the samples of one family whose labels include all of `having`.
pub fn total(body: &str, family: &str, having: &[(&str, &str)]) -> f64 {
    samples(body)
        .iter()
        .filter(|((name, labels), _)| {
            name == family
                && having
                    .iter()
                    .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(_, v)| v)
        .sum()
}

/// An exporter configuration for a log file and a fixture: port 0, hold 0, reading the file
/// from its beginning (so lines appended right after start are never skipped), and
/// the state file in the log's directory, and `extra_yaml` appended (top-level keys other
/// than `loglevel`, `listen`, `reaction`, `state`).
pub fn file_config(log: &Path, reaction: &Reaction, extra_yaml: &str) -> String {
    format!(
        "loglevel: INFO\nlisten:\n  address: 127.0.0.1\n  port: 0\nreaction:\n  config: {}\n  \
         binary: {}\n  socket: {}\n  timeout: 2\n  hold: 0\n  logs:\n    file: {}\n    start_at: beginning\nstate:\n  directory: {}\n{}",
        reaction.config.display(),
        reaction.bin.display(),
        reaction.socket.display(),
        log.display(),
        log.parent().unwrap().display(),
        extra_yaml
    )
}

/// A match of the `ssh.failedlogin` filter of [`reaction_config`], as reaction logs it.
pub fn ssh_match(ip: &str, user: &str) -> String {
    format!("INFO ssh.failedlogin: match [\"{ip}\", \"{user}\"]\n")
}

/// A `ban` or `unban` of the `ssh.failedlogin` filter, as reaction logs it.
pub fn ssh_action(action: &str, ip: &str) -> String {
    let flag = if action == "ban" { "-A" } else { "-D" };
    format!(
        "INFO ssh.failedlogin.{action}: run [\"iptables\" \"-w\" \"{flag}\" \"reaction\" \"-s\" \"{ip}\" \"-j\" \"DROP\"]\n"
    )
}

/// reaction's status labels (version, status) on one page.
pub fn status(body: &str) -> (String, String) {
    let (_, labels) = samples(body)
        .into_keys()
        .find(|(name, _)| name == "reaction_status_info")
        .expect("reaction_status_info is always present");
    let get = |k: &str| {
        labels
            .iter()
            .find(|(lk, _)| lk == k)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    (get("version"), get("status"))
}

/// A connection to `addr` with a 4 KiB receive buffer (set before connecting, so the
/// window stays small) that sends `GET /metrics` and never reads: the exporter can hand
/// over only a few kB of the response before its writes block, and the page stays stuck
/// in the connection (the stalled client of issue 8).
pub fn stalled_reader(addr: &str) -> TcpStream {
    let addr: std::net::SocketAddrV4 = addr.parse().expect("the tests listen on IPv4");
    // SAFETY: plain socket calls on a descriptor this function owns until it is wrapped.
    let mut s = unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0);
        let size: libc::c_int = 4096;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &size as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        let sa = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: addr.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*addr.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        let rc = libc::connect(
            fd,
            &sa as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert_eq!(rc, 0, "connect: {}", std::io::Error::last_os_error());
        <TcpStream as std::os::fd::FromRawFd>::from_raw_fd(fd)
    };
    s.write_all(
        format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nAccept: text/plain\r\n\r\n").as_bytes(),
    )
    .unwrap();
    s
}
