//! Median and spread of a metric over the measured repetitions.

use serde::{Deserialize, Serialize};

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
    /// Summarises the finite values of `values`; `None` when there are none.
    pub fn of(values: &[f64]) -> Option<Self> {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
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
    fn ratio_needs_two_positive_numbers() {
        assert_eq!(ratio(10.0, 4.0), Some(2.5));
        assert_eq!(ratio(10.0, 0.0), None);
        assert_eq!(ratio(f64::NAN, 1.0), None);
    }
}
