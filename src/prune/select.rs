//! Which tokens survive a pruning stage, decided from scores alone (no tensors).
//!
//! The counts are exposed as [`mandatory_tail_len`] and [`kept_len`] so that the prefill's
//! invariant checks use the very same arithmetic as the selection.

use std::cmp::Ordering;

/// Snaps `x` to the nearest multiple of 0.5 when it is within a relative 1e-9 of it, so that
/// `ceil` and `round` see the product the user meant (0.1 * 30 = 3, not 3.0000000000000004).
fn snap_half(x: f64) -> f64 {
    let nearest = (x * 2.0).round() / 2.0;
    if (x - nearest).abs() <= 1e-9 * x.abs().max(1.0) {
        nearest
    } else {
        x
    }
}

/// Ratio clamped into [0, 1]; NaN becomes `nan_as`.
fn clamp_ratio(ratio: f64, nan_as: f64) -> f64 {
    if ratio.is_nan() {
        nan_as
    } else {
        ratio.clamp(0.0, 1.0)
    }
}

/// Number of trailing tokens a stage over `n` tokens must keep: `max(1, ceil(min_tail_ratio * n))`,
/// at most `n` (0 when `n == 0`). `min_tail_ratio` is clamped into [0, 1], NaN counting as 0; a
/// product within a relative 1e-9 of an integer counts as that integer.
pub fn mandatory_tail_len(n: usize, min_tail_ratio: f64) -> usize {
    let ratio = clamp_ratio(min_tail_ratio, 0.0);
    let tail = snap_half(ratio * n as f64).ceil() as usize;
    tail.max(1).min(n)
}

/// Number of tokens [`apply_token_pruning`] keeps out of `n`:
/// `min(n, max(mandatory, round(keep_ratio * n)))`, where mandatory is the size of the union of
/// the first `min(min_head_tokens, n)` and the last [`mandatory_tail_len`] tokens. `keep_ratio`
/// is clamped into [0, 1] and NaN counts as 1 (keep everything); `round` rounds halves up, and a
/// product within a relative 1e-9 of a half-integer counts as that half-integer.
pub fn kept_len(n: usize, keep_ratio: f64, min_head_tokens: usize, min_tail_ratio: f64) -> usize {
    let mandatory = (min_head_tokens.min(n) + mandatory_tail_len(n, min_tail_ratio)).min(n);
    let ratio = clamp_ratio(keep_ratio, 1.0);
    let wanted = snap_half(ratio * n as f64).round() as usize;
    wanted.max(mandatory).min(n)
}

/// Rank class of a score: finite scores first, then +inf, -inf, and NaN last.
fn class(score: f32) -> u8 {
    if score.is_finite() {
        0
    } else if score == f32::INFINITY {
        1
    } else if score == f32::NEG_INFINITY {
        2
    } else {
        3
    }
}

/// Selects which of the `n = scores.len()` current tokens survive a pruning stage.
///
/// Returns sorted, unique indices into `0..n`; the caller gathers hidden states, positions and
/// cache rows with them. For `n == 0` it returns an empty vector (callers never prune an empty
/// sequence). Otherwise, with `head = min(min_head_tokens, n)` and
/// `tail = max(1, ceil(min_tail_ratio * n))` (see [`mandatory_tail_len`]):
///
/// - the first `head` and the last `tail` indices are always kept, so the last token is always
///   kept and at least one token survives;
/// - exactly [`kept_len`] indices are returned: `min(n, max(mandatory, round(keep_ratio * n)))`;
/// - the other slots go to the remaining tokens with the highest scores. Non-finite scores rank
///   below every finite score, in the order +inf, -inf, NaN (a token scored NaN is chosen last);
///   `-0.0` equals `0.0`; ties go to the lower index, so the result is deterministic.
///
/// It never panics. Out-of-range arguments are clamped rather than rejected (schedules are
/// validated before a run, see `PruneSchedule::validate`): `keep_ratio` and `min_tail_ratio` are
/// clamped into [0, 1]; a NaN `keep_ratio` keeps every token and a NaN `min_tail_ratio` acts as 0.
/// O(n) expected time plus the sort of the kept indices.
pub fn apply_token_pruning(
    scores: &[f32],
    keep_ratio: f64,
    min_head_tokens: usize,
    min_tail_ratio: f64,
) -> Vec<usize> {
    let n = scores.len();
    if n == 0 {
        return Vec::new();
    }
    let head = min_head_tokens.min(n);
    let tail_start = n - mandatory_tail_len(n, min_tail_ratio);
    let total = kept_len(n, keep_ratio, min_head_tokens, min_tail_ratio);

    // Candidates are the tokens between the protected head and tail.
    let mut candidates: Vec<usize> = (head..tail_start.max(head)).collect();
    let mandatory = n - candidates.len();
    let slots = total - mandatory;
    if slots < candidates.len() {
        // Best first: by class, then descending score (+0.0 folds -0.0 into 0.0), then index.
        // Indices are unique, so this is a strict total order and the chosen set is unique.
        let rank = |&a: &usize, &b: &usize| -> Ordering {
            let (sa, sb) = (scores[a], scores[b]);
            class(sa)
                .cmp(&class(sb))
                .then_with(|| {
                    if sa.is_finite() {
                        (sb + 0.0).total_cmp(&(sa + 0.0))
                    } else {
                        Ordering::Equal
                    }
                })
                .then(a.cmp(&b))
        };
        if slots == 0 {
            candidates.clear();
        } else {
            candidates.select_nth_unstable_by(slots - 1, rank);
            candidates.truncate(slots);
        }
        candidates.sort_unstable();
    }

    let mut kept = Vec::with_capacity(total);
    kept.extend(0..head);
    kept.extend(candidates);
    kept.extend(tail_start.max(head)..n);
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAN: f32 = f32::NAN;
    const INF: f32 = f32::INFINITY;

    #[test]
    fn empty_input_gives_empty_output() {
        assert!(apply_token_pruning(&[], 0.5, 4, 0.1).is_empty());
        assert_eq!(kept_len(0, 0.5, 4, 0.1), 0);
        assert_eq!(mandatory_tail_len(0, 0.5), 0);
    }

    #[test]
    fn keeps_the_best_middle_tokens() {
        // n = 10, head 1, tail max(1, ceil(1.0)) = 1, keep round(5) = 5: indices 0 and 9 plus
        // the three best of 1..=8.
        let scores = [0.0, 5.0, 1.0, 9.0, 2.0, 8.0, 3.0, 7.0, 4.0, 0.0];
        assert_eq!(apply_token_pruning(&scores, 0.5, 1, 0.1), [0, 3, 5, 7, 9]);
    }

    #[test]
    fn head_and_tail_are_kept_whatever_their_scores() {
        let scores = [-9.0, -9.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, -9.0, -9.0];
        // head 2, tail ceil(0.2 * 10) = 2: mandatory 4 > round(0.1 * 10) = 1.
        assert_eq!(apply_token_pruning(&scores, 0.1, 2, 0.2), [0, 1, 8, 9]);
        // keep 0.6 -> 6: two more, the best middle ones (6 and 7).
        assert_eq!(
            apply_token_pruning(&scores, 0.6, 2, 0.2),
            [0, 1, 6, 7, 8, 9]
        );
    }

    #[test]
    fn last_token_is_kept_even_with_zero_tail_ratio() {
        let scores = [5.0, 4.0, 3.0, 2.0, 1.0, 0.0];
        assert_eq!(apply_token_pruning(&scores, 0.5, 0, 0.0), [0, 1, 5]);
        assert_eq!(apply_token_pruning(&[1.0], 0.01, 0, 0.0), [0]);
        assert_eq!(apply_token_pruning(&[NAN], 0.0, 0, 0.0), [0]);
    }

    #[test]
    fn ties_go_to_the_lower_index() {
        let scores = [1.0; 8];
        assert_eq!(apply_token_pruning(&scores, 0.5, 0, 0.0), [0, 1, 2, 7]);
        let scores = [0.0, 2.0, 1.0, 2.0, 1.0, 2.0, 0.0, 0.0];
        assert_eq!(apply_token_pruning(&scores, 0.5, 0, 0.0), [1, 3, 5, 7]);
        // -0.0 ties with 0.0.
        let scores = [-0.0, 0.0, -0.0, 0.0];
        assert_eq!(apply_token_pruning(&scores, 0.5, 0, 0.0), [0, 3]);
        let scores = [1.0, -0.0, 0.0, 5.0];
        assert_eq!(apply_token_pruning(&scores, 0.75, 0, 0.0), [0, 1, 3]);
    }

    #[test]
    fn non_finite_scores_rank_below_finite_ones() {
        let scores = [NAN, INF, -INF, -1e30, NAN, INF, f32::MIN, 0.0];
        // 3 slots among 0..=6 besides the last token: the two finite scores, then the first +inf.
        assert_eq!(apply_token_pruning(&scores, 0.5, 0, 0.0), [1, 3, 6, 7]);
        // Then the other +inf, then -inf, then NaN.
        assert_eq!(apply_token_pruning(&scores, 0.625, 0, 0.0), [1, 3, 5, 6, 7]);
        assert_eq!(
            apply_token_pruning(&scores, 0.75, 0, 0.0),
            [1, 2, 3, 5, 6, 7]
        );
        assert_eq!(
            apply_token_pruning(&scores, 0.875, 0, 0.0),
            [0, 1, 2, 3, 5, 6, 7]
        );
        let all_nan = [NAN; 6];
        assert_eq!(apply_token_pruning(&all_nan, 0.5, 1, 0.0), [0, 1, 5]);
    }

    #[test]
    fn keep_ratio_one_keeps_everything() {
        let scores: Vec<f32> = (0..37).map(|i| (i % 5) as f32).collect();
        let all: Vec<usize> = (0..37).collect();
        assert_eq!(apply_token_pruning(&scores, 1.0, 0, 0.0), all);
        assert_eq!(apply_token_pruning(&scores, 1.0, 4, 0.1), all);
    }

    #[test]
    fn out_of_range_arguments_are_clamped() {
        let scores = [3.0, 1.0, 2.0, 0.0, 5.0, 4.0];
        let all: Vec<usize> = (0..6).collect();
        for keep in [f64::NAN, 1.5, f64::INFINITY] {
            assert_eq!(apply_token_pruning(&scores, keep, 0, 0.0), all, "{keep}");
        }
        for keep in [0.0, -1.0, f64::NEG_INFINITY] {
            assert_eq!(apply_token_pruning(&scores, keep, 0, 0.0), [5], "{keep}");
        }
        for tail in [f64::NAN, -2.0, f64::NEG_INFINITY] {
            assert_eq!(
                apply_token_pruning(&scores, 0.5, 0, tail),
                [0, 4, 5],
                "{tail}"
            );
        }
        for tail in [1.0, 7.0, f64::INFINITY] {
            assert_eq!(apply_token_pruning(&scores, 0.1, 0, tail), all, "{tail}");
        }
        assert_eq!(apply_token_pruning(&scores, 0.1, usize::MAX, 0.0), all);
    }

    #[test]
    fn counts_follow_the_intended_decimal_product() {
        // 0.1 * 30 is 3.0000000000000004 in f64; it must protect 3 tokens, not 4.
        assert_eq!(mandatory_tail_len(30, 0.1), 3);
        assert_eq!(mandatory_tail_len(10, 0.1), 1);
        assert_eq!(mandatory_tail_len(11, 0.1), 2);
        assert_eq!(mandatory_tail_len(5, 0.0), 1);
        // 0.7 * 5 = 3.5 rounds up even though the f64 product is a hair below it.
        assert_eq!(kept_len(5, 0.7, 0, 0.0), 4);
        assert_eq!(kept_len(100, 0.9, 4, 0.1), 90);
        assert_eq!(kept_len(100, 0.05, 4, 0.1), 14);
        assert_eq!(kept_len(3, 0.5, 4, 0.1), 3);
    }

    #[test]
    fn overlapping_head_and_tail() {
        let scores = [0.0; 5];
        // head 3 and tail ceil(0.6 * 5) = 3 overlap: everything is mandatory.
        assert_eq!(apply_token_pruning(&scores, 0.2, 3, 0.6), [0, 1, 2, 3, 4]);
    }

    #[test]
    fn large_input_is_sorted_and_sized() {
        let n = 128 * 1024;
        let scores: Vec<f32> = (0..n).map(|i| ((i * 7919) % 1000) as f32).collect();
        let kept = apply_token_pruning(&scores, 0.3, 4, 0.1);
        assert_eq!(kept.len(), kept_len(n, 0.3, 4, 0.1));
        assert!(kept.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(kept.last(), Some(&(n - 1)));
    }
}
