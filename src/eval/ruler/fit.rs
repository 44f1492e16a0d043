//! Sizing a prompt to a target length, as RULER does: the largest haystack whose whole
//! prompt (template, chat template and answer prefix included) is at most `budget` tokens.
//! The answer is generated after it, so a run needs `budget + new tokens` of context.
//!
//! The count of tokens grows with the haystack but not strictly in step (tokens merge across
//! joins), so the search is RULER's binary search, started from an estimate and followed by
//! single steps up while the next size still fits.

use std::collections::HashMap;

use anyhow::Result;

/// What the search found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// The largest size that fits, and its prompt's tokens.
    Fits { units: usize, tokens: usize },
    /// Even the smallest size is over the budget: it needs `minimum` tokens.
    TooShort { minimum: usize },
}

/// Searches sizes in `min..=max` (`max` None: unbounded) for the largest whose `tokens` is
/// within `budget`.
pub fn largest_fitting(
    min: usize,
    max: Option<usize>,
    budget: usize,
    tokens: &mut dyn FnMut(usize) -> Result<usize>,
) -> Result<Fit> {
    let max = max.unwrap_or(usize::MAX).max(min);
    let mut seen: HashMap<usize, usize> = HashMap::new();
    let mut count = |n: usize| -> Result<usize> {
        if let Some(&t) = seen.get(&n) {
            return Ok(t);
        }
        let t = tokens(n)?;
        seen.insert(n, t);
        Ok(t)
    };
    let base = count(min)?;
    if base > budget {
        return Ok(Fit::TooShort { minimum: base });
    }
    // Estimate tokens per unit from a probe, then bracket: `lo` fits, `hi` does not.
    let probe = min.saturating_add(32).min(max);
    let per_unit = if probe > min {
        ((count(probe)? as f64 - base as f64) / (probe - min) as f64).max(1e-3)
    } else {
        1.0
    };
    let guess = min.saturating_add(((budget - base) as f64 / per_unit) as usize);
    let (mut lo, mut hi) = (min, guess.clamp(min, max));
    let mut step = hi.saturating_sub(min).max(1) / 8 + 1;
    while hi > lo && count(hi)? <= budget {
        lo = hi;
        if hi == max {
            break;
        }
        hi = hi.saturating_add(step).min(max);
        step = step.saturating_mul(2);
    }
    if lo < hi {
        // Bisect down to neighbours.
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if count(mid)? <= budget {
                lo = mid;
            } else {
                hi = mid;
            }
        }
    }
    while lo < max && count(lo + 1)? <= budget {
        lo += 1;
    }
    Ok(Fit::Fits {
        units: lo,
        tokens: count(lo)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fit(min: usize, max: Option<usize>, budget: usize, f: impl Fn(usize) -> usize) -> Fit {
        largest_fitting(min, max, budget, &mut |n| Ok(f(n))).unwrap()
    }

    #[test]
    fn finds_the_largest_size_within_budget() {
        // 40 tokens of template, 3 per unit.
        let linear = |n: usize| 40 + 3 * n;
        assert_eq!(
            fit(0, None, 1024, linear),
            Fit::Fits {
                units: 328,
                tokens: 1024
            }
        );
        assert_eq!(
            fit(0, None, 1023, linear),
            Fit::Fits {
                units: 327,
                tokens: 1021
            }
        );
        assert_eq!(
            fit(5, None, 40 + 15, linear),
            Fit::Fits {
                units: 5,
                tokens: 55
            }
        );
        assert_eq!(fit(5, None, 54, linear), Fit::TooShort { minimum: 55 });
        // Bounded above: the largest allowed even with budget to spare.
        assert_eq!(
            fit(0, Some(100), 4096, linear),
            Fit::Fits {
                units: 100,
                tokens: 340
            }
        );
        // A very wrong estimate (cheap start, expensive later) still lands exactly.
        let convex = |n: usize| if n < 40 { n } else { 40 + (n - 40) * 50 };
        for budget in [39, 40, 41, 500, 4000] {
            let Fit::Fits { units, tokens } = fit(0, None, budget, convex) else {
                panic!()
            };
            assert!(
                tokens <= budget && convex(units + 1) > budget,
                "{budget}: {units}"
            );
        }
    }

    #[test]
    fn small_dips_are_stepped_over() {
        // Not monotone: size 11 is cheaper than 10.
        let bumpy = |n: usize| match n {
            10 => 101,
            _ => 10 * n,
        };
        assert_eq!(
            fit(0, None, 110, bumpy),
            Fit::Fits {
                units: 11,
                tokens: 110
            }
        );
    }
}
