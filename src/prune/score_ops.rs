//! Host-side steps the `attention` scorer applies to one score per token: neighbour pooling
//! and rank normalisation. Pure functions over slices, so their contracts are tested without
//! a model. `ranks` is shared with the predictor's training metrics.

use std::cmp::Ordering;

/// Max over each token's `width` neighbours (`width / 2` on each side, clipped at the ends):
/// SnapKV's 1-D pooling, so the tokens next to one that draws attention (the digits after
/// "the pass key is") rank with it. `width` ≤ 1 returns the scores unchanged. NaN counts as
/// the lowest score. O(n · width).
pub fn max_pool(scores: &[f32], width: usize) -> Vec<f32> {
    let half = width / 2;
    if half == 0 {
        return scores.to_vec();
    }
    let n = scores.len();
    (0..n)
        .map(|i| {
            scores[i.saturating_sub(half)..(i + half + 1).min(n)]
                .iter()
                .copied()
                .filter(|s| !s.is_nan())
                .fold(f32::NAN, f32::max)
        })
        .collect()
}

/// Each token's score raised to the best score in its sentence (`sentence[i]` numbers token
/// i's sentence; a sentence's tokens are consecutive), so that a sentence the question
/// points at is kept whole: the tail of a UUID that follows the key the question matches
/// draws no attention of its own, yet decoding copies it token by token. Every token of a
/// sentence ends with the same score. NaN counts as the lowest score. O(n).
pub fn sentence_max(scores: &[f32], sentence: &[u32]) -> Vec<f32> {
    assert_eq!(scores.len(), sentence.len(), "one sentence id per score");
    let mut out = vec![f32::NAN; scores.len()];
    let mut start = 0;
    while start < scores.len() {
        let mut end = start + 1;
        while end < scores.len() && sentence[end] == sentence[start] {
            end += 1;
        }
        let best = scores[start..end]
            .iter()
            .copied()
            .filter(|s| !s.is_nan())
            .fold(f32::NAN, f32::max);
        // A sentence of NaNs stays NaN.
        out[start..end].fill(best);
        start = end;
    }
    out
}

/// Total order on f32 for ranking: NaN sorts below every number (it never looks salient).
pub fn cmp_scores(a: f32, b: f32) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

/// Fractional ranks, 1-based, ties sharing the mean of their ranks (as in Spearman's rho):
/// `ranks(&[10, 30, 20, 20]) == [1, 4, 2.5, 2.5]`.
pub fn ranks(values: &[f32]) -> Vec<f64> {
    ranks_by(values.len(), |a, b| cmp_scores(values[a], values[b]))
}

/// [`ranks`] of the items `0..n` under `cmp`, a total order on their indices.
fn ranks_by(n: usize, cmp: impl Fn(usize, usize) -> Ordering) -> Vec<f64> {
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| cmp(a, b));
    let mut out = vec![0.0; n];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && cmp(order[start], order[end]) == Ordering::Equal {
            end += 1;
        }
        // Ranks start+1 ..= end share their mean.
        let mean = (start + 1 + end) as f64 / 2.0;
        for &i in &order[start..end] {
            out[i] = mean;
        }
        start = end;
    }
    out
}

/// Ranks 1-based → [0, 1]; a single item ranks 1.
fn scale01(ranks: Vec<f64>) -> Vec<f32> {
    let n = ranks.len();
    if n <= 1 {
        return vec![1.0; n];
    }
    let top = (n - 1) as f64;
    ranks
        .into_iter()
        .map(|r| ((r - 1.0) / top) as f32)
        .collect()
}

/// Each score's rank among `scores` scaled into [0, 1]: 0 for the lowest, 1 for the highest,
/// ties sharing their mean rank, NaN ranked lowest ([`ranks`] rescaled). Makes scores of
/// different layers comparable (their attention mass differs), which carrying them across
/// stages needs.
pub fn rank01(scores: &[f32]) -> Vec<f32> {
    scale01(ranks(scores))
}

/// [`rank01`] of `lead`, its ties broken by `tie` (same length): where pooling gave several
/// sentences the same peak, the sentence that holds the peak itself ranks first.
pub fn rank01_tie_broken(lead: &[f32], tie: &[f32]) -> Vec<f32> {
    assert_eq!(lead.len(), tie.len(), "one tie-breaker per score");
    scale01(ranks_by(lead.len(), |a, b| {
        cmp_scores(lead[a], lead[b]).then_with(|| cmp_scores(tie[a], tie[b]))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_spreads_a_peak_to_its_neighbours_only() {
        let s = [0.0, 0.1, 5.0, 0.2, 0.0, 0.0, 0.3];
        assert_eq!(max_pool(&s, 1), s.to_vec());
        assert_eq!(max_pool(&s, 3), vec![0.1, 5.0, 5.0, 5.0, 0.2, 0.3, 0.3]);
        assert_eq!(max_pool(&s, 5), vec![5.0, 5.0, 5.0, 5.0, 5.0, 0.3, 0.3]);
        // Wider than the sequence: everything takes the maximum.
        assert_eq!(max_pool(&s, 99), vec![5.0; 7]);
        assert!(max_pool(&[], 7).is_empty());
        // NaN never wins; a window of only NaN stays NaN.
        let p = max_pool(&[f32::NAN, 1.0, f32::NAN, f32::NAN, f32::NAN], 3);
        assert_eq!(&p[..3], &[1.0, 1.0, 1.0]);
        assert!(p[4].is_nan());
    }

    #[test]
    fn ties_break_on_the_second_score() {
        // Tokens 0..2 and 2..4 share the pooled peak; 2..4 hold it themselves.
        let lead = [0.9, 0.9, 0.9, 0.9, 0.1];
        let tie = [0.2, 0.2, 0.9, 0.9, 0.1];
        assert_eq!(
            rank01_tie_broken(&lead, &tie),
            vec![0.375, 0.375, 0.875, 0.875, 0.0]
        );
        assert_eq!(rank01_tie_broken(&lead, &lead), rank01(&lead));
    }

    #[test]
    fn a_sentence_takes_its_best_tokens_score() {
        let s = [0.1, 0.9, 0.0, 0.2, 0.3, f32::NAN, 0.4];
        let sentence = [0, 0, 0, 1, 1, 2, 2];
        assert_eq!(
            sentence_max(&s, &sentence),
            vec![0.9, 0.9, 0.9, 0.3, 0.3, 0.4, 0.4]
        );
        // One sentence per token changes nothing.
        assert_eq!(sentence_max(&s[..5], &[0, 1, 2, 3, 4]), s[..5].to_vec());
        assert!(sentence_max(&[], &[]).is_empty());
    }

    #[test]
    fn ranks_are_ordered_share_ties_and_put_nan_last() {
        assert_eq!(rank01(&[3.0, 1.0, 2.0]), vec![1.0, 0.0, 0.5]);
        assert_eq!(rank01(&[1.0, 1.0, 2.0]), vec![0.25, 0.25, 1.0]);
        assert_eq!(rank01(&[f32::NAN, 0.5, -1.0]), vec![0.0, 1.0, 0.5]);
        assert_eq!(rank01(&[4.0]), vec![1.0]);
        assert!(rank01(&[]).is_empty());
    }
}
