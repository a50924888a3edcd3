//! The secured endpoint (issue 10 item 3) on the real binary: the exporter-toolkit web
//! configuration file (`listen.web_config`, `--web.config.file`) with TLS, basic auth and
//! headers; gzip. Real Prometheus (Debian `prometheus`) scrapes it over HTTPS with basic
//! auth (and asks for gzip, as its scraper always does); real curl checks the refusals;
//! real `promtool check web-config` accepts the example we ship.

use crate::common;
use crate::otlp::pki;
use crate::tools::{self, run, tool};

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// bcrypt("secret", cost 4), made by libxcrypt (Python's `crypt`), not by the crate that
/// verifies it.
const HASH: &str = "$2b$04$Y1gv0YPLTxQ63bjVTzi85ev7J/eF2mqRNO70DEimuzLnpMF5IWHXa";

/// The web configuration most tests serve: TLS with `pki_files`' server certificate, and
/// one user, `prometheus`, whose password is `secret`.
fn tls_and_auth() -> String {
    format!(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n\
         basic_auth_users:\n  prometheus: '{HASH}'\n"
    )
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// The CA, the server's certificate and key, a client certificate and key, as files in
/// `dir` (`ca.pem`, `server.crt`, `server.key`, `client.crt`, `client.key`).
fn pki_files(dir: &Path) {
    let p = pki();
    write(dir, "ca.pem", &p.ca);
    write(dir, "server.crt", &p.server.0);
    write(dir, "server.key", &p.server.1);
    write(dir, "client.crt", &p.client.0);
    write(dir, "client.key", &p.client.1);
}

/// An exporter on a log of `matches` match lines (all counted before it returns), with its
/// own families shown, its web configuration `web` written as `dir/web.yml`, given by
/// `listen.web_config`, or by `--web.config.file` when `flag`.
fn secured(dir: &Path, matches: usize, web: &str, flag: bool) -> Exporter {
    secured_with(
        dir,
        matches,
        web,
        flag,
        "metrics:\n  export:\n    internals: true\n",
    )
}

/// [`secured`] with `metrics` as the `metrics:` section of the exporter's configuration.
fn secured_with(dir: &Path, matches: usize, web: &str, flag: bool, metrics: &str) -> Exporter {
    let web_path = write(dir, "web.yml", web);
    let reaction = Reaction::new(dir, &reaction_config());
    let log = dir.join("reaction.log");
    let mut text = String::new();
    for i in 0..matches {
        text.push_str(&ssh_match(&format!("10.9.{}.{}", i / 256, i % 256), "root"));
    }
    text.push_str("the last line\n");
    append(&log, &text);
    let mut config = file_config(&log, &reaction, metrics);
    if !flag {
        config = config.replace(
            "  port: 0\n",
            &format!("  port: 0\n  web_config: {}\n", web_path.display()),
        );
    }
    let config_path = write(dir, "config.yml", &config);
    let exp = if flag {
        Exporter::start_args(
            &config_path,
            &["--web.config.file", &web_path.display().to_string()],
        )
    } else {
        Exporter::start_with(&config_path, &[])
    };
    exp.wait_log("\"the last line\"", Duration::from_secs(30));
    exp
}

/// curl's answer: (exit code, status, headers and body as text).
fn curl(args: &[&str]) -> (i32, u16, String) {
    let out = Command::new(tool("curl", "curl"))
        .args(["-sS", "-i", "--max-time", "20"])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (
        out.status.code().unwrap_or(-1),
        status,
        format!("{text}{}", String::from_utf8_lossy(&out.stderr)),
    )
}

/// The exporter's own page over HTTPS with `prometheus:secret`.
fn secure_scrape(exp: &Exporter, dir: &Path) -> String {
    let url = format!("https://{}/metrics", exp.addr);
    let ca = dir.join("ca.pem").display().to_string();
    let (code, status, text) = curl(&["--cacert", &ca, "-u", "prometheus:secret", &url]);
    assert_eq!((code, status), (0, 200), "{text}");
    text.split_once("\r\n\r\n").unwrap().1.to_string()
}

fn failures(page: &str, kind: &str) -> f64 {
    total(
        page,
        "reaction_exporter_http_failures_total",
        &[("kind", kind)],
    )
}

/// A Prometheus server scraping every second.
struct Prometheus(tools::Prometheus);

impl Prometheus {
    fn start(dir: &Path, scrape_config: &str) -> Prometheus {
        Prometheus(tools::Prometheus::start(
            &dir.join("prometheus"),
            &format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n{scrape_config}"
            ),
        ))
    }

    /// The value of an instant query that returns one sample, once it does.
    fn wait_value(&mut self, expr: &str, want: f64, within: Duration) {
        let deadline = Instant::now() + within;
        let mut last = String::new();
        while Instant::now() < deadline {
            self.0.check_running();
            let (ok, text) = run(Command::new(tool("curl", "curl")).args([
                "-sS",
                "--max-time",
                "5",
                "--data-urlencode",
                &format!("query={expr}"),
                &format!("http://{}/api/v1/query", self.0.addr),
            ]));
            if ok {
                let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                if let Some(s) = v["data"]["result"][0]["value"][1].as_str() {
                    if s.parse::<f64>().ok() == Some(want) {
                        return;
                    }
                }
                last = text;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!(
            "{expr} never became {want}; last answer {last}\n{}",
            self.0.logs()
        );
    }
}

/// Real Prometheus scrapes over HTTPS (a private CA), with basic auth, asking for gzip as
/// its scraper always does (`scrape/scrape.go`: `Accept-Encoding: gzip`): every match is
/// stored exactly once, `up` is 1, and the exporter answered with a gzip body.
#[test]
fn prometheus_scrapes_over_https_with_basic_auth_and_gzip() {
    let dir = tempfile::tempdir().unwrap();
    pki_files(dir.path());
    let exp = secured(dir.path(), 300, &tls_and_auth(), false);
    assert!(exp.logs().contains("serving https://"), "{}", exp.logs());
    let mut prom = Prometheus::start(
        dir.path(),
        &format!(
            "  - job_name: reaction\n    scheme: https\n    tls_config:\n      ca_file: {}\n    \
             basic_auth:\n      username: prometheus\n      password: secret\n    \
             static_configs:\n      - targets: ['{}']\n",
            dir.path().join("ca.pem").display(),
            exp.addr
        ),
    );
    prom.wait_value("up{job=\"reaction\"}", 1.0, Duration::from_secs(60));
    prom.wait_value(
        "sum(sum_over_time(reaction_match_count[10m]))",
        300.0,
        Duration::from_secs(60),
    );
    drop(prom);
    // Prometheus asks for gzip at every scrape and decompresses what says
    // `Content-Encoding: gzip`; the exporter compresses whenever asked (shown below), and
    // every one of those pages was delivered.
    let page = secure_scrape(&exp, dir.path());
    assert_eq!(failures(&page, "unauthorized"), 0.0, "{page}");
    assert_eq!(failures(&page, "tls_handshake"), 0.0, "{page}");
    assert!(
        total(&page, "reaction_exporter_scrapes_undelivered_total", &[]) == 0.0,
        "{page}"
    );
    let url = format!("https://{}/metrics", exp.addr);
    let ca = dir.path().join("ca.pem").display().to_string();
    let (code, status, text) = curl(&[
        "--cacert",
        &ca,
        "-u",
        "prometheus:secret",
        "-H",
        "Accept-Encoding: gzip",
        &url,
    ]);
    assert_eq!((code, status), (0, 200), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("content-encoding: gzip"),
        "{text}"
    );
}

/// `/metrics/otel` over HTTPS with basic auth answers as `/metrics` does: gzip when asked
/// (the compressed page decodes to the page sent without it), `HEAD` gives the headers
/// (content type by `Accept`, `Content-Encoding`, `Vary`) and no body, and no credentials
/// get 401.
#[test]
fn the_otel_endpoint_is_secured_compressed_and_answers_head() {
    let dir = tempfile::tempdir().unwrap();
    pki_files(dir.path());
    let exp = secured_with(
        dir.path(),
        300,
        &tls_and_auth(),
        false,
        "metrics:\n  otel_endpoint:\n    enabled: true\n",
    );
    let url = format!("https://{}/metrics/otel", exp.addr);
    let ca = dir.path().join("ca.pem").display().to_string();
    let auth = ["--cacert", &ca, "-u", "prometheus:secret"];

    let (code, status, text) = curl(&["--cacert", &ca, &url]);
    assert_eq!((code, status), (0, 401), "{text}");

    // The page without gzip, then with it (curl writes the compressed bytes as they came).
    let (code, status, text) = curl(&[&auth[..], &[&url]].concat());
    assert_eq!((code, status), (0, 200), "{text}");
    let (head, plain) = text.split_once("\r\n\r\n").unwrap();
    assert!(
        !head.to_ascii_lowercase().contains("content-encoding"),
        "{head}"
    );
    assert_eq!(
        total(plain, "reaction_filter_matches_total", &[]),
        300.0,
        "{plain}"
    );
    let raw = dir.path().join("page.gz");
    let headers = dir.path().join("headers.txt");
    let out = Command::new(tool("curl", "curl"))
        .args([
            "-sS",
            "--max-time",
            "20",
            "-H",
            "Accept-Encoding: gzip",
            "-D",
        ])
        .arg(&headers)
        .arg("-o")
        .arg(&raw)
        .args(auth)
        .arg(&url)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let head = std::fs::read_to_string(&headers)
        .unwrap()
        .to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-encoding: gzip"), "{head}");
    assert!(head.contains("vary: accept, accept-encoding"), "{head}");
    let mut decoded = String::new();
    flate2::read::GzDecoder::new(&std::fs::read(&raw).unwrap()[..])
        .read_to_string(&mut decoded)
        .unwrap();
    // The same page, but for the process' own gauges and CPU time, which move between
    // two scrapes.
    let steady = |page: &str| -> Vec<String> {
        page.lines()
            .filter(|l| !l.starts_with("process_"))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(steady(&decoded), steady(plain));

    // HEAD: the headers a GET would get, no body.
    for (accept, content_type) in [
        ("text/plain", "text/plain; version=0.0.4; charset=utf-8"),
        (
            "application/openmetrics-text;version=1.0.0",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
    ] {
        let (code, status, text) = curl(
            &[
                &auth[..],
                &[
                    "-I",
                    "-H",
                    &format!("Accept: {accept}"),
                    "-H",
                    "Accept-Encoding: gzip",
                    &url,
                ],
            ]
            .concat(),
        );
        assert_eq!((code, status), (0, 200), "{text}");
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let head = head.to_ascii_lowercase();
        assert!(
            head.contains(&format!("content-type: {content_type}")),
            "{head}"
        );
        assert!(head.contains("content-encoding: gzip"), "{head}");
        assert!(head.contains("vary: accept, accept-encoding"), "{head}");
        assert!(body.is_empty(), "{body}");
    }
}

/// The refusals, with curl: no or wrong credentials get 401 with `WWW-Authenticate: Basic`
/// (and the configured headers); plain HTTP to the TLS port gets Go's 400 and nothing
/// else; with `RequireAndVerifyClientCert`, a client without a certificate cannot complete
/// the handshake, one with a certificate of the CA gets its page. Each refusal is counted.
#[test]
fn wrong_password_plain_http_and_missing_client_certificate_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    pki_files(dir.path());
    let exp = secured(
        dir.path(),
        3,
        &format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  \
             client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n\
             basic_auth_users:\n  prometheus: '{HASH}'\n\
             http_server_config:\n  headers:\n    X-Frame-Options: deny\n"
        ),
        true,
    );
    let url = format!("https://{}/metrics", exp.addr);
    let file = |n: &str| dir.path().join(n).display().to_string();
    let (ca, cert, key) = (file("ca.pem"), file("client.crt"), file("client.key"));
    let with_cert = ["--cacert", &ca, "--cert", &cert, "--key", &key];

    // Missing client certificate: the handshake is refused (curl: SSL error, no status).
    let (code, status, text) = curl(&["--cacert", &ca, "-u", "prometheus:secret", &url]);
    assert!(code != 0 && status == 0, "{code} {status}: {text}");
    // Wrong password, no credentials, an unknown user: 401.
    for auth in [
        &["-u", "prometheus:wrong"][..],
        &[],
        &["-u", "mallory:secret"],
    ] {
        let (code, status, text) = curl(&[&with_cert[..], auth, &[&url]].concat());
        assert_eq!((code, status), (0, 401), "{text}");
        let lower = text.to_ascii_lowercase();
        assert!(lower.contains("www-authenticate: basic"), "{text}");
        assert!(lower.contains("x-frame-options: deny"), "{text}");
    }
    // Plain HTTP to the TLS port: refused with Go's answer, no page.
    let (code, status, text) = curl(&[&format!("http://{}/metrics", exp.addr)]);
    assert_eq!((code, status), (0, 400), "{text}");
    assert!(
        text.contains("Client sent an HTTP request to an HTTPS server"),
        "{text}"
    );
    assert!(!text.contains("reaction_match_count"), "{text}");
    // The right credentials and a client certificate: the page, with the headers.
    let (code, status, text) = curl(&[&with_cert[..], &["-u", "prometheus:secret", &url]].concat());
    assert_eq!((code, status), (0, 200), "{text}");
    assert!(text.to_ascii_lowercase().contains("x-frame-options: deny"));
    let page = text.split_once("\r\n\r\n").unwrap().1;
    assert_eq!(total(page, "reaction_match_count", &[]), 3.0, "{page}");
    assert_eq!(failures(page, "unauthorized"), 3.0, "{page}");
    assert!(failures(page, "tls_handshake") >= 1.0, "{page}");
    assert_eq!(failures(page, "plain_http"), 1.0, "{page}");
}

/// Certificates are read again when they change on disk (looked at, one `stat` per file,
/// at each new connection; the toolkit re-reads them at each handshake): no restart and
/// no SIGHUP. A change that does not load (a key that does not match) is refused with an
/// error line and the certificate in force stays.
#[test]
fn a_renewed_certificate_is_served_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    pki_files(dir.path());
    let exp = secured(
        dir.path(),
        1,
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n",
        false,
    );
    let url = format!("https://{}/", exp.addr);
    let old_ca = write(
        dir.path(),
        "old-ca.pem",
        &std::fs::read_to_string(dir.path().join("ca.pem")).unwrap(),
    );
    let old_ca = old_ca.display().to_string();
    let (code, status, text) = curl(&["--cacert", &old_ca, &url]);
    assert_eq!((code, status), (0, 200), "{text}");

    // A renewal by another CA: the certificate first (the key does not match it yet, so
    // it is refused and the old pair stays), then the key.
    let new = pki();
    write(dir.path(), "new-ca.pem", &new.ca);
    let new_ca = dir.path().join("new-ca.pem").display().to_string();
    write(dir.path(), "server.crt", &new.server.0);
    let (code, status, text) = curl(&["--cacert", &old_ca, &url]);
    assert_eq!(
        (code, status),
        (0, 200),
        "half a renewal breaks nothing: {text}"
    );
    exp.wait_log(
        "the changed web configuration is refused",
        Duration::from_secs(5),
    );
    write(dir.path(), "server.key", &new.server.1);
    let (code, status, text) = curl(&["--cacert", &new_ca, &url]);
    assert_eq!((code, status), (0, 200), "{text}");
    let (code, _, text) = curl(&["--cacert", &old_ca, &url]);
    assert_ne!(code, 0, "the old certificate is still served: {text}");
    assert!(
        exp.logs().contains("web configuration loaded"),
        "{}",
        exp.logs()
    );
}

/// The example web configuration we ship (`examples/web-config.yml`) is accepted by
/// `promtool check web-config` (Prometheus' own validator) and by `test-config`; a key
/// neither knows is refused by both.
#[test]
fn promtool_accepts_the_shipped_example() {
    let dir = tempfile::tempdir().unwrap();
    pki_files(dir.path());
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/web-config.yml"),
    )
    .unwrap();
    let web = write(dir.path(), "web-config.yml", &example);
    let promtool = tool("promtool", "prometheus");
    let (ok, out) = run(Command::new(&promtool)
        .args(["check", "web-config"])
        .arg(&web));
    assert!(ok, "{out}");
    let config = write(
        dir.path(),
        "config.yml",
        &format!("listen:\n  web_config: {}\n", web.display()),
    );
    let (ok, out) = run(Command::new(BIN).arg("-c").arg(&config).arg("test-config"));
    assert!(ok, "{out}");

    let bad = write(dir.path(), "bad.yml", &format!("{example}\nfoo: 1\n"));
    let (ok, out) = run(Command::new(&promtool)
        .args(["check", "web-config"])
        .arg(&bad));
    assert!(!ok && out.contains("foo"), "{out}");
    let config = write(
        dir.path(),
        "config.yml",
        &format!("listen:\n  web_config: {}\n", bad.display()),
    );
    let (ok, out) = run(Command::new(BIN).arg("-c").arg(&config).arg("test-config"));
    assert!(!ok && out.contains("`foo`"), "{out}");
}

/// A flood of distinct wrong passwords costs the attacker, not the server: bcrypt runs one
/// at a time within a CPU budget (a quarter of one core after a 2 s burst), requests that
/// would wait longer than 2 s get 429 without any bcrypt, and a scraper whose credential
/// was verified once is answered at once throughout.
#[test]
fn a_flood_of_wrong_passwords_is_held_to_the_bcrypt_budget() {
    let dir = tempfile::tempdir().unwrap();
    pki_files(dir.path());
    // Cost 10 (the toolkit's documentation: about 70 ms; more in a debug build).
    let costly = bcrypt::hash_with_salt("secret", 10, [5; 16])
        .unwrap()
        .to_string();
    let exp = secured(
        dir.path(),
        1,
        &format!("basic_auth_users:\n  prometheus: '{costly}'\n"),
        false,
    );
    // The scraper's credential, verified once: what one verification costs here.
    let cpu_before = cpu_seconds(exp.child.id());
    let _ = secure_scrape_plain(&exp);
    let one = cpu_seconds(exp.child.id()) - cpu_before;
    let cpu_before = cpu_seconds(exp.child.id());
    let start = Instant::now();
    let mut statuses = Vec::new();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..8)
            .map(|w| {
                let addr = exp.addr.clone();
                scope.spawn(move || {
                    (0..10)
                        .map(|i| {
                            let (_, status, _) = curl(&[
                                "-u",
                                &format!("prometheus:guess-{w}-{i}"),
                                &format!("http://{addr}/metrics"),
                            ]);
                            status
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        // Meanwhile the verified scraper is answered without waiting for bcrypt.
        for _ in 0..5 {
            let t = Instant::now();
            let _ = secure_scrape_plain(&exp);
            assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        }
        for w in workers {
            statuses.extend(w.join().unwrap());
        }
    });
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds(exp.child.id()) - cpu_before;
    let refused = statuses.iter().filter(|s| **s == 401 || **s == 429).count();
    assert_eq!(refused, statuses.len(), "{statuses:?}");
    // The budget: a 2 s burst, then a quarter of one core; a verification under way when
    // it runs out finishes (one more), the rest of the process (85 requests) adds little.
    let budget = 2.0 + one + 0.25 * elapsed + 0.5;
    eprintln!(
        "80 distinct wrong passwords in {elapsed:.1} s: {} answered 401, {} answered 429, \
         {cpu:.2} s of CPU (budget {budget:.2} s; one verification {one:.2} s)",
        statuses.iter().filter(|s| **s == 401).count(),
        statuses.iter().filter(|s| **s == 429).count()
    );
    assert!(cpu <= budget, "{cpu} s of CPU > {budget} s");
}

/// The page over plain HTTP with `prometheus:secret`.
fn secure_scrape_plain(exp: &Exporter) -> String {
    let (code, status, text) = curl(&[
        "-u",
        "prometheus:secret",
        &format!("http://{}/metrics", exp.addr),
    ]);
    assert_eq!((code, status), (0, 200), "{text}");
    text
}

/// User and system CPU time of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let mut stat = String::new();
    std::fs::File::open(format!("/proc/{pid}/stat"))
        .unwrap()
        .read_to_string(&mut stat)
        .unwrap();
    // Fields after the command name (which may hold spaces): utime is the 14th field.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// Drift: `promtool check web-config` (Prometheus 2.42, exporter-toolkit v0.8.2) and
/// `test-config` agree on which web configurations are valid, except where the README
/// says we refuse what Go would serve (rustls lacks it).
#[test]
fn promtool_and_test_config_agree_on_web_configurations() {
    let dir = tempfile::tempdir().unwrap();
    pki_files(dir.path());
    let other = pki();
    write(dir.path(), "other.key", &other.server.1);
    let tls = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n";
    let hash = format!("basic_auth_users:\n  prometheus: '{HASH}'\n");
    // (text, valid for both)
    let agreed: Vec<(String, bool)> = vec![
        (String::new(), true),
        (hash.clone(), true),
        (format!("{tls}  min_version: TLS13\n"), true),
        (
            format!("{tls}  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]\n"),
            true,
        ),
        (
            format!(
                "{tls}  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n"
            ),
            true,
        ),
        (
            "http_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: sameorigin\n"
                .into(),
            true,
        ),
        (format!("{hash}foo: 1\n"), false),
        ("basic_auth_users:\n  prometheus: secret\n".into(), false),
        (
            "http_server_config:\n  headers:\n    Server: me\n".into(),
            false,
        ),
        (
            "http_server_config:\n  headers:\n    X-Frame-Options: allow\n".into(),
            false,
        ),
        (format!("{tls}  client_auth_type: Always\n"), false),
        (format!("{tls}  min_version: TLS14\n"), false),
        (format!("{tls}  client_ca_file: ca.pem\n"), false),
        (
            "tls_server_config:\n  cert_file: missing.crt\n  key_file: server.key\n".into(),
            false,
        ),
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: other.key\n".into(),
            false,
        ),
        ("rate_limit:\n  interval: 1s\n".into(), false),
        (format!("{tls}  client_allowed_sans: [a]\n"), false),
    ];
    // Valid for promtool, refused by us (README, "Securing the endpoint").
    let ours_stricter = [
        format!("{tls}  max_version: TLS11\n"),
        format!("{tls}  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA]\n"),
        format!("{tls}  curve_preferences: [CurveP521]\n"),
        format!("{tls}  client_auth_type: RequireAndVerifyClientCert\n"),
    ];
    let promtool = tool("promtool", "prometheus");
    let check = |text: &str| {
        let web = write(dir.path(), "web.yml", text);
        let (p, pout) = run(Command::new(&promtool)
            .args(["check", "web-config"])
            .arg(&web));
        let config = write(
            dir.path(),
            "config.yml",
            &format!("listen:\n  web_config: {}\n", web.display()),
        );
        let (o, oout) = run(Command::new(BIN).arg("-c").arg(&config).arg("test-config"));
        (p, o, format!("promtool: {pout}\ntest-config: {oout}"))
    };
    for (text, valid) in &agreed {
        let (p, o, out) = check(text);
        assert_eq!((p, o), (*valid, *valid), "{text}\n{out}");
    }
    for text in &ours_stricter {
        let (p, o, out) = check(text);
        assert_eq!((p, o), (true, false), "{text}\n{out}");
    }
}

/// `min_version` holds on the wire: with `TLS13`, a client that speaks at most TLS 1.2 is
/// refused at the handshake (counted), one that speaks TLS 1.3 gets its page.
#[test]
fn min_version_is_enforced_on_the_wire() {
    let dir = tempfile::tempdir().unwrap();
    pki_files(dir.path());
    let exp = secured(
        dir.path(),
        1,
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS13\n",
        false,
    );
    let url = format!("https://{}/metrics", exp.addr);
    let ca = dir.path().join("ca.pem").display().to_string();
    let (code, status, text) = curl(&["--cacert", &ca, "--tls-max", "1.2", &url]);
    assert!(code != 0 && status == 0, "{code} {status}: {text}");
    let (code, status, text) = curl(&["--cacert", &ca, "--tlsv1.3", &url]);
    assert_eq!((code, status), (0, 200), "{text}");
    let page = text.split_once("\r\n\r\n").unwrap().1;
    assert_eq!(failures(page, "tls_handshake"), 1.0, "{page}");
}
