//! `sdtp eval sweep`: keep ratios × scorers on the layers of one schedule, each compared
//! with the baseline as `agreement` does, reduced to points of the speed–fidelity trade:
//! x = analytic prefill FLOP reduction, y = first-token agreement (and mean KL). A point is
//! on the Pareto frontier when no other point is at least as good on both axes and better on
//! one.

use serde::{Deserialize, Serialize};

use super::agreement::AgreementSummary;
use crate::prune::schedule::{PruneSchedule, ScorerKind, Stage};

/// `template`'s layers, every stage keeping `keep_ratio`, scored by `scorer`, named
/// `keep{ratio}` (e.g. `keep0.85`).
pub fn ratio_schedule(
    template: &PruneSchedule,
    keep_ratio: f64,
    scorer: ScorerKind,
) -> PruneSchedule {
    PruneSchedule {
        name: format!("keep{}", fmt_ratio(keep_ratio)),
        stages: template
            .stages
            .iter()
            .map(|s| Stage {
                layer: s.layer,
                keep_ratio,
            })
            .collect(),
        scorer: Some(scorer),
        ..template.clone()
    }
}

/// A keep ratio as written in names and tables: up to 3 decimals, no trailing zeros but one
/// (0.9 → "0.9", 0.85 → "0.85", 1 → "1.0").
pub fn fmt_ratio(r: f64) -> String {
    let s = format!("{r:.3}");
    let s = s.trim_end_matches('0');
    if s.ends_with('.') {
        format!("{s}0")
    } else {
        s.to_string()
    }
}

/// One schedule × scorer of a sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepPoint {
    pub mode: String,
    /// Per-stage keep ratio; 1 for the baseline.
    pub keep_ratio: f64,
    /// Null for the baseline.
    pub scorer: Option<String>,
    pub flop_reduction: f64,
    pub flop_speedup: f64,
    pub first_token_agreement: f64,
    pub kl_mean: f64,
    pub top_k_overlap_mean: f64,
    pub continuation_match_mean: Option<f64>,
    /// On the frontier of (flop_reduction ↑, first_token_agreement ↑).
    pub pareto_agreement: bool,
    /// On the frontier of (flop_reduction ↑, kl_mean ↓).
    pub pareto_kl: bool,
}

/// Which of `points` (x, y), both to be maximised, no other point dominates. Duplicates of a
/// frontier point are all on it.
pub fn pareto_front(points: &[(f64, f64)]) -> Vec<bool> {
    points
        .iter()
        .map(|&(x, y)| {
            !points
                .iter()
                .any(|&(ox, oy)| ox >= x && oy >= y && (ox > x || oy > y))
        })
        .collect()
}

/// The baseline point (no reduction, full agreement) and one per summary, with both
/// frontiers marked. `ratios[i]` is the keep ratio of `summaries[i]`.
pub fn sweep_points(summaries: &[AgreementSummary], ratios: &[f64]) -> Vec<SweepPoint> {
    let mut points = vec![SweepPoint {
        mode: crate::report::BASELINE.to_string(),
        keep_ratio: 1.0,
        scorer: None,
        flop_reduction: 0.0,
        flop_speedup: 1.0,
        first_token_agreement: 1.0,
        kl_mean: 0.0,
        top_k_overlap_mean: 1.0,
        continuation_match_mean: None,
        pareto_agreement: false,
        pareto_kl: false,
    }];
    points.extend(summaries.iter().zip(ratios).map(|(s, &r)| SweepPoint {
        mode: s.mode.clone(),
        keep_ratio: r,
        scorer: s.scorer.clone(),
        flop_reduction: s.flop_reduction,
        flop_speedup: s.flop_speedup,
        first_token_agreement: s.first_token_agreement,
        kl_mean: s.kl_mean,
        top_k_overlap_mean: s.top_k_overlap_mean,
        continuation_match_mean: s.continuation_match_mean,
        pareto_agreement: false,
        pareto_kl: false,
    }));
    let agreement: Vec<(f64, f64)> = points
        .iter()
        .map(|p| (p.flop_reduction, p.first_token_agreement))
        .collect();
    let kl: Vec<(f64, f64)> = points
        .iter()
        .map(|p| (p.flop_reduction, -p.kl_mean))
        .collect();
    for (p, (a, k)) in points
        .iter_mut()
        .zip(pareto_front(&agreement).into_iter().zip(pareto_front(&kl)))
    {
        p.pareto_agreement = a;
        p.pareto_kl = k;
    }
    points
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pareto_front_by_hand() {
        let pts = [
            (0.0, 1.0),
            (0.3, 0.9),
            (0.3, 0.8),
            (0.5, 0.9),
            (0.6, 0.5),
            (0.2, 0.5),
        ];
        assert_eq!(
            pareto_front(&pts),
            vec![true, false, false, true, true, false]
        );
        assert_eq!(pareto_front(&[(1.0, 1.0), (1.0, 1.0)]), vec![true, true]);
        assert!(pareto_front(&[]).is_empty());
    }

    #[test]
    fn ratio_schedules_keep_the_layers() {
        let keep09 = PruneSchedule::preset("keep09", 30).unwrap().schedule;
        let s = ratio_schedule(&keep09, 0.6, ScorerKind::Norm);
        assert_eq!(s.name, "keep0.6");
        assert_eq!(s.scorer, Some(ScorerKind::Norm));
        assert_eq!(s.stages.len(), keep09.stages.len());
        assert!(s.stages.iter().all(|st| st.keep_ratio == 0.6));
        s.validate(30).unwrap();
        assert_eq!(fmt_ratio(0.85), "0.85");
        assert_eq!(fmt_ratio(1.0), "1.0");
        assert_eq!(fmt_ratio(0.5), "0.5");
    }
}
