//! The dashboards and alert rules on real databases fed by the real exporter.
//!
//! Two "hosts" (two reaction log files and two reaction CLI fixtures) get a deterministic
//! workload written in three phases a few seconds apart: matches in three filters of two
//! streams, IPs seen in several filters and on both hosts, actions, stream errors, failed
//! commands, pending actions (from the fixture's `reaction show`), reaction down for a
//! few seconds. Real **Prometheus** (Debian `prometheus`) and real **VictoriaMetrics**
//! (Debian `victoria-metrics`) scrape every second, **each with its own exporter per host**
//! on the same logs: /metrics hands out counts since the last scrape, so two scrapers of
//! one exporter would each get part of them. A third target that does not answer stands
//! for an exporter that is down.
//!
//! Then every panel query of `dashboards/reaction-prometheus.json` (on Prometheus, and on
//! VictoriaMetrics, which also serves PromQL) and of `dashboards/reaction-victoriametrics.json`
//! (on VictoriaMetrics) runs through the HTTP API (`/api/v1/query` for instant targets,
//! `/api/v1/query_range` otherwise) with Grafana's variables substituted, at steps of 1 s
//! (the scrape interval), 5 s and 15 s, for three selections of the template variables
//! (all; one instance, stream, filter and IP; several values). Each query must succeed,
//! return data for "all", and give exactly the workload's numbers (totals per filter, per
//! IP, per instance, running totals at the end of the range, sums of per-interval bars);
//! times (first and last match, lifetime) to the step. The variables' `label_values`
//! queries run through `/api/v1/label/.../values`.
//!
//! Every alert expression of `alerts/reaction.rules.yml` runs on both databases and gives
//! exactly the expected series; the Python exporter's invalid rule is refused by
//! Prometheus and taken silently by VictoriaMetrics, which is why everything is validated
//! on Prometheus. The OpenTelemetry dashboard's queries (for metrics through a Collector,
//! which cannot be installed here) are only checked to be valid PromQL on Prometheus.
//!
//! Every process is killed at the end, also on failure (Drop).

use crate::common;
use crate::grafana;
use crate::tools;
use crate::workload;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{append, Exporter, Reaction};
use grafana::*;
use tools::*;
use workload::*;

const HOSTS: [&str; 2] = ["host1", "host2"];
/// The scrape target that does not answer.
const DEAD: &str = "host3";

// ---------------------------------------------------------------------------------------
// The workload

/// The phases, per host; they are written a few seconds apart.
fn phases() -> Vec<Vec<(&'static str, Ev)>> {
    use Ev::*;
    vec![
        vec![
            ("host1", Command("start", "iptables", 0)),
            ("host1", Command("start", "ip6tables", 2)),
            ("host1", Stream("ssh", "start")),
            ("host1", Stream("web.nginx", "start")),
            ("host1", Match("ssh", "failedlogin", "192.0.2.1", "root", 3)),
            (
                "host1",
                Match("web.nginx", "aiBots", "192.0.2.1", "curl/8.0", 1),
            ),
            ("host1", Match("ssh", "invaliduser", "198.51.100.7", "", 2)),
            (
                "host1",
                Match("web.nginx", "aiBots", "203.0.113.9", "GPTBot/1.0", 1),
            ),
            ("host2", Command("start", "iptables", 0)),
            ("host2", Stream("ssh", "start")),
        ],
        vec![
            (
                "host1",
                Match("ssh", "failedlogin", "192.0.2.1", "admin", 2),
            ),
            ("host1", Action("ssh", "failedlogin", "ban", "192.0.2.1")),
            (
                "host1",
                Match("ssh", "failedlogin", "198.51.100.7", "root", 1),
            ),
            // Matches a lot, never banned: ReactionHighMatches and ReactionIPUnbanned.
            (
                "host1",
                Match("web.nginx", "aiBots", "203.0.113.66", "EvilBot", 360),
            ),
            // Matches more than 20 times, not banned here but an unban is pending.
            (
                "host1",
                Match("ssh", "failedlogin", "192.0.2.60", "root", 22),
            ),
            ("host1", Stream("ssh", "exit")),
            ("host1", Stream("web.nginx", "exec")),
            ("host2", Match("ssh", "failedlogin", "192.0.2.1", "root", 4)),
            (
                "host2",
                Match("web.nginx", "aiBots", "203.0.113.9", "GPTBot/1.0", 2),
            ),
        ],
        vec![
            ("host1", Match("ssh", "failedlogin", "192.0.2.1", "root", 1)),
            ("host1", Action("ssh", "invaliduser", "ban", "198.51.100.7")),
            // Matches more than 20 times and banned.
            (
                "host1",
                Match("ssh", "failedlogin", "192.0.2.50", "root", 25),
            ),
            ("host1", Action("ssh", "failedlogin", "ban", "192.0.2.50")),
            (
                "host1",
                Action("ssh", "failedlogin", "unban", "198.51.100.7"),
            ),
            ("host1", Stream("ssh", "read")),
            ("host1", Stream("web.nginx", "timeout")),
            ("host1", Command("stop", "iptables", 0)),
            ("host1", Command("stop", "iptables", 1)),
            ("host2", Action("ssh", "failedlogin", "ban", "192.0.2.1")),
        ],
    ]
}

struct World {
    recs: Vec<Rec>,
}

impl World {
    /// The records of a family that the dashboards' selectors keep for `c`.
    fn select(&self, fam: Fam, c: &Combo) -> Vec<&Rec> {
        self.recs
            .iter()
            .filter(|r| r.fam == fam)
            .filter(|r| {
                let mut ok = c.keeps("instance", r.get("instance"));
                if matches!(fam, Fam::Match | Fam::Action | Fam::Pending | Fam::Stream) {
                    ok &= c.keeps("stream", r.get("stream"));
                }
                if matches!(fam, Fam::Match | Fam::Action | Fam::Pending) {
                    ok &= c.keeps("filter", r.get("filter")) && c.keeps("ip", r.get("ip"));
                }
                ok
            })
            .collect()
    }

    fn sum_by(&self, fam: Fam, c: &Combo, keys: &[&str], keep: impl Fn(&Rec) -> bool) -> Map {
        let mut out = Map::new();
        for r in self.select(fam, c).into_iter().filter(|r| keep(r)) {
            let key: Key = keys
                .iter()
                .map(|k| (k.to_string(), r.get(k).to_string()))
                .collect();
            *out.entry(key).or_default() += r.n;
        }
        out
    }

    fn total(&self, fam: Fam, c: &Combo, keep: impl Fn(&Rec) -> bool, zero: bool) -> Map {
        let v: f64 = self
            .select(fam, c)
            .into_iter()
            .filter(|r| keep(r))
            .map(|r| r.n)
            .sum();
        if v == 0.0 && !zero {
            Map::new()
        } else {
            Map::from([(vec![], v)])
        }
    }

    /// Distinct values of `of` per `per`, where there is more than one.
    fn distinct(&self, c: &Combo, per: &str, of: &[&str]) -> Map {
        let mut seen: BTreeMap<String, BTreeSet<Vec<String>>> = BTreeMap::new();
        for r in self.select(Fam::Match, c) {
            if r.get("ip").is_empty() {
                continue;
            }
            seen.entry(r.get(per).to_string())
                .or_default()
                .insert(of.iter().map(|k| r.get(k).to_string()).collect());
        }
        seen.into_iter()
            .filter(|(_, s)| s.len() > 1)
            .map(|(v, s)| (vec![(per.to_string(), v)], s.len() as f64))
            .collect()
    }

    /// (first, last) write time of the matches per (instance, stream, filter, ip).
    fn seen(&self, c: &Combo) -> BTreeMap<Key, (f64, f64)> {
        let mut out: BTreeMap<Key, (f64, f64)> = BTreeMap::new();
        for r in self.select(Fam::Match, c) {
            if r.get("ip").is_empty() {
                continue;
            }
            let key: Key = ["filter", "instance", "ip", "stream"]
                .iter()
                .map(|k| (k.to_string(), r.get(k).to_string()))
                .collect();
            let e = out.entry(key).or_insert((r.t, r.t));
            e.0 = e.0.min(r.t);
            e.1 = e.1.max(r.t);
        }
        out
    }
}

// ---------------------------------------------------------------------------------------
// What each panel must show

fn expectation(title: &str, ref_id: &str, w: &World, c: &Combo, step: i64) -> Expect {
    use Expect::*;
    use Fam::*;
    let all = |_: &Rec| true;
    let hosts = |up: bool| -> Map {
        let mut m: Map = HOSTS
            .iter()
            .filter(|h| c.keeps("instance", h))
            .map(|h| (vec![("instance".to_string(), h.to_string())], 1.0))
            .collect();
        if up && c.keeps("instance", DEAD) {
            m.insert(vec![("instance".to_string(), DEAD.to_string())], 0.0);
        }
        m
    };
    let errors = |r: &Rec| r.get("type") != "start";
    let failed = |r: &Rec| r.get("status") == "False";
    let has_ip = |r: &Rec| !r.get("ip").is_empty();
    let tol = step as f64 + 3.0;
    match (title, ref_id) {
        ("reaction status", _) => Instant(hosts(false)),
        ("Exporter scrapes", _) => Instant(hosts(true)),
        ("reaction version", _) => Instant(
            hosts(false)
                .into_keys()
                .map(|mut k| {
                    k.push(("status".into(), "1".into()));
                    k.push(("version".into(), "2.2.0".into()));
                    (k, 1.0)
                })
                .collect(),
        ),
        ("Exporter version", _) => Instant(
            hosts(false)
                .into_keys()
                .map(|mut k| {
                    k.push(("version".into(), env!("CARGO_PKG_VERSION").into()));
                    (k, 1.0)
                })
                .collect(),
        ),
        ("Matches in range" | "Matches, last 365 days", _) => Instant(w.total(Match, c, all, false)),
        ("Actions in range" | "Actions, last 365 days", _) => Instant(w.total(Action, c, all, false)),
        ("Stream errors in range" | "Stream errors, last 365 days", _) => {
            Instant(w.total(Stream, c, errors, true))
        }
        ("Failed commands in range" | "Failed commands, last 365 days", _) => {
            Instant(w.total(Command, c, failed, true))
        }
        ("IPs matched in range" | "IPs matched, last 365 days", _) => {
            let ips: BTreeSet<&str> = w
                .select(Match, c)
                .into_iter()
                .map(|r| r.get("ip"))
                .filter(|ip| !ip.is_empty())
                .collect();
            Instant(if ips.is_empty() {
                Map::new()
            } else {
                Map::from([(vec![], ips.len() as f64)])
            })
        }
        ("Actions by filter and action", _) => {
            Instant(w.sum_by(Action, c, &["action", "filter", "instance", "stream"], all))
        }
        ("Pending actions", _) => Instant(w.total(Pending, c, all, true)),
        ("Pending actions by filter and action", _) => {
            Instant(w.sum_by(Pending, c, &["action", "filter", "instance", "stream"], all))
        }
        ("Pending actions over time", _) => Last(w.sum_by(Pending, c, &["instance"], all)),
        ("Matches, running total", _) => Last(w.sum_by(Match, c, &["instance"], all)),
        ("Actions, running total", _) => Last(w.sum_by(Action, c, &["instance"], all)),
        ("Matches per interval", _) => Sum(w.sum_by(Match, c, &["instance"], all)),
        ("Actions per interval", _) => Sum(w.sum_by(Action, c, &["instance"], all)),
        ("Matches by filter and instance" | "Matches by filter and instance, last 365 days", _) => {
            Instant(w.sum_by(Match, c, &["filter", "instance", "stream"], all))
        }
        ("Matches by filter, running total", _) => {
            Last(w.sum_by(Match, c, &["filter", "instance", "stream"], all))
        }
        ("Stream events", _) => Sum(w.sum_by(Stream, c, &["instance", "stream", "type"], all)),
        ("Commands", _) => Sum(w.sum_by(
            Command,
            c,
            &["code", "command", "instance", "state", "status"],
            all,
        )),
        ("Stream errors", _) => Instant(w.sum_by(Stream, c, &["instance", "stream", "type"], errors)),
        ("Failed commands", _) => Instant(w.sum_by(
            Command,
            c,
            &["code", "command", "instance", "state"],
            failed,
        )),
        ("Top IPs by matches" | "Top IPs by matches, last 365 days", _) => {
            Instant(w.sum_by(Match, c, &["ip"], has_ip))
        }
        ("Top IPs by actions" | "Top IPs by actions, last 365 days", _) => {
            Instant(w.sum_by(Action, c, &["action", "ip"], has_ip))
        }
        ("IPs seen in several filters" | "IPs seen in several filters, last 365 days", _) => {
            Instant(w.distinct(c, "ip", &["stream", "filter"]))
        }
        ("IPs seen on several instances", _) => Instant(w.distinct(c, "ip", &["instance"])),
        ("Where and when IPs matched", "A") => {
            Instant(w.sum_by(Match, c, &["filter", "instance", "ip", "stream"], has_ip))
        }
        // First match: from the start of its interval (Prometheus) or the scrape after it.
        ("Where and when IPs matched", "B") => Within(
            w.seen(c)
                .into_iter()
                .map(|(k, (first, _))| (k, (1000.0 * (first - tol), 1000.0 * (first + 3.0))))
                .collect(),
        ),
        ("Where and when IPs matched", "C") => Within(
            w.seen(c)
                .into_iter()
                .map(|(k, (_, last))| (k, (1000.0 * (last - 1.0), 1000.0 * (last + tol))))
                .collect(),
        ),
        ("Top IPs, running total", _) => Last(w.sum_by(Match, c, &["ip"], has_ip)),
        ("Lifetime distribution", _) => Within(
            w.seen(c)
                .into_iter()
                .map(|(k, (first, last))| (k, (last - first - tol, last - first + tol)))
                .collect(),
        ),
        ("Average lifetime per instance", _) => {
            let mut per: BTreeMap<String, Vec<f64>> = BTreeMap::new();
            for (k, (first, last)) in w.seen(c) {
                let inst = k.iter().find(|(n, _)| n == "instance").unwrap().1.clone();
                per.entry(inst).or_default().push(last - first);
            }
            LastWithin(
                per.into_iter()
                    .map(|(i, v)| {
                        let avg = v.iter().sum::<f64>() / v.len() as f64;
                        (vec![("instance".to_string(), i)], (avg - tol, avg + tol))
                    })
                    .collect(),
            )
        }
        _ => panic!(
            "no expectation for the panel {title:?} (query {ref_id}): add one to tests/dashboards_e2e.rs"
        ),
    }
}

/// The series each alert expression must give, on both databases, at the end of the
/// range (ReactionDown: none then, and only host1 while reaction was down).
fn alert_expectation(name: &str, w: &World) -> Map {
    let all = combos().remove(0);
    match name {
        "ReactionDown" => Map::new(),
        "ReactionExporterDown" => {
            Map::from([(vec![("instance".to_string(), DEAD.to_string())], 0.0)])
        }
        "ReactionHighMatches" => w
            .sum_by(Fam::Match, &all, &["instance"], |_| true)
            .into_iter()
            .map(|(k, v)| (k, v / 300.0))
            .filter(|(_, v)| *v >= 1.0)
            .collect(),
        "ReactionStreamError" => {
            w.sum_by(Fam::Stream, &all, &["instance", "stream", "type"], |r| {
                r.get("type") != "start"
            })
        }
        "ReactionCommandError" => w.sum_by(
            Fam::Command,
            &all,
            &["code", "command", "instance", "state"],
            |r| r.get("status") == "False",
        ),
        "ReactionIPUnbanned" => {
            let matches = w.sum_by(Fam::Match, &all, &["ip"], |r| !r.get("ip").is_empty());
            let acted: BTreeSet<Key> = w
                .sum_by(Fam::Action, &all, &["ip"], |_| true)
                .into_keys()
                .chain(w.sum_by(Fam::Pending, &all, &["ip"], |_| true).into_keys())
                .collect();
            matches
                .into_iter()
                .filter(|(k, v)| *v > 20.0 && !acted.contains(k))
                .collect()
        }
        other => panic!("no expectation for the alert {other}: add one to tests/dashboards_e2e.rs"),
    }
}

// ---------------------------------------------------------------------------------------
// Processes

/// A child process killed when dropped (also when the test fails).
struct Proc {
    child: Child,
    name: String,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: &str, cmd: &mut Command, log: PathBuf) -> Proc {
        let out = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            child,
            name: name.to_string(),
            log,
        }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn check_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("{} exited ({status}):\n{}", self.name, self.logs());
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum DbKind {
    Prometheus,
    Victoria,
}

struct Db {
    kind: DbKind,
    addr: String,
    proc: Proc,
}

impl Db {
    fn name(&self) -> &'static str {
        match self.kind {
            DbKind::Prometheus => "Prometheus",
            DbKind::Victoria => "VictoriaMetrics",
        }
    }

    fn query(&self, expr: &str, time: i64) -> Value {
        api(
            &self.addr,
            "/api/v1/query",
            &[("query", expr.to_string()), ("time", time.to_string())],
        )
    }

    fn query_range(&self, expr: &str, start: i64, end: i64, step: i64) -> Value {
        api(
            &self.addr,
            "/api/v1/query_range",
            &[
                ("query", expr.to_string()),
                ("start", start.to_string()),
                ("end", end.to_string()),
                ("step", step.to_string()),
            ],
        )
    }

    /// Whether Prometheus scrapes one of `instances` exactly on a whole second.
    ///
    /// Prometheus 2 selects `[t - d, t]`, both ends included: a sample scraped exactly on
    /// a whole second would be counted in two adjacent windows of a whole-second step (the
    /// dashboards tile time with `sum_over_time(...[$__interval])`). Prometheus scrapes a
    /// target at a fixed offset within the interval, drawn from a hash of the target, the
    /// host name and the external labels; the odds that it is .000 are 1 in 1000 per
    /// target, and a test must not depend on them (VictoriaMetrics' windows exclude their
    /// start).
    fn scrapes_on_whole_seconds(&self, instances: &str) -> bool {
        let r = self.query(
            &format!("timestamp(up{{instance=~\"{instances}\"}})"),
            now().ceil() as i64 + 1,
        );
        r["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| (num(&s["value"][1]) * 1000.0).round() as i64 % 1000 == 0)
    }

    /// The time of the oldest of the latest scrapes of `instances`, once each has one.
    fn last_scrape(&self, instances: &str) -> Option<f64> {
        let expr = match self.kind {
            DbKind::Prometheus => format!("timestamp(up{{instance=~\"{instances}\"}})"),
            DbKind::Victoria => format!("tlast_over_time(up{{instance=~\"{instances}\"}}[1m])"),
        };
        let r = self.query(&expr, now().ceil() as i64 + 1);
        let result = r["data"]["result"].as_array()?;
        if result.len() != instances.split('|').count() {
            return None;
        }
        result
            .iter()
            .map(|s| s["value"][1].as_str().unwrap().parse::<f64>().unwrap())
            .reduce(f64::min)
    }
}

/// The scrape configuration. For Prometheus, `attempt` is an external label: it changes
/// the seed of the scrape offsets (and nothing in the stored series).
fn scrape_config(kind: DbKind, targets: &[(String, &str)], attempt: u32) -> String {
    let mut s = format!("global:\n  scrape_interval: {SCRAPE}s\n  scrape_timeout: {SCRAPE}s\n");
    if kind == DbKind::Prometheus {
        // vmscrape refuses these keys (strict parsing).
        s.push_str(&format!(
            "  evaluation_interval: {SCRAPE}s\n  external_labels:\n    attempt: '{attempt}'\n"
        ));
    }
    s.push_str("scrape_configs:\n  - job_name: reaction\n    static_configs:\n");
    for (addr, instance) in targets {
        s.push_str(&format!(
            "      - targets: ['{addr}']\n        labels:\n          instance: {instance}\n"
        ));
    }
    s
}

fn start_db(kind: DbKind, dir: &Path, targets: &[(String, &'static str)], attempt: u32) -> Db {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let config = dir.join(match kind {
        DbKind::Prometheus => "prometheus.yml",
        DbKind::Victoria => "vmscrape.yml",
    });
    std::fs::write(&config, scrape_config(kind, targets, attempt)).unwrap();
    let data = dir.join(match kind {
        DbKind::Prometheus => format!("prometheus-data-{attempt}"),
        DbKind::Victoria => "vm-data".to_string(),
    });
    let proc = match kind {
        DbKind::Prometheus => Proc::spawn(
            "prometheus",
            Command::new(tool("prometheus", "prometheus"))
                .arg(format!("--config.file={}", config.display()))
                .arg(format!("--storage.tsdb.path={}", data.display()))
                .arg(format!("--web.listen-address={addr}"))
                .arg("--log.level=warn"),
            dir.join("prometheus.log"),
        ),
        DbKind::Victoria => Proc::spawn(
            "victoria-metrics",
            Command::new(tool("victoria-metrics", "victoria-metrics"))
                .arg(format!("-storageDataPath={}", data.display()))
                .arg(format!("-httpListenAddr={addr}"))
                .arg(format!("-promscrape.config={}", config.display()))
                // Answer with what was just scraped (the default hides the last 30 s),
                // and compute every query afresh.
                .arg("-search.latencyOffset=1s")
                .arg("-search.disableCache")
                .arg("-loggerLevel=ERROR"),
            dir.join("victoria-metrics.log"),
        ),
    };
    let mut db = Db { kind, addr, proc };
    let ready = match kind {
        DbKind::Prometheus => "/-/ready",
        DbKind::Victoria => "/health",
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        db.proc.check_running();
        if std::net::TcpStream::connect(&db.addr).is_ok()
            && http(&db.addr, "GET", ready, None).0 == 200
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} did not become ready:\n{}",
            db.name(),
            db.proc.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    db
}

fn exporter_config(host_dir: &Path, state_dir: &Path) -> String {
    format!(
        "loglevel: INFO\nlisten:\n  address: 127.0.0.1\n  port: 0\nreaction:\n  config: {}\n  \
         binary: {}\n  socket: {}\n  timeout: 2\n  hold: 0\n  logs:\n    file: {}\n    start_at: beginning\n\
         state:\n  directory: {}\n",
        host_dir.join("reaction.json").display(),
        host_dir.join("bin/reaction").display(),
        host_dir.join("reaction.sock").display(),
        host_dir.join("reaction.log").display(),
        state_dir.display(),
    )
}

// ---------------------------------------------------------------------------------------
// Comparing results

// ---------------------------------------------------------------------------------------
// The test

#[test]
fn every_panel_query_and_alert_on_real_prometheus_and_victoriametrics() {
    let begun = Instant::now();
    // Fail early, with the package to install, when a program is missing.
    tool("prometheus", "prometheus");
    tool("victoria-metrics", "victoria-metrics");

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();

    // Two hosts: a log file and a reaction CLI fixture each.
    let mut fixtures = BTreeMap::new();
    for host in HOSTS {
        let hd = dir.join(host);
        std::fs::create_dir_all(&hd).unwrap();
        let r = Reaction::new(&hd, &reaction_config());
        if host == "host1" {
            r.set_state(show_state());
        }
        append(&hd.join("reaction.log"), "");
        fixtures.insert(host, (hd, r));
    }

    // One exporter per host and per database.
    let mut exporters: Vec<(DbKind, &str, Exporter)> = Vec::new();
    for kind in [DbKind::Prometheus, DbKind::Victoria] {
        for host in HOSTS {
            let ed = dir.join(format!("{kind:?}-{host}"));
            std::fs::create_dir_all(&ed).unwrap();
            let exp = Exporter::start(&ed, &exporter_config(&fixtures[host].0, &ed));
            exporters.push((kind, host, exp));
        }
    }
    let dead = format!("127.0.0.1:{}", free_port());
    let targets = |kind: DbKind| -> Vec<(String, &'static str)> {
        let mut t: Vec<(String, &'static str)> = exporters
            .iter()
            .filter(|(k, _, _)| *k == kind)
            .map(|(_, h, e)| (e.addr.clone(), *h))
            .collect();
        t.push((dead.clone(), DEAD));
        t
    };
    let every = "host1|host2|host3";
    let first_scrapes = |db: &Db| {
        common::wait_for(Duration::from_secs(30), "the first scrapes", || {
            db.last_scrape(every)
        });
    };
    let mut dbs: Vec<Db> = Vec::new();
    for kind in [DbKind::Prometheus, DbKind::Victoria] {
        let dd = dir.join(format!("{kind:?}"));
        std::fs::create_dir_all(&dd).unwrap();
        let mut db = start_db(kind, &dd, &targets(kind), 0);
        // Both databases scrape every target before the workload starts, Prometheus off
        // the whole seconds (a new seed for the offsets otherwise).
        first_scrapes(&db);
        let mut attempt = 0;
        while kind == DbKind::Prometheus && db.scrapes_on_whole_seconds("host1|host2") {
            attempt += 1;
            assert!(attempt < 5, "Prometheus keeps scraping on whole seconds");
            drop(db);
            db = start_db(kind, &dd, &targets(kind), attempt);
            first_scrapes(&db);
        }
        dbs.push(db);
    }

    // The workload, in three phases 4 s apart; reaction is down during the second.
    let t_start = now();
    let mut world = World { recs: Vec::new() };
    let (_, r1) = &fixtures["host1"];
    for (i, phase) in phases().iter().enumerate() {
        if i > 0 {
            std::thread::sleep(Duration::from_secs(4));
        }
        match i {
            1 => r1.set_up(false),
            2 => r1.set_up(true),
            _ => {}
        }
        for host in HOSTS {
            let text: String = phase
                .iter()
                .filter(|(h, _)| *h == host)
                .map(|(_, ev)| lines(ev))
                .collect();
            let t = now();
            append(&fixtures[host].0.join("reaction.log"), &text);
            for (h, ev) in phase.iter().filter(|(h, _)| *h == host) {
                world.recs.push(rec(h, ev, t));
            }
        }
    }
    for (ip, _user, n) in PENDING {
        let ev = Ev::Action("ssh", "failedlogin", "unban", ip);
        let mut r = rec("host1", &ev, t_start);
        r.fam = Fam::Pending;
        r.n = n as f64;
        world.recs.push(r);
    }
    for host in HOSTS {
        append(&fixtures[host].0.join("reaction.log"), LAST_LINE);
    }
    for (_, _, e) in &exporters {
        e.wait_log(LAST_LINE_WARNING, Duration::from_secs(30));
    }
    let t_done = now();

    // Every count is in the databases once each has scraped both hosts after that.
    let mut last = t_done;
    for db in &dbs {
        let t = common::wait_for(
            Duration::from_secs(30),
            "scrapes after the workload",
            || db.last_scrape("host1|host2").filter(|t| *t > t_done + 0.05),
        );
        last = last.max(t);
    }
    let from = (t_start as i64 / ALIGN) * ALIGN;
    let to = ((last + 1.0) as i64 / ALIGN + 1) * ALIGN;
    // VictoriaMetrics may still adjust the points of the last seconds: query the past.
    while now() < to as f64 + 3.0 {
        std::thread::sleep(Duration::from_millis(200));
    }
    let workload_done = begun.elapsed();

    let mut failures: Vec<String> = Vec::new();
    let mut evaluated = 0usize;
    let prometheus = &dbs[0];
    let victoria = &dbs[1];

    // ------------------------------------------------------------------ dashboards
    let legacy = [
        ("dashboards/reaction-prometheus.json", prometheus),
        ("dashboards/reaction-prometheus.json", victoria),
        ("dashboards/reaction-victoriametrics.json", victoria),
    ];
    for (file, db) in legacy {
        let dashboard = load_json(file);
        let mut done: HashSet<(String, bool, i64)> = HashSet::new();
        for combo in combos() {
            let vars = combo.vars();
            let (n, wrong) = check_panel_queries(
                &dashboard,
                &combo,
                (from, to),
                &mut done,
                |expr, step| match step {
                    None => db.query(expr, to),
                    Some(step) => db.query_range(expr, from, to, step),
                },
                |q, step| expectation(&q.panel, &q.ref_id, &world, &combo, step),
                |q, step, expr| {
                    format!(
                        "{file} on {}, panel {:?} ({}), variables {:?}, step {step}s:\n    {expr}",
                        db.name(),
                        q.panel,
                        q.ref_id,
                        combo.name
                    )
                },
            );
            evaluated += n;
            failures.extend(wrong);
            // The variables' own queries.
            let (n, wrong) = check_variable_queries(
                &db.addr,
                &dashboard,
                (from, to, SCRAPE),
                &vars,
                &format!("{file} on {}, variables {:?}", db.name(), combo.name),
                |label| match label {
                    "instance" => HOSTS.iter().map(|h| h.to_string()).collect(),
                    l => world
                        .select(Fam::Match, &combo.for_variable(l))
                        .into_iter()
                        .map(|r| r.get(l).to_string())
                        .collect(),
                },
            );
            evaluated += n;
            failures.extend(wrong);
        }
    }

    // ------------------------------------------------------------------ alert rules
    let rules: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(root().join("alerts/reaction.rules.yml")).unwrap(),
    )
    .unwrap();
    let mut alerts = 0;
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            let Some(name) = rule["alert"].as_str() else {
                continue;
            };
            let expr = rule["expr"].as_str().unwrap().trim();
            alerts += 1;
            for db in &dbs {
                let what = format!("alert {name} on {}:\n    {expr}", db.name());
                let r = db.query(expr, to);
                evaluated += 1;
                if r["status"] != "success" {
                    failures.push(format!("{what}\n    error: {}", r["error"]));
                    continue;
                }
                if let Err(diff) = check(&r, &Expect::Instant(alert_expectation(name, &world))) {
                    failures.push(format!("{what}\n    at the end: {diff}"));
                }
                if name == "ReactionDown" {
                    // While reaction was down: host1, and only host1.
                    let r = db.query_range(expr, from, to, SCRAPE);
                    evaluated += 1;
                    let series = r["data"]["result"].as_array().cloned().unwrap_or_default();
                    let hosts: BTreeSet<String> = series
                        .iter()
                        .map(|s| s["metric"]["instance"].as_str().unwrap().to_string())
                        .collect();
                    if hosts != BTreeSet::from(["host1".to_string()]) {
                        failures.push(format!(
                            "{what}\n    over the range: instances {hosts:?}, want host1 only ({r})"
                        ));
                    }
                }
            }
        }
    }
    assert_eq!(alerts, 6, "alerts/reaction.rules.yml has 6 alerts");

    // The Python exporter's rules: refused by Prometheus, silently taken by VictoriaMetrics.
    for legacy_rule in [
        "rate(sum(reaction_match_count) by (instance)[5m]) >= 1",
        "sum(reaction_match_count[1h]) by (ip) > 20",
    ] {
        let p = prometheus.query(legacy_rule, to);
        let v = victoria.query(legacy_rule, to);
        if p["status"] != "error" || v["status"] != "success" {
            failures.push(format!(
                "the legacy rule {legacy_rule:?}: Prometheus {}, VictoriaMetrics {}",
                p["status"], v["status"]
            ));
        }
    }

    // ------------------------------------------------------------------ OpenTelemetry
    // No Collector here: the queries must be valid PromQL for Prometheus (empty results).
    let otel = load_json("dashboards/reaction-otel.json");
    for step in STEPS {
        let vars = combos()[0].vars();
        let sub = Substitution {
            from,
            to,
            interval: step,
            scrape_interval: SCRAPE,
            vars: &vars,
        };
        for q in queries(&otel) {
            let expr = sub.apply(&q.expr);
            let r = if q.instant {
                prometheus.query(&expr, to)
            } else {
                prometheus.query_range(&expr, from, to, step)
            };
            evaluated += 1;
            if r["status"] != "success" {
                failures.push(format!(
                    "dashboards/reaction-otel.json on Prometheus, panel {:?}, step {step}s:\n    {expr}\n    error: {}",
                    q.panel, r["error"]
                ));
            }
        }
    }

    for db in &dbs {
        let logs = db.proc.logs();
        assert!(
            !logs.contains("panic"),
            "{} logged a panic:\n{logs}",
            db.name()
        );
    }
    eprintln!(
        "dashboards_e2e: range {from}..{to} ({} s), {evaluated} queries, workload and scrapes {:.1} s, total {:.1} s",
        to - from,
        workload_done.as_secs_f64(),
        begun.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} of {evaluated} checks failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
