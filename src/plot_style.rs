//! What the SVG plots of `eval` and `profile` share: the canvas size, one palette, the error
//! every drawing call maps to, and a series drawn as a line with a marker at each point.

use anyhow::Result;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

/// Width × height of every plot, in pixels: two panels side by side.
pub const SIZE: (u32, u32) = (1280, 560);

/// Matplotlib's "tab10" colours, in order: one per series, reused past the sixth.
const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// The colour of series `i`.
pub fn palette(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// A drawing error as the one-line error every command reports.
pub fn plot_error<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::anyhow!("cannot draw the plot: {e}")
}

/// Draws `points` as a line of `color` with a dot at each point, labelled `label` in the
/// legend.
pub fn line_with_points<DB: DrawingBackend>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    points: &[(f64, f64)],
    color: RGBColor,
    label: String,
) -> Result<()> {
    chart
        .draw_series(LineSeries::new(points.to_vec(), color.stroke_width(2)))
        .map_err(plot_error)?
        .label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    chart
        .draw_series(PointSeries::of_element(
            points.to_vec(),
            4,
            color.filled(),
            &|c, size, style| Circle::new(c, size, style),
        ))
        .map_err(plot_error)?;
    Ok(())
}
