//! Event counts added up over scrapes: `/metrics` shows what happened since the previous
//! scrape, so a test that waits for events scrapes repeatedly and adds the pages up.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::{samples, wait_for, Exporter, Series};

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
