//! The SVG of a sweep: two panels side by side, prefill FLOP reduction (x) against
//! first-token agreement (left, higher is better) and against mean KL (right, lower is
//! better). One colour per scorer, each point labelled with its keep ratio; the Pareto
//! frontier of each panel is drawn as a thick black line through its points.

use anyhow::{bail, Result};
use plotters::prelude::*;

use super::sweep::{fmt_ratio, SweepPoint};

const SIZE: (u32, u32) = (1280, 560);

/// Scorer colours, in order of first appearance; the baseline is black.
const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// What the title says about the run.
pub struct PlotTitle<'a> {
    pub model: &'a str,
    pub device: &'a str,
    pub dtype: &'a str,
    pub git_commit: &'a str,
    pub prompts: usize,
}

/// Renders the sweep `points` as an SVG document.
pub fn render_sweep_svg(points: &[SweepPoint], title: &PlotTitle) -> Result<String> {
    if points.is_empty() {
        bail!("the sweep has no points to plot");
    }
    let mut scorers: Vec<String> = Vec::new();
    for p in points {
        if let Some(s) = &p.scorer {
            if !scorers.contains(s) {
                scorers.push(s.clone());
            }
        }
    }
    let x_hi = points
        .iter()
        .map(|p| p.flop_reduction)
        .fold(0.0, f64::max)
        .max(0.05)
        * 1.12;
    let x_lo = points.iter().map(|p| p.flop_reduction).fold(0.0, f64::min) - 0.02;
    let y_lo = points
        .iter()
        .map(|p| p.first_token_agreement)
        .fold(1.0, f64::min);
    let y_lo = (y_lo - 0.08).max(-0.02);
    let kl_hi = points
        .iter()
        .map(|p| p.kl_mean)
        .fold(0.0, f64::max)
        .max(1e-3)
        * 1.15;

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let heading = format!(
            "sdtp eval sweep · {} · {} · {} · {} prompts · commit {}",
            title.model, title.device, title.dtype, title.prompts, title.git_commit
        );
        let root = root
            .titled(&heading, ("sans-serif", 18))
            .map_err(plot_error)?;
        let (left, right) = root.split_horizontally(SIZE.0 / 2);

        draw_panel(
            &left,
            &Panel {
                caption: "First-token agreement vs prefill FLOP reduction",
                y_desc: "first-token agreement",
                x: (x_lo, x_hi),
                y: (y_lo, 1.04),
                value: |p| p.first_token_agreement,
                on_front: |p| p.pareto_agreement,
                legend: SeriesLabelPosition::LowerLeft,
            },
            points,
            &scorers,
        )?;
        draw_panel(
            &right,
            &Panel {
                caption: "Mean KL(baseline ‖ pruned) vs prefill FLOP reduction",
                y_desc: "mean KL, nats (lower is better)",
                x: (x_lo, x_hi),
                y: (0.0, kl_hi),
                value: |p| p.kl_mean,
                on_front: |p| p.pareto_kl,
                legend: SeriesLabelPosition::UpperLeft,
            },
            points,
            &scorers,
        )?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// One panel: y = `value` of each point against its FLOP reduction.
struct Panel {
    caption: &'static str,
    y_desc: &'static str,
    x: (f64, f64),
    y: (f64, f64),
    value: fn(&SweepPoint) -> f64,
    on_front: fn(&SweepPoint) -> bool,
    /// Where the legend stays clear of the points.
    legend: SeriesLabelPosition,
}

fn draw_panel(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    panel: &Panel,
    points: &[SweepPoint],
    scorers: &[String],
) -> Result<()> {
    let color_of = |p: &SweepPoint| -> RGBColor {
        match &p.scorer {
            Some(s) => COLORS[scorers.iter().position(|x| x == s).unwrap_or(0) % COLORS.len()],
            None => RGBColor(0, 0, 0),
        }
    };
    let (value, on_front) = (panel.value, panel.on_front);
    let mut chart = ChartBuilder::on(area)
        .caption(panel.caption, ("sans-serif", 16))
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(panel.x.0..panel.x.1, panel.y.0..panel.y.1)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("prefill FLOP reduction (analytic, 1 − pruned/baseline)")
        .y_desc(panel.y_desc)
        .x_label_formatter(&|x| format!("{:.0}%", x * 100.0))
        .y_label_formatter(&|y| format!("{y:.2}"))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(plot_error)?;
    let mut front: Vec<(f64, f64)> = points
        .iter()
        .filter(|p| on_front(p))
        .map(|p| (p.flop_reduction, value(p)))
        .collect();
    front.sort_by(|a, b| a.0.total_cmp(&b.0));
    chart
        .draw_series(LineSeries::new(front, BLACK.stroke_width(3)))
        .map_err(plot_error)?
        .label("Pareto frontier")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(3)));
    for (i, scorer) in scorers.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let mut mine: Vec<(f64, f64)> = points
            .iter()
            .filter(|p| p.scorer.as_deref() == Some(scorer.as_str()))
            .map(|p| (p.flop_reduction, value(p)))
            .collect();
        mine.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(LineSeries::new(mine, color.mix(0.5).stroke_width(1)))
            .map_err(plot_error)?
            .label(scorer.clone())
            .legend(move |(x, y)| Circle::new((x + 10, y), 5, color.filled()));
    }
    for p in points {
        let color = color_of(p);
        let at = (p.flop_reduction, value(p));
        let front = on_front(p);
        let radius = if front { 6 } else { 4 };
        let label = match &p.scorer {
            Some(_) => fmt_ratio(p.keep_ratio),
            None => "baseline".to_string(),
        };
        let ring = if front {
            BLACK.stroke_width(2)
        } else {
            color.stroke_width(1)
        };
        chart
            .draw_series(std::iter::once(
                EmptyElement::at(at)
                    + Circle::new((0, 0), radius, color.filled())
                    + Circle::new((0, 0), radius + 2, ring)
                    + Text::new(
                        label,
                        (8, -16),
                        ("sans-serif", 12).into_font().color(&color),
                    ),
            ))
            .map_err(plot_error)?;
    }
    chart
        .configure_series_labels()
        .position(panel.legend.clone())
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)?;
    Ok(())
}

fn plot_error<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::anyhow!("cannot draw the plot: {e}")
}
