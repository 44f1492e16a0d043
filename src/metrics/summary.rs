//! Statistics over runs: mean, median, percentile and spread, under the module's NaN rule
//! (see `crate::metrics`): NaN values are left out, and a statistic of no values is `None`.

use serde::{Deserialize, Serialize};

/// Arithmetic mean of the values but NaN; `None` when none is left.
pub fn mean(values: &[f64]) -> Option<f64> {
    let (sum, n) = values
        .iter()
        .filter(|v| !v.is_nan())
        .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}

/// The values but NaN, sorted ascending.
fn sorted(values: &[f64]) -> Vec<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    sorted.sort_by(f64::total_cmp);
    sorted
}

/// The middle of sorted values: the mean of the two middle values for an even count.
fn middle(sorted: &[f64]) -> Option<f64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// The median of the values but NaN (the mean of the two middle values for an even count);
/// `None` when none is left.
pub fn median(values: &[f64]) -> Option<f64> {
    middle(&sorted(values))
}

/// The `q`-quantile (q in [0, 1]) of the values but NaN, with linear interpolation between
/// the closest ranks (numpy's default): sorted values x₀…x₋₁, position h = q·(n−1), result
/// x⌊h⌋ + (h − ⌊h⌋)·(x⌊h⌋+1 − x⌊h⌋). `None` when no value is left.
pub fn percentile(values: &[f64], q: f64) -> Option<f64> {
    let sorted = sorted(values);
    if sorted.is_empty() {
        return None;
    }
    let h = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = h.floor() as usize;
    let hi = h.ceil() as usize;
    Some(sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo]))
}

/// Mean and population standard deviation (divisor n) of the values but NaN; `(NaN, NaN)`
/// when none is left (so a report shows null rather than a number nothing measured).
pub fn mean_sd(values: &[f64]) -> (f64, f64) {
    let values: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    let Some(mean) = mean(&values) else {
        return (f64::NAN, f64::NAN);
    };
    let n = values.len() as f64;
    let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// Summary of one metric over `n` repetitions (warm-up runs excluded).
///
/// `median` is the middle value (the mean of the two middle values for even `n`); `sd` is the
/// sample standard deviation (divisor `n - 1`), 0 for a single repetition.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub n: usize,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub sd: f64,
}

impl Summary {
    /// Summarises the finite values of `values`; `None` when there are none. Besides NaN, it
    /// leaves out infinities too: a summary is written to JSON, which has none, and an
    /// infinite time or throughput is a clock that did not move, not a measurement.
    pub fn of(values: &[f64]) -> Option<Self> {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        sorted.sort_by(f64::total_cmp);
        let median = middle(&sorted)?;
        let n = sorted.len();
        let mean = sorted.iter().sum::<f64>() / n as f64;
        let sd = if n > 1 {
            let ss: f64 = sorted.iter().map(|v| (v - mean).powi(2)).sum();
            (ss / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        Some(Self {
            n,
            median,
            min: sorted[0],
            max: sorted[n - 1],
            mean,
            sd,
        })
    }
}

/// `baseline / other`, the speedup of `other` over `baseline`; `None` unless both are
/// positive and finite.
pub fn ratio(baseline: f64, other: f64) -> Option<f64> {
    (baseline.is_finite() && other.is_finite() && baseline > 0.0 && other > 0.0)
        .then(|| baseline / other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_count_median_and_sample_sd() {
        let s = Summary::of(&[4.0, 1.0, 3.0, 2.0, 5.0]).unwrap();
        assert_eq!(s.n, 5);
        assert_eq!(s.median, 3.0);
        assert_eq!((s.min, s.max, s.mean), (1.0, 5.0, 3.0));
        // Squared deviations 4+1+0+1+4 = 10 over n-1 = 4.
        assert!((s.sd - 2.5f64.sqrt()).abs() < 1e-12, "{}", s.sd);
    }

    #[test]
    fn even_count_median_is_the_middle_mean() {
        let s = Summary::of(&[10.0, 2.0, 4.0, 8.0]).unwrap();
        assert_eq!(s.median, 6.0);
        assert_eq!(s.mean, 6.0);
    }

    #[test]
    fn one_value_has_zero_spread_and_nothing_is_none() {
        let s = Summary::of(&[7.5]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.sd), (7.5, 7.5, 7.5, 0.0));
        assert_eq!(Summary::of(&[]), None);
        assert_eq!(Summary::of(&[f64::NAN]), None);
        assert_eq!(Summary::of(&[f64::NAN, 2.0]).unwrap().n, 1);
    }

    #[test]
    fn medians_and_percentiles_interpolate_like_numpy() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        // numpy.percentile(range(1, 101), 99) = 99.01
        assert!((percentile(&v, 0.99).unwrap() - 99.01).abs() < 1e-9);
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&v, 1.0), Some(100.0));
        assert_eq!(percentile(&[4.0, 1.0, 3.0, 2.0], 0.5), Some(2.5));
        assert_eq!(percentile(&[7.0], 0.99), Some(7.0));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn nan_is_left_out_of_every_statistic() {
        let v = [f64::NAN, 1.0, 3.0, f64::NAN];
        assert_eq!(mean(&v), Some(2.0));
        assert_eq!(median(&v), Some(2.0));
        assert_eq!(percentile(&v, 1.0), Some(3.0));
        assert_eq!(mean_sd(&v), (2.0, 1.0));
        assert_eq!(Summary::of(&v).unwrap().n, 2);
        assert_eq!((mean(&[f64::NAN]), median(&[f64::NAN])), (None, None));
        let (m, sd) = mean_sd(&[]);
        assert!(m.is_nan() && sd.is_nan());
        // Infinities are values (a +∞ KL is one), but not in a Summary.
        assert_eq!(median(&[1.0, f64::INFINITY, 2.0]), Some(2.0));
        assert_eq!(Summary::of(&[1.0, f64::INFINITY]).unwrap().n, 1);
    }

    #[test]
    fn ratio_needs_two_positive_numbers() {
        assert_eq!(ratio(10.0, 4.0), Some(2.5));
        assert_eq!(ratio(10.0, 0.0), None);
        assert_eq!(ratio(f64::NAN, 1.0), None);
    }
}
