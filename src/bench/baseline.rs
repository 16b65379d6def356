//! `resflow bench --baseline F.json`: this run's rows beside a saved run's, matched by
//! (kernel, shape), with a verdict: a row slower than its baseline by more than the tolerance
//! fails the run.
//!
//! Both sides are compared as parsed JSON lines, so a baseline is exactly what `--json` or
//! `--out` wrote, from any suite.

use std::path::Path;

use serde_json::{Map, Value};

/// The figures a row is compared by, best first: a rate (higher is better) where the row has
/// one, else a time (lower is better).
const METRICS: [(&str, bool); 5] =
    [("gflops", true), ("gbps", true), ("s_per_step", false), ("us_per_op", false), ("ms", false)];

/// One row of a run, as far as the comparison needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub kernel: String,
    pub shape: String,
    /// `(metric, value)` for each of [`METRICS`] the row carries, in that order.
    pub figures: Vec<(&'static str, f64)>,
    pub adapter: Option<String>,
}

impl Record {
    /// A row from one `--json` line. Kernel, toy and image rows are keyed by `kernel` and
    /// `shape`; memory rows by `model` and "mode n=terms", as their text lines read.
    pub fn parse(line: &str) -> Result<Record, String> {
        let v: Value = serde_json::from_str(line).map_err(|e| format!("bad JSON: {e}"))?;
        let o = v.as_object().ok_or("not a JSON object")?;
        let s = |k: &str| o.get(k).map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string));
        let (kernel, shape) = match (s("kernel"), s("model")) {
            (Some(kernel), _) => (kernel, s("shape").unwrap_or_default()),
            (None, Some(model)) => {
                (model, format!("{} n={}", s("mode").unwrap_or_default(), s("terms").unwrap_or_default()))
            }
            (None, None) => return Err("a row needs a \"kernel\" or \"model\" key".into()),
        };
        Ok(Record { kernel, shape, figures: figures(o), adapter: s("adapter") })
    }

    fn same_row(&self, other: &Record) -> bool {
        self.kernel == other.kernel && self.shape == other.shape
    }
}

fn figures(o: &Map<String, Value>) -> Vec<(&'static str, f64)> {
    METRICS.iter().filter_map(|&(name, _)| Some((name, o.get(name)?.as_f64()?))).collect()
}

/// Parses a run's JSON lines (blank lines skipped).
pub fn parse_lines(text: &str) -> Result<Vec<Record>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| Record::parse(l).map_err(|e| format!("line {}: {e}", i + 1)))
        .collect()
}

/// Reads a baseline file; every failure is one line naming the file.
pub fn load(path: &Path) -> Result<Vec<Record>, String> {
    let name = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read baseline {name}: {e}"))?;
    let rows = parse_lines(&text).map_err(|e| format!("baseline {name} {e}"))?;
    if rows.is_empty() {
        return Err(format!("baseline {name} has no rows"));
    }
    Ok(rows)
}

/// One line of the comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// In both runs. `ratio` > 1 is faster: new rate / baseline rate, or baseline time / new time.
    Both { kernel: String, shape: String, metric: &'static str, new: f64, base: f64, ratio: f64 },
    /// In this run only (a new kernel or shape).
    OnlyNew { kernel: String, shape: String },
    /// In the baseline only (filtered out, or gone).
    OnlyBaseline { kernel: String, shape: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub entries: Vec<Entry>,
    /// The slowdown allowed, as a fraction: 0.10 fails rows under 0.9× their baseline.
    pub tolerance: f64,
}

/// Matches every row of `new` with the first row of `base` of the same (kernel, shape).
pub fn compare(new: &[Record], base: &[Record], tolerance: f64) -> Comparison {
    let mut entries: Vec<Entry> = new
        .iter()
        .map(|n| match base.iter().find(|b| b.same_row(n)) {
            Some(b) => both(n, b),
            None => Entry::OnlyNew { kernel: n.kernel.clone(), shape: n.shape.clone() },
        })
        .collect();
    for (i, b) in base.iter().enumerate() {
        let first = base[..i].iter().all(|e| !e.same_row(b));
        if first && !new.iter().any(|n| n.same_row(b)) {
            entries.push(Entry::OnlyBaseline { kernel: b.kernel.clone(), shape: b.shape.clone() });
        }
    }
    Comparison { entries, tolerance }
}

/// The first metric both rows carry; a pair with none in common reads as only in this run.
fn both(n: &Record, b: &Record) -> Entry {
    let (kernel, shape) = (n.kernel.clone(), n.shape.clone());
    for &(metric, new) in &n.figures {
        if let Some(&(_, base)) = b.figures.iter().find(|(m, _)| *m == metric) {
            let higher_is_better = METRICS.iter().any(|&(m, h)| m == metric && h);
            let ratio = if higher_is_better { new / base } else { base / new };
            return Entry::Both { kernel, shape, metric, new, base, ratio };
        }
    }
    Entry::OnlyNew { kernel, shape }
}

impl Comparison {
    fn is_slow(&self, ratio: f64) -> bool {
        ratio < 1.0 - self.tolerance
    }

    /// Rows slower than the tolerance allows, slowest first.
    pub fn slower(&self) -> Vec<&Entry> {
        let mut slow: Vec<(&Entry, f64)> = self
            .entries
            .iter()
            .filter_map(|e| match e {
                Entry::Both { ratio, .. } if self.is_slow(*ratio) => Some((e, *ratio)),
                _ => None,
            })
            .collect();
        slow.sort_by(|a, b| a.1.total_cmp(&b.1));
        slow.into_iter().map(|(e, _)| e).collect()
    }

    /// Ok, or one line naming the slowest row.
    pub fn verdict(&self) -> Result<(), String> {
        let slow = self.slower();
        let Some(Entry::Both { kernel, shape, metric, new, base, ratio }) = slow.first() else {
            return Ok(());
        };
        let others = match slow.len() {
            1 => String::new(),
            2 => "; 1 more row slower".to_string(),
            n => format!("; {} more rows slower", n - 1),
        };
        Err(format!(
            "{kernel} {shape} is slower than its baseline: {metric} {new:.4} vs {base:.4} ({ratio:.2}x, \
             tolerance {:.0}%){others}",
            self.tolerance * 100.0
        ))
    }

    /// The table: one line per row, ratios as `1.03x`, slow rows marked.
    pub fn text(&self) -> String {
        let mut out = format!(
            "{:<20} {:<26} {:<10} {:>12} {:>12} {:>8}\n",
            "kernel", "shape", "metric", "this run", "baseline", "ratio"
        );
        for e in &self.entries {
            let line = match e {
                Entry::Both { kernel, shape, metric, new, base, ratio } => {
                    let mark = if self.is_slow(*ratio) { "  SLOWER" } else { "" };
                    format!("{kernel:<20} {shape:<26} {metric:<10} {new:>12.4} {base:>12.4} {ratio:>7.2}x{mark}")
                }
                Entry::OnlyNew { kernel, shape } => format!("{kernel:<20} {shape:<26} not in the baseline"),
                Entry::OnlyBaseline { kernel, shape } => format!("{kernel:<20} {shape:<26} not in this run"),
            };
            out.push_str(&line);
            out.push('\n');
        }
        out
    }
}
