//! Property test of `apply_token_pruning` over whole schedules: stages applied in sequence to a
//! shrinking sequence, every invariant of the contract checked at every stage.
//!
//! Scores are not drawn element by element by proptest (too slow for 10 000 cases of up to 8192
//! tokens): each case draws a seed and a score distribution, fills one Vec from the seed, and each
//! stage re-derives the scores of the surviving tokens from that Vec.

use proptest::prelude::*;
use sdtp::prune::select::apply_token_pruning;

/// splitmix64: cheap, deterministic, good enough to spread scores.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[derive(Debug, Clone)]
struct Scores {
    seed: u64,
    /// Finite scores are integers in 0..distinct (few values: many ties; zero as 0.0 or -0.0) or,
    /// when 0, arbitrary finite floats.
    distinct: u32,
    /// Share of non-finite scores (NaN, +inf, -inf in equal parts), per 1024.
    non_finite_per_1024: u64,
}

impl Scores {
    fn generate(&self, n: usize) -> Vec<f32> {
        let mut state = self.seed;
        (0..n)
            .map(|_| {
                let r = next(&mut state);
                if (r & 1023) < self.non_finite_per_1024 {
                    [f32::NAN, f32::INFINITY, f32::NEG_INFINITY][(r >> 10) as usize % 3]
                } else if self.distinct == 0 {
                    // Any finite value, including subnormals, ±0 and ±f32::MAX.
                    let f = f32::from_bits((r >> 32) as u32);
                    if f.is_finite() {
                        f
                    } else {
                        -0.0
                    }
                } else {
                    let v = ((r >> 32) % u64::from(self.distinct)) as f32;
                    // -0.0 must tie with 0.0.
                    if v == 0.0 && r & 2048 != 0 {
                        -0.0
                    } else {
                        v
                    }
                }
            })
            .collect()
    }
}

fn scores() -> impl Strategy<Value = Scores> {
    (
        any::<u64>(),
        prop_oneof![Just(0u32), 1u32..=4, 5u32..=1000],
        prop_oneof![Just(0u64), 1u64..=64, 65u64..=1024, Just(1024u64)],
    )
        .prop_map(|(seed, distinct, non_finite_per_1024)| Scores {
            seed,
            distinct,
            non_finite_per_1024,
        })
}

/// `x` snapped to a nearby half-integer, as the contract's `ceil`/`round` see it.
fn snap_half(x: f64) -> f64 {
    let nearest = (x * 2.0).round() / 2.0;
    if (x - nearest).abs() <= 1e-9 * x.abs().max(1.0) {
        nearest
    } else {
        x
    }
}

/// Best-first rank of a score as the contract states it: finite (descending), +inf, -inf, NaN.
fn rank_key(score: f32) -> (u8, f32) {
    if score.is_finite() {
        (0, -(score + 0.0))
    } else if score == f32::INFINITY {
        (1, 0.0)
    } else if score == f32::NEG_INFINITY {
        (2, 0.0)
    } else {
        (3, 0.0)
    }
}

/// `(key, index)` of `a` ranks strictly before that of `b`.
fn ranks_before(a: ((u8, f32), usize), b: ((u8, f32), usize)) -> bool {
    let ((ca, sa), ia) = a;
    let ((cb, sb), ib) = b;
    (ca, ia) != (cb, ib)
        && match ca.cmp(&cb) {
            std::cmp::Ordering::Less => true,
            std::cmp::Ordering::Greater => false,
            std::cmp::Ordering::Equal => sa < sb || (sa == sb && ia < ib),
        }
}

fn check_stage(
    scores: &[f32],
    kept: &[usize],
    keep: f64,
    head: usize,
    tail_ratio: f64,
) -> Result<(), TestCaseError> {
    let n = scores.len();
    prop_assert!(!kept.is_empty());
    prop_assert!(
        kept.windows(2).all(|w| w[0] < w[1]),
        "not strictly increasing"
    );
    prop_assert!(*kept.last().unwrap() < n, "index out of range");
    prop_assert_eq!(*kept.last().unwrap(), n - 1, "last token dropped");

    let mut is_kept = vec![false; n];
    for &i in kept {
        is_kept[i] = true;
    }
    let head = head.min(n);
    let tail = (snap_half(tail_ratio * n as f64).ceil() as usize).clamp(1, n);
    prop_assert!(is_kept[..head].iter().all(|&k| k), "head token dropped");
    prop_assert!(is_kept[n - tail..].iter().all(|&k| k), "tail token dropped");

    let mandatory = (head + tail).min(n);
    let expected = (snap_half(keep * n as f64).round() as usize)
        .max(mandatory)
        .min(n);
    prop_assert_eq!(
        kept.len(),
        expected,
        "n {} keep {} head {} tail {}",
        n,
        keep,
        head,
        tail
    );

    // Among the tokens that are not mandatory, every kept one outranks every dropped one; in
    // particular no non-finite score is kept while a finite one is dropped.
    let optional = head..(n - tail).max(head);
    let worst_kept = optional
        .clone()
        .filter(|&i| is_kept[i])
        .map(|i| (rank_key(scores[i]), i))
        .reduce(|a, b| if ranks_before(a, b) { b } else { a });
    let best_dropped = optional
        .clone()
        .filter(|&i| !is_kept[i])
        .map(|i| (rank_key(scores[i]), i))
        .reduce(|a, b| if ranks_before(a, b) { a } else { b });
    if let (Some(k), Some(d)) = (worst_kept, best_dropped) {
        prop_assert!(
            ranks_before(k, d),
            "kept {:?} ranks below dropped {:?}",
            k,
            d
        );
    }
    let finite_dropped = optional
        .clone()
        .any(|i| !is_kept[i] && scores[i].is_finite());
    let non_finite_kept = optional
        .clone()
        .any(|i| is_kept[i] && !scores[i].is_finite());
    prop_assert!(!(finite_dropped && non_finite_kept));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, ..ProptestConfig::default() })]

    #[test]
    fn every_stage_keeps_the_contract(
        len in prop_oneof![1usize..=16, 1usize..=8192],
        ratios in proptest::collection::vec(
            prop_oneof![Just(1.0f64), Just(0.01f64), 0.01f64..=1.0],
            1..=12,
        ),
        head in prop_oneof![Just(0usize), 0usize..=64],
        tail_ratio in prop_oneof![Just(0.0f64), Just(1.0f64), 0.0f64..=1.0],
        scores in scores(),
    ) {
        let base = scores.generate(len);
        // Original index of each surviving token; each stage scores the survivors by rotating
        // through the base scores so that consecutive stages see different scores.
        let mut alive: Vec<usize> = (0..len).collect();
        let mut stage_scores = Vec::with_capacity(len);
        for (stage, &keep) in ratios.iter().enumerate() {
            stage_scores.clear();
            stage_scores.extend(alive.iter().map(|&i| base[(i + stage * 7919) % len]));
            let kept = apply_token_pruning(&stage_scores, keep, head, tail_ratio);
            check_stage(&stage_scores, &kept, keep, head, tail_ratio)?;
            alive = kept.iter().map(|&k| alive[k]).collect();
        }
        prop_assert_eq!(*alive.last().unwrap(), len - 1, "the prompt's last token was pruned");
    }
}
