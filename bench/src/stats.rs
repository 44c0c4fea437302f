//! Percentiles and ratios of measured figures.

/// The `p`-th percentile (0–100) of `samples` by nearest rank; `None` for no samples.
///
/// Nearest rank never invents a value between two samples, so a p99 is a latency some event
/// really had.
pub fn percentile(samples: &[f64], p: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (p.clamp(0.0, 100.0) / 100.0 * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// `a / b`, `None` when `b` is zero (a ratio to nothing is no figure).
pub fn ratio(a: f64, b: f64) -> Option<f64> {
    (b != 0.0).then(|| round(a / b, 3))
}

/// `x` rounded to `digits` decimals, so the JSON does not carry float noise.
pub fn round(x: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (x * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_is_nearest_rank() {
        let samples: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(percentile(&samples, 50.0), Some(50.0));
        assert_eq!(percentile(&samples, 99.0), Some(99.0));
        assert_eq!(percentile(&samples, 100.0), Some(100.0));
        assert_eq!(percentile(&samples, 0.0), Some(1.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn percentile_of_a_short_list_picks_a_real_sample() {
        assert_eq!(percentile(&[10.0, 30.0, 20.0], 50.0), Some(20.0));
        assert_eq!(percentile(&[10.0, 30.0, 20.0], 99.0), Some(30.0));
    }

    #[test]
    fn ratio_to_zero_is_no_figure() {
        assert_eq!(ratio(3.0, 2.0), Some(1.5));
        assert_eq!(ratio(1.0, 3.0), Some(0.333));
        assert_eq!(ratio(1.0, 0.0), None);
    }
}
