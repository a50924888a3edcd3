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

/// Run `program` with `input` on its standard input, to completion.
pub fn run_with_stdin(program: &str, args: &[&str], input: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    // Written whole before reading: the pages tested fit the pipe's reader, which reads
    // everything before it answers.
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).unwrap();
    drop(stdin);
    child.wait_with_output().unwrap()
}

/// Python's `prometheus_client` (installed by `./scripts/test`) parses `page` with its
/// OpenMetrics or its text parser: (family, type, number of samples) as it names them. A
/// page it rejects fails the test with the parser's message.
pub fn python_parse(page: &str, openmetrics: bool) -> Vec<(String, String, u64)> {
    const PY_PARSE: &str = r#"
import json, sys
try:
    from prometheus_client.parser import text_string_to_metric_families as text
    from prometheus_client.openmetrics.parser import text_string_to_metric_families as om
except ImportError as e:
    print("MISSING: %s" % e)
    sys.exit(3)
parse = om if sys.argv[1] == "openmetrics" else text
print(json.dumps([[f.name, f.type, len(f.samples)] for f in parse(sys.stdin.read())]))
"#;
    let arg = if openmetrics { "openmetrics" } else { "text" };
    let out = run_with_stdin("python3", &["-c", PY_PARSE, arg], page);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stdout.starts_with("MISSING"),
        "the Python package prometheus_client is missing: pip install prometheus_client ({stdout})"
    );
    assert!(
        out.status.success(),
        "prometheus_client's {arg} parser rejected the page: {}\n{page}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap()
}

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A Prometheus server (the Debian package), killed when dropped (also when the test
/// fails).
pub struct Prometheus {
    pub addr: String,
    child: std::process::Child,
    log: PathBuf,
}

impl Prometheus {
    /// Prometheus with `config` as its configuration file, its data and its log in `dir`,
    /// returned once it answers `/-/ready` (a failure, with its log, after 30 s or if it
    /// exits).
    pub fn start(dir: &std::path::Path, config: &str) -> Prometheus {
        use std::time::{Duration, Instant};
        std::fs::create_dir_all(dir).unwrap();
        let file = dir.join("prometheus.yml");
        std::fs::write(&file, config).unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let log = dir.join("prometheus.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(tool("prometheus", "prometheus"))
            .arg(format!("--config.file={}", file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start prometheus: {e}"));
        let mut p = Prometheus { addr, child, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            p.check_running();
            if std::net::TcpStream::connect(&p.addr).is_ok()
                && crate::grafana::http(&p.addr, "GET", "/-/ready", None).0 == 200
            {
                return p;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus did not become ready:\n{}",
                p.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What it logged.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fails, with its log, if it has exited.
    pub fn check_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("prometheus exited ({status}):\n{}", self.logs());
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
