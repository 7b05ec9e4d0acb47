//! Grafana's rules for a Prometheus query's step, the built-in `$__interval`,
//! `$__rate_interval`, `$__range` variables and the step-aligned range, restated
//! from Grafana's Prometheus datasource backend (promlib) and its SDK's `gtime`,
//! so a dashboard gets the same step and expression from arrowmon as from
//! Prometheus. Durations are nanoseconds, as Go's `time.Duration`.

const NS_PER_MS: i64 = 1_000_000;
const NS_PER_S: i64 = 1_000_000_000;
/// Prometheus refuses more than 11,000 points per series.
const SAFE_RESOLUTION: i64 = 11_000;
/// Grafana's default resolution when a query has no maxDataPoints.
const DEFAULT_RESOLUTION: i64 = 1_500;
const DEFAULT_SCRAPE_NS: i64 = 15 * NS_PER_S;

pub use crate::model::duration::go_duration_string;

/// gtime.FormatInterval: the largest whole unit (`1y`, `2d`, `5m`, `200ms`).
pub fn format_interval(ns: i64) -> String {
    let year = 365 * 86_400 * NS_PER_S;
    let day = 86_400 * NS_PER_S;
    let hour = 3_600 * NS_PER_S;
    let minute = 60 * NS_PER_S;
    if ns >= year {
        format!("{}y", ns / year)
    } else if ns >= day {
        format!("{}d", ns / day)
    } else if ns >= hour {
        format!("{}h", ns / hour)
    } else if ns >= minute {
        format!("{}m", ns / minute)
    } else if ns >= NS_PER_S {
        format!("{}s", ns / NS_PER_S)
    } else if ns >= NS_PER_MS {
        format!("{}ms", ns / NS_PER_MS)
    } else {
        "1ms".into()
    }
}

/// gtime.RoundInterval: a lower, rounder interval.
pub fn round_interval(ns: i64) -> i64 {
    // (upper bound, rounded value) in milliseconds, as gtime lists them.
    const STEPS: [(i64, i64); 29] = [
        (10, 1),
        (15, 10),
        (35, 20),
        (75, 50),
        (150, 100),
        (350, 200),
        (750, 500),
        (1_500, 1_000),
        (3_500, 2_000),
        (7_500, 5_000),
        (12_500, 10_000),
        (17_500, 15_000),
        (25_000, 20_000),
        (45_000, 30_000),
        (90_000, 60_000),
        (210_000, 120_000),
        (450_000, 300_000),
        (750_000, 600_000),
        (1_050_000, 900_000),
        (1_500_000, 1_200_000),
        (2_700_000, 1_800_000),
        (5_400_000, 3_600_000),
        (9_000_000, 7_200_000),
        (16_200_000, 10_800_000),
        (32_400_000, 21_600_000),
        (86_400_000, 43_200_000),
        (172_800_000, 86_400_000),
        (604_800_000, 86_400_000),
        (1_814_400_000, 604_800_000),
    ];
    for (limit_ms, to_ms) in STEPS {
        if ns <= limit_ms * NS_PER_MS {
            return to_ms * NS_PER_MS;
        }
    }
    if ns < 3_628_800_000 * NS_PER_MS {
        2_592_000_000 * NS_PER_MS
    } else {
        31_536_000_000 * NS_PER_MS
    }
}

/// Go's `time.ParseDuration` (`1h30m`, `1.5s`, `200ms`, `-5m`).
pub fn parse_go_duration(s: &str) -> Result<i64, String> {
    let bad = || format!("time: invalid duration {s:?}");
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("time: missing unit in duration {s:?}"))?;
        let num = &rest[..num_end];
        if num.is_empty() || num == "." {
            return Err(bad());
        }
        let v: f64 = num.parse().map_err(|_| bad())?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_end];
        rest = &rest[unit_end..];
        let mult: f64 = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(format!("time: missing unit in duration {s:?}")),
            _ => return Err(format!("time: unknown unit {unit:?} in duration {s:?}")),
        };
        total += v * mult;
    }
    if total.is_nan() || total >= i64::MAX as f64 {
        return Err(format!("time: invalid duration {s:?}"));
    }
    let ns = total.round() as i64;
    Ok(if neg { -ns } else { ns })
}

/// gtime.ParseDuration: Go durations plus `d`, `w`, `M`, `y` (single unit).
pub fn parse_grafana_duration(s: &str) -> Result<i64, String> {
    let b = s.as_bytes();
    if let Some(&last) = b.last() {
        // Only an ASCII unit letter is cut off: the text may end in any character.
        let digits = s.get(..s.len() - 1).unwrap_or("");
        if matches!(last, b'd' | b'w' | b'M' | b'y')
            && !digits.is_empty()
            && digits.bytes().all(|c| c.is_ascii_digit())
        {
            let n: i64 = digits.parse().map_err(|e| format!("{e}"))?;
            const DAY: i64 = 86_400 * NS_PER_S;
            let year = (DAY as f64 * 365.25) as i64;
            let unit = match last {
                b'd' => DAY,
                b'w' => 7 * DAY,
                b'M' => (year as f64 / 12.0) as i64,
                _ => year,
            };
            return n
                .checked_mul(unit)
                .ok_or_else(|| format!("duration {s:?} out of range"));
        }
    }
    parse_go_duration(s)
}

/// gtime.ParseIntervalStringToTimeDuration: `<10s>` → 10s, a bare number is seconds.
pub fn parse_interval_string(s: &str) -> Result<i64, String> {
    let mut f = s.replacen('<', "", 1).replacen('>', "", 1);
    if !f.is_empty() && f.bytes().all(|c| c.is_ascii_digit()) {
        f.push('s');
    }
    parse_grafana_duration(&f)
}

fn is_variable_interval(s: &str) -> bool {
    matches!(
        s,
        "$__interval"
            | "$__interval_ms"
            | "$__rate_interval"
            | "$__rate_interval_ms"
            | "${__interval}"
            | "${__interval_ms}"
            | "${__rate_interval}"
            | "${__rate_interval_ms}"
    )
}

fn is_rate_interval(s: &str) -> bool {
    s == "$__rate_interval" || s == "${__rate_interval}"
}

/// What Grafana's DataQuery and the query JSON say about timing.
#[derive(Clone, Debug, Default)]
pub struct IntervalInput<'a> {
    pub from_ms: i64,
    pub to_ms: i64,
    pub max_data_points: i64,
    /// DataQuery.intervalMS (Grafana's computed interval).
    pub interval_ms: i64,
    /// Query JSON `interval` (the panel's min step), possibly a variable.
    pub query_interval: &'a str,
    /// Query JSON `intervalMs`.
    pub query_interval_ms: i64,
    pub interval_factor: i64,
    pub utc_offset_sec: i64,
    /// Datasource `jsonData.timeInterval` ("" when unset).
    pub time_interval: &'a str,
}

/// The step, per Grafana's `calculatePrometheusInterval`.
pub fn calculate_step(i: &IntervalInput<'_>) -> Result<i64, String> {
    let query_interval = if is_variable_interval(i.query_interval) {
        ""
    } else {
        i.query_interval
    };
    let min_interval = min_interval(i.time_interval, query_interval, i.query_interval_ms)?;
    let range_ns = i.to_ms.saturating_sub(i.from_ms).saturating_mul(NS_PER_MS);
    let resolution = if i.max_data_points == 0 {
        DEFAULT_RESOLUTION
    } else {
        i.max_data_points
    };
    // Saturating: a negative maxDataPoints over the widest range would overflow.
    let calculated = range_ns.saturating_div(resolution);
    let calculated = if calculated < min_interval {
        min_interval
    } else {
        round_interval(calculated)
    };
    let safe = round_interval(range_ns / SAFE_RESOLUTION);
    let adjusted = calculated.max(safe);
    if is_rate_interval(i.query_interval) {
        return Ok(rate_interval(adjusted, i.time_interval));
    }
    let factor = if i.interval_factor == 0 {
        1
    } else {
        i.interval_factor
    };
    Ok(adjusted.saturating_mul(factor))
}

/// gtime.GetIntervalFrom with Grafana's 15 s default.
fn min_interval(
    ds_interval: &str,
    query_interval: &str,
    query_interval_ms: i64,
) -> Result<i64, String> {
    let mut interval = if query_interval == "0s" {
        ""
    } else {
        query_interval
    };
    if interval.is_empty() && query_interval_ms != 0 {
        return Ok(query_interval_ms.saturating_mul(NS_PER_MS));
    }
    if interval.is_empty() && !ds_interval.is_empty() {
        interval = ds_interval;
    }
    if interval.is_empty() {
        return Ok(DEFAULT_SCRAPE_NS);
    }
    parse_interval_string(interval).map_err(|e| format!("invalid interval {interval:?}: {e}"))
}

/// `$__rate_interval` = max(interval + scrape, 4 × scrape).
fn rate_interval(interval_ns: i64, scrape: &str) -> i64 {
    let scrape = if scrape.is_empty() { "15s" } else { scrape };
    match parse_interval_string(scrape) {
        Ok(s) => (interval_ns.saturating_add(s) as f64).max(4.0 * s as f64) as i64,
        Err(_) => 0,
    }
}

/// Replaces Grafana's built-in variables, per promlib's `interpolateVariables`.
pub fn interpolate(expr: &str, i: &IntervalInput<'_>, step_ns: i64) -> String {
    let range_ms = i.to_ms.saturating_sub(i.from_ms);
    let range_s = (range_ms as f64 / 1000.0).round() as i64;
    let rate = if is_rate_interval(i.query_interval) {
        step_ns
    } else {
        let mut min_step = i.query_interval.to_string();
        if min_step == "$__interval" || min_step == "${__interval}" {
            min_step = go_duration_string(step_ns);
        }
        if min_step.is_empty() {
            min_step = i.time_interval.to_string();
        }
        rate_interval(i.interval_ms.saturating_mul(NS_PER_MS), &min_step)
    };
    let step_ms = (step_ns / NS_PER_MS).to_string();
    let interval = format_interval(step_ns);
    let rate_ms = (rate / NS_PER_MS).to_string();
    let rate_text = go_duration_string(rate);
    // Longer names first, so `$__interval` does not eat `$__interval_ms`.
    let pairs: [(&str, String); 14] = [
        ("$__interval_ms", step_ms.clone()),
        ("$__interval", interval.clone()),
        ("$__range_ms", range_ms.to_string()),
        ("$__range_s", range_s.to_string()),
        ("$__range", format!("{range_s}s")),
        ("$__rate_interval_ms", rate_ms.clone()),
        ("$__rate_interval", rate_text.clone()),
        ("${__interval_ms}", step_ms),
        ("${__interval}", interval),
        ("${__range_ms}", range_ms.to_string()),
        ("${__range_s}", range_s.to_string()),
        ("${__range}", format!("{range_s}s")),
        ("${__rate_interval_ms}", rate_ms),
        ("${__rate_interval}", rate_text),
    ];
    let mut out = expr.to_string();
    for (k, v) in pairs {
        out = out.replace(k, &v);
    }
    out
}

/// promlib's AlignTimeRange, in the same float64 arithmetic, to milliseconds.
pub fn align_ms(t_ms: i64, step_ns: i64, offset_sec: i64) -> i64 {
    // In floats from the start: the inputs come from the request and may be huge.
    let offset_ns = offset_sec as f64 * NS_PER_S as f64;
    let step = step_ns as f64;
    let t_ns = t_ms as f64 * NS_PER_MS as f64;
    let aligned = (((t_ns + offset_ns) / step).floor() * step - offset_ns) as i64;
    aligned.div_euclid(NS_PER_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_duration_strings() {
        assert_eq!(go_duration_string(60 * NS_PER_S), "1m0s");
        assert_eq!(go_duration_string(200 * NS_PER_MS), "200ms");
        assert_eq!(go_duration_string(3_600 * NS_PER_S), "1h0m0s");
        assert_eq!(go_duration_string(1_500 * NS_PER_MS), "1.5s");
        assert_eq!(go_duration_string(1_215 * NS_PER_S), "20m15s");
        assert_eq!(go_duration_string(0), "0s");
    }

    #[test]
    fn go_durations_parse() {
        assert_eq!(parse_go_duration("1m0s").unwrap(), 60 * NS_PER_S);
        assert_eq!(parse_go_duration("1.5h").unwrap(), 5_400 * NS_PER_S);
        assert_eq!(parse_interval_string("<10s>").unwrap(), 10 * NS_PER_S);
        assert_eq!(parse_interval_string("10").unwrap(), 10 * NS_PER_S);
        assert_eq!(parse_interval_string("1d").unwrap(), 86_400 * NS_PER_S);
        assert!(parse_go_duration("5x").is_err());
        assert!(parse_go_duration("").is_err());
    }

    #[test]
    fn non_ascii_intervals_are_refused_not_sliced_mid_character() {
        for s in ["éé", "1é", "é", "<é>", "1µ", "-é", "1.é5s"] {
            assert!(parse_interval_string(s).is_err(), "{s}");
        }
        assert_eq!(parse_go_duration("1µs").unwrap(), 1_000);
    }

    #[test]
    fn extreme_request_timing_gives_a_step_without_overflow() {
        let input = IntervalInput {
            from_ms: 0,
            to_ms: i64::MIN,
            max_data_points: -1,
            ..IntervalInput::default()
        };
        assert!(calculate_step(&input).is_ok());
    }

    #[test]
    fn rounding_and_formatting() {
        assert_eq!(round_interval(13 * NS_PER_S), 15 * NS_PER_S);
        assert_eq!(round_interval(5 * NS_PER_MS), NS_PER_MS);
        assert_eq!(
            round_interval(400 * 86_400 * NS_PER_S),
            31_536_000_000 * NS_PER_MS
        );
        assert_eq!(format_interval(90 * NS_PER_S), "1m");
        assert_eq!(format_interval(500_000), "1ms");
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Any i64, with the edges of the range weighted in.
    fn edgy_i64() -> impl Strategy<Value = i64> {
        prop_oneof![
            any::<i64>(),
            Just(i64::MIN),
            Just(i64::MAX),
            Just(-1i64),
            Just(0i64),
            Just(1i64),
        ]
    }

    const NEAR_INTERVALS: &str =
        "<?[+\\-]?[0-9.]{0,6}(ns|us|µs|ms|s|m|h|d|w|M|y|é|)[0-9.]{0,3}(s|m|é|)>?";

    proptest! {
        #[test]
        fn intervals_parse_or_fail_without_panicking(
            s in any::<String>(),
            near in NEAR_INTERVALS,
        ) {
            let _ = parse_interval_string(&s);
            let _ = parse_go_duration(&s);
            let _ = parse_interval_string(&near);
        }

        #[test]
        fn steps_of_any_request_are_computed_without_panicking(
            from_ms in edgy_i64(),
            to_ms in edgy_i64(),
            max_data_points in edgy_i64(),
            interval_ms in edgy_i64(),
            query_interval in prop_oneof![any::<String>(), NEAR_INTERVALS.prop_map(|s| s)],
            query_interval_ms in edgy_i64(),
            interval_factor in edgy_i64(),
            utc_offset_sec in edgy_i64(),
            time_interval in prop_oneof![Just(String::new()), NEAR_INTERVALS.prop_map(|s| s)],
        ) {
            let input = IntervalInput {
                from_ms,
                to_ms,
                max_data_points,
                interval_ms,
                query_interval: &query_interval,
                query_interval_ms,
                interval_factor,
                utc_offset_sec,
                time_interval: &time_interval,
            };
            if let Ok(step) = calculate_step(&input) {
                let _ = interpolate("rate(x[$__rate_interval]) $__interval $__range", &input, step);
                if step > 0 {
                    let _ = align_ms(from_ms, step, utc_offset_sec);
                }
            }
        }
    }
}
