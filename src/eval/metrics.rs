//! The fidelity metrics of `sdtp eval`, as pure functions over logits (`&[f32]`, one value
//! per vocabulary entry) and plain numbers: no tensors, so each is tested by hand.
//!
//! Conventions (llama.cpp's `perplexity --kl-divergence` uses the same): the unpruned run is
//! the reference distribution P, the pruned run is Q, and KL(P‖Q) = Σ p·(ln p − ln q) in
//! nats. Probabilities come from a softmax computed in f64.

/// `ln softmax(logits)` in f64, computed stably (max subtracted). An empty input gives an
/// empty output. Entries that are −∞ get probability 0 (ln = −∞).
pub fn log_softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits
        .iter()
        .copied()
        .filter(|v| !v.is_nan())
        .fold(f32::NEG_INFINITY, f32::max) as f64;
    if !max.is_finite() {
        // All −∞ (or NaN): no distribution; uniform is the least surprising answer.
        let uniform = -(logits.len().max(1) as f64).ln();
        return vec![uniform; logits.len()];
    }
    let sum: f64 = logits.iter().map(|&v| (v as f64 - max).exp()).sum();
    let log_sum = sum.ln() + max;
    logits.iter().map(|&v| v as f64 - log_sum).collect()
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

/// Index of the largest logit; ties go to the lowest index and NaN never wins. `None` for
/// an empty input.
pub fn argmax(logits: &[f32]) -> Option<usize> {
    let mut best: Option<(usize, f32)> = None;
    for (i, &v) in logits.iter().enumerate() {
        if v.is_nan() {
            continue;
        }
        if best.is_none_or(|(_, b)| v > b) {
            best = Some((i, v));
        }
    }
    best.map(|(i, _)| i).or((!logits.is_empty()).then_some(0))
}

/// Indices of the `k` largest logits, largest first (ties: lower index first; NaN last).
/// Fewer than `k` when the input is shorter.
pub fn top_k(logits: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..logits.len()).collect();
    let key = |i: usize| {
        if logits[i].is_nan() {
            f32::NEG_INFINITY
        } else {
            logits[i]
        }
    };
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

/// Arithmetic mean of the values; `None` when empty.
pub fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// The `q`-quantile (q in [0, 1]) with linear interpolation between the closest ranks
/// (numpy's default): sorted values x₀…x₋₁, position h = q·(n−1), result
/// x⌊h⌋ + (h − ⌊h⌋)·(x⌊h⌋+1 − x⌊h⌋). `None` when there are no values; NaNs sort last.
pub fn percentile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let h = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = h.floor() as usize;
    let hi = h.ceil() as usize;
    Some(sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo]))
}

/// exp(mean NLL): the perplexity of tokens whose NLLs (nats) are given. `None` when empty.
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
    fn percentiles_interpolate_like_numpy() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        // numpy.percentile(range(1, 101), 99) = 99.01
        assert!(close(percentile(&v, 0.99).unwrap(), 99.01, 1e-9));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&v, 1.0), Some(100.0));
        assert_eq!(percentile(&[4.0, 1.0, 3.0, 2.0], 0.5), Some(2.5));
        assert_eq!(percentile(&[7.0], 0.99), Some(7.0));
        assert_eq!(percentile(&[], 0.5), None);
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
