//! The legacy `/metrics` text: the Python exporter's family names, HELP, types, label sets
//! and label order, in OpenMetrics 1.0 or Prometheus text 0.0.4 (negotiated on `Accept`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::collect::Attrs;
use crate::memory::prefetch;
use crate::metric::{
    is_valid_label_name, sanitize_label_name, Legacy, Metric, BUILD_INFO, BUILD_INFO_HELP,
};

/// The format of a `/metrics` page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpositionFormat {
    /// OpenMetrics 1.0.
    OpenMetrics,
    /// Prometheus text 0.0.4.
    Text,
}

impl ExpositionFormat {
    pub(crate) const OPENMETRICS_TYPE: &'static str =
        "application/openmetrics-text; version=1.0.0; charset=utf-8";
    pub(crate) const TEXT_TYPE: &'static str = "text/plain; version=0.0.4; charset=utf-8";

    /// OpenMetrics when the `Accept` header asks for it with a higher (or equal) quality
    /// than text; Prometheus text otherwise (also for a missing header and `*/*`).
    pub(crate) fn from_accept(accept: Option<&str>) -> ExpositionFormat {
        let Some(accept) = accept else {
            return ExpositionFormat::Text;
        };
        let mut om: Option<f32> = None;
        let mut text: Option<f32> = None;
        for part in accept.split(',') {
            let mut params = part.split(';').map(str::trim);
            let media = params.next().unwrap_or("").to_ascii_lowercase();
            let mut q = 1.0f32;
            for p in params {
                if let Some(v) = p.strip_prefix("q=") {
                    q = v.parse().unwrap_or(0.0);
                }
            }
            match media.as_str() {
                "application/openmetrics-text" => om = Some(om.map_or(q, |o| o.max(q))),
                "text/plain" => text = Some(text.map_or(q, |t| t.max(q))),
                _ => {}
            }
        }
        match (om, text) {
            (Some(o), t) if o > 0.0 && o >= t.unwrap_or(0.0) => ExpositionFormat::OpenMetrics,
            _ => ExpositionFormat::Text,
        }
    }

    pub(crate) fn content_type(self) -> &'static str {
        match self {
            ExpositionFormat::OpenMetrics => Self::OPENMETRICS_TYPE,
            ExpositionFormat::Text => Self::TEXT_TYPE,
        }
    }
}

/// What one scrape shows: samples per family (any order), attributes as collected,
/// borrowed from wherever the scrape keeps them.
#[derive(Debug, Default)]
pub struct Exposition<'a> {
    pub(crate) families: BTreeMap<Metric, Vec<(&'a Attrs, f64)>>,
}

impl<'a> Exposition<'a> {
    /// The samples, each family's reserved at its size first (issue 13: grown sample by
    /// sample, they took twice their size and more at the scrape's peak).
    pub fn of(samples: impl Iterator<Item = (Metric, &'a Attrs, f64)> + Clone) -> Exposition<'a> {
        let mut sizes: BTreeMap<Metric, usize> = BTreeMap::new();
        for (m, _, _) in samples.clone() {
            *sizes.entry(m).or_default() += 1;
        }
        let mut families: BTreeMap<Metric, Vec<(&'a Attrs, f64)>> = sizes
            .into_iter()
            .map(|(m, n)| (m, Vec::with_capacity(n)))
            .collect();
        for (m, attrs, v) in samples {
            families.entry(m).or_default().push((attrs, v));
        }
        Exposition { families }
    }

    /// Add a sample of `metric`.
    pub fn push(&mut self, metric: Metric, attrs: &'a Attrs, value: f64) {
        self.families
            .entry(metric)
            .or_default()
            .push((attrs, value));
    }
}

/// Render the whole page. `internals` shows the exporter's own families.
pub fn render(
    exp: &Exposition,
    build_version: &str,
    internals: bool,
    format: ExpositionFormat,
) -> String {
    // Every family sorted first, so that the page's size is known (the lines' labels as
    // the sort reads them): reserved once, it is never copied to grow.
    let shown: Vec<Family> = (Metric::ALL.iter())
        .filter(|m| **m != Metric::Up && (internals || !m.spec().internal))
        .filter_map(|&m| {
            let samples = exp.families.get(&m).filter(|s| !s.is_empty())?;
            let fixed = m.spec().attributes;
            let mut line = Line::new(fixed);
            let order = sorted(fixed, samples, &mut line);
            if samples.len() >= RELEASE_AFTER_SORT {
                // The sort's keys and rows (about 70 bytes per sample) are freed: given
                // back before the page is written, rather than resident beside it at the
                // scrape's peak.
                crate::memory::release_freed();
            }
            Some(Family {
                metric: m,
                samples,
                line,
                order,
            })
        })
        .collect();
    let lines: usize = (shown.iter())
        .map(|f| f.line.bytes + f.samples.len() * (f.metric.spec().legacy.len() + 32))
        .sum();
    let mut out = String::with_capacity(4096 + lines);

    header(&mut out, BUILD_INFO, BUILD_INFO_HELP, "gauge");
    out.push_str(BUILD_INFO);
    out.push_str("{version=\"");
    escape_value(&mut out, build_version);
    out.push_str("\"} 1.0\n");

    // The families in table order; the status line always, in its legacy shape.
    let mut shown = shown.into_iter().peekable();
    for &m in Metric::ALL {
        if m == Metric::Up {
            status_info(&mut out, exp.families.get(&m));
        }
        if let Some(f) = shown.next_if(|f| f.metric == m) {
            f.write(&mut out, format);
        }
    }
    if format == ExpositionFormat::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

/// `reaction_status_info{version="…",status="1"} 1.0`: reaction's version and whether it
/// answers, as labels of a constant 1 (the Python exporter's shape of `reaction.up`).
fn status_info(out: &mut String, samples: Option<&Vec<(&Attrs, f64)>>) {
    let up = Metric::Up.spec();
    header(out, up.legacy, up.help, "gauge");
    let (version, status) = samples
        .and_then(|s| s.first())
        .map(|(a, v)| {
            let version = a
                .iter()
                .find(|(k, _)| *k == "version")
                .map(|(_, v)| v)
                .unwrap_or("N/A");
            (version, if *v > 0.0 { "1" } else { "0" })
        })
        .unwrap_or(("N/A", "0"));
    out.push_str(up.legacy);
    out.push_str("{version=\"");
    escape_value(out, version);
    out.push_str("\",status=\"");
    out.push_str(status);
    out.push_str("\"} 1.0\n");
}

/// A family to show, sorted.
struct Family<'a> {
    metric: Metric,
    samples: &'a [(&'a Attrs, f64)],
    /// The line the sort read every sample into (its layouts, and the bytes of the labels).
    line: Line<'a>,
    order: Order,
}

impl Family<'_> {
    /// Write the family's header and lines, in order.
    fn write(self, out: &mut String, format: ExpositionFormat) {
        let Family {
            metric: m,
            samples,
            mut line,
            order,
        } = self;
        let fam = m.spec();
        let (type_name, family_name) = match (fam.legacy_kind, format) {
            (Legacy::Counter, ExpositionFormat::OpenMetrics) => {
                ("counter", fam.legacy.trim_end_matches("_total"))
            }
            (Legacy::Counter, ExpositionFormat::Text) => ("counter", fam.legacy),
            _ => ("gauge", fam.legacy),
        };
        header(out, family_name, fam.help, type_name);
        // The samples sort by the tuple of their label values in label order, on a short
        // contiguous key per row (see `sort_key`; a tie between cut keys compares the values
        // themselves); then each line is written once, straight into the page, in order
        // (issue 13: a copy of the lines and one of the whole values beside the page took as
        // much memory again as the page, 1.9 GiB at the peak of the worst case).
        for j in 0..samples.len() {
            // In sorted order, each sample, its attributes and their string are all scattered:
            // each is asked for ahead of its use, the one after it once it has loaded.
            if let Some(i) = order.at(j + 3 * AHEAD) {
                prefetch(&samples[i]);
            }
            if let Some(i) = order.at(j + 2 * AHEAD) {
                prefetch(samples[i].0);
            }
            if let Some(i) = order.at(j + AHEAD) {
                prefetch(samples[i].0.packed());
            }
            let Some(i) = order.at(j) else { break };
            let (attrs, v) = samples[i];
            line.read(attrs);
            out.push_str(fam.legacy);
            line.write_labels(out);
            out.push(' ');
            value(out, v);
            out.push('\n');
        }
    }
}

/// A sample's labels in line order: the family's fixed labels in their order, then the
/// others (pattern labels) by name. Attributes come sorted by key, and a family's samples
/// have a few sets of keys (one per filter's patterns): where each label comes from and the
/// text of its name are worked out once per set of keys, not for every sample (issue 13:
/// ordering each sample's pairs by label position, twice, and checking its label names,
/// was a fifth of the render; then, with one layout kept, the samples of two filters in
/// collection order made a new layout at each switch between them: about 45 ms of a
/// 600k-series scrape in `perf`).
struct Line<'a> {
    fixed: &'a [&'a str],
    /// The sample read last: its pairs in attribute (key) order.
    pairs: Vec<(&'a str, &'a str)>,
    /// The layouts made, the one used last first; at most [`LAYOUTS`].
    layouts: Vec<Layout<'a>>,
    /// The bytes of the labels of every sample read (`{…}`, values unescaped).
    bytes: usize,
}

/// Where each label of a line comes from, for one set of keys.
struct Layout<'a> {
    /// The keys, in attribute order.
    keys: Vec<&'a str>,
    /// `order[j]`: the index in the pairs of the line's `j`-th label.
    order: Vec<usize>,
    /// What goes before the line's `j`-th value: `{name="`, then `,name="`.
    names: Vec<String>,
    /// The bytes of a line's labels but their values: the names, the closing quotes and
    /// brace.
    names_len: usize,
}

/// Layouts kept per family: past this many sets of keys, the one used longest ago is made
/// again when needed (a bound on the search, whatever the filters' patterns).
const LAYOUTS: usize = 16;

impl<'a> Line<'a> {
    fn new(fixed: &'a [&'a str]) -> Line<'a> {
        Line {
            fixed,
            pairs: Vec::with_capacity(8),
            layouts: Vec::new(),
            bytes: 0,
        }
    }

    /// Read `attrs`' pairs (once: they are parsed as they are read, see
    /// `telemetry::packed`).
    fn read(&mut self, attrs: &'a Attrs) {
        self.pairs.clear();
        self.pairs.extend(attrs.iter());
        let pairs = &self.pairs;
        let found = self.layouts.iter().position(|l| {
            l.keys.len() == pairs.len() && pairs.iter().zip(&l.keys).all(|((k, _), key)| k == key)
        });
        match found {
            Some(0) => {}
            Some(i) => self.layouts[..=i].rotate_right(1),
            None => {
                if self.layouts.len() == LAYOUTS {
                    self.layouts.pop();
                }
                let layout = Layout::of(self.fixed, pairs);
                self.layouts.insert(0, layout);
            }
        }
        let values: usize = self.pairs.iter().map(|(_, v)| v.len()).sum();
        self.bytes += self.layouts[0].names_len + values;
    }

    fn layout(&self) -> &Layout<'a> {
        // (`read` leaves the sample's layout first.)
        &self.layouts[0]
    }

    /// The values, in line order.
    fn values(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.layout().order.iter().map(|&i| self.pairs[i].1)
    }

    /// `{name="value",…}`, or nothing for no labels.
    fn write_labels(&self, out: &mut String) {
        let layout = self.layout();
        for (name, &i) in layout.names.iter().zip(&layout.order) {
            out.push_str(name);
            escape_value(out, self.pairs[i].1);
            out.push('"');
        }
        if !layout.order.is_empty() {
            out.push('}');
        }
    }
}

impl<'a> Layout<'a> {
    fn of(fixed: &[&str], pairs: &[(&'a str, &'a str)]) -> Layout<'a> {
        let keys: Vec<&'a str> = pairs.iter().map(|(k, _)| *k).collect();
        let mut order: Vec<usize> = (0..keys.len()).collect();
        // Stable: the others stay in key order.
        order.sort_by_key(|&i| {
            fixed
                .iter()
                .position(|f| *f == keys[i])
                .unwrap_or(fixed.len())
        });
        let names: Vec<String> = (order.iter().enumerate())
            .map(|(j, &i)| {
                let mut name = String::from(if j == 0 { "{" } else { "," });
                label_name(&mut name, keys[i]);
                name.push_str("=\"");
                name
            })
            .collect();
        let names_len = names.iter().map(String::len).sum::<usize>()
            + order.len()
            + usize::from(!order.is_empty());
        Layout {
            keys,
            order,
            names,
            names_len,
        }
    }
}

/// The indices of `samples` in the order of the tuples of their label values in label
/// order, sorted on a short contiguous key per sample (see `sort_key`; a tie between cut
/// keys compares the values themselves): see [`sort_rows`]. Once sorted, only the indices
/// are kept: 4 bytes per series while the lines are written. Every sample is read into
/// `line`, which counts the bytes of their labels.
fn sorted<'a>(fixed: &[&str], samples: &'a [(&'a Attrs, f64)], line: &mut Line<'a>) -> Order {
    let mut keys: Vec<u8> = Vec::with_capacity(samples.len() * 48);
    let mut rows: Vec<Row> = Vec::with_capacity(samples.len());
    let mut too_many = false;
    for (i, (attrs, _)) in samples.iter().enumerate() {
        // The strings are scattered: the next ones load while this one is read (issue 13:
        // a scrape of 600k series waited on memory most of the time it read them).
        if let Some((ahead, _)) = samples.get(i + AHEAD) {
            prefetch(ahead.packed());
        }
        line.read(attrs);
        if too_many {
            continue;
        }
        let k0 = keys.len();
        sort_key(line.values(), &mut keys);
        match (
            u32::try_from(k0),
            u32::try_from(keys.len()),
            u32::try_from(i),
        ) {
            (Ok(k0), Ok(k1), Ok(i)) => rows.push(Row {
                head: 0,
                key: [k0, k1],
                sample: i,
            }),
            // Past 4 GiB of keys or 2^32 series: sort on the values themselves (the
            // samples still all read, for the page's size).
            _ => {
                too_many = true;
                (keys, rows) = (Vec::new(), Vec::new());
            }
        }
    }
    if too_many {
        return sorted_by_values(fixed, samples);
    }
    sort_rows(&mut rows, &keys, |a, b| {
        ordered_values(fixed, samples[a as usize].0)
            .cmp(ordered_values(fixed, samples[b as usize].0))
    });
    drop(keys);
    Order::Rows(rows.into_iter().map(|r| r.sample).collect())
}

/// A sample being sorted: where its key is in the keys, and eight of its bytes.
struct Row {
    /// The key's eight bytes being compared, as a big-endian number (see [`head`]).
    head: u64,
    /// Where the key starts and ends.
    key: [u32; 2],
    sample: u32,
}

/// Sort `rows` by their keys, eight bytes at a time (a most-significant-digit radix sort
/// whose digits are sorted by comparison): the rows by the heads of their keys, then each
/// run of equal heads by their next eight bytes, and so on, a run whose heads are all equal
/// passed on without sorting (the stream's and filter's names). `cut_tie` orders two
/// samples whose keys are equal and were cut (see `sort_key`). Issue 13: a sort comparing
/// whole keys spent most of its time waiting for two scattered keys per comparison, a tenth
/// of a 600k-series scrape; here most comparisons are of two numbers in the rows, and the
/// keys are read in passes, asked for ahead.
fn sort_rows(rows: &mut [Row], keys: &[u8], cut_tie: impl Fn(u32, u32) -> std::cmp::Ordering) {
    let key = |r: &Row| &keys[r.key[0] as usize..r.key[1] as usize];
    // Runs still to sort: (start, end, offset of the bytes to compare).
    let mut todo: Vec<(usize, usize, usize)> = vec![(0, rows.len(), 0)];
    while let Some((start, end, at)) = todo.pop() {
        let run = &mut rows[start..end];
        let mut ended = true;
        for j in 0..run.len() {
            if let Some(ahead) = run
                .get(j + AHEAD)
                .and_then(|r| keys.get(r.key[0] as usize..))
            {
                prefetch(ahead);
            }
            let k = key(&run[j]);
            run[j].head = head(k.get(at..).unwrap_or_default());
            ended &= k.len() <= at + 8;
        }
        if ended {
            // Equal heads now mean keys equal but for trailing NULs (empty values), the
            // shorter first, or equal keys.
            run.sort_unstable_by(|a, b| {
                (a.head, a.key[1] - a.key[0])
                    .cmp(&(b.head, b.key[1] - b.key[0]))
                    .then_with(|| match (key(a).last(), key(b).last()) {
                        (Some(0xFF), Some(0xFF)) => cut_tie(a.sample, b.sample),
                        _ => std::cmp::Ordering::Equal,
                    })
            });
            continue;
        }
        if run.iter().all(|r| r.head == run[0].head) {
            todo.push((start, end, at + 8));
            continue;
        }
        run.sort_unstable_by_key(|r| r.head);
        let mut s = 0;
        while s < run.len() {
            let e = s + run[s..]
                .iter()
                .take_while(|r| r.head == run[s].head)
                .count();
            if e - s > 1 {
                todo.push((start + s, start + e, at + 8));
            }
            s = e;
        }
    }
}

/// The first eight bytes of `key` as a big-endian number, zeros after its end: two keys'
/// heads compare as their first eight bytes do, a key that ends first as if followed by
/// NULs.
fn head(key: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = key.len().min(8);
    b[..n].copy_from_slice(&key[..n]);
    u64::from_be_bytes(b)
}

/// [`sorted`] without keys: each comparison reads the values.
fn sorted_by_values(fixed: &[&str], samples: &[(&Attrs, f64)]) -> Order {
    let mut order: Vec<usize> = (0..samples.len()).collect();
    order.sort_unstable_by(|&a, &b| {
        ordered_values(fixed, samples[a].0).cmp(ordered_values(fixed, samples[b].0))
    });
    Order::Indices(order)
}

/// The order [`sorted`] found.
enum Order {
    Rows(Vec<u32>),
    Indices(Vec<usize>),
}

impl Order {
    /// The index of the `j`-th sample in order.
    fn at(&self, j: usize) -> Option<usize> {
        match self {
            Order::Rows(rows) => rows.get(j).map(|&i| i as usize),
            Order::Indices(order) => order.get(j).copied(),
        }
    }

    /// The samples' indices, in order.
    #[cfg(test)]
    fn indices(&self) -> Vec<usize> {
        (0..).map_while(|j| self.at(j)).collect()
    }
}

/// A family of at least this many samples gives its sort's memory back before its lines
/// are written (its keys and rows, about 70 bytes a sample; below, not worth a call).
/// Measured on the e2e bench's (a), 40,336 series: the scrape's peak 45.5 -> 44.5-44.8 MiB
/// from 50,000 to 10,000.
const RELEASE_AFTER_SORT: usize = 10_000;

/// How many samples ahead of the one being read the next ones are asked for.
const AHEAD: usize = 8;

/// Bytes of a label value kept in a row's sort key; a longer value ends the key.
const KEY_PREFIX: usize = 64;

/// A row's sort key, appended to `keys`: its label values in label order, separated by NUL,
/// up to the first value longer than [`KEY_PREFIX`] bytes, of which only that many bytes
/// are kept, followed by 0xFF (never in UTF-8), and nothing after. Keys compare like the
/// tuples of values (values hold no NUL): a cut value sorts after an equal prefix followed
/// by NUL or nothing, and two keys are equal only for equal tuples or when both were cut
/// at the same prefix, where the values must be compared themselves. A cut key, and only a
/// cut one, ends with 0xFF.
fn sort_key<'a>(values: impl Iterator<Item = &'a str>, keys: &mut Vec<u8>) {
    for (i, v) in values.enumerate() {
        if i > 0 {
            keys.push(0);
        }
        if v.len() > KEY_PREFIX {
            keys.extend_from_slice(&v.as_bytes()[..KEY_PREFIX]);
            keys.push(0xFF);
            return;
        }
        keys.extend_from_slice(v.as_bytes());
    }
}

/// The values of a sample's labels in line order, as [`Line`] gives them, without collecting
/// them.
fn ordered_values<'a>(fixed: &'a [&'a str], attrs: &'a Attrs) -> impl Iterator<Item = &'a str> {
    let named = fixed
        .iter()
        .filter_map(move |name| attrs.iter().find(|(k, _)| k == name).map(|(_, v)| v));
    let others = attrs
        .iter()
        .filter(move |(k, _)| !fixed.contains(k))
        .map(|(_, v)| v);
    named.chain(others)
}

fn header(out: &mut String, name: &str, help: &str, type_name: &str) {
    out.push_str("# HELP ");
    out.push_str(name);
    out.push(' ');
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push_str("\n# TYPE ");
    out.push_str(name);
    out.push(' ');
    out.push_str(type_name);
    out.push('\n');
}

/// Label names must match `[a-zA-Z_][a-zA-Z0-9_]*`; see [`crate::label::label_name`].
fn label_name(out: &mut String, name: &str) {
    if is_valid_label_name(name) {
        out.push_str(name);
    } else {
        out.push_str(&sanitize_label_name(name));
    }
}

fn escape_value(out: &mut String, v: &str) {
    if memchr::memchr3(b'\\', b'"', b'\n', v.as_bytes()).is_none() {
        out.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Python's float repr for the values we produce: `3.0`, `0.25`, `1764115267.5`.
fn value(out: &mut String, v: f64) {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        out.push_str(itoa::Buffer::new().format(v as i64));
        out.push_str(".0");
    } else {
        let _ = write!(out, "{v}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::telemetry::collect::attrs_of as a;

    #[test]
    fn accept_negotiation() {
        assert_eq!(ExpositionFormat::from_accept(None), ExpositionFormat::Text);
        assert_eq!(
            ExpositionFormat::from_accept(Some("*/*")),
            ExpositionFormat::Text
        );
        assert_eq!(
            ExpositionFormat::from_accept(Some(
                "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
            )),
            ExpositionFormat::OpenMetrics
        );
        assert_eq!(
            ExpositionFormat::from_accept(Some(
                "text/plain;version=0.0.4;q=1,application/openmetrics-text;q=0.5"
            )),
            ExpositionFormat::Text
        );
        assert_eq!(
            ExpositionFormat::from_accept(Some("application/openmetrics-text; q=0")),
            ExpositionFormat::Text
        );
    }

    #[test]
    fn legacy_page_exactly() {
        let up = a(&[("version", "2.2.0")]);
        let m1 = a(&[
            ("stream", "ssh"),
            ("filter", "failedlogin"),
            ("ip", "1.2.3.4"),
        ]);
        let m2 = a(&[
            ("stream", "ssh"),
            ("filter", "failedlogin"),
            ("ip", "1.2.3.10"),
        ]);
        let c = a(&[
            ("state", "start"),
            ("command", "iptables"),
            ("status", "True"),
            ("code", "0"),
        ]);
        let none = Attrs::new();
        let mut e = Exposition::default();
        e.push(Metric::Up, &up, 1.0);
        e.push(Metric::Matches, &m1, 3.0);
        e.push(Metric::Matches, &m2, 1.0);
        e.push(Metric::CommandRuns, &c, 2.0);
        e.push(Metric::LinesRead, &none, 7.0);
        let text = render(&e, "0.1.0", false, ExpositionFormat::Text);
        assert_eq!(
            text,
            "# HELP reaction_exporter_build_info A metric with a constant '1' value labelled by version of reaction_metrics_exporter.\n\
             # TYPE reaction_exporter_build_info gauge\n\
             reaction_exporter_build_info{version=\"0.1.0\"} 1.0\n\
             # HELP reaction_status_info A metric with a constant '1' value labelled by version of reaction and its status.\n\
             # TYPE reaction_status_info gauge\n\
             reaction_status_info{version=\"2.2.0\",status=\"1\"} 1.0\n\
             # HELP reaction_commands_count Number of commands launched by reaction, labelled with moment, success status and exit code.\n\
             # TYPE reaction_commands_count gauge\n\
             reaction_commands_count{state=\"start\",command=\"iptables\",status=\"True\",code=\"0\"} 2.0\n\
             # HELP reaction_match_count Number of matches, labelled by stream and filter names, with pattern=match extra labels.\n\
             # TYPE reaction_match_count gauge\n\
             reaction_match_count{stream=\"ssh\",filter=\"failedlogin\",ip=\"1.2.3.10\"} 1.0\n\
             reaction_match_count{stream=\"ssh\",filter=\"failedlogin\",ip=\"1.2.3.4\"} 3.0\n"
        );
        let om = render(&e, "0.1.0", true, ExpositionFormat::OpenMetrics);
        assert!(om.ends_with(
            "# HELP reaction_exporter_lines_read Log lines read from the source.\n\
             # TYPE reaction_exporter_lines_read counter\n\
             reaction_exporter_lines_read_total 7.0\n# EOF\n"
        ));
    }

    #[test]
    fn status_defaults_when_unknown() {
        let text = render(&Exposition::default(), "x", false, ExpositionFormat::Text);
        assert!(text.contains("reaction_status_info{version=\"N/A\",status=\"0\"} 1.0\n"));
    }

    #[test]
    fn escaping_and_sanitizing() {
        let m = a(&[
            ("stream", "s"),
            ("filter", "f"),
            ("otel.metric.overflow", "true"),
            ("ua", "a\"b\\c\nd"),
        ]);
        let mut e = Exposition::default();
        e.push(Metric::Matches, &m, 1.0);
        let text = render(&e, "x", false, ExpositionFormat::Text);
        assert!(text.contains(
            "reaction_match_count{stream=\"s\",filter=\"f\",otel_metric_overflow=\"true\",ua=\"a\\\"b\\\\c\\nd\"} 1.0\n"
        ));
    }

    /// Guards the render's sort key: values longer than its 64-byte prefix, sharing it,
    /// still sort like the tuples of values (a cut key equal to another is compared on the
    /// values themselves).
    #[test]
    fn long_values_sort_like_their_tuples() {
        let x = |n: usize, tail: &str| format!("{}{tail}", "x".repeat(n));
        let tuples = [
            (x(64, "b"), "u"),
            (x(70, ""), "b"),
            (x(64, "a"), "u"),
            (x(64, ""), "u"),
            (x(70, ""), "a"),
            (x(63, ""), "u"),
            (x(63, "y"), "u"),
        ];
        let attrs: Vec<Attrs> = tuples
            .iter()
            .map(|(ip, user)| a(&[("stream", "s"), ("filter", "f"), ("ip", ip), ("user", user)]))
            .collect();
        let mut e = Exposition::default();
        for at in &attrs {
            e.push(Metric::Matches, at, 1.0);
        }
        let text = render(&e, "x", false, ExpositionFormat::Text);
        let got: Vec<(String, String)> = text
            .lines()
            .filter(|l| l.starts_with("reaction_match_count{"))
            .map(|l| {
                let ip = l.split("ip=\"").nth(1).unwrap().split('"').next().unwrap();
                let user = l
                    .split("user=\"")
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap();
                (ip.to_string(), user.to_string())
            })
            .collect();
        let mut want: Vec<(String, String)> = tuples
            .iter()
            .map(|(ip, user)| (ip.clone(), user.to_string()))
            .collect();
        want.sort();
        assert_eq!(got, want);
        // The order without keys (past 4 GiB of them) is the same.
        let fixed = Metric::Matches.spec().attributes;
        let samples: Vec<(&Attrs, f64)> = attrs.iter().map(|a| (a, 1.0)).collect();
        let keyed = sorted(fixed, &samples, &mut Line::new(fixed)).indices();
        let by_values = sorted_by_values(fixed, &samples).indices();
        assert_eq!(keyed, by_values);
    }

    /// Guards the sort on the keys' heads (eight bytes at a time): keys that share long
    /// prefixes, end inside another's head or at its end, hold empty values or values that
    /// are prefixes of others, or fewer labels, still sort like the tuples of their values,
    /// and like the sort without keys.
    #[test]
    fn keys_sharing_their_heads_sort_like_their_tuples() {
        let parts = [
            "",
            "a",
            "ab",
            "abcdefgh",
            "abcdefghi",
            "abcdefgh\u{e9}",
            "b",
            "\u{e9}",
        ];
        let mut seed = 7u64;
        let mut pick = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as usize
        };
        let mut tuples: Vec<Vec<String>> = (0..600)
            .map(|_| {
                let n = 1 + pick() % 3;
                let mut t = vec![format!(
                    "10.0.{}{}",
                    parts[pick() % parts.len()],
                    parts[pick() % parts.len()]
                )];
                t.extend((1..n).map(|_| parts[pick() % parts.len()].to_string()));
                t
            })
            .collect();
        tuples.sort();
        tuples.dedup();
        let names = ["ip", "user", "zone"];
        let attrs: Vec<Attrs> = (tuples.iter().rev())
            .map(|t| {
                let mut pairs = vec![("stream", "s"), ("filter", "f")];
                pairs.extend(names.iter().zip(t).map(|(k, v)| (*k, v.as_str())));
                a(&pairs)
            })
            .collect();
        let fixed = Metric::Matches.spec().attributes;
        let samples: Vec<(&Attrs, f64)> = attrs.iter().map(|a| (a, 1.0)).collect();
        let keyed = sorted(fixed, &samples, &mut Line::new(fixed)).indices();
        let by_values = sorted_by_values(fixed, &samples).indices();
        assert_eq!(keyed, by_values);
        let got: Vec<&Vec<String>> = (keyed.iter())
            .map(|&i| &tuples[tuples.len() - 1 - i])
            .collect();
        assert_eq!(got, tuples.iter().collect::<Vec<_>>());
    }

    /// Guards the layouts kept per family: samples of more sets of keys than are kept
    /// ([`LAYOUTS`]), interleaved, each written with its own labels.
    #[test]
    fn many_sets_of_keys_interleaved_each_get_their_labels() {
        let n = 3 * LAYOUTS;
        let key = |i: usize| format!("p{:02}", i % (LAYOUTS + 4));
        let attrs: Vec<Attrs> = (0..n)
            .map(|i| {
                let (k, v) = (key(i), format!("v{i:02}"));
                let mut pairs = vec![("stream", "s"), ("filter", "f"), (k.as_str(), v.as_str())];
                if i % 3 == 0 {
                    pairs.push(("zz", "z"));
                }
                a(&pairs)
            })
            .collect();
        let mut e = Exposition::default();
        for at in attrs.iter().rev() {
            e.push(Metric::Matches, at, 1.0);
        }
        let text = render(&e, "x", false, ExpositionFormat::Text);
        let got: Vec<&str> = (text.lines())
            .filter(|l| l.starts_with("reaction_match_count{"))
            .collect();
        let want: Vec<String> = (0..n)
            .map(|i| {
                let zz = if i % 3 == 0 { ",zz=\"z\"" } else { "" };
                format!(
                    "reaction_match_count{{stream=\"s\",filter=\"f\",{}=\"v{i:02}\"{zz}}} 1.0",
                    key(i)
                )
            })
            .collect();
        assert_eq!(got, want);
    }

    /// Guards the page's reservation: the size of its lines as the sort read them, so that
    /// the page is neither copied to grow nor reserved far beyond its size (an estimate
    /// from the packed strings' lengths reserved twice the page for long values).
    #[test]
    fn the_page_is_reserved_at_its_size() {
        let long = "v".repeat(1000);
        let attrs: Vec<Attrs> = (0..2000)
            .map(|i| {
                let ip = format!("10.0.{}.{}", i / 250, i % 250);
                a(&[
                    ("stream", "s"),
                    ("filter", "f"),
                    ("ip", &ip),
                    ("user", &long),
                ])
            })
            .collect();
        let mut e = Exposition::default();
        for at in &attrs {
            e.push(Metric::Matches, at, 12345.0);
        }
        let text = render(&e, "x", true, ExpositionFormat::Text);
        assert!(text.len() > 2000 * 1000);
        assert!(
            text.len() <= text.capacity() && text.capacity() <= text.len() + text.len() / 16,
            "{} bytes in {} reserved",
            text.len(),
            text.capacity()
        );
    }

    #[test]
    fn values_like_python() {
        let mut s = String::new();
        value(&mut s, 3.0);
        s.push(' ');
        value(&mut s, 0.25);
        s.push(' ');
        value(&mut s, 1764115267.5);
        assert_eq!(s, "3.0 0.25 1764115267.5");
    }
}
