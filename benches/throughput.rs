//! Throughput, `/metrics` render time and memory, on the crate's real code paths.
//!
//! `cargo bench --bench throughput` prints a table. Environment:
//! - `BENCH_LINES` (default 1,000,000): lines of each ingest workload;
//! - `BENCH_RUNS` (default 3): ingest runs per workload (median shown);
//! - `BENCH_REPS` (default 5): scrapes per series count (median shown);
//! - `BENCH_ONLY` (default all): comma-separated parts to run, among `ingest`, `render`,
//!   `exporter` (e.g. to profile one with `perf record`).
//!
//! 1. Ingest: a log file is written, then read from its beginning by the real
//!    [`FileTailer`] and fed to the real [`Ingest`] (parse → label → instruments), all on
//!    one thread (a current-thread tokio runtime), with the pieces built as `App::build`
//!    builds them. reaction's configuration is read directly from a YAML file (the
//!    `reaction` binary configured does not exist).
//! 2. Render: N distinct series recorded through [`Instruments::add`], then
//!    [`Scraper::scrape`] timed (status refresh + collect + render), with a breakdown.
//! 3. Memory: peak RSS of this process per workload, and the idle RSS of the real exporter
//!    binary on the demo configuration.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;

use reaction_metrics_exporter::app::App;
use reaction_metrics_exporter::config::{Config, ConfigFormat, LogSource};
use reaction_metrics_exporter::ingest::Ingest;
use reaction_metrics_exporter::internal::Internal;
use reaction_metrics_exporter::metric::Metric;
use reaction_metrics_exporter::parse::parse_line;
use reaction_metrics_exporter::scrape::Scraper;
use reaction_metrics_exporter::source::file::{FileSourceConfig, FileTailer};
use reaction_metrics_exporter::source::Lines;
use reaction_metrics_exporter::status::StatusRefresher;
use reaction_metrics_exporter::telemetry::collect::Collected;
use reaction_metrics_exporter::telemetry::render::{render, Exposition, ExpositionFormat};
use reaction_metrics_exporter::telemetry::{Instruments, Telemetry, VERSION};

const TARGET_LINES_PER_SEC: f64 = 500_000.0;
const TARGET_RENDER_100K_MS: f64 = 200.0;
const TARGET_IDLE_RSS_MIB: f64 = 20.0;

/// Every 25th line is an action (4 %).
const ACTION_EVERY: usize = 25;
const USERS: [&str; 6] = ["root", "admin", "ubuntu", "test", "oracle", "postgres"];

/// reaction's configuration, shared with the end-to-end bench (the ssh filter is the one
/// this bench's lines match).
const REACTION_YAML: &str = include_str!("reaction.yml");

fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .replace('_', "")
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

// ---- Workload --------------------------------------------------------------------------

/// Distinct IP number `k` (distinct for k < 2^24).
fn ip(k: usize) -> String {
    format!(
        "{}.{}.{}.{}",
        100 + (k >> 16) % 100,
        (k >> 8) & 255,
        k & 255,
        1 + (k * 7) % 254
    )
}

fn user(k: usize) -> &'static str {
    USERS[k % USERS.len()]
}

/// xorshift64*: a fixed pseudo-random order of IPs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Line `i` of a workload with `distinct` IPs; `last` is the IP number of the last match
/// (an action bans it). Returns the line and whether it is an action.
fn line(i: usize, distinct: usize, rng: &mut Rng, last: &mut usize) -> (String, bool) {
    if i % ACTION_EVERY == ACTION_EVERY - 1 {
        let ip = ip(*last);
        (
            format!(
                "INFO ssh.failedlogin.ban: run [\"iptables\" \"-w\" \"-A\" \"reaction\" \"-s\" \"{ip}\" \"-j\" \"DROP\"]"
            ),
            true,
        )
    } else {
        let k = (rng.next() % distinct as u64) as usize;
        *last = k;
        (
            format!(
                "INFO ssh.failedlogin: match [\"{}\", \"{}\"]",
                ip(k),
                user(k)
            ),
            false,
        )
    }
}

struct LogFile {
    path: PathBuf,
    lines: usize,
    bytes: u64,
    matches: u64,
    actions: u64,
}

fn write_log(path: &Path, n: usize, distinct: usize) -> LogFile {
    let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut last = 0;
    let (mut matches, mut actions, mut bytes) = (0, 0, 0u64);
    for i in 0..n {
        let (l, action) = line(i, distinct, &mut rng, &mut last);
        w.write_all(l.as_bytes()).unwrap();
        w.write_all(b"\n").unwrap();
        bytes += l.len() as u64 + 1;
        if action {
            actions += 1;
        } else {
            matches += 1;
        }
    }
    w.flush().unwrap();
    LogFile {
        path: path.to_owned(),
        lines: n,
        bytes,
        matches,
        actions,
    }
}

// ---- The exporter's pieces, as App::build wires them -------------------------------------

struct Rig {
    telemetry: Arc<Telemetry>,
    internal: Arc<Internal>,
    status: Arc<StatusRefresher>,
    scraper: Arc<Scraper>,
    ingest: Ingest,
}

/// The real `App::build` (OTLP off: not configured; the state file in the bench's
/// temporary directory).
async fn build(config: Config) -> Rig {
    let app = App::build(config).await.expect("the bench's exporter");
    let mut ingest = app.ingest;
    assert!(
        ingest.reload_reaction_config().await,
        "the bench's reaction configuration did not load"
    );
    Rig {
        telemetry: app.telemetry,
        internal: app.internal,
        status: ingest.status.clone(),
        scraper: app.scraper.expect("the bench serves /metrics"),
        ingest,
    }
}

fn bench_config(dir: &Path) -> Config {
    std::fs::write(dir.join("reaction.yml"), REACTION_YAML).unwrap();
    let d = dir.display();
    let text = format!(
        "reaction:\n  config: {d}/reaction.yml\n  binary: {d}/no-such-reaction\n  \
         socket: {d}/reaction.sock\n  hold: 0\n  logs:\n    file: {d}/reaction.log\n    \
         start_at: beginning\nmetrics:\n  export:\n    internals: true\nstate:\n  directory: {d}\n"
    );
    Config::parse(&text, ConfigFormat::Yaml, "bench.yml").expect("bench configuration")
}

// ---- Memory ------------------------------------------------------------------------------

/// A `kB` field of /proc/<pid>/status, in MiB.
fn status_mib(pid: &str, field: &str) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    let kb: f64 = line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

fn rss() -> f64 {
    status_mib("self", "VmRSS:").unwrap_or(f64::NAN)
}

fn hwm() -> f64 {
    status_mib("self", "VmHWM:").unwrap_or(f64::NAN)
}

/// Reset VmHWM to the current RSS (Linux ≥ 4.0): peaks are then per workload.
fn reset_hwm() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

// ---- Helpers ------------------------------------------------------------------------------

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Sum of the samples of a family in a page, and how many samples.
fn family_sum(body: &str, name: &str) -> (f64, usize) {
    let mut sum = 0.0;
    let mut n = 0;
    for l in body.lines() {
        let Some(rest) = l.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        if let Some(v) = l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            sum += v;
            n += 1;
        }
    }
    (sum, n)
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "MISSED"
    }
}

// ---- 1. Ingest -----------------------------------------------------------------------------

struct IngestRun {
    total: Duration,
    poll: Duration,
    process: Duration,
    series: usize,
}

async fn ingest_once(config: &Config, log: &LogFile) -> IngestRun {
    let mut rig = build(config.clone()).await;
    let mut tailer = FileTailer::new(
        FileSourceConfig {
            path: log.path.clone(),
            from_beginning: true,
            poll_interval: Duration::from_millis(200),
            max_line_bytes: config.reaction.logs.max_line_length,
            resume: None,
        },
        rig.internal.clone(),
    );
    let (mut poll, mut process) = (Duration::ZERO, Duration::ZERO);
    let mut lines = 0;
    let start = Instant::now();
    loop {
        let t = Instant::now();
        let mut batch = Lines::new();
        tailer.poll(&mut batch);
        let t2 = Instant::now();
        poll += t2 - t;
        let empty = batch.is_empty();
        lines += batch.len();
        rig.ingest.process(batch).await;
        process += t2.elapsed();
        if empty && !tailer.has_backlog() {
            break;
        }
    }
    let total = start.elapsed();
    assert_eq!(lines, log.lines, "the tailer did not read every line");

    // Check that the work was real: every match and action counted, nothing rejected.
    let page = rig.scraper.scrape(ExpositionFormat::Text).await;
    let body = page.body.into_string();
    let (matches, match_series) = family_sum(&body, "reaction_match_count");
    let (actions, action_series) = family_sum(&body, "reaction_action_count");
    let (read, _) = family_sum(&body, "reaction_exporter_lines_read_total");
    let (rejected, _) = family_sum(&body, "reaction_exporter_lines_rejected_total");
    assert_eq!(matches as u64, log.matches, "matches counted");
    assert_eq!(actions as u64, log.actions, "actions counted");
    assert_eq!(read as usize, log.lines, "lines read");
    assert_eq!(rejected, 0.0, "lines rejected");
    page.delivery.delivered();
    IngestRun {
        total,
        poll,
        process,
        series: match_series + action_series,
    }
}

struct IngestRow {
    name: &'static str,
    lines: usize,
    mb: f64,
    total_ms: f64,
    poll_ms: f64,
    process_ms: f64,
    series: usize,
    rss_before: f64,
    peak: f64,
}

fn ingest(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    config: &Config,
    name: &'static str,
    n: usize,
    distinct: usize,
    runs: usize,
) -> IngestRow {
    let log = write_log(&dir.join("reaction.log"), n, distinct);
    let rss_before = rss();
    reset_hwm();
    let mut totals = Vec::new();
    let mut polls = Vec::new();
    let mut processes = Vec::new();
    let mut series = 0;
    for _ in 0..runs {
        let r = rt.block_on(ingest_once(config, &log));
        totals.push(ms(r.total));
        polls.push(ms(r.poll));
        processes.push(ms(r.process));
        series = r.series;
    }
    let peak = hwm();
    std::fs::remove_file(&log.path).unwrap();
    IngestRow {
        name,
        lines: log.lines,
        mb: log.bytes as f64 / 1e6,
        total_ms: median(&mut totals),
        poll_ms: median(&mut polls),
        process_ms: median(&mut processes),
        series,
        rss_before,
        peak,
    }
}

/// `parse_line` alone on the same line mix (cycling over 10,000 prepared lines).
fn parse_only(n: usize, distinct: usize) -> f64 {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut last = 0;
    let lines: Vec<String> = (0..10_000.min(n))
        .map(|i| line(i, distinct, &mut rng, &mut last).0)
        .collect();
    let mut events = 0usize;
    let start = Instant::now();
    for i in 0..n {
        let l = std::hint::black_box(&lines[i % lines.len()]);
        if let Ok(Some(e)) = parse_line(l) {
            std::hint::black_box(&e);
            events += 1;
        }
    }
    let t = start.elapsed();
    assert_eq!(events, n);
    n as f64 / t.as_secs_f64()
}

// ---- 2. Render -----------------------------------------------------------------------------

/// The attributes the labeller gives a match, in key order as it gives them (the SDK
/// stores a set given out of order twice, and `Instruments::add` packs only ordered sets).
fn series_attrs(k: usize) -> Vec<Vec<KeyValue>> {
    let stream = opentelemetry::Value::from(Arc::<str>::from("ssh"));
    let filter = opentelemetry::Value::from(Arc::<str>::from("failedlogin"));
    (0..k)
        .map(|i| {
            vec![
                KeyValue::new("filter", filter.clone()),
                KeyValue::new("ip", ip(i)),
                KeyValue::new("stream", stream.clone()),
                KeyValue::new("user", user(i)),
            ]
        })
        .collect()
}

fn record(instruments: &Instruments, attrs: &[Vec<KeyValue>]) -> Duration {
    let t = Instant::now();
    for a in attrs {
        instruments.add(Metric::Matches, 1, a);
    }
    t.elapsed()
}

struct RenderRow {
    series: usize,
    record_ms: f64,
    text_ms: f64,
    text_bytes: usize,
    om_ms: f64,
    om_bytes: usize,
    refresh_ms: f64,
    collect_ms: f64,
    convert_ms: f64,
    render_ms: f64,
    rss_before: f64,
    peak: f64,
}

async fn render_bench(config: &Config, k: usize, reps: usize) -> RenderRow {
    let rss_before = rss();
    reset_hwm();
    let rig = build(config.clone()).await;
    let attrs = series_attrs(k);
    let inst = &rig.telemetry.instruments();
    let mut v: [Vec<f64>; 7] = Default::default();
    let (mut text_bytes, mut om_bytes) = (0, 0);
    for _ in 0..reps {
        // Full scrape, text.
        v[0].push(ms(record(inst, &attrs)));
        let t = Instant::now();
        let page = rig.scraper.scrape(ExpositionFormat::Text).await;
        let body = page.body.into_string();
        v[1].push(ms(t.elapsed()));
        let (sum, n) = family_sum(&body, "reaction_match_count");
        assert_eq!((sum as usize, n), (k, k), "series rendered");
        text_bytes = body.len();
        page.delivery.delivered();

        // Full scrape, OpenMetrics.
        record(inst, &attrs);
        let t = Instant::now();
        let page = rig.scraper.scrape(ExpositionFormat::OpenMetrics).await;
        let body = page.body.into_string();
        v[2].push(ms(t.elapsed()));
        om_bytes = body.len();
        page.delivery.delivered();

        // The parts of a scrape, one by one (what `Scraper::scrape` runs, minus its
        // bookkeeping of delta counts and carry-over).
        record(inst, &attrs);
        let t = Instant::now();
        rig.status.refresh().await;
        v[3].push(ms(t.elapsed()));
        let t = Instant::now();
        let (collections, error) = rig
            .telemetry
            .pull_reader
            .as_ref()
            .expect("the bench serves /metrics")
            .collect();
        assert!(error.is_none(), "{error:?}");
        v[4].push(ms(t.elapsed()));
        let t = Instant::now();
        let c = Collected::from_collections(&collections);
        v[5].push(ms(t.elapsed()));
        drop(collections);
        let mut exp = Exposition::default();
        for ((f, a), n) in &c.sums {
            exp.push(*f, a, *n as f64);
        }
        for ((f, a), x) in &c.gauges {
            exp.push(*f, a, *x);
        }
        let t = Instant::now();
        let body = render(&exp, VERSION, true, ExpositionFormat::Text);
        v[6].push(ms(t.elapsed()));
        std::hint::black_box(body);
    }
    let peak = hwm();
    let [mut rec, mut text, mut om, mut refresh, mut collect, mut convert, mut rend] = v;
    RenderRow {
        series: k,
        record_ms: median(&mut rec),
        text_ms: median(&mut text),
        text_bytes,
        om_ms: median(&mut om),
        om_bytes,
        refresh_ms: median(&mut refresh),
        collect_ms: median(&mut collect),
        convert_ms: median(&mut convert),
        render_ms: median(&mut rend),
        rss_before,
        peak,
    }
}

// ---- 3. The exporter binary, idle ------------------------------------------------------

const BIN_NAME: &str = "reaction-metrics-exporter";

fn find_binary() -> Option<PathBuf> {
    let from_cargo = option_env!("CARGO_BIN_EXE_reaction-metrics-exporter").map(PathBuf::from);
    // The bench runs as target/<profile>/deps/throughput-<hash>: the binary is in
    // target/<profile>.
    let next_to_us = std::env::current_exe()
        .ok()
        .and_then(|e| Some(e.parent()?.parent()?.join(BIN_NAME)));
    from_cargo
        .into_iter()
        .chain(next_to_us)
        .find(|p| p.is_file())
}

struct ExporterMem {
    binary: PathBuf,
    rss_idle: f64,
    hwm_idle: f64,
    rss_scraped: f64,
    hwm_scraped: f64,
    scrape_bytes: usize,
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn http_get(addr: &str) -> std::io::Result<String> {
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

fn exporter_idle(dir: &Path, binary: PathBuf) -> Result<ExporterMem, String> {
    // The demo configuration, with absolute paths, a free port, no reaction binary.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut config = Config::load(&root.join("examples/demo/config.yml"))
        .map_err(|e| format!("demo configuration: {e}"))?;
    config.listen.port = 0;
    config.reaction.config = root.join(&config.reaction.config);
    if let LogSource::File(p) = &config.reaction.logs.source {
        config.reaction.logs.source = LogSource::File(root.join(p));
    }
    config.reaction.binary = dir.join("no-such-reaction");
    // Its state file in the temporary directory: no resume from an earlier run, no file
    // left in the working directory.
    config.state.directory = Some(dir.to_path_buf());
    let path = dir.join("exporter.yml");
    std::fs::write(&path, config.to_text(ConfigFormat::Yaml)).map_err(|e| e.to_string())?;

    let child = Command::new(&binary)
        .arg("start")
        .arg("-c")
        .arg(&path)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .env_remove("STATE_DIRECTORY")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
    let mut child = KillOnDrop(child);
    let pid = child.0.id().to_string();

    // The address is in the log ("serving http://ADDR/metrics"); keep draining stderr.
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = l.split("serving http://").nth(1) {
                let addr = rest.split('/').next().unwrap_or("").to_string();
                let _ = tx.send(addr);
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(10))
        .map_err(|_| "the exporter did not say where it serves within 10 s".to_string())?;
    std::thread::sleep(Duration::from_secs(2));
    let read =
        |f: &str| status_mib(&pid, f).ok_or_else(|| format!("cannot read /proc/{pid}/status"));
    let (rss_idle, hwm_idle) = (read("VmRSS:")?, read("VmHWM:")?);
    let resp = http_get(&addr).map_err(|e| format!("scrape of {addr}: {e}"))?;
    if !resp.starts_with("HTTP/1.1 200") {
        return Err(format!(
            "scrape of {addr}: {}",
            resp.lines().next().unwrap_or("")
        ));
    }
    let scrape_bytes = resp.split_once("\r\n\r\n").map_or(0, |(_, b)| b.len());
    std::thread::sleep(Duration::from_millis(200));
    let (rss_scraped, hwm_scraped) = (read("VmRSS:")?, read("VmHWM:")?);

    // SAFETY: kill has no memory-safety preconditions; the pid is our child's.
    unsafe { libc::kill(child.0.id() as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match child.0.try_wait() {
            Ok(Some(status)) if status.success() => break,
            Ok(Some(status)) => return Err(format!("the exporter exited with {status}")),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => return Err("the exporter did not stop within 10 s of SIGTERM".into()),
        }
    }
    Ok(ExporterMem {
        binary,
        rss_idle,
        hwm_idle,
        rss_scraped,
        hwm_scraped,
        scrape_bytes,
    })
}

// ---- Main ----------------------------------------------------------------------------------

fn main() {
    let n = env_usize("BENCH_LINES", 1_000_000);
    let runs = env_usize("BENCH_RUNS", 3).max(1);
    let reps = env_usize("BENCH_REPS", 5).max(1);
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let run = |part: &str| only.is_empty() || only.split(',').any(|p| p.trim() == part);
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = bench_config(dir.path());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");

    println!("reaction-metrics-exporter {VERSION}: throughput bench");
    println!(
        "BENCH_LINES={n} BENCH_RUNS={runs} BENCH_REPS={reps}; medians; one thread (current-thread tokio runtime)"
    );
    println!("RSS at start: {:.1} MiB", rss());
    println!();

    // 1. Ingest.
    let mut rows = Vec::new();
    if run("ingest") {
        rows.push(ingest(&rt, dir.path(), &config, "1 IP", n, 1, runs));
        rows.push(ingest(
            &rt,
            dir.path(),
            &config,
            "10,000 IPs",
            n,
            10_000,
            runs,
        ));
        print_ingest(&rows, n);
    }

    // 2. Render.
    let mut renders = Vec::new();
    if run("render") {
        for k in [1_000, 10_000, 100_000] {
            renders.push(rt.block_on(render_bench(&config, k, reps)));
        }
        print_render(&renders);
    }

    // 3. Memory.
    if !rows.is_empty() || !renders.is_empty() {
        print_memory(&rows, &renders);
    }
    if run("exporter") {
        print_exporter(dir.path());
    }
}

fn print_ingest(rows: &[IngestRow], n: usize) {
    println!("1. Ingest: file -> FileTailer::poll -> Ingest::process (parse, label, instruments)");
    println!(
        "{:<11} {:>9} {:>7} {:>9} {:>8} {:>8} {:>11} {:>7} {:>7}  target >= {:.0} lines/s",
        "workload",
        "lines",
        "MB",
        "total ms",
        "poll ms",
        "proc ms",
        "lines/s",
        "MB/s",
        "series",
        TARGET_LINES_PER_SEC
    );
    for r in rows {
        let rate = r.lines as f64 / (r.total_ms / 1e3);
        println!(
            "{:<11} {:>9} {:>7.1} {:>9.1} {:>8.1} {:>8.1} {:>11.0} {:>7.1} {:>7}  {}",
            r.name,
            r.lines,
            r.mb,
            r.total_ms,
            r.poll_ms,
            r.process_ms,
            rate,
            r.mb / (r.total_ms / 1e3),
            r.series,
            verdict(rate >= TARGET_LINES_PER_SEC)
        );
    }
    println!(
        "  (poll: FileTailer::poll, reading and cutting lines; proc: Ingest::process; \
         {:.0} % of the lines are actions)",
        100.0 / ACTION_EVERY as f64
    );
    for (name, distinct) in [("1 IP", 1), ("10,000 IPs", 10_000)] {
        let rate = parse_only(n, distinct);
        println!("{name:<11} parse_line only: {rate:>11.0} lines/s");
    }
    println!();
}

fn print_render(renders: &[RenderRow]) {
    println!("2. Render: Scraper::scrape (reaction status refresh + collect + render), k series");
    println!(
        "{:>7} {:>9} {:>9} {:>11} {:>8} {:>11} | {:>10} {:>10} {:>10} {:>9} | {:>9}",
        "series",
        "record ms",
        "text ms",
        "text bytes",
        "OM ms",
        "OM bytes",
        "refresh ms",
        "collect ms",
        "convert ms",
        "render ms",
        "target"
    );
    for r in renders {
        let target = if r.series == 100_000 {
            format!(
                "< {TARGET_RENDER_100K_MS:.0} ms {}",
                verdict(r.text_ms < TARGET_RENDER_100K_MS && r.om_ms < TARGET_RENDER_100K_MS)
            )
        } else {
            String::new()
        };
        println!(
            "{:>7} {:>9.2} {:>9.2} {:>11} {:>8.2} {:>11} | {:>10.2} {:>10.2} {:>10.2} {:>9.2} | {}",
            r.series,
            r.record_ms,
            r.text_ms,
            r.text_bytes,
            r.om_ms,
            r.om_bytes,
            r.refresh_ms,
            r.collect_ms,
            r.convert_ms,
            r.render_ms,
            target
        );
    }
    println!(
        "  (record: Instruments::add of every series before each scrape, not part of it; \
         refresh/collect/convert/render: the parts of a scrape timed alone, render in text)"
    );
    println!();
}

fn print_memory(rows: &[IngestRow], renders: &[RenderRow]) {
    println!("3. Memory of this bench process (VmRSS before, VmHWM peak during the workload)");
    if !reset_hwm() {
        println!(
            "  (cannot reset VmHWM: /proc/self/clear_refs not writable; peaks are cumulative)"
        );
    }
    println!(
        "{:<22} {:>14} {:>14}",
        "workload", "RSS before MiB", "peak MiB"
    );
    if !renders.is_empty() {
        println!(
            "  (render peaks include the bench's own prepared attribute sets, one per series)"
        );
    }
    for r in rows {
        println!(
            "{:<22} {:>14.1} {:>14.1}",
            format!("ingest {}", r.name),
            r.rss_before,
            r.peak
        );
    }
    for r in renders {
        println!(
            "{:<22} {:>14.1} {:>14.1}",
            format!("render {} series", r.series),
            r.rss_before,
            r.peak
        );
    }
    println!();
}

fn print_exporter(dir: &Path) {
    println!("Exporter binary, idle on examples/demo (port 0, no reaction binary):");
    match find_binary() {
        None => println!(
            "  binary not found (looked for CARGO_BIN_EXE_{BIN_NAME} and next to the bench \
             executable): build it with `cargo build --release` (or run this bench with \
             `cargo bench --bench throughput`, which builds it), then run again"
        ),
        Some(bin) => match exporter_idle(dir, bin) {
            Ok(m) => {
                println!("  {}", m.binary.display());
                println!(
                    "  after 2 s: VmRSS {:.1} MiB (VmHWM {:.1})  target < {TARGET_IDLE_RSS_MIB:.0} MiB {}",
                    m.rss_idle,
                    m.hwm_idle,
                    verdict(m.rss_idle < TARGET_IDLE_RSS_MIB)
                );
                println!(
                    "  after one scrape ({} bytes): VmRSS {:.1} MiB (VmHWM {:.1})",
                    m.scrape_bytes, m.rss_scraped, m.hwm_scraped
                );
            }
            Err(e) => println!("  could not measure: {e}"),
        },
    }
}
