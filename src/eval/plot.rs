//! The eval SVGs: a scatter of points against prefill FLOP reduction, one colour per scorer
//! with a thin line through each scorer's points, each point labelled; plus a guide (the
//! sweep's Pareto frontier, or RULER's baseline level). [`render_sweep_svg`] draws the sweep:
//! two panels side by side, first-token agreement (left, higher is better) and mean KL
//! (right, lower is better), the frontier of each as a thick black line through ringed
//! points. `eval::ruler::plot` draws RULER's scores with the same panel.

use anyhow::{bail, Result};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::sweep::{fmt_ratio, SweepPoint};

use crate::plot_style::{palette, plot_error, SIZE};

/// The SVG canvas a panel is drawn on.
pub type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// One point of a panel.
#[derive(Debug, Clone, PartialEq)]
pub struct ChartPoint {
    /// Prefill FLOP reduction.
    pub x: f64,
    pub y: f64,
    /// The scorer; None for the baseline (black).
    pub series: Option<String>,
    pub label: String,
    /// Drawn larger with a black ring (and joined by the frontier guide).
    pub ringed: bool,
}

/// What a panel draws besides the points.
#[derive(Debug, Clone, PartialEq)]
pub enum Guide {
    None,
    /// A thick black line through the ringed points, left to right.
    Frontier,
    /// A dashed horizontal line at `y`, named `label` in the legend.
    Level {
        y: f64,
        label: String,
    },
}

/// One panel: y against prefill FLOP reduction.
pub struct Panel<'a> {
    pub caption: &'a str,
    pub y_desc: &'a str,
    pub x: (f64, f64),
    pub y: (f64, f64),
    /// Decimals of the y tick labels.
    pub y_decimals: usize,
    /// Where the legend stays clear of the points.
    pub legend: SeriesLabelPosition,
    pub guide: Guide,
}

/// The scorers of `points`, in order of first appearance.
pub fn series_names(points: &[ChartPoint]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in points.iter().filter_map(|p| p.series.as_ref()) {
        if !out.contains(s) {
            out.push(s.clone());
        }
    }
    out
}

/// The x range that shows every point, with room for the labels on the right.
pub fn x_range(points: &[ChartPoint]) -> (f64, f64) {
    let hi = points.iter().map(|p| p.x).fold(0.0, f64::max).max(0.05) * 1.12;
    let lo = points.iter().map(|p| p.x).fold(0.0, f64::min) - 0.02;
    (lo, hi)
}

/// An SVG of `size` with `heading` on top; `draw` fills the area below it.
pub fn render_svg(
    size: (u32, u32),
    heading: &str,
    draw: impl FnOnce(&Area<'_>) -> Result<()>,
) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let body = root
            .titled(heading, ("sans-serif", 18))
            .map_err(plot_error)?;
        draw(&body)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// Draws `points` on `area`; `series` fixes the colours.
pub fn draw_panel(
    area: &Area<'_>,
    panel: &Panel,
    points: &[ChartPoint],
    series: &[String],
) -> Result<()> {
    let color_of = |s: &Option<String>| -> RGBColor {
        match s {
            Some(s) => palette(series.iter().position(|x| x == s).unwrap_or(0)),
            None => RGBColor(0, 0, 0),
        }
    };
    let mut chart = ChartBuilder::on(area)
        .caption(panel.caption, ("sans-serif", 16))
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(panel.x.0..panel.x.1, panel.y.0..panel.y.1)
        .map_err(plot_error)?;
    let decimals = panel.y_decimals;
    chart
        .configure_mesh()
        .x_desc("prefill FLOP reduction (analytic, 1 − pruned/baseline)")
        .y_desc(panel.y_desc)
        .x_label_formatter(&|x| format!("{:.0}%", x * 100.0))
        .y_label_formatter(&|y| format!("{y:.decimals$}"))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(plot_error)?;
    match &panel.guide {
        Guide::None => {}
        Guide::Frontier => {
            let mut front: Vec<(f64, f64)> = points
                .iter()
                .filter(|p| p.ringed)
                .map(|p| (p.x, p.y))
                .collect();
            front.sort_by(|a, b| a.0.total_cmp(&b.0));
            chart
                .draw_series(LineSeries::new(front, BLACK.stroke_width(3)))
                .map_err(plot_error)?
                .label("Pareto frontier")
                .legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(3))
                });
        }
        Guide::Level { y, label } => {
            let grey = RGBColor(110, 110, 110);
            chart
                .draw_series(DashedLineSeries::new(
                    [(panel.x.0, *y), (panel.x.1, *y)],
                    6,
                    4,
                    grey.stroke_width(1),
                ))
                .map_err(plot_error)?
                .label(label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], grey.stroke_width(1))
                });
        }
    }
    for (i, name) in series.iter().enumerate() {
        let color = palette(i);
        let mut mine: Vec<(f64, f64)> = points
            .iter()
            .filter(|p| p.series.as_deref() == Some(name.as_str()))
            .map(|p| (p.x, p.y))
            .collect();
        mine.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(LineSeries::new(mine, color.mix(0.5).stroke_width(1)))
            .map_err(plot_error)?
            .label(name.clone())
            .legend(move |(x, y)| Circle::new((x + 10, y), 5, color.filled()));
    }
    for p in points {
        let color = color_of(&p.series);
        let radius = if p.ringed { 6 } else { 4 };
        let ring = if p.ringed {
            BLACK.stroke_width(2)
        } else {
            color.stroke_width(1)
        };
        chart
            .draw_series(std::iter::once(
                EmptyElement::at((p.x, p.y))
                    + Circle::new((0, 0), radius, color.filled())
                    + Circle::new((0, 0), radius + 2, ring)
                    + Text::new(
                        p.label.clone(),
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
    let chart = |value: fn(&SweepPoint) -> f64, on_front: fn(&SweepPoint) -> bool| {
        points
            .iter()
            .map(|p| ChartPoint {
                x: p.flop_reduction,
                y: value(p),
                series: p.scorer.clone(),
                label: match &p.scorer {
                    Some(_) => fmt_ratio(p.keep_ratio),
                    None => "baseline".to_string(),
                },
                ringed: on_front(p),
            })
            .collect::<Vec<_>>()
    };
    let agreement = chart(|p| p.first_token_agreement, |p| p.pareto_agreement);
    let kl = chart(|p| p.kl_mean, |p| p.pareto_kl);
    let series = series_names(&agreement);
    let x = x_range(&agreement);
    let y_lo = agreement.iter().map(|p| p.y).fold(1.0, f64::min);
    let y_lo = (y_lo - 0.08).max(-0.02);
    let kl_hi = kl.iter().map(|p| p.y).fold(0.0, f64::max).max(1e-3) * 1.15;
    let heading = format!(
        "sdtp eval sweep · {} · {} · {} · {} prompts · commit {}",
        title.model, title.device, title.dtype, title.prompts, title.git_commit
    );
    render_svg(SIZE, &heading, |root| {
        let (left, right) = root.split_horizontally(SIZE.0 / 2);
        draw_panel(
            &left,
            &Panel {
                caption: "First-token agreement vs prefill FLOP reduction",
                y_desc: "first-token agreement",
                x,
                y: (y_lo, 1.04),
                y_decimals: 2,
                legend: SeriesLabelPosition::LowerLeft,
                guide: Guide::Frontier,
            },
            &agreement,
            &series,
        )?;
        draw_panel(
            &right,
            &Panel {
                caption: "Mean KL(baseline ‖ pruned) vs prefill FLOP reduction",
                y_desc: "mean KL, nats (lower is better)",
                x,
                y: (0.0, kl_hi),
                y_decimals: 2,
                legend: SeriesLabelPosition::UpperLeft,
                guide: Guide::Frontier,
            },
            &kl,
            &series,
        )
    })
}
