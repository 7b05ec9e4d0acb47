//! Backfill: `gpx_arrowmon import openmetrics FILE --data-dir DIR`.
//!
//! The samples of an OpenMetrics file with timestamps (what promtool's
//! `tsdb create-blocks-from openmetrics` takes) are written straight into blocks, one
//! per aligned block range, as promtool does: nothing goes through the WAL or the
//! head, so a backfill of any age costs no memory in `serve` and is read like any
//! other block. The blocks may overlap data the store already has; reads merge them.
//! The store need not be closed: a running `serve` picks new blocks up at its next
//! maintenance pass.
//!
//! The file is read in passes of whole block ranges, each holding at most a budget of
//! samples in memory: [`PASS_SAMPLES`], or more for a larger file (16 bytes a
//! sample, at most the file's own size, which is in memory anyway). The first pass
//! checks every line, counts samples per range and collects them all while they
//! fit the budget, so a file that fits is parsed once; otherwise each further pass
//! collects the ranges it owns.
//!
//! A sample more than [`MAX_AHEAD_MS`] after the wall clock is refused (a clock
//! error in the source, most likely) unless `--allow-future-samples` is given; a
//! timestamp no block range can hold (within one range of the ends of i64
//! milliseconds) is refused always.

use std::collections::HashMap;
use std::path::Path;

use crate::model::labels::Labels;
use crate::scrape::exposition::{Entry, Format, Parser, ParserOptions, Sample};
use crate::store::{self, block_range_of, StoreOptions, MAX_AHEAD_MS};

/// The command-line flag that lets `import` take samples far ahead of now.
pub const ALLOW_FUTURE_FLAG: &str = "--allow-future-samples";

/// What `import` accepts beyond the default.
#[derive(Clone, Copy, Debug, Default)]
pub struct ImportOptions {
    /// Take samples more than [`MAX_AHEAD_MS`] after the wall clock.
    pub allow_future_samples: bool,
}

/// The timestamps a file's samples may have.
#[derive(Clone, Copy)]
struct TimeBounds {
    range: i64,
    /// The newest timestamp accepted, `None` for any time a block can hold.
    max_t: Option<i64>,
}

/// Samples held in memory at once at least (16 bytes each while collected).
const PASS_SAMPLES: u64 = 8_000_000;
/// Bytes of memory a collected sample takes.
const HELD_SAMPLE_BYTES: u64 = 16;

#[derive(Debug, Default, PartialEq)]
pub struct ImportSummary {
    pub samples: u64,
    pub series: u64,
    pub blocks: u64,
    /// Samples dropped because their series already had one at that timestamp.
    pub duplicates: u64,
}

/// The block ranges seen, in the order seen, with the index of the last one asked
/// for: consecutive samples of a series mostly share a range.
#[derive(Default)]
struct RangeSlots {
    ranges: Vec<i64>,
    last: usize,
}

impl RangeSlots {
    /// The slot of range `r`, added if new.
    fn slot(&mut self, r: i64) -> usize {
        if self.ranges.get(self.last) != Some(&r) {
            self.last = match self.ranges.iter().position(|&x| x == r) {
                Some(i) => i,
                None => {
                    self.ranges.push(r);
                    self.ranges.len() - 1
                }
            };
        }
        self.last
    }
}

/// One block range's samples, indexed by series id: timestamps and values.
type RangeSamples = Vec<(Vec<i64>, Vec<f64>)>;

/// Collected samples: per block range, per series id, timestamps and values.
#[derive(Default)]
struct Collected {
    slots: RangeSlots,
    ranges: Vec<RangeSamples>,
}

impl Collected {
    fn push(&mut self, r: i64, id: u32, t: i64, v: f64) {
        let slot = self.slots.slot(r);
        if slot == self.ranges.len() {
            self.ranges.push(Vec::new());
        }
        let series = &mut self.ranges[slot];
        if series.len() <= id as usize {
            series.resize_with(id as usize + 1, Default::default);
        }
        series[id as usize].0.push(t);
        series[id as usize].1.push(v);
    }

    /// The ranges in time order, each with its series' samples.
    fn into_ranges(self) -> Vec<(i64, RangeSamples)> {
        let mut out: Vec<_> = self.slots.ranges.into_iter().zip(self.ranges).collect();
        out.sort_by_key(|(r, _)| *r);
        out
    }
}

/// Series of the file: their spelling in the file (name and raw label set) → index.
#[derive(Default)]
struct SeriesTable {
    by_key: HashMap<String, u32, foldhash::fast::RandomState>,
    by_labels: HashMap<Labels, u32, foldhash::fast::RandomState>,
    labels: Vec<Labels>,
    key: String,
}

impl SeriesTable {
    fn id(&mut self, sample: &Sample<'_>, file: &Path) -> Result<u32, String> {
        self.key.clear();
        self.key.push_str(sample.name());
        self.key.push('\0');
        self.key.push_str(sample.raw_label_set());
        if let Some(&id) = self.by_key.get(self.key.as_str()) {
            return Ok(id);
        }
        let labels = sample
            .to_labels()
            .map_err(|e| format!("{}: {e}", file.display()))?;
        let next = self.labels.len() as u32;
        let id = *self.by_labels.entry(labels.clone()).or_insert(next);
        if id == next {
            self.labels.push(labels);
        }
        self.by_key.insert(self.key.clone(), id);
        Ok(id)
    }
}

/// Calls `f` with every sample of the file, its series and timestamp; a timestamp
/// out of `bounds` is an error naming the file and line.
fn for_each_sample(
    body: &[u8],
    file: &Path,
    table: &mut SeriesTable,
    bounds: TimeBounds,
    mut f: impl FnMut(u32, i64, f64),
) -> Result<(), String> {
    let mut parser = Parser::new(body, Format::OpenMetrics, ParserOptions::default());
    while let Some(entry) = parser
        .next()
        .map_err(|e| format!("{}: {e}", file.display()))?
    {
        let Entry::Sample(sample) = entry else {
            continue;
        };
        let t = sample.timestamp_ms.ok_or_else(|| {
            format!(
                "{}: line {}: sample without a timestamp (a backfill must say when each value was)",
                file.display(),
                sample.line
            )
        })?;
        if block_range_of(t, bounds.range).is_none() {
            return Err(format!(
                "{}: line {}: timestamp {t} ms lies outside the time a block can hold",
                file.display(),
                sample.line
            ));
        }
        if let Some(max_t) = bounds.max_t.filter(|&m| t > m) {
            return Err(format!(
                "{}: line {}: sample at {} is more than {} after now ({}); if that is not a clock error, pass {ALLOW_FUTURE_FLAG} to import it",
                file.display(),
                sample.line,
                crate::model::time::format_rfc3339_ms(t),
                crate::model::duration::format_duration(std::time::Duration::from_millis(
                    MAX_AHEAD_MS as u64
                )),
                crate::model::time::format_rfc3339_ms(max_t - MAX_AHEAD_MS),
            ));
        }
        let id = table.id(&sample, file)?;
        f(id, t, sample.value);
    }
    Ok(())
}

/// Imports `file` into the store directory `store_dir` as blocks.
pub fn import_openmetrics(
    file: &Path,
    store_dir: &Path,
    opts: ImportOptions,
) -> Result<ImportSummary, String> {
    import_in_passes(file, store_dir, opts, None)
}

/// `pass_samples`: the budget of samples held at once; by default
/// [`PASS_SAMPLES`] or what the file's own size allows.
fn import_in_passes(
    file: &Path,
    store_dir: &Path,
    opts: ImportOptions,
    pass_samples: Option<u64>,
) -> Result<ImportSummary, String> {
    let body = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let budget =
        pass_samples.unwrap_or_else(|| PASS_SAMPLES.max(body.len() as u64 / HELD_SAMPLE_BYTES));
    let range = StoreOptions::default().block_range_ms;
    let now = crate::scrape::now_ms();
    let bounds = TimeBounds {
        range,
        max_t: (!opts.allow_future_samples).then(|| now.saturating_add(MAX_AHEAD_MS)),
    };
    let mut table = SeriesTable::default();
    let mut counted = RangeSlots::default();
    let mut counts: Vec<u64> = Vec::new();
    let mut first = Some(Collected::default());
    let mut held = 0u64;
    for_each_sample(&body, file, &mut table, bounds, |id, t, v| {
        let r = t.div_euclid(range);
        let slot = counted.slot(r);
        if slot == counts.len() {
            counts.push(0);
        }
        counts[slot] += 1;
        held += 1;
        if held > budget {
            first = None;
        }
        if let Some(c) = &mut first {
            c.push(r, id, t, v);
        }
    })?;
    let mut summary = ImportSummary {
        series: table.labels.len() as u64,
        ..ImportSummary::default()
    };
    if let Some(all) = first {
        for (r, series) in all.into_ranges() {
            write_range(store_dir, file, &table, range, r, series, &mut summary)?;
        }
        return Ok(summary);
    }
    // Consecutive ranges, as many per pass as fit the budget (at least one).
    let mut per_range: Vec<(i64, u64)> = counted.ranges.into_iter().zip(counts).collect();
    per_range.sort_unstable();
    let mut passes: Vec<Vec<i64>> = Vec::new();
    let mut held = 0u64;
    for (r, n) in per_range {
        match passes.last_mut() {
            Some(p) if held + n <= budget => {
                p.push(r);
                held += n;
            }
            _ => {
                passes.push(vec![r]);
                held = n;
            }
        }
    }
    for ranges in passes {
        let mut collected = Collected::default();
        for_each_sample(&body, file, &mut table, bounds, |id, t, v| {
            let r = t.div_euclid(range);
            if ranges.binary_search(&r).is_ok() {
                collected.push(r, id, t, v);
            }
        })?;
        for (r, series) in collected.into_ranges() {
            write_range(store_dir, file, &table, range, r, series, &mut summary)?;
        }
    }
    Ok(summary)
}

/// Writes block range `r`'s samples (by series id) as a block.
fn write_range(
    store_dir: &Path,
    file: &Path,
    table: &SeriesTable,
    range: i64,
    r: i64,
    series: RangeSamples,
    summary: &mut ImportSummary,
) -> Result<(), String> {
    // Every range holds a sample whose block range was checked to fit.
    let Some((start, end)) = r.checked_mul(range).and_then(|t| block_range_of(t, range)) else {
        return Err(format!(
            "{}: block range {r} lies outside the time a block can hold",
            file.display()
        ));
    };
    let series: Vec<(Labels, Vec<i64>, Vec<f64>)> = series
        .into_iter()
        .enumerate()
        .filter(|(_, (ts, _))| !ts.is_empty())
        .map(|(id, (ts, vs))| (table.labels[id].clone(), ts, vs))
        .collect();
    let (meta, duplicates) =
        store::write_imported_block(store_dir, start, end, series).map_err(|e| e.to_string())?;
    summary.duplicates += duplicates;
    if let Some(meta) = meta {
        summary.samples += meta.num_samples;
        summary.blocks += 1;
        tracing::info!(
            start = meta.range_start,
            end = meta.range_end,
            series = meta.num_series,
            samples = meta.num_samples,
            "imported block written"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::labels::Matcher;
    use crate::store::{Store, StoreOptions};

    fn import(text: &str) -> (tempfile::TempDir, Result<ImportSummary, String>) {
        import_with_budget(text, PASS_SAMPLES)
    }

    fn import_with_budget(
        text: &str,
        pass_samples: u64,
    ) -> (tempfile::TempDir, Result<ImportSummary, String>) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("history.om");
        std::fs::write(&file, text).unwrap();
        let got = import_in_passes(
            &file,
            &dir.path().join("store"),
            ImportOptions::default(),
            Some(pass_samples),
        );
        (dir, got)
    }

    #[test]
    fn a_small_budget_reads_the_file_in_more_passes_to_the_same_blocks() {
        let text: String = (0..6)
            .flat_map(|r| (0..3).map(move |i| format!("m{{i=\"{i}\"}} {r} {}\n", r * 3600)))
            .chain(["# EOF\n".to_string()])
            .collect();
        let open = |dir: &tempfile::TempDir| {
            let o = StoreOptions {
                background: false,
                ..StoreOptions::default()
            };
            let store = Store::open_with(&dir.path().join("store"), o).unwrap();
            let all = store
                .select(&[Matcher::equal("__name__", "m")], i64::MIN, i64::MAX)
                .unwrap();
            (store.blocks().len(), all)
        };
        let (one, a) = import_with_budget(&text, PASS_SAMPLES);
        let (many, b) = import_with_budget(&text, 4);
        assert_eq!(a.unwrap(), b.unwrap());
        let (blocks, series) = open(&one);
        assert_eq!((blocks, series.len()), (3, 3));
        assert_eq!(series[0].timestamps.len(), 6);
        assert_eq!((blocks, series), open(&many));
    }

    #[test]
    fn samples_become_one_block_per_range_in_time_order() {
        // Two 2 h ranges; lines out of time order; one series spelled two ways; a
        // repeated timestamp.
        let text = "\
# TYPE m gauge
m{a=\"1\",b=\"2\"} 1 7300
m{b=\"2\",a=\"1\"} 2 7200
m{a=\"1\",b=\"2\"} 3 100
m{a=\"1\",b=\"2\"} 4 100
m{a=\"9\",b=\"2\"} 5 10.5
# EOF
";
        let (dir, got) = import(text);
        let got = got.unwrap();
        assert_eq!(
            got,
            ImportSummary {
                samples: 4,
                series: 2,
                blocks: 2,
                duplicates: 1
            }
        );
        let o = StoreOptions {
            background: false,
            ..StoreOptions::default()
        };
        let store = Store::open_with(&dir.path().join("store"), o).unwrap();
        let metas = store.blocks();
        assert_eq!(
            metas
                .iter()
                .map(|m| (m.range_start, m.range_end))
                .collect::<Vec<_>>(),
            vec![(0, 7_200_000), (7_200_000, 14_400_000)]
        );
        let s = store
            .select(&[Matcher::equal("a", "1")], i64::MIN, i64::MAX)
            .unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].timestamps, vec![100_000, 7_200_000, 7_300_000]);
        assert_eq!(s[0].values, vec![3.0, 2.0, 1.0]);
        let s = store
            .select(&[Matcher::equal("a", "9")], i64::MIN, i64::MAX)
            .unwrap();
        assert_eq!(s[0].timestamps, vec![10_500]);
        // Nothing went through the WAL.
        assert_eq!(store.series_count(), 0);
    }

    #[test]
    fn bad_lines_are_errors_naming_file_and_line_and_write_nothing() {
        let (dir, got) = import("m 1 100\nm 2\n# EOF\n");
        let e = got.unwrap_err();
        assert!(e.contains("history.om") && e.contains("line 2"), "{e}");
        assert!(!dir.path().join("store").exists());
        let (_, got) = import("m 1 100\nm{ 2 200\n# EOF\n");
        let e = got.unwrap_err();
        assert!(e.contains("history.om") && e.contains("line 2"), "{e}");
    }

    fn wall_now_s() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    #[test]
    fn a_sample_far_ahead_of_now_is_refused_naming_file_line_and_flag() {
        let ten_years_s = 10 * 365 * 24 * 3600;
        let now = wall_now_s();
        let text = format!("m 1 {}\nm 2 {}\n# EOF\n", now - 60, now + ten_years_s);
        let (dir, got) = import(&text);
        let e = got.unwrap_err();
        assert!(
            e.contains("history.om")
                && e.contains("line 2")
                && e.contains("--allow-future-samples"),
            "{e}"
        );
        assert!(!dir.path().join("store").exists());
        // With the flag it is imported, and the store keeps its history.
        let got = import_in_passes(
            &dir.path().join("history.om"),
            &dir.path().join("store"),
            ImportOptions {
                allow_future_samples: true,
            },
            Some(PASS_SAMPLES),
        )
        .unwrap();
        assert_eq!((got.samples, got.blocks), (2, 2));
        let store = Store::open_with(
            &dir.path().join("store"),
            StoreOptions {
                background: false,
                ..StoreOptions::default()
            },
        )
        .unwrap();
        store.maintain().unwrap();
        assert_eq!(store.blocks().len(), 2);
        let s = store.select(&[], i64::MIN, i64::MAX).unwrap();
        assert_eq!(
            s[0].timestamps,
            vec![(now - 60) * 1000, (now + ten_years_s) * 1000]
        );
    }

    #[test]
    fn a_timestamp_no_block_can_hold_is_an_error_not_a_panic() {
        for t in ["1e300", "-1e300", "9223372036854775.807"] {
            let (_, got) = import(&format!("m 1 100\nm 2 {t}\n# EOF\n"));
            let e = got.unwrap_err();
            assert!(e.contains("history.om") && e.contains("line 2"), "{t}: {e}");
        }
    }
}
