//! The two NaN bit patterns a stored sample can hold, as Prometheus's
//! `model/value` defines them.

/// The NaN bit pattern Prometheus uses as a staleness marker.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// The NaN bit pattern Prometheus stores for a scraped NaN (`value.NormalNaN`, which
/// is also what Go's `math.NaN()` returns). Distinct from the staleness marker, so a
/// target that exposes NaN never reads as stale.
pub const NORMAL_NAN_BITS: u64 = 0x7ff8_0000_0000_0001;

/// A staleness marker value.
#[inline]
pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// Whether `v` is the staleness marker (not just any NaN).
#[inline]
pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// The canonical NaN of a scraped or parsed value.
#[inline]
pub fn normal_nan() -> f64 {
    f64::from_bits(NORMAL_NAN_BITS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_marker_is_stale() {
        assert!(is_stale_nan(stale_nan()));
        assert!(!is_stale_nan(f64::NAN));
        assert!(!is_stale_nan(normal_nan()));
        assert!(normal_nan().is_nan());
    }
}
