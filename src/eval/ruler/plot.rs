//! The SVG of a RULER run: one panel per length, the average score over the tasks (y)
//! against the prefill FLOP reduction (x), one colour per scorer whose points are the
//! schedules, and the baseline's average as a dashed reference line (and a black point at
//! no reduction).

use anyhow::{bail, Result};
use plotters::prelude::SeriesLabelPosition;

use super::report::RulerReport;
use crate::eval::plot::{draw_panel, render_svg, series_names, x_range, ChartPoint, Guide, Panel};
use crate::report::BASELINE;

/// Size of one panel.
const PANEL: (u32, u32) = (640, 560);

/// The narrowest SVG, so the heading fits above a single panel.
const MIN_WIDTH: u32 = 960;

/// The points of one length: the baseline, then each contender labelled by its schedule.
fn points(report: &RulerReport, length: usize) -> Vec<ChartPoint> {
    report
        .averages
        .iter()
        .filter(|a| a.length == length)
        .map(|a| {
            let info = report.schedules.iter().find(|s| s.mode == a.mode);
            ChartPoint {
                x: a.flop_reduction,
                y: a.score,
                series: info.and_then(|s| s.scorer.clone()),
                label: match info {
                    Some(s) => s.name.clone(),
                    None => BASELINE.to_string(),
                },
                ringed: false,
            }
        })
        .collect()
}

/// Renders `report`'s averages as an SVG document.
pub fn render_ruler_svg(report: &RulerReport) -> Result<String> {
    let lengths = &report.settings.lengths;
    if report.averages.is_empty() || lengths.is_empty() {
        bail!("the RULER run has no averages to plot");
    }
    let per_length: Vec<Vec<ChartPoint>> = lengths.iter().map(|&l| points(report, l)).collect();
    let all: Vec<ChartPoint> = per_length.iter().flatten().cloned().collect();
    let series = series_names(&all);
    let x = x_range(&all);
    let h = &report.header.run;
    let heading = format!(
        "sdtp eval ruler · {} · {} · {} · {} task(s) × {} sample(s) · commit {}",
        h.model.name,
        h.device,
        h.dtype,
        report.settings.tasks.len(),
        report.settings.samples,
        h.git_commit
    );
    let size = ((PANEL.0 * lengths.len() as u32).max(MIN_WIDTH), PANEL.1);
    render_svg(size, &heading, |root| {
        let panels = root.split_evenly((1, lengths.len()));
        for ((area, &length), points) in panels.iter().zip(lengths).zip(&per_length) {
            let baseline = report
                .averages
                .iter()
                .find(|a| a.length == length && a.mode == BASELINE)
                .map_or(0.0, |a| a.score);
            let caption = format!("{length} tokens: mean score over tasks");
            draw_panel(
                area,
                &Panel {
                    caption: &caption,
                    y_desc: "RULER score (string_match_all, mean over tasks)",
                    x,
                    y: (0.0, 105.0),
                    y_decimals: 0,
                    legend: SeriesLabelPosition::LowerLeft,
                    guide: Guide::Level {
                        y: baseline,
                        label: format!("baseline {baseline:.1}"),
                    },
                },
                points,
                &series,
            )?;
        }
        Ok(())
    })
}
