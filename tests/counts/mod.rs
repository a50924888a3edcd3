//! Event counts added up over scrapes: `/metrics` shows what happened since the previous
//! scrape, so a test that waits for events scrapes repeatedly and adds the pages up.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::common::{samples, ssh_match, wait_for, Exporter, Series};

pub const WAIT: Duration = Duration::from_secs(30);

/// The families that count events since the last scrape.
pub const DELTA: [&str; 4] = [
    "reaction_match_count",
    "reaction_action_count",
    "reaction_commands_count",
    "reaction_stream_event_count",
];

/// Event counts added up over scrapes, and the last page.
#[derive(Default)]
pub struct Counts {
    pub sums: BTreeMap<Series, f64>,
    pub last: String,
}

impl Counts {
    pub fn add(&mut self, body: String) {
        for (series, v) in samples(&body) {
            if DELTA.contains(&series.0.as_str()) {
                *self.sums.entry(series).or_default() += v;
            }
        }
        self.last = body;
    }

    /// The sum of the one series of `family` whose labels are exactly `labels`, in order.
    pub fn exact(&self, family: &str, labels: &[(&str, &str)]) -> f64 {
        self.sums
            .get(&(family.to_string(), owned(labels)))
            .copied()
            .unwrap_or(0.0)
    }

    /// The sum of all series of `family`.
    pub fn total(&self, family: &str) -> f64 {
        self.sums
            .iter()
            .filter(|((name, _), _)| name == family)
            .map(|(_, v)| v)
            .sum()
    }

    /// The series of `family`, labels in output order.
    pub fn series(&self, family: &str) -> Vec<(Vec<(String, String)>, f64)> {
        self.sums
            .iter()
            .filter(|((name, _), _)| name == family)
            .map(|((_, labels), v)| (labels.clone(), *v))
            .collect()
    }

    /// Scrape until `done`, adding the pages up.
    pub fn until(&mut self, e: &Exporter, what: &str, done: impl Fn(&Counts) -> bool) {
        wait_for(WAIT, what, || {
            self.add(e.scrape());
            done(self).then_some(())
        });
    }
}

pub fn owned(labels: &[(&str, &str)]) -> Vec<(String, String)> {
    labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The value of a sample with exactly these labels on one page (gauges, totals).
pub fn value(body: &str, family: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples(body)
        .get(&(family.to_string(), owned(labels)))
        .copied()
}

// ---- Match counts by series (the `ssh.failedlogin` filter of `reaction_config`) ----

/// The labels of one `reaction_match_count` series.
pub type Labels = Vec<(String, String)>;
/// Match counts by series.
pub type Tally = BTreeMap<Labels, f64>;

pub fn labels(ip: &str, user: &str) -> Labels {
    [
        ("stream", "ssh"),
        ("filter", "failedlogin"),
        ("ip", ip),
        ("user", user),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The match counts of one page.
pub fn matches(page: &str) -> Tally {
    samples(page)
        .into_iter()
        .filter(|((name, _), _)| name == "reaction_match_count")
        .map(|((_, labels), v)| (labels, v))
        .collect()
}

/// The match and action counts of one page, each series keyed by its labels after
/// `("__name__", family)`: actions with their pattern labels, so that a test compares
/// labels exactly, not only counts.
pub fn events(page: &str) -> Tally {
    samples(page)
        .into_iter()
        .filter(|((name, _), _)| name == "reaction_match_count" || name == "reaction_action_count")
        .map(|((name, labels), v)| {
            let mut key = vec![("__name__".to_string(), name)];
            key.extend(labels);
            (key, v)
        })
        .collect()
}

/// The key of [`events`] for an `ssh.failedlogin` match (`action` None) or action.
pub fn event(action: Option<&str>, ip: &str, user: &str) -> Labels {
    let family = match action {
        Some(_) => "reaction_action_count",
        None => "reaction_match_count",
    };
    let mut key = vec![
        ("__name__", family),
        ("stream", "ssh"),
        ("filter", "failedlogin"),
    ];
    if let Some(a) = action {
        key.push(("action", a));
    }
    key.extend([("ip", ip), ("user", user)]);
    owned(&key)
}

pub fn add(into: &mut Tally, page: &Tally) {
    for (k, v) in page {
        *into.entry(k.clone()).or_default() += v;
    }
}

pub fn sum(t: &Tally) -> f64 {
    // + 0.0: an empty sum is -0.0
    t.values().sum::<f64>() + 0.0
}

/// The series of `seen` counted twice beyond what `allowed` lets them (a documented window
/// of double counting): (series, counted twice, allowed).
pub fn beyond(seen: &Tally, expected: &Tally, allowed: &Tally) -> Vec<(Labels, f64, f64)> {
    seen.iter()
        .filter_map(|(k, got)| {
            let twice = got - expected.get(k).copied().unwrap_or(0.0);
            let may = allowed.get(k).copied().unwrap_or(0.0);
            (twice > may).then(|| (k.clone(), twice, may))
        })
        .collect()
}

/// (lost, counted twice or more) of `seen` against `expected`.
pub fn compare(seen: &Tally, expected: &Tally) -> (f64, f64) {
    let mut lost = 0.0;
    let mut extra = 0.0;
    for (k, want) in expected {
        let got = seen.get(k).copied().unwrap_or(0.0);
        if got < *want {
            lost += want - got;
        }
    }
    for (k, got) in seen {
        let want = expected.get(k).copied().unwrap_or(0.0);
        if *got > want {
            extra += got - want;
        }
    }
    (lost, extra)
}

/// `n` match lines (one per line) for IPs `192.0.<block>.0..n`, user root, and their counts.
pub fn block(block: u32, n: u32) -> (String, Tally) {
    let mut text = String::new();
    let mut counts = Tally::new();
    for i in 0..n {
        let ip = format!("192.0.{block}.{i}");
        text.push_str(&ssh_match(&ip, "root"));
        *counts.entry(labels(&ip, "root")).or_default() += 1.0;
    }
    (text, counts)
}

pub fn merged(parts: &[&Tally]) -> Tally {
    let mut all = Tally::new();
    for p in parts {
        add(&mut all, p);
    }
    all
}

/// Match counts added up over the scrapes of one exporter.
pub struct Scrapes<'a> {
    pub e: &'a Exporter,
    pub seen: Tally,
    pub last: String,
}

impl<'a> Scrapes<'a> {
    pub fn new(e: &'a Exporter) -> Self {
        Scrapes {
            e,
            seen: Tally::new(),
            last: String::new(),
        }
    }

    /// Scrape once, add the page's match counts, and return the page.
    pub fn scrape(&mut self) -> &str {
        self.last = self.e.scrape();
        add(&mut self.seen, &matches(&self.last));
        &self.last
    }

    /// Scrape until the counts are `expected` (never more), then check that they stay so.
    pub fn expect(&mut self, expected: &Tally) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            self.scrape();
            let (_, extra) = compare(&self.seen, expected);
            assert_eq!(
                extra,
                0.0,
                "counted more than expected: {:?}\nexpected {expected:?}\nlog:\n{}",
                self.seen,
                self.e.logs()
            );
            if &self.seen == expected {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "counts {:?}\nexpected {expected:?}\nlog:\n{}",
                self.seen,
                self.e.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(700));
        self.scrape();
        assert_eq!(&self.seen, expected, "log:\n{}", self.e.logs());
    }
}
