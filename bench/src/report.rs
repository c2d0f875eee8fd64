//! Result files: summaries of samples, the metadata every result carries, the table.

use std::path::Path;

use anyhow::{Context, Result};
use comfy_table::{Cell, CellAlignment, Table, presets::UTF8_FULL_CONDENSED};
use serde::Serialize;

use crate::droverd::workspace_dir;

/// Median, min and max of one series of samples (milliseconds), with the samples.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Median of `samples_ms` (mean of the middle two for an even count).
    pub median_ms: f64,
    /// Smallest sample.
    pub min_ms: f64,
    /// Largest sample.
    pub max_ms: f64,
    /// Every sample, in the order measured.
    pub samples_ms: Vec<f64>,
}

impl Summary {
    /// Summarizes `samples` (at least one).
    pub fn of(samples: &[f64]) -> Summary {
        Summary {
            median_ms: round(median(samples)),
            min_ms: round(samples.iter().copied().fold(f64::INFINITY, f64::min)),
            max_ms: round(samples.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
            samples_ms: samples.iter().copied().map(round).collect(),
        }
    }
}

/// The median of `xs` (0 when empty).
pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Rounds to microseconds (three decimals of a millisecond).
pub fn round(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}

/// Drover against a reference in one cell.
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    /// `"drover/raw"` or `"drover/lxd"`.
    pub of: String,
    /// median(drover) / median(reference): the headline figure; 1.10 = 10 % overhead.
    pub of_medians: f64,
    /// Median of the per-run ratios (runs are interleaved pairs), less sensitive to drift.
    pub paired_median: f64,
}

impl Ratio {
    /// The ratio of `drover` to `reference` (paired sample by sample).
    pub fn new(of: &str, drover: &[f64], reference: &[f64]) -> Ratio {
        let paired: Vec<f64> = drover
            .iter()
            .zip(reference)
            .filter(|(_, r)| **r > 0.0)
            .map(|(d, r)| d / r)
            .collect();
        let r = median(reference);
        Ratio {
            of: of.to_string(),
            of_medians: if r > 0.0 {
                ratio_round(median(drover) / r)
            } else {
                0.0
            },
            paired_median: ratio_round(median(&paired)),
        }
    }
}

/// `x` rounded to 3 decimals, as ratios are reported.
pub fn ratio_round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Facts about the run that make a number comparable to another.
#[derive(Debug, Clone, Serialize)]
pub struct Metadata {
    /// When the run started (RFC 3339, UTC).
    pub date: String,
    /// `git rev-parse HEAD` of the workspace.
    pub git_commit: String,
    /// Whether the work tree had changes (`git status --porcelain` not empty).
    pub git_dirty: bool,
    /// Logical CPUs (`nproc`).
    pub nproc: usize,
    /// `uname -r`.
    pub kernel: String,
    /// `/proc/loadavg` when the run started and when it ended.
    pub loadavg_start: String,
    /// See `loadavg_start`.
    pub loadavg_end: String,
    /// The exact command line.
    pub command: String,
}

impl Metadata {
    /// Collects everything but `loadavg_end` (set by [`Metadata::finish`]).
    pub fn collect() -> Metadata {
        let ws = workspace_dir();
        let git = |args: &[&str]| {
            std::process::Command::new("git")
                .args(args)
                .current_dir(&ws)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        };
        Metadata {
            date: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            git_commit: git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into()),
            git_dirty: git(&["status", "--porcelain"]).is_some_and(|s| !s.is_empty()),
            nproc: std::thread::available_parallelism().map_or(0, usize::from),
            kernel: read_trim("/proc/sys/kernel/osrelease"),
            loadavg_start: read_trim("/proc/loadavg"),
            loadavg_end: String::new(),
            command: std::env::args().collect::<Vec<_>>().join(" "),
        }
    }

    /// Records the load at the end of the run.
    pub fn finish(&mut self) {
        self.loadavg_end = read_trim("/proc/loadavg");
    }
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Parses the comma-separated values of option `flag` (`"10,30"`), blanks around them
/// allowed.
pub fn parse_list<T>(text: &str, flag: &str) -> Result<Vec<T>>
where
    T: std::str::FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    text.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.trim()
                .parse::<T>()
                .with_context(|| format!("{flag}: {s:?}"))
        })
        .collect()
}

/// Writes `value` as pretty JSON to `path` (creating its directory).
pub fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))
}

/// A table with a header row, numbers right-aligned.
pub fn table(header: &[&str], rows: Vec<Vec<String>>) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(header.iter().map(Cell::new));
    for row in rows {
        t.add_row(row.into_iter().enumerate().map(|(i, s)| {
            let c = Cell::new(s);
            if i == 0 {
                c
            } else {
                c.set_alignment(CellAlignment::Right)
            }
        }));
    }
    t
}

/// `"12.3 (11.0–15.2)"`: median with min–max.
pub fn fmt_summary(s: &Summary) -> String {
    format!("{:.1} ({:.1}–{:.1})", s.median_ms, s.min_ms, s.max_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_ratios() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
        let s = Summary::of(&[2.0, 1.0, 3.0]);
        assert_eq!((s.median_ms, s.min_ms, s.max_ms), (2.0, 1.0, 3.0));
        let r = Ratio::new("drover/raw", &[11.0, 24.0, 30.0], &[10.0, 20.0, 20.0]);
        assert_eq!(r.of_medians, 1.2);
        assert_eq!(r.paired_median, 1.2);
    }

    #[test]
    fn lists_parse() {
        assert_eq!(
            parse_list::<u32>(" 10, 30", "--sizes").ok(),
            Some(vec![10, 30])
        );
        assert!(parse_list::<u32>("10,x", "--sizes").is_err());
    }
}
