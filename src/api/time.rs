//! Times and durations in the Prometheus HTTP API: Unix seconds (with fraction) or
//! RFC 3339; steps as float seconds or Prometheus durations.

use crate::model::duration::parse_duration;

use crate::model::time::parse_rfc3339_ms;

/// Parses an API time to milliseconds since the epoch.
pub fn parse_time(s: &str) -> Result<i64, String> {
    if s.is_empty() {
        return Err("cannot parse \"\" to a valid timestamp".into());
    }
    if let Ok(f) = s.parse::<f64>() {
        if !f.is_finite() {
            return Err(format!("cannot parse {s:?} to a valid timestamp"));
        }
        return Ok((f * 1000.0).round() as i64);
    }
    parse_rfc3339_ms(s).ok_or_else(|| format!("cannot parse {s:?} to a valid timestamp"))
}

/// Parses a step: float seconds or a duration such as `15s`.
pub fn parse_step(s: &str) -> Result<i64, String> {
    if let Ok(f) = s.parse::<f64>() {
        if !f.is_finite() {
            return Err(format!("cannot parse {s:?} to a valid duration"));
        }
        return Ok((f * 1000.0).round() as i64);
    }
    parse_duration(s)
        .map(|d| d.as_millis() as i64)
        .map_err(|_| format!("cannot parse {s:?} to a valid duration"))
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
    }

    #[test]
    fn parses_steps() {
        assert_eq!(parse_step("15").unwrap(), 15_000);
        assert_eq!(parse_step("0.5").unwrap(), 500);
        assert_eq!(parse_step("1m").unwrap(), 60_000);
        assert!(parse_step("x").is_err());
    }

    #[test]
    fn formats_round_trip() {
        let t = 1_435_781_451_781;
        assert_eq!(format_rfc3339_ms(t), "2015-07-01T20:10:51.781Z");
        assert_eq!(parse_time(&format_rfc3339_ms(t)).unwrap(), t);
    }
}
