//! The differential test of the PromQL engine: the same generated data is loaded into
//! a real Prometheus 2.42 (Debian package; `promtool tsdb create-blocks-from
//! openmetrics`) and into arrowmon (`gpx_arrowmon import openmetrics`), both serve the
//! HTTP API on loopback, and a few hundred instant and range queries of the kinds node
//! and MySQL dashboards send, plus edge cases, must give the same answers through both
//! APIs: same result type, same label sets, values within 1e-9 relative, same
//! timestamps; where Prometheus fails a query, arrowmon must fail it too.
//!
//! Range selectors: Prometheus 2.42 selects `[t - range, t]` (left-closed), Prometheus
//! 3 — whose semantics arrowmon follows — selects `(t - range, t]` (left-open), and the
//! 5 m lookback of instant selectors differs the same way. The two only disagree when a
//! sample sits exactly on a window's left edge, so every generated sample has a
//! timestamp with a non-zero millisecond part while every query time, range, offset,
//! `@` and step below is a whole number of seconds: no sample is ever on an edge.
//!
//! Differences between 2.42 and 3 that are by design are listed in
//! [`KNOWN_DIFFERENCES`], each with its reason and how the test deals with it (data
//! that cannot show it, a query rewritten into 2.42's equivalent, or a narrowly
//! accepted difference).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;
use serde_json::Value;

/// Start of the generated data: 2023-11-14T22:00:00Z, long past, so both servers run
/// with retention that keeps everything.
const DATA_START_S: i64 = 1_699_999_200;
const SCRAPE_INTERVAL_MS: i64 = 15_000;
/// Three hours of scrapes.
const SCRAPES: usize = 720;
const MINUTE: i64 = 60;

/// A difference between Prometheus 2.42 and Prometheus 3 that is by design, and how
/// the test deals with it.
struct KnownDifference {
    what: &'static str,
    /// Where it changed and why the answers differ.
    why: &'static str,
    /// Whether a query (in our spelling) is affected.
    applies: fn(&str) -> bool,
    handling: Handling,
}

enum Handling {
    /// Nothing is done at query time: the generated data never shows the difference.
    AvoidedByTheData,
    /// The query is sent to 2.42 rewritten into its equivalent there.
    Rewrite(fn(&str) -> String),
    /// 2.42's answer loses `__name__` before the comparison.
    DropNameFromPrometheus2,
    /// A point where 2.42 answers the first value and we the second is accepted.
    AcceptValues(fn(f64, f64) -> bool),
    /// Evaluated only at times 7 s off every subquery step grid, where the two agree.
    EvaluateOffTheSubqueryGrid,
    /// Evaluated as instant queries only, where the two agree.
    InstantQueriesOnly,
    /// At each timestamp, series only one side has must pair up, value for value,
    /// with series only the other side has: which of several equal values is kept
    /// may differ, nothing else.
    TiesMayKeepOtherSeries,
}

const KNOWN_DIFFERENCES: &[KnownDifference] = &[
    KnownDifference {
        what: "left-open range selectors and lookback",
        why: "Prometheus 3.0 selects (t - range, t]; 2.42 selects [t - range, t]. Every \
              generated sample has a non-zero millisecond part and every query time, range, \
              offset, @ and step is whole seconds, so no raw sample is on a window edge.",
        applies: |_| true,
        handling: Handling::AvoidedByTheData,
    },
    KnownDifference {
        what: "left-open subquery windows",
        why: "The same change as above, but a subquery's inner steps are aligned to \
              multiples of its step, so its first step falls exactly on the window's left \
              edge: 2.42 includes it, 3 does not. Sent to 2.42 with the subquery range 1 ms \
              shorter, which selects the same steps as 3's left-open window.",
        applies: |q| !subquery_ranges(q).is_empty() && !range_function_over_subquery(q),
        handling: Handling::Rewrite(shorten_subquery_ranges),
    },
    KnownDifference {
        what: "rate, increase and delta over a left-open subquery window",
        why: "These extrapolate to the window's edges, so the 1 ms shorter window of the \
              rewrite above would change their answers by about 1 ms / range. They are \
              evaluated 7 s off every subquery step grid instead, where no inner step is on \
              an edge and both versions select the same steps.",
        applies: range_function_over_subquery,
        handling: Handling::EvaluateOffTheSubqueryGrid,
    },
    KnownDifference {
        what: "holt_winters renamed double_exponential_smoothing",
        why: "Prometheus 3.0 renamed holt_winters to double_exponential_smoothing and put \
              it behind the promql-experimental-functions flag (prometheus/prometheus#14930); \
              the computation is the same. Sent to 2.42 as holt_winters.",
        applies: |q| q.contains("double_exponential_smoothing("),
        handling: Handling::Rewrite(|q| {
            q.replace("double_exponential_smoothing(", "holt_winters(")
        }),
    },
    KnownDifference {
        what: "atan2 drops the metric name",
        why: "2.42 keeps __name__ on the result of the atan2 operator; since \
              prometheus/prometheus#12595 (July 2023) it is dropped like for every other \
              arithmetic operator.",
        applies: |q| q.contains(" atan2 "),
        handling: Handling::DropNameFromPrometheus2,
    },
    KnownDifference {
        what: "predict_linear over a range pinned with @, in range queries",
        why: "2.42 moves a range selector pinned with @ along with the steps of a range \
              query when the function depends on the evaluation time, which only \
              predict_linear does, so its window empties step by step \
              (prometheus/prometheus#11708, fixed by #13559 in 2024). Instant queries agree \
              and are the only ones compared.",
        applies: |q| q.contains("predict_linear(") && q.contains(" @ "),
        handling: Handling::InstantQueriesOnly,
    },
    KnownDifference {
        what: "topk and bottomk on ties",
        why: "2.42 pops the weakest sample off its heap and pushes the newcomer; since \
              prometheus/prometheus#12190 (2023) the newcomer overwrites the heap's root and \
              the heap is fixed. When several series share the value at the cut-off, the two \
              can keep different ones of them. Compared value for value at each step.",
        applies: |q| q.contains("topk") || q.contains("bottomk"),
        handling: Handling::TiesMayKeepOtherSeries,
    },
    KnownDifference {
        what: "rate extrapolation limited at the zero point",
        why: "For a counter that starts inside the window, 2.42 limits the extrapolation to \
              the counter's zero point before deciding whether to extrapolate by half a \
              sample interval; since prometheus/prometheus#13725 (2024) the order is the \
              other way round. The answers differ when the first sample is between 0.5 and \
              1.1 scrape intervals' worth of increase, so counters that start inside the \
              data start at 0 or far above that.",
        applies: |q| q.contains("rate(") || q.contains("increase("),
        handling: Handling::AvoidedByTheData,
    },
    KnownDifference {
        what: "compensated sums keep infinities",
        why: "2.42's Kahan summation turns an infinite running sum into NaN (Inf - Inf in \
              the compensation term), which stddev_over_time and stdvar_over_time show when \
              the squared deviations of huge values overflow; since \
              prometheus/prometheus#14362 (2024) the sum stays infinite. Accepted: NaN from \
              2.42 where we answer ±Inf.",
        applies: |q| q.contains("stddev_over_time(") || q.contains("stdvar_over_time("),
        handling: Handling::AcceptValues(|theirs, ours| theirs.is_nan() && ours.is_infinite()),
    },
    KnownDifference {
        what: "avg adds with compensation",
        why: "2.42 averages by an incremental mean; since prometheus/prometheus#14413 \
              (July 2024) avg and avg_over_time add with Kahan summation and divide once, \
              which is exact where values cancel out: the mean of 1.2, 2.4 and -3.6 is \
              -7.4e-17 there and 0 in 2.42. Accepted: two answers within 1e-12 of zero.",
        applies: |q| q.contains("avg"),
        handling: Handling::AcceptValues(|theirs, ours| theirs.abs() < 1e-12 && ours.abs() < 1e-12),
    },
    KnownDifference {
        what: "stddev and stdvar of a lone NaN or infinity",
        why: "2.42 answers 0 for stddev/stdvar of a group whose only sample is NaN or \
              ±Inf; since prometheus/prometheus#14941 (2024) that is NaN, as it already was \
              for larger groups. Accepted: 0 from 2.42 where we answer NaN.",
        applies: |q| q.starts_with("stddev") || q.starts_with("stdvar"),
        handling: Handling::AcceptValues(|theirs, ours| theirs == 0.0 && ours.is_nan()),
    },
];

/// Byte ranges of the range durations of the subqueries in `expr` (`15m` in `[15m:30s]`).
fn subquery_ranges(expr: &str) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut open = None;
    for (i, c) in expr.char_indices() {
        match c {
            '[' => open = Some(i + 1),
            ':' => {
                if let Some(start) = open.take() {
                    out.push(start..i);
                }
            }
            ']' => open = None,
            _ => {}
        }
    }
    out
}

/// Whether `rate`, `increase` or `delta` is applied directly to a subquery
/// (`rate(sum(x)[10m:1m])`, not `max_over_time(rate(x[1m])[30m:1m])`).
fn range_function_over_subquery(expr: &str) -> bool {
    ["rate(", "increase(", "delta("].iter().any(|f| {
        expr.match_indices(f).any(|(at, _)| {
            let preceded_by_name_char = expr[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
            if preceded_by_name_char {
                return false; // irate(, idelta(
            }
            // The argument up to the matching parenthesis, and whether a `[..:..]` sits
            // at its top level.
            let mut depth = 0;
            let mut bracket = false;
            for c in expr[at + f.len()..].chars() {
                match c {
                    '(' => depth += 1,
                    ')' if depth == 0 => return false,
                    ')' => depth -= 1,
                    '[' if depth == 0 => bracket = true,
                    ':' if depth == 0 && bracket => return true,
                    ']' => bracket = false,
                    _ => {}
                }
            }
            false
        })
    })
}

/// A Prometheus duration (`1h30m`, `15m`, `30s`) in milliseconds.
fn duration_ms(text: &str) -> i64 {
    let mut total = 0;
    let mut number = 0;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if let Some(d) = c.to_digit(10) {
            number = number * 10 + d as i64;
            continue;
        }
        let unit = match (c, chars.peek()) {
            ('m', Some('s')) => {
                chars.next();
                1
            }
            ('s', _) => 1_000,
            ('m', _) => 60_000,
            ('h', _) => 3_600_000,
            ('d', _) => 86_400_000,
            _ => panic!("unexpected duration {text:?} in a query of this test"),
        };
        total += number * unit;
        number = 0;
    }
    total
}

/// `[15m:30s]` becomes `[899999ms:30s]`: 2.42's closed window then holds the steps of
/// 3's left-open one.
fn shorten_subquery_ranges(expr: &str) -> String {
    let mut out = expr.to_string();
    for r in subquery_ranges(expr).into_iter().rev() {
        let shorter = duration_ms(&expr[r.clone()]) - 1;
        out.replace_range(r, &format!("{shorter}ms"));
    }
    out
}

/// How one expression is asked and compared, given the known differences that are
/// handled for it (indices into [`KNOWN_DIFFERENCES`]).
struct Plan {
    /// The query as it is sent to Prometheus 2.42.
    theirs: String,
    drop_name: bool,
    evals: Vec<Eval>,
    rules: ComparisonRules,
}

impl Plan {
    fn new(expr: &str, handled: &[usize], evals: &[Eval]) -> Plan {
        let handlings: Vec<&Handling> = handled
            .iter()
            .map(|&i| &KNOWN_DIFFERENCES[i].handling)
            .collect();
        let any = |f: fn(&Handling) -> bool| handlings.iter().any(|h| f(h));
        let theirs = handlings.iter().fold(expr.to_string(), |q, h| match h {
            Handling::Rewrite(rewrite) => rewrite(&q),
            _ => q,
        });
        let off_grid = any(|h| matches!(h, Handling::EvaluateOffTheSubqueryGrid));
        let instant_only = any(|h| matches!(h, Handling::InstantQueriesOnly));
        Plan {
            theirs,
            drop_name: any(|h| matches!(h, Handling::DropNameFromPrometheus2)),
            evals: evals
                .iter()
                .filter(|e| !instant_only || matches!(e, Eval::Instant(_)))
                .map(|e| if off_grid { e.later_by(7) } else { *e })
                .collect(),
            rules: ComparisonRules {
                ordered: expr.starts_with("sort(") || expr.starts_with("sort_desc("),
                accepted: handlings
                    .iter()
                    .filter_map(|h| match h {
                        Handling::AcceptValues(f) => Some(*f),
                        _ => None,
                    })
                    .collect(),
                ties: any(|h| matches!(h, Handling::TiesMayKeepOtherSeries)),
            },
        }
    }
}

// ---------------------------------------------------------------------------------
// Data
// ---------------------------------------------------------------------------------

/// A small deterministic generator (splitmix64), so the data is the same every run.
struct SplitMix(u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// A scrape target: its samples share one timestamp per scrape, as a real scrape's do.
struct Target {
    job: &'static str,
    instance: &'static str,
    /// Scrapes (indices) at which the target is up.
    up: fn(usize) -> bool,
    /// Scrape at which the process restarts and its counters start again near zero.
    restart_at: Option<usize>,
    /// Scrape timestamps in ms, one per scrape index.
    timestamps: Vec<i64>,
}

impl Target {
    fn new(
        rng: &mut SplitMix,
        job: &'static str,
        instance: &'static str,
        up: fn(usize) -> bool,
        restart_at: Option<usize>,
    ) -> Target {
        // A phase of 1-14 s into each 15 s interval plus up to ±400 ms of jitter per
        // scrape. The millisecond part is never 0 or 1: both importers read the seconds
        // as a float and truncate to milliseconds, which can turn .001 into .000, and no
        // sample may be on a whole second (see the module comment).
        let phase = 1_000 + rng.below(13_000) as i64;
        let timestamps = (0..SCRAPES as i64)
            .map(|i| {
                let jitter = rng.below(801) as i64 - 400;
                let t = DATA_START_S * 1000 + i * SCRAPE_INTERVAL_MS + phase + jitter;
                if t % 1000 <= 1 {
                    t + 7
                } else {
                    t
                }
            })
            .collect();
        Target {
            job,
            instance,
            up,
            restart_at,
            timestamps,
        }
    }

    /// The same target, seen only while `up` says so (a device plugged in late).
    fn while_up(&self, up: fn(usize) -> bool) -> Target {
        Target {
            job: self.job,
            instance: self.instance,
            up,
            restart_at: self.restart_at,
            timestamps: self.timestamps.clone(),
        }
    }

    fn labels(&self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut l = vec![
            ("instance".to_string(), self.instance.to_string()),
            ("job".to_string(), self.job.to_string()),
        ];
        l.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        l
    }

    fn scrapes(&self) -> impl Iterator<Item = (usize, i64)> + '_ {
        self.timestamps
            .iter()
            .enumerate()
            .filter(|(i, _)| (self.up)(*i))
            .map(|(i, t)| (i, *t))
    }
}

fn minutes(i: usize) -> i64 {
    i as i64 * SCRAPE_INTERVAL_MS / 60_000
}

/// One series of a counter or gauge family.
struct Series {
    labels: Vec<(String, String)>,
    points: Vec<(i64, f64)>,
}

/// One metric of a classic histogram: cumulative bucket counts, sum and count per scrape.
struct HistogramMetric {
    labels: Vec<(String, String)>,
    points: Vec<(i64, Vec<f64>, f64)>,
}

enum Family {
    Counter {
        name: &'static str,
        series: Vec<Series>,
    },
    Gauge {
        name: &'static str,
        series: Vec<Series>,
    },
    Histogram {
        name: &'static str,
        bounds: Vec<f64>,
        metrics: Vec<HistogramMetric>,
    },
}

/// How a counter's first sample looks.
#[derive(Clone, Copy)]
enum CounterStart {
    /// A process that starts with the data exposes 0 first.
    Zero,
    /// A process that has been running: at least six minutes' worth of increase, far
    /// above one scrape interval's (see "rate extrapolation limited at the zero point").
    Running,
}

/// A counter of a target rising at about `per_second` (jittered), reset to a small
/// value when the target restarts, and at `extra_reset` on its own.
fn counter(
    rng: &mut SplitMix,
    target: &Target,
    extra: &[(&str, &str)],
    per_second: f64,
    integer: bool,
    start: CounterStart,
    extra_reset: Option<usize>,
) -> Series {
    let mut v = match start {
        CounterStart::Zero => None,
        CounterStart::Running => Some(per_second * rng.range(360.0, 3600.0)),
    };
    let mut last_t: Option<i64> = None;
    let mut points = Vec::new();
    for (i, t) in target.scrapes() {
        let dt = last_t.map_or(15.0, |l| (t - l) as f64 / 1000.0);
        let inc = per_second * dt * rng.range(0.5, 1.5);
        let mut next = match v {
            None => 0.0,
            Some(_) if target.restart_at == Some(i) || extra_reset == Some(i) => inc * rng.unit(),
            Some(v) => v + inc,
        };
        next = if integer {
            next.floor()
        } else {
            (next * 100.0).round() / 100.0
        };
        v = Some(next);
        points.push((t, next));
        last_t = Some(t);
    }
    Series {
        labels: target.labels(extra),
        points,
    }
}

/// A gauge of a target: `value(scrape index, rng)`.
fn gauge(
    rng: &mut SplitMix,
    target: &Target,
    extra: &[(&str, &str)],
    mut value: impl FnMut(usize, &mut SplitMix) -> f64,
) -> Series {
    Series {
        labels: target.labels(extra),
        points: target.scrapes().map(|(i, t)| (t, value(i, rng))).collect(),
    }
}

/// A slow sine plus noise, rounded to `decimals`.
fn wave(
    rng: &mut SplitMix,
    offset: f64,
    amplitude: f64,
    period_scrapes: f64,
    decimals: i32,
) -> impl FnMut(usize, &mut SplitMix) -> f64 {
    let phase = rng.range(0.0, std::f64::consts::TAU);
    let scale = 10f64.powi(decimals);
    move |i, rng| {
        let x = offset
            + amplitude * (i as f64 * std::f64::consts::TAU / period_scrapes + phase).sin()
            + amplitude * 0.01 * rng.range(-1.0, 1.0);
        (x * scale).round() / scale
    }
}

/// A classic histogram of a target: each scrape observes a random number of values
/// from a log-uniform distribution between `lo` and `hi`.
fn histogram(
    rng: &mut SplitMix,
    target: &Target,
    extra: &[(&str, &str)],
    bounds: &[f64],
    max_per_scrape: u64,
    lo: f64,
    hi: f64,
) -> HistogramMetric {
    let mut counts = vec![0.0; bounds.len() + 1];
    let mut sum = 0.0;
    let mut points = Vec::new();
    for (i, t) in target.scrapes() {
        let restarted = target.restart_at == Some(i);
        if restarted {
            counts.iter_mut().for_each(|c| *c = 0.0);
            sum = 0.0;
        }
        // A process that starts (with the data, or later, or again) exposes zeros
        // first (see "rate extrapolation limited at the zero point"). Quiet stretches
        // (no requests at all) leave rate() of every bucket at 0.
        let quiet = (i / 40) % 7 == 3;
        let n = if quiet || points.is_empty() || restarted {
            0
        } else {
            rng.below(max_per_scrape + 1)
        };
        for _ in 0..n {
            let x = (lo.ln() + (hi.ln() - lo.ln()) * rng.unit()).exp();
            let b = bounds.iter().position(|b| x <= *b).unwrap_or(bounds.len());
            counts[b] += 1.0;
            sum += x;
        }
        sum = (sum * 1000.0).round() / 1000.0;
        let cumulative: Vec<f64> = counts
            .iter()
            .scan(0.0, |acc, c| {
                *acc += c;
                Some(*acc)
            })
            .collect();
        points.push((t, cumulative, sum));
    }
    HistogramMetric {
        labels: target.labels(extra),
        points,
    }
}

fn always(_: usize) -> bool {
    true
}

fn generate() -> Vec<Family> {
    use CounterStart::{Running, Zero};
    let mut rng = SplitMix(0x5eed_a770_3000_0001);
    let rng = &mut rng;
    // node-4 joins 20 minutes in and is away from minute 40 to 52 (longer than the
    // lookback); node-3 goes away for good at 2 h 40 m.
    let node = [
        Target::new(rng, "node", "10.0.0.1:9100", always, None),
        Target::new(rng, "node", "10.0.0.2:9100", always, Some(380)),
        Target::new(rng, "node", "10.0.0.3:9100", |i| minutes(i) < 160, None),
        Target::new(
            rng,
            "node",
            "10.0.0.4:9100",
            |i| minutes(i) >= 20 && !(40..52).contains(&minutes(i)),
            None,
        ),
    ];
    let mysql = [
        Target::new(rng, "mysql", "db-1:9104", always, None),
        Target::new(rng, "mysql", "db-2:9104", always, Some(480)),
        Target::new(rng, "mysql", "db-3:9104", |i| minutes(i) >= 35, None),
    ];
    let api = [
        Target::new(rng, "api", "api-1:8080", always, None),
        Target::new(rng, "api", "api-2:8080", always, Some(500)),
        Target::new(rng, "api", "api-3:8080", |i| minutes(i) < 130, None),
    ];
    // Batch workers run for a while in the middle of the data; batch-2 twice.
    let batch = [
        Target::new(
            rng,
            "batch",
            "batch-1:9000",
            |i| (65..110).contains(&minutes(i)),
            None,
        ),
        Target::new(
            rng,
            "batch",
            "batch-2:9000",
            |i| (50..70).contains(&minutes(i)) || (95..150).contains(&minutes(i)),
            Some(400),
        ),
    ];
    let edge = Target::new(rng, "edge", "edge:1", always, None);

    let mut families = Vec::new();

    let mut cpu = Vec::new();
    for (n, t) in node.iter().enumerate() {
        let cpus = if n < 2 { 4 } else { 2 };
        for c in 0..cpus {
            for (mode, share) in [
                ("idle", 0.8),
                ("user", 0.12),
                ("system", 0.05),
                ("iowait", 0.03),
            ] {
                let c = c.to_string();
                let reset = (n == 0 && c == "1" && mode == "user").then_some(300);
                cpu.push(counter(
                    rng,
                    t,
                    &[("cpu", &c), ("mode", mode)],
                    share,
                    false,
                    Running,
                    reset,
                ));
            }
        }
    }
    families.push(Family::Counter {
        name: "node_cpu_seconds",
        series: cpu,
    });
    for name in ["node_network_receive_bytes", "node_network_transmit_bytes"] {
        let mut series = Vec::new();
        for t in &node {
            for (device, lo, hi) in [("eth0", 1e4, 5e6), ("lo", 10.0, 1e3)] {
                let rate = rng.range(lo, hi);
                series.push(counter(
                    rng,
                    t,
                    &[("device", device)],
                    rate,
                    true,
                    Running,
                    None,
                ));
            }
        }
        families.push(Family::Counter { name, series });
    }
    let mut disk = Vec::new();
    for t in &node {
        let rate = rng.range(1e5, 1e7);
        disk.push(counter(
            rng,
            t,
            &[("device", "sda")],
            rate,
            true,
            Running,
            None,
        ));
    }
    // A disk plugged in on node-1 at 1 h 30 m.
    let sdb = node[0].while_up(|i| minutes(i) >= 90);
    disk.push(counter(
        rng,
        &sdb,
        &[("device", "sdb")],
        2e6,
        true,
        Zero,
        None,
    ));
    families.push(Family::Counter {
        name: "node_disk_read_bytes",
        series: disk,
    });

    let mut queries = Vec::new();
    let mut commands = Vec::new();
    for t in &mysql {
        let rate = rng.range(50.0, 2000.0);
        queries.push(counter(rng, t, &[], rate, true, Running, None));
        for (command, share) in [
            ("select", 0.7),
            ("insert", 0.2),
            ("update", 0.08),
            ("delete", 0.02),
        ] {
            commands.push(counter(
                rng,
                t,
                &[("command", command)],
                500.0 * share,
                true,
                Running,
                None,
            ));
        }
    }
    families.push(Family::Counter {
        name: "mysql_global_status_queries",
        series: queries,
    });
    families.push(Family::Counter {
        name: "mysql_global_status_commands",
        series: commands,
    });
    let jobs_done = batch
        .iter()
        .map(|t| {
            let rate = rng.range(0.1, 3.0);
            // Workers start from zero.
            counter(rng, t, &[], rate, true, Zero, None)
        })
        .collect();
    families.push(Family::Counter {
        name: "batch_jobs_processed",
        series: jobs_done,
    });

    let mut load1 = Vec::new();
    let mut mem = Vec::new();
    let mut fs = Vec::new();
    for t in &node {
        let w = wave(rng, 1.5, 1.2, 90.0, 2);
        load1.push(gauge(rng, t, &[], w));
        let w = wave(rng, 8e9, 2e9, 300.0, 0);
        mem.push(gauge(rng, t, &[], w));
        for (device, mountpoint) in [("sda1", "/"), ("sda2", "/var")] {
            let w = wave(rng, 5e11, 1e10, 700.0, 0);
            fs.push(gauge(
                rng,
                t,
                &[("device", device), ("mountpoint", mountpoint)],
                w,
            ));
        }
    }
    families.push(Family::Gauge {
        name: "node_load1",
        series: load1,
    });
    families.push(Family::Gauge {
        name: "node_memory_MemAvailable_bytes",
        series: mem,
    });
    families.push(Family::Gauge {
        name: "node_filesystem_avail_bytes",
        series: fs,
    });
    // Constants and clocks, as dashboards divide by and subtract them.
    let mut total = Vec::new();
    let mut size = Vec::new();
    let mut boot = Vec::new();
    let mut clock = Vec::new();
    for (n, t) in node.iter().enumerate() {
        let bytes = if n < 2 {
            17_179_869_184.0
        } else {
            8_589_934_592.0
        };
        total.push(gauge(rng, t, &[], move |_, _| bytes));
        for device in ["sda1", "sda2"] {
            let mountpoint = if device == "sda1" { "/" } else { "/var" };
            let labels = [("device", device), ("mountpoint", mountpoint)];
            size.push(gauge(rng, t, &labels, |_, _| 1e12));
        }
        // The restart of node-2 moves its boot time.
        let booted = (DATA_START_S - 86_400 * (n as i64 + 1)) as f64;
        let restart = t.restart_at;
        let restarted_at = restart.map(|r| t.timestamps[r] as f64 / 1000.0 - 30.0);
        boot.push(gauge(rng, t, &[], move |i, _| {
            match (restart, restarted_at) {
                (Some(r), Some(at)) if i >= r => at.floor(),
                _ => booted,
            }
        }));
        let stamps = t.timestamps.clone();
        clock.push(gauge(rng, t, &[], move |i, _| stamps[i] as f64 / 1000.0));
    }
    for (name, series) in [
        ("node_memory_MemTotal_bytes", total),
        ("node_filesystem_size_bytes", size),
        ("node_boot_time_seconds", boot),
        ("node_time_seconds", clock),
    ] {
        families.push(Family::Gauge { name, series });
    }
    let max_connections = mysql
        .iter()
        .map(|t| gauge(rng, t, &[], |_, _| 151.0))
        .collect();
    families.push(Family::Gauge {
        name: "mysql_global_variables_max_connections",
        series: max_connections,
    });
    let mut temperature = Vec::new();
    for (t, site) in node.iter().zip(["north", "south", "east", "west"]) {
        let w = wave(rng, -12.0, 15.0, 500.0, 1);
        temperature.push(gauge(rng, t, &[("site", site)], w));
    }
    families.push(Family::Gauge {
        name: "outdoor_temperature_celsius",
        series: temperature,
    });
    let mut threads = Vec::new();
    for t in &mysql {
        let w = wave(rng, 40.0, 30.0, 120.0, 0);
        threads.push(gauge(rng, t, &[], w));
    }
    families.push(Family::Gauge {
        name: "mysql_global_status_threads_connected",
        series: threads,
    });
    let queue = batch
        .iter()
        .map(|t| gauge(rng, t, &[], |_, rng| rng.below(50) as f64))
        .collect();
    families.push(Family::Gauge {
        name: "batch_queue_length",
        series: queue,
    });
    let last_success = batch
        .iter()
        .map(|t| {
            gauge(rng, t, &[], |i, _| {
                (DATA_START_S + (i as i64 / 8) * 8 * 15 - 3 * 3600) as f64
            })
        })
        .collect();
    families.push(Family::Gauge {
        name: "batch_last_success_timestamp_seconds",
        series: last_success,
    });
    // Values at the edges of float64: huge, tiny, infinite, NaN, zero, constant.
    let edge_series: Vec<Series> = vec![
        gauge(rng, &edge, &[("kind", "huge")], |i, rng| {
            rng.range(-1.0, 1.0) * 1e300 + i as f64 * 1e295
        }),
        gauge(rng, &edge, &[("kind", "tiny")], |_, rng| {
            rng.range(0.0, 1.0) * 1e-300
        }),
        gauge(rng, &edge, &[("kind", "inf")], |i, rng| match i % 97 {
            13 => f64::INFINITY,
            71 => f64::NEG_INFINITY,
            _ => rng.range(-5.0, 5.0),
        }),
        gauge(rng, &edge, &[("kind", "nan")], |i, rng| {
            if i % 50 == 7 {
                f64::NAN
            } else {
                rng.range(0.0, 10.0)
            }
        }),
        gauge(rng, &edge, &[("kind", "zero")], |_, _| 0.0),
        gauge(rng, &edge, &[("kind", "const")], |_, _| 42.0),
        gauge(rng, &edge, &[("kind", "fraction")], |_, rng| {
            (rng.range(-1.0, 1.0) * 1e6).round() / 1e6
        }),
    ];
    families.push(Family::Gauge {
        name: "edge_values",
        series: edge_series,
    });

    let http_bounds = vec![
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ];
    let mut http = Vec::new();
    for t in &api {
        for (handler, max, lo, hi) in [
            ("/api/v1/query", 30, 0.002, 3.0),
            ("/api/v1/series", 10, 0.001, 0.3),
            ("/slow", 3, 0.5, 20.0),
        ] {
            http.push(histogram(
                rng,
                t,
                &[("handler", handler)],
                &http_bounds,
                max,
                lo,
                hi,
            ));
        }
    }
    families.push(Family::Histogram {
        name: "http_request_duration_seconds",
        bounds: http_bounds,
        metrics: http,
    });
    let mysql_bounds = vec![0.001, 0.01, 0.1, 1.0];
    let mysql_latency = mysql
        .iter()
        .map(|t| histogram(rng, t, &[], &mysql_bounds, 50, 0.0002, 2.0))
        .collect();
    families.push(Family::Histogram {
        name: "mysql_query_duration_seconds",
        bounds: mysql_bounds,
        metrics: mysql_latency,
    });
    families
}

/// A float as OpenMetrics writes it (exact round trip).
fn om_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v:?}")
    }
}

fn om_labels(labels: &[(String, String)], le: Option<&str>) -> String {
    let mut parts: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    format!("{{{}}}", parts.join(","))
}

fn om_timestamp(ms: i64) -> String {
    // See Target::new: no sample near a whole second.
    assert!(ms % 1000 > 1, "sample at a whole second: {ms}");
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// How many series the families have (a histogram metric has one per bucket, `_sum`
/// and `_count`).
fn series_count(families: &[Family]) -> usize {
    families
        .iter()
        .map(|f| match f {
            Family::Counter { series, .. } | Family::Gauge { series, .. } => series.len(),
            Family::Histogram {
                bounds, metrics, ..
            } => metrics.len() * (bounds.len() + 3),
        })
        .sum()
}

/// The families as an OpenMetrics file with timestamps, as both importers take it.
fn render_openmetrics(families: &[Family]) -> (String, usize) {
    let mut out = String::new();
    let mut samples = 0;
    for f in families {
        match f {
            Family::Counter { name, series } | Family::Gauge { name, series } => {
                let (kind, sample_name) = match f {
                    Family::Counter { .. } => ("counter", format!("{name}_total")),
                    _ => ("gauge", name.to_string()),
                };
                let _ = writeln!(out, "# TYPE {name} {kind}");
                for s in series {
                    let labels = om_labels(&s.labels, None);
                    for (t, v) in &s.points {
                        let _ = writeln!(
                            out,
                            "{sample_name}{labels} {} {}",
                            om_float(*v),
                            om_timestamp(*t)
                        );
                    }
                    samples += s.points.len();
                }
            }
            Family::Histogram {
                name,
                bounds,
                metrics,
            } => {
                let _ = writeln!(out, "# TYPE {name} histogram");
                // `le` in the canonical float text Prometheus 3 normalises it to.
                let les: Vec<String> = bounds
                    .iter()
                    .map(|b| format!("{b:?}"))
                    .chain(["+Inf".to_string()])
                    .collect();
                for m in metrics {
                    let plain = om_labels(&m.labels, None);
                    for (t, cumulative, sum) in &m.points {
                        let ts = om_timestamp(*t);
                        for (le, c) in les.iter().zip(cumulative) {
                            let labels = om_labels(&m.labels, Some(le));
                            let _ = writeln!(out, "{name}_bucket{labels} {} {ts}", om_float(*c));
                        }
                        let count = cumulative.last().copied().unwrap_or(0.0);
                        let _ = writeln!(out, "{name}_sum{plain} {} {ts}", om_float(*sum));
                        let _ = writeln!(out, "{name}_count{plain} {} {ts}", om_float(count));
                        samples += les.len() + 2;
                    }
                }
            }
        }
    }
    out.push_str("# EOF\n");
    (out, samples)
}

// ---------------------------------------------------------------------------------
// Queries
// ---------------------------------------------------------------------------------

/// When a query is evaluated (seconds since the epoch, all whole seconds).
#[derive(Clone, Copy, Debug)]
enum Eval {
    Instant(i64),
    Range { start: i64, end: i64, step: i64 },
}

impl Eval {
    fn later_by(self, seconds: i64) -> Eval {
        match self {
            Eval::Instant(t) => Eval::Instant(t + seconds),
            Eval::Range { start, end, step } => Eval::Range {
                start: start + seconds,
                end: end + seconds,
                step,
            },
        }
    }
}

impl std::fmt::Display for Eval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rel = |t: i64| {
            let d = t - DATA_START_S;
            format!(
                "start{}{}m{}s",
                if d < 0 { "-" } else { "+" },
                d.abs() / 60,
                d.abs() % 60
            )
        };
        match self {
            Eval::Instant(t) => write!(f, "instant at {t} ({})", rel(*t)),
            Eval::Range { start, end, step } => write!(
                f,
                "range {start}..{end} step {step}s ({}..{})",
                rel(*start),
                rel(*end)
            ),
        }
    }
}

/// Instant evaluation times: at the very start (windows reaching before the data),
/// inside node-4's gap, in the middle, at a restart, just after the data ends (within
/// the lookback) and well after it (empty results).
fn instant_times() -> Vec<i64> {
    [
        3 * MINUTE,
        47 * MINUTE,
        87 * MINUTE + 7,
        96 * MINUTE,
        183 * MINUTE,
        200 * MINUTE,
    ]
    .iter()
    .map(|d| DATA_START_S + d)
    .collect()
}

/// Range windows: the whole data at 60 s, a stretch across node-4's gap and the batch
/// workers' start at 15 s, the end of the data (and beyond) at 30 s, its start (and
/// before) at a step that does not divide the window, steps longer than the range
/// selectors (windows that do not overlap) and steps shorter than the scrape interval.
fn range_windows() -> Vec<Eval> {
    [
        (0, 180, 60),
        (38, 72, 15),
        (150, 195, 30),
        (-20, 37, 45),
        (-10, 250, 600),
        (61, 69, 5),
    ]
    .iter()
    .map(|(from, to, step)| Eval::Range {
        start: DATA_START_S + from * MINUTE,
        end: DATA_START_S + to * MINUTE,
        step: *step,
    })
    .collect()
}

const COUNTERS: &[&str] = &[
    "node_cpu_seconds_total",
    r#"node_cpu_seconds_total{instance="10.0.0.2:9100",mode="user"}"#,
    r#"node_network_receive_bytes_total{device="eth0"}"#,
    "node_disk_read_bytes_total",
    "mysql_global_status_commands_total",
    "batch_jobs_processed_total",
    r#"http_request_duration_seconds_count{handler="/slow"}"#,
];

const GAUGES: &[&str] = &[
    "node_load1",
    "node_memory_MemAvailable_bytes",
    "outdoor_temperature_celsius",
    "edge_values",
    "mysql_global_status_threads_connected",
    "batch_queue_length",
];

/// Inputs of aggregations: a counter rate, big and negative gauges, edge values.
const AGGREGATED: &[&str] = &[
    "rate(node_cpu_seconds_total[5m])",
    "node_memory_MemAvailable_bytes",
    "outdoor_temperature_celsius",
    "edge_values",
    "irate(mysql_global_status_commands_total[1m])",
];

const GROUPINGS: &[&str] = &[
    "",
    " by (instance)",
    " without (cpu, mode)",
    " by (job, mode)",
    " without (instance)",
];

/// Queries written out: dashboard expressions and the edge cases of each feature.
const HANDWRITTEN: &[&str] = &[
    // node dashboards
    r#"100 - (avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[5m])) * 100)"#,
    r#"sum by (instance, mode) (rate(node_cpu_seconds_total{mode!="idle"}[5m])) / ignoring (mode) group_left sum by (instance) (rate(node_cpu_seconds_total[5m]))"#,
    "node_filesystem_avail_bytes / on (instance) group_left node_memory_MemAvailable_bytes",
    "node_filesystem_avail_bytes / on (instance) group_left (job) node_memory_MemAvailable_bytes",
    "1 - node_memory_MemAvailable_bytes / 17179869184",
    "node_memory_MemAvailable_bytes / 1024 / 1024",
    "rate(node_network_receive_bytes_total[5m]) * 8",
    "rate(node_network_receive_bytes_total[5m]) + on (instance, device) rate(node_network_transmit_bytes_total[5m])",
    "count(count by (instance) (node_cpu_seconds_total))",
    r#"count by (cpu) (node_cpu_seconds_total{mode="idle"})"#,
    "topk(1, sum by (instance) (rate(node_network_receive_bytes_total[5m])))",
    r#"rate(node_cpu_seconds_total{instance="10.0.0.4:9100"}[15m])"#,
    r#"node_load1{instance="10.0.0.4:9100"}"#,
    "sum by (instance) (rate(node_cpu_seconds_total[5m])) > 0.5 and on (instance) node_load1 > 1",
    r#"(1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes) * 100"#,
    r#"100 - node_filesystem_avail_bytes{mountpoint="/"} * 100 / node_filesystem_size_bytes{mountpoint="/"}"#,
    "node_time_seconds - node_boot_time_seconds",
    "predict_linear(node_filesystem_avail_bytes[1h], 4 * 3600) < 0",
    "predict_linear(node_filesystem_avail_bytes[1h], 4 * 3600) < 4.5e11",
    "deriv(node_memory_MemAvailable_bytes[30m])",
    r#"count without (cpu, mode) (node_cpu_seconds_total{mode="idle"})"#,
    "sum by (instance) (irate(node_network_receive_bytes_total[5m]))",
    r#"max by (instance) (irate(node_cpu_seconds_total{mode!="idle"}[1m]))"#,
    "increase(node_cpu_seconds_total[1h])",
    "changes(node_boot_time_seconds[1h])",
    // MySQL dashboards
    "mysql_global_status_threads_connected / mysql_global_variables_max_connections * 100",
    r#"rate(mysql_global_status_commands_total{command=~"select|insert"}[5m])"#,
    "topk(5, rate(mysql_global_status_commands_total[5m])) > 0",
    "sum(increase(mysql_global_status_queries_total[1h]))",
    "rate(mysql_global_status_commands_total[5m]) / on (instance) group_left rate(mysql_global_status_queries_total[5m])",
    "mysql_global_status_threads_connected * on (instance) group_right rate(mysql_global_status_commands_total[5m])",
    "sort_desc(rate(mysql_global_status_queries_total[5m]))",
    "scalar(sum(rate(mysql_global_status_queries_total[5m])))",
    "sum by (handler) (rate(http_request_duration_seconds_sum[5m])) / sum by (handler) (rate(http_request_duration_seconds_count[5m]))",
    r#"sum by (job) (rate(http_request_duration_seconds_bucket{le="0.25"}[5m])) / sum by (job) (rate(http_request_duration_seconds_count[5m]))"#,
    "histogram_quantile(0.9, http_request_duration_seconds_bucket)",
    r#"resets(http_request_duration_seconds_bucket{le="+Inf"}[1h])"#,
    "histogram_quantile(0.9, sum by (le) (delta(http_request_duration_seconds_bucket[5m])))",
    r#"histogram_quantile(0.9, http_request_duration_seconds_bucket{le!="+Inf"})"#,
    "histogram_quantile(NaN, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
    "histogram_quantile(scalar(node_load1 / 3), sum by (le) (rate(mysql_query_duration_seconds_bucket[5m])))",
    // comparisons and set operators
    "node_load1 > 2",
    "node_load1 > bool 2",
    "2 < bool node_load1",
    "node_load1 >= on (instance) node_load1 offset 10m",
    r#"rate(node_cpu_seconds_total{mode="idle"}[5m]) < bool 0.5"#,
    "node_load1 == bool on (instance, job) node_load1",
    "edge_values != 42",
    "edge_values > bool 0",
    "node_load1 and node_memory_MemAvailable_bytes > 7e9",
    "node_load1 or batch_queue_length",
    "node_load1 unless on (instance) (node_load1 offset 30m)",
    "batch_queue_length unless batch_queue_length offset 10m",
    "node_load1 and on () vector(1)",
    "1 > bool 2",
    "node_load1 > on (instance) group_left node_load1 offset 5m",
    "node_load1 or on (instance) node_memory_MemAvailable_bytes",
    "node_memory_MemAvailable_bytes unless ignoring (job) node_load1 > 2",
    r#"rate(mysql_global_status_commands_total[5m]) and on (instance) mysql_global_status_threads_connected > 40"#,
    // arithmetic
    "1 + 2",
    "2 ^ 3 ^ 2",
    "-2 ^ 2",
    "-node_load1",
    "+node_load1",
    "42",
    "-Inf",
    "NaN",
    r#""a string""#,
    "2 ^ 0.5",
    "10 % 3",
    "-5 % 3",
    "1 / 0",
    "-1 / 0",
    "0 / 0",
    "time() % 3600",
    "node_memory_MemAvailable_bytes - node_memory_MemAvailable_bytes offset 1h",
    "node_load1 ^ 2",
    "node_load1 % 0.5",
    "edge_values * -1",
    "-edge_values",
    "edge_values / 0",
    "node_load1 atan2 (node_load1 offset 5m)",
    "node_load1 + on () group_left vector(1)",
    "node_load1 * scalar(count(node_load1))",
    "time() - batch_last_success_timestamp_seconds",
    // errors: many-to-many, duplicate series, bad arguments, parse errors
    "rate(mysql_global_status_commands_total[5m]) + on (job) mysql_global_status_threads_connected",
    "node_filesystem_avail_bytes + on (instance) node_cpu_seconds_total",
    "node_memory_MemAvailable_bytes + on (job) node_load1",
    r#"rate({__name__=~"node_network_.*_bytes_total"}[5m])"#,
    r#"label_replace(node_load1, "instance", "x", "job", "node")"#,
    r#"label_replace(node_load1, "host", "$1", "instance", "(.*")"#,
    "rate(node_load1)",
    "sum by (instance) (",
    "node_load1 +",
    r#"topk("a", node_load1)"#,
    "max_over_time(node_load1[5m:0s])",
    // selectors
    "nonexistent_metric",
    "sum(nonexistent_metric)",
    "rate(nonexistent_total[5m])",
    r#"node_load1{job=~"no.*"}"#,
    r#"node_load1{instance=~"10\\.0\\.0\\.[12]:9100"}"#,
    r#"node_load1{instance!~".*:9100"}"#,
    r#"{__name__=~"node_load.*"}"#,
    r#"{__name__=~"node_(load1|memory_MemAvailable_bytes)", instance="10.0.0.1:9100"}"#,
    r#"sum without (instance) (rate({__name__=~"mysql_global_status_.*_total"}[5m]))"#,
    "node_load1[5m]",
    "batch_queue_length[2m]",
    r#"sum by (nonexistent) (node_load1)"#,
    "avg without (job, instance) (node_load1)",
    "group by (job) (node_cpu_seconds_total)",
    r#"count_values without (instance) ("load", round(node_load1))"#,
    "stddev by (job) (edge_values)",
    "node_load1 offset 1d",
    "sort_desc(sum by (instance) (rate(node_network_receive_bytes_total[5m])))",
    "vector(scalar(node_load1))",
    "scalar(vector(5))",
    "timestamp(node_load1) - time()",
    "clamp_max(edge_values, 1)",
    "clamp(edge_values, -1, 1)",
    "abs(edge_values)",
    "round(edge_values)",
    "sgn(edge_values)",
    "floor(edge_values)",
    "irate(edge_values[5m])",
    "resets(edge_values[10m])",
    "acos(node_load1 / 10)",
    r#"label_replace(node_load1, "x", "$2", "instance", "(.*)")"#,
    r#"label_replace(node_load1, "x", "y", "instance", "nomatch")"#,
    r#"label_join(node_load1, "x", "", "instance", "job")"#,
    // NaN and infinities among ordinary values
    "sort(node_load1 or on () vector(NaN))",
    "sort_desc(node_load1 or on () vector(NaN))",
    "sort(node_load1 or on () vector(-Inf))",
    "topk(2, node_load1 or on () vector(NaN))",
    "bottomk(2, node_load1 or on () vector(NaN))",
    "topk(10, node_load1 or on () vector(NaN))",
    "max(node_load1 or on () vector(NaN))",
    "min(node_load1 or on () vector(NaN))",
    "quantile(0.5, node_load1 or on () vector(NaN))",
    "stddev(node_load1 or on () vector(+Inf))",
    "avg(node_load1 or on () vector(+Inf))",
    "sum(node_load1 or on () vector(-Inf) or on () vector(+Inf))",
    r#"count_values("v", node_load1 > 2 or on () vector(NaN))"#,
    "node_load1 > on () group_left vector(NaN)",
    // more selectors, modifiers and nesting
    r#"node_load1{nonexistent=""}"#,
    r#"node_load1{job!=""}"#,
    r#"{job=""}"#,
    r#"absent(nonexistent{job="a"} offset 5m)"#,
    "max_over_time(node_load1[1d])",
    "sum_over_time(node_load1[10m] @ start())",
    "max_over_time(node_load1[10m:1m] offset 5m @ end())",
    "max_over_time(avg_over_time(node_load1[5m:1m])[30m:5m])",
    r#"scalar(node_load1{instance="10.0.0.1:9100"}) * 2"#,
    "count(node_load1 > 1)",
    "predict_linear(node_memory_MemAvailable_bytes[15m] @ 1700004000, 600)",
    r#"node_load1{instance=~"10.0.0.1:9100|10.0.0.3:9100"}"#,
    r#"rate(http_request_duration_seconds_count{handler=~"/api/.*"}[5m])"#,
    r#"rate(http_request_duration_seconds_count{handler!~"/api/v1/.+"}[5m])"#,
    r#"{__name__=~"http_.*_count"}"#,
    r#"node_load1{job=~"(?i)NODE"}"#,
    r#"sum by (__name__) ({__name__=~"node_load1|node_memory_MemAvailable_bytes"})"#,
    r#"count_values("v", rate(node_network_receive_bytes_total[5m]))"#,
    r#"label_replace(rate(node_cpu_seconds_total{mode="idle"}[5m]), "__name__", "idle_rate", "", "")"#,
    "absent(sum(nonexistent))",
    "vector(time()) > 1700004000",
    "day_of_week()",
    "quantile_over_time(NaN, node_load1[5m])",
    "quantile_over_time(-1, node_load1[5m])",
    "double_exponential_smoothing(node_load1[10m], 0, 0.5)",
    "round(node_load1, 0)",
    "topk(0, node_load1)",
    "topk(-1, node_load1)",
    "topk(1.5, node_load1)",
    "quantile(NaN, node_load1)",
    "rate(node_cpu_seconds_total[1s])",
    "irate(node_cpu_seconds_total[15s])",
    "increase(node_cpu_seconds_total[5m] offset -5m)",
    "sum(rate(node_cpu_seconds_total[5m])) by (instance) / on (instance) group_left count(node_cpu_seconds_total) by (instance)",
    "sum(sum by (instance) (node_load1))",
    "max(max_over_time(node_load1[1h]))",
    // absent, vector, scalar, timestamp, sort
    "absent(up)",
    r#"absent(nonexistent{job="x", instance=~"y"})"#,
    "absent(node_load1)",
    r#"absent_over_time(batch_queue_length{instance="batch-1:9000"}[5m])"#,
    r#"absent_over_time(nonexistent{job="x"}[5m])"#,
    "vector(1)",
    "vector(time())",
    "scalar(node_load1)",
    "scalar(sum(node_load1))",
    "sort(node_load1)",
    "sort_desc(node_load1)",
    "sort(edge_values)",
    "sort_desc(edge_values)",
    "timestamp(node_load1)",
    "timestamp(node_load1 offset 2m)",
    "timestamp(rate(node_cpu_seconds_total[5m]))",
    // labels
    r#"label_replace(node_load1, "host", "$1", "instance", "(.*):.*")"#,
    r#"label_replace(node_load1, "instance", "", "instance", ".*")"#,
    r#"label_replace(rate(node_cpu_seconds_total[5m]), "core", "cpu-$1", "cpu", "(\\d+)")"#,
    r#"label_join(node_filesystem_avail_bytes, "path", ":", "device", "mountpoint")"#,
    r#"label_join(node_load1, "__name__", "", "job")"#,
    // math
    "clamp(outdoor_temperature_celsius, -5, 5)",
    "clamp_min(edge_values, 0)",
    "clamp_max(node_load1, 1)",
    "clamp(node_load1, 5, 1)",
    "round(outdoor_temperature_celsius)",
    "round(outdoor_temperature_celsius, 5)",
    "round(node_load1, 0.1)",
    "abs(outdoor_temperature_celsius)",
    "sqrt(edge_values)",
    "sqrt(node_load1)",
    "ln(node_memory_MemAvailable_bytes)",
    "ln(edge_values)",
    "log2(node_load1)",
    "log10(node_filesystem_avail_bytes)",
    "exp(node_load1)",
    "exp(edge_values)",
    "ceil(outdoor_temperature_celsius)",
    "floor(outdoor_temperature_celsius)",
    "sgn(outdoor_temperature_celsius)",
    "sin(node_load1) + cos(node_load1)",
    "deg(atan(node_load1))",
    // time functions, on values and on the evaluation time
    "hour(batch_last_success_timestamp_seconds)",
    "minute(batch_last_success_timestamp_seconds)",
    "day_of_week(batch_last_success_timestamp_seconds)",
    "day_of_month(batch_last_success_timestamp_seconds)",
    "day_of_year(batch_last_success_timestamp_seconds)",
    "days_in_month(batch_last_success_timestamp_seconds)",
    "month(batch_last_success_timestamp_seconds)",
    "year(batch_last_success_timestamp_seconds)",
    "hour()",
    "minute(vector(time()))",
    "day_of_week(outdoor_temperature_celsius)",
    // offset and @
    r#"rate(node_cpu_seconds_total{mode="idle"}[5m] offset 30m)"#,
    "node_load1 offset -10m",
    "sum(node_load1 offset 1h)",
    "node_load1 @ 1700003000",
    "rate(node_network_receive_bytes_total[5m] @ end())",
    "node_load1 @ start()",
    "sum(rate(node_cpu_seconds_total[5m] @ 1700005000)) by (instance)",
    "node_load1 @ 1700003000 offset 10m",
    // subqueries
    "max_over_time(rate(node_network_receive_bytes_total[1m])[30m:1m])",
    "avg_over_time(node_load1[15m:30s])",
    "deriv(sum(node_memory_MemAvailable_bytes)[20m:])",
    "min_over_time(rate(http_request_duration_seconds_count[5m])[1h:5m] offset 10m)",
    "quantile_over_time(0.9, sum(rate(node_cpu_seconds_total[2m]))[20m:1m])",
    "rate(sum(node_cpu_seconds_total)[10m:1m])",
    "max_over_time((node_load1 > 1.5)[10m:15s])",
    "last_over_time(batch_queue_length[10m:1m] @ 1700004000)",
    // quantiles and counting
    "stddev(node_load1)",
    "stdvar by (job) (rate(mysql_global_status_commands_total[5m]))",
    "quantile(0.5, edge_values)",
    "quantile(-1, node_load1)",
    "quantile(2, node_load1)",
    r#"count_values("load", round(node_load1))"#,
    r#"count_values("threads", mysql_global_status_threads_connected)"#,
    r#"count_values("value", edge_values)"#,
    r#"count_values by (handler) ("count", http_request_duration_seconds_count)"#,
    "topk(3, edge_values)",
    "bottomk(3, edge_values)",
    "topk(2, node_load1) by (job)",
    "bottomk(1, rate(mysql_global_status_queries_total[5m]))",
    "topk(scalar(count(node_load1)) - 2, node_load1)",
    // series starting, stopping and restarting inside windows
    "increase(batch_jobs_processed_total[30m])",
    "rate(batch_jobs_processed_total[2m])",
    "changes(batch_last_success_timestamp_seconds[15m])",
    "last_over_time(node_load1[30m])",
    "present_over_time(batch_queue_length[10m])",
    r#"increase(node_cpu_seconds_total{instance="10.0.0.2:9100"}[10m])"#,
    r#"irate(node_disk_read_bytes_total{device="sdb"}[5m])"#,
    r#"count_over_time(node_load1{instance="10.0.0.3:9100"}[20m])"#,
];

/// The query expressions: templates over the generated families plus [`HANDWRITTEN`].
fn expressions() -> Vec<String> {
    let mut out = Vec::new();
    for c in COUNTERS {
        for f in ["rate", "increase"] {
            for w in ["1m", "5m", "15m"] {
                out.push(format!("{f}({c}[{w}])"));
            }
        }
        for f in ["irate", "resets", "changes"] {
            out.push(format!("{f}({c}[5m])"));
        }
    }
    for g in GAUGES {
        for f in [
            "delta",
            "idelta",
            "deriv",
            "avg_over_time",
            "min_over_time",
            "max_over_time",
            "sum_over_time",
            "count_over_time",
            "stddev_over_time",
            "stdvar_over_time",
            "last_over_time",
            "present_over_time",
            "changes",
            "absent_over_time",
        ] {
            out.push(format!("{f}({g}[5m])"));
        }
        for q in ["0", "0.5", "0.95"] {
            out.push(format!("quantile_over_time({q}, {g}[10m])"));
        }
        out.push(format!("predict_linear({g}[10m], 3600)"));
        out.push(format!("double_exponential_smoothing({g}[10m], 0.3, 0.6)"));
    }
    for (i, inner) in AGGREGATED.iter().enumerate() {
        for (j, agg) in [
            "sum", "avg", "min", "max", "count", "stddev", "stdvar", "group",
        ]
        .iter()
        .enumerate()
        {
            let grouping = GROUPINGS[(i + j) % GROUPINGS.len()];
            out.push(format!("{agg}{grouping} ({inner})"));
        }
        out.push(format!("quantile by (job) (0.9, {inner})"));
        out.push(format!("topk(3, {inner})"));
        out.push(format!("bottomk by (job) (2, {inner})"));
    }
    let buckets = [
        "sum by (le) (rate(http_request_duration_seconds_bucket[5m]))",
        "sum by (le, handler) (rate(http_request_duration_seconds_bucket[5m]))",
        "rate(http_request_duration_seconds_bucket[1m])",
        "sum by (le, instance) (increase(mysql_query_duration_seconds_bucket[10m]))",
    ];
    for b in buckets {
        for q in ["0.5", "0.9", "0.99"] {
            out.push(format!("histogram_quantile({q}, {b})"));
        }
    }
    for q in ["0", "1", "-0.5", "1.5"] {
        out.push(format!("histogram_quantile({q}, {})", buckets[1]));
    }
    // Every binary operator on vector/vector (one-to-one and many-to-one), vector/scalar
    // and scalar/vector, comparisons also with bool.
    let arithmetic = ["+", "-", "*", "/", "%", "^"].map(|op| op.to_string());
    let comparison = ["==", "!=", ">", "<", ">=", "<="];
    let comparison = comparison
        .iter()
        .flat_map(|op| [op.to_string(), format!("{op} bool")]);
    for op in arithmetic.into_iter().chain(comparison) {
        out.push(format!("node_load1 {op} (node_load1 offset 5m)"));
        out.push(format!("node_load1 {op} 1.5"));
        out.push(format!("1.5 {op} node_load1"));
        out.push(format!(
            r#"edge_values {op} on (instance) group_left edge_values{{kind="fraction"}}"#
        ));
    }
    out.extend(HANDWRITTEN.iter().map(|s| s.to_string()));
    out
}

// ---------------------------------------------------------------------------------
// Servers
// ---------------------------------------------------------------------------------

/// Fails with a useful message where the Prometheus tools are not installed.
fn require_tool(name: &str) {
    let found = Command::new(name)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "`{name}` (Prometheus 2.42, Debian package) is not installed; \
         scripts/install-deps.sh installs it"
    );
}

fn log_file(path: &Path) -> std::fs::File {
    std::fs::File::create(path).expect("create a log file")
}

/// One log file for both stdout and stderr of a process.
fn log_files(path: &Path) -> (std::fs::File, std::fs::File) {
    let file = log_file(path);
    let copy = file.try_clone().expect("clone a log file handle");
    (file, copy)
}

// ---------------------------------------------------------------------------------
// Answers and their comparison
// ---------------------------------------------------------------------------------

type LabelSet = BTreeMap<String, String>;

/// A query's answer through one HTTP API.
#[derive(Debug)]
enum Answer {
    /// Result type and series: label set and points (ms, value).
    Data {
        kind: String,
        series: Vec<(LabelSet, Vec<(i64, f64)>)>,
    },
    Error {
        kind: String,
        message: String,
    },
}

impl Answer {
    /// The answer with `__name__` taken out of every label set.
    fn without_metric_name(self) -> Answer {
        match self {
            Answer::Data { kind, series } => Answer::Data {
                kind,
                series: series
                    .into_iter()
                    .map(|(mut labels, points)| {
                        labels.remove("__name__");
                        (labels, points)
                    })
                    .collect(),
            },
            error => error,
        }
    }
}

fn parse_value(v: &Value) -> f64 {
    match v.as_str() {
        Some("NaN") => f64::NAN,
        Some("+Inf") => f64::INFINITY,
        Some("-Inf") => f64::NEG_INFINITY,
        Some(s) => s
            .parse()
            .unwrap_or_else(|e| panic!("sample value {s:?} is not a float: {e}")),
        None => panic!("sample value {v} is not a string"),
    }
}

fn parse_point(p: &Value) -> (i64, f64) {
    let t = p[0]
        .as_f64()
        .unwrap_or_else(|| panic!("point {p} has no time"));
    ((t * 1000.0).round() as i64, parse_value(&p[1]))
}

fn label_set(metric: &Value) -> LabelSet {
    metric
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// `{a="b", c="d"}`, as the mismatch report shows a label set.
fn label_text(labels: &LabelSet) -> String {
    let text: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", text.join(", "))
}

fn parse_answer(body: &str) -> Answer {
    let v: Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("response is not JSON ({e}): {body}"));
    if v["status"] == "error" {
        return Answer::Error {
            kind: v["errorType"].as_str().unwrap_or("").to_string(),
            message: v["error"].as_str().unwrap_or("").to_string(),
        };
    }
    let kind = v["data"]["resultType"].as_str().unwrap_or("").to_string();
    let result = &v["data"]["result"];
    let series = match kind.as_str() {
        "scalar" => vec![(LabelSet::new(), vec![parse_point(result)])],
        "string" => vec![(
            LabelSet::from([("string value".to_string(), result[1].to_string())]),
            vec![(
                parse_point(&Value::Array(vec![result[0].clone(), "0".into()])).0,
                0.0,
            )],
        )],
        "vector" => result
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| (label_set(&s["metric"]), vec![parse_point(&s["value"])]))
            .collect(),
        "matrix" => result
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                let points = s["values"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(parse_point)
                    .collect();
                (label_set(&s["metric"]), points)
            })
            .collect(),
        other => panic!("unknown result type {other:?}: {body}"),
    };
    Answer::Data { kind, series }
}

/// Equal within 1e-9 relative; NaN equals NaN; infinities exactly.
fn same_value(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if a.is_infinite() || b.is_infinite() {
        return a == b;
    }
    a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

/// How two answers are compared, beyond equal label sets and values.
#[derive(Clone)]
struct ComparisonRules {
    /// The order of an instant vector matters (`sort`, `sort_desc`).
    ordered: bool,
    /// (2.42's value, ours) pairs accepted as equal (see [`Handling::AcceptValues`]).
    accepted: Vec<fn(f64, f64) -> bool>,
    /// See [`Handling::TiesMayKeepOtherSeries`].
    ties: bool,
}

/// The differences between Prometheus's answer and ours, one line each.
fn compare(prometheus: &Answer, ours: &Answer, rules: &ComparisonRules) -> Vec<String> {
    let same = |theirs: f64, ours: f64| {
        same_value(theirs, ours) || rules.accepted.iter().any(|accept| accept(theirs, ours))
    };
    let (p_kind, p_series, o_kind, o_series) = match (prometheus, ours) {
        (Answer::Error { kind, .. }, Answer::Error { kind: ok, .. }) => {
            return if kind == ok {
                vec![]
            } else {
                vec![format!(
                    "both fail, with error type {kind:?} vs ours {ok:?}"
                )]
            };
        }
        (Answer::Error { kind, message }, Answer::Data { .. }) => {
            return vec![format!("prometheus fails ({kind}: {message}), we do not")];
        }
        (Answer::Data { .. }, Answer::Error { kind, message }) => {
            return vec![format!("we fail ({kind}: {message}), prometheus does not")];
        }
        (
            Answer::Data { kind, series },
            Answer::Data {
                kind: ok,
                series: os,
            },
        ) => (kind, series, ok, os),
    };
    if p_kind != o_kind {
        return vec![format!("result type {p_kind} vs ours {o_kind}")];
    }
    let mut diffs = Vec::new();
    if rules.ties {
        return compare_allowing_ties(p_series, o_series, &same);
    }
    if rules.ordered {
        let p_order: Vec<String> = p_series.iter().map(|(l, _)| label_text(l)).collect();
        let o_order: Vec<String> = o_series.iter().map(|(l, _)| label_text(l)).collect();
        let p_values: Vec<f64> = p_series.iter().map(|(_, p)| p[0].1).collect();
        let o_values: Vec<f64> = o_series.iter().map(|(_, p)| p[0].1).collect();
        // Series of equal value may come in either order.
        let same = p_values.len() == o_values.len()
            && p_values.iter().zip(&o_values).all(|(a, b)| same(*a, *b));
        if !same {
            diffs.push(format!("order {p_order:?} vs ours {o_order:?}"));
        }
    }
    let p_map: BTreeMap<&LabelSet, &Vec<(i64, f64)>> =
        p_series.iter().map(|(l, p)| (l, p)).collect();
    let o_map: BTreeMap<&LabelSet, &Vec<(i64, f64)>> =
        o_series.iter().map(|(l, p)| (l, p)).collect();
    if p_map.len() != p_series.len() || o_map.len() != o_series.len() {
        diffs.push("a label set occurs twice in a result".to_string());
    }
    let mut label_sets: Vec<&LabelSet> = p_map.keys().chain(o_map.keys()).copied().collect();
    label_sets.sort();
    label_sets.dedup();
    for labels in label_sets {
        let l = label_text(labels);
        match (p_map.get(labels), o_map.get(labels)) {
            (Some(_), None) => diffs.push(format!("{l}: only prometheus has it")),
            (None, Some(_)) => diffs.push(format!("{l}: only we have it")),
            (Some(p), Some(o)) => {
                let p_times: BTreeMap<i64, f64> = p.iter().copied().collect();
                let o_times: BTreeMap<i64, f64> = o.iter().copied().collect();
                let mut bad = Vec::new();
                for (t, pv) in &p_times {
                    match o_times.get(t) {
                        None => bad.push(format!("@{t} prometheus {pv}, ours none")),
                        Some(ov) if !same(*pv, *ov) => {
                            bad.push(format!("@{t} prometheus {pv}, ours {ov}"))
                        }
                        _ => {}
                    }
                }
                for (t, ov) in &o_times {
                    if !p_times.contains_key(t) {
                        bad.push(format!("@{t} prometheus none, ours {ov}"));
                    }
                }
                if !bad.is_empty() {
                    let n = bad.len();
                    bad.truncate(3);
                    diffs.push(format!(
                        "{l}: {n} of {} points differ: {}",
                        p_times.len().max(o_times.len()),
                        bad.join("; ")
                    ));
                }
            }
            (None, None) => {}
        }
    }
    diffs
}

/// Compares two answers step by step, letting series that only one side keeps pair up
/// with series only the other side keeps when their values are equal.
fn compare_allowing_ties(
    prometheus: &[(LabelSet, Vec<(i64, f64)>)],
    ours: &[(LabelSet, Vec<(i64, f64)>)],
    same: &dyn Fn(f64, f64) -> bool,
) -> Vec<String> {
    type Step<'a> = BTreeMap<&'a LabelSet, f64>;
    fn by_step(series: &[(LabelSet, Vec<(i64, f64)>)]) -> BTreeMap<i64, Step<'_>> {
        let mut steps: BTreeMap<i64, Step> = BTreeMap::new();
        for (labels, points) in series {
            for (t, v) in points {
                steps.entry(*t).or_default().insert(labels, *v);
            }
        }
        steps
    }
    let (p_steps, o_steps) = (by_step(prometheus), by_step(ours));
    let mut times: Vec<i64> = p_steps.keys().chain(o_steps.keys()).copied().collect();
    times.sort();
    times.dedup();
    let empty = Step::new();
    let mut diffs = Vec::new();
    for t in times {
        let p = p_steps.get(&t).unwrap_or(&empty);
        let o = o_steps.get(&t).unwrap_or(&empty);
        let mut p_only = Vec::new();
        for (labels, pv) in p {
            match o.get(labels) {
                Some(ov) if same(*pv, *ov) => {}
                Some(ov) => diffs.push(format!(
                    "{} @{t}: prometheus {pv}, ours {ov}",
                    label_text(labels)
                )),
                None => p_only.push(*pv),
            }
        }
        let mut o_only: Vec<f64> = o
            .iter()
            .filter(|(labels, _)| !p.contains_key(*labels))
            .map(|(_, v)| *v)
            .collect();
        let by_value = |a: &f64, b: &f64| a.total_cmp(b);
        p_only.sort_by(by_value);
        o_only.sort_by(by_value);
        let paired =
            p_only.len() == o_only.len() && p_only.iter().zip(&o_only).all(|(a, b)| same(*a, *b));
        if !paired {
            diffs.push(format!(
                "@{t}: values of series only prometheus keeps {p_only:?}, only we keep {o_only:?}"
            ));
        }
    }
    diffs
}

async fn ask(client: &reqwest::Client, base: &str, expr: &str, eval: Eval) -> Answer {
    let mut params = form_urlencoded::Serializer::new(String::new());
    params.append_pair("query", expr);
    let path = match eval {
        Eval::Instant(t) => {
            params.append_pair("time", &t.to_string());
            "query"
        }
        Eval::Range { start, end, step } => {
            params.append_pair("start", &start.to_string());
            params.append_pair("end", &end.to_string());
            params.append_pair("step", &step.to_string());
            "query_range"
        }
    };
    let url = format!("{base}/api/v1/{path}?{}", params.finish());
    let response = client
        .get(&url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let body = response
        .text()
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    parse_answer(&body)
}

#[derive(Default)]
struct Tally {
    instant: usize,
    range: usize,
    /// Answers of Prometheus without a series, and errors.
    empty: usize,
    failed: usize,
}

/// Both servers' HTTP APIs.
struct Servers {
    client: reqwest::Client,
    prom: String,
    am: String,
}

impl Servers {
    /// Asks both servers at every evaluation of the plan; returns the differences, one
    /// a line.
    async fn compare_all(
        &self,
        expr: &str,
        plan: &Plan,
        mut tally: Option<&mut Tally>,
    ) -> Vec<String> {
        let mut out = Vec::new();
        for eval in &plan.evals {
            let (mut p, o) = tokio::join!(
                ask(&self.client, &self.prom, &plan.theirs, *eval),
                ask(&self.client, &self.am, expr, *eval)
            );
            if plan.drop_name {
                p = p.without_metric_name();
            }
            if let Some(t) = tally.as_deref_mut() {
                match eval {
                    Eval::Instant(_) => t.instant += 1,
                    Eval::Range { .. } => t.range += 1,
                }
                match &p {
                    Answer::Error { .. } => t.failed += 1,
                    Answer::Data { series, .. } if series.is_empty() => t.empty += 1,
                    _ => {}
                }
            }
            let rules = ComparisonRules {
                ordered: plan.rules.ordered && matches!(eval, Eval::Instant(_)),
                ..plan.rules.clone()
            };
            for d in compare(&p, &o, &rules) {
                out.push(format!("{expr}  [{eval}]\n    {d}"));
            }
        }
        out
    }
}

async fn wait_ready(client: &reqwest::Client, what: &str, url: &str, within: Duration) {
    eventually(within, &format!("{what} to answer {url}"), || async {
        let r = client.get(url).send().await.ok()?;
        if !r.status().is_success() {
            return None;
        }
        let body = r.text().await.ok()?;
        // Prometheus's /-/ready is plain text; our query answer is JSON.
        (!body.contains("\"error\"")).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promql_answers_equal_prometheus_on_generated_data() {
    let started = Instant::now();
    require_tool("promtool");
    require_tool("prometheus");
    arrowmon::scrape::tls::install_default_provider();
    let dir = tempfile::Builder::new()
        .prefix("amdiff")
        .tempdir()
        .expect("temp dir");
    let dir = dir.path();

    let families = generate();
    let (text, samples) = render_openmetrics(&families);
    let om = dir.join("data.om");
    std::fs::write(&om, &text).expect("write the OpenMetrics file");
    let series = series_count(&families);
    println!(
        "generated {series} series, {samples} samples, {} bytes of OpenMetrics",
        text.len()
    );

    // Both importers at once: they are independent.
    let prom_data = dir.join("prometheus-data");
    let am_data = dir.join("arrowmon-data");
    let promtool_log = dir.join("promtool.log");
    let import_log = dir.join("import.log");
    let (out, err) = log_files(&promtool_log);
    let promtool = ChildGuard::spawn(
        "promtool tsdb create-blocks-from openmetrics",
        Command::new("promtool")
            .args(["tsdb", "create-blocks-from", "openmetrics", "--quiet"])
            .arg(&om)
            .arg(&prom_data)
            .stdout(out)
            .stderr(err),
    );
    let (out, err) = log_files(&import_log);
    let import = ChildGuard::spawn(
        "gpx_arrowmon import openmetrics",
        Command::new(binary())
            .args(["import", "openmetrics"])
            .arg(&om)
            .arg("--data-dir")
            .arg(&am_data)
            .stdout(out)
            .stderr(err),
    );
    promtool.wait_success(Duration::from_secs(180), &promtool_log);
    import.wait_success(Duration::from_secs(180), &import_log);
    println!("imported into both after {:?}", started.elapsed());

    let prom_config = dir.join("prometheus.yml");
    std::fs::write(&prom_config, "scrape_configs: []\n").expect("write prometheus.yml");
    let am_config = dir.join("scrape.yml");
    std::fs::write(&am_config, "scrape_configs: []\n").expect("write scrape.yml");
    let prom_listen = format!("127.0.0.1:{}", free_port());
    let am_listen = format!("127.0.0.1:{}", free_port());
    let prom_log = dir.join("prometheus.log");
    let am_log = dir.join("serve.log");
    let _prometheus = ChildGuard::spawn(
        "prometheus",
        Command::new("prometheus")
            .arg(format!("--config.file={}", prom_config.display()))
            .arg(format!("--storage.tsdb.path={}", prom_data.display()))
            .arg("--storage.tsdb.retention.time=100y")
            .arg(format!("--web.listen-address={prom_listen}"))
            .stdout(Stdio::null())
            .stderr(log_file(&prom_log)),
    );
    let _arrowmon = ChildGuard::spawn(
        "gpx_arrowmon serve",
        serve_command(&am_config, &am_data, &am_listen)
            .args(["--retention-time", "0"])
            .stderr(log_file(&am_log)),
    );
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("HTTP client");
    let prom = format!("http://{prom_listen}");
    let am = format!("http://{am_listen}");
    wait_ready(
        &client,
        "prometheus",
        &format!("{prom}/-/ready"),
        Duration::from_secs(120),
    )
    .await;
    wait_ready(
        &client,
        "gpx_arrowmon serve",
        &format!("{am}/api/v1/query?query=1&time={DATA_START_S}"),
        Duration::from_secs(120),
    )
    .await;
    println!("both serving after {:?}", started.elapsed());

    // Every generated series is there on both sides before any comparison counts.
    let count = "count(last_over_time({__name__=~\".+\"}[4h]))";
    let t = Eval::Instant(DATA_START_S + 185 * MINUTE);
    for (what, base) in [("prometheus", &prom), ("arrowmon", &am)] {
        match ask(&client, base, count, t).await {
            Answer::Data { series: s, .. } if s.len() == 1 && s[0].1[0].1 == series as f64 => {}
            other => panic!("{what} does not hold the {series} generated series: {other:?}"),
        }
    }

    let servers = Servers { client, prom, am };
    let mut evals: Vec<Eval> = instant_times().into_iter().map(Eval::Instant).collect();
    evals.extend(range_windows());
    let exprs = expressions();
    let mut tally = Tally::default();
    let mut mismatches: Vec<String> = Vec::new();
    // How many expressions would have failed without each known difference's handling.
    let mut needed = vec![0usize; KNOWN_DIFFERENCES.len()];
    for expr in &exprs {
        let handled: Vec<usize> = (0..KNOWN_DIFFERENCES.len())
            .filter(|&i| (KNOWN_DIFFERENCES[i].applies)(expr))
            .filter(|&i| !matches!(KNOWN_DIFFERENCES[i].handling, Handling::AvoidedByTheData))
            .collect();
        let plan = Plan::new(expr, &handled, &evals);
        mismatches.extend(servers.compare_all(expr, &plan, Some(&mut tally)).await);
        // Each handling must still be needed: without it, the expression differs.
        for &left_out in &handled {
            let others: Vec<usize> = handled.iter().copied().filter(|&i| i != left_out).collect();
            let plan = Plan::new(expr, &others, &evals);
            if !servers.compare_all(expr, &plan, None).await.is_empty() {
                needed[left_out] += 1;
            }
        }
    }
    let Tally {
        instant,
        range,
        empty,
        failed,
    } = tally;
    println!(
        "{} expressions, {instant} instant and {range} range queries; \
         prometheus: {empty} empty results, {failed} errors; {:?} in all",
        exprs.len(),
        started.elapsed()
    );
    println!("known 2.42-vs-3 differences (expressions that needed the handling):");
    for (d, n) in KNOWN_DIFFERENCES.iter().zip(&needed) {
        println!("  {} ({n}): {}", d.what, d.why);
    }
    assert!(
        mismatches.is_empty(),
        "{} answers differ from prometheus 2.42:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    // The list stays true: a handled difference that no query needs any more goes.
    for (d, n) in KNOWN_DIFFERENCES.iter().zip(&needed) {
        let avoided = matches!(d.handling, Handling::AvoidedByTheData);
        assert!(
            avoided || *n > 0,
            "known difference {:?} no longer shows in any query: remove it",
            d.what
        );
    }
    // Most answers carry data: a comparison of empty results proves little.
    let total = instant + range;
    assert!(
        (empty + failed) * 4 < total,
        "{empty} empty and {failed} failed answers out of {total}"
    );
}
