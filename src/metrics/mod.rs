//! The numbers every job compares runs by, one function each, as pure functions over logits
//! (`&[f32]`, one value per vocabulary entry) and plain numbers: no tensors, so each is tested
//! by hand. `eval` and `train` judge fidelity with these (KL, arg max, top-k, perplexity);
//! [`summary`] holds the statistics over runs (mean, median, percentile, spread) that
//! `profile`, `eval` and `train` report; [`flops`] the analytic FLOP count of a prefill;
//! [`bandwidth`] the analytic bytes a decode step reads.
//!
//! Conventions (llama.cpp's `perplexity --kl-divergence` uses the same): the unpruned run is
//! the reference distribution P, the pruned run is Q, and KL(P‖Q) = Σ p·(ln p − ln q) in
//! nats. Probabilities come from a softmax computed in f64.
//!
//! **The NaN rule**, the same in every function here and in [`summary`]: NaN is not a value.
//! - A NaN logit counts as −∞: it is never the arg max, it ranks after every number in a
//!   top-k, and it has probability 0 in a softmax. So KL is never NaN: a NaN where P has
//!   weight and Q has none makes it +∞, and logits that are all NaN read as uniform.
//! - A NaN among measured values (KLs, NLLs, timings) is left out of a mean, median,
//!   percentile or summary; a statistic of no values is `None`.

pub mod bandwidth;
pub mod flops;
pub mod summary;

use summary::mean;

/// A logit as the NaN rule reads it: NaN is −∞.
fn logit(v: f32) -> f64 {
    if v.is_nan() {
        f64::NEG_INFINITY
    } else {
        f64::from(v)
    }
}

/// `ln softmax(logits)` in f64, computed stably (max subtracted). An empty input gives an
/// empty output. Entries that are −∞ or NaN get probability 0 (ln = −∞).
pub fn log_softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits
        .iter()
        .map(|&v| logit(v))
        .fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        // All −∞ (or NaN): no distribution; uniform is the least surprising answer.
        let uniform = -(logits.len().max(1) as f64).ln();
        return vec![uniform; logits.len()];
    }
    let sum: f64 = logits.iter().map(|&v| (logit(v) - max).exp()).sum();
    let log_sum = sum.ln() + max;
    logits.iter().map(|&v| logit(v) - log_sum).collect()
}

/// KL(P‖Q) in nats from log-probabilities of equal length. Terms where p = 0 contribute 0;
/// a token P gives weight and Q gives none makes it +∞. Rounding can make the sum of a
/// nearly identical pair a hair below 0; it is clamped to 0 (KL is never negative), and
/// identical inputs give exactly 0.
pub fn kl_divergence_log(p_log: &[f64], q_log: &[f64]) -> f64 {
    assert_eq!(
        p_log.len(),
        q_log.len(),
        "KL of distributions of different sizes"
    );
    let mut kl = 0.0;
    for (&lp, &lq) in p_log.iter().zip(q_log) {
        if lp == f64::NEG_INFINITY {
            continue;
        }
        if lp == lq {
            continue;
        }
        kl += lp.exp() * (lp - lq);
    }
    kl.max(0.0)
}

/// KL(softmax(base)‖softmax(other)) in nats: how much the `other` (pruned) run's next-token
/// distribution diverges from the `base` (unpruned) one.
pub fn kl_divergence(base: &[f32], other: &[f32]) -> f64 {
    kl_divergence_log(&log_softmax(base), &log_softmax(other))
}

/// Index of the largest logit; ties go to the lowest index and NaN counts as −∞ (so it wins
/// only when every logit is NaN or −∞: index 0). `None` for an empty input.
pub fn argmax(logits: &[f32]) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, v) in logits.iter().map(|&v| logit(v)).enumerate() {
        if best.is_none_or(|(_, b)| v > b) {
            best = Some((i, v));
        }
    }
    best.map(|(i, _)| i)
}

/// Indices of the `k` largest logits, largest first (ties: lower index first; NaN last).
/// Fewer than `k` when the input is shorter.
pub fn top_k(logits: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..logits.len()).collect();
    let key = |i: usize| logit(logits[i]);
    let rank = |&a: &usize, &b: &usize| key(b).total_cmp(&key(a)).then(a.cmp(&b));
    let k = k.min(order.len());
    if k == 0 {
        return Vec::new();
    }
    if k < order.len() {
        order.select_nth_unstable_by(k - 1, rank);
        order.truncate(k);
    }
    order.sort_by(rank);
    order
}

/// |top-k(a) ∩ top-k(b)| / k: 1 when both runs rank the same k tokens first (in any order),
/// 0 when they share none. `k = 0` gives 1 (nothing to disagree on).
pub fn top_k_overlap(a: &[f32], b: &[f32], k: usize) -> f64 {
    if k == 0 {
        return 1.0;
    }
    let ta = top_k(a, k);
    let tb = top_k(b, k);
    let shared = ta.iter().filter(|i| tb.contains(i)).count();
    shared as f64 / k as f64
}

/// Negative log-likelihood (nats) of `target` under softmax(`logits`).
pub fn nll(logits: &[f32], target: usize) -> f64 {
    -log_softmax(logits)[target]
}

/// exp(mean NLL): the perplexity/// exp(mean NLL): the perplexity of tokens whose NLLs (nats) are given. `None` when empty.
pub fn perplexity(nlls: &[f64]) -> Option<f64> {
    mean(nlls).map(f64::exp)
}

/// Length of the longest common prefix of two token sequences.
pub fn common_prefix_len(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn log_softmax_is_normalised_and_shift_invariant() {
        let l = [1.0f32, 2.0, 3.0];
        let ls = log_softmax(&l);
        let total: f64 = ls.iter().map(|v| v.exp()).sum();
        assert!(close(total, 1.0, 1e-12));
        let shifted = log_softmax(&[1001.0f32, 1002.0, 1003.0]);
        for (a, b) in ls.iter().zip(&shifted) {
            assert!(close(*a, *b, 1e-9));
        }
        // ln(e^3 / (e + e^2 + e^3))
        let expected = 3.0 - (1f64.exp() + 2f64.exp() + 3f64.exp()).ln();
        assert!(close(ls[2], expected, 1e-12));
    }

    #[test]
    fn kl_of_identical_distributions_is_exactly_zero() {
        let l = [0.3f32, -1.2, 4.0, 2.5, 0.0];
        assert_eq!(kl_divergence(&l, &l), 0.0);
        // Same distribution, different logits (a constant shift).
        let shifted: Vec<f32> = l.iter().map(|v| v + 7.0).collect();
        assert!(kl_divergence(&l, &shifted) < 1e-12);
    }

    #[test]
    fn kl_of_a_known_pair() {
        // P = (0.5, 0.5), Q = (0.25, 0.75): KL = 0.5 ln 2 + 0.5 ln(2/3) = 0.5 ln(4/3).
        let p = [0.5f64.ln() as f32, 0.5f64.ln() as f32];
        let q = [0.25f64.ln() as f32, 0.75f64.ln() as f32];
        let kl = kl_divergence(&p, &q);
        assert!(close(kl, 0.5 * (4.0f64 / 3.0).ln(), 1e-6), "{kl}");
        // Not symmetric: KL(Q‖P) = 0.25 ln 0.5 + 0.75 ln 1.5.
        let back = kl_divergence(&q, &p);
        assert!(close(back, 0.25 * 0.5f64.ln() + 0.75 * 1.5f64.ln(), 1e-6));
        // A token P gives weight and Q gives none.
        let inf = kl_divergence(&[0.0, 0.0], &[0.0, f32::NEG_INFINITY]);
        assert_eq!(inf, f64::INFINITY);
        // …and the other way round costs nothing.
        let zero_p = kl_divergence(&[0.0, f32::NEG_INFINITY], &[0.0, 0.0]);
        assert!(close(zero_p, 2f64.ln(), 1e-12), "{zero_p}");
    }

    #[test]
    fn argmax_ties_and_nan() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), Some(1));
        assert_eq!(argmax(&[f32::NAN, 0.5]), Some(1));
        assert_eq!(argmax(&[]), None);
        assert_eq!(argmax(&[f32::NAN]), Some(0));
        assert_eq!(argmax(&[f32::NAN, f32::NEG_INFINITY]), Some(0));
        assert_eq!(top_k(&[f32::NAN, 1.0, f32::NEG_INFINITY], 3), vec![1, 0, 2]);
    }

    #[test]
    fn nan_logits_count_as_minus_infinity() {
        let with_nan = [0.0f32, f32::NAN, 0.0];
        let as_inf = [0.0f32, f32::NEG_INFINITY, 0.0];
        assert_eq!(log_softmax(&with_nan), log_softmax(&as_inf));
        assert!(close(log_softmax(&with_nan)[0], 0.5f64.ln(), 1e-12));
        // The pruned run lost a token the baseline weights: infinitely far, never NaN or 0.
        assert_eq!(kl_divergence(&[0.0, 0.0], &[0.0, f32::NAN]), f64::INFINITY);
        assert!(close(
            kl_divergence(&[0.0, f32::NAN], &[0.0, 0.0]),
            2f64.ln(),
            1e-12
        ));
        // Nothing but NaN reads as uniform.
        assert!(close(kl_divergence(&[f32::NAN; 3], &[1.0; 3]), 0.0, 1e-12));
        assert_eq!(nll(&with_nan, 1), f64::INFINITY);
    }

    #[test]
    fn top_k_and_overlap() {
        let a = [0.1f32, 0.9, 0.5, 0.7, 0.3, 0.8];
        assert_eq!(top_k(&a, 3), vec![1, 5, 3]);
        assert_eq!(top_k(&a, 10).len(), 6);
        assert!(top_k(&a, 0).is_empty());
        assert_eq!(top_k_overlap(&a, &a, 5), 1.0);
        // b ranks 0, 2, 4 highest: shares none of a's top 3.
        let b = [0.9f32, 0.1, 0.8, 0.2, 0.7, 0.0];
        assert_eq!(top_k_overlap(&a, &b, 3), 0.0);
        // top-5 of a = {1,5,3,2,4}; of b = {0,2,4,3,1}: shared {1,2,3,4} = 4/5.
        assert!(close(top_k_overlap(&a, &b, 5), 0.8, 1e-12));
        assert_eq!(top_k(&[1.0, 1.0, 1.0], 2), vec![0, 1]);
    }

    #[test]
    fn perplexity_from_nlls() {
        assert_eq!(perplexity(&[]), None);
        // Uniform over 4 tokens: NLL ln 4 each, perplexity 4.
        let nlls = [4f64.ln(); 10];
        assert!(close(perplexity(&nlls).unwrap(), 4.0, 1e-12));
        // exp(mean(ln 2, ln 8)) = exp(ln 4) = 4: a geometric mean of the inverse probabilities.
        assert!(close(
            perplexity(&[2f64.ln(), 8f64.ln()]).unwrap(),
            4.0,
            1e-12
        ));
        let logits = [0.0f32; 4];
        assert!(close(nll(&logits, 2), 4f64.ln(), 1e-12));
    }

    #[test]
    fn common_prefix() {
        assert_eq!(common_prefix_len(&[1, 2, 3], &[1, 2, 4]), 2);
        assert_eq!(common_prefix_len(&[1, 2], &[1, 2, 3]), 2);
        assert_eq!(common_prefix_len(&[], &[1]), 0);
        assert_eq!(common_prefix_len(&[5], &[6]), 0);
    }
}
