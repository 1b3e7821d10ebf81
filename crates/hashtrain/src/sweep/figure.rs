//! `OUT/grid.png`, the paper's Figure 3 for a sweep over a grid: validation perplexity against
//! the number of experts (where `experts` lists several values) or against the position of the
//! sparse layer (where only `layer` does), one line per method, the dense baseline as a dashed
//! line, error bars of one standard deviation over seeds.

use std::path::Path;

use plotters::prelude::*;

use super::report::{by_row, mean_and_std, MethodResult};
use crate::error::Result;
use crate::train::plot::draw_legend;

/// The x axis of the figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Axis {
    /// Experts K, on a log2 scale.
    Experts,
    /// The position of the single sparse layer.
    Position,
}

/// One point: a row's x, its mean validation perplexity and standard deviation over seeds.
#[derive(Debug, Clone, PartialEq)]
struct Point {
    x: f64,
    mean: f64,
    std: f64,
}

/// The lines of the figure: `(label, points in x order)`, and the dense baseline's perplexity.
type Lines = (Vec<(String, Vec<Point>)>, Option<f64>);

/// Draws `grid.png` into `path` when the sweep varies the experts or the sparse layer's
/// position; returns whether it did.
///
/// # Errors
/// Drawing or writing the file fails.
pub(super) fn plot_grid(path: &Path, title: &str, results: &[MethodResult]) -> Result<bool> {
    let Some(axis) = axis(results) else {
        return Ok(false);
    };
    let lines = lines(results, axis);
    hashprep::plot::register_font();
    let area = BitMapBackend::new(path, (900, 600)).into_drawing_area();
    draw(&area, title, axis, &lines).map_err(|e| hashprep::Error::plot(path, e))?;
    area.present().map_err(|e| hashprep::Error::plot(path, e))?;
    Ok(true)
}

/// What varies over the sparse rows: the experts first, else the single layer's position.
fn axis(results: &[MethodResult]) -> Option<Axis> {
    let mut experts: Vec<u32> = results.iter().filter_map(|r| r.experts).collect();
    experts.sort_unstable();
    experts.dedup();
    let mut positions: Vec<usize> = results
        .iter()
        .filter(|r| r.sparse_layers.len() == 1)
        .map(|r| r.sparse_layers[0])
        .collect();
    positions.sort_unstable();
    positions.dedup();
    if experts.len() > 1 {
        Some(Axis::Experts)
    } else if positions.len() > 1 {
        Some(Axis::Position)
    } else {
        None
    }
}

/// One line per method (per method and placement where the experts vary over several
/// placements); the dense baseline (of the shared shape) apart.
fn lines(results: &[MethodResult], axis: Axis) -> Lines {
    let mut lines: Vec<(String, Vec<Point>)> = Vec::new();
    let mut dense = None;
    for runs in by_row(results) {
        let r = runs[0];
        let (mean, std) = mean_and_std(&runs.iter().map(|r| r.valid_ppl).collect::<Vec<_>>());
        let Some(experts) = r.experts else {
            if r.row == "dense" {
                dense = Some(mean);
            }
            continue;
        };
        let (label, x) = match axis {
            Axis::Experts => {
                let at: Vec<String> = r.sparse_layers.iter().map(usize::to_string).collect();
                (
                    format!("{} (layer {})", r.method, at.join("+")),
                    f64::from(experts).log2(),
                )
            }
            Axis::Position if r.sparse_layers.len() == 1 => (
                format!("{} (K = {experts})", r.method),
                r.sparse_layers[0] as f64,
            ),
            Axis::Position => continue,
        };
        let point = Point { x, mean, std };
        match lines.iter_mut().find(|(l, _)| *l == label) {
            Some((_, points)) => points.push(point),
            None => lines.push((label, vec![point])),
        }
    }
    for (_, points) in &mut lines {
        points.sort_by(|a, b| a.x.total_cmp(&b.x));
    }
    (lines, dense)
}

fn draw<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    axis: Axis,
    (lines, dense): &Lines,
) -> std::result::Result<(), String>
where
    DB::ErrorType: 'static,
{
    let err = |e: &dyn std::fmt::Display| e.to_string();
    area.fill(&WHITE).map_err(|e| err(&e))?;
    let points = lines.iter().flat_map(|(_, p)| p);
    let xs = points.clone().map(|p| p.x);
    let (x_lo, x_hi) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
        (lo.min(x), hi.max(x))
    });
    let ys = points
        .flat_map(|p| [p.mean - p.std, p.mean + p.std])
        .chain(*dense);
    let (y_lo, y_hi) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), y| {
        (lo.min(y), hi.max(y))
    });
    let (x_pad, y_pad) = (0.25, ((y_hi - y_lo) * 0.08).max(0.5));
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(
            (x_lo - x_pad)..(x_hi + x_pad),
            (y_lo - y_pad)..(y_hi + y_pad),
        )
        .map_err(|e| err(&e))?;
    let x_label = |x: &f64| match axis {
        Axis::Experts => format!("{:.0}", x.exp2()),
        Axis::Position => format!("{x:.0}"),
    };
    chart
        .configure_mesh()
        .x_desc(match axis {
            Axis::Experts => "experts (modules) K",
            Axis::Position => "sparse layer",
        })
        .y_desc("validation perplexity")
        .x_labels(((x_hi - x_lo).round() as usize + 1).max(2))
        .x_label_formatter(&x_label)
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(|e| err(&e))?;
    if let Some(dense) = *dense {
        let line = [(x_lo - x_pad, dense), (x_hi + x_pad, dense)];
        chart
            .draw_series(DashedLineSeries::new(line, 8, 6, BLACK.stroke_width(1)))
            .map_err(|e| err(&e))?
            .label("dense baseline")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(1)));
    }
    for (i, (label, points)) in lines.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                points.iter().map(|p| (p.x, p.mean)),
                color.stroke_width(2),
            ))
            .map_err(|e| err(&e))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(points.iter().map(|p| {
                ErrorBar::new_vertical(
                    p.x,
                    p.mean - p.std,
                    p.mean,
                    p.mean + p.std,
                    color.filled(),
                    8,
                )
            }))
            .map_err(|e| err(&e))?;
    }
    draw_legend(&mut chart).map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(
        row: &str,
        experts: Option<u32>,
        layers: &[usize],
        seed: u64,
        ppl: f64,
    ) -> MethodResult {
        MethodResult {
            method: row.split('-').next().unwrap().to_owned(),
            row: row.to_owned(),
            experts,
            sparse_layers: layers.to_vec(),
            run: format!("{row}-seed{seed}"),
            seed,
            model: String::new(),
            configuration: String::new(),
            parameters: 0,
            steps: 1,
            valid_ppl: ppl,
            test_ppl: ppl,
            max_over_mean: None,
            tokens_per_s: 1.0,
        }
    }

    #[test]
    fn experts_lines_have_one_point_per_k_with_the_seed_deviation() {
        let results = [
            result("dense", None, &[], 1, 100.0),
            result("dense", None, &[], 2, 102.0),
            result("balanced-K64", Some(64), &[3], 1, 80.0),
            result("balanced-K16", Some(16), &[3], 1, 90.0),
            result("balanced-K16", Some(16), &[3], 2, 92.0),
            result("switch-K16", Some(16), &[3], 1, 95.0),
        ];
        assert_eq!(axis(&results), Some(Axis::Experts));
        let (lines, dense) = lines(&results, Axis::Experts);
        assert_eq!(dense, Some(101.0));
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].0, "balanced (layer 3)");
        // Sorted by K on the log2 axis; 90 and 92 give a mean of 91, deviation sqrt(2).
        assert_eq!(
            lines[0].1,
            vec![
                Point {
                    x: 4.0,
                    mean: 91.0,
                    std: 2f64.sqrt()
                },
                Point {
                    x: 6.0,
                    mean: 80.0,
                    std: 0.0
                },
            ]
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grid.png");
        assert!(plot_grid(&path, "t", &results).unwrap());
        assert!(path.metadata().unwrap().len() > 1000);
    }

    #[test]
    fn positions_are_the_axis_when_only_the_layer_varies_and_nothing_is_drawn_otherwise() {
        let results = [
            result("balanced-L1", Some(16), &[1], 1, 90.0),
            result("balanced-L3", Some(16), &[3], 1, 85.0),
            result("balanced-L2+4", Some(16), &[2, 4], 1, 84.0),
        ];
        assert_eq!(axis(&results), Some(Axis::Position));
        let (lines, dense) = lines(&results, Axis::Position);
        assert_eq!(dense, None);
        let xs: Vec<f64> = lines[0].1.iter().map(|p| p.x).collect();
        assert_eq!(
            xs,
            vec![1.0, 3.0],
            "a model of several sparse layers has no position"
        );

        let single = [result("balanced", Some(16), &[3], 1, 90.0)];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grid.png");
        assert!(!plot_grid(&path, "t", &single).unwrap());
        assert!(!path.exists());
    }
}
