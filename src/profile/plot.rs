//! `sdtp profile plot`: an SVG of a profile report, two panels side by side:
//! prefill time (median, ms) against prompt length for every mode, and prefill speedup
//! against length for every schedule, measured (solid) beside the FLOP ideal (dashed).

use anyhow::{bail, Result};
use plotters::prelude::*;

use super::report::ProfileReport;
use crate::plot_style::{line_with_points, palette, plot_error, SIZE};
use crate::report::BASELINE;

/// The baseline's colour (dark grey); schedules take the shared palette after it.
const BASELINE_COLOR: RGBColor = RGBColor(60, 60, 60);

/// Series 0 is the baseline.
fn color(i: usize) -> RGBColor {
    match i {
        0 => BASELINE_COLOR,
        i => palette(i - 1),
    }
}

/// Lengths are plotted on a log2 axis: x = log2(length), labelled with the length itself at
/// whole powers of two.
fn length_label(x: &f64) -> String {
    if (x - x.round()).abs() < 1e-6 {
        format!("{}", 2f64.powf(x.round()) as u64)
    } else {
        String::new()
    }
}

/// A named series of (length, value) points.
struct Series {
    name: String,
    points: Vec<(f64, f64)>,
}

fn series(
    report: &ProfileReport,
    value: impl Fn(&super::report::ModeResult) -> Option<f64>,
) -> Vec<Series> {
    report
        .schedules
        .iter()
        .map(|s| Series {
            name: s.mode.clone(),
            points: report
                .results
                .iter()
                .filter(|r| r.mode == s.mode)
                .filter_map(|r| value(r).map(|v| ((r.length as f64).log2(), v)))
                .collect(),
        })
        .filter(|s| !s.points.is_empty())
        .collect()
}

fn bounds(all: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    all.filter(|v| v.is_finite() && *v > 0.0)
        .fold(None, |acc, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((f64::min(lo, v), f64::max(hi, v))),
        })
}

/// Renders `report` as an SVG document.
pub fn render_svg(report: &ProfileReport) -> Result<String> {
    let times = series(report, |r| Some(r.summary.prefill_ms.median));
    let measured = series(report, |r| r.speedup.as_ref().and_then(|s| s.prefill));
    let ideal = series(report, |r| {
        r.speedup.as_ref().and_then(|s| s.prefill_flop_ideal)
    });
    let Some((x_lo, x_hi)) = bounds(report.results.iter().map(|r| r.length as f64)) else {
        bail!("the report has no results to plot");
    };
    let (x_lo, x_hi) = (x_lo.log2() - 0.5, x_hi.log2() + 0.5);
    // One label per power of two.
    let x_labels = (x_hi - x_lo).ceil() as usize * 2 + 1;
    let (t_lo, t_hi) =
        bounds(times.iter().flat_map(|s| s.points.iter().map(|p| p.1))).unwrap_or((1.0, 10.0));
    let (s_lo, s_hi) = bounds(
        measured
            .iter()
            .chain(&ideal)
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .chain([1.0]),
    )
    .unwrap_or((0.5, 2.0));

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let title = format!(
            "sdtp profile {} · {} · {} · {} · commit {}",
            report.run.command,
            report.run.model.name,
            report.run.device,
            report.run.dtype,
            report.run.git_commit
        );
        let root = root
            .titled(&title, ("sans-serif", 18))
            .map_err(plot_error)?;
        let (left, right) = root.split_horizontally(SIZE.0 / 2);

        let mut chart = ChartBuilder::on(&left)
            .caption("Prefill time (median)", ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d(x_lo..x_hi, 0.0..(t_hi * 1.1).max(t_lo))
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("prompt tokens")
            .y_desc("ms")
            .x_labels(x_labels)
            .x_label_formatter(&length_label)
            .y_labels(10)
            .light_line_style(WHITE.mix(0.0))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()
            .map_err(plot_error)?;
        for (i, s) in times.iter().enumerate() {
            line_with_points(&mut chart, &s.points, color(i), s.name.clone())?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(plot_error)?;

        let mut chart = ChartBuilder::on(&right)
            .caption(
                "Prefill speedup over the baseline (dashed: FLOP ideal)",
                ("sans-serif", 16),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d(x_lo..x_hi, (s_lo * 0.9)..(s_hi * 1.1))
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("prompt tokens")
            .y_desc("× (baseline / pruned)")
            .x_labels(x_labels)
            .x_label_formatter(&length_label)
            .y_labels(10)
            .light_line_style(WHITE.mix(0.0))
            .y_label_formatter(&|y| format!("{y:.2}"))
            .draw()
            .map_err(plot_error)?;
        chart
            .draw_series(LineSeries::new(
                [(x_lo, 1.0), (x_hi, 1.0)],
                BLACK.mix(0.4).stroke_width(1),
            ))
            .map_err(plot_error)?;
        // Colours follow the left panel, where the baseline is series 0.
        let color_of = |name: &str| color(times.iter().position(|s| s.name == name).unwrap_or(0));
        for s in &measured {
            let label = format!("{} measured", s.name);
            line_with_points(&mut chart, &s.points, color_of(&s.name), label)?;
        }
        for s in ideal.iter().filter(|s| s.name != BASELINE) {
            let color = color_of(&s.name);
            chart
                .draw_series(DashedLineSeries::new(
                    s.points.clone(),
                    6,
                    4,
                    color.stroke_width(2),
                ))
                .map_err(plot_error)?
                .label(format!("{} FLOP ideal", s.name))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(1))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}
