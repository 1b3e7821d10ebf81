//! The load plot of the paper's Figure 4: relative token frequency per expert, experts sorted
//! from most to least loaded, one line per table. PNG or SVG by the file's extension; the font
//! is built in, so plots render the same on machines without fonts.

use std::path::Path;

#[cfg(feature = "plot")]
use plotters::{coord::Shift, prelude::*};

use crate::error::{Error, PlotProblem, Result};

/// One line of the plot.
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "plot"), allow(dead_code))]
pub(crate) struct Series {
    /// Legend label (method, hash).
    pub label: String,
    /// Share of the token mass per expert (any order; sorted for drawing).
    pub shares: Vec<f64>,
}

/// Without the `plot` feature there is nothing to draw with.
#[cfg(not(feature = "plot"))]
pub(crate) fn plot_expert_shares(path: &Path, _title: &str, _series: &[Series]) -> Result<()> {
    Err(plot_request(path, PlotProblem::NotBuilt))
}

/// Draws `series` into `path` (`.png` or `.svg`).
#[cfg(feature = "plot")]
///
/// # Errors
/// Another extension, no series, or a drawing / I/O failure.
pub(crate) fn plot_expert_shares(path: &Path, title: &str, series: &[Series]) -> Result<()> {
    if series.is_empty() {
        return Err(plot_request(path, PlotProblem::Nothing));
    }
    crate::plot::register_font();
    let size = (960, 600);
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("png") => draw(
            &BitMapBackend::new(path, size).into_drawing_area(),
            title,
            series,
        ),
        Some("svg") => draw(
            &SVGBackend::new(path, size).into_drawing_area(),
            title,
            series,
        ),
        _ => return Err(plot_request(path, PlotProblem::Extension)),
    }
    .map_err(|e| Error::plot(path, e))
}

#[cfg(feature = "plot")]
fn draw<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    series: &[Series],
) -> std::result::Result<(), String>
where
    DB::ErrorType: 'static,
{
    let err = |e: &dyn std::fmt::Display| e.to_string();
    area.fill(&WHITE).map_err(|e| err(&e))?;
    let experts = series.iter().map(|s| s.shares.len()).max().unwrap_or(1);
    let top = series
        .iter()
        .flat_map(|s| s.shares.iter().copied())
        .fold(0.0f64, f64::max)
        * 100.0
        * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(0usize..experts.saturating_sub(1).max(1), 0.0..top.max(1e-9))
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("expert (sorted by load)")
        .y_desc("share of tokens (%)")
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|e| err(&e))?;
    for (i, s) in series.iter().enumerate() {
        let mut shares: Vec<f64> = s.shares.iter().map(|x| x * 100.0).collect();
        shares.sort_by(|a, b| b.total_cmp(a));
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                shares.iter().copied().enumerate(),
                color.stroke_width(2),
            ))
            .map_err(|e| err(&e))?
            .label(&s.label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(
                shares
                    .iter()
                    .copied()
                    .enumerate()
                    .map(|p| Circle::new(p, 3, color.filled())),
            )
            .map_err(|e| err(&e))?;
    }
    let uniform = 100.0 / experts as f64;
    chart
        .draw_series(LineSeries::new(
            [(0, uniform), (experts.saturating_sub(1), uniform)],
            BLACK.mix(0.4),
        ))
        .map_err(|e| err(&e))?
        .label("uniform 1/K")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.4)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(|e| err(&e))?;
    area.present().map_err(|e| err(&e))
}

/// A plot of `path` that cannot be made as asked.
fn plot_request(path: &Path, problem: PlotProblem) -> Error {
    Error::PlotRequest {
        path: Some(path.to_owned()),
        problem,
    }
}
