//! The lag-over-time chart (SVG), like the original load tests' graphs: p50, p99 and max
//! lag per time bucket.

use super::measure::SeriesPoint;
use plotters::prelude::*;
use std::path::Path;

/// A series to draw: its legend, its colour, its line width and how to read it from a
/// point.
type Line = (&'static str, RGBColor, u32, fn(&SeriesPoint) -> f64);

pub fn write_lag_chart(path: &Path, title: &str, series: &[SeriesPoint]) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (960, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let t_max = series.last().map_or(1.0, |p| p.t_s + 0.5).max(1.0);
    let y_max = series.iter().map(|p| p.lag_max_ms).fold(1.0f64, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..t_max, 0f64..y_max)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("time since start (s), by scheduled write time")
        .y_desc("lag commit → searchable (ms)")
        .draw()
        .map_err(plot_error)?;
    // Drawn in this order so the thin max line stays visible where it meets p99.
    let lines: [Line; 3] = [
        ("p50", RGBColor(31, 119, 180), 2, |p| p.lag_p50_ms),
        ("p99", RGBColor(255, 127, 14), 2, |p| p.lag_p99_ms),
        ("max", RGBColor(214, 39, 40), 1, |p| p.lag_max_ms),
    ];
    for (label, color, width, value) in lines {
        chart
            .draw_series(LineSeries::new(
                series.iter().map(|p| (p.t_s, value(p))),
                color.stroke_width(width),
            ))
            .map_err(plot_error)?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)?;
    Ok(())
}

fn plot_error<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::anyhow!("cannot draw the lag chart: {e}")
}
