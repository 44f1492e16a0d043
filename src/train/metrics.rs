//! Pure functions over score vectors: ranks, Spearman correlation, top-k overlap, the
//! pairwise ranking loss. No tensors, so each is tested on hand-made input. KL, arg max and
//! the statistics over runs are the shared ones (`crate::metrics`).

use std::cmp::Ordering;

use crate::prune::score_ops::cmp_scores;
pub use crate::prune::score_ops::ranks;

/// Pearson correlation; `None` for fewer than two values or a constant side.
pub fn pearson(a: &[f64], b: &[f64]) -> Option<f64> {
    let n = a.len();
    if n < 2 || b.len() != n {
        return None;
    }
    let mean = |x: &[f64]| x.iter().sum::<f64>() / n as f64;
    let (ma, mb) = (mean(a), mean(b));
    let (mut cov, mut va, mut vb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        cov += (x - ma) * (y - mb);
        va += (x - ma) * (x - ma);
        vb += (y - mb) * (y - mb);
    }
    if va <= 0.0 || vb <= 0.0 {
        return None;
    }
    Some(cov / (va.sqrt() * vb.sqrt()))
}

/// Spearman's rank correlation (Pearson of the fractional ranks), in [-1, 1]; `None` for
/// mismatched lengths, fewer than two values, or a constant side.
pub fn spearman(a: &[f32], b: &[f32]) -> Option<f64> {
    if a.len() != b.len() {
        return None;
    }
    pearson(&ranks(a), &ranks(b))
}

/// Indices of the `k` highest scores (ties to the lower index), in no particular order.
pub fn top_k_indices(scores: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| cmp_scores(scores[b], scores[a]).then(a.cmp(&b)));
    order.truncate(k);
    order
}

/// |top-k(a) ∩ top-k(b)| / k: the fraction of the tokens one scorer keeps that the other
/// keeps too. `k` is clamped to the length; 1.0 when k is 0.
pub fn top_k_overlap(a: &[f32], b: &[f32], k: usize) -> f64 {
    let k = k.min(a.len()).min(b.len());
    if k == 0 {
        return 1.0;
    }
    let mut in_a = vec![false; a.len()];
    for i in top_k_indices(a, k) {
        in_a[i] = true;
    }
    let shared = top_k_indices(b, k).into_iter().filter(|&i| in_a[i]).count();
    shared as f64 / k as f64
}

/// Numerically stable log(1 + e^x).
pub fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// The SDTP pairwise ranking loss over the given pairs, summed:
/// Σ log(1 + exp(−(π_i − π_j) · sign(π̂_i − π̂_j))), where `pred` is π and `target` π̂.
/// Pairs whose targets tie contribute nothing (their order carries no label).
pub fn ranking_loss(pred: &[f32], target: &[f32], pairs: &[(usize, usize)]) -> f64 {
    pairs
        .iter()
        .filter_map(|&(i, j)| {
            let sign = match cmp_scores(target[i], target[j]) {
                Ordering::Greater => 1.0,
                Ordering::Less => -1.0,
                Ordering::Equal => return None,
            };
            Some(softplus(-(pred[i] as f64 - pred[j] as f64) * sign))
        })
        .sum()
}

/// Per-sequence normalised saliency, the regression target: the fractional ranks mapped
/// to zero mean and unit variance. Ranks, not raw values, because gradient × hidden is
/// heavy-tailed and a few tokens would otherwise dominate the squared error.
pub fn normalised_ranks(values: &[f32]) -> Vec<f32> {
    let r = ranks(values);
    let n = r.len() as f64;
    if r.len() < 2 {
        return vec![0.0; r.len()];
    }
    let mean = (n + 1.0) / 2.0;
    let var = r.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
    let sd = var.sqrt().max(1e-12);
    r.iter().map(|x| ((x - mean) / sd) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_share_ties() {
        assert_eq!(ranks(&[10.0, 30.0, 20.0, 20.0]), [1.0, 4.0, 2.5, 2.5]);
        assert_eq!(ranks(&[]), Vec::<f64>::new());
        assert_eq!(ranks(&[f32::NAN, 0.0]), [1.0, 2.0]);
    }

    #[test]
    fn spearman_on_known_inputs() {
        let a = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert!((spearman(&a, &[2.0, 4.0, 8.0, 16.0, 32.0]).unwrap() - 1.0).abs() < 1e-12);
        assert!((spearman(&a, &[5.0, 4.0, 3.0, 2.0, 1.0]).unwrap() + 1.0).abs() < 1e-12);
        // d = (0, 0, -1, 1, 0): rho = 1 - 6·2 / (5·24) = 0.9.
        let rho = spearman(&a, &[1.0, 2.0, 4.0, 3.0, 5.0]).unwrap();
        assert!((rho - 0.9).abs() < 1e-12, "{rho}");
        assert_eq!(spearman(&a, &[1.0; 5]), None);
        assert_eq!(spearman(&[1.0], &[1.0]), None);
        assert_eq!(spearman(&a, &[1.0, 2.0]), None);
    }

    #[test]
    fn top_k_overlap_counts_shared_tokens() {
        let a = [0.9, 0.1, 0.8, 0.2, 0.7];
        let b = [0.9, 0.8, 0.1, 0.2, 0.7];
        // top-3 a = {0, 2, 4}, top-3 b = {0, 1, 4}
        assert!((top_k_overlap(&a, &b, 3) - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(top_k_overlap(&a, &a, 2), 1.0);
        assert_eq!(top_k_overlap(&a, &b, 0), 1.0);
        assert_eq!(top_k_overlap(&a, &b, 99), 1.0);
        let mut top = top_k_indices(&[1.0, 3.0, 3.0, 2.0], 2);
        top.sort();
        assert_eq!(top, [1, 2]);
    }

    #[test]
    fn ranking_loss_on_known_pairs() {
        let target = [3.0, 1.0, 2.0, 2.0];
        // (0, 1) in the right order by 0.5: log(1 + e^-0.5); (1, 3) in the wrong order by 0.5
        // (π̂_1 < π̂_3 but π_1 > π_3): log(1 + e^0.5); (2, 3) ties in the target: nothing.
        let pred = [2.0, 1.5, 0.0, 1.0];
        let loss = ranking_loss(&pred, &target, &[(0, 1), (1, 3), (2, 3)]);
        let want = (1.0 + (-0.5f64).exp()).ln() + (1.0 + 0.5f64.exp()).ln();
        assert!((loss - want).abs() < 1e-12, "{loss} vs {want}");
        // Equal predictions cost log 2 per labelled pair.
        let flat = ranking_loss(&[0.0; 4], &target, &[(0, 1), (0, 2)]);
        assert!((flat - 2.0 * 2f64.ln()).abs() < 1e-12);
        assert!((softplus(50.0) - 50.0).abs() < 1e-12);
        assert!(softplus(-50.0) > 0.0 && softplus(-50.0) < 1e-20);
    }

    #[test]
    fn normalised_ranks_are_standardised() {
        let z = normalised_ranks(&[5.0, -1.0, 100.0, 0.0]);
        let mean: f32 = z.iter().sum::<f32>() / 4.0;
        let var: f32 = z.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / 4.0;
        assert!(mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-5, "{z:?}");
        assert!(z[2] > z[0] && z[0] > z[3] && z[3] > z[1]);
        assert_eq!(normalised_ranks(&[7.0]), [0.0]);
    }
}
