//! The curves of one or more runs as a PNG: training loss (left) and validation perplexity
//! (right) against the step. Drawn only with the `plot` feature; without it nothing is written.

use std::path::Path;

#[cfg(feature = "plot")]
use plotters::prelude::*;

use super::metrics::Record;
use crate::error::Result;

/// One run's records under a legend label.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(feature = "plot"), allow(dead_code))]
pub(crate) struct Curve<'a> {
    /// Legend label.
    pub label: &'a str,
    /// Its metrics.
    pub records: &'a [Record],
}

/// Draws `curves` into `path` (PNG); without the `plot` feature, does nothing.
///
/// # Errors
/// Drawing or writing the file fails.
#[cfg(not(feature = "plot"))]
#[allow(clippy::unnecessary_wraps)] // the signature of the drawing one
pub(crate) fn plot_curves(_path: &Path, _title: &str, _curves: &[Curve<'_>]) -> Result<()> {
    Ok(())
}

/// Draws `curves` into `path` (PNG).
///
/// # Errors
/// Drawing or writing the file fails.
#[cfg(feature = "plot")]
pub(crate) fn plot_curves(path: &Path, title: &str, curves: &[Curve<'_>]) -> Result<()> {
    hashprep::plot::register_font();
    let area = BitMapBackend::new(path, (1280, 520)).into_drawing_area();
    draw(&area, title, curves).map_err(|e| hashprep::Error::plot(path, e))?;
    area.present().map_err(|e| hashprep::Error::plot(path, e))?;
    Ok(())
}

#[cfg(feature = "plot")]
fn series(records: &[Record], valid: bool) -> Vec<(f64, f64)> {
    records
        .iter()
        .filter_map(|r| match (r, valid) {
            (Record::Train { step, loss, .. }, false) => Some((*step as f64, *loss)),
            (Record::Valid { step, ppl, .. }, true) => Some((*step as f64, *ppl)),
            _ => None,
        })
        .filter(|(_, y)| y.is_finite())
        .collect()
}

#[cfg(feature = "plot")]
fn draw<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    curves: &[Curve<'_>],
) -> std::result::Result<(), String>
where
    DB::ErrorType: 'static,
{
    let err = |e: &dyn std::fmt::Display| e.to_string();
    area.fill(&WHITE).map_err(|e| err(&e))?;
    let area = area
        .titled(title, ("sans-serif", 24))
        .map_err(|e| err(&e))?;
    let panels = area.split_evenly((1, 2));
    for (panel, (valid, y_desc)) in panels.iter().zip([
        (false, "training loss (nats/token)"),
        (true, "validation perplexity"),
    ]) {
        let all: Vec<Vec<(f64, f64)>> = curves.iter().map(|c| series(c.records, valid)).collect();
        let points = all.iter().flatten();
        let max_x = points.clone().map(|p| p.0).fold(1.0, f64::max);
        let (lo, hi) = points
            .map(|p| p.1)
            .filter(|y| y.is_finite())
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), y| {
                (lo.min(y), hi.max(y))
            });
        let (lo, hi) = if lo.is_finite() {
            (lo, hi.max(lo + 1e-6))
        } else {
            (0.0, 1.0)
        };
        let pad = (hi - lo) * 0.05;
        let mut chart = ChartBuilder::on(panel)
            .margin(14)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d(0.0..max_x, (lo - pad)..(hi + pad))
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc(y_desc)
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(|e| err(&e))?;
        for (i, (curve, points)) in curves.iter().zip(&all).enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(
                    points.iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(|e| err(&e))?
                .label(curve.label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
        draw_legend(&mut chart).map_err(|e| err(&e))?;
    }
    Ok(())
}

#[cfg(feature = "plot")]
/// The series labels in the upper right corner, on a translucent white box.
pub(crate) fn draw_legend<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .label_font(("sans-serif", 13))
        .draw()
}
