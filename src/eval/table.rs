//! The human tables `sdtp eval` prints on stdout: markdown, so they paste into notes as is.

use std::fmt::Write;

use super::report::{AgreementReport, PasskeyReport, PerplexityReport, SweepReport};
use super::ruler::report::RulerReport;
use super::sweep::fmt_ratio;
use crate::report::{RunInfo, BASELINE};

fn pct(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map(f).unwrap_or_else(|| "–".to_string())
}

fn row<S: AsRef<str>>(cells: &[S]) -> String {
    let cells: Vec<&str> = cells.iter().map(AsRef::as_ref).collect();
    format!("| {} |\n", cells.join(" | "))
}

/// A markdown table's header row and the rule under it.
fn head<S: AsRef<str>>(columns: &[S]) -> String {
    format!("{}|{}\n", row(columns), "---|".repeat(columns.len()))
}

fn caption(run: &RunInfo) -> String {
    format!("{}\n\n", caption_line(run))
}

/// The provenance line every table starts with.
fn caption_line(run: &RunInfo) -> String {
    format!(
        "model {} · {} · {} · {} · commit {}",
        run.model.name,
        run.device,
        run.dtype,
        run.model.weights_label(),
        run.git_commit
    )
}

/// One row per contender: top-1 agreement, KL, top-k overlap, continuation, keep, FLOPs.
pub fn agreement_table(report: &AgreementReport) -> String {
    let h = &report.header;
    let p = &report.prompts;
    let mut out = caption_line(&h.run);
    if let Some(weights) = &report.reference_weights {
        // The baseline is a second load of the file: `none` measures the weights alone.
        let _ = write!(out, " · reference: {weights} weights");
    }
    out.push_str("\n\n");
    let _ = writeln!(
        out,
        "{} prompts from {} ({}–{} tokens, mean {:.0}{}); greedy continuation of up to {} tokens\n",
        p.run,
        p.source,
        p.tokens_min,
        p.tokens_max,
        p.tokens_mean,
        if p.chat { ", chat template" } else { "" },
        report.settings.continuation_tokens
    );
    let k = report.settings.top_k;
    let n = report.settings.continuation_tokens;
    let header = [
        "mode".to_string(),
        "top-1 agree".to_string(),
        "KL mean".to_string(),
        "KL p99".to_string(),
        format!("top-{k} overlap"),
        format!("same continuation (of {n})"),
        "identical".to_string(),
        "final keep".to_string(),
        "FLOP reduction".to_string(),
    ];
    out.push_str(&head(&header));
    for s in &report.summary {
        out.push_str(&row(&[
            s.mode.clone(),
            pct(s.first_token_agreement),
            format!("{:.4}", s.kl_mean),
            format!("{:.4}", s.kl_p99),
            pct(s.top_k_overlap_mean),
            opt(s.continuation_match_mean, |v| format!("{v:.1}")),
            opt(s.continuation_identical, pct),
            pct(s.final_keep_mean),
            pct(s.flop_reduction),
        ]));
    }
    out
}

/// Perplexity of each mode beside the baseline's, with the per-token KL and top-1 match.
pub fn perplexity_table(report: &PerplexityReport) -> String {
    let h = &report.header;
    let s = &report.settings;
    let mut out = caption(&h.run);
    let windows = report.summary.first().map_or(0, |x| x.windows);
    let _ = writeln!(
        out,
        "{} ({} tokens): {windows} window(s) of {} context + {} scored tokens, stride {}\n",
        report.text.source, report.text.tokens, s.context, s.continuation, s.stride
    );
    let header = [
        "mode",
        "tokens scored",
        "perplexity",
        "× baseline",
        "ΔNLL (nats)",
        "KL mean",
        "KL p99",
        "same top-1",
    ];
    out.push_str(&head(&header));
    for m in &report.summary {
        out.push_str(&row(&[
            m.mode.clone(),
            m.tokens_scored.to_string(),
            format!("{:.3}", m.perplexity),
            format!("{:.4}", m.perplexity_ratio),
            format!("{:+.4}", m.nll_delta),
            format!("{:.4}", m.kl_mean),
            format!("{:.4}", m.kl_p99),
            pct(m.same_top1),
        ]));
    }
    out
}

/// One grid per mode: lengths down, depths across, correct/trials in each cell.
pub fn passkey_table(report: &PasskeyReport) -> String {
    let h = &report.header;
    let s = &report.settings;
    let mut out = caption(&h.run);
    let _ = writeln!(
        out,
        "passkey retrieval: {} key(s) per cell, {} greedy tokens{}; cells are correct/trials\n",
        s.trials,
        s.new_tokens,
        if s.chat { ", chat template" } else { "" }
    );
    let mut modes: Vec<&str> = vec![BASELINE];
    for c in &report.cells {
        if !modes.contains(&c.mode.as_str()) {
            modes.push(&c.mode);
        }
    }
    for mode in modes {
        let mut header = vec![format!("{mode}: length \\ depth")];
        header.extend(s.depths.iter().map(|d| format!("{d}")));
        header.push("all".to_string());
        out.push_str(&head(&header));
        for &length in &s.lengths {
            let mut cells = vec![length.to_string()];
            let (mut ok, mut all) = (0, 0);
            for &depth in &s.depths {
                match report
                    .cells
                    .iter()
                    .find(|c| c.mode == mode && c.length == length && c.depth == depth)
                {
                    Some(c) => {
                        ok += c.correct;
                        all += c.trials;
                        cells.push(format!("{}/{}", c.correct, c.trials));
                    }
                    None => cells.push("–".to_string()),
                }
            }
            cells.push(if all > 0 {
                pct(ok as f64 / all as f64)
            } else {
                "–".to_string()
            });
            out.push_str(&row(&cells));
        }
        out.push('\n');
    }
    out
}

/// One row per point, frontier members marked.
pub fn sweep_table(report: &SweepReport) -> String {
    let h = &report.header;
    let p = &report.prompts;
    let mut out = caption(&h.run);
    let _ = writeln!(
        out,
        "keep ratios at the layers of {} ({:?}); {} prompts from {} ({}–{} tokens); * = on the Pareto frontier\n",
        report.settings.layers_from, report.settings.layers, p.run, p.source, p.tokens_min, p.tokens_max
    );
    let header = [
        "keep ratio",
        "scorer",
        "FLOP reduction",
        "FLOP speedup",
        "top-1 agree",
        "KL mean",
        "top-k overlap",
        "frontier (agree / KL)",
    ];
    out.push_str(&head(&header));
    for point in &report.points {
        out.push_str(&row(&[
            fmt_ratio(point.keep_ratio),
            point.scorer.clone().unwrap_or_else(|| BASELINE.to_string()),
            pct(point.flop_reduction),
            format!("{:.2}×", point.flop_speedup),
            pct(point.first_token_agreement),
            format!("{:.4}", point.kl_mean),
            pct(point.top_k_overlap_mean),
            format!(
                "{} / {}",
                if point.pareto_agreement { "*" } else { "" },
                if point.pareto_kl { "*" } else { "" }
            ),
        ]));
    }
    out
}

/// What one RULER table row shows of a mode: score, agreement, FLOP reduction, share of the
/// answer's prompt tokens that reached the last layer.
struct RulerFigures(f64, f64, f64, Option<f64>);

/// A RULER table row: `label`, `length`, the baseline's score, then each contender's
/// figures; `figures` finds a mode's.
fn ruler_row(
    report: &RulerReport,
    label: String,
    length: usize,
    figures: impl Fn(&str) -> Option<RulerFigures>,
) -> String {
    let dash = || "–".to_string();
    let mut cells = vec![label, length.to_string()];
    cells.push(figures(BASELINE).map_or_else(dash, |f| format!("{:.1}", f.0)));
    for c in &report.schedules {
        match figures(&c.mode) {
            Some(RulerFigures(score, agree, reduction, kept)) => cells.extend([
                format!("{score:.1}"),
                pct(agree),
                kept.map_or_else(dash, pct),
                pct(reduction),
            ]),
            None => cells.extend([dash(), dash(), dash(), dash()]),
        }
    }
    row(&cells)
}

/// RULER: one row per task × length, the baseline's score then each contender's score,
/// agreement with the baseline and FLOP reduction; an average row closes each length.
pub fn ruler_table(report: &RulerReport) -> String {
    let s = &report.settings;
    let mut out = caption(&report.header.run);
    let new_tokens = s
        .new_tokens
        .map_or_else(|| "RULER's per-task".to_string(), |n| n.to_string());
    let _ = writeln!(
        out,
        "RULER: {} sample(s) per task × length, {new_tokens} greedy tokens{}; scores are string_match_all × 100; agree = samples with the baseline's credit; kept = share of the answer's prompt tokens that reached the last layer; FLOP red. = mean prefill FLOP reduction\n",
        s.samples,
        if s.chat { ", chat template" } else { "" }
    );
    let mut header = vec![
        "task".to_string(),
        "length".to_string(),
        BASELINE.to_string(),
    ];
    for c in &report.schedules {
        header.extend([
            c.mode.clone(),
            "agree".to_string(),
            "kept".to_string(),
            "FLOP red.".to_string(),
        ]);
    }
    out.push_str(&head(&header));
    for &length in &s.lengths {
        for &task in &s.tasks {
            out.push_str(&ruler_row(report, task.to_string(), length, |mode| {
                report
                    .cells
                    .iter()
                    .find(|c| c.task == task && c.length == length && c.mode == mode)
                    .map(|c| RulerFigures(c.score, c.agreement, c.flop_reduction, c.evidence_kept))
            }));
        }
        out.push_str(&ruler_row(
            report,
            "**average**".to_string(),
            length,
            |mode| {
                report
                    .averages
                    .iter()
                    .find(|a| a.length == length && a.mode == mode)
                    .map(|a| RulerFigures(a.score, a.agreement, a.flop_reduction, a.evidence_kept))
            },
        ));
    }
    out
}
