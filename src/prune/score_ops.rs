//! Host-side steps the `attention` scorer applies to one score per token: neighbour pooling
//! and rank normalisation. Pure functions over slices, so their contracts are tested without
//! a model. `ranks` is shared with the predictor's training metrics.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};

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

/// Each score over the mean score of the `width` tokens around it (`width / 2` on each side,
/// clipped at the ends, the token itself included): how much a token stands out from its
/// neighbourhood, whatever the neighbourhood's level. Attention falls with distance from the
/// queries; this makes a peak far back count like one close by. A token whose neighbourhood
/// has no mass scores 0; NaN counts as 0. O(n).
pub fn relative_to_neighbours(scores: &[f32], width: usize) -> Vec<f32> {
    let half = width / 2;
    let clean = |s: f32| if s.is_nan() { 0.0 } else { f64::from(s) };
    let mut prefix = Vec::with_capacity(scores.len() + 1);
    let mut total = 0.0f64;
    prefix.push(total);
    for &s in scores {
        total += clean(s);
        prefix.push(total);
    }
    let n = scores.len();
    (0..n)
        .map(|i| {
            let (lo, hi) = (i.saturating_sub(half), (i + half + 1).min(n));
            let mean = (prefix[hi] - prefix[lo]) / (hi - lo) as f64;
            if mean > 0.0 {
                (clean(scores[i]) / mean) as f32
            } else {
                0.0
            }
        })
        .collect()
}

/// How much of the question each token's sentence spells out, in [0, 1]: the prompt's last
/// `window` tokens are the question; an id the question holds weighs by its rarity in the
/// prompt, ln(c / occurrences) with c = max(4, n / 100), and nothing once it occurs c times
/// or more, so the template's words and filler (however often the question repeats them)
/// weigh 0 and a key named once in the haystack and once in the question weighs most. A
/// sentence (`sentence` numbers each token's, consecutive; `None`: each token alone) holds the
/// weight of the distinct question ids in it, and scores that over the most any sentence
/// wholly before the `protected_tail` holds, capped at 1; where none before the tail holds a
/// question id, over the most any sentence holds (the question's own). So a needle sentence
/// scores 1 wherever it is, also when it runs into the tail (a needle just before the
/// question), and when the needle itself lies in the tail, the sentences before it that
/// share a word or two with the question score by that share of the whole question rather
/// than 1. O(n).
pub fn question_overlap(
    ids: &[u32],
    window: usize,
    protected_tail: usize,
    sentence: Option<&[u32]>,
) -> Vec<f32> {
    let n = ids.len();
    let question = n - window.min(n);
    let start = n - protected_tail.max(window).min(n);
    let mut out = vec![0.0f32; n];
    let mut count: HashMap<u32, u32> = HashMap::new();
    for &id in ids {
        *count.entry(id).or_default() += 1;
    }
    let common = (n as f64 / 100.0).max(4.0);
    let weight = |id: u32| (common / f64::from(count[&id])).ln().max(0.0);
    let question: HashSet<u32> = ids[question..].iter().copied().collect();
    // The most a sentence wholly before the tail holds, and the most any holds.
    let (mut before_tail, mut anywhere) = (0.0f64, 0.0f64);
    let mut i = 0;
    while i < n {
        let end = match sentence {
            Some(s) => (i + 1..n).find(|&e| s[e] != s[i]).unwrap_or(n),
            None => i + 1,
        };
        let mut seen = HashSet::new();
        let held: f64 = ids[i..end]
            .iter()
            .filter(|&&id| question.contains(&id) && seen.insert(id))
            .map(|&id| weight(id))
            .sum();
        if end <= start {
            before_tail = before_tail.max(held);
        }
        anywhere = anywhere.max(held);
        out[i..end].fill(held as f32);
        i = end;
    }
    let most = if before_tail > 0.0 {
        before_tail
    } else {
        anywhere
    };
    if most > 0.0 {
        out.iter_mut()
            .for_each(|v| *v = (f64::from(*v) / most).min(1.0) as f32);
    }
    out
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
    fn relative_scores_see_a_peak_in_a_quiet_neighbourhood() {
        // A far, quiet region with one peak, then a loud recent region without one.
        let s = [0.01, 0.01, 0.04, 0.01, 0.01, 0.5, 0.5, 0.5, 0.5, 0.5];
        let r = relative_to_neighbours(&s, 5);
        // The quiet peak stands out (0.04 over a mean of 0.016); the loud plateau does not.
        assert!((r[2] - 2.5).abs() < 1e-6, "{r:?}");
        assert!((r[7] - 1.0).abs() < 1e-6, "{r:?}");
        assert!(r[2] > r[7] && s[2] < s[7]);
        // Ends are clipped: token 0 is over the mean of tokens 0..=2.
        assert!((r[0] - 0.01 / 0.02).abs() < 1e-6, "{r:?}");
        // No mass around, or NaN: 0. Width 1 compares a token with itself.
        assert_eq!(
            relative_to_neighbours(&[0.0, 0.0, f32::NAN], 3),
            vec![0.0; 3]
        );
        assert_eq!(relative_to_neighbours(&[0.2, 0.0], 1), vec![1.0, 0.0]);
        assert!(relative_to_neighbours(&[], 9).is_empty());
    }

    #[test]
    fn question_overlap_weighs_rare_shared_tokens() {
        // Ids: 1 is filler everywhere (8 times: at or over c = 4, it weighs 0); 7 (the key)
        // is once in the haystack and once in the question; 3 is in a distractor and in the
        // question; 9 is in no question; the question is the last 3.
        let ids = [1, 1, 7, 9, 1, 3, 1, 1, 1, 1, 7, 3, 1];
        let sentence = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3];
        let out = question_overlap(&ids, 3, 3, Some(&sentence));
        // Sentences 0 and 1 hold ln(4 / 2) each, the most before the tail: 1. Sentence 2
        // holds only filler: 0. The question holds twice the most: capped at 1.
        assert_eq!(out, [&[1.0f32; 7][..], &[0.0; 3], &[1.0; 3]].concat());
        // Per token: only the matching tokens score.
        let per_token = question_overlap(&ids, 3, 0, None);
        assert_eq!((per_token[2], per_token[5]), (1.0, 1.0));
        assert_eq!((per_token[0], per_token[3]), (0.0, 0.0));
        assert!(question_overlap(&[], 3, 1, None).is_empty());
    }

    #[test]
    fn question_overlap_credits_a_needle_at_or_in_the_tail() {
        // The key 7 sits in sentence 2, which runs into the protected tail (last 6 tokens:
        // the tail starts at token 8); the question (last 4) asks for 7 and 3.
        let ids = [1, 1, 1, 1, 1, 3, 1, 1, 7, 1, 1, 7, 3, 1];
        let sentence = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 3];
        let out = question_overlap(&ids, 4, 6, Some(&sentence));
        // Sentence 1 (wholly before the tail) holds 3, as much as the needle holds 7: both 1.
        assert_eq!(&out[4..10], &[1.0; 6], "{out:?}");
        assert_eq!(&out[..4], &[0.0; 4]);
        // With nothing before the tail naming a question id (3 replaced by 5), the shares
        // are of the most any sentence holds, the question's own: 7 (twice in the prompt,
        // ln 2) and 3 (now once, ln 4); the needle holds a third of that.
        let mut ids = ids;
        ids[5] = 5;
        let out = question_overlap(&ids, 4, 6, Some(&sentence));
        assert_eq!(&out[4..7], &[0.0; 3], "{out:?}");
        assert_eq!(&out[7..10], &[1.0 / 3.0; 3], "{out:?}");
        assert_eq!(&out[10..], &[1.0; 4]);
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
