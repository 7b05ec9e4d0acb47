//! Times and durations in the Prometheus HTTP API: Unix seconds (with fraction) or
//! RFC 3339; steps as float seconds or Prometheus durations.

use crate::model::duration::parse_duration;
use crate::model::number::parse_go_float;
use crate::model::time::parse_rfc3339_ms;

/// Prometheus's `MinTime` (`web/api/v1`), in milliseconds: the earliest time the API
/// deals in, the default `start` of series and label lookups.
pub const MIN_TIME_MS: i64 = (i64::MIN / 1000 + 62_135_596_801) * 1000;
/// Prometheus's `MaxTime`, in milliseconds.
pub const MAX_TIME_MS: i64 = (i64::MAX / 1000 - 62_135_596_801) * 1000 + 999;

/// Parses an API time to milliseconds since the epoch: Unix seconds as Go's
/// `ParseFloat` reads them (rounded to the millisecond), or RFC 3339. Seconds
/// beyond Prometheus's `MinTime`/`MaxTime` are held at those bounds, so a range
/// over them is refused for its size rather than wrapped around.
pub fn parse_time(s: &str) -> Result<i64, String> {
    let invalid = || format!("cannot parse {s:?} to a valid timestamp");
    if let Some(f) = parse_go_float(s.as_bytes()) {
        if f.is_nan() {
            return Err(invalid());
        }
        let ms = (f * 1000.0).round();
        // Infinities and huge values clamp; the float-to-int cast saturates too.
        return Ok((ms as i64).clamp(MIN_TIME_MS, MAX_TIME_MS));
    }
    parse_rfc3339_ms(s).ok_or_else(invalid)
}

/// Parses a step or duration parameter to milliseconds: float seconds or a
/// Prometheus duration such as `15s`.
pub fn parse_step(s: &str) -> Result<i64, String> {
    if let Some(f) = parse_go_float(s.as_bytes()) {
        // Prometheus holds durations in nanoseconds and refuses what overflows them.
        let ns = f * 1e9;
        if ns.is_nan() || ns >= i64::MAX as f64 || ns < i64::MIN as f64 {
            return Err(format!(
                "cannot parse {s:?} to a valid duration. It overflows int64"
            ));
        }
        return Ok((f * 1000.0).round() as i64);
    }
    parse_duration(s)
        .ok()
        .and_then(|d| i64::try_from(d.as_millis()).ok())
        .ok_or_else(|| format!("cannot parse {s:?} to a valid duration"))
}

/// Points a range query of `start..=end` at `step` returns per series, without
/// overflow (`step` must be positive).
pub fn points_per_series(start: i64, end: i64, step: i64) -> i128 {
    (i128::from(end) - i128::from(start)) / i128::from(step.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::time::format_rfc3339_ms;

    #[test]
    fn parses_unix_and_rfc3339_times() {
        assert_eq!(parse_time("1435781451.781").unwrap(), 1_435_781_451_781);
        assert_eq!(
            parse_time("2015-07-01T20:10:51.781Z").unwrap(),
            1_435_781_451_781
        );
        assert_eq!(
            parse_time("2015-07-01T22:10:51+02:00").unwrap(),
            1_435_781_451_000
        );
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("").is_err());
        assert!(parse_time("NaN").is_err());
        assert_eq!(parse_time("0x1p4").unwrap(), 16_000, "Go's hex floats");
    }

    #[test]
    fn times_beyond_the_api_s_range_are_held_at_its_bounds() {
        assert_eq!(parse_time("1e300").unwrap(), MAX_TIME_MS);
        assert_eq!(parse_time("-1e300").unwrap(), MIN_TIME_MS);
        assert_eq!(parse_time("+Inf").unwrap(), MAX_TIME_MS);
        assert_eq!(parse_time("-Inf").unwrap(), MIN_TIME_MS);
        assert!(points_per_series(MIN_TIME_MS, MAX_TIME_MS, 1) > 11_000);
        assert_eq!(points_per_series(0, 60_000, 15_000), 4);
    }

    #[test]
    fn non_ascii_offsets_are_refused() {
        for s in [
            "2024-01-01T00:00:00+aé00",
            "2024-01-01T00:00:00é",
            "2024-01-01T00:00:00.é",
            "2024-01-01T00:00:00+éé",
            "2024é01-01T00:00:00Z",
        ] {
            assert!(parse_time(s).is_err(), "{s}");
        }
    }

    #[test]
    fn parses_steps() {
        assert_eq!(parse_step("15").unwrap(), 15_000);
        assert_eq!(parse_step("0.5").unwrap(), 500);
        assert_eq!(parse_step("1m").unwrap(), 60_000);
        assert!(parse_step("x").is_err());
        assert_eq!(
            parse_step("1e300").unwrap_err(),
            "cannot parse \"1e300\" to a valid duration. It overflows int64"
        );
        assert!(parse_step("NaN").is_err());
        assert!(parse_step("Inf").is_err());
        assert!(parse_step("-Inf").is_err());
    }

    #[test]
    fn formats_round_trip() {
        let t = 1_435_781_451_781;
        assert_eq!(format_rfc3339_ms(t), "2015-07-01T20:10:51.781Z");
        assert_eq!(parse_time(&format_rfc3339_ms(t)).unwrap(), t);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use crate::model::time::format_rfc3339_ms;
    use proptest::prelude::*;

    /// Text near the shapes these parsers take, with non-ASCII characters mixed in.
    const NEAR_TIMES: &str = "[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9é]{0,4})?[Zz+\\-é:a0-9µ]{0,7}";
    const NEAR_NUMBERS: &str = "[+\\-]?[0-9.eExXpP_é]{0,12}|[+\\-]?(Inf|inf|NaN|infinity)";

    proptest! {
        #[test]
        fn times_parse_or_fail_without_panicking(s in any::<String>()) {
            if let Ok(t) = parse_time(&s) {
                prop_assert!((MIN_TIME_MS..=MAX_TIME_MS).contains(&t) || parse_go_float(s.as_bytes()).is_none());
            }
        }

        #[test]
        fn near_valid_times_parse_or_fail_without_panicking(
            s in prop::string::string_regex(NEAR_TIMES).unwrap(),
            n in prop::string::string_regex(NEAR_NUMBERS).unwrap(),
        ) {
            let _ = parse_time(&s);
            if let Ok(t) = parse_time(&n) {
                prop_assert!((MIN_TIME_MS..=MAX_TIME_MS).contains(&t));
            }
        }

        #[test]
        fn steps_parse_or_fail_without_panicking(
            s in any::<String>(),
            n in prop::string::string_regex(NEAR_NUMBERS).unwrap(),
        ) {
            let _ = parse_step(&s);
            let _ = parse_step(&n);
        }

        #[test]
        fn formatted_times_parse_back(t in -62_135_596_800_000i64..253_402_300_799_999) {
            prop_assert_eq!(parse_time(&format_rfc3339_ms(t)), Ok(t));
        }

        #[test]
        fn point_counts_never_overflow(a in any::<i64>(), b in any::<i64>(), step in 1i64..) {
            let n = points_per_series(a.min(b), a.max(b), step);
            prop_assert!(n >= 0);
        }
    }
}
